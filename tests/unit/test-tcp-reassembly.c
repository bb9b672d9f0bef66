/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-tcp-reassembly.c: unit tests of TCP reassembly (lib/tcp-reassembly.c), events asserted exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tcp-reassembly.h"
#include "usbgate.h"

/*
 * Events are rendered as short tokens so that a whole sequence is asserted
 * with one string compare:
 *   O<id>                     OPEN
 *   D<id><c|s><offset>:<text> DATA
 *   G<id><c|s><offset>+<len>/<reason>  GAP
 *   E<id><c|s><offset>        END (offset of the FIN)
 *   C<id>/<reason>            CLOSE
 *   N<id>/<code>              NOTICE (id 0 when about no connection)
 */
static char out[1 << 16];

static void render(const struct ug_capture_event *ev, char *p, size_t n)
{
	unsigned id = ev->conn ? ev->conn->id : 0;
	char side = ev->side == UG_CAPTURE_C2S ? 'c' : 's';

	switch (ev->type) {
	case UG_CAPTURE_OPEN:
		snprintf(p, n, "O%u", id);
		break;
	case UG_CAPTURE_DATA:
		snprintf(p, n, "D%u%c%llu:%.*s", id, side, (unsigned long long)ev->offset,
		         (int)ev->len, (const char *)ev->data);
		break;
	case UG_CAPTURE_GAP:
		snprintf(p, n, "G%u%c%llu+%llu/%d", id, side, (unsigned long long)ev->offset,
		         (unsigned long long)ev->len, ev->reason);
		break;
	case UG_CAPTURE_END:
		snprintf(p, n, "E%u%c%llu", id, side, (unsigned long long)ev->offset);
		break;
	case UG_CAPTURE_CLOSE:
		snprintf(p, n, "C%u/%d", id, ev->reason);
		break;
	case UG_CAPTURE_NOTICE:
		snprintf(p, n, "N%u/%d", id, ev->reason);
		break;
	}
}

/* Drains the queue into out ("" when empty). */
static const char *drain(struct ug_tcp_reasm *r)
{
	struct ug_capture_event ev;
	size_t used = 0;

	out[0] = '\0';
	while (ug_tcp_reasm_next(r, &ev) == 1) {
		if (used)
			out[used++] = ' ';
		render(&ev, out + used, sizeof(out) - used);
		used += strlen(out + used);
		assert_true(used < sizeof(out) - 64);
	}
	return out;
}

/* The default connection: client 10.0.0.1:40000, server 10.0.0.2:5900. */
static struct ug_tcp_segment mkseg(int from_client, uint8_t flags, uint32_t seq, uint32_t ack,
                                   const char *text)
{
	struct ug_tcp_segment s;
	uint8_t a[16] = { 10, 0, 0, 1 }, b[16] = { 10, 0, 0, 2 };

	memset(&s, 0, sizeof(s));
	s.family = 4;
	memcpy(s.src, from_client ? a : b, 16);
	memcpy(s.dst, from_client ? b : a, 16);
	s.sport = from_client ? 40000 : 5900;
	s.dport = from_client ? 5900 : 40000;
	s.seq = seq;
	s.ack = ack;
	s.flags = flags;
	s.data = (const uint8_t *)text;
	s.len = s.caplen = text ? (uint32_t)strlen(text) : 0;
	return s;
}

static void feed(struct ug_tcp_reasm *r, int from_client, uint8_t flags, uint32_t seq,
                 uint32_t ack, const char *text)
{
	struct ug_tcp_segment s = mkseg(from_client, flags, seq, ack, text);

	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
}

#define C 1
#define S 0
#define A UG_TCP_ACK
#define SYN UG_TCP_SYN
#define FIN UG_TCP_FIN
#define RST UG_TCP_RST

/* Client ISN 100 (data from 101), server ISN 500 (data from 501). */
static struct ug_tcp_reasm *handshake_lim(const struct ug_capture_limits *l)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();

	assert_non_null(r);
	if (l)
		assert_int_equal(ug_tcp_reasm_set_limits(r, l), 0);
	feed(r, C, SYN, 100, 0, NULL);
	feed(r, S, SYN | A, 500, 101, NULL);
	feed(r, C, A, 101, 501, NULL);
	assert_string_equal(drain(r), "O1");
	return r;
}

static struct ug_tcp_reasm *handshake(void)
{
	return handshake_lim(NULL);
}

/* Holes the peer acknowledged become gaps at once (no reorder window). */
static const struct ug_capture_limits no_reorder = { .reorder_window = 1 };

