/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* replay-guest.c: the usb-guest endpoint that sends recorded requests to a live usb-host and compares. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "buf.h"
#include "common.h"
#include "replay.h"
#include "usbredir-codec.h"

enum gstate {
	G_IDLE = 0,
	G_WAIT_DEVICE,  /* hello sent, waiting for device_connect */
	G_RUNNING,      /* a request is out */
	G_DRAIN,        /* every request answered; waiting for the recorded pushed data */
	G_DONE,
};

struct ug_replay_guest {
	const ug_recording *rec;
	const ug_replay_rules *rules;
	size_t n;
	int64_t *reply_of;
	GArray *reqs;           /* indices of the requests to send, capture order */
	guint pos;
	unsigned timeout_ms;
	uint32_t max_packet;
	ug_log_fn log;
	void *log_data;
	ug_replay_done_fn done;
	void *done_data;

	ug_transport *t;
	ug_usbredir_session *s;
	uint32_t caps;
	enum gstate state;
	int waiting;
	uint64_t expect_pushed; /* stream packets the recorded host pushed on its own */
	int want_type;
	uint64_t want_id;
	guint timer;
	gint64 start_us;
	struct ug_buf out;
	ug_replay_report *report;
	char errmsg[UG_ERRMSG_SIZE];
};

/* Logs through the object's callback (lib/error.c formats). */
#define logf_(o, ...) ug_log_emit((o)->log, (o)->log_data, __VA_ARGS__)

/* Data packet types a host also sends on its own (interrupt receiving, iso
 * streams, buffered bulk receiving). */
static int is_pushed_type(uint32_t type)
{
	return type == usb_redir_interrupt_packet || type == usb_redir_iso_packet ||
	       type == usb_redir_buffered_bulk_packet;
}

UG_EXPORT ug_replay_guest *ug_replay_guest_new(const ug_recording *rec,
					       const ug_replay_rules *rules)
{
	ug_replay_guest *g;
	struct ug_recorded_packet rp, ans;
	uint64_t answered = 0;

	if (!rec || !ug_recording_count(rec))
		return NULL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->rec = rec;
	g->rules = rules;
	g->n = ug_recording_count(rec);
	g->timeout_ms = 10000;
	g->max_packet = UG_USBREDIR_DEFAULT_MAX_PACKET;
	g->reply_of = calloc(g->n, sizeof(*g->reply_of));
	g->report = ug_replay_report_new("usbreplay.guest");
	g->reqs = g_array_new(FALSE, FALSE, sizeof(size_t));
	ug_buf_init(&g->out, (size_t)UG_USBREDIR_DEFAULT_MAX_PACKET + 64);
	if (!g->reply_of || !g->report) {
		ug_replay_guest_free(g);
		return NULL;
	}
	ug_replay_pair(rec, g->reply_of);
	for (size_t i = 0; i < g->n; i++) {
		ug_recording_get(rec, i, &rp);
		if (rp.pkt.dir == UG_DIR_H2G && is_pushed_type(rp.pkt.type))
			g->expect_pushed++;
		if (rp.pkt.dir != UG_DIR_G2H || ug_replay_answer_type(rp.pkt.type) < 0)
			continue;
		/* An answer of a pushed type to a request is no pushed packet. */
		if (g->reply_of[i] >= 0) {
			ug_recording_get(rec, (size_t)g->reply_of[i], &ans);
			if (is_pushed_type(ans.pkt.type))
				answered++;
		}
		if (g->reply_of[i] < 0) {
			ug_replay_report_counters(g->report)->skipped++;
			continue;
		}
		/* A cancelled request was answered by the timing of the
		 * original session, not by the device: nothing to compare. */
		ug_recording_get(rec, (size_t)g->reply_of[i], &ans);
		if (ug_replay_status(&ans.pkt) == usb_redir_cancelled) {
			ug_replay_report_counters(g->report)->skipped++;
			continue;
		}
		g_array_append_val(g->reqs, i);
	}
	g->expect_pushed = g->expect_pushed > answered ? g->expect_pushed - answered : 0;
	return g;
}

UG_EXPORT void ug_replay_guest_free(ug_replay_guest *g)
{
	if (!g)
		return;
	if (g->timer)
		g_source_remove(g->timer);
	ug_transport_free(g->t);
	ug_usbredir_session_free(g->s);
	if (g->reqs)
		g_array_free(g->reqs, TRUE);
	ug_buf_release(&g->out);
	ug_replay_report_free(g->report);
	free(g->reply_of);
	free(g);
}

