/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-recorder.c: unit tests of the recorder (lib/recorder.c): sessions into pcap, raw record and text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <pcap/pcap.h>

#include "usbgate.h"

#define CAPS ((1u << usb_redir_cap_connect_device_version) | \
	      (1u << usb_redir_cap_ep_info_max_packet_size) | \
	      (1u << usb_redir_cap_64bits_ids) | \
	      (1u << usb_redir_cap_32bits_bulk_length))

/* One direction of a generated session, and where each packet starts. */
struct stream {
	uint8_t bytes[16384];
	size_t len;
	size_t starts[64];
	int npackets;
};

struct session_bytes {
	struct stream dir[2];
	/* The order the packets went on the wire: direction of each, in turn. */
	uint8_t order[128];
	int norder;
};

static struct session_bytes *current;

static void put(struct stream *st, uint32_t caps, struct ug_usbredir_packet *pkt)
{
	size_t n = 0;

	current->order[current->norder++] = st == &current->dir[UG_DIR_G2H] ? UG_DIR_G2H : UG_DIR_H2G;

	assert_int_equal(ug_usbredir_encode(caps, pkt, st->bytes + st->len,
					    sizeof(st->bytes) - st->len, &n), 0);
	assert_true(st->npackets < 64);
	st->starts[st->npackets++] = st->len;
	st->len += n;
}

static const uint8_t device_descriptor[18] = {
	18, 1, 0x00, 0x02, 0, 0, 0, 64, 0xf4, 0x46, 0x01, 0x00, 0x00, 0x00, 1, 2, 3, 1,
};

/*
 * A short, realistic session: hellos with 64-bit ids, the host's ep_info,
 * interface_info and device_connect, a GET_DESCRIPTOR DEVICE, a
 * SET_CONFIGURATION, and one bulk OUT and one bulk IN transfer.
 */
static void make_session(struct session_bytes *sb)
{
	struct ug_usbredir_packet p;
	struct stream *g = &sb->dir[UG_DIR_G2H], *h = &sb->dir[UG_DIR_H2G];
	uint8_t bulk[600];

	memset(sb, 0, sizeof(*sb));
	current = sb;
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_hello;
	strcpy(p.h.hello.version, "qemu usb-redir guest 7.2.22");
	p.h.hello.caps[0] = CAPS;
	p.h.hello.caps_count = 1;
	put(g, 0, &p);
	strcpy(p.h.hello.version, "usbgate test host");
	put(h, 0, &p);

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_ep_info;
	for (int i = 0; i < 32; i++)
		p.h.ep_info.type[i] = usb_redir_type_invalid;
	p.h.ep_info.type[0] = p.h.ep_info.type[16] = usb_redir_type_control;
	p.h.ep_info.type[1] = usb_redir_type_bulk;       /* 0x01 OUT */
	p.h.ep_info.type[16 + 2] = usb_redir_type_bulk;  /* 0x82 IN */
	p.h.ep_info.max_packet_size[0] = p.h.ep_info.max_packet_size[16] = 64;
	p.h.ep_info.max_packet_size[1] = p.h.ep_info.max_packet_size[18] = 512;
	put(h, CAPS, &p);

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_interface_info;
	p.h.interface_info.interface_count = 1;
	p.h.interface_info.interface_class[0] = 8;
	p.h.interface_info.interface_subclass[0] = 6;
	p.h.interface_info.interface_protocol[0] = 0x50;
	put(h, CAPS, &p);

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_device_connect;
	p.h.device_connect.speed = usb_redir_speed_high;
	p.h.device_connect.vendor_id = 0x46f4;
	p.h.device_connect.product_id = 0x0001;
	p.h.device_connect.device_version_bcd = 0x0100;
	put(h, CAPS, &p);

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_control_packet;
	p.id = 0x100000001ull; /* needs the 64-bit id */
	p.h.control_packet.endpoint = 0x80;
	p.h.control_packet.requesttype = 0x80;
	p.h.control_packet.request = 6;
	p.h.control_packet.value = 0x0100;
	p.h.control_packet.length = 18;
	put(g, CAPS, &p);
	p.data = device_descriptor;
	p.data_len = sizeof(device_descriptor);
	put(h, CAPS, &p);

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_set_configuration;
	p.id = 2;
	p.h.set_configuration.configuration = 1;
	put(g, CAPS, &p);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_configuration_status;
	p.id = 2;
	p.h.configuration_status.configuration = 1;
	put(h, CAPS, &p);

	for (size_t i = 0; i < sizeof(bulk); i++)
		bulk[i] = (uint8_t)(i * 7);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_bulk_packet;
	p.id = 3;
	p.h.bulk_packet.endpoint = 0x01;
	p.h.bulk_packet.length = 31;
	p.data = bulk;
	p.data_len = 31;
	put(g, CAPS, &p);
	p.data = NULL;
	p.data_len = 0;
	put(h, CAPS, &p);

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_bulk_packet;
	p.id = 4;
	p.h.bulk_packet.endpoint = 0x82;
	p.h.bulk_packet.length = sizeof(bulk);
	put(g, CAPS, &p);
	p.data = bulk;
	p.data_len = sizeof(bulk);
	put(h, CAPS, &p);
}

