import Foundation
import ToscaCore

/// What a restore would do, shown before it does it.
public struct RestorePlan: Codable, Sendable {
    public let copy: String
    public let copyPath: String
    public let copyKind: String
    public let copyCreatedUTC: String
    public let copyCreatedLocal: String
    public let target: String
    /// Sessions in the current database that the copy does not hold (nil: unreadable or absent).
    public let newerSessions: Int?
    /// Safety-log rows in the current database beyond the copy's head.
    public let newerSafetyLogRows: Int?
    public let currentDatabase: String
    public let copySchemaVersion: Int
    public let buildSchemaVersion: Int

    enum CodingKeys: String, CodingKey {
        case copy, target
        case copyPath = "copy_path", copyKind = "copy_kind", copyCreatedUTC = "copy_created_utc", copyCreatedLocal = "copy_created_local"
        case newerSessions = "newer_sessions", newerSafetyLogRows = "newer_safety_log_rows", currentDatabase = "current_database"
        case copySchemaVersion = "copy_schema_version", buildSchemaVersion = "build_schema_version"
    }

    public var text: String {
        var out = """
            Restore plan
              copy            \(copy) (\(copyKind)), made \(copyCreatedLocal) = \(copyCreatedUTC)
              into            \(target)
              current file    \(currentDatabase)
            """
        if let s = newerSessions, let r = newerSafetyLogRows {
            out += "\n  will be lost    \(s) session(s) and \(r) safety-log row(s) newer than the copy (kept in a pre-restore safety copy)"
        }
        if copySchemaVersion < buildSchemaVersion {
            out += "\n  note            the copy has schema \(copySchemaVersion), this build \(buildSchemaVersion): run `tosca-maint migrate up` after the restore"
        }
        return out + "\n"
    }
}

extension RestoreJob {
    /// The plan against the current database (read-only).
    public func plan(for entry: CatalogEntry, target: String) throws -> RestorePlan {
        guard let facts = entry.manifest?.facts else { throw ToolFailure(.dataError, "\(entry.name): no readable manifest", hint: "tosca-maint list") }
        let local = DateFormatter()
        local.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
        var newerSessions: Int? = nil, newerRows: Int? = nil
        var current = "absent"
        if FileManager.default.fileExists(atPath: target) {
            current = "present"
            if let live = try? Database(path: target, options: .init(readOnly: true, key: liveKey(target))),
               let copy = try? Database(path: entry.path, options: .init(readOnly: true, key: key(for: entry))) {
                let copyMaxSession = (try? copy.scalar("SELECT COALESCE(MAX(session_id), 0) FROM sessions"))??.int64 ?? 0
                newerSessions = (try? live.scalar("SELECT count(*) FROM sessions WHERE session_id > ?", [.integer(copyMaxSession)]))??.int
                let liveHead = (try? SafetyChain.head(live)) ?? nil
                newerRows = max(0, Int((liveHead?.seq ?? 0) - (facts.chainHead?.seq ?? 0)))
                // Without a chain on either side (a v0.9.12 copy, a legacy live file) the
                // rows are compared by count.
                if facts.chainHead == nil || (try? live.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'safety_log' AND sql LIKE '%seq%'"))??.int == 0 {
                    newerRows = (try? live.scalar("SELECT count(*) FROM safety_log"))??.int.map { max(0, $0 - (facts.rowCounts["safety_log"] ?? 0)) }
                }
            } else {
                current = "present but cannot be opened (it will be kept as raw files)"
            }
        }
        return RestorePlan(copy: entry.name, copyPath: entry.path, copyKind: facts.kind.rawValue, copyCreatedUTC: facts.createdUTC,
                           copyCreatedLocal: facts.created.map { local.string(from: $0.date) } ?? "?", target: target,
                           newerSessions: newerSessions, newerSafetyLogRows: newerRows, currentDatabase: current,
                           copySchemaVersion: facts.schemaVersion, buildSchemaVersion: toscaMigrations.last?.version ?? 0)
    }

}
