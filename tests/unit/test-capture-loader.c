/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-capture-loader.c: the capture loader on recorded raw and usbmon captures, good and broken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pcap/pcap.h>

#include "replay-testgen.h"

struct files {
	char *raw, *usbmon;
};

static int setup(void **state)
{
	struct files *f = g_new0(struct files, 1);
	struct tg g;

	f->raw = tg_tmpname("loader-raw");
	f->usbmon = tg_tmpname("loader-usbmon");
	tg_init(&g);
	tg_standard(&g);
	if (tg_record(&g, f->raw, f->usbmon) < 0)
		return -1;
	tg_free(&g);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct files *f = *state;

	unlink(f->raw);
	unlink(f->usbmon);
	g_free(f->raw);
	g_free(f->usbmon);
	g_free(f);
	return 0;
}

static size_t find(const ug_recording *r, enum ug_dir dir, uint32_t type, size_t from)
{
	struct ug_recorded_packet p;

	for (size_t i = from; i < ug_recording_count(r); i++) {
		ug_recording_get(r, i, &p);
		if (p.pkt.dir == dir && p.pkt.type == type)
			return i;
	}
	return (size_t)-1;
}

static void test_raw_exact(void **state)
{
	struct files *f = *state;
	ug_recording *r = ug_recording_new();
	struct usb_redir_device_connect_header dev;
	struct ug_recorded_packet p;
	size_t i;

	assert_int_equal(ug_recording_load(r, f->raw), 0);
	assert_int_equal(ug_recording_format(r), UG_RAW_LINKTYPE);
	/* 2 hellos, 3 device packets, 3 controls x 2, set_config 4, 2 reads x 6,
	 * stream 2 + 3. */
	assert_int_equal(ug_recording_count(r), 2 + 3 + 6 + 4 + 12 + 5);
	assert_int_equal(ug_recording_caps(r, UG_DIR_G2H), TG_CAPS);
	assert_int_equal(ug_recording_negotiated_caps(r), TG_CAPS);
	assert_int_equal(ug_recording_device(r, &dev), 0);
	assert_int_equal(dev.vendor_id, 0x46f4);
	assert_int_equal(dev.speed, usb_redir_speed_high);
	assert_int_equal(dev.device_version_bcd, 0x0100);
	/* Records are numbered in file order, one packet each. */
	for (i = 0; i < ug_recording_count(r); i++) {
		ug_recording_get(r, i, &p);
		assert_int_equal(p.record, i + 1);
	}
	i = find(r, UG_DIR_H2G, usb_redir_control_packet, 0);
	ug_recording_get(r, i, &p);
	assert_int_equal(p.pkt.data_len, 18);
	assert_memory_equal(p.pkt.data, tg_dev_desc, 18);
	assert_int_equal(p.pkt.h.control_packet.value, 0x0100);
	assert_true(ug_recording_memory(r) > 0);
	ug_recording_free(r);
}

