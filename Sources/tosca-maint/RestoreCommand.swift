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
            let data = try shared.dataDirectory
            let job = RestoreJob(dataDirectory: data, key: try shared.key())
            if drill { return try runDrill(job) }
            var maintLock: FileLock? = nil, locks: ExclusiveLocks? = nil
            defer { locks?.unlock(); maintLock?.unlock() }
            let target = to ?? job.databasePath
            if let to {
                guard !FileManager.default.fileExists(atPath: to) else {
                    throw ToolFailure(.cantCreate, "\(to) exists: --to never overwrites", hint: "name a new file")
                }
                // Manifests get the verification result: serialize with other maintenance runs.
                maintLock = try takeMaintenanceLock(dataDirectory: data)
            } else {
                locks = try ExclusiveLocks(dataDirectory: data, what: "the restore")
            }
            let catalog = try Catalog.scan(dataDirectory: data)
            if locks != nil { try Housekeeping.run(catalog) }
            let selection: RestoreSelection = latest ? .latest : anchor ? .anchor : date.map { .date($0, utc: utc) } ?? .path(backup!)
            var entry = try job.select(selection, catalog: try Catalog.scan(dataDirectory: data))
            if to == nil && entry.kind == .suspect {
                throw ToolFailure(.dataError, "\(entry.name) is a suspect copy (taken when the live safety log did not extend the last backup): restoring it would make its timeline the live one",
                                  hint: "inspect it with --to PATH; restore the state before the change with --anchor")
            }
            try job.verifyOrExplain(entry, catalog: catalog)
            let plan = job.plan(for: entry, target: target)
            if shared.json { try printJSON(plan) } else { print(plan.text, terminator: "") }
            if dryRun { return 0 }
            // --to changes nothing live (a new file for inspection): no confirmation needed.
            if !yes && to == nil {
                guard isatty(0) == 1 else {
                    throw ToolFailure(.usage, "no terminal to confirm on: refusing to restore without --yes", hint: "check the plan with --dry-run, then add --yes")
                }
                print("Type 'restore' to go on: ", terminator: "")
                guard readLine()?.trimmingCharacters(in: .whitespaces) == "restore" else {
                    print("Nothing changed.")
                    return ExitStatus.usage.rawValue
                }
            }
            // No plaintext database ever comes back to an encrypted device.
            var encryptWith: DatabaseKey? = nil
            // A live file that is not plaintext SQLite is encrypted, or damaged: with a key
            // given, or encrypted copies in the catalog, the device is encrypted.
            // (A missing or empty live file counts as "not plaintext" here: on an encrypted
            // device a lost tosca.db must not come back as plaintext either.)
            let notPlaintext = to == nil && (try? FileHeader.classify(path: target)) != .plaintext
            let deviceEncrypted = job.key != nil || catalog.entries.contains { $0.manifest?.facts.encryption.isEncrypted == true }
            let liveEncrypted = notPlaintext && deviceEncrypted
            if liveEncrypted && entry.manifest?.facts.encryption.isEncrypted == false {
                guard let key = job.key else {
                    throw ToolFailure(.noPermission, "\(target) is encrypted and \(entry.name) is plaintext: give the key, and the copy is encrypted on the way in",
                                      hint: "pass --key-file (or load the \(KeySource.credentialName) credential)")
                }
                encryptWith = key
            }
            var preRestore: String? = nil
            if to == nil {
                // An off-device copy joins the catalog first, so that its manifest there
                // records (and confirms) this restore.
                entry = try job.importIntoCatalog(entry, catalog: catalog)
                preRestore = try job.keepCurrent(caller: true)
                if let preRestore { print("kept the current database as \(preRestore)") }
            }
            let rawKept = preRestore.map { (try? Manifest.read(path: Manifest.path(for: $0)).0.facts.unverifiable) == true } ?? false
            var recorded = false
            var binding: ManifestCheck? = nil
            // The maintenance entry goes into the staged file, before the swap: the restored
            // database never exists without it.
            do {
                try job.restoreFile(entry, to: target, replace: to == nil, journalsKept: rawKept, encryptWith: encryptWith, prepare: to == nil ? { staged in
                    // The copy's manifest records the restore, bound to the entry just appended:
                    // what `verify --live` and `backup` take as confirmation of that entry. (If
                    // the swap then fails, the binding names an entry that never went live.)
                    if let entryHead = try job.recordRestore(into: staged, copy: entry, preRestore: preRestore) {
                        recorded = true
                        let check = ManifestCheck(level: LiveCheck.restoreCheckLevel, ok: true, problems: [], detail: entryHead.description)
                        try Verification.record(check, for: entry)
                        binding = check
                    }
                } : nil)
            } catch {
                // Nothing was restored: the binding goes (it names an entry that never went live).
                if let binding { try? Verification.remove(binding, from: entry) }
                throw error
            }
            if to == nil {
                Journal.shared.log(.warning, "restored \(target) from \(entry.path)\(preRestore.map { "; previous database kept as \($0)" } ?? "")",
                                   id: .restored, fields: ["TOSCA_BACKUP_PATH": entry.path, "TOSCA_DATABASE": target])
                if !recorded { print("note: the restored database has no safety-log chain yet; nothing was appended to it") }
            }
            print("restored \(target) from \(entry.name)")
            if plan.copySchemaVersion < plan.buildSchemaVersion {
                print("next: its schema (\(plan.copySchemaVersion)) is older than this build's (\(plan.buildSchemaVersion)): run `tosca-maint migrate up` before starting the recorder")
            }
            return 0
        }
    }

    func runDrill(_ job: RestoreJob) throws -> Int32 {
        let lock = try takeMaintenanceLock(dataDirectory: job.dataDirectory)
        defer { lock.unlock() }
        let catalog = try Catalog.scan(dataDirectory: job.dataDirectory)
        let entry = try job.select(backup.map { .path($0) } ?? .latest, catalog: catalog)
        let problems = try job.drill(entry)
        if problems.isEmpty {
            Journal.shared.log(.info, "restore drill of \(entry.path) passed", id: .drillPassed, fields: ["TOSCA_BACKUP_PATH": entry.path])
            print("drill ok  \(entry.name)")
            return 0
        }
        Journal.shared.log(.err, "restore drill of \(entry.path) FAILED: \(problems.joined(separator: "; "))", id: .drillFailed,
                           fields: ["TOSCA_BACKUP_PATH": entry.path])
        throw ToolFailure(.dataError, "restore drill of \(entry.name) failed:\n  " + problems.joined(separator: "\n  "),
                          hint: "verify the other copies (tosca-maint verify --all) and take a fresh backup")
    }
}
