import CSQLCipher
import Foundation

/// One connection to an SQLite (SQLCipher) database file.
///
/// Every connection gets the pragmas of ARCHITECTURE D2 (`foreign_keys=ON`,
/// `temp_store=MEMORY`, `synchronous=FULL`, a busy timeout); a writable connection with
/// ``OpenOptions/walMode`` also switches the file to WAL. An encrypted file is keyed before
/// any other statement runs (D8, D14). Not thread-safe: use one connection per thread or
/// guard it with a lock.
/// See <https://www.sqlite.org/c3ref/open.html>.
public final class Database {
    /// The C handle (`sqlite3 *`).
    public let handle: OpaquePointer
    /// The path the connection was opened with.
    public let path: String
    /// Whether the connection was opened with a key.
    public let isKeyed: Bool
    /// Whether the connection is read-only.
    public let isReadOnly: Bool

    /// How to open a database.
    public struct OpenOptions: Sendable {
        /// Open read-only (`SQLITE_OPEN_READONLY`).
        public var readOnly = false
        /// Create the file when it does not exist.
        public var create = false
        /// The SQLCipher key, for an encrypted file.
        public var key: DatabaseKey?
        /// Milliseconds to wait on a lock before `SQLITE_BUSY` (D2).
        public var busyTimeoutMilliseconds: Int32 = 10_000
        /// Switch the file to WAL mode (the live database, D2).
        public var walMode = false
        /// `PRAGMA synchronous`; FULL by default (D2).
        public var synchronous = "FULL"
        /// The connection is used by one thread only, so SQLite needs no mutex of its own
        /// around each call (`SQLITE_OPEN_NOMUTEX`). Without it every `sqlite3_column_*`
        /// call takes and releases the connection's mutex: on a scan of every treatment
        /// event that is most of the CPU time outside the decryption.
        public var oneThread = false

        public init(readOnly: Bool = false, create: Bool = false, key: DatabaseKey? = nil,
                    walMode: Bool = false, oneThread: Bool = false) {
            self.readOnly = readOnly
            self.create = create
            self.key = key
            self.walMode = walMode
            self.oneThread = oneThread
        }
    }

