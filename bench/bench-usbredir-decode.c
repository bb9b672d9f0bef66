/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-usbredir-decode.c: decoder throughput, ours vs libusbredirparser, on the same in-memory streams. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <usbredirparser.h>

#include "usbgate.h"

/* Negotiated caps of a QEMU 7.2 guest and a current usb-host: everything. */
#define CAPS 0xffu

struct stream {
	uint8_t *b;
	size_t len, cap;
	uint64_t packets;
	uint64_t data_bytes;
};

static void put(struct stream *s, const struct ug_usbredir_packet *p)
{
	size_t len = 0;

	if (s->cap - s->len < 16 + 300 + p->data_len) {
		s->cap = s->cap * 2 + 16 + 300 + p->data_len;
		s->b = realloc(s->b, s->cap);
		if (!s->b) {
			perror("realloc");
			exit(1);
		}
	}
	if (ug_usbredir_encode(CAPS, p, s->b + s->len, s->cap - s->len, &len) < 0) {
		fprintf(stderr, "encode failed\n");
		exit(1);
	}
	s->len += len;
	if (p->type != usb_redir_hello) {
		s->packets++;
		s->data_bytes += p->data_len;
	}
}

static void put_hello(struct stream *s, const char *version)
{
	struct ug_usbredir_packet p;

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_hello;
	snprintf(p.h.hello.version, sizeof(p.h.hello.version), "%s", version);
	p.h.hello.caps_count = 1;
	p.h.hello.caps[0] = CAPS;
	put(s, &p);
}

/* host->guest: IN bulk completions of 32 KiB, as a mass-storage read produces. */
static void make_bulk(struct stream *s, size_t total)
{
	static uint8_t data[32768];
	struct ug_usbredir_packet p;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	put_hello(s, "bench host");
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_bulk_packet;
	p.h.bulk_packet.endpoint = 0x81;
	p.data = data;
	p.data_len = sizeof(data);
	p.h.bulk_packet.length = (uint16_t)sizeof(data);
	p.h.bulk_packet.length_high = (uint16_t)(sizeof(data) >> 16);
	for (uint64_t id = 1; s->data_bytes < total; id++) {
		p.id = id;
		put(s, &p);
	}
}

