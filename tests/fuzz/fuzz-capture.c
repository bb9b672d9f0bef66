/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-capture.c: a capture file image through ug_capture (pcap source, TCP reassembly, classifier). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole image; the events are checked for the invariants a
 * consumer relies on, and a violation crashes on purpose. */
static void read_all(const uint8_t *data, size_t size, const struct ug_capture_limits *l)
{
	struct ug_capture_event ev;
	ug_capture *c = ug_capture_new();
	uint64_t done, total;

	if (!c)
		return;
	if (l && ug_capture_set_limits(c, l) < 0)
		__builtin_trap();
	if (ug_capture_open_memory(c, data, size) == 0) {
		while (ug_capture_next(c, &ev) == 1) {
			if (ev.type == UG_CAPTURE_DATA) {
				size_t n = ev.len < UG_CAPTURE_CLASSIFY_BYTES ? ev.len : UG_CAPTURE_CLASSIFY_BYTES;

				if (!ev.data || ev.len == 0 || !ev.conn)
					__builtin_trap();
				/* Touch every byte so ASan sees stale views. */
				volatile uint8_t sum = 0;
				for (uint64_t i = 0; i < ev.len; i++)
					sum ^= ev.data[i];
				(void)sum;
				ug_capture_classify(ev.data, n, ev.data, n);
			} else if (ev.type == UG_CAPTURE_NOTICE || ev.type == UG_CAPTURE_GAP) {
				if (!ev.message || strlen(ev.message) == 0)
					__builtin_trap();
			}
		}
		if (ug_capture_progress(c, &done, &total) == 0 && done > total)
			__builtin_trap();
	}
	ug_capture_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Tight limits reach eviction, memory-limit gaps and the window. */
	static const struct ug_capture_limits tight = {
		.max_connections = 3,
		.max_buffered_per_side = 2048,
		.max_buffered_total = 4096,
		.window = 65536,
		.reorder_window = 2,
	};

	read_all(data, size, NULL);
	read_all(data, size, &tight);
	return 0;
}
