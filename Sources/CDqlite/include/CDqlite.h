#ifndef CDQLITE_H
#define CDQLITE_H

#include <dqlite.h>
#include <stddef.h>

/// Puts SQLite in multi-thread mode (each connection used by one thread at a
/// time), which is what dqlite expects. `sqlite3_config` is variadic, so Swift
/// cannot call it directly. Must run before SQLite initialises; returns the
/// sqlite3_config result (SQLITE_MISUSE once SQLite is already initialised,
/// which callers may ignore when the mode was set earlier).
int cdqlite_sqlite_use_multithread(void);

/// Connects a blocking SOCK_STREAM socket to the abstract unix socket `name`
/// (without the leading '@'). The socket is close-on-exec. Returns the fd, or
/// -errno on failure.
int cdqlite_connect_abstract(const char *name, size_t name_len);

#endif
