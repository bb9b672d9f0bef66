/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-stream.c: a passive decoder of one SPICE channel connection, both directions, into usbredir streams and events. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "spice-codec.h"
#include "spice-stream.h"

/*
 * Each direction has its own ug_spice_dec (the codec's framing) and a stage.
 * The decoder never holds a pointer into the caller's buffer once next() has
 * returned 0: what a waiting direction cannot decode yet is copied into its
 * bounded hold buffer. Offsets are absolute per direction (gaps included);
 * a direction's ug_spice_dec is replaced after lost framing, so "base" maps
 * its offsets to absolute ones.
 */

enum stage {
	ST_START,       /* nothing decided: "REDQ", TLS, or a mid-stream start */
	ST_LINK,        /* the link message (client) or link reply (server) */
	ST_WAIT_REPLY,  /* client: the reply decides whether an auth mechanism follows */
	ST_MECH,        /* client: u32 auth mechanism */
	ST_TICKET,      /* client: the 128-byte ticket, skipped */
	ST_RESULT,      /* server: u32 link result */
	ST_WAIT_DATA,   /* link done here; the header kind needs both link messages */
	ST_DATA,
	ST_SCAN,        /* framing lost: looking for a resync point in hold */
	ST_DONE,        /* nothing more is decoded (TLS, refused link, SASL): bytes counted */
};

struct side {
	enum stage stage;
	ug_spice_dec *dec;
	uint64_t base;          /* absolute offset of dec's offset 0 */
	uint64_t pos;           /* absolute offset after everything fed and gapped */
	uint64_t unit_end;      /* absolute end of the last unit dec returned */
	size_t unit_hdr;        /* header size of the unit dec expects now */
	struct ug_buf hold;     /* bytes not given to dec yet (START, waiting, SCAN) */
	const uint8_t *cur;     /* the caller's feed, not given to dec yet */
	size_t cur_len;
	const uint8_t *fed;     /* what dec was last fed from the caller */
	size_t fed_len;
	int dec_src;            /* 0: dec holds no pointer; 1: into hold; 2: into the caller's buffer */
	int damaged;            /* a gap fell inside the unit dec is assembling */
	int skipping;           /* dec is discarding a too-big body */
	int ended;
	int end_reported;
	int scan_noticed;
	uint64_t scan_skipped;  /* bytes skipped since the framing was lost */
	uint64_t usb_off;       /* usbredir bytes delivered */
};

#define QUEUE_MAX 4

struct ug_spice_stream {
	struct side side[2];
	uint32_t max_message;
	uint32_t max_hold;
	int started;
	/* What the link says, or what was assumed or guessed. */
	int have_mess, have_reply, link_reported;
	struct ug_spice_link_mess mess;
	struct ug_spice_link_reply reply;
	int mini;               /* -1 unknown, 0 full, 1 mini */
	int channel_known;
	unsigned channel_type, channel_id;
	int tls_reported;
	struct ug_buf lz4;      /* one decompressed COMPRESSED_DATA */
	struct ug_spice_channel_id ids[UG_SPICE_MAX_CHANNELS];
	struct ug_spice_stream_channel channels[UG_SPICE_MAX_CHANNELS];
	/* Events without views wait here (a step can make two). */
	struct ug_spice_stream_event queue[QUEUE_MAX];
	char queue_msg[QUEUE_MAX][UG_ERRMSG_SIZE];
	unsigned q_head, q_len;
	char msg[UG_ERRMSG_SIZE]; /* message of the event being returned */
	struct ug_spice_stream_stats stats;
	char err[UG_ERRMSG_SIZE];
};

static const char *dir_name(int s)
{
	return s ? "server->client" : "client->server";
}

UG_EXPORT ug_spice_stream *ug_spice_stream_new(void)
{
	ug_spice_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->max_message = UG_SPICE_STREAM_DEFAULT_MAX_MESSAGE;
	s->max_hold = UG_SPICE_STREAM_DEFAULT_MAX_HOLD;
	s->mini = -1;
	for (int i = 0; i < 2; i++)
		ug_buf_init(&s->side[i].hold, s->max_hold);
	ug_buf_init(&s->lz4, s->max_message);
	return s;
}

UG_EXPORT void ug_spice_stream_free(ug_spice_stream *s)
{
	if (!s)
		return;
	for (int i = 0; i < 2; i++) {
		ug_spice_dec_free(s->side[i].dec);
		ug_buf_release(&s->side[i].hold);
	}
	ug_buf_release(&s->lz4);
	free(s);
}

UG_EXPORT int ug_spice_stream_set_limits(ug_spice_stream *s, uint32_t max_message, uint32_t max_hold)
{
	if (s->started)
		return ug_errmsg_set(s->err, UG_E_STATE, "limits must be set before the first feed");
	if (max_message)
		s->max_message = max_message;
	if (max_hold) {
		/* The hold must take at least two data headers to judge a resync point. */
		if (max_hold < 64)
			return ug_errmsg_set(s->err, UG_E_INVAL, "hold limit %u below 64 bytes",
			                     max_hold);
		s->max_hold = max_hold;
	}
	for (int i = 0; i < 2; i++)
		s->side[i].hold.max = s->max_hold;
	s->lz4.max = s->max_message;
	return 0;
}

