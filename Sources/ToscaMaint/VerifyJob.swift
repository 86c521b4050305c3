import Foundation
import ToscaCore

/// `tosca-maint verify`: D12 on published copies (each result recorded in its manifest and
/// the journal), the catalog's own checks with `--all`, and the live check with `--live`.
public struct VerifyJob: Sendable {
    public let folder: DataFolder
    public init(folder: DataFolder) { self.folder = folder }

    /// Which copies.
    public enum Targets: Sendable, Equatable {
        /// The newest backup (the default when nothing else is named).
        case latest
        /// Every copy in the catalog, and the catalog's own checks.
        case all
        /// Copies named by path (an off-device copy with its manifest beside it too).
        case paths([String])
        /// No copy (`--live` alone).
        case none
    }

    /// One result line.
    public struct Outcome: Codable, Sendable {
        public let copy: String
        public let ok: Bool
        public let problems: [String]
        public init(copy: String, ok: Bool, problems: [String]) {
            self.copy = copy
            self.ok = ok
            self.problems = problems
        }
    }

    /// Verifies `targets`, then the live database when `live`. The caller holds
    /// `.maint.lock`. Every copy is checked and named; the caller decides the exit code.
    public func run(_ targets: Targets, live: Bool) throws -> [Outcome] {
        let catalog = try folder.scanCatalog()
        var entries: [CatalogEntry] = []
        var outcomes: [Outcome] = []
        switch targets {
        case .all:
            guard !(catalog.entries.isEmpty && catalog.orphans.isEmpty && catalog.orphanManifests.isEmpty) else {
                throw ToolFailure(.noInput, "no copies in \(catalog.backupsDirectory): nothing to verify", hint: "tosca-maint backup")
            }
            entries = catalog.entries.filter { $0.manifest != nil }
            for p in CatalogAudit.problems(catalog) { outcomes.append(Outcome(copy: "catalog", ok: false, problems: [p])) }
            for o in catalog.orphans {
                entries.append(CatalogEntry(name: PathName.name(o), path: o, manifest: nil, digestMatches: false, manifestError: "no manifest: not a published copy"))
            }
        case .paths(let paths):
            for p in paths {
                let path = PathName.normalized(p)
                guard FileManager.default.fileExists(atPath: path) || FileManager.default.fileExists(atPath: Manifest.path(for: path)) else {
                    throw ToolFailure(.noInput, "no copy at \(p)", hint: "tosca-maint list")
                }
                entries.append(catalog.entry(at: path))
            }
        case .latest:
            guard let newest = catalog.backups.last else {
                throw ToolFailure(.noInput, "no backups in \(catalog.backupsDirectory)", hint: "tosca-maint backup")
            }
            entries = [newest]
        case .none:
            break
        }
        for e in entries { outcomes.append(try verify(e)) }
        // --all: the session bundles too (an encrypted one by its ciphertext's SHA-256: the
        // device holds no identity).
        if targets == .all {
            let bundles = BundleJob(folder: folder)
            for b in try bundles.published() {
                let problems = try bundles.verify(b)
                outcomes.append(Outcome(copy: "bundle " + PathName.name(b.path), ok: problems.isEmpty, problems: problems))
            }
        }
        if live { outcomes.append(try verifyLive(catalog)) }
        return outcomes
    }

    /// D12 on one copy, recorded in its manifest and the journal.
    func verify(_ entry: CatalogEntry) throws -> Outcome {
        if entry.manifest?.facts.unverifiable == true {
            return Outcome(copy: entry.name, ok: true, problems: ["unverifiable raw safety copy, kept for forensics"])
        }
        let problems = try Verification.problems(of: entry, key: folder.key)
        if entry.manifest != nil { try Verification.record(ManifestCheck(level: "verify", ok: problems.isEmpty, problems: problems), for: entry) }
        if problems.isEmpty {
            Journal.shared.log(.info, "verified \(entry.path)", id: .verifyPassed, fields: ["TOSCA_BACKUP_PATH": entry.path])
        } else {
            Journal.shared.log(.err, "verification of \(entry.path) FAILED: \(problems.joined(separator: "; "))", id: .verifyFailed,
                               fields: ["TOSCA_BACKUP_PATH": entry.path])
        }
        return Outcome(copy: entry.name, ok: problems.isEmpty, problems: problems)
    }

    /// `--live`: quick_check, the chain, the anchor, the session seals (65); unsealed rows
    /// are notes.
    func verifyLive(_ catalog: Catalog) throws -> Outcome {
        let check = try LiveCheck.run(catalog)
        let problems = check.problems
        if problems.isEmpty {
            Journal.shared.log(.info, "live database verified\(check.anchorName.map { "; its safety log extends backup \($0)" } ?? "")",
                               id: .liveCheckPassed, fields: ["TOSCA_DATABASE": folder.database])
        } else {
            Journal.shared.log(.err, "live database check FAILED (possible tampering): \(problems.joined(separator: "; "))",
                               id: .tamperingDetected, fields: ["TOSCA_DATABASE": folder.database])
        }
        for n in check.notes { Journal.shared.log(.warning, "live database: \(n)", fields: ["TOSCA_DATABASE": folder.database]) }
        return Outcome(copy: "live tosca.db" + (check.anchorName.map { " (anchored on \($0))" } ?? ""), ok: problems.isEmpty,
                       problems: problems.isEmpty ? check.notes : problems + check.notes)
    }
}
