import Foundation
import Testing
import TestSupport

/// `tosca-maint bundle` killed with SIGKILL at random moments: nothing half-published, a
/// re-run finishes, every published bundle verifies and holds its folder byte for byte.
@Suite struct BundleFaultTests {
    @Test func sigkillDuringBundleLeavesNothingHalfPublished() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 3)
        // Incompressible media, a few MB a session, so that a run takes a while.
        let folders = try sqlite3Value(data + "/tosca.db", "SELECT session_folder_path FROM sessions ORDER BY session_id;").split(separator: "\n")
        for f in folders {
            let r = try run("/bin/sh", ["-c", "head -c 6000000 /dev/urandom > '\(data)/\(f)/media/video.bin'"])
            #expect(r.status == 0)
        }
        let t0 = Date()
        let timing = try maint(["bundle", "--data-dir", data])
        #expect(timing.status == 0, "\(timing.output)")
        let duration = max(Date().timeIntervalSince(t0), 0.05)
        try FileManager.default.removeItem(atPath: data + "/bundles")
        for trial in 0..<6 {
            let p = try Spawned(executable("tosca-maint"), ["bundle", "--data-dir", data])
            usleep(UInt32(Double.random(in: 0...(duration * 1.1)) * 1_000_000))
            p.signal(SIGKILL)
            _ = p.wait()
            // Whatever is published has its sidecar and verifies.
            let names = listing(data + "/bundles")
            for n in names where n.hasSuffix(".manifest.json") {
                #expect(names.contains(String(n.dropLast(".manifest.json".count))), "trial \(trial): a sidecar without its bundle")
            }
            if names.contains(where: { $0.hasSuffix(".manifest.json") }) {
                let v = try maint(["bundle", "verify", "--data-dir", data])
                #expect(v.status == 0, "trial \(trial): \(v.output)")
            }
            let again = try maint(["bundle", "--data-dir", data])
            #expect(again.status == 0, "trial \(trial): \(again.output)")
            #expect(!listing(data + "/bundles").contains { $0.hasSuffix(".partial") }, "trial \(trial)")
            #expect(try maint(["bundle", "verify", "--all", "--data-dir", data]).status == 0, "trial \(trial)")
            // Each session's bundle holds its folder byte for byte.
            let out = dir.sub("x\(trial)")
            #expect(try maint(["bundle", "extract", "--session", "3", "--to", out, "--data-dir", data]).status == 0)
            #expect(fileSHA256(out + "/media/video.bin") == fileSHA256(data + "/" + folders[2] + "/media/video.bin"))
            try FileManager.default.removeItem(atPath: data + "/bundles")
        }
    }
}

/// The cutover killed at random moments while it converts plaintext bundles: a re-run
/// finishes; every session keeps exactly one bundle, encrypted, that age reads.
@Suite struct BundleCutoverFaultTests {
    @Test func sigkillDuringTheBundleConversionLosesNoBundle() throws {
        let dir = TempDir()
        let template = dir.sub("template")
        #expect(try run(executable("tosca-sim"), ["--data-dir", template, "--sessions", "3", "--duration", "0.2", "--media-mib", "4", "--seed", "2"]).status == 0)
        #expect(try maint(["bundle", "--data-dir", template]).status == 0)
        try writeKeyFile(dir.sub("key"))
        let pair = try ageKeypair(in: dir)
        let id = pair.identity
        let args = ["encrypt", "--key-file", dir.sub("key"), "--recipients", pair.recipients, "--yes"]
        // How long a whole cutover takes here.
        let timing = dir.sub("timing")
        _ = try run("/bin/cp", ["-a", template, timing])
        let t0 = Date()
        #expect(try maint(args + ["--data-dir", timing]).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.05)
        for trial in 0..<4 {
            let data = dir.sub("trial\(trial)")
            _ = try run("/bin/cp", ["-a", template, data])
            let p = try Spawned(executable("tosca-maint"), args + ["--data-dir", data])
            usleep(UInt32(Double.random(in: 0.3...1.0) * duration * 1_000_000))
            p.signal(SIGKILL)
            _ = p.wait()
            let again = try maint(args + ["--data-dir", data])
            #expect(again.status == 0, "trial \(trial): \(again.output)")
            let names = listing(data + "/bundles")
            #expect(names.filter { $0.hasSuffix(".tar.zst.age") }.count == 3 && !names.contains { $0.hasSuffix(".tar.zst") || $0.contains(".partial") },
                    "trial \(trial): \(names)")
            let v = try maint(["bundle", "verify", "--identity", id, "--key-file", dir.sub("key"), "--data-dir", data])
            #expect(v.status == 0, "trial \(trial): \(v.output)")
        }
    }
}

