import Foundation
import ToscaCore

/// `tosca-maint status`: is there a fresh verified backup, and did the last check pass (D10).
public struct StatusReport: Codable, Sendable {
    public struct LastCheck: Codable, Sendable {
        public let copy: String
        public let level: String
        public let timeUTC: String
        public let result: String
        public let problems: [String]
        enum CodingKeys: String, CodingKey { case copy, level, result, problems; case timeUTC = "time_utc" }
    }
    public let dataDir: String
    public let newestVerifiedBackup: String?
    public let newestVerifiedCreatedUTC: String?
    public let newestVerifiedAgeSeconds: Int64?
    public let maxAgeHours: Double
    public let lastCheck: LastCheck?
    public let backupCount: Int
    public let backupBytes: Int64
    public let safetyCopyCount: Int
    public let safetyCopyBytes: Int64
    public let quarantinedCount: Int
    public let freeBytes: Int64?
    public let encrypted: Bool?
    public let schemaVersion: Int?
    public let schema: String?
    public let lastDrillUTC: String?
    public let maxDrillAgeDays: Double
    /// Session bundles (D17): sessions bundled, their bytes, failed bundles, and finished
    /// sessions older than 48 h with no bundle.
    public let bundledSessions: Int
    public let bundleBytes: Int64
    public let failedBundles: [String]
    public let unbundledSessions: [Int64]
    /// Catalog-wide failed checks (``CatalogAudit``): lost copies, unreadable manifests,
    /// plaintext copies on an encrypted device.
    public let catalogProblems: [String]
    /// Safety-log rows inserted without chain columns, not sealed yet (a warning).
    public let unsealedSafetyRows: Int?
    public let oldestUnsealedTimestamp: String?
    public let oldestUnsealedAgeSeconds: Int64?
    /// Off-device exports (D19): the last verified one recorded in exports/, and whether
    /// exports are expected (configured, or one was ever recorded).
    public let lastExportUTC: String?
    public let lastExportAgeSeconds: Int64?
    public let exportsRecorded: Int
    public let exportExpected: Bool
    public let maxExportAgeDays: Double
    /// After-session protection (``SessionSpool``): finished sessions whose marker is still
    /// in spool/ended/ (not yet bundled, backed up and, where configured, exported), the
    /// oldest of them, the threshold, and spool entries `protect` set aside.
    public let unprotectedSessions: Int
    public let oldestUnprotectedSession: Int64?
    public let oldestUnprotectedAgeSeconds: Int64?
    public let maxUnprotectedAgeSeconds: Double
    public let setAsideSpoolEntries: Int
    public let verdict: String
    public let exitCode: Int32

    enum CodingKeys: String, CodingKey {
        case schema, encrypted, verdict
        case dataDir = "data_dir", newestVerifiedBackup = "newest_verified_backup", newestVerifiedCreatedUTC = "newest_verified_created_utc"
        case newestVerifiedAgeSeconds = "newest_verified_age_seconds", maxAgeHours = "max_age_hours", lastCheck = "last_check"
        case backupCount = "backup_count", backupBytes = "backup_bytes", safetyCopyCount = "safety_copy_count"
        case safetyCopyBytes = "safety_copy_bytes", quarantinedCount = "quarantined_count", freeBytes = "free_bytes"
        case schemaVersion = "schema_version", exitCode = "exit_code"
        case lastDrillUTC = "last_drill_utc", maxDrillAgeDays = "max_drill_age_days", catalogProblems = "catalog_problems"
        case bundledSessions = "bundled_sessions", bundleBytes = "bundle_bytes", failedBundles = "failed_bundles", unbundledSessions = "unbundled_sessions"
        case unsealedSafetyRows = "unsealed_safety_rows", oldestUnsealedTimestamp = "oldest_unsealed_timestamp", oldestUnsealedAgeSeconds = "oldest_unsealed_age_seconds"
        case lastExportUTC = "last_export_utc", lastExportAgeSeconds = "last_export_age_seconds", exportsRecorded = "exports_recorded"
        case exportExpected = "export_expected", maxExportAgeDays = "max_export_age_days"
        case unprotectedSessions = "unprotected_sessions", oldestUnprotectedSession = "oldest_unprotected_session"
        case oldestUnprotectedAgeSeconds = "oldest_unprotected_age_seconds", maxUnprotectedAgeSeconds = "max_unprotected_age_seconds"
        case setAsideSpoolEntries = "set_aside_spool_entries"
    }

