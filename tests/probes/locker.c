/* Holds a lock on a file a container is given, as long as it lives: `locker flock PATH` takes an
 * exclusive flock(2); `locker lease PATH` a read lease (fcntl F_SETLEASE, which the file's owner
 * may take without CAP_LEASE), taken again each time the kernel breaks it. Prints "locked" once
 * held. A host-side writer of that file must never wait on either. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    if (strcmp(argv[1], "flock") == 0) {
        if (flock(fd, LOCK_EX) != 0) { perror("flock"); return 1; }
        printf("locked\n");
        fflush(stdout);
        for (;;) pause();
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGIO);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (int first = 1;; first = 0) {
        while (fcntl(fd, F_SETLEASE, F_RDLCK) != 0) usleep(100000);  /* EAGAIN while a writer has it open */
        if (first) { printf("locked\n"); fflush(stdout); }
        int sig;
        sigwait(&set, &sig);  /* a break: never let go; the kernel ends it after lease-break-time */
        while (fcntl(fd, F_GETLEASE) != F_UNLCK) usleep(100000);
    }
}
