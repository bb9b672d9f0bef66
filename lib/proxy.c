/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* proxy.c: joins two transports, forwards every byte both ways first, then hands a copy to a tap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "common.h"

/* How often a paused or flushing proxy looks at the transports' queues:
 * transports have no drain callback, so the proxy polls while it waits. */
#define PROXY_POLL_MS 2

struct ug_proxy {
	ug_transport *t[2];         /* [UG_DIR_G2H]: the guest's side (a), [UG_DIR_H2G]: b */
	GMainContext *ctx;
	GSource *timer;
	size_t high, low;
	unsigned flush_ms;
	ug_proxy_tap_fn tap;
	void *tap_user;
	ug_proxy_closed_fn on_closed;
	void *closed_user;
	int started;
	int paused[2];              /* reading from side i is paused for backpressure */
	int closing;                /* one side ended: flushing the other */
	int reported;
	int first_side;             /* the side that ended first */
	int error;
	char message[UG_ERRMSG_SIZE];
	gint64 flush_deadline;      /* monotonic us */
	struct ug_proxy_stats stats;
	char errmsg[UG_ERRMSG_SIZE];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int side_of(const ug_proxy *p, const ug_transport *t)
{
	return p->t[1] == t ? 1 : 0;
}

static void finish(ug_proxy *p);
static void ensure_timer(ug_proxy *p);

/* Ends both legs and reports once. p must not be touched after the report
 * (the callback may free it). */
static void report(ug_proxy *p)
{
	ug_proxy_closed_fn fn = p->on_closed;

	if (p->reported)
		return;
	p->reported = 1;
	if (p->timer) {
		g_source_destroy(p->timer);
		g_source_unref(p->timer);
		p->timer = NULL;
	}
	for (int i = 0; i < 2; i++)
		if (p->t[i])
			ug_transport_close(p->t[i]);
	if (fn)
		fn(p, p->first_side, p->error, p->message, p->closed_user);
}

static void leg_failed(ug_proxy *p, int side, int error, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void leg_failed(ug_proxy *p, int side, int error, const char *fmt, ...)
{
	va_list ap;

	if (p->closing)
		return;
	p->closing = 1;
	p->first_side = side;
	p->error = error;
	va_start(ap, fmt);
	vsnprintf(p->message, sizeof(p->message), fmt, ap);
	va_end(ap);
	p->flush_deadline = g_get_monotonic_time() + (gint64)p->flush_ms * 1000;
	/* Nothing more is read from either side; what the surviving side still
	 * has queued for its peer is flushed before it is closed. */
	for (int i = 0; i < 2; i++)
		ug_transport_pause(p->t[i], 1);
}

static void on_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	ug_proxy *p = user_data;
	int from = side_of(p, t);
	int to = !from;
	size_t pending;
	int e;

	if (p->closing)
		return;
	/* Forward first: the tap (decoding, writing files) never delays the
	 * bytes it is shown. */
	e = ug_transport_send(p->t[to], data, len);
	if (e < 0) {
		leg_failed(p, to, e, "%s: forwarding %zu bytes failed: %s",
			   ug_transport_describe(p->t[to]), len, ug_strerror(e));
		ensure_timer(p);
		return;
	}
	p->stats.bytes[from] += len;
	pending = ug_transport_pending(p->t[to]);
	if (pending > p->stats.max_pending)
		p->stats.max_pending = pending;
	if (pending > p->high && !p->paused[from]) {
		p->paused[from] = 1;
		p->stats.pauses++;
		ug_transport_pause(p->t[from], 1);
		ensure_timer(p);
	}
	if (p->tap)
		p->tap(p, (enum ug_dir)from, data, len, now_ns(), p->tap_user);
}

static void on_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	ug_proxy *p = user_data;
	int side = side_of(p, t);

	if (p->closing) {
		/* The other side went away while we were flushing to it: done. */
		report(p);
		return;
	}
	leg_failed(p, side, error, "%s", message);
	ensure_timer(p);
}

/* Resumes paused readers once their peer's queue drained below the low
 * mark; while closing, waits for the survivor's queue to drain. */
static gboolean on_timer(gpointer user_data)
{
	ug_proxy *p = user_data;

	if (p->closing) {
		int other = !p->first_side;

		if (ug_transport_pending(p->t[other]) == 0 ||
		    g_get_monotonic_time() >= p->flush_deadline) {
			finish(p);
			return G_SOURCE_REMOVE;
		}
		return G_SOURCE_CONTINUE;
	}
	for (int from = 0; from < 2; from++) {
		if (p->paused[from] && ug_transport_pending(p->t[!from]) <= p->low) {
			p->paused[from] = 0;
			ug_transport_pause(p->t[from], 0);
		}
	}
	if (!p->paused[0] && !p->paused[1]) {
		g_source_unref(p->timer);
		p->timer = NULL;
		return G_SOURCE_REMOVE;
	}
	return G_SOURCE_CONTINUE;
}

