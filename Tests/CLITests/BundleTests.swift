import Foundation
import Testing
import TestSupport
import ToscaCore
@testable import ToscaMaint

/// Session bundles (D17) through the real binaries, with bsdtar and Python's tarfile as the
/// independent readers and writers of the format.
@Suite struct BundleTests {
    func sessionFolders(_ data: String) throws -> [String] {
        try sqlite3Value(data + "/tosca.db", "SELECT session_folder_path FROM sessions ORDER BY session_id;")
            .split(separator: "\n").map { data + "/" + $0 }
    }

    func files(under root: String) -> [String: String] {
        var out: [String: String] = [:]
        for rel in filesUnder(root) { out[rel] = fileSHA256(root + "/" + rel) }
        return out
    }

    /// JSONL, random binary, an empty file, a non-ASCII name and a path over 100 bytes come
    /// back byte-identical, through bsdtar and through `bundle extract`; run under `env -i`
    /// (the "C" locale); a second bundle of the same folder is byte-identical.
    @Test func roundTripThroughBsdtarAndExtract() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        let folder = try #require(try sessionFolders(data).last)
        let long = String(repeating: "l", count: 120) + ".bin"
        let random = (0..<200_000).map { _ in UInt8.random(in: 0...255) }
        FileManager.default.createFile(atPath: folder + "/media/" + long, contents: Data(random))
        FileManager.default.createFile(atPath: folder + "/media/ñandú é.bin", contents: Data("x".utf8))
        FileManager.default.createFile(atPath: folder + "/media/empty", contents: Data())
        let r = try run(executable("tosca-maint"), ["bundle", "--data-dir", data], environment: [:])
        #expect(r.status == 0, "\(r.output)")
        let bundles = listing(data + "/bundles").filter { $0.hasSuffix(".tar.zst") }
        #expect(bundles.count == 2 && bundles[0].hasPrefix("session_1_") && bundles[1].hasPrefix("session_2_"), "\(bundles)")
        let bundle = data + "/bundles/" + (try #require(bundles.last))
        // bsdtar reads it: MANIFEST.json first, every file identical.
        let list = try run(which("bsdtar") ?? "/usr/bin/bsdtar", ["-tf", bundle])
        #expect(list.stdout.split(separator: "\n").first == "MANIFEST.json", "\(list.stdout)")
        let viaTar = dir.sub("tar")
        mkdir(viaTar, 0o700)
        #expect(try run("/bin/sh", ["-c", "cd '\(viaTar)' && bsdtar -xf '\(bundle)'"]).status == 0)
        let expected = files(under: folder)
        var got = files(under: viaTar)
        got["MANIFEST.json"] = nil
        #expect(got == expected)
        #expect(got["media/ñandú é.bin"] != nil && got["media/" + long] != nil && got["media/empty"] != nil)
        // bundle extract gives the same files.
        let out = dir.sub("out")
        let x = try maint(["bundle", "extract", "--session", "2", "--to", out, "--data-dir", data])
        #expect(x.status == 0, "\(x.output)")
        #expect(files(under: out) == expected)
        // Each file comes back with its own modification time (the bundle keeps it).
        for name in expected.keys {
            var a = stat(), b = stat()
            #expect(stat(folder + "/" + name, &a) == 0 && stat(out + "/" + name, &b) == 0)
            #expect(a.st_mtim.tv_sec == b.st_mtim.tv_sec, "\(name): \(a.st_mtim.tv_sec) vs \(b.st_mtim.tv_sec)")
        }
        // Again: the same bytes.
        let sha = fileSHA256(bundle)
        unlink(bundle); unlink(bundle + ".manifest.json")
        #expect(try run(executable("tosca-maint"), ["bundle", "--data-dir", data], environment: [:]).status == 0)
        #expect(fileSHA256(bundle) == sha)
        // Nothing to do the next night; list and verify see both.
        let again = try maint(["bundle", "--data-dir", data])
        #expect(again.status == 0 && again.stdout.contains("0 bundled, 2 already bundled"), "\(again.output)")
        #expect(try maint(["bundle", "verify", "--all", "--data-dir", data]).status == 0)
        let l = try maint(["bundle", "list", "--json", "--data-dir", data])
        #expect(l.stdout.contains("\"session\" : 2"), "\(l.stdout)")
    }