static void test_in_order_with_handshake_and_fin(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_event ev;
	struct ug_capture_stats st = { 0 };

	feed(r, C, SYN, 100, 0, NULL);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.type, UG_CAPTURE_OPEN);
	assert_int_equal(ev.conn->id, 1);
	assert_int_equal(ev.conn->flags, UG_CAPTURE_CONN_HANDSHAKE);
	assert_int_equal(ev.conn->client.port, 40000);
	assert_int_equal(ev.conn->server.port, 5900);
	assert_int_equal(ev.conn->client.addr[3], 1);
	assert_int_equal(ev.conn->server.addr[3], 2);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 0);
	feed(r, S, SYN | A, 500, 101, NULL);
	feed(r, C, A, 101, 501, NULL);
	feed(r, C, A, 101, 501, "hello");
	feed(r, S, A, 501, 106, "world!");
	assert_string_equal(drain(r), "D1c0:hello D1s0:world!");
	feed(r, C, FIN | A, 106, 507, NULL);
	assert_string_equal(drain(r), "E1c5");
	feed(r, S, FIN | A, 507, 107, NULL);
	assert_string_equal(drain(r), "E1s6 C1/1");
	assert_int_equal(ug_tcp_reasm_connections(r), 0);
	/* The last ACK after both FINs belongs to no connection. */
	feed(r, C, A, 107, 508, NULL);
	assert_string_equal(drain(r), "");
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.bytes_delivered, 11);
	assert_int_equal(st.connections, 1);
	assert_int_equal(st.segments, 8);
	ug_tcp_reasm_free(r);
}

static void test_out_of_order(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	feed(r, C, A, 101, 501, "abc");
	feed(r, C, A, 107, 501, "ghi");
	feed(r, C, A, 110, 501, "jk");
	assert_string_equal(drain(r), "D1c0:abc");
	assert_int_equal(ug_tcp_reasm_buffered(r), 5 + 2 * 32);
	/* The segment that fills the hole: everything is delivered with its time. */
	struct ug_tcp_segment s = mkseg(C, A, 104, 501, "def");
	struct ug_capture_event ev;

	s.ts_ns = 777;
	s.frame = 9;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
		assert_int_equal(ev.ts_ns, 777);
		assert_int_equal(ev.frame, 9);
	}
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 0);
	assert_int_equal(ug_tcp_reasm_buffered(r), 0);
	feed(r, C, A, 107, 501, "ghijk");
	feed(r, C, A, 112, 501, "l");
	assert_string_equal(drain(r), "D1c11:l");
	ug_tcp_reasm_free(r);
}

static void test_retransmission(void **state)
{
	struct ug_tcp_reasm *r = handshake();
	struct ug_capture_stats st = { 0 };

	feed(r, C, A, 101, 501, "abc");
	feed(r, C, A, 101, 501, "abc");
	feed(r, C, A, 101, 501, "XYZ");
	feed(r, C, A, 104, 501, "de");
	feed(r, C, A, 104, 501, "de");
	/* A retransmitted SYN changes nothing. */
	feed(r, C, SYN, 100, 0, NULL);
	assert_string_equal(drain(r), "D1c0:abc D1c3:de");
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.bytes_duplicate, 8);
	assert_int_equal(st.bytes_delivered, 5);
	ug_tcp_reasm_free(r);
}

static void test_overlap_partial_first_wins(void **state)
{
	struct ug_tcp_reasm *r = handshake();
	struct ug_capture_stats st = { 0 };

	feed(r, C, A, 101, 501, "abc");
	feed(r, C, A, 107, 501, "ghi");     /* held [6,9) */
	feed(r, C, A, 106, 501, "XYZW");    /* [5,9): only [5,6) is new */
	assert_string_equal(drain(r), "D1c0:abc");
	feed(r, C, A, 104, 501, "de");
	assert_string_equal(drain(r), "D1c3:de D1c5:X D1c6:ghi");
	/* Overlapping what was delivered: only the tail is new. */
	feed(r, C, A, 108, 501, "hiJKL");
	assert_string_equal(drain(r), "D1c9:JKL");
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.bytes_duplicate, 3 + 2);
	assert_int_equal(st.bytes_conflicting, 3);
	ug_tcp_reasm_free(r);
}

static void test_overlap_full(void **state)
{
	struct ug_tcp_reasm *r = handshake();
	struct ug_capture_stats st = { 0 };

	feed(r, C, A, 101, 501, "ab");
	feed(r, C, A, 105, 501, "ef");      /* held [4,6) */
	feed(r, C, A, 108, 501, "h");       /* held [7,8) */
	/* One segment covering both held pieces and the holes around them. */
	feed(r, C, A, 104, 501, "DEFGHIJ");  /* [3,10) */
	assert_string_equal(drain(r), "D1c0:ab");
	feed(r, C, A, 103, 501, "c");
	assert_string_equal(drain(r), "D1c2:c D1c3:D D1c4:ef D1c6:G D1c7:h D1c8:IJ");
	/* A segment wholly inside delivered data is dropped. */
	feed(r, C, A, 102, 501, "bcD");
	assert_string_equal(drain(r), "");
	/* In order, but overlapping a held piece: the held piece wins. */
	feed(r, C, A, 113, 501, "mn");      /* held [12,14) */
	feed(r, C, A, 111, 501, "klMNo");   /* [10,15) in order */
	assert_string_equal(drain(r), "D1c10:kl D1c12:mn D1c14:o");
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.bytes_duplicate, 3 + 3 + 2);
	assert_int_equal(st.bytes_conflicting, 3 + 2);
	ug_tcp_reasm_free(r);
}

