import CLinux
import CSQLCipher
import Crypto
import Foundation

/// How a copy of a live database is made (ARCHITECTURE D3).
public enum CopyMethod: String, Sendable, CaseIterable {
    /// The raw page copy when the snapshot allows it, else the online-backup API.
    case auto
    /// The raw page copy only: refused (``RawCopyRefused``) when it is not possible.
    case raw
    /// The SQLite online-backup API only.
    case backupAPI = "backup-api"
}

/// Why the raw page copy could not be used for a snapshot.
public struct RawCopyRefused: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public var description: String { "the raw page copy is not possible: \(reason)" }
}

/// What a copy did: the method that ran, and for a raw copy how many pages came from the WAL.
public struct CopyOutcome: Sendable, Equatable {
    public var method: CopyMethod
    /// Pages taken from committed WAL frames (raw copy only).
    public var walPages: Int = 0
    /// The snapshot's last WAL frame (0: the database file alone held the snapshot).
    public var walFrames: Int = 0
    /// Why the raw copy was not used when `auto` fell back to the backup API.
    public var fallbackReason: String?
    /// Made gently, a recorder running (set by the caller that chose it).
    public var paced = false
}

/// A read transaction on a live database whose exact WAL snapshot is known, so the
/// database's bytes can be copied as they are.
///
/// SQLite pages (SQLCipher's encrypted pages too: each is encrypted with its page number
/// bound into its HMAC, and WAL frames hold the same encrypted pages) are valid in a copy
/// as they are. Under a read transaction, the snapshot is the database file's pages plus,
/// for each page, its last frame up to the snapshot's last WAL frame (`mxFrame`): a reader
/// holding a read mark at `mxFrame` keeps checkpoints from writing later frames into the
/// file and keeps the WAL from being restarted, so both stay valid for the whole copy.
///
/// Debian's SQLCipher is built without `SQLITE_ENABLE_SNAPSHOT`, so `mxFrame` is read from
/// the WAL index (`-shm`) header before and after the read transaction starts: when the
/// header is the same both times, no commit came between, and the transaction's snapshot
/// is that header's. The frames are then read from the WAL and proven with SQLite's own
/// cumulative checksums and salts up to that frame, whose checksum must equal the header's.
/// Any doubt refuses the raw copy (the caller falls back to the backup API).
/// See <https://www.sqlite.org/walformat.html> and <https://www.sqlite.org/fileformat2.html#walformat>.
public final class PinnedSnapshot: @unchecked Sendable {
    public let database: Database
    public let path: String
    public let pageSize: Int
    /// The snapshot's size in pages.
    public let pageCount: Int
    /// Why a raw copy is not possible (nil: it is).
    public let rawRefusal: String?
    /// The connection's own main database file (valid while `database` is open).
    let file: UnsafeMutablePointer<sqlite3_file>?
    let walFD: Int32
    /// Page number → offset of the page's bytes in the WAL, for the pages whose last frame
    /// in the snapshot is in the WAL (not yet in the database file).
    let walPages: [UInt32: Int64]
    let walFrames: Int
    let walSalt: [UInt8]
    let walMode: Bool
    var ended = false

