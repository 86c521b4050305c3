// SQLCipher 4.6 (ARCHITECTURE D1): the codec API (sqlite3_key, PRAGMA key/rekey) is only
// declared when SQLITE_HAS_CODEC is defined before the header is included.
#ifndef TOSCA_CSQLCIPHER_SHIM_H
#define TOSCA_CSQLCIPHER_SHIM_H
#define SQLITE_HAS_CODEC 1
#include <sqlcipher/sqlite3.h>
#endif
