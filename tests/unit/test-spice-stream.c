/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-spice-stream.c: unit tests of the passive SPICE connection decoder (lib/spice-stream.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <lz4.h>

#include "buf.h"
#include "common.h"
#include "spice-codec.h"
#include "spice-stream.h"

/*
 * Sessions are built with the codec's encoders around real usbredir bytes:
 * tests/data/usbredir-seabios-kbd.h2g and .g2h, the two streams of a QEMU
 * 7.2 session (SeaBIOS enumerating a keyboard), so the de-framed streams can
 * also be decoded as usbredir.
 */

static void load(const char *name, struct ug_buf *out)
{
	const char *src = getenv("UG_SRCDIR");
	char path[4096];
	uint8_t tmp[4096];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/data/%s", src ? src : "..", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	ug_buf_init(out, 1u << 20);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		assert_int_equal(ug_buf_append(out, tmp, n), 0);
	fclose(f);
}

struct opts {
	int mini;
	int auth_sel;
	int lz4;
	size_t chunk;           /* payload bytes per spicevmc message */
	unsigned channel_type;
	uint32_t link_error;
	uint32_t result;
};

struct session {
	struct ug_buf c2s, s2c;
	size_t c2s_data, s2c_data; /* offsets where the data phase starts */
};

static void build(const struct opts *o, const uint8_t *h2g, size_t h2g_len, const uint8_t *g2h,
                  size_t g2h_len, struct session *ss)
{
	struct ug_spice_link_mess m;
	struct ug_spice_link_reply r;
	uint8_t tmp[512], ticket[UG_SPICE_TICKET_SIZE];
	uint64_t cser = 0, sser = 0;
	size_t len;

	memset(&m, 0, sizeof(m));
	memset(&r, 0, sizeof(r));
	ug_buf_init(&ss->c2s, 64u << 20);
	ug_buf_init(&ss->s2c, 64u << 20);
	m.connection_id = 0x1234abcd;
	m.channel_type = (uint8_t)o->channel_type;
	m.channel_id = 1;
	if (o->auth_sel)
		ug_spice_cap_set(m.caps.common, &m.caps.num_common,
		                 SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION);
	ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_AUTH_SPICE);
	if (o->mini)
		ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_MINI_HEADER);
	ug_spice_cap_set(m.caps.channel, &m.caps.num_channel, SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4);
	r.error = o->link_error;
	if (!o->link_error) {
		r.caps = m.caps;
		for (size_t i = 0; i < sizeof(r.pub_key); i++)
			r.pub_key[i] = (uint8_t)i;
	}
	assert_int_equal(ug_spice_link_mess_encode(&m, tmp, sizeof(tmp), &len), 0);
	assert_int_equal(ug_buf_append(&ss->c2s, tmp, len), 0);
	assert_int_equal(ug_spice_link_reply_encode(&r, tmp, sizeof(tmp), &len), 0);
	assert_int_equal(ug_buf_append(&ss->s2c, tmp, len), 0);
	if (o->link_error) {
		ss->c2s_data = ss->c2s.len;
		ss->s2c_data = ss->s2c.len;
		return;
	}
	if (o->auth_sel) {
		ug_put_le32(tmp, 1);
		assert_int_equal(ug_buf_append(&ss->c2s, tmp, 4), 0);
	}
	/* A ticket full of a recognisable secret: it must never come out. */
	memset(ticket, 'S', sizeof(ticket));
	assert_int_equal(ug_buf_append(&ss->c2s, ticket, sizeof(ticket)), 0);
	ug_put_le32(tmp, o->result);
	assert_int_equal(ug_buf_append(&ss->s2c, tmp, 4), 0);
	ss->c2s_data = ss->c2s.len;
	ss->s2c_data = ss->s2c.len;
	if (o->result)
		return;
	/* A PING from the server and the PONG, as on every real channel. */
	memset(tmp, 0, 40);
	ug_put_le32(tmp, 1);
	assert_int_equal(ug_spice_msg_append(&ss->s2c, o->mini, &sser, SPICE_MSG_PING, tmp, 40), 0);
	assert_int_equal(ug_spice_msg_append(&ss->c2s, o->mini, &cser, SPICE_MSGC_PONG, tmp, 12), 0);
	assert_int_equal(ug_spice_vmc_append(&ss->c2s, o->mini, &cser, o->lz4, o->chunk, h2g, h2g_len),
	                 0);
	assert_int_equal(ug_spice_vmc_append(&ss->s2c, o->mini, &sser, o->lz4, o->chunk, g2h, g2h_len),
	                 0);
}

