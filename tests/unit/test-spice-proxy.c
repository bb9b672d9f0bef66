/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-spice-proxy.c: the SPICE proxy between a loopback client and a loopback server: unchanged bytes, decoded usbredir, failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "buf.h"
#include "common.h"
#include "spice-codec.h"

/*
 * The server and the client are real sockets (ug_listener, ug_connector) on
 * 127.0.0.1 playing recorded-style byte streams built with the codec: the
 * client's link, ticket and spicevmc messages, the server's reply, result
 * and spicevmc messages (LZ4 above 1000 bytes). The proxy in between must
 * hand each side exactly the other's bytes, and decode the usbredir bytes.
 */

struct side_bytes {
	struct ug_buf sent;     /* what this side sends */
	struct ug_buf got;      /* what it received */
	ug_transport *t;
};

struct fixture {
	GMainLoop *loop;
	struct side_bytes client, server;
	ug_listener *server_listener;
	ug_connector *connector;
	ug_spice_proxy *proxy;
	struct ug_buf usb[2];   /* decoded, by enum ug_dir */
	unsigned links, closed, lz4;
	int closed_error;
	char label[256];
	uint8_t *payload[2];
	size_t payload_len[2];
};

static void build(struct fixture *f)
{
	struct ug_spice_link_mess m;
	struct ug_spice_link_reply r;
	uint8_t tmp[512];
	uint64_t cs = 0, ss = 0;
	size_t len;

	memset(&m, 0, sizeof(m));
	memset(&r, 0, sizeof(r));
	ug_buf_init(&f->client.sent, 16u << 20);
	ug_buf_init(&f->server.sent, 16u << 20);
	ug_buf_init(&f->client.got, 16u << 20);
	ug_buf_init(&f->server.got, 16u << 20);
	ug_buf_init(&f->usb[0], 16u << 20);
	ug_buf_init(&f->usb[1], 16u << 20);
	m.connection_id = 77;
	m.channel_type = SPICE_CHANNEL_USBREDIR;
	m.channel_id = 1;
	ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION);
	ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_AUTH_SPICE);
	ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_MINI_HEADER);
	ug_spice_cap_set(m.caps.channel, &m.caps.num_channel, SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4);
	r.caps = m.caps;
	assert_int_equal(ug_spice_link_mess_encode(&m, tmp, sizeof(tmp), &len), 0);
	ug_buf_append(&f->client.sent, tmp, len);
	assert_int_equal(ug_spice_link_reply_encode(&r, tmp, sizeof(tmp), &len), 0);
	ug_buf_append(&f->server.sent, tmp, len);
	ug_put_le32(tmp, 1);
	ug_buf_append(&f->client.sent, tmp, 4);
	memset(tmp, 'T', UG_SPICE_TICKET_SIZE);
	ug_buf_append(&f->client.sent, tmp, UG_SPICE_TICKET_SIZE);
	ug_put_le32(tmp, 0);
	ug_buf_append(&f->server.sent, tmp, 4);
	for (int d = 0; d < 2; d++) {
		f->payload_len[d] = d ? 300000 : 70000;
		f->payload[d] = malloc(f->payload_len[d]);
		for (size_t i = 0; i < f->payload_len[d]; i++)
			f->payload[d][i] = (uint8_t)((i / 5) ^ (d ? 0x5a : 0));
	}
	/* UG_DIR_H2G: the client's usbredir bytes; UG_DIR_G2H: the server's. */
	assert_int_equal(ug_spice_vmc_append(&f->client.sent, 1, &cs, 1, 65536,
	                                     f->payload[UG_DIR_H2G], f->payload_len[UG_DIR_H2G]), 0);
	assert_int_equal(ug_spice_vmc_append(&f->server.sent, 1, &ss, 1, 65536,
	                                     f->payload[UG_DIR_G2H], f->payload_len[UG_DIR_G2H]), 0);
}

static int done(const struct fixture *f)
{
	return f->client.got.len == f->server.sent.len && f->server.got.len == f->client.sent.len;
}

static void on_bytes(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct side_bytes *s = user_data;

	(void)t;
	assert_int_equal(ug_buf_append(&s->got, data, len), 0);
}

static void on_side_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	(void)t;
	(void)error;
	(void)message;
	(void)user_data;
}

