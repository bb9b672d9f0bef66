/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-spice-stream.c: ug_spice_stream throughput on a usbredir channel, against the codec's bare framing and memcpy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "common.h"
#include "spice-codec.h"

/*
 * One synthetic usbredir channel connection (link, ticket, then 64 MiB of
 * usbredir bytes each way in spicevmc messages of at most 64 KiB, as
 * spice-server sends them), fed in 64 KiB pieces as a capture or the proxy
 * would. Three runs over the same bytes, in the same process:
 *   anchor  memcpy of every fed piece into a 64 KiB buffer
 *   codec   ug_spice_dec framing only (what ug_spice_stream builds on)
 *   stream  ug_spice_stream: link, framing, events, usbredir bytes out
 * and the same with LZ4 (compressible payload, COMPRESSED_DATA both ways),
 * where stream includes the decompression.
 */

#define PAYLOAD (64u << 20)
#define PIECE 65536u

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void build(struct ug_buf *c2s, struct ug_buf *s2c, int lz4, size_t *data_off)
{
	struct ug_spice_link_mess m;
	struct ug_spice_link_reply r;
	uint8_t tmp[512];
	uint64_t cs = 0, ss = 0;
	uint8_t *payload = malloc(PAYLOAD);
	size_t len;

	memset(&m, 0, sizeof(m));
	memset(&r, 0, sizeof(r));
	for (size_t i = 0; i < PAYLOAD; i++)
		payload[i] = lz4 ? (uint8_t)((i / 64) & 0x0f) : (uint8_t)(i * 2654435761u >> 13);
	ug_buf_init(c2s, 512u << 20);
	ug_buf_init(s2c, 512u << 20);
	m.channel_type = SPICE_CHANNEL_USBREDIR;
	ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_MINI_HEADER);
	r.caps = m.caps;
	ug_spice_link_mess_encode(&m, tmp, sizeof(tmp), &len);
	ug_buf_append(c2s, tmp, len);
	ug_spice_link_reply_encode(&r, tmp, sizeof(tmp), &len);
	ug_buf_append(s2c, tmp, len);
	memset(tmp, 0, UG_SPICE_TICKET_SIZE);
	ug_buf_append(c2s, tmp, UG_SPICE_TICKET_SIZE);
	ug_buf_append(s2c, tmp, 4);
	data_off[0] = c2s->len;
	data_off[1] = s2c->len;
	if (ug_spice_vmc_append(c2s, 1, &cs, lz4, 65536, payload, PAYLOAD) < 0 ||
	    ug_spice_vmc_append(s2c, 1, &ss, lz4, 65536, payload, PAYLOAD) < 0) {
		fprintf(stderr, "bench: cannot build the session\n");
		exit(1);
	}
	free(payload);
}

static double run_anchor(const struct ug_buf *b[2])
{
	static uint8_t sink[PIECE];
	double t0 = now();

	for (int d = 0; d < 2; d++)
		for (size_t o = 0; o < b[d]->len; o += PIECE) {
			size_t n = b[d]->len - o < PIECE ? b[d]->len - o : PIECE;

			memcpy(sink, ug_buf_peek(b[d]) + o, n);
		}
	return now() - t0;
}

static double run_codec(const struct ug_buf *b[2], const size_t *data_off, uint64_t *ret_msgs)
{
	double t0 = now();
	uint64_t msgs = 0;

	for (int d = 0; d < 2; d++) {
		ug_spice_dec *dec = ug_spice_dec_new(UG_SPICE_UNIT_MINI, 0);
		struct ug_spice_unit u;

		for (size_t o = data_off[d]; o < b[d]->len; o += PIECE) {
			size_t n = b[d]->len - o < PIECE ? b[d]->len - o : PIECE;

			ug_spice_dec_feed(dec, ug_buf_peek(b[d]) + o, n);
			while (ug_spice_dec_next(dec, &u) > 0)
				msgs++;
		}
		ug_spice_dec_free(dec);
	}
	*ret_msgs = msgs;
	return now() - t0;
}

static double run_stream(const struct ug_buf *b[2], uint64_t *ret_bytes)
{
	ug_spice_stream *s = ug_spice_stream_new();
	struct ug_spice_stream_event ev;
	uint64_t bytes = 0;
	double t0 = now();

	/* Pieces alternate between the directions, as a capture delivers them. */
	for (size_t o = 0; o < b[0]->len || o < b[1]->len; o += PIECE)
		for (int d = 0; d < 2; d++) {
			size_t n;

			if (o >= b[d]->len)
				continue;
			n = b[d]->len - o < PIECE ? b[d]->len - o : PIECE;
			ug_spice_stream_feed(s, d, ug_buf_peek(b[d]) + o, n);
			while (ug_spice_stream_next(s, &ev) > 0)
				if (ev.type == UG_SPICE_STREAM_USBREDIR_DATA)
					bytes += ev.len;
		}
	ug_spice_stream_free(s);
	*ret_bytes = bytes;
	return now() - t0;
}

int main(void)
{
	for (int lz4 = 0; lz4 < 2; lz4++) {
		struct ug_buf c2s, s2c;
		const struct ug_buf *b[2] = { &c2s, &s2c };
		size_t data_off[2];
		uint64_t msgs, bytes;
		double ta, tc, ts, mb;

		build(&c2s, &s2c, lz4, data_off);
		mb = (c2s.len + s2c.len) / 1e6;
		/* Warm up, then measure. */
		run_anchor(b);
		ta = run_anchor(b);
		tc = run_codec(b, data_off, &msgs);
		ts = run_stream(b, &bytes);
		if (bytes != 2ull * PAYLOAD) {
			fprintf(stderr, "bench: decoded %llu usbredir bytes, expected %llu\n",
			        (unsigned long long)bytes, 2ull * PAYLOAD);
			return 1;
		}
		printf("%s: %.1f MB on the wire, %llu messages, %.1f MB usbredir\n",
		       lz4 ? "LZ4 COMPRESSED_DATA" : "SPICEVMC_DATA", mb, (unsigned long long)msgs,
		       bytes / 1e6);
		printf("  anchor memcpy   %8.0f MB/s\n", mb / ta);
		printf("  codec framing   %8.0f MB/s  (%.2fx anchor)\n", mb / tc, ta / tc);
		printf("  spice-stream    %8.0f MB/s  (%.2fx anchor, %.2fx codec; %.0f MB/s of "
		       "usbredir out)\n", mb / ts, ta / ts, tc / ts, bytes / 1e6 / ts);
		ug_buf_release(&c2s);
		ug_buf_release(&s2c);
	}
	return 0;
}
