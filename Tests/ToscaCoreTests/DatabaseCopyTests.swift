import Foundation
import Testing
import TestSupport
@testable import ToscaCore

/// The raw page copy (D3): the pinned snapshot's bytes, proven with the stock CLIs.
@Suite struct DatabaseCopyTests {
    /// A live database in WAL mode whose writer does not checkpoint by itself: some frames
    /// backfilled into the file, later frames (updates of the same pages among them) only in
    /// the WAL.
    func liveDatabase(_ path: String, key: DatabaseKey?) throws -> Database {
        let w = try Database(path: path, options: .init(create: true, key: key, walMode: true))
        try w.execute("PRAGMA wal_autocheckpoint = 0")
        try w.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, v BLOB NOT NULL)")
        try w.execute("CREATE INDEX t_version ON t (version, id)")
        for batch in 0..<8 {
            try w.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t (version, v) SELECT 1, randomblob(700) FROM n")
            if batch == 4 { _ = try w.rows("PRAGMA wal_checkpoint(PASSIVE)") }
        }
        // Pages with several frames in the WAL: the copy must take each one's last.
        for round in 0..<3 {
            try w.execute("UPDATE t SET version = version + 1, v = randomblob(700) WHERE id % 7 = ?", [.integer(Int64(round))])
        }
        return w
    }

    /// count, sum of versions, sum of ids: what a stale or misplaced page would change.
    func fingerprint(_ db: Database) throws -> String {
        try db.rows("SELECT count(*), sum(version), sum(id), sum(length(v)) FROM t").first!.values.map(\.description).joined(separator: "|")
    }

    func oracle(_ path: String, keyHex: String?, _ sql: String) throws -> String {
        let r = try keyHex.map { try sqlcipher(path, keyHex: $0, sql) } ?? sqlite3(path, sql)
        guard r.status == 0 else { throw OracleError(message: r.output) }
        // sqlcipher answers `PRAGMA key` with a line "ok" of its own.
        return r.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(keyHex == nil ? 0 : 1)
            .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(arguments: [false, true])
    func theRawCopyHoldsThePinnedSnapshotWhileCommitsAndCheckpointsGoOn(encrypted: Bool) throws {
        let dir = TempDir()
        let path = dir.sub("live.db")
        let keyHex = encrypted ? try writeKeyFile(dir.sub("key")) : nil
        let key = try keyHex.map { _ in try KeySource.read(path: dir.sub("key")) }
        let writer = try liveDatabase(path, key: key)
        let source = try Database(path: path, options: .init(readOnly: true, key: key))
        let pin = try PinnedSnapshot.begin(source, path: path)
        #expect(pin.rawRefusal == nil, "\(pin.rawRefusal ?? "")")
        #expect(pin.walFrames > 0)
        let pinned = try fingerprint(source)
        var changedDuringCopy = false
        var checkpointed: [SQLValue] = []
        let copyPath = dir.sub("copy.db")
        let outcome = try DatabaseCopy.copy(pin, to: copyPath, key: key, method: .raw) { done, total in
            guard !changedDuringCopy, done < total else { return }
            changedDuringCopy = true
            // Mid-copy: new commits, then checkpoints (a TRUNCATE one must stop at our read
            // mark and leave the WAL alone).
            try? writer.execute("UPDATE t SET version = version + 10, v = randomblob(700) WHERE id % 5 = 0")
            try? writer.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO t (version, v) SELECT 7, randomblob(700) FROM n")
            checkpointed = (try? writer.rows("PRAGMA wal_checkpoint(PASSIVE)").first?.values) ?? []
            _ = try? writer.rows("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        #expect(changedDuringCopy, "the copy ended before the writer could change anything")
        #expect(checkpointed.count == 3 && (checkpointed[2].int ?? 0) > 0, "no frame was checkpointed during the copy: \(checkpointed)")
        #expect(outcome.method == .raw && outcome.walPages > 0, "\(outcome)")
        pin.end()
        #expect(try fingerprint(writer) != pinned, "the live database did not move on")
        // The stock CLI: a sound database in rollback mode with exactly the pinned rows.
        #expect(try oracle(copyPath, keyHex: keyHex, "PRAGMA integrity_check;") == "ok")
        if encrypted { #expect(try oracle(copyPath, keyHex: keyHex, "PRAGMA cipher_integrity_check;") == "") }
        #expect(try oracle(copyPath, keyHex: keyHex, "PRAGMA journal_mode;") == "delete")
        #expect(try oracle(copyPath, keyHex: keyHex, "SELECT count(*), sum(version), sum(id), sum(length(v)) FROM t;") == pinned)
        #expect(!FileManager.default.fileExists(atPath: copyPath + "-wal") && !FileManager.default.fileExists(atPath: copyPath + "-shm"))
    }

    /// The snapshot taken while nothing is left in the WAL: the file alone, and checkpoints
    /// during the copy cannot write later frames into it.
    @Test func aCheckpointedSnapshotIsCopiedFromTheFileAlone() throws {
        let dir = TempDir()
        let path = dir.sub("live.db")
        // The last connection closed: the WAL is gone, and the next one rebuilds its index
        // (whose header then says page size 0).
        _ = try liveDatabase(path, key: nil)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        let source = try Database(path: path, options: .init(readOnly: true))
        let writer = try Database(path: path, options: .init(walMode: true))
        let pin = try PinnedSnapshot.begin(source, path: path)
        #expect(pin.rawRefusal == nil && pin.walFrames == 0, "\(pin.rawRefusal ?? "")")
        let pinned = try fingerprint(source)
        var changed = false
        let outcome = try DatabaseCopy.copy(pin, to: dir.sub("copy.db"), key: nil, method: .raw) { done, total in
            guard !changed, done < total else { return }
            changed = true
            try? writer.execute("UPDATE t SET version = version + 10, v = randomblob(700) WHERE id % 3 = 0")
            _ = try? writer.rows("PRAGMA wal_checkpoint(PASSIVE)")
        }
        pin.end()
        #expect(changed && outcome.method == .raw && outcome.walPages == 0)
        #expect(try oracle(dir.sub("copy.db"), keyHex: nil, "PRAGMA integrity_check;") == "ok")
        #expect(try oracle(dir.sub("copy.db"), keyHex: nil, "SELECT count(*), sum(version), sum(id), sum(length(v)) FROM t;") == pinned)
        #expect(try fingerprint(writer) != pinned)
    }

    /// The frames are proven before they are used: a flipped byte in a frame, or a WAL
    /// restarted under other salts, refuses the raw copy.
    @Test func aDamagedOrForeignWALFrameRefusesTheRawCopy() throws {
        let dir = TempDir()
        let path = dir.sub("live.db")
        let writer = try liveDatabase(path, key: nil)
        // A still copy of the WAL and its index (no writer in between).
        try FileManager.default.copyItem(atPath: path + "-wal", toPath: dir.sub("w"))
        try FileManager.default.copyItem(atPath: path + "-shm", toPath: dir.sub("s"))
        let pages = try writer.integerPragma("page_count") ?? 0
        func scan() throws -> [UInt32: Int64] {
            let w = open(dir.sub("w"), O_RDONLY)
            defer { close(w) }
            let index = try #require(FileManager.default.contents(atPath: dir.sub("s")))
            let header = try #require(WALIndexHeader.parse([UInt8](index.prefix(136))))
            return try WALScan.pages(fd: w, header: header, pageCount: pages)
        }
        func refusal(_ body: () throws -> [UInt32: Int64]) -> String {
            do { _ = try body(); return "no refusal" } catch let e as RawCopyRefused { return e.reason } catch { return "\(error)" }
        }
        #expect(try scan().count > 0)
        // Page data of frame 3 (the WAL header is 32 bytes, each frame 24 + 4096).
        let inFrame3: UInt64 = 32 + 2 * 4120 + 24 + 100
        try flipByte(dir.sub("w"), at: inFrame3)
        #expect(refusal(scan).contains("frame 3 checksum"))
        try flipByte(dir.sub("w"), at: inFrame3)
        #expect(try scan().count > 0)
        // Other salts in the WAL header (a restarted WAL).
        try flipByte(dir.sub("w"), at: 17)
        #expect(refusal(scan).contains("salts"))
    }
}
