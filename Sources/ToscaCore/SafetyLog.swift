import Foundation

/// Severity of a safety-log entry (ARCHITECTURE §3).
public enum Severity: String, Sendable, CaseIterable, Codable {
    case info, warning, critical, emergency
}

/// One safety-log entry to append. `log_id`, `seq`, `prev_hash` and `row_hash` are
/// assigned by ``SafetyChain/append(_:to:)``.
public struct SafetyLogEntry: Sendable {
    public var timestamp: UTCTime
    public var sessionID: Int64?
    public var techID: Int64?
    public var eventType: String
    public var severity: Severity
    public var description: String
    public var systemState: String?
    public var laserState: String?
    public var footpedalState: Bool?
    public var smoothingDeviceState: Bool?
    public var photodiodeVoltage: Double?
    public var actionTaken: String?
    /// JSON text.
    public var details: String?

    public init(timestamp: UTCTime = .now(), sessionID: Int64? = nil, techID: Int64? = nil,
                eventType: String, severity: Severity, description: String,
                systemState: String? = nil, laserState: String? = nil, footpedalState: Bool? = nil,
                smoothingDeviceState: Bool? = nil, photodiodeVoltage: Double? = nil,
                actionTaken: String? = nil, details: String? = nil) {
        self.timestamp = timestamp
        self.sessionID = sessionID
        self.techID = techID
        self.eventType = eventType
        self.severity = severity
        self.description = description
        self.systemState = systemState
        self.laserState = laserState
        self.footpedalState = footpedalState
        self.smoothingDeviceState = smoothingDeviceState
        self.photodiodeVoltage = photodiodeVoltage
        self.actionTaken = actionTaken
        self.details = details
    }
}

/// The head of a verified chain: the last row's `seq` and `row_hash` (hex).
public struct ChainHead: Sendable, Equatable, Codable, CustomStringConvertible {
    public let seq: Int64
    public let hash: String
    public init(seq: Int64, hash: String) { self.seq = seq; self.hash = hash }
    public var description: String { "seq \(seq) hash \(hash)" }
}

/// The first row at which a chain breaks, and why.
public struct ChainBreak: Sendable, Equatable, CustomStringConvertible {
    /// The `seq` where the walk stopped (the expected one when a row is missing).
    public let seq: Int64?
    /// The `log_id` of the offending row, when there is one.
    public let logID: Int64?
    public let reason: String
    public var description: String {
        "safety_log breaks at seq \(seq.map(String.init) ?? "?")" + (logID.map { " (log_id \($0))" } ?? "") + ": \(reason)"
    }
}

/// Result of walking the chain from seq 1.
public enum ChainVerification: Sendable, Equatable {
    /// Every row verifies; `head` is `nil` for an empty log.
    case intact(head: ChainHead?, rows: Int)
    case broken(ChainBreak)

    public var head: ChainHead? { if case .intact(let h, _) = self { return h } else { return nil } }
    public var isIntact: Bool { if case .intact = self { return true } else { return false } }
}

/// The tamper-evident safety log of ARCHITECTURE D7.
///
/// `row_hash = SHA-256(encoding)`; the encoding is the format byte, `prev_hash` (32 zero
/// bytes for seq 1), then each of ``hashedColumns`` as a type tag (0 NULL, 1 INTEGER as
/// 8-byte big-endian, 2 REAL as 8-byte big-endian IEEE-754 bits, 3 TEXT, 4 BLOB), TEXT and
/// BLOB followed by a 4-byte big-endian length and the bytes. Values are taken as SQLite
/// stores them (`sqlite3_column_type`).
public enum SafetyChain {
    /// The encoding's format byte for rows written with ``hashedColumns``.
    public static let formatByte: UInt8 = 1

    /// Every column of `safety_log` but `prev_hash` and `row_hash`, in schema order.
    /// A migration that adds a column must bump ``formatByte`` for rows written after it.
    public static let hashedColumns = [
        "log_id", "timestamp", "session_id", "tech_id", "event_type", "severity", "description",
        "system_state", "laser_state", "footpedal_state", "smoothing_device_state",
        "photodiode_voltage_v", "action_taken", "details", "seq",
    ]

    static let zeroHash = [UInt8](repeating: 0, count: 32)

    /// A value as the encoding sees it: TEXT as the stored bytes, so that a row holding
    /// invalid UTF-8 hashes what is on disk, not a repaired string.
    public enum ChainValue: Sendable, Equatable {
        case null, integer(Int64), real(Double), text([UInt8]), blob([UInt8])
        public init(_ v: SQLValue) {
            switch v {
            case .null: self = .null
            case .integer(let i): self = .integer(i)
            case .real(let d): self = .real(d)
            case .text(let s): self = .text(Array(s.utf8))
            case .blob(let b): self = .blob(b)
            }
        }
    }

