#include "CDqlite.h"

#include <errno.h>
#include <sqlite3.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int cdqlite_sqlite_use_multithread(void)
{
	return sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
}

int cdqlite_connect_abstract(const char *name, size_t name_len)
{
	struct sockaddr_un addr;
	int fd;
	int saved;

	/* Abstract names start with a NUL byte and are not NUL-terminated. */
	if (name_len == 0 || name_len > sizeof(addr.sun_path) - 1) {
		return -ENAMETOOLONG;
	}
	memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path + 1, name, name_len);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	if (connect(fd, (struct sockaddr *)&addr,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len)) != 0) {
		saved = errno;
		close(fd);
		return -saved;
	}
	return fd;
}
