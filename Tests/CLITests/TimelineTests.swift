import Foundation
import Testing
import TestSupport

/// The safety-log timeline across backups and restores (ARCHITECTURE D7): a backup never
/// publishes a chain that does not extend the last one, a restore is confirmed by the
/// catalog even when there was no database to keep, and a root run leaves the data
/// folder's owner in charge of what it writes.
@Suite struct TimelineTests {
    /// Trailing safety-log entries deleted past the append-only trigger leave a chain that is
    /// intact on its own, but shorter than the head the last backup recorded: the next backup
    /// must refuse it, or `verify --live` would take it as the new anchor and the deletion
    /// would never show.
    @Test func aBackupRefusesAChainThatNoLongerExtendsTheLastBackup() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 3)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let db = data + "/tosca.db"
        let before = try sqlite3Value(db, "SELECT count(*) FROM safety_log;")
        try sqlite3Value(db, """
            DROP TRIGGER safety_log_no_delete;
            DELETE FROM safety_log WHERE seq = (SELECT max(seq) FROM safety_log);
            """)
        #expect(Int(try sqlite3Value(db, "SELECT count(*) FROM safety_log;")) == Int(before)! - 1)
        let copies = listing(data + "/backups")
        let r = try maint(["backup", "--data-dir", data])
        #expect(r.status == 65, "\(r.output)")
        #expect(r.stderr.contains("does not extend the head of backup") && r.stderr.contains("tampering"), "\(r.stderr)")
        #expect(listing(data + "/backups") == copies, "a copy was published")
        // The live check agrees, and a safety copy for forensics is still possible.
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 65)
        let snap = try maint(["snapshot", "--reason", "evidence", "--data-dir", data])
        #expect(snap.status == 0, "\(snap.output)")
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
}