static void session_free(struct session *ss)
{
	ug_buf_release(&ss->c2s);
	ug_buf_release(&ss->s2c);
}

struct result {
	struct ug_buf usb[2];   /* by enum ug_dir */
	unsigned links, main_inits, channel_lists, gaps, notices, errors, lz4;
	unsigned link_type, link_id, link_mini;
	uint32_t session;
	int last_code;
	uint64_t gap_len_total;
	char log[8192];
};

static void result_init(struct result *res)
{
	memset(res, 0, sizeof(*res));
	ug_buf_init(&res->usb[0], 64u << 20);
	ug_buf_init(&res->usb[1], 64u << 20);
}

static void result_free(struct result *res)
{
	ug_buf_release(&res->usb[0]);
	ug_buf_release(&res->usb[1]);
}

static void drain(ug_spice_stream *s, struct result *res)
{
	struct ug_spice_stream_event ev;
	int r;

	while ((r = ug_spice_stream_next(s, &ev)) > 0) {
		size_t l = strlen(res->log);

		if (ev.message[0] && l < sizeof(res->log) - 300)
			snprintf(res->log + l, sizeof(res->log) - l, "%d: %s\n", ev.type, ev.message);
		switch (ev.type) {
		case UG_SPICE_STREAM_LINK:
			res->links++;
			res->link_type = ev.channel_type;
			res->link_id = ev.channel_id;
			res->link_mini = (unsigned)ev.mini;
			res->session = ev.session_id;
			res->last_code = ev.code;
			break;
		case UG_SPICE_STREAM_MAIN_INIT:
			res->main_inits++;
			res->session = ev.session_id;
			break;
		case UG_SPICE_STREAM_CHANNELS:
			res->channel_lists++;
			break;
		case UG_SPICE_STREAM_USBREDIR_DATA:
			assert_int_equal(ev.usbredir_offset, res->usb[ev.dir].len);
			assert_int_equal(ev.dir, ev.from_server ? UG_DIR_G2H : UG_DIR_H2G);
			assert_int_equal(ug_buf_append(&res->usb[ev.dir], ev.data, ev.len), 0);
			res->lz4 += (unsigned)ev.compressed;
			break;
		case UG_SPICE_STREAM_USBREDIR_GAP:
			res->gaps++;
			res->gap_len_total += ev.gap_len;
			res->last_code = ev.code;
			break;
		case UG_SPICE_STREAM_NOTICE:
			res->notices++;
			res->last_code = ev.code;
			break;
		case UG_SPICE_STREAM_ERROR:
			res->errors++;
			res->last_code = ev.code;
			break;
		}
	}
	assert_int_equal(r, 0);
}

/* Feeds c2s then s2c in pieces of step bytes (0: whole), alternating sides
 * per piece when interleave is set. */
static void run(ug_spice_stream *s, const struct session *ss, size_t step, int interleave,
                struct result *res)
{
	size_t off[2] = { 0, 0 };
	const struct ug_buf *b[2] = { &ss->c2s, &ss->s2c };

	for (int side = 0; side < 2; side++)
		if (step == 0)
			step = b[side]->len > step ? b[side]->len : step;
	if (!interleave) {
		for (int side = 0; side < 2; side++) {
			while (off[side] < b[side]->len) {
				size_t n = b[side]->len - off[side] < step ? b[side]->len - off[side]
				                                            : step;

				assert_int_equal(ug_spice_stream_feed(s, side, ug_buf_peek(b[side]) +
				                                                 off[side], n), 0);
				off[side] += n;
				drain(s, res);
			}
		}
	} else {
		while (off[0] < b[0]->len || off[1] < b[1]->len) {
			for (int side = 0; side < 2; side++) {
				size_t n = b[side]->len - off[side] < step ? b[side]->len - off[side]
				                                            : step;

				if (n == 0)
					continue;
				assert_int_equal(ug_spice_stream_feed(s, side, ug_buf_peek(b[side]) +
				                                                 off[side], n), 0);
				off[side] += n;
				drain(s, res);
			}
		}
	}
	for (int side = 0; side < 2; side++) {
		assert_int_equal(ug_spice_stream_end(s, side), 0);
		drain(s, res);
	}
}

