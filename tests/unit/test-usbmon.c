/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-usbmon.c: unit tests of the usbredir -> usbmon record mapping (lib/usbmon.c), byte for byte. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pcap/usb.h>

#include <pcap/pcap.h>
#include <unistd.h>

#include "usbgate.h"
#include "usbmon-session.h"
#include "usbredir-packets.h"

#define G UG_DIR_G2H
#define H UG_DIR_H2G

/* A record as the test keeps it (the mapper's view dies at the next map). */
struct rec {
	uint8_t *bytes;
	uint32_t caplen, origlen;
};

struct rig {
	ug_tracker *t;
	ug_usbmon *m;
};

static int setup_rig(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));

	r->t = ug_tracker_new();
	r->m = ug_usbmon_new();
	*state = r;
	return 0;
}

static int teardown_rig(void **state)
{
	struct rig *r = *state;

	ug_tracker_free(r->t);
	ug_usbmon_free(r->m);
	free(r);
	return 0;
}

/* Pushes one packet through tracker and mapper; returns the record count. */
static int run(struct rig *r, struct ug_usbredir_packet pkt, uint64_t ts, struct rec *out, int max)
{
	struct ug_transfer_event ev;
	struct ug_usbmon_record rec;
	int n = 0;

	assert_int_equal(ug_tracker_push(r->t, &pkt, ts), 0);
	while (ug_tracker_next(r->t, &ev) == 1) {
		int rc = ug_usbmon_map(r->m, &ev, &rec);

		assert_true(rc == 0 || rc == 1);
		if (rc == 1) {
			assert_true(n < max);
			out[n].bytes = malloc(rec.caplen);
			memcpy(out[n].bytes, rec.bytes, rec.caplen);
			out[n].caplen = rec.caplen;
			out[n].origlen = rec.origlen;
			assert_int_equal(rec.ts_ns, ts);
			n++;
		}
	}
	return n;
}

static void release(struct rec *recs, int n)
{
	for (int i = 0; i < n; i++)
		free(recs[i].bytes);
}

/*
 * The expected header, built with libpcap's own description of the layout
 * (pcap/usb.h), independently of the mapper's offsets.
 */
struct want {
	uint64_t id;
	char type;
	uint8_t xfer, ep, dev;
	uint16_t bus;
	char flag_setup, flag_data;
	int64_t sec;
	int32_t usec, status;
	uint32_t len, len_cap;
	uint8_t setup[8];
	int32_t interval;
	uint32_t flags, ndesc;
};

static void expect_header(const uint8_t *got, const struct want *w)
{
	pcap_usb_header_mmapped h;
	uint8_t want[64];

	assert_int_equal(sizeof(h), 64);
	memset(&h, 0, sizeof(h));
	h.id = w->id;
	h.event_type = (uint8_t)w->type;
	h.transfer_type = w->xfer;
	h.endpoint_number = w->ep;
	h.device_address = w->dev;
	h.bus_id = w->bus;
	h.setup_flag = w->flag_setup;
	h.data_flag = w->flag_data;
	h.ts_sec = w->sec;
	h.ts_usec = w->usec;
	h.status = w->status;
	h.urb_len = w->len;
	h.data_len = w->len_cap;
	memcpy(&h.s, w->setup, 8);
	h.interval = w->interval;
	h.xfer_flags = w->flags;
	h.ndesc = w->ndesc;
	memcpy(want, &h, 64);
	assert_memory_equal(got, want, 64);
}

static const uint8_t dev_desc[18] = { 0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x40, 0x81,
                                      0x07, 0x67, 0x55, 0x00, 0x01, 0x01, 0x02, 0x03, 0x01 };

