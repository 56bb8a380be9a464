/* SPDX-License-Identifier: MIT
 *
 * http: a small HTTP/1.0 server as /init, in C against musl
 * (examples/http-c.toml).
 *
 * The kernel has configured eth0 from ip= on its command line before /init
 * starts (the net fragment's IP_PNP), so the program only listens. `doit boot`
 * forwards 127.0.0.1:8081 on the host to the guest's port 80 and keeps the VM
 * up while the program serves, one connection at a time:
 *
 *   GET /                 one line: who is serving, and the client's address
 *   GET /exit[?status=N]  answers "bye", then exits with status N (0 by default),
 *                         which `doit boot` exits with
 *
 * Anything else gets 404, a request that is not a GET 405, a malformed one 400.
 * A client that connects and sends nothing (`doit boot` checking that the port
 * accepts connections) is closed after it closes, or after READ_SECONDS of
 * silence. One connection at a time: a client that trickles its request holds
 * the others back, which is fine for a demo reached only through 127.0.0.1.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef TINYUKI_MARKER
#define TINYUKI_MARKER "http: started"
#endif

#define READ_SECONDS 10
#define LINGER_SECONDS 2

/* The whole request head must fit: this server answers small GETs only. */
static char request[4096];

static void say(const char *fmt, const char *a, const char *b)
{
	char line[512];
	int n = snprintf(line, sizeof(line), fmt, a, b);

	if (n > 0)
		(void)!write(1, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void send_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* the client went away: nothing to tell it */
		s += n;
		len -= (size_t)n;
	}
}

static void answer(int fd, const char *status, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, strlen(body));

	send_all(fd, head, (size_t)n);
	send_all(fd, body, strlen(body));
}

/* Read until the end of the request head; the number of bytes, 0 when the client sent nothing. */
static size_t read_head(int fd)
{
	size_t len = 0;

	while (len < sizeof(request) - 1) {
		ssize_t n = read(fd, request + len, sizeof(request) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		request[len] = 0;
		if (strstr(request, "\r\n\r\n") || strstr(request, "\n\n"))
			break;
	}
	request[len] = 0;
	return len;
}

/* The status asked for by /exit?status=N: 0-255, or -1 when malformed. */
static int exit_status(const char *query)
{
	const char *p;
	int value = 0;

	if (!query || !*query)
		return 0;
	if (strncmp(query, "status=", 7))
		return -1;
	for (p = query + 7; *p >= '0' && *p <= '9' && value <= 255; p++)
		value = value * 10 + (*p - '0');
	return p == query + 7 || *p || value > 255 ? -1 : value;
}

/* Serve one connection; the status to exit with after it, or -1 to go on serving. */
static int serve(int fd, const struct sockaddr_in *peer)
{
	char body[256], client[INET_ADDRSTRLEN] = "?";
	char *method, *target, *query, *save = NULL;
	struct timeval limit = { .tv_sec = READ_SECONDS };
	int status;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	if (read_head(fd) == 0)
		return -1;
	inet_ntop(AF_INET, &peer->sin_addr, client, sizeof(client));
	method = strtok_r(request, " \r\n", &save);
	target = method ? strtok_r(NULL, " \r\n", &save) : NULL;
	if (!method || !target || target[0] != '/') {
		answer(fd, "400 Bad Request", "a request line is: GET /path HTTP/1.0\n");
		return -1;
	}
	if (strcmp(method, "GET")) {
		answer(fd, "405 Method Not Allowed", "only GET is served here\n");
		return -1;
	}
	query = strchr(target, '?');
	if (query)
		*query++ = 0;
	if (!strcmp(target, "/")) {
		snprintf(body, sizeof(body), "hello from C (musl) over HTTP/1.0 in tinyuki, to %s:%u\n", client,
			 ntohs(peer->sin_port));
		answer(fd, "200 OK", body);
		return -1;
	}
	if (!strcmp(target, "/exit")) {
		status = exit_status(query);
		if (status < 0) {
			answer(fd, "400 Bad Request", "status must be 0 to 255: /exit?status=N\n");
			return -1;
		}
		snprintf(body, sizeof(body), "bye (exit status %d)\n", status);
		answer(fd, "200 OK", body);
		return status;
	}
	answer(fd, "404 Not Found", "not found: try / or /exit\n");
	return -1;
}

/* Close after the client has read the answer: closing with unread bytes (a body after the request head)
 * would send a reset, and the client could lose the answer. Waits at most LINGER_SECONDS for its close. */
static void finish(int fd)
{
	struct timeval limit = { .tv_sec = LINGER_SECONDS };
	char sink[512];

	shutdown(fd, SHUT_WR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	while (read(fd, sink, sizeof(sink)) > 0)
		;
	close(fd);
}

int main(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	const char *wanted = getenv("HTTP_PORT");
	int port = wanted ? atoi(wanted) : 80;
	int one = 1, server, status = -1;
	char shown[8];

	say("%s%s\n", TINYUKI_MARKER, "");
	if (port <= 0 || port > 65535)
		port = 80;
	addr.sin_port = htons((unsigned short)port);
	snprintf(shown, sizeof(shown), "%d", port);
	server = socket(AF_INET, SOCK_STREAM, 0);
	if (server < 0 || setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(server, (struct sockaddr *)&addr, sizeof(addr)) || listen(server, 16)) {
		say("http: cannot listen on port %s: %s\n", shown, strerror(errno));
		return 1;
	}
	say("http: listening on 0.0.0.0:%s%s\n", shown, "");
	while (status < 0) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		int fd = accept(server, (struct sockaddr *)&peer, &len);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			say("http: accept failed: %s%s\n", strerror(errno), "");
			return 1;
		}
		status = serve(fd, &peer);
		finish(fd);
	}
	snprintf(shown, sizeof(shown), "%d", status);
	say("http: exiting with status %s%s\n", shown, "");
	return status;
}
