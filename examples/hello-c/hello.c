/* SPDX-License-Identifier: MIT
 *
 * hello: the smallest useful /init, in C. Built with nolibc, musl or glibc
 * (examples/hello-{nolibc,musl,glibc}.toml) and, by hello-prebuilt/build.sh,
 * outside tinyuki as a prebuilt binary.
 *
 * It prints the profile's marker, one line, and exits with the status given
 * on the kernel command line as HELLO_EXIT=N (the kernel hands unknown
 * name=value words to init as its environment; 0 without it). When /init
 * exits, the kernel's panic message carries the status and `doit boot`
 * exits with it.
 */

#ifndef NOLIBC
#include <unistd.h>
#endif

#ifndef TINYUKI_MARKER
#define TINYUKI_MARKER "hello: started"
#endif

#if defined(HELLO_LANG)
#define LIBC HELLO_LANG
#elif defined(NOLIBC)
#define LIBC "nolibc"
#elif defined(__GLIBC__)
#define LIBC "glibc"
#else
#define LIBC "musl"
#endif

static void say(const char *s)
{
	const char *end = s;

	while (*end)
		end++;
	while (s < end) {
		ssize_t n = write(1, s, (size_t)(end - s));

		if (n <= 0)
			return;
		s += n;
	}
}

/* HELLO_EXIT=N from the environment, as a number 0-255; 0 when absent or malformed. */
static int wanted_status(char **envp)
{
	static const char name[] = "HELLO_EXIT=";

	for (; envp && *envp; envp++) {
		const char *e = *envp;
		unsigned int i = 0, value = 0;

		while (name[i] && e[i] == name[i])
			i++;
		if (name[i])
			continue;
		for (e += i; *e >= '0' && *e <= '9' && value < 256; e++)
			value = value * 10 + (unsigned int)(*e - '0');
		return *e || value > 255 ? 0 : (int)value;
	}
	return 0;
}

int main(int argc, char **argv, char **envp)
{
	int status = wanted_status(envp);
	char digits[4] = { (char)('0' + status / 100), (char)('0' + status / 10 % 10), (char)('0' + status % 10), 0 };
	const char *shown = digits;

	(void)argc;
	(void)argv;
	while (*shown == '0' && shown[1])
		shown++;
	say(TINYUKI_MARKER "\n");
	say("hello from C (" LIBC ")\n");
	say("hello: exiting with status ");
	say(shown);
	say("\n");
	return status;
}
