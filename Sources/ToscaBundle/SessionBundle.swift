import CArchive
import Crypto
import Foundation
import ToscaCore

/// `MANIFEST.json`, the first entry of every session bundle (D17): what the bundle must
/// hold, file by file. libarchive 3.6's zstd frames carry no checksum and tar has no
/// per-file digest, so these SHA-256s are what every read checks.
public struct BundleManifest: Codable, Sendable, Equatable {
    public static let formatName = "tosca-session-bundle/1"
    public static let entryName = "MANIFEST.json"

    public struct File: Codable, Sendable, Equatable {
        public let path: String
        public let size: Int64
        public let sha256: String
        public init(path: String, size: Int64, sha256: String) {
            self.path = path
            self.size = size
            self.sha256 = sha256
        }
    }

    public var format: String = BundleManifest.formatName
    public var sessionID: Int64
    public var startTime: String
    public var endTime: String?
    /// Folders (relative, sorted) and files (sorted by path).
    public var folders: [String]
    public var files: [File]

    public init(sessionID: Int64, startTime: String, endTime: String?, folders: [String], files: [File]) {
        self.sessionID = sessionID
        self.startTime = startTime
        self.endTime = endTime
        self.folders = folders
        self.files = files
    }

    enum CodingKeys: String, CodingKey {
        case format, folders, files
        case sessionID = "session_id", startTime = "start_time", endTime = "end_time"
    }

    /// Canonical bytes: keys sorted, no whitespace, slashes unescaped.
    public func encoded() throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try enc.encode(self)) + [10]
    }

    public var plaintextBytes: Int64 { files.reduce(0) { $0 + $1.size } }
}

/// Why a bundle could not be written or read.
public enum BundleError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The session folder holds something a bundle may not carry, or changed while read.
    case source(path: String, reason: String)
    /// The bundle is damaged, or holds what the rules refuse (a hostile archive).
    case damaged(reason: String)
    /// libarchive failed (I/O, memory).
    case archive(reason: String)
    /// An encrypted bundle and no identity (or none that matches) to read it with.
    case needsIdentity(path: String)

    public var description: String {
        switch self {
        case .source(let p, let r): return "\(p): \(r)"
        case .damaged(let r): return "bundle is damaged or not acceptable: \(r)"
        case .archive(let r): return "libarchive: \(r)"
        case .needsIdentity(let p): return "\(p) is encrypted to the clinic's age recipients: give --identity with one of their identities"
        }
    }
}

/// Session bundles in the D17 format: POSIX pax, zstd, `MANIFEST.json` first, then folders
/// and regular files sorted by path, uid/gid 0, modes 0755/0644, mtimes kept (whole
/// seconds), no xattrs or ACLs: the same folder gives the same bytes.
public enum SessionBundle {
    /// libarchive converts names through the C library's locale, and a Swift process
    /// starts in "C", where 3.6.2 drops or mangles non-ASCII names: UTF-8 first.
    static let localeSet: Bool = {
        setlocale(LC_CTYPE, "C.UTF-8")
        return true
    }()

    /// `libarchive x.y.z zlib/... zstd/...`.
    public static var libarchiveVersion: String {
        _ = localeSet
        return String(cString: archive_version_details())
    }

    /// One file of a session folder as scanned: its relative path, size, digest, mtime.
    public struct Scanned: Sendable, Equatable {
        public let path: String
        public let size: Int64
        public let sha256: String
        public let mtime: Int64
    }

