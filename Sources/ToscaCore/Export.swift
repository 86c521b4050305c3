import CSQLCipher
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
