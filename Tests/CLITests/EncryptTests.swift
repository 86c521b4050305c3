import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

@Suite struct EncryptTests {
    func tableCounts(_ db: String, keyHex: String? = nil) throws -> String {
        let sql = "SELECT (SELECT count(*) FROM sessions) || ',' || (SELECT count(*) FROM treatment_events) || ',' || (SELECT count(*) FROM safety_log) || ',' || (SELECT group_concat(subject_code) FROM subjects);"
        if let keyHex {
            let r = try sqlcipher(db, keyHex: keyHex, sql)
            return r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        }
        return try sqlite3Value(db, sql)
    }

    @Test func theCutoverLeavesNoPlaintextDatabaseOrCopy() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 3)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try maint(["snapshot", "--reason", "test", "--data-dir", data]).status == 0)
        let before = try tableCounts(data + "/tosca.db")
        let k = try maint(["keygen", "--out", dir.sub("key")])
        #expect(k.status == 0, "\(k.output)")
        var st = stat()
        stat(dir.sub("key"), &st)
        #expect(st.st_mode & 0o777 == 0o400)
        let hex = try String(contentsOfFile: dir.sub("key"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hex.count == 64 && hex.allSatisfy(\.isHexDigit))
        #expect(try maint(["keygen", "--out", dir.sub("key")]).status == 73)
        // A rehearsal changes nothing.
        let sha = fileSHA256(data + "/tosca.db")
        let names = listing(data + "/backups")
        #expect(try maint(["status", "--data-dir", data]).status == 1) // no drill yet
        let rehearsal = try maint(["encrypt", "--key-file", dir.sub("key"), "--rehearse", "--data-dir", data])
        #expect(rehearsal.status == 0, "\(rehearsal.output)")
        #expect(fileSHA256(data + "/tosca.db") == sha && listing(data + "/backups") == names)
        let r = try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        // The stock sqlite3 CLI reads nothing; sqlcipher with the key reads the same rows.
        #expect(try sqlite3(data + "/tosca.db", "SELECT count(*) FROM sqlite_master;").status != 0)
        let copies = listing(data + "/backups").filter { $0.hasSuffix(".db") }
        #expect(copies.count == 3) // backup, snapshot, pre-encryption: each now encrypted
        // Copies keep their names through the cutover: only the pre-encryption copy is new.
        #expect(Set(copies).subtracting(names).count == 1 && Set(copies).isSuperset(of: names.filter { $0.hasSuffix(".db") }), "\(names) -> \(copies)")
        // A planned cutover ends with a drill: status is green right after it.
        #expect(r.stdout.contains("drill ok"), "\(r.stdout)")
        let green = try maint(["status", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(green.status == 0, "\(green.output)")
        for c in copies { #expect(try sqlite3(data + "/backups/" + c, "SELECT count(*) FROM sqlite_master;").status != 0, "\(c) readable") }
        #expect(try tableCounts(data + "/tosca.db", keyHex: hex) == before)
        // No file outside sessions/ holds a subject code.
        let grep = try run("/bin/grep", ["-rl", "--exclude-dir=sessions", "SIM-0", data])
        #expect(grep.stdout.isEmpty, "plaintext left: \(grep.stdout)")
        #expect(try maint(["verify", "--all", "--live", "--key-file", dir.sub("key"), "--data-dir", data]).status == 0)
        let again = try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data])
        #expect(again.status == 0 && again.stdout.contains("nothing to do"), "\(again.output)")
        // The recorder goes on with the key.
        try simulatedData(data, sessions: 1, keyFile: dir.sub("key"))
        // A key offered only through the environment is never used.
        let env = try maint(["backup", "--data-dir", data], environment: ["TOSCA_DB_KEY": hex, "SQLCIPHER_KEY": hex, "KEY": hex])
        #expect(env.status == 77 && env.stderr.contains("--key-file"), "\(env.output)")
    }

    @Test func rekeyMovesTheDatabaseAndEveryCopyToTheNewKey() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let oldHex = try writeKeyFile(dir.sub("old"))
        try simulatedData(data, keyFile: dir.sub("old"))
        #expect(try maint(["backup", "--data-dir", data, "--key-file", dir.sub("old")]).status == 0)
        let before = try tableCounts(data + "/tosca.db", keyHex: oldHex)
        let namesBefore = listing(data + "/backups").filter { $0.hasSuffix(".db") }
        #expect(try maint(["keygen", "--out", dir.sub("new")]).status == 0)
        let newHex = try String(contentsOfFile: dir.sub("new"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let r = try maint(["rekey", "--key-file", dir.sub("old"), "--new-key-file", dir.sub("new"), "--yes", "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        // The old key stops working everywhere; the new one works everywhere.
        #expect(try tableCounts(data + "/tosca.db", keyHex: newHex) == before)
        #expect(try sqlcipher(data + "/tosca.db", keyHex: oldHex, "SELECT count(*) FROM sessions;").status != 0)
        let copies = listing(data + "/backups").filter { $0.hasSuffix(".db") }
        #expect(copies.count == 2) // the backup and the pre-rekey copy
        #expect(Set(copies).isSuperset(of: namesBefore), "names changed: \(namesBefore) -> \(copies)")
        #expect(r.stdout.contains("drill ok"), "\(r.stdout)")
        #expect(try maint(["status", "--key-file", dir.sub("new"), "--data-dir", data]).status == 0)
        for c in copies {
            #expect(try sqlcipher(data + "/backups/" + c, keyHex: oldHex, "SELECT count(*) FROM sessions;").status != 0, "\(c) still opens with the old key")
            #expect(try sqlcipher(data + "/backups/" + c, keyHex: newHex, "SELECT count(*) FROM sessions;").status == 0, "\(c)")
        }
        #expect(try maint(["verify", "--all", "--live", "--key-file", dir.sub("new"), "--data-dir", data]).status == 0)
        #expect(try maint(["verify", "--live", "--key-file", dir.sub("old"), "--data-dir", data]).status == 77)
        let again = try maint(["rekey", "--key-file", dir.sub("old"), "--new-key-file", dir.sub("new"), "--yes", "--data-dir", data])
        #expect(again.status == 0 && again.stdout.contains("nothing to do"), "\(again.output)")
    }

    @Test func aPlaintextCopyComesBackEncrypted() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        #expect(try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data]).status == 77) // no key file yet
        let hex = try writeKeyFile(dir.sub("key"))
        // A plaintext copy taken before the cutover, kept outside the catalog's conversion.
        let plainCopy = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let outside = dir.sub("old")
        mkdir(outside, 0o700)
        _ = try run("/bin/cp", [plainCopy, plainCopy + ".manifest.json", outside + "/"])
        #expect(try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data]).status == 0)
        let copy = outside + "/" + PathName.name(plainCopy)
        let noKey = try maint(["restore", "--backup", copy, "--yes", "--data-dir", data])
        #expect(noKey.status == 77, "\(noKey.output)")
        let r = try maint(["restore", "--backup", copy, "--yes", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(r.status == 0, "\(r.output)")
        #expect(try FileHeader.classify(path: data + "/tosca.db") == .other)
        #expect(try sqlcipher(data + "/tosca.db", keyHex: hex, "PRAGMA integrity_check;").stdout.contains("ok"))
        // The same rows as the copy, plus the restore's maintenance entry in the safety log.
        let restored = try tableCounts(data + "/tosca.db", keyHex: hex).split(separator: ",").map(String.init)
        let original = try tableCounts(copy).split(separator: ",").map(String.init)
        #expect(restored[0] == original[0] && restored[1] == original[1] && restored[3...] == original[3...])
        #expect(Int(restored[2]) == Int(original[2])! + 1)
        // A lost tosca.db on the encrypted device never comes back plaintext either: the
        // catalog's encrypted copies say the device is encrypted.
        for suffix in ["", "-wal", "-shm"] { unlink(data + "/tosca.db" + suffix) }
        let lostNoKey = try maint(["restore", "--backup", copy, "--yes", "--data-dir", data])
        #expect(lostNoKey.status == 77 && !FileManager.default.fileExists(atPath: data + "/tosca.db"), "\(lostNoKey.output)")
        let lost = try maint(["restore", "--backup", copy, "--yes", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(lost.status == 0, "\(lost.output)")
        #expect(try FileHeader.classify(path: data + "/tosca.db") == .other)
        #expect(try sqlite3(data + "/tosca.db", "SELECT count(*) FROM sqlite_master;").status != 0)
        #expect(try sqlcipher(data + "/tosca.db", keyHex: hex, "PRAGMA integrity_check;").stdout.contains("ok"))
    }

    /// The cutover never deletes or passes over in silence what it cannot convert: a raw
    /// forensic copy, a plaintext file in quarantine, a copy whose manifest is unreadable.
    /// Each is named, kept as it is, and the run exits 65; everything else is converted.
    @Test func theCutoverReportsWhatItCannotConvert() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        let good = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let other = try maint(["backup", "--data-dir", data]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // A copy whose manifest no longer parses.
        try "{ not json".write(toFile: other + ".manifest.json", atomically: true, encoding: .utf8)
        // A plaintext database with no manifest: housekeeping moves it to quarantine.
        _ = try run("/bin/cp", [good, data + "/backups/stray.db"])
        // A raw forensic copy: what a restore keeps of a database that no longer opens.
        try sqlite3Value(data + "/tosca.db", "PRAGMA wal_checkpoint(TRUNCATE);")
        let fd = open(data + "/tosca.db", O_WRONLY)
        let junk = [UInt8](repeating: 0x55, count: 3 * 4096)
        _ = junk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4 * 4096) }
        close(fd)
        let restore = try maint(["restore", "--backup", good, "--yes", "--data-dir", data])
        #expect(restore.status == 0, "\(restore.output)")
        let raw = try #require(listing(data + "/backups").first { $0.hasSuffix("_pre-restore.db") })
        let hex = try writeKeyFile(dir.sub("key"))
        let r = try maint(["encrypt", "--key-file", dir.sub("key"), "--yes", "--data-dir", data])
        #expect(r.status == 65, "\(r.output)")
        #expect(r.stdout.contains("NOT converted \(raw): raw forensic copy kept"), "\(r.stdout)")
        #expect(r.stdout.contains("NOT converted") && r.stdout.contains("stray.db: plaintext file in quarantine"), "\(r.stdout)")
        #expect(r.stdout.contains("NOT converted \(PathName.name(other)): manifest unreadable"), "\(r.stdout)")
        // Kept as they were; the live database and the good copy are encrypted.
        #expect(try FileHeader.classify(path: data + "/backups/" + raw) == .plaintext)
        #expect(try FileHeader.classify(path: other) == .plaintext)
        #expect(try FileHeader.classify(path: data + "/backups/quarantine/stray.db") == .plaintext)
        #expect(try sqlcipher(data + "/tosca.db", keyHex: hex, "PRAGMA integrity_check;").stdout.contains("ok"))
        // The good copy keeps its name: encrypted in place, its manifest names the key.
        #expect(try FileHeader.classify(path: good) == .other, "the good plaintext copy should have been encrypted in place")
        #expect(try Manifest.read(path: good + ".manifest.json").0.facts.encryption.keyID == (try KeySource.read(path: dir.sub("key"))).keyID)
    }

    @Test func badKeyFilesChangeNothing() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data)
        let sha = fileSHA256(data + "/tosca.db")
        let hex = try writeKeyFile(dir.sub("open"), mode: 0o644)
        _ = FileManager.default.createFile(atPath: dir.sub("short"), contents: Data(hex.prefix(40).utf8))
        chmod(dir.sub("short"), 0o400)
        _ = FileManager.default.createFile(atPath: dir.sub("nothex"), contents: Data((String(hex.dropLast()) + "z").utf8))
        chmod(dir.sub("nothex"), 0o400)
        for k in ["open", "short", "nothex"] {
            let r = try maint(["encrypt", "--key-file", dir.sub(k), "--yes", "--data-dir", data])
            #expect(r.status == 77, "\(k): \(r.output)")
        }
        #expect(fileSHA256(data + "/tosca.db") == sha)
        #expect(listing(data + "/backups").filter { $0.hasSuffix(".db") }.isEmpty)
    }
}
