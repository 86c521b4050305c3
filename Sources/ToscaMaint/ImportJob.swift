import Foundation
import ToscaBundle
import ToscaCore

/// `tosca-maint import` (D19): a data folder rebuilt on a new machine from an export
/// snapshot. The whole snapshot is restored into a staging folder inside the new data
/// folder and every file checked against the snapshot's `export.json` (size and SHA-256)
/// before anything is placed; the database copy then goes through a verified restore.
public struct ImportJob: Sendable {
    public let folder: DataFolder
    public let restic: Restic

    public init(folder: DataFolder, restic: Restic) {
        self.folder = folder
        self.restic = restic
    }

    public struct Outcome: Sendable {
        public var snapshot: Restic.Snapshot
        public var database = ""
        public var bundles = 0
        public var sessionsExtracted: [String] = []
    }

    /// Imports `snapshotID` ("latest" or an id or its prefix) into the data folder, which
    /// must hold no `tosca.db` (73). `.maint.lock` is taken while files are placed, then
    /// the restore takes its own locks.
    public func run(snapshotID: String = "latest", host: String? = nil, extractSessions: Bool = false,
                    identities: [Age.Identity] = [], say: (String) -> Void = { _ in }) throws -> Outcome {
        var lock: FileLock? = try folder.takeMaintenanceLock()
        defer { lock?.unlock() }
        guard !FileManager.default.fileExists(atPath: folder.database) else {
            throw ToolFailure(.cantCreate, "\(folder.database) exists: import never writes into a data folder that holds a database",
                              hint: "import into a new, empty --data-dir")
        }
        let all = try restic.exportSnapshots(host: host)
        let chosen: Restic.Snapshot?
        if snapshotID == "latest" {
            chosen = all.last
        } else {
            let matches = all.filter { $0.id.hasPrefix(snapshotID) }
            guard matches.count <= 1 else { throw ToolFailure(.usage, "\(snapshotID) matches \(matches.count) snapshots: give more of its id") }
            chosen = matches.first
        }
        guard let snap = chosen else {
            throw ToolFailure(.noInput, "no export snapshot \(snapshotID == "latest" ? "" : snapshotID + " ")in \(restic.repository.redacted)\(host.map { " for host \($0)" } ?? "")",
                              hint: "restic snapshots --tag tosca-export lists them")
        }
        // Restore everything into a staging folder beside where it goes (same filesystem);
        // those of imports that were killed go first (we hold .maint.lock).
        for n in ((try? FileManager.default.contentsOfDirectory(atPath: folder.root)) ?? []) where n.hasPrefix(".import-") {
            try? FileManager.default.removeItem(atPath: folder.root + "/" + n)
        }
        let staging = folder.root + "/.import-\(getpid())"
        try? FileManager.default.removeItem(atPath: staging)
        try AtomicFile.makeDirectory(staging)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        say("restoring snapshot \(snap.shortID) (host \(snap.host), \(snap.time)) into a staging folder")
        try restic.run(["restore", snap.id, "--target", staging])
        let base = staging + "/" + ExportJob.root
        guard let data = FileManager.default.contents(atPath: base + "/export.json"),
              let manifest = try? JSONDecoder().decode(ExportManifest.self, from: data) else {
            throw ToolFailure(.dataError, "snapshot \(snap.shortID) has no readable export.json: not a tosca-maint export")
        }
        // Every file exactly as exported; nothing else, nothing outside the two folders.
        say("checking \(manifest.files.count) files against export.json")
        for f in manifest.files {
            guard (f.path.hasPrefix("backups/") || f.path.hasPrefix("bundles/")), f.path.split(separator: "/").count == 2,
                  !f.path.contains("..") else {
                throw ToolFailure(.dataError, "export.json lists \(f.path), outside backups/ and bundles/: not imported")
            }
            guard let (hex, size) = try? FileDigest.sha256(path: base + "/" + f.path) else {
                throw ToolFailure(.dataError, "\(f.path) is listed in export.json but missing from snapshot \(snap.shortID)")
            }
            guard hex == f.sha256, size == f.sizeBytes else {
                throw ToolFailure(.dataError, "\(f.path) in snapshot \(snap.shortID) differs from export.json (size or SHA-256): nothing imported")
            }
        }
        // Placed: backups/ and bundles/ (renames inside one filesystem). The manifests of
        // older copies, exported without their database file, go to exports/imported/<id>/:
        // in backups/ they would stand for copies that were lost.
        try LayoutFolder.make(folder.backups)
        try LayoutFolder.make(folder.bundles)
        let exportedPaths = Set(manifest.files.map(\.path))
        let historyFolder = folder.exports + "/imported/" + snap.shortID
        func destination(_ path: String) -> String {
            let suffix = ".manifest.json"
            if path.hasPrefix("backups/"), path.hasSuffix(suffix), !exportedPaths.contains(String(path.dropLast(suffix.count))) {
                return historyFolder + "/" + PathName.name(path)
            }
            return folder.root + "/" + path
        }
        if manifest.files.contains(where: { destination($0.path).hasPrefix(historyFolder + "/") }) {
            try LayoutFolder.make(folder.exports)
            try AtomicFile.makeDirectory(folder.exports + "/imported")
            try AtomicFile.makeDirectory(historyFolder)
        }
        // A file already there (an import interrupted before its restore) must be the same
        // file; anything else is never overwritten.
        var present = Set<String>()
        for f in manifest.files {
            let dest = destination(f.path)
            guard FileManager.default.fileExists(atPath: dest) else { continue }
            guard let (hex, size) = try? FileDigest.sha256(path: dest), hex == f.sha256, size == f.sizeBytes else {
                throw ToolFailure(.cantCreate, "\(dest) exists and differs from the snapshot's: import never overwrites", hint: "import into a new, empty --data-dir")
            }
            present.insert(f.path)
        }
        for f in manifest.files where !present.contains(f.path) {
            guard rename(base + "/" + f.path, destination(f.path)) == 0 else {
                throw ToolFailure(.ioError, "cannot place \(f.path): \(String(cString: strerror(errno)))")
            }
        }
        try AtomicFile.syncDirectory(folder.backups)
        try AtomicFile.syncDirectory(folder.bundles)
        var outcome = Outcome(snapshot: snap)
        outcome.bundles = manifest.files.filter { $0.path.hasPrefix("bundles/") && !$0.path.hasSuffix(".manifest.json") }.count
        let copy = folder.root + "/" + manifest.databaseCopy
        // The session folders before the database (their paths read from the copy): a
        // killed import leaves no tosca.db, so a re-run finishes it. An extract is staged
        // and renamed whole, so a folder that is there is complete.
        if extractSessions {
            let job = BundleJob(folder: folder)
            for b in try job.published() {
                let target = try job.originalFolder(of: b.sessionID, database: copy)
                guard !FileManager.default.fileExists(atPath: target) else { continue }
                say("extracting session \(b.sessionID) into \(target)")
                do { _ = try SessionBundle.extract(path: b.path, to: target, identities: identities) } catch let e as BundleError {
                    if case .needsIdentity = e {
                        throw ToolFailure(.noPermission, "\(PathName.name(b.path)) is encrypted: pass --identity with one of the clinic's age identities")
                    }
                    throw ToolFailure(.dataError, "\(PathName.name(b.path)): \(e.description)")
                }
                outcome.sessionsExtracted.append(target)
            }
        }
        // The database last: a verified restore of the copy (D12, WAL mode, the restore
        // recorded), which takes its own locks.
        lock?.unlock()
        lock = nil
        say("restoring \(manifest.databaseCopy) into \(folder.database)")
        _ = try RestoreJob(folder: folder).run(RestoreRequest(selection: .path(copy)), show: { _ in }, confirm: { true }, say: say)
        outcome.database = folder.database
        Journal.shared.log(.notice, "imported snapshot \(snap.shortID) of \(restic.repository.redacted) into \(folder.root)",
                           id: .restored, fields: ["TOSCA_SNAPSHOT": snap.id, "TOSCA_REPOSITORY": restic.repository.redacted])
        return outcome
    }
}
