import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// `tosca-bench export`: export and import through restic against the same work done by
/// hand with restic, sha256sum and sqlite3, side by side in one run, printed as ratios.
struct ExportBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export and import against restic backup/check/restore + sha256sum + integrity_check by hand, as ratios.",
        discussion: """
            Builds (once, kept in --work-dir) a data folder with a database of about --db-mib \
            MiB, one verified backup of it and about --bundle-mib MiB of session bundles \
            (tosca-sim sessions with camera media), then times side by side, each run from a \
            cold page cache when it can be dropped, the median of --runs:
              first export:  tosca-maint export into a new repository vs restic backup of the \
            same files + restic check --read-data-subset of the same subset + restic restore \
            of the same sample (the copy, its manifest, one bundle and its sidecar) + \
            sha256sum -c of it + sqlite3 integrity_check of the restored copy;
              second export: the same with nothing new since the first;
              import:        tosca-maint import (without --extract-sessions) into a new folder \
            vs restic restore of the snapshot + sha256sum -c of every file + integrity_check.
            Both repositories sit on the scratch folder's filesystem (--allow-same-device), \
            with their own restic cache. Build with -c release (scripts/bench.sh export).
            """)

    @Option(help: "Size of the database in MiB.") var dbMib = 1024
    @Option(help: "MiB of session bundles (sessions of 100 MiB of camera media each).") var bundleMib = 2048
    @Option(help: "Timed runs of each (the median is printed).") var runs = 3
    @Option(help: "Scratch folder (kept between runs when given, so the data is built once).") var workDir: String?
    @Flag(inversion: .prefixedNo, help: "Drop the page cache (as root) before each run.") var dropCaches = true

    func run() throws {
        setPrivateUmask()
        let base = workDir ?? (NSTemporaryDirectory() + "/tosca-bench-export-\(getpid())")
        try AtomicFile.makeDirectory(base)
        defer { if workDir == nil { try? FileManager.default.removeItem(atPath: base) } }
        guard let maint = siblingExecutable("tosca-maint"), let sim = siblingExecutable("tosca-sim") else {
            throw ValidationError("tosca-maint and tosca-sim must be built beside tosca-bench")
        }
        guard let restic = which("restic"), let sqlite3 = which("sqlite3") else {
            throw ValidationError("restic and sqlite3 are the baselines: apt-get install restic sqlite3")
        }
        let data = base + "/data"
        try makeData(data: data, sim: sim, maint: maint, sqlite3: sqlite3)
        let pass = base + "/pass"
        try AtomicFile.write(Array("tosca-bench export password\n".utf8), to: pass, mode: 0o600)
        let ours = base + "/repo-ours", hand = base + "/repo-hand"
        let oursCache = base + "/cache-ours", handCache = base + "/cache-hand"
        let repoArgs = ["--repo", ours, "--password-file", pass, "--cache-dir", oursCache, "--allow-same-device"]
        func r(_ args: [String]) throws { try shell(restic, ["-r", hand, "--password-file", pass, "--cache-dir", handCache] + args) }

        // What goes: every file of backups/ (the copy and the manifests) and bundles/.
        let files = try exported(data)
        let copy = try require(files.first { $0.hasPrefix("backups/") && $0.hasSuffix(".db") }, "no database copy in \(data)/backups")
        let bundle = try require(files.first { $0.hasPrefix("bundles/") && !$0.hasSuffix(".manifest.json") }, "no bundle in \(data)/bundles")
        let sample = [copy, copy + ".manifest.json", bundle, bundle + ".manifest.json"]
        let sums = base + "/sums"
        try shell("/bin/sh", ["-c", "cd \"$0\" && out=\"$1\" && shift && sha256sum \"$@\" > \"$out\"", data, sums] + files)
        let sampleSums = base + "/sample-sums"
        try shell("/bin/sh", ["-c", "cd \"$0\" && out=\"$1\" && shift && sha256sum \"$@\" > \"$out\"", data, sampleSums] + sample)
        let bytes = files.reduce(Int64(0)) { $0 + fileSize(data + "/" + $1) }
        print("tosca-bench export: \(try shell(restic, ["version"]).trimmingCharacters(in: .whitespacesAndNewlines))")
        print("data: \(files.count) files, \(bytes / 1_048_576) MiB (database copy \(fileSize(data + "/" + copy) / 1_048_576) MiB); scratch on \(try filesystemType(base))")
        print("page cache drop: \(canDrop ? "yes (drop_caches)" : "no (not writable here): runs may hit the cache")")

        let subsets = 12
        var handSubset = 0
        /// The by-hand check and drill: the subset, the sample restored, sha256sum -c, integrity_check.
        func handVerify() throws {
            handSubset = handSubset % subsets + 1
            try r(["check", "--read-data-subset=\(handSubset)/\(subsets)"])
            let drill = base + "/hand-drill"
            try? FileManager.default.removeItem(atPath: drill)
            var args = ["restore", "latest", "--target", drill]
            for s in sample { args += ["--include", "/" + s] }
            try r(args)
            try shell("/bin/sh", ["-c", "cd \"$0\" && sha256sum --quiet -c \"$1\"", drill, sampleSums])
            try integrity(sqlite3, drill + "/" + copy)
            try FileManager.default.removeItem(atPath: drill)
        }
        func handBackup() throws {
            try shell("/bin/sh", ["-c", "cd \"$0\" && \"$1\" -r \"$2\" --password-file \"$3\" --cache-dir \"$4\" backup --json --tag tosca-export backups bundles > /dev/null",
                                  data, restic, hand, pass, handCache])
        }

        // First export: a new repository each run.
        let firstOurs = try timed(reset: {
            try fresh(ours, oursCache, data + "/exports")
            try shell(maint, ["export", "init", "--data-dir", data] + repoArgs)
            try flushAndDrop()
        }) { try shell(maint, ["export", "--subsets", String(subsets), "--data-dir", data] + repoArgs) }
        let firstHand = try timed(reset: {
            try fresh(hand, handCache)
            handSubset = 0
            try r(["init"])
            try flushAndDrop()
        }) { try handBackup(); try handVerify() }

        // Second export: nothing new since the last one (the repositories of the last runs).
        let secondOurs = try timed(reset: { try flushAndDrop() }) {
            try shell(maint, ["export", "--subsets", String(subsets), "--data-dir", data] + repoArgs)
        }
        let secondHand = try timed(reset: { try flushAndDrop() }) { try handBackup(); try handVerify() }

        // Import into a new folder vs restore + sha256sum -c of every file + integrity_check.
        let new = base + "/imported", restored = base + "/hand-restored"
        let importOurs = try timed(reset: { try fresh(new) }) {
            try shell(maint, ["import", "--data-dir", new] + repoArgs)
        }
        let importHand = try timed(reset: { try fresh(restored) }) {
            try r(["restore", "latest", "--target", restored])
            try shell("/bin/sh", ["-c", "cd \"$0\" && sha256sum --quiet -c \"$1\"", restored, sums])
            try integrity(sqlite3, restored + "/" + copy)
        }
        try fresh(new, restored)

        func row(_ label: String, _ a: Double, _ b: Double, _ target: String) {
            print(label.padding(toLength: 48, withPad: " ", startingAt: 0) + String(format: "%6.2fx", a / b) + "    " + target)
        }
        print("\nmedian of \(runs) runs, ours / by hand                  ratio    target")
        row("first export (backup, check subset, drill)", firstOurs, firstHand, "<= 1.0x")
        row("second export, nothing new", secondOurs, secondHand, "<= 1.0x")
        row("import (restore, every SHA-256, D12)", importOurs, importHand, "<= 1.1x")
        let repoBytes = try shell("/usr/bin/du", ["-sb", ours]).split(separator: "\t").first.map(String.init) ?? "?"
        let handBytes = try shell("/usr/bin/du", ["-sb", hand]).split(separator: "\t").first.map(String.init) ?? "?"
        print("repository size, ours / by hand after the same exports: \(repoBytes) / \(handBytes) bytes")
    }

    /// The data folder: a database of `dbMib` (sealed again on a new timeline once grown),
    /// the simulated sessions of about `bundleMib`, a verified backup, the bundles. Built
    /// once per work folder.
    func makeData(data: String, sim: String, maint: String, sqlite3: String) throws {
        let done = data + "/.bench-ready"
        if FileManager.default.fileExists(atPath: done) { return }
        try BackupBench.parse(["--size-mib", String(dbMib)]).makeDatabase(data: data, sqlite3: sqlite3)
        let sessions = max(1, bundleMib / 100)
        FileHandle.standardError.write(Data("recording \(sessions) sessions with 100 MiB of media each (once)...\n".utf8))
        try shell(sim, ["--data-dir", data, "--sessions", String(sessions), "--duration", "2", "--sample-rate", "1000",
                        "--event-rate", "100", "--media-mib", "100", "--seed", "4"])
        try shell(maint, ["backup", "--data-dir", data])
        try shell(maint, ["bundle", "--data-dir", data])
        try shell(maint, ["prune", "--data-dir", data])
        _ = FileManager.default.createFile(atPath: done, contents: nil)
    }

    /// The paths (relative to the data folder) that an export takes.
    func exported(_ data: String) throws -> [String] {
        var out: [String] = []
        for dir in ["backups", "bundles"] {
            for n in try FileManager.default.contentsOfDirectory(atPath: data + "/" + dir).sorted() where !n.hasPrefix(".") {
                out.append(dir + "/" + n)
            }
        }
        return out
    }

    func integrity(_ sqlite3: String, _ db: String) throws {
        let out = try shell(sqlite3, [db, "PRAGMA integrity_check;"]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard out == "ok" else { throw ValidationError("integrity_check of \(db): \(out)") }
    }

    var canDrop: Bool { canDropPageCache(dropCaches) }

    func flushAndDrop() throws { try flushAndDropPageCache(canDrop) }

    func fresh(_ paths: String...) throws {
        for p in paths { try? FileManager.default.removeItem(atPath: p) }
    }

    @discardableResult
    func shell(_ exe: String, _ args: [String]) throws -> String { try checkedShell(exe, args) }

    func timed(reset: () throws -> Void = {}, _ body: () throws -> Void) throws -> Double {
        try medianTime(runs: runs, reset: reset, body)
    }
}

/// `#require` for the benchmark: a value or a stop with `message`.
func require<T>(_ value: T?, _ message: String) throws -> T {
    guard let value else { throw ValidationError(message) }
    return value
}
