import Foundation
import ToscaCore

extension RestoreJob {
    /// Keeps the current database as a `pre-restore` safety copy (D6): through the backup
    /// API when it opens and verifies; its raw `db`, `-wal`, `-shm` files (marked
    /// unverifiable) when it is damaged, or when only its journals are left. Busy, locked
    /// or key problems stop the restore here, before anything changes.
    public func keepCurrent(caller holdsLocks: Bool) throws -> String? {
        let fm = FileManager.default
        let present = ["", "-wal", "-shm", "-journal"].filter { fm.fileExists(atPath: databasePath + $0) }
        if present.isEmpty { return nil }
        guard present.contains("") else {
            Journal.shared.log(.warning, "\(databasePath) is missing but its journal files are there: keeping them for forensics")
            return try keepRawFiles(reason: "tosca.db was missing; its journal files are kept")
        }
        do {
            var job = CopyJob(folder: folder.with(key: liveKey(databasePath)), kind: .preRestore, reason: "before restore")
            job.showProgress = true
            return try job.makeCopy().path
        } catch where Self.isDamage(error) {
            return try keepRawFiles(afterFailedCopy: error)
        }
    }

    func keepRawFiles(afterFailedCopy error: any Error) throws -> String {
        Journal.shared.log(.warning, "current database cannot be copied through SQLite (\(error)): keeping its raw files for forensics")
        return try keepRawFiles(reason: String(describing: error))
    }

    /// The pre-restore copy made on a thread of its own while the restore stages and
    /// verifies the chosen copy (a copy and its D12 are the other half of an in-place
    /// restore's time). Nothing is published before ``EarlySafetyCopy/finish(publish:)``:
    /// a restore that stops (the chosen copy fails, the admin declines) leaves no
    /// pre-restore copy. `nil` when the current database is missing (``keepCurrent(caller:)``
    /// handles that case after the confirmation, as before).
    func startKeepingCurrent() -> EarlySafetyCopy? {
        guard FileManager.default.fileExists(atPath: databasePath) else { return nil }
        return EarlySafetyCopy(self)
    }

    /// A pre-restore copy under way; see ``RestoreJob/startKeepingCurrent()``.
    final class EarlySafetyCopy: Sendable {
        /// Set once, before the gate opens; read by the copy's thread after it passed the gate.
        private final class Decision: @unchecked Sendable { var publish = false; var finished = false }
        private let gate = DispatchSemaphore(value: 0)
        private let decision = Decision()
        private let thread: OwnThread<String>
        private let job: RestoreJob

        init(_ restore: RestoreJob) {
            job = restore
            var copy = CopyJob(folder: restore.folder.with(key: restore.liveKey(restore.databasePath)), kind: .preRestore, reason: "before restore")
            copy.showProgress = false // the staging shows its own progress meanwhile
            let (gate, decision) = (self.gate, self.decision)
            copy.beforePublishing = {
                gate.wait()
                guard decision.publish else { throw CancellationError() }
            }
            let job = copy
            thread = OwnThread { try job.makeCopy().path }
        }

        /// Publishes the copy (`publish`) or drops it; returns the published copy's path.
        /// A copy that fails as damage is replaced by the raw files, as ``RestoreJob/keepCurrent(caller:)``
        /// does.
        @discardableResult
        func finish(publish: Bool) throws -> String? {
            guard !decision.finished else { return nil }
            decision.finished = true
            decision.publish = publish
            gate.signal()
            do {
                let path = try thread.wait()
                return publish ? path : nil
            } catch where !publish {
                return nil // dropped (CancellationError at the gate), or failed: nothing published
            } catch where RestoreJob.isDamage(error) {
                return try job.keepRawFiles(afterFailedCopy: error)
            }
        }
    }

    func keepRawFiles(reason: String) throws -> String {
        let dir = folder.backups
        let now = UTCTime.now()
        let name = Catalog.freeName(in: dir, kind: .preRestore, time: now)
        let dest = dir + "/" + name
        // Under .partial names first, renamed into place: a crash leaves only partials.
        var moved: [(String, String)] = []
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let from = databasePath + suffix
            let staged = dest + ".partial" + suffix
            if FileManager.default.fileExists(atPath: from) {
                try FileCopy.copy(from: from, to: staged)
            } else if suffix.isEmpty {
                guard FileManager.default.createFile(atPath: staged, contents: Data()) else {
                    throw POSIXFailure(operation: "create \(staged)", code: errno)
                }
            } else { continue }
            moved.append((staged, dest + suffix))
        }
        for (staged, final) in moved.reversed() { // the database file last
            guard rename(staged, final) == 0 else { throw POSIXFailure(operation: "rename \(staged)", code: errno) }
        }
        try AtomicFile.syncDirectory(dir)
        let (sha, size) = try FileDigest.sha256(path: dest)
        let header = (try? FileHeader.classify(path: dest)) ?? .empty
        var facts = ManifestFacts(kind: .preRestore, createdUTC: now.iso8601, sourcePath: databasePath, toolVersion: toscaMaintVersion,
                                  fileName: name, sha256: sha, sizeBytes: size, pageSize: 0, pageCount: 0, schemaVersion: 0,
                                  schema: "unknown", rowCounts: [:], foreignKeyViolations: 0, chainHead: nil,
                                  encryption: header == .other ? EncryptionFacts(mode: "unknown (not plaintext SQLite)") : .none,
                                  unverifiable: true, reason: "raw db, -wal and -shm files kept for forensics: \(reason)", fromVersion: nil, toVersion: nil, digest: "")
        facts.digest = try facts.computedDigest()
        try Manifest(facts: facts, checks: []).write(path: Manifest.path(for: dest))
        return dest
    }

}
