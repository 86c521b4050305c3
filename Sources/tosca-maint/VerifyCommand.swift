import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify published copies (ARCHITECTURE D12), or the live database with --live.",
        discussion: """
            For each copy: size and SHA-256 against its manifest and the manifest's digest; \
            PRAGMA integrity_check (and cipher_integrity_check when encrypted); the safety-log \
            chain from seq 1 and its head, the row counts and the foreign-key violation count \
            against the manifest. The result is appended to the copy's manifest. With no copy \
            named, the newest backup is verified.

            --live --repo REPO also checks the live safety log extends the head recorded in \
            this device's newest export in that repository: history the device alone can no \
            longer rewrite, even by recomputing the keyless chain and every local manifest.

            --live checks the live database without blocking the recorder: quick_check, the \
            chain from seq 1, and that the chain extends the head of the newest backup on its \
            timeline (after a restore: the restored copy or a later backup), and that the \
            treatment events of every sealed session still match its seal. Anything else is \
            reported as tampering. Safety-log rows another program inserted without chain \
            columns and not sealed yet are a warning, not a failure (a run that can take \
            tosca.lock seals them first). --all also checks the catalog as a whole: a copy \
            whose database file is lost, a manifest that cannot be read, a plaintext copy on \
            an encrypted device.

            Examples:
              tosca-maint verify --latest
              tosca-maint verify --all
              tosca-maint verify /var/lib/tosca/backups/tosca_20261129.db
              tosca-maint verify --live
              tosca-maint verify --live --repo rest:https://backup.clinic.example/tosca-dev1/ --password-file pass

            Exit codes: 0 every copy holds, 65 a copy (or the live database) failed, each named, \
            66 nothing to verify (or no data folder), 73 a layout folder is a symbolic link, \
            75 another maintenance run is going, 77 key missing or wrong.
            """)

    @OptionGroup var shared: SharedOptions
    @OptionGroup(title: "Off-device anchor (with --live)") var repository: RepositoryOptions

    @Argument(help: "Copies to verify (database files in backups/, each with its manifest).")
    var paths: [String] = []

    @Flag(help: "Verify the newest backup (the default when nothing else is named).")
    var latest = false

    @Flag(help: "Verify every copy in the catalog.")
    var all = false

    @Flag(help: "Check the live database and that its safety log extends the newest backup's head.")
    var live = false

    func validate() throws {
        if [!paths.isEmpty, latest, all].filter({ $0 }).count > 1 {
            throw ValidationError("name copies, or --latest, or --all: one of them")
        }
        if repository.repo != nil && !live { throw ValidationError("--repo goes with --live") }
    }

    func run() throws {
        try runReporting {
            // --repo: the password is read before a root run switches users.
            let repo = try repository.repo.map { _ in try repository.repository() }
            let (folder, lock) = try shared.beginMaintenance()
            defer { lock.unlock() }
            let targets: VerifyJob.Targets = all ? .all : !paths.isEmpty ? .paths(paths) : (latest || !live) ? .latest : .none
            var outcomes = try VerifyJob(folder: folder).run(targets, live: live)
            if let repo {
                let problem = try ExportJob(folder: folder, restic: try Restic(repository: repo)).offDeviceAnchorProblem()
                outcomes.append(VerifyJob.Outcome(copy: "live tosca.db against the newest export in \(repo.redacted)", ok: problem == nil, problems: problem.map { [$0] } ?? []))
            }
            if shared.json {
                try printJSON(outcomes)
            } else {
                for o in outcomes {
                    print(o.ok ? "ok      \(o.copy)\(o.problems.isEmpty ? "" : " (\(o.problems.joined(separator: "; ")))")" : "FAILED  \(o.copy)")
                    if !o.ok { for p in o.problems { print("        \(p)") } }
                }
            }
            let failed = outcomes.filter { !$0.ok }
            if !failed.isEmpty {
                throw ToolFailure(.dataError, "verification failed for \(failed.map(\.copy).joined(separator: ", "))",
                                  hint: "damage (integrity_check, quick_check, SHA-256): runbook restore-after-disk-fault.md; a broken chain or possible tampering: runbook tampering-reported.md, and restore nothing yet")
            }
            return 0
        }
    }
}
