/* The least a launcher that meets issue 3's isolation checks can do, as a second
 * yardstick for `launch` (bench/floor.c is the first: namespaces, chroot, exec).
 *
 * The container's first process makes exactly the mounts the issue asks for, in plain
 * C with no checks beyond return codes: a tmpfs for the writable layer, overlayfs over
 * the image, /proc, /dev (tmpfs, six device nodes, the fd links, devpts, /dev/shm),
 * /tmp, /run, /etc/hostname, /etc/hosts and /etc/resolv.conf bind-mounted from the
 * tmpfs, /sys read-only; pivot_root with the old root detached; a hostname. Meanwhile
 * the launcher makes the network namespace (loopback up) on another CPU, as `launch`
 * does, and the container joins it. PID 1 then forks the command and reaps it, the
 * minimal init the issue asks for. Left out, because the issue files them under
 * baseline or deeper hardening rather than isolation: masked /proc and /sys paths,
 * capabilities, no_new_privs, seccomp, Landlock, closing descriptors, the image cache
 * lookup, option parsing, error messages.
 *
 *   floor-mounts ROOT COMMAND [ARG...]    (root; ROOT an absolute path to a rootfs
 *                                          with proc, sys, dev, tmp, run and etc dirs)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x1
#define FSCONFIG_SET_FD 5
#define FSCONFIG_CMD_CREATE 6
#define FSMOUNT_CLOEXEC 0x1
#define MOVE_MOUNT_F_EMPTY_PATH 0x4
#define MOVE_MOUNT_T_EMPTY_PATH 0x40
#endif

static int check(long ret, const char *what)
{
    if (ret < 0) {
        perror(what);
        _exit(125);
    }
    return (int)ret;
}

/* A detached filesystem of `type` from the new mount API; `lower`/`upper`/`work`
 * directory fds for overlayfs, -1 otherwise. */
static int new_mount(const char *type, int lower, int upper, int work)
{
    int fs = check(syscall(SYS_fsopen, type, FSOPEN_CLOEXEC), type);
    if (lower >= 0) {
        check(syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "lowerdir+", NULL, lower), "lowerdir");
        check(syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "upperdir", NULL, upper), "upperdir");
        check(syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "workdir", NULL, work), "workdir");
    }
    check(syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0), "create");
    int mnt = check(syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0), "fsmount");
    close(fs);
    return mnt;
}

static void write_file(int dir, const char *name, const char *text)
{
    int fd = check(openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), name);
    check(write(fd, text, strlen(text)), name);
    close(fd);
}

