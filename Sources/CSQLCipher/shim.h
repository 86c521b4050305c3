// SQLCipher 4.6 (ARCHITECTURE D1): the codec API (sqlite3_key, PRAGMA key/rekey) is only
// declared when SQLITE_HAS_CODEC is defined before the header is included.
#ifndef TOSCA_CSQLCIPHER_SHIM_H
#define TOSCA_CSQLCIPHER_SHIM_H
#define SQLITE_HAS_CODEC 1
#include <sqlcipher/sqlite3.h>
#include <string.h>

// The raw page copy reads the live database through the connection's own open files.
// Opening the database or its -shm with a descriptor of our own, then closing it, would
// drop every POSIX lock this process holds on that file: the connection's read lock in the
// WAL index among them, and with it the pin on its snapshot.

/// The connection's main database file, or NULL.
static inline sqlite3_file *tosca_main_file(sqlite3 *db) {
    sqlite3_file *f = 0;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK) return 0;
    return f;
}

/// xRead on that file (SQLITE_IOERR_SHORT_READ past its end, the rest zero-filled).
static inline int tosca_file_read(sqlite3_file *f, void *buf, int amount, sqlite3_int64 offset) {
    return f->pMethods->xRead(f, buf, amount, offset);
}

static inline int tosca_file_size(sqlite3_file *f, sqlite3_int64 *size) {
    return f->pMethods->xFileSize(f, size);
}

/// Copies the first `n` bytes of the WAL index (region 0, as the connection maps it) to
/// `out`, between memory barriers. -1 when the connection has no WAL index mapped.
static inline int tosca_shm_read(sqlite3_file *f, void *out, int n) {
    if (!f->pMethods || f->pMethods->iVersion < 2 || !f->pMethods->xShmMap) return -1;
    void volatile *p = 0;
    if (f->pMethods->xShmMap(f, 0, 32768, 0, &p) != SQLITE_OK || !p) return -1;
    f->pMethods->xShmBarrier(f);
    memcpy(out, (const void *)p, (size_t)n);
    f->pMethods->xShmBarrier(f);
    return 0;
}
#endif
