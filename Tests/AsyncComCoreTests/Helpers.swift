import Foundation
@testable import AsyncComCore

/// Runs `body` over the UTF-8 bytes of `text`.
func withBytes<R>(_ text: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    var s = text
    return try s.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
}

func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try bytes.withUnsafeBytes { try body($0) }
}

/// A map parsed from text, or the error it raised.
func loadMap(_ text: String, file: String = "map.txt") -> Result<DeviceMap, InputFileError> {
    withBytes(text) { bytes in
        do throws(InputFileError) {
            return .success(try DeviceMap(parsing: bytes, fileName: file))
        } catch {
            return .failure(error)
        }
    }
}

func mapError(_ text: String, file: String = "map.txt") -> InputFileError? {
    if case .failure(let e) = loadMap(text, file: file) { return e }
    return nil
}

func map(_ text: String) throws -> DeviceMap {
    try loadMap(text).get()
}

func lookup(_ map: DeviceMap, _ device: String, _ command: String) -> Int {
    guard let address = DeviceAddress.parse(device) else { return -2 }
    return map.lookup(device: address, command: command)
}

/// A fresh temporary directory, removed by the caller with `cleanup`.
func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("asynccom-core-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func writeFile(_ url: URL, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: url.path, contents: Data(bytes))
}

/// Where the package lives (for the seed data).
let packageRoot: URL = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url
}()