    /// The default of `--max-unprotected-age`: 15 minutes where an export repository is
    /// configured (a session should leave the disk within one protect run), else 24 hours.
    public static func defaultMaxUnprotectedAge(exportConfigured: Bool) -> Double { exportConfigured ? 900 : 86_400 }

    /// The markers in spool/ended/ (a half-written one of a writer that died counts for
    /// its session): each session and the age of its marker, oldest first.
    public static func unprotected(_ folder: DataFolder, now: UTCTime) -> [(session: Int64, ageSeconds: Int64)] {
        let ended = SessionSpool.ended(folder.root)
        guard (try? LayoutFolder.check(SessionSpool.spool(folder.root))) == true, (try? LayoutFolder.check(ended)) == true else { return [] }
        var found: [Int64: Int64] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: ended)) ?? [] {
            guard let id = SessionSpool.sessionID(ofMarker: name) ?? SessionSpool.temporary(name)?.sessionID else { continue }
            var st = stat()
            guard lstat(ended + "/" + name, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            let age = max(0, now.seconds - Int64(st.st_mtim.tv_sec))
            found[id] = max(found[id] ?? 0, age)
        }
        return found.map { ($0.key, $0.value) }.sorted { $0.ageSeconds != $1.ageSeconds ? $0.ageSeconds > $1.ageSeconds : $0.session < $1.session }
    }

    /// Where an export repository is configured for the units (D19).
    public static let exportConfig = "/etc/tosca-maint/export.conf"

    /// `exportConfigured`: an export repository is set up (by default: the export
    /// configuration file exists or `TOSCA_EXPORT_REPO` is set).
    public static func make(_ folder: DataFolder, maxAgeHours: Double, maxDrillAgeDays: Double = 8, maxExportAgeDays: Double = 35,
                            exportConfigured: Bool = FileManager.default.fileExists(atPath: StatusReport.exportConfig)
                                || !(ProcessInfo.processInfo.environment["TOSCA_EXPORT_REPO"] ?? "").isEmpty,
                            maxUnprotectedAgeSeconds: Double? = nil,
                            now: UTCTime = .now()) throws -> StatusReport {
        let key = folder.key
        let catalog = try folder.scanCatalog()
        let newest = catalog.newestVerifiedBackup
        let preciseAge = newest?.created.map { Double(now.seconds - $0.seconds) + Double(now.microseconds - $0.microseconds) / 1e6 }
        let age = preciseAge.map { Int64($0.rounded(.down)) }
        var last: (CatalogEntry, ManifestCheck)? = nil
        for e in catalog.entries {
            for c in e.manifest?.checks ?? [] where c.timeUTC >= (last?.1.timeUTC ?? "") { last = (e, c) }
        }
        let lastDrill = catalog.entries.flatMap { $0.manifest?.checks ?? [] }.filter { $0.level == "drill" && $0.ok }.map(\.timeUTC).max()
        let drillAge = lastDrill.flatMap { UTCTime(iso8601: $0) }.map { Double(now.seconds - $0.seconds) }
        func size(_ e: CatalogEntry) -> Int64 { fileSize(e.path) }
        var fs = statvfs()
        let free: Int64? = statvfs(FileManager.default.fileExists(atPath: catalog.backupsDirectory) ? catalog.backupsDirectory : folder.root, &fs) == 0
            ? Int64(fs.f_bavail) * Int64(fs.f_frsize) : nil
        let dbPath = folder.database
        var encrypted: Bool? = nil, version: Int? = nil, schema: String? = nil
        var unsealed: (count: Int, oldest: String?)? = nil
        var unsealedAge: Int64? = nil
        if FileManager.default.fileExists(atPath: dbPath) {
            encrypted = try FileHeader.classify(path: dbPath) != .plaintext
            if encrypted == false || key != nil, let db = try? Database(path: dbPath, options: .init(readOnly: true, key: key)),
               let s = try? Migrator().status(db) {
                version = s.version
                schema = s.versionDescription
                unsealed = try? SafetyChain.unsealed(db)
                unsealedAge = unsealed?.oldest.flatMap { Sealing.age(of: $0, in: db, now: now) }
            }
        }
        let bundles = try BundleJob(folder: folder).census(now: now)
        let exports = ExportJob.recordedExports(folder)
        let lastExport = exports.map(\.createdUTC).max()
        let exportAge = lastExport.flatMap { UTCTime(iso8601: $0) }.map { now.seconds - $0.seconds }
        // A device that never exported and has no configuration is not stale.
        let exportExpected = exportConfigured || !exports.isEmpty
        let unprotected = unprotected(folder, now: now)
        let maxUnprotected = maxUnprotectedAgeSeconds ?? defaultMaxUnprotectedAge(exportConfigured: exportConfigured)
        let setAside = (try? FileManager.default.contentsOfDirectory(atPath: SessionSpool.spool(folder.root) + "/set-aside"))?.count ?? 0
        let verdict: String, code: Int32
        let failedBackup = catalog.backups.last { $0.manifest?.lastCheck?.ok == false }
        let suspect = catalog.entries.last { $0.kind == .suspect }
        let audit = CatalogAudit.problems(catalog)
        if let suspect {
            verdict = "possible tampering: \(suspect.name) is a suspect copy (the live safety log did not extend the last backup's head when it was taken); see the runbook tampering-reported.md"
            code = ExitStatus.dataError.rawValue
        } else if !audit.isEmpty {
            verdict = "the catalog FAILS its checks: " + audit.prefix(3).joined(separator: "; ") + (audit.count > 3 ? "; and \(audit.count - 3) more" : "")
            code = ExitStatus.dataError.rawValue
        } else if let last, !last.1.ok {
            verdict = "the last check (\(last.1.level) of \(last.0.name) at \(last.1.timeUTC)) FAILED: \(last.1.problems.prefix(3).joined(separator: "; "))"
            code = ExitStatus.dataError.rawValue
        } else if let failedBackup, let check = failedBackup.manifest?.lastCheck {
            verdict = "backup \(failedBackup.name) FAILED its last check (\(check.level) at \(check.timeUTC)): \(check.problems.prefix(3).joined(separator: "; "))"
            code = ExitStatus.dataError.rawValue
        } else if !bundles.failed.isEmpty {
            verdict = "session bundle(s) FAILED their last check: \(bundles.failed.prefix(3).joined(separator: ", "))"
            code = ExitStatus.dataError.rawValue
        } else if let oldest = unprotected.first, Double(oldest.ageSeconds) > maxUnprotected {
            verdict = "session \(oldest.session) ended \(Self.duration(oldest.ageSeconds)) ago and is not yet \(exportConfigured ? "off the disk (bundled, backed up and exported)" : "bundled and backed up") (threshold \(Self.duration(Int64(maxUnprotected)))); \(unprotected.count) session(s) waiting: journalctl -u tosca-maint-session.service, or run tosca-maint protect"
            code = ExitStatus.unhealthy.rawValue
        } else if newest == nil {
            verdict = "no verified backup"
            code = ExitStatus.unhealthy.rawValue
        } else if let preciseAge, preciseAge > maxAgeHours * 3600 {
            verdict = "the newest verified backup is \(String(format: "%.1f", preciseAge / 3600)) hours old, older than \(maxAgeHours)"
            code = ExitStatus.unhealthy.rawValue
        } else if (drillAge ?? .infinity) > maxDrillAgeDays * 86_400 {
            verdict = lastDrill.map { "the last passing restore drill (\($0)) is older than \(maxDrillAgeDays) days" }
                ?? "no restore drill has passed yet (tosca-maint restore --drill)"
            code = ExitStatus.unhealthy.rawValue
        } else if !bundles.unbundled.isEmpty {
            verdict = "\(bundles.unbundled.count) finished session(s) older than 48 h have no bundle (first: session \(bundles.unbundled[0])): tosca-maint bundle"
            code = ExitStatus.unhealthy.rawValue
        } else if exportExpected, lastExport == nil {
            verdict = "an export repository is configured but no verified export is recorded yet: tosca-maint export"
            code = ExitStatus.unhealthy.rawValue
        } else if exportExpected, let exportAge, Double(exportAge) > maxExportAgeDays * 86_400 {
            verdict = String(format: "the last verified export (%@) is %.0f days old, older than %.0f: is the drive plugged in, the server reachable?",
                             lastExport ?? "?", Double(exportAge) / 86_400, maxExportAgeDays)
            code = ExitStatus.unhealthy.rawValue
        } else {
            verdict = "ok"
            code = 0
        }
        return StatusReport(
            dataDir: folder.root, newestVerifiedBackup: newest?.name, newestVerifiedCreatedUTC: newest?.manifest?.facts.createdUTC,
            newestVerifiedAgeSeconds: age, maxAgeHours: maxAgeHours,
            lastCheck: last.map { LastCheck(copy: $0.0.name, level: $0.1.level, timeUTC: $0.1.timeUTC, result: $0.1.result, problems: $0.1.problems) },
            backupCount: catalog.backups.count, backupBytes: catalog.backups.map(size).reduce(0, +),
            safetyCopyCount: catalog.safetyCopies.count, safetyCopyBytes: catalog.safetyCopies.map(size).reduce(0, +),
            quarantinedCount: catalog.quarantined.count, freeBytes: free, encrypted: encrypted, schemaVersion: version, schema: schema,
            lastDrillUTC: lastDrill, maxDrillAgeDays: maxDrillAgeDays, bundledSessions: bundles.bundledSessions, bundleBytes: bundles.bytes,
            failedBundles: bundles.failed, unbundledSessions: bundles.unbundled, catalogProblems: audit, unsealedSafetyRows: unsealed?.count, oldestUnsealedTimestamp: unsealed?.oldest, oldestUnsealedAgeSeconds: unsealedAge,
            lastExportUTC: lastExport, lastExportAgeSeconds: exportAge, exportsRecorded: exports.count, exportExpected: exportExpected,
            maxExportAgeDays: maxExportAgeDays, unprotectedSessions: unprotected.count, oldestUnprotectedSession: unprotected.first?.session,
            oldestUnprotectedAgeSeconds: unprotected.first?.ageSeconds, maxUnprotectedAgeSeconds: maxUnprotected, setAsideSpoolEntries: setAside,
            verdict: verdict, exitCode: code)
    }

    /// `90 s`, `12 min`, `5.2 h`.
    static func duration(_ seconds: Int64) -> String {
        seconds < 120 ? "\(seconds) s" : seconds < 7200 ? "\(seconds / 60) min" : String(format: "%.1f h", Double(seconds) / 3600)
    }

    /// node_exporter textfile-collector format.
    public var prometheus: String {
        var lines: [String] = []
        func metric(_ name: String, _ help: String, _ value: String?) {
            guard let value else { return }
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) gauge")
            lines.append("\(name) \(value)")
        }
        metric("tosca_backup_newest_verified_age_seconds", "Age of the newest verified backup.", newestVerifiedAgeSeconds.map(String.init))
        metric("tosca_backup_newest_verified_timestamp_seconds", "Creation time of the newest verified backup (Unix seconds).",
               newestVerifiedCreatedUTC.flatMap { UTCTime(iso8601: $0) }.map { String($0.seconds) })
        metric("tosca_backup_last_check_ok", "1 when the most recent check of any copy passed.", lastCheck.map { $0.result == "ok" ? "1" : "0" })
        metric("tosca_backup_last_drill_timestamp_seconds", "Time of the last passing restore drill (Unix seconds).",
               lastDrillUTC.flatMap { UTCTime(iso8601: $0) }.map { String($0.seconds) })
        metric("tosca_backup_count", "Backups (daily and manual) in the catalog.", String(backupCount))
        metric("tosca_backup_bytes", "Bytes used by backups.", String(backupBytes))
        metric("tosca_safety_copy_count", "Safety copies in the catalog.", String(safetyCopyCount))
        metric("tosca_safety_copy_bytes", "Bytes used by safety copies.", String(safetyCopyBytes))
        metric("tosca_backup_quarantined_files", "Files in backups/quarantine.", String(quarantinedCount))
        metric("tosca_backup_free_bytes", "Free bytes on the backup filesystem.", freeBytes.map(String.init))
        metric("tosca_database_encrypted", "1 when the live database is encrypted.", encrypted.map { $0 ? "1" : "0" })
        metric("tosca_database_schema_version", "Schema version of the live database.", schemaVersion.map(String.init))
        metric("tosca_bundled_sessions", "Sessions with a published bundle.", String(bundledSessions))
        metric("tosca_unbundled_sessions", "Finished sessions older than 48 h with no bundle.", String(unbundledSessions.count))
        metric("tosca_bundle_bytes", "Bytes used by session bundles.", String(bundleBytes))
        metric("tosca_bundle_failed", "Session bundles whose last check failed.", String(failedBundles.count))
        metric("tosca_unsealed_safety_rows", "Safety-log rows inserted without chain columns and not sealed yet.", unsealedSafetyRows.map(String.init))
        metric("tosca_oldest_unsealed_safety_row_age_seconds", "Age of the oldest unsealed safety-log row (its stamp read as legacy local time).", oldestUnsealedAgeSeconds.map(String.init))
        metric("tosca_exports_recorded", "Verified exports recorded in exports/.", String(exportsRecorded))
        metric("tosca_last_export_age_seconds", "Age of the last verified export.", lastExportAgeSeconds.map(String.init))
        metric("tosca_last_export_timestamp_seconds", "Time of the last verified export (Unix seconds).",
               lastExportUTC.flatMap { UTCTime(iso8601: $0) }.map { String($0.seconds) })
        metric("tosca_unprotected_sessions", "Finished sessions whose marker is still in spool/ended (not yet bundled, backed up and, where configured, exported).", String(unprotectedSessions))
        metric("tosca_oldest_unprotected_session_age_seconds", "Age of the oldest marker in spool/ended (0 when none).", String(oldestUnprotectedAgeSeconds ?? 0))
        metric("tosca_spool_set_aside_entries", "Entries protect moved to spool/set-aside (not markers, or naming no finished session).", String(setAsideSpoolEntries))
        metric("tosca_status_exit_code", "Exit code of tosca-maint status (0 ok, 1 unhealthy, 65 corruption).", String(exitCode))
        return lines.joined(separator: "\n") + "\n"
    }

    public var text: String {
        func mib(_ b: Int64) -> String { String(format: "%.1f MiB", Double(b) / 1_048_576) }
        return """
            Status        \(verdict)
            Newest verified backup  \(newestVerifiedBackup.map { "\($0), \(String(format: "%.1f", Double(newestVerifiedAgeSeconds ?? 0) / 3600)) h old" } ?? "none")
            Last check    \(lastCheck.map { "\($0.result) (\($0.level) of \($0.copy) at \($0.timeUTC))" } ?? "none")
            Last drill    \(lastDrillUTC ?? "none")
            Backups       \(backupCount), \(mib(backupBytes))
            Safety copies \(safetyCopyCount), \(mib(safetyCopyBytes))\(quarantinedCount > 0 ? "\nQuarantined   \(quarantinedCount) file(s) in backups/quarantine" : "")
            Bundles       \(bundledSessions) session(s), \(mib(bundleBytes))\(failedBundles.isEmpty ? "" : ", \(failedBundles.count) FAILED")\(unbundledSessions.isEmpty ? "" : ", \(unbundledSessions.count) finished session(s) older than 48 h not bundled")
            Exports       \(lastExportUTC.map { "\(exportsRecorded) verified, the last at \($0) (\(String(format: "%.1f", Double(lastExportAgeSeconds ?? 0) / 86_400)) days old)" } ?? (exportExpected ? "none yet (configured)" : "none (not configured)"))
            Unprotected   \(oldestUnprotectedSession.map { "\(unprotectedSessions) finished session(s) not yet \(exportExpected ? "off the disk" : "bundled and backed up"), the oldest session \($0), \(Self.duration(oldestUnprotectedAgeSeconds ?? 0)) (threshold \(Self.duration(Int64(maxUnprotectedAgeSeconds))))" } ?? "none waiting in spool/ended\(exportExpected ? "" : " (bundle and backup on this disk only: no export configured)")")\(setAsideSpoolEntries > 0 ? "\nSet aside     \(setAsideSpoolEntries) spool entr\(setAsideSpoolEntries == 1 ? "y" : "ies") in spool/set-aside (protect found no finished session for them)" : "")
            Free space    \(freeBytes.map(mib) ?? "unknown")
            Database      \(encrypted.map { $0 ? "encrypted" : "plaintext" } ?? "missing"), schema \(schema ?? "unknown (give the key)")\((unsealedSafetyRows ?? 0) > 0 ? "\nUnsealed      \(unsealedSafetyRows ?? 0) safety-log row(s) not in the chain yet, oldest stamped \(oldestUnsealedTimestamp ?? "?")\(oldestUnsealedAgeSeconds.map { String(format: ", about %.1f h old", Double($0) / 3600) } ?? "") (warning: sealed by the recorder or the next maintenance run)" : "")

            """
    }
}
