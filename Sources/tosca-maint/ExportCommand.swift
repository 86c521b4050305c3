import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// The repository options every export command shares (D19).
struct RepositoryOptions: ParsableArguments {
    @Option(name: .long, help: "The restic repository: a folder on a drive, sftp:, rest:, s3:... (default: $TOSCA_EXPORT_REPO).")
    var repo: String?

    @Option(name: .long, help: "The repository password: a file of one line, mode 0400 or 0600 (default: the tosca-export-pass systemd credential).")
    var passwordFile: String?

    @Flag(name: .long, help: "Accept a repository on the data folder's own filesystem (tests only: it is not an off-device copy).")
    var allowSameDevice = false

    @Option(name: .long, help: "restic's cache folder (default: $CACHE_DIRECTORY under systemd, else restic's own).")
    var cacheDir: String?

    /// The repository with its password read now (before a root run switches users).
    func repository() throws -> ExportRepository {
        let location = repo ?? ProcessInfo.processInfo.environment["TOSCA_EXPORT_REPO"].flatMap { $0.isEmpty ? nil : $0 }
        guard let location else {
            throw ToolFailure(.usage, "no repository: give --repo REPO (or TOSCA_EXPORT_REPO in /etc/tosca-maint/export.conf)")
        }
        return ExportRepository(location: location, password: try ExportRepository.password(file: passwordFile),
                                allowSameDevice: allowSameDevice, cacheDir: cacheDir)
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Verified off-device copies through restic: database copy, bundles, manifests.",
        discussion: """
            One restic snapshot per export (--host the device id, tag tosca-export) holding \
            the newest verified database backup as it is stored (encrypted on an encrypted \
            device), every published session bundle with its sidecar, every manifest, and \
            export.json (device id, time, version, every file's size and SHA-256). Then \
            `restic check --read-data-subset=N/T` (N advances each export: every pack is read \
            every T exports) and an export drill: export.json, the database copy and one \
            bundle restored into a scratch folder and compared by SHA-256, the copy also by \
            D12. Only then is the export recorded in exports/.

            A repository folder on the data folder's filesystem is refused (78): not an \
            off-device copy. A drive that is not mounted gives 66; a read-only or nearly \
            full one 74, nothing recorded.

            Examples:
              tosca-maint export init --repo /media/tosca-backup/repo --password-file /etc/tosca-maint/export-pass
              tosca-maint export --repo /media/tosca-backup/repo --password-file /etc/tosca-maint/export-pass
              tosca-maint export check --read-data --repo rest:https://backup.clinic.example/tosca-dev1/
              tosca-maint export --forget --repo /media/tosca-backup/repo --password-file /etc/tosca-maint/export-pass

            --forget applies the clinic's retention instead of exporting: every export of the \
            last 3 months (--keep-within) and one a month for 10 years (--keep-monthly 120), \
            this device's snapshots only, then prune. An append-only server refuses it: 77, \
            nothing removed; run it where deleting is allowed.

            Exit codes: 0 exported and verified, 64 usage, 65 the check or the drill found \
            damage, 66 no repository there (export init) or no verified backup, 74 I/O error \
            or restic failed, 75 repository unreachable or locked, 77 wrong password, a \
            password file that breaks the rules or an append-only server refusing --forget, \
            78 restic missing or not an off-device copy.
            """,
        subcommands: [Run.self, Init.self, Check.self],
        defaultSubcommand: Run.self)

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Export and verify (the default).")
        @OptionGroup var shared: SharedOptions
        @OptionGroup var repository: RepositoryOptions
        @Option(help: "T of --read-data-subset=N/T: every pack is read once every T exports.") var subsets = 12
        @Flag(help: "Apply the retention policy instead of exporting: restic forget (this device's exports) and prune.") var forget = false
        @Option(help: "With --forget: keep every export this recent (restic duration: 3m, 90d, 1y).") var keepWithin = "3m"
        @Option(help: "With --forget: and one export a month for this many months.") var keepMonthly = 120
        @Option(help: "After the verified export, remove session folders that ended more than DAYS ago and whose bundle is in it (the rows stay; bundle extract --to-original brings one back). Off by default.")
        var releaseSessionsOlderThan: Double?
        @Flag(help: "A repository folder that is not there (a drive not plugged in) gives 75, retried, while the last verified export is younger than 35 days (what the monthly unit passes).")
        var absentDriveOK = false

