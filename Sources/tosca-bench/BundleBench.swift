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
            One long session (its streams as many lines as an hour at 100 Hz, plus camera \
            media) recorded by tosca-sim. Each figure is the median of --runs, ours / by hand:
              bundle:           tosca-maint bundle (scan + hashes, write, fsync, read back from \
            disk, every SHA-256) vs bsdtar --zstd at the same level, sync, cache dropped, \
            bsdtar -x read-back and sha256sum of every file;
              encrypted bundle: the same to an age recipient vs the same piped through age -r;
              extract:          tosca-maint bundle extract vs bsdtar -xf and sha256sum -c.
            Sizes: ours vs bsdtar's. Build with -c release (scripts/bench.sh bundle).
            """)

    @Option(help: "Photodiode lines of the session (100 Hz for an hour: 360000).") var lines = 360_000
    @Option(help: "MiB of camera video in the session.") var mediaMib = 200.0
    @Option(help: "Timed runs of each (the median is printed).") var runs = 3
    @Option(help: "Scratch folder (default: a new folder under $TMPDIR; removed afterwards).") var workDir: String?
    @Flag(inversion: .prefixedNo, help: "Drop the page cache (as root) before the by-hand read-back.") var dropCaches = true
    @Option(help: "Seconds of recording for each latency window (idle, then while bundling); 0 skips it.") var latencySeconds = 20.0

    func run() throws {
        setPrivateUmask()
        let base = workDir ?? (NSTemporaryDirectory() + "/tosca-bench-bundle-\(getpid())")
        try AtomicFile.makeDirectory(base)
        defer { if workDir == nil { try? FileManager.default.removeItem(atPath: base) } }
        guard let maint = sibling("tosca-maint"), let sim = sibling("tosca-sim") else { throw ValidationError("tosca-maint and tosca-sim must be built beside tosca-bench") }
        guard let bsdtar = which("bsdtar"), let age = which("age"), let ageKeygen = which("age-keygen") else {
            throw ValidationError("bsdtar (libarchive-tools) and age are the baselines: apt-get install libarchive-tools age")
        }
        let data = base + "/data"
        // Ten seconds at lines/10 Hz give the hour's photodiode lines.
        try shell(sim, ["--data-dir", data, "--sessions", "1", "--duration", "10", "--sample-rate", String(lines / 10), "--event-rate", "100",
                        "--media-mib", String(mediaMib), "--seed", "1"])
        let folder = data + "/" + (try Database(path: data + "/tosca.db", options: .init(readOnly: true))
            .scalar("SELECT session_folder_path FROM sessions LIMIT 1")?.string ?? "")
        let plainBytes = try shell("/usr/bin/du", ["-sb", folder]).split(separator: "\t").first.map(String.init) ?? "?"
        try shell(ageKeygen, ["-o", base + "/identity"])
        try (try shell(ageKeygen, ["-y", base + "/identity"])).write(toFile: base + "/recipients", atomically: true, encoding: .utf8)
        let canDrop = dropCaches && FileManager.default.isWritableFile(atPath: "/proc/sys/vm/drop_caches")
        func flushAndDrop() throws {
            _ = try shell("/bin/sync", [])
            if canDrop { try "1\n".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8) }
        }
        print("tosca-bench bundle: \(SessionBundleInfo.version); session folder \(plainBytes) bytes (\(lines) photodiode lines, \(mediaMib) MiB media)")
        print("page cache drop by hand: \(canDrop ? "yes (drop_caches)" : "no (not writable here): the by-hand read-back may hit the cache")\n")

        let bundles = data + "/bundles"
        let ours = try timed(reset: { try? FileManager.default.removeItem(atPath: bundles) }) {
            try shell(maint, ["bundle", "--data-dir", data])
        }
        let oursSize = fileSize(try firstBundle(bundles))
        let tarOut = base + "/hand.tar.zst"
        let scratch = base + "/hand-x"
        let byHand = try timed(reset: { unlink(tarOut); try? FileManager.default.removeItem(atPath: scratch) }) {
            try shell(bsdtar, ["--zstd", "--options", "zstd:compression-level=3", "-cf", tarOut, "-C", folder, "."])
            try flushAndDrop()
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try shell(bsdtar, ["-xf", tarOut, "-C", scratch])
            try shell("/bin/sh", ["-c", "cd '\(scratch)' && find . -type f -exec sha256sum {} + > /dev/null"])
        }
        let handSize = fileSize(tarOut)

        let oursEnc = try timed(reset: { try? FileManager.default.removeItem(atPath: bundles) }) {
            try shell(maint, ["bundle", "--recipients", base + "/recipients", "--data-dir", data])
        }
        let ageOut = base + "/hand.tar.zst.age"
        let byHandEnc = try timed(reset: { unlink(ageOut); unlink(tarOut); try? FileManager.default.removeItem(atPath: scratch) }) {
            try shell(bsdtar, ["--zstd", "--options", "zstd:compression-level=3", "-cf", tarOut, "-C", folder, "."])
            try shell(age, ["-R", base + "/recipients", "-o", ageOut, tarOut])
            try flushAndDrop()
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try shell(age, ["-d", "-i", base + "/identity", "-o", tarOut, ageOut])
            try shell(bsdtar, ["-xf", tarOut, "-C", scratch])
            try shell("/bin/sh", ["-c", "cd '\(scratch)' && find . -type f -exec sha256sum {} + > /dev/null"])
        }

        // Extract: from the plaintext bundle, ours vs bsdtar -xf + sha256sum -c.
        try? FileManager.default.removeItem(atPath: bundles)
        try shell(maint, ["bundle", "--data-dir", data])
        let bundle = try firstBundle(bundles)
        try shell("/bin/sh", ["-c", "cd '\(folder)' && find . -type f -exec sha256sum {} + > '\(base)/sums'"])
        let out = base + "/ours-x"
        let oursX = try timed(reset: { try? FileManager.default.removeItem(atPath: out) }) {
            try shell(maint, ["bundle", "extract", "--file", bundle, "--to", out, "--data-dir", data])
        }
        let handX = try timed(reset: { try? FileManager.default.removeItem(atPath: scratch) }) {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try shell(bsdtar, ["-xf", bundle, "-C", scratch])
            try shell("/bin/sh", ["-c", "cd '\(scratch)' && sha256sum --quiet -c '\(base)/sums'"])
        }
        func r(_ a: Double, _ b: Double) -> String { String(format: "%.2fx", a / b) }
        print("workload (median of \(runs))          ours / by hand")
        print("bundle (write, fsync, read back)       \(r(ours, byHand))   (target <= 1.0x)")
        print("encrypted bundle (age X25519)          \(r(oursEnc, byHandEnc))   (target <= 1.2x)")
        print("extract, every SHA-256 checked         \(r(oursX, handX))   (target <= 1.2x)")
        print(String(format: "bundle size vs bsdtar --zstd level 3:  %.3f (target within 2%%)", Double(oursSize) / Double(max(handSize, 1))))
        if latencySeconds > 0 { try latency(data: data, sim: sim, maint: maint) }
    }

    /// The recorder's commit latency while `bundle` runs under nice 19 and the idle I/O
    /// class, against the same recording with nothing else running.
    func latency(data: String, sim: String, maint: String) throws {
        func window(_ label: String, during: (() throws -> Void)?) throws -> Double {
            let report = data + "/latency-\(label).json"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: sim)
            p.arguments = ["--data-dir", data, "--until-signal", "--sample-rate", "1000", "--event-rate", "50", "--latency-report", report]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            let end = Date().addingTimeInterval(latencySeconds)
            if let during { while Date() < end { try during() } } else { Thread.sleep(until: end) }
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw ValidationError("tosca-sim failed (\(p.terminationStatus))") }
            let text = try String(contentsOfFile: report, encoding: .utf8)
            guard let r = text.range(of: "\"p99_ms\":") else { return 0 }
            return Double(text[r.upperBound...].prefix { "0123456789.".contains($0) }) ?? 0
        }
        let idle = try window("idle", during: nil)
        var runs = 0
        let busy = try window("busy") {
            try? FileManager.default.removeItem(atPath: data + "/bundles")
            try shell("/usr/bin/nice", ["-n", "19", "/usr/bin/ionice", "-c", "3", maint, "bundle", "--data-dir", data])
            runs += 1
        }
        print(String(format: "recorder p99 commit latency (1 kHz samples, 50 events/s, %.0f s each): idle %.2f ms, while bundling (%d runs) %.2f ms: %.2fx (target <= 2x)",
                     latencySeconds, idle, runs, busy, busy / max(idle, 1e-9)))
    }

    func firstBundle(_ dir: String) throws -> String {
        guard let n = listingOf(dir).first(where: { $0.hasSuffix(".tar.zst") || $0.hasSuffix(".tar.zst.age") }) else {
            throw ValidationError("no bundle in \(dir)")
        }
        return dir + "/" + n
    }

    /// Runs a program; its failure stops the benchmark (a baseline that failed would make
    /// a ratio meaningless). Returns its standard output.
    @discardableResult
    func shell(_ exe: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ValidationError("\(PathName.name(exe)) \(args.prefix(3).joined(separator: " ")) failed (\(p.terminationStatus)): \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    func listingOf(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    func sibling(_ name: String) -> String? { siblingExecutable(name) }

    func timed(reset: () throws -> Void = {}, _ body: () throws -> Void) throws -> Double {
        try medianTime(runs: runs, reset: reset, body)
    }
}

/// The libarchive version, for the benchmark's header line.
enum SessionBundleInfo {
    static var version: String { (try? shell("/usr/bin/bsdtar", ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "bsdtar ?" }
}