UG_EXPORT int ug_spice_stream_assume(ug_spice_stream *s, unsigned channel_type, unsigned channel_id,
                           int mini)
{
	if (s->started)
		return ug_errmsg_set(s->err, UG_E_STATE, "assume must come before the first feed");
	if (channel_type == 0 || channel_type > 255 || channel_id > 255)
		return ug_errmsg_set(s->err, UG_E_INVAL, "channel %u:%u is not a SPICE channel",
		                     channel_type, channel_id);
	s->channel_known = 1;
	s->channel_type = channel_type;
	s->channel_id = channel_id;
	s->mini = !!mini;
	return 0;
}

UG_EXPORT int ug_spice_stream_channel(const ug_spice_stream *s, unsigned *ret_type, unsigned *ret_id)
{
	if (!s->channel_known)
		return 0;
	*ret_type = s->channel_type;
	*ret_id = s->channel_id;
	return 1;
}

UG_EXPORT void ug_spice_stream_get_stats(const ug_spice_stream *s, struct ug_spice_stream_stats *ret)
{
	*ret = s->stats;
}

UG_EXPORT const char *ug_spice_stream_errmsg(const ug_spice_stream *s)
{
	return s->err;
}

/* ---- events ---------------------------------------------------------------- */

static void ev_init(ug_spice_stream *s, struct ug_spice_stream_event *ev,
                    enum ug_spice_stream_event_type type, int side, uint64_t offset)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->from_server = side;
	ev->offset = offset;
	ev->channel_type = s->channel_known ? s->channel_type : UG_SPICE_STREAM_CHANNEL_UNKNOWN;
	ev->channel_id = s->channel_known ? s->channel_id : 0;
	ev->dir = side ? UG_DIR_G2H : UG_DIR_H2G;
	ev->usbredir_offset = s->side[side].usb_off;
	ev->message = "";
}

/* Queues an event without views; the message is copied. Drops (and counts as
 * nothing) when the queue is full, which a step never makes it. */
