import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

/// The defects a hostile-input campaign found, each driven through the real binaries.
@Suite struct HardeningTests {
    /// Paths a user may type: one-character, relative, trailing slash, `..`, non-ASCII and
    /// very long names. Every command ends with its exit code, never a signal.
    @Test func oddPathsGiveExitCodesNeverSignals() throws {
        let dir = TempDir()
        let data = dir.sub("d")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let long = String(repeating: "x", count: 300)
        let names = ["o", "./o", "o/", "../o", "é", "ü/ö", long, "e/f", "a/../b", "a/\u{301}"]
        // Relative names land in a scratch working folder of their own (cwd/..: scratch).
        let scratch = dir.sub("scratch")
        let cwd = scratch + "/cwd"
        try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: true)
        for n in names {
            for args in [["restore", "--latest", "--to", n, "--yes", "--data-dir", data],
                         ["verify", n, "--data-dir", data],
                         ["status", "--data-dir", n],
                         ["list", "--data-dir", n],
                         ["backup", "--data-dir", n],
                         ["prune", "--data-dir", n],
                         ["encrypt", "--key-file", n, "--rehearse", "--data-dir", data],
                         ["rekey", "--key-file", n, "--new-key-file", n, "--yes", "--data-dir", data],
                         ["restore", "--backup", n, "--dry-run", "--data-dir", data],
                         ["quarantine", n, "--dry-run", "--data-dir", data],
                         ["verify", "--latest", "--key-file", n, "--data-dir", data],
                         ["migrate", "status", "--data-dir", n],
                         ["snapshot", "--reason", "test", "--data-dir", n],
                         ["inspect", "--data-dir", n],
                         ["keygen", "--out", dir.sub("k") + "/" + n]] {
                let r = try run("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", cwd, executable("tosca-maint")] + args,
                                environment: ["HOME": dir.path, "PATH": "/usr/bin:/bin"])
                #expect([0, 1, 64, 65, 66, 73, 74, 77].contains(r.status), "\(args): \(r.status) \(r.output)")
                #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Illegal instruction"), "\(args)")
            }
        }
        // The two crashes found by hand: both end normally now (in a fresh folder).
        let cwd2 = dir.sub("cwd2")
        mkdir(cwd2, 0o700)
        let r = try run("/bin/sh", ["-c", "cd '\(cwd2)' && '\(executable("tosca-maint"))' restore --latest --to o --yes --data-dir '\(data)'"])
        #expect(r.status == 0, "\(r.output)")
        #expect(try sqlite3Value(cwd2 + "/o", "PRAGMA integrity_check;") == "ok")
        let s = try run("/bin/sh", ["-c", "cd '\(cwd2)' && '\(executable("tosca-sim"))' --data-dir e/f --sessions 1 --duration 0.2"])
        #expect(s.status == 0, "\(s.output)")
        #expect(FileManager.default.fileExists(atPath: cwd2 + "/e/f/tosca.db"))
    }

    @Test func pathArithmeticFollowsPOSIX() {
        #expect(PathName.parent("o") == "." && PathName.name("o") == "o")
        #expect(PathName.parent("/o") == "/" && PathName.name("/o") == "o")
        #expect(PathName.parent("a/b/") == "a" && PathName.name("a/b/") == "b")
        #expect(PathName.parent("/") == "/" && PathName.name("/") == "/")
        #expect(PathName.parent("a//b") == "a" && PathName.parent("") == ".")
        #expect(PathName.normalized("./a/../b//c/.") == "b/c" && PathName.normalized("/../x") == "/x" && PathName.normalized("../x") == "../x")
        #expect(PathName.join("a/", "b") == "a/b" && PathName.join("a", "b") == "a/b")
        // A combining mark right after a slash does not hide the slash (bytes, not graphemes).
        #expect(PathName.parent("a/\u{301}b") == "a" && PathName.name("a/\u{301}b") == "\u{301}b")
    }

    /// A mistyped --data-dir creates nothing and is an error; an empty one is a usage error.
    @Test func noCommandCreatesADataFolder() throws {
        let dir = TempDir()
        let missing = dir.sub("typo")
        for args in [["verify", "--all"], ["prune"], ["quarantine", "--failed"], ["list"], ["status"], ["backup"], ["restore", "--drill"]] {
            let r = try maint(args + ["--data-dir", missing])
            #expect(r.status == 66, "\(args): \(r.output)")
            #expect(!FileManager.default.fileExists(atPath: missing), "\(args) created \(missing)")
        }
        #expect(try maint(["status", "--data-dir", ""]).status == 64)
        let file = dir.sub("afile")
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        #expect(try maint(["list", "--data-dir", file]).status == 66)
        // An existing data folder with no copies: verify --all has nothing to verify (66).
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 66)
    }

    /// A symlinked layout folder is refused (73) and nothing outside the data folder is
    /// touched; the recorder refuses a symlinked sessions/<subject>/.
    @Test func symlinkedLayoutFoldersAreRefused() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let elsewhere = dir.sub("elsewhere")
        try FileManager.default.moveItem(atPath: data + "/backups", toPath: elsewhere)
        symlink(elsewhere, data + "/backups")
        let before = listing(elsewhere)
        for args in [["prune", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0"], ["backup"], ["list"], ["status"], ["verify", "--all"]] {
            let r = try maint(args + ["--data-dir", data])
            #expect(r.status == 73, "\(args): \(r.output)")
            #expect(r.stderr.contains("symbolic link"), "\(args): \(r.stderr)")
        }
        #expect(listing(elsewhere) == before)
        // quarantine/ as a link: housekeeping never moves a file through it.
        unlink(data + "/backups")
        try FileManager.default.moveItem(atPath: elsewhere, toPath: data + "/backups")
        let outside = dir.sub("outside-q")
        mkdir(outside, 0o700)
        symlink(outside, data + "/backups/quarantine")
        FileManager.default.createFile(atPath: data + "/backups/stray.db", contents: Data("SQLite format 3\0".utf8))
        #expect(try maint(["backup", "--data-dir", data]).status == 73)
        #expect(listing(outside).isEmpty && FileManager.default.fileExists(atPath: data + "/backups/stray.db"))
        // The recorder: sessions/<subject> as a link.
        let rec = try Recorder(dataDirectory: data)
        let (folder, sid, tid) = try rec.withDatabase { db in
            let row = try db.rows("SELECT session_folder_path, subject_id, tech_id FROM sessions LIMIT 1")[0]
            return (row[0].string ?? "?", row[1].int64 ?? 0, row[2].int64 ?? 0)
        }
        let subjectDir = data + "/" + PathName.parent(folder)
        let moved = dir.sub("subject-elsewhere")
        try FileManager.default.moveItem(atPath: subjectDir, toPath: moved)
        symlink(moved, subjectDir)
        #expect(throws: LayoutFolderError.self) { _ = try rec.startSession(subjectID: sid, techID: tid, protocolID: nil) }
        try rec.close()
    }

    /// A published copy whose database file was deleted: a failed check everywhere, never a
    /// quiet fall-back of the anchor; list names it as lost.
    @Test func aLostCopyIsAFailedCheckAndKeepsTheAnchor() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try maint(["restore", "--drill", "--data-dir", data]).status == 0)
        try simulatedData(data, sessions: 1)
        let second = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try maint(["status", "--data-dir", data]).status == 0)
        unlink(second)
        let status = try maint(["status", "--data-dir", data])
        #expect(status.status == 65 && status.stdout.contains("has no database file"), "\(status.output)")
        let verify = try maint(["verify", "--all", "--live", "--data-dir", data])
        #expect(verify.status == 65, "\(verify.output)")
        #expect(verify.stdout.contains("anchored on \(PathName.name(second))"), "\(verify.stdout)")
        let list = try maint(["list", "--data-dir", data])
        #expect(list.stdout.contains("LOST copies") && !list.stdout.contains("Left by interrupted runs"), "\(list.stdout)")
        // prune keeps the evidence.
        #expect(try maint(["prune", "--data-dir", data]).status == 0)
        #expect(FileManager.default.fileExists(atPath: second + ".manifest.json"))
        // Deleting entries the lost copy anchored is still seen (the anchor did not move back).
        try sqlite3(data + "/tosca.db", "DROP TRIGGER safety_log_no_delete; DELETE FROM safety_log WHERE seq = (SELECT MAX(seq) FROM safety_log);")
        #expect(try maint(["verify", "--live", "--data-dir", data]).status == 65)
    }

    /// A FIFO named as the key file (or placed as the credential) is refused at once.
    @Test func aFIFOKeyFileIsRefusedWithoutBlocking() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        mkfifo(dir.sub("fifo"), 0o600)
        let r = try run("/usr/bin/timeout", ["20", executable("tosca-maint"), "encrypt", "--key-file", dir.sub("fifo"), "--rehearse", "--data-dir", data])
        #expect(r.status == 77 && r.stderr.contains("not a regular file"), "\(r.output)")
        let creds = dir.sub("creds")
        mkdir(creds, 0o700)
        mkfifo(creds + "/tosca-db-key", 0o600)
        let c = try run("/usr/bin/timeout", ["20", executable("tosca-maint"), "status", "--data-dir", data],
                        environment: ["CREDENTIALS_DIRECTORY": creds, "PATH": "/usr/bin:/bin"])
        #expect(c.status == 77, "\(c.output)")
    }

    /// status sees an unreadable manifest (65, not "no drill").
    @Test func statusSeesAnUnreadableManifest() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let copy = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: copy + ".manifest.json"))
        let s = try maint(["status", "--data-dir", data])
        #expect(s.status == 65 && s.stdout.contains("cannot be read"), "\(s.output)")
    }

    /// restore --to changes nothing live: no --yes needed without a terminal; an in-place
    /// restore keeps WAL mode, the file's mode, and names the user without $USER.
    @Test func restoreToNeedsNoYesAndInPlaceKeepsWALModeAndUser() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        let to = try maint(["restore", "--latest", "--to", dir.sub("inspect.db"), "--data-dir", data])
        #expect(to.status == 0, "\(to.output)")
        chmod(data + "/tosca.db", 0o640)
        let r = try run(executable("tosca-maint"), ["restore", "--latest", "--yes", "--data-dir", data], environment: ["PATH": "/usr/bin:/bin"])
        #expect(r.status == 0, "\(r.output)")
        #expect(try sqlite3Value(data + "/tosca.db", "PRAGMA journal_mode;") == "wal")
        var st = stat()
        stat(data + "/tosca.db", &st)
        #expect(st.st_mode & 0o777 == 0o640)
        let by = try sqlite3Value(data + "/tosca.db", "SELECT description FROM safety_log ORDER BY seq DESC LIMIT 1;")
        let me = String(cString: getpwuid(getuid()).pointee.pw_name)
        #expect(by.hasSuffix("by \(me)"), "\(by)")
    }
}

