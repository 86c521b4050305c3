import Foundation
import Testing
import TestSupport
import ToscaCore

@Suite(.serialized) struct BackupFaultTests {
    /// `backup` killed with SIGKILL at random moments: a published file always verifies,
    /// and the next run tidies what the killed one left.
    @Test func sigkillDuringBackupNeverPublishesABadCopy() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        try growDatabase(data + "/tosca.db", events: 120_000)
        // How long one backup takes here, to spread the kills over it.
        let t0 = Date()
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.05)
        var killedMidway = 0
        for trial in 0..<12 {
            let p = try Spawned(executable("tosca-maint"), ["backup", "--data-dir", data])
            usleep(UInt32(Double.random(in: 0...(duration * 1.1)) * 1_000_000))
            p.signal(SIGKILL)
            let r = p.wait()
            if r.status == 128 + SIGKILL { killedMidway += 1 }
            // Whatever is published verifies (a database file without a manifest is not published).
            let v = try maint(["verify", "--all", "--data-dir", data])
            let orphans = listing(data + "/backups").filter { $0.hasSuffix(".db") && !FileManager.default.fileExists(atPath: data + "/backups/" + $0 + ".manifest.json") }
            if orphans.isEmpty {
                #expect(v.status == 0, "trial \(trial): \(v.output)")
            } else {
                // verify --all names the orphan as not published; the next run quarantines it.
                #expect(v.stdout.contains("not a published copy"), "trial \(trial): \(v.output)")
            }
        }
        #expect(killedMidway > 0, "no kill landed while backup ran")
        let next = try maint(["backup", "--data-dir", data])
        #expect(next.status == 0, "\(next.output)")
        let names = listing(data + "/backups")
        #expect(!names.contains { $0.contains(".partial") }, "\(names)")
        #expect(!names.contains { $0.hasSuffix("-wal") || $0.hasSuffix("-shm") || $0.hasSuffix("-journal") }, "\(names)")
        for n in names where n.hasSuffix(".db") { #expect(names.contains(n + ".manifest.json"), "\(n) left without manifest") }
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 0)
    }

    /// A hot backup while the simulator records: the recorder never sees an error and keeps
    /// recording; every backup verifies.
    @Test func hotBackupsWhileTheRecorderWrites() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        try growDatabase(data + "/tosca.db", events: 50_000)
        let db = data + "/tosca.db"
        let sim = try Spawned(executable("tosca-sim"), ["--data-dir", data, "--until-signal", "--sample-rate", "1000", "--event-rate", "200"])
        #expect(waitUntil(timeout: 60) { (try? sqlite3Value(db, "SELECT count(*) FROM sessions WHERE status = 'in_progress';")) == "1" })
        var heads: [Int64] = []
        for _ in 0..<3 {
            let r = try maint(["backup", "--data-dir", data, "--json"])
            #expect(r.status == 0, "\(r.output)")
            let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            let m = (obj?["manifest"] as? [String: Any])?["facts"] as? [String: Any]
            heads.append(((m?["row_counts"] as? [String: Any])?["treatment_events"] as? Int).map(Int64.init) ?? -1)
        }
        #expect(heads == heads.sorted() && heads.first! > 0, "\(heads)")
        #expect(heads.last! > heads.first!, "the recorder did not move on during the backups")
        sim.signal(SIGTERM)
        let r = sim.wait()
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stderr.isEmpty, "\(r.stderr)")
        #expect(try maint(["verify", "--all", "--live", "--data-dir", data]).status == 0)
    }
}

