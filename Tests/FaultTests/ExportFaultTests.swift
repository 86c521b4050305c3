import Foundation
import Testing
import TestSupport
import ToscaCore

/// `export` killed with SIGKILL at random moments: nothing is recorded as exported unless
/// the export finished, restic dies with it, and a re-run completes with a sound repository.
@Suite struct ExportFaultTests {
    @Test func sigkillDuringExportRecordsNothingAndTheNextRunCompletes() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        // How long one export takes here, so the kills land inside one.
        let t0 = Date()
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.2)
        func records() -> [String] { listing(s.data + "/exports").filter { $0.hasSuffix(".manifest.json") } }
        for trial in 0..<6 {
            let before = records().count
            let p = try Spawned(executable("tosca-maint"), ["export", "--data-dir", s.data] + s.repoArgs)
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...(duration * 0.9)))
            let children = Self.children(of: p.pid)
            p.signal(SIGKILL)
            let r = p.wait()
            // restic dies with it (pdeathsig) and is reaped by init: until then its lock
            // looks held (a zombie answers kill(pid, 0)), as restic sees it; the service
            // manager reaps at once on a device.
            for child in children {
                #expect(waitUntil(timeout: 30) { !FileManager.default.fileExists(atPath: "/proc/\(child)") }, "trial \(trial): restic \(child) outlived its export")
            }
            let after = records().count
            if r.status == 137 {
                // Killed: at most the one record of an export that had already finished.
                #expect(after - before <= 1, "trial \(trial)")
            } else {
                #expect(r.status == 0 && after == before + 1, "trial \(trial): \(r.output)")
            }
        }
        // A re-run completes (a stale lock is removed), and restic finds the repository sound.
        let again = try maint(["export", "--data-dir", s.data] + s.repoArgs)
        #expect(again.status == 0, "\(again.output)")
        let check = try s.restic(["check", "--read-data"])
        #expect(check.status == 0, "\(check.output)")
        // Every recorded export names a snapshot restic has.
        let snaps = try s.restic(["snapshots", "--json"]).stdout
        for name in records() {
            let text = try String(contentsOfFile: s.data + "/exports/" + name, encoding: .utf8)
            let id = try #require(text.range(of: "\"snapshot_id\" : \"").map { String(text[$0.upperBound...].prefix(64)) })
            #expect(snaps.contains(id), "\(name) names \(id), which restic does not list")
        }
    }

    /// The processes whose parent is `pid` (from /proc/<pid>/stat).
    static func children(of pid: Int32) -> [Int32] {
        listing("/proc").compactMap { Int32($0) }.filter { p in
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }
    }
}
