import Foundation
import ToscaCore

/// `tosca-maint list`: the catalog, oldest first, and what lies beside it.
public struct CatalogListing: Encodable, Sendable {
    public struct Row: Codable, Sendable {
        public let name: String, kind: String, createdLocal: String, createdUTC: String, sizeBytes: Int64, schemaVersion: Int?
        public let encrypted: Bool?, lastCheck: String?, lastCheckResult: String?, problem: String?
        enum CodingKeys: String, CodingKey {
            case name, kind, encrypted, problem
            case createdLocal = "created_local", createdUTC = "created_utc", sizeBytes = "size_bytes", schemaVersion = "schema_version"
            case lastCheck = "last_check", lastCheckResult = "last_check_result"
        }
    }
    public let copies: [Row]
    public let quarantined: [String]
    public let pendingCleanup: [String]
    public let lost: [String]
    /// Session bundles: name, and the last check of each.
    public var bundles: [String] = []
    let backupsDirectory: String
    enum CodingKeys: String, CodingKey { case copies, quarantined, lost, bundles; case pendingCleanup = "pending_cleanup" }

    public static func make(_ catalog: Catalog, timeZone: TimeZone = .current) -> CatalogListing {
        let local = DateFormatter()
        local.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
        local.timeZone = timeZone
        let rows = catalog.entries.map { e -> Row in
            let f = e.manifest?.facts
            return Row(name: e.name, kind: f?.kind.rawValue ?? "?", createdLocal: e.created.map { local.string(from: $0.date) } ?? "?",
                       createdUTC: f?.createdUTC ?? "?", sizeBytes: fileSize(e.path), schemaVersion: f?.schemaVersion,
                       encrypted: f.map { $0.encryption.isEncrypted }, lastCheck: e.manifest?.lastCheck.map { "\($0.level) \($0.timeUTC)" },
                       lastCheckResult: e.manifest?.lastCheck?.result,
                       problem: e.manifestError ?? (e.digestMatches ? nil : "manifest digest does not match"))
        }
        return CatalogListing(copies: rows, quarantined: catalog.quarantined,
                              pendingCleanup: catalog.partials + catalog.orphans + catalog.scratchFolders,
                              lost: catalog.orphanManifests, backupsDirectory: catalog.backupsDirectory)
    }

    /// The listing for a terminal.
    public var text: String {
        var lines: [String] = []
        if copies.isEmpty { lines.append("no copies in \(backupsDirectory)") }
        for r in copies {
            let size = String(format: "%8.1f MiB", Double(r.sizeBytes) / 1_048_576)
            lines.append("\(r.name.padding(toLength: 42, withPad: " ", startingAt: 0)) \(r.kind.padding(toLength: 14, withPad: " ", startingAt: 0)) \(r.createdLocal)  \(r.createdUTC)  \(size)  schema \(r.schemaVersion.map(String.init) ?? "?")  \(r.encrypted == true ? "encrypted" : "plaintext")  \(r.lastCheckResult ?? "unchecked")\(r.lastCheck.map { " (\($0))" } ?? "")\(r.problem.map { "  !! \($0)" } ?? "")")
        }
        func section(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            lines.append("\n" + title)
            lines += items.map { "  \($0)" }
        }
        section("Quarantined (not backups, never restored):", quarantined)
        section("LOST copies (the manifest is here, the database file is gone: a failed check, see verify --all):", lost)
        section("Left by interrupted runs (the next backup or prune tidies them):", pendingCleanup)
        section("Session bundles (tosca-maint bundle list):", bundles)
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A file's size in bytes, the file itself and not what a link points at (0 when it
/// cannot be read).
public func fileSize(_ path: String) -> Int64 {
    var st = stat()
    return lstat(path, &st) == 0 ? Int64(st.st_size) : 0
}
