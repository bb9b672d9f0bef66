/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-capture.c: a capture file image through ug_capture (pcap source, TCP reassembly, classifier). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where each side of each open connection stands, to check event order. */
struct track {
	uint32_t id;
	int closed;
	uint64_t next[2];
};
#define TRACKED 4096

/* Stream order: every DATA and GAP starts where the last one of its side
 * ended, END is at that point, nothing follows CLOSE. */
static void check_order(struct track *t, const struct ug_capture_event *ev)
{
	struct track *k;

	if (!ev->conn)
		return;
	k = &t[ev->conn->id % TRACKED];
	if (ev->type == UG_CAPTURE_OPEN) {
		memset(k, 0, sizeof(*k));
		k->id = ev->conn->id;
		return;
	}
	if (k->id != ev->conn->id || k->closed)
		__builtin_trap();
	switch (ev->type) {
	case UG_CAPTURE_DATA:
	case UG_CAPTURE_GAP:
		if (ev->offset != k->next[ev->side] || ev->len == 0)
			__builtin_trap();
		k->next[ev->side] += ev->len;
		break;
	case UG_CAPTURE_END:
		if (ev->offset != k->next[ev->side])
			__builtin_trap();
		break;
	case UG_CAPTURE_CLOSE:
		if (ev->conn->proto == UG_CAPTURE_PROTO_NEED_MORE)
			__builtin_trap();
		k->closed = 1;
		break;
	default:
		break;
	}
}

/* Reads the whole image; the events are checked for the invariants a
 * consumer relies on, and a violation crashes on purpose. */
static void read_all(const uint8_t *data, size_t size, const struct ug_capture_limits *l)
{
	static struct track t[TRACKED];
	struct ug_capture_event ev;
	ug_capture *c = ug_capture_new();
	uint64_t done, total;

	if (!c)
		return;
	if (l && ug_capture_set_limits(c, l) < 0)
		__builtin_trap();
	memset(t, 0, sizeof(t));
	if (ug_capture_open_memory(c, data, size) == 0) {
		while (ug_capture_next(c, &ev) == 1) {
			check_order(t, &ev);
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
