import Foundation
import Testing
import TestSupport
import ToscaCore

/// Recorders killed with SIGKILL at random moments, then reopened.
@Suite(.serialized) struct CrashTests {
    func startSim(_ data: String, extra: [String] = []) throws -> Spawned {
        try Spawned(executable("tosca-sim"), ["--data-dir", data, "--until-signal", "--sample-rate", "2000", "--event-rate", "500"] + extra)
    }

    func count(_ db: String, _ sql: String) -> Int { Int((try? sqlite3Value(db, sql)) ?? "") ?? -1 }

    @Test(arguments: 1...5)
    func sigkillMidSessionLosesNothingCommitted(trial: Int) throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let db = data + "/tosca.db"
        let sim = try startSim(data, extra: ["--seed", "\(trial)"])
        #expect(waitUntil(timeout: 60) { count(db, "SELECT count(*) FROM treatment_events;") >= 20 })
        usleep(UInt32.random(in: 0...400_000))
        let committedBefore = count(db, "SELECT count(*) FROM treatment_events;")
        sim.signal(SIGKILL)
        let result = sim.wait()
        #expect(result.status == 128 + SIGKILL)
        // The stock CLI recovers the WAL: the file is sound and holds at least what was committed.
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        let afterKill = count(db, "SELECT count(*) FROM treatment_events;")
        #expect(afterKill >= committedBefore)
        #expect(try sqlite3Value(db, "SELECT status FROM sessions;") == "in_progress")
        // Reopen: the session becomes aborted with a reason, every event is still there.
        let rec = try Recorder(dataDirectory: data)
        #expect(rec.recovery.abortedSessions == [1])
        try rec.close()
        #expect(try sqlite3Value(db, "SELECT status FROM sessions;") == "aborted")
        #expect(try sqlite3Value(db, "SELECT abort_reason FROM sessions;").contains("recorder stopped before the session ended"))
        #expect(count(db, "SELECT count(*) FROM treatment_events;") == afterKill)
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        #expect(try SafetyChain.verify(try Database(path: db)).isIntact)
        #expect(try sqlite3Value(db, "SELECT group_concat(event_type) FROM (SELECT event_type FROM safety_log ORDER BY seq DESC LIMIT 2);") == "session_sealed,session_recovered")
        // Every JSONL line left is whole, and session.json describes the files.
        let folder = data + "/" + (try sqlite3Value(db, "SELECT session_folder_path FROM sessions;"))
        let manifest = try JSONDecoder().decode(SessionManifest.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/session.json")))
        #expect(manifest.status == "aborted")
        for s in manifest.streams {
            let text = try String(contentsOfFile: folder + "/" + s.file, encoding: .utf8)
            #expect(text.isEmpty || text.hasSuffix("\n"))
            #expect(text.split(separator: "\n").count == s.lines)
            #expect(fileSHA256(folder + "/" + s.file) == s.sha256)
            for line in text.split(separator: "\n") {
                #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "torn line kept: \(line)")
            }
        }
    }

    /// Short sessions back to back, killed at a random moment: sometimes mid-session,
    /// sometimes while a session starts or ends (between session.json and the commit).
    @Test(arguments: 1...8)
    func sigkillAtRandomMomentsAcrossSessionBoundaries(trial: Int) throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let db = data + "/tosca.db"
        let sim = try Spawned(executable("tosca-sim"), ["--data-dir", data, "--sessions", "1000", "--duration", "0.03",
                                                        "--sample-rate", "1000", "--event-rate", "300", "--seed", "\(trial)"])
        #expect(waitUntil(timeout: 60) { count(db, "SELECT count(*) FROM sessions;") >= 2 })
        usleep(UInt32.random(in: 0...300_000))
        let committedBefore = count(db, "SELECT count(*) FROM treatment_events;")
        sim.signal(SIGKILL)
        _ = sim.wait()
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        let rec = try Recorder(dataDirectory: data)
        try rec.close()
        #expect(try sqlite3Value(db, "SELECT count(*) FROM sessions WHERE status = 'in_progress';") == "0")
        #expect(count(db, "SELECT count(*) FROM treatment_events;") >= committedBefore)
        #expect(try SafetyChain.verify(try Database(path: db)).isIntact)
        // Every session's session.json agrees with its row and its stream files.
        for row in try sqlite3Value(db, "SELECT session_id || '|' || status || '|' || session_folder_path FROM sessions;").split(separator: "\n") {
            let parts = row.split(separator: "|").map(String.init)
            let folder = data + "/" + parts[2]
            let manifest = try JSONDecoder().decode(SessionManifest.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/session.json")))
            #expect(manifest.status == parts[1], "session \(parts[0])")
            for s in manifest.streams { #expect(fileSHA256(folder + "/" + s.file) == s.sha256, "session \(parts[0]) \(s.file)") }
        }
    }

    @Test func aTornLastLineIsCutAndTheCutRecorded() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let db = data + "/tosca.db"
        let sim = try startSim(data)
        let stream = { () -> String? in
            guard let f = try? sqlite3Value(db, "SELECT session_folder_path FROM sessions;"), !f.isEmpty else { return nil }
            return data + "/" + f + "/streams/photodiode.jsonl"
        }
        #expect(waitUntil(timeout: 60) { (stream().flatMap { try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int } ?? 0) > 0 })
        sim.signal(SIGKILL)
        _ = sim.wait()
        let path = try #require(stream())
        // Whatever the kill left, make the tail torn: a partial JSON object with no newline.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data("{\"t\":\"2026-11-29T06:".utf8))
        try handle.close()
        let rec = try Recorder(dataDirectory: data)
        #expect(rec.recovery.truncatedStreams.count >= 1)
        #expect(rec.recovery.truncatedStreams.contains { $0.file == "streams/photodiode.jsonl" && $0.bytesCut >= 19 })
        try rec.close()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasSuffix("}\n"))
        #expect(try sqlite3Value(db, "SELECT count(*) FROM safety_log WHERE event_type = 'stream_truncated' AND details LIKE '%photodiode.jsonl%';") == "1")
        #expect(try SafetyChain.verify(try Database(path: db)).isIntact)
    }

    @Test func aSecondRecorderIsRefusedWhileTheFirstRecordsAndSIGTERMEndsCleanly() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let db = data + "/tosca.db"
        let sim = try startSim(data)
        #expect(waitUntil(timeout: 60) { count(db, "SELECT count(*) FROM treatment_events;") > 0 })
        let second = try run(executable("tosca-sim"), ["--data-dir", data, "--sessions", "1", "--duration", "0.2"])
        #expect(second.status == 75, "\(second.output)")
        #expect(second.stderr.contains("tosca.lock"))
        #expect(throws: RecorderError.self) { _ = try Recorder(dataDirectory: data) }
        let before = count(db, "SELECT count(*) FROM treatment_events;")
        usleep(300_000)
        #expect(count(db, "SELECT count(*) FROM treatment_events;") > before, "the first recorder stopped recording")
        sim.signal(SIGTERM)
        let r = sim.wait()
        #expect(r.status == 0, "\(r.output)")
        #expect(try sqlite3Value(db, "SELECT status FROM sessions;") == "completed")
        let folder = try sqlite3Value(db, "SELECT session_folder_path FROM sessions;")
        #expect(FileManager.default.fileExists(atPath: data + "/" + folder + "/session.json"))
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
    }
}