static const struct opts default_opts = {
	.mini = 1, .auth_sel = 1, .lz4 = 1, .chunk = 400, .channel_type = SPICE_CHANNEL_USBREDIR,
};

/* Counts the usbredir packets in one stream of a session with the codec. */
static unsigned count_packets(const struct ug_buf *h2g, const struct ug_buf *g2h)
{
	ug_usbredir_session *u = ug_usbredir_session_new();
	struct ug_usbredir_packet pkt;
	unsigned n = 0;
	int r;

	assert_non_null(u);
	/* The host's hello first, then the guest's: each side needs both for the caps. */
	for (int round = 0; round < 2; round++) {
		const struct ug_buf *b = round == 0 ? g2h : h2g;
		enum ug_dir dir = round == 0 ? UG_DIR_G2H : UG_DIR_H2G;

		assert_int_equal(ug_usbredir_session_feed(u, dir, ug_buf_peek(b), b->len), 0);
		while ((r = ug_usbredir_session_next(u, dir, &pkt)) > 0)
			n++;
		assert_true(r == 0 || r == UG_E_STATE);
	}
	ug_usbredir_session_free(u);
	return n;
}

static void check_stream(const struct opts *o, size_t step, int interleave)
{
	struct ug_buf h2g, g2h;
	struct session ss;
	struct result res;
	ug_spice_stream *s = ug_spice_stream_new();

	assert_non_null(s);
	load("usbredir-seabios-kbd.h2g", &h2g);
	load("usbredir-seabios-kbd.g2h", &g2h);
	build(o, ug_buf_peek(&h2g), h2g.len, ug_buf_peek(&g2h), g2h.len, &ss);
	result_init(&res);
	run(s, &ss, step, interleave, &res);
	assert_int_equal(res.links, 1);
	assert_int_equal(res.link_type, SPICE_CHANNEL_USBREDIR);
	assert_int_equal(res.link_id, 1);
	assert_int_equal(res.link_mini, (unsigned)o->mini);
	assert_int_equal(res.session, 0x1234abcd);
	assert_int_equal(res.errors + res.gaps + res.notices, 0);
	assert_int_equal(res.usb[UG_DIR_H2G].len, h2g.len);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_H2G]), ug_buf_peek(&h2g), h2g.len);
	assert_int_equal(res.usb[UG_DIR_G2H].len, g2h.len);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_G2H]), ug_buf_peek(&g2h), g2h.len);
	assert_int_equal(count_packets(&res.usb[UG_DIR_H2G], &res.usb[UG_DIR_G2H]),
	                 count_packets(&h2g, &g2h));
	assert_true(count_packets(&h2g, &g2h) > 10);
	/* The ticket never comes out, not even in a message. */
	assert_null(strstr(res.log, "SSSS"));
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
	ug_buf_release(&h2g);
	ug_buf_release(&g2h);
}

static void test_mini_whole(void **state)
{
	(void)state;
	check_stream(&default_opts, 0, 0);
}

static void test_full_headers(void **state)
{
	struct opts o = default_opts;

	(void)state;
	o.mini = 0;
	check_stream(&o, 0, 0);
	check_stream(&o, 7, 1);
}

static void test_no_auth_selection(void **state)
{
	struct opts o = default_opts;

	(void)state;
	o.auth_sel = 0;
	check_stream(&o, 0, 1);
}

static void test_one_byte_at_a_time(void **state)
{
	struct opts o = default_opts;

	(void)state;
	check_stream(&o, 1, 0);
	check_stream(&o, 1, 1);
	o.mini = 0;
	check_stream(&o, 1, 1);
}

static void test_split_sizes(void **state)
{
	struct opts o = default_opts;

	(void)state;
	/* Packets split across SPICE messages (chunk 50 and 1) and messages split across feeds. */
	for (size_t chunk = 1; chunk <= 1100; chunk = chunk * 3 + 49) {
		o.chunk = chunk;
		for (size_t step = 1; step < 300; step = step * 5 + 2)
			check_stream(&o, step, (int)(step & 1));
	}
}

