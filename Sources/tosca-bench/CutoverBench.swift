import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// `tosca-bench cutover`: `tosca-maint encrypt` on a large database against the same work
/// by hand with the `sqlcipher` CLI.
struct CutoverBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "The encryption cutover of a large database against the by-hand sqlcipher work.",
        discussion: """
            By hand: ATTACH ... KEY + sqlcipher_export, PRAGMA integrity_check of the result, \
            count(*) of every table on both sides. Ours: tosca-maint encrypt --yes (a verified \
            pre-encryption copy, the export, a content hash per table on both sides, \
            integrity_check and cipher_integrity_check, the swap, and the conversion of the \
            plaintext copies), with and without --keep-plaintext-copy.
            """)

    @Option(help: "Size of the benchmark database in MiB.") var sizeMib = 1024
    @Option(help: "Folder for the databases (kept between runs when given).") var workDir: String?
    @Option(help: "Runs of each timing; the median is shown.") var runs = 3

    struct Figures { let byHand: Double; let keep: Double; let full: Double; let sizeBytes: Int64 }

    func run() throws {
        setPrivateUmask()
        let base = workDir ?? (NSTemporaryDirectory() + "/tosca-bench-cutover-\(getpid())")
        try AtomicFile.makeDirectory(base)
        defer { if workDir == nil { try? FileManager.default.removeItem(atPath: base) } }
        let f = try Self.measure(base: base, sizeMib: sizeMib, runs: runs)
        print("tosca-bench cutover: \(String(format: "%.0f", Double(f.sizeBytes) / 1_048_576)) MiB database, SQLCipher \(try SQLCipherLibrary.checkVersion()), medians of \(runs)")
        Self.printFigures(f)
    }

    static func printFigures(_ f: Figures) {
        print(String(format: "  by hand: sqlcipher_export + integrity_check + count(*) both sides   %7.2f s", f.byHand))
        print(String(format: "  tosca-maint encrypt --keep-plaintext-copy                           %7.2f s   %.2fx by hand", f.keep, f.keep / f.byHand))
        print(String(format: "  tosca-maint encrypt (also converts the pre-encryption copy)         %7.2f s   %.2fx by hand", f.full, f.full / f.byHand))
    }

    /// The by-hand cutover and ours, each on a fresh copy of the plaintext benchmark database.
    static func measure(base: String, sizeMib: Int, runs: Int) throws -> Figures {
        var helper = try BackupBench.parse(["--size-mib", String(sizeMib), "--runs", String(runs)])
        helper.workDir = base
        guard let sqlite3 = which("sqlite3"), let sqlcipher = which("sqlcipher"), let maint = helper.sibling("tosca-maint") else {
            throw ValidationError("needs sqlite3, sqlcipher and tosca-maint beside this binary")
        }
        let plain = base + "/plain"
        try helper.makeDatabase(data: plain, sqlite3: sqlite3)
        let keyFile = base + "/cutover-key"
        if !FileManager.default.fileExists(atPath: keyFile) { _ = try KeyGen.write(to: keyFile) }
        let hex = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let scratch = base + "/cutover"
        func fresh() throws {
            try? FileManager.default.removeItem(atPath: scratch)
            try AtomicFile.makeDirectory(scratch)
            _ = try shell("/bin/cp", [plain + "/tosca.db", scratch + "/tosca.db"])
            _ = try shell("/bin/sync", [])
        }
        let tables = try Database(path: plain + "/tosca.db", options: .init(readOnly: true)).tableNames()
        let counts = tables.map { "SELECT count(*) FROM \(quoteIdentifier($0));" }.joined(separator: "\n")
        let byHand = try helper.timed(reset: fresh) {
            try helper.runCLI(sqlcipher, [scratch + "/tosca.db"], stdin: "ATTACH DATABASE '\(scratch)/enc.db' AS enc KEY \"x'\(hex)'\";\nSELECT sqlcipher_export('enc');\nDETACH DATABASE enc;\n")
            try helper.runCLI(sqlcipher, [scratch + "/enc.db"], stdin: "PRAGMA key = \"x'\(hex)'\";\nPRAGMA integrity_check;\n" + counts + "\n")
            try helper.runCLI(sqlite3, [scratch + "/tosca.db"], stdin: counts + "\n")
        }
        let keep = try helper.timed(reset: fresh) { try helper.runCLI(maint, ["encrypt", "--key-file", keyFile, "--yes", "--keep-plaintext-copy", "--data-dir", scratch]) }
        let full = try helper.timed(reset: fresh) { try helper.runCLI(maint, ["encrypt", "--key-file", keyFile, "--yes", "--data-dir", scratch]) }
        try? FileManager.default.removeItem(atPath: scratch)
        return Figures(byHand: byHand, keep: keep, full: full, sizeBytes: fileSize(plain + "/tosca.db"))
    }
}