UG_EXPORT void ug_replay_guest_set_timeout(ug_replay_guest *g, unsigned ms)
{
	if (g && ms)
		g->timeout_ms = ms;
}

UG_EXPORT void ug_replay_guest_set_log(ug_replay_guest *g, ug_log_fn fn, void *user_data)
{
	if (g) {
		g->log = fn;
		g->log_data = user_data;
	}
}

UG_EXPORT void ug_replay_guest_set_done(ug_replay_guest *g, ug_replay_done_fn fn,
					void *user_data)
{
	if (g) {
		g->done = fn;
		g->done_data = user_data;
	}
}

UG_EXPORT int ug_replay_guest_set_max_packet(ug_replay_guest *g, uint32_t max)
{
	if (!g || max < 1024)
		return UG_E_INVAL;
	g->max_packet = max;
	return 0;
}

UG_EXPORT const ug_replay_report *ug_replay_guest_report(const ug_replay_guest *g)
{
	return g ? g->report : NULL;
}

static int send_pkt(ug_replay_guest *g, const struct ug_usbredir_packet *p)
{
	size_t need = 0;
	int rc;

	rc = ug_usbredir_encode(g->caps, p, NULL, 0, &need);
	if (rc != UG_E_TOOBIG && rc < 0)
		return rc;
	ug_buf_reset(&g->out);
	if ((rc = ug_buf_reserve(&g->out, need)) < 0)
		return rc;
	if ((rc = ug_usbredir_encode(g->caps, p, g->out.data + g->out.start, need, &need)) < 0)
		return rc;
	ug_buf_commit(&g->out, need);
	return ug_transport_send(g->t, ug_buf_peek(&g->out), need);
}

static void finish(ug_replay_guest *g, int error, const char *message)
{
	struct ug_replay_summary *sum = ug_replay_report_counters(g->report);
	ug_transport *t = g->t;

	if (g->state == G_DONE)
		return;
	g->state = G_DONE;
	if (g->timer) {
		g_source_remove(g->timer);
		g->timer = 0;
	}
	sum->elapsed_ns = (uint64_t)(g_get_monotonic_time() - g->start_us) * 1000u;
	if (t)
		ug_transport_close(t);
	if (g->done)
		g->done(g, error, message, g->done_data);
}

static void diverge_current(ug_replay_guest *g, const char *reason,
			    const struct ug_usbredir_packet *got, long diff)
{
	struct ug_recorded_packet req, ans;
	size_t i = g_array_index(g->reqs, size_t, g->pos);
	char what[160];

	ug_recording_get(g->rec, i, &req);
	ug_recording_get(g->rec, (size_t)g->reply_of[i], &ans);
	ug_replay_describe(&req.pkt, what, sizeof(what));
	/* The answer's record: that is where the expected bytes are. */
	ug_replay_report_add(g->report, ans.record ? ans.record : req.record, g->pos + 1, what,
			     reason, diff,
			     ug_replay_status(&ans.pkt), ug_replay_length(&ans.pkt), ans.pkt.data,
			     ans.pkt.data_len, got ? ug_replay_status(got) : -1,
			     got ? ug_replay_length(got) : 0, got ? got->data : NULL,
			     got ? got->data_len : 0);
	logf_(g, UG_LOG_WARNING, "record %llu (request at record %llu), request %u: %s: %s",
	      (unsigned long long)ans.record, (unsigned long long)req.record, g->pos + 1, what,
	      reason);
}

static gboolean timeout_cb(gpointer data)
{
	ug_replay_guest *g = data;
	char reason[96];

	g->timer = 0;
	if (g->state == G_DRAIN) {
		/* Pushed data is counted, not compared: fewer than recorded is
		 * worth a warning, not a divergence. */
		logf_(g, UG_LOG_WARNING, "%llu of %llu recorded pushed packets arrived within %u ms",
		      (unsigned long long)ug_replay_report_counters(g->report)->pushed,
		      (unsigned long long)g->expect_pushed, g->timeout_ms);
		finish(g, 0, "every recorded request was answered");
		return G_SOURCE_REMOVE;
	}
	snprintf(reason, sizeof(reason), "no answer within %u ms", g->timeout_ms);
	if (g->state == G_RUNNING)
		diverge_current(g, reason, NULL, -1);
	else
		ug_replay_report_add(g->report, 0, 0, "device_connect", "the host offered no device",
				     -1, -1, 0, NULL, 0, -1, 0, NULL, 0);
	finish(g, UG_E_TIMEOUT, reason);
	return G_SOURCE_REMOVE;
}

