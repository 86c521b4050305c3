import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct EncryptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encrypt",
        abstract: "The Phase 6 cutover: the plaintext database and every copy to SQLCipher.",
        discussion: """
            SQLCipher 4.6: AES-256-CBC with a per-page HMAC-SHA512, a raw 256-bit key (no KDF).
              1. already encrypted and no plaintext copy left: says so, 0 (plaintext copies left: \
            resumes at step 6);
              2. takes backups/.maint.lock, then tosca.lock (75 while the recorder runs);
              3. a verified plaintext pre-encryption safety copy (mode 0600);
              4. ATTACH ... KEY + sqlcipher_export into a file beside the database, then \
            user_version, application_id and WAL mode, which export leaves out;
              5. proves it equal (same tables, same rows by a content hash per table, \
            integrity_check, cipher_integrity_check, the safety-log chain, unreadable as \
            plaintext) and swaps it in; any failure up to here leaves the plaintext database \
            as it was;
              6. every plaintext copy in backups/ becomes an encrypted one under the same name \
            (verified, a new manifest with the key id, the plaintext file replaced), the \
            pre-encryption copy too; with --keep-plaintext-copy its plaintext file is kept in \
            backups/quarantine/. Removal does not erase data on ext4 or flash: see Runbooks and \
            use an encrypted data partition;
              7. a restore drill of the newest backup under the key, so status is green after.
            Exit codes: 0 done, 64 no --yes without a terminal, 65 a copy not converted or the \
            drill failed (each named), 74 disk full or I/O error (nothing changed), 75 the \
            recorder or another maintenance run is running, 77 key file problem.
            --rehearse runs steps 3-5 in a scratch folder, reports, and changes nothing.

            Examples:
              tosca-maint encrypt --key-file /root/tosca-db-key --rehearse
              tosca-maint encrypt --key-file /root/tosca-db-key --yes
            """)
    @Option(help: "Data folder holding tosca.db (default: $TOSCA_DATA_DIR, else ./data).") var dataDir: String?
    @Option(help: "The new key: 64 hex characters, mode 0400 (tosca-maint keygen).") var keyFile: String
    @Flag(help: "Steps 3-5 in a scratch folder; change nothing.") var rehearse = false
    @Flag(help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "Keep the plaintext pre-encryption copy (destroy it yourself afterwards).") var keepPlaintextCopy = false
    @Option(help: "The age recipients plaintext session bundles are encrypted to (default: /etc/tosca-maint/bundle-recipients).")
    var recipients = BundleJob.defaultRecipients

    func run() throws {
        try runReporting {
            let folder = try DataFolder.existing(dataDir)
            let key = try KeySource.read(path: keyFile)
            try folder.continueAsOwnerIfRoot()
            var job = EncryptJob(folder: folder, key: key)
            job.keepPlaintextCopy = keepPlaintextCopy
            job.recipientsFile = recipients
            if rehearse {
                let problems = try job.rehearse()
                if problems.isEmpty { print("rehearsal ok: the encrypted export equals the database (key id \(job.key.keyID)); nothing changed"); return 0 }
                throw ToolFailure(.dataError, "rehearsal found problems; nothing changed:\n  " + problems.joined(separator: "\n  "))
            }
            let outcome = try job.run {
                print("Encrypting \(job.databasePath) with key id \(job.key.keyID), then every plaintext copy in backups/.")
                guard try confirmTyped("encrypt", yes: yes, refusal: "no terminal to confirm on: refusing without --yes", hint: "rehearse first: --rehearse") else {
                    throw ToolFailure(.usage, "not confirmed: nothing changed")
                }
            }
            if outcome.alreadyDone { print("already encrypted and no plaintext copy left: nothing to do"); return 0 }
            if outcome.swapped { print("encrypted \(job.databasePath) (key id \(job.key.keyID))") }
            for c in outcome.converted { print("encrypted copy \(c.to) in place (its plaintext file is gone)") }
            for b in outcome.convertedBundles { print("encrypted bundle \(b) (its plaintext bundle is gone)") }
            if let kept = outcome.keptPlaintext {
                print("KEPT plaintext pre-encryption copy \(kept) (in quarantine): it holds patient data unencrypted; destroy it (and its medium) once the cutover is accepted")
            }
            for (name, why) in outcome.skipped { print("NOT converted \(name): \(why)") }
            return try reportDrill(outcome.drill, failed: !outcome.skipped.isEmpty)
        }
    }
}

/// Prints the drill that ends a cutover or key rotation; 65 when it (or a copy) failed.
func reportDrill(_ drill: (copy: String, problems: [String])?, failed: Bool) throws -> Int32 {
    if let drill {
        if drill.problems.isEmpty {
            print("drill ok  \(drill.copy)")
        } else {
            throw ToolFailure(.dataError, "the restore drill of \(drill.copy) failed:\n  " + drill.problems.joined(separator: "\n  "),
                              hint: "verify the copies (tosca-maint verify --all) and take a fresh backup")
        }
    } else {
        print("no backup under the new key yet to drill: take one (tosca-maint backup), then tosca-maint restore --drill")
    }
    return failed ? ExitStatus.dataError.rawValue : 0
}
