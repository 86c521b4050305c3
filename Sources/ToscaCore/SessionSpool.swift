import Foundation

/// `<data>/spool/ended/<session_id>`: one marker per finished session that has not left
/// the device's disk yet. The recorder drops it atomically (D4) right after a session's
/// ending is committed; `tosca-maint protect` (started by `tosca-maint-session.path`)
/// removes it once the session's bundle, a backup holding its rows and, where an export
/// repository is configured, a verified export holding both exist.
public enum SessionSpool {
    /// What a marker says: which session ended, how and when.
    public struct Marker: Codable, Sendable, Equatable {
        public var sessionID: Int64
        public var status: String
        public var endedUTC: String
        enum CodingKeys: String, CodingKey { case sessionID = "session_id", status, endedUTC = "ended_utc" }
        public init(sessionID: Int64, status: String, endedUTC: String) {
            self.sessionID = sessionID
            self.status = status
            self.endedUTC = endedUTC
        }
    }

    public static func spool(_ dataDirectory: String) -> String { dataDirectory + "/spool" }
    public static func ended(_ dataDirectory: String) -> String { spool(dataDirectory) + "/ended" }

    /// Marker names are session ids: 1 to 19 digits, no leading zero.
    public static func sessionID(ofMarker name: String) -> Int64? {
        guard (1...19).contains(name.utf8.count), name.utf8.allSatisfy({ (48...57).contains($0) }), name.first != "0" else { return nil }
        return Int64(name)
    }

    /// A marker being written by `AtomicFile` (`.<id>.<pid>.tmp`): the id and the writer.
    public static func temporary(_ name: String) -> (sessionID: Int64, pid: Int32)? {
        guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return nil }
        let parts = name.dropFirst().dropLast(4).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let id = sessionID(ofMarker: String(parts[0])), let pid = Int32(parts[1]), pid > 0 else { return nil }
        return (id, pid)
    }

    /// The names in `directory` as their bytes (readdir(3)): a name that is not valid
    /// UTF-8 is listed too (Foundation's listing leaves such names out), without `.`/`..`.
    public static func rawNames(_ directory: String) throws -> [[UInt8]] {
        guard let dir = opendir(directory) else { throw POSIXFailure(operation: "open folder \(directory)", code: errno) }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw POSIXFailure(operation: "read folder \(directory)", code: errno) }
                break
            }
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes == [46] || bytes == [46, 46] { continue }
            names.append(bytes)
        }
        return names
    }

    /// Drops the marker of a session that has just ended (its ending is committed). The
    /// layout folders are never followed through links.
    public static func markEnded(dataDirectory: String, sessionID: Int64, status: String, at end: UTCTime) throws {
        try LayoutFolder.make(spool(dataDirectory))
        try LayoutFolder.make(ended(dataDirectory))
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let bytes = Array(try enc.encode(Marker(sessionID: sessionID, status: status, endedUTC: end.iso8601))) + [10]
        try AtomicFile.write(bytes, to: ended(dataDirectory) + "/\(sessionID)")
    }
}
