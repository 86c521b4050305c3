import Foundation
import ToscaCore

/// One published copy in `backups/`.
public struct CatalogEntry: Sendable {
    public let name: String
    public let path: String
    public var manifestPath: String { Manifest.path(for: path) }
    /// `nil` when the manifest cannot be read (`manifestError` says why).
    public let manifest: Manifest?
    public let digestMatches: Bool
    public let manifestError: String?

    public init(name: String, path: String, manifest: Manifest?, digestMatches: Bool, manifestError: String?) {
        self.name = name
        self.path = path
        self.manifest = manifest
        self.digestMatches = digestMatches
        self.manifestError = manifestError
    }

    public var kind: CopyKind? { manifest?.facts.kind }
    public var isBackup: Bool { kind?.isBackup ?? false }
    public var created: UTCTime? { manifest?.facts.created }
    /// The last check passed (a backup's publication counts as its first check).
    public var lastCheckOK: Bool { manifest?.lastCheck?.ok ?? false }
    public var isVerified: Bool { lastCheckOK && manifest?.facts.unverifiable != true }
}

/// The contents of `<data>/backups/` (D4, D6).
public struct Catalog: Sendable {
    public let folder: DataFolder
    public var backupsDirectory: String { folder.backups }
    public var quarantineDirectory: String { folder.quarantine }
    /// Published copies, oldest first.
    public let entries: [CatalogEntry]
    /// Database files without a manifest: not backups; the next run quarantines them.
    public let orphans: [String]
    /// Manifests whose database file is gone: a published copy was lost (manifests are
    /// written last, so no interrupted run leaves one). A failed check (65).
    public let orphanManifests: [String]
    /// Those manifests read back (when readable): a lost backup still anchors the timeline.
    public var lostCopies: [CatalogEntry] = []
    /// Scratch folders (`.rehearse-<pid>`, `.drill-<pid>`) of interrupted runs: a rehearsal's
    /// holds a full plaintext copy. Removed by the next run that holds `.maint.lock`.
    public var scratchFolders: [String] = []
    /// Next manifests of copies replaced in place by an interrupted encrypt or rekey.
    public var pendingManifests: [String] = []
    /// Leftover `.partial` files of interrupted runs.
    public let partials: [String]
    /// Files already in quarantine.
    public let quarantined: [String]

    /// Reads `backups/` (nothing is changed).
    public static func scan(_ folder: DataFolder) throws -> Catalog {
        let dir = folder.backups
        let fm = FileManager.default
        // Layout folders are never followed through a link (73): prune would delete, and
        // housekeeping move, files outside the data folder.
        guard try LayoutFolder.check(dir) else {
            return Catalog(folder: folder, entries: [], orphans: [], orphanManifests: [], partials: [], quarantined: [])
        }
        let names: [String]
        do { names = try fm.contentsOfDirectory(atPath: dir).sorted() } catch {
            throw POSIXFailure(operation: "read \(dir)", code: (error as NSError).code == 257 ? EACCES : EIO)
        }
        var entries: [CatalogEntry] = [], orphans: [String] = [], orphanManifests: [String] = [], partials: [String] = []
        var lost: [CatalogEntry] = [], scratch: [String] = [], pending: [String] = []
        let set = Set(names)
        for n in names {
            let p = dir + "/" + n
            if n.hasPrefix(".rehearse-") || n.hasPrefix(".drill-") { scratch.append(p); continue }
            if n.hasSuffix(".db.pending.manifest.json") { pending.append(p); continue }
            // Leftovers of interrupted runs: .partial files (and their -wal/-shm/-journal),
            // atomic-write temporaries, raw journals whose database file never arrived.
            if n.contains(".partial") || (n.hasPrefix(".") && n.hasSuffix(".tmp")) { partials.append(p); continue }
            if let r = n.range(of: ".db-", options: .backwards), ["wal", "shm", "journal"].contains(String(n[r.upperBound...])),
               !set.contains(String(n[..<r.lowerBound]) + ".db") {
                partials.append(p); continue
            }
            if n.hasSuffix(".db.manifest.json") {
                let db = String(n.dropLast(".manifest.json".count))
                if !set.contains(db) {
                    orphanManifests.append(p)
                    if let (m, ok) = try? Manifest.read(path: p) {
                        lost.append(CatalogEntry(name: db, path: dir + "/" + db, manifest: m, digestMatches: ok, manifestError: nil))
                    }
                }
                continue
            }
            guard n.hasSuffix(".db") else { continue }
            guard set.contains(n + ".manifest.json") else { orphans.append(p); continue }
            do {
                let (m, ok) = try Manifest.read(path: Manifest.path(for: p))
                entries.append(CatalogEntry(name: n, path: p, manifest: m, digestMatches: ok, manifestError: nil))
            } catch {
                entries.append(CatalogEntry(name: n, path: p, manifest: nil, digestMatches: false, manifestError: String(describing: error)))
            }
        }
        entries.sort { ($0.created ?? UTCTime(seconds: 0, microseconds: 0), $0.name) < ($1.created ?? UTCTime(seconds: 0, microseconds: 0), $1.name) }
        let q = try LayoutFolder.check(folder.quarantine)
            ? ((try? fm.contentsOfDirectory(atPath: folder.quarantine).sorted().map { PathName.join(folder.quarantine, $0) }) ?? []) : []
        var catalog = Catalog(folder: folder, entries: entries, orphans: orphans, orphanManifests: orphanManifests,
                              partials: partials, quarantined: q)
        catalog.lostCopies = lost
        catalog.scratchFolders = scratch
        catalog.pendingManifests = pending
        return catalog
    }

