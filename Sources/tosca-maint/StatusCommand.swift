import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Is there a fresh verified backup, and did the last check pass?",
        discussion: """
            Shows the age of the newest verified backup, the most recent check and its result, \
            space used by backups and by safety copies, free space, whether the live database \
            is encrypted, its schema version, and when a restore drill last passed. Safety-log \
            rows another program inserted without chain columns and not sealed yet are shown \
            as a warning (their number and the oldest time stamp; the exit code is not changed).

            Examples:
              tosca-maint status
              tosca-maint status --max-age 26 --prometheus /var/lib/prometheus/node-exporter/tosca.prom

            Once an export repository is configured (/etc/tosca-maint/export.conf or \
            TOSCA_EXPORT_REPO) or an export was recorded, the last verified export must be \
            newer than --max-export-age days; a device that never exported and has no \
            configuration is not stale.

            After-session protection: the finished sessions whose marker still waits in \
            spool/ended (not yet bundled, backed up and, where an export repository is \
            configured, exported by `protect`), the oldest of them and its age, and spool \
            entries protect set aside.

            Exit codes: 0 healthy, 1 no verified backup newer than --max-age hours, no passing \
            restore drill within --max-drill-age days, no verified export within \
            --max-export-age days where exports are expected, or a finished session waiting \
            longer than --max-unprotected-age, 65 the most recent check failed, or a \
            backup's last check failed, or a suspect copy (possible tampering) is in the catalog \
            (set failed and suspect copies aside with `tosca-maint quarantine --failed`), or the \
            catalog fails its own checks: a copy whose database file is lost (its manifest \
            left), a manifest that cannot be read, a plaintext copy on an encrypted device; \
            64 empty --data-dir, 66 no data folder there, 73 a layout folder (backups/, \
            backups/quarantine/) is a symbolic link.
            """)

    @OptionGroup var shared: SharedOptions
    @Option(help: "Hours after which the newest verified backup counts as stale.") var maxAge: Double = 26
    @Option(help: "Days after which the last passing restore drill counts as stale.") var maxDrillAge: Double = 8
    @Option(help: "Days after which the last verified export counts as stale (where exports are expected).") var maxExportAge: Double = 35
    @Option(help: ArgumentHelp("How long a finished session may wait in spool/ended before status exits 1: 90s, 15m, 24h, 2d (default 15m where an export repository is configured, else 24h).", valueName: "duration"))
    var maxUnprotectedAge: String?
    @Option(help: "Also write the figures as a node_exporter textfile (written atomically).") var prometheus: String?

    /// `90s`, `15m`, `24h`, `2d` in seconds.
    static func seconds(_ text: String) -> Double? {
        guard let unit = text.last, let n = Double(text.dropLast()), n > 0, n.isFinite else { return nil }
        switch unit { case "s": return n; case "m": return n * 60; case "h": return n * 3600; case "d": return n * 86_400; default: return nil }
    }

    func validate() throws {
        guard maxAge > 0 else { throw ValidationError("--max-age must be positive") }
        guard maxExportAge > 0 else { throw ValidationError("--max-export-age must be positive") }
        if let m = maxUnprotectedAge, Self.seconds(m) == nil { throw ValidationError("--max-unprotected-age takes a positive duration with its unit: 90s, 15m, 24h, 2d") }
    }

    func run() throws {
        try runReporting {
            let report = try StatusReport.make(try shared.folder(), maxAgeHours: maxAge, maxDrillAgeDays: maxDrillAge, maxExportAgeDays: maxExportAge,
                                           maxUnprotectedAgeSeconds: maxUnprotectedAge.flatMap(Self.seconds))
            if let prometheus {
                do { try AtomicFile.write(Array(report.prometheus.utf8), to: prometheus, mode: 0o644) } catch let e as POSIXFailure {
                    throw ToolFailure(.cantCreate, "cannot write \(prometheus): \(e)")
                }
            }
            Journal.shared.log(report.exitCode == 0 ? .info : .warning, "status: \(report.verdict)", id: .statusReport,
                               fields: ["TOSCA_STATUS_EXIT": String(report.exitCode)])
            if shared.json { try printJSON(report) } else { print(report.text, terminator: "") }
            return report.exitCode
        }
    }
}
