/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-usbredir-codec.c: unit tests of the usbredir session decoder and encoder (lib/usbredir-*.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"
#include "usbgate.h"
#include "usbredir-codec.h"
#include "usbredir-testgen.h"

#define CAP(c) (1u << usb_redir_cap_##c)
#define ALL_CAPS (TG_SIZE_CAPS | TG_TYPE_CAPS)

/* ---- helpers --------------------------------------------------------------- */

struct stream {
	uint8_t *b;
	size_t len, cap;
};

static void s_put(struct stream *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2 + 256;
		s->b = realloc(s->b, s->cap);
		assert_non_null(s->b);
	}
	memcpy(s->b + s->len, p, n);
	s->len += n;
}

static void s_enc(struct stream *s, uint32_t caps, const struct ug_usbredir_packet *p)
{
	size_t need = 0;
	uint8_t small[1];

	assert_int_equal(ug_usbredir_encode(caps, p, small, 0, &need), UG_E_TOOBIG);
	uint8_t *tmp = malloc(need);
	size_t got = 0;
	assert_non_null(tmp);
	assert_int_equal(ug_usbredir_encode(caps, p, tmp, need, &got), 0);
	assert_int_equal(got, need);
	s_put(s, tmp, got);
	free(tmp);
}

static void hello_pkt(struct ug_usbredir_packet *p, uint32_t caps)
{
	memset(p, 0, sizeof(*p));
	p->type = usb_redir_hello;
	strcpy(p->h.hello.version, "usbgate unit test");
	p->h.hello.caps_count = 1;
	p->h.hello.caps[0] = caps;
}

/* Raw header + type header + data, for packets the encoder would not make. */
static void s_raw(struct stream *s, int hdr64, uint32_t type, uint32_t length, uint64_t id,
		  const void *body, size_t body_len)
{
	uint8_t h[16];

	ug_put_le32(h, type);
	ug_put_le32(h + 4, length);
	ug_put_le64(h + 8, id);
	s_put(s, h, hdr64 ? 16 : 12);
	if (body_len)
		s_put(s, body, body_len);
}

/* A session that has seen both hellos with these caps. */
static ug_usbredir_session *session_with(uint32_t guest_caps, uint32_t host_caps)
{
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct ug_usbredir_packet p, out;
	struct stream g = { 0 }, h = { 0 };

	assert_non_null(s);
	hello_pkt(&p, guest_caps);
	s_enc(&g, 0, &p);
	hello_pkt(&p, host_caps);
	s_enc(&h, 0, &p);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, g.b, g.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.type, usb_redir_hello);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_H2G, h.b, h.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 1);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 0);
	free(g.b);
	free(h.b);
	return s;
}

/* A decoded event: a packet (copied) or an error. */
struct event {
	int rc;
	struct ug_usbredir_packet p;
	uint8_t *raw;
	char msg[UG_ERRMSG_SIZE];
};

struct events {
	struct event *e;
	size_t n, cap;
};

static void ev_add(struct events *ev, int rc, const struct ug_usbredir_packet *p,
		   const char *msg)
{
	struct event *e;

	if (ev->n == ev->cap) {
		ev->cap = ev->cap ? ev->cap * 2 : 64;
		ev->e = realloc(ev->e, ev->cap * sizeof(*ev->e));
		assert_non_null(ev->e);
	}
	e = &ev->e[ev->n++];
	memset(e, 0, sizeof(*e));
	e->rc = rc;
	if (rc == 1) {
		e->p = *p;
		e->raw = malloc(p->raw_len ? p->raw_len : 1);
		assert_non_null(e->raw);
		memcpy(e->raw, p->raw, p->raw_len);
	} else {
		snprintf(e->msg, sizeof(e->msg), "%s", msg);
	}
}

static void ev_free(struct events *ev)
{
	for (size_t i = 0; i < ev->n; i++)
		free(ev->e[i].raw);
	free(ev->e);
	memset(ev, 0, sizeof(*ev));
}

/* Feeds buf to dir in chunks of chunk bytes (0: random 1..97) and collects everything. */
static void decode_chunked(ug_usbredir_session *s, enum ug_dir dir, const uint8_t *buf,
			   size_t len, size_t chunk, uint64_t seed, struct events *ev)
{
	size_t pos = 0;
	uint64_t st = seed | 1;

	if (len == 0) {
		/* Only poll: packets held while waiting for the other direction's hello. */
		struct ug_usbredir_packet p;
		int r;

		while ((r = ug_usbredir_session_next(s, dir, &p)) != 0) {
			assert_true(r == 1 || r == UG_E_PROTO || r == UG_E_TOOBIG);
			ev_add(ev, r, &p, ug_usbredir_session_errmsg(s));
		}
		return;
	}
	while (pos < len) {
		size_t n = chunk ? chunk : 1 + tg_below(&st, 97);
		struct ug_usbredir_packet p;
		int r;

		if (n > len - pos)
			n = len - pos;
		/* A private copy, overwritten after next() returns 0, proves nothing is kept. */
		uint8_t *copy = malloc(n);
		assert_non_null(copy);
		memcpy(copy, buf + pos, n);
		assert_int_equal(ug_usbredir_session_feed(s, dir, copy, n), 0);
		while ((r = ug_usbredir_session_next(s, dir, &p)) != 0) {
			assert_true(r == 1 || r == UG_E_PROTO || r == UG_E_TOOBIG);
			ev_add(ev, r, &p, ug_usbredir_session_errmsg(s));
		}
		memset(copy, 0xee, n);
		free(copy);
		pos += n;
	}
}

static void assert_same_packet(const struct event *a, const struct event *b)
{
	assert_int_equal(a->rc, b->rc);
	if (a->rc != 1) {
		assert_string_equal(a->msg, b->msg);
		return;
	}
	assert_int_equal(a->p.dir, b->p.dir);
	assert_int_equal(a->p.type, b->p.type);
	assert_int_equal(a->p.length, b->p.length);
	assert_true(a->p.id == b->p.id);
	assert_true(a->p.offset == b->p.offset);
	assert_int_equal(a->p.known, b->p.known);
	assert_int_equal(a->p.data_len, b->p.data_len);
	assert_int_equal(a->p.raw_len, b->p.raw_len);
	assert_memory_equal(a->raw, b->raw, a->p.raw_len);
	if (a->p.known)
		assert_memory_equal(&a->p.h, &b->p.h, tg_hsize(a->p.type));
}