    /// The copy at `path`: the catalog's entry for that file, else (an off-device copy)
    /// the file with the manifest beside it, read now (`manifestError` says when it cannot
    /// be read; `nil` manifest and a "missing" error when there is none).
    public func entry(at path: String) -> CatalogEntry {
        let real = realPath(path)
        if let e = entries.first(where: { realPath($0.path) == real }) { return e }
        guard FileManager.default.fileExists(atPath: Manifest.path(for: path)) else {
            return CatalogEntry(name: PathName.name(path), path: path, manifest: nil, digestMatches: false,
                                manifestError: "manifest \(Manifest.path(for: path)) is missing: not a published copy")
        }
        do {
            let (m, ok) = try Manifest.read(path: Manifest.path(for: path))
            return CatalogEntry(name: PathName.name(path), path: path, manifest: m, digestMatches: ok, manifestError: nil)
        } catch {
            return CatalogEntry(name: PathName.name(path), path: path, manifest: nil, digestMatches: false, manifestError: String(describing: error))
        }
    }

    /// Backups (`daily`, `manual`), oldest first.
    public var backups: [CatalogEntry] { entries.filter(\.isBackup) }
    /// Safety copies, oldest first.
    public var safetyCopies: [CatalogEntry] { entries.filter { !$0.isBackup && $0.manifest != nil } }
    /// The newest backup whose last check passed.
    public var newestVerifiedBackup: CatalogEntry? { backups.last(where: \.isVerified) }

    /// The next free name for a copy made at `time` (D13): `tosca_YYYYMMDD.db` for the first
    /// backup of a UTC day, then `tosca_YYYYMMDD_HHMMSS.db`, then `_2`, `_3`, ...; safety
    /// copies and session backups `tosca_YYYYMMDD_HHMMSS_<kind>.db`. A name counts as taken when the database,
    /// its manifest or its partial exists, here or in quarantine.
    public static func freeName(in dir: String, kind: CopyKind, time: UTCTime) -> String {
        let f = time.dayAndTime
        let fm = FileManager.default
        func taken(_ n: String) -> Bool {
            [n, n + ".manifest.json", n + ".partial"].contains { fm.fileExists(atPath: dir + "/" + $0) }
                || fm.fileExists(atPath: dir + "/quarantine/" + n)
        }
        // The stem every later candidate grows from: the time-stamped name.
        let plain = kind == .daily || kind == .manual
        let stem = plain ? "tosca_\(f.day)_\(f.time)" : "tosca_\(f.day)_\(f.time)_\(kind.rawValue)"
        let candidates = (plain ? ["tosca_\(f.day).db"] : []) + [stem + ".db"]
        for c in candidates where !taken(c) { return c }
        var n = 2
        while taken("\(stem)_\(n).db") { n += 1 }
        return "\(stem)_\(n).db"
    }
}

extension UTCTime {
    /// `YYYYMMDD` and `HHMMSS` in UTC.
    var dayAndTime: (day: String, time: String) {
        let s = folderStamp // YYYY-MM-DD_HHMMSS
        let day = s.prefix(10).replacingOccurrences(of: "-", with: "")
        return (day, String(s.suffix(6)))
    }
}

/// Housekeeping every maintenance run does first (D4): stale `.partial` files are removed
/// and database files without a manifest are moved to `quarantine/`, each logged.
public enum Housekeeping {
    public struct Result: Sendable {
        public var removedPartials: [String] = []
        public var quarantined: [String] = []
    }

    @discardableResult
    public static func run(_ catalog: Catalog, dryRun: Bool = false) throws -> Result {
        var r = Result()
        if !dryRun { try finishPendingReplacements(in: catalog) }
        for p in catalog.partials {
            if !dryRun {
                guard unlink(p) == 0 || errno == ENOENT else { throw POSIXFailure(operation: "remove \(p)", code: errno) }
                Journal.shared.log(.notice, "removed stale partial file \(p) left by an interrupted run", id: .partialRemoved, fields: ["TOSCA_PATH": p])
            }
            r.removedPartials.append(p)
        }
        // We hold .maint.lock, and every run that makes a scratch folder holds it while the
        // folder exists: any scratch folder seen here is an interrupted run's.
        for p in catalog.scratchFolders {
            if !dryRun {
                try? FileManager.default.removeItem(atPath: p)
                Journal.shared.log(.notice, "removed the scratch folder \(p) of an interrupted run (a rehearsal's holds a plaintext copy)",
                                   id: .partialRemoved, fields: ["TOSCA_PATH": p])
            }
            r.removedPartials.append(p)
        }
        if !catalog.orphans.isEmpty && !dryRun { try LayoutFolder.make(catalog.quarantineDirectory) }
        for p in catalog.orphans {
            var target = Quarantine.freeTarget(for: p, in: catalog.quarantineDirectory)
            if !dryRun {
                target = try Quarantine.move(p, to: target, withManifest: false)
                Journal.shared.log(.warning, "\(p) has no manifest, so it is not a backup: moved to \(target)", id: .quarantined,
                                   fields: ["TOSCA_PATH": p, "TOSCA_QUARANTINE_PATH": target])
            }
            r.quarantined.append(target)
        }
        if !dryRun && !(r.removedPartials.isEmpty && r.quarantined.isEmpty) {
            try AtomicFile.syncDirectory(catalog.backupsDirectory)
        }
        return r
    }
}

/// Removes a database file that was never published (a partial, a staged or scratch file)
/// with its `-journal`, `-wal` and `-shm` files; missing files are fine.
public func removeDatabaseFiles(_ path: String) {
    for suffix in ["", "-journal", "-wal", "-shm"] { unlink(path + suffix) }
}

