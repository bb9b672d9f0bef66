/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tcp-reassembly.c: per-connection, per-direction TCP reassembly into an event queue. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tcp-reassembly.h"

/*
 * A piece of one side's stream held out of order: it covers the stream bytes
 * [off, off + len), of which the first caplen were captured (a frame cut by
 * the snapshot length keeps only a prefix). Pieces of a side are sorted, do
 * not overlap, and all start after the side's next byte to deliver.
 */
struct piece {
	struct piece *next;
	uint64_t off;
	uint64_t len;
	uint64_t caplen;
	uint8_t data[];
};

/* Accounting charges each piece its header too, so tiny segments cannot
 * exhaust memory under the byte limit. */
#define PIECE_COST(caplen) ((caplen) + sizeof(struct piece))

/* Pieces are kept in a sorted list: capping their number per side bounds
 * the walk of each insertion, so a capture of many tiny out-of-order
 * segments costs time linear in its size. Over the cap the oldest hole is
 * given up, as over the byte limit. */
#define MAX_PIECES_PER_SIDE 4096

struct side {
	uint8_t have_base;  /* base is known */
	uint8_t syn;        /* this side's SYN was captured */
	uint8_t fin;        /* this side's FIN was captured: fin_off is valid */
	uint8_t ended;      /* END was queued */
	uint32_t base;      /* sequence number of stream offset 0 */
	uint64_t next;      /* stream offset of the next byte to deliver */
	uint64_t fin_off;   /* stream offset of the FIN */
	uint64_t ack_target;/* the peer acknowledged up to here, beyond next */
	uint32_t ack_wait;  /* segments seen since ack_target was set */
	uint64_t far_ack;   /* the peer acknowledged up to here, beyond the window */
	struct piece *ooo, *ooo_tail;
	uint64_t held;      /* PIECE_COST of the pieces in ooo */
	uint32_t npieces;   /* pieces in ooo */
};

struct conn {
	struct ug_capture_conn info;    /* the public view handed out in events */
	struct conn *hnext;             /* hash chain; the dead list once closed */
	struct conn *lru_prev, *lru_next;
	uint32_t hash;
	struct side side[2];
	/* The first bytes of each side, until the protocol is known. */
	uint8_t prefix[2][UG_CAPTURE_CLASSIFY_BYTES];
	uint8_t prefix_len[2];
	uint8_t prefix_done[2];     /* no more bytes will come for the prefix */
};

/* One queued event and the memory it points into, freed once drained. */
struct qent {
	struct ug_capture_event ev;
	void *owned;
};

struct ug_tcp_reasm {
	struct ug_capture_limits lim;
	struct conn **buckets;
	uint32_t nbuckets;              /* a power of two */
	struct conn *lru_head, *lru_tail; /* least recently active first */
	uint32_t nconns;
	uint32_t next_id;
	struct conn *dead;              /* closed, freed when the queue drains */
	struct qent *q;
	size_t qhead, qlen, qalloc;
	uint64_t held_total;
	struct ug_capture_stats st;
	int fed;
	char err[UG_ERRMSG_SIZE];
};

static const char *const side_name[2] = { "client->server", "server->client" };

struct ug_tcp_reasm *ug_tcp_reasm_new(void)
{
	struct ug_tcp_reasm *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->lim.max_connections = UG_CAPTURE_DEFAULT_MAX_CONNECTIONS;
	r->lim.max_buffered_per_side = UG_CAPTURE_DEFAULT_MAX_BUFFERED_PER_SIDE;
	r->lim.max_buffered_total = UG_CAPTURE_DEFAULT_MAX_BUFFERED_TOTAL;
	r->lim.window = UG_CAPTURE_DEFAULT_WINDOW;
	r->lim.reorder_window = UG_CAPTURE_DEFAULT_REORDER_WINDOW;
	r->next_id = 1;
	return r;
}

static void free_pieces(struct side *s)
{
	struct piece *p, *n;

	for (p = s->ooo; p; p = n) {
		n = p->next;
		free(p);
	}
	s->ooo = s->ooo_tail = NULL;
}

/* Frees what drained events pointed to: their owned memory and dead connections. */
static void release_drained(struct ug_tcp_reasm *r)
{
	struct conn *c, *n;

	if (r->qhead < r->qlen)
		return;
	for (size_t i = 0; i < r->qlen; i++)
		free(r->q[i].owned);
	r->qhead = r->qlen = 0;
	for (c = r->dead; c; c = n) {
		n = c->hnext;
		free(c);
	}
	r->dead = NULL;
}

