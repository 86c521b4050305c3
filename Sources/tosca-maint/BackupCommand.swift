import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

extension CopyMethod: ExpressibleByArgument {}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Hot backup of <data>/tosca.db, verified before it is published.",
        discussion: """
            Copies a pinned snapshot of the live database while the recorder keeps writing (it \
            never waits on the backup), into <data>/backups/<name>.partial: the database's pages \
            as they are (an encrypted database's stay encrypted: same key, no crypto), each page \
            from the database file or from its last committed WAL frame in the snapshot, in large \
            reads and writes; when that cannot be proven safe (the WAL index changing under \
            every attempt, a frame whose checksum does not hold), through SQLite's online-backup \
            API instead, and the journal says why (--copy-method). Then verifies the copy \
            (integrity_check, cipher_integrity_check when encrypted, the safety-log chain from \
            seq 1, page count, chain head and every table's row count against the source \
            snapshot); writes its manifest (SHA-256, sizes, schema version, row counts, \
            foreign-key violations, chain head, encryption and key id); publishes the database file \
            and then its manifest atomically; logs the chain head to the journal; prints the path. \
            An encrypted database is copied keyed with the same key. Before copying, safety-log \
            rows another program inserted without chain columns are sealed into the chain, and \
            finished sessions without a seal get one (unless the recorder runs: it does both). \
            After publishing, on an encrypted device, plaintext copies an interrupted cutover \
            left in backups/ are converted; then the catalog is checked as a whole (exit 65 \
            when a copy is lost, a manifest unreadable or a plaintext copy left).

            Names: tosca_YYYYMMDD.db for the first backup of a UTC day, then tosca_YYYYMMDD_HHMMSS.db, \
            then _2, _3, ... Never overwrites.

            A backup becomes the anchor that `verify --live` checks the live safety log \
            against. When the live safety log does not extend the newest verified backup's chain \
            head (entries changed or removed since: possible tampering), the copy is kept for \
            its data as a suspect copy (tosca_..._suspect.db), never a backup and never the \
            anchor, and the run exits 65. \
            --new-timeline REASON accepts such a change when it is known and legitimate (a \
            migration undone and run again): the copy is \
            verified and the reason goes into its manifest and the journal.

            Examples:
              tosca-maint backup --data-dir /var/lib/tosca --kind daily
              tosca-maint backup --new-timeline "migration undone on 2026-11-28, run again today"

            Exit codes: 0 published, 65 the copy failed verification (nothing published) or the \
            live safety log does not extend the last backup (kept as a suspect copy), 66 no \
            database, 73 backup folder not writable, 74 I/O error or disk full (nothing left \
            behind), 75 another maintenance run is going (or --copy-method raw and the raw copy \
            is not possible now), 77 key problem.
            """)

    @OptionGroup var shared: SharedOptions

    @Option(help: "daily (the timer) or manual.")
    var kind: Kind = .manual

    enum Kind: String, ExpressibleByArgument, CaseIterable { case daily, manual }

    @Option(name: .customLong("new-timeline"), help: ArgumentHelp("Accept a live safety log that does not extend the last backup, for this reason.", valueName: "reason"))
    var newTimeline: String?

    @Option(name: .customLong("copy-method"), help: ArgumentHelp("auto (the raw page copy when it is safe, else the online-backup API), raw (refuse, 75, when the raw copy is not possible) or backup-api.", valueName: "method"))
    var copyMethod: CopyMethod = .auto

    func validate() throws {
        if let newTimeline, newTimeline.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--new-timeline needs the reason the change is legitimate")
        }
    }

    func run() throws {
        try runReporting {
            var job = CopyJob(folder: try shared.writableFolder(), kind: kind == .daily ? .daily : .manual)
            job.showProgress = !shared.json
            job.newTimelineReason = newTimeline
            job.copyMethod = copyMethod
            let copy = try job.run()
            if shared.json {
                var out: [String: JSONValue] = ["path": .string(copy.path), "manifest": try JSONValue.from(copy.manifest)]
                if let c = copy.copy {
                    var how: [String: JSONValue] = ["method": .string(c.method.rawValue), "wal_pages": .int(Int64(c.walPages)), "wal_frames": .int(Int64(c.walFrames)),
                                                    "paced": .bool(c.paced)]
                    if let why = c.fallbackReason { how["fallback_reason"] = .string(why) }
                    out["copy"] = .object(how)
                }
                try printJSON(out)
            } else { print(copy.path) }
            // The copy is published; the catalog as a whole must hold too (lost copies,
            // unreadable manifests, plaintext copies on an encrypted device).
            let problems = CatalogAudit.problems(try job.folder.scanCatalog())
            if !problems.isEmpty {
                throw ToolFailure(.dataError, "the backup is published, but the catalog fails its checks:\n  " + problems.joined(separator: "\n  "),
                                  hint: "tosca-maint list; a lost copy: runbook restore-after-disk-fault.md, then quarantine --failed; a plaintext copy: tosca-maint encrypt --key-file KEY")
            }
            return 0
        }
    }
}