/* Compares a decoded packet with the one it was encoded from. */
static void assert_decoded_as(const struct ug_usbredir_packet *got,
			      const struct ug_usbredir_packet *want)
{
	assert_int_equal(got->type, want->type);
	assert_true(got->id == want->id);
	assert_int_equal(got->known, 1);
	assert_int_equal(got->data_len, want->data_len);
	if (want->data_len)
		assert_memory_equal(got->data, want->data, want->data_len);
	if (got->type == usb_redir_hello) {
		assert_string_equal(got->h.hello.version, want->h.hello.version);
		assert_int_equal(got->h.hello.caps_count, want->h.hello.caps_count);
		assert_int_equal(got->h.hello.caps[0], want->h.hello.caps[0]);
	} else {
		assert_memory_equal(&got->h, &want->h, tg_hsize(got->type));
	}
}

/* ---- tests ----------------------------------------------------------------- */

static void test_type_names(void **state)
{
	for (size_t i = 0; i < TG_NTYPES; i++)
		assert_non_null(ug_usbredir_type_name(tg_types[i]));
	assert_string_equal(ug_usbredir_type_name(usb_redir_hello), "hello");
	assert_string_equal(ug_usbredir_type_name(usb_redir_control_packet), "control_packet");
	assert_string_equal(ug_usbredir_type_name(usb_redir_buffered_bulk_packet),
			    "buffered_bulk_packet");
	assert_string_equal(ug_usbredir_type_name(usb_redir_bulk_receiving_status),
			    "bulk_receiving_status");
	assert_null(ug_usbredir_type_name(28));
	assert_null(ug_usbredir_type_name(99));
	assert_null(ug_usbredir_type_name(105));
	assert_null(ug_usbredir_type_name(0xffffffffu));
}

static void test_hellos_negotiate(void **state)
{
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct ug_usbredir_packet p, out;
	struct stream g = { 0 }, h = { 0 };

	assert_int_equal(ug_usbredir_session_caps_known(s), 0);
	assert_int_equal(ug_usbredir_session_caps(s), 0);
	hello_pkt(&p, CAP(64bits_ids) | CAP(filter) | CAP(bulk_streams) |
		  CAP(ep_info_max_packet_size));
	s_enc(&g, 0, &p);
	/* The hello always goes with a 12-byte header and its caps as data. */
	assert_int_equal(g.len, 12 + 64 + 4);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, g.b, g.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.h.hello.caps_count, 1);
	assert_string_equal(out.h.hello.version, "usbgate unit test");
	assert_int_equal(ug_usbredir_session_caps_known(s), 0);
	/* The host lacks ep_info_max_packet_size, so bulk_streams cannot count either. */
	hello_pkt(&p, CAP(64bits_ids) | CAP(bulk_streams) | CAP(32bits_bulk_length));
	s_enc(&h, 0, &p);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_H2G, h.b, h.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 1);
	assert_int_equal(ug_usbredir_session_caps_known(s), 1);
	assert_int_equal(ug_usbredir_session_caps(s), CAP(64bits_ids));
	assert_true(ug_usbredir_session_offset(s, UG_DIR_G2H) == 80);
	assert_true(ug_usbredir_session_offset(s, UG_DIR_H2G) == 80);
	ug_usbredir_session_free(s);
	ug_usbredir_session_free(NULL);
	free(g.b);
	free(h.b);
}

/*
 * Every type, in every direction that accepts it, under every combination of
 * the size-changing caps: the encoder writes the expected sizes, the decoder
 * returns the same fields, and re-encoding gives the same bytes.
 */
static void test_every_type_every_caps(void **state)
{
	static uint8_t data[TG_MAX_DATA];
	uint64_t st = 0x1234567;
	unsigned combos = 0;

	for (uint32_t bits = 0; bits < 32; bits++) {
		uint32_t caps = ALL_CAPS & ~TG_SIZE_CAPS;
		static const unsigned size_caps[] = {
			usb_redir_cap_connect_device_version, usb_redir_cap_ep_info_max_packet_size,
			usb_redir_cap_bulk_streams, usb_redir_cap_64bits_ids,
			usb_redir_cap_32bits_bulk_length,
		};
		for (unsigned i = 0; i < 5; i++)
			if (bits & (1u << i))
				caps |= 1u << size_caps[i];
		ug_usbredir_session *s = session_with(caps, caps);
		int hdr = tg_cap(caps, usb_redir_cap_64bits_ids) ? 16 : 12;

		assert_int_equal(ug_usbredir_session_caps(s), tg_norm(caps));
		for (int dir = 0; dir < 2; dir++) {
			for (size_t t = 1; t < TG_NTYPES; t++) {
				struct ug_usbredir_packet p, out, again;
				uint8_t buf[TG_MAX_DATA + 400];
				size_t len = 0, len2 = 0;

				if (!tg_accepted(tg_types[t], (enum ug_dir)dir))
					continue;
				tg_packet(&st, tg_types[t], (enum ug_dir)dir, caps, 5000, &p, data);
				assert_int_equal(ug_usbredir_encode(caps, &p, buf, sizeof(buf), &len), 0);
				assert_int_equal(len, hdr + tg_thl(p.type, caps) + p.data_len);
				assert_int_equal(ug_get_le32(buf), p.type);
				assert_int_equal(ug_get_le32(buf + 4), tg_thl(p.type, caps) + p.data_len);
				assert_int_equal(ug_usbredir_session_feed(s, (enum ug_dir)dir, buf, len), 0);
				assert_int_equal(ug_usbredir_session_next(s, (enum ug_dir)dir, &out), 1);
				assert_int_equal(out.dir, dir);
				assert_decoded_as(&out, &p);
				/* Zero-copy: a packet whole in the buffer is a view into it. */
				assert_ptr_equal(out.raw, buf);
				assert_int_equal(out.raw_len, len);
				assert_int_equal(ug_usbredir_session_held(s, (enum ug_dir)dir), 0);
				assert_int_equal(ug_usbredir_encode(caps, &out, buf + len, sizeof(buf) - len,
								    &len2), 0);
				assert_int_equal(len2, len);
				assert_memory_equal(buf + len, buf, len);
				assert_int_equal(ug_usbredir_session_next(s, (enum ug_dir)dir, &again), 0);
				combos++;
			}
		}
		ug_usbredir_session_free(s);
	}
	assert_true(combos > 32 * 30);
}

