import Foundation
import ToscaBundle
import ToscaCore

/// One file of an export: its path inside the snapshot (`backups/...`, `bundles/...`),
/// size and SHA-256.
public struct ExportedFile: Codable, Sendable, Equatable {
    public var path: String
    public var sizeBytes: Int64
    public var sha256: String
    enum CodingKeys: String, CodingKey { case path, sizeBytes = "size_bytes", sha256 }
}

/// One table of an exported database copy: its columns, row count and content hash
/// (``Database/contentHash(table:columns:firstRows:)``).
public struct TableDigest: Codable, Sendable, Equatable {
    public var columns: [String]
    public var rows: Int
    public var sha256: String

    /// Every table of `db`.
    public static func of(_ db: Database) throws -> [String: TableDigest] {
        var out: [String: TableDigest] = [:]
        for t in try db.tableNames() {
            let columns = try db.columnNames(of: t)
            let h = try db.contentHash(table: t, columns: columns)
            out[t] = TableDigest(columns: columns, rows: h.rows, sha256: h.sha256)
        }
        return out
    }
}

/// A file as restic tells it unchanged: device, inode, size, modification time.
struct FileIdentity: Codable, Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var mtimeNanoseconds: Int64

    static func of(_ path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                            mtimeNanoseconds: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }
}

/// What the last verified export hashed (`exports/file-cache.json`): each source file's
/// identity and SHA-256, the copy's table hashes, and the snapshot the next export gives
/// restic as its parent, so that both skip the same unchanged files.
struct ExportFileCache: Codable, Sendable {
    static let name = "file-cache.json"
    struct Entry: Codable, Equatable, Sendable {
        var identity: FileIdentity
        var sha256: String
        init(_ identity: FileIdentity, sha256: String) { self.identity = identity; self.sha256 = sha256 }
    }
    var snapshot: String
    var files: [String: Entry]
    var tables: [String: TableDigest]?

    func encoded() throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return Array(try enc.encode(self)) + [10]
    }
}

/// The export manifest (D19): inside the snapshot as `export.json`, and, once the export
/// is verified, in `exports/<UTC time>.manifest.json` with the snapshot id and checks.
public struct ExportManifest: Codable, Sendable {
    public var format = "tosca-export/1"
    public var deviceID: String
    public var createdUTC: String
    public var toolVersion: String
    public var databaseCopy: String
    /// The safety-log chain head of the exported copy: what `verify --live --repo` checks
    /// the live database extends, from outside the device.
    public var chainHead: ChainHead?
    /// The per-table content hashes of the exported copy: an append-only table's rows
    /// (``ExportJob/appendOnlyTables``) must still begin the live table.
    public var tables: [String: TableDigest]?
    public var files: [ExportedFile]
    public var snapshotID: String?
    public var repository: String?
    public var checks: [ManifestCheck] = []
    enum CodingKeys: String, CodingKey {
        case format, deviceID = "device_id", createdUTC = "created_utc", toolVersion = "tool_version",
             databaseCopy = "database_copy", chainHead = "chain_head", tables, files, snapshotID = "snapshot_id", repository, checks
    }

    func encoded() throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try enc.encode(self)) + [10]
    }
}

/// `export`, `export init`, `export check` (D19): verified off-device copies through restic.
public struct ExportJob: Sendable {
    public let folder: DataFolder
    public let restic: Restic
    /// `check --read-data-subset=N/T`: every pack is read once every `subsets` exports.
    public var subsets = 12
    /// A local repository that is not there gives 75 (retry) instead of 66 while the last
    /// verified export is younger than `absentDriveGraceDays` (the unit's `--absent-drive-ok`).
    public var absentDriveOK = false
    public var absentDriveGraceDays = 35.0

    /// The name of the staging folder inside `exports/` (fixed, so restic finds the
    /// previous snapshot of the same paths as its parent and reads only changed files).
    static let stage = ".stage"
    static let root = "tosca-export"

