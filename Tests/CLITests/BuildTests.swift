import Foundation
import Testing
import TestSupport

@Suite struct BuildTests {
    /// D1: one SQLite implementation per process, SQLCipher's.
    @Test(arguments: ["tosca-maint", "tosca-sim", "tosca-bench"])
    func binariesLinkSQLCipherAndNeverLibsqlite3(name: String) throws {
        let r = try run("/usr/bin/ldd", [executable(name)])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("libsqlcipher.so"))
        #expect(!r.stdout.contains("libsqlite3.so"), "\(r.stdout)")
    }

    /// The benchmark runs end to end (tiny counts; its timings are not checked here).
    @Test func benchmarkRunsAndPrintsRatios() throws {
        let dir = TempDir()
        let r = try run(executable("tosca-bench"), ["--events", "600", "--single-events", "20", "--samples", "5000", "--work-dir", dir.path])
        #expect(r.status == 0, "\(r.output)")
        for needle in ["sqlite3 CLI", "raw write()", "p50", "p99", "ratio"] { #expect(r.stdout.contains(needle), "\(needle) missing") }
    }

    /// The bundle benchmark runs its baselines (bsdtar, age, sha256sum) and prints ratios.
    @Test func bundleBenchmarkRunsAndPrintsRatios() throws {
        let dir = TempDir()
        let r = try run(executable("tosca-bench"), ["bundle", "--lines", "2000", "--media-mib", "1", "--sessions", "2", "--session-lines", "2000", "--session-media-mib", "1", "--runs", "1", "--no-drop-caches", "--latency-seconds", "1", "--work-dir", dir.path])
        #expect(r.status == 0, "\(r.output)")
        for needle in ["bundle (write, fsync, read back)", "encrypted bundle", "extract", "bundle size vs bsdtar", "while bundling"] {
            #expect(r.stdout.contains(needle), "\(needle) missing: \(r.stdout)")
        }
    }
}