static void test_sequence_wraparound(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();

	feed(r, C, SYN, 0xfffffff0u, 0, NULL);
	feed(r, S, SYN | A, 0xfffffffeu, 0xfffffff1u, NULL);
	/* Client data [0,10) ends just before the wrap, [10,19) crosses it;
	 * the crossing one arrives first. */
	feed(r, C, A, 0xfffffffbu, 0xffffffffu, "abcdefghi");
	feed(r, C, A, 0xfffffff1u, 0xffffffffu, "0123456789");
	/* Server data starts at 0xffffffff and wraps to 0 after one byte. */
	feed(r, S, A, 0xffffffffu, 0x4u, "xy");
	feed(r, S, A, 0x1u, 0x4u, "z");
	assert_string_equal(drain(r), "O1 D1c0:0123456789 D1c10:abcdefghi D1s0:xy D1s2:z");
	feed(r, C, FIN | A, 0x4u, 0x2u, NULL);
	feed(r, S, FIN | A, 0x2u, 0x5u, NULL);
	assert_string_equal(drain(r), "E1c19 E1s3 C1/1");
	ug_tcp_reasm_free(r);
}

/* Offsets are 64-bit: a stream longer than 4 GiB keeps counting. */
static void test_offsets_beyond_4gib(void **state)
{
	struct ug_tcp_reasm *r = handshake();
	struct ug_capture_event ev;
	uint32_t seq = 101;

	/* Five segments of 1 GiB each whose payload was not captured at all. */
	for (int i = 0; i < 5; i++) {
		struct ug_tcp_segment s = mkseg(C, A, seq, 501, NULL);

		s.len = 1u << 30;
		s.caplen = 0;
		assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
		assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
		assert_int_equal(ev.type, UG_CAPTURE_GAP);
		assert_int_equal(ev.reason, UG_CAPTURE_GAP_SNAPLEN);
		assert_int_equal(ev.offset, (uint64_t)i << 30);
		assert_int_equal(ug_tcp_reasm_next(r, &ev), 0);
		seq += 1u << 30;
	}
	feed(r, C, A, seq, 501, "tail");
	assert_string_equal(drain(r), "D1c5368709120:tail");
	ug_tcp_reasm_free(r);
}

static void test_snaplen_cut(void **state)
{
	struct ug_tcp_reasm *r = handshake();
	struct ug_tcp_segment s = mkseg(C, A, 101, 501, "abcdefghij");

	s.caplen = 4;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_string_equal(drain(r), "D1c0:abcd G1c4+6/2");
	/* Cut out of order, then filled in. */
	s = mkseg(C, A, 115, 501, "opqrst");
	s.caplen = 2;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	feed(r, C, A, 111, 501, "klmn");
	assert_string_equal(drain(r), "D1c10:klmn D1c14:op G1c16+4/2");
	ug_tcp_reasm_free(r);
}

static void test_gap_acknowledged_then_resume(void **state)
{
	struct ug_tcp_reasm *r = handshake_lim(&no_reorder);
	struct ug_capture_event ev;
	struct ug_capture_stats st = { 0 };

	feed(r, C, A, 101, 501, "abc");
	feed(r, C, A, 107, 501, "ghi");     /* "def" never captured */
	assert_string_equal(drain(r), "D1c0:abc");
	/* The server acknowledged up to "ghi": the hole will never be filled. */
	struct ug_tcp_segment s = mkseg(S, A, 501, 110, NULL);

	s.frame = 42;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.type, UG_CAPTURE_GAP);
	assert_string_equal(ev.message, "frame 42: connection 1 client->server: 3 bytes missing "
	                    "at stream offset 3 (acknowledged by the peer but not captured)");
	assert_string_equal(drain(r), "D1c6:ghi");
	feed(r, C, A, 110, 501, "jkl");
	/* The late copy of the lost segment is a duplicate now. */
	feed(r, C, A, 104, 501, "def");
	assert_string_equal(drain(r), "D1c9:jkl");
	/* Acknowledged with nothing held, more than one byte: a gap too. */
	feed(r, S, A, 501, 120, NULL);
	assert_string_equal(drain(r), "G1c12+7/1");
	feed(r, C, A, 120, 501, "t");
	assert_string_equal(drain(r), "D1c19:t");
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.bytes_missing, 10);
	assert_int_equal(st.bytes_duplicate, 3);
	ug_tcp_reasm_free(r);
}

/* An ACK captured before the data it acknowledges is no loss. */
static void test_ack_before_data_within_reorder_window(void **state)
{
	struct ug_capture_limits l = { .reorder_window = 3 };
	struct ug_tcp_reasm *r = handshake_lim(&l);

	feed(r, C, A, 101, 501, "abc");
	feed(r, S, A, 501, 107, NULL);      /* acknowledges "def", not seen yet */
	feed(r, C, A, 104, 501, "def");     /* arrives one segment later */
	assert_string_equal(drain(r), "D1c0:abc D1c3:def");
	/* A hole still open after the window is a gap: the ACK and two more
	 * segments of the connection make three. */
	feed(r, S, A, 501, 112, NULL);      /* acknowledges [6,11) */
	feed(r, C, A, 112, 501, "l");       /* held at 11 */
	assert_string_equal(drain(r), "");
	feed(r, S, A, 501, 112, "x");
	assert_string_equal(drain(r), "D1s0:x G1c6+5/1 D1c11:l");
	/* An acknowledged hole left at the end of the capture is a gap too,
	 * with the reason that says it was acknowledged. */
	feed(r, S, A, 502, 120, NULL);
	assert_int_equal(ug_tcp_reasm_finish(r, 0, 0), 0);
	assert_string_equal(drain(r), "G1c12+7/1 C1/5");
	ug_tcp_reasm_free(r);
}

