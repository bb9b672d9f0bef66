/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-transport-socket.c: socket transports, listener and connector on real loopback sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <netinet/in.h>
#include <cmocka.h>

#include <glib.h>

#include "usbgate.h"

/* Everything one test case needs: both ends, what each received, how each ended. */
struct side {
	ug_transport *t;
	GByteArray *got;
	int closed;
	int close_error;
	char close_msg[512];
	int free_in_callback;
};

struct fixture {
	GMainContext *ctx;
	struct side a, b;          /* a: the connecting side, b: the accepted side */
	ug_listener *l;
	ug_connector *c;
	int accepted;
	int connected;
	int connect_error;
	char connect_msg[512];
	int log_lines;
};

static void on_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct side *s = user_data;

	g_byte_array_append(s->got, data, (guint)len);
	if (s->free_in_callback) {
		ug_transport_free(t);
		s->t = NULL;
	}
}

static void on_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	struct side *s = user_data;

	s->closed++;
	s->close_error = error;
	snprintf(s->close_msg, sizeof(s->close_msg), "%s", message);
}

static void side_attach(struct side *s, ug_transport *t)
{
	s->t = t;
	ug_transport_set_callbacks(t, on_data, on_closed, s);
}

static void on_accept(ug_listener *l, ug_transport *t, void *user_data)
{
	struct fixture *f = user_data;

	f->accepted++;
	if (f->b.t) {
		ug_transport_free(t);
		return;
	}
	side_attach(&f->b, t);
}

static void on_connected(ug_connector *c, ug_transport *t, int error, const char *message,
                         void *user_data)
{
	struct fixture *f = user_data;

	f->connected++;
	f->connect_error = error;
	snprintf(f->connect_msg, sizeof(f->connect_msg), "%s", message ? message : "");
	if (t)
		side_attach(&f->a, t);
}

static void on_log(int level, const char *message, void *user_data)
{
	struct fixture *f = user_data;

	f->log_lines++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->ctx = g_main_context_new();
	g_main_context_push_thread_default(f->ctx);
	f->a.got = g_byte_array_new();
	f->b.got = g_byte_array_new();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ug_transport_free(f->a.t);
	ug_transport_free(f->b.t);
	ug_connector_free(f->c);
	ug_listener_free(f->l);
	/* Let destroyed sources go before the context does. */
	while (g_main_context_iteration(f->ctx, FALSE))
		;
	g_main_context_pop_thread_default(f->ctx);
	g_main_context_unref(f->ctx);
	g_byte_array_unref(f->a.got);
	g_byte_array_unref(f->b.got);
	free(f);
	return 0;
}

/* Runs the loop until *flag reaches want or ms pass; returns 1 if it did. */
static int run_until(struct fixture *f, const int *flag, int want, int ms)
{
	gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;

	while (*flag < want && g_get_monotonic_time() < end)
		if (!g_main_context_iteration(f->ctx, FALSE))
			g_usleep(1000);
	return *flag >= want;
}

static void run_for(struct fixture *f, int ms)
{
	gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;

	while (g_get_monotonic_time() < end)
		if (!g_main_context_iteration(f->ctx, FALSE))
			g_usleep(1000);
}

static int run_until_bytes(struct fixture *f, struct side *s, size_t want, int ms)
{
	gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;

	while (s->got->len < want && g_get_monotonic_time() < end)
		if (!g_main_context_iteration(f->ctx, FALSE))
			g_usleep(500);
	return s->got->len >= want;
}

static void parse_ok(const char *text, struct ug_address *a)
{
	char err[256] = "";

	assert_int_equal(ug_address_parse(text, a, err, sizeof(err)), 0);
}

/* Listens on a free loopback port and connects to it; both ends attached. */
static void connect_pair(struct fixture *f, const char *listen_text)
{
	struct ug_address a;

	parse_ok(listen_text, &a);
	f->l = ug_listener_new();
	assert_non_null(f->l);
	assert_int_equal(ug_listener_open(f->l, &a, on_accept, f), 0);
	f->c = ug_connector_new(ug_listener_address(f->l));
	assert_non_null(f->c);
	assert_int_equal(ug_connector_start(f->c, on_connected, f), 0);
	assert_true(run_until(f, &f->connected, 1, 5000));
	assert_int_equal(f->connect_error, 0);
	assert_true(run_until(f, &f->accepted, 1, 5000));
	assert_non_null(f->a.t);
	assert_non_null(f->b.t);
}

