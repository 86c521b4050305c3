import Foundation
import ToscaCore

/// Replacing the live database (restore, the encryption cutover, migrate's fall-back):
/// its WAL emptied first, a staged file switched to WAL mode (D2) under its own name, the
/// stale `-wal`/`-shm`/`-journal` removed, the staged file renamed over the live one, the
/// folder fsynced. One definition for every caller.
public enum LiveSwap {
    /// `PRAGMA wal_checkpoint(TRUNCATE)` on an open connection: 75 when something still
    /// reads the file, so its WAL cannot be emptied; `unchanged` says what was not done.
    public static func emptyWAL(_ db: Database, path: String, unchanged: String) throws {
        let r = try db.rows("PRAGMA wal_checkpoint(TRUNCATE)").first
        if let busy = r?[0].int, busy != 0 {
            throw ToolFailure(.tempFail, "something still reads \(path): its WAL cannot be emptied; \(unchanged)",
                              hint: "stop every program that has the database open, then retry")
        }
    }

    /// Switches `staged` to WAL mode (a copy is written with its journal off, and
    /// `sqlcipher_export` leaves the mode out, D11). Done before the swap, so nothing can
    /// fail after it; closing the connection leaves no `-wal` behind.
    public static func prepareWAL(_ staged: String, key: DatabaseKey?) throws {
        do { _ = try Database(path: staged, options: .init(key: key, walMode: true)) }
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: staged + suffix) {
            throw ToolFailure(.ioError, "\(staged + suffix) is left after switching the staged file to WAL; nothing was swapped")
        }
    }

    /// Renames `staged` over `live` after removing the live journals (the caller emptied
    /// the WAL, or kept the journals in a raw safety copy), then fsyncs the folder.
    public static func swap(_ staged: String, into live: String) throws {
        for suffix in ["-wal", "-shm", "-journal"] {
            if unlink(live + suffix) != 0 && errno != ENOENT { throw POSIXFailure(operation: "remove \(live + suffix)", code: errno) }
        }
        guard rename(staged, live) == 0 else { throw POSIXFailure(operation: "rename \(staged) to \(live)", code: errno) }
        try AtomicFile.syncDirectory(PathName.parent(live))
    }
}
