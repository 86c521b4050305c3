import Foundation

/// Path arithmetic on plain strings, written here and tested (no NSString path API:
/// swift-corelibs-foundation 6.3.1 traps on a one-character component in
/// `deletingLastPathComponent`, and any path a user types can reach it).
///
/// The rules are POSIX `dirname`/`basename`: trailing slashes are ignored, a name without
/// a slash lives in `.`, and the parent of `/` is `/`.
public enum PathName {
    // Work on the UTF-8 bytes: '/' is 0x2F and never part of another character's encoding,
    // whereas a Character view would glue a combining mark onto a '/' before it.
    static let slash = UInt8(ascii: "/")

    /// The path without its trailing slashes (`/` stays `/`; `""` stays `""`).
    public static func trimmed(_ path: String) -> String {
        var u = Array(path.utf8)
        while u.count > 1 && u.last == slash { u.removeLast() }
        return String(decoding: u, as: UTF8.self)
    }

    /// The folder holding `path`: `a/b` → `a`, `b` → `.`, `/b` → `/`, `a/b/` → `a`, `/` → `/`.
    public static func parent(_ path: String) -> String {
        var u = Array(trimmed(path).utf8)
        if u.isEmpty { return "." }
        guard let i = u.lastIndex(of: slash) else { return "." }
        u.removeSubrange(i...)
        while u.count > 1 && u.last == slash { u.removeLast() }
        return u.isEmpty ? "/" : String(decoding: u, as: UTF8.self)
    }

    /// The last component: `a/b` → `b`, `a/b/` → `b`, `/` → `/`, `b` → `b`.
    public static func name(_ path: String) -> String {
        let t = trimmed(path)
        let u = Array(t.utf8)
        if t == "/" || u.isEmpty { return t }
        guard let i = u.lastIndex(of: slash) else { return t }
        return String(decoding: u[(i + 1)...], as: UTF8.self)
    }

    /// `folder/name`, with exactly one slash between them.
    public static func join(_ folder: String, _ name: String) -> String {
        if folder.isEmpty { return name }
        return folder.utf8.last == slash ? folder + name : folder + "/" + name
    }

    /// `path` with `.` components and repeated slashes removed, and `x/..` folded where `x`
    /// is a plain name (lexically: symlinks are not resolved). An empty result is `.`.
    public static func normalized(_ path: String) -> String {
        let absolute = path.utf8.first == slash
        var parts: [String] = []
        for c in path.utf8.split(separator: slash, omittingEmptySubsequences: true).map({ String(decoding: $0, as: UTF8.self) }) {
            if c == "." { continue }
            if c == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            if c == ".." && absolute && parts.isEmpty { continue }
            parts.append(c)
        }
        let body = parts.joined(separator: "/")
        if absolute { return "/" + body }
        return body.isEmpty ? "." : body
    }
}

/// A folder of the data-folder layout that is a symbolic link (or not a folder): refused,
/// since following it would let `prune` delete, or `backup` move, files outside the data
/// folder (exit 73).
public struct LayoutFolderError: Error, CustomStringConvertible, Sendable, Equatable {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path) \(reason): the data folder's layout folders are never followed through links" }
}

/// The folders of the data-folder layout (`backups/`, `backups/quarantine/`, `sessions/`,
/// `sessions/<subject>/`, `bundles/`, `exports/`) are used only when they are real folders.
public enum LayoutFolder {
    /// Whether `path` exists as a real folder (`false` when it does not exist); throws
    /// ``LayoutFolderError`` for a symbolic link or anything that is not a folder.
    @discardableResult
    public static func check(_ path: String) throws -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return false }
            throw POSIXFailure(operation: "inspect \(path)", code: errno)
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return true
        case S_IFLNK: throw LayoutFolderError(path: path, reason: "is a symbolic link")
        default: throw LayoutFolderError(path: path, reason: "is not a folder")
        }
    }

    /// Creates `path` (one level: its parent must exist) with `mode` unless it is already a
    /// real folder; refuses a symbolic link or a file in its place.
    public static func make(_ path: String, mode: mode_t = 0o700) throws {
        if try check(path) { return }
        if mkdir(path, mode) != 0 {
            let e = errno
            if e == EEXIST, try check(path) { return }
            throw POSIXFailure(operation: "create folder \(path)", code: e)
        }
    }
}