static void on_server_accept(ug_listener *l, ug_transport *t, void *user_data)
{
	struct fixture *f = user_data;

	(void)l;
	f->server.t = t;
	ug_transport_set_callbacks(t, on_bytes, on_side_closed, &f->server);
	assert_int_equal(ug_transport_send(t, ug_buf_peek(&f->server.sent), f->server.sent.len), 0);
}

static void on_client_connected(ug_connector *c, ug_transport *t, int error, const char *message,
                                void *user_data)
{
	struct fixture *f = user_data;

	(void)c;
	(void)message;
	assert_int_equal(error, 0);
	f->client.t = t;
	ug_transport_set_callbacks(t, on_bytes, on_side_closed, &f->client);
	assert_int_equal(ug_transport_send(t, ug_buf_peek(&f->client.sent), f->client.sent.len), 0);
}

static void on_event(ug_spice_proxy *p, unsigned conn, const char *label,
                     const struct ug_spice_stream_event *ev, uint64_t ts_ns, void *user_data)
{
	struct fixture *f = user_data;

	(void)p;
	(void)conn;
	assert_true(ts_ns > 0);
	if (ev->type == UG_SPICE_STREAM_LINK)
		f->links++;
	if (ev->type == UG_SPICE_STREAM_USBREDIR_DATA) {
		assert_int_equal(ug_buf_append(&f->usb[ev->dir], ev->data, ev->len), 0);
		f->lz4 += (unsigned)ev->compressed;
	}
	assert_true(ev->type != UG_SPICE_STREAM_ERROR && ev->type != UG_SPICE_STREAM_USBREDIR_GAP);
	snprintf(f->label, sizeof(f->label), "%s", label);
}

static void on_conn_closed(ug_spice_proxy *p, unsigned conn, const char *label, int error,
                           const char *message, void *user_data)
{
	struct fixture *f = user_data;

	(void)p;
	(void)conn;
	(void)message;
	f->closed++;
	f->closed_error = error;
	snprintf(f->label, sizeof(f->label), "%s", label);
}

static gboolean on_timeout(gpointer user_data)
{
	fail_msg("timed out");
	(void)user_data;
	return G_SOURCE_REMOVE;
}

static void iterate_until(struct fixture *f, int (*cond)(const struct fixture *))
{
	guint to = g_timeout_add_seconds(20, on_timeout, f);

	while (!cond(f))
		g_main_context_iteration(NULL, TRUE);
	g_source_remove(to);
}

static int is_closed(const struct fixture *f)
{
	return f->closed > 0;
}

static void test_forward_and_decode(void **state)
{
	struct fixture f;
	struct ug_address la, sa;
	struct ug_spice_proxy_stats st;
	char err[256], want[300], addr[UG_ADDRESS_TEXT_MAX];

	(void)state;
	memset(&f, 0, sizeof(f));
	build(&f);
	assert_int_equal(ug_address_parse("127.0.0.1:0", &la, err, sizeof(err)), 0);
	f.server_listener = ug_listener_new();
	assert_int_equal(ug_listener_open(f.server_listener, &la, on_server_accept, &f), 0);
	sa = *ug_listener_address(f.server_listener);
	f.proxy = ug_spice_proxy_new();
	ug_spice_proxy_set_callbacks(f.proxy, on_event, on_conn_closed, &f);
	assert_int_equal(ug_spice_proxy_start(f.proxy, &la, &sa), 0);
	assert_int_equal(ug_spice_proxy_start(f.proxy, &la, &sa), UG_E_STATE);
	f.connector = ug_connector_new(ug_spice_proxy_address(f.proxy));
	assert_int_equal(ug_connector_start(f.connector, on_client_connected, &f), 0);
	iterate_until(&f, done);
	/* Every byte unchanged, both ways. */
	assert_memory_equal(ug_buf_peek(&f.client.got), ug_buf_peek(&f.server.sent),
	                    f.server.sent.len);
	assert_memory_equal(ug_buf_peek(&f.server.got), ug_buf_peek(&f.client.sent),
	                    f.client.sent.len);
	/* Decoded: client -> server is host -> guest. */
	ug_transport_free(f.client.t);
	iterate_until(&f, is_closed);
	assert_int_equal(f.links, 1);
	for (int d = 0; d < 2; d++) {
		assert_int_equal(f.usb[d].len, f.payload_len[d]);
		assert_memory_equal(ug_buf_peek(&f.usb[d]), f.payload[d], f.payload_len[d]);
	}
	assert_true(f.lz4 >= 2);
	snprintf(want, sizeof(want), "spice usbredir channel 1 (%s)",
	         ug_address_format(&sa, addr, sizeof(addr)));
	assert_string_equal(f.label, want);
	ug_spice_proxy_get_stats(f.proxy, &st);
	assert_int_equal(st.connections, 1);
	assert_int_equal(st.active, 0);
	assert_int_equal(st.bytes[0], f.client.sent.len);
	assert_int_equal(st.bytes[1], f.server.sent.len);
	ug_spice_proxy_free(f.proxy);
	ug_transport_free(f.server.t);
	ug_listener_free(f.server_listener);
	ug_connector_free(f.connector);
	for (int d = 0; d < 2; d++) {
		ug_buf_release(&f.usb[d]);
		free(f.payload[d]);
	}
	ug_buf_release(&f.client.sent);
	ug_buf_release(&f.client.got);
	ug_buf_release(&f.server.sent);
	ug_buf_release(&f.server.got);
}