static void test_control_in_submit_and_completion(void **state)
{
	struct rig *r = *state;
	struct rec rec[4];
	uint64_t ts = 1732492800123456789ull;
	struct want w = {
		.type = 'S', .xfer = 2, .ep = 0x80, .dev = 1, .bus = 1, .flag_setup = 0,
		.flag_data = '<', .sec = 1732492800, .usec = 123456, .status = -115, .len = 18,
		.len_cap = 0, .setup = { 0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00 },
		.flags = 0x200,
	};

	assert_int_equal(run(r, pk_control(G, 3, 0x80, 6, 0x0100, 0, 18, 0, NULL, 0), ts, rec, 4), 1);
	w.id = ug_usbmon_urb_id(r->m, 1);
	assert_int_equal(rec[0].caplen, 64);
	assert_int_equal(rec[0].origlen, 64);
	expect_header(rec[0].bytes, &w);
	release(rec, 1);

	ts += 250000; /* 250 us later */
	assert_int_equal(run(r, pk_control(H, 3, 0x80, 6, 0x0100, 0, 18, 0, dev_desc, 18), ts, rec, 4), 1);
	w.type = 'C';
	w.flag_setup = '-';
	w.flag_data = 0;
	w.usec = 123706;
	w.status = 0;
	w.len_cap = 18;
	memset(w.setup, 0, 8);
	assert_int_equal(rec[0].caplen, 64 + 18);
	expect_header(rec[0].bytes, &w);
	assert_memory_equal(rec[0].bytes + 64, dev_desc, 18);
	release(rec, 1);
}

static void test_control_out_with_data(void **state)
{
	struct rig *r = *state;
	static const uint8_t led = 0x01;
	struct rec rec[2];
	struct want w = {
		.type = 'S', .xfer = 2, .ep = 0x00, .dev = 1, .bus = 1, .flag_setup = 0,
		.flag_data = 0, .sec = 1, .status = -115, .len = 1, .len_cap = 1,
		.setup = { 0x21, 0x09, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00 },
	};

	run(r, pk_control(G, 4, 0x21, 9, 0x0200, 0, 1, 0, &led, 1), 1000000000, rec, 2);
	w.id = ug_usbmon_urb_id(r->m, 1);
	expect_header(rec[0].bytes, &w);
	assert_int_equal(rec[0].bytes[64], 0x01);
	release(rec, 1);
	run(r, pk_control(H, 4, 0x21, 9, 0x0200, 0, 1, 0, NULL, 0), 1000000000, rec, 2);
	w.type = 'C';
	w.flag_setup = '-';
	w.flag_data = '>';
	w.status = 0;
	w.len_cap = 0;
	memset(w.setup, 0, 8);
	expect_header(rec[0].bytes, &w);
	assert_int_equal(rec[0].caplen, 64);
	release(rec, 1);
}

static void test_bulk_out_then_in(void **state)
{
	struct rig *r = *state;
	uint8_t cbw[31] = { 0x55, 0x53, 0x42, 0x43, 1, 0, 0, 0, 36, 0, 0, 0, 0x80, 0, 6, 0x12, 0, 0, 0, 36 };
	uint8_t inq[36] = { 0x00, 0x80, 0x06, 0x02, 0x1f };
	struct rec rec[2];
	struct want w = {
		.type = 'S', .xfer = 3, .ep = 0x02, .dev = 1, .bus = 1, .flag_setup = '-',
		.flag_data = 0, .status = -115, .len = 31, .len_cap = 31,
	};

	run(r, pk_bulk(G, 10, 0x02, 31, 0, cbw, 31), 0, rec, 2);
	w.id = ug_usbmon_urb_id(r->m, 1);
	expect_header(rec[0].bytes, &w);
	assert_memory_equal(rec[0].bytes + 64, cbw, 31);
	release(rec, 1);
	run(r, pk_bulk(H, 10, 0x02, 31, 0, NULL, 0), 0, rec, 2);
	w.type = 'C';
	w.flag_data = '>';
	w.status = 0;
	w.len_cap = 0;
	expect_header(rec[0].bytes, &w);
	release(rec, 1);

	run(r, pk_bulk(G, 11, 0x81, 36, 0, NULL, 0), 0, rec, 2);
	w = (struct want){ .id = ug_usbmon_urb_id(r->m, 2), .type = 'S', .xfer = 3, .ep = 0x81,
	                   .dev = 1, .bus = 1, .flag_setup = '-', .flag_data = '<',
	                   .status = -115, .len = 36, .flags = 0x200 };
	expect_header(rec[0].bytes, &w);
	release(rec, 1);
	run(r, pk_bulk(H, 11, 0x81, 36, 0, inq, 36), 0, rec, 2);
	w.type = 'C';
	w.flag_data = 0;
	w.status = 0;
	w.len_cap = 36;
	expect_header(rec[0].bytes, &w);
	assert_memory_equal(rec[0].bytes + 64, inq, 36);
	release(rec, 1);
}