    /// While a recorder holds tosca.lock, bundles are paced (one session a second) and say
    /// so; without one they are not. Either way every session is bundled.
    @Test func bundlingIsPacedWhileARecorderHoldsTheLock() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 3)
        let free = try maint(["bundle", "--data-dir", data])
        #expect(free.status == 0 && free.stdout.contains("3 bundled"), "\(free.output)")
        #expect(!free.stderr.contains("at most one session a second"), "\(free.stderr)")
        try FileManager.default.removeItem(atPath: data + "/bundles")
        let recorder = try FileLock(path: data + "/tosca.lock")
        defer { recorder.unlock() }
        let held = try maint(["bundle", "--data-dir", data])
        #expect(held.status == 0 && held.stdout.contains("3 bundled"), "\(held.output)")
        #expect(held.stderr.contains("a recorder holds tosca.lock: bundling at most one session a second"), "\(held.stderr)")
    }

    /// A flipped bit in compressed data or in a stored media file, and a truncated bundle:
    /// verify and extract say 65, and extract leaves neither target nor staging folder.
    @Test func damageIsFoundAndNothingIsLeftBehind() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let folder = try #require(try sessionFolders(data).first)
        FileManager.default.createFile(atPath: folder + "/media/video.bin", contents: Data((0..<300_000).map { _ in UInt8.random(in: 0...255) }))
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        let bundle = data + "/bundles/" + (try #require(listing(data + "/bundles").first { $0.hasSuffix(".tar.zst") }))
        let size = Int(try FileManager.default.attributesOfItem(atPath: bundle)[.size] as? NSNumber ?? 0)
        for (label, damage) in [("compressed", { (p: String) in try flipByte(p, at: 700) }),
                                ("media", { (p: String) in try flipByte(p, at: UInt64(size - 150_000)) }),
                                ("truncated", { (p: String) in _ = truncate(p, off_t(size / 2)) })] as [(String, (String) throws -> Void)] {
            let copy = dir.sub("copy-\(label).tar.zst")
            _ = try run("/bin/cp", [bundle, copy])
            try damage(copy)
            let target = dir.sub("x-\(label)")
            let r = try maint(["bundle", "extract", "--file", copy, "--to", target, "--data-dir", data])
            #expect(r.status == 65, "\(label): \(r.output)")
            #expect(!listing(dir.path).contains { $0.hasPrefix("x-\(label)") || $0.hasPrefix(".x-\(label)") }, "\(label): left \(listing(dir.path))")
        }
        // The published bundle itself damaged: verify names it.
        try flipByte(bundle, at: UInt64(size - 150_000))
        let v = try maint(["bundle", "verify", "--data-dir", data])
        #expect(v.status == 65 && v.stdout.contains("FAILED"), "\(v.output)")
    }

    /// Hostile archives, each with a well-formed MANIFEST.json first that lists the hostile
    /// entry, made by Python's tarfile: refused (65), nothing written anywhere.
    @Test(arguments: ["dotdot", "absolute", "symlink", "hardlink", "device", "duplicate", "unlisted", "folderMissing"])
    func hostileArchivesAreRefused(kind: String) throws {
        let dir = TempDir()
        let python = try #require(which("python3"), "python3 builds the hostile archives")
        let script = """
            import hashlib, io, json, sys, tarfile
            kind, out = sys.argv[1], sys.argv[2]
            data = b"payload"
            name = {"dotdot": "../escape", "absolute": "/tmp/escape-abs", "symlink": "link", "hardlink": "hard",
                    "device": "dev", "duplicate": "a.txt", "unlisted": "a.txt", "folderMissing": "a.txt"}[kind]
            files = [{"path": "a.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
            if kind not in ("duplicate", "unlisted", "folderMissing"):
                files.append({"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            m = json.dumps({"format": "tosca-session-bundle/1", "session_id": 1, "start_time": "t", "end_time": "t",
                            "folders": ["media"] if kind == "folderMissing" else [], "files": files}).encode()
            t = tarfile.open(out, "w", format=tarfile.PAX_FORMAT)
            def add(n, b, typ=tarfile.REGTYPE, link=""):
                i = tarfile.TarInfo(n); i.size = len(b) if typ == tarfile.REGTYPE else 0; i.type = typ; i.linkname = link
                t.addfile(i, io.BytesIO(b) if typ == tarfile.REGTYPE else None)
            add("MANIFEST.json", m)
            add("a.txt", data)
            if kind in ("dotdot", "absolute", "duplicate"): add(name, data)
            if kind == "unlisted": add("extra.txt", data)
            if kind == "symlink": add(name, b"", tarfile.SYMTYPE, "/etc")
            if kind == "hardlink": add(name, b"", tarfile.LNKTYPE, "a.txt")
            if kind == "device":
                i = tarfile.TarInfo(name); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; t.addfile(i)
            t.close()
            """
        FileManager.default.createFile(atPath: dir.sub("make.py"), contents: Data(script.utf8))
        let tar = dir.sub("hostile.tar")
        let made = try run(python, [dir.sub("make.py"), kind, tar])
        #expect(made.status == 0, "\(made.output)")
        #expect(try run("/usr/bin/zstd", ["-q", "-f", tar, "-o", tar + ".zst"]).status == 0)
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        let work = dir.sub("work")
        mkdir(work, 0o700)
        let before = listing(dir.path)
        let r = try maint(["bundle", "extract", "--file", tar + ".zst", "--to", work + "/target", "--data-dir", data])
        #expect(r.status == 65, "\(kind): \(r.output)")
        #expect(listing(work).isEmpty, "\(kind): left \(listing(work))")
        #expect(listing(dir.path) == before)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/escape-abs") && !FileManager.default.fileExists(atPath: dir.path + "/escape"))
    }

    /// A stream whose bytes no longer match session.json stops that session (65); the
    /// others are bundled. A symlinked bundles/ is refused (73); an encrypted device without
    /// recipients writes nothing (78).
    @Test func aChangedStreamStopsItsSessionOnly() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        let first = try #require(try sessionFolders(data).first)
        let stream = try #require(listing(first + "/streams").first)
        let h = FileHandle(forWritingAtPath: first + "/streams/" + stream)
        h?.seekToEndOfFile(); h?.write(Data("{\"t\":\"x\"}\n".utf8)); try h?.close()
        let r = try maint(["bundle", "--data-dir", data])
        #expect(r.status == 65 && r.stdout.contains("NOT bundled session 1") && r.stdout.contains("session.json records"), "\(r.output)")
        #expect(listing(data + "/bundles").filter { $0.hasSuffix(".tar.zst") } .count == 1)
        // bundles/ as a link.
        let other = TempDir()
        let data2 = other.sub("data")
        try simulatedData(data2, sessions: 1)
        mkdir(other.sub("elsewhere"), 0o700)
        symlink(other.sub("elsewhere"), data2 + "/bundles")
        #expect(try maint(["bundle", "--data-dir", data2]).status == 73)
        #expect(listing(other.sub("elsewhere")).isEmpty)
        // An encrypted device: 78, nothing written.
        let enc = TempDir()
        let data3 = enc.sub("data")
        try writeKeyFile(enc.sub("key"))
        try simulatedData(data3, sessions: 1, keyFile: enc.sub("key"))
        let e = try maint(["bundle", "--recipients", enc.sub("none"), "--key-file", enc.sub("key"), "--data-dir", data3])
        #expect(e.status == 78 && e.stderr.contains("never written in plaintext"), "\(e.output)")
        #expect(!FileManager.default.fileExists(atPath: data3 + "/bundles"))
    }
}