void ug_tcp_reasm_free(struct ug_tcp_reasm *r)
{
	struct conn *c, *n;

	if (!r)
		return;
	r->qhead = r->qlen;
	release_drained(r);
	for (c = r->lru_head; c; c = n) {
		n = c->lru_next;
		free_pieces(&c->side[0]);
		free_pieces(&c->side[1]);
		free(c);
	}
	free(r->buckets);
	free(r->q);
	free(r);
}

int ug_tcp_reasm_set_limits(struct ug_tcp_reasm *r, const struct ug_capture_limits *l)
{
	if (!l)
		return ug_errmsg_set(r->err, UG_E_INVAL, "no limits given");
	if (r->fed)
		return ug_errmsg_set(r->err, UG_E_STATE,
		                     "limits can only change before the first segment");
	if (l->max_connections)
		r->lim.max_connections = l->max_connections;
	if (l->max_buffered_per_side)
		r->lim.max_buffered_per_side = l->max_buffered_per_side;
	if (l->max_buffered_total)
		r->lim.max_buffered_total = l->max_buffered_total;
	if (l->window)
		r->lim.window = l->window;
	if (l->reorder_window)
		r->lim.reorder_window = l->reorder_window;
	/* Offsets are compared through 32-bit sequence differences: a window
	 * of 2^31 or more would make "ahead" and "behind" ambiguous. */
	if (r->lim.window > 0x40000000u)
		r->lim.window = 0x40000000u;
	return 0;
}

const char *ug_tcp_reasm_errmsg(const struct ug_tcp_reasm *r)
{
	return r->err;
}

uint64_t ug_tcp_reasm_buffered(const struct ug_tcp_reasm *r)
{
	return r->held_total;
}

uint32_t ug_tcp_reasm_connections(const struct ug_tcp_reasm *r)
{
	return r->nconns;
}

void ug_tcp_reasm_add_stats(const struct ug_tcp_reasm *r, struct ug_capture_stats *st)
{
	st->segments += r->st.segments;
	st->bytes_delivered += r->st.bytes_delivered;
	st->bytes_duplicate += r->st.bytes_duplicate;
	st->bytes_conflicting += r->st.bytes_conflicting;
	st->bytes_missing += r->st.bytes_missing;
	st->bytes_dropped += r->st.bytes_dropped;
	st->connections += r->st.connections;
	st->connections_evicted += r->st.connections_evicted;
	st->notices += r->st.notices;
}

/* ---- the event queue ---- */

/* Appends an event; on failure frees owned so nothing leaks. */
static int push(struct ug_tcp_reasm *r, const struct ug_capture_event *ev, void *owned)
{
	if (r->qlen == r->qalloc) {
		size_t n = r->qalloc ? r->qalloc * 2 : 64;
		struct qent *q;

		if (n > SIZE_MAX / sizeof(*q) || !(q = realloc(r->q, n * sizeof(*q)))) {
			free(owned);
			return ug_errmsg_set(r->err, UG_E_NOMEM, "event queue: out of memory at %zu events",
			                     r->qlen);
		}
		r->q = q;
		r->qalloc = n;
	}
	r->q[r->qlen].ev = *ev;
	r->q[r->qlen].owned = owned;
	r->qlen++;
	return 0;
}

int ug_tcp_reasm_next(struct ug_tcp_reasm *r, struct ug_capture_event *ret_ev)
{
	if (r->qhead == r->qlen) {
		release_drained(r);
		return 0;
	}
	*ret_ev = r->q[r->qhead++].ev;
	return 1;
}

static void base_event(struct ug_capture_event *ev, enum ug_capture_event_type type,
                       const struct conn *c, int dir, uint64_t ts, uint64_t frame)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->conn = c ? &c->info : NULL;
	ev->side = dir ? UG_CAPTURE_S2C : UG_CAPTURE_C2S;
	ev->ts_ns = ts;
	ev->frame = frame;
}

/* A message that lives as long as its event; NULL when out of memory. */
static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *vformat(const char *fmt, va_list ap)
{
	char *m = malloc(UG_ERRMSG_SIZE);

	if (m)
		vsnprintf(m, UG_ERRMSG_SIZE, fmt, ap);
	return m;
}

