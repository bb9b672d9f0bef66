/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* transport-socket.c: ug_transport over TCP and unix stream sockets, plus listener and connector. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <glib.h>
#include <glib-unix.h>

#include "buf.h"
#include "common.h"
#include "transport.h"

/* One read() per dispatch at most this big; the data callback sees views of it. */
#define SOCK_READ_CHUNK (64u * 1024u)
/* Reads per dispatch, so one busy peer cannot starve the rest of the loop. */
#define SOCK_READS_PER_DISPATCH 8
/* A drained send queue gives its memory back above this size. */
#define SOCK_KEEP_ALLOC (256u * 1024u)
/* How long ug_transport_close() may wait to flush what is queued. */
#define SOCK_CLOSE_FLUSH_MS 200
/* The most addresses one listener binds (a name may resolve to several). */
#define LISTENER_MAX_FDS 4

/* ---- addresses ------------------------------------------------------------ */

/* snprintf() into a bounded buffer where truncation is acceptable (messages,
 * descriptions); errbuf may be NULL or size 0. */
static void set_err(char *errbuf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!errbuf || size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, size, fmt, ap);
	va_end(ap);
}

static int parse_port(const char *s, uint16_t *ret_port)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return -1;
	*ret_port = (uint16_t)v;
	return 0;
}

UG_EXPORT int ug_address_parse(const char *text, struct ug_address *ret_addr, char *errbuf,
                               size_t errbuf_size)
{
	struct ug_address a;
	const char *s, *colon;
	size_t hostlen;

	if (!text || !ret_addr) {
		set_err(errbuf, errbuf_size, "no address given");
		return UG_E_INVAL;
	}
	memset(&a, 0, sizeof(a));
	s = text;
	if (strncmp(s, "unix:", 5) == 0) {
		s += 5;
		if (!*s) {
			set_err(errbuf, errbuf_size, "address \"%s\": unix socket path is empty", text);
			return UG_E_INVAL;
		}
		if (strlen(s) >= sizeof(a.path)) {
			set_err(errbuf, errbuf_size,
			        "address: unix socket path has %zu bytes, limit %zu: \"%s\"",
			        strlen(s), sizeof(a.path) - 1, text);
			return UG_E_INVAL;
		}
		a.family = UG_ADDRESS_UNIX;
		memcpy(a.path, s, strlen(s) + 1);
		*ret_addr = a;
		return 0;
	}
	if (strncmp(s, "tcp:", 4) == 0)
		s += 4;
	a.family = UG_ADDRESS_TCP;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':') {
			set_err(errbuf, errbuf_size,
			        "address \"%s\": expected [IPV6]:PORT", text);
			return UG_E_INVAL;
		}
		hostlen = (size_t)(close - s - 1);
		if (hostlen == 0 || hostlen >= sizeof(a.host)) {
			set_err(errbuf, errbuf_size, "address \"%s\": bad IPv6 host", text);
			return UG_E_INVAL;
		}
		memcpy(a.host, s + 1, hostlen);
		a.host[hostlen] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			/* A bare port means the loopback address. */
			colon = s - 1;
			hostlen = 0;
		} else {
			hostlen = (size_t)(colon - s);
			if (memchr(s, ':', hostlen)) {
				set_err(errbuf, errbuf_size,
				        "address \"%s\": an IPv6 host needs brackets: [HOST]:PORT",
				        text);
				return UG_E_INVAL;
			}
		}
		if (hostlen >= sizeof(a.host)) {
			set_err(errbuf, errbuf_size, "address: host has %zu bytes, limit %zu: \"%s\"",
			        hostlen, sizeof(a.host) - 1, text);
			return UG_E_INVAL;
		}
		if (hostlen == 0) {
			snprintf(a.host, sizeof(a.host), "127.0.0.1");
		} else {
			memcpy(a.host, s, hostlen);
			a.host[hostlen] = '\0';
		}
	}
	if (parse_port(colon + 1, &a.port) < 0) {
		set_err(errbuf, errbuf_size,
		        "address \"%s\": port \"%s\" is not a number from 0 to 65535", text,
		        colon + 1);
		return UG_E_INVAL;
	}
	for (const char *p = a.host; *p; p++) {
		if (*p <= ' ' || *p == '/' || *p == '@' || *p == '[' || *p == ']') {
			set_err(errbuf, errbuf_size, "address \"%s\": bad character in host", text);
			return UG_E_INVAL;
		}
	}
	*ret_addr = a;
	return 0;
}

