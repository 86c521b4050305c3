import Foundation
import ToscaCore

/// What `tosca-maint inspect` reports about a data folder: read-only, without
/// `tosca.lock` (D5), so it runs beside a recording device.
public struct Inspection: Codable, Sendable {
    public struct SessionInfo: Codable, Sendable {
        public let sessionID: Int64
        public let subjectCode: String?
        public let status: String
        public let startTime: String
        public let endTime: String?
        public let treatmentEvents: Int
        public let folder: String?
        /// `session.json` present in the folder.
        public let sessionJSON: Bool
        enum CodingKeys: String, CodingKey {
            case status, folder
            case sessionID = "session_id", subjectCode = "subject_code", startTime = "start_time", endTime = "end_time"
            case treatmentEvents = "treatment_events", sessionJSON = "session_json"
        }
    }

    public let dataDir: String
    public let database: String
    public let sizeBytes: Int64
    public let encrypted: Bool
    public let keyID: String?
    public let sqlcipherVersion: String
    public let schema: String
    public let schemaVersion: Int
    public let pendingMigrations: [String]
    public let dataOrigin: String?
    public let quickCheck: [String]
    public let tables: [String: Int]
    public let sessionsByStatus: [String: Int]
    public let recentSessions: [SessionInfo]
    public let chainIntact: Bool
    public let chainHead: ChainHead?
    public let chainProblem: String?

    enum CodingKeys: String, CodingKey {
        case database, encrypted, schema, tables
        case dataDir = "data_dir", sizeBytes = "size_bytes", keyID = "key_id", sqlcipherVersion = "sqlcipher_version"
        case schemaVersion = "schema_version", pendingMigrations = "pending_migrations", dataOrigin = "data_origin"
        case quickCheck = "quick_check", sessionsByStatus = "sessions_by_status", recentSessions = "recent_sessions"
        case chainIntact = "chain_intact", chainHead = "chain_head", chainProblem = "chain_problem"
    }

    /// Healthy: `quick_check` ok and the chain verifies.
    public var isSound: Bool { quickCheck == ["ok"] && chainIntact }

    /// Reads everything from the folder's `tosca.db` over a read-only connection.
    public static func run(_ folder: DataFolder, recentLimit: Int = 10) throws -> Inspection {
        let key = folder.key
        let path = folder.database
        let db = try Database(path: path, options: .init(readOnly: true, key: key))
        let status = try Migrator().status(db)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)??.int64Value ?? 0
        try db.execute("BEGIN") // one snapshot for every read below
        defer { try? db.execute("COMMIT") }
        var tables: [String: Int] = [:]
        for t in try db.tableNames() { tables[t] = try db.scalar("SELECT count(*) FROM \(quoteIdentifier(t))")?.int ?? 0 }
        let names = Set(tables.keys)
        let origin = names.contains("system_config")
            ? try db.scalar("SELECT config_value FROM system_config WHERE config_key = 'data_origin'")?.string : nil
        var byStatus: [String: Int] = [:]
        for r in try db.rows("SELECT status, count(*) FROM sessions GROUP BY status") { byStatus[r[0].string ?? "?"] = r[1].int ?? 0 }
        let eventsExpr = names.contains("treatment_events") ? "(SELECT count(*) FROM treatment_events e WHERE e.session_id = s.session_id)" : "0"
        let recent = try db.rows("""
            SELECT s.session_id, sub.subject_code, s.status, s.start_time, s.end_time, \(eventsExpr), s.session_folder_path
            FROM sessions s LEFT JOIN subjects sub ON sub.subject_id = s.subject_id ORDER BY s.session_id DESC LIMIT ?
            """, [.integer(Int64(recentLimit))]).reversed().map { r in
            SessionInfo(sessionID: r[0].int64 ?? 0, subjectCode: r[1].string, status: r[2].string ?? "?", startTime: r[3].string ?? "",
                        endTime: r[4].string, treatmentEvents: r[5].int ?? 0, folder: r[6].string,
                        sessionJSON: r[6].string.map { FileManager.default.fileExists(atPath: folder.root + "/" + $0 + "/session.json") } ?? false)
        }
        var intact = false, head: ChainHead? = nil, problem: String? = nil
        if status.kind == .versioned {
            switch try SafetyChain.verify(db) {
            case .intact(let h, _): intact = true; head = h
            case .broken(let b): problem = b.description
            }
        } else {
            problem = "no hash chain yet (schema \(status.versionDescription))"
        }
        return Inspection(dataDir: folder.root, database: path, sizeBytes: size, encrypted: key != nil, keyID: key?.keyID,
                          sqlcipherVersion: try SQLCipherLibrary.checkVersion(), schema: status.versionDescription,
                          schemaVersion: status.version, pendingMigrations: status.pending.map(\.id), dataOrigin: origin,
                          quickCheck: try db.integrityCheck(quick: true), tables: tables, sessionsByStatus: byStatus,
                          recentSessions: Array(recent), chainIntact: intact, chainHead: head, chainProblem: problem)
    }

    /// Human-readable report.
    public var text: String {
        var out = """
            Database      \(database) (\(sizeBytes) bytes, \(encrypted ? "encrypted, key id \(keyID ?? "?")" : "plaintext"))
            SQLCipher     \(sqlcipherVersion)
            Schema        \(schema)\(pendingMigrations.isEmpty ? "" : "; pending: \(pendingMigrations.joined(separator: ", ")) (run `tosca-maint migrate up`)")
            Origin        \(dataOrigin ?? "not recorded")
            quick_check   \(quickCheck.prefix(5).joined(separator: "; "))
            Safety log    \(chainIntact ? "chain intact, \(chainHead.map { "head \($0)" } ?? "empty")" : "NOT VERIFIED: \(chainProblem ?? "?")")

            Tables
            """
        for (t, n) in tables.sorted(by: { $0.key < $1.key }) { out += "\n  \(t.padding(toLength: 20, withPad: " ", startingAt: 0)) \(n)" }
        out += "\n\nSessions      " + (sessionsByStatus.isEmpty ? "none" : sessionsByStatus.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        for s in recentSessions {
            out += "\n  #\(s.sessionID) \(s.subjectCode ?? "?") \(s.status) \(s.startTime) events=\(s.treatmentEvents) \(s.folder ?? "-")\(s.sessionJSON ? "" : " (no session.json)")"
        }
        return out + "\n"
    }
}
