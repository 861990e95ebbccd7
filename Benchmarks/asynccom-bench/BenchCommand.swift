import ArgumentParser
import AsyncComCLI

@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandLineTool.configuration(
        "asynccom-bench",
        abstract: "Measure asynccom end to end, and generate the data sets it runs on.",
        discussion: """
            `run` starts the real asynccom-server binary as a child process, drives it with the client engine, \
            checks every answer against what the data implies (a wrong sum fails the run), and prints a table. \
            `generate` writes a device map and a commands file for a synthetic fleet.

            Build in release first:
              swift build -c release && .build/release/asynccom-bench run seed

            Errors that stop the bench are one line on stderr: `asynccom-bench: error: <message>`.
            Exit status: 0 when every run passed; 1 when a run failed (a wrong answer, a server that did not \
            start or stop cleanly); 64 for a usage error (bad option, unknown scenario).
            """,
        subcommands: [RunCommand.self, GenerateCommand.self, ConnectionsWorkerCommand.self],
        defaultSubcommand: RunCommand.self
    )

    static func main() async { await CommandLineTool.main(Self.self) }
}