    /// Begins a read transaction on `database` (opened on `path`) and works out its snapshot.
    public static func begin(_ database: Database, path: String) throws -> PinnedSnapshot {
        // The database file and the WAL index are read through the connection's own open
        // file (see tosca_main_file): a descriptor of ours, once closed, would drop the
        // connection's locks.
        let file = tosca_main_file(database.handle)
        var refusal: String? = file == nil ? "the connection's database file is not reachable" : nil
        let walMode = (try database.scalar("PRAGMA journal_mode")?.string ?? "").lowercased() == "wal"
        var header: WALIndexHeader? = nil
        var began = false
        // A read transaction starts at its first read, not at BEGIN.
        func beginRead() throws {
            try database.execute("BEGIN")
            began = true
            _ = try database.scalar("SELECT count(*) FROM sqlite_schema")
        }
        func endRead() throws {
            try database.execute("COMMIT")
            began = false
        }
        do {
            if walMode, let file {
                // A first read transaction opens the WAL and maps its index.
                try beginRead()
                try endRead()
                // Sandwich the start of the read transaction between two identical headers.
                for attempt in 0..<50 {
                    let before = WALIndexHeader.read(file)
                    try beginRead()
                    let after = WALIndexHeader.read(file)
                    if let before, let after, before.header == after.header {
                        header = after
                        break
                    }
                    try endRead()
                    usleep(UInt32(min(attempt + 1, 10)) * 1000)
                }
                if header == nil {
                    refusal = "the WAL index header kept changing (or was unreadable) while the snapshot was taken"
                    try beginRead()
                }
            } else {
                // Rollback journal: the read transaction's SHARED lock keeps every writer
                // out until it ends, so the file alone is the snapshot.
                try beginRead()
            }
            let pageSize = try database.integerPragma("page_size") ?? 0
            let pageCount = try database.integerPragma("page_count") ?? 0
            var walPages: [UInt32: Int64] = [:]
            var walFrames = 0
            var walSalt: [UInt8] = []
            var walFD: Int32 = -1
            if refusal == nil, let header {
                // (An empty WAL's index may say page size 0: only frames need the check.)
                if header.backfilled < header.maxFrame && header.pageSize != pageSize {
                    refusal = "the WAL index says page size \(header.pageSize), the database \(pageSize)"
                } else if header.backfilled < header.maxFrame {
                    // Frames not yet in the database file belong to the snapshot: read them.
                    // (SQLite takes no lock on the -wal file itself: our own descriptor is safe.)
                    walFD = open(path + "-wal", O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                    if walFD < 0 {
                        refusal = "cannot read \(path)-wal: \(String(cString: strerror(errno)))"
                    } else {
                        do {
                            walPages = try WALScan.pages(fd: walFD, header: header, pageCount: pageCount)
                            walFrames = Int(header.maxFrame)
                            walSalt = header.salt
                        } catch let e as RawCopyRefused {
                            refusal = e.reason
                        }
                    }
                }
                // backfilled >= maxFrame: every frame of the snapshot is in the file, and the
                // read mark keeps later frames out of it.
            }
            if refusal != nil {
                if walFD >= 0 { close(walFD) }
                walFD = -1
                walPages = [:]
            } else {
                // The copy reads the file through the connection's xRead while another
                // thread may use the connection: no memory map to be remapped under it.
                try database.execute("PRAGMA mmap_size = 0")
            }
            return PinnedSnapshot(database: database, path: path, pageSize: pageSize, pageCount: pageCount, rawRefusal: refusal,
                                  file: file, walFD: walFD, walPages: walPages, walFrames: walFrames, walSalt: walSalt, walMode: walMode)
        } catch {
            if began { try? database.execute("COMMIT") }
            throw error
        }
    }

    init(database: Database, path: String, pageSize: Int, pageCount: Int, rawRefusal: String?, file: UnsafeMutablePointer<sqlite3_file>?, walFD: Int32,
         walPages: [UInt32: Int64], walFrames: Int, walSalt: [UInt8], walMode: Bool) {
        self.database = database
        self.path = path
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.rawRefusal = rawRefusal
        self.file = file
        self.walFD = walFD
        self.walPages = walPages
        self.walFrames = walFrames
        self.walSalt = walSalt
        self.walMode = walMode
    }

    /// `count(*)` of every table under the snapshot. Safe on a second thread while the raw
    /// copy runs (it reads the files through descriptors of its own, not the connection).
    public func rowCounts() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for t in try database.tableNames() { counts[t] = try database.scalar("SELECT count(*) FROM \(quoteIdentifier(t))")?.int ?? 0 }
        return counts
    }

    /// Ends the read transaction (the snapshot is no longer pinned).
    public func end() {
        guard !ended else { return }
        ended = true
        try? database.execute("COMMIT")
    }

    deinit {
        end()
        if walFD >= 0 { close(walFD) }
    }
}

/// The WAL index header (the first 136 bytes of `-shm`: two copies of the 48-byte header,
/// then the checkpoint information). Native byte order.
struct WALIndexHeader {
    /// The first copy, as bytes: equal before and after means no commit in between.
    let header: [UInt8]
    let maxFrame: UInt32
    let pageSize: Int
    let frameChecksum: (UInt32, UInt32)
    let salt: [UInt8]
    let backfilled: UInt32

    static func read(_ file: UnsafeMutablePointer<sqlite3_file>) -> WALIndexHeader? {
        var b = [UInt8](repeating: 0, count: 136)
        guard b.withUnsafeMutableBytes({ tosca_shm_read(file, $0.baseAddress, 136) }) == 0 else { return nil }
        return parse(b)
    }