/// The raw page copy (D3) forced against a live encrypted database: the recorder writes at
/// 1 kHz while another process checkpoints the WAL every 200 ms.
@Suite(.serialized) struct RawCopyFaultTests {
    @Test func rawCopiesMeetCheckpointsWhileTheRecorderWritesAt1kHz() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        try growDatabase(data + "/tosca.db", events: 150_000)
        let keyHex = try writeKeyFile(dir.sub("key"))
        let cut = try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data])
        #expect(cut.status == 0, "\(cut.output)")
        let db = data + "/tosca.db"
        let sim = try Spawned(executable("tosca-sim"), ["--data-dir", data, "--key-file", dir.sub("key"), "--until-signal", "--sample-rate", "1000", "--event-rate", "200"])
        #expect(waitUntil(timeout: 60) { (try? sqlcipher(db, keyHex: keyHex, "SELECT count(*) FROM sessions WHERE status = 'in_progress';").stdout.contains("\n1")) == true })
        // An independent checkpointer: the stock sqlcipher CLI, PASSIVE every 200 ms (often
        // enough to meet the copies, seldom enough that snapshots still end in the WAL).
        let script = dir.sub("checkpoint.sh")
        try """
            printf 'PRAGMA key = "x\\047%s\\047";\\n' "$1"
            while :; do echo 'PRAGMA wal_checkpoint(PASSIVE);'; sleep 0.2; done
            """.write(toFile: script, atomically: true, encoding: .utf8)
        let checkpointer = try Spawned("/bin/sh", ["-c", "/bin/sh \"$0\" \"$1\" | \"$2\" -batch \"$3\" > \"$4\"", script, keyHex,
                                                   which("sqlcipher") ?? "/usr/bin/sqlcipher", db, dir.sub("checkpoints")])
        var copies: [(path: String, rows: [String: Int])] = []
        var walFrames: [Int] = []
        // Six copies, and more (up to 16) until one has taken pages from the WAL: under a
        // loaded machine a checkpoint can empty the WAL before each snapshot.
        for n in 0..<16 where n < 6 || !walFrames.contains(where: { $0 > 0 }) {
            let r = try maint(["backup", "--copy-method", "raw", "--json", "--key-file", dir.sub("key"), "--data-dir", data])
            #expect(r.status == 0, "\(r.output)")
            let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            let how = obj?["copy"] as? [String: Any]
            #expect(how?["method"] as? String == "raw", "\(r.stdout)")
            walFrames.append(how?["wal_frames"] as? Int ?? -1)
            let facts = (obj?["manifest"] as? [String: Any])?["facts"] as? [String: Any]
            copies.append((obj?["path"] as? String ?? "", facts?["row_counts"] as? [String: Int] ?? [:]))
            usleep(200_000)
        }
        sim.signal(SIGTERM)
        let r = sim.wait()
        #expect(r.status == 0 && r.stderr.isEmpty, "\(r.output)")
        // The loop ends; sqlcipher then reads the end of its input and exits.
        _ = try? run("/usr/bin/pkill", ["-f", script])
        checkpointer.signal(SIGTERM)
        _ = checkpointer.wait()
        // The checkpointer did copy frames into the file while the backups ran, and the
        // copies took pages from the WAL.
        let lines = (try? String(contentsOfFile: dir.sub("checkpoints"), encoding: .utf8))?.split(separator: "\n") ?? []
        #expect(lines.contains { $0.split(separator: "|").last.flatMap { Int($0) }.map { $0 > 0 } == true }, "no checkpoint moved frames: \(lines.suffix(5))")
        #expect(walFrames.contains { $0 > 0 }, "\(walFrames)")
        // Every copy, through the stock sqlcipher CLI: sound, its row counts those of its
        // manifest, and its treatment events exactly the live database's first ones.
        let tables = ["subjects", "sessions", "treatment_events", "safety_log", "calibrations"]
        for copy in copies {
            #expect(try sqlcipher(copy.path, keyHex: keyHex, "PRAGMA integrity_check;").stdout == "ok\nok\n", "\(copy.path)")
            #expect(try sqlcipher(copy.path, keyHex: keyHex, "PRAGMA cipher_integrity_check;").stdout == "ok\n", "\(copy.path)")
            for t in tables {
                let n = try sqlcipher(copy.path, keyHex: keyHex, "SELECT count(*) FROM \(t);").stdout.split(separator: "\n").last.map(String.init)
                #expect(n == copy.rows[t].map(String.init), "\(t) in \(copy.path)")
            }
            let last = try sqlcipher(copy.path, keyHex: keyHex, "SELECT max(event_id) FROM treatment_events;").stdout.split(separator: "\n").last.map(String.init) ?? ""
            let sum = "SELECT count(*), sum(session_id), sum(time_offset_ms), total(laser_power_actual_watts), sum(length(event_details)) FROM treatment_events WHERE event_id <= \(last);"
            #expect(try sqlcipher(copy.path, keyHex: keyHex, sum).stdout == (try sqlcipher(db, keyHex: keyHex, sum).stdout), "\(copy.path)")
        }
        #expect(try maint(["verify", "--all", "--live", "--key-file", dir.sub("key"), "--data-dir", data]).status == 0)
    }
}

