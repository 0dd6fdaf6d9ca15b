#define _GNU_SOURCE
#include "CRuntime.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

const int cr_CLONE_NEWUSER = CLONE_NEWUSER, cr_CLONE_NEWPID = CLONE_NEWPID, cr_CLONE_NEWNS = CLONE_NEWNS,
          cr_CLONE_NEWUTS = CLONE_NEWUTS, cr_CLONE_NEWIPC = CLONE_NEWIPC, cr_CLONE_NEWNET = CLONE_NEWNET,
          cr_CLONE_NEWCGROUP = CLONE_NEWCGROUP;

const int cr_O_PATH = O_PATH;

int cr_affinity_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

pid_t cr_clone3(uint64_t flags) {
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

pid_t cr_clone3_into(uint64_t flags, int cgroup_fd) {
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags | CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)cgroup_fd;
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

pid_t cr_fork(void) { return cr_clone3(0); }

int cr_unshare(int flags) { return unshare(flags); }
int cr_setns(int fd, int nstype) { return setns(fd, nstype); }
int cr_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}
int cr_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int cr_close_range_cloexec(unsigned int first) {
    return (int)syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC);
}
int cr_sethostname(const char *name) { return sethostname(name, strlen(name)); }
int cr_setgroups_empty(void) { return setgroups(0, NULL); }
int cr_setresuid(uid_t id) { return setresuid(id, id, id); }
int cr_setresgid(gid_t id) { return setresgid(id, id, id); }
int cr_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
int cr_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int cr_set_tty_controlling(int fd) { return ioctl(fd, TIOCSCTTY, 0); }

int cr_loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return rc;
}

int cr_set_window_size(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof(ws));
    ws.ws_row = rows;
    ws.ws_col = cols;
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int cr_open_pty(int *master, int *slave, unsigned short rows, unsigned short cols) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    char name[64];
    if (grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, name, sizeof(name)) != 0) goto fail;
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) goto fail;
    if (rows > 0 && cols > 0) cr_set_window_size(m, rows, cols);
    *master = m;
    *slave = s;
    return 0;
fail:;
    int saved = errno;
    close(m);
    errno = saved;
    return -1;
}

int cr_open_devpts_pair(const char *ptmx, int *master, int *slave) {
    int m = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) != 0) goto fail;
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) goto fail;
    *master = m;
    *slave = s;
    return 0;
fail:;
    int saved = errno;
    close(m);
    errno = saved;
    return -1;
}

int cr_socketpair_seqpacket(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

int cr_send_fd(int sock, int fd) {
    char byte = 'f';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

int cr_recv_fd(int sock) {
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n != 1) { if (n == 0) errno = EPIPE; return -1; }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
        errno = EPROTO;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

/// sun_path holds 107 bytes; a longer path is reached through its directory's fd.
static int unix_address(const char *path, struct sockaddr_un *addr, int *dirfd) {
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    *dirfd = -1;
    if (strlen(path) < sizeof(addr->sun_path)) {
        strcpy(addr->sun_path, path);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    if (!slash || strlen(slash + 1) + 32 >= sizeof(addr->sun_path)) { errno = ENAMETOOLONG; return -1; }
    char dir[4096];
    size_t len = (size_t)(slash - path);
    if (len == 0 || len >= sizeof(dir)) { errno = ENAMETOOLONG; return -1; }
    memcpy(dir, path, len);
    dir[len] = 0;
    *dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0) return -1;
    snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", *dirfd, slash + 1);
    return 0;
}

int cr_listen_unix_seqpacket(const char *path) {
    struct sockaddr_un addr;
    int dirfd;
    if (unix_address(path, &addr, &dirfd) != 0) return -1;
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) goto fail;
    unlink(addr.sun_path);
    // Root only: whoever reaches the console can type into the container as its init's terminal.
    mode_t old = umask(0077);
    int rc = bind(s, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc != 0 || listen(s, 4) != 0) goto fail;
    if (dirfd >= 0) close(dirfd);
    return s;
fail:;
    int saved = errno;
    if (s >= 0) close(s);
    if (dirfd >= 0) close(dirfd);
    errno = saved;
    return -1;
}

int cr_accept_cloexec(int listener) { return accept4(listener, NULL, NULL, SOCK_CLOEXEC); }

int cr_connect_unix_seqpacket(const char *path) {
    struct sockaddr_un addr;
    int dirfd;
    if (unix_address(path, &addr, &dirfd) != 0) return -1;
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s >= 0 && connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int saved = errno;
        close(s);
        s = -1;
        errno = saved;
    }
    if (dirfd >= 0) { int saved = errno; close(dirfd); errno = saved; }
    return s;
}

int cr_peek_exited_child(pid_t *pid) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) != 0) return -1;
    *pid = info.si_pid;
    return 0;
}

int cr_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
int cr_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int cr_openat2_in_root(int dirfd, const char *path, int flags, unsigned int mode) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)flags | O_CLOEXEC;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int cr_detached_layer(const char *path, int userns_fd) {
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0) return -1;
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (userns_fd >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
    }
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int cr_mount_overlay(const char *lower, const char *upper, const char *work, const char *target,
                     const char **stage) {
    int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0) { *stage = "fsopen(overlay)"; return -1; }
    int mnt = -1, saved;
#define CFG(key, val, name)                                                                  \
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, key, val, 0) < 0) {                   \
        *stage = name; goto fail;                                                            \
    }
    CFG("source", "lxd-swift", "fsconfig(source)");
    CFG("lowerdir+", lower, "fsconfig(lowerdir+)");
    CFG("upperdir", upper, "fsconfig(upperdir)");
    CFG("workdir", work, "fsconfig(workdir)");