static int push_notice(struct ug_tcp_reasm *r, const struct conn *c, int dir, uint64_t ts,
                       uint64_t frame, int code, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static int push_notice(struct ug_tcp_reasm *r, const struct conn *c, int dir, uint64_t ts,
                       uint64_t frame, int code, const char *fmt, ...)
{
	struct ug_capture_event ev;
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = vformat(fmt, ap);
	va_end(ap);
	if (!m)
		return ug_errmsg_set(r->err, UG_E_NOMEM, "notice: out of memory");
	base_event(&ev, UG_CAPTURE_NOTICE, c, dir, ts, frame);
	ev.reason = code;
	ev.message = m;
	r->st.notices++;
	return push(r, &ev, m);
}

int ug_tcp_reasm_notice(struct ug_tcp_reasm *r, uint64_t frame, uint64_t ts_ns, int code,
                        const char *fmt, ...)
{
	struct ug_capture_event ev;
	va_list ap;
	char *m;

	release_drained(r);
	va_start(ap, fmt);
	m = vformat(fmt, ap);
	va_end(ap);
	if (!m)
		return ug_errmsg_set(r->err, UG_E_NOMEM, "notice: out of memory");
	base_event(&ev, UG_CAPTURE_NOTICE, NULL, 0, ts_ns, frame);
	ev.reason = code;
	ev.message = m;
	r->st.notices++;
	return push(r, &ev, m);
}

/* ---- delivery ---- */

/* Context of the segment being processed: the time and frame events carry. */
struct when {
	uint64_t ts;
	uint64_t frame;
};

/* Decides conn->info.proto once the first bytes allow it. */
static void classify_update(struct conn *c)
{
	int p;

	if (c->info.proto != UG_CAPTURE_PROTO_NEED_MORE)
		return;
	p = ug_capture_classify(c->prefix[0], c->prefix_len[0], c->prefix[1], c->prefix_len[1]);
	if (p == UG_CAPTURE_PROTO_NEED_MORE &&
	    (c->prefix_done[0] || c->prefix_len[0] == UG_CAPTURE_CLASSIFY_BYTES) &&
	    (c->prefix_done[1] || c->prefix_len[1] == UG_CAPTURE_CLASSIFY_BYTES))
		p = UG_CAPTURE_PROTO_UNKNOWN;
	c->info.proto = p;
}

/* A side's prefix can grow no more (a gap, its END, the CLOSE). */
static void prefix_done(struct conn *c, int dir)
{
	c->prefix_done[dir] = 1;
	classify_update(c);
}

static int emit_data(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w,
                     const uint8_t *data, uint64_t len, void *owned)
{
	struct ug_capture_event ev;
	struct side *s = &c->side[dir];

	if (c->info.proto == UG_CAPTURE_PROTO_NEED_MORE && !c->prefix_done[dir]) {
		size_t room = UG_CAPTURE_CLASSIFY_BYTES - c->prefix_len[dir];
		size_t n = len < room ? (size_t)len : room;

		memcpy(c->prefix[dir] + c->prefix_len[dir], data, n);
		c->prefix_len[dir] = (uint8_t)(c->prefix_len[dir] + n);
		classify_update(c);
	}

	base_event(&ev, UG_CAPTURE_DATA, c, dir, w->ts, w->frame);
	ev.offset = s->next;
	ev.len = len;
	ev.data = data;
	s->next += len;
	r->st.bytes_delivered += len;
	return push(r, &ev, owned);
}

static const char *gap_cause(int reason)
{
	switch (reason) {
	case UG_CAPTURE_GAP_NOT_CAPTURED:
		return "acknowledged by the peer but not captured";
	case UG_CAPTURE_GAP_SNAPLEN:
		return "cut by the snapshot length";
	case UG_CAPTURE_GAP_LIMIT:
		return "hole given up at the out-of-order memory limit";
	default:
		return "still missing when the connection ended";
	}
}

static int emit_gap(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w,
                    uint64_t len, int reason)
{
	struct ug_capture_event ev;
	struct side *s = &c->side[dir];
	char *m = malloc(UG_ERRMSG_SIZE);

	if (!m)
		return ug_errmsg_set(r->err, UG_E_NOMEM, "gap: out of memory");
	snprintf(m, UG_ERRMSG_SIZE,
	         "frame %llu: connection %u %s: %llu bytes missing at stream offset %llu (%s)",
	         (unsigned long long)w->frame, c->info.id, side_name[dir],
	         (unsigned long long)len, (unsigned long long)s->next, gap_cause(reason));
	prefix_done(c, dir);
	base_event(&ev, UG_CAPTURE_GAP, c, dir, w->ts, w->frame);
	ev.offset = s->next;
	ev.len = len;
	ev.reason = reason;
	ev.message = m;
	s->next += len;
	r->st.bytes_missing += len;
	return push(r, &ev, m);
}

static int check_end(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w)
{
	struct ug_capture_event ev;
	struct side *s = &c->side[dir];

	if (!s->fin || s->ended || s->next < s->fin_off)
		return 0;
	s->ended = 1;
	prefix_done(c, dir);
	base_event(&ev, UG_CAPTURE_END, c, dir, w->ts, w->frame);
	ev.offset = s->fin_off;
	return push(r, &ev, NULL);
}

static void unhold(struct ug_tcp_reasm *r, struct side *s, struct piece *p)
{
	s->held -= PIECE_COST(p->caplen);
	s->npieces--;
	r->held_total -= PIECE_COST(p->caplen);
}

/*
 * Delivers the bytes [off, off + len) of which the first caplen are at data,
 * from s->next on (the part before next was delivered already). owned is
 * handed to the DATA event, or freed if there is none.
 */
static int deliver_range(struct ug_tcp_reasm *r, struct conn *c, int dir,
                         const struct when *w, uint64_t off, uint64_t len,
                         uint64_t caplen, const uint8_t *data, void *owned)
{
	struct side *s = &c->side[dir];
	uint64_t end = off + len, capend = off + caplen;
	int ret = 0;

	if (s->next < capend) {
		uint64_t skip = s->next > off ? s->next - off : 0;

		ret = emit_data(r, c, dir, w, data + skip, capend - off - skip, owned);
		owned = NULL;
	}
	free(owned);
	if (ret == 0 && s->next < end)
		ret = emit_gap(r, c, dir, w, end - s->next, UG_CAPTURE_GAP_SNAPLEN);
	return ret;
}

/* Delivers the held pieces that are now contiguous with the stream. */
static int drain(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w)
{
	struct side *s = &c->side[dir];
	struct piece *p;
	int ret;

	while ((p = s->ooo) && p->off <= s->next) {
		s->ooo = p->next;
		if (!s->ooo)
			s->ooo_tail = NULL;
		unhold(r, s, p);
		if (p->off + p->len <= s->next) {
			free(p);
			continue;
		}
		ret = deliver_range(r, c, dir, w, p->off, p->len, p->caplen, p->data, p);
		if (ret < 0)
			return ret;
	}
	return check_end(r, c, dir, w);
}

/* Declares everything missing before target a gap, delivering held pieces on the way. */
static int advance_to(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w,
                      uint64_t target, int reason)
{
	struct side *s = &c->side[dir];
	int ret;

	while (s->next < target) {
		uint64_t stop = target;

		if (s->ooo && s->ooo->off <= s->next) {
			if ((ret = drain(r, c, dir, w)) < 0)
				return ret;
			continue;
		}
		if (s->ooo && s->ooo->off < stop)
			stop = s->ooo->off;
		if ((ret = emit_gap(r, c, dir, w, stop - s->next, reason)) < 0)
			return ret;
	}
	return drain(r, c, dir, w);
}

/* An acknowledged offset as far as data can go: a FIN takes one sequence
 * number, and the FIN may have been seen after the ACK was. */
static uint64_t acked_limit(const struct side *s, uint64_t target)
{
	return s->fin && target > s->fin_off ? s->fin_off : target;
}

/* Gives up every hole of a side (the connection is ending). */
static int flush_side(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w)
{
	struct side *s = &c->side[dir];
	int ret;

	if (s->ack_target > s->next) {
		uint64_t t = acked_limit(s, s->ack_target);

		s->ack_target = 0;
		if ((ret = advance_to(r, c, dir, w, t, UG_CAPTURE_GAP_NOT_CAPTURED)) < 0)
			return ret;
	}
	while (s->ooo) {
		if ((ret = advance_to(r, c, dir, w, s->ooo->off, UG_CAPTURE_GAP_AT_CLOSE)) < 0)
			return ret;
	}
	if (s->fin && s->next < s->fin_off)
		return advance_to(r, c, dir, w, s->fin_off, UG_CAPTURE_GAP_AT_CLOSE);
	return 0;
}

/*
 * Holds [off, off + len) (caplen captured bytes at data) out of order. The
 * first copy wins: only the parts not covered by held pieces are added.
 */
static int hold(struct ug_tcp_reasm *r, struct side *s, uint64_t off, uint64_t len,
                uint64_t caplen, const uint8_t *data)
{
	uint64_t cur = off, end = off + len, capend = off + caplen;
	struct piece **pp = &s->ooo;

	/* Most out-of-order data lands after the last held piece. */
	if (s->ooo_tail && s->ooo_tail->off + s->ooo_tail->len <= cur)
		pp = &s->ooo_tail->next;
	while (cur < end) {
		struct piece *p = *pp, *n;
		uint64_t stop = end, pc;

		if (p && p->off + p->len <= cur) {
			pp = &p->next;
			continue;
		}
		if (p && p->off <= cur) {
			uint64_t ov = p->off + p->len < end ? p->off + p->len : end;
			uint64_t pcapend = p->off + p->caplen;

			r->st.bytes_duplicate += ov - cur;
			/* Compare the bytes both copies captured. */
			for (uint64_t i = cur; i < ov && i < capend && i < pcapend; i++) {
				if (p->data[i - p->off] != data[i - off])
					r->st.bytes_conflicting++;
			}
			cur = ov;
			pp = &p->next;
			continue;
		}
		if (p && p->off < stop)
			stop = p->off;
		pc = capend > cur ? (capend < stop ? capend : stop) - cur : 0;
		n = malloc(sizeof(*n) + pc);
		if (!n)
			return ug_errmsg_set(r->err, UG_E_NOMEM, "out-of-order piece of %llu bytes",
			                     (unsigned long long)pc);
		n->off = cur;
		n->len = stop - cur;
		n->caplen = pc;
		if (pc)
			memcpy(n->data, data + (cur - off), pc);
		n->next = p;
		*pp = n;
		if (!p)
			s->ooo_tail = n;
		s->held += PIECE_COST(pc);
		s->npieces++;
		r->held_total += PIECE_COST(pc);
		pp = &n->next;
		cur = stop;
	}
	return 0;
}

/* Held data beyond a side's FIN can never be delivered: it is dropped. */
static void trim_after_fin(struct ug_tcp_reasm *r, struct side *s)
{
	struct piece **pp = &s->ooo, *p;

	s->ooo_tail = NULL;
	while ((p = *pp)) {
		if (p->off >= s->fin_off) {
			*pp = p->next;
			r->st.bytes_dropped += p->len;
			unhold(r, s, p);
			free(p);
			continue;
		}
		if (p->off + p->len > s->fin_off) {
			r->st.bytes_dropped += p->off + p->len - s->fin_off;
			/* The piece shrinks in place; the accounting follows
			 * caplen (unhold() charges by it), so it shrinks too. */
			p->len = s->fin_off - p->off;
			if (p->caplen > p->len) {
				s->held -= p->caplen - p->len;
				r->held_total -= p->caplen - p->len;
				p->caplen = p->len;
			}
		}
		s->ooo_tail = p;
		pp = &p->next;
	}
}

/* Stream offset of sequence number seq, relative to the next expected byte. */
static int64_t seq_offset(const struct side *s, uint32_t seq)
{
	uint32_t next_seq = s->base + (uint32_t)s->next;

	return (int64_t)s->next + (int32_t)(seq - next_seq);
}

/* The payload of one segment for side dir; dseq is the sequence number of data[0]. */
static int payload(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w,
                   uint32_t dseq, const uint8_t *data, uint64_t len, uint64_t caplen)
{
	struct side *s = &c->side[dir];
	int64_t soff = seq_offset(s, dseq);
	uint64_t off, end, stop;
	int ret;

	/* The part before the next expected byte was delivered (or given up)
	 * already: the first copy wins, this one is a duplicate. */
	if (soff < 0 || (uint64_t)soff < s->next) {
		uint64_t cut = (uint64_t)((int64_t)s->next - soff);

		if (cut >= len) {
			r->st.bytes_duplicate += len;
			return 0;
		}
		r->st.bytes_duplicate += cut;
		/* data is NULL when nothing of the payload was captured. */
		if (caplen)
			data += cut < caplen ? cut : caplen;
		caplen = cut < caplen ? caplen - cut : 0;
		len -= cut;
		soff = (int64_t)s->next;
	}
	off = (uint64_t)soff;
	end = off + len;
	/* Nothing can follow a FIN. */
	if (s->fin && end > s->fin_off) {
		if (off >= s->fin_off) {
			r->st.bytes_dropped += len;
			return push_notice(r, c, dir, w->ts, w->frame, UG_E_PROTO,
			                   "frame %llu: connection %u %s: %llu bytes after the FIN "
			                   "at stream offset %llu, dropped",
			                   (unsigned long long)w->frame, c->info.id, side_name[dir],
			                   (unsigned long long)len, (unsigned long long)s->fin_off);
		}
		r->st.bytes_dropped += end - s->fin_off;
		len = s->fin_off - off;
		if (caplen > len)
			caplen = len;
		end = s->fin_off;
	}
	if (off == s->next) {
		/* In order: deliver straight from the caller's memory up to
		 * the first held piece, which wins where they overlap. */
		stop = s->ooo && s->ooo->off < end ? s->ooo->off : end;
		ret = deliver_range(r, c, dir, w, off, stop - off,
		                    caplen < stop - off ? caplen : stop - off, data, NULL);
		if (ret < 0)
			return ret;
		if (stop < end) {
			uint64_t k = stop - off;

			ret = hold(r, s, stop, end - stop, caplen > k ? caplen - k : 0,
			           caplen > k ? data + k : data);
			if (ret < 0)
				return ret;
		}
		return drain(r, c, dir, w);
	}
	/* Far ahead, but the peer acknowledged having received beyond where
	 * it starts: the capture lost more than a window (tcpdump dropping
	 * frames under load), so the stream resumes here after a gap. */
	if (off - s->next > r->lim.window && s->far_ack >= off) {
		ret = advance_to(r, c, dir, w, off, UG_CAPTURE_GAP_NOT_CAPTURED);
		if (ret < 0)
			return ret;
		s->far_ack = 0;
		return payload(r, c, dir, w, dseq, data, len, caplen);
	}
	if (off - s->next > r->lim.window) {
		r->st.bytes_dropped += len;
		return push_notice(r, c, dir, w->ts, w->frame, UG_E_TOOBIG,
		                   "frame %llu: connection %u %s: %llu bytes at stream offset "
		                   "%llu start %llu bytes ahead of the next expected byte, "
		                   "beyond the window of %llu: dropped",
		                   (unsigned long long)w->frame, c->info.id, side_name[dir],
		                   (unsigned long long)len, (unsigned long long)off,
		                   (unsigned long long)(off - s->next),
		                   (unsigned long long)r->lim.window);
	}
	if ((ret = hold(r, s, off, len, caplen, data)) < 0)
		return ret;
	/* Over a memory limit: give up the oldest holes of this side until the
	 * side is within its limit and the total is no higher than before. */
	while (s->ooo && (s->held > r->lim.max_buffered_per_side ||
	                  s->npieces > MAX_PIECES_PER_SIDE ||
	                  r->held_total > r->lim.max_buffered_total)) {
		ret = advance_to(r, c, dir, w, s->ooo->off, UG_CAPTURE_GAP_LIMIT);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ---- the connection table ---- */

static uint32_t hash_endpoint(uint8_t family, const uint8_t *addr, uint16_t port)
{
	uint32_t h = 2166136261u;

	h = (h ^ family) * 16777619u;
	for (int i = 0; i < 16; i++)
		h = (h ^ addr[i]) * 16777619u;
	h = (h ^ (port & 0xff)) * 16777619u;
	h = (h ^ (port >> 8)) * 16777619u;
	return h;
}

/* Symmetric, so both directions of a connection land in the same bucket. */
static uint32_t hash_segment(const struct ug_tcp_segment *seg)
{
	return hash_endpoint(seg->family, seg->src, seg->sport) ^
	       hash_endpoint(seg->family, seg->dst, seg->dport);
}

static int endpoint_is(const struct ug_capture_endpoint *e, uint8_t family,
                       const uint8_t *addr, uint16_t port)
{
	return e->family == family && e->port == port && memcmp(e->addr, addr, 16) == 0;
}

/* The connection of seg and the side it belongs to, or NULL. */
static struct conn *lookup(struct ug_tcp_reasm *r, const struct ug_tcp_segment *seg,
                           uint32_t hash, int *ret_dir)
{
	struct conn *c;

	if (!r->buckets)
		return NULL;
	for (c = r->buckets[hash & (r->nbuckets - 1)]; c; c = c->hnext) {
		if (c->hash != hash)
			continue;
		if (endpoint_is(&c->info.client, seg->family, seg->src, seg->sport) &&
		    endpoint_is(&c->info.server, seg->family, seg->dst, seg->dport)) {
			*ret_dir = 0;
			return c;
		}
		if (endpoint_is(&c->info.server, seg->family, seg->src, seg->sport) &&
		    endpoint_is(&c->info.client, seg->family, seg->dst, seg->dport)) {
			*ret_dir = 1;
			return c;
		}
	}
	return NULL;
}

static void lru_unlink(struct ug_tcp_reasm *r, struct conn *c)
{
	if (c->lru_prev)
		c->lru_prev->lru_next = c->lru_next;
	else
		r->lru_head = c->lru_next;
	if (c->lru_next)
		c->lru_next->lru_prev = c->lru_prev;
	else
		r->lru_tail = c->lru_prev;
	c->lru_prev = c->lru_next = NULL;
}

static void lru_append(struct ug_tcp_reasm *r, struct conn *c)
{
	c->lru_prev = r->lru_tail;
	c->lru_next = NULL;
	if (r->lru_tail)
		r->lru_tail->lru_next = c;
	else
		r->lru_head = c;
	r->lru_tail = c;
}

/* Flushes both sides, queues CLOSE and retires the connection. */
static int close_conn(struct ug_tcp_reasm *r, struct conn *c, const struct when *w, int reason)
{
	struct ug_capture_event ev;
	struct conn **pp;
	int ret = 0;

	for (int d = 0; d < 2 && ret == 0; d++)
		ret = flush_side(r, c, d, w);
	/* Whatever could not be queued is dropped: the connection goes anyway. */
	for (int d = 0; d < 2; d++) {
		for (struct piece *p = c->side[d].ooo; p; p = p->next)
			unhold(r, &c->side[d], p);
		free_pieces(&c->side[d]);
	}
	prefix_done(c, 0);
	prefix_done(c, 1);
	if (ret == 0) {
		base_event(&ev, UG_CAPTURE_CLOSE, c, 0, w->ts, w->frame);
		ev.reason = reason;
		ret = push(r, &ev, NULL);
	}
	for (pp = &r->buckets[c->hash & (r->nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	lru_unlink(r, c);
	r->nconns--;
	c->hnext = r->dead;
	r->dead = c;
	return ret;
}

static int ensure_buckets(struct ug_tcp_reasm *r)
{
	uint32_t n = 64;

	if (r->buckets)
		return 0;
	/* About two buckets per connection, within reason. */
	while (n < r->lim.max_connections * 2ull && n < (1u << 20))
		n *= 2;
	r->buckets = calloc(n, sizeof(*r->buckets));
	if (!r->buckets)
		return ug_errmsg_set(r->err, UG_E_NOMEM, "connection table of %u buckets", n);
	r->nbuckets = n;
	return 0;
}

/* A new connection from seg; client_is_src says which end is the client. */
static int open_conn(struct ug_tcp_reasm *r, const struct ug_tcp_segment *seg, uint32_t hash,
                     int client_is_src, const struct when *w, struct conn **ret_c)
{
	struct ug_capture_event ev;
	struct conn *c;
	int ret;

	if ((ret = ensure_buckets(r)) < 0)
		return ret;
	if (r->nconns >= r->lim.max_connections) {
		struct conn *victim = r->lru_head;

		ret = push_notice(r, victim, 0, w->ts, w->frame, UG_E_TOOBIG,
		                  "frame %llu: connection table full (%u connections): "
		                  "closing connection %u, the least recently active",
		                  (unsigned long long)w->frame, r->nconns, victim->info.id);
		if (ret == 0)
			ret = close_conn(r, victim, w, UG_CAPTURE_CLOSE_EVICTED);
		r->st.connections_evicted++;
		if (ret < 0)
			return ret;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return ug_errmsg_set(r->err, UG_E_NOMEM, "connection: out of memory");
	c->info.id = r->next_id++;
	c->hash = hash;
	c->info.client.family = c->info.server.family = seg->family;
	memcpy(c->info.client.addr, client_is_src ? seg->src : seg->dst, 16);
	memcpy(c->info.server.addr, client_is_src ? seg->dst : seg->src, 16);
	c->info.client.port = client_is_src ? seg->sport : seg->dport;
	c->info.server.port = client_is_src ? seg->dport : seg->sport;
	c->hnext = r->buckets[hash & (r->nbuckets - 1)];
	r->buckets[hash & (r->nbuckets - 1)] = c;
	lru_append(r, c);
	r->nconns++;
	r->st.connections++;
	*ret_c = c;
	base_event(&ev, UG_CAPTURE_OPEN, c, 0, w->ts, w->frame);
	return push(r, &ev, NULL);
}

/* The ACK of a segment of side !dir tells how far side dir was received. */
static int acknowledged(struct ug_tcp_reasm *r, struct conn *c, int dir, const struct when *w,
                        uint32_t ack)
{
	struct side *s = &c->side[dir];
	int64_t aoff;
	uint64_t target;

	if (!s->have_base) {
		/* Mid-stream: the peer's ACK says where this side's next byte
		 * is, so data missing before the first captured segment shows
		 * as a gap instead of passing unnoticed. */
		s->base = ack;
		s->have_base = 1;
		return 0;
	}
	aoff = seq_offset(s, ack);
	if (aoff <= 0 || (uint64_t)aoff <= s->next)
		return 0;
	target = (uint64_t)aoff;
	target = acked_limit(s, target);
	if (target <= s->next)
		return 0;
	/* Too far to act on alone (it may be garbage); a data segment that
	 * starts within it confirms it (payload()). */
	if (target - s->next > r->lim.window) {
		if (target > s->far_ack)
			s->far_ack = target;
		return 0;
	}
	/* One byte beyond the last one with nothing held is most likely the
	 * ACK of a FIN that was not captured, not a missing byte. */
	if (!s->fin && !s->ooo && target == s->next + 1)
		return 0;
	/* The data may still come: captures put an ACK before the segment it
	 * acknowledges when they merge queues or interfaces. The hole counts
	 * as lost once the reorder window has passed (check_acked()). */
	if (target > s->ack_target) {
		if (!s->ack_target)
			s->ack_wait = 0;
		s->ack_target = target;
	}
	return 0;
}

/* Declares acknowledged holes that stayed open for the reorder window. */
static int check_acked(struct ug_tcp_reasm *r, struct conn *c, const struct when *w)
{
	for (int d = 0; d < 2; d++) {
		struct side *s = &c->side[d];
		uint64_t t = acked_limit(s, s->ack_target);
		int ret;

		if (!s->ack_target)
			continue;
		if (t <= s->next) {
			s->ack_target = 0;
			continue;
		}
		if (++s->ack_wait < r->lim.reorder_window)
			continue;
		s->ack_target = 0;
		if ((ret = advance_to(r, c, d, w, t, UG_CAPTURE_GAP_NOT_CAPTURED)) < 0)
			return ret;
	}
	return 0;
}

int ug_tcp_reasm_segment(struct ug_tcp_reasm *r, const struct ug_tcp_segment *seg)
{
	struct when w = { seg->ts_ns, seg->frame };
	struct conn *c;
	struct side *s;
	uint32_t hash, dseq;
	int dir = 0, ret, syn, ack;

	release_drained(r);
	if ((seg->family != 4 && seg->family != 6) || seg->caplen > seg->len ||
	    (seg->caplen && !seg->data))
		return ug_errmsg_set(r->err, UG_E_INVAL,
		                     "frame %llu: bad segment (family %u, %u of %u bytes)",
		                     (unsigned long long)seg->frame, seg->family, seg->caplen,
		                     seg->len);
	r->fed = 1;
	r->st.segments++;
	syn = !!(seg->flags & UG_TCP_SYN);
	ack = !!(seg->flags & UG_TCP_ACK);
	hash = hash_segment(seg);
	c = lookup(r, seg, hash, &dir);

	/* A fresh SYN on known addresses and ports is a new connection unless
	 * it repeats the SYN already seen. */
	if (c && syn && !ack) {
		s = &c->side[dir];
		/* A SYN that arrives after the SYN+ACK (reordered, or
		 * retransmitted) fits the base the SYN+ACK acknowledged. */
		if (dir == 0 && s->have_base && s->base == seg->seq + 1u && !s->syn) {
			s->syn = 1;
			c->info.flags |= UG_CAPTURE_CONN_HANDSHAKE;
		}
		if (!(dir == 0 && s->syn && s->base == seg->seq + 1u)) {
			if ((ret = close_conn(r, c, &w, UG_CAPTURE_CLOSE_REUSED)) < 0)
				return ret;
			c = NULL;
		}
	}
	if (!c) {
		/* Pure ACKs and RSTs do not open a connection: they carry
		 * nothing to deliver and would guess the client wrong. */
		if (!syn && !(seg->flags & UG_TCP_FIN) && seg->len == 0)
			return 0;
		if (seg->flags & UG_TCP_RST)
			return 0;
		/* The SYN sender is the client; a SYN+ACK comes from the
		 * server; otherwise the first side seen sending is the client. */
		ret = open_conn(r, seg, hash, !(syn && ack), &w, &c);
		if (ret < 0)
			return ret;
		dir = syn && ack ? 1 : 0;
		if (syn && !ack)
			c->info.flags |= UG_CAPTURE_CONN_HANDSHAKE;
	} else {
		lru_unlink(r, c);
		lru_append(r, c);
	}
	s = &c->side[dir];

	if (seg->flags & UG_TCP_RST)
		return close_conn(r, c, &w, UG_CAPTURE_CLOSE_RST);

	if (syn) {
		/* The stream starts after the SYN, unless data was already
		 * placed relative to another guess. */
		if (!s->syn && s->next == 0 && !s->ooo) {
			s->base = seg->seq + 1u;
			s->have_base = 1;
			s->syn = 1;
		}
		dseq = seg->seq + 1u;
	} else {
		dseq = seg->seq;
		if (!s->have_base) {
			s->base = seg->seq;
			s->have_base = 1;
		}
	}

	if (seg->len > 0) {
		ret = payload(r, c, dir, &w, dseq, seg->data, seg->len, seg->caplen);
		if (ret < 0)
			return ret;
	}
	if ((seg->flags & UG_TCP_FIN) && !s->fin) {
		int64_t foff = seq_offset(s, dseq + seg->len);

		if (foff >= 0 && (uint64_t)foff >= s->next) {
			s->fin = 1;
			s->fin_off = (uint64_t)foff;
			trim_after_fin(r, s);
			if ((ret = check_end(r, c, dir, &w)) < 0)
				return ret;
		}
	}
	if (ack) {
		if ((ret = acknowledged(r, c, !dir, &w, seg->ack)) < 0)
			return ret;
	}
	if ((ret = check_acked(r, c, &w)) < 0)
		return ret;
	if (c->side[0].ended && c->side[1].ended)
		return close_conn(r, c, &w, UG_CAPTURE_CLOSE_FIN);
	return 0;
}

int ug_tcp_reasm_finish(struct ug_tcp_reasm *r, uint64_t ts_ns, uint64_t frame)
{
	struct when w = { ts_ns, frame };
	int ret;

	release_drained(r);
	while (r->lru_head) {
		if ((ret = close_conn(r, r->lru_head, &w, UG_CAPTURE_CLOSE_END)) < 0)
			return ret;
	}
	return 0;
}
