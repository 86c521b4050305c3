import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "A verified safety copy of kind `snapshot`, with the reason in its manifest.",
        discussion: "Pruned only by `prune --safety-copies --older-than DAYS`.\n\nExample:\n  tosca-maint snapshot --reason \"before replacing the laser head\"")
    @OptionGroup var shared: SharedOptions
    @Option(help: "Why the snapshot is taken (kept in the manifest).") var reason: String

    func validate() throws {
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--reason must say why") }
    }

    func run() throws {
        try runReporting {
            var job = CopyJob(folder: try shared.writableFolder(), kind: .snapshot, reason: reason)
            job.showProgress = !shared.json
            let copy = try job.run()
            Journal.shared.log(.info, "snapshot \(copy.path): \(reason)", id: .snapshotTaken, fields: ["TOSCA_BACKUP_PATH": copy.path])
            if shared.json { try printJSON(["path": JSONValue.string(copy.path), "manifest": try JSONValue.from(copy.manifest)]) } else { print(copy.path) }
            return 0
        }
    }
}
