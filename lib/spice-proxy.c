/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-proxy.c: forwards a SPICE client's channel connections to the server and decodes a copy of each. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "common.h"
#include "spice-codec.h"

/*
 * Each accepted connection is paused until its server leg is connected (the
 * socket transport drops bytes that arrive while no data callback is set),
 * then joined with ug_proxy, whose tap feeds the connection's decoder. In
 * ug_proxy's terms the client is side a (UG_DIR_G2H: a -> b), so the tap's
 * UG_DIR_G2H is client -> server. Connections are freed from an idle
 * callback, never from inside a callback of their own transports.
 */

struct sconn {
	ug_spice_proxy *sp;
	unsigned id;
	ug_transport *client;           /* until the proxy owns it */
	ug_connector *connector;
	ug_proxy *proxy;
	ug_spice_stream *stream;
	int dead;
	int reported;
	char label[UG_ADDRESS_TEXT_MAX + 64];
	struct sconn *next;
};

struct ug_spice_proxy {
	ug_listener *listener;
	struct ug_address server;
	char server_text[UG_ADDRESS_TEXT_MAX];
	ug_spice_proxy_event_fn on_event;
	ug_spice_proxy_closed_fn on_closed;
	void *user_data;
	ug_log_fn log;
	void *log_user;
	uint32_t max_message, max_hold;
	struct sconn *conns;
	guint reaper;
	struct ug_spice_proxy_stats stats;
	char err[UG_ERRMSG_SIZE];
};

static void logf_(ug_spice_proxy *p, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logf_(ug_spice_proxy *p, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!p->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->log(level, msg, p->log_user);
}

static void conn_free(struct sconn *k)
{
	ug_connector_free(k->connector);
	ug_transport_free(k->client);
	ug_proxy_free(k->proxy);
	ug_spice_stream_free(k->stream);
	free(k);
}

static gboolean reap(gpointer user_data)
{
	ug_spice_proxy *p = user_data;
	struct sconn **pp = &p->conns;

	while (*pp) {
		struct sconn *k = *pp;

		if (k->dead) {
			*pp = k->next;
			conn_free(k);
		} else {
			pp = &k->next;
		}
	}
	p->reaper = 0;
	return G_SOURCE_REMOVE;
}

/* Reports the end once and schedules the free. */
static void conn_end(struct sconn *k, int error, const char *message)
{
	ug_spice_proxy *p = k->sp;

	if (k->reported)
		return;
	k->reported = 1;
	k->dead = 1;
	if (p->stats.active > 0)
		p->stats.active--;
	if (p->on_closed)
		p->on_closed(p, k->id, k->label, error, message, p->user_data);
	if (!p->reaper)
		p->reaper = g_idle_add(reap, p);
}

static void conn_drain(struct sconn *k, uint64_t ts_ns)
{
	ug_spice_proxy *p = k->sp;
	struct ug_spice_stream_event ev;

	while (ug_spice_stream_next(k->stream, &ev) > 0) {
		if (ev.type == UG_SPICE_STREAM_LINK || ev.type == UG_SPICE_STREAM_USBREDIR_DATA ||
		    ev.type == UG_SPICE_STREAM_NOTICE) {
			unsigned type, id;

			/* The label follows what is known about the channel. */
			if (ug_spice_stream_channel(k->stream, &type, &id) == 1)
				snprintf(k->label, sizeof(k->label), "spice %s channel %u (%s)",
				         ug_spice_channel_type_name(type), id, p->server_text);
		}
		if (p->on_event)
			p->on_event(p, k->id, k->label, &ev, ts_ns, p->user_data);
	}
}

static void on_tap(ug_proxy *px, enum ug_dir dir, const uint8_t *data, size_t len,
                   uint64_t ts_ns, void *user_data)
{
	struct sconn *k = user_data;
	int from_server = dir == UG_DIR_H2G;

	(void)px;
	k->sp->stats.bytes[from_server] += len;
	if (ug_spice_stream_feed(k->stream, from_server, data, len) == 0)
		conn_drain(k, ts_ns);
}

static void on_proxy_closed(ug_proxy *px, enum ug_dir first_side, int error, const char *message,
                            void *user_data)
{
	struct sconn *k = user_data;
	GDateTime *now = g_date_time_new_now_utc();
	uint64_t ts = (uint64_t)g_date_time_to_unix(now) * 1000000000u +
	              (uint64_t)g_date_time_get_microsecond(now) * 1000u;

	(void)px;
	(void)first_side;
	g_date_time_unref(now);
	for (int s = 0; s < 2; s++) {
		ug_spice_stream_end(k->stream, s);
		conn_drain(k, ts);
	}
	conn_end(k, error, message);
}

static void on_client_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	/* Not reached: the client leg is paused until the proxy takes over. */
	(void)t;
	(void)data;
	(void)len;
	(void)user_data;
}

static void on_client_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	struct sconn *k = user_data;

	(void)t;
	if (k->connector)
		ug_connector_stop(k->connector);
	conn_end(k, error, message);
}

