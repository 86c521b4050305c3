import Foundation
import ToscaCore

/// The data folder (ARCHITECTURE §2) as one value: its paths, the key that opens its
/// encrypted files (D8, D14), its locks (D5) and, for root runs, the switch to its owner.
/// Built once by the command layer (or a test) and handed to every job.
public struct DataFolder: Sendable {
    /// The folder itself: `--data-dir`, else `$TOSCA_DATA_DIR`, else `./data`.
    public let root: String
    /// The database key (`--key-file` or the `tosca-db-key` credential), if any.
    public let key: DatabaseKey?

    /// A folder at `root` (no checks: ``existing(_:key:environment:)`` checks).
    public init(root: String, key: DatabaseKey? = nil) {
        self.root = PathName.trimmed(root)
        self.key = key
    }

    /// The same folder with another key (rekey's new key, encrypt's key).
    public func with(key: DatabaseKey?) -> DataFolder { DataFolder(root: root, key: key) }

    // MARK: - Paths

    public var database: String { root + "/tosca.db" }
    /// `tosca.lock`: the recorder's (D5).
    public var databaseLock: String { root + "/tosca.lock" }
    /// Whether a recorder runs: another process holds `tosca.lock`. (A restore or the
    /// cutover holds it itself while it copies: that is not a recorder.) Copies and bundles
    /// made meanwhile go gently.
    public var recorderRuns: Bool { FileLock.isHeld(path: databaseLock, byOthers: true) }
    public var backups: String { root + "/backups" }
    public var quarantine: String { backups + "/quarantine" }
    /// `backups/.maint.lock`: maintenance runs serialize on it (D5).
    public var maintenanceLock: String { backups + "/.maint.lock" }
    public var sessions: String { root + "/sessions" }
    public var bundles: String { root + "/bundles" }
    public var exports: String { root + "/exports" }

    // MARK: - Which key opens which file (D14)

    /// The key for a published copy: its manifest says whether it is encrypted.
    public func key(for entry: CatalogEntry) -> DatabaseKey? {
        entry.manifest?.facts.encryption.isEncrypted == true ? key : nil
    }

    /// The key for a database file judged by its header: none when it starts with
    /// `SQLite format 3\0` (plaintext), else the folder's key.
    public func key(forFileAt path: String) -> DatabaseKey? {
        (try? FileHeader.classify(path: path)) == .plaintext ? nil : key
    }

    /// The key for the live database.
    public var liveKey: DatabaseKey? { key(forFileAt: database) }

    // MARK: - Resolving and checking