/* LZ4 both ways with payloads well above the 1000-byte threshold. */
static void test_lz4_both_ways(void **state)
{
	uint8_t *a = malloc(70000), *b = malloc(5000);
	struct opts o = default_opts;
	struct session ss;
	struct result res;
	ug_spice_stream *s = ug_spice_stream_new();

	(void)state;
	for (size_t i = 0; i < 70000; i++)
		a[i] = (uint8_t)(i / 7 + (i % 13 == 0 ? i : 0));
	for (size_t i = 0; i < 5000; i++)
		b[i] = (uint8_t)(i % 251);
	o.chunk = 65536;
	build(&o, a, 70000, b, 5000, &ss);
	result_init(&res);
	run(s, &ss, 1000, 1, &res);
	assert_int_equal(res.errors + res.gaps, 0);
	assert_int_equal(res.usb[UG_DIR_H2G].len, 70000);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_H2G]), a, 70000);
	assert_int_equal(res.usb[UG_DIR_G2H].len, 5000);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_G2H]), b, 5000);
	assert_true(res.lz4 >= 3);
	{
		struct ug_spice_stream_stats st;

		ug_spice_stream_get_stats(s, &st);
		assert_true(st.lz4_messages[UG_DIR_H2G] >= 2);
		assert_true(st.lz4_messages[UG_DIR_G2H] >= 1);
		assert_int_equal(st.usbredir_bytes[UG_DIR_H2G], 70000);
	}
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
	free(a);
	free(b);
}