static char *tmp_path(const char *suffix)
{
	char *p = malloc(64);

	assert_non_null(p);
	snprintf(p, 64, "/tmp/ug-test-recorder-%d-%s", (int)getpid(), suffix);
	return p;
}

static char *read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(1 << 20);
	size_t n;

	assert_non_null(f);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[n] = 0;
	*ret_len = n;
	return buf;
}

/* Feeds a session to a recorder in wire order, each packet in chunks of at most chunk bytes. */
static void feed_session(ug_recorder *r, int session, const struct session_bytes *sb, size_t chunk)
{
	int idx[2] = { 0, 0 };
	uint64_t ts = 1700000000000000000ull;

	for (int k = 0; k < sb->norder; k++) {
		int d = sb->order[k], i = idx[d]++;
		const struct stream *st = &sb->dir[d];
		size_t start = st->starts[i];
		size_t end = i + 1 < st->npackets ? st->starts[i + 1] : st->len;

		for (size_t off = start; off < end; off += chunk) {
			size_t n = end - off < chunk ? end - off : chunk;

			assert_int_equal(ug_recorder_feed(r, session, (enum ug_dir)d,
							  st->bytes + off, n, ts), 0);
		}
		ts += 1000;
	}
}

struct logbook {
	char text[8192];
	int warnings;
};

static void log_to_book(int level, const char *message, void *user_data)
{
	struct logbook *b = user_data;

	if (level <= UG_LOG_WARNING)
		b->warnings++;
	strncat(b->text, message, sizeof(b->text) - strlen(b->text) - 2);
	strcat(b->text, "\n");
}

