import Foundation
import ToscaCore

/// A copy staged beside its restore target (`<target>.restore-partial`) and verified there.
/// The staged file is removed when this goes, unless it was swapped or linked in.
public final class StagedCopy {
    public let path: String
    /// What D12 found on the staged file against the copy's manifest (empty: it is the copy,
    /// byte for byte, and sound).
    public internal(set) var problems: [String] = []
    var placed = false
    init(path: String) { self.path = path }
    deinit { if !placed { removeDatabaseFiles(path) } }
}

extension RestoreJob {
    /// Copies `entry` into `<target>.restore-partial` and runs D12 on that file: its SHA-256
    /// equal to the manifest's proves it is the copy, so one pass verifies the copy and what
    /// is restored (the copy itself is not read twice).
    public func stage(_ entry: CatalogEntry, to target: String) throws -> StagedCopy {
        guard entry.manifest != nil else { throw ToolFailure(.dataError, "\(entry.name): no readable manifest", hint: "tosca-maint list") }
        let dir = PathName.parent(target)
        let staged = StagedCopy(path: target + ".restore-partial")
        removeDatabaseFiles(staged.path)
        // A lost copy is worded by the verification itself ("database file is missing").
        guard FileManager.default.fileExists(atPath: entry.path) else {
            staged.problems = try Verification.problems(of: entry, key: key)
            return staged
        }
        do {
            try FileCopy.copy(from: entry.path, to: staged.path)
        } catch let e as POSIXFailure {
            if e.operation.hasPrefix("open \(entry.path)") || e.operation.hasPrefix("read \(entry.path)") {
                throw ToolFailure(e.code == ENOENT ? .noInput : .ioError, "cannot read the copy: \(e)", hint: "tosca-maint list")
            }
            throw ToolFailure(e.code == ENOSPC || e.code == EFBIG || e.code == EDQUOT || e.code == EIO ? .ioError : .cantCreate,
                              "cannot write \(staged.path): \(e)", hint: "the current database is untouched; free space or fix permissions in \(dir)")
        }
        staged.problems = try Verification.problems(of: entry, key: key, measuring: staged.path)
        return staged
    }

    /// Stages `entry` (``stage(_:to:)``) and, when it verifies, puts it in place
    /// (``place(_:of:at:replace:journalsKept:encryptWith:prepare:)``).
    public func restoreFile(_ entry: CatalogEntry, to target: String, replace: Bool, journalsKept: Bool = false,
                            encryptWith: DatabaseKey? = nil, prepare: ((String) throws -> Void)? = nil) throws {
        let staged = try stage(entry, to: target)
        guard staged.problems.isEmpty else {
            throw ToolFailure(.dataError, "the restored file fails verification; the current database is untouched:\n  " + staged.problems.joined(separator: "\n  "))
        }
        try place(staged, of: entry, at: target, replace: replace, journalsKept: journalsKept, encryptWith: encryptWith, prepare: prepare)
    }

    /// Puts a verified staged copy in place: lets `prepare` change it (the maintenance
    /// entry), encrypts it when asked, gives it the old file's owner and mode, then swaps it
    /// in: the live WAL is checkpointed to empty first, the stale `-wal`/`-shm` removed, the
    /// file renamed, the folder fsynced. `journalsKept`: the live journals are in a raw safety
    /// copy, so they may go even when the live file cannot be opened to checkpoint them.
    /// (`--to`: linked in under the new name, never over a file.)
    public func place(_ staged: StagedCopy, of entry: CatalogEntry, at target: String, replace: Bool, journalsKept: Bool = false,
                      encryptWith: DatabaseKey? = nil, prepare: ((String) throws -> Void)? = nil) throws {
        guard staged.problems.isEmpty else {
            throw ToolFailure(.dataError, "the restored file fails verification; the current database is untouched:\n  " + staged.problems.joined(separator: "\n  "))
        }
        let copyKey = key(for: entry)
        let dir = PathName.parent(target)
        let temp = staged.path
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
            staged.placed = true
        } else {
            guard link(temp, target) == 0 else {
                throw ToolFailure(.cantCreate, "cannot create \(target): \(String(cString: strerror(errno)))", hint: "--to never overwrites; name a new file")
            }
            unlink(temp)
            staged.placed = true
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