/* A long stream decodes to the same events however it is cut. */
static void test_chunking_equivalence(void **state)
{
	static uint8_t data[TG_MAX_DATA];
	uint64_t st = 42;

	for (int round = 0; round < 8; round++) {
		uint32_t gcaps = (uint32_t)tg_rand(&st) & ALL_CAPS;
		uint32_t hcaps = (uint32_t)tg_rand(&st) & ALL_CAPS;
		uint32_t caps = tg_norm(gcaps) & tg_norm(hcaps);
		struct stream str[2] = { { 0 }, { 0 } };
		struct ug_usbredir_packet p;

		hello_pkt(&p, gcaps);
		s_enc(&str[0], 0, &p);
		hello_pkt(&p, hcaps);
		s_enc(&str[1], 0, &p);
		for (int i = 0; i < 300; i++) {
			enum ug_dir dir = (enum ug_dir)tg_below(&st, 2);
			uint32_t receiver = tg_norm(dir == UG_DIR_G2H ? hcaps : gcaps);
			uint32_t t = tg_random_type(&st, dir, receiver);

			tg_packet(&st, t, dir, caps, 3000, &p, data);
			s_enc(&str[dir], caps, &p);
			if (tg_below(&st, 20) == 0) {
				/* An unknown type and a malformed packet in between. */
				s_raw(&str[dir], tg_cap(caps, usb_redir_cap_64bits_ids), 77, 3, 9,
				      "abc", 3);
				s_raw(&str[dir], tg_cap(caps, usb_redir_cap_64bits_ids),
				      usb_redir_control_packet, 4, 1, "wxyz", 4);
			}
		}
		struct events whole[2] = { { 0 } }, cut[2] = { { 0 } };
		for (size_t chunk = 0; chunk < 4; chunk++) {
			ug_usbredir_session *a = ug_usbredir_session_new();
			ug_usbredir_session *b = ug_usbredir_session_new();
			size_t sizes[] = { 1, 0, 7, 4096 };

			/* The host's hello first so that the guest's stream can be decoded. */
			/*
			 * One direction entirely before the other: the host->guest
			 * stream waits (held) for the guest's hello, then comes out
			 * when polled again.
			 */
			decode_chunked(a, UG_DIR_H2G, str[1].b, str[1].len, str[1].len, 0, &whole[1]);
			decode_chunked(a, UG_DIR_G2H, str[0].b, str[0].len, str[0].len, 0, &whole[0]);
			decode_chunked(a, UG_DIR_H2G, NULL, 0, 1, 0, &whole[1]);
			decode_chunked(b, UG_DIR_H2G, str[1].b, str[1].len, sizes[chunk], st, &cut[1]);
			decode_chunked(b, UG_DIR_G2H, str[0].b, str[0].len, sizes[chunk], st, &cut[0]);
			decode_chunked(b, UG_DIR_H2G, NULL, 0, 1, 0, &cut[1]);
			for (int dir = 0; dir < 2; dir++) {
				assert_true(whole[dir].n > 100);
				assert_int_equal(whole[dir].n, cut[dir].n);
				for (size_t i = 0; i < whole[dir].n; i++)
					assert_same_packet(&whole[dir].e[i], &cut[dir].e[i]);
				assert_true(ug_usbredir_session_offset(a, (enum ug_dir)dir) ==
					    str[dir].len);
				assert_true(ug_usbredir_session_offset(b, (enum ug_dir)dir) ==
					    str[dir].len);
				ev_free(&whole[dir]);
				ev_free(&cut[dir]);
			}
			ug_usbredir_session_free(a);
			ug_usbredir_session_free(b);
		}
		free(str[0].b);
		free(str[1].b);
	}
}

/* A packet split across feeds is assembled; the next whole one is a view again. */
static void test_split_packet_assembled(void **state)
{
	ug_usbredir_session *s = session_with(0, 0);
	struct stream str = { 0 };
	struct ug_usbredir_packet p, out;
	uint8_t data[100];
	size_t first;

	memset(data, 0x5a, sizeof(data));
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_bulk_packet;
	p.id = 7;
	p.h.bulk_packet.endpoint = 0x02;
	p.h.bulk_packet.length = 100;
	p.data = data;
	p.data_len = 100;
	s_enc(&str, 0, &p);
	first = str.len;
	s_enc(&str, 0, &p);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b, 50), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b + 50, str.len - 50), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_true(out.raw < str.b || out.raw >= str.b + str.len);
	/* Only the split packet was copied, not the whole one after it. */
	assert_int_equal(ug_usbredir_session_held(s, UG_DIR_G2H), first);
	assert_memory_equal(out.raw, str.b, first);
	assert_int_equal(out.data_len, 100);
	assert_true(out.offset == 80);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_ptr_equal(out.raw, str.b + first);
	assert_int_equal(ug_usbredir_session_held(s, UG_DIR_G2H), 0);
	assert_true(out.offset == 80 + first);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	assert_true(ug_usbredir_session_offset(s, UG_DIR_G2H) == 80 + str.len);
	ug_usbredir_session_free(s);
	free(str.b);
}

