/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-usbredir.c: fuzzes the usbredir session decoder: chunking equivalence and encode round-trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Input layout: 4 control bytes, then the stream.
 *   [0] caps of the stream's sender (a hello is not sent for it: the stream
 *       itself may start with one), or the negotiated caps with flag SET_CAPS
 *   [1] caps of the receiver, announced in a hello on the other direction
 *   [2] flags below
 *   [3] seed of the chunk sizes
 */
#define F_SET_CAPS  0x01 /* decode as a capture that starts after the hellos */
#define F_H2G       0x02 /* the stream is host->guest (else guest->host) */
#define F_SMALL_MAX 0x04 /* packet limit 4096 bytes, to reach the too-big path */
#define HEADER 4

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* A digest of every event, to compare two decodings of the same bytes. */
struct digest {
	uint64_t h;
	uint64_t events;
};

static void mix(struct digest *d, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		d->h = (d->h ^ b[i]) * 0x100000001b3ULL;
}

static uint8_t enc_buf[65536];

static void check_packet(const ug_usbredir_session *s, const struct ug_usbredir_packet *p,
			 uint64_t expect_offset)
{
	uint8_t *buf;
	size_t len = 0;
	int r;

	CHECK(p->offset == expect_offset);
	CHECK(p->raw_len == 12 + (size_t)p->length || p->raw_len == 16 + (size_t)p->length);
	CHECK(p->data_len <= p->length);
	if (p->data_len) {
		CHECK(p->data >= p->raw && p->data + p->data_len == p->raw + p->raw_len);
	}
	if (p->known)
		CHECK(ug_usbredir_type_name(p->type) != NULL);
	else
		CHECK(ug_usbredir_type_name(p->type) == NULL && p->data_len == p->length);
	/*
	 * Re-encoding a decoded packet gives back its bytes, except for hellos
	 * the encoder cannot reproduce: a torn cap word, more cap words than kept,
	 * or a second hello sent after 64-bit ids were negotiated.
	 */
	if (p->type == usb_redir_hello &&
	    (p->data_len % 4 || p->h.hello.caps_count > UG_USBREDIR_MAX_CAP_WORDS ||
	     p->raw_len != 12 + (size_t)p->length))
		return;
	buf = p->raw_len <= sizeof(enc_buf) ? enc_buf : malloc(p->raw_len);
	CHECK(buf != NULL);
	r = ug_usbredir_encode(ug_usbredir_session_caps(s), p, buf, p->raw_len, &len);
	CHECK(r == 0 && len == p->raw_len);
	CHECK(memcmp(buf, p->raw, len) == 0);
	if (buf != enc_buf)
		free(buf);
}

static void run(const uint8_t *data, size_t size, int chunking, struct digest *dg)
{
	uint8_t caps_a = data[0], caps_b = data[1], flags = data[2];
	enum ug_dir dir = (flags & F_H2G) ? UG_DIR_H2G : UG_DIR_G2H;
	const uint8_t *stream = data + HEADER;
	size_t len = size - HEADER, pos = 0;
	uint64_t seed = data[3] * 0x9E3779B97F4A7C15ULL + 1, offset = 0;
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct ug_usbredir_packet pkt;
	int resync = 0;

	CHECK(s != NULL);
	if (flags & F_SMALL_MAX)
		CHECK(ug_usbredir_session_set_max_packet(s, 4096) == 0);
	if (flags & F_SET_CAPS) {
		CHECK(ug_usbredir_session_set_caps(s, caps_a) == 0);
	} else {
		uint8_t hello[12 + 64 + 4];
		size_t n = 0;

		memset(&pkt, 0, sizeof(pkt));
		pkt.type = usb_redir_hello;
		pkt.h.hello.caps_count = 1;
		pkt.h.hello.caps[0] = caps_b;
		CHECK(ug_usbredir_encode(0, &pkt, hello, sizeof(hello), &n) == 0);
		CHECK(ug_usbredir_session_feed(s, !dir, hello, n) == 0);
		CHECK(ug_usbredir_session_next(s, !dir, &pkt) == 1);
		CHECK(ug_usbredir_session_next(s, !dir, &pkt) == 0);
	}
	while (pos < len) {
		size_t n = len - pos;
		int r;

		if (chunking) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			n = 1 + (size_t)(seed % (chunking == 1 ? 1 : 64));
			if (n > len - pos)
				n = len - pos;
		}
		CHECK(ug_usbredir_session_feed(s, dir, stream + pos, n) == 0);
		pos += n;
		while ((r = ug_usbredir_session_next(s, dir, &pkt)) != 0) {
			dg->events++;
			mix(dg, &r, sizeof(r));
			if (r == 1) {
				if (resync) {
					CHECK(pkt.offset >= offset);
					offset = pkt.offset;
					resync = 0;
				}
				check_packet(s, &pkt, offset);
				offset += pkt.raw_len;
				mix(dg, &pkt.type, sizeof(pkt.type));
				mix(dg, &pkt.id, sizeof(pkt.id));
				mix(dg, &pkt.offset, sizeof(pkt.offset));
				mix(dg, pkt.raw, pkt.raw_len);
			} else {
				const char *m = ug_usbredir_session_errmsg(s);

				/* The receiver's caps are always known here: nothing waits. */
				CHECK(r == UG_E_PROTO || r == UG_E_TOOBIG);
				CHECK(m[0] != '\0');
				mix(dg, m, strlen(m));
				/* The next packet starts after the bad one, wherever that is. */
				resync = 1;
			}
		}
	}
	ug_usbredir_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct digest whole = { 0xcbf29ce484222325ULL, 0 }, one = whole, some = whole;

	if (size < HEADER)
		return 0;
	run(data, size, 0, &whole);
	run(data, size, 1, &one);
	run(data, size, 2, &some);
	/* Byte-at-a-time and random chunks give exactly what one big feed gives. */
	CHECK(whole.h == one.h && whole.events == one.events);
	CHECK(whole.h == some.h && whole.events == some.events);
	return 0;
}
