import Foundation
import ToscaCore

extension RestoreJob {
    /// D12's drill: verifies the copy, restores it into a scratch folder in `backups/`,
    /// runs steps 2-3 on the result, records the result in the copy's manifest. Changes
    /// nothing else.
    public func drill(_ entry: CatalogEntry) throws -> [String] {
        guard entry.manifest != nil else { return ["\(entry.name): no manifest"] }
        var problems = try Verification.problems(of: entry, key: key)
        if problems.isEmpty {
            // A scratch folder beside the copies (same filesystem, so the space is known);
            // leftovers of an interrupted drill go first. The caller holds .maint.lock.
            let backups = folder.backups
            for n in (try? FileManager.default.contentsOfDirectory(atPath: backups)) ?? [] where n.hasPrefix(".drill-") {
                try? FileManager.default.removeItem(atPath: backups + "/" + n)
            }
            let scratch = backups + "/.drill-\(getpid())"
            try AtomicFile.makeDirectory(scratch)
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            do {
                // Copies, then runs D12 steps 2-3 on the restored file against the facts.
                try restoreFile(entry, to: scratch + "/tosca.db", replace: false)
            } catch let f as ToolFailure {
                problems.append(f.message)
            }
        }
        try Verification.record(ManifestCheck(level: "drill", ok: problems.isEmpty, problems: problems), for: entry)
        return problems
    }

    /// `restore --drill`: the copy (the newest verified backup, or one by path) restored
    /// into a scratch folder and checked, under `.maint.lock`, the result journaled and
    /// recorded in its manifest. Returns the copy and what failed (empty: passed).
    public func runDrill(_ selection: RestoreSelection) throws -> (entry: CatalogEntry, problems: [String]) {
        let lock = try folder.takeMaintenanceLock()
        defer { lock.unlock() }
        let entry = try select(selection, catalog: try folder.scanCatalog())
        let problems = try drill(entry)
        if problems.isEmpty {
            Journal.shared.log(.info, "restore drill of \(entry.path) passed", id: .drillPassed, fields: ["TOSCA_BACKUP_PATH": entry.path])
        } else {
            Journal.shared.log(.err, "restore drill of \(entry.path) FAILED: \(problems.joined(separator: "; "))", id: .drillFailed,
                               fields: ["TOSCA_BACKUP_PATH": entry.path])
        }
        return (entry, problems)
    }
}
