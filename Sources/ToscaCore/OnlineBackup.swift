import CLinux
import CSQLCipher
import Crypto
import Foundation

/// The SQLite online-backup API over a pinned snapshot (ARCHITECTURE D3).
/// See <https://www.sqlite.org/backup.html> and <https://www.sqlite.org/c3ref/backup_finish.html>.
public enum OnlineBackup {
    /// Copies `source` into `destinationPath` (new or empty), keyed with `key` (the same
    /// key as the source: SQLCipher refuses a plaintext/encrypted mix).
    ///
    /// Run it while `source` holds a read transaction (`BEGIN` + a read): the WAL snapshot
    /// is then pinned, so commits by the recorder never restart the copy, and the recorder
    /// never waits on us (readers do not block the WAL writer). The destination's journal
    /// is off while copying (it is not published until verified); afterwards its header is
    /// switched out of WAL mode so the copy opens read-only without `-wal`/`-shm` files.
    ///
    /// Writeback is paced: after each step the pages just written are pushed to the disk
    /// and waited for (`sync_file_range`), so dirty data never piles up. On ext4 an fsync
    /// by the recorder would otherwise wait behind gigabytes of our delayed writes.
    public static func copy(source: Database, destinationPath: String, key: DatabaseKey?, pagesPerStep: Int32 = 1024,
                            progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws {
        var dest: OpaquePointer?
        let orc = sqlite3_open_v2(destinationPath, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW, nil)
        guard orc == SQLITE_OK, let dest else {
            let message = dest.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(dest)
            throw SQLiteError(code: orc, message: "open destination \(destinationPath): \(message)")
        }
        defer { sqlite3_close_v2(dest) }
        sqlite3_extended_result_codes(dest, 1)
        func fail(_ rc: Int32, _ what: String) -> SQLiteError {
            SQLiteError(code: sqlite3_extended_errcode(dest) & 0xFF == rc & 0xFF ? sqlite3_extended_errcode(dest) : rc,
                        message: "\(what): \(String(cString: sqlite3_errmsg(dest)))")
        }
        if let key {
            let krc = key.withSQLCipherKey { sqlite3_key_v2(dest, "main", $0, $1) }
            guard krc == SQLITE_OK else { throw fail(krc, "key destination") }
        }
        for pragma in ["PRAGMA journal_mode = OFF", "PRAGMA synchronous = OFF"] {
            let rc = sqlite3_exec(dest, pragma, nil, nil, nil)
            guard rc == SQLITE_OK else { throw fail(rc, "prepare destination") }
        }
        guard let backup = sqlite3_backup_init(dest, "main", source.handle, "main") else {
            throw fail(sqlite3_errcode(dest), "start backup")
        }
        var finished = false
        defer { if !finished { sqlite3_backup_finish(backup) } }
        let pacer = open(destinationPath, O_RDONLY | O_CLOEXEC)
        defer { if pacer >= 0 { close(pacer) } }
        var synced: Int64 = 0
        var busyWaits = 0
        while true {
            let rc = sqlite3_backup_step(backup, pagesPerStep)
            if pacer >= 0 {
                var st = stat()
                if fstat(pacer, &st) == 0 && Int64(st.st_size) > synced {
                    if tosca_write_range_and_wait(pacer, synced, Int64(st.st_size) - synced) == 0 { synced = Int64(st.st_size) }
                }
            }
            let total = Int(sqlite3_backup_pagecount(backup))
            progress?(total - Int(sqlite3_backup_remaining(backup)), total)
            if rc == SQLITE_DONE { break }
            if rc == SQLITE_OK { continue }
            if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && busyWaits < 3000 {
                busyWaits += 1
                usleep(10_000)
                continue
            }
            finished = true
            sqlite3_backup_finish(backup)
            throw fail(rc, "copy pages")
        }
        finished = true
        let frc = sqlite3_backup_finish(backup)
        guard frc == SQLITE_OK else { throw fail(frc, "finish backup") }
        // The copied header says WAL (it came from the live file); a published copy must not.
        let jrc = sqlite3_exec(dest, "PRAGMA journal_mode = DELETE", nil, nil, nil)
        guard jrc == SQLITE_OK else { throw fail(jrc, "leave WAL mode on the copy") }
    }
}

/// Streaming file digests.
public enum FileDigest {
    /// SHA-256 (hex) and size of a file, read in 1 MiB chunks.
    public static func sha256(path: String, progress: ((Int64) -> Void)? = nil) throws -> (hex: String, size: Int64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFailure(operation: "open \(path)", code: errno) }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var hasher = SHA256()
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read \(path)", code: errno) }
            if n == 0 { break }
            buf.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            total += Int64(n)
            progress?(total)
        }
        return (hexString(hasher.finalize()), total)
    }

    /// fsyncs a file.
    public static func fsyncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFailure(operation: "open \(path)", code: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync \(path)", code: errno) }
    }
}
