/* Read-only file mappings that survive their file being cut short.
 *
 * Reading a page of a file mapping that lies beyond the file's end raises SIGBUS,
 * which kills the process: a model file truncated while it is served would take
 * every conversation down with it. A watched mapping is instead patched: the
 * SIGBUS handler maps zero pages over the part of the mapping past the file's
 * current end (or over the faulting page when the size cannot be read), marks the
 * mapping damaged and lets the read go on, returning zeros. Whoever reads the
 * mapping asks mapguard_damaged after its work and throws that work away.
 *
 * A SIGBUS anywhere else keeps its old meaning: the handler that was installed
 * before (the default one: the process dies) gets it. */
#ifndef ELLIOTT_BASE_MAPGUARD_H
#define ELLIOTT_BASE_MAPGUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

enum { MAPGUARD_MAX = 256 }; /* mappings watched at once */

/* Watches the len bytes mapped at addr (page-aligned, PROT_READ) from offset 0 of
 * the open file fd, which the caller keeps open until mapguard_unwatch. Returns
 * the watch's id (>= 0), or -1 when MAPGUARD_MAX are already watched or the
 * handler cannot be installed. */
int mapguard_watch(const void *addr, size_t len, int fd, el_err *err);
/* Stops watching; call before unmapping. -1 is fine. */
void mapguard_unwatch(int id);
/* A read faulted past the file's end: the mapping now holds zeros there. */
bool mapguard_damaged(int id);

#endif
