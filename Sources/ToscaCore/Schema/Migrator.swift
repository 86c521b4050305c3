import Foundation

/// A migration recorded in `schema_migrations`.
public struct AppliedMigration: Sendable, Equatable {
    public let id: String
    public let checksum: String
    public let appliedAt: String
}

/// What a database's schema is, as far as this build can tell.
public enum SchemaKind: Sendable, Equatable {
    /// No tables at all: a new file.
    case empty
    /// TOSCA v0.9.12's tables and no version table.
    case legacyBaseline
    /// Has `schema_migrations`.
    case versioned
}

/// Where a database stands against this build's migrations.
public struct MigrationStatus: Sendable {
    public let kind: SchemaKind
    public let applied: [AppliedMigration]
    public let pending: [Migration]

    /// The schema version: the number of the last applied migration, 0 for the baseline.
    public var version: Int { applied.last.flatMap { id in Int(id.id.prefix(while: { $0.isNumber })) } ?? 0 }
    public var isCurrent: Bool { pending.isEmpty }
    /// "6", or "TOSCA v0.9.12 baseline, unversioned", or "empty".
    public var versionDescription: String {
        switch kind {
        case .empty: return "empty (no schema)"
        case .legacyBaseline: return "TOSCA v0.9.12 baseline, unversioned"
        case .versioned: return "\(version) (\(applied.last?.id ?? "none"))"
        }
    }
}

/// Why a migration did not happen, or a schema cannot be used.
public enum MigrationError: Error, CustomStringConvertible, Sendable {
    /// An applied migration's recorded checksum differs from this build's.
    case checksumMismatch(id: String, recorded: String, expected: String)
    /// The database records a migration this build does not have (newer software wrote it).
    case unknownMigration(id: String)
    /// Tables that are neither empty, nor TOSCA v0.9.12, nor versioned.
    case unrecognisedSchema(reason: String)
    /// `foreign_key_check` found rows that point at nothing; nothing was changed.
    case foreignKeyViolations([ForeignKeyViolation])
    /// `--to` names no pending migration.
    case unknownTarget(id: String)
    /// The recorder (or anything that needs the current schema) found pending migrations.
    case schemaBehind(path: String, current: String, pending: [String])

    public var description: String {
        switch self {
        case .checksumMismatch(let id, let rec, let exp):
            return "applied migration \(id) was changed after it was applied: recorded checksum \(rec.prefix(16))..., this build's \(exp.prefix(16))..."
        case .unknownMigration(let id):
            return "the database records migration \(id), which this build does not know: it was written by newer software"
        case .unrecognisedSchema(let reason):
            return "not a TOSCA database this build recognises: \(reason)"
        case .foreignKeyViolations(let v):
            let shown = v.prefix(50).map { "  " + $0.description }.joined(separator: "\n")
            return "foreign_key_check found \(v.count) row(s) pointing at nothing; nothing was changed:\n\(shown)"
                + (v.count > 50 ? "\n  ... and \(v.count - 50) more" : "")
        case .unknownTarget(let id):
            return "no pending migration is named \(id)"
        case .schemaBehind(let path, let current, let pending):
            return "the schema of \(path) is behind this build (at \(current); pending: \(pending.joined(separator: ", "))): run `tosca-maint migrate up` first"
        }
    }
}

/// Applies the versioned migrations of ARCHITECTURE D15.
///
/// All pending migrations run in ONE transaction with `foreign_keys` off;
/// `PRAGMA foreign_key_check` runs before commit and any violation rolls everything back.
/// See <https://www.sqlite.org/lang_altertable.html#otheralter>.
public struct Migrator: Sendable {
    public let migrations: [Migration]
    /// The DDL a new database starts from: TOSCA v0.9.12's schema.
    public let baselineSQL: String

    public init(migrations: [Migration] = toscaMigrations, baselineSQL: String = toscaBaselineSchemaSQL) {
        self.migrations = migrations
        self.baselineSQL = baselineSQL
    }

    /// The tables of the baseline and their columns, from an in-memory copy.
    func baselineTables() throws -> [String: [String]] {
        let mem = try Database(path: ":memory:", options: .init(create: true))
        try mem.execute(baselineSQL)
        var result: [String: [String]] = [:]
        for t in try mem.tableNames() { result[t] = try mem.columnNames(of: t) }
        return result
    }

    /// Tables a v0.9.12 file may hold besides the baseline's (Alembic was configured).
    static let tolerated: Set<String> = ["alembic_version"]

