import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

/// A safety event from any writer is kept: rows inserted without chain columns are
/// accepted unsealed and sealed in place, in arrival order, by whoever holds the database.
@Suite struct UnsealedSafetyTests {
    /// TOSCA v0.9.12's SQLAlchemy insert (every column but the key and the chain columns,
    /// local-time DATETIME text) and a technician's short sqlite3 insert.
    static let toscaInsert = """
        INSERT INTO safety_log (timestamp, session_id, tech_id, event_type, severity, description, system_state, laser_state, footpedal_state, smoothing_device_state, photodiode_voltage_v, action_taken, details) VALUES ('2025-06-01 10:12:01.123456', NULL, 1, 'interlock_triggered', 'critical', 'Footpedal released during treatment', 'treatment', 'armed', 0, 1, 2.75, 'laser disabled', '{"source": "EventLogger"}');
        """
    /// The statement SQLAlchemy 1.4 compiles for TOSCA's `SafetyLog` model, with its values
    /// bound as parameters (the sqlite3 CLI's `.parameter`), as TOSCA's `EventLogger` runs it.
    static let sqlalchemyInsert = """
        .parameter init
        .parameter set ?1 "'2025-06-01 10:12:30.500000'"
        .parameter set ?2 NULL
        .parameter set ?3 1
        .parameter set ?4 "'laser_fault'"
        .parameter set ?5 "'emergency'"
        .parameter set ?6 "'Photodiode reading out of range'"
        .parameter set ?7 "'treatment'"
        .parameter set ?8 "'firing'"
        .parameter set ?9 1
        .parameter set ?10 0
        .parameter set ?11 9.125
        .parameter set ?12 "'emergency stop'"
        .parameter set ?13 NULL
        INSERT INTO safety_log (timestamp, session_id, tech_id, event_type, severity, description, system_state, laser_state, footpedal_state, smoothing_device_state, photodiode_voltage_v, action_taken, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13);
        """
    static let technicianInsert = "INSERT INTO safety_log (timestamp, event_type, severity, description) VALUES ('2025-06-01 10:13:00', 'note', 'info', 'checked by hand');"

    func chainRows(_ db: String) throws -> [String] {
        try sqlite3Value(db, "SELECT log_id || '|' || ifnull(seq, 'NULL') || '|' || event_type FROM safety_log ORDER BY log_id;").split(separator: "\n").map(String.init)
    }