static void arm_timer(ug_replay_guest *g)
{
	if (g->timer)
		g_source_remove(g->timer);
	g->timer = g_timeout_add(g->timeout_ms, timeout_cb, g);
}

static void send_next(ug_replay_guest *g)
{
	struct ug_recorded_packet req;
	size_t i;
	int rc;

	if (g->pos >= g->reqs->len) {
		ug_replay_report_counters(g->report)->completed = 1;
		/* The host may still be pushing what it pushed in the recording
		 * (a keyboard's reports): let it arrive, within the timeout. */
		if (ug_replay_report_counters(g->report)->pushed < g->expect_pushed) {
			g->state = G_DRAIN;
			arm_timer(g);
			return;
		}
		finish(g, 0, "every recorded request was answered");
		return;
	}
	i = g_array_index(g->reqs, size_t, g->pos);
	ug_recording_get(g->rec, i, &req);
	g->want_type = ug_replay_answer_type(req.pkt.type);
	g->want_id = req.pkt.id;
	g->waiting = 1;
	ug_replay_report_counters(g->report)->requests++;
	if ((rc = send_pkt(g, &req.pkt)) < 0) {
		snprintf(g->errmsg, sizeof(g->errmsg), "cannot send request %u: %s", g->pos + 1,
			 ug_strerror(rc));
		finish(g, rc, g->errmsg);
		return;
	}
	arm_timer(g);
}

static void compare_answer(ug_replay_guest *g, const struct ug_usbredir_packet *got)
{
	struct ug_recorded_packet req, ans;
	size_t i = g_array_index(g->reqs, size_t, g->pos);
	char reason[160];
	long diff = -1;

	ug_recording_get(g->rec, i, &req);
	ug_recording_get(g->rec, (size_t)g->reply_of[i], &ans);
	reason[0] = 0;
	if (!ug_replay_rules_ignores(g->rules, UG_REPLAY_FIELD_STATUS) &&
	    ug_replay_status(&ans.pkt) != ug_replay_status(got)) {
		snprintf(reason, sizeof(reason), "status differs: expected %s, got %s",
			 ug_render_status_name((uint32_t)ug_replay_status(&ans.pkt)),
			 ug_render_status_name((uint32_t)ug_replay_status(got)));
	} else if (!ug_replay_rules_ignores(g->rules, UG_REPLAY_FIELD_LENGTH) &&
		   ug_replay_length(&ans.pkt) != ug_replay_length(got)) {
		snprintf(reason, sizeof(reason), "length differs: expected %u, got %u",
			 ug_replay_length(&ans.pkt), ug_replay_length(got));
	} else if ((diff = ug_replay_data_diff(g->rules, ug_replay_endpoint(got), ans.pkt.data,
					       ans.pkt.data_len, got->data, got->data_len, 0,
					       -1)) >= 0) {
		snprintf(reason, sizeof(reason), "data differs at byte %ld", diff);
	}
	if (reason[0])
		diverge_current(g, reason, got, diff);
	else
		ug_replay_report_counters(g->report)->matched++;
}

static void check_device(ug_replay_guest *g, const struct ug_usbredir_packet *p)
{
	struct usb_redir_device_connect_header want;
	const struct usb_redir_device_connect_header *got = &p->h.device_connect;
	char reason[160];

	if (ug_recording_device(g->rec, &want) < 0)
		return;
	if (want.vendor_id == got->vendor_id && want.product_id == got->product_id &&
	    want.device_class == got->device_class && want.speed == got->speed)
		return;
	snprintf(reason, sizeof(reason),
		 "device differs: expected %04x:%04x class %u speed %u, got %04x:%04x class %u speed %u",
		 want.vendor_id, want.product_id, want.device_class, want.speed, got->vendor_id,
		 got->product_id, got->device_class, got->speed);
	ug_replay_report_add(g->report, 0, 0, "device_connect", reason, -1, -1, 0, NULL, 0, -1,
			     0, NULL, 0);
	logf_(g, UG_LOG_WARNING, "%s", reason);
}

