import Foundation

/// What `tosca-maint-failure@.service` reports when another tosca-maint unit fails (D9):
/// one journal entry with its own `MESSAGE_ID`, naming the failed unit, how it ended and
/// what its exit status means (D10).
///
/// systemd (v251 and later) hands the failed unit's result to an `OnFailure=` service in
/// `MONITOR_SERVICE_RESULT`, `MONITOR_EXIT_CODE`, `MONITOR_EXIT_STATUS`,
/// `MONITOR_INVOCATION_ID` and `MONITOR_UNIT` (systemd.exec(5), "Environment variables
/// in spawned processes").
public struct UnitFailureAlert: Sendable, Equatable {
    public let unit: String
    public let result: String?
    public let exitCode: String?
    public let exitStatus: String?
    public let invocationID: String?

    /// Reads the `MONITOR_*` variables; `unit` (the template instance) is used when
    /// `MONITOR_UNIT` is absent.
    public init(unit: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        self.unit = value("MONITOR_UNIT") ?? unit
        result = value("MONITOR_SERVICE_RESULT")
        exitCode = value("MONITOR_EXIT_CODE")
        exitStatus = value("MONITOR_EXIT_STATUS")
        invocationID = value("MONITOR_INVOCATION_ID")
    }

    /// The meaning of a tosca-maint exit status (D10), or of a signal name.
    public static func meaning(ofStatus status: String) -> String? {
        switch status {
        case "1": return "unhealthy: no fresh verified backup, or no recent restore drill"
        case "64": return "usage error: the unit's command line is wrong"
        case "65": return "a verification failed: corruption, tampering or a manifest that does not match"
        case "66": return "input missing: no database or no backup to work on"
        case "73": return "cannot create output"
        case "74": return "I/O error, disk full included"
        case "75": return "busy: the recorder or another maintenance run held a lock"
        case "77": return "permission or key: the key is missing, wrong or badly protected"
        case "78": return "configuration error (SQLCipher too old, schema newer than this software)"
        case "KILL", "TERM", "INT", "ABRT", "SEGV", "BUS": return "killed by SIG\(status)"
        default: return nil
        }
    }

    /// The entry's MESSAGE text.
    public var message: String {
        var text = "\(unit) failed"
        var how: [String] = []
        if let result { how.append("result \(result)") }
        if let exitStatus {
            if let exitCode, exitCode != "exited" { how.append("\(exitCode) \(exitStatus)") } else { how.append("exit status \(exitStatus)") }
        }
        if !how.isEmpty { text += " (\(how.joined(separator: ", ")))" }
        if let exitStatus, let meaning = Self.meaning(ofStatus: exitStatus) { text += ": \(meaning)" }
        if result == "timeout" { text += ": it ran past TimeoutStartSec" }
        if let invocationID { text += ". Its log: journalctl _SYSTEMD_INVOCATION_ID=\(invocationID)" }
        return text
    }

    /// The entry's structured fields.
    public var fields: [String: String] {
        var f = ["TOSCA_FAILED_UNIT": unit]
        if let result { f["TOSCA_SERVICE_RESULT"] = result }
        if let exitCode { f["TOSCA_EXIT_CODE"] = exitCode }
        if let exitStatus { f["TOSCA_EXIT_STATUS"] = exitStatus }
        if let invocationID { f["TOSCA_FAILED_INVOCATION_ID"] = invocationID }
        return f
    }

    /// Writes the alert (priority crit) to the journal, or to stderr outside systemd.
    public func send(to journal: Journal = .shared) {
        journal.log(.crit, message, id: .unitFailed, fields: fields)
    }
}