/* The limit is checked on the header alone; the body streams by, then decoding resumes. */
static void test_too_big_is_skipped(void **state)
{
	ug_usbredir_session *s = session_with(0, 0);
	struct stream str = { 0 };
	struct ug_usbredir_packet out;
	uint8_t body[1000];
	int errors = 0, packets = 0, r;

	memset(body, 0, sizeof(body));
	assert_int_equal(ug_usbredir_session_set_max_packet(s, 0), UG_E_INVAL);
	assert_int_equal(ug_usbredir_session_set_max_packet(s, 100), 0);
	s_raw(&str, 0, usb_redir_bulk_packet, 1000, 3, body, 1000);
	s_raw(&str, 0, usb_redir_reset, 0, 4, NULL, 0);
	for (size_t i = 0; i < str.len; i++) {
		assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b + i, 1), 0);
		/* Never more than a header is held: the body is not buffered. */
		assert_true(ug_usbredir_session_held(s, UG_DIR_G2H) < 12);
		while ((r = ug_usbredir_session_next(s, UG_DIR_G2H, &out)) != 0) {
			if (r == UG_E_TOOBIG) {
				errors++;
				/* Reported as soon as the 12 header bytes are in. */
				assert_int_equal(i, 11);
				assert_string_equal(ug_usbredir_session_errmsg(s),
						    "guest->host offset 80: packet type 101 claims "
						    "1000 bytes, limit 100");
			} else {
				assert_int_equal(r, 1);
				assert_int_equal(out.type, usb_redir_reset);
				assert_true(out.id == 4);
				assert_true(out.offset == 80 + 1012);
				packets++;
			}
		}
	}
	assert_int_equal(errors, 1);
	assert_int_equal(packets, 1);
	/* A huge claim in one feed: no allocation, same resync. */
	ug_usbredir_session_free(s);
	s = session_with(0, 0);
	free(str.b);
	memset(&str, 0, sizeof(str));
	s_raw(&str, 0, usb_redir_bulk_packet, 0xffffffffu, 3, NULL, 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b, str.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), UG_E_TOOBIG);
	assert_string_equal(ug_usbredir_session_errmsg(s),
			    "guest->host offset 80: packet type 101 claims 4294967295 bytes, "
			    "limit 134218752");
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	assert_true(ug_usbredir_session_offset(s, UG_DIR_G2H) == 92);
	ug_usbredir_session_free(s);
	free(str.b);
}

/* One malformed packet, then a valid one: the error, its message, then the packet. */
static void expect_proto(uint32_t gcaps, uint32_t hcaps, enum ug_dir dir, int raw,
			 const struct ug_usbredir_packet *bad, uint32_t type, uint32_t length,
			 const void *body, size_t body_len, const char *msg)
{
	ug_usbredir_session *s = session_with(gcaps, hcaps);
	uint32_t caps = tg_norm(gcaps) & tg_norm(hcaps);
	struct stream str = { 0 };
	struct ug_usbredir_packet out, ok;
	uint64_t off = 80;

	if (raw)
		s_raw(&str, tg_cap(caps, usb_redir_cap_64bits_ids), type, length, 5, body,
		      body_len);
	else
		s_enc(&str, caps, bad);
	memset(&ok, 0, sizeof(ok));
	ok.type = usb_redir_control_packet;
	ok.id = 6;
	ok.h.control_packet.endpoint = dir == UG_DIR_G2H ? 0x80 : 0x00;
	ok.h.control_packet.length = 18;
	s_enc(&str, caps, &ok);
	for (int chunked = 0; chunked < 2; chunked++) {
		int r, got_err = 0, got_ok = 0;

		for (size_t pos = 0; pos < str.len;) {
			size_t n = chunked ? 1 : str.len;
			assert_int_equal(ug_usbredir_session_feed(s, dir, str.b + pos, n), 0);
			pos += n;
			while ((r = ug_usbredir_session_next(s, dir, &out)) != 0) {
				if (r == 1) {
					assert_int_equal(got_err, 1);
					assert_int_equal(out.type, usb_redir_control_packet);
					assert_true(out.id == 6);
					got_ok++;
				} else {
					assert_int_equal(r, UG_E_PROTO);
					got_err++;
					char want[UG_ERRMSG_SIZE];
					snprintf(want, sizeof(want), "%s offset %llu: %s",
						 dir == UG_DIR_G2H ? "guest->host" : "host->guest",
						 (unsigned long long)off, msg);
					assert_string_equal(ug_usbredir_session_errmsg(s), want);
				}
			}
		}
		assert_int_equal(got_err, 1);
		assert_int_equal(got_ok, 1);
		off += str.len;
	}
	ug_usbredir_session_free(s);
	free(str.b);
}

static void test_length_checks(void **state)
{
	uint8_t body[64];
	struct ug_usbredir_packet p;

	memset(body, 0, sizeof(body));
	/* Types the receiving role does not accept. */
	expect_proto(0, 0, UG_DIR_G2H, 1, NULL, usb_redir_device_connect, 8, body, 8,
		     "packet type 1 (device_connect) is not accepted by the usb-host, "
		     "skipping 8 bytes");
	expect_proto(0, 0, UG_DIR_H2G, 1, NULL, usb_redir_reset, 0, NULL, 0,
		     "packet type 3 (reset) is not accepted by the usb-guest, skipping 0 bytes");
	expect_proto(0, 0, UG_DIR_G2H, 1, NULL, usb_redir_buffered_bulk_packet, 10, body, 10,
		     "packet type 104 (buffered_bulk_packet) is not accepted by the usb-host, "
		     "skipping 10 bytes");
	/* Shorter than the type header; data on types that take none. */
	expect_proto(0, 0, UG_DIR_G2H, 1, NULL, usb_redir_control_packet, 9, body, 9,
		     "control_packet length 9 is shorter than its 10-byte type header");
	expect_proto(CAP(ep_info_max_packet_size), CAP(ep_info_max_packet_size), UG_DIR_H2G, 1,
		     NULL, usb_redir_ep_info, 60, body, 60,
		     "ep_info length 60 is shorter than its 160-byte type header");
	(void)p;
}

static void test_length_checks_caps(void **state)
{
	uint8_t body[300];

	memset(body, 0, sizeof(body));
	/* ep_info and device_connect sizes follow the caps both sides announced. */
	expect_proto(CAP(ep_info_max_packet_size), 0, UG_DIR_H2G, 1, NULL, usb_redir_ep_info,
		     160, body, 160,
		     "ep_info length 160 exceeds its 96-byte type header, but it carries no data");
	expect_proto(CAP(connect_device_version), CAP(connect_device_version), UG_DIR_H2G, 1,
		     NULL, usb_redir_device_connect, 8, body, 8,
		     "device_connect length 8 is shorter than its 10-byte type header");
	expect_proto(0, CAP(connect_device_version), UG_DIR_H2G, 1, NULL,
		     usb_redir_device_connect, 10, body, 10,
		     "device_connect length 10 exceeds its 8-byte type header, but it carries "
		     "no data");
	expect_proto(0, 0, UG_DIR_G2H, 1, NULL, usb_redir_set_configuration, 2, body, 2,
		     "set_configuration length 2 exceeds its 1-byte type header, but it carries "
		     "no data");
	expect_proto(0, 0, UG_DIR_G2H, 1, NULL, usb_redir_cancel_data_packet, 1, body, 1,
		     "cancel_data_packet length 1 exceeds its 0-byte type header, but it "
		     "carries no data");
}