/// Encrypted bundles (D18): age v1 to the clinic's X25519 recipients; the stock `age` CLI
/// is the oracle both ways.
@Suite struct EncryptedBundleTests {
    @Test func anEncryptedDeviceBundlesOnlyEncrypted() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try writeKeyFile(dir.sub("key"))
        try simulatedData(data, sessions: 2, keyFile: dir.sub("key"))
        let pair = try ageKeypair(in: dir)
        let id = pair.identity
        let key = ["--key-file", dir.sub("key"), "--data-dir", data]
        let r = try maint(["bundle", "--recipients", pair.recipients] + key)
        #expect(r.status == 0, "\(r.output)")
        let bundles = listing(data + "/bundles").filter { $0.hasSuffix(".tar.zst.age") }
        #expect(bundles.count == 2 && !listing(data + "/bundles").contains { $0.hasSuffix(".tar.zst") }, "\(listing(data + "/bundles"))")
        // No subject code, no plaintext JSONL anywhere in bundles/.
        let grep = try run("/bin/grep", ["-rlE", "SIM-0|photodiode", data + "/bundles"])
        #expect(grep.stdout.isEmpty, "\(grep.stdout)")
        // age -d -i | bsdtar -x gives the session folder's files.
        let out = dir.sub("via-age")
        mkdir(out, 0o700)
        let bundle = data + "/bundles/" + bundles[0]
        let d = try run("/bin/sh", ["-c", "age -d -i '\(id)' '\(bundle)' | (cd '\(out)' && bsdtar -xf -)"])
        #expect(d.status == 0, "\(d.output)")
        #expect(FileManager.default.fileExists(atPath: out + "/session.json") && FileManager.default.fileExists(atPath: out + "/MANIFEST.json"))
        // The device alone checks the ciphertext; with an identity every file.
        #expect(try maint(["bundle", "verify"] + key).status == 0)
        #expect(try maint(["bundle", "verify", "--identity", id] + key).status == 0)
        // extract needs the identity (77 without), and gives the files age gave.
        #expect(try maint(["bundle", "extract", "--session", "1", "--to", dir.sub("x1")] + key).status == 77)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("x1")))
        let x = try maint(["bundle", "extract", "--session", "1", "--to", dir.sub("x2"), "--identity", id] + key)
        #expect(x.status == 0, "\(x.output)")
        #expect(filesUnder(dir.sub("x2")) == filesUnder(out).filter { $0 != "MANIFEST.json" })
        // A flipped byte in the ciphertext: verify without identity sees it (SHA-256), extract too.
        try flipByte(bundle, at: 400)
        #expect(try maint(["bundle", "verify"] + key).status == 65)
        #expect(try maint(["bundle", "extract", "--file", bundle, "--to", dir.sub("x3"), "--identity", id] + key).status == 65)
        #expect(!FileManager.default.fileExists(atPath: dir.sub("x3")))
    }

    /// `bundle extract --file` reads a bundle that `age -r` encrypted.
    @Test func extractReadsWhatAgeEncrypted() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        let plain = data + "/bundles/" + (try #require(listing(data + "/bundles").first { $0.hasSuffix(".tar.zst") }))
        let pair = try ageKeypair(in: dir)
        let id = pair.identity
        #expect(try run(try #require(which("age")), ["-r", pair.recipient, "-o", dir.sub("b.tar.zst.age"), plain]).status == 0)
        let x = try maint(["bundle", "extract", "--file", dir.sub("b.tar.zst.age"), "--to", dir.sub("x"), "--identity", id, "--data-dir", data])
        #expect(x.status == 0, "\(x.output)")
        let y = try maint(["bundle", "extract", "--file", plain, "--to", dir.sub("y"), "--data-dir", data])
        #expect(y.status == 0)
        #expect(filesUnder(dir.sub("x")) == filesUnder(dir.sub("y")) && !filesUnder(dir.sub("x")).isEmpty)
    }
}

