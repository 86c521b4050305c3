import Foundation
import Testing
import TestSupport
import ToscaCore
import ToscaMaint

/// `protect` killed with SIGKILL at random moments: a marker is never gone for a session
/// whose bundle and export are not verified, and a re-run finishes.
@Suite struct ProtectFaultTests {
    @Test func sigkillDuringProtectNeverRemovesAMarkerOfAnUnprotectedSession() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        func markers() -> Set<String> { Set(listing(s.data + "/spool/ended")) }
        func newSession(seed: Int) throws {
            let r = try run(executable("tosca-sim"), ["--data-dir", s.data, "--sessions", "1", "--duration", "0.2", "--media-mib", "1", "--seed", "\(seed)"])
            guard r.status == 0 else { throw OracleError(message: "tosca-sim: \(r.output)") }
        }
        let first = try maint(["protect", "--data-dir", s.data] + s.repoArgs)
        #expect(first.status == 0, "\(first.output)")
        #expect(markers().isEmpty)
        // How long one run of one session takes here (the first export is heavier), so
        // the kills land inside one.
        try newSession(seed: 19)
        let t0 = Date()
        let timed = try maint(["protect", "--data-dir", s.data] + s.repoArgs)
        #expect(timed.status == 0, "\(timed.output)")
        let duration = max(Date().timeIntervalSince(t0), 0.5)
        /// Proof, from the files and the repository themselves, that session `id` is protected:
        /// its bundle matches its sidecar, and a recorded export holds that bundle and a
        /// database copy (restored from restic) in which the session is finished.
        func proven(_ id: Int) throws -> String? {
            guard let bundle = listing(s.data + "/bundles").first(where: { $0.hasPrefix("session_\(id)_") && !$0.hasSuffix(".manifest.json") }) else { return "no bundle" }
            let sidecar = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s.data + "/bundles/" + bundle + ".manifest.json"))) as? [String: Any]
            let sha = try stockSHA256(s.data + "/bundles/" + bundle)
            guard sidecar?["sha256"] as? String == sha else { return "bundle differs from its sidecar" }
            for record in listing(s.data + "/exports").filter({ $0.hasSuffix(".manifest.json") }).sorted().reversed() {
                let m = try JSONDecoder().decode(ExportManifest.self, from: Data(contentsOf: URL(fileURLWithPath: s.data + "/exports/" + record)))
                guard let snapshot = m.snapshotID, m.files.contains(where: { $0.path == "bundles/" + bundle && $0.sha256 == sha }) else { continue }
                let target = s.dir.sub("restored-\(id)-\(UInt32.random(in: 0...UInt32.max))")
                let d = try s.restic(["restore", snapshot, "--target", target, "--include", "/tosca-export/" + m.databaseCopy])
                guard d.status == 0 else { return "restic restore: \(d.output)" }
                defer { try? FileManager.default.removeItem(atPath: target) }
                let dumped = target + "/tosca-export/" + m.databaseCopy
                let status = try sqlite3Value(dumped, "SELECT status FROM sessions WHERE session_id = \(id)")
                return ["completed", "aborted"].contains(status) ? nil : "the exported copy has session \(id) as '\(status)'"
            }
            return "no recorded export holds its bundle"
        }
        /// A re-run, as the unit retries: a restic spawned just before the kill may still be
        /// a zombie holding its repository lock for a moment (75, the markers kept); then
        /// the next run finishes.
        func rerun() throws -> ProcessResult {
            var r = try maint(["protect", "--data-dir", s.data] + s.repoArgs)
            for _ in 0..<3 where r.status == 75 && r.stdout.contains("locked by another restic run") {
                sleep(5)
                r = try maint(["protect", "--data-dir", s.data] + s.repoArgs)
            }
            return r
        }
        for trial in 0..<6 {
            try newSession(seed: 20 + trial)
            let waiting = markers()
            #expect(!waiting.isEmpty)
            let p = try Spawned(executable("tosca-maint"), ["protect", "--data-dir", s.data] + s.repoArgs)
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...(duration * 0.9)))
            let children = ExportFaultTests.children(of: p.pid)
            p.signal(SIGKILL)
            let r = p.wait()
            #expect(r.status == 137 || r.status == 0, "trial \(trial): \(r.output)")
            // Every marker that went belongs to a session proven protected.
            for gone in waiting.subtracting(markers()) {
                let id = try #require(Int(gone), "trial \(trial): \(gone)")
                let problem = try proven(id)
                #expect(problem == nil, "trial \(trial): session \(id)'s marker is gone: \(problem ?? "")")
            }
            // restic dies with protect, and is reaped by init: until then its lock looks
            // held (a zombie answers kill(pid, 0)), as restic sees it (as in ExportFaultTests).
            for child in children {
                #expect(waitUntil(timeout: 30) { !FileManager.default.fileExists(atPath: "/proc/\(child)") }, "trial \(trial): restic \(child) outlived protect")
            }
            if trial % 2 == 1 {
                let again = try rerun()
                #expect(again.status == 0, "trial \(trial): \(again.output)")
                #expect(markers().isEmpty, "trial \(trial)")
            }
        }
        let again = try rerun()
        #expect(again.status == 0, "\(again.output)")
        #expect(markers().isEmpty)
        for id in 1...9 { #expect(try proven(id) == nil, "session \(id)") }
        let check = try s.restic(["check", "--read-data"])
        #expect(check.status == 0, "\(check.output)")
    }
}