    /// Opens `path` with `options`; throws ``DatabaseOpenError`` for the cases of D14 and
    /// ``SQLiteError`` for anything SQLite reports.
    public init(path: String, options: OpenOptions = OpenOptions()) throws {
        try SQLCipherLibrary.checkVersion()
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && !options.create { throw DatabaseOpenError.missing(path: path) }
        if exists {
            switch try FileHeader.classify(path: path) {
            case .empty: break
            case .plaintext:
                if options.key != nil { throw DatabaseOpenError.keyGivenForPlaintext(path: path) }
            case .other:
                if options.key == nil { throw DatabaseOpenError.notPlaintext(path: path) }
            }
        }
        var flags = options.readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE
        if options.create && !options.readOnly { flags |= SQLITE_OPEN_CREATE }
        flags |= (options.oneThread ? SQLITE_OPEN_NOMUTEX : SQLITE_OPEN_FULLMUTEX) | SQLITE_OPEN_NOFOLLOW
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, message: "open \(path): \(message)")
        }
        self.handle = db
        self.path = path
        self.isKeyed = options.key != nil
        self.isReadOnly = options.readOnly
        sqlite3_extended_result_codes(db, 1)
        // Before the first read: WAL recovery or a hot journal may hold a lock briefly.
        sqlite3_busy_timeout(db, options.busyTimeoutMilliseconds)
        do {
            if let key = options.key {
                let krc = key.withSQLCipherKey { ptr, len in sqlite3_key_v2(db, "main", ptr, len) }
                guard krc == SQLITE_OK else { throw error(krc) }
            }
            // First read: a wrong key (or a file that is not a database) fails here.
            do {
                _ = try scalar("SELECT count(*) FROM sqlite_master")
            } catch let e as SQLiteError where e.isA(.notadb) {
                if options.key != nil { throw DatabaseOpenError.wrongKey(path: path) }
                throw DatabaseOpenError.notADatabase(path: path, detail: e.message)
            }
            try execute("PRAGMA foreign_keys = ON")
            try execute("PRAGMA temp_store = MEMORY")
            if !options.readOnly {
                try execute("PRAGMA synchronous = \(options.synchronous)")
            }
            if options.walMode && !options.readOnly {
                let mode = try scalar("PRAGMA journal_mode = WAL")?.string?.lowercased()
                guard mode == "wal" else {
                    throw SQLiteError(code: SQLITE_ERROR, message: "could not switch \(path) to WAL (got \(mode ?? "nil"))")
                }
            }
        } catch {
            sqlite3_close_v2(db)
            throw error
        }
    }

    deinit { sqlite3_close_v2(handle) }

    /// Whether SQLite guards each call on this connection with a mutex of its own (every
    /// connection but one opened with ``OpenOptions/oneThread``).
    public var isSerialized: Bool { sqlite3_db_mutex(handle) != nil }

    /// Builds an ``SQLiteError`` from a result code and the connection's message.
    func error(_ rc: Int32, sql: String? = nil) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(handle) != 0 && (sqlite3_extended_errcode(handle) & 0xFF) == (rc & 0xFF)
                        ? sqlite3_extended_errcode(handle) : rc,
                    message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    /// Prepares one statement.
    /// See <https://www.sqlite.org/c3ref/prepare.html>.
    /// `persistent` tells SQLite the statement will be reused many times.
    public func prepare(_ sql: String, persistent: Bool = false) throws -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            if rc == SQLITE_OK { throw SQLiteError(code: SQLITE_MISUSE, message: "empty statement", sql: sql) }
            throw error(rc, sql: sql)
        }
        return Statement(database: self, handle: stmt, sql: sql)
    }

    /// Runs every statement of `sql` in turn (no parameters).
    public func execute(_ sql: String) throws {
        try sql.withCString { start in
            var next: UnsafePointer<CChar>? = start
            while let cursor = next, cursor.pointee != 0 {
                var stmt: OpaquePointer?
                var tail: UnsafePointer<CChar>?
                let rc = sqlite3_prepare_v2(handle, cursor, -1, &stmt, &tail)
                let text = tail.map { String(decoding: UnsafeRawBufferPointer(start: cursor, count: $0 - cursor), as: UTF8.self) }
                guard rc == SQLITE_OK else { throw error(rc, sql: text) }
                next = tail
                guard let stmt else { continue } // whitespace or comment
                defer { sqlite3_finalize(stmt) }
                var src: Int32
                repeat { src = sqlite3_step(stmt) } while src == SQLITE_ROW
                guard src == SQLITE_DONE else { throw error(src, sql: text) }
            }
        }
    }

    /// Runs one statement with arguments.
    public func execute(_ sql: String, _ arguments: [SQLValue]) throws {
        try prepare(sql).execute(arguments)
    }

    /// Every row of one query.
    public func rows(_ sql: String, _ arguments: [SQLValue] = []) throws -> [Row] {
        try prepare(sql).rows(arguments)
    }

    /// The first column of the first row, or `nil` when there is no row.
    public func scalar(_ sql: String, _ arguments: [SQLValue] = []) throws -> SQLValue? {
        let stmt = try prepare(sql)
        try stmt.bind(arguments)
        defer { stmt.reset() }
        return try stmt.step() ? stmt.column(0) : nil
    }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes64(handle)) }
    /// Rowid of the last insert.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    /// Whether a transaction is open.
    public var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// How a transaction takes its locks.
    /// See <https://www.sqlite.org/lang_transaction.html>.
    public enum TransactionKind: String, Sendable { case deferred = "DEFERRED", immediate = "IMMEDIATE", exclusive = "EXCLUSIVE" }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    @discardableResult
    public func transaction<T>(_ kind: TransactionKind = .immediate, _ body: () throws -> T) throws -> T {
        try execute("BEGIN \(kind.rawValue)")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            if inTransaction { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Names of the user tables, sorted.
    /// An integer PRAGMA's value. SQLCipher answers some (`page_size`) as text.
    public func integerPragma(_ name: String) throws -> Int? {
        switch try scalar("PRAGMA \(name)") {
        case .integer(let v)?: return Int(v)
        case .text(let t)?: return Int(t)
        default: return nil
        }
    }

    public func tableNames() throws -> [String] {
        try rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .compactMap { $0[0].string }
    }

    /// Column names of a table in schema order (`PRAGMA table_info`).
    public func columnNames(of table: String) throws -> [String] {
        try rows("SELECT name FROM pragma_table_info(?) ORDER BY cid", [.text(table)]).compactMap { $0[0].string }
    }

    /// `PRAGMA integrity_check` (or `quick_check`): `["ok"]` for a sound file.
    /// See <https://www.sqlite.org/pragma.html#pragma_integrity_check>.
    public func integrityCheck(quick: Bool = false) throws -> [String] {
        try rows(quick ? "PRAGMA quick_check" : "PRAGMA integrity_check").compactMap { $0[0].string }
    }

    /// How many rows `PRAGMA foreign_key_check` reports (one a row and foreign key), counted
    /// with less reading: the pragma scans every row of each child table, which on 1 GiB
    /// of encrypted treatment events is 2.4 s of decryption.
    ///
    /// A foreign key of one column whose parent is a rowid table's `INTEGER PRIMARY KEY`
    /// (the shape of every TOSCA foreign key) is counted as `child IS NOT NULL AND NOT EXISTS
    /// (parent row with that key)`, which SQLite answers from an index on the child column
    /// when there is one. That is the pragma's own test: it skips NULL keys and looks the
    /// key up with `OP_SeekRowid`, which applies numeric affinity and finds nothing for a
    /// value that is not an integer; the comparison with an `INTEGER PRIMARY KEY` applies the
    /// same affinity. A table with any other kind of foreign key (several columns, a parent
    /// key that is not the rowid, a missing parent table) is counted by the pragma itself.
    /// See <https://www.sqlite.org/pragma.html#pragma_foreign_key_check>.
    public func foreignKeyViolationCount() throws -> Int {
        var total = 0
        for table in try tableNames() {
            let keys = try rows("SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq", [.text(table)])
            if keys.isEmpty { continue }
            var queries: [String] = []
            for (id, group) in Dictionary(grouping: keys, by: { $0[0].int64 ?? -1 }).sorted(by: { $0.key < $1.key }) {
                guard id >= 0, group.count == 1, let parent = group[0][2].string, let from = group[0][3].string,
                      let key = try rowidKey(of: parent), group[0][4].string.map({ $0.lowercased() == key.lowercased() }) ?? true else {
                    queries = []
                    break
                }
                queries.append("""
                    SELECT count(*) FROM \(quoteIdentifier(table)) AS c WHERE c.\(quoteIdentifier(from)) IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM \(quoteIdentifier(parent)) AS p WHERE p.\(quoteIdentifier(key)) = c.\(quoteIdentifier(from)))
                    """)
            }
            if queries.isEmpty {
                total += try rows("PRAGMA foreign_key_check(\(quoteIdentifier(table)))").count
            } else {
                for q in queries { total += try scalar(q)?.int ?? 0 }
            }
        }
        return total
    }

    /// The `INTEGER PRIMARY KEY` column of `table` when it is an alias of the rowid (a rowid
    /// table whose primary key is that one column, with no index of its own), else `nil`.
    func rowidKey(of table: String) throws -> String? {
        guard try scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", [.text(table)])?.int == 1 else { return nil }
        let pk = try rows("SELECT name, type FROM pragma_table_info(?) WHERE pk > 0", [.text(table)])
        guard pk.count == 1, pk[0][1].string?.uppercased() == "INTEGER", let name = pk[0][0].string else { return nil }
        // A primary key with an index of its own is not the rowid (WITHOUT ROWID, or DESC).
        guard try scalar("SELECT count(*) FROM pragma_index_list(?) WHERE origin = 'pk'", [.text(table)])?.int == 0 else { return nil }
        return name
    }

    /// `PRAGMA foreign_key_check`, one entry a violating row.
    /// See <https://www.sqlite.org/pragma.html#pragma_foreign_key_check>.
    public func foreignKeyViolations() throws -> [ForeignKeyViolation] {
        let found = try rows("PRAGMA foreign_key_check")
        var result: [ForeignKeyViolation] = []
        for row in found {
            let table = row[0].string ?? "?"
            let parent = row[2].string ?? "?"
            let fkid = row[3].int64 ?? 0
            // Which child column(s) point at the missing parent, and their values.
            let fk = try rows("SELECT \"from\", \"to\" FROM pragma_foreign_key_list(?) WHERE id = ?", [.text(table), .integer(fkid)])
            var keys: [String: SQLValue] = [:]
            if let rowid = row[1].int64 {
                for f in fk {
                    if let col = f[0].string {
                        keys[col] = try scalar("SELECT \(quoteIdentifier(col)) FROM \(quoteIdentifier(table)) WHERE rowid = ?", [.integer(rowid)]) ?? .null
                    }
                }
            }
            result.append(ForeignKeyViolation(table: table, rowid: row[1].int64, parent: parent,
                                              columns: keys.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }))
        }
        return result
    }
}