static int count_pcap_records(const char *path, int want_linktype)
{
	char err[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *hdr;
	const u_char *data;
	pcap_t *p = pcap_open_offline(path, err);
	int n = 0;

	assert_non_null(p);
	assert_int_equal(pcap_datalink(p), want_linktype);
	while (pcap_next_ex(p, &hdr, &data) == 1)
		n++;
	pcap_close(p);
	return n;
}

static void test_outputs_of_a_whole_session(void **state)
{
	struct session_bytes sb;
	struct ug_recorder_stats st;
	struct ug_raw_record rec;
	char *usbmon = tmp_path("a.pcap"), *raw = tmp_path("a.raw"), *txt = tmp_path("a.txt");
	ug_raw_reader *rr;
	ug_recorder *r;
	FILE *text;
	size_t tlen;
	char *t;
	int n, idx[2] = { 0, 0 };

	make_session(&sb);
	r = ug_recorder_new();
	assert_non_null(r);
	assert_int_equal(ug_recorder_open_usbmon(r, usbmon), 0);
	assert_int_equal(ug_recorder_open_raw(r, raw), 0);
	text = fopen(txt, "w");
	assert_non_null(text);
	ug_recorder_set_text(r, text, UG_RENDER_SUMMARY);
	assert_int_equal(ug_recorder_add_session(r, "tcp 127.0.0.1:4000 -> 127.0.0.1:5000"), 1);
	feed_session(r, 1, &sb, 1 << 20);
	assert_int_equal(ug_recorder_finish(r), 0);
	ug_recorder_get_stats(r, &st);
	fclose(text);

	assert_int_equal(st.packets, sb.dir[0].npackets + sb.dir[1].npackets);
	assert_int_equal(st.decode_errors, 0);
	/* GET_DESCRIPTOR, SET_CONFIGURATION, bulk OUT, bulk IN. */
	assert_int_equal(st.transfers, 4);
	assert_int_equal(st.usbmon_records, 8);
	assert_int_equal(count_pcap_records(usbmon, UG_USBMON_LINKTYPE), 8);

	/* The raw record gives back every packet, byte for byte, per direction. */
	rr = ug_raw_reader_new();
	assert_int_equal(ug_raw_reader_open(rr, raw), 0);
	n = 0;
	while (ug_raw_reader_next(rr, &rec) == 1) {
		const struct stream *s = &sb.dir[rec.dir];
		int i = idx[rec.dir]++;
		size_t end = i + 1 < s->npackets ? s->starts[i + 1] : s->len;

		assert_int_equal(rec.len, end - s->starts[i]);
		assert_memory_equal(rec.bytes, s->bytes + s->starts[i], rec.len);
		assert_int_equal(rec.session, 1);
		n++;
	}
	assert_int_equal(n, st.packets);
	ug_raw_reader_free(rr);

	t = read_file(txt, &tlen);
	assert_non_null(strstr(t, "session 1: tcp 127.0.0.1:4000 -> 127.0.0.1:5000"));
	assert_non_null(strstr(t, "GET_DESCRIPTOR DEVICE"));
	free(t);
	ug_recorder_free(r);
	unlink(usbmon);
	unlink(raw);
	unlink(txt);
	free(usbmon);
	free(raw);
	free(txt);
}

static void test_byte_by_byte_gives_the_same_files(void **state)
{
	struct session_bytes sb;
	char *a = tmp_path("big.pcap"), *b = tmp_path("small.pcap");
	char *ra = tmp_path("big.raw"), *rb = tmp_path("small.raw");
	size_t la, lb;
	char *fa, *fb;

	make_session(&sb);
	for (int k = 0; k < 2; k++) {
		ug_recorder *r = ug_recorder_new();

		assert_int_equal(ug_recorder_open_usbmon(r, k ? b : a), 0);
		assert_int_equal(ug_recorder_open_raw(r, k ? rb : ra), 0);
		assert_int_equal(ug_recorder_add_session(r, "x"), 1);
		/* Same timestamps either way: one per packet. */
		feed_session(r, 1, &sb, k ? 1 : 1 << 20);
		assert_int_equal(ug_recorder_finish(r), 0);
		ug_recorder_free(r);
	}
	/* Record by record, the files must be the same. */
	for (int k = 0; k < 2; k++) {
		char err[PCAP_ERRBUF_SIZE];
		pcap_t *p1 = pcap_open_offline(k ? ra : a, err), *p2 = pcap_open_offline(k ? rb : b, err);
		struct pcap_pkthdr *h1, *h2;
		const u_char *d1, *d2;
		int n = 0;

		assert_non_null(p1);
		assert_non_null(p2);
		while (pcap_next_ex(p1, &h1, &d1) == 1) {
			assert_int_equal(pcap_next_ex(p2, &h2, &d2), 1);
			assert_int_equal(h1->caplen, h2->caplen);
			assert_int_equal(h1->ts.tv_sec, h2->ts.tv_sec);
			assert_int_equal(h1->ts.tv_usec, h2->ts.tv_usec);
			assert_memory_equal(d1, d2, h1->caplen);
			n++;
		}
		assert_int_not_equal(pcap_next_ex(p2, &h2, &d2), 1);
		assert_true(n > 0);
		pcap_close(p1);
		pcap_close(p2);
	}
	fa = read_file(ra, &la);
	fb = read_file(rb, &lb);
	assert_true(la > 24 && lb > 24);
	free(fa);
	free(fb);
	unlink(a);
	unlink(b);
	unlink(ra);
	unlink(rb);
	free(a);
	free(b);
	free(ra);
	free(rb);
}

static void test_gap_stops_one_direction_and_says_where(void **state)
{
	struct session_bytes sb;
	struct ug_recorder_stats st;
	struct logbook book = { .text = "", .warnings = 0 };
	const struct stream *h;
	ug_recorder *r = ug_recorder_new();

	make_session(&sb);
	h = &sb.dir[UG_DIR_H2G];
	ug_recorder_set_log(r, log_to_book, &book);
	assert_int_equal(ug_recorder_add_session(r, "gap"), 1);
	assert_int_equal(ug_recorder_feed(r, 1, UG_DIR_G2H, sb.dir[0].bytes, sb.dir[0].len, 1), 0);
	/* The host's hello and ep_info arrive; then 10 bytes are lost. */
	assert_int_equal(ug_recorder_feed(r, 1, UG_DIR_H2G, h->bytes, h->starts[2], 2), 0);
	assert_int_equal(ug_recorder_gap(r, 1, UG_DIR_H2G, 10, 3), 0);
	assert_int_equal(ug_recorder_feed(r, 1, UG_DIR_H2G, h->bytes + h->starts[2] + 10,
					  h->len - h->starts[2] - 10, 4), 0);
	assert_int_equal(ug_recorder_finish(r), 0);
	ug_recorder_get_stats(r, &st);
	assert_int_equal(st.gaps, 1);
	/* Every guest packet and the host's first two were decoded, nothing after the gap. */
	assert_int_equal(st.packets, sb.dir[0].npackets + 2);
	assert_non_null(strstr(book.text, "host->guest: 10 bytes missing after stream offset"));
	ug_recorder_free(r);
}

static void test_truncated_tail_is_reported(void **state)
{
	struct session_bytes sb;
	struct ug_recorder_stats st;
	struct logbook book = { .text = "", .warnings = 0 };
	ug_recorder *r = ug_recorder_new();

	make_session(&sb);
	ug_recorder_set_log(r, log_to_book, &book);
	assert_int_equal(ug_recorder_add_session(r, "tail"), 1);
	assert_int_equal(ug_recorder_feed(r, 1, UG_DIR_G2H, sb.dir[0].bytes, sb.dir[0].len, 1), 0);
	assert_int_equal(ug_recorder_feed(r, 1, UG_DIR_H2G, sb.dir[1].bytes, sb.dir[1].len - 5, 2), 0);
	assert_int_equal(ug_recorder_finish(r), 0);
	ug_recorder_get_stats(r, &st);
	assert_int_equal(st.decode_errors, 1);
	assert_non_null(strstr(book.text, "the stream ends inside a packet"));
	ug_recorder_free(r);
}

/* A packet of type 0x7777 with 4 bytes after its 16-byte header. */
static size_t put_unknown(uint8_t *out)
{
	static const uint8_t pkt[20] = { 0x77, 0x77, 0, 0, 4, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
					 'a', 'b', 'c', 'd' };

	memcpy(out, pkt, sizeof(pkt));
	return sizeof(pkt);
}

/* Unknown packet types are counted, warned about once per session, and no decode error. */
static void test_unknown_types_are_counted_and_said_once_per_session(void **state)
{
	struct session_bytes sb;
	struct ug_recorder_stats st;
	struct logbook book = { .text = "", .warnings = 0 };
	uint8_t tail[60];
	size_t n = 0;
	char want[160];
	ug_recorder *r = ug_recorder_new();

	make_session(&sb);
	for (int i = 0; i < 3; i++)
		n += put_unknown(tail + n);
	ug_recorder_set_log(r, log_to_book, &book);
	for (int k = 1; k <= 2; k++) {
		assert_int_equal(ug_recorder_add_session(r, "unknown"), k);
		feed_session(r, k, &sb, 4096);
		/* Session 1 gets three, session 2 one. */
		assert_int_equal(ug_recorder_feed(r, k, UG_DIR_H2G, tail, k == 1 ? n : 20,
						  1800000000000000000ull), 0);
	}
	assert_int_equal(ug_recorder_finish(r), 0);
	ug_recorder_get_stats(r, &st);
	assert_int_equal(st.unknown_packets, 4);
	assert_int_equal(st.decode_errors, 0);
	assert_int_equal(st.packets, 2 * (sb.dir[0].npackets + sb.dir[1].npackets) + 4);
	assert_int_equal(book.warnings, 2);
	for (int k = 1; k <= 2; k++) {
		snprintf(want, sizeof(want),
			 "session %d: host->guest offset %zu: unknown usbredir packet type 30583, "
			 "length 4: not decoded",
			 k, sb.dir[1].len);
		assert_non_null(strstr(book.text, want));
	}
	ug_recorder_free(r);
}

static void test_full_disk_is_an_error_and_decoding_goes_on(void **state)
{
	struct session_bytes sb;
	struct ug_recorder_stats st;
	char *raw = tmp_path("ok.raw");
	ug_recorder *r = ug_recorder_new();
	int e;

	make_session(&sb);
	if (ug_recorder_open_usbmon(r, "/dev/full") < 0) {
		/* Failing at open is acceptable too, as long as it is NOSPC. */
		assert_string_not_equal(ug_recorder_errmsg(r), "");
		ug_recorder_free(r);
		free(raw);
		return;
	}
	assert_int_equal(ug_recorder_open_raw(r, raw), 0);
	assert_int_equal(ug_recorder_add_session(r, "full"), 1);
	ug_recorder_feed(r, 1, UG_DIR_G2H, sb.dir[0].bytes, sb.dir[0].len, 1);
	ug_recorder_feed(r, 1, UG_DIR_H2G, sb.dir[1].bytes, sb.dir[1].len, 2);
	e = ug_recorder_finish(r);
	assert_int_equal(e, UG_E_NOSPC);
	assert_non_null(strstr(ug_recorder_errmsg(r), "usbmon pcap"));
	ug_recorder_get_stats(r, &st);
	/* The other output and the decoding went on. */
	assert_int_equal(st.packets, sb.dir[0].npackets + sb.dir[1].npackets);
	assert_int_equal(count_pcap_records(raw, UG_RAW_LINKTYPE), st.packets);
	ug_recorder_free(r);
	unlink(raw);
	free(raw);
}

static void test_sessions_get_their_own_device_numbers(void **state)
{
	struct session_bytes sb;
	char *usbmon = tmp_path("two.pcap");
	char err[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *hdr;
	const u_char *d;
	int seen[128] = { 0 };
	ug_recorder *r = ug_recorder_new();
	pcap_t *p;

	make_session(&sb);
	assert_int_equal(ug_recorder_set_address(r, 3, 5), 0);
	assert_int_equal(ug_recorder_open_usbmon(r, usbmon), 0);
	assert_int_equal(ug_recorder_add_session(r, "one"), 1);
	assert_int_equal(ug_recorder_add_session(r, "two"), 2);
	feed_session(r, 1, &sb, 100);
	feed_session(r, 2, &sb, 7);
	assert_int_equal(ug_recorder_finish(r), 0);
	p = pcap_open_offline(usbmon, err);
	assert_non_null(p);
	while (pcap_next_ex(p, &hdr, &d) == 1) {
		uint16_t bus;

		memcpy(&bus, d + 12, 2); /* host byte order, as usbmon writes it */
		assert_int_equal(bus, 3);
		seen[d[11]]++;
	}
	pcap_close(p);
	assert_int_equal(seen[5], 8);
	assert_int_equal(seen[6], 8);
	ug_recorder_free(r);
	unlink(usbmon);
	free(usbmon);
}

static void test_packet_limit_is_exact(void **state)
{
	struct session_bytes sb;
	struct ug_recorder_stats st;
	char *raw = tmp_path("limit.raw");
	ug_recorder *r = ug_recorder_new();

	make_session(&sb);
	assert_int_equal(ug_recorder_set_packet_limit(r, 5), 0);
	assert_int_equal(ug_recorder_open_raw(r, raw), 0);
	assert_int_equal(ug_recorder_add_session(r, "limit"), 1);
	/* Whole-session feeds: many packets arrive in one call. */
	assert_int_equal(ug_recorder_feed(r, 1, UG_DIR_G2H, sb.dir[0].bytes, sb.dir[0].len, 1), 0);
	assert_false(ug_recorder_limit_reached(r));
	assert_int_equal(ug_recorder_feed(r, 1, UG_DIR_H2G, sb.dir[1].bytes, sb.dir[1].len, 2), 0);
	assert_true(ug_recorder_limit_reached(r));
	assert_int_equal(ug_recorder_finish(r), 0);
	ug_recorder_get_stats(r, &st);
	assert_int_equal(st.packets, 5);
	assert_int_equal(count_pcap_records(raw, UG_RAW_LINKTYPE), 5);
	ug_recorder_free(r);
	unlink(raw);
	free(raw);
}

/*
 * A daemon records session after session: ended sessions are freed, so the
 * limit counts sessions open at once, not sessions in all. Calls for an
 * ended session are accepted and ignored; an unknown number is refused.
 */
static void test_ended_sessions_do_not_count_against_the_limit(void **state)
{
	struct session_bytes sb;
	struct ug_recorder_stats st;
	char *usbmon = tmp_path("many.pcap");
	ug_recorder *r = ug_recorder_new();
	int n = 0;

	make_session(&sb);
	assert_int_equal(ug_recorder_open_usbmon(r, usbmon), 0);
	for (int i = 1; i <= 3000; i++) {
		n = ug_recorder_add_session(r, "cycle");
		assert_int_equal(n, i);
		if (i % 500 == 0)
			feed_session(r, n, &sb, 4096);
		assert_int_equal(ug_recorder_end_session(r, n, (uint64_t)i), 0);
	}
	/* After its end a session's bytes are counted, not decoded. */
	assert_int_equal(ug_recorder_feed(r, 7, UG_DIR_G2H, sb.dir[0].bytes, 12, 9), 0);
	assert_int_equal(ug_recorder_gap(r, 7, UG_DIR_G2H, 3, 9), 0);
	assert_int_equal(ug_recorder_end_session(r, 7, 9), 0);
	assert_int_equal(ug_recorder_feed(r, 3001, UG_DIR_G2H, sb.dir[0].bytes, 12, 9), UG_E_INVAL);
	assert_int_equal(ug_recorder_feed(r, 0, UG_DIR_G2H, sb.dir[0].bytes, 12, 9), UG_E_INVAL);
	/* Open at once: 1024, then one more is refused. */
	for (int i = 0; i < 1024; i++)
		assert_int_equal(ug_recorder_add_session(r, "open"), 3001 + i);
	assert_int_equal(ug_recorder_add_session(r, "one too many"), UG_E_TOOBIG);
	assert_non_null(strstr(ug_recorder_errmsg(r), "open at once"));
	assert_int_equal(ug_recorder_end_session(r, 3001, 10), 0);
	assert_int_equal(ug_recorder_add_session(r, "room again"), 4025);
	assert_int_equal(ug_recorder_finish(r), 0);
	ug_recorder_get_stats(r, &st);
	assert_int_equal(st.sessions, 4025);
	/* The six fed sessions' transfers, 8 usbmon records each. */
	assert_int_equal(count_pcap_records(usbmon, UG_USBMON_LINKTYPE), 6 * 8);
	ug_recorder_free(r);
	unlink(usbmon);
	free(usbmon);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outputs_of_a_whole_session),
		cmocka_unit_test(test_byte_by_byte_gives_the_same_files),
		cmocka_unit_test(test_gap_stops_one_direction_and_says_where),
		cmocka_unit_test(test_truncated_tail_is_reported),
		cmocka_unit_test(test_unknown_types_are_counted_and_said_once_per_session),
		cmocka_unit_test(test_full_disk_is_an_error_and_decoding_goes_on),
		cmocka_unit_test(test_sessions_get_their_own_device_numbers),
		cmocka_unit_test(test_packet_limit_is_exact),
		cmocka_unit_test(test_ended_sessions_do_not_count_against_the_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