UG_EXPORT char *ug_address_format(const struct ug_address *addr, char *buf, size_t size)
{
	if (!buf || size == 0)
		return buf;
	if (!addr)
		snprintf(buf, size, "(none)");
	else if (addr->family == UG_ADDRESS_UNIX)
		snprintf(buf, size, "unix:%s", addr->path);
	else if (strchr(addr->host, ':'))
		snprintf(buf, size, "[%s]:%u", addr->host, (unsigned)addr->port);
	else
		snprintf(buf, size, "%s:%u", addr->host, (unsigned)addr->port);
	return buf;
}

UG_EXPORT int ug_address_is_loopback(const struct ug_address *addr)
{
	struct in_addr v4;
	struct in6_addr v6;

	if (!addr)
		return 0;
	if (addr->family == UG_ADDRESS_UNIX)
		return 1;
	if (strcmp(addr->host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, addr->host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr->host, &v6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&v6);
	return 0;
}

/* "127.0.0.1:51234" for a peer or local sockaddr. */
static void format_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (sa->sa_family == AF_UNIX) {
		const struct sockaddr_un *su = (const struct sockaddr_un *)sa;

		if (len > offsetof(struct sockaddr_un, sun_path) && su->sun_path[0])
			snprintf(buf, size, "unix:%.*s",
			         (int)(len - offsetof(struct sockaddr_un, sun_path)), su->sun_path);
		else
			snprintf(buf, size, "unix");
		return;
	}
	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(buf, size, "?");
		return;
	}
	if (sa->sa_family == AF_INET6)
		set_err(buf, size, "[%s]:%s", host, serv);
	else
		set_err(buf, size, "%s:%s", host, serv);
}

static int set_nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -1;
	return 0;
}

/* TCP options every usbredir connection wants: no Nagle delay on small
 * control packets, keepalive so a vanished peer is noticed eventually. */
static void tune_socket(int fd)
{
	int one = 1;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family == AF_UNIX)
		return;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

/* ---- the socket transport ----------------------------------------------- */

struct sock_transport {
	ug_transport base;
	int fd;
	GMainContext *ctx;
	GSource *in_src;     /* present while reading (not paused, not failed) */
	GSource *out_src;    /* present while the send queue is not empty */
	GSource *fail_src;   /* idle that reports a failure found inside send() */
	struct ug_buf out;
	uint8_t *rbuf;
	int failed;          /* the stream is over; fail_code/fail_msg say why */
	int fail_code;
	char fail_msg[UG_ERRMSG_SIZE];
	int depth;           /* >0 while one of our sources is dispatching */
	int dead;            /* destroy() came during a dispatch: free at the end */
};

static gboolean sock_on_in(gint fd, GIOCondition cond, gpointer user_data);
static gboolean sock_on_out(gint fd, GIOCondition cond, gpointer user_data);

static void drop_source(GSource **src)
{
	if (*src) {
		g_source_destroy(*src);
		g_source_unref(*src);
		*src = NULL;
	}
}

static GSource *add_fd_source(GMainContext *ctx, int fd, GIOCondition cond,
                              GUnixFDSourceFunc fn, void *data)
{
	GSource *src = g_unix_fd_source_new(fd, cond);

	g_source_set_callback(src, (GSourceFunc)(void (*)(void))fn, data, NULL);
	g_source_attach(src, ctx);
	return src;
}

static void sock_update_sources(struct sock_transport *st)
{
	int want_in = !st->failed && !st->base.closed && !st->base.paused;
	int want_out = !st->failed && !st->base.closed && st->out.len > 0;

	if (want_in && !st->in_src)
		st->in_src = add_fd_source(st->ctx, st->fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
		                           sock_on_in, st);
	else if (!want_in)
		drop_source(&st->in_src);
	if (want_out && !st->out_src)
		st->out_src = add_fd_source(st->ctx, st->fd, G_IO_OUT | G_IO_ERR, sock_on_out, st);
	else if (!want_out)
		drop_source(&st->out_src);
}

