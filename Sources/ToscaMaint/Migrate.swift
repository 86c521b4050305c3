import Foundation
import ToscaCore

/// `tosca-maint migrate up`: the fully migrated database or the old one, never a mix (D15).
public struct MigrateJob: Sendable {
    public let folder: DataFolder
    public var key: DatabaseKey? { folder.key }
    public var migrator = Migrator()
    public var databasePath: String { folder.database }

    public init(folder: DataFolder) {
        self.folder = folder
    }

    public static let runbook = "Runbooks/pre-upgrade-migration.md"

    /// Rows, and a content hash over them in rowid order, of each table.
    public static func tableDigests(_ db: Database, tables: [String], columns: [String: [String]]) throws -> [String: (rows: Int, sha256: String)] {
        var out: [String: (rows: Int, sha256: String)] = [:]
        for t in tables { out[t] = try db.contentHash(table: t, columns: columns[t] ?? []) }
        return out
    }

    /// Missing `tech_users` ids that rows point at (the legacy `tech_id = 0`).
    static func missingTechnicians(_ violations: [ForeignKeyViolation]) -> [Int64] {
        Array(Set(violations.filter { $0.parent == "tech_users" }.flatMap { v in
            v.columns.compactMap { c -> Int64? in
                let parts = c.split(separator: "=", maxSplits: 1)
                return parts.count == 2 ? Int64(parts[1]) : nil
            }
        })).sorted()
    }

    /// `migrate status`: where the schema stands (read-only).
    public func status() throws -> MigrationStatus {
        let db = try Database(path: databasePath, options: .init(readOnly: true, key: key))
        return try migrator.status(db)
    }

    /// `migrate plan`: the SQL `up` would run (up to `upTo`), without running it.
    public func planText(upTo: String?) throws -> String {
        var todo = try status().pending
        if let upTo {
            guard let i = todo.firstIndex(where: { $0.id == upTo }) else { throw MigrationError.unknownTarget(id: upTo) }
            todo = Array(todo[...i])
        }
        guard let last = todo.last else { return "-- up to date: nothing to run" }
        var lines = ["-- one transaction, foreign_keys off, foreign_key_check before COMMIT", "BEGIN EXCLUSIVE;"]
        for m in todo {
            lines += ["\n-- \(m.id): \(m.summary)", m.planText,
                      "INSERT INTO schema_migrations (migration_id, checksum, applied_at) VALUES ('\(m.id)', '\(m.checksum)', <now>);"]
        }
        lines.append("\nPRAGMA user_version = \(last.version);\nCOMMIT;")
        return lines.joined(separator: "\n")
    }

    /// What `up` did.
    public struct Outcome: Sendable {
        public var applied: [String] = []
        public var safetyCopy: String?
        public var repairedTechnicians: [Int64] = []
        public var alreadyCurrent = false
    }

    /// Runs steps 2-10 of `migrate up` (the caller has checked there is work and asked).
    public func up(upTo: String?, repairOrphans: Bool, confirm: (MigrationStatus) throws -> Void) throws -> Outcome {
        var outcome = Outcome()
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DatabaseOpenError.missing(path: databasePath) }
        let locks = try folder.takeExclusiveLocks(what: "the migration")
        defer { locks.unlock() }
        try Housekeeping.run(try folder.scanCatalog())

