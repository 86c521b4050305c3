import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct RekeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey",
        abstract: "Rotate the key: the live database and every copy, from one key to another.",
        discussion: """
            Takes backups/.maint.lock then tosca.lock (75 while the recorder runs), a verified \
            pre-rekey safety copy under the old key, re-keys the database (sqlite3_rekey), \
            verifies it under the new key, then re-keys every copy in backups/ through the \
            backup API, verifies it, and replaces it under the same name with a manifest that \
            names the new key id; then drills the newest backup under the new key. Interrupted, \
            a re-run resumes: copies still under the old key are found by their key id.

            Example:
              tosca-maint rekey --key-file /root/old-key --new-key-file /root/new-key --yes
            """)
    @Option(help: "Data folder holding tosca.db (default: $TOSCA_DATA_DIR, else ./data).") var dataDir: String?
    @Option(help: "The current key file.") var keyFile: String
    @Option(help: "The new key file (tosca-maint keygen).") var newKeyFile: String
    @Flag(help: "Do not ask for confirmation.") var yes = false

    func run() throws {
        try runReporting {
            let folder = try DataFolder.existing(dataDir)
            let (oldKey, newKey) = (try KeySource.read(path: keyFile), try KeySource.read(path: newKeyFile))
            try folder.continueAsOwnerIfRoot()
            let job = RekeyJob(folder: folder, oldKey: oldKey, newKey: newKey)
            let outcome = try job.run {
                print("Re-keying \(job.databasePath) and its copies from key id \(job.oldKey.keyID) to \(job.newKey.keyID).")
                guard try confirmTyped("rekey", yes: yes, refusal: "no terminal to confirm on: refusing without --yes") else {
                    throw ToolFailure(.usage, "not confirmed: nothing changed")
                }
            }
            if outcome.rekeyedLive { print("re-keyed \(job.databasePath) (key id \(job.newKey.keyID))") }
            for c in outcome.rekeyedCopies { print("re-keyed copy \(c)") }
            for (n, why) in outcome.skipped { print("NOT re-keyed \(n): \(why)") }
            if !outcome.rekeyedLive && outcome.rekeyedCopies.isEmpty && outcome.skipped.isEmpty { print("already under key id \(job.newKey.keyID): nothing to do") }
            return try reportDrill(outcome.drill, failed: !outcome.skipped.isEmpty)
        }
    }
}
