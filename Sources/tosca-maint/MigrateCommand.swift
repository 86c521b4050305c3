import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Schema migrations: status, plan, up (the pre-upgrade step).",
        discussion: """
            The flow of `migrate up`, run by the upgrade before the new service starts:
              1. nothing pending: says so, exit 0;
              2. takes backups/.maint.lock, then tosca.lock (75 while the recorder runs);
              3. takes a verified pre-migration safety copy (its manifest names the from- and \
            to-versions); no copy, no migration;
              4. integrity_check of the live database; corruption stops here (65);
              5. foreign_key_check; rows pointing at nothing stop here (65), listed by table, \
            rowid and missing key, unless --repair-orphans, which adds one inactive placeholder \
            technician (username unknown-legacy-<id>) for each missing tech_users id, inside the \
            migration's transaction, recorded in the safety log; other orphans are never \
            repaired or deleted;
              6. on a terminal shows the plan and asks (--yes skips; no terminal and no --yes: 64);
              7. applies every pending migration in ONE transaction: a crash leaves the old or \
            the new schema, never a mix;
              8. verifies: integrity_check, the safety-log chain, and every table that existed \
            before holds the same rows (count and content hash) unless a migration documents a \
            change;
              9. a result that fails is replaced by the safety copy (65).
            See Runbooks/pre-upgrade-migration.md.

            Examples:
              tosca-maint migrate status
              tosca-maint migrate plan
              tosca-maint migrate up --yes
              tosca-maint migrate up --yes --repair-orphans
            """,
        subcommands: [Status.self, Plan.self, Up.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Schema version, applied migrations (time, checksum), pending ones.",
            discussion: "Exit 65 when an applied migration's checksum no longer matches this build's.\n\nExample:\n  tosca-maint migrate status --data-dir /var/lib/tosca")
        @OptionGroup var shared: SharedOptions

        struct Out: Codable { let schema: String; let version: Int; let applied: [[String: String]]; let pending: [[String: String]] }

        func run() throws {
            try runReporting {
                let s = try MigrateJob(folder: try shared.folder()).status()
                let out = Out(schema: s.versionDescription, version: s.version,
                              applied: s.applied.map { ["id": $0.id, "applied_at": $0.appliedAt, "checksum": $0.checksum] },
                              pending: s.pending.map { ["id": $0.id, "summary": $0.summary] })
                if shared.json { try printJSON(out); return 0 }
                print("Schema   \(s.versionDescription)")
                for a in s.applied { print("applied  \(a.id)  \(a.appliedAt)  sha256 \(a.checksum.prefix(16))...") }
                for p in s.pending { print("pending  \(p.id)  \(p.summary)") }
                if s.pending.isEmpty { print("up to date") } else { print("run `tosca-maint migrate up` to apply \(s.pending.count) migration(s)") }
                return 0
            }
        }
    }

    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the SQL `migrate up` would run, without running it.",
                                                        discussion: "Example:\n  tosca-maint migrate plan")
        @OptionGroup var shared: SharedOptions
        @Option(help: "Stop after this migration id.") var to: String?

        func run() throws {
            try runReporting {
                print(try MigrateJob(folder: try shared.folder()).planText(upTo: to))
                return 0
            }
        }
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply pending migrations (all of them, or up to --to) in one transaction.",
            discussion: "Example:\n  tosca-maint migrate up --yes\n\nExit codes: 0 migrated or nothing to do, 64 no --yes without a terminal, 65 corruption, orphans or a failed result (the old database stays or is restored), 66 no database, 73/74 the safety copy could not be written, 75 the recorder or another maintenance run is running, 77 key problem.")
        @OptionGroup var shared: SharedOptions
        @Option(help: "Stop after this migration id.") var to: String?
        @Flag(help: "Do not ask for confirmation.") var yes = false
        @Flag(help: "Add inactive placeholder technicians for missing tech_users ids (legacy tech_id = 0 rows).") var repairOrphans = false

        func run() throws {
            try runReporting {
                let job = MigrateJob(folder: try shared.writableFolder())
                let outcome = try job.up(upTo: to, repairOrphans: repairOrphans) { status in
                    var todo = status.pending
                    if let to, let i = todo.firstIndex(where: { $0.id == to }) { todo = Array(todo[...i]) }
                    print("Migrating \(job.databasePath) from \(status.versionDescription):")
                    for m in todo { print("  \(m.id)  \(m.summary)") }
                    guard try confirmTyped("migrate", yes: yes, refusal: "no terminal to confirm on: refusing to migrate without --yes",
                                           hint: "tosca-maint migrate plan, then migrate up --yes") else {
                        throw ToolFailure(.usage, "not confirmed: nothing was migrated")
                    }
                }
                if outcome.alreadyCurrent { print("up to date: nothing to migrate"); return 0 }
                print("applied \(outcome.applied.joined(separator: ", "))")
                if !outcome.repairedTechnicians.isEmpty {
                    print("added placeholder technicians for tech_id \(outcome.repairedTechnicians.map(String.init).joined(separator: ", "))")
                }
                if let copy = outcome.safetyCopy { print("pre-migration copy: \(copy)") }
                return 0
            }
        }
    }
}
