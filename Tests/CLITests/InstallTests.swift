import Foundation
import Testing
import TestSupport
import ToscaMaint

/// `make install` / `make uninstall` into a DESTDIR, and what the installed files are worth
/// to systemd, journalctl, man and bash.
@Suite struct InstallTests {
    static let units = ["tosca-maint-backup.service", "tosca-maint-backup.timer", "tosca-maint-failure@.service",
                        "tosca-maint-verify.service", "tosca-maint-verify.timer", "tosca-maint-export.service", "tosca-maint-export.timer",
                        "tosca-maint-session.path", "tosca-maint-session.service"]
    static var runbooks: [String] { listing(packageRoot() + "/Runbooks").filter { $0.hasSuffix(".md") } }

    static func expectedTree(prefix: String) -> [String] {
        var files = ["bin/tosca-maint",
                     "lib/systemd/catalog/tosca-maint.catalog", "lib/sysusers.d/tosca-maint.conf", "lib/tmpfiles.d/tosca-maint.conf",
                     "share/bash-completion/completions/tosca-maint",
                     "share/doc/tosca-maint/README.md",
                     "share/man/man1/tosca-maint.1"]
        files += units.map { "lib/systemd/system/\($0)" }
        files += runbooks.map { "share/doc/tosca-maint/runbooks/\($0)" }
        return files.map { prefix + "/" + $0 }.sorted()
    }

