import CSQLCipher

/// SQLite's `SQLITE_TRANSIENT`: SQLite copies the bound bytes before `bind` returns.
let SQLITE_TRANSIENT_DESTRUCTOR = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A prepared statement, finalized when released.
/// See <https://www.sqlite.org/c3ref/stmt.html>.
public final class Statement {
    /// The C handle (`sqlite3_stmt *`).
    public let handle: OpaquePointer
    /// The SQL text the statement was prepared from.
    public let sql: String
    unowned let database: Database

    init(database: Database, handle: OpaquePointer, sql: String) {
        self.database = database
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    /// Names of the result columns.
    public lazy var columnNames: [String] = (0..<sqlite3_column_count(handle)).map {
        String(cString: sqlite3_column_name(handle, $0))
    }

    /// Resets the statement and binds `values` to its parameters, in order.
    /// See <https://www.sqlite.org/c3ref/bind_blob.html>.
    public func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        let expected = Int(sqlite3_bind_parameter_count(handle))
        guard expected == values.count else {
            throw SQLiteError(code: SQLITE_RANGE,
                              message: "statement takes \(expected) arguments, got \(values.count)", sql: sql)
        }
        for (offset, value) in values.enumerated() {
            try bind(value, at: Int32(offset + 1))
        }
    }

    /// Binds one value at a 1-based parameter index.
    public func bind(_ value: SQLValue, at index: Int32) throws {
        let rc: Int32
        switch value {
        case .null: rc = sqlite3_bind_null(handle, index)
        case .integer(let v): rc = sqlite3_bind_int64(handle, index, v)
        case .real(let v): rc = sqlite3_bind_double(handle, index, v)
        case .text(let v):
            var s = v
            rc = s.withUTF8 { buf -> Int32 in
                guard let base = buf.baseAddress else { return sqlite3_bind_text(handle, index, "", 0, SQLITE_TRANSIENT_DESTRUCTOR) }
                return base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                    sqlite3_bind_text(handle, index, $0, Int32(buf.count), SQLITE_TRANSIENT_DESTRUCTOR)
                }
            }
        case .blob(let v):
            rc = v.withUnsafeBytes { buf in
                sqlite3_bind_blob(handle, index, buf.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(buf.count),
                                  SQLITE_TRANSIENT_DESTRUCTOR)
            }
        }
        guard rc == SQLITE_OK else { throw database.error(rc, sql: sql) }
    }

    /// Runs one step: `true` when a row is ready, `false` when done.
    /// See <https://www.sqlite.org/c3ref/step.html>.
    @discardableResult
    public func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let err = database.error(rc, sql: sql)
            sqlite3_reset(handle)
            throw err
        }
    }

    /// Resets the statement so it can run again (bindings stay).
    public func reset() { sqlite3_reset(handle) }

    /// The value of result column `index` of the current row.
    public func column(_ index: Int32) -> SQLValue {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, index))
        case SQLITE_TEXT:
            guard let p = sqlite3_column_text(handle, index) else { return .text("") }
            let n = Int(sqlite3_column_bytes(handle, index))
            return .text(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self))
        case SQLITE_BLOB:
            let n = Int(sqlite3_column_bytes(handle, index))
            guard n > 0, let p = sqlite3_column_blob(handle, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: p, count: n)))
        default: return .null
        }
    }

    /// Appends column `index` of the current row in the D7 value encoding (type tag, then
    /// 8 big-endian bytes for INTEGER and REAL, a 4-byte big-endian length and the bytes for
    /// TEXT and BLOB), read straight from SQLite's buffers: the same bytes as
    /// `SafetyChain.encode` gives for the value, without building one.
    public func appendEncoded(_ index: Int32, to out: inout [UInt8]) {
        func be64(_ v: UInt64) { for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) } }
        func bytes(_ tag: UInt8, _ p: UnsafeRawPointer?, _ n: Int) {
            out.append(tag)
            for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: n >> shift)) }
            if n > 0, let p { out.append(contentsOf: UnsafeRawBufferPointer(start: p, count: n)) }
        }
        switch sqlite3_column_type(handle, index) {
        case SQLITE_INTEGER: out.append(1); be64(UInt64(bitPattern: sqlite3_column_int64(handle, index)))
        case SQLITE_FLOAT: out.append(2); be64(sqlite3_column_double(handle, index).bitPattern)
        case SQLITE_TEXT:
            let p = sqlite3_column_text(handle, index)
            bytes(3, p.map { UnsafeRawPointer($0) }, Int(sqlite3_column_bytes(handle, index)))
        case SQLITE_BLOB:
            let p = sqlite3_column_blob(handle, index)
            bytes(4, p, Int(sqlite3_column_bytes(handle, index)))
        default: out.append(0)
        }
    }

    /// The bytes of TEXT column `index` as stored (no UTF-8 repair).
    public func rawText(_ index: Int32) -> [UInt8] {
        guard let p = sqlite3_column_text(handle, index) else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(handle, index))))
    }

    /// The current row.
    public func currentRow() -> Row {
        let n = sqlite3_column_count(handle)
        return Row(columns: columnNames, values: (0..<n).map { column($0) })
    }

    /// Binds `arguments`, runs to completion, discards rows.
    public func execute(_ arguments: [SQLValue] = []) throws {
        try bind(arguments)
        while try step() {}
        sqlite3_reset(handle)
    }

    /// Binds `arguments` and returns every row.
    public func rows(_ arguments: [SQLValue] = []) throws -> [Row] {
        try bind(arguments)
        var result: [Row] = []
        while try step() { result.append(currentRow()) }
        sqlite3_reset(handle)
        return result
    }
}
