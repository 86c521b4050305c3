import Foundation
import Testing
import TestSupport
@testable import ToscaCore

/// A recorder with one technician, subject and protocol.
func makeRecorder(_ dir: String, options: RecorderOptions = RecorderOptions()) throws -> (Recorder, Int64, Int64, Int64) {
    let r = try Recorder(dataDirectory: dir, options: options)
    let tech = try r.addTechnician(username: "t\(UInt32.random(in: 0...UInt32.max))", fullName: "Tech")
    let subject = try r.addSubject(code: "S-\(UInt32.random(in: 0...UInt32.max))", createdByTechID: tech)
    let proto = try r.addProtocol(name: "P\(UInt32.random(in: 0...UInt32.max))", type: "standard", data: "{\"power_w\":2}", createdByTechID: tech)
    return (r, tech, subject, proto)
}

@Suite struct RecorderTests {
    @Test func aSessionLeavesRowsFoldersAndAMatchingSessionJSON() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let (rec, tech, subject, proto) = try makeRecorder(data)
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto, treatmentSite: "left eye")
        let stream = try s.openStream("photodiode", fields: ["voltage_v", "note"])
        for i in 0..<1000 {
            try stream.append(time: UTCTime(seconds: 1_790_000_000 + Int64(i / 100), microseconds: Int32(i % 100) * 10_000),
                              [.double(Double(i) / 7), .string(i == 5 ? "quote \" back\\slash\nnewline\u{1}" : "n")])
        }
        for i in 0..<300 {
            try rec.record(TreatmentEvent(timeOffsetMs: Int64(i * 10), eventType: "power_reading", laserPowerCommandedWatts: 2,
                                          laserPowerActualWatts: i < 100 ? 0 : 2, footpedalState: i >= 100), in: s)
        }
        try rec.recordSafetyEvent(SafetyLogEntry(sessionID: s.id, techID: tech, eventType: "interlock", severity: .critical,
                                                 description: "door opened", footpedalState: true, photodiodeVoltage: 0.25))
        let manifest = try rec.endSession(s, notes: "fine")
        try rec.close()

        let db = data + "/tosca.db"
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(db, "SELECT count(*) FROM treatment_events WHERE session_id = \(s.id);") == "300")
        #expect(try sqlite3Value(db, "SELECT status || '|' || session_folder_path || '|' || post_treatment_notes FROM sessions WHERE session_id = \(s.id);")
                == "completed|\(s.relativeFolder)|fine")
        // 200 events at 2 W, 10 ms apart (the last one holds no interval): 1.99 s on, 3.98 J.
        #expect(abs((manifest.totalLaserOnTimeSeconds ?? 0) - 1.99) < 1e-9)
        #expect(abs((manifest.totalEnergyJoules ?? 0) - 3.98) < 1e-9)
        #expect(manifest.maxPowerWatts == 2)
        #expect(try sqlite3Value(db, "SELECT event_type FROM safety_log ORDER BY seq;").split(separator: "\n") == ["session_started", "interlock", "session_ended", "session_sealed"])
        #expect(s.relativeFolder.hasPrefix("sessions/\(s.subjectCode)/"))
        // session.json agrees with the file as sha256sum and wc see it.
        let jsonPath = data + "/" + s.relativeFolder + "/session.json"
        let decoded = try JSONDecoder().decode(SessionManifest.self, from: try Data(contentsOf: URL(fileURLWithPath: jsonPath)))
        #expect(decoded == manifest)
        let file = data + "/" + s.relativeFolder + "/streams/photodiode.jsonl"
        let sum = try run("/usr/bin/sha256sum", [file]).stdout.split(separator: " ").first.map(String.init)
        #expect(decoded.streams.first?.sha256 == sum)
        #expect(decoded.streams.first?.lines == 1000)
        // One JSON object a line, UTC timestamps.
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 1001 && lines.last == "")
        for line in lines.dropLast() {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect((obj["t"] as? String)?.hasSuffix("Z") == true)
        }
        let fifth = try JSONSerialization.jsonObject(with: Data(lines[5].utf8)) as? [String: Any]
        #expect(fifth?["note"] as? String == "quote \" back\\slash\nnewline\u{1}")
        #expect(fifth?["t"] as? String == "2026-09-21T14:13:20.050000Z")
        #expect(try SafetyChain.verify(try Database(path: db)).isIntact)
        #expect(FileManager.default.fileExists(atPath: data + "/" + s.relativeFolder + "/media"))
    }

    @Test func eventsAreCommittedInGroupsAndOnFlush() throws {
        let dir = TempDir()
        var options = RecorderOptions()
        options.eventGroupSize = 50
        options.eventGroupIntervalNanoseconds = 3_600_000_000_000
        options.backgroundFlush = false
        let (rec, tech, subject, proto) = try makeRecorder(dir.sub("d"), options: options)
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto)
        let db = dir.sub("d/tosca.db")
        for _ in 0..<49 { try rec.record(TreatmentEvent(eventType: "x"), in: s) }
        #expect(try sqlite3Value(db, "SELECT count(*) FROM treatment_events;") == "0")
        try rec.record(TreatmentEvent(eventType: "x"), in: s)
        #expect(try sqlite3Value(db, "SELECT count(*) FROM treatment_events;") == "50")
        try rec.record(TreatmentEvent(eventType: "x"), in: s)
        try rec.flush()
        #expect(try sqlite3Value(db, "SELECT count(*) FROM treatment_events;") == "51")
        try rec.close()
    }

    @Test func theBackgroundFlusherCommitsIdleEventsAndStreams() throws {
        let dir = TempDir()
        var options = RecorderOptions()
        options.eventGroupSize = 1000
        options.eventGroupIntervalNanoseconds = 50_000_000
        options.streamPolicy.writeIntervalNanoseconds = 50_000_000
        let (rec, tech, subject, proto) = try makeRecorder(dir.sub("d"), options: options)
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto)
        let stream = try s.openStream("photodiode", fields: ["v"])
        try stream.append(time: .now(), [.double(1)])
        try rec.record(TreatmentEvent(eventType: "x"), in: s)
        let file = dir.sub("d/\(s.relativeFolder)/streams/photodiode.jsonl")
        #expect(try waitUntil(timeout: 10) { try sqlite3Value(dir.sub("d/tosca.db"), "SELECT count(*) FROM treatment_events;") == "1" })
        #expect(waitUntil(timeout: 10) { (try? String(contentsOfFile: file, encoding: .utf8))?.hasSuffix("}\n") == true })
        try rec.close()
    }

    @Test func aSecondRecorderOnTheSameFolderIsRefused() throws {
        let dir = TempDir()
        let first = try Recorder(dataDirectory: dir.path)
        #expect(throws: RecorderError.self) { _ = try Recorder(dataDirectory: dir.path) }
        do { _ = try Recorder(dataDirectory: dir.path) } catch let e as RecorderError {
            guard case .locked = e else { Issue.record("wrong error \(e)"); return }
        }
        try first.close()
        let again = try Recorder(dataDirectory: dir.path)
        try again.close()
    }

    @Test func aDatabaseBehindIsRefusedNamingMigrateUpAndLeftUntouched() throws {
        let dir = TempDir()
        try makeLegacyDatabase(at: dir.sub("tosca.db"))
        let sha = fileSHA256(dir.sub("tosca.db"))
        do {
            _ = try Recorder(dataDirectory: dir.path)
            Issue.record("recorder opened a v0.9.12 database")
        } catch let e as MigrationError {
            #expect(e.description.contains("tosca-maint migrate up"))
        }
        #expect(fileSHA256(dir.sub("tosca.db")) == sha)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("tosca.db-wal")))
        #expect(try sqlite3Value(dir.sub("tosca.db"), "PRAGMA journal_mode;") == "delete")
    }

    @Test func anEncryptedDatabaseIsCreatedWithTheKeyAndUnreadableWithoutIt() throws {
        let dir = TempDir()
        let hex = try writeKeyFile(dir.sub("key"))
        let key = try KeySource.read(path: dir.sub("key"))
        let (rec, tech, subject, proto) = try makeRecorder(dir.sub("d"), options: RecorderOptions(key: key))
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto)
        try rec.record(TreatmentEvent(eventType: "x"), in: s)
        try rec.endSession(s)
        try rec.close()
        let db = dir.sub("d/tosca.db")
        #expect(try FileHeader.classify(path: db) == .other)
        #expect(try sqlite3(db, "SELECT count(*) FROM sessions;").status != 0)
        let r = try sqlcipher(db, keyHex: hex, "SELECT count(*) FROM treatment_events; PRAGMA cipher_integrity_check; PRAGMA journal_mode;")
        #expect(r.stdout.split(separator: "\n").map(String.init) == ["ok", "1", "wal"])
    }

    @Test func streamNamesThatCouldEscapeTheFolderAreRefused() throws {
        let dir = TempDir()
        let (rec, tech, subject, proto) = try makeRecorder(dir.sub("d"))
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: proto)
        for bad in ["../x", "a/b", ".hidden", ""] {
            #expect(throws: RecorderError.self) { _ = try s.openStream(bad, fields: ["v"]) }
        }
        #expect(throws: RecorderError.self) { _ = try s.openStream("ok", fields: ["t"]) }
        #expect(throws: RecorderError.self) { _ = try rec.addSubject(code: "../etc", createdByTechID: tech) }
        try rec.close()
    }
}
