/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tcp-reassembly.h: TCP segments in, ordered per-connection byte-stream events out (internal). */
#ifndef UG_TCP_REASSEMBLY_H
#define UG_TCP_REASSEMBLY_H

#include <stdint.h>

#include "usbgate.h"

/*
 * The reassembler takes parsed TCP segments (from the pcap source, or from a
 * test) and queues struct ug_capture_event values; the rules are those in the
 * capture section of usbgate.h.
 *
 * Ownership and lifetimes:
 * - ug_tcp_reasm_segment() may queue DATA events that point into seg->data
 *   (no copy when the segment is in order). The caller keeps seg->data
 *   unchanged until those events were taken with ug_tcp_reasm_next();
 *   draining the queue after each segment (as the pcap source does) is the
 *   simple way.
 * - Event pointers (data, conn, message) stay valid until the next call of
 *   ug_tcp_reasm_segment(), _notice(), _finish() or _next() after the queue
 *   was drained: memory behind returned events is released only when the
 *   queue is empty again.
 */
struct ug_tcp_reasm;

#define UG_TCP_FIN 0x01
#define UG_TCP_SYN 0x02
#define UG_TCP_RST 0x04
#define UG_TCP_ACK 0x10

struct ug_tcp_segment {
	uint8_t family;          /* 4 or 6 */
	uint8_t src[16], dst[16];/* addresses, IPv4 in the first 4 bytes */
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;           /* UG_TCP_* */
	const uint8_t *data;     /* captured payload */
	uint32_t len;            /* payload length on the wire */
	uint32_t caplen;         /* payload bytes captured, <= len (a prefix) */
	uint64_t ts_ns;
	uint64_t frame;
};

struct ug_tcp_reasm *ug_tcp_reasm_new(void);
void ug_tcp_reasm_free(struct ug_tcp_reasm *r);

/* Fields of 0 keep their value; UG_E_STATE once a segment was fed. */
int ug_tcp_reasm_set_limits(struct ug_tcp_reasm *r, const struct ug_capture_limits *l);

/* One segment: 0, UG_E_INVAL (inconsistent segment), UG_E_NOMEM. */
int ug_tcp_reasm_segment(struct ug_tcp_reasm *r, const struct ug_tcp_segment *seg);

/* Queues a NOTICE (about no connection) with reason code and a message. */
int ug_tcp_reasm_notice(struct ug_tcp_reasm *r, uint64_t frame, uint64_t ts_ns, int code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* No more segments: flushes every connection (holes as GAPs) and closes it
 * with reason (UG_CAPTURE_CLOSE_END); ts_ns is the time of the last frame. */
int ug_tcp_reasm_finish(struct ug_tcp_reasm *r, uint64_t ts_ns, uint64_t frame);

/* Pops the next event: 1, or 0 when the queue is empty. */
int ug_tcp_reasm_next(struct ug_tcp_reasm *r, struct ug_capture_event *ret_ev);

/* Counters kept by the reassembler (the frame counters are left alone). */
void ug_tcp_reasm_add_stats(const struct ug_tcp_reasm *r, struct ug_capture_stats *st);

/* Bytes held out of order right now, and connections open. */
uint64_t ug_tcp_reasm_buffered(const struct ug_tcp_reasm *r);
uint32_t ug_tcp_reasm_connections(const struct ug_tcp_reasm *r);

/* Detail of the last error returned ("" if none). */
const char *ug_tcp_reasm_errmsg(const struct ug_tcp_reasm *r);

#endif /* UG_TCP_REASSEMBLY_H */
