import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct QuarantineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine",
        abstract: "Set copies aside in backups/quarantine/, out of the catalog, kept as evidence.",
        discussion: """
            Moves each named copy, or with --failed every copy whose last check failed, with \
            its manifest into backups/quarantine/. Nothing is deleted. A quarantined copy is \
            never restored, drilled, pruned or counted by status (which exits 65 while a \
            failed copy stays in the catalog). Run `tosca-maint verify --all` first: it \
            records each copy's result in its manifest. --failed also sets aside the manifest of \
            a copy whose database file is lost (unless that copy is still the anchor).

            Examples:
              tosca-maint verify --all
              tosca-maint quarantine --failed --dry-run
              tosca-maint quarantine --failed
              tosca-maint quarantine /var/lib/tosca/backups/tosca_20261129.db

            The copy the live safety log is proven against (verify --live's anchor) is never \
            set aside, named or with --failed: take a backup first (it becomes the anchor).

            Exit codes: 0 moved (or nothing to move), 64 neither copies nor --failed given, or \
            the named copy is the anchor, \
            66 no such copy, 73 cannot move, 75 another maintenance run is going.
            """)

    @OptionGroup var shared: SharedOptions

    @Argument(help: "Copies to set aside (database files in backups/).")
    var paths: [String] = []

    @Flag(help: "Every copy whose last check (verify, drill) failed, and every suspect copy.") var failed = false
    @Flag(help: "Show what would be moved; change nothing.") var dryRun = false

    func validate() throws {
        if paths.isEmpty == !failed { throw ValidationError("name copies, or --failed: one of them") }
    }

    struct Moved: Codable { let copy: String; let to: String?; let reason: String }

    func run() throws {
        try runReporting {
            let (folder, lock) = try shared.beginMaintenance()
            defer { lock.unlock() }
            let catalog = try folder.scanCatalog()
            var chosen: [(CatalogEntry, String)] = []
            // The copy the live safety log is proven against stays: without it the next
            // check would report tampering.
            let anchor = LiveCheck.anchor(catalog)
            var keptAnchor: String? = nil
            if failed {
                for e in catalog.entries {
                    let reason: String
                    if e.kind == .suspect {
                        reason = "suspect copy: the live safety log did not extend the last backup when it was taken"
                    } else if let check = e.manifest?.lastCheck, !check.ok {
                        reason = "failed its last check (\(check.level) at \(check.timeUTC)): \(check.problems.prefix(2).joined(separator: "; "))"
                    } else {
                        continue
                    }
                    if e.path == anchor?.path { keptAnchor = e.name } else { chosen.append((e, reason)) }
                }
            }
            for p in paths {
                guard let e = catalog.entries.first(where: { realPath($0.path) == realPath(PathName.normalized(p)) }) else {
                    throw ToolFailure(.noInput, "\(p) is not a copy in \(catalog.backupsDirectory)", hint: "tosca-maint list")
                }
                if let anchor, anchor.path == e.path {
                    throw ToolFailure(.usage, "\(e.name) is the copy the live safety log is proven against (verify --live's anchor): it stays",
                                      hint: "take a backup first (it becomes the anchor), then set \(e.name) aside")
                }
                if !chosen.contains(where: { $0.0.path == e.path }) { chosen.append((e, "named by the admin")) }
            }
            var moved: [Moved] = []
            // Manifests whose copy was lost: set aside too (the manifest alone), unless the
            // lost copy still anchors the live safety log.
            // (An unreadable one too: it names no copy that could anchor anything.)
            let unreadable = catalog.orphanManifests.filter { m in !catalog.lostCopies.contains { $0.manifestPath == m } }
                .map { CatalogEntry(name: PathName.name(String($0.dropLast(".manifest.json".count))), path: String($0.dropLast(".manifest.json".count)),
                                    manifest: nil, digestMatches: false, manifestError: "unreadable") }
            for e in failed ? catalog.lostCopies + unreadable : [] {
                if e.path == anchor?.path { keptAnchor = e.name; continue }
                let target = Quarantine.freeTarget(for: e.path, in: catalog.quarantineDirectory)
                if !dryRun {
                    try LayoutFolder.make(catalog.quarantineDirectory)
                    guard rename(e.manifestPath, Manifest.path(for: target)) == 0 else {
                        throw ToolFailure(.cantCreate, "cannot move \(e.manifestPath) to quarantine: \(String(cString: strerror(errno)))",
                                          hint: "make \(catalog.quarantineDirectory) writable")
                    }
                    Journal.shared.log(.warning, "manifest of the lost copy \(e.path) set aside in quarantine", id: .quarantined,
                                       fields: ["TOSCA_PATH": e.manifestPath, "TOSCA_QUARANTINE_PATH": Manifest.path(for: target)])
                }
                moved.append(Moved(copy: e.name, to: dryRun ? nil : Manifest.path(for: target), reason: "its database file is lost (manifest only)"))
            }
            for (e, reason) in chosen {
                let target = Quarantine.freeTarget(for: e.path, in: catalog.quarantineDirectory)
                if !dryRun {
                    do {
                        try Quarantine.move(e.path, to: target, withManifest: true)
                    } catch let f as POSIXFailure {
                        throw ToolFailure(.cantCreate, "\(f)", hint: "make \(catalog.quarantineDirectory) writable")
                    }
                    Journal.shared.log(.warning, "\(e.path) set aside in quarantine (\(reason)): moved to \(target)", id: .quarantined,
                                       fields: ["TOSCA_PATH": e.path, "TOSCA_QUARANTINE_PATH": target])
                }
                moved.append(Moved(copy: e.name, to: dryRun ? nil : target, reason: reason))
            }
            if !dryRun && !moved.isEmpty { try AtomicFile.syncDirectory(catalog.backupsDirectory) }
            if shared.json {
                try printJSON(moved)
            } else if moved.isEmpty && keptAnchor == nil {
                print("nothing to set aside")
            } else {
                for m in moved { print("\(dryRun ? "would move" : "moved")  \(m.copy)  (\(m.reason))\(m.to.map { " -> \($0)" } ?? "")") }
                if let keptAnchor { print("left     \(keptAnchor)  (it failed a check, but the live safety log is proven against it: take a backup first)") }
            }
            return 0
        }
    }
}