static int client_connected(const struct fixture *f)
{
	return f->client.t != NULL;
}

/* A server that cannot be reached: the client's connection is closed and reported. */
static void test_server_unreachable(void **state)
{
	struct fixture f;
	struct ug_address la, sa;
	struct ug_spice_proxy_stats st;
	char err[256];
	ug_listener *gone = ug_listener_new();

	(void)state;
	memset(&f, 0, sizeof(f));
	build(&f);
	assert_int_equal(ug_address_parse("127.0.0.1:0", &la, err, sizeof(err)), 0);
	/* A port that was free a moment ago and is closed now. */
	assert_int_equal(ug_listener_open(gone, &la, on_server_accept, &f), 0);
	sa = *ug_listener_address(gone);
	ug_listener_free(gone);
	f.proxy = ug_spice_proxy_new();
	ug_spice_proxy_set_callbacks(f.proxy, on_event, on_conn_closed, &f);
	assert_int_equal(ug_spice_proxy_start(f.proxy, &la, &sa), 0);
	f.connector = ug_connector_new(ug_spice_proxy_address(f.proxy));
	assert_int_equal(ug_connector_start(f.connector, on_client_connected, &f), 0);
	iterate_until(&f, client_connected);
	iterate_until(&f, is_closed);
	assert_true(f.closed_error < 0);
	ug_spice_proxy_get_stats(f.proxy, &st);
	assert_int_equal(st.connect_failures, 1);
	assert_int_equal(f.links, 0);
	ug_spice_proxy_free(f.proxy);
	ug_transport_free(f.client.t);
	ug_connector_free(f.connector);
	for (int d = 0; d < 2; d++) {
		ug_buf_release(&f.usb[d]);
		free(f.payload[d]);
	}
	ug_buf_release(&f.client.sent);
	ug_buf_release(&f.client.got);
	ug_buf_release(&f.server.sent);
	ug_buf_release(&f.server.got);
}

static void test_bad_tls_files(void **state)
{
	ug_spice_proxy *p = ug_spice_proxy_new();
	struct ug_address la;
	char err[256];

	(void)state;
	assert_int_equal(ug_address_parse("127.0.0.1:0", &la, err, sizeof(err)), 0);
	assert_int_equal(ug_spice_proxy_start_tls(p, &la, &la), UG_E_STATE);
	assert_int_equal(ug_spice_proxy_set_tls(p, "/nonexistent/cert.pem", "/nonexistent/key.pem",
	                                        NULL), UG_E_TLS);
	assert_non_null(strstr(ug_spice_proxy_errmsg(p), "/nonexistent/cert.pem"));
	assert_int_equal(ug_spice_proxy_set_limits(p, 0, 10), UG_E_INVAL);
	ug_spice_proxy_free(p);
	ug_spice_proxy_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_and_decode),
		cmocka_unit_test(test_server_unreachable),
		cmocka_unit_test(test_bad_tls_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