    /// The bytes that are hashed for one row.
    public static func encode(prevHash: [UInt8], values: [SQLValue]) -> [UInt8] {
        encode(prevHash: prevHash, chainValues: values.map(ChainValue.init))
    }

    /// The bytes that are hashed for one row.
    public static func encode(prevHash: [UInt8], chainValues values: [ChainValue]) -> [UInt8] {
        var out: [UInt8] = [formatByte]
        out.reserveCapacity(256)
        out += prevHash
        func be64(_ v: UInt64) { for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) } }
        func be32(_ v: Int) { for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> shift)) } }
        for value in values {
            switch value {
            case .null: out.append(0)
            case .integer(let v): out.append(1); be64(UInt64(bitPattern: v))
            case .real(let v): out.append(2); be64(v.bitPattern)
            case .text(let b): out.append(3); be32(b.count); out += b
            case .blob(let b): out.append(4); be32(b.count); out += b
            }
        }
        return out
    }

    /// `row_hash` for one row.
    public static func rowHash(prevHash: [UInt8], values: [SQLValue]) -> [UInt8] {
        sha256(encode(prevHash: prevHash, values: values))
    }

    static func rowHash(prevHash: [UInt8], chainValues: [ChainValue]) -> [UInt8] {
        sha256(encode(prevHash: prevHash, chainValues: chainValues))
    }

    /// Column `i` of the current row as the encoding sees it.
    static func chainValue(_ stmt: Statement, _ i: Int32) -> ChainValue {
        switch stmt.column(i) {
        case .text: return .text(stmt.rawText(i))
        case let v: return ChainValue(v)
        }
    }

    static var selectHashed: String {
        hashedColumns.map(quoteIdentifier).joined(separator: ", ")
    }

    /// Checks that `safety_log` has exactly the columns format 1 covers.
    static func checkColumns(_ db: Database) throws -> String? {
        let cols = try db.columnNames(of: "safety_log").filter { $0 != "prev_hash" && $0 != "row_hash" }
        if cols != hashedColumns {
            return "safety_log columns \(cols) differ from the chain format \(formatByte) columns \(hashedColumns)"
        }
        return nil
    }

    /// Walks `safety_log` from seq 1. With `anchor` (a head recorded earlier, e.g. in a
    /// manifest or the journal) the chain must also reach that head unchanged.
    public static func verify(_ db: Database, anchor: ChainHead? = nil) throws -> ChainVerification {
        if let problem = try checkColumns(db) { return .broken(ChainBreak(seq: nil, logID: nil, reason: problem)) }
        // Unsealed rows (all three chain columns NULL, admitted since migration 0007) are not
        // part of the chain yet: ``unsealed(_:)`` reports them.
        let skip = try admitsUnsealedRows(db) ? "WHERE NOT \(unsealedCondition) " : ""
        let stmt = try db.prepare("SELECT \(selectHashed), prev_hash, row_hash FROM safety_log \(skip)ORDER BY seq IS NOT NULL, seq, log_id")
        try stmt.bind([])
        defer { stmt.reset() }
        let n = Int32(hashedColumns.count)
        let seqIndex = n - 1
        var expected: Int64 = 1
        var prev = zeroHash
        var anchorSeen = false
        while try stmt.step() {
            var values: [ChainValue] = []
            values.reserveCapacity(Int(n))
            for i in 0..<n { values.append(chainValue(stmt, i)) }
            let logID: Int64? = { if case .integer(let v) = values[0] { return v } else { return nil } }()
            guard case .integer(let seq) = values[Int(seqIndex)] else {
                return .broken(ChainBreak(seq: nil, logID: logID, reason: "row has no chain position (seq is NULL): inserted outside the chain"))
            }
            if seq > expected {
                return .broken(ChainBreak(seq: expected, logID: logID,
                                          reason: "seq \(expected)\(seq - 1 > expected ? "...\(seq - 1)" : "") missing before seq \(seq): rows deleted"))
            }
            if seq < expected {
                return .broken(ChainBreak(seq: seq, logID: logID, reason: "seq \(seq) appears more than once: row inserted"))
            }
            guard case .blob(let storedPrev) = stmt.column(n), storedPrev == prev else {
                return .broken(ChainBreak(seq: seq, logID: logID,
                                          reason: "prev_hash does not match the row_hash of seq \(seq - 1): rows inserted, deleted or reordered"))
            }
            let computed = rowHash(prevHash: prev, chainValues: values)
            guard case .blob(let stored) = stmt.column(n + 1), stored == computed else {
                return .broken(ChainBreak(seq: seq, logID: logID, reason: "row_hash does not match the row's contents: row edited, or its hash forged wrongly"))
            }
            if let anchor, anchor.seq == seq {
                anchorSeen = true
                if hexString(computed) != anchor.hash {
                    return .broken(ChainBreak(seq: seq, logID: logID, reason: "row differs from the anchored head \(anchor): history rewritten"))
                }
            }
            prev = computed
            expected += 1
        }
        if let anchor, !anchorSeen, anchor.seq > 0 {
            return .broken(ChainBreak(seq: expected, logID: nil,
                                      reason: "chain ends at seq \(expected - 1), below the anchored head seq \(anchor.seq): rows cut off"))
        }
        let head = expected > 1 ? ChainHead(seq: expected - 1, hash: hexString(prev)) : nil
        return .intact(head: head, rows: Int(expected - 1))
    }

    /// Rows kept unsealed: inserted without chain columns (migration 0007).
    static let unsealedCondition = "(seq IS NULL AND prev_hash IS NULL AND row_hash IS NULL)"

    /// The migration from which rows may arrive unsealed.
    public static let unsealedRowsMigration = "0007_safety_log_unsealed_rows"

    /// Whether this database admits unsealed rows (migration 0007 applied, as recorded in
    /// `schema_migrations`; a trigger name alone proves nothing).
    public static func admitsUnsealedRows(_ db: Database) throws -> Bool {
        guard try db.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'") != nil else { return false }
        return try db.scalar("SELECT 1 FROM schema_migrations WHERE migration_id = ?", [.text(unsealedRowsMigration)]) != nil
    }

    /// Unsealed rows: how many, and the `timestamp` text of the oldest (as its writer
    /// stored it: TOSCA v0.9.12 writes local time, see `legacy_datetime_utc_offset`).
    public static func unsealed(_ db: Database) throws -> (count: Int, oldest: String?) {
        guard try admitsUnsealedRows(db) else { return (0, nil) }
        let row = try db.rows("SELECT count(*), (SELECT timestamp FROM safety_log WHERE \(unsealedCondition) ORDER BY log_id LIMIT 1) FROM safety_log WHERE \(unsealedCondition)").first
        return (row?[0].int ?? 0, row?[1].string)
    }

    /// Seals every unsealed row in place, in arrival order (`log_id`): each gets the next
    /// `seq`, the previous `row_hash` and its own hash, exactly as ``append(_:to:)`` would
    /// have written them. Run it inside a write transaction. Returns how many were sealed.
    @discardableResult
    public static func sealPending(_ db: Database) throws -> Int {
        guard try admitsUnsealedRows(db) else { return 0 }
        let select = try db.prepare("SELECT \(selectHashed) FROM safety_log WHERE \(unsealedCondition) ORDER BY log_id")
        try select.bind([])
        var rows: [[ChainValue]] = []
        let n = Int32(hashedColumns.count)
        while try select.step() { rows.append((0..<n).map { chainValue(select, $0) }) }
        select.reset()
        guard !rows.isEmpty else { return 0 }
        let last = try db.rows("SELECT seq, row_hash FROM safety_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1").first
        var seq = last?[0].int64 ?? 0
        var prev = last?[1].bytes ?? zeroHash
        let update = try db.prepare("UPDATE safety_log SET seq = ?, prev_hash = ?, row_hash = ? WHERE log_id = ?")
        for var row in rows {
            guard case .integer(let logID) = row[0] else { throw SQLiteError(code: 1, message: "safety_log row without log_id") }
            seq += 1
            row[Int(n) - 1] = .integer(seq)
            let hash = rowHash(prevHash: prev, chainValues: row)
            try update.execute([.integer(seq), .blob(prev), .blob(hash), .integer(logID)])
            prev = hash
        }
        return rows.count
    }

    /// The current head without verifying (last row by seq).
    public static func head(_ db: Database) throws -> ChainHead? {
        guard let row = try db.rows("SELECT seq, row_hash FROM safety_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1").first,
              let seq = row[0].int64, let hash = row[1].bytes else { return nil }
        return ChainHead(seq: seq, hash: hexString(hash))
    }

    /// Appends one entry after the current head. Run it inside a write transaction
    /// (`BEGIN IMMEDIATE`) so that no other writer moves the head in between.
    @discardableResult
    public static func append(_ entry: SafetyLogEntry, to db: Database) throws -> ChainHead {
        // Rows another writer inserted unsealed arrived first: they are sealed first. A row
        // that cannot be sealed (a database edited past its triggers) must not stop this
        // safety event: it stays unsealed, reported by verify --live and status.
        _ = try? sealPending(db)
        let last = try db.rows("SELECT seq, row_hash FROM safety_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1").first
        let seq = (last?[0].int64 ?? 0) + 1
        let prev = last?[1].bytes ?? zeroHash
        let logID = (try db.scalar("SELECT COALESCE(MAX(log_id), 0) + 1 FROM safety_log")?.int64) ?? 1
        // SQLite stores NaN as NULL and -0.0 as 0.0: store what it will keep, and keep a
        // non-finite reading (a disconnected sensor) in `details` so it is not lost.
        var entry = entry
        if let v = entry.photodiodeVoltage {
            if !v.isFinite {
                entry.photodiodeVoltage = nil
                entry.details = mergeDetail(entry.details, key: "photodiode_voltage_v_raw", value: String(describing: v))
            } else if v == 0 {
                entry.photodiodeVoltage = 0.0
            }
        }
        // Values exactly as SQLite will store them in these columns (see the read-back below).
        let values: [SQLValue] = [
            .integer(logID), .text(entry.timestamp.sqlDateTime), entry.sessionID.sqlValue, entry.techID.sqlValue,
            .text(entry.eventType), .text(entry.severity.rawValue), .text(entry.description),
            entry.systemState.sqlValue, entry.laserState.sqlValue, entry.footpedalState.sqlValue,
            entry.smoothingDeviceState.sqlValue, entry.photodiodeVoltage.sqlValue, entry.actionTaken.sqlValue,
            entry.details.sqlValue, .integer(seq),
        ]
        let hash = rowHash(prevHash: prev, values: values)
        let placeholders = Array(repeating: "?", count: hashedColumns.count + 2).joined(separator: ", ")
        try db.execute("INSERT INTO safety_log (\(selectHashed), prev_hash, row_hash) VALUES (\(placeholders))",
                       values + [.blob(prev), .blob(hash)])
        // Read back: the stored values must hash to what we wrote (type affinity never
        // changes a value we bind, but a chain that would not verify must never be written).
        let stored = try db.prepare("SELECT \(selectHashed) FROM safety_log WHERE log_id = ?")
        try stored.bind([.integer(logID)])
        defer { stored.reset() }
        guard try stored.step() else { throw SQLiteError(code: 1, message: "safety_log row \(logID) vanished after insert") }
        let readBack = (0..<Int32(hashedColumns.count)).map { chainValue(stored, $0) }
        guard rowHash(prevHash: prev, chainValues: readBack) == hash else {
            throw SQLiteError(code: 1, message: "safety_log row \(logID) would not verify after storage; not written")
        }
        return ChainHead(seq: seq, hash: hexString(hash))
    }

    /// Adds `"key":"value"` to a JSON object text (or makes one).
    static func mergeDetail(_ details: String?, key: String, value: String) -> String {
        let pair = "\"\(key)\":\"\(value)\""
        guard let d = details?.trimmingCharacters(in: .whitespaces), d.hasPrefix("{") else {
            return details.map { "{\(pair),\"details\":\(jsonQuoted($0))}" } ?? "{\(pair)}"
        }
        let rest = d.dropFirst().trimmingCharacters(in: .whitespaces)
        return rest.hasPrefix("}") ? "{\(pair)}" : "{\(pair)," + rest
    }

    static func jsonQuoted(_ s: String) -> String {
        String(decoding: SampleStream.jsonString(s), as: UTF8.self)
    }

    /// Migration step: gives every existing row, in `log_id` order, its `seq`,
    /// `prev_hash` and `row_hash`.
    static func backfill(_ db: Database) throws {
        let cols = hashedColumns.filter { $0 != "seq" }
        let select = try db.prepare("SELECT \(cols.map(quoteIdentifier).joined(separator: ", ")) FROM safety_log ORDER BY log_id")
        try select.bind([])
        var rows: [[ChainValue]] = []
        while try select.step() { rows.append((0..<Int32(cols.count)).map { chainValue(select, $0) }) }
        select.reset()
        let update = try db.prepare("UPDATE safety_log SET seq = ?, prev_hash = ?, row_hash = ? WHERE log_id = ?")
        var prev = zeroHash
        for (i, row) in rows.enumerated() {
            let seq = Int64(i + 1)
            let hash = rowHash(prevHash: prev, chainValues: row + [.integer(seq)])
            guard case .integer(let logID) = row[0] else { throw SQLiteError(code: 1, message: "safety_log row without log_id") }
            try update.execute([.integer(seq), .blob(prev), .blob(hash), .integer(logID)])
            prev = hash
        }
    }
}