static void test_parse_forms(void **state)
{
	struct ug_address a;
	char text[UG_ADDRESS_TEXT_MAX];

	parse_ok("4000", &a);
	assert_int_equal(a.family, UG_ADDRESS_TCP);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 4000);
	assert_true(ug_address_is_loopback(&a));

	parse_ok(":4001", &a);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 4001);

	parse_ok("0.0.0.0:80", &a);
	assert_string_equal(a.host, "0.0.0.0");
	assert_false(ug_address_is_loopback(&a));

	parse_ok("tcp:example.org:65535", &a);
	assert_string_equal(a.host, "example.org");
	assert_int_equal(a.port, 65535);
	assert_false(ug_address_is_loopback(&a));

	parse_ok("[::1]:5", &a);
	assert_string_equal(a.host, "::1");
	assert_true(ug_address_is_loopback(&a));
	assert_string_equal(ug_address_format(&a, text, sizeof(text)), "[::1]:5");

	parse_ok("localhost:7", &a);
	assert_true(ug_address_is_loopback(&a));
	parse_ok("127.1.2.3:7", &a);
	assert_true(ug_address_is_loopback(&a));

	parse_ok("unix:/run/usbredirsrv/x.sock", &a);
	assert_int_equal(a.family, UG_ADDRESS_UNIX);
	assert_string_equal(a.path, "/run/usbredirsrv/x.sock");
	assert_true(ug_address_is_loopback(&a));
	assert_string_equal(ug_address_format(&a, text, sizeof(text)),
	                    "unix:/run/usbredirsrv/x.sock");
}

static void test_parse_errors(void **state)
{
	static const char *const bad[] = {
		"", "host:", "host:abc", "host:65536", "host:-1", "host:123456", "::1:80",
		"[::1]80", "[]:80", "unix:", "a b:80", "x/y:80", "[::1:80",
	};
	struct ug_address a;
	char err[256];
	char longpath[300];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		a.port = 1234;
		assert_int_equal(ug_address_parse(bad[i], &a, err, sizeof(err)), UG_E_INVAL);
		/* The message quotes what was given; ret_addr is left alone. */
		assert_non_null(strstr(err, "address"));
		assert_int_equal(a.port, 1234);
	}
	memset(longpath, 'p', sizeof(longpath));
	memcpy(longpath, "unix:/", 6);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(ug_address_parse(longpath, &a, err, sizeof(err)), UG_E_INVAL);
	assert_non_null(strstr(err, "limit 107"));
	assert_int_equal(ug_address_parse(NULL, &a, NULL, 0), UG_E_INVAL);
}

static void test_default_bind_is_loopback(void **state)
{
	struct fixture *f = *state;
	struct ug_address a;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	parse_ok("0", &a);
	f->l = ug_listener_new();
	assert_int_equal(ug_listener_open(f->l, &a, on_accept, f), 0);
	assert_string_equal(ug_listener_address(f->l)->host, "127.0.0.1");
	assert_int_not_equal(ug_listener_address(f->l)->port, 0);
	/* Ask the kernel what is really bound. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(ug_listener_address(f->l)->port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, len), 0);
	assert_true(run_until(f, &f->accepted, 1, 5000));
	assert_non_null(strstr(ug_transport_describe(f->b.t), "from 127.0.0.1:"));
	close(fd);
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void test_large_transfers_both_ways(void **state)
{
	struct fixture *f = *state;
	const size_t total = 24u * 1024 * 1024;
	const size_t chunk = 100003; /* odd size, so chunks straddle reads */
	uint8_t *ab = malloc(total), *ba = malloc(total);

	fill_pattern(ab, total, 1);
	fill_pattern(ba, total, 2);
	connect_pair(f, "127.0.0.1:0");
	for (size_t off = 0; off < total; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;

		assert_int_equal(ug_transport_send(f->a.t, ab + off, n), 0);
		assert_int_equal(ug_transport_send(f->b.t, ba + off, n), 0);
	}
	assert_true(run_until_bytes(f, &f->b, total, 30000));
	assert_true(run_until_bytes(f, &f->a, total, 30000));
	assert_int_equal(f->b.got->len, total);
	assert_int_equal(f->a.got->len, total);
	assert_memory_equal(f->b.got->data, ab, total);
	assert_memory_equal(f->a.got->data, ba, total);
	assert_int_equal(ug_transport_pending(f->a.t), 0);
	assert_int_equal(ug_transport_pending(f->b.t), 0);
	free(ab);
	free(ba);
}

