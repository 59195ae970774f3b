// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "sse-keepalive",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sse-keepalive", targets: ["sse-keepalive"]),
        .library(name: "SSEKeepalive", targets: ["SSEKeepalive"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
    ],
    targets: [
        // libevent, imported through pkg-config: the proxy's event loop.
        .systemLibrary(
            name: "CLibevent",
            pkgConfig: "libevent_core",
            providers: [.apt(["libevent-dev"])]
        ),
        // OpenSSL (libssl, libcrypto): the probe's https client.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // zlib: the probe decodes gzip/deflate streams to count their events.
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // All logic. Only Runtime/ imports CLibevent; only Probe/ProbeTLS.swift
        // and Probe/ProbeInflate.swift import COpenSSL and CZlib.
        .target(
            name: "SSEKeepalive",
            dependencies: [
                "CLibevent",
                "COpenSSL",
                "CZlib",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "sse-keepalive",
            dependencies: [
                "SSEKeepalive",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmark load generator and backend (Benchmarks/README.md); not part of the product.
        .executableTarget(
            name: "sse-bench",
            dependencies: ["CLibevent"],
            path: "Benchmarks/Sources/sse-bench"
        ),
        .testTarget(
            name: "SSEKeepaliveTests",
            dependencies: [
                "SSEKeepalive",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
    ]
)