    public init(folder: DataFolder, restic: Restic) {
        self.folder = folder
        self.restic = restic
    }

    /// The device id: `system_config.device_id` when set, else the hostname (D19).
    public func deviceID() throws -> String {
        if FileManager.default.fileExists(atPath: folder.database),
           let db = try? Database(path: folder.database, options: .init(readOnly: true, key: folder.liveKey)),
           let id = try? db.scalar("SELECT config_value FROM system_config WHERE config_key = 'device_id'")?.string, !id.isEmpty {
            return id
        }
        return ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "tosca"
    }

    // MARK: - Where the repository is

    /// Off-device means off-device: a local repository must be on a mounted filesystem
    /// (66 otherwise), not the data folder's (78 unless allowed), writable and with room
    /// for `bytes` (74).
    public func checkDestination(bytes: Int64, creating: Bool = false) throws {
        guard let path = restic.repository.localPath else { return }
        // The nearest folder that exists: the repository, or where it would be created.
        var probe = path
        while !FileManager.default.fileExists(atPath: probe) {
            let parent = PathName.parent(probe)
            if parent == probe { break }
            probe = parent
        }
        if probe != path && !(creating && probe == PathName.parent(path)) {
            // The unit's --absent-drive-ok: a drive not plugged in is retried while the last
            // verified export is recent; after that it fails like any other run.
            if absentDriveOK, let last = Self.recordedExports(folder).map(\.createdUTC).max(), let t = UTCTime(iso8601: last),
               Double(UTCTime.now().seconds - t.seconds) < absentDriveGraceDays * 86_400 {
                throw ToolFailure(.tempFail, "\(path) is not there (the drive is not plugged in?); the last verified export, \(last), is younger than \(Int(absentDriveGraceDays)) days: retried next time")
            }
            throw ToolFailure(.noInput, "\(path) does not exist\(creating ? "" : " (no repository there)"): is the drive plugged in and mounted?",
                              hint: creating ? "mount the drive (its fstab line), then retry" : "mount the drive, or create the repository with tosca-maint export init")
        }
        var repoStat = stat(), dataStat = stat()
        guard stat(probe, &repoStat) == 0, stat(folder.root, &dataStat) == 0 else {
            throw ToolFailure(.noInput, "\(probe): \(String(cString: strerror(errno)))")
        }
        if repoStat.st_dev == dataStat.st_dev && !restic.repository.allowSameDevice {
            throw ToolFailure(.config, "\(path) is on the data folder's own filesystem: not an off-device copy",
                              hint: "use a drive or a server; --allow-same-device exists for tests only")
        }
        var vfs = statvfs()
        guard statvfs(probe, &vfs) == 0 else { throw ToolFailure(.ioError, "statvfs \(probe): \(String(cString: strerror(errno)))") }
        if vfs.f_flag & UInt(ST_RDONLY) != 0 {
            throw ToolFailure(.ioError, "\(probe) is mounted read-only: nothing exported", hint: "remount it read-write (a drive with errors goes read-only: check it first)")
        }
        let free = Int64(vfs.f_bavail) * Int64(vfs.f_frsize)
        // restic stores at most about what it is given (compressed or deduplicated less
        // only in the worst case), plus its own index and a margin.
        let needed = bytes + bytes / 20 + (64 << 20)
        if free < needed {
            throw ToolFailure(.ioError, "\(probe) has \(free / 1_048_576) MiB free, an export of \(bytes / 1_048_576) MiB needs about \(needed / 1_048_576) MiB: nothing exported",
                              hint: "free space on the drive (export --forget) or use a larger one")
        }
    }

    // MARK: - init

    public func initialize() throws {
        try checkDestination(bytes: 0, creating: true)
        try restic.run(["init"])
        Journal.shared.log(.notice, "created the export repository \(restic.repository.redacted)", id: .exportInitialized,
                           fields: ["TOSCA_REPOSITORY": restic.repository.redacted])
    }

