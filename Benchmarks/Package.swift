// swift-tools-version:6.1
import PackageDescription

/// The benchmarks, a package of their own (as SwiftNIO's and Hummingbird's are): building or
/// testing UsageBilling never builds them, and they use only its products.
///   swift run --package-path Benchmarks -c release usage-billing-bench --help
let package = Package(
    name: "UsageBillingBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "UsageBilling", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "usage-billing-bench",
            dependencies: [
                .product(name: "UsageBilling", package: "UsageBilling"),
                .product(name: "UsageBillingCurl", package: "UsageBilling"),
                .product(name: "UsageBillingProviders", package: "UsageBilling"),
                .product(name: "UsageRouting", package: "UsageBilling"),
                .product(name: "UsageSpool", package: "UsageBilling"),
                .product(name: "UsageEmulator", package: "UsageBilling"),
                .product(name: "UsageTestSupport", package: "UsageBilling"),
                .product(name: "CCurl", package: "UsageBilling"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/usage-billing-bench",
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
