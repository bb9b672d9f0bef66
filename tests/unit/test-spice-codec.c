/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-spice-codec.c: unit tests of the SPICE wire codec (lib/spice-codec.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <lz4.h>

#include "buf.h"
#include "common.h"
#include "spice-codec.h"

/* ---- link phase ------------------------------------------------------------ */

static void test_link_mess_round_trip(void **state)
{
	struct ug_spice_link_mess m = { 0 }, d;
	struct ug_spice_link_header h;
	uint8_t out[256];
	char err[UG_ERRMSG_SIZE] = "";
	size_t len;

	m.connection_id = 0x12345678;
	m.channel_type = SPICE_CHANNEL_USBREDIR;
	m.channel_id = 1;
	assert_int_equal(ug_spice_cap_set(m.caps.common, &m.caps.num_common,
	                                  SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION), 0);
	assert_int_equal(ug_spice_cap_set(m.caps.common, &m.caps.num_common,
	                                  SPICE_COMMON_CAP_AUTH_SPICE), 0);
	assert_int_equal(ug_spice_cap_set(m.caps.common, &m.caps.num_common,
	                                  SPICE_COMMON_CAP_MINI_HEADER), 0);
	assert_int_equal(ug_spice_cap_set(m.caps.channel, &m.caps.num_channel,
	                                  SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4), 0);
	assert_int_equal(ug_spice_link_mess_encode(&m, out, sizeof(out), &len), 0);
	assert_int_equal(len, 16 + 18 + 8);
	/* The bytes as spice-gtk sends them for the same channel and caps. */
	static const uint8_t want[] = {
		'R', 'E', 'D', 'Q', 2, 0, 0, 0, 2, 0, 0, 0, 26, 0, 0, 0,
		0x78, 0x56, 0x34, 0x12, 9, 1, 1, 0, 0, 0, 1, 0, 0, 0, 18, 0, 0, 0,
		0x0b, 0, 0, 0, 0x01, 0, 0, 0,
	};
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(ug_spice_link_header_decode(out, len, 4096, &h, err), 0);
	assert_int_equal(h.major, 2);
	assert_int_equal(h.minor, 2);
	assert_int_equal(h.size, 26);
	assert_int_equal(ug_spice_link_mess_decode(out + 16, h.size, &d, err), 0);
	assert_int_equal(d.connection_id, 0x12345678);
	assert_int_equal(d.channel_type, SPICE_CHANNEL_USBREDIR);
	assert_int_equal(d.channel_id, 1);
	assert_int_equal(d.caps.num_common, 1);
	assert_int_equal(d.caps.num_channel, 1);
	assert_true(ug_spice_cap_test(d.caps.common, d.caps.num_common,
	                              SPICE_COMMON_CAP_MINI_HEADER));
	assert_false(ug_spice_cap_test(d.caps.common, d.caps.num_common,
	                               SPICE_COMMON_CAP_AUTH_SASL));
	assert_true(ug_spice_cap_test(d.caps.channel, d.caps.num_channel, 0));
	/* Bits past the words present read as 0. */
	assert_false(ug_spice_cap_test(d.caps.channel, d.caps.num_channel, 40));

	/* Short output: the needed size comes back. */
	assert_int_equal(ug_spice_link_mess_encode(&m, out, 10, &len), UG_E_TOOBIG);
	assert_int_equal(len, 42);
}

static void test_link_mess_bad(void **state)
{
	uint8_t body[40] = { 0 };
	struct ug_spice_link_mess d;
	char err[UG_ERRMSG_SIZE] = "";

	assert_int_equal(ug_spice_link_mess_decode(body, 17, &d, err), UG_E_PROTO);
	assert_non_null(strstr(err, "17"));
	/* caps_offset 18, 1 + 1 cap words but only 4 bytes after the fixed part. */
	ug_put_le32(body + 6, 1);
	ug_put_le32(body + 10, 1);
	ug_put_le32(body + 14, 18);
	assert_int_equal(ug_spice_link_mess_decode(body, 22, &d, err), UG_E_PROTO);
	assert_non_null(strstr(err, "1 common + 1 channel caps (8 bytes)"));
	assert_int_equal(ug_spice_link_mess_decode(body, 26, &d, err), 0);
	/* caps_offset inside the fixed part. */
	ug_put_le32(body + 14, 10);
	assert_int_equal(ug_spice_link_mess_decode(body, 26, &d, err), UG_E_PROTO);
	assert_non_null(strstr(err, "caps_offset 10"));
}

static void test_link_header_limits(void **state)
{
	uint8_t h[16] = { 'R', 'E', 'D', 'Q', 2, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff };
	struct ug_spice_link_header hdr;
	char err[UG_ERRMSG_SIZE] = "";

	assert_int_equal(ug_spice_link_header_decode(h, 16, 4096, &hdr, err), UG_E_TOOBIG);
	assert_non_null(strstr(err, "4294967295"));
	assert_non_null(strstr(err, "4096"));
	assert_int_equal(ug_spice_link_header_decode(h, 15, 4096, &hdr, err), UG_E_TRUNCATED);
	h[0] = 'X';
	assert_int_equal(ug_spice_link_header_decode(h, 16, 4096, &hdr, err), UG_E_PROTO);
	assert_non_null(strstr(err, "magic"));
	/* A size of 0 passes the header check; the body decoders reject it. */
	h[0] = 'R';
	memset(h + 12, 0, 4);
	assert_int_equal(ug_spice_link_header_decode(h, 16, 4096, &hdr, err), 0);
	assert_int_equal(hdr.size, 0);
}

static void test_link_reply_round_trip(void **state)
{
	struct ug_spice_link_reply r = { 0 }, d;
	struct ug_spice_link_header h;
	uint8_t out[512];
	char err[UG_ERRMSG_SIZE] = "";
	size_t len;

	for (size_t i = 0; i < sizeof(r.pub_key); i++)
		r.pub_key[i] = (uint8_t)(i * 7);
	ug_spice_cap_set(r.caps.common, &r.caps.num_common, SPICE_COMMON_CAP_AUTH_SPICE);
	ug_spice_cap_set(r.caps.common, &r.caps.num_common, SPICE_COMMON_CAP_MINI_HEADER);
	ug_spice_cap_set(r.caps.channel, &r.caps.num_channel, 0);
	assert_int_equal(ug_spice_link_reply_encode(&r, out, sizeof(out), &len), 0);
	assert_int_equal(len, 16 + 178 + 8);
	assert_int_equal(ug_get_le32(out + 16 + 174), 178); /* caps_offset */
	assert_int_equal(ug_spice_link_header_decode(out, len, 4096, &h, err), 0);
	assert_int_equal(ug_spice_link_reply_decode(out + 16, h.size, &d, err), 0);
	assert_int_equal(d.error, 0);
	assert_memory_equal(d.pub_key, r.pub_key, sizeof(r.pub_key));
	assert_int_equal(d.caps.num_common, 1);
	assert_int_equal(d.caps.common[0], (1u << 1) | (1u << 3));
	assert_int_equal(d.caps.channel[0], 1);
}

static void test_link_reply_error_only(void **state)
{
	uint8_t body[178] = { 0 };
	struct ug_spice_link_reply d;
	char err[UG_ERRMSG_SIZE] = "";

	ug_put_le32(body, SPICE_LINK_ERR_NEED_SECURED);
	assert_int_equal(ug_spice_link_reply_decode(body, 4, &d, err), 0);
	assert_int_equal(d.error, SPICE_LINK_ERR_NEED_SECURED);
	assert_int_equal(ug_spice_link_reply_decode(body, sizeof(body), &d, err), 0);
	assert_int_equal(d.error, 5);
	assert_int_equal(ug_spice_link_error_code(5), UG_E_TLS);
	assert_int_equal(ug_spice_link_error_code(7), UG_E_AUTH);
	assert_int_equal(ug_spice_link_error_code(8), UG_E_NOTFOUND);
	assert_non_null(strstr(ug_spice_link_error_str(7), "wrong password"));
	assert_non_null(strstr(ug_spice_link_error_str(5), "need secured"));
	assert_int_equal(ug_spice_link_reply_decode(body, 3, &d, err), UG_E_PROTO);
}

static void test_link_reply_impossible_caps(void **state)
{
	uint8_t body[178 + 8] = { 0 };
	struct ug_spice_link_reply d;
	char err[UG_ERRMSG_SIZE] = "";

	ug_put_le32(body + 166, 0xffffffff);
	ug_put_le32(body + 170, 3);
	ug_put_le32(body + 174, 178);
	assert_int_equal(ug_spice_link_reply_decode(body, sizeof(body), &d, err), UG_E_PROTO);
	assert_non_null(strstr(err, "4294967295 common + 3 channel caps (17179869192 bytes)"));
	assert_non_null(strstr(err, "186 bytes"));
	/* Both counts at the maximum: the sum must not wrap. */
	ug_put_le32(body + 170, 0xffffffff);
	assert_int_equal(ug_spice_link_reply_decode(body, sizeof(body), &d, err), UG_E_PROTO);
	/* OK reply shorter than the fixed part. */
	assert_int_equal(ug_spice_link_reply_decode(body, 177, &d, err), UG_E_PROTO);
	assert_non_null(strstr(err, "177"));
	/* caps_offset past the end. */
	ug_put_le32(body + 166, 0);
	ug_put_le32(body + 170, 0);
	ug_put_le32(body + 174, 1000);
	assert_int_equal(ug_spice_link_reply_decode(body, sizeof(body), &d, err), UG_E_PROTO);
	assert_non_null(strstr(err, "caps_offset 1000"));
	/* More words than kept: counted, kept ones stored, no overflow. */
	uint8_t big[178 + 4 * 20] = { 0 };
	ug_put_le32(big + 166, 12);
	ug_put_le32(big + 170, 8);
	ug_put_le32(big + 174, 178);
	for (int i = 0; i < 20; i++)
		ug_put_le32(big + 178 + 4 * i, (uint32_t)i + 1);
	assert_int_equal(ug_spice_link_reply_decode(big, sizeof(big), &d, err), 0);
	assert_int_equal(d.caps.num_common, 12);
	assert_int_equal(d.caps.common[7], 8);
	assert_int_equal(d.caps.channel[0], 13);
	assert_false(ug_spice_cap_test(d.caps.common, d.caps.num_common, 32 * 10));
}

/* ---- the push decoder ------------------------------------------------------ */

struct seen {
	int rc;
	struct ug_spice_unit u;
	uint8_t body[2048];
};

/* Decodes stream in chunks of step bytes (0: one feed), recording every result. */
static size_t run_decoder(ug_spice_dec *d, const uint8_t *stream, size_t len, size_t step,
                          struct seen *out, size_t max_out)
{
	size_t n = 0, pos = 0;

	while (pos < len) {
		size_t chunk = step ? step : len;
		int r;

		if (chunk > len - pos)
			chunk = len - pos;
		assert_int_equal(ug_spice_dec_feed(d, stream + pos, chunk), 0);
		pos += chunk;
		while ((r = ug_spice_dec_next(d, &out[n].u)) != 0) {
			assert_true(n < max_out);
			out[n].rc = r;
			if (r == 1) {
				assert_true(out[n].u.size <= sizeof(out[n].body));
				if (out[n].u.size)
					memcpy(out[n].body, out[n].u.body, out[n].u.size);
			}
			n++;
			if (r < 0 && r != UG_E_TOOBIG)
				return n;
		}
	}
	return n;
}

static size_t build_stream(uint8_t *s, int mini)
{
	static const uint16_t types[] = { 4, 101, 102, 7, 101 };
	static const uint32_t sizes[] = { 12, 0, 1500, 30, 200 };
	uint64_t serial = 0;
	size_t len = 0;
	uint8_t body[1500];

	for (size_t i = 0; i < UG_NELEMS(types); i++) {
		for (uint32_t j = 0; j < sizes[i]; j++)
			body[j] = (uint8_t)(i * 31 + j);
		len += ug_spice_header_encode(mini, ++serial, types[i], sizes[i], s + len);
		memcpy(s + len, body, sizes[i]);
		len += sizes[i];
	}
	return len;
}

static void check_chunking(int mini)
{
	static uint8_t stream[4096];
	static struct seen one[16], bytes[16], odd[16];
	size_t len = build_stream(stream, mini);
	enum ug_spice_unit_kind k = mini ? UG_SPICE_UNIT_MINI : UG_SPICE_UNIT_FULL;
	ug_spice_dec *d1 = ug_spice_dec_new(k, 0);
	ug_spice_dec *d2 = ug_spice_dec_new(k, 0);
	ug_spice_dec *d3 = ug_spice_dec_new(k, 0);
	size_t n1, n2, n3;

	n1 = run_decoder(d1, stream, len, 0, one, 16);
	n2 = run_decoder(d2, stream, len, 1, bytes, 16);
	n3 = run_decoder(d3, stream, len, 7, odd, 16);
	assert_int_equal(n1, 5);
	assert_int_equal(n2, n1);
	assert_int_equal(n3, n1);
	for (size_t i = 0; i < n1; i++) {
		assert_int_equal(one[i].rc, 1);
		assert_int_equal(bytes[i].rc, 1);
		assert_int_equal(one[i].u.type, bytes[i].u.type);
		assert_int_equal(one[i].u.size, bytes[i].u.size);
		assert_int_equal(one[i].u.offset, bytes[i].u.offset);
		assert_int_equal(one[i].u.serial, bytes[i].u.serial);
		assert_int_equal(one[i].u.offset, odd[i].u.offset);
		assert_memory_equal(one[i].body, bytes[i].body, one[i].u.size);
		assert_memory_equal(one[i].body, odd[i].body, one[i].u.size);
		if (!mini)
			assert_int_equal(one[i].u.serial, i + 1);
	}
	assert_int_equal(one[1].u.size, 0);
	assert_null(one[1].u.body);
	assert_int_equal(one[2].u.type, 102);
	assert_int_equal(one[2].u.size, 1500);
	assert_int_equal(ug_spice_dec_offset(d2), len);
	ug_spice_dec_free(d1);
	ug_spice_dec_free(d2);
	ug_spice_dec_free(d3);
}

static void test_dec_chunking_mini(void **state)
{
	check_chunking(1);
}

static void test_dec_chunking_full(void **state)
{
	check_chunking(0);
}

static void test_dec_zero_copy(void **state)
{
	uint8_t s[64];
	struct ug_spice_unit u;
	size_t len = ug_spice_header_encode(1, 0, 101, 10, s);
	ug_spice_dec *d = ug_spice_dec_new(UG_SPICE_UNIT_MINI, 0);

	memset(s + len, 0x5a, 10);
	assert_int_equal(ug_spice_dec_feed(d, s, len + 10), 0);
	assert_int_equal(ug_spice_dec_next(d, &u), 1);
	/* A unit that lay whole in the fed buffer is a view into it. */
	assert_ptr_equal(u.body, s + 6);
	assert_int_equal(ug_spice_dec_next(d, &u), 0);
	ug_spice_dec_free(d);
}

static void test_dec_too_big_resyncs(void **state)
{
	static uint8_t s[1024];
	static struct seen seen[8], seen1[8];
	size_t len = 0;
	ug_spice_dec *d = ug_spice_dec_new(UG_SPICE_UNIT_MINI, 0);
	ug_spice_dec *d1 = ug_spice_dec_new(UG_SPICE_UNIT_MINI, 0);
	size_t n;

	ug_spice_dec_set_max_message(d, 100);
	ug_spice_dec_set_max_message(d1, 100);
	len += ug_spice_header_encode(1, 0, 101, 5, s + len);
	memset(s + len, 1, 5), len += 5;
	len += ug_spice_header_encode(1, 0, 101, 300, s + len);
	memset(s + len, 2, 300), len += 300;
	len += ug_spice_header_encode(1, 0, 102, 100, s + len);
	memset(s + len, 3, 100), len += 100;
	n = run_decoder(d, s, len, 0, seen, 8);
	assert_int_equal(n, 3);
	assert_int_equal(seen[0].rc, 1);
	assert_int_equal(seen[1].rc, UG_E_TOOBIG);
	assert_non_null(strstr(ug_spice_dec_errmsg(d), "type 101 claims 300 bytes, limit 100"));
	assert_non_null(strstr(ug_spice_dec_errmsg(d), "offset 11"));
	assert_int_equal(seen[2].rc, 1);
	assert_int_equal(seen[2].u.type, 102);
	assert_int_equal(seen[2].body[99], 3);
	/* The same one byte at a time. */
	n = run_decoder(d1, s, len, 1, seen1, 8);
	assert_int_equal(n, 3);
	assert_int_equal(seen1[1].rc, UG_E_TOOBIG);
	assert_int_equal(seen1[2].rc, 1);
	assert_int_equal(seen1[2].u.offset, seen[2].u.offset);
	ug_spice_dec_free(d);
	ug_spice_dec_free(d1);
}

static void test_dec_size_ffffffff(void **state)
{
	uint8_t s[UG_SPICE_FULL_HEADER_SIZE];
	struct ug_spice_unit u;
	ug_spice_dec *d = ug_spice_dec_new(UG_SPICE_UNIT_FULL, 0);

	ug_spice_header_encode(0, 1, 101, 0xffffffff, s);
	assert_int_equal(ug_spice_dec_feed(d, s, 18), 0);
	assert_int_equal(ug_spice_dec_next(d, &u), UG_E_TOOBIG);
	assert_non_null(strstr(ug_spice_dec_errmsg(d), "4294967295"));
	assert_non_null(strstr(ug_spice_dec_errmsg(d), "16777216"));
	assert_int_equal(ug_spice_dec_next(d, &u), 0);
	ug_spice_dec_free(d);
}

static void test_dec_link_phase(void **state)
{
	/* The server's side of a link: reply, then result, then mini messages. */
	struct ug_spice_link_reply r = { 0 };
	static uint8_t s[512];
	struct ug_spice_unit u;
	struct ug_spice_link_reply rd;
	size_t len, pos = 0;
	ug_spice_dec *d = ug_spice_dec_new(UG_SPICE_UNIT_LINK, 0);

	ug_spice_cap_set(r.caps.common, &r.caps.num_common, SPICE_COMMON_CAP_MINI_HEADER);
	assert_int_equal(ug_spice_link_reply_encode(&r, s, sizeof(s), &len), 0);
	ug_put_le32(s + len, 0), len += 4;
	len += ug_spice_header_encode(1, 0, SPICE_MSG_MAIN_INIT, 32, s + len);
	memset(s + len, 0, 32);
	ug_put_le32(s + len, 0xabcdef01), len += 32;
	/* One byte at a time, switching framing between units. */
	for (int stage = 0; stage < 3; stage++) {
		int r1;

		do {
			assert_true(pos < len);
			assert_int_equal(ug_spice_dec_feed(d, s + pos++, 1), 0);
			r1 = ug_spice_dec_next(d, &u);
		} while (r1 == 0);
		assert_int_equal(r1, 1);
		if (stage == 0) {
			assert_int_equal(u.kind, UG_SPICE_UNIT_LINK);
			assert_int_equal(u.link.size, 182);
			assert_int_equal(ug_spice_link_reply_decode(u.body, u.size, &rd, NULL), 0);
			/* Framing cannot change inside a unit, only between. */
			assert_int_equal(ug_spice_dec_expect(d, UG_SPICE_UNIT_FIXED, 4), 0);
		} else if (stage == 1) {
			assert_int_equal(u.kind, UG_SPICE_UNIT_FIXED);
			assert_int_equal(u.size, 4);
			assert_int_equal(ug_get_le32(u.body), 0);
			assert_int_equal(ug_spice_dec_expect(d, UG_SPICE_UNIT_MINI, 0), 0);
		} else {
			struct ug_spice_main_init mi;

			assert_int_equal(u.type, SPICE_MSG_MAIN_INIT);
			assert_int_equal(ug_spice_main_init_decode(u.body, u.size, &mi, NULL), 0);
			assert_int_equal(mi.session_id, 0xabcdef01);
		}
	}
	assert_int_equal(pos, len);
	ug_spice_dec_free(d);
}

static void test_dec_bad_link_is_fatal(void **state)
{
	uint8_t s[32] = "GET / HTTP/1.1\r\n\r\n";
	struct ug_spice_unit u;
	ug_spice_dec *d = ug_spice_dec_new(UG_SPICE_UNIT_LINK, 0);

	assert_int_equal(ug_spice_dec_feed(d, s, sizeof(s)), 0);
	assert_int_equal(ug_spice_dec_next(d, &u), UG_E_PROTO);
	assert_non_null(strstr(ug_spice_dec_errmsg(d), "offset 0"));
	assert_non_null(strstr(ug_spice_dec_errmsg(d), "magic"));
	assert_int_equal(ug_spice_dec_next(d, &u), UG_E_PROTO);
	ug_spice_dec_free(d);

	/* A link body over the limit is fatal as well. */
	uint8_t h[16] = { 'R', 'E', 'D', 'Q', 2, 0, 0, 0, 2, 0, 0, 0, 0, 0x10, 0, 0 };
	d = ug_spice_dec_new(UG_SPICE_UNIT_LINK, 0);
	ug_spice_dec_set_max_link(d, 1000);
	assert_int_equal(ug_spice_dec_feed(d, h, 16), 0);
	assert_int_equal(ug_spice_dec_next(d, &u), UG_E_PROTO);
	assert_non_null(strstr(ug_spice_dec_errmsg(d), "4096 bytes, limit 1000"));
	ug_spice_dec_free(d);
}

static void test_dec_feed_twice_is_state_error(void **state)
{
	uint8_t s[8] = { 0 };
	ug_spice_dec *d = ug_spice_dec_new(UG_SPICE_UNIT_MINI, 0);

	assert_int_equal(ug_spice_dec_feed(d, s, 8), 0);
	assert_int_equal(ug_spice_dec_feed(d, s, 8), UG_E_STATE);
	ug_spice_dec_free(d);
}

/* ---- messages -------------------------------------------------------------- */

static void test_ping_pong(void **state)
{
	uint8_t b[20];
	struct ug_spice_ping p;
	char err[UG_ERRMSG_SIZE];

	ug_spice_pong_encode(7, 0x1122334455667788ull, b);
	memset(b + 12, 0xee, 8);
	assert_int_equal(ug_spice_ping_decode(b, 20, &p, err), 0);
	assert_int_equal(p.id, 7);
	assert_int_equal(p.timestamp, 0x1122334455667788ull);
	assert_int_equal(p.data_len, 8);
	assert_int_equal(b[0], 7);
	assert_int_equal(b[4], 0x88);
	assert_int_equal(ug_spice_ping_decode(b, 11, &p, err), UG_E_PROTO);
	assert_non_null(strstr(err, "11 bytes"));
}

static void test_set_ack_disconnecting_migrate(void **state)
{
	uint8_t b[32] = { 0 };
	struct ug_spice_set_ack a;
	struct ug_spice_disconnecting dc;
	uint32_t flags;

	ug_put_le32(b, 3);
	ug_put_le32(b + 4, 20);
	assert_int_equal(ug_spice_set_ack_decode(b, 8, &a, NULL), 0);
	assert_int_equal(a.generation, 3);
	assert_int_equal(a.window, 20);
	assert_int_equal(ug_spice_set_ack_decode(b, 7, &a, NULL), UG_E_PROTO);

	assert_int_equal(ug_spice_disconnecting_encode(99, SPICE_LINK_ERR_OK, b), 12);
	assert_int_equal(ug_spice_disconnecting_decode(b, 12, &dc, NULL), 0);
	assert_int_equal(dc.timestamp, 99);
	assert_int_equal(dc.reason, 0);
	assert_int_equal(ug_spice_disconnecting_decode(b, 11, &dc, NULL), UG_E_PROTO);

	ug_put_le32(b, SPICE_MIGRATE_NEED_FLUSH | SPICE_MIGRATE_NEED_DATA_TRANSFER);
	assert_int_equal(ug_spice_migrate_decode(b, 4, &flags, NULL), 0);
	assert_int_equal(flags, 3);
	assert_int_equal(ug_spice_migrate_decode(b, 3, &flags, NULL), UG_E_PROTO);
}

static void test_migrate_begin(void **state)
{
	uint8_t b[64] = { 0 };
	struct ug_spice_migrate_dst m;
	char err[UG_ERRMSG_SIZE];

	ug_put_le16(b, 5930);
	ug_put_le16(b + 2, 5931);
	ug_put_le32(b + 4, 10);   /* "otherhost" + NUL */
	ug_put_le32(b + 8, 20);
	memcpy(b + 20, "otherhost", 10);
	assert_int_equal(ug_spice_migrate_begin_decode(b, 30, &m, err), 0);
	assert_int_equal(m.port, 5930);
	assert_int_equal(m.sport, 5931);
	assert_int_equal(m.host_len, 9);
	assert_memory_equal(m.host, "otherhost", 9);
	assert_int_equal(ug_spice_migrate_begin_decode(b, 29, &m, err), UG_E_PROTO);
	assert_non_null(strstr(err, "10 bytes at offset 20"));
	ug_put_le32(b + 8, 0xfffffff0);
	assert_int_equal(ug_spice_migrate_begin_decode(b, 64, &m, err), UG_E_PROTO);
}

static void test_notify(void **state)
{
	uint8_t b[64] = { 0 };
	struct ug_spice_notify n;
	char err[UG_ERRMSG_SIZE];

	ug_put_le64(b, 5);
	ug_put_le32(b + 8, SPICE_NOTIFY_SEVERITY_WARN);
	ug_put_le32(b + 12, SPICE_NOTIFY_VISIBILITY_HIGH);
	ug_put_le32(b + 16, 0);
	ug_put_le32(b + 20, 6);
	memcpy(b + 24, "hello", 6);
	assert_int_equal(ug_spice_notify_decode(b, 30, &n, err), 0);
	assert_int_equal(n.severity, SPICE_NOTIFY_SEVERITY_WARN);
	assert_int_equal(n.visibility, SPICE_NOTIFY_VISIBILITY_HIGH);
	assert_int_equal(n.message_len, 5);
	assert_memory_equal(n.message, "hello", 5);
	assert_int_equal(ug_spice_notify_decode(b, 29, &n, err), UG_E_PROTO);
	assert_non_null(strstr(err, "claims 6 bytes, 5 left"));
	ug_put_le32(b + 20, 0xffffffff);
	assert_int_equal(ug_spice_notify_decode(b, 64, &n, err), UG_E_PROTO);
	assert_int_equal(ug_spice_notify_decode(b, 23, &n, err), UG_E_PROTO);
}

static void test_main_init(void **state)
{
	struct ug_spice_main_init m = { 0x01020304, 1, 3, 2, 0, 10, 12345, 0 }, d;
	uint8_t b[32];
	char err[UG_ERRMSG_SIZE];

	assert_int_equal(ug_spice_main_init_encode(&m, b), 32);
	assert_int_equal(b[0], 4);
	assert_int_equal(ug_spice_main_init_decode(b, 32, &d, err), 0);
	assert_memory_equal(&d, &m, sizeof(m));
	assert_int_equal(ug_spice_main_init_decode(b, 31, &d, err), UG_E_PROTO);
	assert_non_null(strstr(err, "31 bytes, needs 32"));
}

static void test_channels_list(void **state)
{
	struct ug_spice_channel_id ids[3] = { { 1, 0 }, { 9, 0 }, { 9, 1 } }, out[8];
	struct ug_buf b;
	char err[UG_ERRMSG_SIZE];
	size_t n;

	ug_buf_init(&b, 1024);
	assert_int_equal(ug_spice_channels_list_encode(ids, 3, &b), 0);
	assert_int_equal(b.len, 10);
	assert_int_equal(ug_spice_channels_list_decode(ug_buf_peek(&b), b.len, out, 8, &n, err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(out[2].type, 9);
	assert_int_equal(out[2].id, 1);
	/* A count the body cannot hold. */
	ug_put_le32(b.data + b.start, 0xffffffff);
	assert_int_equal(ug_spice_channels_list_decode(ug_buf_peek(&b), b.len, out, 8, &n, err),
	                 UG_E_PROTO);
	assert_non_null(strstr(err, "4294967295 channels (8589934590 bytes), 6 bytes left"));
	/* A count over the caller's array. */
	ug_put_le32(b.data + b.start, 3);
	assert_int_equal(ug_spice_channels_list_decode(ug_buf_peek(&b), b.len, out, 2, &n, err),
	                 UG_E_TOOBIG);
	assert_non_null(strstr(err, "3 channels, limit 2"));
	assert_int_equal(ug_spice_channels_list_decode(ug_buf_peek(&b), 3, out, 8, &n, err),
	                 UG_E_PROTO);
	/* Zero channels is valid. */
	ug_put_le32(b.data + b.start, 0);
	assert_int_equal(ug_spice_channels_list_decode(ug_buf_peek(&b), 4, out, 8, &n, err), 0);
	assert_int_equal(n, 0);
	ug_buf_release(&b);
}

static void test_msg_append_serials(void **state)
{
	struct ug_buf b;
	uint64_t serial = 0;

	ug_buf_init(&b, 100);
	assert_int_equal(ug_spice_msg_append(&b, 0, &serial, SPICE_MSGC_PONG, "abcdefghijkl", 12),
	                 0);
	assert_int_equal(serial, 1);
	assert_int_equal(b.len, 30);
	assert_int_equal(ug_get_le64(ug_buf_peek(&b)), 1);
	assert_int_equal(ug_get_le16(ug_buf_peek(&b) + 8), SPICE_MSGC_PONG);
	assert_int_equal(ug_get_le32(ug_buf_peek(&b) + 10), 12);
	assert_int_equal(
	        ug_spice_msg_append(&b, 1, &serial, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0), 0);
	assert_int_equal(b.len, 36);
	assert_int_equal(serial, 2);
	/* Over the buffer's maximum: nothing appended, serial unchanged. */
	assert_int_equal(ug_spice_msg_append(&b, 1, &serial, 101, "x", 60), UG_E_TOOBIG);
	assert_int_equal(b.len, 36);
	assert_int_equal(serial, 2);
	ug_buf_release(&b);
}

/* ---- spicevmc and LZ4 ------------------------------------------------------ */

static void fill_compressible(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i % 64) < 40 ? 0 : i);
}

static void test_vmc_lz4_round_trip(void **state)
{
	static uint8_t data[200000];
	struct ug_buf wire, plain;
	struct ug_spice_unit u;
	uint64_t serial = 0;
	int compressed = 0, raw = 0, r;
	ug_spice_dec *d = ug_spice_dec_new(UG_SPICE_UNIT_MINI, 0);
	char err[UG_ERRMSG_SIZE];

	fill_compressible(data, sizeof(data));
	ug_buf_init(&wire, 1 << 20);
	ug_buf_init(&plain, 1 << 20);
	/* 200000 bytes in 64 KiB chunks, then 1000 (not above threshold) and 1001. */
	assert_int_equal(ug_spice_vmc_append(&wire, 1, &serial, 1, 65536, data, sizeof(data)), 0);
	assert_int_equal(ug_spice_vmc_append(&wire, 1, &serial, 1, 65536, data, 1000), 0);
	assert_int_equal(ug_spice_vmc_append(&wire, 1, &serial, 1, 65536, data, 1001), 0);
	assert_int_equal(serial, 6);
	assert_int_equal(ug_spice_dec_feed(d, ug_buf_peek(&wire), wire.len), 0);
	while ((r = ug_spice_dec_next(d, &u)) == 1) {
		if (u.type == SPICE_MSG_SPICEVMC_COMPRESSED_DATA) {
			compressed++;
			assert_true(u.size < 65536);
			assert_int_equal(
			        ug_spice_vmc_decompress(u.body, u.size, 1 << 20, &plain, err), 0);
		} else {
			assert_int_equal(u.type, SPICE_MSG_SPICEVMC_DATA);
			raw++;
			assert_int_equal(u.size, 1000);
			assert_int_equal(ug_buf_append(&plain, u.body, u.size), 0);
		}
	}
	assert_int_equal(r, 0);
	assert_int_equal(compressed, 5);
	/* The same stream through ug_spice_vmc_payload(), as a capture reader does it. */
	{
		struct ug_buf scratch, again;
		const uint8_t *p;
		size_t n;
		ug_spice_dec *d2 = ug_spice_dec_new(UG_SPICE_UNIT_MINI, 0);
		struct ug_spice_unit ping = { .type = SPICE_MSG_PING };

		ug_buf_init(&scratch, 1 << 20);
		ug_buf_init(&again, 1 << 20);
		assert_int_equal(ug_spice_dec_feed(d2, ug_buf_peek(&wire), wire.len), 0);
		while (ug_spice_dec_next(d2, &u) == 1) {
			assert_int_equal(ug_spice_vmc_payload(&u, 1 << 20, &scratch, &p, &n, err), 1);
			assert_int_equal(ug_buf_append(&again, p, n), 0);
		}
		assert_int_equal(again.len, plain.len);
		assert_memory_equal(ug_buf_peek(&again), ug_buf_peek(&plain), plain.len);
		assert_int_equal(ug_spice_vmc_payload(&ping, 1 << 20, &scratch, &p, &n, err), 0);
		ug_buf_release(&scratch);
		ug_buf_release(&again);
		ug_spice_dec_free(d2);
	}
	assert_int_equal(raw, 1);
	assert_int_equal(plain.len, sizeof(data) + 2001);
	assert_memory_equal(ug_buf_peek(&plain), data, sizeof(data));
	assert_memory_equal(ug_buf_peek(&plain) + sizeof(data), data, 1000);
	/* Without the peer's cap nothing is compressed. */
	ug_buf_reset(&wire);
	assert_int_equal(ug_spice_vmc_append(&wire, 1, &serial, 0, 65536, data, 5000), 0);
	assert_int_equal(ug_get_le16(ug_buf_peek(&wire)), SPICE_MSGC_SPICEVMC_DATA);
	assert_int_equal(wire.len, 5006);
	ug_buf_release(&wire);
	ug_buf_release(&plain);
	ug_spice_dec_free(d);
}

static void test_vmc_incompressible_goes_raw(void **state)
{
	uint8_t data[4000];
	struct ug_buf wire;
	uint64_t serial = 0;
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof(data); i++) {
		x = x * 1103515245 + 12345;
		data[i] = (uint8_t)(x >> 16);
	}
	ug_buf_init(&wire, 1 << 20);
	assert_int_equal(ug_spice_vmc_append(&wire, 1, &serial, 1, 65536, data, sizeof(data)), 0);
	assert_int_equal(ug_get_le16(ug_buf_peek(&wire)), SPICE_MSGC_SPICEVMC_DATA);
	assert_memory_equal(ug_buf_peek(&wire) + 6, data, sizeof(data));
	ug_buf_release(&wire);
}

