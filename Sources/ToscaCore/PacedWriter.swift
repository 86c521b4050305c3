import CLinux
import Crypto
import Foundation

/// Writes a large file so that a recorder's fsync on the same disk does not wait behind it.
///
/// What a recorder's commit waits for on ext4 (measured with `tosca-bench bundle`): block
/// allocation and dirty pages of the big file, both carried by the journal commit its
/// fsync forces. So the file's blocks are allocated up front (`fallocate` of
/// `expectedBytes`, trimmed to the written size at the end), and the bytes go to the disk
/// in 256 KiB direct writes (`O_DIRECT`) one at a time: no dirty pages, and never more than
/// one of our requests queued ahead of the recorder's. Where the filesystem refuses
/// direct I/O, each 256 KiB is written through the page cache, pushed to the disk and waited
/// for (`sync_file_range`), then dropped from the cache.
public final class PacedWriter {
    public static let step = 256 << 10
    let fd: Int32
    let path: String
    let step: Int
    /// One request's worth, aligned for direct I/O.
    let buffer: UnsafeMutableRawBufferPointer
    var filled = 0
    /// Bytes written to the file so far.
    public private(set) var offset: Int64 = 0
    /// Whether `O_DIRECT` is in use (false after the filesystem refused it).
    public private(set) var direct: Bool
    let preallocated: Bool

    /// `expectedBytes`: an upper estimate of the file's size, allocated at once (0: none;
    /// a refusal, e.g. a nearly full disk, only means no preallocation). `allowDirect`
    /// false takes the page-cache path (what a filesystem without direct I/O gets).
    public init(fd: Int32, path: String, expectedBytes: Int64 = 0, step: Int = PacedWriter.step, allowDirect: Bool = true) {
        self.fd = fd
        self.path = path
        self.step = step
        buffer = .allocate(byteCount: step, alignment: 4096)
        preallocated = expectedBytes > 0 && tosca_preallocate(fd, expectedBytes) == 0
        direct = allowDirect && tosca_set_direct_io(fd, 1) == 0
    }

    deinit { buffer.deallocate() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var off = 0
        while off < bytes.count {
            let n = min(step - filled, bytes.count - off)
            (buffer.baseAddress! + filled).copyMemory(from: base + off, byteCount: n)
            filled += n
            off += n
            if filled == step { try flushBuffer() }
        }
    }

    /// Writes what is still buffered, trims the preallocation to the written size and
    /// pushes everything to the disk. The caller fsyncs afterwards.
    public func finish() throws {
        if filled > 0 {
            // The tail is shorter than a direct write may be.
            if direct { _ = tosca_set_direct_io(fd, 0); direct = false }
            try flushBuffer()
        }
        if preallocated, ftruncate(fd, off_t(offset)) != 0 { throw POSIXFailure(operation: "truncate \(path)", code: errno) }
    }

    func flushBuffer() throws {
        let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<filled])
        var done = 0
        while done < chunk.count {
            let n = pwrite(fd, chunk.baseAddress! + done, chunk.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                // A filesystem that takes O_DIRECT at fcntl but not at write time.
                if errno == EINVAL, direct { _ = tosca_set_direct_io(fd, 0); direct = false; continue }
                throw POSIXFailure(operation: "write \(path)", code: errno)
            }
            done += n
        }
        if !direct {
            if tosca_write_range_and_wait(fd, offset, Int64(filled)) != 0 { throw POSIXFailure(operation: "write back \(path)", code: errno) }
            _ = posix_fadvise(fd, off_t(offset), off_t(filled), Int32(POSIX_FADV_DONTNEED))
        }
        offset += Int64(filled)
        filled = 0
    }
}

/// Reads a file and takes its SHA-256 on the way. Gently (the default): from the disk, not
/// from the page cache, in 256 KiB direct reads one at a time (`O_DIRECT`; where the
/// filesystem refuses it, the file's cached pages are dropped first and it is read through
/// the cache).
///
/// Measured on the recorder's commits while a session folder was read at full speed from
/// a cold cache (pooled p99 against the recorder alone): 1 MiB direct reads 4.7x, 256 KiB
/// page-cache reads without read-ahead 3.5x, 256 KiB direct reads 1.6x. A commit's flush
/// waits for the one request of ours in flight, so the request is kept small.
public final class DiskReader {
    public static let step = 256 << 10
    let fd: Int32
    public let path: String
    let buffer: UnsafeMutableRawBufferPointer
    var direct: Bool
    var hasher = SHA256()
    /// Bytes read so far.
    public private(set) var offset: Int64 = 0
    var ended = false

    /// `noFollow`: a symbolic link at `path` is refused (ELOOP). `gently` false: read
    /// through the page cache with read-ahead in 1 MiB reads, nothing dropped (what a run
    /// with no recorder to protect uses, so a second pass finds the pages cached).
    public init(path: String, gently: Bool = true, allowDirect: Bool = true, noFollow: Bool = false) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC | (noFollow ? O_NOFOLLOW : 0))
        guard fd >= 0 else { throw POSIXFailure(operation: "open \(path)", code: errno) }
        self.path = path
        buffer = .allocate(byteCount: gently ? DiskReader.step : 1 << 20, alignment: 4096)
        direct = gently && allowDirect && tosca_set_direct_io(fd, 1) == 0
        if gently && !direct { _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED)) }
        if !gently { _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL)) }
    }

    deinit { buffer.deallocate(); close(fd) }

    /// The next bytes (valid until the next call), or nil at the end.
    public func next() throws -> UnsafeRawBufferPointer? {
        guard !ended else { return nil }
        while true {
            let n = pread(fd, buffer.baseAddress, buffer.count, off_t(offset))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL, direct { _ = tosca_set_direct_io(fd, 0); direct = false; _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED)); continue }
                throw POSIXFailure(operation: "read \(path)", code: errno)
            }
            if n == 0 { ended = true; return nil }
            // A short direct read is the end of the file; what may follow is read through
            // the cache (a direct read from an unaligned offset is refused).
            if direct, n < buffer.count { _ = tosca_set_direct_io(fd, 0); direct = false }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(bufferPointer: chunk)
            offset += Int64(n)
            return chunk
        }
    }

    /// Reads to the end and returns the SHA-256 (hex) and size of everything read.
    public func digest() throws -> (hex: String, size: Int64) {
        while try next() != nil {}
        return (hexString(hasher.finalize()), offset)
    }
}
