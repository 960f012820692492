// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

/// Every built-in provider: `Providers/<Name>/` holds its module `<Name>Usage` (`Sources/`) and its
/// emulation `<Name>Emulation` (`Emulation/`). A new provider is a folder, a line here and a line
/// in each registry (`ProviderRegistry.standard`, `UsageEmulator.standard`).
let providers = ["Stripe", "Orb", "Metronome", "OpenMeter", "Chargebee", "Recurly", "Paddle"]
let providerModules = providers.map { Target.Dependency(stringLiteral: "\($0)Usage") }
let emulationModules = providers.map { Target.Dependency(stringLiteral: "\($0)Emulation") }
/// Ingest APIs `serve` speaks for tools that are not destinations (teams leave them, or send
/// usage through them): `Doors/<Name>/` holds the module `<Name>Door`, registered in
/// `IngestDoors.standard`. A provider's own door lives in its provider folder.
let doors = ["Lago", "Segment"]
let doorModules = doors.map { Target.Dependency(stringLiteral: "\($0)Door") }

let package = Package(
    name: "UsageBilling",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "UsageBilling", targets: ["UsageBilling"]),
        .library(name: "UsageBillingCurl", targets: ["UsageBillingCurl"]),
        .library(name: "UsageBillingTesting", targets: ["UsageBillingTesting"]),
        .library(name: "UsageRouting", targets: ["UsageRouting"]),
        .library(name: "UsageBillingProviders", targets: ["UsageBillingProviders"]),
        .library(name: "UsageSpool", targets: ["UsageSpool"]),
        .library(name: "UsageEmulator", targets: ["UsageEmulator"]),
        .library(name: "UsageReconciliation", targets: ["UsageReconciliation"]),
        .executable(name: "usage-billing", targets: ["usage-billing"]),
        // For the benchmarks package (Benchmarks/Package.swift): this repository's test support
        // (child processes, a PostgreSQL server) and the libcurl module its raw baseline calls.
        // Neither is API: they change with the tests.
        .library(name: "UsageTestSupport", targets: ["UsageTestSupport"]),
        .library(name: "CCurl", targets: ["CCurl"]),
    ] + providers.map { .library(name: "\($0)Usage", targets: ["\($0)Usage"]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.25.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // `swift package generate-documentation` (the core's DocC catalog); a build-time plugin only.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // libcurl, from Debian's libcurl4-openssl-dev.
        .systemLibrary(
            name: "CCurl",
            path: "Sources/CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // The core: events, sinks, outcomes, retry, rate limiting, batching, HTTP abstractions.
        // No provider code and no curl here.
        .target(name: "UsageBilling", path: "Sources/UsageBilling", swiftSettings: strict),
        .target(
            name: "UsageBillingCurl",
            dependencies: ["UsageBilling", "CCurl"],
            path: "Sources/UsageBillingCurl",
            swiftSettings: strict
        ),
        // The conformance kit contributors depend on: fixtures, replay/recording clients,
        // scenario catalogue and runner, test clock, secret scanner.
        .target(
            name: "UsageBillingTesting",
            dependencies: ["UsageBilling"],
            path: "Sources/UsageBillingTesting",
            swiftSettings: strict
        ),
        // A small HTTP/1.1 server on a loopback port (SwiftNIO): the emulator's, and the tests'
        // stand-in servers.
        .target(
            name: "LoopbackHTTP",
            dependencies: [
                "UsageBilling",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/LoopbackHTTP",
            swiftSettings: strict
        ),
        // This repository's own test support, not shipped: child processes, a PostgreSQL server
        // in a temporary directory, headless Chromium, closed ports, `eventually`.
        .target(
            name: "UsageTestSupport",
            dependencies: ["UsageBilling", "LoopbackHTTP"],
            path: "Sources/UsageTestSupport",
            swiftSettings: strict
        ),
        // Routing config (YAML/JSON), the dual-write Router, the provider registry, import.
        .target(
            name: "UsageRouting",
            dependencies: ["UsageBilling", .product(name: "Yams", package: "Yams")],
            path: "Sources/UsageRouting",
            swiftSettings: strict
        ),
        // The durable spool (SQLite via GRDB), the delivery worker and the pipeline.
        .target(
            name: "UsageSpool",
            dependencies: [
                "UsageBilling", "UsageRouting", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/UsageSpool",
            swiftSettings: strict
        ),
        // Reconciliation: the spool's ledger against each provider's read-back.
        .target(
            name: "UsageReconciliation",
            dependencies: ["UsageBilling", "UsageRouting", "UsageSpool"],
            path: "Sources/UsageReconciliation",
            swiftSettings: strict
        ),
        // The migration cockpit: the status page and the HTML reconciliation report.
        .target(
            name: "UsageCockpit",
            dependencies: ["UsageBilling", "UsageSpool", "UsageReconciliation"],
            path: "Sources/UsageCockpit",
            swiftSettings: strict
        ),
        // The emulator's server, fault injection and the protocol every provider's emulation
        // implements (SwiftNIO, loopback); no provider in it.
        .target(
            name: "UsageEmulatorCore",
            dependencies: ["UsageBilling", "LoopbackHTTP", "UsageRouting"],
            path: "Sources/UsageEmulatorCore",
            swiftSettings: strict
        ),
        // The emulator of every built-in provider: their emulations, registered.
        .target(
            name: "UsageEmulator",
            dependencies: ["UsageBilling", "UsageEmulatorCore", "UsageRouting"] + emulationModules,
            path: "Sources/UsageEmulator",
            swiftSettings: strict
        ),
        // The registry of every built-in provider: one line per provider.
        .target(
            name: "UsageBillingProviders",
            dependencies: ["UsageBilling", "UsageRouting"] + providerModules + doorModules,
            path: "Sources/UsageBillingProviders",
            swiftSettings: strict
        ),
        // `usage-billing serve`: HTTP ingest into the spool, with health and Prometheus metrics.
        .target(
            name: "UsageServe",
            dependencies: [
                "UsageBilling", "UsageRouting", "UsageSpool", "UsageCockpit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/UsageServe",
            swiftSettings: strict
        ),
        // The demo's orchestration: a config and events against the emulator, reconciled.
        .target(
            name: "UsageDemo",
            dependencies: [
                "UsageBilling", "UsageBillingCurl", "UsageBillingProviders", "UsageEmulator", "UsageReconciliation",
                "UsageRouting", "UsageSpool",
            ],
            path: "Sources/UsageDemo",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "usage-billing",
            dependencies: [
                "UsageServe", "UsageCockpit", "UsageDemo",
                "UsageBilling", "UsageBillingCurl", "UsageRouting", "UsageBillingProviders",
                "UsageSpool", "UsageEmulator",
                "UsageReconciliation",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
            ] + providerModules,
            path: "Sources/usage-billing",
            swiftSettings: strict
        ),
        .testTarget(
            name: "UsageBillingTests",
            dependencies: ["UsageTestSupport", "UsageBilling", "UsageBillingTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CurlTests",
            dependencies: ["UsageTestSupport", "UsageBilling", "UsageBillingCurl", "UsageBillingTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ConformanceTests",
            dependencies: [
                "UsageTestSupport", "UsageBilling", "UsageBillingTesting", "UsageRouting", "UsageBillingProviders",
            ]
                + providerModules,
            swiftSettings: strict
        ),
        .testTarget(
            name: "StripeTests",
            dependencies: ["UsageTestSupport", "UsageBilling", "UsageBillingTesting", "StripeUsage"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "RoutingTests",
            dependencies: [
                "UsageTestSupport",
                "UsageBilling", "UsageBillingTesting", "UsageBillingCurl", "UsageRouting", "UsageBillingProviders",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpoolTests",
            dependencies: [
                "UsageTestSupport",
                "UsageBilling", "UsageBillingTesting", "UsageBillingCurl", "UsageRouting", "UsageBillingProviders",
                "UsageSpool", "StripeUsage", "UsageEmulator",
                "usage-billing", .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EmulatorTests",
            dependencies: [
                "UsageTestSupport",
                "UsageBilling", "UsageBillingTesting", "UsageBillingCurl", "UsageEmulator", "UsageRouting",
                "UsageBillingProviders", "UsageSpool", "UsageReconciliation", "UsageDemo",
            ] + providerModules,
            swiftSettings: strict
        ),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "UsageTestSupport",
                "UsageBilling", "UsageBillingTesting", "UsageBillingCurl", "UsageEmulator", "StripeUsage", "UsageSpool",
                "UsageServe", "UsageRouting", "UsageBillingProviders", "usage-billing",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CockpitTests",
            dependencies: [
                "UsageTestSupport", "UsageBilling", "UsageBillingTesting", "UsageCockpit", "UsageReconciliation",
                "UsageSpool",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BatchProviderTests",
            dependencies: ["UsageTestSupport", "UsageBilling", "UsageBillingTesting"] + providerModules,
            swiftSettings: strict
        ),
    ]
        // Providers: one folder each, `<Name>Usage` (production, the core only) and
        // `<Name>Emulation` (its emulation, on the emulator's core; NIO stays out of production).
        + providers.map {
            .target(
                name: "\($0)Usage", dependencies: ["UsageBilling"], path: "Providers/\($0)/Sources",
                swiftSettings: strict)
        }
        + providers.map {
            .target(
                name: "\($0)Emulation", dependencies: ["UsageBilling", "UsageEmulatorCore"],
                path: "Providers/\($0)/Emulation", swiftSettings: strict)
        }
        + doors.map {
            .target(name: "\($0)Door", dependencies: ["UsageBilling"], path: "Doors/\($0)", swiftSettings: strict)
        }
)
