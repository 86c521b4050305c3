import ArgumentParser
import ToscaCore
import ToscaMaint

/// `tosca-maint`: backup, migration and integrity maintenance of a TOSCA data folder.
struct ToscaMaintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tosca-maint",
        abstract: "Backup, migration and integrity maintenance for TOSCA's SQLite database.",
        discussion: """
            Every command takes --data-dir (default $TOSCA_DATA_DIR, else ./data) and --key-file \
            (an encrypted database's key); those that report take --json.

            Exit codes: 0 ok, 1 unhealthy, 64 usage, 65 data error (corruption, tampering), \
            66 input missing, 73 cannot create output, 74 I/O error, 75 busy or locked (retry \
            later), 77 permission or key, 78 configuration.
            """,
        version: toscaMaintVersion,
        subcommands: [BackupCommand.self, VerifyCommand.self, RestoreCommand.self, MigrateCommand.self, SnapshotCommand.self, KeygenCommand.self, EncryptCommand.self, RekeyCommand.self, ListCommand.self, PruneCommand.self, StatusCommand.self, InspectCommand.self, QuarantineCommand.self, BundleCommand.self, ProtectCommand.self, ExportCommand.self, ImportCommand.self, AlertCommand.self])
}

ToscaMaintCommand.main()
