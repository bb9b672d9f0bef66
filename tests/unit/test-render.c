/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-render.c: unit tests of the summary, verbose and JSON renderers (lib/render.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "usbgate.h"
#include "usbredir-packets.h"

#define G UG_DIR_G2H
#define H UG_DIR_H2G

/* Renders pkt into a fresh string the caller frees. */
static char *render(enum ug_render_format fmt, uint64_t ts, uint32_t session,
                    struct ug_usbredir_packet pkt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(ug_render_packet(f, fmt, ts, session, &pkt), 0);
	fclose(f);
	return buf;
}

static void expect(char *got, const char *want)
{
	assert_string_equal(got, want);
	free(got);
}

static const uint8_t dev_desc[18] = { 0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x40, 0x81,
                                      0x07, 0x67, 0x55, 0x00, 0x01, 0x01, 0x02, 0x03, 0x01 };

static void test_setup_summaries(void **state)
{
	static const struct {
		uint8_t setup[8];
		const char *want;
	} cases[] = {
		{ { 0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00 }, "GET_DESCRIPTOR DEVICE len 18" },
		{ { 0x80, 0x06, 0x00, 0x02, 0x00, 0x00, 0x09, 0x00 }, "GET_DESCRIPTOR CONFIGURATION len 9" },
		{ { 0x80, 0x06, 0x02, 0x03, 0x09, 0x04, 0xff, 0x00 },
		  "GET_DESCRIPTOR STRING index 2 lang 0x0409 len 255" },
		{ { 0x81, 0x06, 0x00, 0x22, 0x00, 0x00, 0x3f, 0x00 }, "GET_DESCRIPTOR REPORT len 63" },
		{ { 0x80, 0x06, 0x00, 0x77, 0x00, 0x00, 0x04, 0x00 },
		  "GET_DESCRIPTOR type 0x77 index 0 lang 0x0000 len 4" },
		{ { 0x00, 0x09, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00 }, "SET_CONFIGURATION 1" },
		{ { 0x80, 0x08, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00 }, "GET_CONFIGURATION" },
		{ { 0x01, 0x0b, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00 }, "SET_INTERFACE interface 2 alt 1" },
		{ { 0x81, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00 }, "GET_INTERFACE interface 2" },
		{ { 0x02, 0x01, 0x00, 0x00, 0x81, 0x00, 0x00, 0x00 }, "CLEAR_FEATURE ENDPOINT_HALT ep 0x81" },
		{ { 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00 },
		  "GET_STATUS value 0x0000 index 0 len 2" },
		{ { 0xa1, 0xfe, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00 },
		  "GET_MAX_LUN value 0x0000 interface 0 len 1" },
		{ { 0x21, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 },
		  "SET_IDLE value 0x0000 interface 0 len 0" },
		{ { 0x21, 0x09, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00 },
		  "SET_REPORT value 0x0200 interface 0 len 1" },
		{ { 0xc0, 0x33, 0x34, 0x12, 0x78, 0x56, 0x10, 0x00 },
		  "vendor request 0x33 value 0x1234 index 0x5678 len 16" },
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = ug_render_setup(buf, sizeof(buf), cases[i].setup);

		assert_string_equal(buf, cases[i].want);
		assert_int_equal(n, (int)strlen(cases[i].want));
	}
	/* Cut to the buffer, reporting the wanted length like snprintf. */
	assert_int_equal(ug_render_setup(buf, 8, cases[0].setup), 28);
	assert_string_equal(buf, "GET_DES");
}

static void test_summary_lines(void **state)
{
	struct ug_usbredir_packet p;

	expect(render(UG_RENDER_SUMMARY, 1500000000, 0,
	              pk_control(G, 5, 0x80, 6, 0x100, 0, 18, 0, NULL, 0)),
	       "    1.500000000 guest->host control_packet             id 5 ep 0x80 data 0 "
	       "GET_DESCRIPTOR DEVICE len 18\n");
	expect(render(UG_RENDER_SUMMARY, 1500250000, 2,
	              pk_control(H, 5, 0x80, 6, 0x100, 0, 18, 0, dev_desc, 18)),
	       "    1.500250000 #2 host->guest control_packet             id 5 ep 0x80 status "
	       "success data 18 GET_DESCRIPTOR DEVICE len 18\n");
	expect(render(UG_RENDER_SUMMARY, 0, 0, pk_bulk(H, 0x100000001ull, 0x81, 13, 4, NULL, 0)),
	       "    0.000000000 host->guest bulk_packet                id 4294967297 ep 0x81 "
	       "status stall len 13 data 0\n");
	expect(render(UG_RENDER_SUMMARY, 0, 0, pk_iso(G, 7, 0x03, 192, 0, NULL, 0)),
	       "    0.000000000 guest->host iso_packet                 id 7 ep 0x03 len 192 "
	       "data 0\n");
	expect(render(UG_RENDER_SUMMARY, 0, 0, pk_intr(H, 2, 0x81, 8, 1, NULL, 0)),
	       "    0.000000000 host->guest interrupt_packet           id 2 ep 0x81 status "
	       "cancelled len 8 data 0\n");
	p = pk_base(G, usb_redir_set_configuration, 9);
	p.h.set_configuration.configuration = 1;
	expect(render(UG_RENDER_SUMMARY, 0, 0, p),
	       "    0.000000000 guest->host set_configuration          id 9 configuration 1\n");
	p = pk_base(H, usb_redir_device_connect, 0);
	p.h.device_connect.vendor_id = 0x0781;
	p.h.device_connect.product_id = 0x5567;
	p.h.device_connect.speed = usb_redir_speed_high;
	p.h.device_connect.device_version_bcd = 0x0100;
	expect(render(UG_RENDER_SUMMARY, 0, 0, p),
	       "    0.000000000 host->guest device_connect             id 0 0781:5567 high speed "
	       "class 0x00 bcd 0x0100\n");
	p = pk_base(G, 250, 3);
	p.known = 0;
	p.length = 7;
	expect(render(UG_RENDER_SUMMARY, 0, 0, p),
	       "    0.000000000 guest->host unknown                    id 3 type 250 length 7\n");
}

static void test_hostile_strings_escaped(void **state)
{
	struct ug_usbredir_packet p = pk_base(G, usb_redir_hello, 0);

	strcpy(p.h.hello.version, "qemu \"x\"\\\x1b[2J\xe9");
	p.h.hello.caps[0] = 0xff;
	p.h.hello.caps_count = 1;
	expect(render(UG_RENDER_SUMMARY, 0, 0, p),
	       "    0.000000000 guest->host hello                      id 0 "
	       "\"qemu \"x\"\\x5c\\x1b[2J\\xe9\" caps 0x000000ff\n");
	expect(render(UG_RENDER_JSON, 0, 0, p),
	       "{\"ts\":0.000000000,\"session\":0,\"dir\":\"g2h\",\"type\":\"hello\",\"type_num\":0,"
	       "\"packet_length\":0,\"id\":0,\"offset\":0,"
	       "\"version\":\"qemu \\\"x\\\"\\\\\\u001b[2J\\u00e9\",\"caps_count\":1,"
	       "\"caps\":[255],\"data_len\":0,\"data\":\"\"}\n");
}

static void test_json_every_field(void **state)
{
	struct ug_usbredir_packet p = pk_control(H, 5, 0x80, 6, 0x100, 0, 18, 0, dev_desc, 18);

	p.offset = 4096;
	p.length = 28;
	expect(render(UG_RENDER_JSON, 1500000000, 1, p),
	       "{\"ts\":1.500000000,\"session\":1,\"dir\":\"h2g\",\"type\":\"control_packet\","
	       "\"type_num\":100,\"packet_length\":28,\"id\":5,\"offset\":4096,\"endpoint\":128,"
	       "\"request\":6,\"requesttype\":128,\"status\":\"success\",\"status_code\":0,"
	       "\"value\":256,\"index\":0,\"length\":18,"
	       "\"request_summary\":\"GET_DESCRIPTOR DEVICE len 18\",\"data_len\":18,"
	       "\"data\":\"120100020000004081076755000101020301\"}\n");

	p = pk_base(H, usb_redir_ep_info, 0);
	memset(p.h.ep_info.type, usb_redir_type_invalid, 32);
	p.h.ep_info.type[17] = usb_redir_type_bulk;
	p.h.ep_info.max_packet_size[17] = 512;
	p.h.ep_info.type[2] = usb_redir_type_interrupt;
	p.h.ep_info.interval[2] = 10;
	expect(render(UG_RENDER_JSON, 0, 0, p),
	       "{\"ts\":0.000000000,\"session\":0,\"dir\":\"h2g\",\"type\":\"ep_info\",\"type_num\":5,"
	       "\"packet_length\":0,\"id\":0,\"offset\":0,\"endpoints\":["
	       "{\"address\":2,\"type\":\"interrupt\",\"interval\":10,\"interface\":0,"
	       "\"max_packet_size\":0,\"max_streams\":0},"
	       "{\"address\":129,\"type\":\"bulk\",\"interval\":0,\"interface\":0,"
	       "\"max_packet_size\":512,\"max_streams\":0}],\"data_len\":0,\"data\":\"\"}\n");
}

static void test_verbose_fields_and_hexdump(void **state)
{
	expect(render(UG_RENDER_VERBOSE, 0, 0,
	              pk_control(H, 5, 0x80, 6, 0x100, 0, 18, 0, dev_desc, 18)),
	       "    0.000000000 host->guest control_packet             id 5 ep 0x80 status success "
	       "data 18 GET_DESCRIPTOR DEVICE len 18\n"
	       "    type: 100\n"
	       "    packet_length: 28\n"
	       "    id: 5\n"
	       "    offset: 0\n"
	       "    endpoint: 0x80\n"
	       "    request: 0x06\n"
	       "    requesttype: 0x80\n"
	       "    status: success\n"
	       "    status_code: 0\n"
	       "    value: 0x0100\n"
	       "    index: 0x0000\n"
	       "    length: 18\n"
	       "    request_summary: GET_DESCRIPTOR DEVICE len 18\n"
	       "    data_len: 18\n"
	       "    0000  12 01 00 02 00 00 00 40 81 07 67 55 00 01 01 02  .......@..gU....\n"
	       "    0010  03 01                                            ..\n");
}

static void test_write_error_reported(void **state)
{
	FILE *f = fopen("/dev/null", "r");
	struct ug_usbredir_packet p = pk_bulk(G, 1, 0x81, 512, 0, NULL, 0);

	assert_non_null(f);
	assert_int_equal(ug_render_packet(f, UG_RENDER_SUMMARY, 0, 0, &p), UG_E_IO);
	fclose(f);
	assert_int_equal(ug_render_packet(stdout, 7, 0, 0, &p), UG_E_INVAL);
	assert_string_equal(ug_render_status_name(4), "stall");
	assert_string_equal(ug_render_status_name(99), "unknown");
}

/* Events from the tracker, rendered as the transfer view. */
static char *render_events(enum ug_render_format fmt, ug_tracker *t,
                           struct ug_usbredir_packet pkt, uint64_t ts)
{
	struct ug_transfer_event ev;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_int_equal(ug_tracker_push(t, &pkt, ts), 0);
	while (ug_tracker_next(t, &ev) == 1)
		assert_int_equal(ug_render_transfer(f, fmt, ts, 1, &ev), 0);
	fclose(f);
	return buf;
}

static void test_transfer_view(void **state)
{
	ug_tracker *t = ug_tracker_new();
	struct ug_usbredir_packet p;

	expect(render_events(UG_RENDER_SUMMARY, t,
	                     pk_control(G, 5, 0x80, 6, 0x100, 0, 18, 0, NULL, 0), 1000000),
	       "    0.001000000 #1 submit   control   ep 0x80 xfer 1 id 5 len 18 "
	       "GET_DESCRIPTOR DEVICE len 18\n");
	expect(render_events(UG_RENDER_SUMMARY, t,
	                     pk_control(H, 5, 0x80, 6, 0x100, 0, 18, 0, dev_desc, 18), 1045000),
	       "    0.001045000 #1 complete control   ep 0x80 xfer 1 id 5 status success len 18 "
	       "GET_DESCRIPTOR DEVICE len 18 after 0.045 ms\n");
	p = pk_base(G, usb_redir_get_configuration, 6);
	expect(render_events(UG_RENDER_JSON, t, p, 2000000),
	       "{\"ts\":0.002000000,\"session\":1,\"event\":\"submit\",\"serial\":2,\"id\":6,"
	       "\"connection\":0,\"packet_type\":\"get_configuration\","
	       "\"origin\":\"get_configuration\",\"transfer_type\":\"control\",\"endpoint\":128,"
	       "\"setup\":\"8008000000000100\",\"request_summary\":\"GET_CONFIGURATION\","
	       "\"interval\":0,\"stream_id\":0,\"req_length\":1,\"data_len\":0,\"data\":\"\"}\n");
	p = pk_base(H, usb_redir_configuration_status, 6);
	p.h.configuration_status.configuration = 1;
	expect(render_events(UG_RENDER_JSON, t, p, 2500000),
	       "{\"ts\":0.002500000,\"session\":1,\"event\":\"complete\",\"serial\":2,\"id\":6,"
	       "\"connection\":0,\"packet_type\":\"get_configuration\","
	       "\"origin\":\"get_configuration\",\"transfer_type\":\"control\",\"endpoint\":128,"
	       "\"setup\":\"8008000000000100\",\"request_summary\":\"GET_CONFIGURATION\","
	       "\"interval\":0,\"stream_id\":0,\"req_length\":1,\"status\":\"success\","
	       "\"status_code\":0,\"actual_length\":1,\"latency_ns\":500000,\"data_len\":1,"
	       "\"data\":\"01\"}\n");
	expect(render_events(UG_RENDER_SUMMARY, t, pk_bulk(H, 77, 0x81, 0, 0, NULL, 0), 3000000),
	       "    0.003000000 #1 notice   bulk      ep 0x81 xfer 0 id 77: answer without a request\n");
	ug_tracker_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_setup_summaries),
		cmocka_unit_test(test_summary_lines),
		cmocka_unit_test(test_hostile_strings_escaped),
		cmocka_unit_test(test_json_every_field),
		cmocka_unit_test(test_verbose_fields_and_hexdump),
		cmocka_unit_test(test_write_error_reported),
		cmocka_unit_test(test_transfer_view),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
