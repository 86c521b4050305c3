import Foundation
import ToscaCore

/// A published copy.
public struct PublishedCopy: Sendable {
    public let path: String
    public let manifest: Manifest
    /// How the copy was made (raw pages or the backup API, and why the fallback ran).
    public var copy: CopyOutcome? = nil
}

/// Makes verified, published copies of the live database: backups (`daily`, `manual`)
/// and safety copies (D3, D4, D6, D12).
public struct CopyJob: Sendable {
    public let folder: DataFolder
    public var key: DatabaseKey? { folder.key }
    public let kind: CopyKind
    public var reason: String?
    /// For `pre-migration` copies (D6): the schema versions, recorded in the manifest.
    public var fromVersion: String?
    public var toVersion: String?
    public var showProgress = true
    /// `auto`: the raw page copy when the snapshot allows it, else the backup API (D3).
    public var copyMethod: CopyMethod = .auto
    /// `backup --new-timeline REASON`: a live safety log that does not extend the last
    /// backup's head is accepted as a new timeline (the copy verified, the reason recorded).
    public var newTimelineReason: String?
    public var now: @Sendable () -> UTCTime = { UTCTime.now() }
    /// Called once the copy is verified, before anything is published: throwing abandons
    /// the copy (its partial file is removed, nothing is published). A restore makes its
    /// pre-restore copy while it verifies the chosen copy, and publishes it only when that
    /// one is sound and the admin confirmed.
    public var beforePublishing: (@Sendable () throws -> Void)? = nil
    /// Whether a copy of a database whose safety log does not extend the anchor is kept
    /// as a suspect copy (the nightly backup's, once). `protect`, which runs every few
    /// minutes while its markers wait, refuses instead: nothing published, 65.
    public var keepsSuspectCopy = true

    public init(folder: DataFolder, kind: CopyKind, reason: String? = nil) {
        self.folder = folder
        self.kind = kind
        self.reason = reason
    }

    var databasePath: String { folder.database }
    var backupsDirectory: String { folder.backups }