/// `bundle` and its subcommands given bad input: their exit codes, nothing changed, never a
/// signal; `bundle extract` killed mid-run: no target, and the next extract tidies the
/// staging folder and finishes.
@Suite struct BundleInputAndExtractFaultTests {
    @Test func badInputGivesExitCodesAndChangesNothing() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        try simulatedData(data, sessions: 1)
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        mkdir(dir.sub("exists"), 0o700)
        FileManager.default.createFile(atPath: dir.sub("not-a-bundle"), contents: Data("hello".utf8))
        FileManager.default.createFile(atPath: dir.sub("no-recipient"), contents: Data("# the clinic's recipients go here\n\n".utf8))
        FileManager.default.createFile(atPath: dir.sub("bad-identity"), contents: Data("AGE-SECRET-KEY-1NOTAKEY\n".utf8))
        let before = listing(data + "/bundles")
        let cases: [([String], Int32)] = [
            (["bundle", "--level", "0"], 64),
            (["bundle", "--session", "x"], 64),
            (["bundle", "extract", "--session", "1"], 64),                       // no --to
            (["bundle", "extract", "--file", dir.sub("nothing"), "--to", dir.sub("o1")], 66),
            (["bundle", "extract", "--session", "9", "--to", dir.sub("o2")], 66),
            (["bundle", "extract", "--session", "1", "--to", dir.sub("exists")], 73),
            (["bundle", "extract", "--file", dir.sub("not-a-bundle"), "--to", dir.sub("o3")], 65),
            (["bundle", "extract", "--session", "1", "--to", dir.sub("o4"), "--identity", dir.sub("bad-identity")], 77),
            (["bundle", "verify", dir.sub("not-a-bundle")], 66),
            (["bundle", "--recipients", dir.sub("not-a-bundle")], 78),            // not age recipients
            (["bundle", "--recipients", dir.sub("no-recipient")], 78),            // there, but empty: never plaintext
            (["bundle", "list", "--data-dir", dir.sub("typo")], 66),
        ]
        for (args, code) in cases {
            let r = try maint(args + (args.contains("--data-dir") ? [] : ["--data-dir", data]))
            #expect(r.status == code, "\(args): \(r.status) \(r.output)")
            #expect(!r.stderr.contains("Fatal error"), "\(args)")
        }
        #expect(listing(data + "/bundles") == before)
        #expect(!["o1", "o2", "o3", "o4"].contains { FileManager.default.fileExists(atPath: dir.sub($0)) })
        #expect(listing(dir.sub("exists")).isEmpty)
    }

    @Test func aKilledExtractLeavesNoTargetAndTheNextOneFinishes() throws {
        let dir = TempDir()
        let data = dir.sub("data")
        #expect(try run(executable("tosca-sim"), ["--data-dir", data, "--sessions", "1", "--duration", "0.2", "--media-mib", "40", "--seed", "4"]).status == 0)
        #expect(try maint(["bundle", "--data-dir", data]).status == 0)
        let out = dir.sub("x")
        let t0 = Date()
        #expect(try maint(["bundle", "extract", "--session", "1", "--to", out, "--data-dir", data]).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.05)
        try FileManager.default.removeItem(atPath: out)
        for trial in 0..<4 {
            let p = try Spawned(executable("tosca-maint"), ["bundle", "extract", "--session", "1", "--to", out, "--data-dir", data])
            usleep(UInt32(Double.random(in: 0...(duration * 0.9)) * 1_000_000))
            p.signal(SIGKILL)
            let killed = p.wait()
            if killed.status == 0 {
                // It finished before the signal: a whole, checked folder.
                try FileManager.default.removeItem(atPath: out)
                continue
            }
            #expect(!FileManager.default.fileExists(atPath: out), "trial \(trial): a target after a killed extract")
            let again = try maint(["bundle", "extract", "--session", "1", "--to", out, "--data-dir", data])
            #expect(again.status == 0, "trial \(trial): \(again.output)")
            #expect(!listing(dir.path).contains { $0.hasPrefix(".x.extract-") }, "trial \(trial): \(listing(dir.path))")
            try FileManager.default.removeItem(atPath: out)
        }
    }
}
