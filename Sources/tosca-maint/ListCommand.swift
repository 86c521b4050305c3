import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "The catalog of backups and safety copies, oldest first.",
        discussion: """
            Name, kind, local and UTC creation time, size, schema version, encrypted or not, \
            and the last check with its result. Files in backups/quarantine/ (database files that \
            never got a manifest, and copies set aside by `tosca-maint quarantine`) are listed \
            apart; they are never restored. A manifest whose database file is gone is listed \
            under "LOST copies": a published copy was lost, a failed check (status exits 65).

            Example:
              tosca-maint list --data-dir /var/lib/tosca
            """)

    @OptionGroup var shared: SharedOptions

    struct Row: Codable {
        let name: String, kind: String, createdLocal: String, createdUTC: String, sizeBytes: Int64, schemaVersion: Int?
        let encrypted: Bool?, lastCheck: String?, lastCheckResult: String?, problem: String?
        enum CodingKeys: String, CodingKey {
            case name, kind, encrypted, problem
            case createdLocal = "created_local", createdUTC = "created_utc", sizeBytes = "size_bytes", schemaVersion = "schema_version"
            case lastCheck = "last_check", lastCheckResult = "last_check_result"
        }
    }
    struct Listing: Codable { let copies: [Row]; let quarantined: [String]; let pendingCleanup: [String]; let lost: [String]
        enum CodingKeys: String, CodingKey { case copies, quarantined, lost; case pendingCleanup = "pending_cleanup" } }

    func run() throws {
        try runReporting {
            let catalog = try shared.folder().scanCatalog()
            let local = DateFormatter()
            local.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
            local.timeZone = .current
            let rows = catalog.entries.map { e -> Row in
                let size = ((try? FileManager.default.attributesOfItem(atPath: e.path)[.size]) as? NSNumber)?.int64Value ?? 0
                let f = e.manifest?.facts
                return Row(name: e.name, kind: f?.kind.rawValue ?? "?", createdLocal: e.created.map { local.string(from: $0.date) } ?? "?",
                           createdUTC: f?.createdUTC ?? "?", sizeBytes: size, schemaVersion: f?.schemaVersion,
                           encrypted: f.map { $0.encryption.isEncrypted }, lastCheck: e.manifest?.lastCheck.map { "\($0.level) \($0.timeUTC)" },
                           lastCheckResult: e.manifest?.lastCheck?.result,
                           problem: e.manifestError ?? (e.digestMatches ? nil : "manifest digest does not match"))
            }
            let listing = Listing(copies: rows, quarantined: catalog.quarantined, pendingCleanup: catalog.partials + catalog.orphans + catalog.scratchFolders,
                                  lost: catalog.orphanManifests)
            if shared.json { try printJSON(listing); return 0 }
            if rows.isEmpty { print("no copies in \(catalog.backupsDirectory)") }
            for r in rows {
                let size = String(format: "%8.1f MiB", Double(r.sizeBytes) / 1_048_576)
                print("\(r.name.padding(toLength: 42, withPad: " ", startingAt: 0)) \(r.kind.padding(toLength: 14, withPad: " ", startingAt: 0)) \(r.createdLocal)  \(r.createdUTC)  \(size)  schema \(r.schemaVersion.map(String.init) ?? "?")  \(r.encrypted == true ? "encrypted" : "plaintext")  \(r.lastCheckResult ?? "unchecked")\(r.lastCheck.map { " (\($0))" } ?? "")\(r.problem.map { "  !! \($0)" } ?? "")")
            }
            if !catalog.quarantined.isEmpty {
                print("\nQuarantined (not backups, never restored):")
                for q in catalog.quarantined { print("  \(q)") }
            }
            if !listing.lost.isEmpty {
                print("\nLOST copies (the manifest is here, the database file is gone: a failed check, see verify --all):")
                for m in listing.lost { print("  \(m)") }
            }
            if !listing.pendingCleanup.isEmpty {
                print("\nLeft by interrupted runs (the next backup or prune tidies them):")
                for q in listing.pendingCleanup { print("  \(q)") }
            }
            return 0
        }
    }
}
