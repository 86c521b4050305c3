import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

@Suite struct MigrateTests {
    @Test func orphansRefuseUnlessRepairedAndNothingOldIsLost() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        mkdir(data, 0o700)
        let db = data + "/tosca.db"
        try makeLegacyDatabase(at: db, orphans: true)
        let sha = fileSHA256(db)
        let before = try legacyTableRows(db)
        let status = try maint(["migrate", "status", "--data-dir", data])
        #expect(status.status == 0 && status.stdout.contains("TOSCA v0.9.12 baseline, unversioned"))
        let refused = try maint(["migrate", "up", "--yes", "--data-dir", data])
        #expect(refused.status == 65, "\(refused.output)")
        #expect(refused.stderr.contains("sessions rowid 41: tech_id=0 has no row in tech_users"))
        #expect(refused.stderr.contains("--repair-orphans"))
        #expect(fileSHA256(db) == sha)
        // A refused migration publishes no pre-migration copy (each retry used to add one).
        #expect(!listing(data + "/backups").contains { $0.hasSuffix("_pre-migration.db") })
        let noTTY = try maint(["migrate", "up", "--repair-orphans", "--data-dir", data])
        #expect(noTTY.status == 64)
        #expect(fileSHA256(db) == sha)
        #expect(!listing(data + "/backups").contains { $0.hasSuffix("_pre-migration.db") })
        let r = try maint(["migrate", "up", "--yes", "--repair-orphans", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        // The one pre-migration copy names the versions.
        let copies = listing(data + "/backups").filter { $0.hasSuffix("_pre-migration.db") }
        #expect(copies.count == 1)
        let copy = try #require(copies.first)
        let facts = try Manifest.read(path: data + "/backups/" + copy + ".manifest.json").0.facts
        #expect(facts.fromVersion == "TOSCA v0.9.12 baseline, unversioned" && facts.toVersion == "0007_safety_log_unsealed_rows")
        // Every old row is still there as the stock CLI shows it; placeholders present.
        var after = try legacyTableRows(db)
        let placeholder = try sqlite3Value(db, "SELECT username || '|' || is_active FROM tech_users WHERE tech_id = 0;")
        #expect(placeholder == "unknown-legacy-0|0")
        after["tech_users"] = after["tech_users"].map { $0.split(separator: "\n").filter { !$0.hasPrefix("0,") }.joined(separator: "\n") }
        // The repair is recorded as one more safety-log row, after every old one.
        let log = after["safety_log"]?.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) ?? []
        #expect(log.last?.contains("'maintenance'") == true)
        after["safety_log"] = log.dropLast().joined(separator: "\n")
        #expect(after == before)
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(db, "PRAGMA foreign_key_check;") == "")
        #expect(try sqlite3Value(db, "SELECT event_type FROM safety_log ORDER BY seq DESC LIMIT 1;") == "maintenance")
        #expect(try maint(["migrate", "up", "--yes", "--data-dir", data]).stdout.contains("up to date"))
        // The recorder now opens it.
        let rec = try Recorder(dataDirectory: data)
        try rec.close()
    }

    @Test func anEditedAppliedMigrationIsNamedAndEncryptedDatabasesMigrate() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        mkdir(data, 0o700)
        let plain = dir.sub("legacy.db")
        try makeLegacyDatabase(at: plain)
        // An encrypted v0.9.12 database through the stock sqlcipher CLI.
        let hex = try writeKeyFile(dir.sub("key"))
        let r0 = try run(which("sqlcipher")!, ["-batch", "-bail", plain],
                         stdin: "ATTACH DATABASE '\(data)/tosca.db' AS enc KEY \"x'\(hex)'\";\nSELECT sqlcipher_export('enc');\nDETACH DATABASE enc;\n")
        try #require(r0.status == 0, "\(r0.output)")
        let r = try maint(["migrate", "up", "--yes", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        let copy = try #require(listing(data + "/backups").first { $0.hasSuffix("_pre-migration.db") })
        #expect(try FileHeader.classify(path: data + "/backups/" + copy) == .other)
        #expect(try sqlite3(data + "/backups/" + copy, "SELECT count(*) FROM sqlite_master;").status != 0)
        #expect(try sqlcipher(data + "/tosca.db", keyHex: hex, "SELECT count(*) FROM schema_migrations;").stdout.contains("7"))
        // Edit an applied migration's record: status names it, 65.
        _ = try sqlcipher(data + "/tosca.db", keyHex: hex, "UPDATE schema_migrations SET checksum = 'x' WHERE migration_id = '0004_session_recordings';")
        let s = try maint(["migrate", "status", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(s.status == 65 && s.stderr.contains("0004_session_recordings"), "\(s.output)")
    }

    @Test func snapshotsKeepTheirReason() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let r = try maint(["snapshot", "--reason", "before replacing the laser head", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(path.hasSuffix("_snapshot.db"))
        let m = try Manifest.read(path: path + ".manifest.json").0
        #expect(m.facts.kind == .snapshot && m.facts.reason == "before replacing the laser head")
        #expect(try maint(["snapshot", "--reason", " ", "--data-dir", data]).status == 64)
        #expect(try maint(["migrate", "--help"]).stdout.contains("--repair-orphans"))
    }
}

@Suite struct MigrateFallBackTests {
    /// A migration that changes rows it does not document fails verification, and the
    /// pre-migration copy comes back.
    @Test func aResultThatFailsVerificationIsReplacedByTheSafetyCopy() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        mkdir(data, 0o700)
        let db = data + "/tosca.db"
        try makeLegacyDatabase(at: db)
        let dumpBefore = try sqlite3Value(db, ".dump")
        var job = MigrateJob(folder: DataFolder(root: data))
        job.migrator = Migrator(migrations: toscaMigrations + [
            Migration(id: "0008_test_loses_a_row", summary: "test only", steps: [.sql("DELETE FROM protocols WHERE protocol_id = 2;")]),
        ])
        do {
            _ = try job.up(upTo: nil, repairOrphans: false) { _ in }
            Issue.record("a migration that lost a row went through")
        } catch let f as ToolFailure {
            #expect(f.status == .dataError)
            #expect(f.message.contains("table protocols changed") && f.message.contains("restored"), "\(f.message)")
        }
        #expect(try sqlite3Value(db, ".dump") == dumpBefore)
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
    }
}
