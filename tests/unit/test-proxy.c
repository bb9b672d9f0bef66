/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-proxy.c: the proxy between two real loopback socket pairs: order, tap, close, backpressure. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <cmocka.h>

#include <glib.h>

#include "usbgate.h"

/*
 * The wiring: peer_g <-> [proxy a] ... [proxy b] <-> peer_h, each leg a real
 * TCP connection on 127.0.0.1. The peers are plain non-blocking sockets the
 * test drives itself, so it can stop reading on one side to make the proxy
 * back up.
 */
struct fx {
	GMainContext *ctx;
	ug_proxy *p;
	int peer[2];                    /* [0]: the guest's end, [1]: the host's end */
	GByteArray *sent[2];            /* what each peer wrote */
	GByteArray *got[2];             /* what each peer read */
	GByteArray *tapped[2];          /* what the tap saw per direction */
	int closed;
	int closed_side;
	int closed_error;
	char closed_msg[256];
	uint64_t last_ts;
	int ts_backwards;
	int reading[2];                 /* the peer reads its socket */
	size_t max_pending;
};

/* A connected TCP pair on loopback: returns the two fds. */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(l >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fds[0] >= 0);
	assert_int_equal(connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
	fds[1] = accept(l, NULL, NULL);
	assert_true(fds[1] >= 0);
	close(l);
}

static void on_tap(ug_proxy *p, enum ug_dir dir, const uint8_t *data, size_t len,
		   uint64_t ts_ns, void *user_data)
{
	struct fx *f = user_data;

	(void)p;
	g_byte_array_append(f->tapped[dir], data, (guint)len);
	if (ts_ns < f->last_ts)
		f->ts_backwards++;
	f->last_ts = ts_ns;
}

static void on_closed(ug_proxy *p, enum ug_dir first_side, int error, const char *message,
		      void *user_data)
{
	struct fx *f = user_data;

	(void)p;
	f->closed++;
	f->closed_side = (int)first_side;
	f->closed_error = error;
	snprintf(f->closed_msg, sizeof(f->closed_msg), "%s", message);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	int g[2], h[2];
	ug_transport *a, *b;

	f->ctx = g_main_context_new();
	g_main_context_push_thread_default(f->ctx);
	tcp_pair(g);
	tcp_pair(h);
	f->peer[0] = g[0];
	f->peer[1] = h[0];
	fcntl(f->peer[0], F_SETFL, O_NONBLOCK);
	fcntl(f->peer[1], F_SETFL, O_NONBLOCK);
	a = ug_transport_socket_new(g[1], "guest leg");
	b = ug_transport_socket_new(h[1], "host leg");
	assert_non_null(a);
	assert_non_null(b);
	f->p = ug_proxy_new(a, b);
	assert_non_null(f->p);
	for (int i = 0; i < 2; i++) {
		f->sent[i] = g_byte_array_new();
		f->got[i] = g_byte_array_new();
		f->tapped[i] = g_byte_array_new();
		f->reading[i] = 1;
	}
	ug_proxy_set_tap(f->p, on_tap, f);
	ug_proxy_set_closed(f->p, on_closed, f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ug_proxy_free(f->p);
	for (int i = 0; i < 2; i++) {
		if (f->peer[i] >= 0)
			close(f->peer[i]);
		g_byte_array_free(f->sent[i], TRUE);
		g_byte_array_free(f->got[i], TRUE);
		g_byte_array_free(f->tapped[i], TRUE);
	}
	while (g_main_context_iteration(f->ctx, FALSE))
		;
	g_main_context_pop_thread_default(f->ctx);
	g_main_context_unref(f->ctx);
	free(f);
	return 0;
}

/* Reads what a peer's socket has (when it reads); returns bytes read. */
static size_t peer_read(struct fx *f, int i)
{
	uint8_t buf[65536];
	size_t total = 0;

	if (!f->reading[i] || f->peer[i] < 0)
		return 0;
	for (;;) {
		ssize_t n = read(f->peer[i], buf, sizeof(buf));

		if (n <= 0)
			break;
		g_byte_array_append(f->got[i], buf, (guint)n);
		total += (size_t)n;
	}
	return total;
}

/* Writes up to len bytes of data from a peer; returns what the kernel took. */
static size_t peer_write(struct fx *f, int i, const uint8_t *data, size_t len)
{
	ssize_t n = write(f->peer[i], data, len);

	if (n <= 0)
		return 0;
	g_byte_array_append(f->sent[i], data, (guint)n);
	return (size_t)n;
}

static void track_pending(struct fx *f)
{
	for (int i = 0; i < 2; i++) {
		size_t n = ug_transport_pending(ug_proxy_transport(f->p, (enum ug_dir)i));

		if (n > f->max_pending)
			f->max_pending = n;
	}
}

/* One round: peers write a slice, the loop runs, peers read. */
static void spin(struct fx *f)
{
	while (g_main_context_iteration(f->ctx, FALSE))
		track_pending(f);
	peer_read(f, 0);
	peer_read(f, 1);
}

static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed;

	for (size_t i = 0; i < n; i++) {
		x = x * 1664525u + 1013904223u;
		p[i] = (uint8_t)(x >> 24);
	}
}

static void assert_same(GByteArray *a, GByteArray *b)
{
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->data, b->data, a->len);
}

/* 24 MiB each way at once, in uneven slices: both peers get exactly what
 * the other sent, in order, and the tap saw exactly those bytes. */