/* A main channel: MAIN_INIT and CHANNELS_LIST from the server become events. */
static void test_main_channel(void **state)
{
	struct opts o = default_opts;
	struct session ss;
	struct result res;
	struct ug_spice_main_init mi = { .session_id = 0x55aa1234 };
	struct ug_spice_channel_id ids[3] = { { 1, 0 }, { 9, 0 }, { 9, 1 } };
	uint8_t body[32];
	uint64_t serial = 100;
	ug_spice_stream *s = ug_spice_stream_new();

	(void)state;
	o.channel_type = SPICE_CHANNEL_MAIN;
	build(&o, NULL, 0, NULL, 0, &ss);
	ug_spice_main_init_encode(&mi, body);
	assert_int_equal(ug_spice_msg_append(&ss.s2c, 1, &serial, SPICE_MSG_MAIN_INIT, body, 32), 0);
	assert_int_equal(ug_spice_msg_append(&ss.c2s, 1, &serial, SPICE_MSGC_MAIN_ATTACH_CHANNELS,
	                                     NULL, 0), 0);
	{
		struct ug_buf l;

		ug_buf_init(&l, 4096);
		assert_int_equal(ug_spice_channels_list_encode(ids, 3, &l), 0);
		assert_int_equal(ug_spice_msg_append(&ss.s2c, 1, &serial, SPICE_MSG_MAIN_CHANNELS_LIST,
		                                     ug_buf_peek(&l), l.len), 0);
		ug_buf_release(&l);
	}
	result_init(&res);
	run(s, &ss, 3, 1, &res);
	assert_int_equal(res.links, 1);
	assert_int_equal(res.link_type, SPICE_CHANNEL_MAIN);
	assert_int_equal(res.main_inits, 1);
	assert_int_equal(res.session, 0x55aa1234);
	assert_int_equal(res.channel_lists, 1);
	assert_int_equal(res.errors + res.gaps + res.notices, 0);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

/* Other channels are counted and skipped. */
static void test_other_channel(void **state)
{
	struct opts o = default_opts;
	struct session ss;
	struct result res;
	struct ug_spice_stream_stats st;
	uint8_t junk[3000];
	ug_spice_stream *s = ug_spice_stream_new();

	(void)state;
	memset(junk, 7, sizeof(junk));
	o.channel_type = SPICE_CHANNEL_DISPLAY;
	build(&o, junk, sizeof(junk), junk, 100, &ss);
	result_init(&res);
	run(s, &ss, 0, 0, &res);
	assert_int_equal(res.links, 1);
	assert_int_equal(res.usb[0].len + res.usb[1].len, 0);
	ug_spice_stream_get_stats(s, &st);
	assert_true(st.skipped_messages[0] >= 2);
	assert_int_equal(st.messages[1], st.skipped_messages[1]);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

static void test_link_refused(void **state)
{
	struct opts o = default_opts;
	struct session ss;
	struct result res;
	ug_spice_stream *s = ug_spice_stream_new();

	(void)state;
	o.link_error = SPICE_LINK_ERR_NEED_SECURED;
	build(&o, NULL, 0, NULL, 0, &ss);
	result_init(&res);
	run(s, &ss, 0, 1, &res);
	assert_int_equal(res.links, 1);
	assert_int_equal(res.last_code, ug_spice_link_error_code(SPICE_LINK_ERR_NEED_SECURED));
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);

	/* A bad link result (wrong password). */
	o.link_error = 0;
	o.result = SPICE_LINK_ERR_PERMISSION_DENIED;
	s = ug_spice_stream_new();
	build(&o, NULL, 0, NULL, 0, &ss);
	result_init(&res);
	run(s, &ss, 5, 1, &res);
	assert_int_equal(res.errors, 1);
	assert_non_null(strstr(res.log, "link result 7"));
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

/* A client that picks SASL: the stream says so and decodes nothing more. */
static void test_sasl_unsupported(void **state)
{
	struct opts o = default_opts;
	struct session ss;
	struct result res;
	static const uint8_t h2g[4] = { 1, 2, 3, 4 };
	ug_spice_stream *s = ug_spice_stream_new();

	(void)state;
	build(&o, h2g, sizeof(h2g), h2g, sizeof(h2g), &ss);
	/* The mechanism word precedes the ticket, which ends the link phase. */
	ug_put_le32(ss.c2s.data + ss.c2s.start + ss.c2s_data - UG_SPICE_TICKET_SIZE - 4,
	            SPICE_COMMON_CAP_AUTH_SASL);
	result_init(&res);
	run(s, &ss, 7, 1, &res);
	assert_int_equal(res.errors, 1);
	assert_int_equal(res.last_code, UG_E_UNSUPPORTED);
	assert_non_null(strstr(res.log, "auth mechanism 2 (SASL)"));
	assert_int_equal(res.usb[UG_DIR_H2G].len + res.usb[UG_DIR_G2H].len, 0);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

static void test_tls(void **state)
{
	static const uint8_t hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc };
	struct result res;
	struct ug_spice_stream_stats st;
	ug_spice_stream *s = ug_spice_stream_new();

	(void)state;
	result_init(&res);
	assert_int_equal(ug_spice_stream_feed(s, 0, hello, sizeof(hello)), 0);
	drain(s, &res);
	assert_int_equal(ug_spice_stream_feed(s, 1, hello, sizeof(hello)), 0);
	drain(s, &res);
	assert_int_equal(res.errors, 1);
	assert_int_equal(res.last_code, UG_E_ENCRYPTED);
	ug_spice_stream_get_stats(s, &st);
	assert_int_equal(st.encrypted, 1);
	assert_int_equal(st.bytes[0] + st.bytes[1], 2 * sizeof(hello));
	ug_spice_stream_free(s);
	result_free(&res);
}

/* Bad magic and a bad major version are errors, not crashes. */
static void test_bad_magic_version(void **state)
{
	struct session ss;
	struct result res;
	ug_spice_stream *s;

	(void)state;
	build(&default_opts, NULL, 0, NULL, 0, &ss);
	ug_put_le32(ss.c2s.data + ss.c2s.start + 4, 3);
	s = ug_spice_stream_new();
	result_init(&res);
	run(s, &ss, 0, 0, &res);
	assert_true(res.errors >= 1);
	assert_non_null(strstr(res.log, "SPICE version 3"));
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);

	build(&default_opts, NULL, 0, NULL, 0, &ss);
	memcpy(ss.s2c.data + ss.s2c.start, "REDX", 4);
	s = ug_spice_stream_new();
	result_init(&res);
	run(s, &ss, 0, 0, &res);
	assert_true(res.notices + res.errors >= 1);
	assert_int_equal(res.links, 0);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

/* Hostile sizes: a link body of 0xFFFFFFFF, impossible cap counts, messages of
 * 0xFFFFFFFF and 0 bytes, LZ4 claiming huge sizes, corrupt LZ4. */
static void test_hostile_sizes(void **state)
{
	struct session ss;
	struct result res;
	ug_spice_stream *s;
	uint8_t msg[64];
	uint64_t serial = 0;

	(void)state;
	/* Link size 0xFFFFFFFF. */
	build(&default_opts, NULL, 0, NULL, 0, &ss);
	ug_put_le32(ss.c2s.data + ss.c2s.start + 12, 0xffffffffu);
	s = ug_spice_stream_new();
	result_init(&res);
	run(s, &ss, 0, 1, &res);
	assert_true(res.errors >= 1);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);

	/* num_common_caps = 0x40000000 (impossible within the body). */
	build(&default_opts, NULL, 0, NULL, 0, &ss);
	ug_put_le32(ss.c2s.data + ss.c2s.start + 16 + 6, 0x40000000u);
	s = ug_spice_stream_new();
	result_init(&res);
	run(s, &ss, 1, 1, &res);
	assert_true(res.errors >= 1);
	assert_int_equal(res.links, 0);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);

	/* Data messages: size 0xFFFFFFFF (skipped as too big: its body never comes),
	 * size 0, LZ4 claiming 4 GiB, and corrupt LZ4. */
	build(&default_opts, NULL, 0, NULL, 0, &ss);
	ug_spice_header_encode(1, 0, SPICE_MSG_SPICEVMC_DATA, 0, msg);
	assert_int_equal(ug_buf_append(&ss.s2c, msg, 6), 0);
	msg[6] = 1;
	ug_put_le32(msg + 7, 0xffffffffu);
	memset(msg + 11, 0x11, 20);
	ug_spice_header_encode(1, 0, SPICE_MSG_SPICEVMC_COMPRESSED_DATA, 25, msg);
	assert_int_equal(ug_buf_append(&ss.s2c, msg, 31), 0);
	ug_put_le32(msg + 7, 3000);
	assert_int_equal(ug_buf_append(&ss.s2c, msg, 31), 0);
	assert_int_equal(ug_spice_vmc_append(&ss.s2c, 1, &serial, 0, 100, "ok", 2), 0);
	ug_spice_header_encode(1, 0, SPICE_MSG_SPICEVMC_DATA, 0xffffffffu, msg);
	assert_int_equal(ug_buf_append(&ss.s2c, msg, 6), 0);
	assert_int_equal(ug_buf_append(&ss.s2c, "xyz", 3), 0);
	s = ug_spice_stream_new();
	result_init(&res);
	run(s, &ss, 4, 1, &res);
	assert_int_equal(res.gaps, 3);
	assert_int_equal(res.usb[UG_DIR_G2H].len, 2);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_G2H]), "ok", 2);
	assert_int_equal(res.errors, 0);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