static void sock_really_free(struct sock_transport *st)
{
	drop_source(&st->in_src);
	drop_source(&st->out_src);
	drop_source(&st->fail_src);
	if (st->fd >= 0)
		close(st->fd);
	ug_buf_release(&st->out);
	free(st->rbuf);
	g_main_context_unref(st->ctx);
	free(st);
}

/* Ends a dispatch; returns 1 when the transport must not be touched anymore. */
static int sock_leave(struct sock_transport *st)
{
	st->depth--;
	if (st->dead && st->depth == 0) {
		sock_really_free(st);
		return 1;
	}
	return st->dead;
}

static gboolean sock_report_failure(gpointer user_data)
{
	struct sock_transport *st = user_data;

	/* The idle source is destroyed by returning G_SOURCE_REMOVE; forget it. */
	g_source_unref(st->fail_src);
	st->fail_src = NULL;
	st->depth++;
	ug_transport_report_closed(&st->base, st->fail_code, st->fail_msg);
	sock_leave(st);
	return G_SOURCE_REMOVE;
}

/* Marks the stream over; the closed callback comes from the main context. */
static void sock_fail(struct sock_transport *st, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void sock_fail(struct sock_transport *st, int code, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (st->failed)
		return;
	st->failed = 1;
	st->fail_code = code;
	n = snprintf(st->fail_msg, sizeof(st->fail_msg), "%s: ", st->base.desc);
	if (n < 0 || (size_t)n >= sizeof(st->fail_msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(st->fail_msg + n, sizeof(st->fail_msg) - (size_t)n, fmt, ap);
	va_end(ap);
	sock_update_sources(st);
	st->fail_src = g_idle_source_new();
	g_source_set_callback(st->fail_src, sock_report_failure, st, NULL);
	g_source_attach(st->fail_src, st->ctx);
}

/* Writes as much of the queue as the kernel takes. */
static void sock_flush(struct sock_transport *st)
{
	while (st->out.len > 0 && !st->failed) {
		ssize_t n = send(st->fd, ug_buf_peek(&st->out), st->out.len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			int code = (errno == EPIPE || errno == ECONNRESET) ? UG_E_CLOSED : UG_E_IO;

			sock_fail(st, code, "send of %zu bytes failed: %s", st->out.len,
			          strerror(errno));
			break;
		}
		ug_buf_consume(&st->out, (size_t)n);
	}
	if (st->out.len == 0 && st->out.alloc > SOCK_KEEP_ALLOC)
		ug_buf_release(&st->out);
}

static gboolean sock_on_out(gint fd, GIOCondition cond, gpointer user_data)
{
	struct sock_transport *st = user_data;

	st->depth++;
	sock_flush(st);
	if (sock_leave(st))
		return G_SOURCE_REMOVE;
	/* The source stays attached; sock_update_sources() drops it when drained,
	 * which destroys it even while we are inside its callback. */
	sock_update_sources(st);
	return G_SOURCE_CONTINUE;
}

static gboolean sock_on_in(gint fd, GIOCondition cond, gpointer user_data)
{
	struct sock_transport *st = user_data;

	st->depth++;
	for (int i = 0; i < SOCK_READS_PER_DISPATCH; i++) {
		ssize_t n;

		if (st->dead || st->failed || st->base.closed || st->base.paused)
			break;
		n = recv(st->fd, st->rbuf, SOCK_READ_CHUNK, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			sock_fail(st, errno == ECONNRESET ? UG_E_CLOSED : UG_E_IO,
			          "receive failed: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			sock_fail(st, 0, "peer closed the connection");
			break;
		}
		ug_transport_deliver(&st->base, st->rbuf, (size_t)n);
		if ((size_t)n < SOCK_READ_CHUNK)
			break;
	}
	if (sock_leave(st))
		return G_SOURCE_REMOVE;
	return G_SOURCE_CONTINUE;
}

static int sock_send(ug_transport *t, const void *data, size_t len)
{
	struct sock_transport *st = (struct sock_transport *)t;
	size_t total;
	int r;

	if (st->failed)
		return UG_E_CLOSED;
	if (__builtin_add_overflow(st->out.len, len, &total) || total > t->max_pending)
		return UG_E_TOOBIG;
	/* Appending first keeps the order simple; the flush then hands the
	 * kernel everything it takes right away. */
	r = ug_buf_append(&st->out, data, len);
	if (r < 0)
		return r;
	sock_flush(st);
	sock_update_sources(st);
	return 0;
}

static size_t sock_pending(const ug_transport *t)
{
	const struct sock_transport *st = (const struct sock_transport *)t;

	return st->out.len;
}

static void sock_pause(ug_transport *t, int paused)
{
	sock_update_sources((struct sock_transport *)t);
}

static void sock_close(ug_transport *t)
{
	struct sock_transport *st = (struct sock_transport *)t;
	gint64 deadline = g_get_monotonic_time() + SOCK_CLOSE_FLUSH_MS * 1000;

	/* Best effort: give the peer what was queued, for a bounded time. */
	while (st->out.len > 0 && !st->failed && st->fd >= 0) {
		struct pollfd pfd = { .fd = st->fd, .events = POLLOUT };
		gint64 left = (deadline - g_get_monotonic_time()) / 1000;

		sock_flush(st);
		if (st->out.len == 0 || left <= 0)
			break;
		if (poll(&pfd, 1, (int)left) <= 0)
			break;
	}
	drop_source(&st->in_src);
	drop_source(&st->out_src);
	drop_source(&st->fail_src);
	if (st->fd >= 0) {
		shutdown(st->fd, SHUT_RDWR);
		close(st->fd);
		st->fd = -1;
	}
	ug_buf_release(&st->out);
}

static void sock_destroy(ug_transport *t)
{
	struct sock_transport *st = (struct sock_transport *)t;

	if (st->depth > 0) {
		st->dead = 1;
		return;
	}
	sock_really_free(st);
}

static const struct ug_transport_vtable sock_vtable = {
	.send = sock_send,
	.pending = sock_pending,
	.pause = sock_pause,
	.close = sock_close,
	.destroy = sock_destroy,
};

UG_EXPORT ug_transport *ug_transport_socket_new(int fd, const char *desc)
{
	struct sock_transport *st;

	if (fd < 0)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st || set_nonblock_cloexec(fd) < 0) {
		free(st);
		close(fd);
		return NULL;
	}
	st->rbuf = malloc(SOCK_READ_CHUNK);
	if (!st->rbuf) {
		free(st);
		close(fd);
		return NULL;
	}
	ug_transport_init(&st->base, &sock_vtable, desc ? desc : "socket");
	st->fd = fd;
	st->ctx = g_main_context_ref_thread_default();
	/* The queue limit is the transport's max_pending, checked in sock_send(). */
	ug_buf_init(&st->out, SIZE_MAX);
	tune_socket(fd);
	sock_update_sources(st);
	return &st->base;
}

/* ---- resolving ------------------------------------------------------------ */

/* Resolves a TCP address; numeric ports only, no service names. */
static int resolve_tcp(const struct ug_address *addr, int passive, struct addrinfo **ret_ai,
                       char *err, size_t errsize)
{
	struct addrinfo hints;
	char port[8];
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(port, sizeof(port), "%u", (unsigned)addr->port);
	r = getaddrinfo(addr->host, port, &hints, ret_ai);
	if (r != 0) {
		set_err(err, errsize, "cannot resolve %s: %s", addr->host, gai_strerror(r));
		return UG_E_INVAL;
	}
	return 0;
}

static void unix_sockaddr(const struct ug_address *addr, struct sockaddr_un *su,
                          socklen_t *ret_len)
{
	memset(su, 0, sizeof(*su));
	su->sun_family = AF_UNIX;
	memcpy(su->sun_path, addr->path, strlen(addr->path) + 1);
	*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr->path) + 1);
}

/* ---- listener ------------------------------------------------------------- */

struct ug_listener {
	GMainContext *ctx;
	int fds[LISTENER_MAX_FDS];
	GSource *srcs[LISTENER_MAX_FDS];
	size_t nfds;
	int paused;
	int unlink_on_free;
	GSource *retry_src;        /* resumes accepting after EMFILE */
	struct ug_address addr;
	char addr_text[UG_ADDRESS_TEXT_MAX];
	ug_listener_accept_fn on_accept;
	void *user_data;
	char err[UG_ERRMSG_SIZE];
};

static gboolean listener_on_in(gint fd, GIOCondition cond, gpointer user_data);

static void listener_update(ug_listener *l)
{
	for (size_t i = 0; i < l->nfds; i++) {
		int want = !l->paused && !l->retry_src;

		if (want && !l->srcs[i])
			l->srcs[i] = add_fd_source(l->ctx, l->fds[i], G_IO_IN, listener_on_in, l);
		else if (!want)
			drop_source(&l->srcs[i]);
	}
}

static gboolean listener_retry(gpointer user_data)
{
	ug_listener *l = user_data;

	g_source_unref(l->retry_src);
	l->retry_src = NULL;
	listener_update(l);
	return G_SOURCE_REMOVE;
}

static gboolean listener_on_in(gint fd, GIOCondition cond, gpointer user_data)
{
	ug_listener *l = user_data;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	char desc[sizeof(((ug_transport *)0)->desc)];
	char ptext[UG_ADDRESS_TEXT_MAX];
	ug_transport *t;
	int cfd;

	cfd = accept4(fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Out of descriptors: the pending connection would wake us in a
			 * busy loop. Stop accepting for a second instead. */
			ug_errmsg_set(l->err, UG_E_IO, "listener %s: accept failed: %s", l->addr_text,
			              strerror(errno));
			if (!l->retry_src) {
				l->retry_src = g_timeout_source_new(1000);
				g_source_set_callback(l->retry_src, listener_retry, l, NULL);
				g_source_attach(l->retry_src, l->ctx);
				listener_update(l);
				return G_SOURCE_REMOVE;
			}
		}
		return G_SOURCE_CONTINUE;
	}
	if (l->addr.family == UG_ADDRESS_UNIX) {
		snprintf(desc, sizeof(desc), "unix %s", l->addr.path);
	} else {
		format_sockaddr((struct sockaddr *)&peer, plen, ptext, sizeof(ptext));
		set_err(desc, sizeof(desc), "tcp %s from %s", l->addr_text, ptext);
	}
	t = ug_transport_socket_new(cfd, desc);
	if (!t)
		return G_SOURCE_CONTINUE;
	if (l->on_accept)
		l->on_accept(l, t, l->user_data);
	else
		ug_transport_free(t);
	return G_SOURCE_CONTINUE;
}