    /// From a copy of the index's first 136 bytes (tests read a still copy of a `-shm`).
    static func parse(_ b: [UInt8]) -> WALIndexHeader? {
        guard b.count >= 136 else { return nil }
        guard Array(b[0..<48]) == Array(b[48..<96]), b[12] == 1 else { return nil }
        func u32(_ o: Int) -> UInt32 { b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
        let sz = Int(b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 14, as: UInt16.self) })
        let pageSize = (sz & 0xFF00) | ((sz & 0x0001) << 16)
        return WALIndexHeader(header: Array(b[0..<48]), maxFrame: u32(16), pageSize: pageSize, frameChecksum: (u32(24), u32(28)),
                              salt: Array(b[32..<40]), backfilled: u32(96))
    }
}

/// Reads and proves the WAL frames of a snapshot.
enum WALScan {
    static func be32(_ p: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }

    /// SQLite's WAL checksum over `bytes` (a multiple of 8), continuing from `s`.
    static func checksum(_ bytes: UnsafeRawBufferPointer, bigEndianWords: Bool, _ s: inout (UInt32, UInt32)) {
        var s1 = s.0, s2 = s.1
        var i = 0
        let n = bytes.count
        while i < n {
            let r0 = bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self)
            let r1 = bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self)
            let x0 = bigEndianWords ? UInt32(bigEndian: r0) : UInt32(littleEndian: r0)
            let x1 = bigEndianWords ? UInt32(bigEndian: r1) : UInt32(littleEndian: r1)
            s1 = s1 &+ x0 &+ s2
            s2 = s2 &+ x1 &+ s1
            i += 8
        }
        s = (s1, s2)
    }

    /// The offset of the last frame of each page (up to `pageCount`) among frames
    /// 1...`header.maxFrame`, after checking the WAL header and every frame's salt and
    /// cumulative checksum, and that the last frame commits a database of `pageCount` pages
    /// with the checksum the WAL index records.
    static func pages(fd: Int32, header: WALIndexHeader, pageCount: Int) throws -> [UInt32: Int64] {
        func refuse(_ why: String) -> RawCopyRefused { RawCopyRefused(reason: "WAL: \(why)") }
        var walHeader = [UInt8](repeating: 0, count: 32)
        guard walHeader.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 32, 0) }) == 32 else { throw refuse("header unreadable") }
        let (magic, pageSize, salt, stored) = walHeader.withUnsafeBytes { p in
            (be32(p, 0), Int(be32(p, 8)), Array(p[16..<24]), (be32(p, 24), be32(p, 28)))
        }
        guard magic & 0xFFFF_FFFE == 0x377F_0682 else { throw refuse("bad magic") }
        let bigEndianWords = magic & 1 == 1
        guard pageSize == header.pageSize else { throw refuse("page size \(pageSize), the index says \(header.pageSize)") }
        guard salt == header.salt else { throw refuse("salts differ from the index (the WAL was restarted)") }
        var sum: (UInt32, UInt32) = (0, 0)
        walHeader.withUnsafeBytes { checksum(UnsafeRawBufferPointer(rebasing: $0[0..<24]), bigEndianWords: bigEndianWords, &sum) }
        guard sum == stored else { throw refuse("header checksum mismatch") }
        let frameSize = 24 + pageSize
        let framesPerRead = max(1, (4 << 20) / frameSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: framesPerRead * frameSize, alignment: 8)
        defer { buffer.deallocate() }
        var pages: [UInt32: Int64] = [:]
        var frame = 1
        var lastTruncate: UInt32 = 0
        let maxFrame = Int(header.maxFrame)
        while frame <= maxFrame {
            let count = min(framesPerRead, maxFrame - frame + 1)
            let offset = Int64(32) + Int64(frame - 1) * Int64(frameSize)
            let want = count * frameSize
            var got = 0
            while got < want {
                let n = pread(fd, buffer.baseAddress! + got, want - got, off_t(offset) + off_t(got))
                if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read WAL", code: errno) }
                if n == 0 { throw refuse("shorter than frame \(maxFrame)") }
                got += n
            }
            let view = UnsafeRawBufferPointer(buffer)
            for k in 0..<count {
                let base = k * frameSize
                let frameHeader = UnsafeRawBufferPointer(rebasing: view[base..<(base + 24)])
                guard Array(frameHeader[8..<16]) == salt else { throw refuse("frame \(frame + k) has other salts") }
                checksum(UnsafeRawBufferPointer(rebasing: frameHeader[0..<8]), bigEndianWords: bigEndianWords, &sum)
                checksum(UnsafeRawBufferPointer(rebasing: view[(base + 24)..<(base + frameSize)]), bigEndianWords: bigEndianWords, &sum)
                guard sum == (be32(frameHeader, 16), be32(frameHeader, 20)) else { throw refuse("frame \(frame + k) checksum mismatch") }
                let pgno = be32(frameHeader, 0)
                guard pgno > 0 else { throw refuse("frame \(frame + k) names page 0") }
                pages[pgno] = offset + Int64(base + 24)
                lastTruncate = be32(frameHeader, 4)
            }
            frame += count
        }
        guard lastTruncate != 0 else { throw refuse("frame \(maxFrame) is not a commit") }
        guard Int(lastTruncate) == pageCount else { throw refuse("the snapshot has \(pageCount) pages, its commit frame says \(lastTruncate)") }
        guard sum == header.frameChecksum else { throw refuse("the checksum of frame \(maxFrame) differs from the index") }
        return pages.filter { Int($0.key) <= pageCount }
    }
}