/* A gap inside a message body damages that message only; one over a header
 * loses the framing until a resync point. */
static void test_gaps(void **state)
{
	uint8_t data[20000];
	struct opts o = default_opts;
	struct session ss;
	struct result res;
	ug_spice_stream *s;
	size_t at, n;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	o.lz4 = 0;
	o.chunk = 1000;
	build(&o, data, sizeof(data), data, 3000, &ss);

	/* Inside the body of the 3rd DATA message (headers 6 bytes, body 1000). */
	at = ss.c2s_data + 18 + 2 * 1006 + 6 + 100;
	s = ug_spice_stream_new();
	result_init(&res);
	for (int side = 1; side >= 0; side--) {
		const struct ug_buf *b = side ? &ss.s2c : &ss.c2s;

		if (side) {
			assert_int_equal(ug_spice_stream_feed(s, 1, ug_buf_peek(b), b->len), 0);
			drain(s, &res);
			continue;
		}
		assert_int_equal(ug_spice_stream_feed(s, 0, ug_buf_peek(b), at), 0);
		drain(s, &res);
		assert_int_equal(ug_spice_stream_gap(s, 0, 50), 0);
		drain(s, &res);
		assert_int_equal(ug_spice_stream_feed(s, 0, ug_buf_peek(b) + at + 50, b->len - at - 50),
		                 0);
		drain(s, &res);
	}
	assert_int_equal(res.gaps, 1);
	assert_int_equal(res.gap_len_total, 1000);
	assert_int_equal(res.usb[UG_DIR_H2G].len, sizeof(data) - 1000);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_H2G]), data, 2000);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_H2G]) + 2000, data + 3000,
	                    sizeof(data) - 3000);
	ug_spice_stream_free(s);
	result_free(&res);

	/* Over the header of the 5th message and beyond: resync at a later header. */
	at = ss.c2s_data + 18 + 4 * 1006 - 20;
	n = 1500;
	s = ug_spice_stream_new();
	result_init(&res);
	assert_int_equal(ug_spice_stream_feed(s, 1, ug_buf_peek(&ss.s2c), ss.s2c.len), 0);
	drain(s, &res);
	assert_int_equal(ug_spice_stream_feed(s, 0, ug_buf_peek(&ss.c2s), at), 0);
	drain(s, &res);
	assert_int_equal(ug_spice_stream_gap(s, 0, n), 0);
	drain(s, &res);
	for (size_t k = at + n; k < ss.c2s.len; k += 333) {
		size_t m = ss.c2s.len - k < 333 ? ss.c2s.len - k : 333;

		assert_int_equal(ug_spice_stream_feed(s, 0, ug_buf_peek(&ss.c2s) + k, m), 0);
		drain(s, &res);
	}
	assert_int_equal(ug_spice_stream_end(s, 0), 0);
	drain(s, &res);
	assert_true(res.gaps >= 1);
	assert_non_null(strstr(res.log, "resynchronised"));
	/* Messages 1..3 whole; 4 damaged (its end fell in the gap), 5 lost with
	 * its header, 6 cut at its start; the resync point is message 7. */
	assert_int_equal(res.usb[UG_DIR_H2G].len, 3000 + sizeof(data) - 6000);
	assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_H2G]) + 3000, data + 6000,
	                    sizeof(data) - 6000);
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

