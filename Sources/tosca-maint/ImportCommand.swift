import ArgumentParser
import Foundation
import ToscaBundle
import ToscaCore
import ToscaMaint

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Rebuild a data folder on a new machine from an export snapshot.",
        discussion: """
            The snapshot (the newest export of any device, --host to pick one, --snapshot to \
            name one) is restored into a staging folder inside --data-dir and every file \
            checked against its export.json (size and SHA-256) before anything is placed. The \
            database copy and every manifest go to backups/ (so verify --live has its \
            anchor), the bundles and their sidecars to bundles/; then the copy is restored \
            into tosca.db as `restore` does it (D12 first, WAL mode, the restore recorded in \
            its safety log). With --extract-sessions every bundle is extracted into its \
            session's folder (the bundle extract rules). --data-dir may be new (it is \
            created); a data folder that holds a tosca.db is refused (73). An encrypted \
            device's copy needs its key (--key-file), its encrypted bundles an identity.

            Examples:
              tosca-maint import --repo /media/tosca-backup/repo --password-file pass --data-dir /var/lib/tosca
              tosca-maint import --repo rest:https://backup.clinic.example/tosca-dev1/ --host dev1 --extract-sessions --data-dir /var/lib/tosca

            Exit codes: 0 imported, 64 usage, 65 the snapshot's files differ from its \
            export.json or the copy fails D12, 66 no repository or no such snapshot, 73 the \
            data folder holds a database, 74 I/O error, 75 unreachable or locked, 77 wrong \
            password or key, 78 restic missing.
            """)
    @OptionGroup var shared: SharedOptions
    @OptionGroup var repository: RepositoryOptions
    @Option(help: "The snapshot: an id (or its prefix) or latest.") var snapshot = "latest"
    @Option(help: "Only the snapshots of this device id.") var host: String?
    @Flag(help: "Also extract every session folder from its bundle.") var extractSessions = false
    @Option(help: "An age identity file, for encrypted bundles (with --extract-sessions).") var identity: String?

    func run() throws {
        try runReporting {
            let repo = try repository.repository()
            if let d = shared.dataDir, d.isEmpty { throw ToolFailure(.usage, "--data-dir is empty") }
            let root = DataFolder.resolve(shared.dataDir)
            let identities = try identity.map { try readIdentities($0) } ?? []
            // The one command besides the recorder that creates a data folder.
            try AtomicFile.makeDirectory(root)
            let folder = DataFolder(root: root, key: try KeySource.resolve(keyFile: shared.keyFile))
            try folder.continueAsOwnerIfRoot()
            let o = try ImportJob(folder: folder, restic: try Restic(repository: repo))
                .run(snapshotID: snapshot, host: host, extractSessions: extractSessions, identities: identities) { line in
                    if !shared.json { FileHandle.standardError.write(Data("tosca-maint: \(line)\n".utf8)) }
                    Journal.shared.status(line)
                }
            if shared.json {
                try printJSON(["snapshot_id": o.snapshot.id, "host": o.snapshot.host, "database": o.database,
                               "bundles": String(o.bundles), "sessions_extracted": String(o.sessionsExtracted.count)])
            } else {
                print("imported snapshot \(o.snapshot.shortID) of host \(o.snapshot.host) (\(o.snapshot.time)): \(o.database), \(o.bundles) bundles\(extractSessions ? ", \(o.sessionsExtracted.count) session folders" : "")")
            }
            return 0
        }
    }
}
