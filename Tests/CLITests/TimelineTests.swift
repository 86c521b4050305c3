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
    /// backup keeps the data as a `suspect` copy, never a backup, so no later check can make
    /// it the anchor that would hide the deletion; `restore --anchor` names the state before
    /// it; an admin's `--new-timeline` accepts a change known to be legitimate.
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
        #expect(r.stderr.contains("suspect copy") && r.stderr.contains("does not extend the head of backup \(good)"), "\(r.stderr)")
        let suspect = try #require(listing(data + "/backups").first { $0.hasSuffix("_suspect.db") }, "the data was not kept")
        // Nothing turns the suspect copy into a backup: verifying its file, another backup. The anchor stays the good backup.
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 0)
        #expect(try maint(["verify", data + "/backups/" + suspect, "--data-dir", data]).status == 0)
        // It is never restored in place, not even planned (that would accept its timeline);
        // --to inspects it.
        #expect(try maint(["restore", "--backup", data + "/backups/" + suspect, "--dry-run", "--data-dir", data]).status == 65)
        let inPlace = try maint(["restore", "--backup", data + "/backups/" + suspect, "--yes", "--data-dir", data])
        #expect(inPlace.status == 65 && inPlace.stderr.contains("suspect copy"), "\(inPlace.output)")
        #expect(try maint(["restore", "--backup", data + "/backups/" + suspect, "--to", dir.sub("inspect.db"), "--yes", "--data-dir", data]).status == 0)
        #expect(try maint(["backup", "--data-dir", data]).status == 65)
        let live = try maint(["verify", "--live", "--data-dir", data])
        #expect(live.status == 65 && live.stdout.contains("anchored on \(good)"), "\(live.output)")
        let status = try maint(["status", "--data-dir", data])
        #expect(status.status == 65 && status.stdout.contains("suspect"), "\(status.output)")
        // --latest never picks a suspect copy; --anchor names the state before the change.
        let plan = try maint(["restore", "--anchor", "--dry-run", "--data-dir", data])
        #expect(plan.status == 0 && plan.stdout.contains(good) && !plan.stdout.contains("suspect"), "\(plan.output)")
        let latest = try maint(["restore", "--latest", "--dry-run", "--data-dir", data])
        #expect(latest.stdout.contains(good) && !latest.stdout.contains("suspect"), "\(latest.output)")
        // The anchor cannot be set aside; a safety copy for forensics is still possible.
        #expect(try maint(["quarantine", data + "/backups/" + good, "--data-dir", data]).status == 64)
        #expect(try maint(["snapshot", "--reason", "evidence", "--data-dir", data]).status == 0)
        // Accepting the change as a new timeline: a verified backup, the new anchor; the
        // suspect copies go to quarantine, and status no longer reports them.
        let accepted = try maint(["backup", "--new-timeline", "test: entry removed on purpose", "--data-dir", data])
        #expect(accepted.status == 0, "\(accepted.output)")
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
        let q = try maint(["quarantine", "--failed", "--data-dir", data])
        #expect(q.status == 0 && q.stdout.contains(suspect), "\(q.output)")
        #expect(listing(data + "/backups/quarantine").contains(suspect))
        #expect(!listing(data + "/backups").contains { $0.hasSuffix("_suspect.db") })
        let after = try maint(["status", "--data-dir", data])
        #expect(after.status != 65, "\(after.output)")
        #expect(try maint(["backup", "--new-timeline", " ", "--data-dir", data]).status == 64)
    }

    /// After a restore of an older copy, that copy is the anchor although it is neither
    /// recent nor the newest verified backup: prune keeps it, and so does quarantine.
    @Test func pruneKeepsTheAnchor() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let c = try Self.restoredOlderCopy(data)
        let p = try maint(["prune", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0", "--data-dir", data])
        #expect(p.status == 0 && p.stdout.contains("kept     \(c): ") && p.stdout.contains("proven against"), "\(p.output)")
        #expect(listing(data + "/backups").contains(c))
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
        // A damaged anchor is left in place by quarantine --failed, and said so.
        try flipByte(data + "/backups/" + c, at: 6000)
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 65)
        let q = try maint(["quarantine", "--failed", "--data-dir", data])
        #expect(q.status == 0 && q.stdout.contains("left     \(c)"), "\(q.output)")
        #expect(listing(data + "/backups").contains(c))
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
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
        // A copy only root can read looks missing to the owner: the hint says why.
        let rootOnly = dir.sub("root-only")
        mkdir(rootOnly, 0o700)
        let copy = try #require(listing(data + "/backups").first { $0.hasSuffix(".db") })
        _ = try run("/bin/cp", [data + "/backups/" + copy, data + "/backups/" + copy + ".manifest.json", rootOnly + "/"])
        let hidden = try maint(["verify", rootOnly + "/" + copy, "--data-dir", data])
        #expect(hidden.status == 66 && hidden.stderr.contains("this run continued as"), "\(hidden.output)")
    }

    /// encrypt and rekey rename every copy they convert; the restore's binding travels with
    /// the copy, so a restore made before the cutover stays confirmed after both.
    @Test func aRestoreStaysConfirmedAcrossTheCutoverAndARekey() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        _ = try Self.restoredOlderCopy(data)
        let key = dir.sub("key")
        try writeKeyFile(key)
        let e = try maint(["encrypt", "--key-file", key, "--yes", "--data-dir", data])
        #expect(e.status == 0, "\(e.output)")
        let live = try maint(["verify", "--live", "--key-file", key, "--data-dir", data])
        #expect(live.status == 0, "\(live.output)")
        // And across a key rotation, which renames every copy again.
        let newKey = dir.sub("key.new")
        try writeKeyFile(newKey)
        let rk = try maint(["rekey", "--key-file", key, "--new-key-file", newKey, "--yes", "--data-dir", data])
        #expect(rk.status == 0, "\(rk.output)")
        let rotated = try maint(["verify", "--live", "--key-file", newKey, "--data-dir", data])
        #expect(rotated.status == 0, "\(rotated.output)")
        let b = try maint(["backup", "--key-file", newKey, "--data-dir", data])
        #expect(b.status == 0, "\(b.output)")
    }

    /// A copy restored from outside backups/ (an off-device copy) is brought into the
    /// catalog first, so its manifest there confirms the restore: the live check and the
    /// next backup accept the restored timeline, with no --new-timeline.
    @Test func aCopyFromOutsideTheCatalogIsBroughtInBeforeTheRestore() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        let c = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let name = PathName.name(c)
        let outside = dir.sub("usb")
        mkdir(outside, 0o700)
        _ = try run("/bin/cp", [c, c + ".manifest.json", outside + "/"])
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        // The catalog no longer holds C itself (set aside once a newer backup is the anchor).
        #expect(try maint(["quarantine", c, "--data-dir", data]).status == 0)
        let r = try maint(["restore", "--backup", outside + "/" + name, "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        // Under a free name (its own is taken in quarantine), the same bytes.
        let brought = try #require(listing(data + "/backups").first { $0.hasSuffix(".db") && fileSHA256(data + "/backups/" + $0) == fileSHA256(outside + "/" + name) })
        #expect(brought != name)
        let live = try maint(["verify", "--live", "--data-dir", data])
        #expect(live.status == 0 && live.stdout.contains("anchored on \(brought)"), "\(live.output)")
        let b = try maint(["backup", "--data-dir", data])
        #expect(b.status == 0, "\(b.output)")
    }
}
