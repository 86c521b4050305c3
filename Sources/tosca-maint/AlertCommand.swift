import ArgumentParser
import Foundation
import ToscaMaint

struct AlertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alert",
        abstract: "Report a failed tosca-maint unit to the journal (run by tosca-maint-failure@.service).",
        discussion: """
            The OnFailure= handler of the tosca-maint units. It writes one journal entry of \
            priority crit with its own MESSAGE_ID, naming the failed unit, its result, its exit \
            status and what that status means, and the journalctl command that shows the \
            failed run. systemd passes the result in MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE, \
            MONITOR_EXIT_STATUS and MONITOR_INVOCATION_ID. `journalctl -x` explains the entry \
            from the tosca-maint message catalog.

            Example (what the unit runs):
              tosca-maint alert --unit tosca-maint-backup.service

            Exit codes: 0 the alert was written, 64 no unit named.
            """)

    @Option(help: "The failed unit (the failure@ instance name).") var unit: String

    func validate() throws {
        guard !unit.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--unit must name the failed unit") }
    }

    func run() throws {
        try runReporting {
            let alert = UnitFailureAlert(unit: unit)
            alert.send()
            return 0
        }
    }
}
