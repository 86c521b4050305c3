import Foundation
import Testing
import TestSupport
@testable import ToscaCore

@Suite struct ChainTests {
    /// Known answers computed independently (Python's hashlib and struct) from D7's encoding.
    @Test func rowHashMatchesAnIndependentImplementation() throws {
        let row1: [SQLValue] = [.integer(1), .text("2026-01-02 03:04:05.000006"), .null, .integer(7), .text("laser_fault"), .text("critical"),
                                .text("Überhitzung"), .null, .text("off"), .integer(1), .null, .real(1.5), .null, .text("{\"a\":1}"), .integer(1)]
        let h1 = SafetyChain.rowHash(prevHash: [UInt8](repeating: 0, count: 32), values: row1)
        #expect(hexString(h1) == "426dec28005b982357cac9dab530bb40695522aaffdefdb57e6e716e8096ee93")
        let row2: [SQLValue] = [.integer(2), .text("2026-01-02 03:04:06.000000"), .integer(3), .integer(-1), .text("x"), .text("info"),
                                .text(""), .null, .null, .integer(0), .integer(0), .real(-0.25), .text("none"), .null, .integer(2)]
        #expect(hexString(SafetyChain.rowHash(prevHash: h1, values: row2)) == "76bf3ac1f9aab01b3ca11a966ae74518553cc0501e54b63ddf5258dcd0ff41e1")
    }

    /// A current database with `n` chained safety-log rows and one treatment event.
    func chainedDatabase(_ dir: TempDir, rows n: Int = 6) throws -> String {
        let path = dir.sub("c.db")
        let db = try Database(path: path, options: .init(create: true, walMode: true))
        try Migrator().migrate(db)
        try db.execute("""
            INSERT INTO tech_users VALUES (1, 'a', 'A', 'admin', '2026-01-01 00:00:00.000000', NULL, 1, NULL);
            INSERT INTO subjects (subject_id, subject_code, created_date, is_active) VALUES (1, 'S1', '2026-01-01 00:00:00.000000', 1);
            INSERT INTO sessions (session_id, subject_id, tech_id, start_time, status, created_date) VALUES (1, 1, 1, '2026-01-01 00:00:00.000000', 'completed', '2026-01-01 00:00:00.000000');
            INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type) VALUES (1, '2026-01-01 00:00:00.000000', 0, 'x');
            """)
        for i in 1...n {
            try db.transaction {
                try SafetyChain.append(SafetyLogEntry(sessionID: i % 2 == 0 ? 1 : nil, techID: 1, eventType: "e\(i)", severity: .warning,
                                                      description: "row \(i)", footpedalState: i % 2 == 0, photodiodeVoltage: Double(i) / 3,
                                                      details: "{\"i\":\(i)}"), to: db)
            }
        }
        return path
    }

    func verify(_ path: String, anchor: ChainHead? = nil) throws -> ChainVerification {
        try SafetyChain.verify(try Database(path: path), anchor: anchor)
    }

    func brokenSeq(_ v: ChainVerification) -> Int64? {
        if case .broken(let b) = v { return b.seq ?? -1 }
        return nil
    }

    @Test func anIntactChainReturnsItsHead() throws {
        let dir = TempDir()
        let path = try chainedDatabase(dir)
        let v = try verify(path)
        #expect(v.isIntact)
        #expect(v.head?.seq == 6)
        #expect(v.head?.hash == (try sqlite3Value(path, "SELECT lower(hex(row_hash)) FROM safety_log WHERE seq = 6;")))
        #expect(try verify(path, anchor: v.head).isIntact)
    }

