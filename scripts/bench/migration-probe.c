/*
 * Downtime probe for scripts/bench/migration: runs inside a container and measures, from the
 * inside, how long the container did not run.
 *
 *   migration-probe [--mem MB] [--daemon] [--dir DIR] [--beat FILE]
 *
 * Loops: CLOCK_REALTIME, the gap since the previous iteration, usleep(1000). Whenever the
 * largest gap grows it writes "MAX_GAP_MS AT_MS" (AT_MS: realtime of the iteration that ended
 * the gap, ms since the epoch) to DIR/probe (default /run), through a rename so a reader never
 * sees half a line. SIGUSR1 resets the largest gap to 0 (written at once), so each move is
 * measured alone. Its pid is in DIR/probe.pid.
 *
 * CLOCK_REALTIME, not CLOCK_MONOTONIC: a restored container may get a time namespace whose
 * monotonic offsets differ; the realtime clock is the host's on every member.
 *
 * A stop and start (a stateless move) ends the process: every iteration also writes its time
 * to FILE (default /var/lib/probe/beat, on the container's root filesystem, which moves with
 * it), and at start the gap since the last beat found there is the first gap measured.
 *
 * --mem MB: allocates MB MiB, touches every page, then dirties a rolling window of pages on
 * each iteration (one byte per page), sized so all of it is rewritten about every 2 s.
 * --daemon: forks, the child calls setsid and moves stdio to /dev/null (a process with the
 * caller's terminal cannot be checkpointed); the parent returns once the pid file is written.
 *
 * Built static by scripts/bench/migration (gcc -static -O2): the busybox image has no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t reset_requested = 0;

static void on_usr1(int sig) {
    (void)sig;
    reset_requested = 1;
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what) {
    fprintf(stderr, "migration-probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Writes `text` to `path` through `path`.tmp and a rename. Failures are ignored after start:
 * the probe keeps measuring, and the bench reports a missing file. */
static int write_file(const char *path, const char *text) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    close(fd);
    if (w != (ssize_t)n) return -1;
    return rename(tmp, path);
}

static void write_max(const char *path, int64_t gap_us, int64_t at_us) {
    char line[96];
    snprintf(line, sizeof line, "%lld.%03lld %lld\n", (long long)(gap_us / 1000), (long long)(gap_us % 1000),
             (long long)(at_us / 1000));
    write_file(path, line);
}

int main(int argc, char **argv) {
    long mem_mb = 0;
    int daemonize = 0;
    const char *dir = "/run";
    const char *beat_path = "/var/lib/probe/beat";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mem") == 0 && i + 1 < argc) {
            char *end;
            mem_mb = strtol(argv[++i], &end, 10);
            if (*end != '\0' || mem_mb < 0 || mem_mb > 65536) {
                fprintf(stderr, "migration-probe: --mem takes MiB between 0 and 65536, not %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--daemon") == 0) {
            daemonize = 1;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--beat") == 0 && i + 1 < argc) {
            beat_path = argv[++i];
        } else {
            fprintf(stderr, "usage: migration-probe [--mem MB] [--daemon] [--dir DIR] [--beat FILE]\n");
            return 2;
        }
    }
    if (strlen(dir) > 4000) {
        fprintf(stderr, "migration-probe: --dir is too long\n");
        return 2;
    }
    char max_path[4100], pid_path[4100];
    snprintf(max_path, sizeof max_path, "%s/probe", dir);
    snprintf(pid_path, sizeof pid_path, "%s/probe.pid", dir);

    if (daemonize) {
        int ready[2];
        if (pipe(ready) != 0) die("pipe");
        pid_t child = fork();
        if (child < 0) die("fork");
        if (child > 0) {
            /* Return once the child wrote its pid file (or died), so the caller can signal it. */
            char c;
            close(ready[1]);
            ssize_t r = read(ready[0], &c, 1);
            return r == 1 ? 0 : 1;
        }
        close(ready[0]);
        if (setsid() < 0) die("setsid");
        int null = open("/dev/null", O_RDWR);
        if (null < 0) die("open /dev/null");
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
        if (chdir("/") != 0) die("chdir /");
        char pid[32];
        snprintf(pid, sizeof pid, "%d\n", (int)getpid());
        if (write_file(pid_path, pid) != 0) return 1;
        if (write(ready[1], "x", 1) != 1) return 1;
        close(ready[1]);
    } else {
        char pid[32];
        snprintf(pid, sizeof pid, "%d\n", (int)getpid());
        if (write_file(pid_path, pid) != 0) die(pid_path);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) die("sigaction");

    /* The last beat of a previous life of this container (stop + copy + start): the first gap,
     * taken before the memory is touched, which is the probe's own start-up, not downtime. */
    int64_t max_gap = 0, max_at = 0;
    int64_t prev = now_us();
    int beat = open(beat_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (beat >= 0) {
        int64_t last = 0;
        if (pread(beat, &last, sizeof last, 0) == (ssize_t)sizeof last && last > 0 && last < prev) {
            max_gap = prev - last;
            max_at = prev;
        }
    }
    write_max(max_path, max_gap, max_at);

    unsigned char *mem = NULL;
    size_t pages = 0, window = 0, cursor = 0;
    long page = sysconf(_SC_PAGESIZE);
    if (mem_mb > 0) {
        size_t bytes = (size_t)mem_mb << 20;
        mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) die("mmap");
        pages = bytes / (size_t)page;
        for (size_t p = 0; p < pages; p++) mem[p * (size_t)page] = (unsigned char)p;
        /* ~2000 iterations (a little over 2 s at 1 ms each) per full pass. */
        window = pages / 2000 + 1;
    }
    prev = now_us();

    for (;;) {
        int64_t t = now_us();
        int64_t gap = t - prev;
        prev = t;
        if (reset_requested) {
            reset_requested = 0;
            max_gap = 0;
            max_at = t;
            write_max(max_path, 0, t);
        } else if (gap > max_gap) {
            max_gap = gap;
            max_at = t;
            write_max(max_path, max_gap, max_at);
        }
        if (beat >= 0) (void)pwrite(beat, &t, sizeof t, 0);
        if (mem) {
            for (size_t k = 0; k < window; k++) {
                mem[cursor * (size_t)page + (size_t)(t & 0x3f)]++;
                if (++cursor == pages) cursor = 0;
            }
        }
        usleep(1000);
    }
}
