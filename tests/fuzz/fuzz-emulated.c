/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-emulated.c: fuzzes the emulated device with arbitrary guest bytes, over an in-memory transport. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "common.h"
#include "transport.h"
#include "usbgate.h"
#include "../unit/replay-testgen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* A transport that swallows what the device sends and is fed by hand. */
struct mem_transport {
	ug_transport base;
	size_t sent;
};

static int mem_send(ug_transport *t, const void *data, size_t len)
{
	(void)data;
	((struct mem_transport *)t)->sent += len;
	return 0;
}

static size_t mem_pending(const ug_transport *t)
{
	(void)t;
	return 0;
}

static void mem_pause(ug_transport *t, int paused)
{
	(void)t;
	(void)paused;
}

static void mem_close(ug_transport *t)
{
	(void)t;
}

static void mem_destroy(ug_transport *t)
{
	free(t);
}

static const struct ug_transport_vtable mem_vt = {
	mem_send, mem_pending, mem_pause, mem_close, mem_destroy,
};

/* The recording every input is played against: the unit tests' standard
 * session (enumeration, mass storage reads, an interrupt stream). */
static ug_recording *recording(void)
{
	static ug_recording *rec;
	struct tg g;
	char path[64];

	if (rec)
		return rec;
	snprintf(path, sizeof(path), "/tmp/ug-fuzz-emulated-%d.pcap", (int)getpid());
	tg_init(&g);
	tg_standard(&g);
	CHECK(tg_record(&g, path, NULL) == 0);
	tg_free(&g);
	rec = ug_recording_new();
	CHECK(ug_recording_load(rec, path) == 0);
	unlink(path);
	return rec;
}

/*
 * Input: [0] flags (bit 0 strict, bit 1 recorded pace, bit 2 no hello
 * first), [1] chunk size seed, then the guest's byte stream. Unless bit 2 is
 * set, a valid guest hello goes first so the fuzzer starts past it.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem_transport *t;
	ug_emulated_device *d;
	size_t off = 2, chunk;

	if (size < 2)
		return 0;
	d = ug_emulated_device_new(recording(), NULL);
	CHECK(d);
	ug_emulated_device_set_strict(d, data[0] & 1);
	ug_emulated_device_set_pace(d, (data[0] & 2) ? UG_PACE_RECORDED : UG_PACE_FAST);
	ug_emulated_device_set_max_packet(d, 65536 + 1024);
	t = calloc(1, sizeof(*t));
	CHECK(t);
	ug_transport_init(&t->base, &mem_vt, "fuzz");
	CHECK(ug_emulated_device_attach(d, &t->base) == 0);
	if (!(data[0] & 4)) {
		struct ug_usbredir_packet p;
		uint8_t buf[128];
		size_t len;

		memset(&p, 0, sizeof(p));
		p.type = usb_redir_hello;
		p.h.hello.caps_count = 1;
		p.h.hello.caps[0] = TG_CAPS;
		CHECK(ug_usbredir_encode(0, &p, buf, sizeof(buf), &len) == 0);
		ug_transport_deliver(&t->base, buf, len);
	}
	chunk = (size_t)data[1] * 7 + 1;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;

		ug_transport_deliver(&t->base, data + off, n);
		off += n;
	}
	/* Let pushed stream data go out. */
	for (int i = 0; i < 4 && g_main_context_iteration(NULL, FALSE); i++)
		;
	{
		struct ug_replay_summary s;

		ug_replay_report_summary(ug_emulated_device_report(d), &s);
		CHECK(s.matched + s.reused + s.diverged <= s.requests + s.diverged);
		CHECK(ug_replay_report_count(ug_emulated_device_report(d)) <= UG_REPLAY_MAX_DIVERGENCES);
	}
	ug_emulated_device_free(d);
	return 0;
}