    /// Reads a session folder: folders and regular files only (a symbolic link, device or
    /// FIFO inside it is refused), every file hashed; a file whose size changes while it
    /// is read is refused too. Returns folders and files, each sorted by path.
    /// `gently`: the files are read in small direct requests (a recorder is running).
    public static func scan(folder: String, hashing: Bool = true, gently: Bool = true) throws -> (folders: [String], files: [Scanned]) {
        var folders: [String] = [], files: [Scanned] = []
        func walk(_ relative: String) throws {
            let absolute = relative.isEmpty ? folder : folder + "/" + relative
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: absolute).sorted() } catch {
                throw BundleError.source(path: absolute, reason: "cannot be read: \(error.localizedDescription)")
            }
            for name in names {
                let rel = relative.isEmpty ? name : relative + "/" + name
                let path = folder + "/" + rel
                var st = stat()
                guard lstat(path, &st) == 0 else { throw BundleError.source(path: path, reason: String(cString: strerror(errno))) }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    folders.append(rel)
                    try walk(rel)
                case S_IFREG:
                    let before = Int64(st.st_size)
                    let (hex, size): (String, Int64)
                    if hashing {
                        // Gently: small direct reads, the recorder's commits do not queue behind ours.
                        do { (hex, size) = try DiskReader(path: path, gently: gently, noFollow: true).digest() } catch {
                            throw BundleError.source(path: path, reason: "cannot be read: \(error)")
                        }
                    } else {
                        (hex, size) = ("", before)
                    }
                    var after = stat()
                    guard size == before, lstat(path, &after) == 0, Int64(after.st_size) == before, after.st_mtim.tv_sec == st.st_mtim.tv_sec else {
                        throw BundleError.source(path: path, reason: "changed while it was read (size \(before) became \(size)): the session is still being written to")
                    }
                    files.append(Scanned(path: rel, size: size, sha256: hex, mtime: Int64(st.st_mtim.tv_sec)))
                case S_IFLNK: throw BundleError.source(path: path, reason: "is a symbolic link: a bundle holds folders and regular files only")
                default: throw BundleError.source(path: path, reason: "is a device, FIFO or socket: a bundle holds folders and regular files only")
                }
            }
        }
        try walk("")
        return (folders.sorted(), files.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) })
    }

    /// A digest of what a folder holds by name and size (no content read): what the
    /// nightly run compares to tell a folder changed after it was bundled.
    public static func listingDigest(folders: [String], files: [Scanned]) -> String {
        var lines = folders.map { "D \($0)" }
        lines += files.map { "F \($0.path) \($0.size)" }
        return sha256Hex(Array(lines.joined(separator: "\n").utf8))
    }

    /// An upper bound of the size of the bundle of `manifest` (what the writer allocates up
    /// front): zstd's worst case for incompressible bytes (1/128 more), the tar and pax
    /// headers of each entry, `MANIFEST.json` itself, and age's overhead when encrypted.
    public static func sizeBound(_ manifest: BundleManifest, encrypted: Bool) -> Int64 {
        let plain = manifest.plaintextBytes
        let manifestBytes = Int64((try? manifest.encoded().count) ?? 0)
        let tar = plain + plain / 128 + Int64(manifest.files.count + manifest.folders.count + 1) * 3072 + manifestBytes + (64 << 10)
        return encrypted ? Age.sizeBound(plaintext: tar) : tar
    }

    // MARK: - Writing

    /// Writes the bundle of `folder` into the open file `fd` (not closed, not fsynced):
    /// `MANIFEST.json` (mtime `manifestTime`), then the folders, then every file, each
    /// read again and checked against its scanned size and digest as it goes in.
    public static func write(folder: String, manifest: BundleManifest, scanned: [Scanned], manifestTime: Int64,
                             level: Int, to fd: Int32, progress: ((Int64) -> Void)? = nil) throws {
        try write(folder: folder, manifest: manifest, scanned: scanned, manifestTime: manifestTime, level: level, progress: progress) { bytes in
            var off = 0
            while off < bytes.count {
                let n = writeSome(fd, bytes, from: off)
                if n < 0 { if errno == EINTR { continue }; throw BundleError.archive(reason: "write: \(String(cString: strerror(errno)))") }
                off += n
            }
        }
    }

    /// The bundle of `folder` as a stream of bytes handed to `output` (a file, or the age
    /// writer of an encrypted bundle).
    /// `progress` gets the plaintext bytes of files written so far.
    /// `gently`: the files are read in small direct requests (a recorder is running).
    public static func write(folder: String, manifest: BundleManifest, scanned: [Scanned], manifestTime: Int64,
                             level: Int, gently: Bool = true, progress: ((Int64) -> Void)? = nil,
                             output: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        _ = localeSet
        guard let a = archive_write_new() else { throw BundleError.archive(reason: "archive_write_new failed") }
        let sink = WriteSink(output)
        let context = Unmanaged.passRetained(sink)
        var completed = false
        // One defer, in this order: a failed archive writes nothing more (archive_write_fail
        // before free, whose close would pad the entry and flush through the callback), and
        // the callback's context outlives the archive.
        defer {
            if !completed { archive_write_fail(a) }
            archive_write_free(a)
            context.release()
        }
        func check(_ rc: Int32, _ what: String) throws {
            if let e = sink.error { throw e }
            guard rc == ARCHIVE_OK else {
                throw BundleError.archive(reason: "\(what): \(archive_error_string(a).map { String(cString: $0) } ?? "error \(rc)")")
            }
        }
        try check(archive_write_set_format_pax_restricted(a), "pax format")
        try check(archive_write_add_filter_zstd(a), "zstd filter")
        try check(archive_write_set_filter_option(a, "zstd", "compression-level", String(level)), "zstd level \(level)")
        try check(archive_write_set_bytes_in_last_block(a, 1), "last block")
        try check(archive_write_open2(a, context.toOpaque(), nil, WriteSink.callback, nil, nil), "open")
        func header(_ path: String, type: mode_t, perm: mode_t, size: Int64, mtime: Int64) throws {
            guard let e = archive_entry_new() else { throw BundleError.archive(reason: "archive_entry_new failed") }
            defer { archive_entry_free(e) }
            archive_entry_set_pathname_utf8(e, path)
            archive_entry_set_filetype(e, UInt32(type))
            archive_entry_set_perm(e, perm)
            archive_entry_set_uid(e, 0)
            archive_entry_set_gid(e, 0)
            archive_entry_set_size(e, size)
            archive_entry_set_mtime(e, time_t(mtime), 0)
            try check(archive_write_header(a, e), "header of \(path)")
        }
        func data(_ bytes: UnsafeRawBufferPointer) throws {
            var off = 0
            while off < bytes.count {
                guard let base = bytes.baseAddress else { return }
                let n = archive_write_data(a, base + off, bytes.count - off)
                if let e = sink.error { throw e }
                guard n > 0 else { throw BundleError.archive(reason: "write: \(archive_error_string(a).map { String(cString: $0) } ?? "error \(n)")") }
                off += n
            }
        }
        let manifestBytes = try manifest.encoded()
        try header(BundleManifest.entryName, type: S_IFREG, perm: 0o644, size: Int64(manifestBytes.count), mtime: manifestTime)
        try manifestBytes.withUnsafeBytes { try data($0) }
        for f in manifest.folders { try header(f, type: S_IFDIR, perm: 0o755, size: 0, mtime: manifestTime) }
        var written: Int64 = 0
        for f in scanned {
            try header(f.path, type: S_IFREG, perm: 0o644, size: f.size, mtime: f.mtime)
            let path = folder + "/" + f.path
            let reader: DiskReader
            do { reader = try DiskReader(path: path, gently: gently, noFollow: true) } catch {
                throw BundleError.source(path: path, reason: "cannot be opened: \(error)")
            }
            var total: Int64 = 0
            while true {
                let next: UnsafeRawBufferPointer?
                do { next = try reader.next() } catch { throw BundleError.source(path: path, reason: "\(error)") }
                guard let chunk = next else { break }
                total += Int64(chunk.count)
                written += Int64(chunk.count)
                progress?(written)
                guard total <= f.size else { throw BundleError.source(path: path, reason: "grew while it was bundled: the session is still being written to") }
                try data(chunk)
            }
            // The reader hashed what it gave.
            let digest: String
            do { digest = try reader.digest().hex } catch { throw BundleError.source(path: path, reason: "\(error)") }
            guard total == f.size, digest == f.sha256 else {
                throw BundleError.source(path: path, reason: "changed while it was bundled (size or SHA-256 differ from the scan)")
            }
        }
        try check(archive_write_close(a), "close")
        completed = true
    }

    // MARK: - Reading

    /// Reads the bundle in `path`: `MANIFEST.json` first; then only folders and regular
    /// files listed in it (no absolute path, no `..`, no link, device or duplicate); each
    /// file's bytes are counted against the declared size and hashed against the listed
    /// SHA-256 as they stream by (`sink` gets them, e.g. to write them out). Any
    /// departure throws ``BundleError/damaged(reason:)``.
    /// An age-encrypted bundle (`.tar.zst.age`) is decrypted on the way with one of
    /// `identities`, or with the `fileKey` its writer still holds; without either it
    /// throws ``BundleError/needsIdentity``.
    /// `fileDigest` gets the SHA-256 and size of the whole file as it was read.
    @discardableResult
    public static func read(path: String, identities: [Age.Identity] = [], fileKey: [UInt8]? = nil,
                            sink: ((_ relativePath: String, _ kind: mode_t, _ chunk: UnsafeRawBufferPointer?, _ mtime: Int64) throws -> Void)? = nil,
                            fileDigest: ((_ sha256: String, _ size: Int64) -> Void)? = nil) throws -> BundleManifest {
        _ = localeSet
        guard let a = archive_read_new() else { throw BundleError.archive(reason: "archive_read_new failed") }
        // Only tar and zstd: never "all" (D17).
        archive_read_support_format_tar(a)
        guard archive_read_support_filter_zstd(a) == ARCHIVE_OK else {
            throw BundleError.archive(reason: "this libarchive has no built-in zstd (it would run an external program)")
        }
        // Read from the disk, not the page cache: this process may just have written it.
        let disk: DiskReader
        do { disk = try DiskReader(path: path) } catch { throw BundleError.archive(reason: String(describing: error)) }
        func readMore() throws -> [UInt8] { try disk.next().map { Array($0) } ?? [] }
        let source: ReadSource
        if !isEncrypted(path: path) {
            source = ReadSource { try disk.next().map { Array($0) } }
        } else {
            guard !identities.isEmpty || fileKey != nil else { throw BundleError.needsIdentity(path: path) }
            do {
                let reader = try Age.Reader(identities: identities, fileKey: fileKey, readMore: readMore)
                source = ReadSource { try reader.next() }
            } catch let e as Age.Failure {
                if e == .noMatchingIdentity { throw BundleError.needsIdentity(path: path) }
                throw BundleError.damaged(reason: e.description)
            }
        }
        let context = Unmanaged.passRetained(source)
        // The archive goes before its callback's context.
        defer { archive_read_free(a); context.release() }
        guard archive_read_open2(a, context.toOpaque(), nil, ReadSource.callback, nil, nil) == ARCHIVE_OK else {
            if let e = source.error { throw BundleError.damaged(reason: String(describing: e)) }
            throw BundleError.damaged(reason: archive_error_string(a).map { String(cString: $0) } ?? "not a zstd-compressed tar")
        }
        func fail(_ what: String) -> BundleError {
            // A decryption failure underneath says more than libarchive's own message.
            if let e = source.error { return .damaged(reason: String(describing: e)) }
            return .damaged(reason: what)
        }
        var entry: OpaquePointer? = nil
        var manifest: BundleManifest? = nil
        var seen = Set<String>()
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let rc = archive_read_next_header(a, &entry)
            if rc == ARCHIVE_EOF { break }
            guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN, let e = entry else {
                throw fail("reading an entry: \(archive_error_string(a).map { String(cString: $0) } ?? "error \(rc)")")
            }
            guard let cName = archive_entry_pathname_utf8(e) ?? archive_entry_pathname(e) else { throw fail("an entry has no name") }
            var name = String(cString: cName)
            let type = mode_t(archive_entry_filetype(e))
            if type == S_IFDIR, name.hasSuffix("/") { name.removeLast() }
            guard !seen.contains(name) else { throw fail("\(name) appears twice") }
            seen.insert(name)
            guard Self.isSafe(name) else { throw fail("\(name) is an absolute path or leaves the folder") }
            guard archive_entry_hardlink(e) == nil, archive_entry_symlink(e) == nil else { throw fail("\(name) is a link") }
            let size = archive_entry_size(e)
            let mtime = Int64(archive_entry_mtime(e))
            if manifest == nil {
                guard name == BundleManifest.entryName, type == S_IFREG, size > 0, size < 64 << 20 else {
                    throw fail("the first entry is \(name), not \(BundleManifest.entryName)")
                }
                var bytes: [UInt8] = []
                bytes.reserveCapacity(Int(size))
                while true {
                    let n = buf.withUnsafeMutableBytes { archive_read_data(a, $0.baseAddress, $0.count) }
                    if n < 0 { throw fail("reading \(name): \(archive_error_string(a).map { String(cString: $0) } ?? "error")") }
                    if n == 0 { break }
                    bytes += buf[0..<n]
                }
                guard Int64(bytes.count) == size else { throw fail("\(name) is \(bytes.count) bytes, its header says \(size)") }
                do {
                    let m = try JSONDecoder().decode(BundleManifest.self, from: Data(bytes))
                    guard m.format == BundleManifest.formatName else { throw fail("unknown format \(m.format)") }
                    guard Set(m.files.map(\.path)).count == m.files.count, (m.files.map(\.path) + m.folders).allSatisfy(Self.isSafe) else {
                        throw fail("\(BundleManifest.entryName) lists an unsafe or duplicate path")
                    }
                    manifest = m
                } catch let e as BundleError { throw e } catch {
                    throw fail("\(BundleManifest.entryName) cannot be read: \(error)")
                }
                continue
            }
            guard let m = manifest else { throw fail("no manifest") }
            switch type {
            case S_IFDIR:
                guard m.folders.contains(name) else { throw fail("folder \(name) is not listed in \(BundleManifest.entryName)") }
                try sink?(name, S_IFDIR, nil, mtime)
            case S_IFREG:
                guard let listed = m.files.first(where: { $0.path == name }) else { throw fail("\(name) is not listed in \(BundleManifest.entryName)") }
                guard size == listed.size else { throw fail("\(name) is \(size) bytes in its header, \(listed.size) in the manifest") }
                var hasher = SHA256()
                var total: Int64 = 0
                try sink?(name, S_IFREG, nil, mtime) // start of a file
                while true {
                    let n = buf.withUnsafeMutableBytes { archive_read_data(a, $0.baseAddress, $0.count) }
                    if n < 0 { throw fail("reading \(name): \(archive_error_string(a).map { String(cString: $0) } ?? "error")") }
                    if n == 0 { break }
                    total += Int64(n)
                    guard total <= listed.size else { throw fail("\(name) holds more bytes than its manifest says") }
                    try buf.withUnsafeBytes { raw in
                        let chunk = UnsafeRawBufferPointer(rebasing: raw[..<n])
                        hasher.update(bufferPointer: chunk)
                        try sink?(name, S_IFREG, chunk, mtime)
                    }
                }
                guard total == listed.size else { throw fail("\(name) holds \(total) bytes, its manifest says \(listed.size)") }
                guard hexString(Array(hasher.finalize())) == listed.sha256 else { throw fail("\(name): SHA-256 differs from the manifest") }
            default:
                throw fail("\(name) is not a folder or a regular file (a link, device or FIFO)")
            }
        }
        // libarchive clears a read error met while it looks for the tar's end blocks: an
        // age chunk that failed there must not pass. Then every chunk left is authenticated.
        if let e = source.error { throw BundleError.damaged(reason: String(describing: e)) }
        do { while try source.next() != nil {} } catch { throw BundleError.damaged(reason: String(describing: error)) }
        guard let m = manifest else { throw fail("empty or truncated: no \(BundleManifest.entryName)") }
        let missing = Set(m.files.map(\.path) + m.folders).subtracting(seen)
        guard missing.isEmpty else { throw fail("missing from the bundle: \(missing.sorted().prefix(5).joined(separator: ", "))") }
        if let fileDigest {
            do { let (hex, size) = try disk.digest(); fileDigest(hex, size) } catch { throw BundleError.archive(reason: String(describing: error)) }
        }
        return m
    }

    /// Whether `path` starts as an age v1 file does.
    public static func isEncrypted(path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        let head = (try? h.read(upToCount: Age.intro.utf8.count + 1)) ?? Data()
        return Array(head) == Array((Age.intro + "\n").utf8)
    }

    /// A relative path inside the bundle: not empty, not absolute, no `.`/`..` component,
    /// no NUL.
    static func isSafe(_ p: String) -> Bool {
        guard !p.isEmpty, !p.hasPrefix("/"), !p.utf8.contains(0) else { return false }
        return !p.split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }

    // MARK: - Extracting

    /// Extracts the bundle into `target`, which must not exist: into a staging folder
    /// beside it, renamed to `target` only when every entry checked. Any damaged or
    /// hostile entry leaves neither behind.
    public static func extract(path: String, to target: String, identities: [Age.Identity] = []) throws -> BundleManifest {
        var st = stat()
        guard lstat(target, &st) != 0 else { throw BundleError.source(path: target, reason: "exists: extract never writes over anything") }
        let prefix = "." + PathName.name(target) + ".extract-"
        // A staging folder of an extract that was killed (its process is gone) goes first.
        for n in (try? FileManager.default.contentsOfDirectory(atPath: PathName.parent(target))) ?? [] where n.hasPrefix(prefix) {
            if let pid = Int32(n.dropFirst(prefix.count)), kill(pid, 0) != 0, errno == ESRCH {
                try? FileManager.default.removeItem(atPath: PathName.parent(target) + "/" + n)
            }
        }
        let staging = PathName.parent(target) + "/" + prefix + "\(getpid())"
        guard mkdir(staging, 0o700) == 0 else { throw BundleError.source(path: staging, reason: "cannot be created: \(String(cString: strerror(errno)))") }
        var done = false
        defer { if !done { try? FileManager.default.removeItem(atPath: staging) } }
        var current: Int32 = -1
        var currentTime: Int64 = 0
        defer { if current >= 0 { close(current) } }
        var folderTimes: [(String, Int64)] = []
        // A file is done: its bytes on the disk, its time the bundle's.
        func finishCurrent() throws {
            guard current >= 0 else { return }
            let times = [timespec(tv_sec: time_t(currentTime), tv_nsec: 0), timespec(tv_sec: time_t(currentTime), tv_nsec: 0)]
            guard futimens(current, times) == 0, fsync(current) == 0 else {
                throw BundleError.archive(reason: "fsync in \(staging): \(String(cString: strerror(errno)))")
            }
            close(current)
            current = -1
        }
        let manifest = try read(path: path, identities: identities) { name, kind, chunk, mtime in
            let out = staging + "/" + name
            if kind == S_IFDIR {
                guard mkdir(out, 0o700) == 0 || errno == EEXIST else { throw BundleError.archive(reason: "mkdir \(out): \(String(cString: strerror(errno)))") }
                folderTimes.append((out, mtime))
                return
            }
            guard let chunk else {
                // A new file: its folder first (a folder entry may be absent for a parent).
                try finishCurrent()
                try AtomicFile.makeDirectory(PathName.parent(out))
                current = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                guard current >= 0 else { throw BundleError.damaged(reason: "\(name) cannot be created in the staging folder: \(String(cString: strerror(errno)))") }
                currentTime = mtime
                return
            }
            var off = 0
            while off < chunk.count {
                let n = writeSome(current, chunk, from: off)
                guard n > 0 else { throw BundleError.archive(reason: "write \(out): \(String(cString: strerror(errno)))") }
                off += n
            }
        }
        try finishCurrent()
        // Folder times last, deepest first (writing into a folder changes its time).
        for (folder, mtime) in folderTimes.sorted(by: { $0.0.count > $1.0.count }) {
            let times = [timespec(tv_sec: time_t(mtime), tv_nsec: 0), timespec(tv_sec: time_t(mtime), tv_nsec: 0)]
            _ = utimensat(AT_FDCWD, folder, times, AT_SYMLINK_NOFOLLOW)
        }
        // Still nothing at the target (rename would replace an empty folder made meanwhile).
        guard lstat(target, &st) != 0 else { throw BundleError.source(path: target, reason: "exists: extract never writes over anything") }
        guard rename(staging, target) == 0 else { throw BundleError.source(path: target, reason: "cannot be created: \(String(cString: strerror(errno)))") }
        done = true
        try? AtomicFile.syncDirectory(PathName.parent(target))
        return manifest
    }
}

