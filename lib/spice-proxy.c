/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-proxy.c: forwards a SPICE client's channel connections to the server and decodes a copy of each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common.h"
#include "spice-codec.h"
#include "transport.h"

/*
 * Each accepted connection is paused until its server leg is connected (the
 * socket transport drops bytes that arrive while no data callback is set),
 * then joined with ug_proxy, whose tap feeds the connection's decoder. In
 * ug_proxy's terms the client is side a (UG_DIR_G2H: a -> b), so the tap's
 * UG_DIR_G2H is client -> server. Connections are freed from an idle
 * callback, never from inside a callback of their own transports.
 */

/* ---- TLS on top of a transport ------------------------------------------------ */

/*
 * To inspect a TLS session the proxy terminates TLS on both legs: it is the
 * server for the client and a client for the server. The TLS layer is a
 * transport wrapped around the plain socket transport, with OpenSSL working
 * on memory BIOs: ciphertext from the inner transport goes into rbio,
 * plaintext comes out of SSL_read() and is delivered; plaintext sent is
 * queued until the handshake is done, then SSL_write() puts ciphertext into
 * wbio, which is drained into the inner transport. So the sockets stay the
 * listener's and the connector's, and ug_proxy sees two plain transports.
 */
#define TLS_READ_CHUNK 16384

struct tls_transport {
	ug_transport base;
	ug_transport *inner;
	SSL *ssl;
	BIO *rbio, *wbio;
	GByteArray *out;        /* plaintext not yet given to SSL_write() */
	int handshake_done;
	guint idle;             /* a deferred pump (after unpause, or to report a failure) */
	int failed;
	char fail_msg[UG_ERRMSG_SIZE];
};

static void tls_pump(struct tls_transport *tt);

/* Drains wbio into the inner transport. */
static int tls_flush(struct tls_transport *tt)
{
	uint8_t buf[TLS_READ_CHUNK];
	int n;

	while ((n = BIO_read(tt->wbio, buf, sizeof(buf))) > 0) {
		int r = ug_transport_send(tt->inner, buf, (size_t)n);

		if (r < 0)
			return r;
	}
	return 0;
}

static gboolean tls_on_idle(gpointer user_data)
{
	struct tls_transport *tt = user_data;

	tt->idle = 0;
	if (tt->failed) {
		ug_transport_report_closed(&tt->base, UG_E_TLS, tt->fail_msg);
		return G_SOURCE_REMOVE;
	}
	tls_pump(tt);
	return G_SOURCE_REMOVE;
}

static void tls_fail(struct tls_transport *tt, const char *what)
{
	if (tt->failed)
		return;
	tt->failed = 1;
	snprintf(tt->fail_msg, sizeof(tt->fail_msg), "%.100s: TLS %.60s: %.80s", tt->base.desc,
	         what, ug_openssl_err());
	ug_transport_close(tt->inner);
	if (!tt->idle)
		tt->idle = g_idle_add(tls_on_idle, tt);
}

/* Handshake, pending writes, then reads; only from main-context callbacks. */
static void tls_pump(struct tls_transport *tt)
{
	uint8_t buf[TLS_READ_CHUNK];

	if (tt->failed || tt->base.closed)
		return;
	if (!tt->handshake_done) {
		int r = SSL_do_handshake(tt->ssl);

		if (r != 1) {
			int e = SSL_get_error(tt->ssl, r);

			if (tls_flush(tt) < 0)
				tls_fail(tt, "handshake send");
			else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				tls_fail(tt, "handshake");
			return;
		}
		tt->handshake_done = 1;
	}
	while (tt->out->len > 0) {
		int n = SSL_write(tt->ssl, tt->out->data,
		                  tt->out->len > INT32_MAX ? INT32_MAX : (int)tt->out->len);

		if (n <= 0) {
			tls_fail(tt, "write");
			return;
		}
		g_byte_array_remove_range(tt->out, 0, (guint)n);
	}
	while (!tt->base.paused && !tt->base.closed) {
		int n = SSL_read(tt->ssl, buf, sizeof(buf));

		if (n <= 0) {
			int e = SSL_get_error(tt->ssl, n);

			if (e == SSL_ERROR_ZERO_RETURN) {
				tls_flush(tt);
				ug_transport_report_closed(&tt->base, 0, "TLS session closed by the peer");
				return;
			}
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				tls_fail(tt, "read");
			break;
		}
		ug_transport_deliver(&tt->base, buf, (size_t)n);
	}
	if (tls_flush(tt) < 0)
		tls_fail(tt, "send");
}

static void tls_on_inner_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct tls_transport *tt = user_data;

	(void)t;
	if (BIO_write(tt->rbio, data, (int)len) != (int)len) {
		tls_fail(tt, "buffer");
		return;
	}
	tls_pump(tt);
}

static void tls_on_inner_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	struct tls_transport *tt = user_data;

	(void)t;
	ug_transport_report_closed(&tt->base, error, message);
}

