import CSQLCipher
import Crypto
import Foundation

/// `sqlcipher_export`: the only way between a plaintext and an encrypted database (D3).
/// See <https://www.zetetic.net/sqlcipher/sqlcipher-api/#sqlcipher_export>.
public enum SQLCipherExport {
    /// Exports the plaintext database `source` into a new file `destination` encrypted with
    /// `key`, then sets what export leaves out (D11): `user_version`, `application_id`.
    /// The key is bound as a parameter of `ATTACH`, never put in SQL text.
    public static func encrypt(source: Database, into destination: String, key: DatabaseKey) throws {
        // ATTACH opens with the main connection's flags, which lack CREATE: make the empty
        // file (SQLite treats it as a new database) ourselves, private.
        let fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw POSIXFailure(operation: "create \(destination)", code: errno) }
        close(fd)
        let attach = try source.prepare("ATTACH DATABASE ? AS tosca_export KEY ?")
        try attach.bind(.text(destination), at: 1)
        let rc = key.withSQLCipherKey { ptr, len in
            sqlite3_bind_text(attach.handle, 2, ptr.assumingMemoryBound(to: CChar.self), len, SQLITE_TRANSIENT_DESTRUCTOR)
        }
        guard rc == SQLITE_OK else { throw source.error(rc, sql: attach.sql) }
        try attach.step()
        attach.reset()
        sqlite3_clear_bindings(attach.handle)
        defer { try? source.execute("DETACH DATABASE tosca_export") }
        let version = try source.scalar("PRAGMA main.user_version")?.int ?? 0
        let appID = try source.scalar("PRAGMA main.application_id")?.int ?? 0
        _ = try source.rows("SELECT sqlcipher_export('tosca_export')")
        try source.execute("PRAGMA tosca_export.user_version = \(version)")
        try source.execute("PRAGMA tosca_export.application_id = \(appID)")
    }
}

extension Database {
    /// Re-encrypts the whole database under `newKey` (`sqlite3_rekey_v2`; the key never
    /// appears in SQL text). The connection must have been opened with the current key.
    /// See <https://www.zetetic.net/sqlcipher/sqlcipher-api/#rekey>.
    public func rekey(to newKey: DatabaseKey) throws {
        guard isKeyed else { throw SQLiteError(code: SQLITE_MISUSE, message: "rekey needs a connection opened with the current key") }
        let rc = newKey.withSQLCipherKey { sqlite3_rekey_v2(handle, "main", $0, $1) }
        guard rc == SQLITE_OK else { throw error(rc, sql: "rekey") }
    }
}

extension Database {
    /// Row count and SHA-256 of a table's rows in rowid order, over `columns`: each value
    /// as a type tag and its bytes (the encoding of D7, without a chain), read straight
    /// from SQLite's buffers so that a million-row table hashes at disk speed. With
    /// `firstRows`, only that many rows (the prefix an append-only table keeps).
    public func contentHash(table: String, columns: [String], firstRows: Int? = nil) throws -> (rows: Int, sha256: String) {
        let limit = firstRows.map { " LIMIT \(max(0, $0))" } ?? ""
        let stmt = try prepare("SELECT \(columns.map(quoteIdentifier).joined(separator: ", ")) FROM \(quoteIdentifier(table)) ORDER BY rowid\(limit)")
        var hasher = SHA256()
        var buf = [UInt8]()
        buf.reserveCapacity(1 << 16)
        var rows = 0
        let n = Int32(columns.count)
        func be(_ v: UInt64, _ bytes: Int) { for shift in stride(from: (bytes - 1) * 8, through: 0, by: -8) { buf.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) } }
        while try stmt.step() {
            rows += 1
            for i in 0..<n {
                switch sqlite3_column_type(stmt.handle, i) {
                case SQLITE_INTEGER: buf.append(1); be(UInt64(bitPattern: sqlite3_column_int64(stmt.handle, i)), 8)
                case SQLITE_FLOAT: buf.append(2); be(sqlite3_column_double(stmt.handle, i).bitPattern, 8)
                case SQLITE_TEXT:
                    let p = sqlite3_column_text(stmt.handle, i)
                    let len = Int(sqlite3_column_bytes(stmt.handle, i))
                    buf.append(3); be(UInt64(len), 4)
                    if let p, len > 0 { buf.append(contentsOf: UnsafeBufferPointer(start: p, count: len)) }
                case SQLITE_BLOB:
                    let p = sqlite3_column_blob(stmt.handle, i)
                    let len = Int(sqlite3_column_bytes(stmt.handle, i))
                    buf.append(4); be(UInt64(len), 4)
                    if let p, len > 0 { buf.append(contentsOf: UnsafeRawBufferPointer(start: p, count: len)) }
                default: buf.append(0)
                }
            }
            if buf.count >= 1 << 16 {
                hasher.update(data: buf)
                buf.removeAll(keepingCapacity: true)
            }
        }
        hasher.update(data: buf)
        stmt.reset()
        return (rows, hexString(hasher.finalize()))
    }
}
