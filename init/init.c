/* SPDX-License-Identifier: MIT
 *
 * tinyuki's default /init: the one program the kernel runs.
 *
 * It proves the whole chain worked and shows what the machine looks like
 * from the inside, then powers the VM off so `doit boot` ends on its own:
 *   1. prints the profile's marker line (what `doit boot` waits for);
 *   2. mounts devtmpfs on /dev and proc on /proc: with an initramfs the
 *      kernel's DEVTMPFS_MOUNT does not do it, so init has to;
 *   3. prints the kernel's uptime at that moment (/proc/uptime);
 *   4. prints the first 64 bytes of the first disk (/dev/vda, then /dev/sda);
 *   5. powers off with reboot(2).
 * Every system call's result is checked and a failure is reported with its
 * errno name, so a broken kernel config shows up as a readable line.
 *
 * It builds against the kernel tree's nolibc (passed with -include, which
 * defines NOLIBC) or against a real libc such as musl. Output goes straight
 * to write(2), unbuffered, because nothing would flush a stdio buffer before
 * the power-off.
 */

#ifndef NOLIBC
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#else
#include <linux/reboot.h>
#endif

#ifndef TINYUKI_MARKER
#define TINYUKI_MARKER "tinyuki: init started"
#endif

/* nolibc in Linux 6.1 has no RB_POWER_OFF; the kernel's constant is the same value. */
#ifdef RB_POWER_OFF
#define POWER_OFF RB_POWER_OFF
#else
#define POWER_OFF LINUX_REBOOT_CMD_POWER_OFF
#endif

#define DISK_BYTES 64

static const char *const disks[] = { "/dev/vda", "/dev/sda" };

static int failures;

/* ---------------------------------------------------------------- output */

static char outbuf[512];
static unsigned int outlen;
static int holding; /* no console yet: keep the lines until ensure_console() found one */

static void flush(void)
{
	unsigned int done = 0;

	if (holding && outlen < sizeof(outbuf))
		return;

	while (done < outlen) {
		ssize_t n = write(1, outbuf + done, outlen - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the console is gone: there is nowhere left to report it */
		done += (unsigned int)n;
	}
	outlen = 0;
}

static void put_char(char c)
{
	if (outlen == sizeof(outbuf))
		flush();
	outbuf[outlen++] = c;
}

static void put_str(const char *s)
{
	while (*s)
		put_char(*s++);
}

static void put_uint(unsigned long v)
{
	char digits[24];
	int n = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		put_char(digits[--n]);
}

static void put_hex(unsigned long v, int width)
{
	static const char hex[] = "0123456789abcdef";

	while (width--)
		put_char(hex[(v >> (4 * width)) & 0xf]);
}

static void put_line(const char *s)
{
	put_str(s);
	put_char('\n');
	flush();
}

/* ---------------------------------------------------------------- errors */

struct errname {
	int num;
	const char *name;
};

static const struct errname errnames[] = {
	{ EPERM, "EPERM" },     { ENOENT, "ENOENT" },   { EINTR, "EINTR" },
	{ EIO, "EIO" },         { ENXIO, "ENXIO" },     { ENOEXEC, "ENOEXEC" },
	{ EBADF, "EBADF" },     { EAGAIN, "EAGAIN" },   { ENOMEM, "ENOMEM" },
	{ EACCES, "EACCES" },   { EFAULT, "EFAULT" },   { ENOTBLK, "ENOTBLK" },
	{ EBUSY, "EBUSY" },     { EEXIST, "EEXIST" },   { ENODEV, "ENODEV" },
	{ ENOTDIR, "ENOTDIR" }, { EISDIR, "EISDIR" },   { EINVAL, "EINVAL" },
	{ ENFILE, "ENFILE" },   { EMFILE, "EMFILE" },   { ENOTTY, "ENOTTY" },
	{ ENOSPC, "ENOSPC" },   { EROFS, "EROFS" },     { ERANGE, "ERANGE" },
	{ ENOSYS, "ENOSYS" },   { ELOOP, "ELOOP" },     { ENOMEDIUM, "ENOMEDIUM" },
	{ ENAMETOOLONG, "ENAMETOOLONG" },
};

/* Ends a line started by the caller: " failed: ENOENT (errno 2)", counted as a failure. */
static void failed(int err)
{
	unsigned int i;

	failures++;
	put_str(" failed: ");
	for (i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++) {
		if (errnames[i].num == err) {
			put_str(errnames[i].name);
			put_char(' ');
			break;
		}
	}
	put_str("(errno ");
	put_uint((unsigned long)err);
	put_line(")");
}

/* "init: open /dev/vda failed: ...": err is passed in because printing may change errno. */
static void report(const char *what, const char *arg, int err)
{
	put_str("init: ");
	put_str(what);
	put_char(' ');
	put_str(arg);
	failed(err);
}

/* ---------------------------------------------------------------- steps */

/* Mount fstype on dir, creating dir if the image lacks it; returns 0 on success. */
static int mount_fs(const char *fstype, const char *dir, unsigned long flags)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		report("mkdir", dir, errno);
		return -1;
	}
	if (mount(fstype, dir, fstype, flags, 0) < 0) {
		int err = errno;

		put_str("init: mount ");
		put_str(fstype);
		put_str(" on ");
		put_str(dir);
		failed(err);
		return -1;
	}
	put_str("init: mounted ");
	put_str(fstype);
	put_str(" on ");
	put_line(dir);
	return 0;
}