    /// Takes `.maint.lock`, tidies the folder, makes and publishes one copy.
    public func run() throws -> PublishedCopy {
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DatabaseOpenError.missing(path: databasePath) }
        let lock = try folder.takeMaintenanceLock()
        defer { lock.unlock() }
        return try runHoldingMaintenanceLock()
    }

    /// ``run()`` for a caller that already holds `.maint.lock` (`protect`).
    public func runHoldingMaintenanceLock() throws -> PublishedCopy {
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DatabaseOpenError.missing(path: databasePath) }
        try Housekeeping.run(try folder.scanCatalog())
        // Rows inserted without chain columns are sealed first when the recorder is not
        // running, so the copy holds them in the chain.
        Sealing.sealBestEffort(folder)
        // --new-timeline also accepts treatment events changed under a session's seal: the
        // sessions are sealed again, the reason in the seal (the old seal stays in the chain).
        if kind.isBackup, let reason = newTimelineReason {
            let db = try Database(path: databasePath, options: .init(key: key))
            if try SafetyChain.admitsUnsealedRows(db) {
                let resealed = try db.transaction { try SessionSeal.reseal(db, dataDirectory: folder.root, reason: reason) }
                if !resealed.isEmpty {
                    Journal.shared.log(.warning, "sessions \(resealed.map(String.init).joined(separator: ", ")) sealed again (\(reason)): their treatment events had changed under their seals",
                                       id: .newTimelineAccepted, fields: ["TOSCA_DATABASE": databasePath, "TOSCA_REASON": reason])
                }
            }
        }
        let copy = try makeCopy()
        // An interrupted cutover left plaintext copies on an encrypted device: the backup
        // finishes the conversion (with the key it was given), so they do not outlive a night.
        if kind.isBackup, let key, !CatalogAudit.plaintextCopies(try folder.scanCatalog()).isEmpty {
            var outcome = EncryptJob.Outcome()
            try EncryptJob(folder: folder, key: key).convertCatalog(&outcome)
            Journal.shared.log(.notice, "finished an interrupted encryption cutover: \(outcome.converted.count) plaintext copy(ies) converted"
                               + (outcome.skipped.isEmpty ? "" : "; not converted: \(outcome.skipped.map { "\($0.0) (\($0.1))" }.joined(separator: "; "))"))
        }
        return copy
    }

    /// Makes and publishes one copy; the caller holds `.maint.lock`.
    public func makeCopy() throws -> PublishedCopy {
        let started = now()
        let source = try Database(path: databasePath, options: .init(readOnly: true, key: key))
        // Mapped reads of the source (D3's lever; SQLCipher ignores it for encrypted files).
        try source.execute("PRAGMA mmap_size = 4294967296")
        // Pin a snapshot: every read below and the copy see the same state (D3).
        let pin = try PinnedSnapshot.begin(source, path: databasePath)
        defer { pin.end() }
        let sourcePages = pin.pageCount
        let sourceStatus = try Migrator().status(source)
        let sourceHead = sourceStatus.kind == .versioned ? try SafetyChain.head(source) : nil
        // A backup becomes the next anchor of `verify --live`. One whose safety log does not
        // extend the current anchor (entries rewritten or removed since) would hide the
        // change for good: it is kept for its data as a `suspect` copy (never a backup, so
        // never an anchor, whatever later checks say), and the run exits 65 (D7). An admin
        // who knows the change is legitimate accepts the new timeline with its reason.
        // The same holds for a pre-restore copy or a snapshot of such a database: restoring
        // it later would make its timeline the live one, so it is a suspect copy too (the
        // restore or snapshot goes on; `restore` refuses suspect copies in place).
        var timelineProblem: String? = nil
        var checkSeals = false
        if [.daily, .manual, .session, .preRestore, .snapshot].contains(kind) && sourceStatus.kind == .versioned, try SafetyChain.verify(source).isIntact {
            let anchor = try LiveCheck.timelineAnchor(source, catalog: try folder.scanCatalog())
            timelineProblem = try LiveCheck.anchorProblem(source, anchor: anchor)
            // Treatment events of a sealed session changed: the same kind of change. (Checked
            // on the copy, beside its integrity_check: one scan of the events table, and the
            // copy holds the snapshot's rows, which D12 proves below.)
            checkSeals = timelineProblem == nil
        }
        // Copied under the name of the kind asked for; a suspect copy gets its own name when
        // it is published.
        let partial = backupsDirectory + "/" + Catalog.freeName(in: backupsDirectory, kind: self.kind, time: started) + ".partial"
        let copyName = PathName.name(String(partial.dropLast(".partial".count)))
        // Create it ourselves: the errno tells "not writable" (73) from "disk full" (74).
        let fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let e = errno
            throw ToolFailure(e == ENOSPC || e == EDQUOT ? .ioError : .cantCreate,
                              "cannot create \(partial): \(String(cString: strerror(e)))", hint: "make \(backupsDirectory) writable and give it space")
        }
        close(fd)
        var published = false
        defer { if !published { removeDatabaseFiles(partial) } }
        let bar = showProgress ? Progress("copying \(copyName)") : nil
        Journal.shared.status("copying \(databasePath) to \(copyName)")
        // The source's row counts under the same snapshot, counted while the copy runs (a
        // raw copy is disk work and leaves the second core free): the copy must hold them.
        let counting = OwnThread { try pin.rowCounts() }
        // While a recorder runs the copy writes gently and the verification keeps to one
        // core; a restore's or the cutover's own copies go at full speed.
        let recording = folder.recorderRuns
        var outcome: CopyOutcome
        do {
            outcome = try DatabaseCopy.copy(pin, to: partial, key: key, method: copyMethod, gently: recording) { done, total in
                bar?.update(done, of: total)
            }
        } catch let e as SQLiteError where e.isAny(of: .full, .ioerr) {
            bar?.finish()
            _ = try? counting.wait()
            throw ToolFailure(.ioError, "copy to \(partial) failed: \(e.message)", hint: "free space in \(backupsDirectory); older backups are untouched")
        } catch let e as POSIXFailure where [ENOSPC, EDQUOT, EFBIG, EIO].contains(e.code) {
            bar?.finish()
            _ = try? counting.wait()
            throw ToolFailure(.ioError, "copy to \(partial) failed: \(e)", hint: "free space in \(backupsDirectory); older backups are untouched")
        } catch let e as RawCopyRefused {
            bar?.finish()
            _ = try? counting.wait()
            throw ToolFailure(.tempFail, e.description, hint: "leave out --copy-method raw to let the online-backup API copy it")
        } catch {
            bar?.finish()
            _ = try? counting.wait()
            throw error
        }
        bar?.finish()
        outcome.paced = recording
        let sourceRows = try counting.wait()
        if let reason = outcome.fallbackReason {
            Journal.shared.log(.notice, "copied \(databasePath) with the online-backup API: \(reason)", fields: ["TOSCA_DATABASE": databasePath])
        } else if outcome.method == .raw {
            Journal.shared.status("copied \(pin.pageCount) pages as they are (\(outcome.walPages) from the WAL, up to frame \(outcome.walFrames))")
        }
        try FileDigest.fsyncFile(partial)
        if key != nil, try FileHeader.classify(path: partial) == .plaintext {
            throw ToolFailure(.dataError, "the copy of an encrypted database came out plaintext; not published")
        }
        // Verify the copy (D12 steps 2-3) and measure its facts, hashing in parallel.
        Journal.shared.status("verifying \(copyName)")
        var sealCheck: (@Sendable (Database) throws -> String?)? = nil
        if checkSeals { sealCheck = { @Sendable db in try SessionSeal.problems(db).first } }
        let (measurement, digest, sealProblem) = try Measurement.withDigest(path: partial, key: key, alsoFinding: sealCheck, onOneCore: recording)
        let problems = Verification.steps2and3(measurement, expected: .init(source: "the source snapshot", chainHead: .some(sourceHead), pageCount: sourcePages, rowCounts: sourceRows))
        if timelineProblem == nil { timelineProblem = sealProblem }
        // A suspect copy is a safety copy of its own kind: no later check can turn it into a
        // backup (an ok verify of its file says nothing about the timeline).
        let kind = timelineProblem != nil && (newTimelineReason == nil || !self.kind.isBackup) ? CopyKind.suspect : self.kind
        let name = kind == self.kind ? copyName : Catalog.freeName(in: backupsDirectory, kind: kind, time: started)
        let finalPath = backupsDirectory + "/" + name
        guard problems.isEmpty else {
            Journal.shared.log(.err, "backup of \(databasePath) failed verification, nothing published: \(problems.joined(separator: "; "))",
                               id: .backupFailed, fields: ["TOSCA_DATABASE": databasePath])
            throw ToolFailure(.dataError, "the copy of \(databasePath) failed verification, nothing was published:\n  " + problems.joined(separator: "\n  "),
                              hint: "tosca-maint verify --live; restore from the newest verified backup if the live database is damaged")
        }
        if let timelineProblem, !keepsSuspectCopy, newTimelineReason == nil {
            Journal.shared.log(.err, "possible tampering: the live database's \(timelineProblem); no \(self.kind.rawValue) copy was published",
                               id: .tamperingDetected, fields: ["TOSCA_DATABASE": databasePath])
            throw ToolFailure(.dataError, "no \(self.kind.rawValue) copy was published: the live database's \(timelineProblem) (possible tampering)",
                              hint: "follow the runbook tampering-reported.md (the nightly backup keeps a suspect copy for its data)")
        }
        try beforePublishing?()
        var facts = ManifestFacts(
            kind: kind, createdUTC: started.iso8601, sourcePath: databasePath, toolVersion: toscaMaintVersion, fileName: name,
            sha256: digest.hex, sizeBytes: digest.size, pageSize: measurement.pageSize, pageCount: measurement.pageCount,
            schemaVersion: measurement.schemaVersion, schema: measurement.schema, rowCounts: measurement.rowCounts,
            foreignKeyViolations: measurement.foreignKeyViolations, chainHead: measurement.chain.head,
            encryption: key.map { .sqlcipher(version: (try? SQLCipherLibrary.checkVersion()) ?? "?", keyID: $0.keyID) } ?? .none,
            unverifiable: nil, reason: reason, fromVersion: fromVersion, toVersion: toVersion, digest: "")
        facts.digest = try facts.computedDigest()
        let check: ManifestCheck
        switch (timelineProblem, self.kind.isBackup ? newTimelineReason : nil) {
        case (nil, _):
            check = ManifestCheck(level: "backup", time: now(), ok: true, problems: [])
        case (let problem?, nil):
            check = ManifestCheck(level: "backup", time: now(), ok: false,
                                  problems: ["the live database's \(problem): kept as a suspect copy for its data, not a backup"])
        case (let problem?, let reason?):
            check = ManifestCheck(level: "backup", time: now(), ok: true, problems: [], detail: "new timeline accepted: \(reason) (\(problem))")
        }
        let manifest = Manifest(facts: facts, checks: [check])
        // Publish (D4): the database under its final name (never over an existing file),
        // then the manifest, each made durable.
        guard link(partial, finalPath) == 0 else {
            throw ToolFailure(errno == ENOSPC ? .ioError : .cantCreate, "cannot publish \(finalPath): \(String(cString: strerror(errno)))")
        }
        unlink(partial)
        try AtomicFile.syncDirectory(backupsDirectory)
        do {
            try manifest.write(path: Manifest.path(for: finalPath))
        } catch {
            unlink(finalPath) // no manifest, no backup: never leave a database file that is not one
            throw error
        }
        published = true
        var fields = ["TOSCA_BACKUP_PATH": finalPath, "TOSCA_KIND": kind.rawValue, "TOSCA_SHA256": digest.hex]
        if facts.foreignKeyViolations > 0 { fields["TOSCA_FK_VIOLATIONS"] = String(facts.foreignKeyViolations) }
        if kind != .suspect {
            Journal.shared.log(.info, "published \(kind.rawValue) copy \(finalPath) (\(digest.size) bytes, verified\(facts.foreignKeyViolations > 0 ? ", \(facts.foreignKeyViolations) foreign-key violation(s) recorded" : ""))",
                               id: .backupPublished, fields: fields)
        }
        // The journal's record of chain heads is the anchors' second record: a suspect
        // copy's head is not one.
        if kind != .suspect, let head = facts.chainHead {
            Journal.shared.log(.info, "safety-log chain head recorded: seq \(head.seq) hash \(head.hash) in \(name)", id: .chainHeadRecorded,
                               fields: ["TOSCA_CHAIN_SEQ": String(head.seq), "TOSCA_CHAIN_HASH": head.hash, "TOSCA_BACKUP_PATH": finalPath])
        }
        if let timelineProblem {
            if !self.kind.isBackup {
                Journal.shared.log(.warning, "possible tampering: the live database's \(timelineProblem); its \(self.kind.rawValue) copy \(name) is kept as a suspect copy",
                                   id: .tamperingDetected, fields: ["TOSCA_DATABASE": databasePath, "TOSCA_BACKUP_PATH": finalPath])
            } else if let newTimelineReason {
                Journal.shared.log(.warning, "new safety-log timeline accepted in \(name) (\(newTimelineReason)): the live database's \(timelineProblem)",
                                   id: .newTimelineAccepted, fields: ["TOSCA_BACKUP_PATH": finalPath, "TOSCA_REASON": newTimelineReason])
            } else {
                Journal.shared.log(.err, "possible tampering: the live database's \(timelineProblem); \(name) is kept as a suspect copy for its data, not a backup",
                                   id: .tamperingDetected, fields: ["TOSCA_DATABASE": databasePath, "TOSCA_BACKUP_PATH": finalPath])
                throw ToolFailure(.dataError, "kept \(finalPath) as a suspect copy for its data, NOT as a backup: the live database's \(timelineProblem)",
                                  hint: "follow the runbook tampering-reported.md; only when the change is known and legitimate (an undone migration migrated again), accept it: tosca-maint backup --new-timeline REASON, then tosca-maint quarantine --failed")
            }
        }
        return PublishedCopy(path: finalPath, manifest: manifest, copy: outcome)
    }

}
