/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-emulated-device.c: the emulated device answers a scripted guest over a real socket from a recorded session. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "replay-testgen.h"

struct fx {
	char *raw;
	ug_recording *rec;
	ug_replay_rules *rules;
	ug_emulated_device *dev;
	struct tg_peer guest;
	int done;
};

static void done_cb(void *owner, int error, const char *message, void *user_data)
{
	(void)owner;
	(void)error;
	(void)message;
	((struct fx *)user_data)->done = 1;
}

static int setup(void **state)
{
	struct fx *f = g_new0(struct fx, 1);
	struct tg g;

	f->raw = tg_tmpname("emu");
	tg_init(&g);
	tg_standard(&g);
	if (tg_record(&g, f->raw, NULL) < 0)
		return -1;
	tg_free(&g);
	f->rec = ug_recording_new();
	if (ug_recording_load(f->rec, f->raw) < 0)
		return -1;
	f->rules = ug_replay_rules_new();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ug_replay_rules_free(f->rules);
	ug_recording_free(f->rec);
	unlink(f->raw);
	g_free(f->raw);
	g_free(f);
	return 0;
}

/* A device on a socket, a guest on the other end, hellos exchanged and the
 * device offered (hello, ep_info, interface_info, device_connect). */
static void start(struct fx *f, int strict)
{
	ug_transport *t;
	struct ug_usbredir_packet p;

	f->done = 0;
	f->dev = ug_emulated_device_new(f->rec, f->rules);
	assert_non_null(f->dev);
	ug_emulated_device_set_strict(f->dev, strict);
	ug_emulated_device_set_done(f->dev, done_cb, f);
	tg_peer_init(&f->guest, UG_DIR_H2G, &t);
	assert_int_equal(ug_emulated_device_attach(f->dev, t), 0);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_hello;
	p.h.hello.caps_count = 1;
	p.h.hello.caps[0] = 0xff | (1u << usb_redir_cap_64bits_ids) |
			    (1u << usb_redir_cap_32bits_bulk_length);
	tg_peer_send(&f->guest, &p);
	assert_true(tg_run_until(&f->guest, 4));
}

static void stop(struct fx *f)
{
	ug_emulated_device_free(f->dev);
	f->dev = NULL;
	tg_peer_free(&f->guest);
}

static const struct ug_usbredir_packet *ask(struct fx *f, struct ug_usbredir_packet *p, guint n)
{
	guint before = f->guest.rx->len;

	tg_peer_send(&f->guest, p);
	assert_true(tg_run_until(&f->guest, before + n));
	return tg_rx_get(&f->guest, before + n - 1);
}

static const struct ug_usbredir_packet *bulk(struct fx *f, uint64_t id, uint8_t ep,
					     const uint8_t *out, uint32_t len)
{
	struct ug_usbredir_packet p;

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_bulk_packet;
	p.id = id;
	p.h.bulk_packet.endpoint = ep;
	p.h.bulk_packet.length = (uint16_t)len;
	p.h.bulk_packet.length_high = (uint16_t)(len >> 16);
	p.data = (ep & 0x80) ? NULL : out;
	p.data_len = (ep & 0x80) ? 0 : len;
	return ask(f, &p, 1);
}

static void test_offer(void **state)
{
	struct fx *f = *state;
	const struct ug_usbredir_packet *p;

	start(f, 0);
	p = tg_rx_get(&f->guest, 0);
	assert_int_equal(p->type, usb_redir_hello);
	/* What QEMU needs to attach behind xhci, and device versions. */
	assert_true(p->h.hello.caps[0] & (1u << usb_redir_cap_ep_info_max_packet_size));
	assert_true(p->h.hello.caps[0] & (1u << usb_redir_cap_32bits_bulk_length));
	assert_true(p->h.hello.caps[0] & (1u << usb_redir_cap_64bits_ids));
	assert_true(p->h.hello.caps[0] & (1u << usb_redir_cap_connect_device_version));
	assert_int_equal(tg_rx_get(&f->guest, 1)->type, usb_redir_ep_info);
	assert_int_equal(tg_rx_get(&f->guest, 1)->h.ep_info.max_packet_size[17], 512);
	assert_int_equal(tg_rx_get(&f->guest, 2)->type, usb_redir_interface_info);
	p = tg_rx_get(&f->guest, 3);
	assert_int_equal(p->type, usb_redir_device_connect);
	assert_int_equal(p->h.device_connect.vendor_id, 0x46f4);
	assert_int_equal(p->h.device_connect.speed, usb_redir_speed_high);
	assert_int_equal(p->h.device_connect.device_version_bcd, 0x0100);
	stop(f);
}