static void mk(struct ug_usbredir_packet *p, uint32_t type, const void *data, uint32_t len)
{
	memset(p, 0, sizeof(*p));
	p->type = type;
	p->id = 5;
	p->data = data;
	p->data_len = len;
}

static void test_data_rules(void **state)
{
	struct ug_usbredir_packet p;
	uint8_t d[16] = { 0 };

	/* Control: OUT data goes to the host, IN data to the guest, length must match. */
	mk(&p, usb_redir_control_packet, d, 4);
	p.h.control_packet.endpoint = 0x00;
	p.h.control_packet.length = 5;
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "control_packet: 4 data bytes, but the header says 5");
	p.h.control_packet.endpoint = 0x80;
	p.h.control_packet.length = 4;
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "control_packet: 4 data bytes on endpoint 80, which carries none in this "
		     "direction");
	p.h.control_packet.endpoint = 0x00;
	expect_proto(0, 0, UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "control_packet: 4 data bytes on endpoint 00, which carries none in this "
		     "direction");
	/* Iso without data is always the wrong direction. */
	mk(&p, usb_redir_iso_packet, NULL, 0);
	p.h.iso_packet.endpoint = 0x81;
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "iso_packet: endpoint 81 without data: sent in the wrong direction");
	p.h.iso_packet.endpoint = 0x01;
	expect_proto(0, 0, UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "iso_packet: endpoint 01 without data: sent in the wrong direction");
	/* Interrupt: an IN request without data may not go to the host... */
	mk(&p, usb_redir_interrupt_packet, NULL, 0);
	p.h.interrupt_packet.endpoint = 0x81;
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "interrupt_packet: endpoint 81 without data: sent in the wrong direction");
	/* Bulk: the 32-bit length counts only with 32bits_bulk_length. */
	mk(&p, usb_redir_bulk_packet, d, 16);
	p.h.bulk_packet.endpoint = 0x81;
	p.h.bulk_packet.length = 16;
	p.h.bulk_packet.length_high = 1;
	expect_proto(CAP(32bits_bulk_length), CAP(32bits_bulk_length), UG_DIR_H2G, 0, &p, 0,
		     0, NULL, 0, "bulk_packet: 16 data bytes, but the header says 65552");
	p.h.bulk_packet.length_high = 0x800;
	p.data_len = 0;
	p.h.bulk_packet.endpoint = 0x01;
	expect_proto(CAP(32bits_bulk_length), CAP(32bits_bulk_length), UG_DIR_H2G, 0, &p, 0,
		     0, NULL, 0, "bulk_packet: transfer length 134217744 > 134217728");
	/* Buffered bulk needs the guest's bulk_receiving cap and an IN endpoint with data. */
	mk(&p, usb_redir_buffered_bulk_packet, d, 16);
	p.h.buffered_bulk_packet.endpoint = 0x81;
	p.h.buffered_bulk_packet.length = 16;
	expect_proto(0, CAP(bulk_receiving), UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "buffered_bulk_packet: the receiver did not announce cap_bulk_receiving");
	p.h.buffered_bulk_packet.endpoint = 0x01;
	p.data_len = 0;
	expect_proto(CAP(bulk_receiving), CAP(bulk_receiving), UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "buffered_bulk_packet: endpoint 01 without data: sent in the wrong "
		     "direction");
	p.h.buffered_bulk_packet.length = 128u * 1024u * 1024u + 1u;
	expect_proto(CAP(bulk_receiving), CAP(bulk_receiving), UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "buffered_bulk_packet: transfer length 134217729 > 134217728");
}

static void test_type_header_rules(void **state)
{
	struct ug_usbredir_packet p;

	mk(&p, usb_redir_interface_info, NULL, 0);
	p.h.interface_info.interface_count = 33;
	expect_proto(0, 0, UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "interface_info: interface_count 33 > 32");
	mk(&p, usb_redir_start_interrupt_receiving, NULL, 0);
	p.h.start_interrupt_receiving.endpoint = 0x01;
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "start_interrupt_receiving: endpoint 01 is not an input");
	mk(&p, usb_redir_stop_interrupt_receiving, NULL, 0);
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "stop_interrupt_receiving: endpoint 00 is not an input");
	mk(&p, usb_redir_interrupt_receiving_status, NULL, 0);
	expect_proto(0, 0, UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "interrupt_receiving_status: endpoint 00 is not an input");
	/* The receiver's own cap decides, as in libusbredirparser. */
	mk(&p, usb_redir_filter_reject, NULL, 0);
	expect_proto(CAP(filter), 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "filter_reject: the receiver did not announce cap_filter");
	mk(&p, usb_redir_filter_filter, "x", 2);
	expect_proto(0, CAP(filter), UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "filter_filter: the receiver did not announce cap_filter");
	mk(&p, usb_redir_filter_filter, NULL, 0);
	expect_proto(CAP(filter), CAP(filter), UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "filter_filter: no filter string");
	mk(&p, usb_redir_filter_filter, "-1,-1", 5);
	expect_proto(CAP(filter), CAP(filter), UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "filter_filter: filter string of 5 bytes is not NUL-terminated");
	mk(&p, usb_redir_device_disconnect_ack, NULL, 0);
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "device_disconnect_ack: the receiver did not announce "
		     "cap_device_disconnect_ack");
	mk(&p, usb_redir_start_bulk_receiving, NULL, 0);
	p.h.start_bulk_receiving.endpoint = 0x81;
	expect_proto(0, 0, UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "start_bulk_receiving: the receiver did not announce cap_bulk_receiving");
	p.h.start_bulk_receiving.bytes_per_transfer = 128u * 1024u * 1024u + 1u;
	expect_proto(0, CAP(bulk_receiving), UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "start_bulk_receiving: bytes_per_transfer 134217729 > 134217728");
	p.h.start_bulk_receiving.bytes_per_transfer = 512;
	p.h.start_bulk_receiving.endpoint = 0x01;
	expect_proto(0, CAP(bulk_receiving), UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "start_bulk_receiving: endpoint 01 is not an input");
	mk(&p, usb_redir_stop_bulk_receiving, NULL, 0);
	expect_proto(0, CAP(bulk_receiving), UG_DIR_G2H, 0, &p, 0, 0, NULL, 0,
		     "stop_bulk_receiving: endpoint 00 is not an input");
	mk(&p, usb_redir_bulk_receiving_status, NULL, 0);
	expect_proto(CAP(bulk_receiving), 0, UG_DIR_H2G, 0, &p, 0, 0, NULL, 0,
		     "bulk_receiving_status: endpoint 00 is not an input");
}