static void queue_event(ug_spice_stream *s, enum ug_spice_stream_event_type type, int side,
                        uint64_t offset, int code, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void queue_event(ug_spice_stream *s, enum ug_spice_stream_event_type type, int side,
                        uint64_t offset, int code, const char *fmt, ...)
{
	unsigned i;
	va_list ap;

	if (s->q_len >= QUEUE_MAX)
		return;
	i = (s->q_head + s->q_len) % QUEUE_MAX;
	ev_init(s, &s->queue[i], type, side, offset);
	s->queue[i].code = code;
	va_start(ap, fmt);
	vsnprintf(s->queue_msg[i], UG_ERRMSG_SIZE, fmt, ap);
	va_end(ap);
	if (type == UG_SPICE_STREAM_ERROR)
		snprintf(s->err, sizeof(s->err), "%s", s->queue_msg[i]);
	s->q_len++;
}

static struct ug_spice_stream_event *queue_last(ug_spice_stream *s)
{
	return &s->queue[(s->q_head + s->q_len - 1) % QUEUE_MAX];
}

static int queue_pop(ug_spice_stream *s, struct ug_spice_stream_event *ret_ev)
{
	unsigned i = s->q_head;

	if (s->q_len == 0)
		return 0;
	*ret_ev = s->queue[i];
	snprintf(s->msg, sizeof(s->msg), "%s", s->queue_msg[i]);
	ret_ev->message = s->msg;
	s->q_head = (s->q_head + 1) % QUEUE_MAX;
	s->q_len--;
	return 1;
}

/* ---- plausibility of data headers (for resync) ----------------------------- */

int ug_spice_stream_type_plausible(unsigned channel_type, int from_server, unsigned type,
                                   uint32_t size)
{
	if (channel_type == SPICE_CHANNEL_USBREDIR ||
	    channel_type == UG_SPICE_STREAM_CHANNEL_UNKNOWN) {
		/* What spice-server and a usbredir client really send on this channel. */
		if (type == SPICE_MSG_SPICEVMC_DATA)
			return size >= 1;
		if (type == SPICE_MSG_SPICEVMC_COMPRESSED_DATA)
			return size > UG_SPICE_VMC_COMPRESSED_HEADER;
		if (from_server) {
			switch (type) {
			case SPICE_MSG_SET_ACK: return size == 8;
			case SPICE_MSG_PING: return size >= 12;
			case SPICE_MSG_DISCONNECTING: return size == 12;
			case SPICE_MSG_NOTIFY: return size >= 24;
			default: return 0;
			}
		}
		switch (type) {
		case SPICE_MSGC_ACK_SYNC: return size == 4;
		case SPICE_MSGC_ACK: return size == 0;
		case SPICE_MSGC_PONG: return size == 12;
		case SPICE_MSGC_DISCONNECTING: return size == 12;
		default: return 0;
		}
	}
	if (channel_type == SPICE_CHANNEL_MAIN) {
		if (type >= SPICE_MSG_MIGRATE && type <= SPICE_MSG_LIST)
			return 1;
		return from_server ? type >= 101 && type < SPICE_MSG_END_MAIN
		                   : type >= 101 && type < SPICE_MSGC_END_MAIN;
	}
	/* Other channels: common messages or channel messages below 400. */
	return (type >= 1 && type <= 8) || (type >= 101 && type < 400);
}

int ug_spice_stream_resync_check(const uint8_t *p, size_t len, int mini, unsigned channel_type,
                                 int from_server, uint32_t max_message, unsigned chain,
                                 int at_end)
{
	size_t hs = mini ? UG_SPICE_MINI_HEADER_SIZE : UG_SPICE_FULL_HEADER_SIZE;
	size_t off = 0;
	uint64_t last_serial = 0;
	unsigned n = 0;

	while (n < chain) {
		unsigned type;
		uint32_t size;

		if (off == len && at_end)
			return n >= 2;
		if (off > len || len - off < hs)
			return at_end ? 0 : -1;
		if (mini) {
			type = ug_get_le16(p + off);
			size = ug_get_le32(p + off + 2);
		} else {
			uint64_t serial = ug_get_le64(p + off);

			type = ug_get_le16(p + off + 8);
			size = ug_get_le32(p + off + 10);
			if (ug_get_le32(p + off + 14) != 0 || serial == 0)
				return 0;
			if (n > 0 && serial != last_serial + 1)
				return 0;
			last_serial = serial;
		}
		if (size > max_message ||
		    !ug_spice_stream_type_plausible(channel_type, from_server, type, size))
			return 0;
		if (type == SPICE_MSG_SPICEVMC_COMPRESSED_DATA &&
		    (channel_type == SPICE_CHANNEL_USBREDIR ||
		     channel_type == UG_SPICE_STREAM_CHANNEL_UNKNOWN) &&
		    len - off >= hs + UG_SPICE_VMC_COMPRESSED_HEADER) {
			uint32_t usize = ug_get_le32(p + off + hs + 1);

			if (p[off + hs] != SPICE_DATA_COMPRESSION_TYPE_LZ4 || usize == 0 ||
			    usize > max_message)
				return 0;
		}
		off += hs + (size_t)size;
		n++;
	}
	return 1;
}

/* ---- per-direction plumbing -------------------------------------------------- */

static size_t unit_header(enum ug_spice_unit_kind kind)
{
	switch (kind) {
	case UG_SPICE_UNIT_LINK: return UG_SPICE_LINK_HEADER_SIZE;
	case UG_SPICE_UNIT_MINI: return UG_SPICE_MINI_HEADER_SIZE;
	case UG_SPICE_UNIT_FULL: return UG_SPICE_FULL_HEADER_SIZE;
	case UG_SPICE_UNIT_FIXED:
	default: return 0;
	}
}

/* A fresh framing decoder for a direction whose next unit starts at abs. */
static int side_new_dec(ug_spice_stream *s, int i, enum ug_spice_unit_kind kind,
                        uint32_t fixed, uint64_t abs)
{
	struct side *d = &s->side[i];

	ug_spice_dec_free(d->dec);
	d->dec = ug_spice_dec_new(kind, fixed);
	if (!d->dec)
		return UG_E_NOMEM;
	ug_spice_dec_set_max_message(d->dec, s->max_message);
	d->base = abs;
	d->unit_end = abs;
	d->unit_hdr = unit_header(kind);
	d->damaged = 0;
	d->skipping = 0;
	return 0;
}

static void side_expect(struct side *d, enum ug_spice_unit_kind kind, uint32_t fixed)
{
	ug_spice_dec_expect(d->dec, kind, fixed);
	d->unit_hdr = unit_header(kind);
}

/* Takes dec's pointer back: bytes it has not consumed go (back) into hold. */
static int side_unfeed(ug_spice_stream *s, int i)
{
	struct side *d = &s->side[i];
	size_t left;

	if (d->dec_src == 0)
		return 0;
	left = ug_spice_dec_unfeed(d->dec);
	if (d->dec_src == 1) {
		ug_buf_consume(&d->hold, d->hold.len - left);
	} else if (left > 0) {
		int r = ug_buf_append(&d->hold, d->fed + d->fed_len - left, left);

		if (r < 0) {
			d->dec_src = 0;
			return r;
		}
	}
	d->dec_src = 0;
	return 0;
}

/* Moves the caller's pending bytes into hold (for stages that keep bytes). */
static int side_take_cur(ug_spice_stream *s, int i)
{
	struct side *d = &s->side[i];
	int r;

	if (d->cur_len == 0)
		return 0;
	r = ug_buf_append(&d->hold, d->cur, d->cur_len);
	if (r < 0)
		return r;
	d->cur = NULL;
	d->cur_len = 0;
	return 0;
}

static void side_done(ug_spice_stream *s, int i)
{
	struct side *d = &s->side[i];

	if (d->dec_src)
		ug_spice_dec_unfeed(d->dec);
	d->dec_src = 0;
	d->stage = ST_DONE;
	ug_buf_reset(&d->hold);
	d->cur = NULL;
	d->cur_len = 0;
}

/* The framing of direction i is lost: look for a resync point from its current offset. */
static void side_lost(ug_spice_stream *s, int i, const char *why)
{
	struct side *d = &s->side[i];

	if (d->dec_src)
		ug_spice_dec_unfeed(d->dec);
	d->dec_src = 0;
	if (s->channel_known && s->channel_type != SPICE_CHANNEL_USBREDIR &&
	    s->channel_type != SPICE_CHANNEL_MAIN) {
		/* Only usbredir and main carry anything decoded: the rest is just counted. */
		queue_event(s, UG_SPICE_STREAM_NOTICE, i, d->pos, UG_E_GAP,
		            "%s %s: channel %u:%u is not decoded from offset %llu on", dir_name(i),
		            why, s->channel_type, s->channel_id, (unsigned long long)d->pos);
		side_done(s, i);
		return;
	}
	d->stage = ST_SCAN;
	d->scan_noticed = 0;
	d->scan_skipped = 0;
	if (s->channel_type == SPICE_CHANNEL_USBREDIR || !s->channel_known)
		queue_event(s, UG_SPICE_STREAM_USBREDIR_GAP, i, d->pos, UG_E_GAP,
		            "%s %s: usbredir bytes lost; looking for the next SPICE message "
		            "from offset %llu", dir_name(i), why, (unsigned long long)d->pos);
}

/* ---- feeding ----------------------------------------------------------------- */

static int at_rest(const ug_spice_stream *s)
{
	return s->side[0].cur_len == 0 && s->side[1].cur_len == 0 && s->side[0].dec_src == 0 &&
	       s->side[1].dec_src == 0;
}

UG_EXPORT int ug_spice_stream_feed(ug_spice_stream *s, int from_server, const void *buf, size_t len)
{
	int i = !!from_server, r;
	struct side *d = &s->side[i];

	if (!at_rest(s))
		return ug_errmsg_set(s->err, UG_E_STATE, "feed before next() returned 0");
	if (d->ended)
		return ug_errmsg_set(s->err, UG_E_STATE, "%s fed after its end", dir_name(i));
	s->started = 1;
	if (len == 0)
		return 0;
	s->stats.bytes[i] += len;
	d->pos += len;
	if (d->stage == ST_DONE)
		return 0;
	d->cur = buf;
	d->cur_len = len;
	if (d->hold.len == 0 && d->stage != ST_SCAN && d->stage != ST_WAIT_REPLY &&
	    d->stage != ST_WAIT_DATA)
		return 0;
	if (d->stage == ST_SCAN && d->hold.len + len > s->max_hold) {
		/* The resync window is bounded: the oldest bytes are given up. */
		size_t keep = s->max_hold;

		if (len >= keep) {
			d->scan_skipped += d->hold.len + (len - keep);
			s->stats.resync_skipped += d->hold.len + (len - keep);
			ug_buf_reset(&d->hold);
			d->cur = (const uint8_t *)buf + (len - keep);
			d->cur_len = keep;
		} else {
			size_t drop = d->hold.len + len - keep;

			d->scan_skipped += drop;
			s->stats.resync_skipped += drop;
			ug_buf_consume(&d->hold, drop);
		}
	}
	r = side_take_cur(s, i);
	if (r < 0) {
		queue_event(s, UG_SPICE_STREAM_ERROR, i, d->pos - len, r,
		            "%s offset %llu: %zu bytes held waiting for the other direction, "
		            "limit %u: direction not decoded further", dir_name(i),
		            (unsigned long long)(d->pos - len), d->hold.len + len, s->max_hold);
		side_done(s, i);
	}
	return 0;
}

static const uint8_t zeros[4096];

/* Marks the current unit damaged by len missing bytes, keeping its framing:
 * the missing bytes are fed as zeros, up to the unit's end. */
static int gap_in_unit(ug_spice_stream *s, int i, uint64_t len)
{
	struct side *d = &s->side[i];
	struct ug_spice_unit u;
	uint64_t left = len;

	d->damaged = 1;
	while (left > 0) {
		size_t n = left < sizeof(zeros) ? (size_t)left : sizeof(zeros);
		int r;

		ug_spice_dec_feed(d->dec, zeros, n);
		r = ug_spice_dec_next(d->dec, &u);
		left -= n;
		if (r == 1) {
			/* The unit ended inside the gap: its end is where framing resumes
			 * only when the gap ends there too. */
			size_t rest = ug_spice_dec_unfeed(d->dec);

			left += rest;
			d->unit_end = d->base + u.offset + d->unit_hdr + u.size;
			d->damaged = 0;
			if (d->stage == ST_DATA &&
			    (s->channel_type == SPICE_CHANNEL_USBREDIR || !s->channel_known))
				queue_event(s, UG_SPICE_STREAM_USBREDIR_GAP, i, d->unit_end - u.size,
				            UG_E_GAP,
				            "%s offset %llu: message type %u of %u bytes damaged by a "
				            "gap of %llu bytes", dir_name(i),
				            (unsigned long long)(d->unit_end - u.size - d->unit_hdr),
				            u.type, u.size, (unsigned long long)len);
			if (d->stage == ST_TICKET)
				d->stage = ST_WAIT_DATA;
			return left > 0;
		}
		ug_spice_dec_unfeed(d->dec);
		if (r < 0)
			return 1;
	}
	return 0;
}

UG_EXPORT int ug_spice_stream_gap(ug_spice_stream *s, int from_server, uint64_t len)
{
	int i = !!from_server;
	struct side *d = &s->side[i];
	uint64_t at = d->pos;

	if (!at_rest(s))
		return ug_errmsg_set(s->err, UG_E_STATE, "gap before next() returned 0");
	if (d->ended)
		return ug_errmsg_set(s->err, UG_E_STATE, "%s gap after its end", dir_name(i));
	s->started = 1;
	if (len == 0)
		return 0;
	s->stats.gap_bytes[i] += len;
	if (d->stage == ST_DONE) {
		d->pos += len;
		return 0;
	}
	queue_event(s, UG_SPICE_STREAM_NOTICE, i, at, UG_E_GAP,
	            "%s: %llu bytes missing at offset %llu", dir_name(i),
	            (unsigned long long)len, (unsigned long long)at);
	if (d->stage == ST_SCAN) {
		/* Bytes before the gap cannot chain into bytes after it. */
		d->scan_skipped += d->hold.len;
		s->stats.resync_skipped += d->hold.len;
		ug_buf_reset(&d->hold);
		d->pos += len;
		return 0;
	}
	if (d->stage == ST_START) {
		d->pos += len;
		ug_buf_reset(&d->hold);
		side_lost(s, i, "begins with a gap");
		return 0;
	}
	/* The framing survives a gap that leaves the current unit's header intact,
	 * in the data phase and in the ticket (whose bytes are never looked at). */
	if ((d->stage == ST_DATA || d->stage == ST_TICKET) && d->hold.len == 0 && !d->skipping &&
	    at - d->unit_end >= d->unit_hdr) {
		int lost = gap_in_unit(s, i, len);

		d->pos += len;
		if (lost)
			side_lost(s, i, "gap over a message header");
		return 0;
	}
	ug_buf_reset(&d->hold);
	d->pos += len;
	side_lost(s, i, d->stage == ST_DATA ? "gap over a message header" : "gap in the link");
	return 0;
}

UG_EXPORT int ug_spice_stream_end(ug_spice_stream *s, int from_server)
{
	int i = !!from_server;

	if (!at_rest(s))
		return ug_errmsg_set(s->err, UG_E_STATE, "end before next() returned 0");
	s->side[i].ended = 1;
	return 0;
}

/* ---- link phase ---------------------------------------------------------------- */

static int both_caps(const ug_spice_stream *s, unsigned bit)
{
	return ug_spice_cap_test(s->mess.caps.common, s->mess.caps.num_common, bit) &&
	       ug_spice_cap_test(s->reply.caps.common, s->reply.caps.num_common, bit);
}

static void maybe_link_event(ug_spice_stream *s, int i, uint64_t offset)
{
	struct ug_spice_stream_event *ev;

	if (s->link_reported || !s->have_mess || !s->have_reply)
		return;
	s->link_reported = 1;
	s->mini = both_caps(s, SPICE_COMMON_CAP_MINI_HEADER);
	queue_event(s, UG_SPICE_STREAM_LINK, i, offset, 0, "%s channel %u:%u%s%s",
	            ug_spice_channel_type_name(s->channel_type), s->channel_type, s->channel_id,
	            s->reply.error ? ": link refused: " : "",
	            s->reply.error ? ug_spice_link_error_str(s->reply.error) : "");
	ev = queue_last(s);
	ev->session_id = s->mess.connection_id;
	ev->mini = s->mini;
	ev->link_error = s->reply.error;
	if (s->reply.error)
		ev->code = ug_spice_link_error_code(s->reply.error);
}

/* Moves a waiting direction on when the other direction's link is known.
 * Returns 1 while it still waits. */
static int side_unwait(ug_spice_stream *s, int i)
{
	struct side *d = &s->side[i];

	if (d->stage == ST_WAIT_REPLY) {
		if (!s->have_reply)
			return 1;
		if (s->reply.error) {
			side_done(s, i);
			return 0;
		}
		if (both_caps(s, SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION)) {
			d->stage = ST_MECH;
			side_expect(d, UG_SPICE_UNIT_FIXED, 4);
		} else {
			d->stage = ST_TICKET;
			side_expect(d, UG_SPICE_UNIT_FIXED, UG_SPICE_TICKET_SIZE);
		}
	}
	if (d->stage == ST_WAIT_DATA) {
		if (s->mini < 0)
			return 1;
		d->stage = ST_DATA;
		side_expect(d, s->mini ? UG_SPICE_UNIT_MINI : UG_SPICE_UNIT_FULL, 0);
	}
	return 0;
}

static int link_unit(ug_spice_stream *s, int i, const struct ug_spice_unit *u, uint64_t at)
{
	struct side *d = &s->side[i];
	char detail[UG_ERRMSG_SIZE];
	int r;

	if (u->link.major != SPICE_VERSION_MAJOR) {
		queue_event(s, UG_SPICE_STREAM_ERROR, i, at, UG_E_UNSUPPORTED,
		            "%s offset %llu: SPICE version %u.%u, only %u is decoded", dir_name(i),
		            (unsigned long long)at, u->link.major, u->link.minor,
		            SPICE_VERSION_MAJOR);
		side_done(s, i);
		return 1;
	}
	if (i == 0) {
		r = ug_spice_link_mess_decode(u->body, u->size, &s->mess, detail);
		if (r < 0)
			goto bad;
		s->have_mess = 1;
		if (!s->channel_known) {
			s->channel_known = 1;
			s->channel_type = s->mess.channel_type;
			s->channel_id = s->mess.channel_id;
		}
		d->stage = ST_WAIT_REPLY;
	} else {
		r = ug_spice_link_reply_decode(u->body, u->size, &s->reply, detail);
		if (r < 0)
			goto bad;
		s->have_reply = 1;
		if (s->reply.error) {
			side_done(s, i);
		} else {
			d->stage = ST_RESULT;
			side_expect(d, UG_SPICE_UNIT_FIXED, 4);
		}
	}
	maybe_link_event(s, i, at);
	return s->q_len > 0;
bad:
	queue_event(s, UG_SPICE_STREAM_ERROR, i, at, r, "%s offset %llu: %.200s", dir_name(i),
	            (unsigned long long)at, detail);
	side_done(s, i);
	return 1;
}

/* ---- data phase ------------------------------------------------------------------ */

/* Fills *ev for one data message; returns 1 when *ev is an event. */
static int data_unit(ug_spice_stream *s, int i, const struct ug_spice_unit *u, uint64_t at,
                     struct ug_spice_stream_event *ev)
{
	struct side *d = &s->side[i];
	char detail[UG_ERRMSG_SIZE];
	int usbredir = s->channel_type == SPICE_CHANNEL_USBREDIR;
	int r;

	s->stats.messages[i]++;
	if (d->damaged) {
		d->damaged = 0;
		s->stats.skipped_messages[i]++;
		if (!usbredir)
			return 0;
		ev_init(s, ev, UG_SPICE_STREAM_USBREDIR_GAP, i, at);
		ev->code = UG_E_GAP;
		if (u->type == SPICE_MSG_SPICEVMC_DATA)
			ev->gap_len = u->size;
		snprintf(s->msg, sizeof(s->msg),
		         "%s offset %llu: message type %u of %u bytes damaged by a gap", dir_name(i),
		         (unsigned long long)at, u->type, u->size);
		ev->message = s->msg;
		return 1;
	}
	if (usbredir && u->type == SPICE_MSG_SPICEVMC_DATA) {
		if (u->size == 0)
			return 0;
		ev_init(s, ev, UG_SPICE_STREAM_USBREDIR_DATA, i, at);
		ev->data = u->body;
		ev->len = u->size;
		d->usb_off += u->size;
		s->stats.usbredir_bytes[ev->dir] += u->size;
		return 1;
	}
	if (usbredir && u->type == SPICE_MSG_SPICEVMC_COMPRESSED_DATA) {
		ug_buf_reset(&s->lz4);
		r = ug_spice_vmc_decompress(u->body, u->size, s->max_message, &s->lz4, detail);
		if (r < 0) {
			ev_init(s, ev, UG_SPICE_STREAM_USBREDIR_GAP, i, at);
			ev->code = r;
			if (u->size >= UG_SPICE_VMC_COMPRESSED_HEADER && r != UG_E_TOOBIG)
				ev->gap_len = ug_get_le32(u->body + 1);
			snprintf(s->msg, sizeof(s->msg), "%s offset %llu: %.200s", dir_name(i),
			         (unsigned long long)at, detail);
			ev->message = s->msg;
			return 1;
		}
		ev_init(s, ev, UG_SPICE_STREAM_USBREDIR_DATA, i, at);
		ev->data = ug_buf_peek(&s->lz4);
		ev->len = s->lz4.len;
		ev->compressed = 1;
		d->usb_off += s->lz4.len;
		s->stats.usbredir_bytes[ev->dir] += s->lz4.len;
		s->stats.lz4_messages[ev->dir]++;
		return 1;
	}
	if (s->channel_type == SPICE_CHANNEL_MAIN && i == 1 && u->type == SPICE_MSG_MAIN_INIT) {
		struct ug_spice_main_init mi;

		r = ug_spice_main_init_decode(u->body, u->size, &mi, detail);
		if (r < 0)
			goto notice;
		ev_init(s, ev, UG_SPICE_STREAM_MAIN_INIT, i, at);
		ev->session_id = mi.session_id;
		return 1;
	}
	if (s->channel_type == SPICE_CHANNEL_MAIN && i == 1 &&
	    u->type == SPICE_MSG_MAIN_CHANNELS_LIST) {
		size_t n = 0;

		r = ug_spice_channels_list_decode(u->body, u->size, s->ids, UG_SPICE_MAX_CHANNELS,
		                                  &n, detail);
		if (r < 0)
			goto notice;
		for (size_t k = 0; k < n; k++) {
			s->channels[k].type = s->ids[k].type;
			s->channels[k].id = s->ids[k].id;
		}
		ev_init(s, ev, UG_SPICE_STREAM_CHANNELS, i, at);
		ev->channels = s->channels;
		ev->n_channels = n;
		return 1;
	}
	s->stats.skipped_messages[i]++;
	return 0;
notice:
	s->stats.skipped_messages[i]++;
	ev_init(s, ev, UG_SPICE_STREAM_NOTICE, i, at);
	ev->code = r;
	snprintf(s->msg, sizeof(s->msg), "%s offset %llu: %.200s", dir_name(i), (unsigned long long)at,
	         detail);
	ev->message = s->msg;
	return 1;
}

/* ---- the start of a direction and resync ---------------------------------------- */

/* Decides what a direction starts with; 1 when decided, 0 for more bytes. */
static int side_start(ug_spice_stream *s, int i)
{
	struct side *d = &s->side[i];
	uint8_t b[4];
	size_t have = 0;

	for (size_t k = 0; k < d->hold.len && have < 4; k++)
		b[have++] = ug_buf_peek(&d->hold)[k];
	for (size_t k = 0; k < d->cur_len && have < 4; k++)
		b[have++] = d->cur[k];
	if (have == 0)
		return 0;
	if (b[0] == 0x16 && (have < 2 || b[1] == 0x03)) {
		s->stats.encrypted = 1;
		if (!s->tls_reported) {
			s->tls_reported = 1;
			queue_event(s, UG_SPICE_STREAM_ERROR, i, 0, UG_E_ENCRYPTED,
			            "%s begins with a TLS handshake record: the connection is "
			            "encrypted and is not decoded", dir_name(i));
		}
		side_done(s, i);
		side_done(s, !i);
		return 1;
	}
	if (have >= 4 && memcmp(b, "REDQ", 4) == 0) {
		if (side_new_dec(s, i, UG_SPICE_UNIT_LINK, 0, 0) < 0) {
			queue_event(s, UG_SPICE_STREAM_ERROR, i, 0, UG_E_NOMEM, "out of memory");
			side_done(s, i);
			return 1;
		}
		d->stage = ST_LINK;
		return 1;
	}
	if (have < 4 && memcmp(b, "REDQ", have) == 0 && !d->ended) {
		if (side_take_cur(s, i) < 0)
			side_done(s, i);
		return 0;
	}
	/* No link: the capture started after it. */
	if (side_take_cur(s, i) < 0) {
		side_done(s, i);
		return 1;
	}
	d->stage = ST_SCAN;
	d->scan_noticed = 0;
	queue_event(s, UG_SPICE_STREAM_NOTICE, i, 0, UG_E_PROTO,
	            "%s does not begin with a SPICE link (\"REDQ\"): the connection was "
	            "captured mid-stream; looking for SPICE data messages", dir_name(i));
	return 1;
}

/* Looks for a resync point in hold; 1 when found (or an event was queued). */
static int side_scan(ug_spice_stream *s, int i)
{
	struct side *d = &s->side[i];
	const uint8_t *h = ug_buf_peek(&d->hold);
	size_t n = d->hold.len, p;
	unsigned ch = s->channel_known ? s->channel_type : UG_SPICE_STREAM_CHANNEL_UNKNOWN;
	int full = n >= s->max_hold;

	for (p = 0; p < n; p++) {
		int undecided = 0;

		for (int kind = 1; kind >= 0; kind--) {
			int r;

			if (s->mini >= 0 && kind != s->mini)
				continue;
			r = ug_spice_stream_resync_check(h + p, n - p, kind, ch, i, s->max_message,
			                                 UG_SPICE_STREAM_RESYNC_CHAIN, d->ended);
			if (r == 1) {
				uint64_t abs = d->pos - n + p;
				int guessed = s->mini < 0 || !s->channel_known;

				s->stats.resyncs++;
				s->stats.resync_skipped += p;
				d->scan_skipped += p;
				ug_buf_consume(&d->hold, p);
				if (s->mini < 0)
					s->mini = kind;
				if (!s->channel_known) {
					s->channel_known = 1;
					s->channel_type = SPICE_CHANNEL_USBREDIR;
					s->channel_id = 0;
				}
				if (side_new_dec(s, i, kind ? UG_SPICE_UNIT_MINI : UG_SPICE_UNIT_FULL, 0,
				                 abs) < 0) {
					side_done(s, i);
					return 1;
				}
				d->stage = ST_DATA;
				queue_event(s, UG_SPICE_STREAM_NOTICE, i, abs, UG_E_GAP,
				            "%s resynchronised at offset %llu after skipping %llu bytes"
				            "%s%s", dir_name(i), (unsigned long long)abs,
				            (unsigned long long)d->scan_skipped,
				            guessed ? ": assumed " : "",
				            guessed ? (kind ? "a usbredir channel with mini headers"
				                            : "a usbredir channel with full headers")
				                    : "");
				/* The other direction may have waited for the header kind. */
				return 1;
			}
			if (r < 0)
				undecided = 1;
		}
		if (undecided && !full)
			break;
	}
	if (p > 0) {
		s->stats.resync_skipped += p;
		d->scan_skipped += p;
		ug_buf_consume(&d->hold, p);
	}
	if (d->ended && !d->end_reported) {
		d->end_reported = 1;
		queue_event(s, UG_SPICE_STREAM_NOTICE, i, d->pos, UG_E_TRUNCATED,
		            "%s ended before a resync point was found: %llu bytes skipped",
		            dir_name(i), (unsigned long long)d->scan_skipped);
		ug_buf_reset(&d->hold);
		return 1;
	}
	return 0;
}

/* ---- the step ---------------------------------------------------------------------- */

/* One step of direction i: 1 with *ev (or queued events), 0 when it needs more. */
static int side_step(ug_spice_stream *s, int i, struct ug_spice_stream_event *ev)
{
	struct side *d = &s->side[i];
	struct ug_spice_unit u;
	uint64_t at;
	int r;

	for (;;) {
		switch (d->stage) {
		case ST_DONE:
			d->cur = NULL;
			d->cur_len = 0;
			return 0;
		case ST_START:
			if (!side_start(s, i))
				return 0;
			if (s->q_len)
				return 1;
			continue;
		case ST_SCAN:
			if (side_take_cur(s, i) < 0) {
				ug_buf_reset(&d->hold);
				continue;
			}
			return side_scan(s, i);
		case ST_WAIT_REPLY:
		case ST_WAIT_DATA:
			if (side_unwait(s, i)) {
				r = side_unfeed(s, i);
				if (r == 0)
					r = side_take_cur(s, i);
				if (r < 0) {
					queue_event(s, UG_SPICE_STREAM_ERROR, i, d->pos, r,
					            "%s: more than %u bytes held waiting for the other "
					            "direction's link: direction not decoded further",
					            dir_name(i), s->max_hold);
					side_done(s, i);
					return 1;
				}
				return 0;
			}
			continue;
		default:
			break;
		}
		/* A stage that decodes units with dec. */
		if (d->dec_src == 0) {
			if (d->hold.len > 0) {
				ug_spice_dec_feed(d->dec, ug_buf_peek(&d->hold), d->hold.len);
				d->dec_src = 1;
			} else if (d->cur_len > 0) {
				ug_spice_dec_feed(d->dec, d->cur, d->cur_len);
				d->fed = d->cur;
				d->fed_len = d->cur_len;
				d->cur = NULL;
				d->cur_len = 0;
				d->dec_src = 2;
			}
		}
		/* Nothing fed means nothing to decode (and the codec must not be
		 * asked: it would step a NULL input pointer while skipping). */
		r = d->dec_src ? ug_spice_dec_next(d->dec, &u) : 0;
		if (r == 0) {
			if (d->dec_src == 1)
				ug_buf_reset(&d->hold);
			if (d->dec_src)
				ug_spice_dec_unfeed(d->dec);
			d->dec_src = 0;
			if (d->hold.len > 0 || d->cur_len > 0)
				continue;
			if (d->ended && !d->end_reported) {
				d->end_reported = 1;
				if (d->pos > d->unit_end) {
					ev_init(s, ev, UG_SPICE_STREAM_NOTICE, i, d->unit_end);
					ev->code = UG_E_TRUNCATED;
					snprintf(s->msg, sizeof(s->msg),
					         "%s ends inside a unit at offset %llu (%llu bytes of it "
					         "captured)", dir_name(i),
					         (unsigned long long)d->unit_end,
					         (unsigned long long)(d->pos - d->unit_end));
					ev->message = s->msg;
					return 1;
				}
			}
			return 0;
		}
		if (r < 0) {
			char msg[UG_ERRMSG_SIZE];

			snprintf(msg, sizeof(msg), "%s", ug_spice_dec_errmsg(d->dec));
			if (r == UG_E_TOOBIG) {
				/* The codec skips the body and goes on after it. */
				d->skipping = 1;
				if (s->channel_type == SPICE_CHANNEL_USBREDIR && d->stage == ST_DATA)
					queue_event(s, UG_SPICE_STREAM_USBREDIR_GAP, i, d->unit_end,
					            r, "%s: %.200s", dir_name(i), msg);
				else
					queue_event(s, UG_SPICE_STREAM_NOTICE, i, d->unit_end, r,
					            "%s: %.200s", dir_name(i), msg);
				return 1;
			}
			queue_event(s, UG_SPICE_STREAM_ERROR, i, d->unit_end, r, "%s: %s",
			            dir_name(i), msg);
			side_done(s, i);
			return 1;
		}
		at = d->base + u.offset;
		d->unit_end = at + d->unit_hdr + u.size;
		d->skipping = 0;
		switch (d->stage) {
		case ST_LINK:
			if (link_unit(s, i, &u, at))
				return 1;
			continue;
		case ST_MECH: {
			uint32_t mech = ug_get_le32(u.body);

			if (mech != SPICE_COMMON_CAP_AUTH_SPICE) {
				queue_event(s, UG_SPICE_STREAM_ERROR, i, at, UG_E_UNSUPPORTED,
				            "%s offset %llu: auth mechanism %u (SASL): the rest of "
				            "the connection is not decoded", dir_name(i),
				            (unsigned long long)at, mech);
				side_done(s, i);
				side_done(s, !i);
				return 1;
			}
			d->stage = ST_TICKET;
			side_expect(d, UG_SPICE_UNIT_FIXED, UG_SPICE_TICKET_SIZE);
			continue;
		}
		case ST_TICKET:
			/* Skipped: the ticket is never exposed. */
			d->stage = ST_WAIT_DATA;
			continue;
		case ST_RESULT: {
			uint32_t result = ug_get_le32(u.body);

			if (result != SPICE_LINK_ERR_OK) {
				queue_event(s, UG_SPICE_STREAM_ERROR, i, at,
				            ug_spice_link_error_code(result),
				            "%s offset %llu: link result %u: %s", dir_name(i),
				            (unsigned long long)at, result,
				            ug_spice_link_error_str(result));
				queue_last(s)->link_error = result;
				side_done(s, i);
				side_done(s, !i);
				return 1;
			}
			d->stage = ST_WAIT_DATA;
			continue;
		}
		case ST_DATA:
			if (data_unit(s, i, &u, at, ev))
				return 1;
			continue;
		default:
			continue;
		}
	}
}

UG_EXPORT int ug_spice_stream_next(ug_spice_stream *s, struct ug_spice_stream_event *ret_ev)
{
	struct ug_spice_stream_event ev;

	for (;;) {
		int progress = 0;

		if (queue_pop(s, ret_ev))
			return 1;
		for (int i = 0; i < 2; i++) {
			int r;

			if (s->side[i].stage == ST_DONE && s->side[i].cur_len == 0)
				continue;
			memset(&ev, 0, sizeof(ev));
			r = side_step(s, i, &ev);
			if (r == 1) {
				/* A step either queues events or returns one in ev. */
				if (queue_pop(s, ret_ev))
					return 1;
				*ret_ev = ev;
				return 1;
			}
			if (s->q_len > 0)
				progress = 1;
		}
		if (!progress)
			return 0;
	}
}