UG_EXPORT ug_listener *ug_listener_new(void)
{
	ug_listener *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->ctx = g_main_context_ref_thread_default();
	for (size_t i = 0; i < LISTENER_MAX_FDS; i++)
		l->fds[i] = -1;
	return l;
}

/* Removes a unix socket file nobody listens on; leaves anything else alone. */
static void remove_stale_unix_socket(const struct ug_address *addr)
{
	struct sockaddr_un su;
	socklen_t len;
	struct stat stbuf;
	int fd;

	if (lstat(addr->path, &stbuf) < 0 || !S_ISSOCK(stbuf.st_mode))
		return;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	unix_sockaddr(addr, &su, &len);
	if (connect(fd, (struct sockaddr *)&su, len) < 0 && errno == ECONNREFUSED)
		unlink(addr->path);
	close(fd);
}

static int listener_bind_one(ug_listener *l, int family, const struct sockaddr *sa,
                             socklen_t salen)
{
	int one = 1;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return ug_errmsg_set(l->err, UG_E_IO, "listen on %s: socket: %s", l->addr_text,
		                     strerror(errno));
	if (family != AF_UNIX)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, salen) < 0 || listen(fd, 16) < 0) {
		int e = errno;

		close(fd);
		return ug_errmsg_set(l->err, UG_E_IO, "listen on %s: %s", l->addr_text,
		                     strerror(e));
	}
	l->fds[l->nfds++] = fd;
	return 0;
}