    @Test func rowsWithoutChainColumnsAreKeptThenSealedInArrivalOrder() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let db = data + "/tosca.db"
        let headBefore = try sqlite3Value(db, "SELECT max(seq) FROM safety_log;")
        // A recorder holds tosca.lock (its ticks off): maintenance runs leave sealing to it.
        var options = RecorderOptions()
        options.backgroundFlush = false
        let rec = try Recorder(dataDirectory: data, options: options)
        // Both writers are accepted (before migration 0007 the trigger refused them).
        for sql in [Self.toscaInsert, Self.sqlalchemyInsert, Self.technicianInsert] {
            let r = try run(which("sqlite3")!, ["-bail", db], stdin: sql)
            #expect(r.status == 0 && r.stderr.isEmpty, "\(r.output)")
        }
        #expect(try sqlite3Value(db, "SELECT count(*) FROM safety_log WHERE seq IS NULL;") == "3")
        #expect(try sqlite3Value(db, "SELECT description || '|' || photodiode_voltage_v FROM safety_log WHERE event_type = 'laser_fault';") == "Photodiode reading out of range|9.125")
        // What stays refused: changing or deleting any row, sealing out of order or with
        // values that do not extend the chain, a row whose chain columns are given but do not
        // extend the chain (or are only partly given), a replace over an existing row, and an
        // unsealed row posing as a session seal. (A wrong row_hash, which SQL cannot compute,
        // is what verify reports as a broken chain.)
        let unsealedID = try sqlite3Value(db, "SELECT min(log_id) FROM safety_log WHERE seq IS NULL;")
        for sql in ["UPDATE safety_log SET description = 'edited' WHERE log_id = \(unsealedID);",
                    "DELETE FROM safety_log WHERE log_id = \(unsealedID);",
                    "UPDATE safety_log SET seq = 999, prev_hash = zeroblob(32), row_hash = zeroblob(32) WHERE log_id = \(unsealedID);",
                    "UPDATE safety_log SET seq = \(Int(headBefore)! + 1), prev_hash = (SELECT row_hash FROM safety_log WHERE seq = \(headBefore)), row_hash = zeroblob(32) WHERE log_id = \(Int(unsealedID)! + 1);",
                    "UPDATE safety_log SET description = 'x' WHERE seq = 1;",
                    "INSERT INTO safety_log (timestamp, event_type, severity, description, seq) VALUES ('t', 'x', 'info', 'd', \(Int(headBefore)! + 1));",
                    "INSERT INTO safety_log (timestamp, event_type, severity, description, seq, prev_hash, row_hash) VALUES ('t', 'x', 'info', 'd', \(Int(headBefore)! + 1), zeroblob(32), zeroblob(32));",
                    "INSERT OR REPLACE INTO safety_log (log_id, timestamp, event_type, severity, description) VALUES (\(unsealedID), 't', 'x', 'info', 'replaced');",
                    "INSERT OR REPLACE INTO safety_log (log_id, timestamp, event_type, severity, description) VALUES (1, 't', 'x', 'info', 'replaced');",
                    "INSERT OR REPLACE INTO treatment_events SELECT * FROM treatment_events LIMIT 1;",
                    "INSERT INTO safety_log (timestamp, session_id, event_type, severity, description, details) VALUES ('t', 1, 'session_sealed', 'info', 'forged', '{}');"] {
            let r = try sqlite3(db, sql)
            #expect(r.status != 0, "went through: \(sql)")
        }
        // Reported as a warning, not a failure.
        let live = try maint(["verify", "--live", "--data-dir", data])
        #expect(live.status == 0 && live.stdout.contains("3 safety-log row(s) not sealed"), "\(live.output)")
        let status = try maint(["status", "--json", "--data-dir", data])
        #expect(status.stdout.contains("\"unsealed_safety_rows\" : 3") && status.stdout.contains("\"oldest_unsealed_timestamp\" : \"2025-06-01 10:12:01.123456\""), "\(status.stdout)")
        // Its age, the stamp read as legacy local time: over 24 h here, whatever the zone.
        let json = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect(((json?["oldest_unsealed_age_seconds"] as? Int) ?? 0) > 86_400, "\(status.stdout)")
        let prom = dir.sub("tosca.prom")
        _ = try maint(["status", "--prometheus", prom, "--data-dir", data])
        #expect(try String(contentsOfFile: prom, encoding: .utf8).contains("tosca_unsealed_safety_rows 3"))
        try rec.close()
        // The backup (no recorder running) seals them first, in arrival order, unchanged.
        let contentBefore = try sqlite3Value(db, "SELECT group_concat(log_id || timestamp || description, ',') FROM safety_log ORDER BY log_id;")
        let b = try maint(["backup", "--data-dir", data])
        #expect(b.status == 0, "\(b.output)")
        #expect(try sqlite3Value(db, "SELECT count(*) FROM safety_log WHERE seq IS NULL;") == "0")
        let rows = try chainRows(db)
        #expect(rows.suffix(3).map { $0.split(separator: "|")[1] } == ["\(Int(headBefore)! + 1)", "\(Int(headBefore)! + 2)", "\(Int(headBefore)! + 3)"], "\(rows)")
        #expect(rows.suffix(3).map { $0.split(separator: "|")[2] } == ["interlock_triggered", "laser_fault", "note"], "\(rows)")
        #expect(try sqlite3Value(db, "SELECT group_concat(log_id || timestamp || description, ',') FROM safety_log ORDER BY log_id;") == contentBefore)
        #expect(try maint(["verify", "--all", "--live", "--data-dir", data]).status == 0)
        #expect(try SafetyChain.verify(try Database(path: db, options: .init(readOnly: true))).isIntact)
    }

    /// While the recorder holds tosca.lock a maintenance run leaves sealing to it; the
    /// recorder seals before its next chained entry, so arrival order holds.
    @Test func theRecorderSealsWhatArrivedWhileItRuns() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let db = data + "/tosca.db"
        var options = RecorderOptions()
        options.backgroundFlush = false
        let rec = try Recorder(dataDirectory: data, options: options)
        #expect(try sqlite3(db, Self.toscaInsert).status == 0)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try sqlite3Value(db, "SELECT count(*) FROM safety_log WHERE seq IS NULL;") == "1")
        try rec.recordSafetyEvent(SafetyLogEntry(eventType: "note", severity: .info, description: "after"))
        try rec.close()
        let last = try chainRows(db).suffix(2)
        #expect(last.map { $0.split(separator: "|")[2] } == ["interlock_triggered", "note"], "\(last)")
        #expect(!last.contains { $0.contains("|NULL|") })
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
    }
}

/// Sealing is a side duty: when it cannot be done, safety events, recordings and backups go on.
@Suite struct SealingNeverBlocksTests {
    @Test func aRowThatCannotBeSealedStopsNothing() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let db = data + "/tosca.db"
        #expect(try sqlite3(db, UnsealedSafetyTests.technicianInsert).status == 0)
        // Sealing made impossible: the update trigger replaced by one that refuses everything.
        try sqlite3Value(db, "DROP TRIGGER safety_log_no_update; CREATE TRIGGER safety_log_no_update BEFORE UPDATE ON safety_log BEGIN SELECT RAISE(ABORT, 'no'); END;")
        var options = RecorderOptions()
        options.backgroundFlush = false
        let rec = try Recorder(dataDirectory: data, options: options)
        #expect(rec.lastBackgroundError != nil)
        let head = try rec.recordSafetyEvent(SafetyLogEntry(eventType: "interlock", severity: .critical, description: "still recorded"))
        try rec.close()
        #expect(try sqlite3Value(db, "SELECT description FROM safety_log WHERE seq = \(head.seq);") == "still recorded")
        #expect(try sqlite3Value(db, "SELECT count(*) FROM safety_log WHERE seq IS NULL;") == "1")
        let backup = try maint(["backup", "--data-dir", data])
        #expect(backup.status == 0, "\(backup.output)")
        let live = try maint(["verify", "--live", "--data-dir", data])
        #expect(live.status == 0 && live.stdout.contains("1 safety-log row(s) not sealed"), "\(live.output)")
    }
}
