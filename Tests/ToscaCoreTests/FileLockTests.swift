import Foundation
import Testing
import TestSupport
@testable import ToscaCore

@Suite struct FileLockTests {
    /// `isHeld` sees a lock another holder has (here this process, through /proc/locks)
    /// and never takes it: the holder keeps it, and a free file stays free.
    @Test func isHeldReadsTheLockWithoutTakingIt() throws {
        let dir = TempDir()
        let path = dir.sub("tosca.lock")
        FileManager.default.createFile(atPath: path, contents: Data())
        #expect(!FileLock.isHeld(path: path))
        #expect(!FileLock.isHeld(path: dir.sub("absent")))
        let lock = try FileLock(path: path)
        #expect(FileLock.isHeld(path: path))
        // Held by this process only: not held by others.
        #expect(!FileLock.isHeld(path: path, byOthers: true))
        #expect(!FileLock.isHeld(path: path, procLocks: dir.sub("no-proc-locks"), byOthers: true))
        // Another file on the same filesystem is not confused with it.
        FileManager.default.createFile(atPath: dir.sub("other"), contents: Data())
        #expect(!FileLock.isHeld(path: dir.sub("other")))
        // Where /proc/locks is hidden (a unit with ProcSubset=pid): the holder's pid.
        #expect(FileLock.isHeld(path: path, procLocks: dir.sub("no-proc-locks")))
        lock.unlock()
        #expect(!FileLock.isHeld(path: path))
        // The probe left the file free: it can be taken.
        let again = try FileLock(path: path)
        again.unlock()
        // Held by another process (util-linux flock(1)): held by others too.
        let other = Process()
        // A shell that takes the lock on its descriptor 9 with flock(1), then becomes
        // `sleep`: killing it drops the lock at once.
        other.executableURL = URL(fileURLWithPath: "/bin/sh")
        other.arguments = ["-c", "exec 9>>\"$0\" && /usr/bin/flock 9 && exec /bin/sleep 60", path]
        try other.run()
        defer { kill(other.processIdentifier, SIGKILL); other.waitUntilExit() }
        var seen = false
        for _ in 0..<100 where !seen {
            seen = FileLock.isHeld(path: path, byOthers: true)
            if !seen { usleep(20_000) }
        }
        #expect(seen)
        // A pid left in the file by a holder that is gone: not held.
        try "999999999\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(!FileLock.isHeld(path: path, procLocks: dir.sub("no-proc-locks")))
    }
}