/// Copies the pinned snapshot of a live database into a new file.
public enum DatabaseCopy {
    /// Bytes read and written at a time by the raw copy.
    public static let chunkBytes = 4 << 20
    /// Chunks whose write-back may be under way at once (32 MiB). Measured on a 1 GiB copy
    /// (the copy step of `backup`, its row counting beside it): 2.2 s with 2 chunks, 2.3 s
    /// with 8, 1.9 s with 64; the window is kept small for the recorder's fsyncs.
    static let writeWindow = 8

    /// Copies `pin`'s snapshot into `destinationPath` (an existing empty file, or new),
    /// keyed with `key` (the source's key: a raw copy keeps the bytes as they are).
    /// `method` `.auto` takes the raw page copy when the snapshot allows it and falls back
    /// to the online-backup API otherwise (the reason in the outcome). Either way the copy
    /// leaves WAL mode (a published copy opens without `-wal`/`-shm`); it is not fsynced.
    /// `gently` (a recorder is running): the copy goes in 1 MiB steps, each pushed to the
    /// disk and waited for before the next, so a recorder's fsync waits behind one request
    /// of ours at most, not behind 32 MiB of writeback. The pages stay in the page cache, so
    /// the verification that follows reads none of them from the disk.
    public static func copy(_ pin: PinnedSnapshot, to destinationPath: String, key: DatabaseKey?, method: CopyMethod = .auto,
                            gently: Bool = false, progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> CopyOutcome {
        var fallback: String? = nil
        if method != .backupAPI {
            if let refusal = pin.rawRefusal {
                if method == .raw { throw RawCopyRefused(reason: refusal) }
                fallback = refusal
            } else {
                do {
                    let walPages = try raw(pin, to: destinationPath, gently: gently, progress: progress)
                    if pin.walMode { try leaveWAL(destinationPath, key: key) }
                    return CopyOutcome(method: .raw, walPages: walPages, walFrames: pin.walFrames)
                } catch let e as RawCopyRefused {
                    if method == .raw { throw e }
                    fallback = e.reason
                    guard truncate(destinationPath, 0) == 0 else { throw POSIXFailure(operation: "truncate \(destinationPath)", code: errno) }
                }
            }
        }
        try OnlineBackup.copy(source: pin.database, destinationPath: destinationPath, key: key, progress: progress)
        return CopyOutcome(method: .backupAPI, fallbackReason: fallback)
    }

    /// The raw page copy: the file's pages in large reads, each page whose last snapshot
    /// frame is in the WAL taken from there, written in large writes that are pushed to the
    /// disk as they go (so dirty data never piles up ahead of the recorder's fsyncs).
    /// Returns how many pages came from the WAL.
    static func raw(_ pin: PinnedSnapshot, to destinationPath: String, gently: Bool, progress: ((Int, Int) -> Void)?) throws -> Int {
        let pageSize = pin.pageSize
        guard pageSize >= 512, pin.pageCount > 0 else { throw RawCopyRefused(reason: "page size \(pageSize), \(pin.pageCount) pages") }
        let out = open(destinationPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard out >= 0 else { throw POSIXFailure(operation: "open \(destinationPath)", code: errno) }
        defer { close(out) }
        let total = Int64(pin.pageCount) * Int64(pageSize)
        _ = tosca_preallocate(out, total)
        let chunkPages = max(1, (gently ? 1 << 20 : chunkBytes) / pageSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkPages * pageSize, alignment: 4096)
        defer { buffer.deallocate() }
        guard let file = pin.file else { throw RawCopyRefused(reason: "the connection's database file is not reachable") }
        var fileSize: sqlite3_int64 = 0
        let src = tosca_file_size(file, &fileSize)
        guard src == SQLITE_OK else { throw SQLiteError(code: src, message: "size of \(pin.path)") }
        var fromWAL = 0
        var first = 0
        var inFlight: [(Int64, Int64)] = []
        while first < pin.pageCount {
            let count = min(chunkPages, pin.pageCount - first)
            let offset = Int64(first) * Int64(pageSize)
            let want = count * pageSize
            // Read what the file has of this range; pages past its end must be in the WAL.
            let inFile = Int(max(0, min(Int64(want), Int64(fileSize) - offset)))
            if inFile > 0 {
                let rrc = tosca_file_read(file, buffer.baseAddress!, Int32(inFile), offset)
                // SQLITE_IOERR_SHORT_READ: the file is shorter than it was a moment ago.
                if rrc == SQLITE_IOERR | (2 << 8) { throw RawCopyRefused(reason: "\(pin.path) ended before \(offset + Int64(inFile)) bytes") }
                guard rrc == SQLITE_OK else { throw SQLiteError(code: rrc, message: "read \(pin.path)") }
            }
            for p in first..<(first + count) {
                let pgno = UInt32(p + 1)
                let slot = buffer.baseAddress! + (p - first) * pageSize
                if let walOffset = pin.walPages[pgno] {
                    try readFully(pin.walFD, into: slot, count: pageSize, at: walOffset, what: pin.path + "-wal")
                    fromWAL += 1
                } else if (p - first + 1) * pageSize > inFile {
                    throw RawCopyRefused(reason: "page \(pgno) is neither in the database file nor in the snapshot's WAL frames")
                }
            }
            var done = 0
            while done < want {
                let n = pwrite(out, buffer.baseAddress! + done, want - done, off_t(offset) + off_t(done))
                if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "write \(destinationPath)", code: errno) }
                done += n
            }
            // Write-back of this chunk starts now; the oldest of the window must be on the
            // disk before the next is read, so at most `writeWindow` chunks of ours are dirty.
            if tosca_start_write_range(out, offset, Int64(want)) != 0 { throw POSIXFailure(operation: "write back \(destinationPath)", code: errno) }
            inFlight.append((offset, Int64(want)))
            if inFlight.count >= (gently ? 1 : writeWindow) {
                let (o, n) = inFlight.removeFirst()
                if tosca_write_range_and_wait(out, o, n) != 0 { throw POSIXFailure(operation: "write back \(destinationPath)", code: errno) }
            }
            first += count
            progress?(first, pin.pageCount)
        }
        for (o, n) in inFlight where tosca_write_range_and_wait(out, o, n) != 0 { throw POSIXFailure(operation: "write back \(destinationPath)", code: errno) }
        if ftruncate(out, off_t(total)) != 0 { throw POSIXFailure(operation: "truncate \(destinationPath)", code: errno) }
        // The frames read are still the snapshot's: the WAL was not restarted under us.
        if pin.walFD >= 0 {
            var salt = [UInt8](repeating: 0, count: 8)
            guard salt.withUnsafeMutableBytes({ pread(pin.walFD, $0.baseAddress, 8, 16) }) == 8, salt == pin.walSalt else {
                throw RawCopyRefused(reason: "the WAL was restarted during the copy")
            }
        }
        return fromWAL
    }