/* host->guest: control completions, mostly small descriptors and status stages. */
static void make_control(struct stream *s, uint64_t count)
{
	static uint8_t data[64];
	struct ug_usbredir_packet p;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	put_hello(s, "bench host");
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_control_packet;
	for (uint64_t id = 1; id <= count; id++) {
		static const uint16_t lens[] = { 18, 0, 9, 0, 4, 32, 0, 2 };
		uint16_t len = lens[id % 8];

		p.id = id;
		p.h.control_packet.endpoint = len ? 0x80 : 0x00;
		p.h.control_packet.request = 6;
		p.h.control_packet.requesttype = 0x80;
		p.h.control_packet.value = 0x100;
		p.h.control_packet.length = len;
		p.data = len ? data : NULL;
		p.data_len = len;
		put(s, &p);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- libusbredirparser as the usb-guest ------------------------------------ */

struct lib_run {
	const uint8_t *in;
	size_t len, pos;
	uint64_t packets, bytes, sum;
};

static void lib_log(void *priv, int level, const char *msg)
{
	(void)priv;
	(void)level;
	(void)msg;
}

static int lib_read(void *priv, uint8_t *data, int count)
{
	struct lib_run *r = priv;
	size_t n = r->len - r->pos;

	if (n > (size_t)count)
		n = (size_t)count;
	memcpy(data, r->in + r->pos, n);
	r->pos += n;
	return (int)n;
}

static int lib_write(void *priv, uint8_t *data, int count)
{
	(void)priv;
	(void)data;
	return count;
}

static struct usbredirparser *cur_parser;

/* The same consumer work on both sides: look at the id, length and data ends. */
static void lib_take(struct lib_run *r, uint64_t id, uint8_t *data, int len)
{
	r->packets++;
	r->bytes += (uint64_t)len;
	r->sum += id + (len ? data[0] + data[len - 1] : 0);
	usbredirparser_free_packet_data(cur_parser, data);
}

static void cb_control(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
		       uint8_t *data, int len)
{
	(void)h;
	lib_take(priv, id, data, len);
}

static void cb_bulk(void *priv, uint64_t id, struct usb_redir_bulk_packet_header *h,
		    uint8_t *data, int len)
{
	(void)h;
	lib_take(priv, id, data, len);
}

static void cb_hello(void *priv, struct usb_redir_hello_header *h)
{
	(void)priv;
	(void)h;
}

static double run_lib(const struct stream *s, uint64_t *ret_sum)
{
	struct lib_run r = { s->b, s->len, 0, 0, 0, 0 };
	struct usbredirparser *p = usbredirparser_create();
	uint32_t caps[USB_REDIR_CAPS_SIZE] = { CAPS };
	double t0, t1;

	p->priv = &r;
	p->log_func = lib_log;
	p->read_func = lib_read;
	p->write_func = lib_write;
	p->hello_func = cb_hello;
	p->control_packet_func = cb_control;
	p->bulk_packet_func = cb_bulk;
	usbredirparser_init(p, "bench guest", caps, USB_REDIR_CAPS_SIZE, 0);
	cur_parser = p;
	t0 = now();
	while (r.pos < r.len)
		if (usbredirparser_do_read(p) != 0)
			break;
	t1 = now();
	usbredirparser_destroy(p);
	if (r.packets != s->packets || r.bytes != s->data_bytes) {
		fprintf(stderr, "libusbredirparser decoded %llu packets, expected %llu\n",
			(unsigned long long)r.packets, (unsigned long long)s->packets);
		exit(1);
	}
	*ret_sum = r.sum;
	return t1 - t0;
}

/* ---- ours ---------------------------------------------------------------------- */

/*
 * chunk 0: the whole stream in one feed. copy_in: each chunk is first copied into
 * one reused buffer, as recv() into a socket buffer would; libusbredirparser's
 * read_func above pays that copy too, so this is the like-for-like row.
 */
static double run_ours(const struct stream *s, size_t chunk, bool copy_in, uint64_t *ret_sum)
{
	ug_usbredir_session *ses = ug_usbredir_session_new();
	uint8_t *rbuf = copy_in && chunk ? malloc(chunk) : NULL;
	struct stream guest = { 0 };
	struct ug_usbredir_packet pkt;
	uint64_t packets = 0, bytes = 0, sum = 0;
	double t0, t1;

	if (copy_in && chunk && !rbuf) {
		perror("malloc");
		exit(1);
	}
	/* The guest's hello tells the session the caps of the receiving side. */
	put_hello(&guest, "bench guest");
	ug_usbredir_session_feed(ses, UG_DIR_G2H, guest.b, guest.len);
	while (ug_usbredir_session_next(ses, UG_DIR_G2H, &pkt) > 0)
		;
	t0 = now();
	for (size_t pos = 0; pos < s->len;) {
		size_t n = chunk && chunk < s->len - pos ? chunk : s->len - pos;
		int r;

		if (rbuf) {
			memcpy(rbuf, s->b + pos, n);
			ug_usbredir_session_feed(ses, UG_DIR_H2G, rbuf, n);
		} else {
			ug_usbredir_session_feed(ses, UG_DIR_H2G, s->b + pos, n);
		}
		pos += n;
		while ((r = ug_usbredir_session_next(ses, UG_DIR_H2G, &pkt)) > 0) {
			if (pkt.type == usb_redir_hello)
				continue;
			packets++;
			bytes += pkt.data_len;
			sum += pkt.id + (pkt.data_len ? pkt.data[0] + pkt.data[pkt.data_len - 1] : 0);
		}
		if (r < 0) {
			fprintf(stderr, "decode error: %s\n", ug_usbredir_session_errmsg(ses));
			exit(1);
		}
	}
	t1 = now();
	free(rbuf);
	ug_usbredir_session_free(ses);
	free(guest.b);
	if (packets != s->packets || bytes != s->data_bytes) {
		fprintf(stderr, "ours decoded %llu packets, expected %llu\n",
			(unsigned long long)packets, (unsigned long long)s->packets);
		exit(1);
	}
	*ret_sum = sum;
	return t1 - t0;
}

/* Best of several runs: the least disturbed by the other processes on the machine. */
#define RUNS 5

static void report(const char *name, const struct stream *s)
{
	double lib = 1e9, ours = 1e9, chunked = 1e9, recvd = 1e9;
	uint64_t sum_lib = 0, sum_ours = 0, sum_chunked = 0, sum_recvd = 0;

	for (int i = 0; i < RUNS; i++) {
		double t;

		if ((t = run_lib(s, &sum_lib)) < lib)
			lib = t;
		if ((t = run_ours(s, 0, false, &sum_ours)) < ours)
			ours = t;
		if ((t = run_ours(s, 65536, false, &sum_chunked)) < chunked)
			chunked = t;
		if ((t = run_ours(s, 65536, true, &sum_recvd)) < recvd)
			recvd = t;
	}
	if (sum_lib != sum_ours || sum_lib != sum_chunked || sum_lib != sum_recvd) {
		fprintf(stderr, "%s: the decoders disagree\n", name);
		exit(1);
	}
	printf("%s stream: %llu packets, %.1f MB of data, %.1f MB on the wire\n", name,
	       (unsigned long long)s->packets, (double)s->data_bytes / 1e6, (double)s->len / 1e6);
	printf("  libusbredirparser      %12.0f packets/s %9.1f MB/s\n", (double)s->packets / lib,
	       (double)s->len / lib / 1e6);
	printf("  usbgate (one feed)     %12.0f packets/s %9.1f MB/s  ratio %.2fx\n",
	       (double)s->packets / ours, (double)s->len / ours / 1e6, lib / ours);
	printf("  usbgate (64 KiB feeds) %12.0f packets/s %9.1f MB/s  ratio %.2fx\n",
	       (double)s->packets / chunked, (double)s->len / chunked / 1e6, lib / chunked);
	printf("  usbgate (64 KiB recv)  %12.0f packets/s %9.1f MB/s  ratio %.2fx\n",
	       (double)s->packets / recvd, (double)s->len / recvd / 1e6, lib / recvd);
}

/*
 * One decoder on one stream, once, for a profiler: valgrind --tool=callgrind
 * counts instructions, which the other processes on the machine do not disturb.
 */
static int profile_one(const char *what, const char *name, const struct stream *s)
{
	uint64_t sum = 0;
	char *end;
	double t;

	if (!strcmp(what, "lib"))
		t = run_lib(s, &sum);
	else if (!strcmp(what, "one"))
		t = run_ours(s, 0, false, &sum);
	else if (strtoul(what, &end, 10) > 0 && (!strcmp(end, "k") || !strcmp(end, "kr")))
		t = run_ours(s, strtoul(what, NULL, 10) * 1024, end[1] == 'r', &sum);
	else {
		fprintf(stderr, "usage: bench-usbredir-decode [SCALE [lib|one|<KiB per feed>k|<KiB>kr [bulk|control]]]\n");
		return 2;
	}
	printf("%s %s: %llu packets in %.6f s, sum %llu\n", name, what,
	       (unsigned long long)s->packets, t, (unsigned long long)sum);
	return 0;
}

int main(int argc, char **argv)
{
	struct stream bulk = { 0 }, control = { 0 };
	double scale = argc > 1 ? atof(argv[1]) : 1.0;

	if (scale <= 0)
		scale = 1.0;
	make_bulk(&bulk, (size_t)(256.0 * 1024 * 1024 * scale));
	make_control(&control, (uint64_t)(2000000 * scale));
	if (argc > 2) {
		bool ctl = argc > 3 && !strcmp(argv[3], "control");
		int r = profile_one(argv[2], ctl ? "control-heavy" : "bulk-heavy",
				    ctl ? &control : &bulk);

		free(bulk.b);
		free(control.b);
		return r;
	}
	report("bulk-heavy", &bulk);
	report("control-heavy", &control);
	free(bulk.b);
	free(control.b);
	return 0;
}