static void handle_packet(ug_replay_guest *g, const struct ug_usbredir_packet *p)
{
	switch (p->type) {
	case usb_redir_hello:
		g->caps = ug_usbredir_session_caps(g->s);
		return;
	case usb_redir_device_connect:
		if (g->state != G_WAIT_DEVICE)
			return;
		check_device(g, p);
		g->state = G_RUNNING;
		send_next(g);
		return;
	case usb_redir_device_disconnect:
		if (g->state == G_RUNNING) {
			diverge_current(g, "the device disconnected", NULL, -1);
			finish(g, 0, "the device disconnected");
		}
		return;
	default:
		break;
	}
	if (g->state != G_RUNNING && g->state != G_DRAIN)
		return;
	if (g->state == G_RUNNING && g->waiting && (int)p->type == g->want_type &&
	    p->id == g->want_id) {
		g->waiting = 0;
		compare_answer(g, p);
		g->pos++;
		send_next(g);
		return;
	}
	if (is_pushed_type(p->type)) {
		ug_replay_report_counters(g->report)->pushed++;
		if (g->state == G_DRAIN &&
		    ug_replay_report_counters(g->report)->pushed >= g->expect_pushed)
			finish(g, 0, "every recorded request was answered");
	}
}

static void on_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	ug_replay_guest *g = user_data;
	struct ug_usbredir_packet p;
	int rc;

	(void)t;
	if (g->state == G_DONE)
		return;
	if ((rc = ug_usbredir_session_feed(g->s, UG_DIR_H2G, data, len)) < 0)
		goto fatal;
	while ((rc = ug_usbredir_session_next(g->s, UG_DIR_H2G, &p)) != 0) {
		if (rc == 1) {
			handle_packet(g, &p);
			if (g->state == G_DONE)
				return;
			continue;
		}
		if (rc == UG_E_PROTO || rc == UG_E_TOOBIG) {
			logf_(g, UG_LOG_WARNING, "host sent a bad packet: %s",
			      ug_usbredir_session_errmsg(g->s));
			ug_replay_report_add(g->report, 0, g->pos + 1, "undecodable host packet",
					     ug_usbredir_session_errmsg(g->s), -1, -1, 0, NULL, 0, -1, 0,
					     NULL, 0);
			continue;
		}
		goto fatal;
	}
	return;
fatal:
	snprintf(g->errmsg, sizeof(g->errmsg), "host stream unusable: %s",
		 ug_usbredir_session_errmsg(g->s));
	finish(g, rc, g->errmsg);
}

static void on_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	ug_replay_guest *g = user_data;
	char reason[200];

	(void)t;
	if (g->state == G_DONE)
		return;
	snprintf(reason, sizeof(reason), "the host closed the connection (%s)",
		 message && *message ? message : "orderly");
	if (g->state == G_RUNNING)
		diverge_current(g, reason, NULL, -1);
	else
		ug_replay_report_add(g->report, 0, 0, "device_connect", reason, -1, -1, 0, NULL, 0,
				     -1, 0, NULL, 0);
	finish(g, error ? error : UG_E_CLOSED, reason);
}

UG_EXPORT int ug_replay_guest_attach(ug_replay_guest *g, ug_transport *t)
{
	struct ug_usbredir_packet hello, p;
	int rc;

	if (!g || !t) {
		ug_transport_free(t);
		return UG_E_INVAL;
	}
	if (g->t || g->state != G_IDLE) {
		ug_transport_free(t);
		return UG_E_STATE;
	}
	g->t = t;
	g->s = ug_usbredir_session_new();
	if (!g->s)
		return UG_E_NOMEM;
	ug_usbredir_session_set_max_packet(g->s, g->max_packet);
	g->start_us = g_get_monotonic_time();
	ug_transport_set_callbacks(t, on_data, on_closed, g);
	memset(&hello, 0, sizeof(hello));
	hello.type = usb_redir_hello;
	for (size_t i = 0; i < g->n; i++) {
		struct ug_recorded_packet rp;

		ug_recording_get(g->rec, i, &rp);
		if (rp.pkt.dir == UG_DIR_G2H && rp.pkt.type == usb_redir_hello) {
			hello.h.hello = rp.pkt.h.hello;
			break;
		}
	}
	if (!hello.h.hello.caps_count) {
		snprintf(hello.h.hello.version, sizeof(hello.h.hello.version),
			 "usbgate usbreplay guest %s", ug_version());
		hello.h.hello.caps_count = 1;
		hello.h.hello.caps[0] = ug_recording_caps(g->rec, UG_DIR_G2H);
	}
	if (hello.h.hello.caps_count > 1)
		hello.h.hello.caps_count = 1;
	g->state = G_WAIT_DEVICE;
	if ((rc = send_pkt(g, &hello)) < 0)
		return rc;
	ug_usbredir_session_feed(g->s, UG_DIR_G2H, ug_buf_peek(&g->out), g->out.len);
	while (ug_usbredir_session_next(g->s, UG_DIR_G2H, &p) == 1)
		;
	arm_timer(g);
	return 0;
}