    /// `--data-dir`, else `$TOSCA_DATA_DIR` (when not empty), else `./data`; trailing
    /// slashes dropped.
    public static func resolve(_ option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        PathName.trimmed(option ?? environment["TOSCA_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "./data")
    }

    /// The data folder for a maintenance command: it must already exist as a folder. No
    /// command but the recorder (and `import`) creates one, so a mistyped `--data-dir` is
    /// an error (66), never an empty catalog that reports "ok"; an empty `--data-dir` is 64.
    public static func existing(_ option: String?, key: DatabaseKey? = nil,
                                environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DataFolder {
        if let option, option.isEmpty { throw ToolFailure(.usage, "--data-dir is empty", hint: "name the data folder, e.g. --data-dir /var/lib/tosca") }
        let folder = DataFolder(root: resolve(option, environment: environment), key: key)
        try folder.checkExists()
        return folder
    }

    /// 66 when the folder is missing or not a folder.
    public func checkExists() throws {
        var st = stat()
        guard stat(root, &st) == 0 else {
            let e = errno
            if e == ENOENT || e == ENOTDIR {
                throw ToolFailure(.noInput, "no data folder at \(root)", hint: "check --data-dir (or $TOSCA_DATA_DIR); tosca-maint never creates a data folder")
            }
            throw ToolFailure(e == EACCES ? .noPermission : .ioError, "cannot reach the data folder \(root): \(String(cString: strerror(e)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw ToolFailure(.noInput, "\(root) is not a folder: the data folder holds tosca.db and backups/", hint: "check --data-dir (or $TOSCA_DATA_DIR)")
        }
    }

    /// The catalog of `backups/`.
    public func scanCatalog() throws -> Catalog { try Catalog.scan(self) }

    // MARK: - Locks (D5)

    /// `backups/.maint.lock`, non-blocking (75 when held). Creates `backups/` (never the
    /// data folder itself, never through a link).
    public func takeMaintenanceLock() throws -> FileLock {
        try checkExists()
        do {
            try LayoutFolder.make(backups)
        } catch let e as POSIXFailure {
            throw ToolFailure(e.code == ENOSPC ? .ioError : .cantCreate, "cannot create the backup folder: \(e)",
                              hint: "make \(backups) writable by this user")
        }
        do {
            return try FileLock(path: maintenanceLock)
        } catch FileLockError.held(let path, let holder) {
            throw ToolFailure(.tempFail, "another maintenance run holds \(path)\(holder.map { " (pid \($0))" } ?? "")",
                              hint: "wait for it to finish and retry")
        } catch FileLockError.cannotOpen(let path, let reason) {
            throw ToolFailure(.cantCreate, "cannot create \(path): \(reason)", hint: "make \(backups) writable by this user")
        }
    }

    /// `.maint.lock`, then `tosca.lock`, for the operations that need the recorder stopped
    /// (restore, migrate, encrypt, rekey); 75 when either is held. `what` completes the
    /// hint: "stop the recording service, then run <what> again".
    public func takeExclusiveLocks(what: String) throws -> ExclusiveLocks {
        let maintenance = try takeMaintenanceLock()
        do {
            return ExclusiveLocks(maintenance: maintenance, database: try FileLock(path: databaseLock))
        } catch FileLockError.held(_, let holder) {
            maintenance.unlock()
            throw ToolFailure(.tempFail, "the recorder (or another tool) has \(database) open\(holder.map { " (pid \($0))" } ?? "")",
                              hint: "stop the recording service, then run \(what) again")
        } catch {
            maintenance.unlock()
            throw error
        }
    }

    // MARK: - Root runs

    /// Run as root on a data folder that belongs to another user (the device's `tosca`
    /// account, which the units run as), a maintenance run continues as that user before
    /// it writes anything: copies, manifests and locks it creates stay readable by the
    /// units, and the recorder's files keep their owner. Keys are read before this step (a
    /// key file may be root's, mode 0400). A no-op for any other caller. Irreversible for
    /// the process: the command layer calls it, by name, before a job writes.
    public func continueAsOwnerIfRoot() throws {
        guard geteuid() == 0 else { return }
        var st = stat()
        guard stat(root, &st) == 0, st.st_uid != 0 else { return }
        let uid = st.st_uid, gid = st.st_gid
        let name = getpwuid(uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "uid \(uid)"
        var groups = [gid]
        guard setgroups(1, &groups) == 0, setgid(gid) == 0, setuid(uid) == 0, getuid() == uid, geteuid() == uid else {
            throw ToolFailure(.noPermission, "running as root, cannot become \(name), the owner of \(root): \(String(cString: strerror(errno)))",
                              hint: "run it as \(name): runuser -u \(name) -- tosca-maint ...")
        }
        DataOwner.switchedTo = name
        Journal.shared.log(.notice, "running as root: continuing as \(name), the owner of \(root), so that what this run writes stays readable by the units")
    }
}

/// Whom a root run continues as (``DataFolder/continueAsOwnerIfRoot()``), for error hints.
public enum DataOwner {
    nonisolated(unsafe) public static var switchedTo: String?
}

/// `.maint.lock` and `tosca.lock` held together (``DataFolder/takeExclusiveLocks(what:)``).
public struct ExclusiveLocks: Sendable {
    public let maintenance: FileLock
    public let database: FileLock

    public func unlock() {
        database.unlock()
        maintenance.unlock()
    }
}