static void finish(ug_proxy *p)
{
	int other = !p->first_side;
	size_t left = ug_transport_pending(p->t[other]);

	if (left > 0 && !p->error) {
		p->error = UG_E_TIMEOUT;
		snprintf(p->message + strlen(p->message), sizeof(p->message) - strlen(p->message),
			 "; %zu bytes for %s could not be flushed in %u ms", left,
			 ug_transport_describe(p->t[other]), p->flush_ms);
	}
	/* The timer source is being dispatched: forget it before report()
	 * would destroy it. */
	if (p->timer) {
		g_source_unref(p->timer);
		p->timer = NULL;
	}
	report(p);
}

static void ensure_timer(ug_proxy *p)
{
	if (p->timer)
		return;
	p->timer = g_timeout_source_new(PROXY_POLL_MS);
	g_source_set_callback(p->timer, on_timer, p, NULL);
	g_source_attach(p->timer, p->ctx);
}

UG_EXPORT ug_proxy *ug_proxy_new(ug_transport *a, ug_transport *b)
{
	ug_proxy *p;

	if (!a || !b || a == b)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->t[0] = a;
	p->t[1] = b;
	p->ctx = g_main_context_ref_thread_default();
	p->high = UG_PROXY_DEFAULT_HIGH_WATER;
	p->low = UG_PROXY_DEFAULT_LOW_WATER;
	p->flush_ms = UG_PROXY_DEFAULT_FLUSH_MS;
	return p;
}

UG_EXPORT void ug_proxy_free(ug_proxy *p)
{
	if (!p)
		return;
	if (p->timer) {
		g_source_destroy(p->timer);
		g_source_unref(p->timer);
	}
	for (int i = 0; i < 2; i++)
		ug_transport_free(p->t[i]);
	g_main_context_unref(p->ctx);
	free(p);
}

UG_EXPORT int ug_proxy_set_watermarks(ug_proxy *p, size_t high, size_t low)
{
	size_t room;

	if (low > high || high == 0)
		return ug_errmsg_set(p->errmsg, UG_E_INVAL,
				     "watermarks: low %zu must not exceed high %zu (> 0)", low, high);
	/* One read may overshoot the high mark by a chunk; the transports'
	 * own queue limit must leave room for it. */
	if (__builtin_add_overflow(high, (size_t)UG_PROXY_OVERSHOOT, &room))
		return ug_errmsg_set(p->errmsg, UG_E_INVAL, "watermarks: high %zu too large", high);
	if (room < UG_TRANSPORT_DEFAULT_MAX_PENDING)
		room = UG_TRANSPORT_DEFAULT_MAX_PENDING;
	for (int i = 0; i < 2; i++)
		ug_transport_set_max_pending(p->t[i], room);
	p->high = high;
	p->low = low;
	return 0;
}

UG_EXPORT void ug_proxy_set_flush_timeout(ug_proxy *p, unsigned ms)
{
	p->flush_ms = ms;
}

UG_EXPORT void ug_proxy_set_tap(ug_proxy *p, ug_proxy_tap_fn fn, void *user_data)
{
	p->tap = fn;
	p->tap_user = user_data;
}

UG_EXPORT void ug_proxy_set_closed(ug_proxy *p, ug_proxy_closed_fn fn, void *user_data)
{
	p->on_closed = fn;
	p->closed_user = user_data;
}

UG_EXPORT int ug_proxy_start(ug_proxy *p)
{
	if (p->started)
		return ug_errmsg_set(p->errmsg, UG_E_STATE, "proxy already started");
	p->started = 1;
	/* A caller may have paused a leg until the other one was connected. */
	for (int i = 0; i < 2; i++) {
		ug_transport_set_callbacks(p->t[i], on_data, on_closed, p);
		ug_transport_pause(p->t[i], 0);
	}
	return 0;
}

UG_EXPORT ug_transport *ug_proxy_transport(const ug_proxy *p, enum ug_dir side)
{
	return p->t[side == UG_DIR_H2G ? 1 : 0];
}

UG_EXPORT void ug_proxy_get_stats(const ug_proxy *p, struct ug_proxy_stats *ret_stats)
{
	*ret_stats = p->stats;
}

UG_EXPORT const char *ug_proxy_errmsg(const ug_proxy *p)
{
	return p->errmsg;
}
