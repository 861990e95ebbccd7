import ArgumentParser

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run benchmark scenarios (not yet built).")
    func run() async throws {}
}
