/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-device-bridge.c: device selection, usbredirfilter rules, enumeration and device-less sessions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <glib.h>
#include <usbredirproto.h>

#include "common.h"
#include "usbgate.h"

/* A USB stick as QEMU's usb-storage presents it. */
static struct ug_usb_device_info storage(void)
{
	struct ug_usb_device_info d;

	memset(&d, 0, sizeof(d));
	d.bus = 1;
	d.address = 3;
	snprintf(d.port_path, sizeof(d.port_path), "1-1");
	d.vendor_id = 0x46f4;
	d.product_id = 0x0001;
	d.bcd_device = 0x0000;
	d.interface_count = 1;
	d.interface_class[0] = 0x08;
	d.interface_subclass[0] = 0x06;
	d.interface_protocol[0] = 0x50;
	d.strings_read = 1;
	snprintf(d.serial, sizeof(d.serial), "1-0000:00:04.0-1");
	return d;
}

/* QEMU's usb-kbd: a boot keyboard. */
static struct ug_usb_device_info keyboard(void)
{
	struct ug_usb_device_info d;

	memset(&d, 0, sizeof(d));
	d.bus = 1;
	d.address = 4;
	snprintf(d.port_path, sizeof(d.port_path), "1-2.3");
	d.vendor_id = 0x0627;
	d.product_id = 0x0001;
	d.interface_count = 1;
	d.interface_class[0] = 0x03;
	d.interface_subclass[0] = 0x01;
	d.interface_protocol[0] = 0x01;
	return d;
}

static ug_usb_selector *sel_ok(const char *text)
{
	ug_usb_selector *s = NULL;
	char err[256] = "";

	assert_int_equal(ug_usb_selector_parse(text, &s, err, sizeof(err)), 0);
	assert_non_null(s);
	assert_string_equal(ug_usb_selector_describe(s), text);
	return s;
}

static int matches(const char *text, const struct ug_usb_device_info *d)
{
	ug_usb_selector *s = sel_ok(text);
	int m = ug_usb_selector_match(s, d);

	ug_usb_selector_free(s);
	return m;
}

static void test_selector_forms(void **state)
{
	struct ug_usb_device_info st = storage(), kb = keyboard(), hub = storage();

	assert_true(matches("46f4:0001", &st));
	assert_true(matches("46F4:1", &st));
	assert_true(matches("0x46f4:0x0001", &st));
	assert_false(matches("46f4:0001", &kb));
	assert_true(matches("46f4:*", &st));
	assert_true(matches("*:0001", &kb));
	assert_true(matches("1-3", &st));
	assert_false(matches("1-3", &kb));
	assert_true(matches("bus=1,addr=4", &kb));
	assert_true(matches("port=1-2.3", &kb));
	assert_false(matches("port=1-2", &kb));
	assert_true(matches("serial=1-0000:00:04.0-1", &st));
	assert_false(matches("serial=other", &st));
	assert_true(matches("0627:0001, port=1-2.3", &kb));
	assert_false(matches("0627:0001,port=1-1", &kb));
	assert_true(matches("vid=627,pid=1", &kb));
	assert_true(matches("*", &kb));
	assert_true(matches("any", &st));
	/* QEMU's filter syntax inside a selector: mass storage only. */
	assert_true(matches("filter=0x08:-1:-1:-1:1", &st));
	assert_false(matches("filter=0x08:-1:-1:-1:1", &kb));
	assert_true(matches("filter=-1:0x0627:-1:-1:1", &kb));
	/* Hubs are never exported. */
	hub.device_class = 0x09;
	assert_false(matches("*", &hub));
}

