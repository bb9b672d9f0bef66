/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-spice.c: fuzz target for the SPICE codec: a channel connection through the passive decoder, headers, message bodies, LZ4. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common.h"
#include "spice-codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every body decoder on every message body: they must all stay inside it. */
static void decode_body(uint16_t type, const uint8_t *b, size_t n, struct ug_buf *vmc)
{
	struct ug_spice_channel_id ids[64];
	struct ug_spice_main_init mi;
	struct ug_spice_ping ping;
	struct ug_spice_notify notify;
	struct ug_spice_disconnecting dc;
	struct ug_spice_set_ack ack;
	struct ug_spice_migrate_dst dst;
	uint32_t flags;
	size_t count;
	volatile uint8_t sink = 0;

	ug_spice_main_init_decode(b, n, &mi, NULL);
	if (ug_spice_channels_list_decode(b, n, ids, 64, &count, NULL) == 0)
		for (size_t i = 0; i < count; i++)
			sink ^= ids[i].type;
	ug_spice_ping_decode(b, n, &ping, NULL);
	if (ug_spice_notify_decode(b, n, &notify, NULL) == 0 && notify.message_len)
		sink ^= notify.message[notify.message_len - 1];
	ug_spice_disconnecting_decode(b, n, &dc, NULL);
	ug_spice_set_ack_decode(b, n, &ack, NULL);
	ug_spice_migrate_decode(b, n, &flags, NULL);
	if (ug_spice_migrate_begin_decode(b, n, &dst, NULL) == 0 && dst.host_len)
		sink ^= dst.host[dst.host_len - 1];
	if (type == SPICE_MSG_SPICEVMC_COMPRESSED_DATA || (n > 0 && b[0] == 1)) {
		ug_buf_reset(vmc);
		if (ug_spice_vmc_decompress(b, n, 1u << 20, vmc, NULL) == 0 && vmc->len)
			sink ^= ug_buf_peek(vmc)[vmc->len - 1];
	}
	(void)sink;
}

/* A data message: its body, and its usbredir payload if it has one. */
static void decode_message(const struct ug_spice_unit *u, struct ug_buf *vmc)
{
	volatile uint8_t sink = 0;
	const uint8_t *p;
	size_t n;

	decode_body(u->type, u->body, u->size, vmc);
	if (ug_spice_vmc_payload(u, 1u << 20, vmc, &p, &n, NULL) == 1 && n > 0)
		sink ^= p[n - 1];
	(void)sink;
}

/*
 * Mode 0: a recorded connection. The input is a list of records
 * {u8 direction (bit 0: from server), u16 length, bytes}, fed in order the
 * way a proxy sees them to the library's passive decoder (lib/spice-stream.c,
 * which runs this codec's link and data units); every usbredir view is read
 * to its last byte. fuzz-spice-stream adds gaps, ends and one-byte feeds.
 */
static void run_connection(const uint8_t *data, size_t size)
{
	ug_spice_stream *s = ug_spice_stream_new();
	struct ug_spice_stream_event ev;
	volatile uint8_t sink = 0;
	size_t pos = 0;

	if (!s)
		return;
	ug_spice_stream_set_limits(s, 1u << 20, 1u << 20);
	while (pos + 3 <= size) {
		int dir = data[pos] & 1;
		size_t n = ug_get_le16(data + pos + 1);

		pos += 3;
		if (n > size - pos)
			n = size - pos;
		if (ug_spice_stream_feed(s, dir, data + pos, n) < 0)
			break;
		pos += n;
		while (ug_spice_stream_next(s, &ev) > 0)
			if (ev.type == UG_SPICE_STREAM_USBREDIR_DATA && ev.len)
				sink ^= ev.data[0] ^ ev.data[ev.len - 1];
	}
	(void)sink;
	ug_spice_stream_free(s);
}

/* Mode 1: one direction of data messages, fed in chunks of a size the input picks. */
static void run_headers(const uint8_t *data, size_t size, struct ug_buf *vmc)
{
	ug_spice_dec *d;
	struct ug_spice_unit u;
	size_t step, pos = 0;

	if (size < 1)
		return;
	step = (data[0] >> 1) + 1;
	d = ug_spice_dec_new(data[0] & 1 ? UG_SPICE_UNIT_FULL : UG_SPICE_UNIT_MINI, 0);
	if (!d)
		return;
	ug_spice_dec_set_max_message(d, 1u << 20);
	data++;
	size--;
	while (pos < size) {
		size_t n = step < size - pos ? step : size - pos;
		int r;

		ug_spice_dec_feed(d, data + pos, n);
		pos += n;
		while ((r = ug_spice_dec_next(d, &u)) != 0) {
			if (r == 1)
				decode_message(&u, vmc);
			else if (r != UG_E_TOOBIG)
				break;
		}
		if (r < 0 && r != UG_E_TOOBIG)
			break;
	}
	ug_spice_dec_free(d);
}

/* Mode 2: link bodies straight into both link decoders. */
static void run_link(const uint8_t *data, size_t size)
{
	struct ug_spice_link_mess m;
	struct ug_spice_link_reply r;
	struct ug_spice_link_header h;

	ug_spice_link_mess_decode(data, size, &m, NULL);
	ug_spice_link_reply_decode(data, size, &r, NULL);
	if (size >= UG_SPICE_LINK_HEADER_SIZE)
		ug_spice_link_header_decode(data, size, 4096, &h, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ug_buf vmc;

	if (size < 1)
		return 0;
	ug_buf_init(&vmc, 1u << 20);
	switch (data[0] % 3) {
	case 0:
		run_connection(data + 1, size - 1);
		break;
	case 1:
		run_headers(data + 1, size - 1, &vmc);
		break;
	default:
		run_link(data + 1, size - 1);
		break;
	}
	ug_buf_release(&vmc);
	return 0;
}
