import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

/// `export` and `import` (D19) with the real restic on real repositories; restic itself,
/// sqlite3 and sha256 sums are the oracles.
@Suite(.serialized) struct ExportTests {
    typealias Setup = ExportSetup
    static func setup() throws -> Setup { try ExportSetup.make() }
    static func cleanup(_ s: Setup) { s.cleanup() }
    static func restic(_ s: Setup, _ args: [String]) throws -> ProcessResult { try s.restic(args) }

    /// `verify --live` on the device passes; against the repository it gives 65, saying `why`.
    static func expectOnlyTheRepositoryCatches(_ s: Setup, _ why: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let local = try maint(["verify", "--live", "--data-dir", s.data])
        #expect(local.status == 0, "the device alone sees nothing: \(local.output)", sourceLocation: sourceLocation)
        let off = try maint(["verify", "--live", "--data-dir", s.data] + s.repoArgs)
        #expect(off.status == 65 && off.stdout.contains(why), "\(off.output)", sourceLocation: sourceLocation)
    }

    @Test func exportThenImportGivesEveryFileBackByteForByte() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        let initialized = try maint(["export", "init", "--data-dir", s.data] + s.repoArgs)
        #expect(initialized.status == 0, "\(initialized.output)")
        // A second copy: the export takes the newest, and the older one's manifest only.
        let older = try #require(listing(s.data + "/backups").first { $0.hasSuffix(".db") })
        #expect(try maint(["backup", "--data-dir", s.data]).status == 0)
        let e = try maint(["export", "--data-dir", s.data] + s.repoArgs)
        #expect(e.status == 0, "\(e.output)")
        // restic sees one snapshot, our host and tag.
        let snaps = try Self.restic(s, ["snapshots", "--json"])
        let list = try #require(try JSONSerialization.jsonObject(with: Data(snaps.stdout.utf8)) as? [[String: Any]])
        #expect(list.count == 1)
        #expect((list.first?["tags"] as? [String]) == ["tosca-export"])
        #expect((list.first?["hostname"] as? String)?.isEmpty == false)
        // The export is recorded, with its snapshot and its checks.
        let records = listing(s.data + "/exports").filter { $0.hasSuffix(".manifest.json") }
        #expect(records.count == 1, "\(listing(s.data + "/exports"))")
        let record = try String(contentsOfFile: s.data + "/exports/" + (records.first ?? ""), encoding: .utf8)
        #expect(record.contains("\"snapshot_id\"") && record.contains("export drill"), "\(record)")
        #expect(!record.contains("correct horse"))