static void test_status_mapping(void **state)
{
	struct rig *r = *state;
	static const struct {
		uint8_t status;
		int32_t linux_status;
	} map[] = {
		{ usb_redir_success, 0 },          { usb_redir_cancelled, -ENOENT },
		{ usb_redir_inval, -EINVAL },      { usb_redir_ioerror, -EPROTO },
		{ usb_redir_stall, -EPIPE },       { usb_redir_timeout, -ETIMEDOUT },
		{ usb_redir_babble, -EOVERFLOW },  { 200, -EPROTO },
	};
	struct rec rec[2];

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		int32_t got;

		assert_int_equal(ug_usbmon_status(map[i].status), map[i].linux_status);
		run(r, pk_bulk(G, i, 0x81, 64, 0, NULL, 0), 0, rec, 2);
		release(rec, 1);
		run(r, pk_bulk(H, i, 0x81, 0, map[i].status, NULL, 0), 0, rec, 2);
		memcpy(&got, rec[0].bytes + 28, 4);
		assert_int_equal(got, map[i].linux_status);
		release(rec, 1);
	}
	/* The numbers the kernel uses, so the mapping is checked against them too. */
	assert_int_equal(-ENOENT, -2);
	assert_int_equal(-EPIPE, -32);
	assert_int_equal(-EPROTO, -71);
	assert_int_equal(-ETIMEDOUT, -110);
	assert_int_equal(-EOVERFLOW, -75);
}

static void test_synthesized_configuration_and_interface(void **state)
{
	struct rig *r = *state;
	struct rec rec[2];
	struct ug_usbredir_packet p = pk_base(G, usb_redir_set_configuration, 1);
	static const uint8_t set_cfg[8] = { 0x00, 0x09, 0x01, 0, 0, 0, 0, 0 };
	static const uint8_t get_cfg[8] = { 0x80, 0x08, 0, 0, 0, 0, 1, 0 };
	static const uint8_t set_if[8] = { 0x01, 0x0b, 0x01, 0, 0x02, 0, 0, 0 };
	static const uint8_t get_if[8] = { 0x81, 0x0a, 0, 0, 0x02, 0, 1, 0 };

	p.h.set_configuration.configuration = 1;
	run(r, p, 0, rec, 2);
	assert_int_equal(rec[0].bytes[8], 'S');
	assert_int_equal(rec[0].bytes[9], 2);
	assert_int_equal(rec[0].bytes[10], 0x00);
	assert_int_equal(rec[0].bytes[14], 0);
	assert_memory_equal(rec[0].bytes + 40, set_cfg, 8);
	release(rec, 1);
	p = pk_base(H, usb_redir_configuration_status, 1);
	p.h.configuration_status.configuration = 1;
	run(r, p, 0, rec, 2);
	assert_int_equal(rec[0].bytes[8], 'C');
	assert_int_equal(rec[0].bytes[15], '>');
	release(rec, 1);

	run(r, pk_base(G, usb_redir_get_configuration, 2), 0, rec, 2);
	assert_memory_equal(rec[0].bytes + 40, get_cfg, 8);
	assert_int_equal(rec[0].bytes[10], 0x80);
	assert_int_equal(rec[0].bytes[15], '<');
	release(rec, 1);
	p = pk_base(H, usb_redir_configuration_status, 2);
	p.h.configuration_status.configuration = 1;
	run(r, p, 0, rec, 2);
	assert_int_equal(rec[0].caplen, 65);
	assert_int_equal(rec[0].bytes[64], 1);
	release(rec, 1);

	p = pk_base(G, usb_redir_set_alt_setting, 3);
	p.h.set_alt_setting.interface = 2;
	p.h.set_alt_setting.alt = 1;
	run(r, p, 0, rec, 2);
	assert_memory_equal(rec[0].bytes + 40, set_if, 8);
	release(rec, 1);
	p = pk_base(G, usb_redir_get_alt_setting, 4);
	p.h.get_alt_setting.interface = 2;
	run(r, p, 0, rec, 2);
	assert_memory_equal(rec[0].bytes + 40, get_if, 8);
	release(rec, 1);
	p = pk_base(H, usb_redir_alt_setting_status, 4);
	p.h.alt_setting_status.interface = 2;
	p.h.alt_setting_status.alt = 1;
	run(r, p, 0, rec, 2);
	assert_int_equal(rec[0].caplen, 65);
	assert_int_equal(rec[0].bytes[64], 1);
	release(rec, 1);
}

