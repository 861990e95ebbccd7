import ArgumentParser

@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "asynccom-bench",
        abstract: "Measure asynccom end to end, and generate the data sets it runs on.",
        discussion: """
            `run` starts the real asynccom-server binary as a child process, drives it with the client engine,
            checks every answer against what the data implies (a wrong sum fails the run), and prints a table.
            `generate` writes a device map and a commands file for a synthetic fleet.

            Build in release first: swift build -c release, then swift run -c release asynccom-bench run seed
            """,
        subcommands: [RunCommand.self, GenerateCommand.self],
        defaultSubcommand: RunCommand.self
    )
}