/// Bundles in status, verify --all, list and the nightly run.
@Suite struct BundleStatusTests {
    @Test func statusVerifyAndListSeeBundles() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try maint(["restore", "--drill", "--data-dir", data]).status == 0)
        #expect(try maint(["status", "--data-dir", data]).status == 0)
        // A session that ended three days ago and has no bundle: unhealthy (1).
        try sqlite3Value(data + "/tosca.db", "UPDATE sessions SET end_time = '2020-01-01 00:00:00.000000' WHERE session_id = 1;")
        let s1 = try maint(["status", "--data-dir", data])
        #expect(s1.status == 1 && s1.stdout.contains("have no bundle"), "\(s1.output)")
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        let s2 = try maint(["status", "--prometheus", dir.sub("m.prom"), "--data-dir", data])
        #expect(s2.status == 0, "\(s2.output)")
        let prom = try String(contentsOfFile: dir.sub("m.prom"), encoding: .utf8)
        #expect(prom.contains("tosca_bundled_sessions 2") && prom.contains("tosca_unbundled_sessions 0"), "\(prom)")
        #expect(try maint(["list", "--data-dir", data]).stdout.contains("Session bundles"))
        // verify --all checks the bundles too; a damaged one fails it and status (65).
        let v = try maint(["verify", "--all", "--data-dir", data])
        #expect(v.status == 0 && v.stdout.contains("ok      bundle session_1_"), "\(v.output)")
        let bundle = data + "/bundles/" + (try #require(listing(data + "/bundles").first { $0.hasSuffix(".tar.zst") }))
        try flipByte(bundle, at: 300)
        #expect(try maint(["verify", "--all", "--data-dir", data]).status == 65)
        let s3 = try maint(["status", "--data-dir", data])
        #expect(s3.status == 65 && s3.stdout.contains("bundle"), "\(s3.output)")
    }

    /// A folder changed after it was bundled is reported (65); folder and bundle both kept.
    @Test func aFolderChangedAfterItWasBundledIsReported() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        let folder = data + "/" + (try sqlite3Value(data + "/tosca.db", "SELECT session_folder_path FROM sessions WHERE session_id = 1;"))
        FileManager.default.createFile(atPath: folder + "/media/added-later.jpg", contents: Data("late".utf8))
        let before = listing(data + "/bundles")
        let r = try maint(["bundle", "--data-dir", data])
        #expect(r.status == 65 && r.stdout.contains("changed after it was bundled"), "\(r.output)")
        #expect(listing(data + "/bundles") == before)
        #expect(FileManager.default.fileExists(atPath: folder + "/media/added-later.jpg"))
    }
}