    // MARK: - export

    public struct Outcome: Sendable {
        public var snapshotID = ""
        public var files: [ExportedFile] = []
        public var bytes: Int64 = 0
        public var checkedSubset = ""
        public var recordedAt = ""
        public var released: [String] = []
    }

    /// Exports the newest verified database copy, every published bundle with its sidecar
    /// and every manifest as one snapshot, checks the repository (a rotating subset of its
    /// packs), restores a sample into a scratch folder and compares it (D12 on the
    /// database copy), and only then records the export in `exports/`. The caller holds
    /// `.maint.lock`.
    public func run(releaseSessionsOlderThanDays: Double? = nil, progress: ((String) -> Void)? = nil) throws -> Outcome {
        let catalog = try folder.scanCatalog()
        guard let copy = catalog.newestVerifiedBackup else {
            throw ToolFailure(.noInput, "no verified database backup to export", hint: "tosca-maint backup, then export")
        }
        // What goes: the copy (as stored), every manifest, every published bundle + sidecar.
        var sources: [(snapshotPath: String, path: String)] = [("backups/" + copy.name, copy.path)]
        for n in listing(folder.backups) where n.hasSuffix(".manifest.json") {
            sources.append(("backups/" + n, folder.backups + "/" + n))
        }
        let bundles = try BundleJob(folder: folder).published().filter { $0.sidecar != nil }
        for b in bundles {
            sources.append(("bundles/" + PathName.name(b.path), b.path))
            sources.append(("bundles/" + PathName.name(BundleSidecar.path(for: b.path)), BundleSidecar.path(for: b.path)))
        }
        // The copy and the bundles must still be what their manifests say before they go.
        // Files unchanged since the last verified export (same device, inode, size and
        // mtime: what restic compares against that export's snapshot, its parent below)
        // keep their hashes; restic reads none of them either. The copy's table hashes
        // (decryption is the slow part) on a second thread.
        let cache = try usableCache()
        let identities = sources.map { FileIdentity.of($0.path) }
        let copyUnchanged = identities[0] != nil && cache?.files[copy.path]?.identity == identities[0]
        let rehash = zip(sources, identities).filter { s, id in id == nil || cache?.files[s.path]?.identity != id }.count
        progress?("hashing \(rehash) of \(sources.count) files\(copyUnchanged && cache?.tables != nil ? "" : " and the copy's tables")")
        let copyPath = copy.path, copyKey = folder.key(for: copy)
        let cachedTables = copyUnchanged ? cache?.tables : nil
        let tableDigests = OwnThread { () -> [String: TableDigest] in
            if let cachedTables { return cachedTables }
            let db = try Database(path: copyPath, options: .init(readOnly: true, key: copyKey, oneThread: true))
            return try TableDigest.of(db)
        }
        // While a recorder runs, one thing at a time: the table hashes before the files.
        let tablesFirst: Result<[String: TableDigest], any Error>? = folder.recorderRuns ? Result { try tableDigests.wait() } : nil
        var files: [ExportedFile] = []
        let hashed = Result {
            for (s, id) in zip(sources, identities) {
                if let id, let known = cache?.files[s.path], known.identity == id {
                    files.append(ExportedFile(path: s.snapshotPath, sizeBytes: id.size, sha256: known.sha256))
                    continue
                }
                let (hex, size) = try FileDigest.sha256(path: s.path)
                files.append(ExportedFile(path: s.snapshotPath, sizeBytes: size, sha256: hex))
            }
        }
        let tables: [String: TableDigest]
        do { tables = try (tablesFirst ?? Result { try tableDigests.wait() }).get() } catch {
            throw ToolFailure(.dataError, "\(copy.name) cannot be read table by table: not exported (\(error))", hint: "tosca-maint verify --all")
        }
        try hashed.get()
        if let facts = copy.manifest?.facts, let f = files.first, f.sha256 != facts.sha256 || f.sizeBytes != facts.sizeBytes {
            throw ToolFailure(.dataError, "\(copy.name) no longer matches its manifest: not exported", hint: "tosca-maint verify --all")
        }
        for b in bundles {
            let name = "bundles/" + PathName.name(b.path)
            if let sc = b.sidecar, let f = files.first(where: { $0.path == name }), f.sha256 != sc.sha256 || f.sizeBytes != sc.sizeBytes {
                throw ToolFailure(.dataError, "\(PathName.name(b.path)) no longer matches its sidecar: not exported", hint: "tosca-maint bundle verify --all")
            }
        }
        let total = files.reduce(Int64(0)) { $0 + $1.sizeBytes }
        // Room for what restic may add: the files it will read (unchanged ones add nothing).
        let changed = zip(sources, identities).enumerated().reduce(Int64(0)) { sum, e in
            let (i, (s, id)) = e
            return id != nil && cache?.files[s.path]?.identity == id ? sum : sum + files[i].sizeBytes
        }
        try checkDestination(bytes: changed)

        // A staging folder of hard links (same filesystem, nothing copied), fixed name.
        try LayoutFolder.make(folder.exports)
        // Drill folders of runs that were killed (we hold .maint.lock: no other is running).
        for n in listing(folder.exports) where n.hasPrefix(".drill-") {
            try? FileManager.default.removeItem(atPath: folder.exports + "/" + n)
        }
        let stage = folder.exports + "/" + Self.stage
        try? FileManager.default.removeItem(atPath: stage)
        defer { try? FileManager.default.removeItem(atPath: stage) }
        let top = stage + "/" + Self.root
        try AtomicFile.makeDirectory(top + "/backups")
        try AtomicFile.makeDirectory(top + "/bundles")
        for s in sources {
            if link(s.path, top + "/" + s.snapshotPath) == 0 { continue }
            // backups/ or bundles/ on another filesystem (a mount point): a copy instead.
            guard errno == EXDEV else { throw ToolFailure(.ioError, "cannot stage \(s.path): \(String(cString: strerror(errno)))") }
            try FileCopy.copy(from: s.path, to: top + "/" + s.snapshotPath)
        }
        let now = UTCTime.now()
        var manifest = ExportManifest(deviceID: try deviceID(), createdUTC: now.iso8601, toolVersion: toscaMaintVersion,
                                      databaseCopy: "backups/" + copy.name, chainHead: copy.manifest?.facts.chainHead ?? nil,
                                      tables: tables, files: files)
        try AtomicFile.write(try manifest.encoded(), to: top + "/export.json")
        let exportJSON = try FileDigest.sha256(path: top + "/export.json")

        progress?("restic backup of \(total / 1_048_576) MiB to \(restic.repository.redacted)")
        // Hard links change a file's ctime: restic compares device, inode, size and mtime.
        var backupArgs = ["backup", "--json", "--ignore-ctime", "--host", manifest.deviceID, "--tag", "tosca-export"]
        if let cache { backupArgs += ["--parent", cache.snapshot] }
        let backup = try restic.run(backupArgs + [Self.root], in: stage)
        guard let summary = Self.jsonLines(backup.stdout).last(where: { $0["message_type"] as? String == "summary" }),
              let short = summary["snapshot_id"] as? String, !short.isEmpty else {
            throw ToolFailure(.ioError, "restic backup gave no snapshot id: nothing recorded as exported")
        }
        // restic 0.14 prints the short id: the record keeps the whole one (a local
        // repository names its snapshot files by it; each restic run costs its key
        // derivation, most of a second).
        let snapshot: String
        let matching = localSnapshotIDs().filter { $0.hasPrefix(short) }
        if matching.count == 1 {
            snapshot = matching[0]
        } else {
            let listed = try restic.run(["snapshots", "--json", short])
            snapshot = ((try? JSONSerialization.jsonObject(with: listed.stdout)) as? [[String: Any]])?.first?["id"] as? String ?? short
        }

        // Verified: a rotating subset of the packs read, then a sample restored and compared.
        let subset = try nextSubset()
        progress?("restic check --read-data-subset=\(subset)")
        try check(readDataSubset: subset)
        progress?("export drill: restoring export.json, the database copy and a bundle")
        let drillProblems = try drill(snapshot: snapshot, manifest: manifest, exportJSON: exportJSON.hex, bundles: bundles.map { "bundles/" + PathName.name($0.path) })
        guard drillProblems.isEmpty else {
            throw ToolFailure(.dataError, "the export drill failed: \(drillProblems.joined(separator: "; ")): snapshot \(snapshot) is not recorded as an export",
                              hint: "tosca-maint export check --read-data")
        }
        try recordSubset(subset)
        manifest.snapshotID = snapshot
        manifest.repository = restic.repository.redacted
        manifest.checks = [ManifestCheck(level: "restic check --read-data-subset=\(subset)", ok: true, problems: []),
                           ManifestCheck(level: "export drill", ok: true, problems: [])]
        let record = folder.exports + "/" + Self.recordName(now) + ".manifest.json"
        try AtomicFile.write(try manifest.encoded(), to: record)
        var entries: [String: ExportFileCache.Entry] = [:]
        for (i, s) in sources.enumerated() {
            if let id = identities[i], FileIdentity.of(s.path) == id { entries[s.path] = ExportFileCache.Entry(id, sha256: files[i].sha256) }
        }
        try? AtomicFile.write(try ExportFileCache(snapshot: snapshot, files: entries, tables: tables).encoded(), to: folder.exports + "/" + ExportFileCache.name)
        Journal.shared.log(.notice, "exported snapshot \(snapshot) to \(restic.repository.redacted): \(files.count) files, \(total) bytes, verified",
                           id: .exportVerified, fields: ["TOSCA_SNAPSHOT": snapshot, "TOSCA_REPOSITORY": restic.repository.redacted])
        var outcome = Outcome(snapshotID: snapshot, files: files, bytes: total, checkedSubset: subset, recordedAt: record)
        if let days = releaseSessionsOlderThanDays {
            progress?("releasing session folders older than \(days) days whose bundle is in this export")
            outcome.released = try releaseSessions(olderThanDays: days, export: manifest)
        }
        return outcome
    }

    /// The cache of the last verified export, when its snapshot is still this device's in
    /// the repository (restic compares against it as the parent); nil otherwise.
    func usableCache() throws -> ExportFileCache? {
        guard let data = FileManager.default.contents(atPath: folder.exports + "/" + ExportFileCache.name),
              let cache = try? JSONDecoder().decode(ExportFileCache.self, from: data) else { return nil }
        if restic.repository.localPath != nil { return localSnapshotIDs().contains(cache.snapshot) ? cache : nil }
        return try restic.exportSnapshots(host: try deviceID()).contains { $0.id == cache.snapshot } ? cache : nil
    }

    /// The snapshot ids of a local repository (its `snapshots/` folder), without running
    /// restic; empty for a remote one.
    func localSnapshotIDs() -> [String] {
        guard let local = restic.repository.localPath else { return [] }
        return ((try? FileManager.default.contentsOfDirectory(atPath: local + "/snapshots")) ?? []).filter { $0.count == 64 }
    }

    static func recordName(_ t: UTCTime) -> String {
        t.iso8601.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: "-", with: "")
    }

