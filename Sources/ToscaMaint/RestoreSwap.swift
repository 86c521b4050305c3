import Foundation
import ToscaCore

extension RestoreJob {
    /// Copies `entry` into `<target>.restore-partial`, checks D12 steps 2-3 on it (and that
    /// its SHA-256 is the copy's), lets `prepare` change it (the maintenance entry), gives
    /// it the old file's owner and mode, then swaps it in: the live WAL is checkpointed
    /// to empty first, the stale `-wal`/`-shm` removed, the file renamed, the folder
    /// fsynced. `journalsKept`: the live journals are in a raw safety copy, so they may
    /// go even when the live file cannot be opened to checkpoint them.
    public func restoreFile(_ entry: CatalogEntry, to target: String, replace: Bool, journalsKept: Bool = false,
                            encryptWith: DatabaseKey? = nil, prepare: ((String) throws -> Void)? = nil) throws {
        guard let facts = entry.manifest?.facts else { throw ToolFailure(.dataError, "\(entry.name): no readable manifest", hint: "tosca-maint list") }
        let copyKey = key(for: entry)
        let dir = PathName.parent(target)
        let temp = target + ".restore-partial"
        removeDatabaseFiles(temp)
        var done = false
        defer { if !done { removeDatabaseFiles(temp) } }
        do {
            try FileCopy.copy(from: entry.path, to: temp)
        } catch let e as POSIXFailure {
            if e.operation.hasPrefix("open \(entry.path)") || e.operation.hasPrefix("read \(entry.path)") {
                throw ToolFailure(e.code == ENOENT ? .noInput : .ioError, "cannot read the copy: \(e)", hint: "tosca-maint list")
            }
            throw ToolFailure(e.code == ENOSPC || e.code == EFBIG || e.code == EDQUOT || e.code == EIO ? .ioError : .cantCreate,
                              "cannot write \(temp): \(e)", hint: "the current database is untouched; free space or fix permissions in \(dir)")
        }
        let (m, digest) = try Measurement.withDigest(path: temp, key: copyKey)
        var problems = Verification.compare(m, with: facts)
        if digest.hex != facts.sha256 { problems.append("the restored file's SHA-256 differs from the copy's manifest") }
        guard problems.isEmpty else {
            throw ToolFailure(.dataError, "the restored file fails verification; the current database is untouched:\n  " + problems.joined(separator: "\n  "))
        }
        try prepare?(temp)
        if let encryptWith {
            // A plaintext copy going into an encrypted device: exported encrypted on the way
            // in, proven equal, so no plaintext database ever comes back (Phase 6).
            let encrypted = target + ".restore-encrypted"
            removeDatabaseFiles(encrypted)
            do {
                let plain = try Database(path: temp, options: .init())
                try SQLCipherExport.encrypt(source: plain, into: encrypted, key: encryptWith)
            }
            let problems = try EncryptJob(folder: folder, key: encryptWith).proveEqual(plain: temp, encrypted: encrypted)
            guard problems.isEmpty else {
                unlink(encrypted)
                throw ToolFailure(.dataError, "the encrypted restore differs from the copy; the current database is untouched:\n  " + problems.joined(separator: "\n  "))
            }
            guard rename(encrypted, temp) == 0 else { throw POSIXFailure(operation: "rename \(encrypted)", code: errno) }
        }
        // The recorder must be able to open it: the old file's owner and mode (kept as they
        // were), else the folder's owner and 0600.
        var st = stat()
        if stat(target, &st) == 0 {
            chown(temp, st.st_uid, st.st_gid)
            chmod(temp, (st.st_mode & 0o777) & ~0o111 | 0o600)
        } else if stat(dir.isEmpty ? "." : dir, &st) == 0 {
            chown(temp, st.st_uid, st.st_gid)
            chmod(temp, 0o600)
        }
        if replace { try LiveSwap.prepareWAL(temp, key: encryptWith ?? copyKey) }
        try FileDigest.fsyncFile(temp)
        if replace {
            if FileManager.default.fileExists(atPath: target) {
                do {
                    try LiveSwap.emptyWAL(try Database(path: target, options: .init(key: liveKey(target))), path: target, unchanged: "nothing was swapped")
                } catch let f as ToolFailure {
                    throw f
                } catch {
                    guard journalsKept else {
                        throw ToolFailure(.dataError, "\(target) cannot be opened to empty its WAL and its journals were not kept: nothing was swapped (\(error))")
                    }
                }
            }
            try LiveSwap.swap(temp, into: target) // fsyncs the folder
            done = true
        } else {
            guard link(temp, target) == 0 else {
                throw ToolFailure(.cantCreate, "cannot create \(target): \(String(cString: strerror(errno)))", hint: "--to never overwrites; name a new file")
            }
            unlink(temp)
            done = true
            try AtomicFile.syncDirectory(dir.isEmpty ? "." : dir)
        }
    }