static void test_selector_serial_needs_strings(void **state)
{
	struct ug_usb_device_info st = storage();
	ug_usb_selector *s = sel_ok("serial=1-0000:00:04.0-1");
	ug_usb_selector *plain = sel_ok("46f4:0001");

	assert_true(ug_usb_selector_needs_strings(s));
	assert_false(ug_usb_selector_needs_strings(plain));
	st.strings_read = 0;
	assert_false(ug_usb_selector_match(s, &st));
	assert_true(ug_usb_selector_match(plain, &st));
	ug_usb_selector_free(s);
	ug_usb_selector_free(plain);
	ug_usb_selector_free(NULL);
}

static void test_selector_errors(void **state)
{
	static const struct {
		const char *text;
		const char *says;
	} bad[] = {
		{ "", "empty" },
		{ "46f4", "unknown term" },
		{ "46f4:12345", "VID:PID" },
		{ "xyz:0001", "VID:PID" },
		{ "1-", "BUS-ADDR" },
		{ "1-2.3", "port=" },
		{ "300-1", "BUS-ADDR" },
		{ "port=1", "BUS-PORT" },
		{ "port=1-2..3", "BUS-PORT" },
		{ "port=a-1", "BUS-PORT" },
		{ "serial=", "serial" },
		{ "bus=x", "bus" },
		{ "addr=128", "address" },
		{ "vid=12345", "hex" },
		{ "filter=", "filter" },
		{ "filter=1:2", "filter" },
		{ "46f4:0001,,1-2", "empty term" },
		{ "color=red", "unknown term" },
	};
	char err[256];

	for (size_t i = 0; i < UG_NELEMS(bad); i++) {
		ug_usb_selector *s = (ug_usb_selector *)&err; /* must stay untouched */

		err[0] = '\0';
		assert_int_equal(ug_usb_selector_parse(bad[i].text, &s, err, sizeof(err)),
		                 UG_E_INVAL);
		assert_ptr_equal(s, (ug_usb_selector *)&err);
		if (!strstr(err, bad[i].says))
			fail_msg("\"%s\": message \"%s\" lacks \"%s\"", bad[i].text, err,
			         bad[i].says);
	}
	assert_int_equal(ug_usb_selector_parse(NULL, NULL, NULL, 0), UG_E_INVAL);
}

static void test_filter_rules_through_usbredirfilter(void **state)
{
	struct ug_usb_device_info st = storage(), kb = keyboard();
	ug_usb_filter *f = NULL;
	char err[256];

	/* spice-gtk's default auto-connect filter: everything but HID. */
	assert_int_equal(ug_usb_filter_parse("0x03,-1,-1,-1,0|-1,-1,-1,-1,1", &f, err,
	                                     sizeof(err)), 0);
	assert_true(ug_usb_filter_allows(f, &st));
	assert_false(ug_usb_filter_allows(f, &kb));
	/* Canonical form from usbredirfilter_rules_to_string(). */
	assert_non_null(strstr(ug_usb_filter_describe(f), "|"));
	assert_non_null(strstr(ug_usb_filter_describe(f), "0x03"));
	ug_usb_filter_free(f);

	/* QEMU's ':' separated fields work too; a device no rule matches is refused. */
	assert_int_equal(ug_usb_filter_parse("-1:0x46f4:-1:-1:1", &f, err, sizeof(err)), 0);
	assert_true(ug_usb_filter_allows(f, &st));
	assert_false(ug_usb_filter_allows(f, &kb));
	ug_usb_filter_free(f);

	/* A version range: bcdDevice 0x0000 is below 0x0100. */
	assert_int_equal(ug_usb_filter_parse("-1,0x46f4,-1,0x0100,1", &f, err, sizeof(err)), 0);
	assert_false(ug_usb_filter_allows(f, &st));
	ug_usb_filter_free(f);

	/* Empty: allow everything; NULL filter too. */
	assert_int_equal(ug_usb_filter_parse("", &f, err, sizeof(err)), 0);
	assert_true(ug_usb_filter_allows(f, &kb));
	assert_string_equal(ug_usb_filter_describe(f), "");
	ug_usb_filter_free(f);
	assert_true(ug_usb_filter_allows(NULL, &kb));

	f = (ug_usb_filter *)&err;
	assert_int_equal(ug_usb_filter_parse("0x03,-1,-1", &f, err, sizeof(err)), UG_E_INVAL);
	assert_ptr_equal(f, (ug_usb_filter *)&err);
	assert_non_null(strstr(err, "0x03,-1,-1"));
	assert_int_equal(ug_usb_filter_parse("0x300,-1,-1,-1,1", &f, err, sizeof(err)),
	                 UG_E_INVAL);
	assert_int_equal(ug_usb_filter_parse("a,b,c,d,e", &f, err, sizeof(err)), UG_E_INVAL);
	ug_usb_filter_free(NULL);
}