static void test_interrupt_stream_pair(void **state)
{
	struct rig *r = *state;
	static const uint8_t report[8] = { 0x02, 0, 0x04, 0, 0, 0, 0, 0 };
	struct rec rec[2];
	struct ug_usbredir_packet p = pk_base(H, usb_redir_ep_info, 0);
	struct want w = {
		.type = 'S', .xfer = 1, .ep = 0x81, .dev = 1, .bus = 1, .flag_setup = '-',
		.flag_data = '<', .status = -115, .len = 8, .interval = 10, .flags = 0x200,
	};

	memset(p.h.ep_info.type, usb_redir_type_invalid, 32);
	p.h.ep_info.type[17] = usb_redir_type_interrupt;
	p.h.ep_info.interval[17] = 10;
	assert_int_equal(run(r, p, 0, rec, 2), 0);
	p = pk_base(G, usb_redir_start_interrupt_receiving, 1);
	p.h.start_interrupt_receiving.endpoint = 0x81;
	assert_int_equal(run(r, p, 0, rec, 2), 0);
	assert_int_equal(run(r, pk_intr(H, 555, 0x81, 8, 0, report, 8), 5000, rec, 2), 2);
	w.id = ug_usbmon_urb_id(r->m, 1);
	w.usec = 5;
	expect_header(rec[0].bytes, &w);
	w.type = 'C';
	w.flag_data = 0;
	w.status = 0;
	w.len_cap = 8;
	expect_header(rec[1].bytes, &w);
	assert_memory_equal(rec[1].bytes + 64, report, 8);
	release(rec, 2);
}

