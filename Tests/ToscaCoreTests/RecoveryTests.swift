import Foundation
import Testing
import TestSupport
@testable import ToscaCore

@Suite struct RecoveryTests {
    @Test func aSafetyEventWithANonFiniteReadingIsStillWritten() throws {
        let dir = TempDir()
        let (rec, tech, _, _) = try makeRecorder(dir.path)
        for v in [Double.nan, -Double.infinity, -0.0] {
            try rec.recordSafetyEvent(SafetyLogEntry(techID: tech, eventType: "photodiode_fault", severity: .emergency,
                                                     description: "sensor reading \(v)", photodiodeVoltage: v, details: "{\"a\":1}"))
        }
        try rec.close()
        let db = dir.sub("tosca.db")
        #expect(try sqlite3Value(db, "SELECT quote(photodiode_voltage_v) || ' ' || details FROM safety_log WHERE event_type = 'photodiode_fault' ORDER BY seq;")
                .split(separator: "\n") == ["NULL {\"photodiode_voltage_v_raw\":\"nan\",\"a\":1}",
                                            "NULL {\"photodiode_voltage_v_raw\":\"-inf\",\"a\":1}", "0.0 {\"a\":1}"])
        #expect(try SafetyChain.verify(try Database(path: db)).isIntact)
    }

    @Test func invalidUTF8InAStoredRowIsHashedAsStored() throws {
        let dir = TempDir()
        let (rec, tech, _, _) = try makeRecorder(dir.path)
        try rec.recordSafetyEvent(SafetyLogEntry(techID: tech, eventType: "x", severity: .info, description: "ok"))
        try rec.close()
        let db = dir.sub("tosca.db")
        try sqlite3Value(db, "DROP TRIGGER safety_log_no_update;")
        // Two different invalid byte sequences that both decode to U+FFFD: a checker that
        // repaired the text would not see the edit.
        try sqlite3Value(db, "UPDATE safety_log SET description = CAST(x'80' AS TEXT) WHERE seq = 1;")
        #expect(!(try SafetyChain.verify(try Database(path: db)).isIntact))
    }

    @Test func aSessionEndedJustBeforeACrashKeepsItsEnding() throws {
        let dir = TempDir()
        let (rec, tech, subject, proto) = try makeRecorder(dir.path)
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto)
        try s.openStream("photodiode", fields: ["v"]).append(time: .now(), [.double(1)])
        try rec.endSession(s, notes: "all well")
        try rec.close()
        let db = dir.sub("tosca.db")
        // As if the process died after writing session.json and before the commit.
        try sqlite3Value(db, "UPDATE sessions SET status = 'in_progress', end_time = NULL, post_treatment_notes = NULL WHERE session_id = \(s.id);")
        let again = try Recorder(dataDirectory: dir.path)
        #expect(again.recovery.abortedSessions.isEmpty)
        try again.close()
        #expect(try sqlite3Value(db, "SELECT status || '|' || post_treatment_notes FROM sessions WHERE session_id = \(s.id);") == "completed|all well")
        #expect(try sqlite3Value(db, "SELECT group_concat(event_type) FROM (SELECT event_type FROM safety_log ORDER BY seq DESC LIMIT 2);") == "session_sealed,session_recovered")
    }

    @Test func aForeignSessionJSONIsKeptAsideNotOverwritten() throws {
        let dir = TempDir()
        let (rec, tech, subject, proto) = try makeRecorder(dir.path)
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto)
        let folder = s.folder
        try rec.close()
        // As if a session were left in progress with a session.json someone else wrote.
        try sqlite3Value(dir.sub("tosca.db"), "UPDATE sessions SET status = 'in_progress' WHERE session_id = \(s.id);")
        let foreign = #"{"written_by":"TOSCA v0.9.12"}"#
        try foreign.write(toFile: folder + "/session.json", atomically: true, encoding: .utf8)
        let again = try Recorder(dataDirectory: dir.path)
        #expect(again.recovery.abortedSessions == [s.id])
        try again.close()
        let aside = listing(folder).filter { $0.hasPrefix("session.json.replaced-") }
        #expect(aside.count == 1)
        #expect(try String(contentsOfFile: folder + "/" + aside[0], encoding: .utf8) == foreign)
        #expect(try String(contentsOfFile: folder + "/session.json", encoding: .utf8).contains("\"status\" : \"aborted\""))
    }

    @Test func noStreamOpensOnAnEndedSession() throws {
        let dir = TempDir()
        let (rec, tech, subject, proto) = try makeRecorder(dir.path)
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto)
        try rec.endSession(s)
        #expect(throws: RecorderError.self) { _ = try s.openStream("late", fields: ["v"]) }
        #expect(throws: RecorderError.self) { try rec.record(TreatmentEvent(eventType: "x"), in: s) }
        try rec.close()
    }

    @Test func theSimulatorMarkIsWrittenWithTheSchema() throws {
        let dir = TempDir()
        var options = RecorderOptions()
        options.initialConfig = ["data_origin": "simulated"]
        let rec = try Recorder(dataDirectory: dir.path, options: options)
        try rec.close()
        #expect(try sqlite3Value(dir.sub("tosca.db"), "SELECT config_value FROM system_config WHERE config_key = 'data_origin';") == "simulated")
        // Not written again on later opens.
        let again = try Recorder(dataDirectory: dir.path, options: options)
        try again.close()
        #expect(try sqlite3Value(dir.sub("tosca.db"), "SELECT count(*) FROM system_config WHERE config_key = 'data_origin';") == "1")
    }
}
