import Crypto
import Foundation

/// The seal of a finished session: a chained `safety_log` entry (`session_sealed`) whose
/// details hold the SHA-256 of the session's `treatment_events` rows, of its `session.json`
/// and of each stream, as they were when the session ended.
///
/// The events part is checked against the database alone (backups, `verify --live`): an
/// event of a sealed session deleted or changed shows even when the append-only triggers
/// were dropped and put back, since the seal itself sits in the hash chain. The
/// `session.json` and stream part is for the session bundle to check, so a session folder
/// may later leave the device without failing any check.
///
/// Events encoding (format 1): for each row in `event_id` order, the D7 row encoding with
/// no `prev_hash`: the format byte 1, then every column of `treatment_events` in schema
/// order as a type tag and value; the digest is SHA-256 over those encodings in turn.
public enum SessionSeal {
    public static let eventType = "session_sealed"
    public static let format = "tosca-session-seal/1"

    /// What a seal's `details` hold.
    public struct Details: Codable, Sendable, Equatable {
        public var format: String
        public var eventCount: Int
        public var eventsSHA256: String
        /// `nil` when the session has no `session.json` (a folder lost before it was written).
        public var sessionJSONSHA256: String?
        /// Stream file (relative to the session folder) → SHA-256, as `session.json` records them.
        public var streams: [String: String]
        /// Sealed after the fact (a session that ended before seals existed, or before this
        /// run): the seal proves only what it saw then.
        public var backfill: Bool

        enum CodingKeys: String, CodingKey {
            case format, streams, backfill
            case eventCount = "event_count", eventsSHA256 = "events_sha256", sessionJSONSHA256 = "session_json_sha256"
        }
    }

    /// Digests of the events of every sealed session (or of `sessionID` only), in one pass.
    public static func eventDigests(_ db: Database, sessionID: Int64? = nil) throws -> [Int64: (count: Int, sha256: String)] {
        let columns = try db.columnNames(of: "treatment_events")
        guard let sessionIndex = columns.firstIndex(of: "session_id") else { return [:] }
        let list = columns.map(quoteIdentifier).joined(separator: ", ")
        let filter = sessionID == nil
            ? " WHERE session_id IN (SELECT session_id FROM safety_log WHERE event_type = '\(eventType)')"
            : " WHERE session_id = ?"
        let stmt = try db.prepare("SELECT \(list) FROM treatment_events\(filter) ORDER BY session_id, event_id")
        try stmt.bind(sessionID.map { [.integer($0)] } ?? [])
        defer { stmt.reset() }
        var out: [Int64: (count: Int, sha256: String)] = [:]
        var current: Int64? = nil
        var hasher = SHA256()
        var count = 0
        func close() {
            if let current { out[current] = (count, hexString(Array(hasher.finalize()))) }
        }
        let n = Int32(columns.count)
        var row: [UInt8] = []
        row.reserveCapacity(512)
        while try stmt.step() {
            guard case .integer(let sid) = stmt.column(Int32(sessionIndex)) else { continue }
            if sid != current {
                close()
                current = sid
                hasher = SHA256()
                count = 0
            }
            // The D7 row encoding without prev_hash: the format byte, then every column.
            row.removeAll(keepingCapacity: true)
            row.append(SafetyChain.formatByte)
            for i in 0..<n { stmt.appendEncoded(i, to: &row) }
            hasher.update(data: row)
            count += 1
        }
        close()
        return out
    }

    /// The digest of a session with no events.
    public static var emptyDigest: String { hexString(Array(SHA256().finalize())) }

    /// The seal entry for `sessionID`, whose folder is `folder` (absolute; `nil` when lost).
    public static func entry(_ db: Database, sessionID: Int64, techID: Int64?, folder: String?, backfill: Bool,
                             now: UTCTime = .now()) throws -> SafetyLogEntry {
        let events = try eventDigests(db, sessionID: sessionID)[sessionID] ?? (0, emptyDigest)
        var details = Details(format: format, eventCount: events.count, eventsSHA256: events.sha256, sessionJSONSHA256: nil,
                              streams: [:], backfill: backfill)
        if let folder, let bytes = FileManager.default.contents(atPath: folder + "/session.json") {
            details.sessionJSONSHA256 = sha256Hex(bytes)
            if let m = try? JSONDecoder().decode(SessionManifest.self, from: bytes) {
                for s in m.streams { details.streams[s.file] = s.sha256 }
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return SafetyLogEntry(timestamp: now, sessionID: sessionID, techID: techID, eventType: eventType, severity: .info,
                              description: "session \(sessionID) sealed: \(events.count) treatment event(s)\(backfill ? " (back-fill: proves only what it saw)" : "")",
                              details: String(decoding: try enc.encode(details), as: UTF8.self))
    }

    /// Seals every finished session (`completed`, `aborted`) that has no seal yet, as a
    /// back-fill. Run it inside a write transaction; returns the sessions sealed.
    @discardableResult
    public static func backfill(_ db: Database, dataDirectory: String) throws -> [Int64] {
        let rows = try db.rows("""
            SELECT session_id, session_folder_path FROM sessions
            WHERE status IN ('completed', 'aborted')
              AND session_id NOT IN (SELECT session_id FROM safety_log WHERE event_type = ? AND session_id IS NOT NULL)
            ORDER BY session_id
            """, [.text(eventType)])
        var sealed: [Int64] = []
        for r in rows {
            guard let id = r[0].int64 else { continue }
            let folder = r[1].string.flatMap { isSafeRelativeFolder($0) ? dataDirectory + "/" + $0 : nil }
            // No technician: the tool writes it, and legacy rows may name one that does not exist.
            try SafetyChain.append(try entry(db, sessionID: id, techID: nil, folder: folder, backfill: true), to: db)
            sealed.append(id)
        }
        return sealed
    }

    /// A session folder path as the `sessions` table holds it: relative, no `..`.
    static func isSafeRelativeFolder(_ p: String) -> Bool {
        !p.isEmpty && !p.hasPrefix("/") && !p.split(separator: "/").contains("..")
    }

    /// Sessions whose events no longer match their seal, worded for the admin (65).
    public static func problems(_ db: Database) throws -> [String] {
        let seals = try db.rows("SELECT session_id, details, seq FROM safety_log WHERE event_type = ? AND seq IS NOT NULL ORDER BY seq",
                                [.text(eventType)])
        guard !seals.isEmpty else { return [] }
        let digests = try eventDigests(db)
        var problems: [String] = []
        for s in seals {
            guard let id = s[0].int64 else { problems.append("seal at seq \(s[2].int64 ?? 0) names no session"); continue }
            guard let text = s[1].string, let d = try? JSONDecoder().decode(Details.self, from: Data(text.utf8)), d.format == format else {
                problems.append("the seal of session \(id) (seq \(s[2].int64 ?? 0)) cannot be read")
                continue
            }
            let now = digests[id] ?? (0, emptyDigest)
            if now.count != d.eventCount || now.sha256 != d.eventsSHA256 {
                problems.append("treatment events of session \(id) changed after it was sealed (seq \(s[2].int64 ?? 0)): \(now.count) event(s) now, \(d.eventCount) sealed\(now.count == d.eventCount ? ", contents differ" : "") (tampering)")
            }
        }
        return problems
    }
}
