import Foundation
import ToscaCore

/// Grandfather-father-son retention over backups (D6), and safety copies when named.
public struct PrunePlan: Sendable {
    public struct Item: Sendable {
        public let entry: CatalogEntry
        public let reason: String
    }
    public var remove: [Item] = []
    public var keep: [Item] = []

    /// Plans without touching anything. Days, weeks and months are local calendar ones.
    /// `anchor` (``LiveCheck/anchor(_:)``) is always kept: after a
    /// restore of an older copy it may be neither recent nor the newest verified backup.
    public static func make(catalog: Catalog, keepDaily: Int, keepWeekly: Int, keepMonthly: Int,
                            safetyCopiesOlderThanDays: Int?, now: UTCTime, timeZone: TimeZone = .current,
                            anchor: String? = nil) -> PrunePlan {
        var plan = PrunePlan()
        var cal = Calendar(identifier: .iso8601)
        cal.timeZone = timeZone
        let newestVerified = catalog.newestVerifiedBackup?.name
        var days: [String] = [], weeks: [String] = [], months: [String] = []
        var sessionCopies: [CatalogEntry] = []
        for e in catalog.backups.reversed() { // newest first
            if e.kind == .session { sessionCopies.append(e); continue }
            guard let created = e.created?.date else { plan.keep.append(Item(entry: e, reason: "creation time unreadable")); continue }
            let c = cal.dateComponents([.year, .month, .day, .yearForWeekOfYear, .weekOfYear], from: created)
            let (y, m, d) = (c.year ?? 0, c.month ?? 0, c.day ?? 0)
            let day = "\(y)-\(m)-\(d)", week = "\(c.yearForWeekOfYear ?? 0)-W\(c.weekOfYear ?? 0)", month = "\(y)-\(m)"
            var reasons: [String] = []
            if e.name == newestVerified { reasons.append("newest verified backup") }
            if e.name == anchor { reasons.append("the copy the live safety log is proven against") }
            if !days.contains(day) && days.count < keepDaily { days.append(day); reasons.append("daily \(days.count)/\(keepDaily)") }
            if !weeks.contains(week) && weeks.count < keepWeekly { weeks.append(week); reasons.append("weekly \(weeks.count)/\(keepWeekly)") }
            if !months.contains(month) && months.count < keepMonthly { months.append(month); reasons.append("monthly \(months.count)/\(keepMonthly)") }
            if reasons.isEmpty {
                plan.remove.append(Item(entry: e, reason: "beyond retention (\(keepDaily) daily, \(keepWeekly) weekly, \(keepMonthly) monthly)"))
            } else {
                plan.keep.append(Item(entry: e, reason: reasons.joined(separator: ", ")))
            }
        }
        // Session backups (protect's, taken right after sessions end): the newest of each
        // day for the last `keepDaily` days, by that rule never more of them than of the
        // other backups kept (the newest verified backup and the anchor stay whatever
        // their kind): a busy day of sessions does not fill the disk, and the nightly
        // copies stay the history.
        let otherBackupsKept = plan.keep.count
        var sessionDays: [String] = []
        var sessionKept = 0
        for e in sessionCopies {
            var reasons: [String] = []
            if e.name == newestVerified { reasons.append("newest verified backup") }
            if e.name == anchor { reasons.append("the copy the live safety log is proven against") }
            if let created = e.created?.date {
                let c = cal.dateComponents([.year, .month, .day], from: created)
                let day = "\(c.year ?? 0)-\(c.month ?? 0)-\(c.day ?? 0)"
                if !sessionDays.contains(day) && sessionDays.count < keepDaily && sessionKept < otherBackupsKept {
                    sessionDays.append(day)
                    reasons.append("session copy, newest of its day \(sessionDays.count)/\(keepDaily)")
                }
            } else {
                reasons.append("creation time unreadable")
            }
            if reasons.isEmpty {
                plan.remove.append(Item(entry: e, reason: "session copy beyond retention (the newest of each of \(keepDaily) days, at most as many as the other backups kept: \(otherBackupsKept))"))
            } else {
                sessionKept += 1
                plan.keep.append(Item(entry: e, reason: reasons.joined(separator: ", ")))
            }
        }
        for e in catalog.entries where !e.isBackup {
            if e.name == anchor {
                plan.keep.append(Item(entry: e, reason: "the copy the live safety log is proven against"))
                continue
            }
            guard let days = safetyCopiesOlderThanDays, let created = e.created else {
                plan.keep.append(Item(entry: e, reason: "safety copy (pruned only with --safety-copies)"))
                continue
            }
            let age = Double(now.seconds - created.seconds) / 86_400
            if age > Double(days) {
                plan.remove.append(Item(entry: e, reason: "\(e.kind?.rawValue ?? "safety") copy \(Int(age)) days old, older than \(days)"))
            } else {
                plan.keep.append(Item(entry: e, reason: "safety copy \(Int(age)) days old"))
            }
        }
        return plan
    }

    /// Removes what the plan says: the manifest first, then the database file. A crash in
    /// between leaves a database file without a manifest (not a backup: the next run moves
    /// it to quarantine), never a manifest without its file, which would be a lost copy.
    public func apply(backupsDirectory: String) throws {
        for item in remove {
            if unlink(item.entry.manifestPath) != 0 && errno != ENOENT { throw POSIXFailure(operation: "remove \(item.entry.manifestPath)", code: errno) }
            if unlink(item.entry.path) != 0 && errno != ENOENT { throw POSIXFailure(operation: "remove \(item.entry.path)", code: errno) }
            Journal.shared.log(.info, "pruned \(item.entry.name): \(item.reason)", id: .pruneRemoved, fields: ["TOSCA_BACKUP_PATH": item.entry.path])
        }
        if !remove.isEmpty { try AtomicFile.syncDirectory(backupsDirectory) }
    }
}

/// `tosca-maint prune`: housekeeping, then the retention plan, applied unless a dry run.
public struct PruneJob: Sendable {
    public let folder: DataFolder
    public init(folder: DataFolder) { self.folder = folder }

    /// What a prune did (or would do).
    public struct Outcome: Sendable {
        public let plan: PrunePlan
        public let housekeeping: Housekeeping.Result
        /// Manifests whose copy is lost: kept (evidence, and they may anchor the timeline).
        public let lostManifests: [String]
    }

    /// The caller holds `.maint.lock`.
    public func run(keepDaily: Int, keepWeekly: Int, keepMonthly: Int, safetyCopiesOlderThanDays: Int?, dryRun: Bool) throws -> Outcome {
        let tidy = try Housekeeping.run(try folder.scanCatalog(), dryRun: dryRun)
        let catalog = try folder.scanCatalog()
        let plan = PrunePlan.make(catalog: catalog, keepDaily: keepDaily, keepWeekly: keepWeekly, keepMonthly: keepMonthly,
                                  safetyCopiesOlderThanDays: safetyCopiesOlderThanDays, now: .now(),
                                  anchor: LiveCheck.anchor(catalog)?.name)
        if !dryRun { try plan.apply(backupsDirectory: catalog.backupsDirectory) }
        return Outcome(plan: plan, housekeeping: tidy, lostManifests: catalog.orphanManifests)
    }
}