/* An ACK seen before a FIN it reaches past: the gap stops at the FIN
 * (found by fuzz-capture's order check). */
static void test_pending_ack_clamped_by_later_fin(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	feed(r, C, A, 101, 501, "abc");
	feed(r, S, A, 501, 101 + 100, NULL);   /* pending: beyond anything sent */
	feed(r, C, FIN | A, 111, 501, NULL);   /* the FIN at offset 10 */
	assert_string_equal(drain(r), "D1c0:abc");
	assert_int_equal(ug_tcp_reasm_finish(r, 0, 0), 0);
	assert_string_equal(drain(r), "G1c3+7/1 E1c10 C1/5");
	ug_tcp_reasm_free(r);
}

/* The SYN captured after the SYN+ACK belongs to the same connection. */
static void test_syn_after_syn_ack(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_event ev;

	feed(r, S, SYN | A, 500, 101, NULL);
	feed(r, C, SYN, 100, 0, NULL);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.type, UG_CAPTURE_OPEN);
	assert_int_equal(ev.conn->flags, UG_CAPTURE_CONN_HANDSHAKE);
	assert_int_equal(ev.conn->client.port, 40000);
	feed(r, C, A, 101, 501, "hi");
	assert_string_equal(drain(r), "D1c0:hi");
	ug_tcp_reasm_free(r);
}

static void test_gap_at_end_of_capture(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	feed(r, C, A, 101, 501, "abc");
	feed(r, C, A, 107, 501, "ghi");
	feed(r, C, A, 113, 501, "mn");
	feed(r, S, A, 501, 104, "srv");
	assert_string_equal(drain(r), "D1c0:abc D1s0:srv");
	assert_int_equal(ug_tcp_reasm_finish(r, 5, 6), 0);
	assert_string_equal(drain(r), "G1c3+3/4 D1c6:ghi G1c9+3/4 D1c12:mn C1/5");
	assert_int_equal(ug_tcp_reasm_connections(r), 0);
	assert_int_equal(ug_tcp_reasm_buffered(r), 0);
	ug_tcp_reasm_free(r);
}

static void test_fin_waits_for_data(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	/* The FIN arrives before the last data segment. */
	feed(r, C, FIN | A, 104, 501, "def");
	assert_string_equal(drain(r), "");
	feed(r, C, A, 101, 501, "abc");
	assert_string_equal(drain(r), "D1c0:abc D1c3:def E1c6");
	/* Data after the FIN is refused. */
	feed(r, C, A, 107, 501, "zzz");
	assert_string_equal(drain(r), "N1/-4");
	feed(r, S, FIN | A, 501, 108, "bye");
	assert_string_equal(drain(r), "D1s0:bye E1s3 C1/1");
	ug_tcp_reasm_free(r);
}

static void test_fin_with_missing_data_at_close(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	feed(r, C, A, 101, 501, "ab");
	feed(r, C, FIN | A, 106, 501, "f");  /* [2,5) missing, FIN at 6 */
	assert_string_equal(drain(r), "D1c0:ab");
	feed(r, S, RST, 501, 0, NULL);
	assert_string_equal(drain(r), "G1c2+3/4 D1c5:f E1c6 C1/2");
	ug_tcp_reasm_free(r);
}

static void test_rst_closes(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	feed(r, C, A, 101, 501, "abc");
	feed(r, C, RST | A, 104, 501, NULL);
	assert_string_equal(drain(r), "D1c0:abc C1/2");
	/* Nothing left of it: the server's late data opens a new connection. */
	feed(r, S, A, 501, 104, "late");
	assert_string_equal(drain(r), "O2 D2c0:late");
	ug_tcp_reasm_free(r);
}

static void test_mid_stream_start(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_event ev;

	assert_int_equal(ug_tcp_reasm_set_limits(r, &no_reorder), 0);
	/* Pure ACKs open nothing. */
	feed(r, C, A, 1000, 2000, NULL);
	assert_string_equal(drain(r), "");
	/* The first data comes from the server port: that side is called the
	 * client, as the first sender. */
	feed(r, S, A, 2000, 1000, "srv1");
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.type, UG_CAPTURE_OPEN);
	assert_int_equal(ev.conn->flags, 0);
	assert_int_equal(ev.conn->client.port, 5900);
	assert_string_equal(drain(r), "D1c0:srv1");
	/* The other side's stream starts at the ACK the first sender carried:
	 * data further on is held until the hole is known to be lost. */
	feed(r, C, A, 1005, 2004, "late");
	assert_string_equal(drain(r), "");
	feed(r, S, A, 2004, 1009, "srv2");
	assert_string_equal(drain(r), "D1c4:srv2 G1s0+5/1 D1s5:late");
	ug_tcp_reasm_free(r);
}

