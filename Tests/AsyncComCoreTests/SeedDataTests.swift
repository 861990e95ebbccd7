import Testing
@testable import AsyncComCore

@Suite struct SeedDataTests {
    @Test func seedMapLoads() throws {
        let path = packageRoot.appendingPathComponent("data/seed/map.txt").path
        let m = try DeviceMap(contentsOfFile: path)
        #expect(m.count == 512)
        #expect(m.largestWaitNanos == 1_000_000_000)
        let i = lookup(m, "137.72.95.0", "foo")
        #expect(i >= 0)
        #expect(m.response(at: i) == 1)
        #expect(m.waitNanos(at: i) == 1_000_000_000)
        let b = ByteBuffer()
        m.appendResponse(at: i, to: b)
        #expect(b.readableString == "1")
    }

    @Test func seedCommandsAllInMap() throws {
        let m = try DeviceMap(contentsOfFile: packageRoot.appendingPathComponent("data/seed/map.txt").path)
        let reader = try LineReader(path: packageRoot.appendingPathComponent("data/seed/commands.txt").path)
        var commands = 0
        while let (line, number) = try reader.next() {
            guard case .command(let entry) = CommandsFile.parse(line: line, number: number, fileName: reader.name) else {
                Issue.record("line \(number) not a command"); continue
            }
            commands += 1
            #expect(m.lookup(device: entry.device, command: entry.command) >= 0)
        }
        #expect(commands == 512)
    }
}