static void test_speed_names(void **state)
{
	assert_string_equal(ug_usb_speed_name(3), "high (480 Mb/s)");
	assert_string_equal(ug_usb_speed_name(4), "super (5 Gb/s)");
	assert_string_equal(ug_usb_speed_name(99), "unknown");
}

static void test_enumeration_returns_cleanly(void **state)
{
	char err[256] = "";
	ug_usb_host *h = ug_usb_host_new(err, sizeof(err));
	struct ug_usb_device_info *list = (void *)&err;
	size_t count = 12345;

	assert_non_null(h);
	assert_int_equal(ug_usb_host_list(h, &list, &count), 0);
	/* Whatever this machine has (none in a container), each entry is sane. */
	assert_true(count < 1000);
	for (size_t i = 0; i < count; i++) {
		assert_int_not_equal(list[i].device_class, 0x09);
		assert_true(list[i].port_path[0] != '\0');
		assert_true(list[i].interface_count <= UG_USB_MAX_INTERFACES);
	}
	if (!ug_usb_host_available(h)) {
		assert_int_equal(count, 0);
		assert_non_null(strstr(ug_usb_host_errmsg(h), "libusb"));
	}
	free(list);
	ug_usb_host_free(h);
	ug_usb_host_free(NULL);
}

/* A bridge whose device is absent still runs a usbredir session: the guest
 * gets the hello, no device_connect, and the session ends cleanly. */
struct session {
	GMainContext *ctx;
	int events[5];
	int last_error;
	char last_msg[256];
	GByteArray *tapped[2];      /* by enum ug_dir */
};

static void on_tap(ug_device_bridge *b, enum ug_dir dir, const uint8_t *data, size_t len,
                   void *user_data)
{
	struct session *s = user_data;

	g_byte_array_append(s->tapped[dir], data, (guint)len);
}

static void on_event(ug_device_bridge *b, enum ug_device_bridge_event ev, int error,
                     const char *message, void *user_data)
{
	struct session *s = user_data;

	s->events[ev]++;
	s->last_error = error;
	snprintf(s->last_msg, sizeof(s->last_msg), "%s", message);
}

static size_t read_some(int fd, uint8_t *buf, size_t size, struct session *s, size_t want)
{
	size_t got = 0;
	gint64 end = g_get_monotonic_time() + 3000000;

	while (got < want && g_get_monotonic_time() < end) {
		ssize_t n = recv(fd, buf + got, size - got, MSG_DONTWAIT);

		if (n > 0)
			got += (size_t)n;
		else if (!g_main_context_iteration(s->ctx, FALSE))
			g_usleep(1000);
	}
	return got;
}

static void run_until_event(struct session *s, enum ug_device_bridge_event ev, int count)
{
	gint64 end = g_get_monotonic_time() + 3000000;

	while (s->events[ev] < count && g_get_monotonic_time() < end)
		if (!g_main_context_iteration(s->ctx, FALSE))
			g_usleep(1000);
	assert_int_equal(s->events[ev], count);
}