static void test_syn_ack_without_syn(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_event ev;

	/* The client's SYN was not captured; its SYN+ACK still names the roles. */
	feed(r, S, SYN | A, 500, 101, NULL);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.conn->client.port, 40000);
	assert_int_equal(ev.conn->flags, 0);
	assert_string_equal(drain(r), "");
	feed(r, C, A, 101, 501, "hi");
	feed(r, S, A, 501, 103, "ho");
	assert_string_equal(drain(r), "D1c0:hi D1s0:ho");
	ug_tcp_reasm_free(r);
}

static void test_reused_ports(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	feed(r, C, A, 101, 501, "one");
	feed(r, C, A, 108, 501, "x");      /* held, never completed */
	feed(r, C, SYN, 9000, 0, NULL);
	feed(r, S, SYN | A, 7000, 9001, NULL);
	feed(r, C, A, 9001, 7001, "two");
	assert_string_equal(drain(r), "D1c0:one G1c3+4/4 D1c7:x C1/4 O2 D2c0:two");
	ug_tcp_reasm_free(r);
}

static void test_limit_per_side(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	/* Pieces cost their bytes plus a 32-byte header: two 10-byte pieces fit. */
	struct ug_capture_limits l = { .max_buffered_per_side = 2 * (32 + 10) };
	struct ug_capture_stats st = { 0 };

	assert_int_equal(ug_tcp_reasm_set_limits(r, &l), 0);
	feed(r, C, SYN, 100, 0, NULL);
	feed(r, C, A, 111, 0, "bbbbbbbbbb");   /* [10,20) */
	feed(r, C, A, 131, 0, "dddddddddd");   /* [30,40) */
	assert_string_equal(drain(r), "O1");
	assert_int_equal(ug_tcp_reasm_buffered(r), 84);
	/* A third piece: the oldest hole is given up, with what follows it. */
	feed(r, C, A, 151, 0, "ffffffffff");   /* [50,60) */
	assert_string_equal(drain(r), "G1c0+10/3 D1c10:bbbbbbbbbb");
	assert_int_equal(ug_tcp_reasm_buffered(r), 84);
	/* Filling the next hole delivers the rest. */
	feed(r, C, A, 121, 0, "cccccccccc");
	assert_string_equal(drain(r), "D1c20:cccccccccc D1c30:dddddddddd");
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.bytes_missing, 10);
	ug_tcp_reasm_free(r);
	/* Changing limits after the first segment is refused. */
	r = handshake();
	assert_int_equal(ug_tcp_reasm_set_limits(r, &l), UG_E_STATE);
	ug_tcp_reasm_free(r);
}

/* At most 4096 held pieces per side: the 4097th gives up the oldest hole. */
static void test_limit_piece_count(void **state)
{
	struct ug_tcp_reasm *r = handshake();

	for (uint32_t k = 0; k < 4096; k++)
		feed(r, C, A, 101 + 2 * k + 1, 501, "x");
	assert_string_equal(drain(r), "");
	assert_int_equal(ug_tcp_reasm_buffered(r), 4096 * (32 + 1));
	feed(r, C, A, 101 + 2 * 4096 + 1, 501, "y");
	assert_string_equal(drain(r), "G1c0+1/3 D1c1:x");
	assert_int_equal(ug_tcp_reasm_buffered(r), 4096 * (32 + 1));
	ug_tcp_reasm_free(r);
}

static void test_limit_total(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_limits l = { .max_buffered_total = 3 * (32 + 10) };
	struct ug_tcp_segment s;

	assert_int_equal(ug_tcp_reasm_set_limits(r, &l), 0);
	feed(r, C, SYN, 100, 0, NULL);
	feed(r, C, A, 111, 0, "bbbbbbbbbb");
	feed(r, C, A, 131, 0, "dddddddddd");
	/* A second connection on another client port. */
	s = mkseg(C, SYN, 300, 0, NULL);
	s.sport = 40001;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_string_equal(drain(r), "O1 O2");
	s = mkseg(C, A, 311, 0, "BBBBBBBBBB");
	s.sport = 40001;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_string_equal(drain(r), "");
	assert_int_equal(ug_tcp_reasm_buffered(r), 126);
	/* Over the total: the connection that grew gives up its hole. */
	s = mkseg(C, A, 331, 0, "DDDDDDDDDD");
	s.sport = 40001;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_string_equal(drain(r), "G2c0+10/3 D2c10:BBBBBBBBBB");
	assert_int_equal(ug_tcp_reasm_buffered(r), 126);
	ug_tcp_reasm_free(r);
}

static void test_beyond_window_dropped(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_limits l = { .window = 1000 };
	struct ug_capture_event ev;
	struct ug_capture_stats st = { 0 };

	assert_int_equal(ug_tcp_reasm_set_limits(r, &l), 0);
	feed(r, C, SYN, 100, 0, NULL);
	feed(r, C, A, 101 + 1000, 0, "in");      /* exactly at the window edge */
	feed(r, C, A, 101 + 1001, 0, "out");
	assert_string_equal(drain(r), "O1 N1/-3");
	struct ug_tcp_segment s = mkseg(C, A, 101 + 5000, 0, "far");

	s.frame = 7;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.type, UG_CAPTURE_NOTICE);
	assert_int_equal(ev.reason, UG_E_TOOBIG);
	assert_string_equal(ev.message, "frame 7: connection 1 client->server: 3 bytes at stream "
	                    "offset 5000 start 5000 bytes ahead of the next expected byte, "
	                    "beyond the window of 1000: dropped");
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 0);
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.bytes_dropped, 6);
	ug_tcp_reasm_free(r);
}