static void test_iso_descriptors(void **state)
{
	struct rig *r = *state;
	uint8_t frame[192];
	struct rec rec[2];
	struct ug_usbredir_packet p = pk_base(G, usb_redir_start_iso_stream, 1);
	int32_t i32;
	uint32_t u32;

	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)i;
	p.h.start_iso_stream.endpoint = 0x83;
	run(r, p, 0, rec, 2);
	assert_int_equal(run(r, pk_iso(H, 9, 0x83, 192, 0, frame, 192), 0, rec, 2), 2);

	/* Submit: one descriptor marked -EXDEV with the frame's length, no data. */
	assert_int_equal(rec[0].caplen, 64 + 16);
	assert_int_equal(rec[0].bytes[9], 0);
	assert_int_equal(rec[0].bytes[15], '<');
	memcpy(&u32, rec[0].bytes + 36, 4);
	assert_int_equal(u32, 16); /* len_cap counts the descriptors, as the kernel's */
	memcpy(&i32, rec[0].bytes + 40, 4);
	assert_int_equal(i32, 0);  /* error_count */
	memcpy(&i32, rec[0].bytes + 44, 4);
	assert_int_equal(i32, 1);  /* numdesc */
	memcpy(&u32, rec[0].bytes + 56, 4);
	assert_int_equal(u32, 0x202); /* URB_DIR_IN | URB_ISO_ASAP */
	memcpy(&u32, rec[0].bytes + 60, 4);
	assert_int_equal(u32, 1);
	memcpy(&i32, rec[0].bytes + 64, 4);
	assert_int_equal(i32, -EXDEV);
	memcpy(&u32, rec[0].bytes + 68, 4);
	assert_int_equal(u32, 0);
	memcpy(&u32, rec[0].bytes + 72, 4);
	assert_int_equal(u32, 192);

	/* Completion: descriptor status 0, then the frame's data. */
	assert_int_equal(rec[1].caplen, 64 + 16 + 192);
	memcpy(&u32, rec[1].bytes + 36, 4);
	assert_int_equal(u32, 16 + 192);
	memcpy(&i32, rec[1].bytes + 64, 4);
	assert_int_equal(i32, 0);
	memcpy(&u32, rec[1].bytes + 72, 4);
	assert_int_equal(u32, 192);
	assert_memory_equal(rec[1].bytes + 80, frame, 192);
	release(rec, 2);

	/* A failed frame: the URB succeeds, the frame and error_count say how. */
	run(r, pk_iso(H, 10, 0x83, 0, usb_redir_ioerror, NULL, 0), 0, rec, 2);
	memcpy(&i32, rec[1].bytes + 28, 4);
	assert_int_equal(i32, 0);
	memcpy(&i32, rec[1].bytes + 40, 4);
	assert_int_equal(i32, 1);
	memcpy(&i32, rec[1].bytes + 64, 4);
	assert_int_equal(i32, -EPROTO);
	release(rec, 2);
}

static void test_buffered_bulk_stream(void **state)
{
	struct rig *r = *state;
	uint8_t data[100] = { 1, 2, 3 };
	struct rec rec[2];

	assert_int_equal(run(r, pk_bbulk(H, 77, 0x84, 0, 0, data, 100), 0, rec, 2), 2);
	assert_int_equal(rec[0].bytes[8], 'S');
	assert_int_equal(rec[0].bytes[9], 3);
	assert_int_equal(rec[0].bytes[15], '<');
	assert_int_equal(rec[1].bytes[8], 'C');
	assert_int_equal(rec[1].caplen, 164);
	assert_memory_equal(rec[0].bytes, rec[1].bytes, 8); /* same URB id */
	release(rec, 2);
}

static void test_record_capped_with_true_length(void **state)
{
	struct rig *r = *state;
	uint32_t big = 300000, u32;
	uint8_t *data = malloc(big);
	struct rec rec[2];

	for (uint32_t i = 0; i < big; i++)
		data[i] = (uint8_t)(i * 7);
	run(r, pk_bulk(G, 1, 0x81, big, 0, NULL, 0), 0, rec, 2);
	release(rec, 1);
	run(r, pk_bulk(H, 1, 0x81, big, 0, data, big), 0, rec, 2);
	assert_int_equal(rec[0].caplen, UG_USBMON_MAX_RECORD);
	assert_int_equal(rec[0].origlen, 64 + big);
	memcpy(&u32, rec[0].bytes + 32, 4);
	assert_int_equal(u32, big);
	memcpy(&u32, rec[0].bytes + 36, 4);
	assert_int_equal(u32, UG_USBMON_MAX_RECORD - 64);
	assert_memory_equal(rec[0].bytes + 64, data, UG_USBMON_MAX_RECORD - 64);
	release(rec, 1);
	free(data);
}