/// One row that `PRAGMA foreign_key_check` reports.
public struct ForeignKeyViolation: Sendable, Equatable, CustomStringConvertible {
    /// The table holding the row.
    public let table: String
    /// Its rowid.
    public let rowid: Int64?
    /// The table it should point into.
    public let parent: String
    /// The pointing columns and values, e.g. `tech_id=0`.
    public let columns: [String]

    public var description: String {
        "\(table) rowid \(rowid.map(String.init) ?? "?"): \(columns.joined(separator: ", ")) has no row in \(parent)"
    }
}

/// Quotes an SQL identifier.
public func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// Why a database could not be opened (ARCHITECTURE D14).
public enum DatabaseOpenError: Error, CustomStringConvertible, Sendable, Equatable {
    case missing(path: String)
    case notPlaintext(path: String)
    case wrongKey(path: String)
    case keyGivenForPlaintext(path: String)
    case notADatabase(path: String, detail: String)

    public var description: String {
        switch self {
        case .missing(let p): return "no database at \(p)"
        case .notPlaintext(let p): return "\(p) is not a plaintext SQLite database: give the key if it is encrypted"
        case .wrongKey(let p): return "\(p): wrong key, or not a database"
        case .keyGivenForPlaintext(let p): return "\(p) is a plaintext SQLite database but a key was given"
        case .notADatabase(let p, let d): return "\(p) is not a usable SQLite database: \(d)"
        }
    }
}