/* A loss larger than the window: the peer's ACK beyond it, confirmed by
 * data that starts within what it acknowledged, resumes the stream. */
static void test_loss_beyond_window_resyncs_on_ack(void **state)
{
	struct ug_capture_limits l = { .window = 1000, .reorder_window = 1 };
	struct ug_tcp_reasm *r = handshake_lim(&l);

	feed(r, C, A, 101, 501, "abc");
	feed(r, S, A, 501, 101 + 5000, NULL);   /* too far to act on alone */
	assert_string_equal(drain(r), "D1c0:abc");
	feed(r, C, A, 101 + 6000, 501, "no");   /* beyond what was acknowledged */
	assert_string_equal(drain(r), "N1/-3");
	feed(r, C, A, 101 + 4990, 501, "xyz");
	assert_string_equal(drain(r), "G1c3+4987/1 D1c4990:xyz");
	feed(r, C, A, 101 + 4993, 501, "w");
	assert_string_equal(drain(r), "D1c4993:w");
	ug_tcp_reasm_free(r);
}

static void test_connection_table_full(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_limits l = { .max_connections = 2 };
	struct ug_capture_stats st = { 0 };
	struct ug_tcp_segment s;

	assert_int_equal(ug_tcp_reasm_set_limits(r, &l), 0);
	for (uint16_t i = 0; i < 3; i++) {
		s = mkseg(C, SYN, 100, 0, NULL);
		s.sport = (uint16_t)(40000 + i);
		assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
		s = mkseg(C, A, 101, 0, "a");
		s.sport = (uint16_t)(40000 + i);
		assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
		s = mkseg(C, A, 103, 0, "c");   /* held */
		s.sport = (uint16_t)(40000 + i);
		assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
		if (i == 1) {
			/* Connection 1 becomes the most recently active. */
			s = mkseg(S, SYN | A, 700, 101, NULL);
			s.dport = 40000;
			assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
		}
	}
	assert_string_equal(drain(r), "O1 D1c0:a O2 D2c0:a N2/-3 G2c1+1/4 D2c2:c C2/3 O3 D3c0:a");
	assert_int_equal(ug_tcp_reasm_connections(r), 2);
	ug_tcp_reasm_add_stats(r, &st);
	assert_int_equal(st.connections, 3);
	assert_int_equal(st.connections_evicted, 1);
	ug_tcp_reasm_free(r);
}

static void test_inconsistent_segment_refused(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_tcp_segment s = mkseg(C, SYN, 100, 0, NULL);

	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_string_equal(drain(r), "O1");
	s.family = 5;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), UG_E_INVAL);
	s = mkseg(C, A, 101, 0, "abc");
	s.caplen = 4;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), UG_E_INVAL);
	ug_tcp_reasm_free(r);
}

/* A stream cut in random segments, shuffled and duplicated, comes out whole. */
static void test_random_order_byte_exact(void **state)
{
	enum { LEN = 20000, NSEG = 600 };
	static uint8_t stream[LEN], got[LEN];
	struct { uint32_t off, len; } segs[NSEG];
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_capture_event ev;
	uint64_t got_len = 0;
	unsigned seed = 12345;
	uint32_t isn = 0xffffff00u;  /* the stream wraps */
	size_t n = 0;

	for (size_t i = 0; i < LEN; i++)
		stream[i] = (uint8_t)(rand_r(&seed) & 0xff);
	/* Random cuts, then 200 random overlapping duplicates. */
	for (uint32_t off = 0; off < LEN && n < NSEG;) {
		uint32_t len = 1 + (uint32_t)rand_r(&seed) % 200;

		if (off + len > LEN)
			len = LEN - off;
		segs[n].off = off;
		segs[n++].len = len;
		off += len;
	}
	assert_true(n < NSEG - 200);
	for (int i = 0; i < 200; i++) {
		uint32_t off = (uint32_t)rand_r(&seed) % (LEN - 300);

		segs[n].off = off;
		segs[n++].len = 1 + (uint32_t)rand_r(&seed) % 300;
	}
	/* Shuffle within a window of 30 segments, as a network reorders. */
	for (size_t i = 0; i < n; i++) {
		size_t j = i + (size_t)rand_r(&seed) % 30;

		if (j < n) {
			__typeof__(segs[0]) t = segs[i];
			segs[i] = segs[j];
			segs[j] = t;
		}
	}
	feed(r, C, SYN, isn, 0, NULL);
	assert_string_equal(drain(r), "O1");
	for (size_t i = 0; i < n; i++) {
		struct ug_tcp_segment s = mkseg(C, A, isn + 1 + segs[i].off, 0, NULL);

		s.data = stream + segs[i].off;
		s.len = s.caplen = segs[i].len;
		assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
		while (ug_tcp_reasm_next(r, &ev) == 1) {
			assert_int_equal(ev.type, UG_CAPTURE_DATA);
			assert_int_equal(ev.offset, got_len);
			memcpy(got + got_len, ev.data, ev.len);
			got_len += ev.len;
		}
	}
	assert_int_equal(got_len, LEN);
	assert_memory_equal(got, stream, LEN);
	assert_int_equal(ug_tcp_reasm_buffered(r), 0);
	ug_tcp_reasm_free(r);
}