/* With no /dev/console in the image the kernel starts init without fds 0-2:
 * open the console from the freshly mounted /dev, then let the held lines out. */
static void ensure_console(void)
{
	int fd;

	if (!holding)
		return;
	fd = open("/dev/console", O_RDWR, 0);
	holding = 0;
	if (fd < 0)
		return; /* no console at all: nothing can be reported */
	if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
		report("dup2", "/dev/console", errno);
		return;
	}
	if (fd > 2 && close(fd) < 0)
		report("close", "/dev/console", errno);
	flush();
}

/* Read up to len bytes, retrying short reads; returns the count or -1 with errno set. */
static long read_full(int fd, unsigned char *buf, unsigned long len)
{
	unsigned long got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (unsigned long)n;
	}
	return (long)got;
}

static void print_uptime(int have_proc)
{
	unsigned char buf[64];
	long n, i;
	int fd;

	if (!have_proc) {
		put_line("init: kernel uptime unknown: /proc is not mounted");
		return;
	}
	fd = open("/proc/uptime", O_RDONLY, 0);
	if (fd < 0) {
		report("open", "/proc/uptime", errno);
		return;
	}
	n = read_full(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		report("read", "/proc/uptime", errno);
	if (close(fd) < 0)
		report("close", "/proc/uptime", errno);
	if (n <= 0)
		return;
	/* "12.34 56.78\n": the first field is the time since boot in seconds. */
	put_str("init: kernel uptime ");
	for (i = 0; i < n && buf[i] != ' ' && buf[i] != '\n'; i++)
		put_char((char)buf[i]);
	put_line(" s");
}

static void dump(const char *dev, const unsigned char *buf, long n)
{
	long row, i;

	put_str("init: first ");
	put_uint((unsigned long)n);
	put_str(" bytes of ");
	put_str(dev);
	put_line(":");
	for (row = 0; row < n; row += 16) {
		put_str("  ");
		put_hex((unsigned long)row, 4);
		put_str(" ");
		for (i = row; i < row + 16; i++) {
			if (i < n) {
				put_char(' ');
				put_hex(buf[i], 2);
			} else {
				put_str("   ");
			}
		}
		put_str("  |");
		for (i = row; i < row + 16 && i < n; i++)
			put_char(buf[i] >= 0x20 && buf[i] < 0x7f ? (char)buf[i] : '.');
		put_line("|");
	}
}

static void print_disk(int have_dev)
{
	unsigned char buf[DISK_BYTES];
	unsigned int i;

	if (!have_dev) {
		put_line("init: cannot look for a disk: /dev is not mounted");
		return;
	}
	for (i = 0; i < sizeof(disks) / sizeof(disks[0]); i++) {
		long n;
		int fd = open(disks[i], O_RDONLY, 0);

		if (fd < 0) {
			if (errno != ENOENT)
				report("open", disks[i], errno);
			continue;
		}
		n = read_full(fd, buf, sizeof(buf));
		if (n < 0)
			report("read", disks[i], errno);
		else
			dump(disks[i], buf, n);
		if (close(fd) < 0)
			report("close", disks[i], errno);
		return;
	}
	put_line("init: no disk attached");
}

int main(void)
{
	int have_dev, have_proc;

	holding = write(1, "", 0) < 0;
	put_line(TINYUKI_MARKER);
	have_dev = mount_fs("devtmpfs", "/dev", MS_NOSUID) == 0;
	ensure_console();
	have_proc = mount_fs("proc", "/proc", MS_NOSUID | MS_NOEXEC | MS_NODEV) == 0;
	print_uptime(have_proc);
	print_disk(have_dev);

	put_str("init: ");
	put_uint((unsigned long)failures);
	put_line(failures == 1 ? " step failed, powering off" : " steps failed, powering off");
	if (reboot(POWER_OFF) < 0)
		report("reboot", "(power off)", errno);
	/* Still here: returning makes the kernel panic, which panic=-1 turns into a reboot. */
	return 1;
}
