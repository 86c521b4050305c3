import Foundation
import ToscaCore

/// `tosca-maint rekey`: the live database and every copy from one key to another.
/// Re-running it resumes: copies still under the old key are found by their key id.
public struct RekeyJob: Sendable {
    /// The data folder (its key is the old one).
    public let folder: DataFolder
    public let oldKey: DatabaseKey
    public let newKey: DatabaseKey
    public var databasePath: String { folder.database }

    public init(folder: DataFolder, oldKey: DatabaseKey, newKey: DatabaseKey) {
        self.folder = folder.with(key: oldKey)
        self.oldKey = oldKey
        self.newKey = newKey
    }

    public struct Outcome: Sendable {
        public var rekeyedLive = false
        public var safetyCopy: String?
        public var rekeyedCopies: [String] = []
        public var skipped: [(String, String)] = []
        /// The drill that ends the rotation: the copy and what failed (empty: passed).
        public var drill: (copy: String, problems: [String])?
    }

    public func run(confirm: () throws -> Void) throws -> Outcome {
        var outcome = Outcome()
        guard oldKey.keyID != newKey.keyID else { throw ToolFailure(.usage, "the new key is the old key") }
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DatabaseOpenError.missing(path: databasePath) }
        let locks = try folder.takeExclusiveLocks(what: "the key rotation")
        defer { locks.unlock() }
        try Housekeeping.run(try folder.scanCatalog())
        let underOld = (try? Database(path: databasePath, options: .init(readOnly: true, key: oldKey))) != nil
        if underOld {
            try confirm()
            var copyJob = CopyJob(folder: folder, kind: .preRekey, reason: "before re-keying to key id \(newKey.keyID)")
            copyJob.showProgress = true
            outcome.safetyCopy = try copyJob.makeCopy().path
            let headBefore: ChainHead?
            do {
                let db = try Database(path: databasePath, options: .init(key: oldKey))
                headBefore = try? SafetyChain.head(db)
                try LiveSwap.emptyWAL(db, path: databasePath, unchanged: "the database was not re-keyed")
                try db.rekey(to: newKey)
            }
            // Verify under the new key.
            let m = try Measurement.of(path: databasePath, key: newKey)
            let problems = Verification.steps2and3(m, expected: .init(source: "the database before", chainHead: m.hasChain ? .some(headBefore) : nil))
            guard problems.isEmpty else {
                throw ToolFailure(.dataError, "the re-keyed database fails verification:\n  " + problems.joined(separator: "\n  "),
                                  hint: "restore the pre-rekey copy \(outcome.safetyCopy ?? "") with the old key")
            }
            if (try? Database(path: databasePath, options: .init(readOnly: true, key: oldKey))) != nil {
                throw ToolFailure(.dataError, "the old key still opens \(databasePath) after rekey")
            }
            outcome.rekeyedLive = true
            Journal.shared.log(.notice, "\(databasePath) re-keyed from key id \(oldKey.keyID) to \(newKey.keyID)", id: .rekeyed)
        } else {
            // Already under the new key (an interrupted run): it must open with it.
            _ = try Database(path: databasePath, options: .init(readOnly: true, key: newKey))
        }
        try rekeyCopies(&outcome)
        if outcome.rekeyedLive || !outcome.rekeyedCopies.isEmpty {
            outcome.drill = try EncryptJob.drillNewest(folder.with(key: newKey))
        }
        return outcome
    }

    /// Every copy under the old key, re-keyed through the backup API, verified, published
    /// under a new name with a new manifest; then the old-key file goes.
    func rekeyCopies(_ outcome: inout Outcome) throws {
        let catalog = try folder.scanCatalog()
        // Files the old key still opens but that are not re-keyed here are reported, never
        // passed over in silence: quarantined files and raw forensic copies.
        let unlisted = catalog.quarantined + catalog.entries.filter { $0.manifest?.facts.unverifiable == true }.map(\.path)
        for p in unlisted where (try? FileHeader.classify(path: p)) == .other
            && (try? Database(path: p, options: .init(readOnly: true, key: oldKey))) != nil {
            outcome.skipped.append((p, "still opens with the old key and is not re-keyed (quarantined or raw copy): examine it, then remove it"))
        }
        for entry in catalog.entries {
            guard let facts = entry.manifest?.facts, facts.encryption.keyID == oldKey.keyID, facts.unverifiable != true else { continue }
            let problems = try Verification.problems(of: entry, key: oldKey)
            guard problems.isEmpty else { outcome.skipped.append((entry.name, problems.joined(separator: "; "))); continue }
            let partial = entry.path + ".rekey.partial"
            removeDatabaseFiles(partial)
            var replaced = false
            defer { if !replaced { removeDatabaseFiles(partial) } }
            do {
                let source = try Database(path: entry.path, options: .init(readOnly: true, key: oldKey))
                try source.execute("BEGIN")
                try OnlineBackup.copy(source: source, destinationPath: partial, key: newKey)
                try source.execute("COMMIT")
            }
            try FileDigest.fsyncFile(partial)
            let (m, digest) = try Measurement.withDigest(path: partial, key: newKey)
            let diffs = Verification.compare(m, with: facts)
            guard diffs.isEmpty else { outcome.skipped.append((entry.name, diffs.joined(separator: "; "))); continue }
            let newFacts = try facts.encryptedVersion(name: entry.name, digest: digest, measurement: m, keyID: newKey.keyID,
                                                      reason: "\(facts.reason.map { $0 + "; " } ?? "")re-keyed in place from key id \(oldKey.keyID)")
            // Same name, new file and manifest (anything that names the copy keeps working).
            try replacePublished(entry, with: partial, facts: newFacts, level: "rekey")
            replaced = true
            let name = entry.name
            outcome.rekeyedCopies.append(name)
        }
    }
}