UG_EXPORT int ug_listener_open(ug_listener *l, const struct ug_address *addr,
                               ug_listener_accept_fn on_accept, void *user_data)
{
	int r = 0;

	if (!l || !addr)
		return UG_E_INVAL;
	if (l->nfds > 0)
		return ug_errmsg_set(l->err, UG_E_STATE, "listener %s is already open",
		                     l->addr_text);
	l->addr = *addr;
	ug_address_format(addr, l->addr_text, sizeof(l->addr_text));
	l->on_accept = on_accept;
	l->user_data = user_data;
	if (addr->family == UG_ADDRESS_UNIX) {
		struct sockaddr_un su;
		socklen_t len;

		remove_stale_unix_socket(addr);
		unix_sockaddr(addr, &su, &len);
		r = listener_bind_one(l, AF_UNIX, (struct sockaddr *)&su, len);
		if (r < 0)
			return r;
		l->unlink_on_free = 1;
	} else if (addr->family == UG_ADDRESS_TCP) {
		struct addrinfo *ai, *p;
		uint16_t port = addr->port;

		r = resolve_tcp(addr, 1, &ai, l->err, sizeof(l->err));
		if (r < 0)
			return r;
		for (p = ai; p && l->nfds < LISTENER_MAX_FDS; p = p->ai_next) {
			struct sockaddr_storage ss;
			socklen_t sslen = sizeof(ss);

			if (p->ai_family != AF_INET && p->ai_family != AF_INET6)
				continue;
			/* With port 0 every address gets the port the first bind chose. */
			if (port != 0) {
				if (p->ai_family == AF_INET)
					((struct sockaddr_in *)p->ai_addr)->sin_port = htons(port);
				else
					((struct sockaddr_in6 *)p->ai_addr)->sin6_port = htons(port);
			}
			r = listener_bind_one(l, p->ai_family, p->ai_addr, p->ai_addrlen);
			if (r < 0)
				break;
			if (port == 0 && getsockname(l->fds[l->nfds - 1], (struct sockaddr *)&ss,
			                             &sslen) == 0)
				port = ntohs(ss.ss_family == AF_INET
				                 ? ((struct sockaddr_in *)&ss)->sin_port
				                 : ((struct sockaddr_in6 *)&ss)->sin6_port);
		}
		freeaddrinfo(ai);
		if (r < 0) {
			for (size_t i = 0; i < l->nfds; i++) {
				close(l->fds[i]);
				l->fds[i] = -1;
			}
			l->nfds = 0;
			return r;
		}
		if (l->nfds == 0)
			return ug_errmsg_set(l->err, UG_E_IO, "listen on %s: no usable address",
			                     l->addr_text);
		l->addr.port = port;
		ug_address_format(&l->addr, l->addr_text, sizeof(l->addr_text));
	} else {
		return ug_errmsg_set(l->err, UG_E_INVAL, "listen: unknown address family %d",
		                     (int)addr->family);
	}
	listener_update(l);
	return 0;
}