/* Unknown types are surfaced, with their body as data, and decoding goes on. */
static void test_unknown_type(void **state)
{
	ug_usbredir_session *s = session_with(CAP(64bits_ids), CAP(64bits_ids));
	struct stream str = { 0 };
	struct ug_usbredir_packet out;

	s_raw(&str, 1, 0x1234, 5, 0x1122334455667788ULL, "hello", 5);
	s_raw(&str, 1, usb_redir_reset, 0, 9, NULL, 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b, str.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.known, 0);
	assert_int_equal(out.type, 0x1234);
	assert_true(out.id == 0x1122334455667788ULL);
	assert_int_equal(out.data_len, 5);
	assert_memory_equal(out.data, "hello", 5);
	assert_int_equal(out.raw_len, 21);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.type, usb_redir_reset);
	assert_true(out.id == 9);
	ug_usbredir_session_free(s);
	free(str.b);
}

/* After its own hello a direction waits for the other side's; bytes fed meanwhile are kept. */
static void test_waits_for_other_hello(void **state)
{
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct stream g = { 0 }, h = { 0 };
	struct ug_usbredir_packet p, out;

	hello_pkt(&p, CAP(64bits_ids));
	s_enc(&g, 0, &p);
	mk(&p, usb_redir_get_configuration, NULL, 0);
	p.id = 0x100000001ULL;
	s_enc(&g, CAP(64bits_ids), &p);
	assert_int_equal(g.len, 80 + 16);
	hello_pkt(&p, CAP(64bits_ids));
	s_enc(&h, 0, &p);
	uint8_t *copy = malloc(g.len);
	memcpy(copy, g.b, g.len);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, copy, g.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.type, usb_redir_hello);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	memset(copy, 0, g.len);
	free(copy);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_H2G, h.b, h.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 1);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.type, usb_redir_get_configuration);
	assert_true(out.id == 0x100000001ULL);
	assert_true(out.offset == 80);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	ug_usbredir_session_free(s);
	free(g.b);
	free(h.b);
}

/* Waiting holds at most one maximal packet; beyond that the direction fails for good. */
static void test_wait_is_bounded(void **state)
{
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct stream g = { 0 };
	struct ug_usbredir_packet p, out;
	uint8_t junk[200];

	memset(junk, 0, sizeof(junk));
	assert_int_equal(ug_usbredir_session_set_max_packet(s, 100), 0);
	hello_pkt(&p, 0);
	s_enc(&g, 0, &p);
	s_put(&g, junk, sizeof(junk));
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, g.b, g.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), UG_E_STATE);
	assert_string_equal(ug_usbredir_session_errmsg(s),
			    "guest->host offset 80: 0 bytes held and 200 more fed while the "
			    "host's hello is unknown, limit 116: feed the other direction or set "
			    "the caps");
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), UG_E_STATE);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, junk, 1), UG_E_STATE);
	ug_usbredir_session_free(s);
	free(g.b);
}

/* A capture that starts after the hellos decodes with explicitly set caps. */
static void test_set_caps_mid_stream(void **state)
{
	uint32_t caps = CAP(64bits_ids) | CAP(32bits_bulk_length) | CAP(ep_info_max_packet_size);
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct stream str = { 0 };
	struct ug_usbredir_packet p, out;
	uint8_t data[70000];

	memset(data, 0x11, sizeof(data));
	assert_int_equal(ug_usbredir_session_set_caps(s, caps), 0);
	assert_int_equal(ug_usbredir_session_caps_known(s), 1);
	assert_int_equal(ug_usbredir_session_caps(s), caps);
	mk(&p, usb_redir_bulk_packet, data, 70000);
	p.id = 0xfedcba9876543210ULL;
	p.h.bulk_packet.endpoint = 0x81;
	p.h.bulk_packet.length = 70000 & 0xffff;
	p.h.bulk_packet.length_high = 1;
	s_enc(&str, caps, &p);
	assert_int_equal(str.len, 16 + 10 + 70000);
	mk(&p, usb_redir_ep_info, NULL, 0);
	p.h.ep_info.max_packet_size[3] = 512;
	s_enc(&str, caps, &p);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_H2G, str.b, str.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 1);
	assert_true(out.id == 0xfedcba9876543210ULL);
	assert_int_equal(out.data_len, 70000);
	assert_int_equal(out.h.bulk_packet.length_high, 1);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 1);
	assert_int_equal(out.type, usb_redir_ep_info);
	assert_int_equal(out.h.ep_info.max_packet_size[3], 512);
	assert_int_equal(out.raw_len, 16 + 160);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 0);
	ug_usbredir_session_free(s);
	free(str.b);
}

/* Without 32bits_bulk_length the header has no length_high: 8 bytes, field decoded as 0. */
static void test_bulk_16bit_length(void **state)
{
	ug_usbredir_session *s = session_with(CAP(32bits_bulk_length), 0);
	struct stream str = { 0 };
	struct ug_usbredir_packet p, out;
	uint8_t data[4] = { 1, 2, 3, 4 };

	mk(&p, usb_redir_bulk_packet, data, 4);
	p.h.bulk_packet.endpoint = 0x03;
	p.h.bulk_packet.length = 4;
	p.h.bulk_packet.length_high = 0x7777; /* not on the wire without the cap */
	p.h.bulk_packet.stream_id = 0xabcdef01;
	s_enc(&str, 0, &p);
	assert_int_equal(str.len, 12 + 8 + 4);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b, str.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.h.bulk_packet.length_high, 0);
	assert_int_equal(out.h.bulk_packet.stream_id, 0xabcdef01);
	assert_memory_equal(out.data, data, 4);
	ug_usbredir_session_free(s);
	free(str.b);
}