    /// Reads the schema state; throws when it cannot be used (checksum edited, unknown
    /// migration, unrecognised tables).
    public func status(_ db: Database) throws -> MigrationStatus {
        let tables = try db.tableNames()
        if tables.isEmpty { return MigrationStatus(kind: .empty, applied: [], pending: migrations) }
        if tables.contains("schema_migrations") {
            let applied = try db.rows("SELECT migration_id, checksum, applied_at FROM schema_migrations ORDER BY migration_id").map {
                AppliedMigration(id: $0[0].string ?? "", checksum: $0[1].string ?? "", appliedAt: $0[2].string ?? "")
            }
            let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.id, $0) })
            for a in applied {
                guard let m = known[a.id] else { throw MigrationError.unknownMigration(id: a.id) }
                if m.checksum != a.checksum { throw MigrationError.checksumMismatch(id: a.id, recorded: a.checksum, expected: m.checksum) }
            }
            let appliedIDs = Set(applied.map(\.id))
            // Applied migrations must be a prefix of this build's list.
            let prefix = migrations.prefix(applied.count).map(\.id)
            guard prefix == applied.map(\.id) else {
                throw MigrationError.unrecognisedSchema(reason: "applied migrations \(applied.map(\.id)) are not in this build's order \(prefix)")
            }
            return MigrationStatus(kind: .versioned, applied: applied, pending: migrations.filter { !appliedIDs.contains($0.id) })
        }
        let baseline = try baselineTables()
        let extra = tables.filter { baseline[$0] == nil && !Self.tolerated.contains($0) }
        guard extra.isEmpty else {
            throw MigrationError.unrecognisedSchema(reason: "unversioned, with tables TOSCA v0.9.12 does not have: \(extra.joined(separator: ", "))")
        }
        for (table, columns) in baseline.sorted(by: { $0.key < $1.key }) {
            guard tables.contains(table) else {
                throw MigrationError.unrecognisedSchema(reason: "unversioned, and table \(table) of TOSCA v0.9.12 is missing")
            }
            let actual = try db.columnNames(of: table)
            guard actual == columns else {
                throw MigrationError.unrecognisedSchema(reason: "unversioned, and table \(table) has columns \(actual), TOSCA v0.9.12 has \(columns)")
            }
        }
        return MigrationStatus(kind: .legacyBaseline, applied: [], pending: migrations)
    }

    /// What ``migrate(_:upTo:beforeCommit:)`` did.
    public struct Report: Sendable {
        public let from: MigrationStatus
        public let applied: [String]
        /// Whether the baseline DDL was run (a new database).
        public let createdBaseline: Bool
    }

    /// Applies every pending migration (or those up to and including `upTo`) in one
    /// transaction. A new (empty) database first gets the baseline DDL in the same
    /// transaction. `beforeCommit` runs after the migrations and before
    /// `foreign_key_check`, inside the transaction (repairs that must be atomic with them).
    @discardableResult
    public func migrate(_ db: Database, upTo: String? = nil, now: () -> UTCTime = UTCTime.now,
                        beforeCommit: ((Database) throws -> Void)? = nil) throws -> Report {
        let before = try status(db)
        var todo = before.pending
        if let upTo {
            guard let i = todo.firstIndex(where: { $0.id == upTo }) else { throw MigrationError.unknownTarget(id: upTo) }
            todo = Array(todo[...i])
        }
        if todo.isEmpty { return Report(from: before, applied: [], createdBaseline: false) }
        guard !db.inTransaction else {
            throw SQLiteError(code: 21, message: "migrate must not run inside a transaction (foreign_keys cannot be switched off there)")
        }
        // PRAGMA foreign_keys is a no-op inside a transaction: switch it off before BEGIN.
        try db.execute("PRAGMA foreign_keys = OFF")
        defer { try? db.execute("PRAGMA foreign_keys = ON") }
        try db.transaction(.exclusive) {
            if before.kind == .empty { try db.execute(baselineSQL) }
            for m in todo {
                for step in m.steps {
                    switch step {
                    case .sql(let sql): try db.execute(sql)
                    case .code(_, _, let run): try run(db)
                    }
                }
                if try db.tableNames().contains("schema_migrations") {
                    try db.execute("INSERT INTO schema_migrations (migration_id, checksum, applied_at) VALUES (?, ?, ?)",
                                   [.text(m.id), .text(m.checksum), .text(now().iso8601)])
                }
            }
            try beforeCommit?(db)
            let violations = try db.foreignKeyViolations()
            if !violations.isEmpty { throw MigrationError.foreignKeyViolations(violations) }
            if let last = todo.last { try db.execute("PRAGMA user_version = \(last.version)") }
            try db.execute("PRAGMA application_id = \(toscaApplicationID)")
        }
        return Report(from: before, applied: todo.map(\.id), createdBaseline: before.kind == .empty)
    }
}