static void test_usbmon_model(void **state)
{
	struct files *f = *state;
	ug_recording *r = ug_recording_new();
	struct usb_redir_device_connect_header dev;
	struct ug_recorded_packet p;
	size_t i;

	/* bcdUSB 2.00 does not say the speed. */
	assert_int_equal(ug_recording_load(r, f->usbmon), UG_E_INVAL);
	assert_non_null(strstr(ug_recording_errmsg(r), "speed"));
	ug_recording_free(r);

	r = ug_recording_new();
	assert_int_equal(ug_recording_set_speed(r, usb_redir_speed_high), 0);
	assert_int_equal(ug_recording_load(r, f->usbmon), 0);
	assert_int_equal(ug_recording_format(r), UG_USBMON_LINKTYPE);
	assert_int_equal(ug_recording_device(r, &dev), 0);
	assert_int_equal(dev.vendor_id, 0x46f4);
	assert_int_equal(dev.product_id, 0x0001);
	assert_int_equal(dev.device_version_bcd, 0x0100);
	assert_int_equal(dev.speed, usb_redir_speed_high);
	/* The endpoint layout comes from the configuration descriptor. */
	i = find(r, UG_DIR_H2G, usb_redir_ep_info, 0);
	ug_recording_get(r, i, &p);
	assert_int_equal(p.pkt.h.ep_info.type[17], usb_redir_type_bulk);
	assert_int_equal(p.pkt.h.ep_info.max_packet_size[17], 512);
	assert_int_equal(p.pkt.h.ep_info.type[2], usb_redir_type_bulk);
	assert_int_equal(p.pkt.h.ep_info.type[19], usb_redir_type_interrupt);
	assert_int_equal(p.pkt.h.ep_info.interval[19], 10);
	i = find(r, UG_DIR_H2G, usb_redir_interface_info, 0);
	ug_recording_get(r, i, &p);
	assert_int_equal(p.pkt.h.interface_info.interface_count, 1);
	assert_int_equal(p.pkt.h.interface_info.interface_class[0], 8);
	assert_int_equal(p.pkt.h.interface_info.interface_protocol[0], 0x50);
	/* SET_CONFIGURATION became set_configuration again. */
	i = find(r, UG_DIR_G2H, usb_redir_set_configuration, 0);
	assert_true(i != (size_t)-1);
	ug_recording_get(r, i, &p);
	assert_int_equal(p.pkt.h.set_configuration.configuration, 1);
	assert_true(find(r, UG_DIR_H2G, usb_redir_configuration_status, i) != (size_t)-1);
	/* Bulk data survived: the 4096-byte read. */
	for (i = 0; (i = find(r, UG_DIR_H2G, usb_redir_bulk_packet, i)) != (size_t)-1; i++) {
		ug_recording_get(r, i, &p);
		if (p.pkt.data_len == 4096)
			break;
	}
	assert_true(i != (size_t)-1);
	assert_int_equal(p.pkt.data[1], (uint8_t)(8 * 7 + 1));
	assert_true(p.record > 0);
	/* Interrupt IN became receiving with pushed packets. */
	assert_true(find(r, UG_DIR_G2H, usb_redir_start_interrupt_receiving, 0) != (size_t)-1);
	i = find(r, UG_DIR_H2G, usb_redir_interrupt_packet, 0);
	assert_true(i != (size_t)-1);
	ug_recording_get(r, i, &p);
	assert_int_equal(p.pkt.data_len, 8);
	assert_int_equal(p.pkt.data[2], 4);
	ug_recording_free(r);
}

static void copy_cut(const char *src, const char *dst, long cut)
{
	gchar *buf;
	gsize len;

	assert_true(g_file_get_contents(src, &buf, &len, NULL));
	assert_true((long)len > cut);
	assert_true(g_file_set_contents(dst, buf, (gssize)len - cut, NULL));
	g_free(buf);
}

static void test_truncated(void **state)
{
	struct files *f = *state;
	char *cut = tg_tmpname("loader-cut");
	ug_recording *r;

	copy_cut(f->raw, cut, 20);
	r = ug_recording_new();
	assert_int_equal(ug_recording_load(r, cut), UG_E_TRUNCATED);
	assert_non_null(strstr(ug_recording_errmsg(r), "record"));
	ug_recording_free(r);

	copy_cut(f->usbmon, cut, 7);
	r = ug_recording_new();
	ug_recording_set_speed(r, usb_redir_speed_high);
	assert_int_equal(ug_recording_load(r, cut), UG_E_TRUNCATED);
	assert_non_null(strstr(ug_recording_errmsg(r), "record"));
	ug_recording_free(r);
	unlink(cut);
	g_free(cut);
}

static void test_unknown_format(void **state)
{
	char *p = tg_tmpname("loader-junk");
	ug_recording *r;
	pcap_t *dead;
	pcap_dumper_t *d;
	struct pcap_pkthdr h = { { 0, 0 }, 4, 4 };

	(void)state;
	assert_true(g_file_set_contents(p, "not a capture at all", -1, NULL));
	r = ug_recording_new();
	assert_int_equal(ug_recording_load(r, p), UG_E_UNSUPPORTED);
	ug_recording_free(r);

	dead = pcap_open_dead(DLT_EN10MB, 65535);
	d = pcap_dump_open(dead, p);
	pcap_dump((u_char *)d, &h, (const u_char *)"abcd");
	pcap_dump_close(d);
	pcap_close(dead);
	r = ug_recording_new();
	assert_int_equal(ug_recording_load(r, p), UG_E_UNSUPPORTED);
	assert_non_null(strstr(ug_recording_errmsg(r), "link type 1"));
	ug_recording_free(r);

	r = ug_recording_new();
	assert_int_equal(ug_recording_load(r, "/nonexistent/capture.pcap"), UG_E_IO);
	ug_recording_free(r);
	unlink(p);
	g_free(p);
}

