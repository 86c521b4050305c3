import Foundation
import ToscaCore

/// Problems of the catalog as a whole that no single copy's check shows: each is a failed
/// check (65) for `status`, `verify --all` and `backup`.
public enum CatalogAudit {
    /// Whether the device is encrypted (D14): its live database is not plaintext SQLite, or
    /// (the live file lost) the catalog holds encrypted copies.
    public static func deviceEncrypted(dataDirectory: String, catalog: Catalog) -> Bool {
        let live = dataDirectory + "/tosca.db"
        if FileManager.default.fileExists(atPath: live), let header = try? FileHeader.classify(path: live), header != .empty {
            return header != .plaintext
        }
        return catalog.entries.contains { $0.manifest?.facts.encryption.isEncrypted == true }
    }

    /// Plaintext database files in `backups/` (quarantine excluded) of an encrypted device:
    /// left by an interrupted cutover, they hold patient data unencrypted.
    public static func plaintextCopies(dataDirectory: String, catalog: Catalog) -> [String] {
        guard deviceEncrypted(dataDirectory: dataDirectory, catalog: catalog) else { return [] }
        return (catalog.entries.map(\.path) + catalog.orphans).filter { (try? FileHeader.classify(path: $0)) == .plaintext }
    }

    /// Every catalog-wide problem, worded for the admin.
    public static func problems(dataDirectory: String, catalog: Catalog) -> [String] {
        var out: [String] = []
        for m in catalog.orphanManifests {
            out.append("\(PathName.name(m)) has no database file: a published copy was lost (manifests are written last, so no interrupted run leaves one)")
        }
        for e in catalog.entries where e.manifest == nil {
            out.append("\(e.name): its manifest cannot be read (\(e.manifestError ?? "?"))")
        }
        for p in plaintextCopies(dataDirectory: dataDirectory, catalog: catalog) {
            out.append("\(PathName.name(p)) is a PLAINTEXT copy on an encrypted device (an interrupted cutover): tosca-maint backup or encrypt converts it")
        }
        return out
    }
}

/// Sealing safety-log rows that another writer (TOSCA v0.9.12's app, a technician's
/// sqlite3) inserted without chain columns. The recorder seals them itself while it runs;
/// a maintenance run seals them only when it can take `tosca.lock` without waiting, and
/// otherwise leaves them to the recorder.
public enum Sealing {
    /// The age in seconds of an unsealed row stamped `timestamp`, read as TOSCA v0.9.12
    /// writes it: local time of the device, `legacy_datetime_utc_offset` seconds east of UTC
    /// (0 when the database does not record it).
    public static func age(of timestamp: String, in db: Database, now: UTCTime = .now()) -> Int64? {
        guard let stamped = UTCTime(sqlDateTime: timestamp) else { return nil }
        let offset = (try? db.scalar("SELECT config_value FROM system_config WHERE config_key = 'legacy_datetime_utc_offset'"))??.string.flatMap { Int64($0) } ?? 0
        return now.seconds - (stamped.seconds - offset)
    }

    /// Seals pending rows if no one holds `tosca.lock`; returns how many were sealed
    /// (`nil`: the recorder holds the lock, or there is no database).
    @discardableResult
    public static func sealIfRecorderIdle(dataDirectory: String, key: DatabaseKey?) throws -> Int? {
        let live = dataDirectory + "/tosca.db"
        guard FileManager.default.fileExists(atPath: live) else { return nil }
        let lock: FileLock
        do { lock = try FileLock(path: dataDirectory + "/tosca.lock") } catch FileLockError.held { return nil }
        defer { lock.unlock() }
        // A key that is missing or wrong is the command's own error to report, on what it
        // opens itself (a verify of one copy need not open the live database at all).
        let db: Database
        do {
            db = try Database(path: live, options: .init(key: (try? FileHeader.classify(path: live)) == .plaintext ? nil : key))
        } catch is DatabaseOpenError {
            return nil
        }
        guard try SafetyChain.admitsUnsealedRows(db) else { return 0 }
        // Finished sessions without a seal (ended before seals existed) get one, once.
        let backfilled = try db.transaction { try SessionSeal.backfill(db, dataDirectory: dataDirectory) }
        if !backfilled.isEmpty {
            Journal.shared.log(.notice, "sealed \(backfilled.count) finished session(s) that had no seal (back-fill: each seal proves only what it saw)",
                               fields: ["TOSCA_DATABASE": live])
        }
        guard try SafetyChain.unsealed(db).count > 0 else { return 0 }
        let sealed = try db.transaction { try SafetyChain.sealPending(db) }
        if sealed > 0 {
            Journal.shared.log(.notice, "sealed \(sealed) safety-log row(s) another program inserted without chain columns", fields: ["TOSCA_DATABASE": live])
        }
        return sealed
    }
}
