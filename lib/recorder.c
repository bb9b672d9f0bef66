/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* recorder.c: usbredir sessions through decoder and tracker into usbmon pcap, raw record and text. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/*
 * Sessions open at once in one recorder; one more is refused loudly. An
 * ended session is freed at once, so a daemon recording connection after
 * connection keeps only the live ones.
 */
#define MAX_SESSIONS 1024

struct session {
	int number;
	char label[160];
	ug_usbredir_session *dec;
	ug_tracker *tracker;
	ug_usbmon *usbmon;
	uint64_t last_ts[2];    /* per direction: the time of the last feed */
	uint64_t fed[2];        /* per direction: bytes fed */
	int lost[2];            /* per direction: decoding stopped after a gap */
	int failed;             /* the decoder gave up on the session for good */
	int unknown_said;       /* an unknown packet type was warned about */
};

struct output {
	ug_pcap_writer *w;
	int error;              /* sticky: 0 or the first write error */
};

struct ug_recorder {
	struct session **live;  /* open sessions, in the order they were added */
	int nlive;
	int cap_live;
	int last_number;        /* numbers run 1..last_number; the others ended */
	uint64_t last_ts;       /* the latest timestamp fed to any session */
	struct output usbmon, raw;
	FILE *text;
	enum ug_render_format text_format;
	int text_error;
	ug_log_fn log;
	void *log_user;
	uint16_t bus;
	uint8_t first_device;
	uint32_t max_packet;
	uint64_t packet_limit;  /* 0: none */
	int have_t0;
	uint64_t t0;            /* the first timestamp: text shows time since it */
	struct ug_recorder_stats stats;
	int first_error;
	char errmsg[UG_ERRMSG_SIZE];
};

static const char *dir_name(enum ug_dir dir)
{
	return dir == UG_DIR_G2H ? "guest->host" : "host->guest";
}

/* Logs through the object's callback (lib/error.c formats). */
#define logf_(o, ...) ug_log_emit((o)->log, (o)->log_user, __VA_ARGS__)

UG_EXPORT ug_recorder *ug_recorder_new(void)
{
	ug_recorder *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->bus = 1;
	r->first_device = 1;
	r->max_packet = UG_USBREDIR_DEFAULT_MAX_PACKET;
	r->text_format = UG_RENDER_SUMMARY;
	return r;
}

static void session_free(struct session *s)
{
	if (!s)
		return;
	ug_usbredir_session_free(s->dec);
	ug_tracker_free(s->tracker);
	ug_usbmon_free(s->usbmon);
	free(s);
}

UG_EXPORT void ug_recorder_free(ug_recorder *r)
{
	if (!r)
		return;
	ug_recorder_finish(r);
	for (int i = 0; i < r->nlive; i++)
		session_free(r->live[i]);
	free(r->live);
	free(r);
}

static int open_output(ug_recorder *r, struct output *o, const char *path, int linktype)
{
	int e;

	if (!path || o->w)
		return UG_E_INVAL;
	o->w = ug_pcap_writer_new();
	if (!o->w)
		return UG_E_NOMEM;
	e = ug_pcap_writer_open(o->w, path, linktype);
	if (e < 0) {
		ug_errmsg_set(r->errmsg, e, "%s", ug_pcap_writer_errmsg(o->w));
		ug_pcap_writer_free(o->w);
		o->w = NULL;
	}
	return e;
}

UG_EXPORT int ug_recorder_open_usbmon(ug_recorder *r, const char *path)
{
	return open_output(r, &r->usbmon, path, UG_USBMON_LINKTYPE);
}

UG_EXPORT int ug_recorder_open_raw(ug_recorder *r, const char *path)
{
	return open_output(r, &r->raw, path, UG_RAW_LINKTYPE);
}

UG_EXPORT void ug_recorder_set_text(ug_recorder *r, FILE *out, enum ug_render_format format)
{
	r->text = out;
	r->text_format = format;
}

UG_EXPORT void ug_recorder_set_log(ug_recorder *r, ug_log_fn fn, void *user_data)
{
	r->log = fn;
	r->log_user = user_data;
}

UG_EXPORT int ug_recorder_set_address(ug_recorder *r, uint16_t bus, uint8_t first_device)
{
	if (first_device == 0 || first_device > 127)
		return UG_E_INVAL;
	r->bus = bus;
	r->first_device = first_device;
	return 0;
}

