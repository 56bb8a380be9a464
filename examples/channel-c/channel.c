/* SPDX-License-Identifier: MIT
 *
 * channel: a program that talks to the host without a network stack, over a
 * virtio-serial port (examples/channel-c.toml), in C against nolibc.
 *
 * `doit boot channel=tinyuki.0` gives the VM a port named tinyuki.0 whose host
 * end is a Unix socket in the build dir (build/<profile>/channel/tinyuki.0.sock).
 * The program finds the port by its name in /sys/class/virtio-ports, reads one
 * request line from it, writes one answer line, waits for the host to close its
 * end, and exits with status 0 (the status `doit boot` exits with). Until a host program connects to the socket,
 * the port reads as end of file: the program waits for one. A host program connects to the socket and
 * writes the request, for example:
 *
 *   echo ping | socat - UNIX-CONNECT:build/channel-c/channel/tinyuki.0.sock
 *
 * CHANNEL=name on the kernel command line picks another port name.
 */

#ifndef NOLIBC
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#endif

#ifndef TINYUKI_MARKER
#define TINYUKI_MARKER "channel: started"
#endif

/* The port appears when the driver has handled the host's announcement, which may be after /init starts. */
#define WAIT_STEPS 500 /* of 10 ms: 5 s */
/* Where to look: vport<device>p<port>, for the first MAX_DEVICES virtio devices and MAX_PORTS ports each. */
#define MAX_DEVICES 32
#define MAX_PORTS 32

static char line[1024];
static char answer[sizeof(line) + 32];

static unsigned int length(const char *s)
{
	unsigned int n = 0;

	while (s[n])
		n++;
	return n;
}

static int write_all(int fd, const char *s, unsigned int n)
{
	while (n > 0) {
		ssize_t done = write(fd, s, n);

		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return -1;
		s += done;
		n -= (unsigned int)done;
	}
	return 0;
}

static void say(const char *a, const char *b)
{
	write_all(1, a, length(a));
	if (b)
		write_all(1, b, length(b));
	write_all(1, "\n", 1);
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static const char *wanted_name(char **envp)
{
	static const char key[] = "CHANNEL=";

	for (; envp && *envp; envp++) {
		unsigned int i = 0;

		while (key[i] && (*envp)[i] == key[i])
			i++;
		if (!key[i] && (*envp)[i])
			return *envp + i;
	}
	return "tinyuki.0";
}

static void pause_10ms(void)
{
	struct timespec t = { 0, 10 * 1000 * 1000 };

#ifdef NOLIBC
	my_syscall2(__NR_nanosleep, &t, 0);
#else
	nanosleep(&t, 0);
#endif
}

static char *append(char *at, const char *s)
{
	while (*s)
		*at++ = *s++;
	*at = 0;
	return at;
}

static char *append_number(char *at, int n)
{
	char digits[12];
	int i = 0;

	do
		digits[i++] = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	while (i > 0)
		*at++ = digits[--i];
	*at = 0;
	return at;
}

/* /dev/vportNpM whose /sys/class/virtio-ports/vportNpM/name is `name`; 0 when there is none (yet).
 * N is the virtio device's index among all virtio devices (disks and cards count too), M the port's. */
static const char *find_port(const char *name)
{
	static char dev[48];
	char id[32], path[96], got[128];
	int device, port;

	for (device = 0; device < MAX_DEVICES; device++) {
		for (port = 0; port < MAX_PORTS; port++) {
			ssize_t n;
			int fd;

			append_number(append(append_number(append(id, "vport"), device), "p"), port);
			append(append(append(path, "/sys/class/virtio-ports/"), id), "/name");
			fd = open(path, O_RDONLY, 0);
			if (fd < 0)
				continue;
			n = read(fd, got, sizeof(got) - 1);
			close(fd);
			if (n <= 0)
				continue;
			got[n] = 0;
			if (got[n - 1] == '\n')
				got[n - 1] = 0;
			if (same(got, name)) {
				append(append(dev, "/dev/"), id);
				return dev;
			}
		}
	}
	return 0;
}

static int mount_fs(const char *type, const char *dir)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -1;
	if (mount(type, dir, type, 0, 0) < 0 && errno != EBUSY)
		return -1;
	return 0;
}

int main(int argc, char **argv, char **envp)
{
	const char *name = wanted_name(envp);
	const char *dev = 0;
	unsigned int len = 0;
	int fd, step;

	(void)argc;
	(void)argv;
	say(TINYUKI_MARKER, 0);
	if (mount_fs("devtmpfs", "/dev") || mount_fs("sysfs", "/sys")) {
		say("channel: cannot mount /dev and /sys: is the base fragment's DEVTMPFS and SYSFS on?", 0);
		return 1;
	}
	for (step = 0; step < WAIT_STEPS && !dev; step++) {
		dev = find_port(name);
		if (!dev)
			pause_10ms();
	}
	if (!dev) {
		say("channel: no virtio-serial port named ", name);
		say("channel: boot with `doit boot channel=NAME`, and the channel fragment in the kernel", 0);
		return 2;
	}
	fd = open(dev, O_RDWR, 0);
	if (fd < 0) {
		say("channel: cannot open ", dev);
		return 3;
	}
	say("channel: waiting for a request on ", dev);
	while (len < sizeof(line) - 1) {
		ssize_t n = read(fd, line + len, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			say("channel: reading the port failed", 0);
			return 4;
		}
		if (n == 0 && len == 0) {
			/* end of file: no host is connected to the socket yet; wait for one */
			pause_10ms();
			continue;
		}
		if (n == 0 || line[len] == '\n')
			break;
		len++;
	}
	line[len] = 0;
	say("channel: request: ", line);
	/* the answer in one write, then wait for the host to close its end: exiting at once would end
	 * the VM while the answer may still be on its way to the socket */
	len = (unsigned int)(append(append(append(answer, "answer from tinyuki: "), line), "\n") - answer);
	if (write_all(fd, answer, len)) {
		say("channel: the host end went away before the answer", 0);
		return 5;
	}
	while (read(fd, line, sizeof(line)) > 0)
		;
	say("channel: answered, exiting with status 0", 0);
	return 0;
}
