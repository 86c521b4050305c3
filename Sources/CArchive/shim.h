#ifndef TOSCA_CARCHIVE_SHIM_H
#define TOSCA_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>
#endif
