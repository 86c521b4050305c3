import Foundation
import ToscaCore

/// A fresh private folder, removed when released.
public final class TempDir: @unchecked Sendable {
    public let path: String
    public init(_ label: String = "tosca") {
        var template = Array((NSTemporaryDirectory() + "/\(label)-XXXXXX").utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }
    public func sub(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Result of a finished process.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public var output: String { stdout + stderr }
}

/// Folder of the built executables: `$TOSCA_BIN_DIR`, else the folder of the test binary
/// (SwiftPM puts both in `.build/<config>/`).
public func binDirectory() -> String {
    if let d = ProcessInfo.processInfo.environment["TOSCA_BIN_DIR"], !d.isEmpty { return d }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = PathName.parent(exe)
    // On Linux the test runner is `<bin>/<package>PackageTests.xctest`.
    while !dir.isEmpty && dir != "/" && !FileManager.default.isExecutableFile(atPath: dir + "/tosca-sim") {
        dir = PathName.parent(dir)
    }
    return dir
}

/// Path of one of our executables; fails loudly when it was not built.
public func executable(_ name: String) -> String {
    let p = binDirectory() + "/" + name
    precondition(FileManager.default.isExecutableFile(atPath: p), "\(name) not built next to the tests (\(p)); run `swift build --build-tests` first")
    return p
}

/// Finds a program on PATH.
public func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let p = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

/// Starts a process with stdout and stderr to files (no pipe can fill up).
public final class Spawned: @unchecked Sendable {
    public let process = Process()
    let outPath: String, errPath: String
    public init(_ exe: String, _ args: [String], environment: [String: String]? = nil, stdin: String? = nil) throws {
        let tmp = NSTemporaryDirectory() + "/spawn-\(UUID().uuidString)"
        outPath = tmp + ".out"; errPath = tmp + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "TOSCA_DATA_DIR")
        env.removeValue(forKey: "CREDENTIALS_DIRECTORY")
        // A test runner started by systemd must not make the tools believe they run in a unit.
        for k in ["INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET"] { env.removeValue(forKey: k) }
        for k in env.keys where k.hasPrefix("MONITOR_") { env.removeValue(forKey: k) }
        if let environment { env.merge(environment) { $1 } }
        process.environment = env
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        if let stdin {
            let pipe = Pipe()
            process.standardInput = pipe
            try process.run()
            pipe.fileHandleForWriting.write(Data(stdin.utf8))
            try pipe.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
    }
    public var pid: Int32 { process.processIdentifier }
    public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }
    public func wait() -> ProcessResult {
        process.waitUntilExit()
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return ProcessResult(status: status, stdout: out, stderr: err)
    }
    /// Current stdout, without waiting.
    public var currentStdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    public var currentStderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
}

/// Runs a program to completion.
@discardableResult
public func run(_ exe: String, _ args: [String], environment: [String: String]? = nil, stdin: String? = nil) throws -> ProcessResult {
    try Spawned(exe, args, environment: environment, stdin: stdin).wait()
}

/// The stock `sqlite3` CLI (libsqlite3 3.40): an independent oracle.
@discardableResult
public func sqlite3(_ db: String, _ sql: String) throws -> ProcessResult {
    try run(which("sqlite3") ?? "/usr/bin/sqlite3", ["-batch", "-bail", db], stdin: sql + "\n")
}

/// `sqlite3` output, trimmed; fails the caller when the CLI fails.
@discardableResult
public func sqlite3Value(_ db: String, _ sql: String) throws -> String {
    let r = try sqlite3(db, sql)
    guard r.status == 0 else { throw OracleError(message: "sqlite3 failed (\(r.status)): \(r.stderr) for \(sql)") }
    return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The stock `sqlcipher` CLI with a raw key.
@discardableResult
public func sqlcipher(_ db: String, keyHex: String, _ sql: String) throws -> ProcessResult {
    try run(which("sqlcipher") ?? "/usr/bin/sqlcipher", ["-batch", "-bail", db],
            stdin: "PRAGMA key = \"x'\(keyHex)'\";\n" + sql + "\n")
}

public struct OracleError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// SHA-256 of a file's bytes (hex), or "" when absent.
public func fileSHA256(_ path: String) -> String {
    guard let d = FileManager.default.contents(atPath: path) else { return "" }
    return sha256Hex(Array(d))
}

/// The repository's root folder (the one holding Package.swift).
public func packageRoot(file: String = #filePath) -> String {
    var dir = PathName.parent(file)
    while !dir.isEmpty && dir != "/" && !FileManager.default.fileExists(atPath: dir + "/Package.swift") {
        dir = PathName.parent(dir)
    }
    return dir
}

/// Runs `make` in the repository with the already built binaries of this test run
/// (`make install` builds nothing itself), staging into `stage`.
@discardableResult
public func runMake(_ targets: [String], stage: String, variables: [String: String] = [:]) throws -> ProcessResult {
    var args = ["-C", packageRoot(), "--no-print-directory"] + targets
    let vars = ["BUILT": binDirectory(), "MANTOOL": binDirectory() + "/generate-manual", "STAGE": stage].merging(variables) { $1 }
    args += vars.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    return try run(which("make") ?? "/usr/bin/make", args)
}

/// All files (not folders) under `root`, as paths relative to it, sorted.
public func filesUnder(_ root: String) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
    var out: [String] = []
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue { out.append(rel) }
    }
    return out.sorted()
}

