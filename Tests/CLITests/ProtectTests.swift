import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

/// After-session protection: the recorder's markers in spool/ended, `protect` (bundle,
/// session backup, export), what it sets aside, what `status` shows, and session backups
/// under retention.
@Suite struct ProtectTests {
    static func markers(_ data: String) -> [String] { listing(data + "/spool/ended").sorted() }

    /// A loopback restic REST server (rclone), started on a free port, for a repository
    /// that can go away and come back.
    final class Server: @unchecked Sendable {
        let port: Int
        let folder: String
        var process: Spawned?
        init(folder: String) {
            self.folder = folder
            port = Int.random(in: 20_000...40_000)
        }
        var location: String { "rest:http://127.0.0.1:\(port)/" }
        func start() throws {
            let rclone = try #require(which("rclone"), "rclone is needed (apt-get install rclone)")
            try AtomicFile.makeDirectory(folder)
            let p = try Spawned(rclone, ["serve", "restic", "--append-only", "--addr", "127.0.0.1:\(port)", folder])
            process = p
            // Up once it accepts a connection on its port.
            let up = waitUntil(timeout: 20) { Self.accepts(port: port) }
            guard up else { throw OracleError(message: "rclone serve restic did not start: \(p.currentStderr)") }
        }
        static func accepts(port: Int) -> Bool {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
        }
        func stop() {
            process?.signal(SIGTERM)
            _ = process?.wait()
            process = nil
        }
        deinit { stop() }
    }

    @Test func markerNamesAreSessionIDs() {
        #expect(SessionSpool.sessionID(ofMarker: "42") == 42)
        #expect(SessionSpool.sessionID(ofMarker: "9223372036854775807") == Int64.max)
        for bad in ["", "0", "042", "4 2", "42\n", "-1", "+1", "1e3", "٣", "99999999999999999999", ".42", "42.tmp"] {
            #expect(SessionSpool.sessionID(ofMarker: bad) == nil, "\(bad.debugDescription)")
        }
        #expect(SessionSpool.temporary(".42.1234.tmp")! == (42, 1234))
        #expect(SessionSpool.temporary(".42.tmp") == nil && SessionSpool.temporary(".042.1.tmp") == nil && SessionSpool.temporary(".42.-1.tmp") == nil)
    }

