import Foundation
import Testing
import TestSupport
@testable import ToscaCore

@Suite struct SchemaTests {
    @Test func embeddedBaselineIsTheFixtureVerbatim() throws {
        let fixture = try String(contentsOfFile: fixturePath("tosca-v0.9.12-schema.sql"), encoding: .utf8)
        #expect(toscaBaselineSchemaSQL + "\n" == fixture)
    }

    @Test func newDatabaseHasEveryTableAndTriggerAsTheStockCLISeesIt() throws {
        let dir = TempDir()
        let path = dir.sub("new.db")
        let db = try Database(path: path, options: .init(create: true, walMode: true))
        let report = try Migrator().migrate(db)
        #expect(report.createdBaseline)
        #expect(report.applied == toscaMigrations.map(\.id))
        let tables = try sqlite3Value(path, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name;")
        #expect(tables.split(separator: "\n") == ["calibrations", "protocols", "safety_log", "schema_migrations", "session_recordings",
                                                   "sessions", "subjects", "system_config", "tech_users", "treatment_events"])
        let triggers = try sqlite3Value(path, "SELECT name FROM sqlite_master WHERE type='trigger' ORDER BY name;")
        #expect(triggers.split(separator: "\n") == ["safety_log_chain_insert", "safety_log_no_delete", "safety_log_no_replace", "safety_log_no_update",
                                                     "treatment_events_no_delete", "treatment_events_no_replace", "treatment_events_no_update"])
        #expect(try sqlite3Value(path, "PRAGMA user_version;") == "7")
        #expect(try sqlite3Value(path, "PRAGMA application_id;") == String(toscaApplicationID))
        #expect(try sqlite3Value(path, "PRAGMA integrity_check;") == "ok")
        let recorded = try sqlite3Value(path, "SELECT migration_id || ' ' || checksum FROM schema_migrations ORDER BY migration_id;")
        #expect(recorded.split(separator: "\n").map(String.init) == toscaMigrations.map { "\($0.id) \($0.checksum)" })
        #expect(try sqlite3Value(path, "SELECT config_key FROM system_config;") == "legacy_datetime_utc_offset")
        // Up to date: a second run does nothing.
        #expect(try Migrator().migrate(db).applied.isEmpty)
        #expect(try Migrator().status(db).isCurrent)
    }

    @Test func anEditedAppliedMigrationIsRefusedByName() throws {
        let dir = TempDir()
        let path = dir.sub("x.db")
        try Migrator().migrate(try Database(path: path, options: .init(create: true)))
        try sqlite3Value(path, "UPDATE schema_migrations SET checksum = 'deadbeef' WHERE migration_id = '0003_treatment_events';")
        let db = try Database(path: path)
        do {
            _ = try Migrator().status(db)
            Issue.record("checksum change not detected")
        } catch let e as MigrationError {
            guard case .checksumMismatch(let id, _, _) = e else { Issue.record("wrong error \(e)"); return }
            #expect(id == "0003_treatment_events")
            #expect(e.description.contains("0003_treatment_events"))
        }
        // The same holds when this build's SQL changes under an applied migration.
        try sqlite3Value(path, "UPDATE schema_migrations SET checksum = '\(toscaMigrations[2].checksum)' WHERE migration_id = '0003_treatment_events';")
        var edited = toscaMigrations
        edited[4] = Migration(id: edited[4].id, summary: "", steps: [.sql("CREATE TABLE calibrations (x);")])
        #expect(throws: MigrationError.self) { _ = try Migrator(migrations: edited).status(db) }
        #expect(try Migrator().status(db).isCurrent)
    }

    @Test func unknownTablesAndNewerDatabasesAreRefused() throws {
        let dir = TempDir()
        try sqlite3Value(dir.sub("other.db"), "CREATE TABLE customers (id);")
        #expect(throws: MigrationError.self) { _ = try Migrator().status(try Database(path: dir.sub("other.db"))) }
        try Migrator().migrate(try Database(path: dir.sub("newer.db"), options: .init(create: true)))
        try sqlite3Value(dir.sub("newer.db"), "INSERT INTO schema_migrations VALUES ('0099_future', 'x', '2030-01-01T00:00:00Z');")
        do {
            _ = try Migrator().status(try Database(path: dir.sub("newer.db")))
            Issue.record("newer database accepted")
        } catch MigrationError.unknownMigration(let id) {
            #expect(id == "0099_future")
        }
    }

    @Test func aMigrationFailingHalfwayLeavesTheFileAsItWas() throws {
        let dir = TempDir()
        let path = dir.sub("h.db")
        try makeLegacyDatabase(at: path)
        let dumpBefore = try sqlite3Value(path, ".dump")
        let shaBefore = fileSHA256(path)
        let failing = Migration(id: "0007_fails", summary: "test only", steps: [
            .sql("CREATE TABLE half (x); INSERT INTO half VALUES (1);"),
            .sql("INSERT INTO no_such_table VALUES (1);"),
        ])
        let db = try Database(path: path)
        #expect(throws: SQLiteError.self) { try Migrator(migrations: toscaMigrations + [failing]).migrate(db) }
        #expect(try Migrator().status(db).kind == .legacyBaseline)
        #expect(try sqlite3Value(path, ".dump") == dumpBefore)
        #expect(fileSHA256(path) == shaBefore)
    }
}