/// The repository's `Tests/Fixtures` folder.
public func fixturePath(_ name: String, file: String = #filePath) -> String {
    var dir = PathName.parent(file)
    while !dir.isEmpty && dir != "/" && !FileManager.default.fileExists(atPath: dir + "/Fixtures") {
        dir = PathName.parent(dir)
    }
    return dir + "/Fixtures/" + name
}

/// Writes a key file (64 hex characters) with `mode`; returns the hex.
@discardableResult
public func writeKeyFile(_ path: String, mode: mode_t = 0o400, hex: String? = nil) throws -> String {
    let h = hex ?? (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    _ = FileManager.default.createFile(atPath: path, contents: Data((h + "\n").utf8))
    chmod(path, mode)
    return h
}

/// Waits until `condition` holds or `timeout` seconds pass; returns whether it held.
public func waitUntil(timeout: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}

/// A TOSCA v0.9.12 database made by the stock `sqlite3` CLI from the fixture schema, with
/// rows in every table; `orphans` adds sessions with `tech_id = 0` (no such technician).
public func makeLegacyDatabase(at path: String, orphans: Bool = false) throws {
    let schema = try String(contentsOfFile: fixturePath("tosca-v0.9.12-schema.sql"), encoding: .utf8)
    var sql = schema + "\nBEGIN;\n"
    sql += """
        INSERT INTO tech_users VALUES (1, 'alice', 'Alice Example', 'admin', '2025-03-01 09:00:00.000000', '2025-11-01 08:00:00.123456', 1, NULL);
        INSERT INTO tech_users VALUES (2, 'bob', 'Bob Example', 'technician', '2025-03-02 09:00:00.000000', NULL, 0, 'left');
        INSERT INTO subjects VALUES (1, 'P-001', '1970-01-01 00:00:00.000000', 'F', '2025-04-01 10:00:00.000000', 1, NULL, 'note with ''quote''', 1);
        INSERT INTO subjects VALUES (2, 'P-002', NULL, NULL, '2025-04-02 10:00:00.000000', NULL, NULL, NULL, 0);
        INSERT INTO protocols VALUES (1, 'Standard', 'desc', 'standard', '{"power_w":1.5}', '2025-04-01 11:00:00.000000', 1, NULL, '2025-10-01 12:00:00.000000', 3, 1);
        INSERT INTO protocols VALUES (2, 'Old', NULL, 'ramp', '{}', '2025-04-01 11:00:00.000000', NULL, NULL, NULL, 0, 0);

        """
    for i in 1...40 {
        sql += "INSERT INTO sessions VALUES (\(i), \(i % 2 + 1), \(i % 2 + 1), \(i % 3 == 0 ? "NULL" : "1"), '2025-05-\(String(format: "%02d", i % 28 + 1)) 10:00:00.000000', '2025-05-\(String(format: "%02d", i % 28 + 1)) 10:20:00.000000', 1200, 'completed', NULL, 'left eye', 'notes \(i)', 'Standard', '{\"power_w\":1.5}', 'sessions/P-00\(i % 2 + 1)/2025-05-\(i)', NULL, \(Double(i) * 1.25), 1.5, 2.0, \(Double(i) * 1.875), NULL, '2025-05-01 10:00:00.000000');\n"
    }
    for i in 1...60 {
        sql += "INSERT INTO safety_log VALUES (\(i), '2025-05-\(String(format: "%02d", i % 28 + 1)) 10:0\(i % 10):00.000000', \(i % 40 + 1), \(i % 2 + 1), 'interlock_check', '\(["info", "warning", "critical", "emergency"][i % 4])', 'event \(i)', 'ready', 'off', \(i % 2), \(i % 3 == 0 ? "NULL" : "1"), \(Double(i) / 8), \(i % 5 == 0 ? "'stopped'" : "NULL"), '{\"i\":\(i)}');\n"
    }
    if orphans {
        sql += "INSERT INTO sessions VALUES (41, 1, 0, 1, '2025-06-01 10:00:00.000000', NULL, NULL, 'aborted', 'legacy', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2025-06-01 10:00:00.000000');\n"
        sql += "INSERT INTO sessions VALUES (42, 2, 0, NULL, '2025-06-02 10:00:00.000000', NULL, NULL, 'completed', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2025-06-02 10:00:00.000000');\n"
    }
    sql += "COMMIT;\n"
    let r = try run(which("sqlite3") ?? "/usr/bin/sqlite3", ["-batch", "-bail", path], stdin: sql)
    guard r.status == 0 else { throw OracleError(message: "making legacy database failed: \(r.stderr)") }
}

/// Runs `tosca-maint` with arguments.
@discardableResult
public func maint(_ args: [String], environment: [String: String]? = nil) throws -> ProcessResult {
    try run(executable("tosca-maint"), args, environment: environment)
}

/// A data folder with simulated sessions, recorded by the real `tosca-sim`.
public func simulatedData(_ data: String, sessions: Int = 2, keyFile: String? = nil) throws {
    var args = ["--data-dir", data, "--sessions", "\(sessions)", "--duration", "0.2", "--sample-rate", "200", "--event-rate", "100", "--seed", "3"]
    if let keyFile { args += ["--key-file", keyFile] }
    let r = try run(executable("tosca-sim"), args)
    guard r.status == 0 else { throw OracleError(message: "tosca-sim failed: \(r.output)") }
}

/// Files in a folder (names), sorted; empty when it does not exist.
public func listing(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

/// Flips one byte of a file at `offset`.
public func flipByte(_ path: String, at offset: UInt64) throws {
    let h = try requireValue(FileHandle(forUpdatingAtPath: path))
    try h.seek(toOffset: offset)
    let b = try h.read(upToCount: 1) ?? Data([0])
    try h.seek(toOffset: offset)
    h.write(Data([b[0] ^ 0xFF]))
    try h.close()
}

func requireValue<T>(_ v: T?) throws -> T { guard let v else { throw OracleError(message: "unexpected nil") }; return v }

/// Grows a current database with `events` treatment events through the stock sqlite3 CLI.
public func growDatabase(_ db: String, events: Int) throws {
    try sqlite3Value(db, """
        PRAGMA journal_mode = WAL;
        -- A paused session holds the added events: a finished one is sealed (its events
        -- may not change), and an in_progress one would be recovered by the recorder.
        INSERT INTO sessions (subject_id, tech_id, start_time, status, created_date)
        SELECT subject_id, tech_id, start_time, 'paused', created_date FROM sessions
        WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE status = 'paused') ORDER BY session_id LIMIT 1;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(events))
        INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type, laser_power_commanded_watts,
          laser_power_actual_watts, photodiode_voltage_v, interlock_status, event_details)
        SELECT (SELECT MAX(session_id) FROM sessions WHERE status = 'paused'), '2026-01-01 00:00:00.000000', i, 'power_reading', 1.5, 1.5, 1.2,
               '{"door":"closed","estop":"armed"}', '{"pad":"' || hex(randomblob(64)) || '"}' FROM n;
        """)
}

/// Every row of every TOSCA v0.9.12 table, as the stock `sqlite3` CLI prints it in quote
/// mode, over the baseline's columns only (so columns added by migrations do not count).
public func legacyTableRows(_ path: String) throws -> [String: String] {
    var out: [String: String] = [:]
    let mem = try Database(path: ":memory:", options: .init(create: true))
    try mem.execute(toscaBaselineSchemaSQL)
    for table in try mem.tableNames() {
        let cols = try mem.columnNames(of: table).joined(separator: ", ")
        out[table] = try sqlite3Value(path, ".mode quote\nSELECT \(cols) FROM \(table) ORDER BY rowid;")
    }
    return out
}

/// An age key pair made by the stock `age-keygen` in `dir`: the identity file, a
/// recipients file holding its recipient (what /etc/tosca-maint/bundle-recipients holds on
/// a device), and the recipient itself.
public struct AgeKeypair {
    public let identity: String
    public let recipients: String
    public let recipient: String
}

public func ageKeypair(in dir: TempDir, name: String = "identity") throws -> AgeKeypair {
    guard let keygen = which("age-keygen") else { throw OracleError(message: "age-keygen is needed (apt-get install age)") }
    let identity = dir.sub(name)
    let made = try run(keygen, ["-o", identity])
    guard made.status == 0 else { throw OracleError(message: "age-keygen: \(made.output)") }
    let recipient = try run(keygen, ["-y", identity]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    let recipients = dir.sub(name + ".recipients")
    try ("# the clinic\n" + recipient + "\n").write(toFile: recipients, atomically: true, encoding: .utf8)
    return AgeKeypair(identity: identity, recipients: recipients, recipient: recipient)
}

/// A data folder for export tests: two recorded sessions, a verified backup and their
/// bundles; a password file; a repository folder on another filesystem (/dev/shm, a
/// tmpfs) when there is one, else beside the data folder with --allow-same-device.
public struct ExportSetup: Sendable {
    public let dir: TempDir
    public let data: String
    public let repo: String
    public let password: String
    public let cache: String
    public let sameDevice: Bool
    public var repoArgs: [String] { ["--repo", repo, "--password-file", password, "--cache-dir", cache] + (sameDevice ? ["--allow-same-device"] : []) }

    public static func make() throws -> ExportSetup {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        guard try maint(["backup", "--data-dir", data]).status == 0, try maint(["bundle", "--data-dir", data]).status == 0 else {
            throw OracleError(message: "backup or bundle failed in the export set-up")
        }
        let password = dir.sub("export-pass")
        try "correct horse battery staple\n".write(toFile: password, atomically: true, encoding: .utf8)
        chmod(password, 0o600)
        var shm = stat(), tmp = stat()
        let other = stat("/dev/shm", &shm) == 0 && stat(dir.path, &tmp) == 0 && shm.st_dev != tmp.st_dev && access("/dev/shm", W_OK) == 0
        let repo = other ? "/dev/shm/tosca-export-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))/repo" : dir.sub("repo")
        if other { try AtomicFile.makeDirectory(PathName.parent(repo)) }
        return ExportSetup(dir: dir, data: data, repo: repo, password: password, cache: dir.sub("cache"), sameDevice: !other)
    }

    public func cleanup() {
        if repo.hasPrefix("/dev/shm/") { try? FileManager.default.removeItem(atPath: PathName.parent(repo)) }
    }

    /// restic run by hand, as an oracle.
    public func restic(_ args: [String]) throws -> ProcessResult {
        guard let exe = which("restic") else { throw OracleError(message: "restic is needed (apt-get install restic)") }
        return try run(exe, ["-r", repo, "--password-file", password, "--cache-dir", cache] + args)
    }
}

/// sha256sum's digest of a file (the stock tool as the oracle).
public func stockSHA256(_ path: String) throws -> String {
    String(try run("/usr/bin/sha256sum", [path]).stdout.prefix(64))
}

/// A filesystem of its own for a test, like a USB drive: an ext4 image, loop-mounted (root
/// and loop devices needed: see ``available``). `unplug` unmounts it lazily, as a drive
/// pulled out from under a running program; `plug` mounts it again.
public struct LoopDrive: Sendable {
    public let image: String
    public let mountPoint: String

    public init(image: String, mountPoint: String, sizeMiB: Int = 256) throws {
        self.image = image
        self.mountPoint = mountPoint
        guard FileManager.default.createFile(atPath: image, contents: nil), truncate(image, off_t(sizeMiB) << 20) == 0 else {
            throw OracleError(message: "cannot make \(image)")
        }
        let mkfs = try run("/usr/sbin/mkfs.ext4", ["-q", "-F", image])
        guard mkfs.status == 0 else { throw OracleError(message: "mkfs.ext4: \(mkfs.output)") }
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try plug()
    }

    public func plug() throws {
        // The image is never mounted twice: the lazily unmounted instance lets go first.
        guard waitUntil(timeout: 30, { ((try? run("/usr/sbin/losetup", ["-j", image]).stdout) ?? "x").isEmpty }) else {
            throw OracleError(message: "\(image) is still attached to a loop device")
        }
        let r = try run("/usr/bin/mount", ["-o", "loop", image, mountPoint])
        guard r.status == 0 else { throw OracleError(message: "mount \(image): \(r.output)") }
    }

    public func unplug() throws {
        let r = try run("/usr/bin/umount", ["-l", mountPoint])
        guard r.status == 0 else { throw OracleError(message: "umount \(mountPoint): \(r.output)") }
    }

    /// Unmounted for good (the test's end).
    public func detach() { _ = try? run("/usr/bin/umount", ["-l", mountPoint]) }

    /// Whether this machine lets a test loop-mount an image.
    public static let available: Bool = {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/mkfs.ext4") else { return false }
        let dir = TempDir()
        guard let d = try? LoopDrive(image: dir.sub("probe.img"), mountPoint: dir.sub("probe"), sizeMiB: 16) else { return false }
        d.detach()
        return true
    }()
}
