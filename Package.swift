// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "tosca-maint",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "ToscaCore", targets: ["ToscaCore"]),
        .library(name: "ToscaMaint", targets: ["ToscaMaint"]),
        .executable(name: "tosca-maint", targets: ["tosca-maint"]),
        .executable(name: "tosca-sim", targets: ["tosca-sim"]),
        .executable(name: "tosca-bench", targets: ["tosca-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // D1: SQLCipher 4.6 is the only SQLite in every binary; never libsqlite3.
        .systemLibrary(name: "CSQLCipher", pkgConfig: "sqlcipher",
                       providers: [.apt(["libsqlcipher-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive",
                       providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd",
                       providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CLinux"),
        // fork + exec of restic without Foundation's Process (its run loop).
        .target(name: "CSpawn"),
        .target(name: "ToscaCore", dependencies: [
            "CSQLCipher", "CLinux",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Session bundles (D17): the only target that links libarchive.
        .target(name: "ToscaBundle", dependencies: [
            "ToscaCore", "CArchive",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "ToscaMaint", dependencies: [
            "ToscaCore", "ToscaBundle", "CSystemd", "CSpawn",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .executableTarget(name: "tosca-maint", dependencies: [
            "ToscaCore", "ToscaMaint", "ToscaBundle",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "tosca-sim", dependencies: [
            "ToscaCore", "ToscaMaint",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "tosca-bench", dependencies: [
            "ToscaCore", "ToscaMaint",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "TestSupport", dependencies: ["ToscaCore"], path: "Tests/TestSupport"),
        .testTarget(name: "ToscaCoreTests", dependencies: ["ToscaCore", "ToscaMaint", "TestSupport"],
                    path: "Tests/ToscaCoreTests"),
        .testTarget(name: "CLITests", dependencies: ["ToscaCore", "ToscaMaint", "ToscaBundle", "TestSupport"],
                    path: "Tests/CLITests"),
        .testTarget(name: "FaultTests", dependencies: ["ToscaCore", "ToscaMaint", "TestSupport"],
                    path: "Tests/FaultTests"),
    ],
    swiftLanguageModes: [.v6]
)