UG_EXPORT int ug_recorder_set_max_packet(ug_recorder *r, uint32_t max)
{
	if (max < 64)
		return UG_E_INVAL;
	r->max_packet = max;
	for (int i = 0; i < r->nlive; i++)
		ug_usbredir_session_set_max_packet(r->live[i]->dec, max);
	return 0;
}

UG_EXPORT int ug_recorder_set_packet_limit(ug_recorder *r, uint64_t max)
{
	r->packet_limit = max;
	return 0;
}

UG_EXPORT int ug_recorder_limit_reached(const ug_recorder *r)
{
	return r->packet_limit && r->stats.packets >= r->packet_limit;
}

/* The open session with this number; NULL, with *ret_ended set when it was
 * one of ours that has ended (its calls are accepted and ignored). */
static struct session *get_session(ug_recorder *r, int number, int *ret_ended)
{
	*ret_ended = 0;
	if (number < 1 || number > r->last_number)
		return NULL;
	/* Newest first: a proxy's live session is usually the last one added. */
	for (int i = r->nlive - 1; i >= 0; i--)
		if (r->live[i]->number == number)
			return r->live[i];
	*ret_ended = 1;
	return NULL;
}

/* Takes an ended session out of the open ones and frees it. */
static void drop_session(ug_recorder *r, struct session *s)
{
	for (int i = 0; i < r->nlive; i++) {
		if (r->live[i] != s)
			continue;
		memmove(&r->live[i], &r->live[i + 1], (size_t)(r->nlive - i - 1) * sizeof(*r->live));
		r->nlive--;
		break;
	}
	session_free(s);
}