UG_EXPORT const struct ug_address *ug_listener_address(const ug_listener *l)
{
	return &l->addr;
}

UG_EXPORT void ug_listener_pause(ug_listener *l, int paused)
{
	l->paused = !!paused;
	listener_update(l);
}

UG_EXPORT const char *ug_listener_errmsg(const ug_listener *l)
{
	return l->err;
}

UG_EXPORT void ug_listener_free(ug_listener *l)
{
	if (!l)
		return;
	drop_source(&l->retry_src);
	for (size_t i = 0; i < l->nfds; i++) {
		drop_source(&l->srcs[i]);
		close(l->fds[i]);
	}
	if (l->unlink_on_free)
		unlink(l->addr.path);
	g_main_context_unref(l->ctx);
	free(l);
}

/* ---- connector ------------------------------------------------------------ */

struct ug_connector {
	GMainContext *ctx;
	struct ug_address addr;
	char addr_text[UG_ADDRESS_TEXT_MAX];
	unsigned initial_ms, max_ms, max_attempts;
	unsigned attempts;     /* failed attempts since start */
	unsigned delay_ms;     /* the next backoff delay before jitter */
	int running;
	int fd;                /* the socket of the attempt in progress */
	struct addrinfo *ai;   /* TCP: the addresses of this attempt */
	struct addrinfo *ai_next;
	GSource *io_src;       /* waits for a non-blocking connect */
	GSource *timer_src;    /* backoff delay, or the attempt's time limit */
	ug_connector_fn on_done;
	void *user_data;
	ug_log_fn log_fn;
	void *log_data;
	char err[UG_ERRMSG_SIZE];
};

static void connector_attempt(ug_connector *c);
static void connector_try_next(ug_connector *c);