/* A second hello is passed on but does not change the negotiated caps. */
static void test_second_hello_ignored(void **state)
{
	ug_usbredir_session *s = session_with(CAP(64bits_ids), CAP(64bits_ids));
	struct stream str = { 0 };
	struct ug_usbredir_packet p, out;

	hello_pkt(&p, 0);
	s_raw(&str, 1, usb_redir_hello, 68, 0, p.h.hello.version, 64);
	s_put(&str, "\0\0\0\0", 4);
	mk(&p, usb_redir_reset, NULL, 0);
	p.id = 1ULL << 40;
	s_enc(&str, CAP(64bits_ids), &p);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b, str.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.type, usb_redir_hello);
	assert_int_equal(ug_usbredir_session_caps(s), CAP(64bits_ids));
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.type, usb_redir_reset);
	assert_true(out.id == 1ULL << 40);
	ug_usbredir_session_free(s);
	free(str.b);
}

/* A hello with several cap words, or a torn last word, as the peer sent it. */
static void test_hello_cap_words(void **state)
{
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct stream str = { 0 };
	struct ug_usbredir_packet out;
	uint8_t body[64 + 4 * 10 + 2];
	size_t len = 0;

	memset(body, 0, sizeof(body));
	memcpy(body, "peer", 4);
	for (int i = 0; i < 10; i++)
		ug_put_le32(body + 64 + 4 * i, 0x100u + (unsigned)i);
	s_raw(&str, 0, usb_redir_hello, sizeof(body), 0, body, sizeof(body));
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_H2G, str.b, str.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 1);
	assert_int_equal(out.h.hello.caps_count, 10);
	assert_int_equal(out.h.hello.caps[7], 0x107);
	assert_int_equal(out.data_len, 42);
	assert_string_equal(out.h.hello.version, "peer");
	/* More words than the struct keeps cannot be re-encoded. */
	assert_int_equal(ug_usbredir_encode(0, &out, NULL, 0, &len), UG_E_INVAL);
	ug_usbredir_session_free(s);
	free(str.b);
}

static void test_encode_errors(void **state)
{
	struct ug_usbredir_packet p;
	uint8_t buf[64];
	size_t len = 123;

	mk(&p, usb_redir_control_packet, NULL, 0);
	assert_int_equal(ug_usbredir_encode(0, &p, buf, 21, &len), UG_E_TOOBIG);
	assert_int_equal(len, 22);
	assert_int_equal(ug_usbredir_encode(CAP(64bits_ids), &p, buf, 25, &len), UG_E_TOOBIG);
	assert_int_equal(len, 26);
	assert_int_equal(ug_usbredir_encode(0, &p, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 22);
	p.data_len = 3;
	assert_int_equal(ug_usbredir_encode(0, &p, buf, sizeof(buf), &len), UG_E_INVAL);
	assert_int_equal(ug_usbredir_encode(0, NULL, buf, sizeof(buf), &len), UG_E_INVAL);
}

static void test_bad_arguments(void **state)
{
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct ug_usbredir_packet out;

	assert_int_equal(ug_usbredir_session_feed(s, (enum ug_dir)2, "x", 1), UG_E_INVAL);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, NULL, 1), UG_E_INVAL);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, NULL, 0), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, NULL), UG_E_INVAL);
	assert_int_equal(ug_usbredir_session_next(NULL, UG_DIR_G2H, &out), UG_E_INVAL);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	assert_string_equal(ug_usbredir_session_errmsg(s), "");
	ug_usbredir_session_free(s);
}

/* Feeding again before next() drained the buffer keeps the bytes in order. */
static void test_feed_without_drain(void **state)
{
	ug_usbredir_session *s = session_with(0, 0);
	struct stream str = { 0 };
	struct ug_usbredir_packet p, out;

	mk(&p, usb_redir_reset, NULL, 0);
	for (int i = 0; i < 3; i++) {
		p.id = (uint64_t)i;
		s_enc(&str, 0, &p);
	}
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b, 14), 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, str.b + 14, str.len - 14), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
		assert_true(out.id == (uint64_t)i);
	}
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 0);
	ug_usbredir_session_free(s);
	free(str.b);
}

/* Feeding without next() in between holds the bytes, but not beyond the limit. */
static void test_feed_without_next_is_bounded(void **state)
{
	ug_usbredir_session *s = session_with(0, 0);
	uint8_t junk[80];

	memset(junk, 0, sizeof(junk));
	assert_int_equal(ug_usbredir_session_set_max_packet(s, 100), 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, junk, sizeof(junk)), 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, junk, sizeof(junk)), 0);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, junk, sizeof(junk)), UG_E_STATE);
	assert_string_equal(ug_usbredir_session_errmsg(s),
			    "guest->host offset 80: 80 bytes held and 80 more fed without next() "
			    "in between, limit 116");
	ug_usbredir_session_free(s);
}

/* Before the sender's hello, packets decode with no caps, as libusbredirparser does. */
static void test_before_sender_hello(void **state)
{
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct stream g = { 0 }, h = { 0 };
	struct ug_usbredir_packet p, out;
	uint8_t data[3] = { 7, 8, 9 };

	hello_pkt(&p, 0xff);
	s_enc(&h, 0, &p);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_H2G, h.b, h.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_H2G, &out), 1);
	mk(&p, usb_redir_bulk_packet, data, 3);
	p.h.bulk_packet.endpoint = 0x01;
	p.h.bulk_packet.length = 3;
	s_enc(&g, 0, &p);
	assert_int_equal(g.len, 12 + 8 + 3);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, g.b, g.len), 0);
	assert_int_equal(ug_usbredir_session_next(s, UG_DIR_G2H, &out), 1);
	assert_int_equal(out.type, usb_redir_bulk_packet);
	assert_int_equal(out.data_len, 3);
	assert_int_equal(ug_usbredir_session_caps_known(s), 0);
	ug_usbredir_session_free(s);
	free(g.b);
	free(h.b);
}

