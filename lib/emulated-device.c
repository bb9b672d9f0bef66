/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* emulated-device.c: the usb-host endpoint that answers a guest from a recorded session. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "buf.h"
#include "common.h"
#include "replay.h"
#include "usbredir-codec.h"

/* How far one match looks through an endpoint's recorded requests; bounds
 * the work a guest can cause per request. */
#define SCAN_MAX 65536u
/* Pushed stream data waits while this much is queued on the transport. */
#define PUSH_HIGH_WATER (4u * 1024u * 1024u)
/* Caps QEMU needs to attach a device behind xhci, plus device versions. */
#define REQUIRED_CAPS ((1u << usb_redir_cap_ep_info_max_packet_size) | \
		       (1u << usb_redir_cap_32bits_bulk_length) | \
		       (1u << usb_redir_cap_64bits_ids) | \
		       (1u << usb_redir_cap_connect_device_version))

/* Recorded requests of one (type, endpoint), in capture order. */
struct key_list {
	GArray *idx;            /* size_t recorded packet indices */
	guint first_unused;
};

/* Host-pushed data of one endpoint and where its replay stands. */
struct stream {
	GArray *idx;            /* size_t indices of pushed packets, capture order */
	int active;
	guint pos;
	size_t end;             /* recorded index where this receiving period ends */
	uint64_t rec_base_ns;   /* recorded time of the start request */
	gint64 mono_base_us;    /* when the guest started it */
};

struct ug_emulated_device {
	const ug_recording *rec;
	const ug_replay_rules *rules;
	size_t n;
	int64_t *reply_of;      /* request index -> answer index, -1 none */
	uint8_t *used;
	GHashTable *keys;       /* (type << 8 | ep) -> struct key_list */
	GArray *order;          /* every matchable request, capture order (strict) */
	guint strict_pos;
	struct stream streams[32];
	size_t anchor;
	int strict;
	enum ug_replay_pace pace;
	unsigned stream_delay_ms;
	uint8_t unmatched_status;
	uint32_t max_packet;
	ug_log_fn log;
	void *log_data;
	ug_replay_done_fn done;
	void *done_data;

	ug_transport *t;
	ug_usbredir_session *s;
	uint32_t caps;
	int started, ended, hello_seen;
	uint64_t fed;           /* guest bytes fed to the decoder */
	uint8_t bot_tag[4];
	int bot_tag_valid;
	uint8_t configuration;
	guint pump_source;
	gint64 start_us;
	struct ug_buf out;
	ug_replay_report *report;
	char errmsg[UG_ERRMSG_SIZE];
};

/* Logs through the object's callback (lib/error.c formats). */
#define logf_(o, ...) ug_log_emit((o)->log, (o)->log_data, __VA_ARGS__)

static int ep_index(uint8_t ep)
{
	return ((ep & 0x80) >> 3) | (ep & 0x0f);
}

/* Matching key: the type and, for endpoint packets, the endpoint; control
 * packets are keyed by direction only. */
static guint key_of(const struct ug_usbredir_packet *p)
{
	uint8_t ep = ug_replay_endpoint(p);

	if (p->type == usb_redir_control_packet)
		ep = p->h.control_packet.requesttype & 0x80;
	return (p->type << 8) | ep;
}

static void key_free(gpointer p)
{
	struct key_list *k = p;

	g_array_free(k->idx, TRUE);
	g_free(k);
}

static int build_index(ug_emulated_device *d)
{
	struct ug_recorded_packet rp;
	uint8_t *is_answer = calloc(d->n, 1);

	if (!is_answer)
		return UG_E_NOMEM;
	ug_replay_pair(d->rec, d->reply_of);
	for (size_t i = 0; i < d->n; i++)
		if (d->reply_of[i] >= 0)
			is_answer[d->reply_of[i]] = 1;
	for (size_t i = 0; i < d->n; i++) {
		struct key_list *k;
		guint key;

		ug_recording_get(d->rec, i, &rp);
		if (rp.pkt.dir == UG_DIR_H2G && !is_answer[i] &&
		    (rp.pkt.type == usb_redir_interrupt_packet || rp.pkt.type == usb_redir_iso_packet ||
		     rp.pkt.type == usb_redir_buffered_bulk_packet)) {
			struct stream *st = &d->streams[ep_index(ug_replay_endpoint(&rp.pkt))];

			if (!st->idx)
				st->idx = g_array_new(FALSE, FALSE, sizeof(size_t));
			g_array_append_val(st->idx, i);
			continue;
		}
		if (d->reply_of[i] < 0)
			continue;
		key = key_of(&rp.pkt);
		k = g_hash_table_lookup(d->keys, GUINT_TO_POINTER(key));
		if (!k) {
			k = g_new0(struct key_list, 1);
			k->idx = g_array_new(FALSE, FALSE, sizeof(size_t));
			g_hash_table_insert(d->keys, GUINT_TO_POINTER(key), k);
		}
		g_array_append_val(k->idx, i);
		g_array_append_val(d->order, i);
	}
	free(is_answer);
	return 0;
}

