// Linux calls that Swift's Glibc module does not expose (they need _GNU_SOURCE).
#ifndef TOSCA_CLINUX_SHIM_H
#define TOSCA_CLINUX_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <fcntl.h>
#include <stdint.h>

/// sync_file_range(2) with WAIT_BEFORE | WRITE | WAIT_AFTER: push a range to the disk and
/// wait for it, without the metadata flush of fsync.
static inline int tosca_write_range_and_wait(int fd, int64_t offset, int64_t length) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)length,
                           SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}

/// sync_file_range(2) with WRITE alone: start pushing a range to the disk, do not wait.
static inline int tosca_start_write_range(int fd, int64_t offset, int64_t length) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE);
}

/// copy_file_range(2) from the current offsets: the kernel copies, no user buffers.
/// (Declared here: <unistd.h> under _GNU_SOURCE clashes with Swift's Glibc module. On the
/// LP64 Linux targets, ssize_t and off64_t are long and size_t is unsigned long.)
extern long copy_file_range(int in_fd, long *in_off, int out_fd, long *out_off, unsigned long len, unsigned int flags);
static inline long tosca_copy_file_range(int in, int out, unsigned long length) {
    return copy_file_range(in, 0, out, 0, length, 0);
}

/// Turns O_DIRECT on or off for an open file (fcntl F_SETFL). -1 and errno when the
/// filesystem refuses it.
static inline int tosca_set_direct_io(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    flags = on ? (flags | O_DIRECT) : (flags & ~O_DIRECT);
    return fcntl(fd, F_SETFL, flags);
}

/// fallocate(2) mode 0 of [0, length): the blocks allocated at once, the size extended.
static inline int tosca_preallocate(int fd, int64_t length) {
    return fallocate(fd, 0, 0, (off64_t)length);
}
#endif