    static func readFully(_ fd: Int32, into p: UnsafeMutableRawPointer, count: Int, at offset: Int64, what: String) throws {
        var got = 0
        while got < count {
            let n = pread(fd, p + got, count - got, off_t(offset) + off_t(got))
            if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read \(what)", code: errno) }
            if n == 0 { throw RawCopyRefused(reason: "\(what) ended at \(offset + Int64(got)) bytes") }
            got += n
        }
    }

    /// A copy of a WAL-mode database carries WAL mode in its header: switched back to a
    /// rollback journal through SQLite (page 1 rewritten; keyed, for an encrypted copy).
    static func leaveWAL(_ path: String, key: DatabaseKey?) throws {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, nil)
        defer { sqlite3_close_v2(db) }
        guard rc == SQLITE_OK, let db else { throw SQLiteError(code: rc, message: "open copy \(path)") }
        sqlite3_extended_result_codes(db, 1)
        if let key {
            let krc = key.withSQLCipherKey { sqlite3_key_v2(db, "main", $0, $1) }
            guard krc == SQLITE_OK else { throw SQLiteError(code: krc, message: "key copy: \(String(cString: sqlite3_errmsg(db)))") }
        }
        let jrc = sqlite3_exec(db, "PRAGMA journal_mode = DELETE", nil, nil, nil)
        guard jrc == SQLITE_OK else { throw SQLiteError(code: sqlite3_extended_errcode(db), message: "leave WAL mode on the copy: \(String(cString: sqlite3_errmsg(db)))") }
    }
}