/* A capture that starts mid-stream: guessed, or as assumed. */
static void test_mid_stream(void **state)
{
	uint8_t data[20000];
	struct opts o = default_opts;
	struct session ss;
	struct result res;
	unsigned type, id;
	ug_spice_stream *s;
	size_t at;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 3);
	o.lz4 = 0;
	o.chunk = 1000;
	for (int mini = 0; mini < 2; mini++) {
		size_t hs = mini ? 6 : 18;

		o.mini = mini;
		build(&o, data, sizeof(data), data, 5000, &ss);
		for (int assume = 0; assume < 2; assume++) {
			s = ug_spice_stream_new();
			if (assume)
				assert_int_equal(ug_spice_stream_assume(s, 9, 3, mini), 0);
			result_init(&res);
			/* Start 500 bytes into the 2nd vmc message on both sides. */
			at = ss.c2s_data + (18 + (mini ? 0 : 12)) + (hs + 1000) + 500;
			assert_int_equal(ug_spice_stream_feed(s, 0, ug_buf_peek(&ss.c2s) + at,
			                                      ss.c2s.len - at), 0);
			drain(s, &res);
			at = ss.s2c_data + (46 + (mini ? 0 : 12)) + (hs + 1000) + 500;
			assert_int_equal(ug_spice_stream_feed(s, 1, ug_buf_peek(&ss.s2c) + at,
			                                      ss.s2c.len - at), 0);
			drain(s, &res);
			for (int side = 0; side < 2; side++) {
				assert_int_equal(ug_spice_stream_end(s, side), 0);
				drain(s, &res);
			}
			assert_int_equal(res.links, 0);
			assert_int_equal(ug_spice_stream_channel(s, &type, &id), 1);
			assert_int_equal(type, 9);
			assert_int_equal(id, assume ? 3 : 0);
			assert_non_null(strstr(res.log, "mid-stream"));
			assert_int_equal(res.usb[UG_DIR_H2G].len, sizeof(data) - 2000);
			assert_memory_equal(ug_buf_peek(&res.usb[UG_DIR_H2G]), data + 2000,
			                    sizeof(data) - 2000);
			assert_int_equal(res.usb[UG_DIR_G2H].len, 3000);
			ug_spice_stream_free(s);
			result_free(&res);
		}
		session_free(&ss);
	}
}