/* conn->proto follows the first bytes, and is final at CLOSE. */
static void test_running_classification(void **state)
{
	struct ug_tcp_reasm *r = handshake();
	struct ug_capture_event ev;
	char hello[81] = { 0 };

	hello[4] = 68;
	memcpy(hello + 12, "usbredir guest", 14);
	hello[76] = (char)0xff;
	hello[80] = 0;
	/* Zero bytes in a string: feed the hello in two raw pieces. */
	struct ug_tcp_segment s = mkseg(C, A, 101, 501, NULL);

	s.data = (const uint8_t *)hello;
	s.len = s.caplen = 8;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.conn->proto, UG_CAPTURE_PROTO_NEED_MORE);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 0);
	s = mkseg(C, A, 109, 501, NULL);
	s.data = (const uint8_t *)hello + 8;
	s.len = s.caplen = 72;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.conn->proto, UG_CAPTURE_PROTO_USBREDIR);
	ug_tcp_reasm_free(r);

	/* Text both ways: undecided while short, unknown at the close. */
	r = handshake();
	feed(r, C, A, 101, 501, "GET");
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.conn->proto, UG_CAPTURE_PROTO_NEED_MORE);
	feed(r, C, RST, 104, 501, NULL);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.type, UG_CAPTURE_CLOSE);
	assert_int_equal(ev.conn->proto, UG_CAPTURE_PROTO_UNKNOWN);
	ug_tcp_reasm_free(r);

	/* A gap at the start of a side leaves the decision to the other. */
	static const uint8_t major[4] = { 2, 0, 0, 0 };

	r = handshake_lim(&no_reorder);
	feed(r, S, A, 501, 101, "REDQ");
	feed(r, C, A, 130, 505, "z");
	feed(r, S, A, 505, 131, NULL);
	assert_string_equal(drain(r), "D1s0:REDQ G1c0+29/1 D1c29:z");
	s = mkseg(S, A, 505, 131, NULL);
	s.data = major;
	s.len = s.caplen = 4;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.conn->proto, UG_CAPTURE_PROTO_SPICE);
	ug_tcp_reasm_free(r);
}

/*
 * Property test: a lossy, reordering, duplicating, truncating capture of a
 * stream whose peer acknowledged everything. Whatever the limits, every
 * delivered byte is the byte sent at that offset, DATA and GAP events tile
 * the stream in order, and the stream ends exactly at the FIN.
 */
static void test_random_lossy_capture_property(void **state)
{
	enum { LEN = 60000, MAXSEG = 600 };
	static uint8_t stream[LEN];
	struct ug_capture_limits limits[3] = {
		{ 0 },
		{ .max_buffered_per_side = 3000, .reorder_window = 4 },
		{ .max_buffered_total = 1500, .window = 4000, .reorder_window = 2 },
	};

	for (unsigned seed = 1; seed <= 30; seed++) {
		struct ug_tcp_reasm *r = ug_tcp_reasm_new();
		struct ug_capture_event ev;
		struct { uint32_t off, len, cap; int ack; } q[64];
		unsigned rs = seed;
		uint64_t pos = 0, data = 0, gaps = 0;
		uint32_t off = 0, isn = (uint32_t)rand_r(&rs) * 2654435761u;
		size_t nq = 0;
		int ended = 0, closed = 0;

		for (size_t i = 0; i < LEN; i++)
			stream[i] = (uint8_t)rand_r(&rs);
		assert_int_equal(ug_tcp_reasm_set_limits(r, &limits[seed % 3]), 0);
		feed(r, C, SYN, isn, 0, NULL);
		feed(r, S, SYN | A, 7, isn + 1, NULL);
		/* Cut the stream; queue each piece (or not: lost), flush the
		 * queue in a shuffled order now and then, with server ACKs of
		 * everything sent so far in between. */
		while (off < LEN || nq) {
			if (off < LEN) {
				uint32_t len = 1 + (uint32_t)rand_r(&rs) % MAXSEG;
				int roll = rand_r(&rs) % 100;

				if (len > LEN - off)
					len = LEN - off;
				if (roll >= 10) {           /* 10% never captured */
					q[nq].off = off;
					q[nq].len = len;
					q[nq].cap = roll < 15 ? len / 2 : len;  /* 5% cut */
					q[nq++].ack = 0;
				}
				if (roll >= 90 && nq < 60) { /* 10% duplicated */
					q[nq] = q[nq - 1];
					nq++;
				}
				off += len;
				if (rand_r(&rs) % 4 == 0 && nq < 64) {
					q[nq].ack = 1;
					q[nq++].off = off;
				}
			}
			if (nq >= 8 || off >= LEN) {
				for (size_t i = nq; i > 1; i--) {
					size_t j = (size_t)rand_r(&rs) % i;
					__typeof__(q[0]) t = q[i - 1];

					q[i - 1] = q[j];
					q[j] = t;
				}
				for (size_t i = 0; i < nq; i++) {
					struct ug_tcp_segment sg;

					if (q[i].ack) {
						sg = mkseg(S, A, 8, isn + 1 + q[i].off, NULL);
					} else {
						sg = mkseg(C, A, isn + 1 + q[i].off, 8, NULL);
						sg.data = stream + q[i].off;
						sg.len = q[i].len;
						sg.caplen = q[i].cap;
					}
					assert_int_equal(ug_tcp_reasm_segment(r, &sg), 0);
					while (ug_tcp_reasm_next(r, &ev) == 1) {
						if (ev.type == UG_CAPTURE_CLOSE)
							closed = 1;
						if (ev.type == UG_CAPTURE_END)
							ended = 1;
						if (ev.side != UG_CAPTURE_C2S ||
						    (ev.type != UG_CAPTURE_DATA && ev.type != UG_CAPTURE_GAP))
							continue;
						assert_int_equal(ev.offset, pos);
						if (ev.type == UG_CAPTURE_DATA) {
							assert_memory_equal(ev.data, stream + pos, ev.len);
							data += ev.len;
						} else {
							gaps += ev.len;
						}
						pos += ev.len;
					}
				}
				nq = 0;
			}
		}
		feed(r, C, FIN | A, isn + 1 + LEN, 8, NULL);
		feed(r, S, FIN | A, 8, isn + 2 + LEN, NULL);
		assert_int_equal(ug_tcp_reasm_finish(r, 0, 0), 0);
		while (ug_tcp_reasm_next(r, &ev) == 1) {
			if (ev.type == UG_CAPTURE_CLOSE)
				closed = 1;
			if (ev.type == UG_CAPTURE_END)
				ended = 1;
			if (ev.side != UG_CAPTURE_C2S ||
			    (ev.type != UG_CAPTURE_DATA && ev.type != UG_CAPTURE_GAP))
				continue;
			assert_int_equal(ev.offset, pos);
			if (ev.type == UG_CAPTURE_DATA) {
				assert_memory_equal(ev.data, stream + pos, ev.len);
				data += ev.len;
			} else {
				gaps += ev.len;
			}
			pos += ev.len;
		}
		assert_int_equal(pos, LEN);
		assert_int_equal(data + gaps, LEN);
		assert_true(data > LEN / 2);
		assert_true(gaps > 0);
		assert_true(ended && closed);
		assert_int_equal(ug_tcp_reasm_buffered(r), 0);
		ug_tcp_reasm_free(r);
	}
}