@Suite struct LegacyMigrationTests {
    @Test func aFilledV0912DatabaseMigratesWithNothingLost() throws {
        let dir = TempDir()
        let path = dir.sub("legacy.db")
        try makeLegacyDatabase(at: path)
        let before = try legacyTableRows(path)
        #expect(before["sessions"]?.split(separator: "\n").count == 40)
        #expect(before["safety_log"]?.split(separator: "\n").count == 60)
        let db = try Database(path: path)
        #expect(try Migrator().status(db).kind == .legacyBaseline)
        #expect(try Migrator().status(db).versionDescription == "TOSCA v0.9.12 baseline, unversioned")
        let report = try Migrator().migrate(db)
        #expect(!report.createdBaseline)
        #expect(report.applied.count == toscaMigrations.count)
        let after = try legacyTableRows(path)
        #expect(after == before)
        // The chain is back-filled in log_id order and verifies.
        let chain = try SafetyChain.verify(db)
        #expect(chain.isIntact)
        #expect(chain.head?.seq == 60)
        #expect(try sqlite3Value(path, "SELECT count(*) FROM safety_log WHERE seq = log_id AND length(row_hash) = 32;") == "60")
        #expect(try sqlite3Value(path, "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(path, "PRAGMA foreign_key_check;") == "")
    }

    @Test func orphanTechnicianRowsStopTheMigrationAndChangeNothing() throws {
        let dir = TempDir()
        let path = dir.sub("orphans.db")
        try makeLegacyDatabase(at: path, orphans: true)
        let sha = fileSHA256(path)
        let db = try Database(path: path)
        do {
            try Migrator().migrate(db)
            Issue.record("migration with orphans went through")
        } catch MigrationError.foreignKeyViolations(let v) {
            let techOrphans = v.filter { $0.table == "sessions" && $0.parent == "tech_users" }
            #expect(techOrphans.map(\.rowid) == [41, 42])
            #expect(techOrphans.allSatisfy { $0.columns == ["tech_id=0"] })
            let text = MigrationError.foreignKeyViolations(v).description
            #expect(text.contains("sessions rowid 41: tech_id=0 has no row in tech_users"))
        }
        #expect(try Migrator().status(db).kind == .legacyBaseline)
        #expect(fileSHA256(path) == sha)
        #expect(try sqlite3Value(path, "SELECT count(*) FROM sqlite_master WHERE name = 'schema_migrations';") == "0")
    }
}
