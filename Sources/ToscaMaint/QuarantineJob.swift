import Foundation
import ToscaCore

/// `tosca-maint quarantine`: copies set aside in `backups/quarantine/`, out of the catalog
/// (no restore, drill, retention or status looks there), kept as evidence, never deleted.
public struct QuarantineJob: Sendable {
    public let folder: DataFolder
    public init(folder: DataFolder) { self.folder = folder }

    /// One copy (or a lost copy's manifest) set aside, and why.
    public struct Moved: Codable, Sendable {
        public let copy: String
        /// `nil` in a dry run.
        public let to: String?
        public let reason: String
    }

    public struct Outcome: Sendable {
        public var moved: [Moved] = []
        /// A failed copy left in place because the live safety log is proven against it.
        public var keptAnchor: String?
    }

    /// With `failed`, every copy whose last check failed and every suspect copy, and the
    /// manifests of lost copies; then each of `paths`. The copy the live safety log is
    /// proven against (verify --live's anchor) is never set aside: without it the next
    /// check would report tampering. The caller holds `.maint.lock`.
    public func run(paths: [String], failed: Bool, dryRun: Bool) throws -> Outcome {
        let catalog = try folder.scanCatalog()
        var outcome = Outcome()
        var chosen: [(CatalogEntry, String)] = []
        let anchor = LiveCheck.anchor(catalog)
        if failed {
            for e in catalog.entries {
                let reason: String
                if e.kind == .suspect {
                    reason = "suspect copy: the live safety log did not extend the last backup when it was taken"
                } else if let check = e.manifest?.lastCheck, !check.ok {
                    reason = "failed its last check (\(check.level) at \(check.timeUTC)): \(check.problems.prefix(2).joined(separator: "; "))"
                } else {
                    continue
                }
                if e.path == anchor?.path { outcome.keptAnchor = e.name } else { chosen.append((e, reason)) }
            }
        }
        for p in paths {
            guard let e = catalog.entries.first(where: { realPath($0.path) == realPath(PathName.normalized(p)) }) else {
                throw ToolFailure(.noInput, "\(p) is not a copy in \(catalog.backupsDirectory)", hint: "tosca-maint list")
            }
            if let anchor, anchor.path == e.path {
                throw ToolFailure(.usage, "\(e.name) is the copy the live safety log is proven against (verify --live's anchor): it stays",
                                  hint: "take a backup first (it becomes the anchor), then set \(e.name) aside")
            }
            if !chosen.contains(where: { $0.0.path == e.path }) { chosen.append((e, "named by the admin")) }
        }
        // Manifests whose copy was lost: set aside too (the manifest alone), unless the
        // lost copy still anchors the live safety log. (An unreadable one too: it names no
        // copy that could anchor anything.)
        let unreadable = catalog.orphanManifests.filter { m in !catalog.lostCopies.contains { $0.manifestPath == m } }
            .map { m -> CatalogEntry in
                let db = String(m.dropLast(".manifest.json".count))
                return CatalogEntry(name: PathName.name(db), path: db, manifest: nil, digestMatches: false, manifestError: "unreadable")
            }
        for e in failed ? catalog.lostCopies + unreadable : [] {
            if e.path == anchor?.path { outcome.keptAnchor = e.name; continue }
            let target = Quarantine.freeTarget(for: e.path, in: catalog.quarantineDirectory)
            if !dryRun {
                try LayoutFolder.make(catalog.quarantineDirectory)
                guard rename(e.manifestPath, Manifest.path(for: target)) == 0 else {
                    throw ToolFailure(.cantCreate, "cannot move \(e.manifestPath) to quarantine: \(String(cString: strerror(errno)))",
                                      hint: "make \(catalog.quarantineDirectory) writable")
                }
                Journal.shared.log(.warning, "manifest of the lost copy \(e.path) set aside in quarantine", id: .quarantined,
                                   fields: ["TOSCA_PATH": e.manifestPath, "TOSCA_QUARANTINE_PATH": Manifest.path(for: target)])
            }
            outcome.moved.append(Moved(copy: e.name, to: dryRun ? nil : Manifest.path(for: target), reason: "its database file is lost (manifest only)"))
        }
        for (e, reason) in chosen {
            let target = Quarantine.freeTarget(for: e.path, in: catalog.quarantineDirectory)
            if !dryRun {
                do {
                    try Quarantine.move(e.path, to: target, withManifest: true)
                } catch let f as POSIXFailure {
                    throw ToolFailure(.cantCreate, "\(f)", hint: "make \(catalog.quarantineDirectory) writable")
                }
                Journal.shared.log(.warning, "\(e.path) set aside in quarantine (\(reason)): moved to \(target)", id: .quarantined,
                                   fields: ["TOSCA_PATH": e.path, "TOSCA_QUARANTINE_PATH": target])
            }
            outcome.moved.append(Moved(copy: e.name, to: dryRun ? nil : target, reason: reason))
        }
        if !dryRun && !outcome.moved.isEmpty { try AtomicFile.syncDirectory(catalog.backupsDirectory) }
        return outcome
    }
}

/// Moving files into `backups/quarantine/`: out of the catalog (no restore, drill,
/// retention or status looks there), never deleted.
public enum Quarantine {
    /// A name in `dir` not taken yet: the file's own, else with `.2`, `.3`, ...
    public static func freeTarget(for path: String, in dir: String) -> String {
        let name = PathName.name(path)
        var target = dir + "/" + name
        var n = 2
        while FileManager.default.fileExists(atPath: target) || FileManager.default.fileExists(atPath: Manifest.path(for: target)) {
            target = dir + "/\(name).\(n)"; n += 1
        }
        return target
    }

    /// Moves (with `withManifest`) a copy's manifest, then the database file and its
    /// `-wal`/`-shm`/`-journal` files to `target`. The manifest goes first: an interrupted
    /// move leaves at worst a database file without a manifest in backups/, which the next
    /// run's housekeeping moves to quarantine too (a manifest left alone would be removed).
    /// Returns `target`.
    @discardableResult
    public static func move(_ path: String, to target: String, withManifest: Bool) throws -> String {
        try LayoutFolder.make(PathName.parent(target))
        if withManifest && FileManager.default.fileExists(atPath: Manifest.path(for: path)) {
            guard rename(Manifest.path(for: path), Manifest.path(for: target)) == 0 else {
                throw POSIXFailure(operation: "move \(Manifest.path(for: path)) to quarantine", code: errno)
            }
        }
        guard rename(path, target) == 0 else { throw POSIXFailure(operation: "move \(path) to quarantine", code: errno) }
        for suffix in ["-wal", "-shm", "-journal"] where FileManager.default.fileExists(atPath: path + suffix) {
            rename(path + suffix, target + suffix)
        }
        try AtomicFile.syncDirectory(PathName.parent(target))
        return target
    }
}
