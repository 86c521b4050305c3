import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// `tosca-bench bundle`: session bundles against the same work done by hand with the stock
/// tools, side by side in one run, printed as ratios.
struct BundleBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Bundle, encrypted bundle and extract against bsdtar/age/sha256sum by hand, as ratios.",
        discussion: """
            Two workloads recorded by tosca-sim: one long session (its streams as many lines \
            as an hour at 100 Hz, plus camera media) and --sessions shorter ones. Each figure \
            is the median of --runs, ours / by hand, every run starting from a cold page cache \
            when it can be dropped:
              bundle:           tosca-maint bundle (scan + hashes, write, fsync, read back from \
            disk, every SHA-256) vs bsdtar --zstd at the same level, sync, cache dropped, \
            bsdtar -x read-back and sha256sum of every file;
              encrypted bundle: the same to an age recipient vs the same piped through age -R;
              extract:          tosca-maint bundle extract vs bsdtar -xf and sha256sum -c.
            Sizes: ours vs bsdtar's. Then the recorder's p99 commit latency while `bundle` \
            runs (nice 19, idle I/O class, as the nightly unit runs it) against the recorder \
            alone, pooled over as many windows of the same length as --latency-seconds of \
            bundling takes (the bundles removed between windows, outside them). Build with -c release (scripts/bench.sh bundle).
            """)

    @Option(help: "Photodiode lines of the long session (100 Hz for an hour: 360000).") var lines = 360_000
    @Option(help: "MiB of camera video in the long session.") var mediaMib = 200.0
    @Option(help: "Sessions of the second workload.") var sessions = 20
    @Option(help: "Photodiode lines of each of those (100 Hz for 20 minutes: 120000).") var sessionLines = 120_000
    @Option(help: "MiB of camera video in each of those.") var sessionMediaMib = 10.0
    @Option(help: "Timed runs of each (the median is printed).") var runs = 3
    @Option(help: "Scratch folder (default: a new folder under $TMPDIR; removed afterwards).") var workDir: String?
    @Flag(inversion: .prefixedNo, help: "Drop the page cache (as root) before each run and in the by-hand read-back.") var dropCaches = true
    @Option(help: "Seconds of bundling (and as many idle) over which the recorder's commit latencies are pooled, per workload; 0 skips the latency figures.") var latencySeconds = 40.0

    struct Tools { let maint: String, sim: String, bsdtar: String, age: String, recipients: String, identity: String }

    struct Figures { var bundle = 0.0, encrypted = 0.0, extract = 0.0, size = 0.0, oursSeconds = 0.0 }

    func run() throws {
        setPrivateUmask()
        let base = workDir ?? (NSTemporaryDirectory() + "/tosca-bench-bundle-\(getpid())")
        try AtomicFile.makeDirectory(base)
        defer { if workDir == nil { try? FileManager.default.removeItem(atPath: base) } }
        guard let maint = siblingExecutable("tosca-maint"), let sim = siblingExecutable("tosca-sim") else {
            throw ValidationError("tosca-maint and tosca-sim must be built beside tosca-bench")
        }
        guard let bsdtar = which("bsdtar"), let age = which("age"), let ageKeygen = which("age-keygen") else {
            throw ValidationError("bsdtar (libarchive-tools) and age are the baselines: apt-get install libarchive-tools age")
        }
        try shell(ageKeygen, ["-o", base + "/identity"])
        try (try shell(ageKeygen, ["-y", base + "/identity"])).write(toFile: base + "/recipients", atomically: true, encoding: .utf8)
        let tools = Tools(maint: maint, sim: sim, bsdtar: bsdtar, age: age, recipients: base + "/recipients", identity: base + "/identity")

        // Each workload: `duration` seconds of recording at lines/duration Hz give its lines.
        let one = base + "/one", many = base + "/many"
        try shell(sim, ["--data-dir", one, "--sessions", "1", "--duration", "10", "--sample-rate", String(lines / 10), "--event-rate", "100",
                        "--media-mib", String(mediaMib), "--seed", "1"])
        try shell(sim, ["--data-dir", many, "--sessions", String(sessions), "--duration", "2", "--sample-rate", String(sessionLines / 2),
                        "--event-rate", "100", "--media-mib", String(sessionMediaMib), "--seed", "2"])
        print("tosca-bench bundle: \(SessionBundleInfo.version)")
        print("page cache drop: \(canDrop ? "yes (drop_caches)" : "no (not writable here): runs may hit the cache")")
        var results: [(String, Figures)] = []
        for (label, data) in [("1 session (\(lines) lines, \(mediaMib) MiB media)", one),
                              ("\(sessions) sessions (\(sessionLines) lines, \(sessionMediaMib) MiB media each)", many)] {
            let folders = try sessionFolders(data)
            let bytes = try shell("/usr/bin/du", ["-sbc"] + folders).split(separator: "\n").last?.split(separator: "\t").first.map(String.init) ?? "?"
            print("workload \(label): \(bytes) bytes")
            results.append((label, try measure(data: data, folders: folders, base: base, tools: tools)))
        }
        func r(_ x: Double) -> String { String(format: "%.2fx", x) }
        print("\nworkload (median of \(runs)), ours / by hand    \(results.map { $0.0.prefix(12).padding(toLength: 14, withPad: " ", startingAt: 0) }.joined())target")
        print("bundle (write, fsync, read back)           \(results.map { r($0.1.bundle).padding(toLength: 14, withPad: " ", startingAt: 0) }.joined())<= 1.0x")
        print("encrypted bundle (age X25519)              \(results.map { r($0.1.encrypted).padding(toLength: 14, withPad: " ", startingAt: 0) }.joined())<= 1.2x")
        print("extract, every SHA-256 checked             \(results.map { r($0.1.extract).padding(toLength: 14, withPad: " ", startingAt: 0) }.joined())<= 1.2x")
        print("bundle size vs bsdtar --zstd level 3       \(results.map { String(format: "%.3f", $0.1.size).padding(toLength: 14, withPad: " ", startingAt: 0) }.joined())within 2%")
        if latencySeconds > 0 {
            print("")
            for ((label, _), data) in zip(results, [one, many]) { try latency(label: label, data: data, tools: tools) }
        }
    }

    var canDrop: Bool { canDropPageCache(dropCaches) }

    func flushAndDrop() throws { try flushAndDropPageCache(canDrop) }

    func sessionFolders(_ data: String) throws -> [String] {
        let db = try Database(path: data + "/tosca.db", options: .init(readOnly: true))
        return try db.rows("SELECT session_folder_path FROM sessions ORDER BY session_id").compactMap { $0[0].string }.map { data + "/" + $0 }
    }

    func measure(data: String, folders: [String], base: String, tools t: Tools) throws -> Figures {
        var f = Figures()
        let bundles = data + "/bundles"
        let hand = base + "/hand", scratch = base + "/hand-x"
        func fresh(_ paths: String...) throws {
            for p in paths { try? FileManager.default.removeItem(atPath: p) }
            try flushAndDrop()
        }
        func readBack() throws {
            try flushAndDrop()
            for (i, _) in folders.enumerated() {
                try AtomicFile.makeDirectory(scratch + "/\(i)")
                try shell(t.bsdtar, ["-xf", hand + "/\(i).tar.zst", "-C", scratch + "/\(i)"])
            }
            try shell("/bin/sh", ["-c", "cd '\(scratch)' && find . -type f -exec sha256sum {} + > /dev/null"])
        }
        func tarAll() throws {
            try AtomicFile.makeDirectory(hand)
            for (i, folder) in folders.enumerated() {
                try shell(t.bsdtar, ["--zstd", "--options", "zstd:compression-level=3", "-cf", hand + "/\(i).tar.zst", "-C", folder, "."])
            }
        }
        f.oursSeconds = try timed(reset: { try fresh(bundles) }) { try shell(t.maint, ["bundle", "--data-dir", data]) }
        let byHand = try timed(reset: { try fresh(hand, scratch) }) { try tarAll(); try readBack() }
        f.bundle = f.oursSeconds / byHand
        f.size = Double(try bundleFiles(bundles).reduce(Int64(0)) { $0 + fileSize($1) })
            / Double(max(1, (0..<folders.count).reduce(Int64(0)) { $0 + fileSize(hand + "/\($1).tar.zst") }))

        let oursEnc = try timed(reset: { try fresh(bundles) }) { try shell(t.maint, ["bundle", "--recipients", t.recipients, "--data-dir", data]) }
        let byHandEnc = try timed(reset: { try fresh(hand, scratch) }) {
            try tarAll()
            for i in folders.indices {
                try shell(t.age, ["-R", t.recipients, "-o", hand + "/\(i).tar.zst.age", hand + "/\(i).tar.zst"])
                unlink(hand + "/\(i).tar.zst")
            }
            try flushAndDrop()
            for i in folders.indices {
                try shell(t.age, ["-d", "-i", t.identity, "-o", hand + "/\(i).tar.zst", hand + "/\(i).tar.zst.age"])
            }
            try readBack()
        }
        f.encrypted = oursEnc / byHandEnc

        // Extract: from the plaintext bundles, ours vs bsdtar -xf + sha256sum -c.
        try fresh(bundles)
        try shell(t.maint, ["bundle", "--data-dir", data])
        let published = try bundleFiles(bundles)
        for (i, folder) in folders.enumerated() {
            try shell("/bin/sh", ["-c", "cd '\(folder)' && find . -type f -exec sha256sum {} + > '\(base)/sums-\(i)'"])
        }
        let out = base + "/ours-x"
        let oursX = try timed(reset: { try fresh(out); try AtomicFile.makeDirectory(out) }) {
            for (i, b) in published.enumerated() {
                try shell(t.maint, ["bundle", "extract", "--file", b, "--to", out + "/\(i)", "--data-dir", data])
            }
        }
        let handX = try timed(reset: { try fresh(scratch) }) {
            // Sessions in the same order as the bundles (session_<id>_...: sorted by id).
            for (i, b) in published.enumerated() {
                try AtomicFile.makeDirectory(scratch + "/\(i)")
                try shell(t.bsdtar, ["-xf", b, "-C", scratch + "/\(i)"])
            }
            for i in published.indices {
                try shell("/bin/sh", ["-c", "cd '\(scratch)/\(i)' && sha256sum --quiet -c '\(base)/sums-\(i)'"])
            }
        }
        f.extract = oursX / handX
        try fresh(out, scratch, hand)
        return f
    }

    /// The recorder's commit latency while `bundle` runs as the nightly unit runs it, against
    /// the same recording with nothing else running for as long, pooled over windows until
    /// `latencySeconds` of bundling (one bundle run gives too few commits for a p99 alone).
    func latency(label: String, data: String, tools t: Tools) throws {
        func window(_ during: (() throws -> Void)?, seconds: Double) throws -> (samples: [Double], seconds: Double) {
            let report = data + "/latency.json"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: t.sim)
            p.arguments = ["--data-dir", data, "--until-signal", "--sample-rate", "1000", "--event-rate", "50", "--latency-report", report]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            Thread.sleep(forTimeInterval: 0.5)
            let t0 = monotonicNanoseconds()
            if let during { try during() } else { Thread.sleep(forTimeInterval: seconds) }
            let elapsed = Double(monotonicNanoseconds() - t0) / 1e9
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw ValidationError("tosca-sim failed (\(p.terminationStatus))") }
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
            return ((json?["samples_ms"] as? [Double]) ?? [], elapsed)
        }
        var idle: [Double] = [], busy: [Double] = []
        var busySeconds = 0.0
        while busySeconds < latencySeconds {
            try? FileManager.default.removeItem(atPath: data + "/bundles")
            try flushAndDrop()
            let b = try window({ try shell("/usr/bin/nice", ["-n", "19", "/usr/bin/ionice", "-c", "3", t.maint, "bundle", "--data-dir", data]) }, seconds: 0)
            busy += b.samples
            busySeconds += b.seconds
            try flushAndDrop()
            idle += try window(nil, seconds: b.seconds).samples
        }
        func p99(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * 0.99))] }
        print(String(format: "recorder p99 commit latency while bundling %@: idle %.2f ms (%d commits), while bundling %.2f ms (%d commits): %.2fx (target <= 2x)",
                     label, p99(idle), idle.count, p99(busy), busy.count, p99(busy) / max(p99(idle), 1e-9)))
    }

    /// Published bundles, by session id.
    func bundleFiles(_ dir: String) throws -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasSuffix(".tar.zst") || $0.hasSuffix(".tar.zst.age") }
        guard !names.isEmpty else { throw ValidationError("no bundle in \(dir)") }
        func id(_ n: String) -> Int { Int(n.split(separator: "_").dropFirst().first ?? "") ?? 0 }
        return names.sorted { id($0) < id($1) }.map { dir + "/" + $0 }
    }

    @discardableResult
    func shell(_ exe: String, _ args: [String]) throws -> String { try checkedShell(exe, args) }

    func timed(reset: () throws -> Void = {}, _ body: () throws -> Void) throws -> Double {
        try medianTime(runs: runs, reset: reset, body)
    }
}

/// The libarchive version, for the benchmark's header line.
enum SessionBundleInfo {
    static var version: String { (try? shell("/usr/bin/bsdtar", ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "bsdtar ?" }
}
