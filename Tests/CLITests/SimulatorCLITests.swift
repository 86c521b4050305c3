import Foundation
import Testing
import TestSupport
import ToscaCore

@Suite struct SimulatorCLITests {
    @Test func simRecordsSessionsThatTheStockCLIAndInspectSee() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let r = try run(executable("tosca-sim"), ["--data-dir", data, "--sessions", "2", "--duration", "0.6", "--sample-rate", "500",
                                                  "--event-rate", "50", "--seed", "1"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.split(separator: "\n").count == 2)
        let db = data + "/tosca.db"
        #expect(try sqlite3Value(db, "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(db, "SELECT config_value FROM system_config WHERE config_key = 'data_origin';") == "simulated")
        #expect(try sqlite3Value(db, "SELECT group_concat(status) FROM sessions;") == "completed,completed")
        #expect(Int(try sqlite3Value(db, "SELECT count(*) FROM treatment_events;")) ?? 0 >= 40)
        let folders = try sqlite3Value(db, "SELECT session_folder_path FROM sessions ORDER BY session_id;").split(separator: "\n")
        for f in folders {
            for stream in ["photodiode", "interlocks", "camera_meta"] {
                #expect(FileManager.default.fileExists(atPath: "\(data)/\(f)/streams/\(stream).jsonl"))
            }
            #expect(FileManager.default.fileExists(atPath: "\(data)/\(f)/session.json"))
        }
        // Files are private (D2: umask 0077).
        var st = stat()
        stat(db, &st)
        #expect(st.st_mode & 0o077 == 0)
        let inspect = try run(executable("tosca-maint"), ["inspect", "--data-dir", data, "--json"])
        #expect(inspect.status == 0, "\(inspect.output)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        #expect(obj["chain_intact"] as? Bool == true)
        #expect(obj["schema_version"] as? Int == 7)
        #expect((obj["sessions_by_status"] as? [String: Int])?["completed"] == 2)
        // A second run adds sessions to the same simulated database.
        let again = try run(executable("tosca-sim"), ["--data-dir", data, "--sessions", "1", "--duration", "0.2"])
        #expect(again.status == 0, "\(again.output)")
        #expect(try sqlite3Value(db, "SELECT count(*) FROM sessions;") == "3")
    }

    @Test func simRefusesADatabaseItDidNotMake() throws {
        let dir = TempDir()
        // A current TOSCA database made by the recorder itself, as the device service would.
        let rec = try Recorder(dataDirectory: dir.path)
        try rec.close()
        let sha = fileSHA256(dir.sub("tosca.db"))
        let r = try run(executable("tosca-sim"), ["--data-dir", dir.path, "--sessions", "1", "--duration", "0.2"])
        #expect(r.status == 77, "\(r.output)")
        #expect(r.stderr.contains("Error: ") && r.stderr.contains("not made by tosca-sim") && r.stderr.contains("--allow-real"))
        #expect(fileSHA256(dir.sub("tosca.db")) == sha)
        #expect(try sqlite3Value(dir.sub("tosca.db"), "SELECT count(*) FROM sessions;") == "0")
        let allowed = try run(executable("tosca-sim"), ["--data-dir", dir.path, "--sessions", "1", "--duration", "0.2", "--allow-real"])
        #expect(allowed.status == 0, "\(allowed.output)")
    }

    @Test func simRefusesALegacyDatabaseNamingMigrateUp() throws {
        let dir = TempDir()
        try makeLegacyDatabase(at: dir.sub("tosca.db"))
        let sha = fileSHA256(dir.sub("tosca.db"))
        let r = try run(executable("tosca-sim"), ["--data-dir", dir.path, "--sessions", "1", "--duration", "0.2", "--allow-real"])
        #expect(r.status == 78, "\(r.output)")
        #expect(r.stderr.contains("tosca-maint migrate up"))
        #expect(fileSHA256(dir.sub("tosca.db")) == sha)
    }

    @Test func encryptedDataFolderNeedsItsKey() throws {
        let dir = TempDir()
        let hex = try writeKeyFile(dir.sub("key"))
        let data = dir.sub("data")
        let r = try run(executable("tosca-sim"), ["--data-dir", data, "--sessions", "1", "--duration", "0.3", "--key-file", dir.sub("key")])
        #expect(r.status == 0, "\(r.output)")
        #expect(try sqlite3(data + "/tosca.db", "SELECT 1 FROM sessions;").status != 0)
        #expect(try sqlcipher(data + "/tosca.db", keyHex: hex, "SELECT count(*) FROM sessions;").stdout.contains("1"))
        let noKey = try run(executable("tosca-maint"), ["inspect", "--data-dir", data])
        #expect(noKey.status == 77)
        #expect(noKey.stderr.contains("not a plaintext SQLite database"))
        let withKey = try run(executable("tosca-maint"), ["inspect", "--data-dir", data, "--key-file", dir.sub("key")])
        #expect(withKey.status == 0, "\(withKey.output)")
        #expect(withKey.stdout.contains("encrypted, key id"))
        // The credential directory works like --key-file (systemd LoadCredentialEncrypted=).
        let cred = dir.sub("cred")
        mkdir(cred, 0o700)
        try writeKeyFile(cred + "/tosca-db-key", hex: hex)
        let viaCred = try run(executable("tosca-maint"), ["inspect", "--data-dir", data], environment: ["CREDENTIALS_DIRECTORY": cred])
        #expect(viaCred.status == 0, "\(viaCred.output)")
        chmod(dir.sub("key"), 0o644)
        let open = try run(executable("tosca-maint"), ["inspect", "--data-dir", data, "--key-file", dir.sub("key")])
        #expect(open.status == 77)
        try writeKeyFile(dir.sub("other"))
        let wrong = try run(executable("tosca-maint"), ["inspect", "--data-dir", data, "--key-file", dir.sub("other")])
        #expect(wrong.status == 77)
        #expect(wrong.stderr.contains("wrong key"))
        #expect(!wrong.stderr.contains("hmac check failed"), "SQLCipher's own log leaked: \(wrong.stderr)")
    }

    @Test func usageErrorsAndHelp() throws {
        for (exe, args) in [("tosca-sim", ["--sessions", "0"]), ("tosca-sim", ["--no-such-flag"]), ("tosca-maint", ["frobnicate"])] {
            let r = try run(executable(exe), args)
            #expect(r.status == 64, "\(exe) \(args): \(r.output)")
        }
        let help = try run(executable("tosca-sim"), ["--help"])
        #expect(help.status == 0 && help.stdout.contains("Examples:") && help.stdout.contains("--until-signal"))
        let mhelp = try run(executable("tosca-maint"), ["inspect", "--help"])
        #expect(mhelp.status == 0 && mhelp.stdout.contains("Example:") && mhelp.stdout.contains("--key-file"))
        let missing = try run(executable("tosca-maint"), ["inspect", "--data-dir", "/nonexistent/tosca"])
        #expect(missing.status == 66)
        #expect(missing.stderr.hasPrefix("Error: ") && missing.stderr.contains("Try: "))
    }
}