static void connector_reset_attempt(ug_connector *c)
{
	drop_source(&c->io_src);
	drop_source(&c->timer_src);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->ai) {
		freeaddrinfo(c->ai);
		c->ai = NULL;
		c->ai_next = NULL;
	}
}

static gboolean connector_on_timer(gpointer user_data)
{
	ug_connector *c = user_data;

	g_source_unref(c->timer_src);
	c->timer_src = NULL;
	connector_attempt(c);
	return G_SOURCE_REMOVE;
}

static gboolean connector_on_attempt_timeout(gpointer user_data)
{
	ug_connector *c = user_data;

	g_source_unref(c->timer_src);
	c->timer_src = NULL;
	ug_errmsg_set(c->err, UG_E_TIMEOUT, "connect to %s: no answer within %u ms",
	              c->addr_text, UG_CONNECTOR_ATTEMPT_MS);
	drop_source(&c->io_src);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	connector_try_next(c);
	return G_SOURCE_REMOVE;
}

/* The attempt failed on every address: give up or schedule the next one. */
static void connector_failed(ug_connector *c)
{
	char msg[UG_ERRMSG_SIZE + 64];
	unsigned delay;

	connector_reset_attempt(c);
	c->attempts++;
	if (c->max_attempts && c->attempts >= c->max_attempts) {
		ug_connector_fn fn = c->on_done;

		c->running = 0;
		snprintf(msg, sizeof(msg), "%s (gave up after %u attempts)", c->err, c->attempts);
		if (fn)
			fn(c, NULL, UG_E_IO, msg, c->user_data);
		return;
	}
	delay = (unsigned)((double)c->delay_ms * g_random_double_range(0.75, 1.25));
	if (delay == 0)
		delay = 1;
	if (c->log_fn) {
		snprintf(msg, sizeof(msg), "%s; attempt %u failed, next in %u ms", c->err,
		         c->attempts, delay);
		c->log_fn(UG_LOG_INFO, msg, c->log_data);
	}
	c->delay_ms = c->delay_ms > c->max_ms / 2 ? c->max_ms : c->delay_ms * 2;
	c->timer_src = g_timeout_source_new(delay);
	g_source_set_callback(c->timer_src, connector_on_timer, c, NULL);
	g_source_attach(c->timer_src, c->ctx);
}

static void connector_succeeded(ug_connector *c)
{
	char desc[sizeof(((ug_transport *)0)->desc)];
	ug_connector_fn fn = c->on_done;
	ug_transport *t;
	int fd = c->fd;

	c->fd = -1;
	connector_reset_attempt(c);
	c->running = 0;
	set_err(desc, sizeof(desc), "%s %s", c->addr.family == UG_ADDRESS_UNIX ? "unix" : "tcp",
	         c->addr.family == UG_ADDRESS_UNIX ? c->addr.path : c->addr_text);
	t = ug_transport_socket_new(fd, desc);
	if (!t) {
		ug_errmsg_set(c->err, UG_E_NOMEM, "connect to %s: out of memory", c->addr_text);
		if (fn)
			fn(c, NULL, UG_E_NOMEM, c->err, c->user_data);
		return;
	}
	if (fn)
		fn(c, t, 0, NULL, c->user_data);
	else
		ug_transport_free(t);
}

static gboolean connector_on_io(gint fd, GIOCondition cond, gpointer user_data)
{
	ug_connector *c = user_data;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	g_source_unref(c->io_src);
	c->io_src = NULL;
	drop_source(&c->timer_src);
	if (soerr == 0) {
		connector_succeeded(c);
		return G_SOURCE_REMOVE;
	}
	ug_errmsg_set(c->err, UG_E_IO, "connect to %s: %s", c->addr_text, strerror(soerr));
	close(c->fd);
	c->fd = -1;
	connector_try_next(c);
	return G_SOURCE_REMOVE;
}

