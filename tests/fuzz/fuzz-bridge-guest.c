/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-bridge-guest.c: hostile guest bytes into a device bridge session (usbredirhost's parser and our plumbing). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "transport.h"
#include "usbgate.h"

#define MAX_DELIVERIES 256

/*
 * Input: byte 0 picks how the rest is cut into deliveries (0: one delivery,
 * else chunks of that many bytes, so packets straddle reads; larger chunks
 * where that would make more than MAX_DELIVERIES); byte 1 bit 0
 * makes the peer "slow" (its queue refuses after 4 KiB, which drives the
 * bridge's back-pressure path). The rest is what the guest sends.
 */
struct mem_transport {
	ug_transport base;
	size_t queued;
	int slow;
};

static int mem_send(ug_transport *t, const void *data, size_t len)
{
	struct mem_transport *m = (struct mem_transport *)t;

	if (m->slow && m->queued + len > 4096)
		return UG_E_TOOBIG;
	m->queued += len;
	return 0;
}

static size_t mem_pending(const ug_transport *t)
{
	return ((const struct mem_transport *)t)->queued;
}

static void mem_close(ug_transport *t)
{
}

static void mem_destroy(ug_transport *t)
{
	free(t);
}

static const struct ug_transport_vtable mem_vtable = {
	.send = mem_send,
	.pending = mem_pending,
	.close = mem_close,
	.destroy = mem_destroy,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* One host for the whole run: libusb and its thread are not per input. */
	static ug_usb_host *host;
	struct mem_transport *m;
	ug_usb_selector *sel;
	ug_device_bridge *b;
	size_t chunk, off;

	if (size < 2)
		return 0;
	if (!host)
		host = ug_usb_host_new(NULL, 0);
	if (!host || ug_usb_selector_parse("fffe:fffd", &sel, NULL, 0) < 0)
		abort();
	b = ug_device_bridge_new(host, "fuzz", sel, NULL);
	m = calloc(1, sizeof(*m));
	if (!b || !m)
		abort();
	ug_transport_init(&m->base, &mem_vtable, "fuzz peer");
	m->slow = data[1] & 1;
	if (ug_device_bridge_attach(b, &m->base) < 0)
		abort();
	chunk = data[0] ? data[0] : size;
	/* At most MAX_DELIVERIES (each runs the main loop): small chunks of a
	 * long input cost time, not coverage. */
	if ((size - 2) / chunk > MAX_DELIVERIES)
		chunk = (size - 2) / MAX_DELIVERIES + 1;
	for (off = 2; off < size && ug_device_bridge_in_session(b); off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		ug_transport_deliver(&m->base, data + off, n);
		/* Let queued writes (woken from any thread) go out. */
		for (int i = 0; i < 4 && g_main_context_iteration(NULL, FALSE); i++)
			;
		/* A slow peer drains a little now and then. */
		if (m->slow && m->queued > 0)
			m->queued /= 2;
	}
	ug_device_bridge_free(b);
	for (int i = 0; i < 8 && g_main_context_iteration(NULL, FALSE); i++)
		;
	return 0;
}
