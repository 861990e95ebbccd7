import ArgumentParser
import AsyncComCLI
import AsyncComCore

/// Options describing a synthetic data set, shared by `generate` and the benchmark scenarios.
struct DataSetOptions: ParsableArguments {
    @Option(help: "Number of devices (IPv4 10.x.y.z).")
    var devices = 256

    @Option(help: "Comma-separated command names every device knows.")
    var commands = "foo,bar"

    @Option(help: ArgumentHelp(
        "Wait per map entry in seconds: a value (1), a range in ms steps (0..2), or a list to pick from (0,0.5,1).",
        valueName: "spec"))
    var wait = "1"

    @Option(help: ArgumentHelp(
        "Response per entry: an integer (1), 'index' (the device index), or 'random:LO..HI'.", valueName: "spec"))
    var response = "1"

    @Option(name: .customLong("repeat"), help: "How many times the commands file walks over every (device, command).")
    var repeats = 1

    @Option(help: "Fraction (0-1) of command lines that name a device missing from the map.")
    var unknown = 0.0

    @Option(help: "Fraction (0-1) of command lines that are malformed.")
    var malformed = 0.0

    @Option(help: "Seed for the deterministic generator.")
    var seed: UInt64 = 1

    func spec() throws -> DataSetSpec {
        var s = DataSetSpec()
        guard devices > 0, devices <= 1 << 24 else { throw ValidationError("--devices must be 1 to 16777216") }
        s.devices = devices
        s.commands = commands.split(separator: ",").map(String.init)
        guard !s.commands.isEmpty, s.commands.allSatisfy({ name in
            var n = name
            return n.withUTF8 { ItemSyntax.isValidCommand(UnsafeRawBufferPointer($0)) }
        }) else { throw ValidationError("--commands: names of 1-64 characters of A-Z a-z 0-9 _ . -") }
        s.wait = try Self.parseWait(wait)
        s.response = try Self.parseResponse(response)
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1") }
        s.repeats = repeats
        guard (0...1).contains(unknown), (0...1).contains(malformed), unknown + malformed <= 1 else {
            throw ValidationError("--unknown and --malformed are fractions from 0 to 1")
        }
        s.unknownFraction = unknown
        s.malformedFraction = malformed
        s.seed = seed
        return s
    }

    static func seconds(_ text: Substring) throws -> UInt64 {
        var t = String(text)
        guard let n = t.withUTF8({ WaitParser.parseNanos(UnsafeRawBufferPointer($0)) }) else {
            throw ValidationError("'\(text)' is not a wait in seconds (such as 1 or 0.25)")
        }
        return n
    }

    static func parseWait(_ text: String) throws -> DataSetSpec.WaitRule {
        if let r = text.range(of: "..") {
            let lo = try seconds(text[..<r.lowerBound]), hi = try seconds(text[r.upperBound...])
            guard lo <= hi else { throw ValidationError("--wait range: low above high") }
            return .uniform(lo, hi)
        }
        if text.contains(",") { return .list(try text.split(separator: ",").map(seconds)) }
        return .fixed(try seconds(Substring(text)))
    }

    static func parseResponse(_ text: String) throws -> DataSetSpec.ResponseRule {
        if text == "index" { return .deviceIndex }
        if text.hasPrefix("random:"), let r = text.range(of: "..") {
            guard let lo = Int64(text[text.index(text.startIndex, offsetBy: 7)..<r.lowerBound]),
                  let hi = Int64(text[r.upperBound...]), lo <= hi
            else { throw ValidationError("--response random:LO..HI with integers LO <= HI") }
            return .random(lo, hi)
        }
        guard let v = Int64(text) else { throw ValidationError("--response: an integer, 'index' or 'random:LO..HI'") }
        return .fixed(v)
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandLineTool.configuration(
        "generate", subcommandOf: "asynccom-bench",
        abstract: "Write a device map and a commands file (map.txt, commands.txt) for a synthetic fleet.",
        usage: "asynccom-bench generate [<options>] --out <out>",
        discussion: """
            Deterministic: the same options and --seed give the same files. Prints the sum and counts a correct \
            client run must report. Example, 1,000,000 commands of 1 s:
              asynccom-bench generate --devices 500000 --out scratch/inflight
            """
    )

    @OptionGroup var data: DataSetOptions

    @Option(help: "Folder to write map.txt and commands.txt into (created if missing).")
    var out: String

    func run() throws {
        let spec = try data.spec()
        try DataSet.write(spec, to: out)
        let e = DataSet.expectation(spec)
        print("wrote \(out)/map.txt (\(spec.mapLines) entries) and \(out)/commands.txt (\(spec.commandLines) lines)")
        print("expected: sum=\(e.sum) ok=\(e.ok) unknown=\(e.unknown) malformed=\(e.malformed)")
    }
}