/// The cutover converts plaintext bundles; without recipients it changes nothing (78).
@Suite struct BundleCutoverTests {
    @Test func theCutoverEncryptsThePlaintextBundles() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 2)
        #expect(try maint(["backup", "--data-dir", data]).status == 0)
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        try writeKeyFile(dir.sub("key"))
        let sha = fileSHA256(data + "/tosca.db")
        let before = listing(data + "/bundles")
        let refused = try maint(["encrypt", "--key-file", dir.sub("key"), "--recipients", dir.sub("missing"), "--yes", "--data-dir", data])
        #expect(refused.status == 78 && refused.stderr.contains("nothing was changed"), "\(refused.output)")
        #expect(fileSHA256(data + "/tosca.db") == sha && listing(data + "/bundles") == before)
        let pair = try ageKeypair(in: dir)
        let id = pair.identity
        let r = try maint(["encrypt", "--key-file", dir.sub("key"), "--recipients", pair.recipients, "--yes", "--data-dir", data])
        #expect(r.status == 0 && r.stdout.contains("encrypted bundle"), "\(r.output)")
        let after = listing(data + "/bundles")
        #expect(after.filter { $0.hasSuffix(".tar.zst.age") }.count == 2 && !after.contains { $0.hasSuffix(".tar.zst") }, "\(after)")
        let grep = try run("/bin/grep", ["-rlE", "SIM-0|photodiode", data + "/bundles"])
        #expect(grep.stdout.isEmpty, "\(grep.stdout)")
        #expect(try maint(["bundle", "verify", "--identity", id, "--key-file", dir.sub("key"), "--data-dir", data]).status == 0)
        let s = try maint(["status", "--key-file", dir.sub("key"), "--data-dir", data])
        #expect(s.status == 0, "\(s.output)")
    }

    /// A damaged plaintext bundle is not converted (it would come out with a fresh "ok"):
    /// named (65) and kept as it is.
    @Test func aDamagedPlaintextBundleIsNotConverted() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        let bundle = data + "/bundles/" + (try #require(listing(data + "/bundles").first { $0.hasSuffix(".tar.zst") }))
        try flipByte(bundle, at: 200)
        try writeKeyFile(dir.sub("key"))
        let pair = try ageKeypair(in: dir)
        let id = pair.identity
        let r = try maint(["encrypt", "--key-file", dir.sub("key"), "--recipients", pair.recipients, "--yes", "--data-dir", data])
        #expect(r.status == 65 && r.stdout.contains("NOT converted") && r.stdout.contains("differs from its sidecar"), "\(r.output)")
        #expect(FileManager.default.fileExists(atPath: bundle) && !FileManager.default.fileExists(atPath: bundle + ".age"))
    }
}

/// tosca-sim's camera media: incompressible video and snapshots, registered in
/// session_recordings, carried by the bundle byte for byte.
@Suite struct SimulatedMediaTests {
    @Test func mediaIsRecordedRegisteredAndBundled() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        let r = try run(executable("tosca-sim"), ["--data-dir", data, "--sessions", "1", "--duration", "0.2", "--media-mib", "1.5", "--seed", "5"])
        #expect(r.status == 0, "\(r.output)")
        let rows = try sqlite3Value(data + "/tosca.db", "SELECT recording_type || ' ' || file_size_bytes || ' ' || file_path FROM session_recordings ORDER BY recording_id;")
            .split(separator: "\n").map(String.init)
        #expect(rows.count == 3 && rows[0].hasPrefix("video 1572864 sessions/"), "\(rows)")
        for row in rows {
            let parts = row.split(separator: " ")
            let path = data + "/" + parts[2]
            #expect(((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.intValue == Int(parts[1]), "\(row)")
        }
        // Incompressible: zstd saves (almost) nothing on it.
        let video = data + "/" + rows[0].split(separator: " ")[2]
        let z = try run("/bin/sh", ["-c", "zstd -q -c '\(video)' | wc -c"])
        #expect((Int(z.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 1_500_000, "\(z.output)")
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        let out = dir.sub("x")
        #expect(try maint(["bundle", "extract", "--session", "1", "--to", out, "--data-dir", data]).status == 0)
        #expect(fileSHA256(out + "/media/video_0001.mp4") == fileSHA256(video))
    }
}