static void test_urb_ids_unique_while_outstanding(void **state)
{
	struct rig *r = *state;
	enum { N = 2000 };
	uint64_t *ids = calloc(N, sizeof(*ids));
	struct rec rec[2];

	/* Two ids that differ only above 32 bits must not share an URB id. */
	for (uint64_t i = 0; i < N; i++) {
		uint64_t usbredir_id = (i & 1) ? (i >> 1) | (1ull << 40) : (i >> 1);

		run(r, pk_bulk(G, usbredir_id, 0x81, 512, 0, NULL, 0), i, rec, 2);
		memcpy(&ids[i], rec[0].bytes, 8);
		release(rec, 1);
		for (uint64_t j = 0; j < i; j++)
			assert_true(ids[j] != ids[i]);
	}
	/* Completions carry their submit's URB id. */
	run(r, pk_bulk(H, 1ull << 40, 0x81, 0, 0, NULL, 0), 0, rec, 2);
	assert_memory_equal(rec[0].bytes, &ids[1], 8);
	release(rec, 1);
	/* A reused usbredir id after completion still gets a fresh URB id. */
	run(r, pk_bulk(G, 1ull << 40, 0x81, 512, 0, NULL, 0), 0, rec, 2);
	for (uint64_t j = 0; j < N; j++)
		assert_memory_not_equal(rec[0].bytes, &ids[j], 8);
	release(rec, 1);
	free(ids);
}

static void test_abandon_and_notices(void **state)
{
	struct rig *r = *state;
	struct rec rec[4];
	int32_t st;

	run(r, pk_bulk(G, 1, 0x81, 512, 0, NULL, 0), 0, rec, 4);
	release(rec, 1);
	run(r, pk_bulk(G, 2, 0x02, 4, 0, (const uint8_t *)"abcd", 4), 0, rec, 4);
	release(rec, 1);
	/* A disconnect completes what waits with -ESHUTDOWN. */
	assert_int_equal(run(r, pk_base(H, usb_redir_device_disconnect, 0), 0, rec, 4), 2);
	memcpy(&st, rec[0].bytes + 28, 4);
	assert_int_equal(st, -ESHUTDOWN);
	assert_int_equal(rec[0].bytes[15], 0);
	assert_int_equal(rec[1].bytes[15], '>');
	release(rec, 2);
	/* Notices (an answer without a request) map to nothing. */
	assert_int_equal(run(r, pk_bulk(H, 5, 0x81, 0, 0, NULL, 0), 0, rec, 4), 0);
	/* Nor does a request dropped for the limit. */
	ug_tracker_set_max_outstanding(r->t, 1);
	run(r, pk_bulk(G, 1, 0x81, 512, 0, NULL, 0), 0, rec, 4);
	release(rec, 1);
	assert_int_equal(run(r, pk_bulk(G, 2, 0x81, 512, 0, NULL, 0), 0, rec, 4), 1);
	assert_int_equal(rec[0].bytes[8], 'S');
	release(rec, 1);
}

static void test_address(void **state)
{
	struct rig *r = *state;
	struct rec rec[2];
	uint16_t bus;

	assert_int_equal(ug_usbmon_set_address(r->m, 1, 0), UG_E_INVAL);
	assert_int_equal(ug_usbmon_set_address(r->m, 1, 128), UG_E_INVAL);
	assert_int_equal(ug_usbmon_set_address(r->m, 3, 7), 0);
	run(r, pk_bulk(G, 1, 0x81, 512, 0, NULL, 0), 0, rec, 2);
	assert_int_equal(rec[0].bytes[11], 7);
	memcpy(&bus, rec[0].bytes + 12, 2);
	assert_int_equal(bus, 3);
	release(rec, 1);
	/* Two devices in one output never share URB ids either. */
	{
		ug_usbmon *other = ug_usbmon_new();

		assert_true(ug_usbmon_urb_id(other, 1) != ug_usbmon_urb_id(r->m, 1));
		ug_usbmon_free(other);
	}
	ug_usbmon_free(NULL);
}

/*
 * The realistic session through the whole output path, read back with
 * libpcap: every completion follows its own submit (same URB id, bus,
 * device and endpoint), nothing stays outstanding, and the raw file gives
 * back every packet.
 */
