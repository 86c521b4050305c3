import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct ProtectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protect",
        abstract: "Take the sessions that just ended off the disk: bundle, backup and (configured) export.",
        discussion: """
            The recorder drops a marker in <data>/spool/ended/<session_id> when a session ends \
            (completed or aborted); tosca-maint-session.path starts this command whenever \
            markers are there. For the markers' sessions, in order: each session's bundle \
            (bundle's rules), one verified backup of kind `session` holding their rows (none \
            when the newest verified backup already does; older session backups are thinned \
            like dailies), and, where an export repository is configured (--repo, \
            TOSCA_EXPORT_REPO, or its line in /etc/tosca-maint/export.conf), one verified \
            export holding the backup and the bundles (none when the last recorded export \
            already does). A marker is removed only when its session's bundle, backup and \
            export are verified; otherwise it stays for the next run and the reason is \
            logged. A marker that names no finished session (unknown, in progress) and \
            anything in the spool that is not a marker (a hostile name, a link, a folder) is \
            moved to spool/set-aside/ and named (65); nothing else is touched for it.

            The unit runs it with --min-interval 300: a run starts at least 5 minutes after \
            the last one began (it waits first, holding no lock; a run that fails before it \
            begins waits too), so a day of short sessions batches. A run that leaves a \
            session unprotected exits 75 (retried), except on the alert run of a streak of \
            failed runs, which exits with the cause's status so that the unit's OnFailure= \
            alert fires once: the --failures-before-alert-th run in a row for a cause that \
            may pass (a server unreachable, a full disk; 1 for a cause that was 75), the \
            first for a check that failed (65), a key or password (77) or the configuration \
            (78). status keeps showing the sessions waiting. No session copy is kept of a \
            database whose safety log does not extend the last backup (65, nothing \
            published: the nightly backup keeps the suspect copy).

            Examples:
              tosca-maint protect
              tosca-maint protect --repo /media/tosca-backup/repo --password-file /etc/tosca-maint/export-pass

            Exit codes: 0 every marker's session protected (or none), 1 the alert run of a \
            cause that may pass, 65 a spool entry set aside, or (on the alert run) a bundle \
            or copy that failed its check, 66 no data folder or database, 73 a layout folder \
            is a symbolic link, 74 I/O error, 75 another maintenance run is going (not counted \
            as a failed run), or a session left unprotected outside the alert run, 77 key or \
            repository password problem, 78 restic missing, or no bundle recipients on an \
            encrypted device.
            """)

    @OptionGroup var shared: SharedOptions
    @OptionGroup var repository: RepositoryOptions
    @Option(help: "The age recipients bundles are encrypted to (default: $TOSCA_BUNDLE_RECIPIENTS, else /etc/tosca-maint/bundle-recipients).")
    var recipients: String?
    @Option(help: "Seconds: wait until this long after the last run began (the unit passes 300).") var minInterval: Double = 0
    @Option(help: "Failed runs in a row (sessions left unprotected) that exit 75 before a run fails with its own status.")
    var failuresBeforeAlert = 3

    func validate() throws {
        guard minInterval >= 0, minInterval <= 86_400, minInterval.isFinite else { throw ValidationError("--min-interval takes 0 to 86400 seconds") }
        guard failuresBeforeAlert >= 1 else { throw ValidationError("--failures-before-alert must be at least 1") }
    }

    struct Out: Codable {
        let protected: [Int64]
        let pending: [[String: String]]
        let setAside: [[String: String]]
        let beingWritten: Int
        let backup: String?
        let exportSnapshot: String?
        let thinned: [String]
        let consecutiveFailures: Int
        enum CodingKeys: String, CodingKey {
            case protected, pending, backup, thinned
            case setAside = "set_aside", beingWritten = "being_written", exportSnapshot = "export_snapshot", consecutiveFailures = "consecutive_failures"
        }
    }

    func run() throws {
        try runReporting {
            var began = false
            do { return try protect(began: &began) } catch {
                // A run that fails before it begins (a password that cannot be read, a full
                // disk) waits out --min-interval too: the path unit starts the service again
                // at once while markers wait, and systemd's start limit would switch it off.
                if !began && minInterval > 0 { Thread.sleep(forTimeInterval: minInterval) }
                throw error
            }
        }
    }

    /// Statuses that alert on the first failed run: a check that failed (65), a key or
    /// password (77), the configuration (78). Others wait for --failures-before-alert.
    static let alertAtOnce: Set<ExitStatus> = [.dataError, .noPermission, .config]

    func protect(began: inout Bool) throws -> Int32 {
        do {
            let folder = try shared.writableFolder()
            var job = ProtectJob(folder: folder)
            job.recipients = bundleRecipientsFile(recipients)
            if let location = try repository.repo ?? ExportRepository.configuredLocation() {
                job.repository = ExportRepository(location: location, password: try ExportRepository.password(file: repository.passwordFile),
                                                  allowSameDevice: repository.allowSameDevice, cacheDir: repository.cacheDir)
            }
            // The rate limit: wait (holding nothing) until --min-interval after the last run began.
            let wait = job.waitBeforeRun(minimumInterval: minInterval)
            if wait > 0 {
                let text = String(format: "waiting %.0f s: runs start at least %.0f s apart, so that sessions ending close together go in one run", wait, minInterval)
                if !shared.json { FileHandle.standardError.write(Data("tosca-maint: \(text)\n".utf8)) }
                Journal.shared.status(text)
                Journal.shared.extendTimeout(seconds: Int(wait) + 60)
                Thread.sleep(forTimeInterval: wait)
            }
            var state = job.readState()
            state.lastRunStartedUTC = UTCTime.now().iso8601
            try job.writeState(state)
            began = true
            let lock = try folder.takeMaintenanceLock()
            defer { lock.unlock() }
            Sealing.sealBestEffort(folder)
            let o = try job.run { step in
                if !shared.json { FileHandle.standardError.write(Data("tosca-maint: \(step)\n".utf8)) }
                Journal.shared.status(step)
            }
            state.consecutiveFailures = o.pending.isEmpty ? 0 : state.consecutiveFailures + 1
            try job.writeState(state)
            if shared.json {
                try printJSON(Out(protected: o.protected,
                                  pending: o.pending.map { ["session": String($0.session), "reason": $0.reason, "exit_status": String($0.status.rawValue)] },
                                  setAside: o.setAside.map { ["name": $0.name, "reason": $0.reason, "path": $0.path] },
                                  beingWritten: o.beingWritten, backup: o.backup, exportSnapshot: o.exportSnapshot, thinned: o.thinned,
                                  consecutiveFailures: state.consecutiveFailures))
            } else {
                for id in o.protected { print("protected session \(id)") }
                for p in o.pending { print("NOT protected session \(p.session): \(p.reason)") }
                for s in o.setAside { print("set aside spool/ended/\(s.name) -> \(s.path): \(s.reason)") }
                if let b = o.backup { print("session backup: \(b)") }
                if let s = o.exportSnapshot { print("export: snapshot \(s)") }
                for t in o.thinned { print("thinned session backup \(t)") }
                print("\(o.protected.count) protected, \(o.pending.count) not yet, \(o.setAside.count) set aside\(o.beingWritten > 0 ? ", \(o.beingWritten) marker(s) still being written" : "")")
            }
            if !o.setAside.isEmpty {
                throw ToolFailure(.dataError, "\(o.setAside.count) spool entr\(o.setAside.count == 1 ? "y" : "ies") set aside in \(job.setAsideFolder): \(o.setAside.map { "\($0.name) (\($0.reason))" }.joined(separator: "; "))",
                                  hint: "look at them: a marker is written only by the recorder, after a session ends; remove them once explained")
            }
            if let worst = o.worstPending {
                let what = "\(o.pending.count) session(s) not protected yet: \(o.pending.map { "\($0.session) (\($0.reason))" }.joined(separator: "; "))"
                let alertRun = Self.alertAtOnce.contains(worst) ? 1 : failuresBeforeAlert
                if state.consecutiveFailures == alertRun {
                    // 75 would read as "retry" to the unit: the alert run of a passing cause is 1.
                    throw ToolFailure(worst == .tempFail ? .unhealthy : worst, "\(what); \(state.consecutiveFailures) failed run(s) in a row",
                                      hint: worst == .dataError ? "see the reasons: a bundle or copy that fails its check may be tampering" : "see the reasons; the markers stay for the next run")
                }
                // Before the alert run: retried. After it: the alert has fired once for this
                // streak; status and its figures keep showing the sessions waiting.
                throw ToolFailure(.tempFail, "\(what); failed run \(state.consecutiveFailures) in a row" + (state.consecutiveFailures < alertRun ? " (the alert fires at run \(alertRun))" : " (alerted at run \(alertRun))"),
                                  hint: "the markers stay; the next run retries (tosca-maint status shows the oldest unprotected session)")
            }
            return 0
        }
    }
}
