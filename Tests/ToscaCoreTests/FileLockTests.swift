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
        // Another file on the same filesystem is not confused with it.
        FileManager.default.createFile(atPath: dir.sub("other"), contents: Data())
        #expect(!FileLock.isHeld(path: dir.sub("other")))
        lock.unlock()
        #expect(!FileLock.isHeld(path: path))
        // The probe left the file free: it can be taken.
        _ = try FileLock(path: path)
    }
}