/* In the new root (cwd): mounts `scratch`'s etc/NAME over etc/NAME, made if missing. */
static void bind_etc_file(int scratch, const char *name, const char *text)
{
    char from[64], to[64];
    int etc = check(openat(scratch, "etc", O_PATH | O_DIRECTORY | O_CLOEXEC), "etc");
    write_file(etc, name, text);
    snprintf(from, sizeof from, "/proc/self/fd/%d/%s", etc, name);
    snprintf(to, sizeof to, "etc/%s", name);
    int point = open(to, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (point >= 0)
        close(point);
    check(mount(from, to, NULL, MS_BIND, NULL), to);
    close(etc);
}

static void container(const char *root, int go, int report, pid_t launcher, char **argv)
{
    char buf;
    check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "private");
    int scratch = new_mount("tmpfs", -1, -1, -1);
    check(mkdirat(scratch, "upper", 0755), "upper");
    check(mkdirat(scratch, "work", 0755), "work");
    check(mkdirat(scratch, "etc", 0755), "etc");
    int lower = check(open(root, O_PATH | O_DIRECTORY | O_CLOEXEC), root);
    int upper = check(openat(scratch, "upper", O_PATH | O_DIRECTORY | O_CLOEXEC), "upper");
    int work = check(openat(scratch, "work", O_PATH | O_DIRECTORY | O_CLOEXEC), "work");
    int overlay = new_mount("overlay", lower, upper, work);
    check(syscall(SYS_move_mount, overlay, "", lower, "",
                  MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), "move_mount");
    check(chdir(root), "chdir root"); /* now the overlay's root */

    unsigned long hidden = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    check(mount("proc", "proc", "proc", hidden, NULL), "proc");
    check(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k"), "dev");
    static const struct { const char *name; unsigned major, minor; } nodes[] = {
        {"dev/null", 1, 3}, {"dev/zero", 1, 5}, {"dev/full", 1, 7},
        {"dev/random", 1, 8}, {"dev/urandom", 1, 9}, {"dev/tty", 5, 0},
    };
    for (unsigned i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
        check(mknod(nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)),
              nodes[i].name);
    check(symlink("/proc/self/fd", "dev/fd"), "dev/fd");
    check(symlink("/proc/self/fd/0", "dev/stdin"), "dev/stdin");
    check(symlink("/proc/self/fd/1", "dev/stdout"), "dev/stdout");
    check(symlink("/proc/self/fd/2", "dev/stderr"), "dev/stderr");
    check(symlink("pts/ptmx", "dev/ptmx"), "dev/ptmx");
    check(mkdir("dev/pts", 0755), "dev/pts");
    check(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620"), "devpts");
    check(mkdir("dev/shm", 01777), "dev/shm");
    check(mount("tmpfs", "dev/shm", "tmpfs", hidden, "mode=1777"), "shm");
    check(mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"), "tmp");
    check(mount("tmpfs", "run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"), "run");
    bind_etc_file(scratch, "hostname", "floor\n");
    bind_etc_file(scratch, "hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tfloor\n");
    bind_etc_file(scratch, "resolv.conf", "\n");

    /* The launcher's network namespace, then sysfs, which shows the mounter's. */
    check(read(go, &buf, 1), "wait for the network");
    char netns[64];
    snprintf(netns, sizeof netns, "/proc/%d/ns/net", launcher);
    int net = check(open(netns, O_RDONLY | O_CLOEXEC), netns);
    check(setns(net, CLONE_NEWNET), "setns");
    close(net);
    check(mount("sysfs", "sys", "sysfs", MS_RDONLY | hidden, NULL), "sys");

    check(syscall(SYS_pivot_root, ".", "."), "pivot_root");
    check(umount2(".", MNT_DETACH), "detach the old root");
    check(chdir("/"), "chdir /");
    check(sethostname("floor", 5), "sethostname");

    /* PID 1: the command in a process of its own, reaped; its status is ours. */
    pid_t command = check(fork(), "fork");
    if (command == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(-1, &status, 0) != command)
        ;
    /* Told to the launcher before the namespaces are torn down, as `launch` does. */
    unsigned char code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    check(write(report, &code, 1), "report");
    _exit(code);
}

/* The container's network namespace, loopback up, made on a CPU other than the one the
 * container starts on (so it overlaps with the mounts, as `launch` arranges). */
static void make_network(void)
{
    cpu_set_t all, other;
    check(sched_getaffinity(0, sizeof all, &all), "sched_getaffinity");
    CPU_ZERO(&other);
    int here = sched_getcpu();
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &all) && cpu != here) {
            CPU_SET(cpu, &other);
            break;
        }
    if (CPU_COUNT(&other) > 0)
        sched_setaffinity(0, sizeof other, &other);
    check(unshare(CLONE_NEWNET), "unshare net");
    int sock = check(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket");
    struct ifreq lo = {0};
    strcpy(lo.ifr_name, "lo");
    lo.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
    check(ioctl(sock, SIOCSIFFLAGS, &lo), "loopback up");
    close(sock);
    sched_setaffinity(0, sizeof all, &all);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argv[1][0] != '/') {
        fprintf(stderr, "usage: floor-mounts /ROOT COMMAND [ARG...]\n");
        return 125;
    }
    int go[2], report[2];
    check(pipe2(go, O_CLOEXEC), "pipe");
    check(pipe2(report, O_CLOEXEC), "pipe");
    pid_t launcher = getpid();
    long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP |
                 SIGCHLD;
    pid_t pid = check(syscall(SYS_clone, flags, 0, 0, 0, 0), "clone");
    if (pid == 0) {
        close(go[1]);
        close(report[0]);
        container(argv[1], go[0], report[1], launcher, argv + 2);
    }
    close(go[0]);
    close(report[1]);
    make_network();
    check(write(go[1], "g", 1), "go");
    unsigned char code;
    if (read(report[0], &code, 1) == 1)
        return code;
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return 125;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
