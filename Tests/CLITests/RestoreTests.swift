import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

@Suite struct RestoreTests {
    /// A data folder with one backup, then more sessions recorded after it.
    func dataWithBackup(_ dir: TempDir, keyFile: String? = nil) throws -> (data: String, copy: String) {
        let data = dir.sub("data")
        try simulatedData(data, keyFile: keyFile)
        let r = try maint(["backup", "--data-dir", data] + (keyFile.map { ["--key-file", $0] } ?? []))
        #expect(r.status == 0, "\(r.output)")
        try simulatedData(data, sessions: 1, keyFile: keyFile)
        return (data, r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test func restoreLatestReplacesTheLiveDatabaseAndCanBeUndone() throws {
        let dir = TempDir()
        let (data, copy) = try dataWithBackup(dir)
        let db = data + "/tosca.db"
        let sessionsBefore = try sqlite3Value(db, "SELECT count(*) FROM sessions;")
        let dry = try maint(["restore", "--latest", "--dry-run", "--data-dir", data])
        #expect(dry.status == 0, "\(dry.output)")
        #expect(dry.stdout.contains("1 session(s)") && dry.stdout.contains(PathName.name(copy)))
        #expect(try sqlite3Value(db, "SELECT count(*) FROM sessions;") == sessionsBefore)
        let noTTY = try maint(["restore", "--latest", "--data-dir", data])
        #expect(noTTY.status == 64 && noTTY.stderr.contains("--yes"))
        let r = try maint(["restore", "--latest", "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        // The live file is the copy's content plus one maintenance entry.
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(db, "SELECT count(*) FROM sessions;") == (try sqlite3Value(copy, "SELECT count(*) FROM sessions;")))
        let entry = try sqlite3Value(db, "SELECT event_type || '|' || details FROM safety_log ORDER BY seq DESC LIMIT 1;")
        #expect(entry.hasPrefix("maintenance|") && entry.contains("\"restored_from\":\"\(PathName.name(copy))\""))
        #expect(!FileManager.default.fileExists(atPath: db + ".restore-partial"))
        // The previous database is a verified pre-restore safety copy, and restoring it undoes the restore.
        let pre = try #require(listing(data + "/backups").first { $0.hasSuffix("_pre-restore.db") })
        #expect(try sqlite3Value(data + "/backups/" + pre, "SELECT count(*) FROM sessions;") == sessionsBefore)
        #expect(try maint(["verify", "--all", "--live", "--data-dir", data]).status == 0)
        let undo = try maint(["restore", "--backup", data + "/backups/" + pre, "--yes", "--data-dir", data])
        #expect(undo.status == 0, "\(undo.output)")
        #expect(try sqlite3Value(db, "SELECT count(*) FROM sessions;") == sessionsBefore)
        // The recorder opens the restored file and records on.
        try simulatedData(data, sessions: 1)
    }

    @Test func aDamagedLiveDatabaseIsKeptAsRawFilesForForensics() throws {
        let dir = TempDir()
        let (data, copy) = try dataWithBackup(dir)
        let db = data + "/tosca.db"
        try sqlite3Value(db, "PRAGMA wal_checkpoint(TRUNCATE);")
        // Destroy the header: the file no longer opens.
        try flipByte(db, at: 0)
        try flipByte(db, at: 1)
        let damagedSHA = fileSHA256(db)
        let r = try maint(["restore", "--latest", "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        let raw = try #require(listing(data + "/backups").first { $0.hasSuffix("_pre-restore.db") })
        #expect(fileSHA256(data + "/backups/" + raw) == damagedSHA)
        let m = try Manifest.read(path: data + "/backups/" + raw + ".manifest.json").0
        #expect(m.facts.unverifiable == true)
        let v = try maint(["verify", "--all", "--data-dir", data])
        #expect(v.status == 0, "\(v.output)")
        #expect(v.stdout.contains("kept for forensics"))
        #expect(try sqlite3Value(db, "SELECT count(*) FROM sessions;") == (try sqlite3Value(copy, "SELECT count(*) FROM sessions;")))
    }

    @Test func aJournalLeftWithoutItsDatabaseIsKeptBeforeTheRestore() throws {
        let dir = TempDir()
        let (data, _) = try dataWithBackup(dir)
        let db = data + "/tosca.db"
        unlink(db)
        let wal = Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        _ = FileManager.default.createFile(atPath: db + "-wal", contents: wal)
        let r = try maint(["restore", "--latest", "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        let raw = try #require(listing(data + "/backups").first { $0.hasSuffix("_pre-restore.db-wal") })
        #expect(FileManager.default.contents(atPath: data + "/backups/" + raw) == wal)
        #expect(!FileManager.default.fileExists(atPath: db + "-wal"))
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 0)
    }

    @Test func choosingCopiesAndBadInput() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let none = try maint(["restore", "--latest", "--yes", "--data-dir", data])
        #expect(none.status == 66 && none.stderr.contains("Try: "), "\(none.output)")
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let day = try maint(["restore", "--date", "2001-02-03", "--utc", "--dry-run", "--data-dir", data])
        #expect(day.status == 66, "\(day.output)")
        let today = String(UTCTime.now().iso8601.prefix(10))
        #expect(day.stderr.contains(today), "nearest day not named: \(day.stderr)")
        #expect(try maint(["restore", "--date", today, "--utc", "--dry-run", "--data-dir", data]).status == 0)
        for bad in ["2026-02-30", "yesterday", "2026-1-5"] {
            #expect(try maint(["restore", "--date", bad, "--dry-run", "--data-dir", data]).status == 64, "\(bad)")
        }
        #expect(try maint(["restore", "--latest", "--date", today, "--data-dir", data]).status == 64)
        #expect(try maint(["restore", "--data-dir", data]).status == 64)
        // --to: a new file for inspection, never over an existing one.
        let to = dir.sub("inspect.db")
        let r = try maint(["restore", "--latest", "--to", to, "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        let copy = data + "/backups/" + listing(data + "/backups").first { $0.hasSuffix(".db") }!
        #expect(fileSHA256(to) == fileSHA256(copy))
        #expect(try maint(["restore", "--latest", "--to", to, "--yes", "--data-dir", data]).status == 73)
    }

    @Test func aCopyThatFailsIsNeverRestoredAndTheNextGoodOneIsNamed() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let older = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let newer = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try flipByte(newer, at: 6000)
        let sha = fileSHA256(data + "/tosca.db")
        let r = try maint(["restore", "--backup", newer, "--yes", "--data-dir", data])
        #expect(r.status == 65, "\(r.output)")
        #expect(r.stderr.contains(older), "\(r.stderr)")
        #expect(fileSHA256(data + "/tosca.db") == sha)
        #expect(!listing(data + "/backups").contains { $0.contains("pre-restore") })
    }

    /// The pre-restore copy is made while the chosen copy is verified, but published only
    /// after the confirmation: a restore refused at the confirmation (no terminal, no --yes)
    /// leaves no pre-restore copy and no partial file, and the live database as it was.
    @Test func anUnconfirmedRestoreLeavesNoPreRestoreCopy() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let copy = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let sha = fileSHA256(data + "/tosca.db")
        let before = listing(data + "/backups")
        let r = try maint(["restore", "--backup", copy, "--data-dir", data])
        #expect(r.status == 64, "\(r.output)")
        #expect(r.stderr.contains("without --yes"), "\(r.stderr)")
        #expect(fileSHA256(data + "/tosca.db") == sha)
        #expect(listing(data + "/backups") == before)
        #expect(!listing(data).contains { $0.contains("partial") }, "\(listing(data))")
        // Confirmed, the same restore keeps a verified pre-restore copy.
        #expect(try maint(["restore", "--backup", copy, "--yes", "--data-dir", data]).status == 0)
        let pre = try #require(listing(data + "/backups").first { $0.hasSuffix("_pre-restore.db") })
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 0, "\(pre)")
    }

    @Test func encryptedCopiesRestoreWithTheirKeyOnly() throws {
        let dir = TempDir()
        try writeKeyFile(dir.sub("key"))
        let (data, copy) = try dataWithBackup(dir, keyFile: dir.sub("key"))
        let keyID = try Manifest.read(path: copy + ".manifest.json").0.facts.encryption.keyID!
        try writeKeyFile(dir.sub("other"))
        // The other key cannot open the live database either: the copy is checked first.
        let wrong = try maint(["restore", "--backup", copy, "--to", dir.sub("x.db"), "--yes", "--key-file", dir.sub("other"), "--data-dir", data])
        #expect(wrong.status == 77 && wrong.stderr.contains(keyID), "\(wrong.output)")
        let r = try maint(["restore", "--latest", "--yes", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        #expect(try FileHeader.classify(path: data + "/tosca.db") == .other)
        #expect(try maint(["verify", "--live", "--key-file", dir.sub("key"), "--data-dir", data]).status == 0)
    }

    @Test func restoreWhileTheRecorderRunsIsRefusedAndTheRecorderGoesOn() throws {
        let dir = TempDir()
        let (data, _) = try dataWithBackup(dir)
        let db = data + "/tosca.db"
        let sim = try Spawned(executable("tosca-sim"), ["--data-dir", data, "--until-signal", "--event-rate", "200"])
        #expect(waitUntil(timeout: 60) { (try? sqlite3Value(db, "SELECT count(*) FROM sessions WHERE status = 'in_progress';")) == "1" })
        let r = try maint(["restore", "--latest", "--yes", "--data-dir", data])
        #expect(r.status == 75, "\(r.output)")
        let before = try sqlite3Value(db, "SELECT count(*) FROM treatment_events;")
        usleep(300_000)
        #expect(try sqlite3Value(db, "SELECT count(*) FROM treatment_events;") != before)
        sim.signal(SIGTERM)
        #expect(sim.wait().status == 0)
    }

    @Test func diskFullAndAnUnwritableFolderLeaveTheLiveDatabaseUntouched() throws {
        let dir = TempDir()
        let (data, _) = try dataWithBackup(dir)
        try growDatabase(data + "/tosca.db", events: 20_000)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let db = data + "/tosca.db"
        try sqlite3Value(db, "PRAGMA wal_checkpoint(TRUNCATE);")
        let sha = fileSHA256(db)
        let full = try run("/bin/bash", ["-c", "ulimit -f 2048 && exec \"$0\" \"$@\"", executable("tosca-maint"), "restore", "--latest", "--yes", "--data-dir", data])
        #expect(full.status == 74, "\(full.output)")
        #expect(fileSHA256(db) == sha)
        #expect(!listing(data).contains { $0.contains("restore-partial") })
        // An unwritable data folder: the copy cannot be staged beside tosca.db.
        let asRoot = geteuid() == 0
        if asRoot { try #require(try run("/usr/bin/chattr", ["+i", data]).status == 0) } else { chmod(data, 0o500) }
        defer { if asRoot { _ = try? run("/usr/bin/chattr", ["-i", data]) } else { chmod(data, 0o700) } }
        let ro = try maint(["restore", "--latest", "--yes", "--data-dir", data])
        #expect(ro.status == 73, "\(ro.output)")
        #expect(fileSHA256(db) == sha)
    }
}