UG_EXPORT int ug_recorder_add_session(ug_recorder *r, const char *label)
{
	struct session *s;
	int n;
	uint8_t dev;

	if (r->last_number == INT_MAX)
		return ug_errmsg_set(r->errmsg, UG_E_TOOBIG, "more than %d sessions in all",
				     INT_MAX);
	n = r->last_number + 1;
	/* Device numbers run through 1..127 from the first one. */
	dev = (uint8_t)((r->first_device - 1 + (n - 1)) % 127 + 1);
	if (r->nlive >= MAX_SESSIONS)
		return ug_errmsg_set(r->errmsg, UG_E_TOOBIG,
				     "session %d: more than %d sessions open at once", n,
				     MAX_SESSIONS);
	if (r->nlive == r->cap_live) {
		int cap = r->cap_live ? r->cap_live * 2 : 8;
		struct session **p = realloc(r->live, (size_t)cap * sizeof(*p));

		if (!p)
			return UG_E_NOMEM;
		r->live = p;
		r->cap_live = cap;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return UG_E_NOMEM;
	s->number = n;
	snprintf(s->label, sizeof(s->label), "%s", label ? label : "");
	s->dec = ug_usbredir_session_new();
	s->tracker = ug_tracker_new();
	s->usbmon = ug_usbmon_new();
	if (!s->dec || !s->tracker || !s->usbmon) {
		session_free(s);
		return UG_E_NOMEM;
	}
	ug_usbredir_session_set_max_packet(s->dec, r->max_packet);
	ug_usbmon_set_address(s->usbmon, r->bus, dev);
	r->live[r->nlive++] = s;
	r->last_number = n;
	r->stats.sessions++;
	if (r->text && r->text_format != UG_RENDER_JSON &&
	    fprintf(r->text, "session %d: %s (usbmon bus %u device %u)\n", n, s->label,
		    (unsigned)r->bus, (unsigned)dev) < 0)
		r->text_error = UG_E_IO;
	logf_(r, UG_LOG_INFO, "session %d: %s (usbmon bus %u device %u)", n, s->label,
	      (unsigned)r->bus, (unsigned)dev);
	return n;
}

UG_EXPORT int ug_recorder_set_session_caps(ug_recorder *r, int session, uint32_t caps)
{
	int ended;
	struct session *s = get_session(r, session, &ended);

	if (!s)
		return ended ? 0 : UG_E_INVAL;
	return ug_usbredir_session_set_caps(s->dec, caps);
}

/* Records an output's first error and says so once; later writes are skipped. */
static void output_failed(ug_recorder *r, struct output *o, int e, const char *what)
{
	o->error = e;
	if (!r->first_error) {
		r->first_error = e;
		ug_errmsg_set(r->errmsg, e, "%s: %s", what, ug_pcap_writer_errmsg(o->w));
	}
	logf_(r, UG_LOG_ERROR, "%s output stopped: %s", what, ug_pcap_writer_errmsg(o->w));
}

static void write_usbmon_events(ug_recorder *r, struct session *s)
{
	struct ug_transfer_event ev;
	struct ug_usbmon_record rec;
	int e;

	while (ug_tracker_next(s->tracker, &ev) == 1) {
		if (ev.kind == UG_TRANSFER_NOTICE)
			logf_(r, UG_LOG_WARNING, "session %d: %s", s->number,
			      ev.note ? ev.note : "tracker notice");
		if (ug_usbmon_map(s->usbmon, &ev, &rec) != 1)
			continue;
		if (ev.kind == UG_TRANSFER_COMPLETE)
			r->stats.transfers++;
		if (!r->usbmon.w || r->usbmon.error)
			continue;
		e = ug_pcap_writer_write_usbmon(r->usbmon.w, &rec);
		if (e < 0)
			output_failed(r, &r->usbmon, e, "usbmon pcap");
		else
			r->stats.usbmon_records++;
	}
}

static void record_packet(ug_recorder *r, struct session *s, const struct ug_usbredir_packet *pkt,
			  uint64_t ts_ns)
{
	uint32_t caps = ug_usbredir_session_caps(s->dec);
	int caps_known = ug_usbredir_session_caps_known(s->dec);
	int e;

	if (r->packet_limit && r->stats.packets >= r->packet_limit)
		return;
	r->stats.packets++;
	if (!pkt->known) {
		/* Framing holds (it is skipped by its length), but nothing in it is
		 * understood: counted always, said once per session so that a
		 * peer sending many does not flood the log. */
		r->stats.unknown_packets++;
		if (!s->unknown_said) {
			s->unknown_said = 1;
			logf_(r, UG_LOG_WARNING,
			      "session %d: %s offset %llu: unknown usbredir packet type %u, "
			      "length %u: not decoded (further ones in this session are only "
			      "counted)",
			      s->number, dir_name(pkt->dir), (unsigned long long)pkt->offset,
			      pkt->type, pkt->length);
		}
	}
	if (r->raw.w && !r->raw.error) {
		struct ug_raw_record raw = {
			.dir = pkt->dir,
			.ts_ns = ts_ns,
			.caps = caps,
			.caps_known = caps_known,
			.session = (uint32_t)s->number,
			.bytes = pkt->raw,
			.len = pkt->raw_len,
		};

		e = ug_pcap_writer_write_raw(r->raw.w, &raw);
		if (e < 0)
			output_failed(r, &r->raw, e, "raw record");
	}
	if (r->text && !r->text_error &&
	    ug_render_packet(r->text, r->text_format, ts_ns - r->t0, (uint32_t)s->number, pkt) < 0)
		r->text_error = UG_E_IO;
	ug_tracker_push(s->tracker, pkt, ts_ns);
	write_usbmon_events(r, s);
}

/*
 * Drains both directions: a hello in one direction can make the other's held
 * bytes decodable, so both are polled until neither yields a packet.
 */
static void drain(ug_recorder *r, struct session *s)
{
	struct ug_usbredir_packet pkt;
	int progress = 1;

	while (progress && !s->failed) {
		progress = 0;
		for (int d = 0; d < 2; d++) {
			enum ug_dir dir = (enum ug_dir)d;
			int e;

			if (s->lost[d])
				continue;
			while ((e = ug_usbredir_session_next(s->dec, dir, &pkt)) != 0) {
				if (e == 1) {
					record_packet(r, s, &pkt, s->last_ts[d]);
					progress = 1;
					continue;
				}
				r->stats.decode_errors++;
				logf_(r, UG_LOG_WARNING, "session %d: %s", s->number,
				      ug_usbredir_session_errmsg(s->dec));
				if (e != UG_E_PROTO && e != UG_E_TOOBIG) {
					/* The decoder cannot go on: the rest is forwarded or
					 * skipped, not decoded. */
					s->failed = 1;
					logf_(r, UG_LOG_WARNING,
					      "session %d: decoding stops here (%s)", s->number,
					      ug_strerror(e));
					break;
				}
				progress = 1;
			}
		}
	}
}

UG_EXPORT int ug_recorder_feed(ug_recorder *r, int session, enum ug_dir dir, const void *data,
			       size_t len, uint64_t ts_ns)
{
	int ended, e;
	struct session *s = get_session(r, session, &ended);

	if ((!s && !ended) || (dir != UG_DIR_G2H && dir != UG_DIR_H2G) || (!data && len))
		return UG_E_INVAL;
	if (!r->have_t0) {
		r->have_t0 = 1;
		r->t0 = ts_ns;
	}
	if (ts_ns < r->t0)
		ts_ns = r->t0;
	if (ts_ns > r->last_ts)
		r->last_ts = ts_ns;
	r->stats.bytes += len;
	/* Bytes after a session's end are counted, not decoded. */
	if (!s)
		return r->first_error;
	s->last_ts[dir] = ts_ns;
	s->fed[dir] += len;
	if (s->failed || s->lost[dir])
		return r->first_error;
	e = ug_usbredir_session_feed(s->dec, dir, data, len);
	if (e < 0) {
		r->stats.decode_errors++;
		s->failed = 1;
		logf_(r, UG_LOG_WARNING, "session %d: %s; decoding stops here", s->number,
		      ug_usbredir_session_errmsg(s->dec));
		return r->first_error;
	}
	drain(r, s);
	return r->first_error;
}

UG_EXPORT int ug_recorder_gap(ug_recorder *r, int session, enum ug_dir dir, uint64_t len,
			      uint64_t ts_ns)
{
	int ended;
	struct session *s = get_session(r, session, &ended);

	if ((!s && !ended) || (dir != UG_DIR_G2H && dir != UG_DIR_H2G))
		return UG_E_INVAL;
	r->stats.gaps++;
	if (!s || s->lost[dir] || s->failed)
		return r->first_error;
	s->lost[dir] = 1;
	logf_(r, UG_LOG_WARNING,
	      "session %d: %s: %llu bytes missing after stream offset %llu; decoding of this "
	      "direction stops (usbredir has no markers to resynchronise on)",
	      s->number, dir_name(dir), (unsigned long long)len,
	      (unsigned long long)ug_usbredir_session_offset(s->dec, dir));
	(void)ts_ns;
	return r->first_error;
}

UG_EXPORT int ug_recorder_end_session(ug_recorder *r, int session, uint64_t ts_ns)
{
	int ended;
	struct session *s = get_session(r, session, &ended);

	if (!s)
		return ended ? r->first_error : UG_E_INVAL;
	for (int d = 0; d < 2 && !s->failed; d++) {
		uint64_t done = ug_usbredir_session_offset(s->dec, (enum ug_dir)d);

		if (!s->lost[d] && s->fed[d] > done) {
			r->stats.decode_errors++;
			logf_(r, UG_LOG_WARNING,
			      "session %d: %s: the stream ends inside a packet: %llu bytes after "
			      "offset %llu were not decoded",
			      s->number, dir_name((enum ug_dir)d),
			      (unsigned long long)(s->fed[d] - done), (unsigned long long)done);
		}
	}
	if (ts_ns < r->t0)
		ts_ns = r->t0;
	ug_tracker_finish(s->tracker, ts_ns);
	write_usbmon_events(r, s);
	drop_session(r, s);
	return r->first_error;
}

static void close_output(ug_recorder *r, struct output *o, const char *what)
{
	int e;

	if (!o->w)
		return;
	e = ug_pcap_writer_close(o->w);
	if (e < 0 && !o->error)
		output_failed(r, o, e, what);
	ug_pcap_writer_free(o->w);
	o->w = NULL;
}

UG_EXPORT int ug_recorder_finish(ug_recorder *r)
{
	uint64_t now = r->last_ts > r->t0 ? r->last_ts : r->t0;

	/* Each end takes the session out of the open ones. */
	while (r->nlive > 0)
		ug_recorder_end_session(r, r->live[0]->number, now);
	close_output(r, &r->usbmon, "usbmon pcap");
	close_output(r, &r->raw, "raw record");
	if (r->text && !r->text_error && fflush(r->text) != 0)
		r->text_error = UG_E_IO;
	if (r->text_error && !r->first_error) {
		r->first_error = r->text_error;
		ug_errmsg_set(r->errmsg, r->text_error, "text output: write error");
	}
	return r->first_error;
}

UG_EXPORT void ug_recorder_get_stats(const ug_recorder *r, struct ug_recorder_stats *ret_stats)
{
	*ret_stats = r->stats;
}

UG_EXPORT const char *ug_recorder_errmsg(const ug_recorder *r)
{
	return r->errmsg;
}
