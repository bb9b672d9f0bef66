/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-replay-guest.c: the replayed guest against the emulated device and scripted hosts, and the report formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "replay.h"
#include "replay-testgen.h"

struct fx {
	char *raw, *raw_changed;
	ug_recording *rec, *changed;
	int done;
	int error;
};

/* The standard session, but the 4096-byte read answers with byte 300
 * changed: what a device that no longer answers as recorded looks like. */
static void tg_standard_changed(struct tg *g)
{
	uint8_t cbw[31], csw[13], data[4096];

	tg_hellos(g);
	tg_device(g);
	tg_control_in(g, 0x80, 6, 0x0100, 0, 18, tg_dev_desc, 18, 0);
	tg_control_in(g, 0x80, 6, 0x0200, 0, 9, tg_cfg_desc, 9, 0);
	tg_control_in(g, 0x80, 6, 0x0200, 0, 39, tg_cfg_desc, 39, 0);
	tg_set_configuration(g, 1);
	tg_read(g, 1, 0, 512);
	tg_cbw(cbw, 2, 8, 4096);
	tg_csw(csw, 2);
	for (uint32_t i = 0; i < 4096; i++)
		data[i] = (uint8_t)(8 * 7 + i);
	data[300] ^= 0x5a;
	tg_bulk(g, 0x02, cbw, 31, 0, NULL, 0, 0);
	tg_bulk(g, 0x81, NULL, 0, 4096, data, 4096, 0);
	tg_bulk(g, 0x81, NULL, 0, 13, csw, 13, 0);
	tg_interrupt_stream(g, 3);
}