/// What the first bytes of a file say (D14).
public enum FileHeader: Sendable, Equatable {
    case empty, plaintext, other

    /// `SQLite format 3\0`.
    public static let sqliteMagic: [UInt8] = Array("SQLite format 3".utf8) + [0]

    /// Reads the first 16 bytes of `path`.
    public static func classify(path: String) throws -> FileHeader {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFailure(operation: "open \(path)", code: errno) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 16)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 16) }
        if n < 0 { throw POSIXFailure(operation: "read \(path)", code: errno) }
        if n == 0 { return .empty }
        return (n == 16 && buf == sqliteMagic) ? .plaintext : .other
    }
}

/// The SQLCipher library this process runs on.
public enum SQLCipherLibrary {
    /// The oldest SQLCipher this tool accepts (D1).
    public static let minimumVersion = (major: 4, minor: 5)

    private static let checked: Result<String, SQLCipherTooOld> = {
        var db: OpaquePointer?
        guard sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK, let db else {
            return .failure(SQLCipherTooOld(found: "unknown (cannot open a memory database)"))
        }
        defer { sqlite3_close_v2(db) }
        var stmt: OpaquePointer?
        var version = ""
        if sqlite3_prepare_v2(db, "PRAGMA cipher_version", -1, &stmt, nil) == SQLITE_OK,
           sqlite3_step(stmt) == SQLITE_ROW, let p = sqlite3_column_text(stmt, 0) {
            version = String(cString: p)
        }
        sqlite3_finalize(stmt)
        // SQLCipher logs a failed HMAC check (a wrong key) to stderr itself; callers report
        // errors in their own words (D14), so its log stays off.
        sqlite3_exec(db, "PRAGMA cipher_log = '/dev/null'", nil, nil, nil)
        let parts = version.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        guard parts.count >= 2, (parts[0], parts[1]) >= minimumVersion else {
            return .failure(SQLCipherTooOld(found: version.isEmpty ? "none (plain SQLite)" : version))
        }
        return .success(version)
    }()

    /// `PRAGMA cipher_version`, or throws when it is below 4.5 (exit 78).
    @discardableResult
    public static func checkVersion() throws -> String { try checked.get() }

    /// `sqlite3_libversion()`.
    public static var sqliteVersion: String { String(cString: sqlite3_libversion()) }
}

/// SQLCipher is missing or older than 4.5 (D1: exit 78).
public struct SQLCipherTooOld: Error, CustomStringConvertible, Sendable {
    public let found: String
    public var description: String { "SQLCipher 4.5 or later is required, found \(found)" }
}

/// A failed system call.
public struct POSIXFailure: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Int32
    public init(operation: String, code: Int32) { self.operation = operation; self.code = code }
    public var description: String { "\(operation): \(String(cString: strerror(code)))" }
}