static void test_realistic_session_pairs(void **state)
{
	char mon_path[256], raw_path[256];
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	struct session_stats st;
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *d;
	pcap_t *p;
	struct {
		uint8_t key[12]; /* id, epnum, devnum, busnum */
	} open_urbs[64];
	int nopen = 0, records = 0;
	ug_raw_reader *rd;
	struct ug_raw_record rec;
	unsigned raw_packets = 0;

	snprintf(mon_path, sizeof(mon_path), "%s/ug-test-usbmon-%ld.pcap", dir, (long)getpid());
	snprintf(raw_path, sizeof(raw_path), "%s/ug-test-usbmon-raw-%ld.pcap", dir, (long)getpid());
	assert_int_equal(usbmon_session_write(mon_path, raw_path, NULL, NULL, &st), 0);
	assert_int_equal(st.notices, 0);
	assert_int_equal(st.submits, st.completions);
	assert_int_equal(st.submits, st.data_requests + st.stream_packets + st.synthesized);
	assert_int_equal(st.capped, 1);

	p = pcap_open_offline_with_tstamp_precision(mon_path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	assert_non_null(p);
	while (pcap_next_ex(p, &h, &d) == 1) {
		uint8_t key[12];
		int found = -1;

		records++;
		memcpy(key, d, 8);
		memcpy(key + 8, d + 10, 4);
		for (int i = 0; i < nopen; i++)
			if (memcmp(open_urbs[i].key, key, 12) == 0)
				found = i;
		if (d[8] == 'S') {
			assert_int_equal(found, -1);
			assert_true(nopen < 64);
			memcpy(open_urbs[nopen++].key, key, 12);
		} else {
			assert_int_equal(d[8], 'C');
			assert_true(found >= 0);
			open_urbs[found] = open_urbs[--nopen];
		}
		assert_true(h->caplen <= UG_USBMON_MAX_RECORD);
	}
	pcap_close(p);
	assert_int_equal(nopen, 0);
	assert_int_equal(records, st.submits + st.completions);

	rd = ug_raw_reader_new();
	assert_int_equal(ug_raw_reader_open(rd, raw_path), 0);
	while (ug_raw_reader_next(rd, &rec) == 1) {
		assert_true(rec.len >= 12);
		raw_packets++;
	}
	assert_int_equal(raw_packets, st.packets);
	assert_true(st.raw_records > st.packets); /* the 512 KiB read is fragmented */
	ug_raw_reader_free(rd);
	unlink(mon_path);
	unlink(raw_path);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_rig, teardown_rig)

/* "--write-session DIR" writes the session for the tshark integration test. */
static int write_session(const char *dir)
{
	char mon[512], raw[512], txt[512], js[512];
	struct session_stats st;
	FILE *text, *json;
	int rc;

	snprintf(mon, sizeof(mon), "%s/session.pcap", dir);
	snprintf(raw, sizeof(raw), "%s/session-raw.pcap", dir);
	snprintf(txt, sizeof(txt), "%s/session.txt", dir);
	snprintf(js, sizeof(js), "%s/session.json", dir);
	text = fopen(txt, "w");
	json = fopen(js, "w");
	if (!text || !json)
		return 1;
	rc = usbmon_session_write(mon, raw, text, json, &st);
	fclose(text);
	fclose(json);
	if (rc != 0)
		return 1;
	printf("packets=%u\ndata_requests=%u\nstream_packets=%u\nsynthesized=%u\n"
	       "submits=%u\ncompletions=%u\ncapped=%u\nraw_records=%u\nnotices=%u\n",
	       st.packets, st.data_requests, st.stream_packets, st.synthesized, st.submits,
	       st.completions, st.capped, st.raw_records, st.notices);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_control_in_submit_and_completion),
		T(test_control_out_with_data),
		T(test_bulk_out_then_in),
		T(test_status_mapping),
		T(test_synthesized_configuration_and_interface),
		T(test_interrupt_stream_pair),
		T(test_iso_descriptors),
		T(test_buffered_bulk_stream),
		T(test_record_capped_with_true_length),
		T(test_urb_ids_unique_while_outstanding),
		T(test_abandon_and_notices),
		T(test_address),
		cmocka_unit_test(test_realistic_session_pairs),
	};

	if (argc == 3 && strcmp(argv[1], "--write-session") == 0)
		return write_session(argv[2]);

	return cmocka_run_group_tests(tests, NULL, NULL);
}