    /// Every way a recorded session ends leaves its marker, naming it, after its row is final.
    @Test func theRecorderDropsAMarkerWhenASessionEnds() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        #expect(Self.markers(data) == ["1", "2"])
        for id in [1, 2] {
            let m = try JSONDecoder().decode(SessionSpool.Marker.self, from: Data(contentsOf: URL(fileURLWithPath: data + "/spool/ended/\(id)")))
            #expect(m.sessionID == Int64(id) && m.status == "completed")
            #expect(try sqlite3Value(data + "/tosca.db", "SELECT status FROM sessions WHERE session_id = \(id)") == "completed")
        }
        // A recorder killed mid-session: the next one recovers the session as aborted, with its marker.
        let sim = try Spawned(executable("tosca-sim"), ["--data-dir", data, "--until-signal", "--seed", "5"])
        #expect(waitUntil(timeout: 20) { (try? sqlite3Value(data + "/tosca.db", "SELECT count(*) FROM sessions WHERE status = 'in_progress'")) == "1" })
        sim.signal(SIGKILL)
        _ = sim.wait()
        #expect(Self.markers(data) == ["1", "2"])
        try simulatedData(data, sessions: 1)
        #expect(Self.markers(data) == ["1", "2", "3", "4"])
        let recovered = try JSONDecoder().decode(SessionSpool.Marker.self, from: Data(contentsOf: URL(fileURLWithPath: data + "/spool/ended/3")))
        #expect(recovered.status == "aborted")
        #expect(try sqlite3Value(data + "/tosca.db", "SELECT status FROM sessions WHERE session_id = 3") == "aborted")
    }

    /// The issue's first test: a session ends, one protect run bundles and exports it, the
    /// data folder is deleted outright, and import from the repository brings back its
    /// rows (sqlite3 oracle), streams and media (SHA-256) byte for byte.
    @Test func aSessionThatEndsIsOffTheDiskAfterOneRunAndComesBack() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["protect", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(Self.markers(s.data).isEmpty)
        // The session: with media.
        let r = try run(executable("tosca-sim"), ["--data-dir", s.data, "--sessions", "1", "--duration", "0.5", "--media-mib", "2", "--seed", "11"])
        #expect(r.status == 0, "\(r.output)")
        #expect(Self.markers(s.data) == ["3"])
        let p = try maint(["protect", "--data-dir", s.data, "--json"] + s.repoArgs)
        #expect(p.status == 0, "\(p.output)")
        #expect(Self.markers(s.data).isEmpty)
        let out = try #require(try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any])
        #expect(out["protected"] as? [Int] == [3], "\(p.stdout)")
        #expect((out["backup"] as? String)?.hasSuffix("_session.db") == true && out["export_snapshot"] is String, "\(p.stdout)")
        #expect(listing(s.data + "/bundles").contains { $0.hasPrefix("session_3_") && $0.hasSuffix(".tar.zst") })
        // What session 3 is, by the stock tools.
        let rowsQuery = """
            SELECT session_id, subject_id, status, start_time, end_time, total_energy_joules FROM sessions WHERE session_id = 3;
            SELECT * FROM treatment_events WHERE session_id = 3 ORDER BY event_id;
            SELECT * FROM session_recordings WHERE session_id = 3 ORDER BY 1;
            """
        let rows = try sqlite3Value(s.data + "/tosca.db", rowsQuery)
        #expect(rows.split(separator: "\n").count > 10)
        let folder = try sqlite3Value(s.data + "/tosca.db", "SELECT session_folder_path FROM sessions WHERE session_id = 3")
        let files = filesUnder(s.data + "/" + folder)
        #expect(files.contains { $0.hasPrefix("media/") } && files.contains { $0.hasPrefix("streams/") }, "\(files)")
        let sums = try files.map { try stockSHA256(s.data + "/" + folder + "/" + $0) }
        // The disk dies: the data folder is gone.
        try FileManager.default.removeItem(atPath: s.data)
        let i = try maint(["import", "--extract-sessions", "--data-dir", s.data] + s.repoArgs)
        #expect(i.status == 0, "\(i.output)")
        #expect(try sqlite3Value(s.data + "/tosca.db", rowsQuery) == rows)
        #expect(filesUnder(s.data + "/" + folder) == files)
        for (f, sum) in zip(files, sums) { #expect(try stockSHA256(s.data + "/" + folder + "/" + f) == sum, "\(f)") }
    }

    /// The repository unreachable: the marker stays, status reports the session, the runs
    /// exit 75 twice and 1 the third time (the unit's alert); the server back, the next
    /// run clears it.
    @Test func anUnreachableRepositoryKeepsTheMarkerUntilItIsBack() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        let server = Server(folder: s.dir.sub("served"))
        try server.start()
        let remote = ["--repo", server.location, "--password-file", s.password, "--cache-dir", s.cache]
        #expect(try maint(["export", "init", "--data-dir", s.data] + remote).status == 0)
        server.stop()
        #expect(Self.markers(s.data) == ["1", "2"])
        var codes: [Int32] = []
        for _ in 0..<4 {
            let p = try maint(["protect", "--data-dir", s.data] + remote)
            codes.append(p.status)
            #expect(p.stdout.contains("NOT protected session 1"), "\(p.output)")
        }
        // The alert fires once a streak: on the third run, not on every run after it.
        #expect(codes == [75, 75, 1, 75])
        #expect(Self.markers(s.data) == ["1", "2"])
        // The bundles and the session backup were made: only the export is missing.
        #expect(listing(s.data + "/bundles").filter { $0.hasSuffix(".tar.zst") }.count == 2)
        let st = try maint(["status", "--data-dir", s.data, "--json", "--max-unprotected-age", "1s"], environment: ["TOSCA_EXPORT_REPO": server.location])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(st.stdout.utf8)) as? [String: Any])
        #expect(json["unprotected_sessions"] as? Int == 2 && json["oldest_unprotected_session"] as? Int == 1, "\(st.stdout)")
        let text = try maint(["status", "--data-dir", s.data], environment: ["TOSCA_EXPORT_REPO": server.location])
        #expect(text.stdout.contains("Unprotected   2 finished session(s) not yet off the disk, the oldest session 1"), "\(text.stdout)")
        sleep(2)
        let stale = try maint(["status", "--data-dir", s.data, "--max-unprotected-age", "1s"])
        #expect(stale.status == 1 && stale.stdout.contains("session 1 ended"), "\(stale.output)")
        // Back: the next run exports and clears both markers.
        try server.start()
        let p = try maint(["protect", "--data-dir", s.data] + remote)
        #expect(p.status == 0, "\(p.output)")
        #expect(Self.markers(s.data).isEmpty)
        let state = try String(contentsOfFile: s.data + "/spool/protect.json", encoding: .utf8)
        #expect(state.contains("\"consecutive_failures\":0"), "\(state)")
        let prom = s.dir.sub("tosca.prom")
        _ = try maint(["status", "--data-dir", s.data, "--prometheus", prom])
        let figures = try String(contentsOfFile: prom, encoding: .utf8)
        #expect(figures.contains("tosca_unprotected_sessions 0\n") && figures.contains("tosca_oldest_unprotected_session_age_seconds 0\n"), "\(figures)")
    }

    /// A marker of an unknown session, of one in progress, and spool entries that are no
    /// markers at all: each set aside and named (65), nothing else touched.
    @Test func hostileSpoolEntriesAreSetAsideAndNothingElseIsTouched() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["protect", "--data-dir", data]).status == 0)
        // A session in progress (a recorder running).
        let sim = try Spawned(executable("tosca-sim"), ["--data-dir", data, "--until-signal", "--seed", "5"])
        defer { sim.signal(SIGTERM); _ = sim.wait() }
        #expect(waitUntil(timeout: 20) { (try? sqlite3Value(data + "/tosca.db", "SELECT count(*) FROM sessions WHERE status = 'in_progress'")) == "1" })
        let spool = data + "/spool/ended"
        let outside = dir.sub("outside")
        try "not yours\n".write(toFile: outside, atomically: true, encoding: .utf8)
        try "{}\n".write(toFile: spool + "/77", atomically: true, encoding: .utf8)            // no such session
        try "{}\n".write(toFile: spool + "/2", atomically: true, encoding: .utf8)             // in progress
        try "x".write(toFile: spool + "/bad name", atomically: true, encoding: .utf8)
        try "x".write(toFile: spool + "/007", atomically: true, encoding: .utf8)
        try "x".write(toFile: spool + "/line\nbreak", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: spool + "/1", withDestinationPath: outside)
        try FileManager.default.createDirectory(atPath: spool + "/5", withIntermediateDirectories: false)
        #expect(mkfifo(spool + "/6", 0o600) == 0)
        #expect(FileManager.default.createFile(atPath: spool + "/8", contents: Data(repeating: 65, count: 5000)))
        // Temporary names: a folder is no marker being written; an old file of a live pid
        // (pid 1) is no writer's either: published as the marker of session 9, which is unknown.
        try FileManager.default.createDirectory(atPath: spool + "/.3.1.tmp", withIntermediateDirectories: false)
        #expect(FileManager.default.createFile(atPath: spool + "/.9.1.tmp", contents: Data()))
        var old = [timespec(tv_sec: time(nil) - 600, tv_nsec: 0), timespec(tv_sec: time(nil) - 600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, spool + "/.9.1.tmp", &old, 0) == 0)
        // A name that is not UTF-8 (Foundation's listing leaves it out): found all the same.
        let notUTF8 = Array((spool + "/").utf8) + [0xff, 0xfe, 0x39, 0]
        let fd = notUTF8.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_EXCL, 0o600) } }
        #expect(fd >= 0)
        close(fd)
        let before = [listing(data + "/backups"), listing(data + "/bundles"), listing(data + "/exports")]
        let p = try maint(["protect", "--data-dir", data])
        #expect(p.status == 65, "\(p.output)")
        for name in ["77", "2", "bad name", "007", "line\\x0abreak", "1", "5", "6", "8", "\\xff\\xfe9", ".3.1.tmp", "9"] {
            #expect(p.stdout.contains("set aside spool/ended/\(name) "), "\(name): \(p.stdout)")
        }
        #expect(p.stdout.contains("no session 77") && p.stdout.contains("session 2 is still in progress"), "\(p.stdout)")
        #expect(Self.markers(data).isEmpty)
        #expect(listing(data + "/spool/set-aside").count == 12)
        #expect(try SessionSpool.rawNames(spool).isEmpty)
        // Nothing else: no copy, no bundle, no export; the link's target untouched.
        #expect([listing(data + "/backups"), listing(data + "/bundles"), listing(data + "/exports")] == before)
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "not yours\n")
        // Status counts them; a second run has nothing to do.
        let st = try maint(["status", "--data-dir", data, "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(st.stdout.utf8)) as? [String: Any])?["set_aside_spool_entries"] as? Int == 12, "\(st.stdout)")
        #expect(try maint(["protect", "--data-dir", data]).status == 0)
    }

    /// A marker whose writer died before renaming it is published and protected; one whose
    /// writer lives is left alone.
    @Test func halfWrittenMarkersOfDeadWritersAreTaken() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        let spool = data + "/spool/ended"
        unlink(spool + "/1")
        unlink(spool + "/2")
        // Session 1's writer is gone (a pid that cannot be alive), session 2's is this test.
        FileManager.default.createFile(atPath: spool + "/.1.2147483646.tmp", contents: Data())
        FileManager.default.createFile(atPath: spool + "/.2.\(getpid()).tmp", contents: Data())
        let p = try maint(["protect", "--data-dir", data])
        #expect(p.status == 0 && p.stdout.contains("protected session 1") && !p.stdout.contains("session 2"), "\(p.output)")
        #expect(Self.markers(data) == [".2.\(getpid()).tmp"])
    }

    /// A live safety log that no longer extends the last backup: protect publishes no copy
    /// (a run every 5 minutes would fill the disk with suspect copies) and fails at once
    /// (65); the marker stays.
    @Test func noSessionCopyOfATamperedDatabase() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["protect", "--data-dir", data]).status == 0)
        try simulatedData(data, sessions: 1)
        try sqlite3Value(data + "/tosca.db", """
            DROP TRIGGER safety_log_no_delete;
            DELETE FROM safety_log WHERE seq > 2;
            """)
        let copies = listing(data + "/backups").filter { $0.hasSuffix(".db") }
        for expected: Int32 in [65, 75] {
            let p = try maint(["protect", "--data-dir", data])
            #expect(p.status == expected && p.stdout.contains("NOT protected session 2"), "\(p.output)")
        }
        #expect(listing(data + "/backups").filter { $0.hasSuffix(".db") } == copies)
        #expect(Self.markers(data) == ["2"])
    }

    /// Bad input: clear errors, distinct codes, nothing written.
    @Test func badInputGivesUsageErrors() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        #expect(try maint(["protect", "--data-dir", data]).status == 66)
        try simulatedData(data, sessions: 1)
        #expect(try maint(["protect", "--data-dir", data, "--min-interval", "-1"]).status == 64)
        #expect(try maint(["protect", "--data-dir", data, "--failures-before-alert", "0"]).status == 64)
        #expect(try maint(["protect", "--data-dir", data, "--min-interval", "90000"]).status == 64)
        #expect(try maint(["status", "--data-dir", data, "--max-unprotected-age", "15"]).status == 64)
        #expect(Self.markers(data) == ["1"])
        #expect(listing(data + "/backups").filter { $0.hasSuffix(".db") }.isEmpty)
        // A symbolic link for spool/ended: 73, never followed.
        try FileManager.default.moveItem(atPath: data + "/spool/ended", toPath: dir.sub("elsewhere"))
        try FileManager.default.createSymbolicLink(atPath: data + "/spool/ended", withDestinationPath: dir.sub("elsewhere"))
        let l = try maint(["protect", "--data-dir", data])
        #expect(l.status == 73, "\(l.output)")
        #expect(listing(dir.sub("elsewhere")) == ["1"])
    }

    /// Runs start at least --min-interval apart: the second waits out the rest.
    @Test func runsStartAtLeastTheMinimumIntervalApart() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["protect", "--data-dir", data, "--min-interval", "3"]).status == 0)
        let t0 = Date()
        let second = try maint(["protect", "--data-dir", data, "--min-interval", "3"])
        #expect(second.status == 0 && second.stderr.contains("waiting"), "\(second.output)")
        #expect(Date().timeIntervalSince(t0) >= 2)
    }

    /// Session backups are thinned like dailies (the newest of each day) and never kept in
    /// greater number than the other backups.
    @Test func sessionBackupsNeverOutnumberTheOtherBackups() throws {
        let utc = TimeZone(identifier: "UTC")!
        let now = UTCTime(iso8601: "2026-11-30T20:00:00Z")!
        func entry(_ name: String, _ kind: CopyKind, hoursAgo: Double) -> CatalogEntry {
            let t = UTCTime(seconds: now.seconds - Int64(hoursAgo * 3600), microseconds: 0)
            let facts = ManifestFacts(kind: kind, createdUTC: t.iso8601, sourcePath: "/x/tosca.db", toolVersion: "t", fileName: name,
                                      sha256: "", sizeBytes: 0, pageSize: 4096, pageCount: 1, schemaVersion: 7, schema: "s", rowCounts: [:],
                                      foreignKeyViolations: 0, chainHead: nil, encryption: .none, unverifiable: nil, reason: nil,
                                      fromVersion: nil, toVersion: nil, digest: "")
            return CatalogEntry(name: name, path: "/x/backups/" + name,
                                manifest: Manifest(facts: facts, checks: [ManifestCheck(level: "backup", time: t, ok: true, problems: [])]),
                                digestMatches: true, manifestError: nil)
        }
        // Two dailies; session copies: three today, two yesterday, one on each of three older days.
        var entries = [entry("d1", .daily, hoursAgo: 40), entry("d2", .daily, hoursAgo: 16)]
        for (i, h) in [1.0, 3, 5, 21, 23, 50, 74, 98].enumerated() { entries.append(entry("s\(i)", .session, hoursAgo: h)) }
        entries.sort { ($0.created?.seconds ?? 0) < ($1.created?.seconds ?? 0) }
        let catalog = Catalog(folder: DataFolder(root: "/x"), entries: entries, orphans: [], orphanManifests: [], partials: [], quarantined: [])
        let plan = PrunePlan.make(catalog: catalog, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, safetyCopiesOlderThanDays: nil, now: now, timeZone: utc)
        let keptSessions = plan.keep.filter { $0.entry.kind == .session }.map(\.entry.name)
        // The newest (also the newest verified backup) and yesterday's newest: as many as the dailies.
        #expect(keptSessions == ["s0", "s3"], "\(plan.keep.map { "\($0.entry.name): \($0.reason)" })")
        #expect(Set(plan.keep.filter { $0.entry.kind == .daily }.map(\.entry.name)) == ["d1", "d2"])
        #expect(plan.remove.allSatisfy { $0.entry.kind == .session } && plan.remove.count == 6)
        // With no other backup, only the newest verified one stays.
        let alone = Catalog(folder: DataFolder(root: "/x"), entries: entries.filter { $0.kind == .session }, orphans: [], orphanManifests: [], partials: [], quarantined: [])
        let p2 = PrunePlan.make(catalog: alone, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, safetyCopiesOlderThanDays: nil, now: now, timeZone: utc)
        #expect(p2.keep.map(\.entry.name) == ["s0"])
    }
}
