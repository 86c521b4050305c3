import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

/// The chain covers the treatment record: each finished session is sealed by a chained
/// safety-log entry holding the digests of its events, session.json and streams.
@Suite struct SessionSealTests {
    func seals(_ db: String) throws -> [(session: Int64, details: SessionSeal.Details)] {
        try sqlite3Value(db, "SELECT session_id || char(9) || details FROM safety_log WHERE event_type = 'session_sealed' ORDER BY seq;")
            .split(separator: "\n").map { line in
                let parts = line.split(separator: "\t", maxSplits: 1)
                return (Int64(parts[0])!, try JSONDecoder().decode(SessionSeal.Details.self, from: Data(parts[1].utf8)))
            }
    }

    @Test func eachFinishedSessionIsSealedWithWhatTheFilesHold() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        let db = data + "/tosca.db"
        let all = try seals(db)
        #expect(all.count == 2)
        for (id, d) in all {
            #expect(!d.backfill)
            #expect(d.eventCount == Int(try sqlite3Value(db, "SELECT count(*) FROM treatment_events WHERE session_id = \(id);"))!)
            let folder = data + "/" + (try sqlite3Value(db, "SELECT session_folder_path FROM sessions WHERE session_id = \(id);"))
            #expect(d.sessionJSONSHA256 == fileSHA256(folder + "/session.json"))
            #expect(!d.streams.isEmpty)
            for (file, sha) in d.streams { #expect(fileSHA256(folder + "/" + file) == sha, "\(file)") }
        }
        // The events digest is the documented encoding: recomputed here row by row through
        // the generic value path (SQLValue → SafetyChain.encode), not the fast one.
        let conn = try Database(path: db, options: .init(readOnly: true))
        for (id, d) in all {
            var bytes: [UInt8] = []
            for r in try conn.rows("SELECT * FROM treatment_events WHERE session_id = ? ORDER BY event_id", [.integer(id)]) {
                bytes += SafetyChain.encode(prevHash: [], values: r.values)
            }
            #expect(sha256Hex(bytes) == d.eventsSHA256, "session \(id)")
        }
        #expect(try SessionSeal.eventDigests(conn).mapValues(\.sha256) == Dictionary(uniqueKeysWithValues: all.map { ($0.session, $0.details.eventsSHA256) }))
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
    }

    /// A treatment event of a sealed session deleted or edited past dropped-and-restored
    /// triggers: verify --live and the backup report it (65); the backup keeps the copy as
    /// a suspect copy, never a backup.
    /// The one-scan digests of every sealed session equal each session's own digest, also
    /// when sessions' events interleave in event_id order (a session resumed after another).
    @Test func oneScanGivesEachSessionsOwnDigestWhenEventsInterleave() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 3)
        let db = data + "/tosca.db"
        // Events of sessions 1 and 2 again, after session 3's, in alternation.
        _ = try sqlite3Value(db, """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
            INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type, laser_power_commanded_watts,
              laser_power_actual_watts, photodiode_voltage_v, interlock_status, event_details)
            SELECT 1 + i % 2, '2026-01-01 00:00:00.000000', 100000 + i, 'power_reading', 1.5, 1.5, 1.2, '{}', NULL FROM n;
            INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type, image_path, event_details)
            VALUES (2, '2026-01-01 00:00:01.000000', 200000, 'note', X'00FF10', hex(zeroblob(150000)));
            """)
        let database = try Database(path: db, options: .init(readOnly: true))
        let all = try SessionSeal.eventDigests(database)
        #expect(Set(all.keys) == [1, 2, 3])
        // The one-scan encoder against the generic value path (SQLValue → SafetyChain.encode),
        // with a BLOB and an event larger than the encoder's buffer among the rows.
        for id in all.keys.sorted() {
            var bytes: [UInt8] = []
            for r in try database.rows("SELECT * FROM treatment_events WHERE session_id = ? ORDER BY event_id", [.integer(id)]) {
                bytes += SafetyChain.encode(prevHash: [], values: r.values)
            }
            #expect(sha256Hex(bytes) == all[id]?.sha256, "session \(id)")
        }
        for id in all.keys.sorted() {
            let one = try SessionSeal.eventDigests(database, sessionID: id)[id]
            #expect(one?.count == all[id]?.count && one?.sha256 == all[id]?.sha256, "session \(id)")
            #expect(one?.count == Int(try sqlite3Value(db, "SELECT count(*) FROM treatment_events WHERE session_id = \(id);")))
        }
        // And the seal check sees the added events as a change of sessions 1 and 2 only.
        let changed = try SessionSeal.mismatches(database).compactMap(\.sessionID)
        #expect(changed.sorted() == [1, 2], "\(changed)")
    }

    @Test func changedEventsOfASealedSessionAreTampering() throws {
        for sql in ["DELETE FROM treatment_events WHERE event_id = (SELECT max(event_id) FROM treatment_events);",
                    "UPDATE treatment_events SET laser_power_actual_watts = 9.5 WHERE event_id = (SELECT min(event_id) FROM treatment_events);"] {
            let dir = TempDir()
            let data = dir.sub("data")
            try simulatedData(data, sessions: 1)
            #expect(try maint(["backup", "--data-dir", data]).status == 0)
            let db = data + "/tosca.db"
            let triggers = try sqlite3Value(db, "SELECT sql || ';' FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'treatment_events';")
            try sqlite3Value(db, "DROP TRIGGER treatment_events_no_update; DROP TRIGGER treatment_events_no_delete; DROP TRIGGER treatment_events_no_replace; \(sql) \(triggers)")
            #expect(try sqlite3Value(db, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'treatment_events';") == "3")
            let live = try maint(["verify", "--live", "--data-dir", data])
            #expect(live.status == 65 && live.stdout.contains("changed after it was sealed"), "\(sql): \(live.output)")
            let b = try maint(["backup", "--data-dir", data])
            #expect(b.status == 65 && b.stderr.contains("suspect copy"), "\(sql): \(b.output)")
            #expect(listing(data + "/backups").contains { $0.hasSuffix("_suspect.db") })
        }
    }

    /// Sessions that ended before seals existed are sealed once, as a back-fill, by the
    /// first run that holds the database (here a backup after the migration).
    @Test func legacySessionsGetABackfilledSealOnce() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        mkdir(data, 0o700)
        let db = data + "/tosca.db"
        try makeLegacyDatabase(at: db)
        #expect(try maint(["migrate", "up", "--yes", "--data-dir", data]).status == 0)
        #expect(try seals(db).isEmpty)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let finished = Int(try sqlite3Value(db, "SELECT count(*) FROM sessions WHERE status IN ('completed', 'aborted');"))!
        let all = try seals(db)
        #expect(finished > 0 && all.count == finished)
        let backfilled = all.filter { $0.details.backfill }.count
        #expect(backfilled == all.count)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try seals(db).count == finished)
        #expect(try maint(["verify", "--all", "--live", "--data-dir", data]).status == 0)
    }
}

