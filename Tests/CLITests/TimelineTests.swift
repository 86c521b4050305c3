import Foundation
import Testing
import TestSupport
import ToscaCore

/// The safety-log timeline across backups and restores (ARCHITECTURE D7): a backup never
/// publishes a chain that does not extend the last one, a restore is confirmed by the
/// catalog even when there was no database to keep, and a root run leaves the data
/// folder's owner in charge of what it writes.
@Suite struct TimelineTests {
    /// Trailing safety-log entries deleted past the append-only trigger leave a chain that is
    /// intact on its own, but shorter than the head the last backup recorded. The next
    /// backup keeps the data but is marked failed, so it never becomes the anchor that would
    /// hide the deletion; `restore --anchor` brings back the state before it; an admin's
    /// `--new-timeline` accepts a change known to be legitimate.
    @Test func aBackupOfAChainThatNoLongerExtendsTheLastBackupIsNotTrusted() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 3)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let good = try #require(listing(data + "/backups").first { $0.hasSuffix(".db") })
        let db = data + "/tosca.db"
        let before = try sqlite3Value(db, "SELECT count(*) FROM safety_log;")
        try sqlite3Value(db, """
            DROP TRIGGER safety_log_no_delete;
            DELETE FROM safety_log WHERE seq = (SELECT max(seq) FROM safety_log);
            """)
        #expect(Int(try sqlite3Value(db, "SELECT count(*) FROM safety_log;")) == Int(before)! - 1)
        let r = try maint(["backup", "--data-dir", data])
        #expect(r.status == 65, "\(r.output)")
        #expect(r.stderr.contains("NOT as a verified backup") && r.stderr.contains("does not extend the head of backup \(good)"), "\(r.stderr)")
        let kept = try #require(listing(data + "/backups").first { $0.hasSuffix(".db") && $0 != good }, "the data was not kept")
        let list = try maint(["list", "--json", "--data-dir", data])
        #expect(list.stdout.contains("\"failed\""), "\(list.stdout)")
        // The live check still anchors on the good backup, and so does a second backup.
        let live = try maint(["verify", "--live", "--data-dir", data])
        #expect(live.status == 65 && live.stdout.contains("anchored on \(good)"), "\(live.output)")
        #expect(try maint(["backup", "--data-dir", data]).status == 65)
        // --latest never picks a failed copy; --anchor names the state before the change.
        let plan = try maint(["restore", "--anchor", "--dry-run", "--data-dir", data])
        #expect(plan.status == 0 && plan.stdout.contains(good) && !plan.stdout.contains(kept), "\(plan.output)")
        // A safety copy for forensics is still possible.
        #expect(try maint(["snapshot", "--reason", "evidence", "--data-dir", data]).status == 0)
        // Accepting the change as a new timeline: a verified backup, the new anchor.
        let accepted = try maint(["backup", "--new-timeline", "test: entry removed on purpose", "--data-dir", data])
        #expect(accepted.status == 0, "\(accepted.output)")
        let after = try maint(["verify", "--live", "--data-dir", data])
        #expect(after.status == 0, "\(after.output)")
        #expect(try maint(["backup", "--new-timeline", " ", "--data-dir", data]).status == 64)
    }

    /// Two backups, then the older one (returned) restored over the live database: the live
    /// safety log now extends that copy, not the newest backup.
    static func restoredOlderCopy(_ data: String) throws -> String {
        try simulatedData(data, sessions: 2)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let c = try #require(listing(data + "/backups").first { $0.hasSuffix(".db") })
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try maint(["restore", "--backup", data + "/backups/" + c, "--yes", "--data-dir", data]).status == 0)
        return c
    }

    /// After a genuine restore of copy C, an attacker deletes everything after C's head and
    /// appends a forged "restored from C" entry of their own (our own library computes a
    /// valid chain link for it). The forgery does not match the binding the real restore
    /// wrote into C's manifest, so the live check keeps its anchor and reports it.
    @Test func aForgedRestoreEntryDoesNotMoveTheAnchor() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let c = try Self.restoredOlderCopy(data)
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
        let cHead = try sqlite3Value(data + "/backups/" + c, "SELECT max(seq) FROM safety_log;")
        try sqlite3Value(data + "/tosca.db", """
            PRAGMA wal_checkpoint(TRUNCATE);
            DROP TRIGGER safety_log_no_delete;
            DELETE FROM safety_log WHERE seq > \(cHead);
            """)
        do {
            let db = try Database(path: data + "/tosca.db", options: .init())
            let details = #"{"restored_from":"\#(c)","user":"attacker"}"#
            _ = try db.transaction {
                try SafetyChain.append(SafetyLogEntry(eventType: "maintenance", severity: .warning, description: "database restored from \(c)",
                                                      actionTaken: "tosca-maint restore", details: details), to: db)
            }
        }
        #expect(try sqlite3Value(data + "/tosca.db", "SELECT count(*) FROM safety_log WHERE details LIKE '%attacker%';") == "1")
        let live = try maint(["verify", "--live", "--data-dir", data])
        #expect(live.status == 65 && live.output.contains("tampering"), "\(live.output)")
        #expect(try maint(["backup", "--data-dir", data]).status == 65)
    }

    /// Moving to a new machine: only backups/ came along and an older copy is restored into
    /// a folder with no tosca.db (so there is no pre-restore copy). The restored copy's
    /// manifest confirms the restore entry: the live check and the next backup accept it.
    @Test func aRestoreIntoAnEmptyFolderIsConfirmedByTheCopysManifest() throws {
        let dir = TempDir()
        let old = dir.sub("old")
        try simulatedData(old, sessions: 2)
        #expect(try maint(["backup", "--data-dir", old]).status == 0)
        let first = try #require(listing(old + "/backups").first { $0.hasSuffix(".db") })
        try simulatedData(old, sessions: 2)
        #expect(try maint(["backup", "--data-dir", old]).status == 0)
        let data = dir.sub("new")
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try #require(try run("/bin/cp", ["-a", old + "/backups", data + "/backups"]).status == 0)
        let r = try maint(["restore", "--backup", data + "/backups/" + first, "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        #expect(!listing(data + "/backups").contains { $0.hasSuffix("_pre-restore.db") })
        let live = try maint(["verify", "--live", "--data-dir", data])
        #expect(live.status == 0 && live.stdout.contains("anchored on \(first)"), "\(live.output)")
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        // An appended restore entry naming a copy the catalog never restored is not believed.
        let other = dir.sub("other")
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try #require(try run("/bin/cp", ["-a", old + "/backups", other + "/backups"]).status == 0)
        try #require(try run("/bin/cp", ["-a", data + "/tosca.db", other + "/tosca.db"]).status == 0)
        let forged = try maint(["verify", "--live", "--data-dir", other])
        #expect(forged.status == 65, "\(forged.output)")
    }

    /// Run as root on a folder that belongs to another user, a maintenance run continues as
    /// that user: every file it creates belongs to the folder's owner.
    @Test(.enabled(if: geteuid() == 0, "needs root")) func aRootRunWritesAsTheDataFoldersOwner() throws {
        let dir = TempDir()
        chmod(dir.path, 0o755)
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let owner: uid_t = 65534
        try #require(try run("/bin/chown", ["-R", "\(owner):\(owner)", data]).status == 0)
        let r = try maint(["backup", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stderr.contains("running as root: continuing as"), "\(r.stderr)")
        for name in listing(data + "/backups") {
            var st = stat()
            #expect(lstat(data + "/backups/" + name, &st) == 0 && st.st_uid == owner, "\(name) belongs to uid \(st.st_uid)")
        }
        let v = try maint(["verify", "--latest", "--data-dir", data])
        #expect(v.status == 0, "\(v.output)")
    }

    /// encrypt renames every copy it converts; the restore's binding travels with the copy,
    /// so a restore made before the cutover stays confirmed after it.
    @Test func aRestoreStaysConfirmedAcrossTheEncryptionCutover() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        _ = try Self.restoredOlderCopy(data)
        let key = dir.sub("key")
        try writeKeyFile(key)
        let e = try maint(["encrypt", "--key-file", key, "--yes", "--data-dir", data])
        #expect(e.status == 0, "\(e.output)")
        let live = try maint(["verify", "--live", "--key-file", key, "--data-dir", data])
        #expect(live.status == 0, "\(live.output)")
        let b = try maint(["backup", "--key-file", key, "--data-dir", data])
        #expect(b.status == 0, "\(b.output)")
    }
}
