// swift-tools-version:6.0
import PackageDescription

// Module map (what may depend on what):
//   CLibevent          system library: Debian's libevent-dev (event_core + event_pthreads + event_extra for evhttp)
//   CPrefetch          one inline C function: a cache prefetch hint (Swift has none), for Core's hot paths.
//   AsyncComCore       pure Swift: wire protocol, device map, commands file, endpoints. No sockets, threads, clocks
//                      or libevent; the only I/O is reading the input files it parses (FileInput, LineReader,
//                      the map's BlockReader), checked by CoreBoundaryTests.
//   AsyncComEventLoop  thin Swift layer over libevent: event base, fd events, timers, notifier, sockets.
//   COpenSSL           system library: Debian's libssl-dev (OpenSSL 3: ssl + crypto)
//   AsyncComTLS        TLS sessions on non-blocking sockets (OpenSSL), for the server and the client.
//   AsyncComServer     the reactor server (Core + EventLoop).
//   AsyncComClient     the pipelining client engine, usable as a library (Core + EventLoop).
//   asynccom-server / asynccom-client / asynccom-bench: thin command-line front ends.
//   AsyncComCLI        what the three executables share: exit statuses, error reporting, --version, --log-level,
//                      help text that fits the terminal (swift-argument-parser, swift-log).
//   AsyncComProcess    the built executables as child processes (spawn, find, the real server): for the bench and
//                      the tests, which both need it (an executable cannot depend on a test target).
// Linux only (eventfd, SO_REUSEPORT, SO_TIMESTAMPNS, MAP_POPULATE): no other platform is claimed, built or tested.
let package = Package(
    name: "asynccom",
    products: [
        .executable(name: "asynccom-server", targets: ["asynccom-server"]),
        .executable(name: "asynccom-client", targets: ["asynccom-client"]),
        .executable(name: "asynccom-bench", targets: ["asynccom-bench"]),
        .library(name: "AsyncComClient", targets: ["AsyncComClient"]),
        .library(name: "AsyncComServer", targets: ["AsyncComServer"]),
        .library(name: "AsyncComCore", targets: ["AsyncComCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibevent",
            pkgConfig: "libevent_extra",
            providers: [.apt(["libevent-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // One inline C function (a prefetch hint, which Swift cannot issue) for Core's hot paths.
        .target(name: "CPrefetch"),
        .target(
            name: "AsyncComCore",
            dependencies: ["CPrefetch", .product(name: "HeapModule", package: "swift-collections")]
        ),
        .target(name: "AsyncComTLS", dependencies: ["COpenSSL", "AsyncComCore", "AsyncComEventLoop"]),
        .target(name: "AsyncComEventLoop", dependencies: ["CLibevent", "AsyncComCore"]),
        .target(
            name: "AsyncComServer",
            dependencies: [
                "AsyncComCore", "AsyncComEventLoop", "AsyncComTLS",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "AsyncComClient",
            dependencies: [
                "AsyncComCore", "AsyncComEventLoop", "AsyncComTLS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "asynccom-server",
            dependencies: [
                "AsyncComServer", "AsyncComCore", "AsyncComCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "asynccom-client",
            dependencies: [
                "AsyncComClient", "AsyncComCore", "AsyncComEventLoop", "AsyncComCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "asynccom-bench",
            dependencies: [
                "AsyncComClient", "AsyncComCore", "AsyncComTLS", "AsyncComProcess", "AsyncComCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/asynccom-bench"
        ),
        .target(
            name: "AsyncComCLI",
            dependencies: [
                "AsyncComCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "AsyncComProcess", dependencies: ["AsyncComCore"]),
        // What the test targets share: starting servers (in-process, as a child process, or a scripted fake) and
        // other executables, a blocking line client, temporary files, polling.
        .target(
            name: "AsyncComTestSupport",
            dependencies: ["AsyncComServer", "AsyncComCore", "AsyncComTLS", "AsyncComProcess"],
            path: "Tests/AsyncComTestSupport"
        ),
        .testTarget(name: "AsyncComCoreTests", dependencies: ["AsyncComCore"]),
        .testTarget(name: "AsyncComEventLoopTests", dependencies: ["AsyncComEventLoop", "AsyncComCore"]),
        .testTarget(
            name: "AsyncComServerTests",
            dependencies: ["AsyncComServer", "AsyncComCore", "AsyncComEventLoop", "AsyncComTestSupport", "AsyncComTLS"]
        ),
        .testTarget(
            name: "AsyncComClientTests",
            dependencies: [
                "AsyncComClient", "AsyncComServer", "AsyncComCore", "AsyncComEventLoop", "AsyncComTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