static void test_no_descriptors(void **state)
{
	char *raw = tg_tmpname("loader-nodesc"), *mon = tg_tmpname("loader-nodesc-mon");
	ug_recording *r;
	struct tg g;

	(void)state;
	/* Hellos and one bulk transfer: no device_connect, no descriptors. */
	tg_init(&g);
	tg_hellos(&g);
	tg_read(&g, 1, 0, 512);
	assert_int_equal(tg_record(&g, raw, mon), 0);
	tg_free(&g);
	r = ug_recording_new();
	assert_int_equal(ug_recording_load(r, raw), UG_E_NOTFOUND);
	assert_non_null(strstr(ug_recording_errmsg(r), "device_connect"));
	ug_recording_free(r);
	r = ug_recording_new();
	ug_recording_set_speed(r, usb_redir_speed_full);
	assert_int_equal(ug_recording_load(r, mon), UG_E_NOTFOUND);
	assert_non_null(strstr(ug_recording_errmsg(r), "descriptor"));
	ug_recording_free(r);
	unlink(raw);
	unlink(mon);
	g_free(raw);
	g_free(mon);
}

static void test_limits(void **state)
{
	struct files *f = *state;
	struct ug_recording_limits lim = { 0 };
	ug_recording *r = ug_recording_new();

	lim.max_packets = 10;
	assert_int_equal(ug_recording_set_limits(r, &lim), 0);
	assert_int_equal(ug_recording_load(r, f->raw), UG_E_TOOBIG);
	assert_non_null(strstr(ug_recording_errmsg(r), "record 11"));
	ug_recording_free(r);

	r = ug_recording_new();
	memset(&lim, 0, sizeof(lim));
	lim.max_bytes = 2048;
	ug_recording_set_limits(r, &lim);
	assert_int_equal(ug_recording_load(r, f->raw), UG_E_TOOBIG);
	assert_non_null(strstr(ug_recording_errmsg(r), "memory limit"));
	/* A second load is refused. */
	assert_int_equal(ug_recording_load(r, f->raw), UG_E_STATE);
	ug_recording_free(r);
}

static void test_speed_names(void **state)
{
	int s = -1;

	(void)state;
	assert_int_equal(ug_recording_parse_speed("super", &s), 0);
	assert_int_equal(s, usb_redir_speed_super);
	assert_int_equal(ug_recording_parse_speed("12", &s), 0);
	assert_int_equal(s, usb_redir_speed_full);
	assert_int_equal(ug_recording_parse_speed("warp", &s), UG_E_INVAL);
	assert_string_equal(ug_recording_speed_name(usb_redir_speed_high), "high (480 Mb/s)");
	ug_recording_free(NULL);
}

/* The shipped captures, recorded on the VM rig, load as they are. */
static void test_shipped_captures(void **state)
{
	static const char *names[] = { "storage.raw.pcap", "kbd.raw.pcap" };
	const char *src = getenv("UG_SRCDIR");

	(void)state;
	if (!src)
		src = "..";
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *p = g_strdup_printf("%s/tests/data/%s", src, names[i]);
		ug_recording *r = ug_recording_new();
		struct usb_redir_device_connect_header dev;

		assert_int_equal(ug_recording_load(r, p), 0);
		assert_int_equal(ug_recording_device(r, &dev), 0);
		assert_int_equal(dev.vendor_id, i == 0 ? 0x46f4 : 0x0627);
		assert_true(ug_recording_count(r) > 20);
		ug_recording_free(r);
		g_free(p);
	}
	{
		/* The usbmon pcap of the keyboard session: the same device,
		 * rebuilt from its descriptors, with the keys as pushed data. */
		char *p = g_strdup_printf("%s/tests/data/kbd.usbmon.pcap", src);
		ug_recording *r = ug_recording_new();
		struct usb_redir_device_connect_header dev;
		size_t pushed = 0;

		ug_recording_set_speed(r, usb_redir_speed_high);
		assert_int_equal(ug_recording_load(r, p), 0);
		assert_int_equal(ug_recording_device(r, &dev), 0);
		assert_int_equal(dev.vendor_id, 0x0627);
		assert_int_equal(dev.product_id, 0x0001);
		for (size_t i = 0; i < ug_recording_count(r); i++) {
			struct ug_recorded_packet pk;

			ug_recording_get(r, i, &pk);
			if (pk.pkt.dir == UG_DIR_H2G && pk.pkt.type == usb_redir_interrupt_packet)
				pushed++;
		}
		assert_int_equal(pushed, 18);   /* 9 keys, down and up */
		ug_recording_free(r);
		g_free(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raw_exact),
		cmocka_unit_test(test_usbmon_model),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_unknown_format),
		cmocka_unit_test(test_no_descriptors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_speed_names),
		cmocka_unit_test(test_shipped_captures),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