#undef CFG
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        *stage = "fsconfig(create)"; goto fail;
    }
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV);
    if (mnt < 0) { *stage = "fsmount"; goto fail; }
    if (syscall(SYS_move_mount, mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        *stage = "move_mount"; goto fail;
    }
    close(mnt);
    close(fs);
    return 0;
fail:
    saved = errno;
    if (mnt >= 0) close(mnt);
    close(fs);
    errno = saved;
    return -1;
}

int cr_seccomp_deny(const char *const *names, int count, int errnum) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) { errno = ENOMEM; return -1; }
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    // Compat ABIs: a 32-bit binary must not reach the same calls by their other numbers.
    if (rc == 0 && seccomp_arch_native() == SCMP_ARCH_X86_64) {
        rc = seccomp_arch_add(ctx, SCMP_ARCH_X86);
        if (rc == 0) rc = seccomp_arch_add(ctx, SCMP_ARCH_X32);
        if (rc == -EEXIST) rc = 0;
    }
    for (int i = 0; rc == 0 && i < count; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR) continue;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)errnum), nr, 0);
        // A call missing on one ABI is fine: libseccomp skips or rejects it per arch.
        if (rc == -EDOM || rc == -EINVAL) rc = 0;
    }
    if (rc == 0) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc < 0) { errno = -rc; return -1; }
    return 0;
}

int cr_drop_bounding(const char *const *names, int count) {
    for (int i = 0; i < count; i++) {
        cap_value_t cap;
        if (cap_from_name(names[i], &cap) != 0) return -2;
        if (!CAP_IS_SUPPORTED(cap)) continue;
        if (cap_drop_bound(cap) != 0) return -1;
    }
    return 0;
}

int cr_spawn(const char *path, char *const argv[], char *const envp[], const int *src,
             const int *dst, int count, int new_session, pid_t *pid) {
    // Park the sources above every target first, so dup2 into a target can never clobber a
    // source that another mapping still needs.
    int maxdst = 2;
    for (int i = 0; i < count; i++) if (dst[i] > maxdst) maxdst = dst[i];
    int *parked = calloc((size_t)(count > 0 ? count : 1), sizeof(int));
    if (!parked) return ENOMEM;
    int rc = 0, n = 0;
    for (; n < count; n++) {
        parked[n] = fcntl(src[n], F_DUPFD_CLOEXEC, maxdst + 1);
        if (parked[n] < 0) { rc = errno; break; }
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_ok = 0, attr_ok = 0;
    if (rc == 0) { rc = posix_spawn_file_actions_init(&fa); fa_ok = rc == 0; }
    for (int i = 0; rc == 0 && i < count; i++)
        rc = posix_spawn_file_actions_adddup2(&fa, parked[i], dst[i]);
    // Unlisted standard fds get /dev/null, never a closed slot a later open() would fill.
    for (int std = 0; rc == 0 && std < 3; std++) {
        int listed = 0;
        for (int i = 0; i < count; i++) if (dst[i] == std) listed = 1;
        if (!listed) rc = posix_spawn_file_actions_addopen(&fa, std, "/dev/null", O_RDWR, 0);
    }
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&fa, maxdst + 1);
    if (rc == 0) { rc = posix_spawnattr_init(&attr); attr_ok = rc == 0; }
    if (rc == 0) {
        sigset_t all, none;
        sigfillset(&all);
        sigemptyset(&none);
        short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
        if (new_session) flags |= POSIX_SPAWN_SETSID;
        rc = posix_spawnattr_setflags(&attr, flags);
        if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
        if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
    }
    if (rc == 0) rc = posix_spawn(pid, path, &fa, &attr, argv, envp);
    if (fa_ok) posix_spawn_file_actions_destroy(&fa);
    if (attr_ok) posix_spawnattr_destroy(&attr);
    for (int i = 0; i < n; i++) close(parked[i]);
    free(parked);
    return rc;
}

// The entry `name` of the directory `fd` as a path that names exactly it: the magic link
// /proc/self/fd/<fd> stands for the directory itself, whatever its path is now.
static int xattr_entry_path(char *buf, size_t size, int fd, const char *name) {
    if (strchr(name, '/') != NULL || name[0] == 0) { errno = EINVAL; return -1; }
    int n = snprintf(buf, size, "/proc/self/fd/%d/%s", fd, name);
    if (n < 0 || (size_t)n >= size) { errno = ENAMETOOLONG; return -1; }
    return 0;
}

ssize_t cr_xattr_list(int fd, const char *name, char *list, size_t size) {
    if (name == NULL) return flistxattr(fd, list, size);
    char path[4352];
    if (xattr_entry_path(path, sizeof(path), fd, name) != 0) return -1;
    return llistxattr(path, list, size);
}

ssize_t cr_xattr_get(int fd, const char *name, const char *attr, void *value, size_t size) {
    if (name == NULL) return fgetxattr(fd, attr, value, size);
    char path[4352];
    if (xattr_entry_path(path, sizeof(path), fd, name) != 0) return -1;
    return lgetxattr(path, attr, value, size);
}

int cr_xattr_set(int fd, const char *name, const char *attr, const void *value, size_t size) {
    if (name == NULL) return fsetxattr(fd, attr, value, size, 0);
    char path[4352];
    if (xattr_entry_path(path, sizeof(path), fd, name) != 0) return -1;
    return lsetxattr(path, attr, value, size, 0);
}

int cr_xattr_remove(int fd, const char *name, const char *attr) {
    if (name == NULL) return fremovexattr(fd, attr);
    char path[4352];
    if (xattr_entry_path(path, sizeof(path), fd, name) != 0) return -1;
    return lremovexattr(path, attr);
}