static void test_vmc_append_all_or_nothing(void **state)
{
	uint8_t data[3000] = { 0 };
	struct ug_buf wire;
	uint64_t serial = 5;

	ug_buf_init(&wire, 2000);
	/* Two raw chunks of 1500 do not fit 2000 bytes: the first is rolled back. */
	assert_int_equal(ug_spice_vmc_append(&wire, 1, &serial, 0, 1500, data, sizeof(data)),
	                 UG_E_TOOBIG);
	assert_int_equal(wire.len, 0);
	assert_int_equal(serial, 5);
	assert_int_equal(ug_spice_vmc_append(&wire, 1, &serial, 0, 0, data, 1), UG_E_INVAL);
	ug_buf_release(&wire);
}

static void test_vmc_decompress_limits(void **state)
{
	uint8_t body[64] = { 0 };
	struct ug_buf out;
	char err[UG_ERRMSG_SIZE];

	ug_buf_init(&out, 1 << 20);
	body[0] = SPICE_DATA_COMPRESSION_TYPE_LZ4;
	/* A block claiming 4 GiB: refused before any allocation. */
	ug_put_le32(body + 1, 0xffffffff);
	assert_int_equal(ug_spice_vmc_decompress(body, sizeof(body), 1 << 20, &out, err),
	                 UG_E_TOOBIG);
	assert_non_null(strstr(err, "claims 4294967295 uncompressed bytes, limit 1048576"));
	assert_null(out.data);
	/* Within the caller's limit but over the buffer's own maximum. */
	ug_put_le32(body + 1, 2 << 20);
	assert_int_equal(ug_spice_vmc_decompress(body, sizeof(body), 4 << 20, &out, err),
	                 UG_E_TOOBIG);
	assert_null(out.data);
	/* Zero bytes claimed. */
	ug_put_le32(body + 1, 0);
	assert_int_equal(ug_spice_vmc_decompress(body, sizeof(body), 1 << 20, &out, err),
	                 UG_E_PROTO);
	/* Not LZ4. */
	body[0] = 2;
	ug_put_le32(body + 1, 10);
	assert_int_equal(ug_spice_vmc_decompress(body, sizeof(body), 1 << 20, &out, err),
	                 UG_E_UNSUPPORTED);
	assert_non_null(strstr(err, "type 2"));
	/* Header only. */
	assert_int_equal(ug_spice_vmc_decompress(body, 4, 1 << 20, &out, err), UG_E_PROTO);
	ug_buf_release(&out);
}

