import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Apply grandfather-father-son retention to backups.",
        discussion: """
            Keeps the newest backup of each of the last N days, ISO weeks and months (local \
            calendar) and, always, the newest verified backup. Safety copies are removed only \
            when --safety-copies names them, and then only those older than --older-than days. \
            Prints what it removes and why. Also moves database files without a manifest to \
            backups/quarantine/ and removes stale .partial files and the scratch folders of \
            killed runs. The manifest of a copy whose database file is lost is kept (evidence, \
            and it may anchor the timeline): quarantine --failed sets it aside.

            Examples:
              tosca-maint prune --dry-run
              tosca-maint prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12
              tosca-maint prune --safety-copies --older-than 90
            """)

    @OptionGroup var shared: SharedOptions
    @Flag(help: "Show what would be removed; change nothing.") var dryRun = false
    @Option(help: "Days to keep one backup each.") var keepDaily = 7
    @Option(help: "ISO weeks to keep one backup each.") var keepWeekly = 4
    @Option(help: "Months to keep one backup each.") var keepMonthly = 12
    @Flag(help: "Also prune safety copies (with --older-than).") var safetyCopies = false
    @Option(help: "With --safety-copies: remove safety copies older than this many days.") var olderThan: Int?

    func validate() throws {
        guard keepDaily >= 0, keepWeekly >= 0, keepMonthly >= 0 else { throw ValidationError("--keep-* must not be negative") }
        if safetyCopies != (olderThan != nil) { throw ValidationError("--safety-copies and --older-than DAYS go together") }
        if let d = olderThan, d < 0 { throw ValidationError("--older-than must not be negative") }
    }

    struct Out: Codable { let removed: [[String: String]]; let kept: [[String: String]]; let quarantined: [String]; let removedPartials: [String]; let dryRun: Bool
        enum CodingKeys: String, CodingKey { case removed, kept, quarantined; case removedPartials = "removed_partials"; case dryRun = "dry_run" } }

    func run() throws {
        try runReporting {
            let (folder, lock) = try shared.beginMaintenance()
            defer { lock.unlock() }
            let outcome = try PruneJob(folder: folder).run(keepDaily: keepDaily, keepWeekly: keepWeekly, keepMonthly: keepMonthly,
                                                           safetyCopiesOlderThanDays: safetyCopies ? olderThan : nil, dryRun: dryRun)
            let (plan, tidy) = (outcome.plan, outcome.housekeeping)
            if shared.json {
                try printJSON(Out(removed: plan.remove.map { ["copy": $0.entry.name, "reason": $0.reason] },
                                  kept: plan.keep.map { ["copy": $0.entry.name, "reason": $0.reason] },
                                  quarantined: tidy.quarantined, removedPartials: tidy.removedPartials, dryRun: dryRun))
                return 0
            }
            let verb = dryRun ? "would remove" : "removed"
            for i in plan.remove { print("\(verb)  \(i.entry.name): \(i.reason)") }
            for i in plan.keep { print("kept     \(i.entry.name): \(i.reason)") }
            for q in tidy.quarantined { print("\(dryRun ? "would quarantine" : "quarantined") \(q)") }
            for p in tidy.removedPartials { print("\(dryRun ? "would remove stale" : "removed stale") \(p)") }
            // A manifest whose copy was lost is evidence (and may anchor the timeline): kept.
            for m in outcome.lostManifests { print("kept     \(PathName.name(m)): its database file is lost (a failed check; set it aside with quarantine --failed)") }
            return 0
        }
    }
}