/// The cutover's loose ends: an interrupted cutover, the kept plaintext copy, a killed
/// rehearsal, a full disk.
@Suite struct CutoverHardeningTests {
    /// The state an encrypt killed after its swap leaves: the live database encrypted,
    /// plaintext copies still in backups/. status, verify --all and backup fail (65) until
    /// converted; the nightly backup converts them.
    @Test func plaintextCopiesOnAnEncryptedDeviceFailUntilTheBackupConvertsThem() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let plain = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try maint(["restore", "--drill", "--data-dir", data]).status == 0)
        let hex = try writeKeyFile(dir.sub("key"))
        // The swap, done by the stock sqlcipher CLI as encrypt would have done it.
        let enc = dir.sub("enc.db")
        let e = try run(which("sqlcipher")!, ["-batch", "-bail", data + "/tosca.db"],
                        stdin: "ATTACH DATABASE '\(enc)' AS enc KEY \"x'\(hex)'\";\nSELECT sqlcipher_export('enc');\nPRAGMA enc.user_version = \(try sqlite3Value(data + "/tosca.db", "PRAGMA user_version;"));\nPRAGMA enc.application_id = \(try sqlite3Value(data + "/tosca.db", "PRAGMA application_id;"));\nDETACH DATABASE enc;\n")
        #expect(e.status == 0, "\(e.output)")
        for s in ["", "-wal", "-shm"] { unlink(data + "/tosca.db" + s) }
        #expect(rename(enc, data + "/tosca.db") == 0)
        let key = ["--key-file", dir.sub("key")]
        let s = try maint(["status", "--data-dir", data] + key)
        #expect(s.status == 65 && s.stdout.contains("PLAINTEXT copy"), "\(s.output)")
        let v = try maint(["verify", "--all", "--data-dir", data] + key)
        #expect(v.status == 65 && v.stdout.contains("PLAINTEXT copy"), "\(v.output)")
        // The nightly backup finishes the conversion; the copy keeps its name.
        let b = try maint(["backup", "--kind", "daily", "--data-dir", data] + key)
        #expect(b.status == 0, "\(b.output)")
        #expect(try FileHeader.classify(path: plain) == .other)
        #expect(try sqlcipher(plain, keyHex: hex, "PRAGMA integrity_check;").stdout.contains("ok"))
        #expect(try maint(["verify", "--all", "--data-dir", data] + key).status == 0)
        // (The drill of the plaintext file says nothing of its encrypted version: drill again.)
        #expect(try maint(["restore", "--drill", "--data-dir", data] + key).status == 0)
        #expect(try maint(["status", "--data-dir", data] + key).status == 0)
    }

    /// The copy --keep-plaintext-copy keeps goes to quarantine, named, and is not counted.
    @Test func theKeptPlaintextCopyGoesToQuarantine() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        _ = try writeKeyFile(dir.sub("key"))
        let r = try maint(["encrypt", "--key-file", dir.sub("key"), "--keep-plaintext-copy", "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        let kept = try #require(listing(data + "/backups/quarantine").first { $0.hasSuffix("_pre-encryption.db") })
        #expect(r.stdout.contains("KEPT plaintext pre-encryption copy") && r.stdout.contains(kept), "\(r.stdout)")
        #expect(try FileHeader.classify(path: data + "/backups/quarantine/" + kept) == .plaintext)
        #expect(listing(data + "/backups").filter { $0.hasSuffix(".db") }.allSatisfy { (try? FileHeader.classify(path: data + "/backups/" + $0)) == .other })
        #expect(try maint(["status", "--key-file", dir.sub("key"), "--data-dir", data]).status == 0)
    }

    /// A killed rehearsal's scratch folder (a full plaintext copy) is removed by the next run.
    @Test func aKilledRehearsalLeavesNoPlaintextBehind() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        // What SIGKILL during a rehearsal leaves: the scratch folder of a dead process.
        let scratch = data + "/backups/.rehearse-999999"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        _ = try run("/bin/cp", [data + "/tosca.db", scratch + "/plain.db"])
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: scratch))
    }

    /// encrypt on a full disk (here: a file-size limit between the plaintext and the
    /// encrypted size) is an I/O error (74) and changes nothing.
    @Test func encryptOnAFullDiskIsAnIOError() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        // Some hundreds of pages, compacted like the export will be: the encrypted file (80
        // reserved bytes a page) is then several pages longer than the plaintext one (and
        // its pre-encryption copy), which still fit the limit exactly.
        try growDatabase(data + "/tosca.db", events: 5_000)
        _ = try sqlite3Value(data + "/tosca.db", "PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        _ = try writeKeyFile(dir.sub("key"))
        var st = stat()
        stat(data + "/tosca.db", &st)
        #expect(st.st_size > 200 * 4096)
        let sha = fileSHA256(data + "/tosca.db")
        let limit = Int(st.st_size)
        let r = try run("/usr/bin/prlimit", ["--fsize=\(limit)", executable("tosca-maint"), "encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data])
        // The export itself failed (the pre-encryption copy fitted): 74, not 65.
        #expect(r.status == 74 && r.stderr.contains("sqlcipher_export"), "\(r.output)")
        #expect(fileSHA256(data + "/tosca.db") == sha)
        #expect(try FileHeader.classify(path: data + "/tosca.db") == .plaintext)
    }
}