static void test_connector_retries_until_listener_appears(void **state)
{
	struct fixture *f = *state;
	struct ug_address a;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char text[64];
	int fd;

	/* Find a port nobody listens on. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, len), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	snprintf(text, sizeof(text), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	parse_ok(text, &a);

	f->c = ug_connector_new(&a);
	ug_connector_set_backoff(f->c, 10, 80, 0);
	ug_connector_set_log(f->c, on_log, f);
	assert_int_equal(ug_connector_start(f->c, on_connected, f), 0);
	assert_int_equal(ug_connector_start(f->c, on_connected, f), UG_E_STATE);
	run_for(f, 400);
	assert_int_equal(f->connected, 0);
	/* 10+20+40+80+80... ms with jitter: at least 4 failures in 400 ms. */
	assert_true(ug_connector_attempts(f->c) >= 4);
	assert_true(f->log_lines >= 4);
	assert_non_null(strstr(ug_connector_errmsg(f->c), text));

	f->l = ug_listener_new();
	assert_int_equal(ug_listener_open(f->l, &a, on_accept, f), 0);
	assert_true(run_until(f, &f->connected, 1, 3000));
	assert_int_equal(f->connect_error, 0);
	assert_true(run_until(f, &f->accepted, 1, 3000));
	assert_int_equal(ug_transport_send(f->a.t, "hello", 5), 0);
	assert_true(run_until_bytes(f, &f->b, 5, 3000));
	assert_memory_equal(f->b.got->data, "hello", 5);
}

static void test_connector_gives_up_with_message(void **state)
{
	struct fixture *f = *state;
	struct ug_address a;

	parse_ok("unix:/nonexistent-dir-ug/sock", &a);
	f->c = ug_connector_new(&a);
	ug_connector_set_backoff(f->c, 1, 2, 3);
	assert_int_equal(ug_connector_start(f->c, on_connected, f), 0);
	assert_true(run_until(f, &f->connected, 1, 3000));
	assert_int_equal(f->connect_error, UG_E_IO);
	assert_null(f->a.t);
	assert_non_null(strstr(f->connect_msg, "/nonexistent-dir-ug/sock"));
	assert_non_null(strstr(f->connect_msg, "3 attempts"));
	/* Idle again: it may be restarted. */
	assert_int_equal(ug_connector_start(f->c, on_connected, f), 0);
	ug_connector_stop(f->c);
}

static void test_bounded_queue_toobig(void **state)
{
	struct fixture *f = *state;
	uint8_t chunk[4096];
	int sv[2];
	int small = 4096;
	int r = 0, sends = 0;

	memset(chunk, 0x5a, sizeof(chunk));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	side_attach(&f->a, ug_transport_socket_new(sv[0], "pair"));
	assert_non_null(f->a.t);
	ug_transport_set_max_pending(f->a.t, 64 * 1024);

	/* One send bigger than the limit is refused whole. */
	{
		uint8_t *big = calloc(1, 64 * 1024 + 1);

		assert_int_equal(ug_transport_send(f->a.t, big, 64 * 1024 + 1), UG_E_TOOBIG);
		free(big);
	}
	assert_int_equal(ug_transport_pending(f->a.t), 0);
	/* The peer never reads: the queue fills to its limit, then refuses. */
	while (sends < 100000) {
		r = ug_transport_send(f->a.t, chunk, sizeof(chunk));
		if (r != 0)
			break;
		sends++;
	}
	assert_int_equal(r, UG_E_TOOBIG);
	assert_true(ug_transport_pending(f->a.t) <= 64 * 1024);
	assert_true(ug_transport_pending(f->a.t) > 64 * 1024 - sizeof(chunk));
	/* Once the peer drains, sends are accepted again. */
	{
		uint8_t sink[65536];
		gint64 end = g_get_monotonic_time() + 3000000;

		while (ug_transport_pending(f->a.t) > 0 && g_get_monotonic_time() < end) {
			(void)recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT);
			g_main_context_iteration(f->ctx, FALSE);
		}
	}
	assert_int_equal(ug_transport_pending(f->a.t), 0);
	assert_int_equal(ug_transport_send(f->a.t, chunk, sizeof(chunk)), 0);
	close(sv[1]);
}