    @Test func installIntoDestdirThenUninstallLeavesNothing() throws {
        let dir = TempDir()
        let dest = dir.sub("dest")
        // Installing without staging first is refused: install generates nothing as root.
        let unstaged = try runMake(["install"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/opt/tosca"])
        #expect(unstaged.status != 0 && unstaged.stderr.contains("Try: make"), "\(unstaged.output)")
        #expect(filesUnder(dest) == [])
        let r = try runMake(["stage", "install"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/opt/tosca"])
        try #require(r.status == 0, "\(r.output)")
        #expect(filesUnder(dest) == Self.expectedTree(prefix: "opt/tosca"))
        var st = stat()
        for p in ["bin/tosca-maint"] {
            #expect(stat(dest + "/opt/tosca/" + p, &st) == 0 && st.st_mode & 0o777 == 0o755, "\(p)")
        }
        for u in Self.units {
            let text = try String(contentsOfFile: dest + "/opt/tosca/lib/systemd/system/" + u, encoding: .utf8)
            #expect(stat(dest + "/opt/tosca/lib/systemd/system/" + u, &st) == 0 && st.st_mode & 0o777 == 0o644)
            // Installed units name the installed binary and docs, never the default prefix.
            #expect(!text.contains("/usr/local/"), "\(u) still names /usr/local")
            if u.hasSuffix(".service") { #expect(text.contains("ExecStart=/opt/tosca/bin/tosca-maint "), "\(u)") }
        }
        // The installed binary is the one that was built, and runs.
        #expect(fileSHA256(dest + "/opt/tosca/bin/tosca-maint") == fileSHA256(executable("tosca-maint")))
        let version = try run(dest + "/opt/tosca/bin/tosca-maint", ["--version"])
        #expect(version.status == 0 && !version.stdout.isEmpty)

        let u = try runMake(["uninstall"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/opt/tosca"])
        try #require(u.status == 0, "\(u.output)")
        #expect(filesUnder(dest) == [], "left behind: \(filesUnder(dest))")
        #expect(!FileManager.default.fileExists(atPath: dest + "/opt/tosca/share/doc/tosca-maint"))
        // A file of someone else's in a shared folder survives.
        try FileManager.default.createDirectory(atPath: dest + "/opt/tosca/bin", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dest + "/opt/tosca/bin/other", contents: Data("x".utf8))
        _ = try runMake(["stage", "install"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/opt/tosca"])
        _ = try runMake(["uninstall"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/opt/tosca"])
        #expect(filesUnder(dest) == ["opt/tosca/bin/other"])
    }

    @Test func installWithoutBuiltBinariesFailsClearly() throws {
        let dir = TempDir()
        let r = try runMake(["stage", "install"], stage: dir.sub("stage"), variables: ["DESTDIR": dir.sub("dest"), "BUILT": dir.sub("nothing-built")])
        #expect(r.status != 0)
        #expect(r.stderr.contains("is not built") && r.stderr.contains("Try: make"), "\(r.output)")
        #expect(filesUnder(dir.sub("dest")) == [])
    }

    /// journalctl indexes the installed catalog and lists exactly the tool's MESSAGE_IDs.
    @Test func journalctlIndexesTheInstalledCatalog() throws {
        let journalctl = try #require(which("journalctl"), "journalctl (systemd) is installed by scripts/install-deps.sh")
        let dir = TempDir()
        let dest = dir.sub("dest")
        try #require(try runMake(["stage", "install"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/usr/local"]).status == 0)
        let update = try run(journalctl, ["--root=\(dest)", "--update-catalog"])
        #expect(update.status == 0 && update.stderr.isEmpty, "\(update.output)")
        let list = try run(journalctl, ["--root=\(dest)", "--list-catalog"])
        #expect(list.status == 0, "\(list.output)")
        let ids = Set(list.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(ids == Set(MessageID.allCases.map(\.rawValue)), "\(list.stdout)")
        // Every entry carries the tool's name as its definer.
        #expect(list.stdout.split(separator: "\n").allSatisfy { $0.contains(" tosca-maint: TOSCA ") }, "\(list.stdout)")
    }

    /// The generated man pages render without a warning and cover every subcommand; the
    /// completion scripts parse and register.
    @Test func manPagesAndCompletionsWork() throws {
        let man = try #require(which("man"), "man (man-db) is installed by scripts/install-deps.sh")
        let dir = TempDir()
        let dest = dir.sub("dest")
        try #require(try runMake(["stage", "install"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/usr/local"]).status == 0)
        let page = dest + "/usr/local/share/man/man1/tosca-maint.1"
        let r = try run(man, ["--warnings", "-l", page], environment: ["MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"])
        #expect(r.status == 0 && r.stderr.isEmpty, "\(r.stderr)")
        for sub in ["backup", "verify", "restore", "migrate", "snapshot", "keygen", "encrypt", "rekey", "list", "prune", "status", "inspect", "quarantine", "alert"] {
            #expect(r.stdout.contains("\n     \(sub)"), "man page lacks \(sub)")
        }
        let bash = try #require(which("bash"))
        for p in ["tosca-maint"] {
            let script = dest + "/usr/local/share/bash-completion/completions/" + p
            let check = try run(bash, ["-c", "source \"$1\" && complete -p \(p)", "_", script])
            #expect(check.status == 0 && check.stdout.contains(p), "\(check.output)")
        }
    }

    /// The tmpfiles.d entry grants the units' user write access to node_exporter's folder,
    /// and skips a machine without it; it makes the data folder as the units would. (The
    /// test machine has no `tosca` user: the entry is applied with `nobody`, uid 65534, in
    /// its place; with --root, the folder's owner is resolved in the root, so by number.)
    @Test func tmpfilesEntryGrantsTheMetricsFolder() throws {
        let tmpfiles = try #require(which("systemd-tmpfiles"), "systemd-tmpfiles (systemd) is installed by scripts/install-deps.sh")
        let dir = TempDir()
        let dest = dir.sub("dest")
        try #require(try runMake(["stage", "install"], stage: dir.sub("stage"), variables: ["DESTDIR": dest, "PREFIX": "/usr/local"]).status == 0)
        let entry = try String(contentsOfFile: dest + "/usr/local/lib/tmpfiles.d/tosca-maint.conf", encoding: .utf8)
        #expect(entry.contains("user:tosca:rwx") && entry.contains("d /var/lib/tosca 0700 tosca tosca -"))
        let conf = dir.sub("nobody.conf")
        try entry.replacingOccurrences(of: "user:tosca:", with: "user:nobody:").replacingOccurrences(of: " tosca tosca ", with: " 65534 65534 ")
            .write(toFile: conf, atomically: true, encoding: .utf8)
        let root = dir.sub("root")
        let absent = try run(tmpfiles, ["--root=\(root)", "--create", conf])
        #expect(absent.status == 0 && absent.stderr.isEmpty, "\(absent.output)")
        #expect(!FileManager.default.fileExists(atPath: root + "/var/lib/prometheus/node-exporter"), "it must not create node_exporter's folder")
        try FileManager.default.createDirectory(atPath: root + "/var/lib/prometheus/node-exporter", withIntermediateDirectories: true)
        let applied = try run(tmpfiles, ["--root=\(root)", "--create", conf])
        #expect(applied.status == 0 && applied.stderr.isEmpty, "\(applied.output)")
        // The data folder was made as the units' StateDirectory= makes it.
        var st = stat()
        #expect(stat(root + "/var/lib/tosca", &st) == 0 && st.st_mode & 0o777 == 0o700 && st.st_uid == 65534, "data folder")
        let acl = try run("/bin/ls", ["-ld", root + "/var/lib/prometheus/node-exporter"])
        #expect(acl.stdout.hasPrefix("drwxrwxr-x+"), "no ACL: \(acl.stdout)")
    }
}