    @Test func updateAndDeleteFailThroughTheStockCLI() throws {
        let dir = TempDir()
        let path = try chainedDatabase(dir)
        for sql in ["UPDATE safety_log SET description = 'x' WHERE seq = 2;", "DELETE FROM safety_log WHERE seq = 6;",
                    "UPDATE treatment_events SET event_type = 'y';", "DELETE FROM treatment_events;"] {
            let r = try sqlite3(path, sql)
            #expect(r.status != 0, "\(sql) went through")
            #expect(r.stderr.contains("append-only"))
        }
        // An insert that does not extend the chain is refused too.
        let r = try sqlite3(path, "INSERT INTO safety_log (timestamp, event_type, severity, description, seq, prev_hash, row_hash) VALUES ('t', 'x', 'info', 'd', 7, zeroblob(32), zeroblob(32));")
        #expect(r.status != 0)
        #expect(try verify(path).isIntact)
    }

    func dropTriggers(_ path: String) throws {
        try sqlite3Value(path, "DROP TRIGGER safety_log_no_update; DROP TRIGGER safety_log_no_delete; DROP TRIGGER safety_log_chain_insert;")
    }

    @Test func anEditedRowIsFound() throws {
        let dir = TempDir()
        let path = try chainedDatabase(dir)
        try dropTriggers(path)
        try sqlite3Value(path, "UPDATE safety_log SET description = 'nothing happened' WHERE seq = 3;")
        let v = try verify(path)
        #expect(brokenSeq(v) == 3)
        if case .broken(let b) = v { #expect(b.reason.contains("edited")) }
    }

    @Test func aDeletedRowIsFound() throws {
        let dir = TempDir()
        let path = try chainedDatabase(dir)
        try dropTriggers(path)
        try sqlite3Value(path, "DELETE FROM safety_log WHERE seq = 4;")
        let v = try verify(path)
        #expect(brokenSeq(v) == 4)
        if case .broken(let b) = v { #expect(b.reason.contains("deleted")) }
    }

    @Test func reorderedRowsAreFound() throws {
        let dir = TempDir()
        let path = try chainedDatabase(dir)
        try dropTriggers(path)
        // Swap the positions of rows 2 and 3.
        try sqlite3Value(path, "DROP INDEX ix_safety_log_seq; UPDATE safety_log SET seq = CASE seq WHEN 2 THEN 3 ELSE 2 END WHERE seq IN (2, 3);")
        #expect(brokenSeq(try verify(path)) == 2)
    }

    @Test func anAppendedRowWithAWrongHashIsFound() throws {
        let dir = TempDir()
        let path = try chainedDatabase(dir)
        try dropTriggers(path)
        try sqlite3Value(path, """
            INSERT INTO safety_log (log_id, timestamp, event_type, severity, description, seq, prev_hash, row_hash)
            SELECT 99, '2026-01-01 00:00:00.000000', 'forged', 'info', 'forged', 7, row_hash, randomblob(32) FROM safety_log WHERE seq = 6;
            """)
        let v = try verify(path)
        #expect(brokenSeq(v) == 7)
        if case .broken(let b) = v { #expect(b.logID == 99) }
    }

    @Test func aRowOutsideTheChainAndACutTailAreFound() throws {
        let dir = TempDir()
        let path = try chainedDatabase(dir)
        let head = try #require(try verify(path).head)
        try dropTriggers(path)
        try sqlite3Value(path, "DELETE FROM safety_log WHERE seq = 6;")
        // Without an anchor the shorter chain is self-consistent; the anchor shows the cut.
        #expect(try verify(path).isIntact)
        #expect(brokenSeq(try verify(path, anchor: head)) == 6)
        // A row with no chain columns at all is an unsealed row (migration 0007): not part
        // of the chain yet, reported apart; one with only some chain columns is a break.
        try sqlite3Value(path, "INSERT INTO safety_log (log_id, timestamp, event_type, severity, description) VALUES (50, 't', 'x', 'info', 'no chain');")
        #expect(try verify(path).isIntact)
        try sqlite3Value(path, "INSERT INTO safety_log (log_id, timestamp, event_type, severity, description, prev_hash) VALUES (51, 't', 'x', 'info', 'half a chain', zeroblob(32));")
        #expect(brokenSeq(try verify(path)) == -1)
    }
}