static void test_vmc_decompress_corrupt(void **state)
{
	uint8_t plain[3000], body[3100];
	struct ug_buf out;
	char err[UG_ERRMSG_SIZE];
	int c;

	fill_compressible(plain, sizeof(plain));
	c = LZ4_compress_default((const char *)plain, (char *)body + 5, sizeof(plain),
	                         sizeof(body) - 5);
	assert_true(c > 0);
	body[0] = SPICE_DATA_COMPRESSION_TYPE_LZ4;
	ug_buf_init(&out, 1 << 20);
	/* Claimed size smaller than the block's output. */
	ug_put_le32(body + 1, 2000);
	assert_int_equal(ug_spice_vmc_decompress(body, (size_t)c + 5, 1 << 20, &out, err),
	                 UG_E_PROTO);
	assert_int_equal(out.len, 0);
	/* Claimed size larger than the block's output. */
	ug_put_le32(body + 1, 4000);
	assert_int_equal(ug_spice_vmc_decompress(body, (size_t)c + 5, 1 << 20, &out, err),
	                 UG_E_PROTO);
	assert_non_null(strstr(err, "gave 3000 bytes, header claimed 4000"));
	assert_int_equal(out.len, 0);
	/* Truncated block. */
	ug_put_le32(body + 1, 3000);
	assert_int_equal(ug_spice_vmc_decompress(body, (size_t)c / 2, 1 << 20, &out, err),
	                 UG_E_PROTO);
	assert_non_null(strstr(err, "corrupt LZ4"));
	/* Garbage that points back before the start. */
	memset(body + 5, 0xff, 40);
	assert_int_equal(ug_spice_vmc_decompress(body, 45, 1 << 20, &out, err), UG_E_PROTO);
	assert_int_equal(out.len, 0);
	/* And the good one. */
	c = LZ4_compress_default((const char *)plain, (char *)body + 5, sizeof(plain),
	                         sizeof(body) - 5);
	assert_int_equal(ug_spice_vmc_decompress(body, (size_t)c + 5, 1 << 20, &out, err), 0);
	assert_memory_equal(ug_buf_peek(&out), plain, sizeof(plain));
	ug_buf_release(&out);
}