/* Starts a non-blocking connect; returns 1 connected, 0 in progress, -1 failed. */
static int connector_start_connect(ug_connector *c, int family, const struct sockaddr *sa,
                                   socklen_t salen)
{
	c->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		ug_errmsg_set(c->err, UG_E_IO, "connect to %s: socket: %s", c->addr_text,
		              strerror(errno));
		return -1;
	}
	if (connect(c->fd, sa, salen) == 0)
		return 1;
	if (errno == EINPROGRESS) {
		c->io_src = add_fd_source(c->ctx, c->fd, G_IO_OUT | G_IO_ERR | G_IO_HUP,
		                          connector_on_io, c);
		c->timer_src = g_timeout_source_new(UG_CONNECTOR_ATTEMPT_MS);
		g_source_set_callback(c->timer_src, connector_on_attempt_timeout, c, NULL);
		g_source_attach(c->timer_src, c->ctx);
		return 0;
	}
	ug_errmsg_set(c->err, UG_E_IO, "connect to %s: %s", c->addr_text, strerror(errno));
	close(c->fd);
	c->fd = -1;
	return -1;
}

/* Tries the remaining resolved addresses of this attempt in order. */
static void connector_try_next(ug_connector *c)
{
	while (c->ai_next) {
		struct addrinfo *p = c->ai_next;
		int r;

		c->ai_next = p->ai_next;
		r = connector_start_connect(c, p->ai_family, p->ai_addr, p->ai_addrlen);
		if (r == 1) {
			connector_succeeded(c);
			return;
		}
		if (r == 0)
			return;
	}
	connector_failed(c);
}

static void connector_attempt(ug_connector *c)
{
	if (c->addr.family == UG_ADDRESS_UNIX) {
		struct sockaddr_un su;
		socklen_t len;
		int r;

		unix_sockaddr(&c->addr, &su, &len);
		r = connector_start_connect(c, AF_UNIX, (struct sockaddr *)&su, len);
		if (r == 1)
			connector_succeeded(c);
		else if (r < 0)
			connector_failed(c);
		return;
	}
	if (resolve_tcp(&c->addr, 0, &c->ai, c->err, sizeof(c->err)) < 0) {
		connector_failed(c);
		return;
	}
	c->ai_next = c->ai;
	connector_try_next(c);
}

UG_EXPORT ug_connector *ug_connector_new(const struct ug_address *addr)
{
	ug_connector *c;

	if (!addr || (addr->family != UG_ADDRESS_TCP && addr->family != UG_ADDRESS_UNIX))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ctx = g_main_context_ref_thread_default();
	c->addr = *addr;
	ug_address_format(addr, c->addr_text, sizeof(c->addr_text));
	c->initial_ms = 100;
	c->max_ms = 5000;
	c->fd = -1;
	return c;
}

UG_EXPORT void ug_connector_set_backoff(ug_connector *c, unsigned initial_ms, unsigned max_ms,
                                        unsigned max_attempts)
{
	c->initial_ms = initial_ms ? initial_ms : 1;
	c->max_ms = max_ms < c->initial_ms ? c->initial_ms : max_ms;
	c->max_attempts = max_attempts;
}

UG_EXPORT void ug_connector_set_log(ug_connector *c, ug_log_fn fn, void *user_data)
{
	c->log_fn = fn;
	c->log_data = user_data;
}

UG_EXPORT int ug_connector_start(ug_connector *c, ug_connector_fn on_done, void *user_data)
{
	if (c->running)
		return ug_errmsg_set(c->err, UG_E_STATE, "connect to %s: already started",
		                     c->addr_text);
	c->on_done = on_done;
	c->user_data = user_data;
	c->running = 1;
	c->attempts = 0;
	c->delay_ms = c->initial_ms;
	/* The first attempt runs from the loop, so the callback never comes
	 * from inside this call. */
	c->timer_src = g_timeout_source_new(0);
	g_source_set_callback(c->timer_src, connector_on_timer, c, NULL);
	g_source_attach(c->timer_src, c->ctx);
	return 0;
}

UG_EXPORT void ug_connector_stop(ug_connector *c)
{
	if (!c)
		return;
	connector_reset_attempt(c);
	c->running = 0;
}

UG_EXPORT unsigned ug_connector_attempts(const ug_connector *c)
{
	return c->attempts;
}

UG_EXPORT const char *ug_connector_errmsg(const ug_connector *c)
{
	return c->err;
}

UG_EXPORT void ug_connector_free(ug_connector *c)
{
	if (!c)
		return;
	ug_connector_stop(c);
	g_main_context_unref(c->ctx);
	free(c);
}