    // MARK: - session folders off the device

    /// After a verified export: removes the session folders that ended more than `days`
    /// ago and whose bundle is in `export` (the same SHA-256 as its sidecar, its last check
    /// passed) and still matches the folder by names and sizes. Never a folder without such
    /// a bundle; the database rows stay, and `bundle extract --session ID --to-original`
    /// brings a folder back. Returns the folders removed.
    public func releaseSessions(olderThanDays days: Double, export: ExportManifest, now: UTCTime = .now()) throws -> [String] {
        let bundles = try BundleJob(folder: folder).published()
        let exported = Dictionary(export.files.map { ($0.path, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        let db = try Database(path: folder.database, options: .init(readOnly: true, key: folder.liveKey))
        var released: [String] = []
        for r in try db.rows("SELECT session_id, session_folder_path, COALESCE(end_time, start_time) FROM sessions WHERE status IN ('completed', 'aborted') ORDER BY session_id") {
            guard let id = r[0].int64, let rel = r[1].string, rel.hasPrefix("sessions/"), !rel.split(separator: "/").contains(".."),
                  let ended = r[2].string.flatMap({ UTCTime(sqlDateTime: $0) }), Double(now.seconds - ended.seconds) >= days * 86_400 else { continue }
            let sessionFolder = folder.root + "/" + rel
            guard FileManager.default.fileExists(atPath: sessionFolder) else { continue }
            guard let b = bundles.first(where: { $0.sessionID == id }), let sidecar = b.sidecar, sidecar.checks.last?.ok == true,
                  exported["bundles/" + PathName.name(b.path)] == sidecar.sha256,
                  let now = try? SessionBundle.scan(folder: sessionFolder, hashing: false),
                  SessionBundle.listingDigest(folders: now.folders, files: now.files) == sidecar.listingSHA256 else { continue }
            // Out of the way in one rename, then removed.
            let gone = folder.sessions + "/.released-\(id)-\(getpid())"
            guard rename(sessionFolder, gone) == 0 else { throw ToolFailure(.ioError, "cannot release \(sessionFolder): \(String(cString: strerror(errno)))") }
            try FileManager.default.removeItem(atPath: gone)
            try? AtomicFile.syncDirectory(PathName.parent(sessionFolder))
            released.append(sessionFolder)
            Journal.shared.log(.notice, "released session \(id)'s folder \(rel): its bundle is in verified export \(export.snapshotID ?? "?")",
                               fields: ["TOSCA_SESSION_ID": String(id), "TOSCA_SNAPSHOT": export.snapshotID ?? ""])
        }
        return released
    }

    // MARK: - history anchored off the device

    /// Tables whose rows are never changed or deleted (triggers, D6): the rows an export
    /// holds must still be the first rows of the live table.
    public static let appendOnlyTables = ["treatment_events"]

    /// This device's newest export in the repository, as its snapshot's own export.json
    /// says, or nil when it has none.
    public func newestExport() throws -> (manifest: ExportManifest, snapshot: String)? {
        guard let last = try restic.exportSnapshots(host: try deviceID()).last else { return nil }
        let r = try restic.run(["dump", last.id, "/" + Self.root + "/export.json"])
        guard let m = try? JSONDecoder().decode(ExportManifest.self, from: r.stdout) else {
            throw ToolFailure(.dataError, "the export.json of snapshot \(last.shortID) cannot be read")
        }
        return (m, last.shortID)
    }

    /// Why the live database does not extend this device's newest export, or nil when it
    /// does (or nothing was exported): its safety log must extend the exported chain head,
    /// and each append-only table must still begin with the exported rows (same count,
    /// same content hash). Someone with the device alone can recompute the keyless chain
    /// and every local manifest; not what the repository holds.
    public func offDeviceAnchorProblem() throws -> String? {
        guard let (m, snapshot) = try newestExport() else { return nil }
        let db = try Database(path: folder.database, options: .init(readOnly: true, key: folder.liveKey))
        try db.execute("BEGIN")
        defer { try? db.execute("COMMIT") }
        var problems: [String] = []
        if let head = m.chainHead, case .broken(let b) = try SafetyChain.verify(db, anchor: head) {
            problems.append("the live safety log does not extend the head exported in snapshot \(snapshot) at \(m.createdUTC) (\(head)): \(b.reason)")
        }
        let live = Set(try db.tableNames())
        for t in Self.appendOnlyTables {
            guard let exported = m.tables?[t] else { continue }
            guard live.contains(t) else { problems.append("table \(t), exported with \(exported.rows) rows in snapshot \(snapshot), is gone"); continue }
            let columns = Set(try db.columnNames(of: t))
            // A later migration that dropped a column: the exported hash cannot be recomputed.
            guard exported.columns.allSatisfy(columns.contains) else {
                Journal.shared.log(.warning, "table \(t) no longer has the columns of snapshot \(snapshot): its exported rows are not compared")
                continue
            }
            let h = try db.contentHash(table: t, columns: exported.columns, firstRows: exported.rows)
            if h.rows < exported.rows {
                problems.append("table \(t) has \(h.rows) rows, snapshot \(snapshot) of \(m.createdUTC) exported \(exported.rows)")
            } else if h.sha256 != exported.sha256 {
                problems.append("the first \(exported.rows) rows of table \(t) differ from those exported in snapshot \(snapshot) at \(m.createdUTC)")
            }
        }
        guard !problems.isEmpty else { return nil }
        return problems.joined(separator: "; ") + " (tampering, or a restore to a copy older than that export)"
    }

    // MARK: - forget

    /// The clinic's retention: every export of the last `keepWithin` and one a month for
    /// `keepMonthly` months, this device's snapshots only, then `prune`. On an
    /// append-only server the removal is refused: 77, nothing lost.
    public func forget(keepWithin: String = "3m", keepMonthly: Int = 120) throws -> String {
        let r = try restic.run(["forget", "--tag", "tosca-export", "--host", try deviceID(), "--group-by", "host",
                                "--keep-within", keepWithin, "--keep-monthly", String(keepMonthly), "--prune"], check: false)
        if r.status != 0 {
            let lower = r.stderr.lowercased()
            if lower.contains("403") || lower.contains("forbidden") || lower.contains("append-only") || lower.contains("permission denied") && restic.repository.localPath == nil {
                throw ToolFailure(.noPermission, "the repository is append-only: run forget where it is allowed (on the server, or with a key that may delete); nothing was removed",
                                  hint: "run the same restic forget --prune on the server, or from a machine whose access may delete")
            }
            throw Restic.failure(r, repository: restic.repository, command: "forget")
        }
        Journal.shared.log(.notice, "applied the retention policy to \(restic.repository.redacted) (within \(keepWithin), \(keepMonthly) monthly)")
        return String(decoding: r.stdout, as: UTF8.self)
    }

    // MARK: - check

    /// `restic check`, reading the packs of `readDataSubset` ("N/T"), or all of them.
    public func check(readDataSubset: String? = nil, readAll: Bool = false) throws {
        var args = ["check"]
        if readAll { args.append("--read-data") } else if let readDataSubset { args.append("--read-data-subset=\(readDataSubset)") }
        let r = try restic.run(args, check: false)
        guard r.status == 0 else {
            let text = r.stderr + String(decoding: r.stdout, as: UTF8.self)
            let f = Restic.failure(r, repository: restic.repository, command: "check")
            // A damaged pack is damaged data, not an I/O failure of ours.
            if f.status == .ioError, text.contains("Fatal: repository contains errors") {
                // restic's findings, without its progress lines.
                let findings = text.split(separator: "\n").map(String.init).filter {
                    !$0.isEmpty && !$0.hasPrefix("[") && !$0.hasPrefix("using ") && !$0.hasPrefix("load ") && !$0.hasPrefix("check ")
                        && !$0.hasPrefix("read ") && !$0.hasPrefix("create ") && !$0.hasPrefix("Fatal:") && !$0.hasPrefix("no errors")
                }
                throw ToolFailure(.dataError, "restic check found damage in \(restic.repository.redacted): \(findings.prefix(5).joined(separator: "; "))",
                                  hint: "run a new export to a sound repository; keep this one for examination")
            }
            throw f
        }
    }

    /// The subset this export reads: N advances each export, recorded in the data folder.
    func nextSubset() throws -> String {
        let state = folder.exports + "/check-subset"
        let last = (try? String(contentsOfFile: state, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        return "\(last % subsets + 1)/\(subsets)"
    }

    func recordSubset(_ subset: String) throws {
        let n = subset.split(separator: "/").first.map(String.init) ?? "1"
        try AtomicFile.write(Array((n + "\n").utf8), to: folder.exports + "/check-subset")
    }

    // MARK: - the export drill

    /// Restores `export.json`, the database copy with its manifest and one bundle with its
    /// sidecar from `snapshot` into a scratch folder; compares each by SHA-256 with what was
    /// exported and runs D12 on the restored copy. Returns the problems found.
    func drill(snapshot: String, manifest: ExportManifest, exportJSON: String, bundles: [String]) throws -> [String] {
        let scratch = folder.exports + "/.drill-\(getpid())"
        try? FileManager.default.removeItem(atPath: scratch)
        try AtomicFile.makeDirectory(scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var sample = ["export.json", manifest.databaseCopy, manifest.databaseCopy + ".manifest.json"]
        // One bundle, a different one each export.
        if !bundles.isEmpty {
            let b = bundles[Int(UTCTime.now().seconds / 86_400) % bundles.count]
            sample += [b, b + ".manifest.json"]
        }
        var args = ["restore", snapshot, "--target", scratch]
        for s in sample { args += ["--include", "/" + Self.root + "/" + s] }
        try restic.run(args)
        var problems: [String] = []
        let base = scratch + "/" + Self.root + "/"
        for s in sample where s != manifest.databaseCopy {
            let expected = s == "export.json" ? exportJSON : manifest.files.first(where: { $0.path == s })?.sha256
            guard let got = try? FileDigest.sha256(path: base + s) else { problems.append("\(s) was not restored"); continue }
            if got.hex != expected { problems.append("\(s) restored with another SHA-256") }
        }
        // D12 on the restored database copy, against its own (restored, and just compared)
        // manifest, whose SHA-256 is the exported copy's: D12's first step hashes the copy.
        let copyPath = base + manifest.databaseCopy
        let exportedCopy = manifest.files.first { $0.path == manifest.databaseCopy }
        if let (m, digestOK) = try? Manifest.read(path: Manifest.path(for: copyPath)) {
            if m.facts.sha256 != exportedCopy?.sha256 || m.facts.sizeBytes != exportedCopy?.sizeBytes {
                problems.append("the restored copy's manifest names another file than the exported copy")
            }
            let entry = CatalogEntry(name: PathName.name(copyPath), path: copyPath, manifest: m, digestMatches: digestOK, manifestError: nil)
            // While a recorder runs (the after-session export), on one core: its commits keep the other.
            problems += try Verification.problems(of: entry, key: folder.key(for: entry), onOneCore: folder.recorderRuns).map { "restored copy: \($0)" }
        } else {
            problems.append("the restored copy's manifest cannot be read")
        }
        return problems
    }

    static func jsonLines(_ data: Data) -> [[String: Any]] {
        data.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] }
    }

    func listing(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    /// The verified exports recorded in `exports/`, oldest first.
    public static func recordedExports(_ folder: DataFolder) -> [ExportManifest] {
        (((try? FileManager.default.contentsOfDirectory(atPath: folder.exports)) ?? []).sorted()).filter { $0.hasSuffix(".manifest.json") }.compactMap {
            try? JSONDecoder().decode(ExportManifest.self, from: Data(contentsOf: URL(fileURLWithPath: folder.exports + "/" + $0)))
        }
    }
}
