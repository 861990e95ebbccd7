// swift-tools-version:6.1
import PackageDescription

// Micro-benchmarks of the hot pure code, with malloc counts (ordo-one/benchmark).
// Kept in a nested package, as SwiftNIO does, so that the main package and `swift test` stay light.
//   cd Benchmarks && swift package benchmark
// The end-to-end benchmark is the main package's `asynccom-bench` executable (Benchmarks/asynccom-bench).
let package = Package(
    name: "asynccom-benchmarks",
    dependencies: [
        .package(name: "asynccom", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                .product(name: "AsyncComCore", package: "asynccom"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/CoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