static void test_ipv6_and_notice(void **state)
{
	struct ug_tcp_reasm *r = ug_tcp_reasm_new();
	struct ug_tcp_segment s = mkseg(C, SYN, 1, 0, NULL);
	struct ug_capture_event ev;

	s.family = 6;
	s.src[15] = 1;
	s.dst[15] = 1;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_int_equal(ug_tcp_reasm_notice(r, 3, 4, UG_E_UNSUPPORTED, "frame %d: x", 3), 0);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.conn->client.family, 6);
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 1);
	assert_int_equal(ev.type, UG_CAPTURE_NOTICE);
	assert_null(ev.conn);
	assert_string_equal(ev.message, "frame 3: x");
	assert_int_equal(ug_tcp_reasm_next(r, &ev), 0);
	/* Freeing with events and held data left must not leak (ASan checks). */
	s = mkseg(C, A, 9, 0, "held");
	s.family = 6;
	s.src[15] = 1;
	s.dst[15] = 1;
	assert_int_equal(ug_tcp_reasm_segment(r, &s), 0);
	assert_int_equal(ug_tcp_reasm_finish(r, 0, 0), 0);
	ug_tcp_reasm_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_with_handshake_and_fin),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_retransmission),
		cmocka_unit_test(test_overlap_partial_first_wins),
		cmocka_unit_test(test_overlap_full),
		cmocka_unit_test(test_sequence_wraparound),
		cmocka_unit_test(test_offsets_beyond_4gib),
		cmocka_unit_test(test_snaplen_cut),
		cmocka_unit_test(test_gap_acknowledged_then_resume),
		cmocka_unit_test(test_ack_before_data_within_reorder_window),
		cmocka_unit_test(test_pending_ack_clamped_by_later_fin),
		cmocka_unit_test(test_syn_after_syn_ack),
		cmocka_unit_test(test_gap_at_end_of_capture),
		cmocka_unit_test(test_fin_waits_for_data),
		cmocka_unit_test(test_fin_with_missing_data_at_close),
		cmocka_unit_test(test_rst_closes),
		cmocka_unit_test(test_mid_stream_start),
		cmocka_unit_test(test_syn_ack_without_syn),
		cmocka_unit_test(test_reused_ports),
		cmocka_unit_test(test_limit_per_side),
		cmocka_unit_test(test_limit_piece_count),
		cmocka_unit_test(test_limit_total),
		cmocka_unit_test(test_beyond_window_dropped),
		cmocka_unit_test(test_loss_beyond_window_resyncs_on_ack),
		cmocka_unit_test(test_connection_table_full),
		cmocka_unit_test(test_inconsistent_segment_refused),
		cmocka_unit_test(test_random_order_byte_exact),
		cmocka_unit_test(test_running_classification),
		cmocka_unit_test(test_random_lossy_capture_property),
		cmocka_unit_test(test_ipv6_and_notice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