static int setup(void **state)
{
	struct fx *f = g_new0(struct fx, 1);
	struct tg g;

	f->raw = tg_tmpname("guest");
	f->raw_changed = tg_tmpname("guest-changed");
	tg_init(&g);
	tg_standard(&g);
	if (tg_record(&g, f->raw, NULL) < 0)
		return -1;
	tg_free(&g);
	tg_init(&g);
	tg_standard_changed(&g);
	if (tg_record(&g, f->raw_changed, NULL) < 0)
		return -1;
	tg_free(&g);
	f->rec = ug_recording_new();
	f->changed = ug_recording_new();
	if (ug_recording_load(f->rec, f->raw) < 0 || ug_recording_load(f->changed, f->raw_changed) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ug_recording_free(f->rec);
	ug_recording_free(f->changed);
	unlink(f->raw);
	unlink(f->raw_changed);
	g_free(f->raw);
	g_free(f->raw_changed);
	g_free(f);
	return 0;
}

static void done_cb(void *owner, int error, const char *message, void *user_data)
{
	struct fx *f = user_data;

	(void)owner;
	(void)message;
	f->done = 1;
	f->error = error;
}

static void run_until_done(struct fx *f)
{
	gint64 end = g_get_monotonic_time() + 5000000;

	while (!f->done && g_get_monotonic_time() < end)
		if (!g_main_context_iteration(NULL, FALSE))
			g_usleep(1000);
	assert_true(f->done);
}

/* The replayed guest of guest_rec against an emulated device of host_rec,
 * on two ends of a socket pair. */
static ug_replay_guest *replay(struct fx *f, const ug_recording *guest_rec,
			       const ug_recording *host_rec, const ug_replay_rules *rules,
			       ug_emulated_device **ret_dev)
{
	int sv[2];
	ug_emulated_device *dev = ug_emulated_device_new(host_rec, NULL);
	ug_replay_guest *g = ug_replay_guest_new(guest_rec, rules);

	assert_non_null(dev);
	assert_non_null(g);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	f->done = 0;
	ug_replay_guest_set_done(g, done_cb, f);
	assert_int_equal(ug_emulated_device_attach(dev, ug_transport_socket_new(sv[0], "device")), 0);
	assert_int_equal(ug_replay_guest_attach(g, ug_transport_socket_new(sv[1], "guest")), 0);
	run_until_done(f);
	*ret_dev = dev;
	return g;
}

static void test_against_emulated_device(void **state)
{
	struct fx *f = *state;
	ug_emulated_device *dev;
	ug_replay_guest *g = replay(f, f->rec, f->rec, NULL, &dev);
	struct ug_replay_summary sum;

	ug_replay_report_summary(ug_replay_guest_report(g), &sum);
	assert_int_equal(f->error, 0);
	assert_int_equal(sum.completed, 1);
	assert_int_equal(sum.diverged, 0);
	/* 3 controls, set_configuration, 6 bulk, start_interrupt_receiving. */
	assert_int_equal(sum.requests, 11);
	assert_int_equal(sum.matched, 11);
	/* The device side agrees: everything answered, nothing left over. */
	ug_replay_report_summary(ug_emulated_device_report(dev), &sum);
	assert_int_equal(sum.matched, 11);
	assert_int_equal(sum.diverged, 0);
	ug_replay_guest_free(g);
	ug_emulated_device_free(dev);
}

static void test_changed_byte(void **state)
{
	struct fx *f = *state;
	ug_emulated_device *dev;
	ug_replay_guest *g = replay(f, f->rec, f->changed, NULL, &dev);
	const ug_replay_report *r = ug_replay_guest_report(g);
	const struct ug_divergence *d;
	struct ug_recorded_packet rp;
	char *text = NULL;
	size_t len = 0;
	FILE *mem;

	assert_int_equal(ug_replay_report_count(r), 1);
	d = ug_replay_report_get(r, 0);
	assert_string_equal(d->reason, "data differs at byte 300");
	assert_non_null(strstr(d->transfer, "bulk_packet ep 0x81 len 4096"));
	/* The record is the recorded answer's: find it in the recording. */
	ug_recording_get(f->rec, (size_t)d->record - 1, &rp);
	assert_int_equal(rp.pkt.dir, UG_DIR_H2G);
	assert_int_equal(rp.pkt.type, usb_redir_bulk_packet);
	assert_int_equal(rp.pkt.h.bulk_packet.endpoint, 0x81);
	assert_int_equal(rp.pkt.data_len, 4096);
	assert_int_equal(d->exp_length, 4096);
	assert_true(d->data_offset <= 300 && d->data_offset + d->exp_data_len > 300);
	assert_int_equal(d->exp_data[300 - d->data_offset] ^ d->got_data[300 - d->data_offset], 0x5a);

	mem = open_memstream(&text, &len);
	assert_int_equal(ug_replay_report_write_text(r, mem, 0), 0);
	fclose(mem);
	assert_non_null(strstr(text, "data differs at byte 300"));
	assert_non_null(strstr(text, "DIVERGED"));
	/* The hex diff brackets the changed byte on both lines. */
	assert_non_null(strstr(text, "-000120 "));
	assert_non_null(strstr(text, "+000120 "));
	free(text);
	ug_replay_guest_free(g);
	ug_emulated_device_free(dev);
}

static void test_masked_byte(void **state)
{
	struct fx *f = *state;
	ug_replay_rules *rules = ug_replay_rules_new();
	ug_emulated_device *dev;
	ug_replay_guest *g;
	struct ug_replay_summary sum;
	char err[200];

	assert_int_equal(ug_replay_rules_add(rules, "0x81:296-303", err, sizeof(err)), 0);
	g = replay(f, f->rec, f->changed, rules, &dev);
	ug_replay_report_summary(ug_replay_guest_report(g), &sum);
	assert_int_equal(sum.diverged, 0);
	assert_int_equal(sum.completed, 1);
	ug_replay_guest_free(g);
	ug_emulated_device_free(dev);
	ug_replay_rules_free(rules);
}

static void test_host_closes(void **state)
{
	struct fx *f = *state;
	struct tg_peer host;
	ug_transport *t;
	ug_replay_guest *g = ug_replay_guest_new(f->rec, NULL);
	const struct ug_divergence *d;

	tg_peer_init(&host, UG_DIR_G2H, &t);
	f->done = 0;
	ug_replay_guest_set_done(g, done_cb, f);
	ug_replay_guest_set_timeout(g, 300);
	assert_int_equal(ug_replay_guest_attach(g, t), 0);
	assert_true(tg_run_until(&host, 1));
	assert_int_equal(tg_rx_get(&host, 0)->type, usb_redir_hello);
	/* The host never offers a device: the timeout ends the replay. */
	run_until_done(f);
	assert_int_equal(f->error, UG_E_TIMEOUT);
	d = ug_replay_report_get(ug_replay_guest_report(g), 0);
	assert_non_null(d);
	assert_string_equal(d->reason, "the host offered no device");
	ug_replay_guest_free(g);
	tg_peer_free(&host);

	/* A host that closes after the device is offered. */
	g = ug_replay_guest_new(f->rec, NULL);
	tg_peer_init(&host, UG_DIR_G2H, &t);
	f->done = 0;
	ug_replay_guest_set_done(g, done_cb, f);
	assert_int_equal(ug_replay_guest_attach(g, t), 0);
	{
		struct ug_usbredir_packet p;

		memset(&p, 0, sizeof(p));
		p.type = usb_redir_hello;
		p.h.hello.caps_count = 1;
		p.h.hello.caps[0] = TG_CAPS;
		tg_peer_send(&host, &p);
		tg_run_until(&host, 1);
		memset(&p, 0, sizeof(p));
		p.type = usb_redir_device_connect;
		p.h.device_connect.vendor_id = 0x1234;
		p.h.device_connect.speed = usb_redir_speed_high;
		tg_peer_send(&host, &p);
	}
	assert_true(tg_run_until(&host, 2));     /* the first request */
	ug_transport_close(host.t);
	run_until_done(f);
	assert_int_equal(ug_replay_report_count(ug_replay_guest_report(g)), 2);
	assert_non_null(strstr(ug_replay_report_get(ug_replay_guest_report(g), 0)->reason,
			       "device differs: expected 46f4:0001"));
	assert_non_null(strstr(ug_replay_report_get(ug_replay_guest_report(g), 1)->reason,
			       "closed the connection"));
	ug_replay_guest_free(g);
	tg_peer_free(&host);
}

static void test_rules(void **state)
{
	ug_replay_rules *r = ug_replay_rules_new();
	char err[200];
	uint8_t a[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, b[8] = { 1, 2, 3, 4, 5, 6, 0, 0 };

	(void)state;
	assert_int_equal(ug_replay_rules_add(r, "status", err, sizeof(err)), 0);
	assert_int_equal(ug_replay_rules_add(r, "*:0-1", err, sizeof(err)), 0);
	assert_int_equal(ug_replay_rules_add(r, "2:5", err, sizeof(err)), 0);
	assert_int_equal(ug_replay_rules_add(r, "setup:6-7", err, sizeof(err)), 0);
	assert_int_equal(ug_replay_rules_add(r, "setup:6-9", err, sizeof(err)), UG_E_INVAL);
	assert_non_null(strstr(err, "setup:6-9"));
	assert_int_equal(ug_replay_rules_add(r, "0x81:5-2", err, sizeof(err)), UG_E_INVAL);
	assert_int_equal(ug_replay_rules_add(r, "bogus", err, sizeof(err)), UG_E_INVAL);
	assert_int_equal(ug_replay_rules_add(r, "0x100:1", err, sizeof(err)), UG_E_INVAL);
	assert_true(ug_replay_rules_ignores(r, UG_REPLAY_FIELD_STATUS));
	assert_false(ug_replay_rules_ignores(r, UG_REPLAY_FIELD_DATA));
	assert_true(ug_replay_setup_equal(r, a, b));
	assert_int_equal(ug_replay_data_diff(r, 2, a, 8, b, 8, -1, -2), 6);
	b[5] = 0;
	assert_int_equal(ug_replay_data_diff(r, 2, a, 8, b, 8, 0, -1), 6);   /* byte 5 masked */
	assert_int_equal(ug_replay_data_diff(r, 3, a, 8, b, 8, 0, -1), 5);
	assert_int_equal(ug_replay_data_diff(r, 3, a, 8, a, 4, 0, -1), 4);   /* length */
	assert_int_equal(ug_replay_data_diff(NULL, 3, a, 8, a, 8, 0, -1), -1);
	ug_replay_rules_free(r);
}

static void test_report_formats(void **state)
{
	ug_replay_report *r = ug_replay_report_new("suite<&>\"'");
	uint8_t e[40], g[40];
	char *text = NULL;
	size_t len = 0;
	FILE *mem;

	(void)state;
	memset(e, 0xaa, sizeof(e));
	memcpy(g, e, sizeof(g));
	g[33] = 0x55;
	ug_replay_report_counters(r)->requests = 5;
	ug_replay_report_counters(r)->matched = 4;
	ug_replay_report_add(r, 42, 3, "control_packet <GET> & \"x\"", "data differs at byte 33\n\x01",
			     33, 0, 40, e, 40, 0, 40, g, 40);

	mem = open_memstream(&text, &len);
	assert_int_equal(ug_replay_report_write_junit(r, mem), 0);
	fclose(mem);
	assert_non_null(strstr(text, "<testsuite name=\"suite&lt;&amp;&gt;&quot;&apos;\" tests=\"1\" failures=\"1\""));
	assert_non_null(strstr(text, "record 42 request 3: control_packet &lt;GET&gt; &amp; &quot;x&quot;"));
	assert_null(strstr(text, "\x01"));
	assert_null(strstr(text, "<GET>"));
	free(text);

	mem = open_memstream(&text, &len);
	assert_int_equal(ug_replay_report_write_json(r, mem), 0);
	fclose(mem);
	assert_non_null(strstr(text, "\"result\":\"diverged\""));
	assert_non_null(strstr(text, "\"transfer\":\"control_packet <GET> & \\\"x\\\"\""));
	assert_non_null(strstr(text, "data differs at byte 33\\u000a\\u0001"));
	assert_non_null(strstr(text, "\"record\":42"));
	free(text);

	mem = open_memstream(&text, &len);
	assert_int_equal(ug_replay_report_write_text(r, mem, 0), 0);
	fclose(mem);
	assert_non_null(strstr(text, "divergence 1: record 42, request 3"));
	assert_non_null(strstr(text, "[55]"));
	assert_non_null(strstr(text, "[aa]"));
	assert_non_null(strstr(text, "1 diverged"));
	free(text);

	/* Kept divergences are bounded; all are counted. */
	for (unsigned i = 0; i < UG_REPLAY_MAX_DIVERGENCES + 5; i++)
		ug_replay_report_add(r, i, i, "x", "y", -1, -1, 0, NULL, 0, -1, 0, NULL, 0);
	assert_int_equal(ug_replay_report_count(r), UG_REPLAY_MAX_DIVERGENCES);
	{
		struct ug_replay_summary s;

		ug_replay_report_summary(r, &s);
		assert_int_equal(s.diverged, UG_REPLAY_MAX_DIVERGENCES + 6);
	}
	ug_replay_report_free(r);

	/* A clean report is one passing JUnit case. */
	r = ug_replay_report_new(NULL);
	mem = open_memstream(&text, &len);
	ug_replay_report_write_junit(r, mem);
	fclose(mem);
	assert_non_null(strstr(text, "failures=\"0\""));
	assert_non_null(strstr(text, "<testcase"));
	free(text);
	ug_replay_report_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_emulated_device),
		cmocka_unit_test(test_changed_byte),
		cmocka_unit_test(test_masked_byte),
		cmocka_unit_test(test_host_closes),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_report_formats),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
