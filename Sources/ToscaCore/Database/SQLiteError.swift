import CSQLCipher

/// One error type for every SQLite failure, carrying the extended result code, SQLite's
/// message and the SQL that failed (never the bound values: they are treatment data).
///
/// Match a primary code in `catch` with the statics: `catch SQLiteError.busy { ... }`.
/// See <https://www.sqlite.org/rescode.html>.
public struct SQLiteError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The extended result code (`sqlite3_extended_errcode`).
    public let extendedCode: Int32
    /// SQLite's message (`sqlite3_errmsg`), or our own context.
    public let message: String
    /// The statement that failed, when there was one.
    public let sql: String?

    public init(code: Int32, message: String, sql: String? = nil) {
        self.extendedCode = code
        self.message = message
        self.sql = sql
    }

    /// The primary result code (low byte of the extended code).
    public var primaryCode: Int32 { extendedCode & 0xFF }

    public var description: String {
        var text = "SQLite error \(extendedCode) (\(String(cString: sqlite3_errstr(extendedCode)))): \(message)"
        if let sql { text += " [SQL: \(sql.prefix(200))]" }
        return text
    }

    public static let error = SQLiteError(code: SQLITE_ERROR, message: "")
    public static let busy = SQLiteError(code: SQLITE_BUSY, message: "")
    public static let locked = SQLiteError(code: SQLITE_LOCKED, message: "")
    public static let readonly = SQLiteError(code: SQLITE_READONLY, message: "")
    public static let ioerr = SQLiteError(code: SQLITE_IOERR, message: "")
    public static let corrupt = SQLiteError(code: SQLITE_CORRUPT, message: "")
    public static let full = SQLiteError(code: SQLITE_FULL, message: "")
    public static let cantopen = SQLiteError(code: SQLITE_CANTOPEN, message: "")
    public static let constraint = SQLiteError(code: SQLITE_CONSTRAINT, message: "")
    public static let notadb = SQLiteError(code: SQLITE_NOTADB, message: "")
    public static let perm = SQLiteError(code: SQLITE_PERM, message: "")
    public static let abort = SQLiteError(code: SQLITE_ABORT, message: "")
    public static let auth = SQLiteError(code: SQLITE_AUTH, message: "")
    public static let misuse = SQLiteError(code: SQLITE_MISUSE, message: "")
    public static let nomem = SQLiteError(code: SQLITE_NOMEM, message: "")

    /// Whether this error shares `pattern`'s primary result code (`SQLITE_BUSY_SNAPSHOT`
    /// is `.busy`); the same test `catch SQLiteError.busy` makes.
    public func isA(_ pattern: SQLiteError) -> Bool { pattern.primaryCode == primaryCode }

    /// Whether it is one of `patterns`.
    public func isAny(of patterns: SQLiteError...) -> Bool { patterns.contains { isA($0) } }

    /// Matches when both errors share a primary result code, so that
    /// `catch SQLiteError.busy` catches `SQLITE_BUSY_SNAPSHOT` too.
    public static func ~= (pattern: SQLiteError, error: any Error) -> Bool {
        guard let error = error as? SQLiteError else { return false }
        return pattern.primaryCode == error.primaryCode
    }

    public static func == (lhs: SQLiteError, rhs: SQLiteError) -> Bool {
        lhs.extendedCode == rhs.extendedCode && lhs.message == rhs.message && lhs.sql == rhs.sql
    }
}
