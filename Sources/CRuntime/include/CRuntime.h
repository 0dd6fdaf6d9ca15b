// Thin wrappers for the Linux calls Swift's Glibc module cannot make: raw syscalls without
// glibc wrappers (clone3, the new mount API, pidfds, openat2), variadic functions
// (prctl, ioctl, seccomp_rule_add) and macros (SCMP_ACT_ERRNO, CLONE_*). Policy stays in Swift.
#ifndef CRUNTIME_H
#define CRUNTIME_H

#include <stdint.h>
#include <sys/types.h>

// Namespace flags (need _GNU_SOURCE in Swift's view of sched.h).
extern const int cr_CLONE_NEWUSER, cr_CLONE_NEWPID, cr_CLONE_NEWNS, cr_CLONE_NEWUTS,
    cr_CLONE_NEWIPC, cr_CLONE_NEWNET, cr_CLONE_NEWCGROUP;

/// clone3 with the given namespace flags and SIGCHLD as exit signal; fork-like return
/// (0 in the child, pid in the parent, -1 with errno).
pid_t cr_clone3(uint64_t flags);
/// clone3 with CLONE_INTO_CGROUP: the child starts in the cgroup2 directory `cgroup_fd`
/// (no cgroup.procs write, so no wait for an RCU grace period).
pid_t cr_clone3_into(uint64_t flags, int cgroup_fd);
/// fork() without glibc's atfork handlers (the helper is single-threaded).
pid_t cr_fork(void);

extern const int cr_O_PATH;
/// Cpus this process may run on (sched_getaffinity), or -1.
int cr_affinity_cpu_count(void);

int cr_unshare(int flags);
int cr_setns(int fd, int nstype);
int cr_pivot_root(const char *new_root, const char *put_old);
int cr_pipe2(int fds[2], int flags);
int cr_close_range_cloexec(unsigned int first);
int cr_sethostname(const char *name);
int cr_setgroups_empty(void);
int cr_setresuid(uid_t id);
int cr_setresgid(gid_t id);
int cr_set_child_subreaper(void);
int cr_set_pdeathsig(int sig);
int cr_set_tty_controlling(int fd);
int cr_loopback_up(void);

/// Blocks until some child has exited and stores its pid, without reaping it
/// (waitid P_ALL, WEXITED|WNOWAIT). Returns 0, or -1 with errno (ECHILD: no children).
int cr_peek_exited_child(pid_t *pid);

/// A new pseudo-terminal pair from the host's /dev/ptmx (both ends close-on-exec), sized
/// rows x cols when both are > 0. Returns 0, or -1 with errno.
int cr_open_pty(int *master, int *slave, unsigned short rows, unsigned short cols);
/// A new pseudo-terminal pair from the devpts instance whose ptmx is `ptmx` (a container's
/// own /dev/pts/ptmx), unlocked, the slave opened through TIOCGPTPEER (no path lookup); both
/// close-on-exec. Returns 0, or -1 with errno.
int cr_open_devpts_pair(const char *ptmx, int *master, int *slave);
/// AF_UNIX SOCK_SEQPACKET pair, close-on-exec.
int cr_socketpair_seqpacket(int fds[2]);
/// Passes `fd` over a unix socket (SCM_RIGHTS, one byte of payload). 0 or -1 with errno.
int cr_send_fd(int sock, int fd);
/// Receives one fd sent by cr_send_fd (close-on-exec). The fd, or -1 with errno.
int cr_recv_fd(int sock);
/// A listening, non-blocking SOCK_SEQPACKET unix socket at `path` (replacing a stale one),
/// mode 0600. Paths longer than sun_path are bound through their directory's fd.
int cr_listen_unix_seqpacket(const char *path);
/// accept4 with SOCK_CLOEXEC (glibc hides accept4 from Swift without _GNU_SOURCE).
int cr_accept_cloexec(int listener);
/// A connected SOCK_SEQPACKET socket to `path`, or -1 with errno.
int cr_connect_unix_seqpacket(const char *path);
/// TIOCSWINSZ on a terminal fd.
int cr_set_window_size(int fd, unsigned short rows, unsigned short cols);

int cr_pidfd_open(pid_t pid);
int cr_pidfd_send_signal(int pidfd, int sig);

/// Opens `path` below the directory `dirfd` with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS:
/// symlinks and ".." are resolved as if dirfd were "/" (no escape to the host).
int cr_openat2_in_root(int dirfd, const char *path, int flags, unsigned int mode);

/// Clones the tree at `path` as a detached mount, idmapped with the user namespace `userns_fd`
/// (or not idmapped when userns_fd < 0), read-only, nosuid, nodev. Returns the mount fd.
int cr_detached_layer(const char *path, int userns_fd);
/// Mounts an overlay at `target` (in the caller's mount namespace) from a lower path
/// (may be "/proc/self/fd/N"), upper and work directories. Returns 0 or -1 with errno;
/// `stage` receives the step that failed.
int cr_mount_overlay(const char *lower, const char *upper, const char *work, const char *target,
                     const char **stage);

/// Loads a seccomp filter allowing everything except the named syscalls, which fail with
/// `errnum`. Resolves names for the native and 32-bit compat ABIs; unknown names are skipped.
/// Leaves no_new_privs off (needs CAP_SYS_ADMIN in the current user namespace).
int cr_seccomp_deny(const char *const *names, int count, int errnum);

/// Drops the named capabilities (libcap names, e.g. "cap_sys_module") from the bounding set.
/// Returns 0, or -1 with errno; unknown names return -2.
int cr_drop_bounding(const char *const *names, int count);

/// posix_spawn `path` with exactly the fds given: child fd dst[i] = parent fd src[i], every
/// other fd closed (addclosefrom_np; unlisted 0-2 get /dev/null), default signal dispositions, empty mask, own session
/// when `new_session`. Returns 0 and sets *pid, or an errno value.
int cr_spawn(const char *path, char *const argv[], char *const envp[], const int *src,
             const int *dst, int count, int new_session, pid_t *pid);

/// Extended attributes, never through a symlink. With `name` NULL they are those of `fd`
/// itself (f*xattr). Otherwise `name` is one entry (a single component, no '/', else EINVAL)
/// of the directory `fd`, reached as /proc/self/fd/<fd>/<name> with the l*xattr calls: the
/// directory is the one `fd` holds (no path walk) and a symlink at `name` is itself read or
/// changed, never its target. Return values and errno as listxattr/getxattr/setxattr/removexattr.
ssize_t cr_xattr_list(int fd, const char *name, char *list, size_t size);
ssize_t cr_xattr_get(int fd, const char *name, const char *attr, void *value, size_t size);
int cr_xattr_set(int fd, const char *name, const char *attr, const void *value, size_t size);
int cr_xattr_remove(int fd, const char *name, const char *attr);

#endif
