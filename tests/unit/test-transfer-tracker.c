/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-transfer-tracker.c: unit tests of request/answer pairing and stream handling (lib/transfer-tracker.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "usbgate.h"
#include "usbredir-packets.h"

#define G UG_DIR_G2H
#define H UG_DIR_H2G

/* Pushes pkt and collects up to max events; returns how many there were. */
static int push(ug_tracker *t, struct ug_usbredir_packet pkt, uint64_t ts,
                struct ug_transfer_event *evs, int max)
{
	struct ug_transfer_event ev;
	int n = 0;

	assert_int_equal(ug_tracker_push(t, &pkt, ts), 0);
	while (ug_tracker_next(t, &ev) == 1) {
		if (n < max)
			evs[n] = ev;
		n++;
	}
	return n;
}

static void test_control_in_pairs_by_id(void **state)
{
	static const uint8_t dev_desc[18] = { 0x12, 0x01, 0x00, 0x02, 0, 0, 0, 0x40, 0x81, 0x07,
	                                      0x67, 0x55, 0x00, 0x01, 1, 2, 3, 1 };
	static const uint8_t setup[8] = { 0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00 };
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	uint64_t serial;

	assert_int_equal(push(t, pk_control(G, 7, 0x80, 6, 0x0100, 0, 18, 0, NULL, 0), 1000, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_SUBMIT);
	assert_int_equal(ev[0].xfer.xfer_type, UG_XFER_CONTROL);
	assert_int_equal(ev[0].xfer.endpoint, 0x80);
	assert_int_equal(ev[0].xfer.has_setup, 1);
	assert_memory_equal(ev[0].xfer.setup, setup, 8);
	assert_int_equal(ev[0].xfer.req_length, 18);
	assert_int_equal(ev[0].xfer.id, 7);
	assert_int_equal(ev[0].ts_ns, 1000);
	assert_null(ev[0].data);
	serial = ev[0].xfer.serial;
	assert_int_equal(ug_tracker_outstanding(t), 1);

	assert_int_equal(push(t, pk_control(H, 7, 0x80, 6, 0x0100, 0, 18, 0, dev_desc, 18), 2000, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_COMPLETE);
	assert_int_equal(ev[0].xfer.serial, serial);
	assert_int_equal(ev[0].xfer.submit_ts_ns, 1000);
	assert_int_equal(ev[0].ts_ns, 2000);
	assert_int_equal(ev[0].status, usb_redir_success);
	assert_int_equal(ev[0].actual_length, 18);
	assert_int_equal(ev[0].data_len, 18);
	assert_ptr_equal(ev[0].data, dev_desc);
	assert_int_equal(ug_tracker_outstanding(t), 0);
	assert_int_equal(ug_tracker_notices(t), 0);
	ug_tracker_free(t);
}

static void test_64bit_ids_are_distinct(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	uint64_t big = 0x100000005ull, s_big, s_small;
	uint8_t d = 0x42;

	push(t, pk_bulk(G, big, 0x81, 512, 0, NULL, 0), 1, ev, 4);
	s_big = ev[0].xfer.serial;
	push(t, pk_bulk(G, 5, 0x81, 512, 0, NULL, 0), 2, ev, 4);
	s_small = ev[0].xfer.serial;
	assert_int_equal(ug_tracker_outstanding(t), 2);
	assert_int_equal(push(t, pk_bulk(H, 5, 0x81, 1, 0, &d, 1), 3, ev, 4), 1);
	assert_int_equal(ev[0].xfer.serial, s_small);
	assert_int_equal(push(t, pk_bulk(H, big, 0x81, 1, 0, &d, 1), 4, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_COMPLETE);
	assert_int_equal(ev[0].xfer.serial, s_big);
	assert_true(ev[0].xfer.id == big);
	ug_tracker_free(t);
}

static void test_bulk_out_data_on_submit_only(void **state)
{
	uint8_t cbw[31] = { 'U', 'S', 'B', 'C' };
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];

	assert_int_equal(push(t, pk_bulk(G, 1, 0x02, 31, 0, cbw, 31), 1, ev, 4), 1);
	assert_int_equal(ev[0].xfer.xfer_type, UG_XFER_BULK);
	assert_ptr_equal(ev[0].data, cbw);
	assert_int_equal(ev[0].data_len, 31);
	assert_int_equal(ev[0].xfer.req_length, 31);
	assert_int_equal(push(t, pk_bulk(H, 1, 0x02, 31, 0, NULL, 0), 2, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_COMPLETE);
	assert_null(ev[0].data);
	assert_int_equal(ev[0].actual_length, 31);
	ug_tracker_free(t);
}

static void test_bulk_32bit_length(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];

	push(t, pk_bulk(G, 3, 0x81, 0x30000, 0, NULL, 0), 1, ev, 4);
	assert_int_equal(ev[0].xfer.req_length, 0x30000);
	ug_tracker_free(t);
}

static void test_cancel_answered_with_cancelled(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	struct ug_usbredir_packet c = pk_base(G, usb_redir_cancel_data_packet, 9);

	push(t, pk_intr(G, 9, 0x02, 8, 0, (const uint8_t *)"12345678", 8), 1, ev, 4);
	assert_int_equal(push(t, c, 2, ev, 4), 0);
	assert_int_equal(ug_tracker_outstanding(t), 1);
	assert_int_equal(push(t, pk_intr(H, 9, 0x02, 0, usb_redir_cancelled, NULL, 0), 3, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_COMPLETE);
	assert_int_equal(ev[0].status, usb_redir_cancelled);
	assert_int_equal(ev[0].actual_length, 0);
	/* The id is free again; a cancel for it now is an anomaly. */
	assert_int_equal(push(t, c, 4, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_NOTICE);
	assert_non_null(strstr(ev[0].note, "not outstanding"));
	ug_tracker_free(t);
}

static void test_configuration_synthesized(void **state)
{
	static const uint8_t set_cfg[8] = { 0x00, 0x09, 0x01, 0, 0, 0, 0, 0 };
	static const uint8_t get_cfg[8] = { 0x80, 0x08, 0, 0, 0, 0, 0x01, 0 };
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	struct ug_usbredir_packet p = pk_base(G, usb_redir_set_configuration, 11);

	p.h.set_configuration.configuration = 1;
	assert_int_equal(push(t, p, 1, ev, 4), 1);
	assert_int_equal(ev[0].xfer.origin, UG_ORIGIN_SET_CONFIGURATION);
	assert_int_equal(ev[0].xfer.endpoint, 0x00);
	assert_memory_equal(ev[0].xfer.setup, set_cfg, 8);
	p = pk_base(H, usb_redir_configuration_status, 11);
	p.h.configuration_status.status = 0;
	p.h.configuration_status.configuration = 1;
	assert_int_equal(push(t, p, 2, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_COMPLETE);
	assert_int_equal(ev[0].data_len, 0);

	p = pk_base(G, usb_redir_get_configuration, 12);
	push(t, p, 3, ev, 4);
	assert_int_equal(ev[0].xfer.endpoint, 0x80);
	assert_memory_equal(ev[0].xfer.setup, get_cfg, 8);
	p = pk_base(H, usb_redir_configuration_status, 12);
	p.h.configuration_status.configuration = 1;
	assert_int_equal(push(t, p, 4, ev, 4), 1);
	assert_int_equal(ev[0].data_len, 1);
	assert_int_equal(ev[0].actual_length, 1);
	assert_int_equal(ev[0].data[0], 1);
	ug_tracker_free(t);
}

static void test_alt_setting_synthesized(void **state)
{
	static const uint8_t set_alt[8] = { 0x01, 0x0b, 0x02, 0, 0x01, 0, 0, 0 };
	static const uint8_t get_alt[8] = { 0x81, 0x0a, 0, 0, 0x01, 0, 0x01, 0 };
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	struct ug_usbredir_packet p = pk_base(G, usb_redir_set_alt_setting, 20);

	p.h.set_alt_setting.interface = 1;
	p.h.set_alt_setting.alt = 2;
	push(t, p, 1, ev, 4);
	assert_memory_equal(ev[0].xfer.setup, set_alt, 8);
	p = pk_base(H, usb_redir_alt_setting_status, 20);
	p.h.alt_setting_status.status = usb_redir_stall;
	assert_int_equal(push(t, p, 2, ev, 4), 1);
	assert_int_equal(ev[0].status, usb_redir_stall);

	p = pk_base(G, usb_redir_get_alt_setting, 21);
	p.h.get_alt_setting.interface = 1;
	push(t, p, 3, ev, 4);
	assert_memory_equal(ev[0].xfer.setup, get_alt, 8);
	p = pk_base(H, usb_redir_alt_setting_status, 21);
	p.h.alt_setting_status.interface = 1;
	p.h.alt_setting_status.alt = 2;
	push(t, p, 4, ev, 4);
	assert_int_equal(ev[0].data_len, 1);
	assert_int_equal(ev[0].data[0], 2);

	/* A status whose id names a data request is not its answer. */
	push(t, pk_bulk(G, 22, 0x81, 64, 0, NULL, 0), 5, ev, 4);
	p = pk_base(H, usb_redir_alt_setting_status, 22);
	assert_int_equal(push(t, p, 6, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_NOTICE);
	assert_int_equal(ug_tracker_outstanding(t), 1);
	ug_tracker_free(t);
}

static void test_interrupt_receiving_stream(void **state)
{
	static const uint8_t report[8] = { 0, 0, 4, 0, 0, 0, 0, 0 };
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	struct ug_usbredir_packet p = pk_base(H, usb_redir_ep_info, 0);

	memset(p.h.ep_info.type, usb_redir_type_invalid, 32);
	p.h.ep_info.type[0] = p.h.ep_info.type[16] = usb_redir_type_control;
	p.h.ep_info.type[17] = usb_redir_type_interrupt; /* 0x81 */
	p.h.ep_info.interval[17] = 10;
	p.h.ep_info.max_packet_size[17] = 8;
	push(t, p, 0, ev, 4);
	assert_int_equal(ug_tracker_endpoint_type(t, 0x81), usb_redir_type_interrupt);
	assert_int_equal(ug_tracker_endpoint_type(t, 0x02), usb_redir_type_invalid);

	p = pk_base(G, usb_redir_start_interrupt_receiving, 30);
	p.h.start_interrupt_receiving.endpoint = 0x81;
	assert_int_equal(push(t, p, 1, ev, 4), 0);
	p = pk_base(H, usb_redir_interrupt_receiving_status, 30);
	p.h.interrupt_receiving_status.endpoint = 0x81;
	assert_int_equal(push(t, p, 2, ev, 4), 0);

	/* Host-chosen id 30 equals the start's id: still stream data. */
	assert_int_equal(push(t, pk_intr(H, 30, 0x81, 8, 0, report, 8), 3, ev, 4), 2);
	assert_int_equal(ev[0].kind, UG_TRANSFER_SUBMIT);
	assert_int_equal(ev[0].xfer.origin, UG_ORIGIN_STREAM);
	assert_int_equal(ev[0].xfer.xfer_type, UG_XFER_INTERRUPT);
	assert_int_equal(ev[0].xfer.interval, 10);
	assert_int_equal(ev[0].xfer.req_length, 8);
	/* A short report still asked for a whole max packet. */
	assert_int_equal(push(t, pk_intr(H, 40, 0x81, 3, 0, report, 3), 3, ev, 4), 2);
	assert_int_equal(ev[0].xfer.req_length, 8);
	assert_int_equal(ev[1].actual_length, 3);
	assert_null(ev[0].data);
	assert_int_equal(ev[1].kind, UG_TRANSFER_COMPLETE);
	assert_int_equal(ev[1].xfer.serial, ev[0].xfer.serial);
	assert_ptr_equal(ev[1].data, report);
	assert_int_equal(ug_tracker_outstanding(t), 0);
	assert_int_equal(ug_tracker_notices(t), 0);

	/* After the stop, pushed data still becomes a transfer, with a notice. */
	p = pk_base(G, usb_redir_stop_interrupt_receiving, 31);
	p.h.stop_interrupt_receiving.endpoint = 0x81;
	push(t, p, 4, ev, 4);
	assert_int_equal(push(t, pk_intr(H, 31, 0x81, 8, 0, report, 8), 5, ev, 4), 3);
	assert_int_equal(ev[0].kind, UG_TRANSFER_NOTICE);
	assert_int_equal(ev[1].kind, UG_TRANSFER_SUBMIT);
	ug_tracker_free(t);
}

static void test_iso_and_buffered_bulk_streams(void **state)
{
	uint8_t frame[192];
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	struct ug_usbredir_packet p = pk_base(G, usb_redir_start_iso_stream, 40);

	memset(frame, 0x5a, sizeof(frame));
	p.h.start_iso_stream.endpoint = 0x83;
	push(t, p, 1, ev, 4);
	assert_int_equal(push(t, pk_iso(H, 1000, 0x83, 192, 0, frame, 192), 2, ev, 4), 2);
	assert_int_equal(ev[0].xfer.xfer_type, UG_XFER_ISO);
	assert_int_equal(ev[1].data_len, 192);

	p = pk_base(G, usb_redir_start_bulk_receiving, 41);
	p.h.start_bulk_receiving.endpoint = 0x84;
	p.h.start_bulk_receiving.bytes_per_transfer = 4096;
	push(t, p, 3, ev, 4);
	assert_int_equal(push(t, pk_bbulk(H, 7, 0x84, 0, 0, frame, 100), 4, ev, 4), 2);
	assert_int_equal(ev[0].xfer.req_length, 4096); /* what the guest asked per transfer */
	assert_int_equal(ev[0].xfer.xfer_type, UG_XFER_BULK);
	assert_int_equal(ev[0].xfer.origin, UG_ORIGIN_STREAM);
	assert_int_equal(ev[1].actual_length, 100);

	/* Iso OUT packets complete as they are sent: no answer comes. */
	assert_int_equal(push(t, pk_iso(G, 50, 0x03, 192, 0, frame, 192), 5, ev, 4), 2);
	assert_int_equal(ev[0].kind, UG_TRANSFER_SUBMIT);
	assert_ptr_equal(ev[0].data, frame);
	assert_int_equal(ev[1].kind, UG_TRANSFER_COMPLETE);
	assert_null(ev[1].data);
	assert_int_equal(ev[1].actual_length, 192);
	assert_int_equal(ug_tracker_outstanding(t), 0);
	assert_int_equal(ug_tracker_notices(t), 0);
	ug_tracker_free(t);
}

static void test_limit_drops_oldest(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];

	assert_int_equal(ug_tracker_set_max_outstanding(t, 0), UG_E_INVAL);
	assert_int_equal(ug_tracker_set_max_outstanding(t, 3), 0);
	for (uint64_t id = 1; id <= 3; id++)
		assert_int_equal(push(t, pk_bulk(G, id, 0x81, 512, 0, NULL, 0), id, ev, 4), 1);
	assert_int_equal(push(t, pk_bulk(G, 4, 0x81, 512, 0, NULL, 0), 4, ev, 4), 2);
	assert_int_equal(ev[0].kind, UG_TRANSFER_ABANDON);
	assert_int_equal(ev[0].reason, UG_ABANDON_LIMIT);
	assert_int_equal(ev[0].xfer.id, 1);
	assert_int_equal(ev[1].kind, UG_TRANSFER_SUBMIT);
	assert_int_equal(ug_tracker_outstanding(t), 3);
	assert_int_equal(ug_tracker_abandoned(t), 1);
	/* The dropped request's answer is now an answer without a request. */
	assert_int_equal(push(t, pk_bulk(H, 1, 0x81, 0, 0, NULL, 0), 5, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_NOTICE);
	/* Lowering the limit below what waits drops down to it at the next request. */
	assert_int_equal(ug_tracker_set_max_outstanding(t, 1), 0);
	assert_int_equal(push(t, pk_bulk(G, 9, 0x81, 512, 0, NULL, 0), 6, ev, 4), 4);
	assert_int_equal(ev[0].reason, UG_ABANDON_LIMIT);
	assert_int_equal(ev[1].reason, UG_ABANDON_LIMIT);
	assert_int_equal(ev[2].reason, UG_ABANDON_LIMIT);
	assert_int_equal(ev[3].kind, UG_TRANSFER_SUBMIT);
	assert_int_equal(ug_tracker_outstanding(t), 1);
	ug_tracker_free(t);
}

static void test_id_reuse_reported(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	uint64_t first;

	push(t, pk_bulk(G, 5, 0x81, 512, 0, NULL, 0), 1, ev, 4);
	first = ev[0].xfer.serial;
	assert_int_equal(push(t, pk_bulk(G, 5, 0x81, 64, 0, NULL, 0), 2, ev, 4), 2);
	assert_int_equal(ev[0].kind, UG_TRANSFER_ABANDON);
	assert_int_equal(ev[0].reason, UG_ABANDON_ID_REUSED);
	assert_int_equal(ev[0].xfer.serial, first);
	assert_int_equal(ev[1].kind, UG_TRANSFER_SUBMIT);
	assert_true(ev[1].xfer.serial != first);
	assert_int_equal(ug_tracker_outstanding(t), 1);
	ug_tracker_free(t);
}

static void test_disconnect_abandons_in_order(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[8];
	struct ug_usbredir_packet p = pk_base(H, usb_redir_device_connect, 0);

	p.h.device_connect.vendor_id = 0x0781;
	p.h.device_connect.speed = usb_redir_speed_high;
	push(t, p, 0, ev, 8);
	assert_int_equal(ug_tracker_connected(t), 1);
	assert_int_equal(ug_tracker_device(t)->vendor_id, 0x0781);
	for (uint64_t id = 10; id > 7; id--)
		push(t, pk_bulk(G, id, 0x81, 512, 0, NULL, 0), 1, ev, 8);
	assert_int_equal(ev[0].xfer.connection, 1);
	assert_int_equal(push(t, pk_base(H, usb_redir_device_disconnect, 0), 9, ev, 8), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ev[i].kind, UG_TRANSFER_ABANDON);
		assert_int_equal(ev[i].reason, UG_ABANDON_DISCONNECT);
		assert_int_equal(ev[i].xfer.id, 10 - i);
		assert_int_equal(ev[i].ts_ns, 9);
	}
	assert_int_equal(ug_tracker_connected(t), 0);
	assert_int_equal(ug_tracker_outstanding(t), 0);

	/* A new connection gets the next number. */
	push(t, pk_base(H, usb_redir_device_connect, 0), 10, ev, 8);
	push(t, pk_bulk(G, 1, 0x81, 512, 0, NULL, 0), 11, ev, 8);
	assert_int_equal(ev[0].xfer.connection, 2);
	assert_int_equal(ug_tracker_finish(t, 12), 0);
	assert_int_equal(ug_tracker_next(t, &ev[0]), 1);
	assert_int_equal(ev[0].reason, UG_ABANDON_DISCONNECT);
	assert_int_equal(ug_tracker_next(t, &ev[0]), 0);
	ug_tracker_free(t);
}

static void test_answer_without_request_and_unknown(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev[4];
	struct ug_usbredir_packet u = pk_base(G, 77, 1);

	assert_int_equal(push(t, pk_control(H, 99, 0x80, 6, 0x100, 0, 18, 0, NULL, 0), 1, ev, 4), 1);
	assert_int_equal(ev[0].kind, UG_TRANSFER_NOTICE);
	assert_int_equal(ev[0].xfer.id, 99);
	u.known = 0;
	assert_int_equal(push(t, u, 2, ev, 4), 0);
	assert_int_equal(ug_tracker_push(t, NULL, 0), UG_E_INVAL);
	/* Serials stay dense: the next real transfer is number 1. */
	push(t, pk_bulk(G, 1, 0x81, 512, 0, NULL, 0), 3, ev, 4);
	assert_int_equal(ev[0].xfer.serial, 1);
	ug_tracker_free(t);
	ug_tracker_free(NULL);
}

static void test_many_outstanding_events_fit(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_transfer_event ev;
	int n = 0;

	ug_tracker_set_max_outstanding(t, 500);
	for (uint64_t id = 0; id < 500; id++) {
		struct ug_usbredir_packet p = pk_bulk(G, id, 0x81, 512, 0, NULL, 0);

		assert_int_equal(ug_tracker_push(t, &p, id), 0);
	}
	assert_int_equal(ug_tracker_finish(t, 1000), 0);
	while (ug_tracker_next(t, &ev) == 1) {
		assert_int_equal(ev.xfer.id, (uint64_t)n);
		n++;
	}
	assert_int_equal(n, 500);
	ug_tracker_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_in_pairs_by_id),
		cmocka_unit_test(test_64bit_ids_are_distinct),
		cmocka_unit_test(test_bulk_out_data_on_submit_only),
		cmocka_unit_test(test_bulk_32bit_length),
		cmocka_unit_test(test_cancel_answered_with_cancelled),
		cmocka_unit_test(test_configuration_synthesized),
		cmocka_unit_test(test_alt_setting_synthesized),
		cmocka_unit_test(test_interrupt_receiving_stream),
		cmocka_unit_test(test_iso_and_buffered_bulk_streams),
		cmocka_unit_test(test_limit_drops_oldest),
		cmocka_unit_test(test_id_reuse_reported),
		cmocka_unit_test(test_disconnect_abandons_in_order),
		cmocka_unit_test(test_answer_without_request_and_unknown),
		cmocka_unit_test(test_many_outstanding_events_fit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
