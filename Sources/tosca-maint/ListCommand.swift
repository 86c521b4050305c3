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

    func run() throws {
        try runReporting {
            // The catalog needs no key: a key file list cannot read never stops it.
            let folder = try DataFolder.existing(shared.dataDir)
            var listing = CatalogListing.make(try folder.scanCatalog())
            listing.bundles = try BundleJob(folder: folder).published().map { b in
                "\(PathName.name(b.path))  \(b.sidecar?.checks.last.map { "\($0.result) (\($0.level) \($0.timeUTC))" } ?? b.sidecarError ?? "")"
            }
            if shared.json { try printJSON(listing) } else { print(listing.text, terminator: "") }
            return 0
        }
    }
}
