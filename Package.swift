// swift-tools-version:6.1
import PackageDescription

// Keep this list lean: CI builds every dependency from scratch on 2 cores (DESIGN.md).
let package = Package(
    name: "lxd-swift",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lxdd", targets: ["lxdd"]),
        .executable(name: "lxdctl", targets: ["lxdctl"]),
        .executable(name: "lxd-start", targets: ["lxd-start"]),
        .executable(name: "lxd-keygen", targets: ["lxd-keygen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // Preseed files (lxdd --preseed) and image metadata.yaml: YAML, as LXD's.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // Pure value types and rules.
        .target(name: "APITypes"),
        .target(name: "InstanceConfig"),
        .target(name: "Scheduler"),
        .executableTarget(name: "scheduler-bench", dependencies: ["Scheduler"], path: "Benchmarks/SchedulerBench"),

        // State: dqlite node binding + wire client, and our schema on top.
        .target(
            name: "CDqlite",
            linkerSettings: [.linkedLibrary("dqlite"), .linkedLibrary("raft"), .linkedLibrary("sqlite3"), .linkedLibrary("uv")]
        ),
        .target(name: "Dqlite", dependencies: ["CDqlite", .product(name: "Logging", package: "swift-log")]),
        .target(name: "ClusterDB", dependencies: ["Dqlite", "APITypes", .product(name: "Logging", package: "swift-log")]),

        // Containers on this host.
        .target(
            name: "CRuntime",
            linkerSettings: [.linkedLibrary("seccomp"), .linkedLibrary("cap")]
        ),
        // Static stdlib: the helper runs on every start and exec; dynamic loading of the Swift
        // runtime doubled its start-up time (~4 ms vs 5-12 ms measured here).
        .executableTarget(name: "lxd-start", dependencies: ["CRuntime"], linkerSettings: [.unsafeFlags(["-static-stdlib"])]),
        .target(name: "CCompression", linkerSettings: [.linkedLibrary("z"), .linkedLibrary("lzma")]),
        .target(name: "Images", dependencies: [
            "CCompression",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            // metadata.yaml is full YAML (block scalars, flow maps) as distrobuilder writes it.
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "Runtime", dependencies: ["CRuntime", "Images", "InstanceConfig", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Migration", dependencies: ["Runtime", "CRuntime", "InstanceConfig", .product(name: "Logging", package: "swift-log")]),
        // TLS identities: self-signed certificates, fingerprints, pinned-fingerprint TLS configs.
        // Foundation-free (lxdctl links it): SHA-256 is plain Swift, certificates go through NIOSSL.
        .target(name: "Identity", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // New certificates: swift-crypto links full Foundation on Linux, so lxdctl runs lxd-keygen instead.
        .target(name: "IdentityGenerator", dependencies: [
            "Identity",
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .executableTarget(name: "lxd-keygen", dependencies: ["IdentityGenerator"]),
        .target(name: "Membership", dependencies: [.product(name: "Logging", package: "swift-log")]),

        // Use cases, operations, API.
        .target(name: "Operations", dependencies: ["APITypes", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Instances", dependencies: [
            "APITypes", "InstanceConfig", "ClusterDB", "Dqlite", "Runtime", "Images", "Migration", "Operations", "Scheduler",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Gateway", dependencies: [
            "APITypes", "Instances", "Operations", "Identity", "ClusterDB",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "LXDClient", dependencies: [
            "APITypes", "Identity",
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
        ]),
        // Cluster use cases: the I/O shell around Membership's deciders, and member-to-member calls.
        .target(name: "Cluster", dependencies: [
            "APITypes", "ClusterDB", "Dqlite", "Identity", "Instances", "InstanceConfig", "LXDClient", "Membership", "Operations", "Scheduler",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Agent", dependencies: [
            "Cluster", "Gateway", "Instances", "InstanceConfig", "ClusterDB", "Dqlite", "Runtime", "Images", "Migration", "Operations", "Identity", "IdentityGenerator",
            "LXDClient", "Membership", "Scheduler",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "lxdd", dependencies: [
            "Agent", "Cluster", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "lxdctl", dependencies: [
            "LXDClient", "APITypes", "Identity", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "APITypesTests", dependencies: ["APITypes"]),
        .testTarget(name: "InstanceConfigTests", dependencies: ["InstanceConfig"]),
        .testTarget(name: "SchedulerTests", dependencies: ["Scheduler"]),
        // Use cases over a fake ContainerHost and a real in-process dqlite node: no root, no containers.
        // Shared by unit test targets, not by Sources: a real in-process dqlite database.
        .target(name: "DatabaseTestSupport", dependencies: ["ClusterDB", "Dqlite", .product(name: "Logging", package: "swift-log")],
                path: "Tests/DatabaseTestSupport"),
        .testTarget(name: "InstancesTests", dependencies: [
            "DatabaseTestSupport", "Instances", "APITypes", "ClusterDB", "Dqlite", "Images", "InstanceConfig", "Migration", "Operations", "Runtime",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "DqliteTests", dependencies: ["Dqlite"]),
        .testTarget(name: "ClusterDBTests", dependencies: ["ClusterDB"]),
        .testTarget(name: "ImagesTests", dependencies: ["Images"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Images", "InstanceConfig"]),
        .testTarget(name: "MigrationTests", dependencies: ["Migration", "InstanceConfig", "CRuntime"]),
        .testTarget(name: "MembershipTests", dependencies: ["Membership"]),
        // Cluster's use cases over a real in-process dqlite node, and its pure pieces: no root, no network.
        .testTarget(name: "ClusterTests", dependencies: [
            "DatabaseTestSupport", "Cluster", "APITypes", "ClusterDB", "Dqlite", "Identity", "IdentityGenerator", "InstanceConfig", "Instances",
            "Operations", "Scheduler", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "Cluster", "Membership", "Dqlite", "Gateway", "Identity", "IdentityGenerator", "LXDClient", "Operations"]),
        .testTarget(name: "LXDClientTests", dependencies: ["LXDClient"]),
        // The real router and front door over fakes of the use cases, through Hummingbird's router test client: no sockets.
        .testTarget(name: "GatewayTests", dependencies: [
            "Gateway", "APITypes", "ClusterDB", "Dqlite", "Identity", "Instances", "InstanceConfig", "Operations",
            .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams"),
        ]),
        .testTarget(name: "IntegrationTests", dependencies: ["LXDClient", "APITypes", "Identity", "IdentityGenerator", "Membership", "Gateway", "Operations"]),
        .testTarget(name: "IdentityTests", dependencies: [
            "Identity", "IdentityGenerator", .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "X509", package: "swift-certificates"), .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
    ]
)