        // Import into a new folder: the copy, the bundles and the session folders come back.
        // The staging folder of an import that was killed there is removed first.
        let new = s.dir.sub("new")
        try AtomicFile.makeDirectory(new + "/.import-1")
        FileManager.default.createFile(atPath: new + "/.import-1/left", contents: Data("x".utf8))
        let i = try maint(["import", "--extract-sessions", "--data-dir", new] + s.repoArgs)
        #expect(i.status == 0, "\(i.output)")
        #expect(!listing(new).contains { $0.hasPrefix(".import-") }, "\(listing(new))")
        let newest = try #require(listing(s.data + "/backups").last { $0.hasSuffix(".db") && $0 != older })
        for n in [newest] + listing(s.data + "/bundles").map({ "../bundles/" + $0 }) {
            #expect(try stockSHA256(s.data + "/backups/" + n) == (try stockSHA256(new + "/backups/" + n)), "\(n)")
        }
        // The older copy's manifest is kept as history, not in backups/ where it would stand
        // for a lost copy: the new folder's catalog passes its checks (a backup succeeds).
        #expect(!listing(new + "/backups").contains { $0.hasPrefix(older) }, "\(listing(new + "/backups"))")
        let history = filesUnder(new + "/exports/imported")
        #expect(history.count == 1 && history.first?.hasSuffix("/" + older + ".manifest.json") == true, "\(history)")
        let sessionFiles = filesUnder(s.data + "/sessions")
        #expect(!sessionFiles.isEmpty)
        for rel in sessionFiles {
            #expect(try stockSHA256(s.data + "/sessions/" + rel) == (try stockSHA256(new + "/sessions/" + rel)), "\(rel)")
        }
        // The database: WAL mode, the same sessions and events (sqlite3 as the oracle),
        // and verify --live finds its anchor.
        #expect(try sqlite3Value(new + "/tosca.db", "PRAGMA journal_mode") == "wal")
        for table in ["sessions", "treatment_events", "safety_log"] {
            let q = "SELECT count(*) FROM \(table) WHERE \(table == "safety_log" ? "event_type <> 'maintenance'" : "1")"
            #expect(try sqlite3Value(new + "/tosca.db", q) == (try sqlite3Value(s.data + "/tosca.db", q)), "\(table)")
        }
        let live = try maint(["verify", "--live", "--data-dir", new])
        #expect(live.status == 0, "\(live.output)")
        let next = try maint(["backup", "--data-dir", new])
        #expect(next.status == 0, "\(next.output)")
        // Never into a data folder that holds a database.
        let again = try maint(["import", "--data-dir", new] + s.repoArgs)
        #expect(again.status == 73, "\(again.output)")
    }

    @Test func repositoryFailuresHaveTheirOwnExitCodes() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        // No repository yet: 66 with the init hint.
        let missing = try maint(["export", "--data-dir", s.data] + s.repoArgs)
        #expect(missing.status == 66 && missing.stderr.contains("export init"), "\(missing.output)")
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        // Wrong password: 77.
        let wrong = s.dir.sub("wrong-pass")
        try "not the password\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        chmod(wrong, 0o600)
        var args = s.repoArgs
        args[args.firstIndex(of: s.password)!] = wrong
        let w = try maint(["export", "--data-dir", s.data] + args)
        #expect(w.status == 77, "\(w.output)")
        // A password file others can read: 77, restic never started.
        chmod(wrong, 0o644)
        #expect(try maint(["export", "--data-dir", s.data] + args).status == 77)
        // A server that is down: 75, never the init hint.
        let down = try maint(["export", "--data-dir", s.data, "--repo", "rest:http://127.0.0.1:9/", "--password-file", s.password, "--cache-dir", s.cache])
        #expect(down.status == 75 && !down.stderr.contains("export init"), "\(down.output)")
        // restic absent from PATH: 78 naming the package.
        let noRestic = try maint(["export", "--data-dir", s.data] + s.repoArgs, environment: ["PATH": "/nonexistent"])
        #expect(noRestic.status == 78 && noRestic.stderr.contains("restic"), "\(noRestic.output)")
        // A repository on the data folder's own filesystem: 78, unless allowed for tests.
        let same = try maint(["export", "init", "--data-dir", s.data, "--repo", s.dir.sub("same"), "--password-file", s.password])
        #expect(same.status == 78 && same.stderr.contains("not an off-device copy"), "\(same.output)")
        // A drive that is not mounted: 66.
        let absent = try maint(["export", "--data-dir", s.data, "--repo", "/nonexistent-drive/repo", "--password-file", s.password])
        #expect(absent.status == 66 && absent.stderr.contains("mounted"), "\(absent.output)")
        // Nothing was recorded as exported.
        #expect(listing(s.data + "/exports").filter { $0.hasSuffix(".manifest.json") }.isEmpty)
    }

    @Test func aFlippedByteInAPackIsFoundByTheFullCheck() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["export", "check", "--read-data", "--data-dir", s.data] + s.repoArgs).status == 0)
        // The largest pack holds the database copy's data: one byte flipped in its middle.
        let packs = filesUnder(s.repo + "/data").map { s.repo + "/data/" + $0 }
        let pack = try #require(packs.max { fileSize($0) < fileSize($1) })
        chmod(pack, 0o600)
        try flipByte(pack, at: UInt64(fileSize(pack) / 2))
        let c = try maint(["export", "check", "--read-data", "--data-dir", s.data] + s.repoArgs)
        #expect(c.status == 65 && c.stderr.contains("found damage"), "\(c.output)")
    }

    /// A second export reads again only what changed: a file whose device, inode, size and
    /// mtime are those of the last verified export keeps its hash, and restic (given that
    /// export as its parent) keeps its blobs, so what export.json says is always what the
    /// snapshot holds, even for a byte changed under a forged mtime (the local damage is
    /// `bundle verify`'s to find). A bundle changed with a new mtime is hashed again and
    /// refused (65).
    @Test func aSecondExportSkipsUnchangedFilesAndStillSaysWhatTheSnapshotHolds() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        let bundle = try #require(listing(s.data + "/bundles").first { $0.hasSuffix(".tar.zst") })
        let path = s.data + "/bundles/" + bundle
        let original = try stockSHA256(path)
        // One byte changed, the mtime put back: the same identity as at the last export.
        var st = stat()
        stat(path, &st)
        chmod(path, 0o600)
        try flipByte(path, at: UInt64(fileSize(path) / 2))
        var times = [st.st_atim, st.st_mtim]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        let second = try maint(["export", "--data-dir", s.data] + s.repoArgs)
        #expect(second.status == 0 && second.stderr.contains("hashing 0 of"), "\(second.output)")
        let dumped = try Self.restic(s, ["dump", "latest", "/tosca-export/export.json"])
        let exported = try JSONDecoder().decode(ExportManifest.self, from: Data(dumped.stdout.utf8))
        #expect(exported.files.first { $0.path == "bundles/" + bundle }?.sha256 == original)
        let restored = s.dir.sub("restored")
        #expect(try Self.restic(s, ["restore", "latest", "--target", restored, "--include", "/tosca-export/bundles/" + bundle]).status == 0)
        #expect(try stockSHA256(restored + "/tosca-export/bundles/" + bundle) == original, "the snapshot holds what export.json says")
        #expect(try maint(["bundle", "verify", "--all", "--data-dir", s.data]).status == 65, "the local damage is found locally")
        // A new mtime: hashed again, and the damage refused.
        #expect(utimensat(AT_FDCWD, path, nil, 0) == 0)
        let third = try maint(["export", "--data-dir", s.data] + s.repoArgs)
        #expect(third.status == 65 && third.stderr.contains("no longer matches its sidecar"), "\(third.output)")
    }

    /// A relative repository (and cache) folder is the one in the current folder, although
    /// restic runs in the export's staging folder.
    @Test func aRelativeRepositoryFolderIsTakenFromTheCurrentFolder() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        func inRepoParent(_ args: [String]) throws -> ProcessResult {
            try run("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", PathName.parent(s.repo), executable("tosca-maint")] + args)
        }
        let rel = ["--repo", PathName.name(s.repo), "--password-file", s.password, "--cache-dir", "cache-rel"] + (s.sameDevice ? ["--allow-same-device"] : [])
        let i = try inRepoParent(["export", "init", "--data-dir", s.data] + rel)
        #expect(i.status == 0, "\(i.output)")
        let e = try inRepoParent(["export", "--data-dir", s.data] + rel)
        #expect(e.status == 0, "\(e.output)")
        #expect(try Self.restic(s, ["snapshots", "--json"]).stdout.contains("tosca-export"))
        #expect(FileManager.default.fileExists(atPath: PathName.parent(s.repo) + "/cache-rel"))
        #expect(!FileManager.default.fileExists(atPath: s.data + "/exports/.stage"))
    }

    /// The rotating subsets: one byte flipped in a pack that no export drill of this device
    /// restores (it holds another device's export, in the same repository) is found by
    /// this device's exports, through their own `check --read-data-subset=N/T`, within T
    /// exports: that export gives 65 and is not recorded; the ones before it pass.
    @Test func theRotatingSubsetsFindAFlippedByteWithinTExports() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        // The other device: one session with 12 MiB of media, exported first.
        let other = s.dir.sub("other")
        let sim = try run(executable("tosca-sim"), ["--data-dir", other, "--sessions", "1", "--duration", "0.2", "--media-mib", "12", "--seed", "7"])
        #expect(sim.status == 0, "\(sim.output)")
        #expect(try maint(["backup", "--data-dir", other]).status == 0)
        #expect(try maint(["bundle", "--data-dir", other]).status == 0)
        let theirs = try maint(["export", "--data-dir", other] + s.repoArgs)
        #expect(theirs.status == 0, "\(theirs.output)")
        let packs = filesUnder(s.repo + "/data").map { s.repo + "/data/" + $0 }
        let pack = try #require(packs.max { fileSize($0) < fileSize($1) })
        let held = try Self.restic(s, ["find", "--pack", PathName.name(pack)]).stdout
        #expect(held.contains("session_1_"), "the largest pack holds the other device's bundle: \(held)")
        chmod(pack, 0o600)
        try flipByte(pack, at: UInt64(fileSize(pack) / 2))
        // This device's exports, T subsets: one of the first T finds the damage.
        let t = 4
        func records() -> [String] { listing(s.data + "/exports").filter { $0.hasSuffix(".manifest.json") } }
        var statuses: [Int32] = []
        for _ in 1...t {
            let e = try maint(["export", "--subsets", "\(t)", "--data-dir", s.data] + s.repoArgs)
            statuses.append(e.status)
            if e.status != 0 {
                #expect(e.status == 65 && e.stderr.contains("restic check found damage"), "\(e.output)")
                break
            }
        }
        #expect(statuses.last == 65, "\(statuses)")
        #expect(statuses.dropLast().allSatisfy { $0 == 0 }, "\(statuses)")
        #expect(records().count == statuses.count - 1, "the export that found the damage is not recorded: \(records())")
    }

    /// `export --forget` keeps what the policy keeps and removes the rest (restic's listing
    /// as the oracle); on an append-only server (rclone serve restic --append-only) it is
    /// refused with 77 and nothing is removed; export and import work there.
    @Test func forgetAppliesRetentionAndAnAppendOnlyServerRefusesIt() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        func snapshots(_ extra: [String] = []) throws -> [[String: Any]] {
            let out = try Self.restic(s, ["snapshots", "--json"] + extra).stdout
            return (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]) ?? []
        }
        let host = try #require(try snapshots().first?["hostname"] as? String)
        // An export from 2020 of this device, made by hand with restic's --time.
        FileManager.default.createFile(atPath: s.dir.sub("old"), contents: Data("old".utf8))
        #expect(try Self.restic(s, ["backup", "-q", "--time", "2020-01-15 00:00:00", "--host", host, "--tag", "tosca-export", s.dir.sub("old")]).status == 0)
        #expect(try snapshots().count == 2)
        let f = try maint(["export", "--forget", "--keep-within", "1d", "--keep-monthly", "1", "--data-dir", s.data] + s.repoArgs)
        #expect(f.status == 0, "\(f.output)")
        let left = try snapshots()
        #expect(left.count == 1 && !(left.first?["time"] as? String ?? "").hasPrefix("2020"), "\(left)")

        // The same against an append-only REST server on loopback.
        let rclone = try #require(which("rclone"), "rclone is needed (apt-get install rclone)")
        let served = s.dir.sub("served")
        try AtomicFile.makeDirectory(served)
        let port = Int.random(in: 20_000...40_000)
        let server = try Spawned(rclone, ["serve", "restic", "--append-only", "--addr", "127.0.0.1:\(port)", served])
        defer { server.signal(SIGTERM); _ = server.wait() }
        let remote = ["--repo", "rest:http://127.0.0.1:\(port)/", "--password-file", s.password, "--cache-dir", s.cache]
        #expect(waitUntil(timeout: 20) { (try? maint(["export", "init", "--data-dir", s.data] + remote).status) == 0 })
        #expect(try maint(["export", "--data-dir", s.data] + remote).status == 0)
        let oracle = ["-r", "rest:http://127.0.0.1:\(port)/", "--password-file", s.password, "--cache-dir", s.cache]
        let restic = try #require(which("restic"))
        #expect(try run(restic, oracle + ["backup", "-q", "--time", "2020-01-15 00:00:00", "--host", host, "--tag", "tosca-export", s.dir.sub("old")]).status == 0)
        let refused = try maint(["export", "--forget", "--keep-within", "1d", "--keep-monthly", "1", "--data-dir", s.data] + remote)
        #expect(refused.status == 77 && refused.stderr.contains("append-only"), "\(refused.output)")
        let still = try run(restic, oracle + ["snapshots", "--json"]).stdout
        #expect(((try JSONSerialization.jsonObject(with: Data(still.utf8)) as? [[String: Any]]) ?? []).count == 2, "\(still)")
        // Import from the server into a new folder.
        let new = s.dir.sub("from-server")
        let i = try maint(["import", "--data-dir", new] + remote)
        #expect(i.status == 0, "\(i.output)")
        #expect(try sqlite3Value(new + "/tosca.db", "SELECT count(*) FROM sessions") == (try sqlite3Value(s.data + "/tosca.db", "SELECT count(*) FROM sessions")))
    }

    /// `status` and exports: not expected and not stale on a device that never exported;
    /// expected once configured (TOSCA_EXPORT_REPO) or recorded; stale after
    /// --max-export-age days; the Prometheus figures.
    @Test func statusReportsTheLastVerifiedExport() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        #expect(try maint(["restore", "--drill", "--data-dir", s.data]).status == 0)
        let plain = try maint(["status", "--data-dir", s.data])
        #expect(plain.status == 0 && plain.stdout.contains("none (not configured)"), "\(plain.output)")
        let configured = try maint(["status", "--data-dir", s.data], environment: ["TOSCA_EXPORT_REPO": s.repo])
        #expect(configured.status == 1 && configured.stdout.contains("no verified export"), "\(configured.output)")
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        let prom = s.dir.sub("tosca.prom")
        let fresh = try maint(["status", "--prometheus", prom, "--data-dir", s.data])
        #expect(fresh.status == 0 && fresh.stdout.contains("1 verified"), "\(fresh.output)")
        // The unit's --absent-drive-ok: a drive not plugged in is retried (75) while the last
        // export is recent; 66 without the flag.
        let absent = ["--repo", "/nonexistent-drive/repo", "--password-file", s.password, "--data-dir", s.data]
        #expect(try maint(["export", "--absent-drive-ok"] + absent).status == 75)
        #expect(try maint(["export"] + absent).status == 66)
        let figures = try String(contentsOfFile: prom, encoding: .utf8)
        #expect(figures.contains("tosca_exports_recorded 1") && figures.contains("tosca_last_export_age_seconds "), "\(figures)")
        // A recorded export makes exports expected: 40 days without one is stale.
        let record = try #require(listing(s.data + "/exports").first { $0.hasSuffix(".manifest.json") })
        let path = s.data + "/exports/" + record
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let old = UTCTime(seconds: UTCTime.now().seconds - 40 * 86_400, microseconds: 0).iso8601
        let created = try #require(text.range(of: #""created_utc" : "[^"]*""#, options: .regularExpression))
        text.replaceSubrange(created, with: "\"created_utc\" : \"\(old)\"")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let stale = try maint(["status", "--data-dir", s.data])
        #expect(stale.status == 1 && stale.stdout.contains("days old, older than 35"), "\(stale.output)")
        #expect(try maint(["status", "--max-export-age", "50", "--data-dir", s.data]).status == 0)
        // 40 days without an export: the absent drive fails the unit now.
        #expect(try maint(["export", "--absent-drive-ok"] + absent).status == 66)
    }

    /// History anchored off the device: the newest safety-log entries deleted on the device
    /// and every local copy and manifest gone (the device's own checks have nothing left to
    /// compare with) pass `verify --live`; `verify --live --repo` reports it (65).
    @Test func aRewrittenHistoryIsCaughtByTheExportedHead() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        let ok = try maint(["verify", "--live", "--data-dir", s.data] + s.repoArgs)
        #expect(ok.status == 0 && ok.stdout.contains("against the newest export"), "\(ok.output)")
        // The rewrite: the newest entry deleted past the append-only trigger, the copies gone.
        let db = s.data + "/tosca.db"
        try sqlite3Value(db, """
            DROP TRIGGER safety_log_no_delete;
            DELETE FROM safety_log WHERE seq = (SELECT max(seq) FROM safety_log);
            """)
        try FileManager.default.removeItem(atPath: s.data + "/backups")
        try Self.expectOnlyTheRepositoryCatches(s, "does not extend the head exported")
    }

    /// The exported copy's per-table content hashes, also off the device: export.json
    /// counts every table's rows as sqlite3 does; an event of a session still in progress
    /// at the export, changed past the append-only trigger before the session was sealed
    /// (so the seal and the chain both cover the changed row), passes the device's own
    /// checks and fails `verify --live --repo` (65).
    @Test func aChangedEventIsCaughtByTheExportedTableHashes() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        let db = s.data + "/tosca.db"
        // A third session, killed mid-way: in progress, no seal yet.
        let sim = try Spawned(executable("tosca-sim"), ["--data-dir", s.data, "--until-signal", "--event-rate", "200", "--seed", "5"])
        #expect(waitUntil(timeout: 60) { (Int((try? sqlite3Value(db, "SELECT count(*) FROM treatment_events WHERE session_id = 3")) ?? "") ?? 0) >= 10 })
        sim.signal(SIGKILL)
        _ = sim.wait()
        #expect(try maint(["backup", "--data-dir", s.data]).status == 0)
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        let e = try maint(["export", "--data-dir", s.data] + s.repoArgs)
        #expect(e.status == 0, "\(e.output)")
        let dumped = try Self.restic(s, ["dump", "latest", "/tosca-export/export.json"])
        let exported = try JSONDecoder().decode(ExportManifest.self, from: Data(dumped.stdout.utf8))
        let tables = try #require(exported.tables)
        let copy = s.data + "/" + exported.databaseCopy
        let names = try sqlite3Value(copy, "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name)")
        #expect(tables.keys.sorted().joined(separator: ",") == names)
        for (t, d) in tables {
            #expect(String(d.rows) == (try sqlite3Value(copy, "SELECT count(*) FROM \"\(t)\"")), "\(t)")
        }
        #expect((tables["treatment_events"]?.rows ?? 0) > 0)
        // The change, the trigger put back, then the recorder recovers and seals session 3.
        try sqlite3Value(db, """
            DROP TRIGGER treatment_events_no_update;
            UPDATE treatment_events SET laser_power_actual_watts = 0.5 WHERE event_id = (SELECT min(event_id) FROM treatment_events WHERE session_id = 3);
            CREATE TRIGGER treatment_events_no_update BEFORE UPDATE ON treatment_events
            BEGIN SELECT RAISE(ABORT, 'treatment_events is append-only'); END;
            """)
        let rec = try Recorder(dataDirectory: s.data)
        #expect(rec.recovery.abortedSessions == [3])
        try rec.close()
        try Self.expectOnlyTheRepositoryCatches(s, "rows of table treatment_events differ")
    }

    /// `--release-sessions-older-than`: only folders whose bundle is in the verified export
    /// and still matches them go; `bundle extract --to-original` brings one back byte for
    /// byte; a folder changed after it was bundled, and one with no bundle, stay.
    @Test func releasedSessionFoldersComeBackFromTheirBundles() throws {
        let s = try Self.setup()
        defer { Self.cleanup(s) }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        // A third session, recorded after the bundles: no bundle, so it must stay.
        #expect(try run(executable("tosca-sim"), ["--data-dir", s.data, "--sessions", "1", "--duration", "0.2", "--seed", "8"]).status == 0)
        let folders = try sqlite3Value(s.data + "/tosca.db", "SELECT group_concat(session_folder_path, ' ') FROM sessions ORDER BY session_id").split(separator: " ").map(String.init)
        #expect(folders.count == 3)
        // Session 2's folder changed after it was bundled: it must stay too.
        FileManager.default.createFile(atPath: s.data + "/" + folders[1] + "/media/added-later.bin", contents: Data("late".utf8))
        let sums = try filesUnder(s.data + "/" + folders[0]).map { try stockSHA256(s.data + "/" + folders[0] + "/" + $0) }
        let e = try maint(["export", "--release-sessions-older-than", "0", "--data-dir", s.data] + s.repoArgs)
        #expect(e.status == 0 && e.stdout.contains("released 1 session folder"), "\(e.output)")
        #expect(!FileManager.default.fileExists(atPath: s.data + "/" + folders[0]))
        #expect(FileManager.default.fileExists(atPath: s.data + "/" + folders[1] + "/session.json"))
        #expect(FileManager.default.fileExists(atPath: s.data + "/" + folders[2] + "/session.json"))
        // The rows stay, and the folder comes back from its bundle.
        #expect(try sqlite3Value(s.data + "/tosca.db", "SELECT count(*) FROM sessions") == "3")
        let x = try maint(["bundle", "extract", "--session", "1", "--to-original", "--data-dir", s.data])
        #expect(x.status == 0, "\(x.output)")
        let back = try filesUnder(s.data + "/" + folders[0]).map { try stockSHA256(s.data + "/" + folders[0] + "/" + $0) }
        #expect(back == sums && !sums.isEmpty)
    }
}
