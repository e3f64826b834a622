/* Stands in for the dynamic loader of an image, so that running the launcher's own
 * binary inside the container (CVE-2019-5736: the command /proc/self/exe) hands
 * control to this code with /proc/self/exe being the launcher. No C library: it runs
 * before any would be set up. Exits 0 when the binary sits on a read-only mount and
 * cannot be opened for writing, 1 otherwise. */
#include <sys/syscall.h>

static long sys(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static void say(const char *s) {
    long n = 0;
    while (s[n]) n++;
    sys(SYS_write, 1, (long)s, n);
}

void _start(void) {
    /* O_PATH | O_CLOEXEC */
    long fd = sys(SYS_open, (long)"/proc/self/exe", 010000000 | 02000000, 0);
    if (fd < 0) {
        say("selfexe: cannot open /proc/self/exe\n");
        sys(SYS_exit_group, 0, 0, 0);
    }
    char path[32] = "/proc/self/fd/";
    int i = 14;
    if (fd >= 10) path[i++] = '0' + fd / 10;
    path[i++] = '0' + fd % 10;
    path[i] = 0;
    /* struct statfs: f_flags is the 11th 8-byte field; ST_RDONLY is bit 0 */
    long st[16] = {0};
    int read_only = sys(SYS_fstatfs, fd, (long)st, 0) == 0 && (st[10] & 1);
    say(read_only ? "selfexe: the launcher binary is on a read-only mount\n"
                  : "selfexe: the launcher binary is on a writable mount: ALLOWED\n");
    long w = sys(SYS_open, (long)path, 01 /* O_WRONLY */, 0);
    if (w >= 0) {
        say("selfexe: the launcher binary is open for writing: ALLOWED\n");
        sys(SYS_exit_group, 1, 0, 0);
    }
    say("selfexe: open for writing: blocked\n");
    sys(SYS_exit_group, read_only ? 0 : 1, 0, 0);
}