static int tls_send(ug_transport *t, const void *data, size_t len)
{
	struct tls_transport *tt = (struct tls_transport *)t;
	uint8_t buf[TLS_READ_CHUNK];
	int n;

	if (tt->out->len + len + ug_transport_pending(tt->inner) > t->max_pending)
		return UG_E_TOOBIG;
	g_byte_array_append(tt->out, data, (guint)len);
	if (!tt->handshake_done || tt->failed)
		return 0;
	while (tt->out->len > 0) {
		n = SSL_write(tt->ssl, tt->out->data,
		              tt->out->len > INT32_MAX ? INT32_MAX : (int)tt->out->len);
		if (n <= 0) {
			tls_fail(tt, "write");
			return 0;
		}
		g_byte_array_remove_range(tt->out, 0, (guint)n);
	}
	while ((n = BIO_read(tt->wbio, buf, sizeof(buf))) > 0)
		if (ug_transport_send(tt->inner, buf, (size_t)n) < 0)
			return UG_E_CLOSED;
	return 0;
}

static size_t tls_pending(const ug_transport *t)
{
	const struct tls_transport *tt = (const struct tls_transport *)t;

	return tt->out->len + ug_transport_pending(tt->inner);
}

static void tls_pause(ug_transport *t, int paused)
{
	struct tls_transport *tt = (struct tls_transport *)t;

	ug_transport_pause(tt->inner, paused);
	/* SSL may hold decrypted bytes that no new input would wake up. */
	if (!paused && !tt->idle)
		tt->idle = g_idle_add(tls_on_idle, tt);
}

static void tls_close(ug_transport *t)
{
	struct tls_transport *tt = (struct tls_transport *)t;

	if (tt->handshake_done && !tt->failed) {
		SSL_shutdown(tt->ssl);
		tls_flush(tt);
	}
	ug_transport_close(tt->inner);
}

static void tls_destroy(ug_transport *t)
{
	struct tls_transport *tt = (struct tls_transport *)t;

	if (tt->idle)
		g_source_remove(tt->idle);
	ug_transport_free(tt->inner);
	SSL_free(tt->ssl);
	g_byte_array_unref(tt->out);
	free(tt);
}

static const struct ug_transport_vtable tls_vtable = {
	.send = tls_send,
	.pending = tls_pending,
	.pause = tls_pause,
	.close = tls_close,
	.destroy = tls_destroy,
};

/* Wraps inner (owned from now on, also on failure) in TLS as the server
 * (accept) or as a client of host (verified with ctx's CA). */
static ug_transport *tls_wrap(ug_transport *inner, SSL_CTX *ctx, int accept, const char *host)
{
	struct tls_transport *tt = calloc(1, sizeof(*tt));
	char desc[200];

	if (!tt) {
		ug_transport_free(inner);
		return NULL;
	}
	snprintf(desc, sizeof(desc), "tls %.180s", ug_transport_describe(inner));
	ug_transport_init(&tt->base, &tls_vtable, desc);
	tt->inner = inner;
	tt->out = g_byte_array_new();
	tt->ssl = SSL_new(ctx);
	tt->rbio = BIO_new(BIO_s_mem());
	tt->wbio = BIO_new(BIO_s_mem());
	if (!tt->ssl || !tt->rbio || !tt->wbio) {
		BIO_free(tt->rbio);
		BIO_free(tt->wbio);
		tls_destroy(&tt->base);
		return NULL;
	}
	/* An empty read BIO means "no data yet", not end of stream. */
	BIO_set_mem_eof_return(tt->rbio, -1);
	BIO_set_mem_eof_return(tt->wbio, -1);
	SSL_set_bio(tt->ssl, tt->rbio, tt->wbio);
	if (accept) {
		SSL_set_accept_state(tt->ssl);
	} else {
		X509_VERIFY_PARAM *vp = SSL_get0_param(tt->ssl);

		SSL_set_connect_state(tt->ssl);
		/* The certificate must name the server the proxy was told to use. */
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1) {
			X509_VERIFY_PARAM_set1_host(vp, host, 0);
			SSL_set_tlsext_host_name(tt->ssl, host);
		}
	}
	ug_transport_set_callbacks(inner, tls_on_inner_data, tls_on_inner_closed, tt);
	if (!accept)
		tls_pump(tt);
	return &tt->base;
}

struct sconn {
	ug_spice_proxy *sp;
	unsigned id;
	ug_transport *client;           /* until the proxy owns it */
	ug_connector *connector;
	ug_proxy *proxy;
	ug_spice_stream *stream;
	int tls;                        /* accepted on the TLS listener */
	int dead;
	int reported;
	char label[UG_ADDRESS_TEXT_MAX + 64];
	struct sconn *next;
};