@Suite struct SessionSealAcceptanceTests {
    /// A suspect copy (events changed under a seal) can still be inspected with --to, and
    /// `backup --new-timeline REASON` seals the changed sessions again, the reason recorded.
    @Test func aKnownChangeIsAcceptedWithItsReason() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let db = data + "/tosca.db"
        try sqlite3Value(db, "DROP TRIGGER treatment_events_no_delete; DELETE FROM treatment_events WHERE event_id = (SELECT max(event_id) FROM treatment_events);")
        #expect(try maint(["backup", "--data-dir", data]).status == 65)
        let suspect = try #require(listing(data + "/backups").first { $0.hasSuffix("_suspect.db") })
        let inspect = try maint(["restore", "--backup", data + "/backups/" + suspect, "--to", dir.sub("inspect.db"), "--data-dir", data])
        #expect(inspect.status == 0, "\(inspect.output)")
        let accepted = try maint(["backup", "--new-timeline", "event removed by the vendor's service on 2026-11-30", "--data-dir", data])
        #expect(accepted.status == 0, "\(accepted.output)")
        let last = try sqlite3Value(db, "SELECT details FROM safety_log WHERE event_type = 'session_sealed' ORDER BY seq DESC LIMIT 1;")
        #expect(last.contains("event removed by the vendor's service"), "\(last)")
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
    }
}

/// encrypt and rekey replace a copy in place: new manifest beside it, new file over the
/// old, then the manifest. Interrupted between the two renames, the next run finishes it.
@Suite struct PendingReplacementTests {
    @Test func anInterruptedReplacementIsFinishedOrDropped() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let copy = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // The encrypted version of the same copy, made by a real cutover on a twin folder.
        let twin = dir.sub("twin")
        _ = try run("/bin/cp", ["-a", data, twin])
        _ = try writeKeyFile(dir.sub("key"))
        #expect(try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", twin]).status == 0)
        let twinCopy = twin + "/backups/" + PathName.name(copy)
        // Case 1: killed after the file was renamed, before its manifest was.
        _ = try run("/bin/cp", [twinCopy + ".manifest.json", copy + ".pending.manifest.json"])
        _ = try run("/bin/cp", [twinCopy, copy + ".tmp-new"])
        #expect(rename(copy + ".tmp-new", copy) == 0)
        let v = try maint(["verify", "--all", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(v.status == 0, "\(v.output)")
        #expect(!FileManager.default.fileExists(atPath: copy + ".pending.manifest.json"))
        #expect(try Manifest.read(path: copy + ".manifest.json").0.facts.encryption.isEncrypted)
        // Case 2: killed before the file was renamed: the pending manifest is dropped.
        let plain = dir.sub("plain")
        try simulatedData(plain, sessions: 1)
        let p = try maint(["backup", "--data-dir", plain]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try run("/bin/cp", [twinCopy + ".manifest.json", p + ".pending.manifest.json"])
        #expect(try maint(["verify", "--all", "--data-dir", plain]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: p + ".pending.manifest.json"))
        #expect(try !Manifest.read(path: p + ".manifest.json").0.facts.encryption.isEncrypted)
    }
}
