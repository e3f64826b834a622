/* The least any container launcher does, as a yardstick for `launch`: one clone into
 * new mount, PID, UTS, IPC, network and cgroup namespaces, chroot, exec the command,
 * wait for it. No mounts, no /proc or /dev, no pivot_root, no seccomp, no capability
 * drops, no loopback; statically linked, so not even a loader. Whatever a real
 * launcher adds to this is its own cost; this much is the kernel's and the command's.
 *
 *   floor ROOT COMMAND [ARG...]      (root: it makes namespaces without a user one)
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: floor ROOT COMMAND [ARG...]\n");
        return 125;
    }
    long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                 CLONE_NEWCGROUP | SIGCHLD;
    pid_t pid = syscall(SYS_clone, flags, 0, 0, 0, 0);
    if (pid < 0) {
        perror("floor: clone");
        return 125;
    }
    if (pid == 0) {
        if (chroot(argv[1]) != 0 || chdir("/") != 0)
            _exit(125);
        execv(argv[2], argv + 2);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return 125;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