static void test_control_and_configuration(void **state)
{
	struct fx *f = *state;
	struct ug_usbredir_packet p;
	const struct ug_usbredir_packet *r;
	struct ug_replay_summary sum;

	start(f, 0);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_control_packet;
	p.id = 0x123456789ull;
	p.h.control_packet.endpoint = 0x80;
	p.h.control_packet.requesttype = 0x80;
	p.h.control_packet.request = 6;
	p.h.control_packet.value = 0x0100;
	p.h.control_packet.length = 18;
	r = ask(f, &p, 1);
	assert_int_equal(r->type, usb_redir_control_packet);
	assert_int_equal(r->id, 0x123456789ull);
	assert_int_equal(r->h.control_packet.status, usb_redir_success);
	assert_int_equal(r->data_len, 18);
	assert_memory_equal(r->data, tg_dev_desc, 18);
	/* A shorter read of the same descriptor gets the first bytes. */
	p.h.control_packet.length = 8;
	r = ask(f, &p, 1);
	assert_int_equal(r->data_len, 8);
	assert_memory_equal(r->data, tg_dev_desc, 8);

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_set_configuration;
	p.id = 9;
	p.h.set_configuration.configuration = 1;
	tg_peer_send(&f->guest, &p);
	{
		guint base = f->guest.rx->len;

		assert_true(tg_run_until(&f->guest, base + 3));
		assert_int_equal(tg_rx_get(&f->guest, base)->type, usb_redir_ep_info);
		assert_int_equal(tg_rx_get(&f->guest, base + 1)->type, usb_redir_interface_info);
		r = tg_rx_get(&f->guest, base + 2);
		assert_int_equal(r->type, usb_redir_configuration_status);
		assert_int_equal(r->id, 9);
		assert_int_equal(r->h.configuration_status.configuration, 1);
	}
	ug_replay_report_summary(ug_emulated_device_report(f->dev), &sum);
	assert_int_equal(sum.requests, 3);
	assert_int_equal(sum.matched, 2);
	assert_int_equal(sum.reused, 1);
	assert_int_equal(sum.diverged, 0);
	stop(f);
}

/* Mass storage reads in another order and with other tags than recorded. */
static void test_bot_reads(void **state)
{
	struct fx *f = *state;
	uint8_t cbw[31];
	const struct ug_usbredir_packet *r;
	struct ug_replay_summary sum;

	start(f, 0);
	tg_cbw(cbw, 0x5501, 8, 4096);
	r = bulk(f, 100, 0x02, cbw, 31);
	assert_int_equal(r->h.bulk_packet.status, usb_redir_success);
	r = bulk(f, 101, 0x81, NULL, 4096);
	assert_int_equal(r->id, 101);
	assert_int_equal(r->data_len, 4096);
	assert_int_equal(r->data[5], (uint8_t)(8 * 7 + 5));
	r = bulk(f, 102, 0x81, NULL, 13);
	assert_int_equal(r->data_len, 13);
	assert_memory_equal(r->data, "USBS", 4);
	assert_int_equal(r->data[4], 0x01);
	assert_int_equal(r->data[5], 0x55);     /* the guest's tag, not the recorded 2 */

	tg_cbw(cbw, 0x5502, 0, 512);
	bulk(f, 103, 0x02, cbw, 31);
	r = bulk(f, 104, 0x81, NULL, 512);
	assert_int_equal(r->data_len, 512);
	assert_int_equal(r->data[5], 5);
	r = bulk(f, 105, 0x81, NULL, 13);
	assert_int_equal(r->data[4], 0x02);
	ug_replay_report_summary(ug_emulated_device_report(f->dev), &sum);
	assert_int_equal(sum.diverged, 0);
	assert_int_equal(sum.matched, 6);
	stop(f);
}

static void test_unmatched(void **state)
{
	struct fx *f = *state;
	uint8_t cbw[31];
	const struct ug_usbredir_packet *r;
	const struct ug_divergence *d;

	start(f, 0);
	tg_cbw(cbw, 7, 99, 512);                 /* sector 99 was never read */
	r = bulk(f, 200, 0x02, cbw, 31);
	assert_int_equal(r->h.bulk_packet.status, usb_redir_stall);
	assert_int_equal(ug_replay_report_count(ug_emulated_device_report(f->dev)), 1);
	d = ug_replay_report_get(ug_emulated_device_report(f->dev), 0);
	assert_non_null(strstr(d->reason, "no recorded transfer matches"));
	assert_non_null(strstr(d->reason, "byte 20"));          /* the LBA's low byte */
	assert_non_null(strstr(d->transfer, "bulk_packet ep 0x02"));
	assert_true(d->record > 0);
	assert_int_equal(d->got_data_len, 31);
	stop(f);

	/* The unmatched status is configurable. */
	f->dev = NULL;
	start(f, 0);
	ug_emulated_device_set_unmatched_status(f->dev, usb_redir_ioerror);
	r = bulk(f, 201, 0x02, cbw, 31);
	assert_int_equal(r->h.bulk_packet.status, usb_redir_ioerror);
	stop(f);
}

