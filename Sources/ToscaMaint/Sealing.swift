import Foundation
import ToscaCore

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

    /// Seals pending rows, and back-fills the seals of finished sessions that have none,
    /// when there is such work and no one holds `tosca.lock` (it is taken only then, for
    /// the few milliseconds of the work: a recorder starting in that moment is told 75 and
    /// retries). Returns how many rows were sealed (`nil`: the recorder holds the lock, the
    /// database is missing or does not open with the key given).
    @discardableResult
    public static func sealIfRecorderIdle(_ folder: DataFolder) throws -> Int? {
        let live = folder.database
        guard FileManager.default.fileExists(atPath: live) else { return nil }
        let useKey = folder.liveKey
        // A key that is missing or wrong is the command's own error to report, on what it
        // opens itself (a verify of one copy need not open the live database at all).
        do {
            let look = try Database(path: live, options: .init(readOnly: true, key: useKey))
            guard try SafetyChain.admitsUnsealedRows(look) else { return 0 }
            if try SafetyChain.unsealed(look).count == 0 && SessionSeal.unsealedSessionCount(look) == 0 { return 0 }
        } catch is DatabaseOpenError {
            return nil
        }
        let lock: FileLock
        do { lock = try FileLock(path: folder.databaseLock) } catch FileLockError.held { return nil }
        defer { lock.unlock() }
        let db = try Database(path: live, options: .init(key: useKey))
        // Nothing is written into a safety log that does not verify, or that does not
        // extend the anchor's head: sealing would pile new rows onto a rewritten history
        // (and a back-fill would bless events whose seal was removed). verify --live names it.
        let catalog = try folder.scanCatalog()
        let problem: String?
        do {
            try db.execute("BEGIN")
            defer { try? db.execute("COMMIT") }
            if case .broken(let b) = try SafetyChain.verify(db) {
                problem = b.description
            } else {
                problem = try LiveCheck.anchorProblem(db, anchor: try LiveCheck.timelineAnchor(db, catalog: catalog))
            }
        }
        if let problem {
            Journal.shared.log(.warning, "not sealing: the live \(problem); see tosca-maint verify --live", fields: ["TOSCA_DATABASE": live])
            return nil
        }
        let (backfilled, sealed) = try db.transaction {
            (try SessionSeal.backfill(db, dataDirectory: folder.root), try SafetyChain.sealPending(db))
        }
        if !backfilled.isEmpty {
            Journal.shared.log(.notice, "sealed \(backfilled.count) finished session(s) that had no seal (back-fill: each seal proves only what it saw)",
                               fields: ["TOSCA_DATABASE": live])
        }
        if sealed > 0 {
            Journal.shared.log(.notice, "sealed \(sealed) safety-log row(s) another program inserted without chain columns", fields: ["TOSCA_DATABASE": live])
        }
        // The journal's record of the head the sealing produced: an anchor outside the
        // database, so rows rewritten and sealed again later show as a divergence.
        if sealed > 0 || !backfilled.isEmpty, let head = try SafetyChain.head(db) {
            Journal.shared.log(.info, "safety-log chain head recorded: seq \(head.seq) hash \(head.hash) after sealing", id: .chainHeadRecorded,
                               fields: ["TOSCA_CHAIN_SEQ": String(head.seq), "TOSCA_CHAIN_HASH": head.hash, "TOSCA_DATABASE": live])
        }
        return sealed
    }

    /// ``sealIfRecorderIdle(_:)`` as a side duty of another command: a
    /// failure (the old app holding the write lock, a row that cannot be sealed) is logged
    /// and never stops the command; what stays unsealed is reported as a warning.
    public static func sealBestEffort(_ folder: DataFolder) {
        do {
            try sealIfRecorderIdle(folder)
        } catch {
            Journal.shared.log(.warning, "could not seal safety-log rows or sessions now (left for the recorder or the next run): \(error)",
                               fields: ["TOSCA_DATABASE": folder.database])
        }
    }
}
