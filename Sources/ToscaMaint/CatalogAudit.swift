import Foundation
import ToscaCore

/// Problems of the catalog as a whole that no single copy's check shows: each is a failed
/// check (65) for `status`, `verify --all` and `backup`.
public enum CatalogAudit {
    /// Whether the device is encrypted (D14): its live database is not plaintext SQLite, or
    /// (the live file lost) the catalog holds encrypted copies.
    public static func deviceEncrypted(_ catalog: Catalog) -> Bool {
        let live = catalog.folder.database
        if FileManager.default.fileExists(atPath: live), let header = try? FileHeader.classify(path: live), header != .empty {
            return header != .plaintext
        }
        return catalog.entries.contains { $0.manifest?.facts.encryption.isEncrypted == true }
    }

    /// Plaintext database files in `backups/` (quarantine excluded) of an encrypted device:
    /// left by an interrupted cutover, they hold patient data unencrypted.
    public static func plaintextCopies(_ catalog: Catalog) -> [String] {
        guard deviceEncrypted(catalog) else { return [] }
        return (catalog.entries.map(\.path) + catalog.orphans).filter { (try? FileHeader.classify(path: $0)) == .plaintext }
    }

    /// Every catalog-wide problem, worded for the admin.
    public static func problems(_ catalog: Catalog) -> [String] {
        var out: [String] = []
        for m in catalog.orphanManifests {
            out.append("\(PathName.name(m)) has no database file: a published copy was lost (manifests are written last, so no interrupted run leaves one)")
        }
        for e in catalog.entries where e.manifest == nil {
            out.append("\(e.name): its manifest cannot be read (\(e.manifestError ?? "?"))")
        }
        let raw = Set(catalog.entries.filter { $0.manifest?.facts.unverifiable == true }.map(\.path))
        for p in plaintextCopies(catalog) {
            if raw.contains(p) {
                out.append("\(PathName.name(p)) is a PLAINTEXT raw forensic copy on an encrypted device: examine it, then set it aside (tosca-maint quarantine \(p)) or destroy it")
            } else if catalog.orphans.contains(p) {
                out.append("\(PathName.name(p)) is a PLAINTEXT database file without a manifest on an encrypted device: the next maintenance run moves it to quarantine")
            } else {
                out.append("\(PathName.name(p)) is a PLAINTEXT copy on an encrypted device (an interrupted cutover): tosca-maint backup (with the key) or encrypt converts it")
            }
        }
        if deviceEncrypted(catalog) {
            for b in (try? BundleJob(folder: catalog.folder).plaintextBundles()) ?? [] {
                out.append("\(PathName.name(b.path)) is a PLAINTEXT session bundle on an encrypted device: tosca-maint bundle (with the recipients) or encrypt converts it")
            }
        }
        return out
    }
}