        let db = try Database(path: databasePath, options: .init(key: key))
        let before = try migrator.status(db)
        guard !before.isCurrent, let last = before.pending.last else { outcome.alreadyCurrent = true; return outcome }
        let target = upTo ?? last.id
        // 4. integrity_check (before any copy: a refused migration leaves nothing behind).
        Journal.shared.log(.info, "migrate: integrity_check of the live database", id: .migrationStep)
        let integrity = try db.integrityCheck()
        guard integrity == ["ok"] else {
            throw ToolFailure(.dataError, "integrity_check of \(databasePath) fails, nothing was migrated: \(integrity.prefix(5).joined(separator: "; "))",
                              hint: "follow \(Self.runbook) (restore a verified backup first)")
        }
        // 5. foreign_key_check.
        let violations = try db.foreignKeyViolations()
        let techs = Self.missingTechnicians(violations)
        let otherOrphans = violations.filter { $0.parent != "tech_users" }
        if !violations.isEmpty && (!repairOrphans || !otherOrphans.isEmpty) {
            let listed = (repairOrphans ? otherOrphans : violations)
            throw ToolFailure(.dataError, "foreign_key_check finds \(listed.count) row(s) pointing at nothing; nothing was migrated:\n  "
                              + listed.prefix(100).map(\.description).joined(separator: "\n  ") + (listed.count > 100 ? "\n  ... and \(listed.count - 100) more" : ""),
                              hint: repairOrphans ? "only missing technicians can be repaired; see \(Self.runbook)"
                                                  : "tosca-maint migrate up --repair-orphans adds an inactive placeholder technician for each missing tech_id (\(Self.runbook))")
        }
        // 6. The plan, and the go-ahead (before the copy: a refusal leaves nothing behind).
        try confirm(before)
        // 3. A verified pre-migration safety copy; no copy, no migration.
        Journal.shared.log(.info, "migrate: taking a pre-migration safety copy of \(databasePath)", id: .migrationStep)
        var copyJob = CopyJob(folder: folder, kind: .preMigration,
                              reason: "before migrating from \(before.versionDescription) to \(target)")
        copyJob.fromVersion = before.versionDescription
        copyJob.toVersion = target
        let copy = try copyJob.makeCopy()
        outcome.safetyCopy = copy.path
        // Row counts and content hashes of every existing table, to compare afterwards.
        let tables = try db.tableNames()
        var columns: [String: [String]] = [:]
        for t in tables { columns[t] = try db.columnNames(of: t) }
        let digestsBefore = try Self.tableDigests(db, tables: tables, columns: columns)
        // 7. Every pending migration in one transaction; repairs inside it.
        Journal.shared.log(.info, "migrate: applying \(before.pending.prefix { $0.id <= target }.map(\.id).joined(separator: ", "))", id: .migrationStep)
        let report = try migrator.migrate(db, upTo: upTo, beforeCommit: techs.isEmpty || !repairOrphans ? nil : { db in
            let now = UTCTime.now()
            for id in techs {
                try db.execute("INSERT INTO tech_users (tech_id, username, full_name, role, created_date, is_active, notes) VALUES (?, ?, ?, 'technician', ?, 0, ?)",
                               [.integer(id), .text("unknown-legacy-\(id)"), .text("Unknown legacy technician \(id)"), .text(now.sqlDateTime),
                                .text("placeholder added by tosca-maint migrate up --repair-orphans: rows referred to tech_id \(id), which did not exist")])
            }
            if try Migrator().status(db).applied.contains(where: { $0.id == "0006_safety_log_chain" }) || (try db.columnNames(of: "safety_log")).contains("row_hash") {
                try SafetyChain.append(SafetyLogEntry(timestamp: now, eventType: "maintenance", severity: .warning,
                                                      description: "migration repaired orphan rows: placeholder technicians \(techs.map(String.init).joined(separator: ", ")) added (inactive)",
                                                      actionTaken: "tosca-maint migrate up --repair-orphans",
                                                      details: "{\"repaired_tech_ids\":[\(techs.map(String.init).joined(separator: ","))]}"), to: db)
            }
        })
        outcome.applied = report.applied
        outcome.repairedTechnicians = repairOrphans ? techs : []
        // 8. Verify: D12 steps 2-3 and every old table's rows unchanged unless documented.
        Journal.shared.log(.info, "migrate: verifying the result", id: .migrationStep)
        var problems: [String] = []
        let after = try db.integrityCheck()
        if after != ["ok"] { problems.append("integrity_check: \(after.prefix(5).joined(separator: "; "))") }
        if try migrator.status(db).applied.contains(where: { $0.id == "0006_safety_log_chain" }),
           case .broken(let b) = try SafetyChain.verify(db) { problems.append(b.description) }
        let documented = Set(migrator.migrations.filter { report.applied.contains($0.id) }.flatMap(\.changesRowsOf) + (outcome.repairedTechnicians.isEmpty ? [] : ["tech_users"]))
        let digestsAfter = try Self.tableDigests(db, tables: tables, columns: columns)
        for t in tables where !documented.contains(t) {
            if digestsAfter[t]?.rows != digestsBefore[t]?.rows || digestsAfter[t]?.sha256 != digestsBefore[t]?.sha256 {
                problems.append("table \(t) changed: \(digestsBefore[t]?.rows ?? 0) rows before, \(digestsAfter[t]?.rows ?? 0) after, content hash \(digestsAfter[t]?.sha256 == digestsBefore[t]?.sha256 ? "equal" : "differs")")
            }
        }
        for t in documented where tables.contains(t) {
            if (digestsAfter[t]?.rows ?? 0) < (digestsBefore[t]?.rows ?? 0) { problems.append("table \(t) lost rows") }
        }
        // 9. A result that fails goes back to the safety copy.
        if !problems.isEmpty {
            Journal.shared.log(.err, "migrate: the migrated database fails verification; restoring \(copy.path)", id: .migrationFailed)
            let restore = RestoreJob(folder: folder)
            let entry = CatalogEntry(name: PathName.name(copy.path), path: copy.path, manifest: copy.manifest, digestMatches: true, manifestError: nil)
            try restore.restoreFile(entry, to: databasePath, replace: true)
            throw ToolFailure(.dataError, "the migrated database failed verification and the pre-migration copy was restored:\n  " + problems.joined(separator: "\n  "),
                              hint: "follow \(Self.runbook)")
        }
        Journal.shared.log(.info, "migrated \(databasePath) from \(before.versionDescription) to \(report.applied.last ?? "?") (\(report.applied.count) migration(s)); pre-migration copy \(copy.path)",
                           id: .migrationApplied, fields: ["TOSCA_DATABASE": databasePath, "TOSCA_BACKUP_PATH": copy.path])
        return outcome
    }
}