        func validate() throws {
            guard (1...1000).contains(subsets) else { throw ValidationError("--subsets must be 1 to 1000") }
            guard keepMonthly >= 1 else { throw ValidationError("--keep-monthly must be at least 1") }
            if let d = releaseSessionsOlderThan, !(d >= 0 && d.isFinite) { throw ValidationError("--release-sessions-older-than takes a number of days (0 or more)") }
            if forget && releaseSessionsOlderThan != nil { throw ValidationError("--release-sessions-older-than goes with an export, not --forget") }
            guard keepWithin.range(of: "^([0-9]+[ymdh])+$", options: .regularExpression) != nil else {
                throw ValidationError("--keep-within takes a restic duration such as 3m, 90d or 1y2m")
            }
        }

        func run() throws {
            try runReporting {
                let repo = try repository.repository()
                let (folder, lock) = try shared.beginMaintenance()
                defer { lock.unlock() }
                var job = ExportJob(folder: folder, restic: try Restic(repository: repo))
                if forget {
                    print(try job.forget(keepWithin: keepWithin, keepMonthly: keepMonthly), terminator: "")
                    return 0
                }
                job.subsets = subsets
                job.absentDriveOK = absentDriveOK
                let o = try job.run(releaseSessionsOlderThanDays: releaseSessionsOlderThan) { step in
                    if !shared.json { FileHandle.standardError.write(Data("tosca-maint: \(step)\n".utf8)) }
                    Journal.shared.status(step)
                }
                if shared.json {
                    try printJSON(["snapshot_id": o.snapshotID, "files": String(o.files.count), "bytes": String(o.bytes),
                                   "checked_subset": o.checkedSubset, "recorded": o.recordedAt])
                } else {
                    print("exported snapshot \(o.snapshotID): \(o.files.count) files, \(o.bytes) bytes; check of subset \(o.checkedSubset) and the drill passed")
                    print("recorded: \(o.recordedAt)")
                    if releaseSessionsOlderThan != nil { print("released \(o.released.count) session folder(s): their bundles are in this export") }
                }
                return 0
            }
        }
    }

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the restic repository (once).",
            discussion: "Keep a copy of the password off the device: without it the repository cannot be read.")
        @OptionGroup var shared: SharedOptions
        @OptionGroup var repository: RepositoryOptions

        func run() throws {
            try runReporting {
                let repo = try repository.repository()
                let folder = try shared.writableFolder()
                try ExportJob(folder: folder, restic: try Restic(repository: repo)).initialize()
                print("created the restic repository \(repo.redacted)")
                return 0
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "restic check of the repository on its own.",
            discussion: """
                Without --read-data: the structure and the next rotating subset of packs. With \
                --read-data every pack is read (the monthly full check). Exit codes: 0 sound, \
                65 damage found, 66 no repository, 75 unreachable or locked, 77 wrong password.
                """)
        @OptionGroup var shared: SharedOptions
        @OptionGroup var repository: RepositoryOptions
        @Flag(help: "Read every pack of the repository.") var readData = false

        func run() throws {
            try runReporting {
                let repo = try repository.repository()
                let folder = try shared.writableFolder()
                let job = ExportJob(folder: folder, restic: try Restic(repository: repo))
                try job.check(readAll: readData)
                print("restic check of \(repo.redacted)\(readData ? " (every pack read)" : ""): no errors")
                return 0
            }
        }
    }
}