static void test_truncated_and_misuse(void **state)
{
	struct session ss;
	struct result res;
	ug_spice_stream *s = ug_spice_stream_new();
	uint8_t data[3000];

	(void)state;
	memset(data, 1, sizeof(data));
	build(&default_opts, data, sizeof(data), NULL, 0, &ss);
	result_init(&res);
	assert_int_equal(ug_spice_stream_feed(s, 1, ug_buf_peek(&ss.s2c), ss.s2c.len), 0);
	/* Feeding again before next() returned 0 is misuse. */
	assert_int_equal(ug_spice_stream_feed(s, 0, "x", 1), UG_E_STATE);
	drain(s, &res);
	assert_int_equal(ug_spice_stream_feed(s, 0, ug_buf_peek(&ss.c2s), ss.c2s.len - 10), 0);
	drain(s, &res);
	assert_int_equal(ug_spice_stream_end(s, 0), 0);
	drain(s, &res);
	assert_int_equal(res.last_code, UG_E_TRUNCATED);
	assert_int_equal(ug_spice_stream_feed(s, 0, "x", 1), UG_E_STATE);
	assert_int_equal(ug_spice_stream_set_limits(s, 100, 100), UG_E_STATE);
	ug_spice_stream_free(s);
	ug_spice_stream_free(NULL);
	result_free(&res);
	session_free(&ss);
}

/* A client that keeps sending while the server's reply is missing is held, bounded. */
static void test_hold_limit(void **state)
{
	struct session ss;
	struct result res;
	uint8_t data[20000];
	ug_spice_stream *s = ug_spice_stream_new();

	(void)state;
	memset(data, 2, sizeof(data));
	assert_int_equal(ug_spice_stream_set_limits(s, 0, 4096), 0);
	build(&default_opts, data, sizeof(data), NULL, 0, &ss);
	result_init(&res);
	assert_int_equal(ug_spice_stream_feed(s, 0, ug_buf_peek(&ss.c2s), ss.c2s.len), 0);
	drain(s, &res);
	assert_int_equal(res.errors, 1);
	assert_non_null(strstr(res.log, "4096 bytes held"));
	ug_spice_stream_free(s);
	result_free(&res);
	session_free(&ss);
}

static void test_resync_check(void **state)
{
	uint8_t b[64];

	(void)state;
	memset(b, 0, sizeof(b));
	/* Three mini DATA headers chained: 101/4, 101/4, 3 (PONG, 12) from the client. */
	ug_spice_header_encode(1, 0, 101, 4, b);
	ug_spice_header_encode(1, 0, 101, 4, b + 10);
	ug_spice_header_encode(1, 0, 3, 12, b + 20);
	assert_int_equal(ug_spice_stream_resync_check(b, 38, 1, 9, 0, 1000, 3, 0), 1);
	assert_int_equal(ug_spice_stream_resync_check(b, 25, 1, 9, 0, 1000, 3, 0), -1);
	assert_int_equal(ug_spice_stream_resync_check(b, 20, 1, 9, 0, 1000, 3, 1), 1);
	assert_int_equal(ug_spice_stream_resync_check(b + 1, 37, 1, 9, 0, 1000, 3, 0), 0);
	/* A PONG of the wrong size, and a type the server never sends. */
	assert_int_equal(ug_spice_stream_type_plausible(9, 0, 3, 11), 0);
	assert_int_equal(ug_spice_stream_type_plausible(9, 1, 2, 0), 0);
	assert_int_equal(ug_spice_stream_type_plausible(9, 1, 102, 5), 0);
	/* Full headers need serials counting up. */
	ug_spice_header_encode(0, 5, 101, 1, b);
	ug_spice_header_encode(0, 6, 101, 1, b + 19);
	ug_spice_header_encode(0, 8, 101, 1, b + 38);
	assert_int_equal(ug_spice_stream_resync_check(b, 57, 0, 9, 1, 1000, 3, 0), 0);
	ug_spice_header_encode(0, 7, 101, 1, b + 38);
	assert_int_equal(ug_spice_stream_resync_check(b, 57, 0, 9, 1, 1000, 3, 0), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mini_whole),
		cmocka_unit_test(test_full_headers),
		cmocka_unit_test(test_no_auth_selection),
		cmocka_unit_test(test_one_byte_at_a_time),
		cmocka_unit_test(test_split_sizes),
		cmocka_unit_test(test_lz4_both_ways),
		cmocka_unit_test(test_main_channel),
		cmocka_unit_test(test_other_channel),
		cmocka_unit_test(test_link_refused),
		cmocka_unit_test(test_sasl_unsupported),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_bad_magic_version),
		cmocka_unit_test(test_hostile_sizes),
		cmocka_unit_test(test_gaps),
		cmocka_unit_test(test_mid_stream),
		cmocka_unit_test(test_truncated_and_misuse),
		cmocka_unit_test(test_hold_limit),
		cmocka_unit_test(test_resync_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
