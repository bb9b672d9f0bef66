/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-spice-stream.c: fuzz target for the passive SPICE connection decoder (lib/spice-stream.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The input is a list of operations {u8 op, u16 len, then len bytes unless
 * op says gap}: op bit 0 is the direction (1: server -> client), bit 1 makes
 * it a gap of len bytes, bit 2 ends that direction, bit 3 splits the bytes
 * into one-byte feeds. Every event's view is read to its last byte, so a
 * view that points outside live memory is caught by the sanitizers.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ug_spice_stream *s = ug_spice_stream_new();
	struct ug_spice_stream_event ev;
	volatile uint8_t sink = 0;
	size_t pos = 0;
	int ended[2] = { 0, 0 };

	if (!s)
		return 0;
	/* Small limits so that the limit paths are reached with small inputs. */
	ug_spice_stream_set_limits(s, 1u << 20, 4096);
	while (pos + 3 <= size) {
		unsigned op = data[pos];
		int side = op & 1;
		size_t n = ug_get_le16(data + pos + 1);

		pos += 3;
		if (ended[side])
			continue;
		if (op & 2) {
			ug_spice_stream_gap(s, side, n);
		} else if (op & 4) {
			ug_spice_stream_end(s, side);
			ended[side] = 1;
		} else {
			size_t step;

			if (n > size - pos)
				n = size - pos;
			step = (op & 8) ? 1 : (n ? n : 1);
			for (size_t k = 0; k < n; k += step) {
				size_t m = n - k < step ? n - k : step;

				ug_spice_stream_feed(s, side, data + pos + k, m);
				while (ug_spice_stream_next(s, &ev) > 0) {
					if (ev.type == UG_SPICE_STREAM_USBREDIR_DATA && ev.len)
						sink ^= ev.data[0] ^ ev.data[ev.len - 1];
					if (ev.type == UG_SPICE_STREAM_CHANNELS && ev.n_channels)
						sink ^= ev.channels[ev.n_channels - 1].type;
					if (ev.message)
						sink ^= (uint8_t)strlen(ev.message);
				}
			}
			pos += n;
			continue;
		}
		while (ug_spice_stream_next(s, &ev) > 0)
			if (ev.message)
				sink ^= (uint8_t)strlen(ev.message);
	}
	for (int side = 0; side < 2; side++) {
		if (!ended[side])
			ug_spice_stream_end(s, side);
		while (ug_spice_stream_next(s, &ev) > 0)
			if (ev.type == UG_SPICE_STREAM_USBREDIR_DATA && ev.len)
				sink ^= ev.data[ev.len - 1];
	}
	(void)sink;
	ug_spice_stream_free(s);
	return 0;
}