@Suite(.serialized) struct RestoreFaultTests {
    /// `restore` killed with SIGKILL at random moments: the live database is the old one or
    /// the restored one, sound; the next run cleans up.
    @Test func sigkillDuringRestoreLeavesTheOldOrTheNewDatabase() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        try growDatabase(data + "/tosca.db", events: 60_000)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let db = data + "/tosca.db"
        let copyEvents = try sqlite3Value(db, "SELECT count(*) FROM treatment_events;")
        try growDatabase(db, events: 5_000)
        let liveEvents = try sqlite3Value(db, "SELECT count(*) FROM treatment_events;")
        let t0 = Date()
        #expect(try maint(["restore", "--latest", "--yes", "--data-dir", data]).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.05)
        var states = Set<String>()
        for trial in 0..<10 {
            try growDatabase(db, events: 5_000) // make "old" differ from the copy again
            let old = try sqlite3Value(db, "SELECT count(*) FROM treatment_events;")
            let p = try Spawned(executable("tosca-maint"), ["restore", "--latest", "--yes", "--data-dir", data])
            usleep(UInt32(Double.random(in: 0...(duration * 1.1)) * 1_000_000))
            p.signal(SIGKILL)
            _ = p.wait()
            #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok", "trial \(trial)")
            let now = try sqlite3Value(db, "SELECT count(*) FROM treatment_events;")
            #expect(now == old || now == copyEvents, "trial \(trial): \(now) is neither \(old) nor \(copyEvents)")
            states.insert(now == old ? "old" : "restored")
            let next = try maint(["restore", "--latest", "--yes", "--data-dir", data])
            #expect(next.status == 0, "trial \(trial): \(next.output)")
            #expect(!listing(data).contains { $0.contains("restore-partial") })
        }
        _ = liveEvents
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 0)
    }
}

@Suite(.serialized) struct MigrateFaultTests {
    /// `migrate up` killed at random moments: the old schema or the new one, never a mix.
    @Test func sigkillDuringMigrateLeavesOldOrNewSchema() throws {
        var seen = Set<String>()
        for trial in 0..<10 {
            let dir = TempDir()
            let data = dir.sub("data")
            mkdir(data, 0o700)
            let db = data + "/tosca.db"
            try makeLegacyDatabase(at: db)
            // More safety-log rows so the back-fill takes a while.
            try sqlite3Value(db, """
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
                INSERT INTO safety_log (log_id, timestamp, event_type, severity, description) SELECT 1000 + i, '2025-01-01 00:00:00.000000', 'x', 'info', 'row ' || i FROM n;
                """)
            let p = try Spawned(executable("tosca-maint"), ["migrate", "up", "--yes", "--data-dir", data])
            usleep(UInt32.random(in: 0...1_500_000))
            p.signal(SIGKILL)
            _ = p.wait()
            #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok", "trial \(trial)")
            let tables = try sqlite3Value(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table';")
            let version = try sqlite3Value(db, "PRAGMA user_version;")
            let cols = try sqlite3Value(db, "SELECT count(*) FROM pragma_table_info('safety_log');")
            let state = "\(tables)/\(version)/\(cols)"
            #expect(state == "5/0/14" || state == "10/7/17", "trial \(trial): a mixed schema \(state)")
            seen.insert(state)
            // The next run finishes the job.
            let next = try maint(["migrate", "up", "--yes", "--data-dir", data])
            #expect(next.status == 0, "trial \(trial): \(next.output)")
            #expect(try sqlite3Value(db, "PRAGMA user_version;") == "7")
        }
    }
}

@Suite(.serialized) struct EncryptFaultTests {
    /// The cutover killed at random moments: a working database, plaintext before the swap
    /// and encrypted after; a re-run finishes the work.
    @Test func sigkillDuringTheCutoverLeavesAWorkingDatabase() throws {
        let dir = TempDir()
        let hex = try writeKeyFile(dir.sub("key"))
        var seen = Set<String>()
        for trial in 0..<8 {
            let data = dir.sub("data\(trial)")
            try simulatedData(data)
            try growDatabase(data + "/tosca.db", events: 40_000)
            #expect(try maint(["backup", "--data-dir", data]).status == 0)
            let before = try sqlite3Value(data + "/tosca.db", "SELECT count(*) FROM treatment_events;")
            let p = try Spawned(executable("tosca-maint"), ["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data])
            usleep(UInt32.random(in: 0...1_200_000))
            p.signal(SIGKILL)
            _ = p.wait()
            let db = data + "/tosca.db"
            if try FileHeader.classify(path: db) == .plaintext {
                seen.insert("plaintext")
                #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok", "trial \(trial)")
                #expect(try sqlite3Value(db, "SELECT count(*) FROM treatment_events;") == before)
            } else {
                seen.insert("encrypted")
                let r = try sqlcipher(db, keyHex: hex, "PRAGMA integrity_check; SELECT count(*) FROM treatment_events;")
                #expect(r.stdout.split(separator: "\n").map(String.init) == ["ok", "ok", before], "trial \(trial): \(r.output)")
            }
            let next = try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data])
            #expect(next.status == 0, "trial \(trial): \(next.output)")
            for c in listing(data + "/backups") where c.hasSuffix(".db") {
                #expect(try FileHeader.classify(path: data + "/backups/" + c) == .other, "trial \(trial): \(c) still plaintext")
            }
            #expect(!listing(data).contains { $0.contains("encrypt-partial") })
            #expect(try maint(["verify", "--all", "--live", "--key-file", dir.sub("key"), "--data-dir", data]).status == 0, "trial \(trial)")
        }
    }
}