UG_EXPORT ug_emulated_device *ug_emulated_device_new(const ug_recording *rec,
						     const ug_replay_rules *rules)
{
	ug_emulated_device *d;

	if (!rec || !ug_recording_count(rec))
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->rec = rec;
	d->rules = rules;
	d->n = ug_recording_count(rec);
	d->reply_of = calloc(d->n, sizeof(*d->reply_of));
	d->used = calloc(d->n, 1);
	d->report = ug_replay_report_new("usbreplay.device");
	if (!d->reply_of || !d->used || !d->report) {
		ug_emulated_device_free(d);
		return NULL;
	}
	d->keys = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, key_free);
	d->order = g_array_new(FALSE, FALSE, sizeof(size_t));
	d->unmatched_status = usb_redir_stall;
	d->max_packet = UG_EMULATED_DEFAULT_MAX_PACKET;
	ug_buf_init(&d->out, (size_t)UG_USBREDIR_DEFAULT_MAX_PACKET + 64);
	if (build_index(d) < 0) {
		ug_emulated_device_free(d);
		return NULL;
	}
	return d;
}

UG_EXPORT void ug_emulated_device_stop(ug_emulated_device *d)
{
	if (!d)
		return;
	if (d->pump_source) {
		g_source_remove(d->pump_source);
		d->pump_source = 0;
	}
	if (d->t) {
		ug_transport_free(d->t);
		d->t = NULL;
	}
	d->ended = 1;
}

UG_EXPORT void ug_emulated_device_free(ug_emulated_device *d)
{
	if (!d)
		return;
	ug_emulated_device_stop(d);
	ug_usbredir_session_free(d->s);
	if (d->keys)
		g_hash_table_destroy(d->keys);
	if (d->order)
		g_array_free(d->order, TRUE);
	for (int i = 0; i < 32; i++)
		if (d->streams[i].idx)
			g_array_free(d->streams[i].idx, TRUE);
	ug_buf_release(&d->out);
	ug_replay_report_free(d->report);
	free(d->reply_of);
	free(d->used);
	free(d);
}

UG_EXPORT void ug_emulated_device_set_strict(ug_emulated_device *d, int strict)
{
	if (d)
		d->strict = !!strict;
}

UG_EXPORT void ug_emulated_device_set_pace(ug_emulated_device *d, enum ug_replay_pace pace)
{
	if (d)
		d->pace = pace;
}

UG_EXPORT void ug_emulated_device_set_stream_delay(ug_emulated_device *d, unsigned ms)
{
	if (d)
		d->stream_delay_ms = ms;
}

UG_EXPORT void ug_emulated_device_set_unmatched_status(ug_emulated_device *d, uint8_t status)
{
	if (d)
		d->unmatched_status = status;
}

UG_EXPORT int ug_emulated_device_set_max_packet(ug_emulated_device *d, uint32_t max)
{
	if (!d || max < 1024)
		return UG_E_INVAL;
	d->max_packet = max;
	return 0;
}

UG_EXPORT void ug_emulated_device_set_log(ug_emulated_device *d, ug_log_fn fn, void *user_data)
{
	if (d) {
		d->log = fn;
		d->log_data = user_data;
	}
}

UG_EXPORT void ug_emulated_device_set_done(ug_emulated_device *d, ug_replay_done_fn fn,
					   void *user_data)
{
	if (d) {
		d->done = fn;
		d->done_data = user_data;
	}
}