static void on_connected(ug_connector *c, ug_transport *t, int error, const char *message,
                         void *user_data)
{
	struct sconn *k = user_data;
	ug_spice_proxy *p = k->sp;

	(void)c;
	if (!t) {
		p->stats.connect_failures++;
		logf_(p, UG_LOG_WARNING, "spice connection %u: cannot reach %s: %s", k->id,
		      p->server_text, message);
		conn_end(k, error, message);
		return;
	}
	k->proxy = ug_proxy_new(k->client, t);
	if (!k->proxy) {
		ug_transport_free(t);
		conn_end(k, UG_E_NOMEM, "out of memory");
		return;
	}
	k->client = NULL;
	ug_proxy_set_tap(k->proxy, on_tap, k);
	ug_proxy_set_closed(k->proxy, on_proxy_closed, k);
	ug_proxy_start(k->proxy);
	ug_transport_pause(ug_proxy_transport(k->proxy, UG_DIR_G2H), 0);
	logf_(p, UG_LOG_INFO, "spice connection %u: %s <-> %s", k->id,
	      ug_transport_describe(ug_proxy_transport(k->proxy, UG_DIR_G2H)),
	      ug_transport_describe(t));
}

static void on_accept(ug_listener *l, ug_transport *t, void *user_data)
{
	ug_spice_proxy *p = user_data;
	struct sconn *k;

	(void)l;
	/* Nothing may be read before the server leg exists. */
	ug_transport_pause(t, 1);
	k = calloc(1, sizeof(*k));
	if (!k) {
		ug_transport_free(t);
		return;
	}
	k->sp = p;
	k->id = ++p->stats.connections;
	k->client = t;
	snprintf(k->label, sizeof(k->label), "spice connection %u (%s)", k->id, p->server_text);
	k->stream = ug_spice_stream_new();
	k->connector = ug_connector_new(&p->server);
	k->next = p->conns;
	p->conns = k;
	p->stats.active++;
	if (!k->stream || !k->connector) {
		conn_end(k, UG_E_NOMEM, "out of memory");
		return;
	}
	ug_spice_stream_set_limits(k->stream, p->max_message, p->max_hold);
	ug_transport_set_callbacks(t, on_client_data, on_client_closed, k);
	/* One attempt: a SPICE client retries on its own. */
	ug_connector_set_backoff(k->connector, 100, 1000, 1);
	if (ug_connector_start(k->connector, on_connected, k) < 0)
		conn_end(k, UG_E_IO, ug_connector_errmsg(k->connector));
}

UG_EXPORT ug_spice_proxy *ug_spice_proxy_new(void)
{
	return calloc(1, sizeof(ug_spice_proxy));
}

UG_EXPORT void ug_spice_proxy_free(ug_spice_proxy *p)
{
	if (!p)
		return;
	if (p->reaper)
		g_source_remove(p->reaper);
	while (p->conns) {
		struct sconn *k = p->conns;

		p->conns = k->next;
		conn_free(k);
	}
	ug_listener_free(p->listener);
	free(p);
}

UG_EXPORT void ug_spice_proxy_set_callbacks(ug_spice_proxy *p, ug_spice_proxy_event_fn on_event,
                                            ug_spice_proxy_closed_fn on_closed, void *user_data)
{
	p->on_event = on_event;
	p->on_closed = on_closed;
	p->user_data = user_data;
}

UG_EXPORT void ug_spice_proxy_set_log(ug_spice_proxy *p, ug_log_fn fn, void *user_data)
{
	p->log = fn;
	p->log_user = user_data;
}

UG_EXPORT int ug_spice_proxy_set_limits(ug_spice_proxy *p, uint32_t max_message,
                                        uint32_t max_hold)
{
	if (max_hold && max_hold < 64)
		return ug_errmsg_set(p->err, UG_E_INVAL, "hold limit %u below 64 bytes", max_hold);
	p->max_message = max_message;
	p->max_hold = max_hold;
	return 0;
}

UG_EXPORT int ug_spice_proxy_start(ug_spice_proxy *p, const struct ug_address *listen_addr,
                                   const struct ug_address *server)
{
	if (p->listener)
		return ug_errmsg_set(p->err, UG_E_STATE, "proxy already started");
	p->server = *server;
	ug_address_format(server, p->server_text, sizeof(p->server_text));
	p->listener = ug_listener_new();
	if (!p->listener)
		return ug_errmsg_set(p->err, UG_E_NOMEM, "out of memory");
	if (ug_listener_open(p->listener, listen_addr, on_accept, p) < 0) {
		int r = ug_errmsg_set(p->err, UG_E_IO, "%.200s", ug_listener_errmsg(p->listener));

		ug_listener_free(p->listener);
		p->listener = NULL;
		return r;
	}
	return 0;
}

UG_EXPORT const struct ug_address *ug_spice_proxy_address(const ug_spice_proxy *p)
{
	return p->listener ? ug_listener_address(p->listener) : NULL;
}

UG_EXPORT void ug_spice_proxy_get_stats(const ug_spice_proxy *p, struct ug_spice_proxy_stats *ret)
{
	*ret = p->stats;
}

UG_EXPORT const char *ug_spice_proxy_errmsg(const ug_spice_proxy *p)
{
	return p->err;
}
