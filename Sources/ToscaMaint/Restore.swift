import Foundation
import ToscaCore

/// `tosca-maint restore` (and `restore --drill`). The job is split by step across
/// `RestoreSelect.swift` (which copy), `RestorePlan.swift` (what would change),
/// `RestoreSafetyCopy.swift` (the current database kept), `RestoreSwap.swift` (the staged
/// swap, the catalog import, the restore entry), `RestoreDrill.swift` and `RestoreRun.swift`
/// (the whole run, in order).
public struct RestoreJob: Sendable {
    public let folder: DataFolder
    public var key: DatabaseKey? { folder.key }
    public var databasePath: String { folder.database }

    public init(folder: DataFolder) {
        self.folder = folder
    }

    /// The key for a copy (D14, ``DataFolder/key(for:)``).
    func key(for entry: CatalogEntry) -> DatabaseKey? { folder.key(for: entry) }

    /// The key for a live file judged by its header (``DataFolder/key(forFileAt:)``).
    func liveKey(_ path: String) -> DatabaseKey? { folder.key(forFileAt: path) }

    /// Errors that mean "this file is damaged", as opposed to busy, locked or keyed wrongly.
    static func isDamage(_ error: any Error) -> Bool {
        switch error {
        case let e as DatabaseOpenError:
            switch e {
            // Not SQLite and no key given: damaged, or encrypted with a key we were not
            // handed. Its raw files keep it either way, byte for byte.
            case .notADatabase, .notPlaintext: return true
            default: return false
            }
        case let e as SQLiteError: return e.isAny(of: .corrupt, .notadb)
        case let e as ToolFailure: return e.status == .dataError
        case is MigrationError: return true
        default: return false
        }
    }

}

/// Who runs a restore, for its safety-log entry: `SUDO_USER`, else the account name of the
/// real user id; never a bare number (`$USER` is unset under systemd and cron).
public func restoringUser(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
    if let sudo = environment["SUDO_USER"], !sudo.isEmpty { return sudo }
    let uid = getuid()
    if let pw = getpwuid(uid), let name = pw.pointee.pw_name { return String(cString: name) }
    return "an account without a name (uid \(uid))"
}