static void test_strict(void **state)
{
	struct fx *f = *state;
	struct ug_usbredir_packet p;
	const struct ug_usbredir_packet *r;

	start(f, 1);
	/* The recording starts with GET_DESCRIPTOR DEVICE: a configuration
	 * read first is out of order. */
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_control_packet;
	p.id = 1;
	p.h.control_packet.endpoint = 0x80;
	p.h.control_packet.requesttype = 0x80;
	p.h.control_packet.request = 6;
	p.h.control_packet.value = 0x0200;
	p.h.control_packet.length = 9;
	r = ask(f, &p, 1);
	assert_int_equal(r->h.control_packet.status, usb_redir_stall);
	p.h.control_packet.value = 0x0100;
	p.h.control_packet.length = 18;
	r = ask(f, &p, 1);
	assert_int_equal(r->h.control_packet.status, usb_redir_success);
	/* Strict mode never answers twice from one recorded transfer. */
	r = ask(f, &p, 1);
	assert_int_equal(r->h.control_packet.status, usb_redir_stall);
	assert_int_equal(ug_replay_report_count(ug_emulated_device_report(f->dev)), 2);
	stop(f);
}

static void test_stream(void **state)
{
	struct fx *f = *state;
	struct ug_usbredir_packet p;
	struct ug_replay_summary sum;
	guint base;

	start(f, 0);
	ug_emulated_device_set_pace(f->dev, UG_PACE_RECORDED);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_start_interrupt_receiving;
	p.id = 50;
	p.h.start_interrupt_receiving.endpoint = 0x83;
	base = f->guest.rx->len;
	tg_peer_send(&f->guest, &p);
	assert_true(tg_run_until(&f->guest, base + 4));
	assert_int_equal(tg_rx_get(&f->guest, base)->type, usb_redir_interrupt_receiving_status);
	assert_int_equal(tg_rx_get(&f->guest, base)->id, 50);
	for (int i = 0; i < 3; i++) {
		const struct ug_usbredir_packet *r = tg_rx_get(&f->guest, base + 1 + (guint)i);

		assert_int_equal(r->type, usb_redir_interrupt_packet);
		assert_int_equal(r->h.interrupt_packet.endpoint, 0x83);
		assert_int_equal(r->data_len, 8);
		assert_int_equal(r->data[2], 4 + i);
	}
	ug_replay_report_summary(ug_emulated_device_report(f->dev), &sum);
	assert_int_equal(sum.pushed, 3);
	stop(f);
}

static void test_hostile_guest(void **state)
{
	struct fx *f = *state;
	uint8_t junk[64];
	struct ug_replay_summary sum;

	start(f, 0);
	ug_emulated_device_set_max_packet(f->dev, 4096);
	/* A control packet claiming 4 GiB, then a packet type no guest sends. */
	memset(junk, 0, sizeof(junk));
	junk[0] = 100;
	junk[4] = 0xf0;
	junk[5] = junk[6] = junk[7] = 0xff;
	tg_peer_send_bytes(&f->guest, junk, 16);
	tg_run_ms(100);
	ug_replay_report_summary(ug_emulated_device_report(f->dev), &sum);
	assert_true(sum.diverged >= 1);
	assert_false(f->done);
	/* Closing the guest ends the session with the done callback. */
	ug_transport_close(f->guest.t);
	tg_run_ms(100);
	assert_true(f->done);
	stop(f);
}

static void log_cb(int level, const char *message, void *user_data)
{
	GString *log = user_data;

	g_string_append_printf(log, "%d %s\n", level, message);
}

/* A guest that closes inside a packet is said, with the bytes and the
 * offset, but is no divergence. */
static void test_guest_closes_inside_a_packet(void **state)
{
	struct fx *f = *state;
	GString *log = g_string_new("");
	uint8_t cut[20];
	struct ug_replay_summary sum;
	char want[160];

	start(f, 0);
	ug_emulated_device_set_log(f->dev, log_cb, log);
	/* A control packet's 16-byte header (10 bytes to follow), then 4 of them. */
	memset(cut, 0, sizeof(cut));
	cut[0] = usb_redir_control_packet;
	cut[4] = 10;
	cut[8] = 7;
	tg_peer_send_bytes(&f->guest, cut, sizeof(cut));
	tg_run_ms(100);
	assert_false(f->done);
	ug_transport_close(f->guest.t);
	tg_run_ms(100);
	assert_true(f->done);
	/* The guest's hello took the first 80 bytes (12 + 64 + 4). */
	snprintf(want, sizeof(want),
		 "%d guest->host: the stream ends inside a packet: 20 bytes after offset 80 "
		 "were not decoded\n", UG_LOG_WARNING);
	assert_non_null(strstr(log->str, want));
	ug_replay_report_summary(ug_emulated_device_report(f->dev), &sum);
	assert_int_equal(sum.diverged, 0);
	assert_int_equal(sum.requests, 0);
	stop(f);
	g_string_free(log, TRUE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offer),
		cmocka_unit_test(test_control_and_configuration),
		cmocka_unit_test(test_bot_reads),
		cmocka_unit_test(test_unmatched),
		cmocka_unit_test(test_strict),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_hostile_guest),
		cmocka_unit_test(test_guest_closes_inside_a_packet),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
