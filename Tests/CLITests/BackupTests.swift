import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

@Suite struct BackupTests {
    func manifest(_ copy: String) throws -> Manifest { try Manifest.read(path: copy + ".manifest.json").0 }

    @Test func backupPublishesAVerifiedCopyThatTheStockCLIConfirms() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let r = try maint(["backup", "--data-dir", data, "--kind", "daily"])
        #expect(r.status == 0, "\(r.output)")
        let copy = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(copy.hasPrefix(data + "/backups/tosca_") && copy.hasSuffix(".db"))
        #expect(listing(data + "/backups") == [".maint.lock", PathName.name(copy), PathName.name(copy) + ".manifest.json"])
        let m = try manifest(copy)
        #expect(m.facts.kind == .daily)
        #expect(m.checks.map(\.result) == ["ok"])
        // Independent oracles: sha256sum, the stock sqlite3 CLI.
        #expect(try run("/usr/bin/sha256sum", [copy]).stdout.hasPrefix(m.facts.sha256))
        #expect(try sqlite3Value(copy, "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(copy, "PRAGMA journal_mode;") == "delete")
        #expect(Int(try sqlite3Value(copy, "SELECT count(*) FROM treatment_events;")) == m.facts.rowCounts["treatment_events"])
        #expect(try sqlite3Value(copy, "SELECT count(*) FROM treatment_events;") == (try sqlite3Value(data + "/tosca.db", "SELECT count(*) FROM treatment_events;")))
        #expect(try sqlite3Value(copy, "SELECT seq || ' ' || lower(hex(row_hash)) FROM safety_log ORDER BY seq DESC LIMIT 1;")
                == "\(m.facts.chainHead!.seq) \(m.facts.chainHead!.hash)")
        #expect(try m.facts.computedDigest() == m.facts.digest)
        var st = stat()
        stat(copy, &st)
        #expect(st.st_mode & 0o077 == 0)
        // verify, list, status all agree.
        let v = try maint(["verify", "--all", "--data-dir", data])
        #expect(v.status == 0, "\(v.output)")
        #expect(try manifest(copy).checks.map(\.level) == ["backup", "verify"])
        let list = try maint(["list", "--data-dir", data, "--json"])
        #expect(list.status == 0)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any])
        #expect((rows["copies"] as? [[String: Any]])?.first?["kind"] as? String == "daily")
        #expect(try maint(["status", "--data-dir", data]).status == 1) // no drill yet
        #expect(try maint(["restore", "--drill", "--data-dir", data]).status == 0)
        let prom = dir.sub("tosca.prom")
        let s = try maint(["status", "--data-dir", data, "--prometheus", prom])
        #expect(s.status == 0, "\(s.output)")
        let text = try String(contentsOfFile: prom, encoding: .utf8)
        #expect(text.contains("tosca_backup_count 1\n") && text.contains("tosca_status_exit_code 0\n") && text.contains("tosca_database_encrypted 0\n"))
        stat(prom, &st)
        #expect(st.st_mode & 0o777 == 0o644)
    }

    @Test func encryptedDatabasesGiveEncryptedCopiesKeyedWithTheSameKey() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let hex = try writeKeyFile(dir.sub("key"))
        try simulatedData(data, keyFile: dir.sub("key"))
        let r = try maint(["backup", "--data-dir", data, "--key-file", dir.sub("key")])
        #expect(r.status == 0, "\(r.output)")
        let copy = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try FileHeader.classify(path: copy) == .other)
        #expect(try sqlite3(copy, "SELECT count(*) FROM sessions;").status != 0)
        let viaCipher = try sqlcipher(copy, keyHex: hex, "SELECT count(*) FROM treatment_events; PRAGMA cipher_integrity_check;")
        let m = try manifest(copy)
        #expect(viaCipher.stdout.split(separator: "\n").map(String.init) == ["ok", String(m.facts.rowCounts["treatment_events"]!)])
        #expect(m.facts.encryption.keyID == (try KeySource.read(path: dir.sub("key"))).keyID)
        // SQLCipher answers PRAGMA page_size as text: the manifest once recorded 0.
        let pages = try sqlcipher(copy, keyHex: hex, "PRAGMA page_count;").stdout.split(separator: "\n").last.flatMap { Int($0) }
        #expect(m.facts.pageSize == 4096 && m.facts.pageCount == pages && m.facts.sizeBytes == Int64(4096 * (pages ?? 0)), "\(m.facts.pageSize) \(m.facts.pageCount)")
        #expect(!(try String(contentsOfFile: copy + ".manifest.json", encoding: .utf8)).contains(hex))
        #expect(try maint(["verify", "--latest", "--data-dir", data, "--key-file", dir.sub("key")]).status == 0)
        let noKey = try maint(["verify", "--latest", "--data-dir", data])
        #expect(noKey.status == 77 && noKey.stderr.contains(m.facts.encryption.keyID!))
        try writeKeyFile(dir.sub("other"))
        let wrong = try maint(["verify", "--latest", "--data-dir", data, "--key-file", dir.sub("other")])
        #expect(wrong.status == 77 && wrong.stderr.contains(m.facts.encryption.keyID!), "\(wrong.output)")
        // Backup with a wrong key, or a key file open to others → 77, nothing published.
        #expect(try maint(["backup", "--data-dir", data, "--key-file", dir.sub("other")]).status == 77)
        chmod(dir.sub("key"), 0o644)
        #expect(try maint(["backup", "--data-dir", data, "--key-file", dir.sub("key")]).status == 77)
        #expect(try maint(["backup", "--data-dir", data]).status == 77)
        #expect(listing(data + "/backups").filter { $0.hasSuffix(".db") }.count == 1)
    }

    @Test func badInputGivesDistinctExitCodesAndPublishesNothing() throws {
        let dir = TempDir()
        let none = try maint(["backup", "--data-dir", dir.sub("empty")])
        #expect(none.status == 66, "\(none.output)")
        #expect(none.stderr.hasPrefix("Error: ") && none.stderr.contains("Try: "))
        // Corrupt: bytes flipped inside the last page (a treatment_events leaf).
        let data = dir.sub("data")
        try simulatedData(data)
        let db = data + "/tosca.db"
        try growDatabase(db, events: 3000)
        try sqlite3Value(db, "PRAGMA wal_checkpoint(TRUNCATE);")
        let size = try FileManager.default.attributesOfItem(atPath: db)[.size] as! NSNumber
        let corrupt = dir.sub("corrupt")
        mkdir(corrupt, 0o700)
        _ = try run("/bin/cp", [db, corrupt + "/tosca.db"])
        for i in 0..<64 { try flipByte(corrupt + "/tosca.db", at: UInt64(size.intValue - 4096 + 100 + i * 7)) }
        let c = try maint(["backup", "--data-dir", corrupt])
        #expect(c.status == 65, "\(c.output)")
        #expect(listing(corrupt + "/backups").filter { $0 != ".maint.lock" }.isEmpty)
        // Truncated to half.
        let truncated = dir.sub("truncated")
        mkdir(truncated, 0o700)
        _ = try run("/bin/cp", [db, truncated + "/tosca.db"])
        truncate(truncated + "/tosca.db", off_t(size.intValue / 2))
        let t = try maint(["backup", "--data-dir", truncated])
        #expect(t.status == 65, "\(t.output)")
        #expect(listing(truncated + "/backups").filter { $0 != ".maint.lock" }.isEmpty)
        // Not plaintext SQLite and no key.
        let junk = dir.sub("junk")
        mkdir(junk, 0o700)
        _ = FileManager.default.createFile(atPath: junk + "/tosca.db", contents: Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }))
        let j = try maint(["backup", "--data-dir", junk])
        #expect(j.status == 77 && j.stderr.contains("give the key"), "\(j.output)")
        // Usage.
        #expect(try maint(["backup", "--kind", "weekly"]).status == 64)
        #expect(try maint(["backup", "--copy-method", "rsync"]).status == 64)
        #expect(try maint(["verify", "--all", "--latest"]).status == 64)
        #expect(try maint(["prune", "--safety-copies"]).status == 64)
    }

    @Test func aFolderThatCannotBeWrittenGives73() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let backups = data + "/backups"
        mkdir(backups, 0o700)
        // root ignores mode bits: make the folder immutable instead.
        let asRoot = geteuid() == 0
        if asRoot {
            let r = try run("/usr/bin/chattr", ["+i", backups])
            try #require(r.status == 0, "chattr +i is needed to make a folder unwritable for root: \(r.output)")
        } else {
            chmod(backups, 0o500)
        }
        defer { if asRoot { _ = try? run("/usr/bin/chattr", ["-i", backups]) } else { chmod(backups, 0o700) } }
        let r = try maint(["backup", "--data-dir", data])
        #expect(r.status == 73, "\(r.output)")
    }

    @Test func diskFullWhileCopyingGives74AndLeavesNothingBehind() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        try growDatabase(data + "/tosca.db", events: 20_000)
        let first = try maint(["backup", "--data-dir", data])
        #expect(first.status == 0, "\(first.output)")
        let older = first.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let sha = fileSHA256(older)
        let before = listing(data + "/backups")
        // RLIMIT_FSIZE of 1 MiB (2048 blocks of 512 bytes): writes past it fail with EFBIG.
        let r = try run("/bin/bash", ["-c", "ulimit -f 2048 && exec \"$0\" \"$@\"", executable("tosca-maint"), "backup", "--data-dir", data])
        #expect(r.status == 74 && r.stderr.contains("free space"), "\(r.output)")
        #expect(listing(data + "/backups") == before)
        #expect(fileSHA256(older) == sha)
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 0)
    }

    /// The raw page copy and the online-backup API give the same rows, each copy proven by
    /// the stock sqlite3 CLI; `--json` says which method ran.
    /// D12 on one core (a recorder running) measures what D12 on three threads measures,
    /// plaintext and encrypted, the seal check's finding included.
    @Test func oneCoreAndThreeThreadMeasurementsAgree() throws {
        let dir = TempDir()
        try writeKeyFile(dir.sub("key"))
        let key = try KeySource.read(path: dir.sub("key"))
        for (name, k) in [("plain", nil), ("enc", key)] as [(String, DatabaseKey?)] {
            let data = dir.sub(name)
            try simulatedData(data, keyFile: k == nil ? nil : dir.sub("key"))
            let path = data + "/tosca.db"
            let seals: @Sendable (Database) throws -> String? = { db in "\(try SessionSeal.eventDigests(db).count) sealed" }
            let (a, da, fa) = try Measurement.withDigest(path: path, key: k, alsoFinding: seals, onOneCore: false)
            let (b, db, fb) = try Measurement.withDigest(path: path, key: k, alsoFinding: seals, onOneCore: true)
            #expect(a.integrity == ["ok"] && b.integrity == ["ok"], "\(name)")
            #expect(a.cipherIntegrity == b.cipherIntegrity && a.rowCounts == b.rowCounts && a.foreignKeyViolations == b.foreignKeyViolations, "\(name)")
            #expect(a.pageCount == b.pageCount && a.pageSize == b.pageSize && a.schemaVersion == b.schemaVersion && a.chain.head == b.chain.head, "\(name)")
            #expect(da == db && fa == fb && fa == "2 sealed", "\(name): \(fa ?? "nil")")
        }
    }

    /// A copy is paced (gentle writes, verification on one core) only when another process
    /// holds tosca.lock: a restore or the cutover holds it itself, and its copies must not
    /// crawl as if a recorder ran.
    @Test func copiesArePacedOnlyForAnotherHolderOfTheDatabaseLock() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let folder = DataFolder(root: data)
        do {
            let locks = try folder.takeExclusiveLocks(what: "the test")
            defer { locks.unlock() }
            let made = try CopyJob(folder: folder, kind: .snapshot, reason: "test").makeCopy()
            #expect(made.copy?.paced == false)
        }
        // Another process holding it (as the recorder does): paced, and --json says so.
        let holder = Process()
        // A shell that takes the lock on its descriptor 9 with flock(1), then becomes
        // `sleep`: killing it drops the lock at once.
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "exec 9>>\"$0\" && /usr/bin/flock 9 && exec /bin/sleep 60", folder.databaseLock]
        try holder.run()
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        for _ in 0..<100 where !FileLock.isHeld(path: folder.databaseLock, byOthers: true) { usleep(20_000) }
        let r = try maint(["backup", "--json", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("\"paced\" : true"), "\(r.stdout)")
    }

    @Test func bothCopyMethodsGiveTheSameRows() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        try growDatabase(data + "/tosca.db", events: 5_000)
        var counts: [String] = []
        for method in ["raw", "backup-api"] {
            let r = try maint(["backup", "--copy-method", method, "--json", "--data-dir", data])
            #expect(r.status == 0, "\(r.output)")
            let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect((obj?["copy"] as? [String: Any])?["method"] as? String == method, "\(r.stdout)")
            let path = obj?["path"] as? String ?? ""
            #expect(try sqlite3Value(path, "PRAGMA integrity_check;") == "ok")
            #expect(try sqlite3Value(path, "PRAGMA journal_mode;") == "delete")
            counts.append(try sqlite3Value(path, "SELECT (SELECT count(*) FROM treatment_events), (SELECT count(*) FROM safety_log), (SELECT sum(time_offset_ms) FROM treatment_events);"))
        }
        #expect(counts.count == 2 && counts[0] == counts[1], "\(counts)")
        #expect(counts.first == (try sqlite3Value(data + "/tosca.db", "SELECT (SELECT count(*) FROM treatment_events), (SELECT count(*) FROM safety_log), (SELECT sum(time_offset_ms) FROM treatment_events);")))
    }

    @Test func aHeldMaintenanceLockGives75() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        mkdir(data + "/backups", 0o700)
        let lock = try FileLock(path: data + "/backups/.maint.lock")
        let r = try maint(["backup", "--data-dir", data])
        #expect(r.status == 75, "\(r.output)")
        #expect(try maint(["prune", "--data-dir", data]).status == 75)
        lock.unlock()
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
    }

    @Test func backupsInTheSameSecondGetDistinctNames() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        var names: [String] = []
        for _ in 0..<4 {
            let r = try maint(["backup", "--data-dir", data])
            #expect(r.status == 0, "\(r.output)")
            names.append(PathName.name(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        #expect(Set(names).count == 4)
        #expect(names[0].range(of: #"^tosca_\d{8}\.db$"#, options: .regularExpression) != nil)
        for n in names.dropFirst() { #expect(n.range(of: #"^tosca_\d{8}_\d{6}(_\d+)?\.db$"#, options: .regularExpression) != nil, "\(n)") }
    }

    @Test func verifyNamesAFlippedByteAnEditedManifestAndAMissingOne() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        var copies: [String] = []
        for _ in 0..<3 { copies.append(try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try flipByte(copies[0], at: 5000)
        let text = try String(contentsOfFile: copies[1] + ".manifest.json", encoding: .utf8)
        try text.replacingOccurrences(of: "\"foreign_key_violations\" : 0", with: "\"foreign_key_violations\" : 1")
            .write(toFile: copies[1] + ".manifest.json", atomically: true, encoding: .utf8)
        unlink(copies[2] + ".manifest.json")
        let r = try maint(["verify", "--data-dir", data] + copies)
        #expect(r.status == 65, "\(r.output)")
        let names = copies.map { PathName.name($0) }
        for n in names { #expect(r.stdout.contains("FAILED  \(n)"), "\(n) not named: \(r.stdout)") }
        #expect(r.stdout.contains("SHA-256 differs"))
        #expect(r.stdout.contains("digest does not match"))
        #expect(r.stdout.contains("missing"))
        #expect(r.stderr.contains("Error: verification failed for"))
        #expect(try manifest(copies[0]).checks.last?.result == "failed")
        // The next maintenance run quarantines the database file that has no manifest.
        #expect(try maint(["prune", "--data-dir", data]).status == 0)
        #expect(listing(data + "/backups/quarantine") == [names[2]])
        let list = try maint(["list", "--data-dir", data])
        #expect(list.stdout.contains("Quarantined"))
        #expect(try maint(["status", "--data-dir", data]).status == 65)
    }

    @Test func foreignKeyViolationsAreRecordedNeverARefusal() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        try sqlite3Value(data + "/tosca.db", "INSERT INTO sessions (subject_id, tech_id, start_time, status, created_date) VALUES (1, 0, '2025-01-01 00:00:00.000000', 'completed', '2025-01-01 00:00:00.000000');")
        let r = try maint(["backup", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        let m = try manifest(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(m.facts.foreignKeyViolations == 1)
        #expect(try maint(["verify", "--latest", "--data-dir", data]).status == 0)
    }

    @Test func liveVerifyFindsTamperingAndACutTail() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 3)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 0)
        let db = data + "/tosca.db"
        try sqlite3Value(db, "DROP TRIGGER safety_log_no_update; DROP TRIGGER safety_log_no_delete;")
        // Cut the tail below the anchored head: self-consistent, but shorter than the backup's.
        try sqlite3Value(db, "DELETE FROM safety_log WHERE seq = (SELECT MAX(seq) FROM safety_log);")
        let cut = try maint(["verify", "--live", "--data-dir", data])
        #expect(cut.status == 65, "\(cut.output)")
        #expect(cut.stdout.contains("tampering") && cut.stdout.contains("cut off"))
        try sqlite3Value(db, "UPDATE safety_log SET description = 'nothing' WHERE seq = 2;")
        let edited = try maint(["verify", "--live", "--data-dir", data])
        #expect(edited.status == 65)
        #expect(edited.stdout.contains("edited"))
    }

    @Test func statusIsUnhealthyWithoutAFreshVerifiedBackup() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let none = try maint(["status", "--data-dir", data, "--json"])
        #expect(none.status == 1, "\(none.output)")
        #expect(none.stdout.contains("\"verdict\" : \"no verified backup\""))
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let noDrill = try maint(["status", "--data-dir", data])
        #expect(noDrill.status == 1 && noDrill.stdout.contains("no restore drill"), "\(noDrill.output)")
        #expect(try maint(["restore", "--drill", "--data-dir", data]).status == 0)
        usleep(50_000)
        #expect(try maint(["status", "--data-dir", data, "--max-age", "0.00001"]).status == 1)
        #expect(try maint(["status", "--data-dir", data]).status == 0)
    }

    @Test func pruneKeepsGrandfatherFatherSonAndNeverTheNewestVerified() throws {
        // Thirty daily backups, one a day at 02:00 UTC, the newest one failed its last check.
        func entry(_ day: Int, ok: Bool = true, kind: CopyKind = .daily) -> CatalogEntry {
            let t = UTCTime(seconds: 1_790_000_000 + Int64(day) * 86_400, microseconds: 0)
            let facts = ManifestFacts(kind: kind, createdUTC: t.iso8601, sourcePath: "x", toolVersion: "t", fileName: "f\(day)", sha256: "",
                                      sizeBytes: 0, pageSize: 4096, pageCount: 1, schemaVersion: 6, schema: "6", rowCounts: [:],
                                      foreignKeyViolations: 0, chainHead: nil, encryption: .none, unverifiable: nil, reason: nil, fromVersion: nil, toVersion: nil, digest: "")
            return CatalogEntry(name: "\(kind.rawValue)-\(day)", path: "/nonexistent/\(day)",
                                manifest: Manifest(facts: facts, checks: [ManifestCheck(level: "backup", time: t, ok: ok, problems: [])]),
                                digestMatches: true, manifestError: nil)
        }
        var entries = (0..<60).map { entry($0, ok: $0 != 59) }
        entries.append(entry(10, kind: .preMigration))
        let catalog = Catalog(folder: DataFolder(root: "/x"), entries: entries, orphans: [], orphanManifests: [], partials: [], quarantined: [])
        let now = UTCTime(seconds: 1_790_000_000 + 60 * 86_400, microseconds: 0)
        let utc = TimeZone(identifier: "UTC")!
        let plan = PrunePlan.make(catalog: catalog, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, safetyCopiesOlderThanDays: nil, now: now, timeZone: utc)
        let kept = Set(plan.keep.map(\.entry.name))
        for d in 53..<60 { #expect(kept.contains("daily-\(d)")) }
        #expect(kept.contains("daily-58"))             // the newest verified (59 failed)
        #expect(kept.contains("pre-migration-10"))      // safety copies only when named
        #expect(plan.keep.first { $0.entry.name == "daily-58" }?.reason.contains("newest verified") == true)
        #expect(plan.remove.count + plan.keep.count == entries.count)
        #expect(plan.remove.count > 40)
        #expect(!plan.remove.contains { !$0.entry.isBackup })
        // Weekly and monthly keepers are the newest of their week / month.
        #expect(kept.count == 7 + plan.keep.filter { $0.reason.contains("weekly") && !$0.reason.contains("daily") }.count
                + plan.keep.filter { $0.reason.contains("monthly") && !$0.reason.contains("daily") && !$0.reason.contains("weekly") }.count + 1)
        let withSafety = PrunePlan.make(catalog: catalog, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, safetyCopiesOlderThanDays: 30, now: now, timeZone: utc)
        #expect(withSafety.remove.contains { $0.entry.name == "pre-migration-10" })
        // Keeping nothing still keeps the newest verified backup.
        let none = PrunePlan.make(catalog: catalog, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, safetyCopiesOlderThanDays: nil, now: now, timeZone: utc)
        #expect(none.keep.filter(\.entry.isBackup).map(\.entry.name) == ["daily-58"])
    }
}

@Suite struct KeyPolicyAndAnchorTests {
    @Test func aCredentialOnAPlaintextDeviceIsSetAsideButAnExplicitKeyIsRefused() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let cred = dir.sub("cred")
        mkdir(cred, 0o700)
        try writeKeyFile(cred + "/tosca-db-key")
        let r = try maint(["backup", "--data-dir", data], environment: ["CREDENTIALS_DIRECTORY": cred])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stderr.contains("credential is not used"))
        let explicit = try maint(["backup", "--data-dir", data, "--key-file", cred + "/tosca-db-key"])
        #expect(explicit.status == 77, "\(explicit.output)")
    }

    @Test func aForgedRestoreEntryDoesNotMoveTheAnchor() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        let old = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let db = data + "/tosca.db"
        // Rewrite history after the old backup, then append a "restore" entry naming it.
        try sqlite3Value(db, "DROP TRIGGER safety_log_no_delete; DROP TRIGGER safety_log_chain_insert;")
        let oldHead = try Manifest.read(path: old + ".manifest.json").0.facts.chainHead!
        try sqlite3Value(db, "DELETE FROM safety_log WHERE seq > \(oldHead.seq);")
        let rec = try Recorder(dataDirectory: data)
        try rec.recordSafetyEvent(SafetyLogEntry(eventType: "maintenance", severity: .info, description: "restore",
                                                 details: "{\"restored_from\":\"\(PathName.name(old))\"}"))
        try rec.close()
        let r = try maint(["verify", "--live", "--data-dir", data])
        #expect(r.status == 65, "\(r.output)")
        #expect(r.stdout.contains("tampering"))
    }
}
