// Pseudo-terminals and pipes for exec sessions: these need _GNU_SOURCE/_XOPEN_SOURCE, which
// Swift's Glibc module does not define, and ioctl is variadic.
#ifndef CTERMINAL_H
#define CTERMINAL_H

/// Opens a pty pair, both ends close-on-exec; the slave is not made a controlling terminal
/// here (the exec helper does that inside the container). Returns 0 or -1 with errno.
int ct_open_pty(int *master, int *slave, unsigned short cols, unsigned short rows);
/// Sets a terminal's window size. Returns 0 or -1 with errno.
int ct_set_winsize(int fd, unsigned short cols, unsigned short rows);
/// pipe2(O_CLOEXEC). Returns 0 or -1 with errno.
int ct_pipe_cloexec(int fds[2]);

#endif