/// libarchive's write callback, handing each block to a Swift closure.
final class WriteSink {
    let body: (UnsafeRawBufferPointer) throws -> Void
    var error: (any Error)?
    init(_ body: @escaping (UnsafeRawBufferPointer) throws -> Void) { self.body = body }

    static let callback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> Int = { _, context, buffer, length in
        guard let context else { return -1 }
        let sink = Unmanaged<WriteSink>.fromOpaque(context).takeUnretainedValue()
        do {
            try sink.body(UnsafeRawBufferPointer(start: buffer, count: length))
            return length
        } catch {
            sink.error = error
            return -1
        }
    }
}

/// libarchive's read callback, taking each block from a Swift closure (`nil`: the end).
final class ReadSource {
    let next: () throws -> [UInt8]?
    var error: (any Error)?
    /// The block handed to libarchive, alive until the next call.
    var current = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 17, alignment: 16)
    init(_ next: @escaping () throws -> [UInt8]?) { self.next = next }
    deinit { current.deallocate() }

    static let callback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int = { _, context, out in
        guard let context, let out else { return -1 }
        let source = Unmanaged<ReadSource>.fromOpaque(context).takeUnretainedValue()
        do {
            guard let chunk = try source.next(), !chunk.isEmpty else { return 0 }
            if chunk.count > source.current.count {
                source.current.deallocate()
                source.current = .allocate(byteCount: chunk.count, alignment: 16)
            }
            chunk.withUnsafeBytes { source.current.copyMemory(from: $0) }
            out.pointee = UnsafeRawPointer(source.current.baseAddress)
            return chunk.count
        } catch {
            source.error = error
            return -1
        }
    }
}