static void test_names(void **state)
{
	assert_string_equal(ug_spice_channel_type_name(9), "usbredir");
	assert_string_equal(ug_spice_channel_type_name(1), "main");
	assert_string_equal(ug_spice_channel_type_name(0), "unknown");
	assert_string_equal(ug_spice_channel_type_name(200), "unknown");
	assert_string_equal(ug_spice_link_error_str(1000), "unknown link error");
}

/* spice-protocol's constants against the wire values protocols.md and the captures show. */
static void test_protocol_constants(void **state)
{
	assert_int_equal(SPICE_MAGIC, 0x51444552); /* "REDQ" read little-endian */
	assert_int_equal(SPICE_VERSION_MAJOR, 2);
	assert_int_equal(SPICE_VERSION_MINOR, 2);
	assert_int_equal(SPICE_TICKET_PUBKEY_BYTES, 162);
	assert_int_equal(UG_SPICE_LINK_REPLY_SIZE, 178);
	assert_int_equal(UG_SPICE_TICKET_SIZE, 128);
	assert_int_equal(SPICE_MAX_PASSWORD_LENGTH, 60);
	assert_int_equal(SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION, 0);
	assert_int_equal(SPICE_COMMON_CAP_AUTH_SPICE, 1);
	assert_int_equal(SPICE_COMMON_CAP_AUTH_SASL, 2);
	assert_int_equal(SPICE_COMMON_CAP_MINI_HEADER, 3);
	assert_int_equal(SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4, 0);
	assert_int_equal(SPICE_LINK_ERR_NEED_SECURED, 5);
	assert_int_equal(SPICE_LINK_ERR_PERMISSION_DENIED, 7);
	assert_int_equal(SPICE_LINK_ERR_BAD_CONNECTION_ID, 8);
	assert_int_equal(SPICE_CHANNEL_MAIN, 1);
	assert_int_equal(SPICE_CHANNEL_USBREDIR, 9);
	assert_int_equal(SPICE_MSG_MIGRATE, 1);
	assert_int_equal(SPICE_MSG_SET_ACK, 3);
	assert_int_equal(SPICE_MSG_PING, 4);
	assert_int_equal(SPICE_MSG_DISCONNECTING, 6);
	assert_int_equal(SPICE_MSG_NOTIFY, 7);
	assert_int_equal(SPICE_MSGC_ACK_SYNC, 1);
	assert_int_equal(SPICE_MSGC_ACK, 2);
	assert_int_equal(SPICE_MSGC_PONG, 3);
	assert_int_equal(SPICE_MSG_MAIN_MIGRATE_BEGIN, 101);
	assert_int_equal(SPICE_MSG_MAIN_INIT, 103);
	assert_int_equal(SPICE_MSG_MAIN_CHANNELS_LIST, 104);
	assert_int_equal(SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR, 103);
	assert_int_equal(SPICE_MSGC_MAIN_ATTACH_CHANNELS, 104);
	assert_int_equal(SPICE_MSG_SPICEVMC_DATA, 101);
	assert_int_equal(SPICE_MSG_SPICEVMC_COMPRESSED_DATA, 102);
	assert_int_equal(SPICE_MSGC_SPICEVMC_DATA, 101);
	assert_int_equal(SPICE_MSGC_SPICEVMC_COMPRESSED_DATA, 102);
	assert_int_equal(SPICE_DATA_COMPRESSION_TYPE_LZ4, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protocol_constants),
		cmocka_unit_test(test_link_mess_round_trip),
		cmocka_unit_test(test_link_mess_bad),
		cmocka_unit_test(test_link_header_limits),
		cmocka_unit_test(test_link_reply_round_trip),
		cmocka_unit_test(test_link_reply_error_only),
		cmocka_unit_test(test_link_reply_impossible_caps),
		cmocka_unit_test(test_dec_chunking_mini),
		cmocka_unit_test(test_dec_chunking_full),
		cmocka_unit_test(test_dec_zero_copy),
		cmocka_unit_test(test_dec_too_big_resyncs),
		cmocka_unit_test(test_dec_size_ffffffff),
		cmocka_unit_test(test_dec_link_phase),
		cmocka_unit_test(test_dec_bad_link_is_fatal),
		cmocka_unit_test(test_dec_feed_twice_is_state_error),
		cmocka_unit_test(test_ping_pong),
		cmocka_unit_test(test_set_ack_disconnecting_migrate),
		cmocka_unit_test(test_migrate_begin),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_main_init),
		cmocka_unit_test(test_channels_list),
		cmocka_unit_test(test_msg_append_serials),
		cmocka_unit_test(test_vmc_lz4_round_trip),
		cmocka_unit_test(test_vmc_incompressible_goes_raw),
		cmocka_unit_test(test_vmc_append_all_or_nothing),
		cmocka_unit_test(test_vmc_decompress_limits),
		cmocka_unit_test(test_vmc_decompress_corrupt),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
