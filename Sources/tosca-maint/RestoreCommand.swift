import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore the live database from a verified copy (or run a restore drill).",
        discussion: """
            1. Chooses the copy: --latest (the newest verified backup), --anchor (the backup the \
            live safety log was last proven against, as `verify --live` names it: the state \
            before a change reported as tampering), --date DAY (the newest \
            verified backup of that local day, or UTC day with --utc), or --backup PATH (any \
            published copy, safety copies included), and verifies it first: a copy that fails \
            is never restored, and the message names the newest older copy that verifies.
            2. Takes backups/.maint.lock, then tosca.lock: stop the recorder first (exit 75 \
            while it runs). --to takes only .maint.lock.
            3. Shows the plan: the copy, its time, and how many sessions and safety-log rows of \
            the current database are newer than it. --dry-run stops here. On a terminal it asks \
            for confirmation; without a terminal it needs --yes.
            4. Keeps the current database as a pre-restore safety copy (its raw files if it \
            cannot be opened), so the restore itself can be undone.
            5. Copies the backup into a temporary file beside tosca.db, verifies it, removes \
            the old -wal/-shm and swaps it in atomically. Any failure before the swap leaves \
            tosca.db exactly as it was.
            6. Appends a `maintenance` entry (which copy, when, by whom) to the restored safety log.
            If the copy's schema is older than this build, run `tosca-maint migrate up` next.

            --to PATH restores into a new file for inspection, without tosca.lock or changes to \
            the live database, and without confirmation; it never overwrites. --drill restores the newest verified backup (or \
            --backup PATH) into a temporary folder, checks it, and records the result in its \
            manifest; nothing else changes.

            Examples (stop the recorder service first):
              tosca-maint restore --latest --dry-run
              tosca-maint restore --date 2026-11-28 --yes
              tosca-maint restore --backup /var/lib/tosca/backups/tosca_20261128.db
              tosca-maint restore --latest --to /tmp/inspect.db
              tosca-maint restore --drill

            Exit codes: 0 restored (or planned, or drill passed), 64 bad date or no --yes without \
            a terminal, 65 the copy (or the drill) fails verification, 66 no such copy or day, \
            73 target not writable or --to exists, 74 I/O error or disk full (live database \
            untouched), 75 the recorder or another maintenance run is running, 77 key missing \
            or not the copy's key.
            """)

    @OptionGroup var shared: SharedOptions
    @Flag(help: "The newest verified backup.") var latest = false
    @Flag(help: "The backup the live safety log was last proven against (verify --live's \"anchored on\"): the state before a change reported as tampering.") var anchor = false
    @Option(help: "The newest verified backup of this day (YYYY-MM-DD, local time unless --utc).") var date: String?
    @Flag(help: "--date is a UTC day.") var utc = false
    @Option(help: "A published copy (backup or safety copy), by path.") var backup: String?
    @Option(help: "Restore into this new file instead of the live database (for inspection).") var to: String?
    @Flag(help: "Show the plan and stop.") var dryRun = false
    @Flag(help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "Restore drill: check that the copy restores, change nothing.") var drill = false

    func validate() throws {
        if drill {
            if latest || anchor || date != nil || to != nil || dryRun { throw ValidationError("--drill takes only --backup PATH") }
            return
        }
        let chosen = [latest, anchor, date != nil, backup != nil].filter { $0 }.count
        guard chosen == 1 else { throw ValidationError("choose the copy with exactly one of --latest, --anchor, --date DAY, --backup PATH") }
        if let date, Self.parseDay(date) == nil { throw ValidationError("--date must be a calendar day YYYY-MM-DD, got \(date.debugDescription)") }
        if utc && date == nil { throw ValidationError("--utc goes with --date") }
    }

    static func parseDay(_ s: String) -> String? {
        guard s.range(of: #"^\d{4}-\d{2}-\d{2}$"#, options: .regularExpression) != nil else { return nil }
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd"
        f.timeZone = TimeZone(identifier: "UTC")
        f.isLenient = false
        guard let d = f.date(from: s), f.string(from: d) == s else { return nil }
        return s
    }

    func run() throws {
        try runReporting {
            let job = RestoreJob(folder: try shared.writableFolder())
            let selection: RestoreSelection = latest ? .latest : anchor ? .anchor : date.map { .date($0, utc: utc) } ?? backup.map { .path($0) } ?? .latest
            if drill {
                let (entry, problems) = try job.runDrill(backup.map { .path($0) } ?? .latest)
                guard problems.isEmpty else {
                    throw ToolFailure(.dataError, "restore drill of \(entry.name) failed:\n  " + problems.joined(separator: "\n  "),
                                      hint: "verify the other copies (tosca-maint verify --all) and take a fresh backup")
                }
                print("drill ok  \(entry.name)")
                return 0
            }
            let outcome = try job.run(RestoreRequest(selection: selection, to: to, dryRun: dryRun),
                                      show: { plan in if shared.json { try printJSON(plan) } else { print(plan.text, terminator: "") } },
                                      confirm: { try confirmTyped("restore", yes: yes, refusal: "no terminal to confirm on: refusing to restore without --yes",
                                                                  hint: "check the plan with --dry-run, then add --yes") },
                                      say: { print($0) })
            if !outcome.confirmed {
                print("Nothing changed.")
                return ExitStatus.usage.rawValue
            }
            guard outcome.restored else { return 0 }
            if to == nil && !outcome.recorded { print("note: the restored database has no safety-log chain yet; nothing was appended to it") }
            print("restored \(outcome.target) from \(outcome.entry.name)")
            if outcome.plan.copySchemaVersion < outcome.plan.buildSchemaVersion {
                print("next: its schema (\(outcome.plan.copySchemaVersion)) is older than this build's (\(outcome.plan.buildSchemaVersion)): run `tosca-maint migrate up` before starting the recorder")
            }
            return 0
        }
    }
}