static uint8_t *read_data(const char *name, size_t *ret_len)
{
	const char *src = getenv("UG_SRCDIR");
	char path[4096];
	uint8_t *b = malloc(1 << 16);
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/data/%s", src ? src : ".", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_non_null(b);
	*ret_len = fread(b, 1, 1 << 16, f);
	fclose(f);
	return b;
}

/* A real session: QEMU 7.2's usb-redir, SeaBIOS enumerating a keyboard (tests/data). */
static void test_real_qemu_session(void **state)
{
	static const uint32_t g2h_types[] = { 0, 3, 3, 100, 100, 100, 6, 100, 100, 15 };
	static const uint32_t h2g_types[] = { 0, 5, 4, 1, 100, 100, 100, 5, 4, 8, 100, 100, 17,
					      103, 103, 103 };
	ug_usbredir_session *s = ug_usbredir_session_new();
	size_t glen, hlen;
	uint8_t *g = read_data("usbredir-seabios-kbd.g2h", &glen);
	uint8_t *h = read_data("usbredir-seabios-kbd.h2g", &hlen);
	struct events ev[2] = { { 0 }, { 0 } };

	/* The guest's stream first, whole: it waits for the host's hello, then comes out. */
	decode_chunked(s, UG_DIR_G2H, g, glen, glen, 0, &ev[0]);
	assert_int_equal(ev[0].n, 1);
	decode_chunked(s, UG_DIR_H2G, h, hlen, 5, 0, &ev[1]);
	decode_chunked(s, UG_DIR_G2H, NULL, 0, 1, 0, &ev[0]);
	assert_int_equal(ug_usbredir_session_caps(s), 0x7e);
	assert_int_equal(ev[0].n, UG_NELEMS(g2h_types));
	assert_int_equal(ev[1].n, UG_NELEMS(h2g_types));
	for (size_t i = 0; i < ev[0].n; i++) {
		assert_int_equal(ev[0].e[i].rc, 1);
		assert_int_equal(ev[0].e[i].p.type, g2h_types[i]);
	}
	for (size_t i = 0; i < ev[1].n; i++) {
		assert_int_equal(ev[1].e[i].rc, 1);
		assert_int_equal(ev[1].e[i].p.type, h2g_types[i]);
	}
	assert_string_equal(ev[0].e[0].p.h.hello.version, "qemu usb-redir guest 7.2.22");
	assert_int_equal(ev[0].e[0].p.h.hello.caps[0], 0xff);
	/* GET_DESCRIPTOR(device, 8) and its answer share the id QEMU picked. */
	assert_int_equal(ev[0].e[3].p.h.control_packet.requesttype, 0x80);
	assert_int_equal(ev[0].e[3].p.h.control_packet.request, 6);
	assert_int_equal(ev[0].e[3].p.h.control_packet.value, 0x100);
	assert_int_equal(ev[0].e[3].p.h.control_packet.length, 8);
	assert_int_equal(ev[0].e[3].p.data_len, 0);
	assert_true(ev[1].e[4].p.id == ev[0].e[3].p.id);
	assert_int_equal(ev[1].e[4].p.data_len, 8);
	assert_int_equal(ev[1].e[4].raw[16 + 10], 18); /* bLength of the device descriptor */
	assert_int_equal(ev[0].e[6].p.h.set_configuration.configuration, 1);
	assert_int_equal(ev[0].e[9].p.h.start_interrupt_receiving.endpoint, 0x81);
	assert_int_equal(ev[1].e[1].p.raw_len, 16 + 160);
	assert_int_equal(ev[1].e[1].p.h.ep_info.type[17], 3);
	assert_int_equal(ev[1].e[1].p.h.ep_info.max_packet_size[17], 8);
	assert_int_equal(ev[1].e[3].p.h.device_connect.vendor_id, 0x0627);
	assert_int_equal(ev[1].e[3].p.h.device_connect.device_version_bcd, 0x0100);
	assert_int_equal(ev[1].e[15].p.h.interrupt_packet.endpoint, 0x81);
	assert_int_equal(ev[1].e[15].p.data_len, 8);
	/* Every packet re-encodes to its bytes. */
	for (int dir = 0; dir < 2; dir++) {
		for (size_t i = 0; i < ev[dir].n; i++) {
			struct ug_usbredir_packet *p = &ev[dir].e[i].p;
			uint8_t buf[512];
			size_t n = 0;

			/* The views died with the fed buffers: point them into the copy. */
			p->data = ev[dir].e[i].raw + p->raw_len - p->data_len;
			assert_int_equal(ug_usbredir_encode(0x7e, p, buf, sizeof(buf), &n), 0);
			assert_int_equal(n, ev[dir].e[i].p.raw_len);
			assert_memory_equal(buf, ev[dir].e[i].raw, n);
		}
		ev_free(&ev[dir]);
	}
	ug_usbredir_session_free(s);
	free(g);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_hellos_negotiate),
		cmocka_unit_test(test_every_type_every_caps),
		cmocka_unit_test(test_chunking_equivalence),
		cmocka_unit_test(test_split_packet_assembled),
		cmocka_unit_test(test_too_big_is_skipped),
		cmocka_unit_test(test_length_checks),
		cmocka_unit_test(test_length_checks_caps),
		cmocka_unit_test(test_data_rules),
		cmocka_unit_test(test_type_header_rules),
		cmocka_unit_test(test_unknown_type),
		cmocka_unit_test(test_waits_for_other_hello),
		cmocka_unit_test(test_wait_is_bounded),
		cmocka_unit_test(test_set_caps_mid_stream),
		cmocka_unit_test(test_bulk_16bit_length),
		cmocka_unit_test(test_second_hello_ignored),
		cmocka_unit_test(test_hello_cap_words),
		cmocka_unit_test(test_encode_errors),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_feed_without_drain),
		cmocka_unit_test(test_before_sender_hello),
		cmocka_unit_test(test_feed_without_next_is_bounded),
		cmocka_unit_test(test_real_qemu_session),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