struct ug_spice_proxy {
	ug_listener *listener;
	struct ug_address server;
	char server_text[UG_ADDRESS_TEXT_MAX];
	ug_listener *tls_listener;
	struct ug_address tls_server;
	char tls_server_text[UG_ADDRESS_TEXT_MAX];
	SSL_CTX *tls_accept_ctx;        /* the client-facing side: certificate and key */
	SSL_CTX *tls_connect_ctx;       /* the server-facing side: verified with the CA */
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

/* Logs through the object's callback (lib/error.c formats). */
#define logf_(o, ...) ug_log_emit((o)->log, (o)->log_user, __VA_ARGS__)

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
				snprintf(k->label, sizeof(k->label), "spice%s %s channel %u (%s)",
				         k->tls ? "+tls" : "", ug_spice_channel_type_name(type), id,
				         k->tls ? p->tls_server_text : p->server_text);
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
		      k->tls ? p->tls_server_text : p->server_text, message);
		conn_end(k, error, message);
		return;
	}
	if (k->tls) {
		t = tls_wrap(t, p->tls_connect_ctx, 0, p->tls_server.host);
		if (!t) {
			conn_end(k, UG_E_NOMEM, "out of memory");
			return;
		}
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

static void accept_conn(ug_spice_proxy *p, ug_transport *t, int tls)
{
	struct sconn *k;

	/* Nothing may be read before the server leg exists. */
	ug_transport_pause(t, 1);
	k = calloc(1, sizeof(*k));
	if (!k) {
		ug_transport_free(t);
		return;
	}
	k->sp = p;
	k->id = ++p->stats.connections;
	k->tls = tls;
	k->client = t;
	snprintf(k->label, sizeof(k->label), "spice%s connection %u (%s)", tls ? "+tls" : "",
	         k->id, tls ? p->tls_server_text : p->server_text);
	k->stream = ug_spice_stream_new();
	k->connector = ug_connector_new(tls ? &p->tls_server : &p->server);
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

static void on_accept(ug_listener *l, ug_transport *t, void *user_data)
{
	(void)l;
	accept_conn(user_data, t, 0);
}

static void on_accept_tls(ug_listener *l, ug_transport *t, void *user_data)
{
	ug_spice_proxy *p = user_data;

	(void)l;
	/* Paused (by accept_conn) until the server leg is up, handshake included. */
	t = tls_wrap(t, p->tls_accept_ctx, 1, NULL);
	if (t)
		accept_conn(p, t, 1);
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
	ug_listener_free(p->tls_listener);
	SSL_CTX_free(p->tls_accept_ctx);
	SSL_CTX_free(p->tls_connect_ctx);
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

UG_EXPORT int ug_spice_proxy_set_tls(ug_spice_proxy *p, const char *cert_file,
                                     const char *key_file, const char *ca_file)
{
	SSL_CTX *a = NULL, *c = NULL;
	int code = UG_E_TLS;

	if (p->tls_listener)
		return ug_errmsg_set(p->err, UG_E_STATE, "TLS must be set before start_tls");
	a = SSL_CTX_new(TLS_server_method());
	c = SSL_CTX_new(TLS_client_method());
	if (!a || !c)
		goto fail_nomem;
	SSL_CTX_set_min_proto_version(a, TLS1_2_VERSION);
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(a, cert_file) != 1) {
		ug_errmsg_set(p->err, UG_E_TLS, "certificate %.150s: %.80s", cert_file, ug_openssl_err());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(a, key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(a) != 1) {
		ug_errmsg_set(p->err, UG_E_TLS, "key %.150s: %.80s", key_file, ug_openssl_err());
		goto fail;
	}
	if (ca_file ? SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1
	            : SSL_CTX_set_default_verify_paths(c) != 1) {
		ug_errmsg_set(p->err, UG_E_TLS, "CA %.150s: %.80s", ca_file ? ca_file : "(system)",
		              ug_openssl_err());
		goto fail;
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	SSL_CTX_free(p->tls_accept_ctx);
	SSL_CTX_free(p->tls_connect_ctx);
	p->tls_accept_ctx = a;
	p->tls_connect_ctx = c;
	return 0;
fail_nomem:
	code = ug_errmsg_set(p->err, UG_E_NOMEM, "out of memory");
fail:
	SSL_CTX_free(a);
	SSL_CTX_free(c);
	return code;
}

UG_EXPORT int ug_spice_proxy_start_tls(ug_spice_proxy *p, const struct ug_address *listen_addr,
                                       const struct ug_address *server)
{
	if (!p->tls_accept_ctx)
		return ug_errmsg_set(p->err, UG_E_STATE, "start_tls needs ug_spice_proxy_set_tls()");
	if (p->tls_listener)
		return ug_errmsg_set(p->err, UG_E_STATE, "TLS side already started");
	p->tls_server = *server;
	ug_address_format(server, p->tls_server_text, sizeof(p->tls_server_text));
	p->tls_listener = ug_listener_new();
	if (!p->tls_listener)
		return ug_errmsg_set(p->err, UG_E_NOMEM, "out of memory");
	if (ug_listener_open(p->tls_listener, listen_addr, on_accept_tls, p) < 0) {
		int r = ug_errmsg_set(p->err, UG_E_IO, "%.200s", ug_listener_errmsg(p->tls_listener));

		ug_listener_free(p->tls_listener);
		p->tls_listener = NULL;
		return r;
	}
	return 0;
}

UG_EXPORT const struct ug_address *ug_spice_proxy_tls_address(const ug_spice_proxy *p)
{
	return p->tls_listener ? ug_listener_address(p->tls_listener) : NULL;
}