    /// A copy named by a path outside `backups/` (an off-device copy) is brought into the
    /// catalog before an in-place restore: the restore's binding goes into the manifest of
    /// the restored copy, and only manifests in the catalog confirm a restore (``LiveCheck``).
    /// The catalog's own copy is used when it holds the same file (same SHA-256); else the
    /// file is published beside the others (D4: copied to a partial, checked against its
    /// manifest's SHA-256, linked, then its manifest), under its own name when free.
    public func importIntoCatalog(_ entry: CatalogEntry, catalog: Catalog) throws -> CatalogEntry {
        guard let manifest = entry.manifest,
              !catalog.entries.contains(where: { realPath($0.path) == realPath(entry.path) }) else { return entry }
        if let same = catalog.entries.first(where: { $0.manifest?.facts.sha256 == manifest.facts.sha256 }) { return same }
        let dir = catalog.backupsDirectory
        func taken(_ n: String) -> Bool {
            [dir + "/" + n, Manifest.path(for: dir + "/" + n), dir + "/" + n + ".partial",
             catalog.quarantineDirectory + "/" + n].contains { FileManager.default.fileExists(atPath: $0) }
        }
        let name = taken(entry.name) ? Catalog.freeName(in: dir, kind: manifest.facts.kind, time: manifest.facts.created ?? .now()) : entry.name
        let final = dir + "/" + name
        let partial = final + ".partial"
        do {
            try FileCopy.copy(from: entry.path, to: partial)
        } catch let e as POSIXFailure {
            throw ToolFailure(e.code == ENOSPC ? .ioError : .cantCreate, "cannot bring \(entry.path) into \(dir): \(e)", hint: "free space in \(dir)")
        }
        var published = false
        defer { if !published { unlink(partial) } }
        let (sha, size) = try FileDigest.sha256(path: partial)
        guard sha == manifest.facts.sha256, size == manifest.facts.sizeBytes else {
            throw ToolFailure(.dataError, "\(entry.path) changed while it was copied into \(dir): nothing restored", hint: "run the restore again")
        }
        guard link(partial, final) == 0 else { throw ToolFailure(.cantCreate, "cannot publish \(final): \(String(cString: strerror(errno)))") }
        unlink(partial)
        published = true
        try AtomicFile.syncDirectory(dir)
        var imported = manifest
        imported.checks.append(ManifestCheck(level: "import", ok: true, problems: [], detail: "brought in from \(entry.path)"))
        do { try imported.write(path: Manifest.path(for: final)) } catch { unlink(final); throw error }
        Journal.shared.log(.notice, "brought \(entry.path) into the catalog as \(final) before restoring it", fields: ["TOSCA_BACKUP_PATH": final])
        return CatalogEntry(name: name, path: final, manifest: imported, digestMatches: entry.digestMatches, manifestError: nil)
    }

    /// Appends the `maintenance` safety-log entry to a restored (staged) file and returns it
    /// (its seq and row hash); `nil` when the schema has no chain yet.
    public func recordRestore(into target: String, copy: CatalogEntry, preRestore: String?) throws -> ChainHead? {
        let db = try Database(path: target, options: .init(key: key(for: copy)))
        guard try Migrator().status(db).applied.contains(where: { $0.id == "0006_safety_log_chain" }) else { return nil }
        let user = restoringUser()
        let details = JSONValue.object([
            "restored_from": .string(copy.name), "copy_created_utc": .string(copy.manifest?.facts.createdUTC ?? ""),
            "copy_sha256": .string(copy.manifest?.facts.sha256 ?? ""), "pre_restore_copy": preRestore.map { .string(PathName.name($0)) } ?? .null,
            "user": .string(user), "tool_version": .string(toscaMaintVersion),
        ]).canonical
        return try db.transaction {
            try SafetyChain.append(SafetyLogEntry(eventType: "maintenance", severity: .warning,
                                                  description: "database restored from \(copy.name) by \(user)",
                                                  actionTaken: "tosca-maint restore", details: details), to: db)
        }
    }

}
