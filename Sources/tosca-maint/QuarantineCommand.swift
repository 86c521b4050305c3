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

    func run() throws {
        try runReporting {
            let (folder, lock) = try shared.beginMaintenance()
            defer { lock.unlock() }
            let outcome = try QuarantineJob(folder: folder).run(paths: paths, failed: failed, dryRun: dryRun)
            if shared.json {
                try printJSON(outcome.moved)
            } else if outcome.moved.isEmpty && outcome.keptAnchor == nil {
                print("nothing to set aside")
            } else {
                for m in outcome.moved { print("\(dryRun ? "would move" : "moved")  \(m.copy)  (\(m.reason))\(m.to.map { " -> \($0)" } ?? "")") }
                if let keptAnchor = outcome.keptAnchor { print("left     \(keptAnchor)  (it failed a check, but the live safety log is proven against it: take a backup first)") }
            }
            return 0
        }
    }
}
