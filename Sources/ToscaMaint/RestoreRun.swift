import Foundation
import ToscaCore

/// What `tosca-maint restore` is asked to do.
public struct RestoreRequest: Sendable {
    public var selection: RestoreSelection
    /// `--to PATH`: a new file for inspection; the live database is not touched.
    public var to: String?
    public var dryRun: Bool

    public init(selection: RestoreSelection, to: String? = nil, dryRun: Bool = false) {
        self.selection = selection
        self.to = to
        self.dryRun = dryRun
    }
}

/// What a restore did.
public struct RestoreOutcome: Sendable {
    public let plan: RestorePlan
    /// The copy restored (after an off-device copy was brought into the catalog: that one).
    public var entry: CatalogEntry
    public let target: String
    /// `false` for a dry run, or when the admin did not confirm.
    public var restored = false
    public var confirmed = true
    /// The safety copy of the database the restore replaced.
    public var preRestore: String?
    /// Whether the restored safety log got its `maintenance` entry (it has a chain).
    public var recorded = false
}

extension RestoreJob {
    /// The restore, in order: locks (`.maint.lock`; `tosca.lock` too in place), the copy
    /// chosen, staged beside the target and verified there (a dry run verifies the copy in
    /// place), the plan shown, the admin's confirmation (in place only), the
    /// key decision (no plaintext database ever comes back to an encrypted device), an
    /// off-device copy brought into the catalog, the current database kept as a safety
    /// copy, then the staged swap with the restore recorded in the restored safety log and
    /// bound in the copy's manifest. `say` prints progress lines as they happen.
    public func run(_ request: RestoreRequest, show: (RestorePlan) throws -> Void, confirm: () throws -> Bool,
                    say: (String) -> Void) throws -> RestoreOutcome {
        let inPlace = request.to == nil
        var maintLock: FileLock? = nil, locks: ExclusiveLocks? = nil
        defer { locks?.unlock(); maintLock?.unlock() }
        let target = request.to ?? databasePath
        if let to = request.to {
            guard !FileManager.default.fileExists(atPath: to) else {
                throw ToolFailure(.cantCreate, "\(to) exists: --to never overwrites", hint: "name a new file")
            }
            // Manifests get the verification result: serialize with other maintenance runs.
            maintLock = try folder.takeMaintenanceLock()
        } else {
            locks = try folder.takeExclusiveLocks(what: "the restore")
        }
        // One scan; a second only when housekeeping changed the folder.
        var catalog = try folder.scanCatalog()
        if inPlace {
            let tidy = try Housekeeping.run(catalog)
            if !tidy.removedPartials.isEmpty || !tidy.quarantined.isEmpty || !catalog.pendingManifests.isEmpty {
                catalog = try folder.scanCatalog()
            }
        }
        var entry = try select(request.selection, catalog: catalog)
        if inPlace && entry.kind == .suspect {
            throw ToolFailure(.dataError, "\(entry.name) is a suspect copy (taken when the live safety log did not extend the last backup): restoring it would make its timeline the live one",
                              hint: "inspect it with --to PATH; restore the state before the change with --anchor")
        }
        if request.dryRun {
            try verifyOrExplain(entry, catalog: catalog)
            let plan = try self.plan(for: entry, target: target)
            try show(plan)
            return RestoreOutcome(plan: plan, entry: entry, target: target)
        }
        // Staged beside the target first, and verified there: one D12 pass proves the copy
        // (its SHA-256 is the manifest's) and what will be restored.
        try refuseUnverifiable(entry)
        // In place, with the copy already in the catalog: the current database's safety copy
        // is made and verified meanwhile, and published only after the confirmation. (An
        // off-device copy joins the catalog first, so the safety copy's timeline check sees
        // it: that case keeps the order below.)
        let early = inPlace && catalog.entries.contains(where: { realPath($0.path) == realPath(entry.path) }) ? startKeepingCurrent() : nil
        defer { _ = try? early?.finish(publish: false) }
        let staged = try stage(entry, to: target)
        try explain(entry, problems: staged.problems, catalog: catalog)
        let plan = try self.plan(for: entry, target: target)
        try show(plan)
        var outcome = RestoreOutcome(plan: plan, entry: entry, target: target)
        // --to changes nothing live (a new file for inspection): no confirmation needed.
        if try inPlace && !confirm() {
            outcome.confirmed = false
            return outcome
        }
        let encryptWith = try keyToEncryptWith(entry, target: target, inPlace: inPlace, catalog: catalog)
        if inPlace {
            // An off-device copy joins the catalog first, so that its manifest there
            // records (and confirms) this restore.
            entry = try importIntoCatalog(entry, catalog: catalog)
            outcome.preRestore = try early.map { try $0.finish(publish: true) } ?? keepCurrent(caller: true)
            if let preRestore = outcome.preRestore { say("kept the current database as \(preRestore)") }
        }
        let rawKept = outcome.preRestore.map { (try? Manifest.read(path: Manifest.path(for: $0)).0.facts.unverifiable) == true } ?? false
        var binding: ManifestCheck? = nil
        // The maintenance entry goes into the staged file, before the swap: the restored
        // database never exists without it.
        do {
            try place(staged, of: entry, at: target, replace: inPlace, journalsKept: rawKept, encryptWith: encryptWith, prepare: inPlace ? { staged in
                // The copy's manifest records the restore, bound to the entry just appended:
                // what `verify --live` and `backup` take as confirmation of that entry. (If
                // the swap then fails, the binding names an entry that never went live.)
                if let entryHead = try recordRestore(into: staged, copy: entry, preRestore: outcome.preRestore) {
                    outcome.recorded = true
                    let check = ManifestCheck(level: LiveCheck.restoreCheckLevel, ok: true, problems: [], detail: entryHead.description)
                    try Verification.record(check, for: entry)
                    binding = check
                }
            } : nil)
        } catch {
            // Nothing was restored: the binding goes (it names an entry that never went live).
            if let binding { try? Verification.remove(binding, from: entry) }
            throw error
        }
        if inPlace {
            Journal.shared.log(.warning, "restored \(target) from \(entry.path)\(outcome.preRestore.map { "; previous database kept as \($0)" } ?? "")",
                               id: .restored, fields: ["TOSCA_BACKUP_PATH": entry.path, "TOSCA_DATABASE": target])
        }
        outcome.entry = entry
        outcome.restored = true
        return outcome
    }

    /// The key a plaintext copy is encrypted with on its way into an encrypted device, or
    /// `nil` (no conversion). A live file that is not plaintext SQLite is encrypted, or
    /// damaged: with a key given, or encrypted copies in the catalog, the device is
    /// encrypted. (A missing or empty live file counts as "not plaintext" here: on an
    /// encrypted device a lost tosca.db must not come back as plaintext either.)
    func keyToEncryptWith(_ entry: CatalogEntry, target: String, inPlace: Bool, catalog: Catalog) throws -> DatabaseKey? {
        let notPlaintext = inPlace && (try? FileHeader.classify(path: target)) != .plaintext
        let deviceEncrypted = key != nil || catalog.entries.contains { $0.manifest?.facts.encryption.isEncrypted == true }
        guard notPlaintext && deviceEncrypted && entry.manifest?.facts.encryption.isEncrypted == false else { return nil }
        guard let key else {
            throw ToolFailure(.noPermission, "\(target) is encrypted and \(entry.name) is plaintext: give the key, and the copy is encrypted on the way in",
                              hint: "pass --key-file (or load the \(KeySource.credentialName) credential)")
        }
        return key
    }
}