static void test_forward_both_ways(void **state)
{
	struct fx *f = *state;
	const size_t total = 24u * 1024u * 1024u;
	uint8_t *src[2];
	size_t off[2] = { 0, 0 };
	gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;

	assert_int_equal(ug_proxy_start(f->p), 0);
	for (int i = 0; i < 2; i++) {
		src[i] = malloc(total);
		fill_random(src[i], total, 7u + (uint32_t)i);
	}
	while ((off[0] < total || off[1] < total || f->got[0]->len < total ||
		f->got[1]->len < total) && g_get_monotonic_time() < deadline) {
		for (int i = 0; i < 2; i++) {
			size_t slice = 1 + (off[i] * 7919u) % 200000u;

			if (slice > total - off[i])
				slice = total - off[i];
			if (slice)
				off[i] += peer_write(f, i, src[i] + off[i], slice);
		}
		spin(f);
	}
	assert_int_equal(f->got[1]->len, total);
	assert_int_equal(f->got[0]->len, total);
	assert_same(f->sent[0], f->got[1]);
	assert_same(f->sent[1], f->got[0]);
	assert_same(f->sent[0], f->tapped[UG_DIR_G2H]);
	assert_same(f->sent[1], f->tapped[UG_DIR_H2G]);
	assert_int_equal(f->ts_backwards, 0);
	assert_int_equal(f->closed, 0);
	{
		struct ug_proxy_stats st;

		ug_proxy_get_stats(f->p, &st);
		assert_int_equal(st.bytes[0], total);
		assert_int_equal(st.bytes[1], total);
	}
	free(src[0]);
	free(src[1]);
}

/* The guest's end closes: what it sent last still reaches the host's end,
 * which then sees EOF; the callback comes exactly once. */
static void test_close_propagates(void **state)
{
	struct fx *f = *state;
	uint8_t msg[1000], buf[16];
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
	int eof = 0;

	assert_int_equal(ug_proxy_start(f->p), 0);
	fill_random(msg, sizeof(msg), 3);
	assert_int_equal(peer_write(f, 0, msg, sizeof(msg)), sizeof(msg));
	close(f->peer[0]);
	f->peer[0] = -1;
	while (!eof && g_get_monotonic_time() < deadline) {
		ssize_t n;

		while (g_main_context_iteration(f->ctx, FALSE))
			;
		peer_read(f, 1);
		n = read(f->peer[1], buf, sizeof(buf));
		if (n == 0)
			eof = 1;
		else if (n > 0)
			g_byte_array_append(f->got[1], buf, (guint)n);
		else
			g_usleep(1000);
	}
	assert_true(eof);
	assert_same(f->sent[0], f->got[1]);
	for (int i = 0; i < 20; i++) {
		while (g_main_context_iteration(f->ctx, FALSE))
			;
		g_usleep(1000);
	}
	assert_int_equal(f->closed, 1);
	assert_int_equal(f->closed_side, UG_DIR_G2H);
	assert_int_equal(f->closed_error, 0);
	assert_non_null(strstr(f->closed_msg, "guest leg"));
}

/* The host's end stops reading while the guest's end writes as fast as it
 * can: the proxy pauses the guest leg, so its queue stays near the high
 * mark instead of growing with what was sent; once the host's end reads
 * again, every byte arrives in order. */
static void test_backpressure(void **state)
{
	struct fx *f = *state;
	const size_t high = 256u * 1024u, low = 64u * 1024u;
	const size_t total = 32u * 1024u * 1024u;
	uint8_t *src = malloc(total);
	size_t off = 0;
	int idle = 0;
	struct ug_proxy_stats st;
	gint64 deadline;

	assert_int_equal(ug_proxy_set_watermarks(f->p, high, low), 0);
	assert_int_equal(ug_proxy_start(f->p), 0);
	fill_random(src, total, 11);
	f->reading[1] = 0;
	/* Write until the kernel stops taking: everything backs up. */
	deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
	while (off < total && idle < 200 && g_get_monotonic_time() < deadline) {
		size_t n = peer_write(f, 0, src + off, total - off < 65536 ? total - off : 65536);

		off += n;
		spin(f);
		idle = n ? 0 : idle + 1;
		if (n == 0)
			g_usleep(1000);
	}
	assert_true(off < total);       /* the writer was held back */
	ug_proxy_get_stats(f->p, &st);
	assert_true(st.pauses >= 1);
	/* One read of at most 64 KiB per dispatch may land after the high mark. */
	assert_true(f->max_pending <= high + 8u * 65536u);
	assert_true(st.max_pending <= high + 8u * 65536u);
	/* Drain: the host's end reads again, the writer finishes. */
	f->reading[1] = 1;
	deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
	while (f->got[1]->len < total && g_get_monotonic_time() < deadline) {
		if (off < total)
			off += peer_write(f, 0, src + off, total - off < 65536 ? total - off : 65536);
		spin(f);
	}
	assert_int_equal(f->got[1]->len, total);
	assert_memory_equal(f->got[1]->data, src, total);
	assert_same(f->sent[0], f->tapped[UG_DIR_G2H]);
	assert_true(f->max_pending <= high + 8u * 65536u);
	free(src);
}

static void test_bad_arguments(void **state)
{
	struct fx *f = *state;

	(void)state;
	assert_null(ug_proxy_new(NULL, NULL));
	assert_int_equal(ug_proxy_set_watermarks(f->p, 10, 20), UG_E_INVAL);
	assert_int_equal(ug_proxy_start(f->p), 0);
	assert_int_equal(ug_proxy_start(f->p), UG_E_STATE);
	ug_proxy_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forward_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_propagates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