UG_EXPORT const ug_replay_report *ug_emulated_device_report(const ug_emulated_device *d)
{
	return d ? d->report : NULL;
}

/* ---- sending ------------------------------------------------------------- */

static int send_pkt(ug_emulated_device *d, const struct ug_usbredir_packet *p)
{
	size_t need = 0;
	int rc;

	if (!d->t)
		return UG_E_CLOSED;
	rc = ug_usbredir_encode(d->caps, p, NULL, 0, &need);
	if (rc != UG_E_TOOBIG && rc < 0)
		return rc;
	ug_buf_reset(&d->out);
	if ((rc = ug_buf_reserve(&d->out, need)) < 0)
		return rc;
	if ((rc = ug_usbredir_encode(d->caps, p, d->out.data + d->out.start, need, &need)) < 0)
		return rc;
	ug_buf_commit(&d->out, need);
	return ug_transport_send(d->t, d->out.data + d->out.start, need);
}

/* Sends recorded packet idx, with id replaced by the guest's, and control
 * IN data cut to max_in bytes. */
static int send_recorded(ug_emulated_device *d, size_t idx, uint64_t id, uint32_t max_in)
{
	struct ug_recorded_packet rp;
	uint8_t csw[13];

	ug_recording_get(d->rec, idx, &rp);
	rp.pkt.id = id;
	if (rp.pkt.type == usb_redir_control_packet && rp.pkt.data_len > max_in) {
		rp.pkt.data_len = max_in;
		rp.pkt.h.control_packet.length = (uint16_t)max_in;
	}
	/* A bulk-only mass storage status carries the tag of its command:
	 * answer with the guest's tag, which may differ from the recorded. */
	if (rp.pkt.type == usb_redir_bulk_packet && rp.pkt.data_len == 13 && d->bot_tag_valid &&
	    ug_replay_rules_bot_tags(d->rules) && !memcmp(rp.pkt.data, "USBS", 4)) {
		memcpy(csw, rp.pkt.data, 13);
		memcpy(csw + 4, d->bot_tag, 4);
		rp.pkt.data = csw;
	}
	return send_pkt(d, &rp.pkt);
}

/* ---- matching ------------------------------------------------------------ */

static int is_cbw(const uint8_t *p, size_t len)
{
	return len == 31 && !memcmp(p, "USBC", 4);
}

/* 1 if recorded request rp answers live request gp; *ret_diff gets the
 * first differing data byte (or -1). */
static int request_matches(const ug_emulated_device *d, const struct ug_usbredir_packet *gp,
			   const struct ug_usbredir_packet *rp, long *ret_diff)
{
	long lo = 0, hi = -1;

	*ret_diff = -1;
	switch (gp->type) {
	case usb_redir_control_packet: {
		uint8_t a[8], b[8];

		ug_replay_setup_bytes(&gp->h.control_packet, a);
		ug_replay_setup_bytes(&rp->h.control_packet, b);
		if (!ug_replay_setup_equal(d->rules, a, b))
			return 0;
		if (gp->h.control_packet.requesttype & 0x80)
			return 1;
		break;
	}
	case usb_redir_bulk_packet:
	case usb_redir_interrupt_packet:
	case usb_redir_iso_packet:
		if (ug_replay_endpoint(gp) & 0x80)
			return ug_replay_rules_ignores(d->rules, UG_REPLAY_FIELD_LENGTH) ||
			       ug_replay_length(gp) == ug_replay_length(rp);
		if (ug_replay_rules_bot_tags(d->rules) && is_cbw(gp->data, gp->data_len)) {
			lo = 4;
			hi = 7;
		}
		break;
	case usb_redir_set_configuration:
		return gp->h.set_configuration.configuration == rp->h.set_configuration.configuration;
	case usb_redir_set_alt_setting:
		return gp->h.set_alt_setting.interface == rp->h.set_alt_setting.interface &&
		       gp->h.set_alt_setting.alt == rp->h.set_alt_setting.alt;
	case usb_redir_get_alt_setting:
		return gp->h.get_alt_setting.interface == rp->h.get_alt_setting.interface;
	default:
		return 1;
	}
	*ret_diff = ug_replay_data_diff(d->rules, ug_replay_endpoint(gp), rp->data, rp->data_len,
					gp->data, gp->data_len, lo, hi);
	return *ret_diff < 0;
}

