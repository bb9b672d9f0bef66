/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-capture-demux.c: the capture demux on real tcpdump captures of QEMU <-> usbredirect sessions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"
#include "usbgate.h"

/* The captures are described in tests/data/README (make-usbredir-captures.sh). */
#define KBD "usbredir-kbd.pcap"
#define STORAGE "usbredir-storage.pcap"
#define MIDSTREAM "usbredir-storage-midstream.pcap"
/* QEMU -spice with two usb-redir devices, a keyboard played on channel 0. */
#define SPICE_KBD "spice-kbd.pcap"

static char *data_path(const char *name)
{
	const char *src = getenv("UG_SRCDIR");
	static char path[4096];

	snprintf(path, sizeof(path), "%s/tests/data/%s", src ? src : "..", name);
	return path;
}

static uint8_t *slurp(const char *name, size_t *ret_len)
{
	const char *path = data_path(name);
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

/* Everything one run of capture -> demux -> recorder leaves behind. */
struct run {
	struct ug_recorder_stats rec;
	struct ug_capture_demux_stats dmx;
	char *text;             /* the recorder's JSON lines */
	size_t text_len;
	char log[16384];        /* the demux's and recorder's messages, one per line */
	uint16_t server_port;   /* of the first connection */
};

static void on_log(int level, const char *message, void *user_data)
{
	struct run *r = user_data;
	size_t n = strlen(r->log);

	(void)level;
	snprintf(r->log + n, sizeof(r->log) - n, "%s\n", message);
}

/* SPICE server ports named before the run (0 ends the list). */
static uint16_t spice_ports[4];

struct force {
	int port;               /* 0: none; -1: the first connection's server port */
	uint32_t caps;
	int caps_known;
	enum ug_capture_demux_guest guest;
};

static void run_image(const uint8_t *img, size_t len, const struct force *fo,
		      enum ug_capture_demux_guest guest, struct run *r)
{
	ug_capture *c = ug_capture_new();
	ug_recorder *rec = ug_recorder_new();
	ug_capture_demux *d = ug_capture_demux_new(rec);
	struct ug_capture_event ev;
	FILE *text;
	int e;

	memset(r, 0, sizeof(*r));
	assert_non_null(c);
	assert_non_null(d);
	text = open_memstream(&r->text, &r->text_len);
	assert_non_null(text);
	ug_recorder_set_text(rec, text, UG_RENDER_JSON);
	ug_recorder_set_log(rec, on_log, r);
	ug_capture_demux_set_log(d, on_log, r);
	ug_capture_demux_set_guest(d, guest);
	for (int i = 0; i < 4 && spice_ports[i]; i++)
		assert_int_equal(ug_capture_demux_spice_port(d, spice_ports[i]), 0);
	if (fo && fo->port > 0)
		assert_int_equal(ug_capture_demux_force_port(d, (uint16_t)fo->port, fo->caps,
							     fo->caps_known, fo->guest), 0);
	assert_int_equal(ug_capture_open_memory(c, img, len), 0);
	while ((e = ug_capture_next(c, &ev)) > 0) {
		if (ev.type == UG_CAPTURE_OPEN && !r->server_port) {
			r->server_port = ev.conn->server.port;
			if (fo && fo->port < 0)
				assert_int_equal(ug_capture_demux_force_port(d, r->server_port,
									     fo->caps, fo->caps_known,
									     fo->guest), 0);
		}
		assert_int_equal(ug_capture_demux_event(d, &ev), 0);
	}
	assert_int_equal(e, 0);
	assert_int_equal(ug_capture_demux_finish(d, 0), 0);
	assert_int_equal(ug_recorder_finish(rec), 0);
	ug_recorder_get_stats(rec, &r->rec);
	ug_capture_demux_get_stats(d, &r->dmx);
	ug_capture_demux_free(d);
	ug_recorder_free(rec);
	ug_capture_free(c);
	fclose(text);
}

static void run_file(const char *name, const struct force *fo, enum ug_capture_demux_guest guest,
		     struct run *r)
{
	size_t len;
	uint8_t *img = slurp(name, &len);

	run_image(img, len, fo, guest, r);
	free(img);
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/*
 * The packets an independent path finds: every DATA event of the capture
 * fed straight into a session decoder, the client's bytes as guest->host.
 */
static uint64_t direct_packets(const char *name)
{
	size_t len;
	uint8_t *img = slurp(name, &len);
	ug_capture *c = ug_capture_new();
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct ug_capture_event ev;
	struct ug_usbredir_packet pkt;
	uint64_t n = 0;

	assert_int_equal(ug_capture_open_memory(c, img, len), 0);
	while (ug_capture_next(c, &ev) > 0) {
		enum ug_dir dir;

		if (ev.type != UG_CAPTURE_DATA)
			continue;
		dir = ev.side == UG_CAPTURE_C2S ? UG_DIR_G2H : UG_DIR_H2G;
		assert_int_equal(ug_usbredir_session_feed(s, dir, ev.data, (size_t)ev.len), 0);
		for (int more = 1; more;) {
			more = 0;
			for (int d = 0; d < 2; d++)
				while (ug_usbredir_session_next(s, (enum ug_dir)d, &pkt) == 1) {
					n++;
					more = 1;
				}
		}
	}
	ug_usbredir_session_free(s);
	ug_capture_free(c);
	free(img);
	return n;
}

/* The keyboard session: one usbredir connection, QEMU's hello names the
 * guest, every packet decodes, transfers come out. */
static void test_kbd_session(void **state)
{
	struct run r;

	(void)state;
	run_file(KBD, NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.connections, 1);
	assert_int_equal(r.dmx.usbredir, 1);
	assert_int_equal(r.dmx.guest_assumed, 0);
	assert_int_equal(r.rec.sessions, 1);
	assert_int_equal(r.rec.decode_errors, 0);
	assert_int_equal(r.rec.gaps, 0);
	assert_true(r.rec.transfers > 10);
	assert_non_null(strstr(r.log, "its hello names a QEMU usb-redir guest"));
	/* QEMU's hello went guest->host, usbredirect's host->guest. */
	assert_non_null(strstr(r.text, "\"dir\":\"g2h\",\"type\":\"hello\""));
	assert_non_null(strstr(r.text, "\"dir\":\"h2g\",\"type\":\"hello\""));
	assert_non_null(strstr(r.text, "qemu usb-redir guest"));
	/* Interrupt IN data from the keyboard travels host->guest. */
	assert_true(count(r.text, "\"dir\":\"h2g\",\"type\":\"interrupt_packet\"") > 0);
	assert_int_equal(count(r.text, "\"dir\":\"g2h\",\"type\":\"ep_info\""), 0);
	assert_int_equal(r.rec.packets, direct_packets(KBD));
	free(r.text);
}

/* The storage capture, cut after 400 frames: the session ends inside it,
 * which is reported, and the packets are those a direct decoder finds. */
static void test_storage_cut(void **state)
{
	struct run r;

	(void)state;
	run_file(STORAGE, NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.usbredir, 1);
	assert_int_equal(r.rec.packets, direct_packets(STORAGE));
	assert_true(count(r.text, "\"type\":\"bulk_packet\"") > 0);
	assert_int_equal(r.rec.gaps, 0);
	free(r.text);
}

/* Without QEMU's hello text the usb-host is recognised by what it sends
 * (ep_info, interface_info, device_connect). */
static void test_guest_by_host_packets(void **state)
{
	size_t len;
	uint8_t *img = slurp(KBD, &len);
	const char *q = "qemu usb-redir guest";
	struct run r;
	int replaced = 0;

	(void)state;
	for (size_t i = 0; i + strlen(q) <= len; i++)
		if (!memcmp(img + i, q, strlen(q))) {
			memcpy(img + i, "abcd xyz-abcde guest", strlen(q));
			replaced++;
		}
	assert_true(replaced >= 1);
	run_image(img, len, NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.usbredir, 1);
	assert_int_equal(r.dmx.guest_assumed, 0);
	assert_non_null(strstr(r.log, "the other side sends what only a usb-host sends"));
	assert_non_null(strstr(r.text, "\"dir\":\"h2g\",\"type\":\"ep_info\""));
	assert_int_equal(r.rec.decode_errors, 0);
	free(r.text);
	free(img);
}

/* Told the wrong side, the demux does as told: the directions swap, and
 * the decoder complains about packets in the wrong direction. */
static void test_guest_as_told(void **state)
{
	struct run r;

	(void)state;
	run_file(KBD, NULL, UG_DEMUX_GUEST_SERVER, &r);
	assert_int_equal(r.dmx.usbredir, 1);
	assert_non_null(strstr(r.log, "usb-guest: the server (as told)"));
	assert_non_null(strstr(r.text, "\"dir\":\"h2g\",\"type\":\"hello\""));
	assert_true(r.rec.decode_errors > 0);
	free(r.text);
}

/* A capture that starts after the hellos: not recognised unless its port
 * is forced, then decoded with the caps given (QEMU 7.2 + usbredir 0.13). */
static void test_midstream(void **state)
{
	struct run r;
	struct force fo = { .port = -1, .caps = 0xff, .caps_known = 1,
			    .guest = UG_DEMUX_GUEST_AUTO };
	struct force assumed = { .port = -1, .guest = UG_DEMUX_GUEST_AUTO };

	(void)state;
	run_file(MIDSTREAM, NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.usbredir, 0);
	assert_int_equal(r.dmx.other, 1);
	assert_int_equal(r.rec.packets, 0);
	assert_non_null(strstr(r.log, "force its port"));
	free(r.text);

	/* The capture's first sender is the usb-host here (so it counts as
	 * the client): the guest is found by who sends IN data. */
	run_file(MIDSTREAM, &fo, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.usbredir, 1);
	assert_int_equal(r.dmx.guest_assumed, 0);
	assert_non_null(strstr(r.log, "usb-guest: the server"));
	assert_true(r.rec.packets > 0);
	/* The only decode error is the packet the cut capture ends in. */
	assert_null(strstr(r.log, "decoding stops"));
	assert_int_equal(r.rec.decode_errors, 1);
	assert_non_null(strstr(r.log, "the stream ends inside a packet"));
	assert_true(count(r.text, "\"dir\":\"g2h\",\"type\":\"bulk_packet\"") > 0);
	assert_true(count(r.text, "\"dir\":\"h2g\",\"type\":\"bulk_packet\"") > 0);
	assert_true(r.rec.transfers > 0);
	free(r.text);

	run_file(MIDSTREAM, &assumed, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.usbredir, 1);
	assert_non_null(strstr(r.log, "assumed caps 0xff"));
	free(r.text);
}

/* The capture source's own loopback capture (tests/data/lo4.pcap): a
 * usbredir hello connection, a SPICE link and plain text; the SPICE
 * connection goes to the SPICE decoder, the text connection is "other". */
static void test_other_protocols(void **state)
{
	struct run r;

	(void)state;
	run_file("lo4.pcap", NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.connections, 3);
	assert_int_equal(r.dmx.usbredir, 1);
	assert_int_equal(r.dmx.spice, 1);
	assert_int_equal(r.dmx.other, 1);
	assert_int_equal(r.dmx.tls, 0);
	/* gen-traffic.py's SPICE connection carries a link header with random
	 * bytes behind it: decoded as far as it goes, and said so. */
	assert_int_equal(r.dmx.spice_usbredir, 0);
	assert_non_null(strstr(r.log, "SPICE; the server is 127.0.0.1:"));
	assert_non_null(strstr(r.log, "link message caps_offset"));
	free(r.text);
}

/* A TLS connection (openssl s_server/s_client on lo) is reported as
 * encrypted and skipped. */
static void test_tls(void **state)
{
	struct run r;

	(void)state;
	run_file("tls-only.pcap", NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.connections, 1);
	assert_int_equal(r.dmx.tls, 1);
	assert_int_equal(r.dmx.usbredir, 0);
	assert_int_equal(r.rec.sessions, 0);
	assert_non_null(strstr(r.log, "TLS: the stream is encrypted; skipped"));
	free(r.text);
}

/* A copy of a classic pcap image without its first n frames. */
static uint8_t *drop_frames(const uint8_t *img, size_t len, unsigned n, size_t *ret_len)
{
	size_t off = 24;
	uint8_t *out;

	for (unsigned i = 0; i < n && off + 16 <= len; i++)
		off += 16 + ug_get_le32(img + off + 8);
	assert_true(off <= len);
	out = malloc(24 + len - off);
	assert_non_null(out);
	memcpy(out, img, 24);
	memcpy(out + 24, img + off, len - off);
	*ret_len = 24 + len - off;
	return out;
}

/*
 * A real SPICE session (tests/data/README: spice-kbd.pcap): the main
 * channel and two usbredir channels, QEMU enumerating a keyboard on
 * channel 0 with its 2074-byte configuration descriptor sent LZ4-compressed.
 */
static void test_spice_session(void **state)
{
	struct run r;

	(void)state;
	run_file(SPICE_KBD, NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.connections, 3);
	assert_int_equal(r.dmx.spice, 3);
	assert_int_equal(r.dmx.spice_usbredir, 2);
	assert_int_equal(r.dmx.spice_other, 1);
	assert_true(r.dmx.spice_lz4 >= 1);
	assert_int_equal(r.dmx.usbredir, 0);
	assert_int_equal(r.dmx.other, 0);
	assert_int_equal(r.rec.sessions, 2);
	assert_int_equal(r.rec.decode_errors, 0);
	assert_int_equal(r.rec.gaps, 0);
	assert_true(r.rec.transfers >= 5);
	/* The main channel's session id and channel list are logged. */
	assert_non_null(strstr(r.log, "SPICE session id 0x"));
	assert_non_null(strstr(r.log, "SPICE channels ("));
	assert_non_null(strstr(r.log, "usbredir 0"));
	assert_non_null(strstr(r.log, "usbredir 1"));
	assert_non_null(strstr(r.log, "SPICE; the server is 127.0.0.1:59819 (the other side sent the link message)"));
	/* One recorder session per usbredir channel, named after it. */
	assert_non_null(strstr(r.log, "spice usbredir channel 0 (127.0.0.1:59819)): usbredir session"));
	assert_non_null(strstr(r.log, "spice usbredir channel 1 (127.0.0.1:59819)): usbredir session"));
	/* The server (QEMU) is the usb-guest: its hello goes guest->host. */
	assert_non_null(strstr(r.text, "\"dir\":\"g2h\",\"type\":\"hello\""));
	assert_non_null(strstr(r.text, "qemu usb-redir guest"));
	assert_non_null(strstr(r.text, "spice-client-probe"));
	assert_int_equal(count(r.text, "\"dir\":\"g2h\",\"type\":\"ep_info\""), 0);
	assert_true(count(r.text, "\"dir\":\"h2g\",\"type\":\"device_connect\"") == 1);
	/* The compressed descriptor was decoded: the 2074-byte answer is there. */
	assert_true(count(r.text, "\"dir\":\"h2g\",\"type\":\"control_packet\"") >= 4);
	assert_non_null(strstr(r.text, "2074"));
	free(r.text);
}

/*
 * The same capture from frame 61 on: no SYNs and no links. Without help
 * nothing is recognised; with the SPICE server's port named, the server
 * side follows the port (the capture itself has client and server
 * swapped for some of them), the decoder guesses the channels, and
 * channel 0's enumeration is still recorded.
 */
static void test_spice_midstream(void **state)
{
	size_t len, mlen;
	uint8_t *img = slurp(SPICE_KBD, &len);
	uint8_t *mid = drop_frames(img, len, 60, &mlen);
	struct run r;

	(void)state;
	run_image(mid, mlen, NULL, UG_DEMUX_GUEST_AUTO, &r);
	assert_int_equal(r.dmx.spice, 0);
	assert_int_equal(r.rec.sessions, 0);
	free(r.text);

	spice_ports[0] = 59819;
	run_image(mid, mlen, NULL, UG_DEMUX_GUEST_AUTO, &r);
	spice_ports[0] = 0;
	assert_int_equal(r.dmx.spice, 3);
	assert_true(r.rec.sessions >= 1);
	assert_int_equal(r.rec.decode_errors, 0);
	assert_true(r.dmx.spice_lz4 >= 1);
	assert_non_null(strstr(r.log, "its port was named as the SPICE server's"));
	assert_non_null(strstr(r.log, "SPICE link not captured"));
	assert_non_null(strstr(r.text, "\"dir\":\"h2g\",\"type\":\"control_packet\""));
	assert_int_equal(count(r.text, "\"dir\":\"g2h\",\"type\":\"ep_info\""), 0);
	free(r.text);
	free(mid);
	free(img);
}

/* Bad arguments and limits. */
static void test_arguments(void **state)
{
	ug_recorder *rec = ug_recorder_new();
	ug_capture_demux *d = ug_capture_demux_new(rec);

	(void)state;
	assert_null(ug_capture_demux_new(NULL));
	for (int i = 0; i < 16; i++)
		assert_int_equal(ug_capture_demux_force_port(d, (uint16_t)(4000 + i), 0, 0,
							     UG_DEMUX_GUEST_AUTO), 0);
	assert_int_equal(ug_capture_demux_force_port(d, 5000, 0, 0, UG_DEMUX_GUEST_AUTO),
			 UG_E_TOOBIG);
	assert_int_equal(ug_capture_demux_force_port(d, 5000, 0, 0, (enum ug_capture_demux_guest)7),
			 UG_E_INVAL);
	for (int i = 0; i < 16; i++)
		assert_int_equal(ug_capture_demux_spice_port(d, (uint16_t)(5900 + i)), 0);
	assert_int_equal(ug_capture_demux_spice_port(d, 6000), UG_E_TOOBIG);
	assert_int_equal(ug_capture_demux_event(d, NULL), UG_E_INVAL);
	ug_capture_demux_free(d);
	ug_capture_demux_free(NULL);
	ug_recorder_free(rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kbd_session),
		cmocka_unit_test(test_storage_cut),
		cmocka_unit_test(test_guest_by_host_packets),
		cmocka_unit_test(test_guest_as_told),
		cmocka_unit_test(test_midstream),
		cmocka_unit_test(test_other_protocols),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_spice_session),
		cmocka_unit_test(test_spice_midstream),
		cmocka_unit_test(test_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