static void test_peer_close_reports_message(void **state)
{
	struct fixture *f = *state;
	char where[UG_ADDRESS_TEXT_MAX];

	connect_pair(f, "127.0.0.1:0");
	ug_address_format(ug_listener_address(f->l), where, sizeof(where));
	assert_int_equal(ug_transport_send(f->b.t, "last words", 10), 0);
	ug_transport_free(f->b.t);
	f->b.t = NULL;
	assert_true(run_until(f, &f->a.closed, 1, 3000));
	assert_int_equal(f->a.close_error, 0);
	/* What was queued before the close arrived before the end. */
	assert_int_equal(f->a.got->len, 10);
	assert_non_null(strstr(f->a.close_msg, where));
	assert_non_null(strstr(f->a.close_msg, "peer closed"));
	assert_int_equal(ug_transport_send(f->a.t, "x", 1), UG_E_CLOSED);
	/* The closed callback is made once. */
	run_for(f, 50);
	assert_int_equal(f->a.closed, 1);
	/* The side that closed itself gets no callback. */
	assert_int_equal(f->b.closed, 0);
}

static void test_unix_socket(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/ug-test-XXXXXX";
	char text[160], path[128];
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s", dir);
	snprintf(text, sizeof(text), "unix:%s", path);
	/* A stale socket file left by a dead server is replaced. */
	{
		struct ug_address a;
		ug_listener *stale = ug_listener_new();

		parse_ok(text, &a);
		assert_int_equal(ug_listener_open(stale, &a, on_accept, f), 0);
		/* Close the descriptor but keep the file, as a crash would. */
		assert_int_equal(link(path, "/tmp/ug-test-keep"), 0);
		ug_listener_free(stale);
		assert_int_equal(rename("/tmp/ug-test-keep", path), 0);
		assert_int_equal(stat(path, &st), 0);
	}
	connect_pair(f, text);
	assert_non_null(strstr(ug_transport_describe(f->a.t), path));
	assert_int_equal(ug_transport_send(f->a.t, "ping", 4), 0);
	assert_true(run_until_bytes(f, &f->b, 4, 3000));
	assert_int_equal(ug_transport_send(f->b.t, "pong!", 5), 0);
	assert_true(run_until_bytes(f, &f->a, 5, 3000));
	assert_memory_equal(f->a.got->data, "pong!", 5);
	ug_listener_free(f->l);
	f->l = NULL;
	assert_int_not_equal(stat(path, &st), 0);
	rmdir(dir);
}

static void test_pause_stops_delivery(void **state)
{
	struct fixture *f = *state;

	connect_pair(f, "127.0.0.1:0");
	ug_transport_pause(f->b.t, 1);
	assert_int_equal(ug_transport_send(f->a.t, "abc", 3), 0);
	run_for(f, 100);
	assert_int_equal(f->b.got->len, 0);
	ug_transport_pause(f->b.t, 0);
	assert_true(run_until_bytes(f, &f->b, 3, 3000));
	assert_memory_equal(f->b.got->data, "abc", 3);
}

static void test_free_inside_data_callback(void **state)
{
	struct fixture *f = *state;

	connect_pair(f, "127.0.0.1:0");
	f->b.free_in_callback = 1;
	assert_int_equal(ug_transport_send(f->a.t, "bye", 3), 0);
	assert_true(run_until_bytes(f, &f->b, 3, 3000));
	assert_null(f->b.t);
	/* The other side sees the close. */
	assert_true(run_until(f, &f->a.closed, 1, 3000));
	assert_int_equal(f->b.closed, 0);
}

static void test_listener_errors_name_address(void **state)
{
	struct fixture *f = *state;
	struct ug_address a;
	ug_listener *second;
	char where[UG_ADDRESS_TEXT_MAX];

	parse_ok("127.0.0.1:0", &a);
	f->l = ug_listener_new();
	assert_int_equal(ug_listener_open(f->l, &a, on_accept, f), 0);
	ug_address_format(ug_listener_address(f->l), where, sizeof(where));
	second = ug_listener_new();
	assert_int_equal(ug_listener_open(second, ug_listener_address(f->l), on_accept, f),
	                 UG_E_IO);
	assert_non_null(strstr(ug_listener_errmsg(second), where));
	assert_non_null(strstr(ug_listener_errmsg(second), "in use"));
	ug_listener_free(second);
	ug_listener_free(NULL);
	ug_connector_free(NULL);
	ug_transport_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_forms),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test_setup_teardown(test_default_bind_is_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_transfers_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connector_retries_until_listener_appears,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_connector_gives_up_with_message, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_bounded_queue_toobig, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_close_reports_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_stops_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_inside_data_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_errors_name_address, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
