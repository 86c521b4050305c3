import ArgumentParser
import ToscaCore
import ToscaMaint

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a data folder holds: schema, tables, sessions, safety-log chain.",
        discussion: """
            Read-only and lock-free: safe while the recorder runs. Runs PRAGMA quick_check and \
            walks the safety-log hash chain from seq 1.

            Example:
              tosca-maint inspect --data-dir ./data

            Exit codes: 0 sound, 65 quick_check failed or the chain is broken, 66 no database, \
            77 key problem, 78 SQLCipher too old.
            """)

    @OptionGroup var shared: SharedOptions

    @Option(name: .long, help: "How many of the newest sessions to list.")
    var sessions: Int = 10

    func run() throws {
        try runReporting {
            let report = try Inspection.run(try shared.folder(), recentLimit: sessions)
            if shared.json { try printJSON(report) } else { print(report.text, terminator: "") }
            // A v0.9.12 database has no chain yet: only quick_check counts for it.
            let sound = report.schemaVersion == 0 ? report.quickCheck == ["ok"] : report.isSound
            return sound ? 0 : ExitStatus.dataError.rawValue
        }
    }
}