static guint lower_bound(GArray *a, size_t v)
{
	guint lo = 0, hi = a->len;

	while (lo < hi) {
		guint mid = lo + (hi - lo) / 2;

		if (g_array_index(a, size_t, mid) < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Finds the recorded request for gp: returns its index or -1; *ret_reused
 * says it had been answered before; *ret_near is the recorded request
 * shown as "expected" when nothing matches (-1 if none). */
static long find_match(ug_emulated_device *d, const struct ug_usbredir_packet *gp,
		       int *ret_reused, long *ret_near, long *ret_diff)
{
	struct key_list *k = g_hash_table_lookup(d->keys, GUINT_TO_POINTER(key_of(gp)));
	struct ug_recorded_packet rp;
	guint pos, scanned = 0;
	long diff = -1; /* no byte compared yet: the keys may already differ */

	*ret_reused = 0;
	*ret_near = -1;
	*ret_diff = -1;
	if (d->strict) {
		size_t i;

		if (d->strict_pos >= d->order->len)
			return -1;
		i = g_array_index(d->order, size_t, d->strict_pos);
		*ret_near = (long)i;
		ug_recording_get(d->rec, i, &rp);
		if (key_of(&rp.pkt) != key_of(gp) || !request_matches(d, gp, &rp.pkt, &diff)) {
			*ret_diff = diff;
			return -1;
		}
		d->strict_pos++;
		return (long)i;
	}
	if (!k)
		return -1;
	while (k->first_unused < k->idx->len && d->used[g_array_index(k->idx, size_t, k->first_unused)])
		k->first_unused++;
	if (k->first_unused < k->idx->len)
		*ret_near = (long)g_array_index(k->idx, size_t, k->first_unused);
	pos = lower_bound(k->idx, d->anchor);
	if (pos < k->first_unused)
		pos = k->first_unused;
	/* First the transfers after the last one matched, then the earlier
	 * unused ones, then, as a last resort, one already answered. */
	for (guint j = pos; j < k->idx->len && scanned < SCAN_MAX; j++) {
		size_t i = g_array_index(k->idx, size_t, j);

		if (d->used[i])
			continue;
		scanned++;
		ug_recording_get(d->rec, i, &rp);
		if (request_matches(d, gp, &rp.pkt, &diff))
			return (long)i;
		if ((long)i == *ret_near)
			*ret_diff = diff;
	}
	for (guint j = k->first_unused; j < pos && scanned < SCAN_MAX; j++) {
		size_t i = g_array_index(k->idx, size_t, j);

		if (d->used[i])
			continue;
		scanned++;
		ug_recording_get(d->rec, i, &rp);
		if (request_matches(d, gp, &rp.pkt, &diff))
			return (long)i;
		if ((long)i == *ret_near)
			*ret_diff = diff;
	}
	for (guint j = k->idx->len; j-- > 0 && scanned < SCAN_MAX;) {
		size_t i = g_array_index(k->idx, size_t, j);

		if (!d->used[i])
			continue;
		scanned++;
		ug_recording_get(d->rec, i, &rp);
		if (request_matches(d, gp, &rp.pkt, &diff)) {
			*ret_reused = 1;
			return (long)i;
		}
	}
	/* A descriptor read with a shorter wLength than any recorded one (a
	 * BIOS reads the first 8 bytes of the device descriptor, Linux all
	 * 18) is answered as the device would: the recorded bytes, cut. */
	if (gp->type == usb_redir_control_packet && gp->h.control_packet.request == 6 &&
	    (gp->h.control_packet.requesttype & 0x80)) {
		for (guint j = 0; j < k->idx->len && j < SCAN_MAX; j++) {
			size_t i = g_array_index(k->idx, size_t, j);
			const struct usb_redir_control_packet_header *c;

			ug_recording_get(d->rec, i, &rp);
			c = &rp.pkt.h.control_packet;
			if (c->requesttype == gp->h.control_packet.requesttype && c->request == 6 &&
			    c->value == gp->h.control_packet.value &&
			    c->index == gp->h.control_packet.index &&
			    c->length > gp->h.control_packet.length) {
				*ret_reused = 2;
				return (long)i;
			}
		}
	}
	return -1;
}

/* ---- streams ------------------------------------------------------------- */

static gboolean pump_cb(gpointer data);

static void schedule_pump(ug_emulated_device *d, guint ms)
{
	if (d->pump_source || d->ended)
		return;
	d->pump_source = g_timeout_add(ms, pump_cb, d);
}

/* Pushes what is due on every active stream; returns the delay (ms) until
 * the next packet is due, or -1 when nothing waits. */
static long pump(ug_emulated_device *d)
{
	gint64 now = g_get_monotonic_time();
	long next = -1;

	for (int k = 0; k < 32; k++) {
		struct stream *st = &d->streams[k];

		while (st->active && st->idx && st->pos < st->idx->len) {
			size_t i = g_array_index(st->idx, size_t, st->pos);
			struct ug_recorded_packet rp;

			if (i >= st->end) {
				st->active = 0;
				break;
			}
			if (d->t && ug_transport_pending(d->t) > PUSH_HIGH_WATER) {
				next = 5;
				break;
			}
			if (now < st->mono_base_us) {
				long ms = (long)((st->mono_base_us - now + 999) / 1000);

				if (next < 0 || ms < next)
					next = ms;
				break;
			}
			ug_recording_get(d->rec, i, &rp);
			if (d->pace == UG_PACE_RECORDED && rp.ts_ns > st->rec_base_ns) {
				gint64 due = st->mono_base_us +
					     (gint64)((rp.ts_ns - st->rec_base_ns) / 1000u);

				if (due > now) {
					long ms = (long)((due - now + 999) / 1000);

					if (next < 0 || ms < next)
						next = ms;
					break;
				}
			}
			if (send_pkt(d, &rp.pkt) < 0) {
				next = 5;
				break;
			}
			ug_replay_report_counters(d->report)->pushed++;
			st->pos++;
		}
	}
	return next;
}

static gboolean pump_cb(gpointer data)
{
	ug_emulated_device *d = data;
	long next;

	d->pump_source = 0;
	next = pump(d);
	if (next >= 0)
		schedule_pump(d, (guint)next);
	return G_SOURCE_REMOVE;
}

static void start_stream(ug_emulated_device *d, uint8_t ep, long matched)
{
	struct stream *st = &d->streams[ep_index(ep)];
	struct ug_recorded_packet rp;
	size_t from = matched >= 0 ? (size_t)matched : d->anchor;

	if (!st->idx)
		return;
	st->active = 1;
	st->pos = lower_bound(st->idx, from);
	st->end = d->n;
	/* The period ends at the next recorded start or stop on this endpoint. */
	for (size_t i = from + 1; i < d->n; i++) {
		ug_recording_get(d->rec, i, &rp);
		if (rp.pkt.dir != UG_DIR_G2H || ug_replay_endpoint(&rp.pkt) != ep)
			continue;
		if (rp.pkt.type == usb_redir_start_interrupt_receiving ||
		    rp.pkt.type == usb_redir_stop_interrupt_receiving ||
		    rp.pkt.type == usb_redir_start_iso_stream ||
		    rp.pkt.type == usb_redir_stop_iso_stream ||
		    rp.pkt.type == usb_redir_start_bulk_receiving ||
		    rp.pkt.type == usb_redir_stop_bulk_receiving) {
			st->end = i;
			break;
		}
	}
	ug_recording_get(d->rec, from, &rp);
	st->rec_base_ns = rp.ts_ns;
	st->mono_base_us = g_get_monotonic_time() + (gint64)d->stream_delay_ms * 1000;
	if (d->pump_source) {
		g_source_remove(d->pump_source);
		d->pump_source = 0;
	}
	schedule_pump(d, 0);
}

/* ---- guest requests ------------------------------------------------------ */

/* The answer for a request nothing in the recording matches. */
static void answer_unmatched(ug_emulated_device *d, const struct ug_usbredir_packet *gp)
{
	struct ug_usbredir_packet a;
	int at = ug_replay_answer_type(gp->type);

	memset(&a, 0, sizeof(a));
	a.type = (uint32_t)at;
	a.id = gp->id;
	switch (gp->type) {
	case usb_redir_control_packet:
		a.h.control_packet = gp->h.control_packet;
		a.h.control_packet.status = d->unmatched_status;
		a.h.control_packet.length = 0;
		break;
	case usb_redir_bulk_packet:
		a.h.bulk_packet = gp->h.bulk_packet;
		a.h.bulk_packet.status = d->unmatched_status;
		a.h.bulk_packet.length = a.h.bulk_packet.length_high = 0;
		break;
	case usb_redir_interrupt_packet:
		a.h.interrupt_packet = gp->h.interrupt_packet;
		a.h.interrupt_packet.status = d->unmatched_status;
		a.h.interrupt_packet.length = 0;
		break;
	case usb_redir_iso_packet:
		a.h.iso_packet = gp->h.iso_packet;
		a.h.iso_packet.status = d->unmatched_status;
		a.h.iso_packet.length = 0;
		break;
	case usb_redir_set_configuration:
	case usb_redir_get_configuration:
		a.h.configuration_status.status = d->unmatched_status;
		a.h.configuration_status.configuration = d->configuration;
		break;
	case usb_redir_set_alt_setting:
	case usb_redir_get_alt_setting:
		a.h.alt_setting_status.status = d->unmatched_status;
		a.h.alt_setting_status.interface = gp->h.set_alt_setting.interface;
		break;
	case usb_redir_start_iso_stream:
	case usb_redir_stop_iso_stream:
		a.h.iso_stream_status.status = d->unmatched_status;
		a.h.iso_stream_status.endpoint = ug_replay_endpoint(gp);
		break;
	case usb_redir_start_interrupt_receiving:
	case usb_redir_stop_interrupt_receiving:
		a.h.interrupt_receiving_status.status = d->unmatched_status;
		a.h.interrupt_receiving_status.endpoint = ug_replay_endpoint(gp);
		break;
	case usb_redir_alloc_bulk_streams:
	case usb_redir_free_bulk_streams:
		a.h.bulk_streams_status.status = d->unmatched_status;
		break;
	case usb_redir_start_bulk_receiving:
	case usb_redir_stop_bulk_receiving:
		a.h.bulk_receiving_status.status = d->unmatched_status;
		a.h.bulk_receiving_status.endpoint = ug_replay_endpoint(gp);
		break;
	default:
		return;
	}
	send_pkt(d, &a);
}

static void handle_request(ug_emulated_device *d, const struct ug_usbredir_packet *gp)
{
	struct ug_replay_summary *sum = ug_replay_report_counters(d->report);
	int reused;
	long near, diff, m;
	char what[160];

	sum->requests++;
	if (ug_replay_rules_bot_tags(d->rules) && gp->type == usb_redir_bulk_packet &&
	    is_cbw(gp->data, gp->data_len)) {
		memcpy(d->bot_tag, gp->data + 4, 4);
		d->bot_tag_valid = 1;
	}
	m = find_match(d, gp, &reused, &near, &diff);
	ug_replay_describe(gp, what, sizeof(what));
	if (m < 0) {
		struct ug_recorded_packet rp;
		char reason[160];
		int exp_status = -1;
		uint32_t exp_len = 0;
		const uint8_t *exp_data = NULL;
		uint32_t exp_data_len = 0;
		uint64_t record = 0;

		if (near >= 0) {
			ug_recording_get(d->rec, (size_t)near, &rp);
			record = rp.record;
			exp_status = -1;
			exp_len = ug_replay_length(&rp.pkt);
			exp_data = rp.pkt.data;
			exp_data_len = rp.pkt.data_len;
			if (diff >= 0)
				snprintf(reason, sizeof(reason),
					 "no recorded transfer matches: the next recorded one here differs at data byte %ld",
					 diff);
			else
				snprintf(reason, sizeof(reason),
					 "no recorded transfer matches: the next recorded one here is different");
		} else {
			snprintf(reason, sizeof(reason),
				 "no recorded transfer matches: none left on this endpoint");
		}
		logf_(d, UG_LOG_WARNING, "request %llu: %s: %s; answered with status %s",
		      (unsigned long long)sum->requests, what, reason,
		      ug_render_status_name(d->unmatched_status));
		ug_replay_report_add(d->report, record, sum->requests, what, reason, diff, exp_status,
				     exp_len, exp_data, exp_data_len, d->unmatched_status,
				     ug_replay_length(gp), gp->data, gp->data_len);
		answer_unmatched(d, gp);
		return;
	}
	if (reused == 2) {
		/* A cut answer does not use up the recorded transfer. */
		sum->reused++;
		logf_(d, UG_LOG_INFO, "request %llu: %s: answered from packet %ld, cut to %u bytes",
		      (unsigned long long)sum->requests, what, m, gp->h.control_packet.length);
		send_recorded(d, (size_t)d->reply_of[m], gp->id, gp->h.control_packet.length);
		return;
	}
	d->used[m] = 1;
	d->anchor = (size_t)m;
	if (reused)
		sum->reused++;
	else
		sum->matched++;
	logf_(d, UG_LOG_DEBUG, "request %llu: %s: answered from packet %ld%s",
	      (unsigned long long)sum->requests, what, m, reused ? " (again)" : "");
	if (gp->type == usb_redir_set_configuration || gp->type == usb_redir_set_alt_setting) {
		/* A real host re-sends the endpoint and interface layout
		 * before the status: so do the recorded ones. */
		int64_t a = d->reply_of[m];

		for (int64_t i = m + 1; i < a; i++) {
			struct ug_recorded_packet rp;

			ug_recording_get(d->rec, (size_t)i, &rp);
			if (rp.pkt.dir == UG_DIR_H2G && (rp.pkt.type == usb_redir_ep_info ||
							 rp.pkt.type == usb_redir_interface_info))
				send_pkt(d, &rp.pkt);
		}
		if (gp->type == usb_redir_set_configuration)
			d->configuration = gp->h.set_configuration.configuration;
	}
	send_recorded(d, (size_t)d->reply_of[m], gp->id, UINT32_MAX);
	switch (gp->type) {
	case usb_redir_start_interrupt_receiving:
	case usb_redir_start_iso_stream:
	case usb_redir_start_bulk_receiving:
		start_stream(d, ug_replay_endpoint(gp), m);
		break;
	case usb_redir_stop_interrupt_receiving:
	case usb_redir_stop_iso_stream:
	case usb_redir_stop_bulk_receiving:
		d->streams[ep_index(ug_replay_endpoint(gp))].active = 0;
		break;
	default:
		break;
	}
}

/* After both hellos: the device as the recorded host offered it. */
static void offer_device(ug_emulated_device *d)
{
	int have[3] = { 0, 0, 0 };
	static const uint32_t types[3] = { usb_redir_ep_info, usb_redir_interface_info,
					   usb_redir_device_connect };

	for (int t = 0; t < 3; t++) {
		for (size_t i = 0; i < d->n && !have[t]; i++) {
			struct ug_recorded_packet rp;

			ug_recording_get(d->rec, i, &rp);
			if (rp.pkt.dir != UG_DIR_H2G || rp.pkt.type != types[t])
				continue;
			have[t] = 1;
			send_pkt(d, &rp.pkt);
		}
	}
}

static void handle_packet(ug_emulated_device *d, const struct ug_usbredir_packet *gp)
{
	switch (gp->type) {
	case usb_redir_hello: {
		struct usb_redir_device_connect_header dc;

		if (d->hello_seen)
			return;
		d->hello_seen = 1;
		d->caps = ug_usbredir_session_caps(d->s);
		offer_device(d);
		ug_recording_device(d->rec, &dc);
		logf_(d, UG_LOG_INFO, "guest hello: device %04x:%04x offered", dc.vendor_id, dc.product_id);
		return;
	}
	case usb_redir_cancel_data_packet:
		/* Every request is answered at once, so there is never one
		 * left to cancel; like usbredirhost, ignore late cancels. */
	case usb_redir_filter_filter:
	case usb_redir_device_disconnect_ack:
	case usb_redir_reset:
		return;
	default:
		if (ug_replay_answer_type(gp->type) < 0) {
			char what[160];

			ug_replay_describe(gp, what, sizeof(what));
			ug_replay_report_counters(d->report)->requests++;
			ug_replay_report_add(d->report, 0, ug_replay_report_counters(d->report)->requests,
					     what, "a packet a usb-guest does not send", -1, -1, 0, NULL,
					     0, -1, 0, NULL, 0);
			return;
		}
		handle_request(d, gp);
	}
}

static void finish(ug_emulated_device *d, int error, const char *message)
{
	struct ug_replay_summary *sum = ug_replay_report_counters(d->report);

	if (d->ended)
		return;
	d->ended = 1;
	if (d->pump_source) {
		g_source_remove(d->pump_source);
		d->pump_source = 0;
	}
	sum->unused = 0;
	for (guint j = 0; j < d->order->len; j++)
		if (!d->used[g_array_index(d->order, size_t, j)])
			sum->unused++;
	sum->elapsed_ns = (uint64_t)(g_get_monotonic_time() - d->start_us) * 1000u;
	if (d->done)
		d->done(d, error, message, d->done_data);
}

static void on_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	ug_emulated_device *d = user_data;
	struct ug_usbredir_packet p;
	int rc;

	(void)t;
	if (d->ended)
		return;
	if ((rc = ug_usbredir_session_feed(d->s, UG_DIR_G2H, data, len)) < 0)
		goto fatal;
	d->fed += len;
	for (;;) {
		rc = ug_usbredir_session_next(d->s, UG_DIR_G2H, &p);
		if (rc == 0)
			break;
		if (rc == 1) {
			handle_packet(d, &p);
			if (d->ended)
				return;
			continue;
		}
		if (rc == UG_E_PROTO || rc == UG_E_TOOBIG) {
			struct ug_replay_summary *sum = ug_replay_report_counters(d->report);

			sum->requests++;
			logf_(d, UG_LOG_WARNING, "guest sent a bad packet: %s",
			      ug_usbredir_session_errmsg(d->s));
			ug_replay_report_add(d->report, 0, sum->requests, "undecodable guest packet",
					     ug_usbredir_session_errmsg(d->s), -1, -1, 0, NULL, 0, -1, 0,
					     NULL, 0);
			continue;
		}
		goto fatal;
	}
	return;
fatal:
	snprintf(d->errmsg, sizeof(d->errmsg), "guest stream unusable: %s",
		 ug_usbredir_session_errmsg(d->s));
	logf_(d, UG_LOG_ERROR, "%s", d->errmsg);
	ug_transport_close(d->t);
	finish(d, rc, d->errmsg);
}

static void on_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	ug_emulated_device *d = user_data;
	uint64_t done;

	(void)t;
	/* A guest that stops inside a packet sent a request that is neither
	 * answered nor counted: say so, as the recorder does for a capture.
	 * It is not a divergence: every request the guest completed was. */
	done = d->s ? ug_usbredir_session_offset(d->s, UG_DIR_G2H) : 0;
	if (!d->ended && d->fed > done)
		logf_(d, UG_LOG_WARNING,
		      "guest->host: the stream ends inside a packet: %llu bytes after offset "
		      "%llu were not decoded",
		      (unsigned long long)(d->fed - done), (unsigned long long)done);
	finish(d, error, message);
}

UG_EXPORT int ug_emulated_device_attach(ug_emulated_device *d, ug_transport *t)
{
	struct ug_usbredir_packet hello;
	int rc;

	if (!d || !t) {
		ug_transport_free(t);
		return UG_E_INVAL;
	}
	if (d->started) {
		ug_transport_free(t);
		return UG_E_STATE;
	}
	d->started = 1;
	d->t = t;
	d->s = ug_usbredir_session_new();
	if (!d->s)
		return UG_E_NOMEM;
	ug_usbredir_session_set_max_packet(d->s, d->max_packet);
	d->start_us = g_get_monotonic_time();
	ug_transport_set_callbacks(t, on_data, on_closed, d);
	memset(&hello, 0, sizeof(hello));
	hello.type = usb_redir_hello;
	snprintf(hello.h.hello.version, sizeof(hello.h.hello.version), "usbgate usbreplay %s",
		 ug_version());
	hello.h.hello.caps_count = 1;
	hello.h.hello.caps[0] = ug_recording_caps(d->rec, UG_DIR_H2G) | REQUIRED_CAPS;
	if ((rc = send_pkt(d, &hello)) < 0)
		return rc;
	/* The session decoder learns our caps from our own hello. */
	{
		struct ug_usbredir_packet p;

		ug_usbredir_session_feed(d->s, UG_DIR_H2G, ug_buf_peek(&d->out), d->out.len);
		while (ug_usbredir_session_next(d->s, UG_DIR_H2G, &p) == 1)
			;
	}
	return 0;
}
