import CSpawn
import Foundation
import ToscaCore

/// A restic repository an export goes to (D19) and how to open it: anything restic takes
/// (a folder on a mounted drive, `sftp:`, `rest:`, `s3:`...), its password file, and the
/// options every export command shares.
public struct ExportRepository: Sendable {
    public var location: String
    /// The password, read (and checked) before a root run switches to the data folder's
    /// owner: restic gets it on a pipe, never from a file it would have to open itself.
    public var password: [UInt8]
    public var allowSameDevice = false
    public var cacheDir: String?

    /// The systemd credential that holds the repository password.
    public static let credentialName = "tosca-export-pass"

    /// Where the units' export repository is configured (`TOSCA_EXPORT_REPO=...`).
    public static let configFile = "/etc/tosca-maint/export.conf"

    /// The configured repository location: `TOSCA_EXPORT_REPO` in the environment (the
    /// units load the file with `EnvironmentFile=`), else its line in `configFile`; nil
    /// when neither names one. A configuration file that cannot be read is 78.
    public static func configuredLocation(environment: [String: String] = ProcessInfo.processInfo.environment,
                                          configFile: String = ExportRepository.configFile) throws -> String? {
        if let e = environment["TOSCA_EXPORT_REPO"], !e.isEmpty { return e }
        guard FileManager.default.fileExists(atPath: configFile) else { return nil }
        guard let text = try? String(contentsOfFile: configFile, encoding: .utf8) else {
            throw ToolFailure(.config, "\(configFile) cannot be read", hint: "it holds one line TOSCA_EXPORT_REPO=<repository>, readable by the tosca user")
        }
        for line in text.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("TOSCA_EXPORT_REPO=") else { continue }
            var v = String(t.dropFirst("TOSCA_EXPORT_REPO=".count)).trimmingCharacters(in: .whitespaces)
            if v.count >= 2, let q = v.first, q == "\"" || q == "'", v.last == q { v = String(v.dropFirst().dropLast()) }
            return v.isEmpty ? nil : v
        }
        return nil
    }

    /// A relative local folder (and cache folder) is taken from the current folder now:
    /// restic runs in other folders (the export's staging folder).
    public init(location: String, password: [UInt8], allowSameDevice: Bool = false, cacheDir: String? = nil) {
        self.location = location
        self.password = password
        self.allowSameDevice = allowSameDevice
        self.cacheDir = cacheDir.map(Self.absolute)
        if let local = localPath, !local.hasPrefix("/") {
            self.location = (location.hasPrefix("local:") ? "local:" : "") + Self.absolute(local)
        }
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// The folder of a local repository (`/media/x/repo`, `local:/media/x/repo`), or nil for
    /// a remote one.
    public var localPath: String? {
        if location.hasPrefix("local:") { return String(location.dropFirst("local:".count)) }
        let schemes = ["sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:"]
        return schemes.contains(where: location.hasPrefix) ? nil : location
    }

    /// The location without credentials (a `user:password@` in a URL is dropped): what
    /// logs and export manifests carry.
    public var redacted: String {
        guard let scheme = location.range(of: "://"), let at = location[scheme.upperBound...].firstIndex(of: "@") else { return location }
        let hostStart = location.index(after: at)
        // Only an "@" before the first "/" of the authority is a userinfo separator.
        if let slash = location[scheme.upperBound...].firstIndex(of: "/"), slash < at { return location }
        return String(location[..<scheme.upperBound]) + String(location[hostStart...])
    }

    /// The password in the file given, else in the systemd credential; the file checked by
    /// the D8 rules (a regular file, not a link or FIFO, owned by us or root, mode 0400 or
    /// 0600) and its content (one non-empty line). Never logged, never an environment
    /// variable.
    public static func password(file given: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> [UInt8] {
        let path: String
        if let given, !given.isEmpty {
            path = given
        } else if let dir = environment["CREDENTIALS_DIRECTORY"], !dir.isEmpty,
                  FileManager.default.fileExists(atPath: dir + "/" + credentialName) {
            path = dir + "/" + credentialName
        } else {
            throw ToolFailure(.config, "no repository password: give --password-file FILE or the systemd credential \(credentialName)",
                              hint: "a file of one line, mode 0600, readable by the service user only")
        }
        // The D8 file rules, shared with key files: no link, no FIFO, owner, no group or
        // other bits, read from the descriptor that was checked.
        let read: (bytes: [UInt8], mode: mode_t)
        do { read = try SecretFile.read(path: path, limit: 4097, forbiddenModeBits: 0o077) } catch let e as KeyFileError {
            switch e {
            case .notRegularFile:
                throw ToolFailure(.noPermission, "the password file \(path) is not a regular file (a link, folder or FIFO)", hint: "a regular file, mode 0400 or 0600")
            case .badOwner(_, let uid):
                throw ToolFailure(.noPermission, "the password file \(path) belongs to another user (uid \(uid))", hint: "chown it to the service user or root")
            case .tooOpen(_, let mode):
                throw ToolFailure(.noPermission, "the password file \(path) has mode \(String(mode & 0o777, radix: 8)): others could read the repository password",
                                  hint: "chmod 600 \(path)")
            case .unreadable(_, let reason):
                throw ToolFailure(.noPermission, "the password file \(path) cannot be read: \(reason)")
            case .badFormat:
                throw ToolFailure(.noPermission, "the password file \(path) cannot be read")
            }
        }
        guard read.mode & 0o777 == 0o400 || read.mode & 0o777 == 0o600 else {
            throw ToolFailure(.noPermission, "the password file \(path) has mode \(String(read.mode & 0o777, radix: 8)): a password file is 0400 or 0600",
                              hint: "chmod 600 \(path)")
        }
        let text = read.bytes
        guard !text.isEmpty, text.count <= 4096 else {
            throw ToolFailure(.noPermission, "the password file \(path) is empty or too large (one line expected)")
        }
        var lines = text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        guard lines.count == 1, let line = lines.first, !line.isEmpty else {
            throw ToolFailure(.noPermission, "the password file \(path) must hold exactly one non-empty line")
        }
        return Array(line)
    }
}

/// restic run as a child process (D19), with its failures mapped to our exit codes. Its
/// password goes on a pipe (`--password-file /dev/stdin`); restic's own variables for the
/// password and repository are removed from the child's environment, so no other source
/// is used.
public struct Restic: Sendable {
    public let executable: String
    public let repository: ExportRepository
    /// restic on one core (`GOMAXPROCS=1`): while a recorder runs, its commits keep the other.
    public var oneCore = false

    /// restic on PATH, else 78 naming the package.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        for dir in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/restic"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw ToolFailure(.config, "restic is not installed (it is the export engine)", hint: "apt-get install restic (Debian package restic)")
    }

    public init(repository: ExportRepository, executable: String? = nil) throws {
        self.repository = repository
        self.executable = try executable ?? Self.locate()
    }

    public struct Output: Sendable {
        public let status: Int32
        public let stdout: Data
        public let stderr: String
    }

    /// Runs `restic -r REPO --password-file /dev/stdin [--cache-dir D] ARGS` in
    /// `directory`; a failure throws the mapped ``ToolFailure`` unless `check` is false.
    /// A lock left by a restic run that died (its process gone: restic calls it stale) is
    /// removed with `restic unlock`, which removes no other lock, and the command retried
    /// once.
    @discardableResult
    public func run(_ args: [String], in directory: String? = nil, check: Bool = true) throws -> Output {
        let first = try runOnce(args, in: directory)
        guard first.status != 0, first.stderr.lowercased().contains("repository is already locked"), args.first != "unlock" else {
            if check, first.status != 0 { throw Self.failure(first, repository: repository, command: args.first ?? "") }
            return first
        }
        _ = try runOnce(["unlock"], in: directory)
        let second = try runOnce(args, in: directory)
        if check, second.status != 0 { throw Self.failure(second, repository: repository, command: args.first ?? "") }
        return second
    }

    func runOnce(_ args: [String], in directory: String?) throws -> Output {
        var full = ["-r", repository.location, "--password-file", "/dev/stdin"]
        if let cache = repository.cacheDir ?? ProcessInfo.processInfo.environment["CACHE_DIRECTORY"].flatMap({ $0.isEmpty ? nil : $0 }) {
            full += ["--cache-dir", cache]
        }
        full += args
        var env = ProcessInfo.processInfo.environment
        for k in ["RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE"] { env[k] = nil }
        if oneCore { env["GOMAXPROCS"] = "1" }
        // stderr to a file (restic may write much while stdout is read to its end).
        let errPath = NSTemporaryDirectory() + "/tosca-restic-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).err"
        let errFD = open(errPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard errFD >= 0 else {
            throw ToolFailure(.ioError, "cannot create a scratch file for restic's messages in \(NSTemporaryDirectory()): \(String(cString: strerror(errno)))")
        }
        defer { close(errFD); unlink(errPath) }
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1]
        // The child closes every descriptor but its three (close_range in tosca_spawn).
        guard pipe(&inPipe) == 0 else { throw ToolFailure(.ioError, "pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&outPipe) == 0 else {
            close(inPipe[0]); close(inPipe[1])
            throw ToolFailure(.ioError, "pipe: \(String(cString: strerror(errno)))")
        }
        for fd in inPipe + outPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // restic dies with us (SIGKILL when we die), so a killed export leaves no restic
        // behind still writing.
        let pid = Self.spawn(executable, [executable] + full, environment: env, directory: directory,
                             stdin: inPipe[0], stdout: outPipe[1], stderr: errFD)
        close(inPipe[0])
        close(outPipe[1])
        guard pid > 0 else {
            close(inPipe[1]); close(outPipe[0])
            throw ToolFailure(.config, "restic could not be started (\(executable)): \(String(cString: strerror(errno)))", hint: "apt-get install restic")
        }
        // restic gone before it read its password must give an error, not kill us.
        signal(SIGPIPE, SIG_IGN)
        // At most 4 KiB: the pipe holds it all, restic reads it when it opens the repository.
        let secret = repository.password + [10]
        _ = secret.withUnsafeBytes { write(inPipe[1], $0.baseAddress, $0.count) }
        close(inPipe[1])
        let watch = DriveWatch(repository: repository, child: pid)
        var stdout = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(outPipe[0], $0.baseAddress, $0.count) }
            if n > 0 { stdout.append(contentsOf: buffer[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        close(outPipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if let gone = watch?.stop() {
            var message = "the drive holding \(repository.redacted) went away during restic \(args.first ?? ""): \(gone); restic was stopped (an export is not recorded, an import places nothing)"
            if let beneath = DriveWatch.writtenBeneath(repository) {
                message += "; restic may have written into \(beneath) on the disk beneath the mount point: remove it before the drive is mounted again"
            }
            throw ToolFailure(.ioError, message, hint: "plug the drive in, mount it, and run the export again")
        }
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        // Exited: its code; killed by a signal: 128 + the signal.
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        if code == 127 && stderr.isEmpty {
            throw ToolFailure(.config, "restic could not be started (\(executable)) in \(directory ?? "the current folder")", hint: "apt-get install restic")
        }
        return Output(status: code, stdout: stdout, stderr: stderr)
    }

    /// fork + exec through `tosca_spawn` (CSpawn): Foundation's Process needs a
    /// socket pair for its run loop, which the hardened units do not always grant.
    static func spawn(_ path: String, _ argv: [String], environment: [String: String], directory: String?,
                      stdin: Int32, stdout: Int32, stderr: Int32) -> pid_t {
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        return cArgs.withUnsafeBufferPointer { a in
            cEnv.withUnsafeBufferPointer { e in
                if let directory {
                    return directory.withCString { tosca_spawn(path, a.baseAddress, e.baseAddress, $0, stdin, stdout, stderr) }
                }
                return tosca_spawn(path, a.baseAddress, e.baseAddress, nil, stdin, stdout, stderr)
            }
        }
    }

    public struct Snapshot: Sendable {
        public let id: String
        public let shortID: String
        public let host: String
        public let time: String
    }

    /// The export snapshots of the repository (tag `tosca-export`), oldest first; `host`
    /// keeps one device's.
    public func exportSnapshots(host: String? = nil) throws -> [Snapshot] {
        var args = ["snapshots", "--json", "--tag", "tosca-export"]
        if let host { args += ["--host", host] }
        let r = try run(args)
        guard let list = try? JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]] else {
            throw ToolFailure(.ioError, "restic snapshots gave no list")
        }
        return list.compactMap { s in
            guard let id = s["id"] as? String else { return nil }
            return Snapshot(id: id, shortID: s["short_id"] as? String ?? String(id.prefix(8)),
                            host: s["hostname"] as? String ?? "", time: s["time"] as? String ?? "")
        }.sorted { $0.time < $1.time }
    }

    /// restic 0.14 exits 1 for nearly every failure: its messages say which.
    public static func failure(_ r: Output, repository: ExportRepository, command: String) -> ToolFailure {
        let text = r.stderr
        let lower = text.lowercased()
        let last = text.split(separator: "\n").last.map(String.init) ?? "exit \(r.status)"
        let repo = repository.redacted
        let unreachable = ["connection refused", "no such host", "network is unreachable", "i/o timeout", "no route to host",
                           "connection reset", "tls handshake timeout", "context deadline exceeded"]
        if lower.contains("wrong password or no key found") {
            return ToolFailure(.noPermission, "the password does not open the repository \(repo)", hint: "check --password-file (or the credential \(ExportRepository.credentialName))")
        }
        if lower.contains("repository is already locked") {
            return ToolFailure(.tempFail, "the repository \(repo) is locked by another restic run", hint: "retry when that run is over; `restic unlock` removes a stale lock")
        }
        if unreachable.contains(where: lower.contains) {
            return ToolFailure(.tempFail, "the repository \(repo) cannot be reached: \(last)", hint: "check the network and that the server runs; the next run retries")
        }
        if lower.contains("is there a repository at the following location?") {
            return ToolFailure(.noInput, "there is no restic repository at \(repo)", hint: "tosca-maint export init --repo \(repo) (once, for a new repository)")
        }
        if lower.contains("403") && (lower.contains("forbidden") || lower.contains("append")) {
            return ToolFailure(.noPermission, "the repository is append-only: run forget where it is allowed (\(last))")
        }
        if r.status == 3 {
            return ToolFailure(.ioError, "restic \(command) could not read every file: the snapshot is incomplete (\(last))")
        }
        return ToolFailure(.ioError, "restic \(command) failed (exit \(r.status)): \(last)")
    }
}

/// A local repository's drive, watched while restic runs: when the folder stops being on
/// the filesystem it was on (the drive pulled out, or unmounted), restic is stopped at
/// once. Left alone it retries for a minute or more and may then write into the empty
/// mount point, on the device's own disk.
final class DriveWatch: @unchecked Sendable {
    private let path: String
    private let device: dev_t
    private let child: pid_t
    private let lock = NSLock()
    private var done = false
    private var gone: String?
    private let finished = DispatchSemaphore(value: 0)

    /// Watches the repository folder (or, before `init`, the folder it goes in); nil for a
    /// remote repository.
    init?(repository: ExportRepository, child: pid_t) {
        guard let local = repository.localPath else { return nil }
        var st = stat()
        if stat(local, &st) == 0 {
            path = local
        } else if stat(PathName.parent(local), &st) == 0 {
            path = PathName.parent(local)
        } else {
            return nil
        }
        device = st.st_dev
        self.child = child
        let t = Thread { [self] in self.loop() }
        t.start()
    }

    private func loop() {
        defer { finished.signal() }
        while true {
            usleep(200_000)
            lock.lock()
            let stop = done
            lock.unlock()
            if stop { return }
            guard let reason = absence() else { continue }
            lock.lock()
            gone = reason
            lock.unlock()
            kill(child, SIGTERM)
            // restic's cleanup may itself wait on the missing drive.
            for _ in 0..<20 where kill(child, 0) == 0 { usleep(100_000) }
            kill(child, SIGKILL)
            return
        }
    }

    /// Why the folder is no longer on the drive, or nil while it is.
    private func absence() -> String? {
        var st = stat()
        if stat(path, &st) != 0 { return "\(path): \(String(cString: strerror(errno)))" }
        return st.st_dev != device ? "\(path) is no longer on the drive's filesystem" : nil
    }

    /// Ends the watch once restic has exited; why the drive went away, if it did (also
    /// when restic, failing faster than the watch looks, gave up on its own first).
    func stop() -> String? {
        lock.lock()
        done = true
        lock.unlock()
        finished.wait()
        lock.lock()
        defer { lock.unlock() }
        return gone ?? absence()
    }

    /// The repository folder when it now exists on the disk beneath the drive's mount point
    /// (restic creates missing folders as it writes).
    static func writtenBeneath(_ repository: ExportRepository) -> String? {
        guard let local = repository.localPath else { return nil }
        return FileManager.default.fileExists(atPath: local) ? local : nil
    }
}