static void test_session_without_device(void **state)
{
	struct session s;
	char err[256];
	ug_usb_host *h;
	ug_usb_selector *sel;
	ug_device_bridge *b;
	uint8_t buf[4096];
	int sv[2];
	size_t got;

	memset(&s, 0, sizeof(s));
	s.ctx = g_main_context_new();
	g_main_context_push_thread_default(s.ctx);
	h = ug_usb_host_new(err, sizeof(err));
	assert_non_null(h);
	/* An id nothing has. */
	assert_int_equal(ug_usb_selector_parse("fffe:fffd", &sel, err, sizeof(err)), 0);
	b = ug_device_bridge_new(h, "nothing", sel, NULL);
	assert_non_null(b);
	ug_device_bridge_set_events(b, on_event, &s);
	s.tapped[UG_DIR_G2H] = g_byte_array_new();
	s.tapped[UG_DIR_H2G] = g_byte_array_new();
	ug_device_bridge_set_tap(b, on_tap, &s);
	assert_false(ug_device_bridge_device(b, NULL));
	assert_string_equal(ug_device_bridge_name(b), "nothing");

	for (int round = 1; round <= 2; round++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		assert_int_equal(ug_device_bridge_attach(b, ug_transport_socket_new(sv[0], "pair")),
		                 0);
		assert_true(ug_device_bridge_in_session(b));
		assert_int_equal(s.events[UG_BRIDGE_SESSION_STARTED], round);
		/* A second peer is refused while the session runs. */
		{
			int sv2[2];

			assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
			assert_int_equal(ug_device_bridge_attach(b, ug_transport_socket_new(sv2[0],
			                                                                   "extra")),
			                 UG_E_STATE);
			assert_non_null(strstr(ug_device_bridge_errmsg(b), "extra"));
			close(sv2[1]);
		}
		/* The usb-host's hello: type 0, 64-byte version, caps. */
		got = read_some(sv[1], buf, sizeof(buf), &s, 12 + 64 + 4);
		assert_true(got >= 12 + 64 + 4);
		assert_int_equal(ug_get_le32(buf), usb_redir_hello);
		assert_true(ug_get_le32(buf + 4) >= 64 + 4);
		assert_memory_equal(buf + 12, "usbgate ", 8);
		/* The tap saw exactly what the guest got. */
		assert_true(s.tapped[UG_DIR_H2G]->len >= got);
		assert_memory_equal(s.tapped[UG_DIR_H2G]->data, buf, got);
		g_byte_array_set_size(s.tapped[UG_DIR_H2G], 0);
		/* Garbage from the guest must not bring the bridge down. */
		memset(buf, 0xff, 64);
		assert_int_equal(send(sv[1], buf, 64, 0), 64);
		got = read_some(sv[1], buf, sizeof(buf), &s, 1);
		/* ... and the tap saw it as the guest's bytes. */
		assert_int_equal(s.tapped[UG_DIR_G2H]->len, 64);
		assert_int_equal(s.tapped[UG_DIR_G2H]->data[63], 0xff);
		g_byte_array_set_size(s.tapped[UG_DIR_G2H], 0);
		close(sv[1]);
		run_until_event(&s, UG_BRIDGE_SESSION_ENDED, round);
		assert_false(ug_device_bridge_in_session(b));
		assert_non_null(strstr(s.last_msg, "pair"));
	}
	ug_device_bridge_free(b);
	ug_usb_host_free(h);
	g_byte_array_unref(s.tapped[0]);
	g_byte_array_unref(s.tapped[1]);
	while (g_main_context_iteration(s.ctx, FALSE))
		;
	g_main_context_pop_thread_default(s.ctx);
	g_main_context_unref(s.ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_selector_forms),
		cmocka_unit_test(test_selector_serial_needs_strings),
		cmocka_unit_test(test_selector_errors),
		cmocka_unit_test(test_filter_rules_through_usbredirfilter),
		cmocka_unit_test(test_speed_names),
		cmocka_unit_test(test_enumeration_returns_cleanly),
		cmocka_unit_test(test_session_without_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
