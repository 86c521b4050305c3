import Foundation
import ToscaCore

/// Which copy to restore.
public enum RestoreSelection: Sendable, Equatable {
    case latest
    /// The backup the live safety log was last proven against (`verify --live`'s anchor):
    /// after tampering, the state before the change.
    case anchor
    /// A calendar day `YYYY-MM-DD`, local unless `utc`.
    case date(String, utc: Bool)
    case path(String)
}

extension RestoreJob {
    /// Finds the copy; throws 66 (with a hint) when there is none.
    public func select(_ selection: RestoreSelection, catalog: Catalog, timeZone: TimeZone = .current) throws -> CatalogEntry {
        switch selection {
        case .latest:
            guard let e = catalog.newestVerifiedBackup else {
                throw ToolFailure(.noInput, "no verified backup in \(catalog.backupsDirectory)",
                                  hint: catalog.entries.isEmpty ? "tosca-maint backup makes one; tosca-maint list shows what is there"
                                                                : "tosca-maint list; restore a named copy with --backup PATH")
            }
            return e
        case .anchor:
            let live = folder.database
            let anchor: CatalogEntry?
            do {
                let db = try Database(path: live, options: .init(readOnly: true, key: liveKey(live)))
                try db.execute("BEGIN")
                defer { try? db.execute("COMMIT") }
                anchor = try Migrator().status(db).kind == .versioned ? try LiveCheck.timelineAnchor(db, catalog: catalog) : nil
            } catch let e as DatabaseOpenError {
                throw ToolFailure(.noInput, "--anchor reads the live database's safety log, and \(live) does not open: \(e)",
                                  hint: "choose the copy with --latest, --date DAY or --backup PATH")
            }
            guard let anchor else {
                throw ToolFailure(.noInput, "the live database has no safety-log anchor (no verified backup with a chain head)", hint: "tosca-maint list")
            }
            return anchor
        case .date(let day, let utc):
            var cal = Calendar(identifier: .gregorian)
            cal.timeZone = utc ? (TimeZone(secondsFromGMT: 0) ?? timeZone) : timeZone
            func dayOf(_ e: CatalogEntry) -> String? {
                guard let d = e.created?.date else { return nil }
                let c = cal.dateComponents([.year, .month, .day], from: d)
                guard let y = c.year, let m = c.month, let dd = c.day else { return nil }
                return String(format: "%04d-%02d-%02d", y, m, dd)
            }
            if let e = catalog.backups.last(where: { $0.isVerified && dayOf($0) == day }) { return e }
            let days = Array(Set(catalog.backups.filter(\.isVerified).compactMap(dayOf))).sorted()
            let before = days.last { $0 < day }, after = days.first { $0 > day }
            let nearest = [before, after].compactMap { $0 }
            throw ToolFailure(.noInput, "no verified backup on \(day) (\(utc ? "UTC" : "local") day)",
                              hint: nearest.isEmpty ? "there are no verified backups; tosca-maint list"
                                                    : "the nearest days with one: \(nearest.joined(separator: ", ")) (tosca-maint restore --date DAY)")
        case .path(let p):
            let real = realPath(p)
            if let e = catalog.entries.first(where: { realPath($0.path) == real }) { return e }
            guard FileManager.default.fileExists(atPath: p) else { throw ToolFailure(.noInput, "no copy at \(p)", hint: "tosca-maint list") }
            guard FileManager.default.fileExists(atPath: Manifest.path(for: p)) else {
                throw ToolFailure(.dataError, "\(p) has no manifest: it is not a published copy and is never restored", hint: "tosca-maint list")
            }
            return catalog.entry(at: p)
        }
    }

    /// D12 on the chosen copy; a failure names the newest older copy that verifies (65).
    public func verifyOrExplain(_ entry: CatalogEntry, catalog: Catalog) throws {
        try refuseUnverifiable(entry)
        try explain(entry, problems: try Verification.problems(of: entry, key: key), catalog: catalog)
    }

    /// A raw forensic copy is never restored by this command.
    func refuseUnverifiable(_ entry: CatalogEntry) throws {
        if entry.manifest?.facts.unverifiable == true {
            throw ToolFailure(.dataError, "\(entry.name) is a raw safety copy kept for forensics: it cannot be verified and is not restored by this command",
                              hint: "copy its files by hand if you must inspect them")
        }
    }

    /// Records what D12 found on `entry` in its manifest; problems refuse the restore (65),
    /// naming the newest older copy that verifies.
    func explain(_ entry: CatalogEntry, problems: [String], catalog: Catalog) throws {
        if entry.manifest != nil { try? Verification.record(ManifestCheck(level: "verify", ok: problems.isEmpty, problems: problems), for: entry) }
        guard problems.isEmpty else {
            var older: String? = nil
            for candidate in catalog.entries.reversed() where candidate.isBackup && (candidate.created ?? UTCTime(seconds: 0, microseconds: 0)) < (entry.created ?? UTCTime.now()) {
                if candidate.name == entry.name || candidate.manifest?.facts.encryption.keyID != key?.keyID && candidate.manifest?.facts.encryption.isEncrypted == true { continue }
                if (try? Verification.problems(of: candidate, key: key))?.isEmpty == true { older = candidate.path; break }
            }
            Journal.shared.log(.err, "restore refused: \(entry.path) fails verification: \(problems.joined(separator: "; "))", id: .verifyFailed,
                               fields: ["TOSCA_BACKUP_PATH": entry.path])
            throw ToolFailure(.dataError, "\(entry.name) fails verification and is not restored:\n  " + problems.joined(separator: "\n  "),
                              hint: older.map { "the newest older copy that verifies is \($0): tosca-maint restore --backup \($0)" } ?? "no older copy verifies; see tosca-maint list")
        }
    }

}
