/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbdump: records usbredir sessions (live proxy, capture file, live interface) to pcap, raw and text. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>

#include "usbgate.h"

/* Exit codes, as man/usbdump.1 documents them. */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
	EXIT_UNUSABLE = 3,
	EXIT_UNDECODED = 4,
};

/* A capture file at least this large gets a progress indicator on a terminal. */
#define PROGRESS_MIN_BYTES (16u * 1024u * 1024u)

struct opts {
	char *listen, *connect;
	gboolean reverse, keep;
	char *read_file, *iface;
	char *write_file, *raw_file;
	gboolean verbose, json, quiet, debug;
	gint64 count;
	gint bus, device;
	gint64 max_packet;
	char **ports;
	char *caps, *guest;
	char *spice_listen, *spice_connect;
	char *tls_cert, *tls_key, *tls_ca;
	char *spice_tls_listen, *spice_tls_connect;
	char **spice_ports;
	char **rest;
	char *user;
};

struct app {
	struct opts o;
	GMainLoop *loop;
	ug_recorder *rec;
	int rec_done;                   /* -c reached or finished: no more recording */
	int output_error_reported;
	int exit_code;                  /* a failure that is not about decoding */
	/* proxy */
	struct ug_address listen_addr, connect_addr;
	ug_listener *listener;
	ug_connector *connector;
	ug_transport *accepted;         /* waiting for the connector */
	ug_proxy *proxy;
	int session;
	unsigned sessions_served;
	/* captures */
	ug_capture *cap;
	ug_capture_demux *demux;
	int have_demux_stats;
	struct ug_capture_demux_stats dstats;
	int live_stopping;
	/* SPICE proxy */
	ug_spice_proxy *sproxy;
	struct ug_address spice_tls_listen_addr, spice_tls_connect_addr;
	GHashTable *channel_sessions;   /* connection number -> recorder session */
	unsigned spice_sessions_ended;
	struct ug_spice_stream_stats sstats; /* summed over closed connections */
	uint64_t spice_usbredir, spice_encrypted;
	uint64_t spice_lz4[2];          /* LZ4 COMPRESSED_DATA messages, by enum ug_dir */
	ug_privileges *priv;            /* --user, or NULL */
};

static volatile sig_atomic_t stop_requested;

static void msg(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void msg(const char *level, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "usbdump: %s%s", level, *level ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void on_log(int level, const char *message, void *user_data)
{
	struct app *a = user_data;

	if (level == UG_LOG_DEBUG && !a->o.debug)
		return;
	msg(level <= UG_LOG_ERROR ? "error" : level == UG_LOG_WARNING ? "warning" : "", "%s",
	    message);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The first output write error is said once; recording goes on in the
 * other outputs and the session is never disturbed by it. */
static void check_output(struct app *a, int e)
{
	if (e < 0 && !a->output_error_reported) {
		a->output_error_reported = 1;
		msg("error", "%s (forwarding and the other outputs go on)", ug_recorder_errmsg(a->rec));
	}
}

static void finish_recording(struct app *a)
{
	if (a->rec_done)
		return;
	a->rec_done = 1;
	check_output(a, ug_recorder_finish(a->rec));
}

/* -c: stop recording once N usbredir packets were decoded. */
static void check_count(struct app *a)
{
	if (a->o.count <= 0 || a->rec_done)
		return;
	if (ug_recorder_limit_reached(a->rec)) {
		finish_recording(a);
		if (a->cap)
			ug_capture_stop(a->cap);
		else
			msg("", "%" G_GINT64_FORMAT " packets recorded; forwarding goes on until the "
			    "session ends", a->o.count);
	}
}

/* ---- proxy ----------------------------------------------------------------- */

static void start_listening_again(struct app *a)
{
	if (a->o.keep) {
		ug_listener_pause(a->listener, 0);
		return;
	}
	g_main_loop_quit(a->loop);
}

static void on_tap(ug_proxy *p, enum ug_dir dir, const uint8_t *data, size_t len, uint64_t ts_ns,
		   void *user_data)
{
	struct app *a = user_data;

	(void)p;
	if (a->rec_done || a->session <= 0)
		return;
	check_output(a, ug_recorder_feed(a->rec, a->session, dir, data, len, ts_ns));
	check_count(a);
}

static void on_proxy_closed(ug_proxy *p, enum ug_dir first_side, int error, const char *message,
			    void *user_data)
{
	struct app *a = user_data;
	struct ug_proxy_stats st;

	ug_proxy_get_stats(p, &st);
	if (error && error != UG_E_CLOSED)
		msg("warning", "session %d: the %s side ended: %s", a->session,
		    first_side == UG_DIR_G2H ? "usb-guest" : "usb-host", message);
	else
		msg("", "session %d: the %s side closed (%s); %" PRIu64 " bytes guest->host, %" PRIu64
		    " bytes host->guest forwarded", a->session,
		    first_side == UG_DIR_G2H ? "usb-guest" : "usb-host", message, st.bytes[0],
		    st.bytes[1]);
	if (!a->rec_done && a->session > 0)
		check_output(a, ug_recorder_end_session(a->rec, a->session, now_ns()));
	ug_proxy_free(p);
	a->proxy = NULL;
	a->session = 0;
	start_listening_again(a);
}

static void on_connected(ug_connector *c, ug_transport *t, int error, const char *message,
			 void *user_data)
{
	struct app *a = user_data;
	ug_transport *guest, *host;
	char label[512];

	(void)c;
	if (!t) {
		msg("error", "cannot connect to %s: %s", a->o.connect, message);
		ug_transport_free(a->accepted);
		a->accepted = NULL;
		a->exit_code = EXIT_FAIL;
		start_listening_again(a);
		return;
	}
	(void)error;
	guest = a->o.reverse ? t : a->accepted;
	host = a->o.reverse ? a->accepted : t;
	a->accepted = NULL;
	snprintf(label, sizeof(label), "proxy usb-guest %s <-> usb-host %s",
		 ug_transport_describe(guest), ug_transport_describe(host));
	a->proxy = ug_proxy_new(guest, host);
	if (!a->proxy) {
		msg("error", "out of memory");
		ug_transport_free(guest);
		ug_transport_free(host);
		a->exit_code = EXIT_FAIL;
		g_main_loop_quit(a->loop);
		return;
	}
	a->sessions_served++;
	a->session = 0;
	if (!a->rec_done) {
		a->session = ug_recorder_add_session(a->rec, label);
		if (a->session < 0) {
			msg("error", "%s", ug_recorder_errmsg(a->rec));
			a->session = 0;
		}
	}
	ug_proxy_set_tap(a->proxy, on_tap, a);
	ug_proxy_set_closed(a->proxy, on_proxy_closed, a);
	ug_proxy_start(a->proxy);
}

static void on_accept(ug_listener *l, ug_transport *t, void *user_data)
{
	struct app *a = user_data;

	if (a->proxy || a->accepted) {
		/* One session at a time: the listener is paused during one, so
		 * this is a connection that raced the pause. */
		msg("warning", "%s: refused, a session is running", ug_transport_describe(t));
		ug_transport_free(t);
		return;
	}
	ug_listener_pause(l, 1);
	msg("", "%s: connected; connecting to %s", ug_transport_describe(t), a->o.connect);
	a->accepted = t;
	/* Bytes from the accepted side wait in the kernel until the proxy runs. */
	ug_transport_pause(t, 1);
	if (ug_connector_start(a->connector, on_connected, a) < 0) {
		msg("error", "%s", ug_connector_errmsg(a->connector));
		ug_transport_free(t);
		a->accepted = NULL;
		a->exit_code = EXIT_FAIL;
		g_main_loop_quit(a->loop);
	}
}

static gboolean on_signal(gpointer user_data)
{
	struct app *a = user_data;

	stop_requested = 1;
	if (a->cap && !a->live_stopping) {
		a->live_stopping = 1;
		ug_capture_stop(a->cap);
		return G_SOURCE_CONTINUE;
	}
	g_main_loop_quit(a->loop);
	return G_SOURCE_CONTINUE;
}

/* --user, like tcpdump -Z: called once the source and the outputs are open. */
static int drop_privileges(struct app *a)
{
	int r;

	if (!a->priv)
		return 0;
	r = ug_privileges_drop(a->priv);
	if (r < 0) {
		msg("error", "--user: %s", ug_privileges_errmsg(a->priv));
		return EXIT_FAIL;
	}
	if (r > 0)
		msg("warning", "--user: %s", ug_privileges_errmsg(a->priv));
	else
		msg("", "running as %s from now on", ug_privileges_describe(a->priv));
	return 0;
}

static int parse_address(const char *what, const char *text, struct ug_address *ret)
{
	char err[256];

	if (ug_address_parse(text, ret, err, sizeof(err)) < 0) {
		msg("error", "%s: %s", what, err);
		return -1;
	}
	return 0;
}

static int run_proxy(struct app *a)
{
	char buf[UG_ADDRESS_TEXT_MAX];
	guint sig1, sig2;

	if (parse_address("--listen", a->o.listen, &a->listen_addr) < 0 ||
	    parse_address("--connect", a->o.connect, &a->connect_addr) < 0)
		return EXIT_USAGE;
	if (!ug_address_is_loopback(&a->listen_addr))
		msg("warning", "listening on %s, which is not a loopback address: anyone who can "
		    "reach it can use the redirected device",
		    ug_address_format(&a->listen_addr, buf, sizeof(buf)));
	a->listener = ug_listener_new();
	a->connector = ug_connector_new(&a->connect_addr);
	if (!a->listener || !a->connector) {
		msg("error", "out of memory");
		return EXIT_FAIL;
	}
	ug_connector_set_backoff(a->connector, 100, 1000, 5);
	ug_connector_set_log(a->connector, on_log, a);
	if (ug_listener_open(a->listener, &a->listen_addr, on_accept, a) < 0) {
		msg("error", "%s", ug_listener_errmsg(a->listener));
		return EXIT_FAIL;
	}
	if (drop_privileges(a) != 0)
		return EXIT_FAIL;
	msg("", "listening on %s for the %s; will connect to %s",
	    ug_address_format(ug_listener_address(a->listener), buf, sizeof(buf)),
	    a->o.reverse ? "usb-host" : "usb-guest (QEMU's chardev)", a->o.connect);
	sig1 = g_unix_signal_add(SIGINT, on_signal, a);
	sig2 = g_unix_signal_add(SIGTERM, on_signal, a);
	g_main_loop_run(a->loop);
	g_source_remove(sig1);
	g_source_remove(sig2);
	if (a->proxy) {
		if (!a->rec_done && a->session > 0)
			check_output(a, ug_recorder_end_session(a->rec, a->session, now_ns()));
		ug_proxy_free(a->proxy);
		a->proxy = NULL;
	}
	ug_transport_free(a->accepted);
	a->accepted = NULL;
	ug_connector_free(a->connector);
	ug_listener_free(a->listener);
	return 0;
}

/* ---- SPICE proxy ---------------------------------------------------------- */

static int channel_session(struct app *a, unsigned conn)
{
	return GPOINTER_TO_INT(g_hash_table_lookup(a->channel_sessions, GUINT_TO_POINTER(conn)));
}

static void on_spice_event(ug_spice_proxy *p, unsigned conn, const char *label,
			   const struct ug_spice_stream_event *ev, uint64_t ts_ns, void *user_data)
{
	struct app *a = user_data;
	int session = channel_session(a, conn);
	char list[512];
	size_t used = 0;

	(void)p;
	switch (ev->type) {
	case UG_SPICE_STREAM_LINK:
		if (ev->link_error)
			msg("warning", "%s: link refused by the server (error %u)", label,
			    (unsigned)ev->link_error);
		else
			msg("", "%s: linked, session 0x%08x, %s headers", label,
			    (unsigned)ev->session_id, ev->mini ? "mini" : "full");
		if (ev->channel_type == 9)
			a->spice_usbredir++;
		break;
	case UG_SPICE_STREAM_MAIN_INIT:
		msg("", "%s: SPICE session id 0x%08x", label, (unsigned)ev->session_id);
		break;
	case UG_SPICE_STREAM_CHANNELS:
		list[0] = '\0';
		for (size_t i = 0; i < ev->n_channels && used + 16 < sizeof(list); i++) {
			int w = snprintf(list + used, sizeof(list) - used, "%s%u:%u", i ? " " : "",
					 (unsigned)ev->channels[i].type, (unsigned)ev->channels[i].id);

			if (w < 0)
				break;
			used += (size_t)w;
		}
		msg("", "%s: channels (type:id, 9 is usbredir): %s", label, list);
		break;
	case UG_SPICE_STREAM_USBREDIR_DATA:
		/* One event per COMPRESSED_DATA message. */
		if (ev->compressed)
			a->spice_lz4[ev->dir]++;
		if (a->rec_done)
			break;
		if (!session) {
			session = ug_recorder_add_session(a->rec, label);
			if (session < 0) {
				msg("error", "%s", ug_recorder_errmsg(a->rec));
				session = -1;
			}
			g_hash_table_insert(a->channel_sessions, GUINT_TO_POINTER(conn),
					    GINT_TO_POINTER(session));
		}
		if (session > 0) {
			check_output(a, ug_recorder_feed(a->rec, session, ev->dir, ev->data, ev->len,
							 ts_ns));
			check_count(a);
		}
		break;
	case UG_SPICE_STREAM_USBREDIR_GAP:
		if (!a->rec_done && session > 0)
			check_output(a, ug_recorder_gap(a->rec, session, ev->dir, ev->gap_len, ts_ns));
		break;
	case UG_SPICE_STREAM_NOTICE:
		msg("warning", "%s: %s", label, ev->message ? ev->message : "");
		break;
	case UG_SPICE_STREAM_ERROR:
		if (ev->code == UG_E_ENCRYPTED) {
			a->spice_encrypted++;
			msg("warning", "%s: TLS: forwarded as it is, not decoded (%s)", label,
			    a->o.tls_cert ? "connect the client to --spice-tls-listen to decode it"
					  : "give --tls-cert, --tls-key and --spice-tls-listen to decode it");
		} else {
			msg("warning", "%s: %s", label, ev->message ? ev->message : "");
		}
		break;
	}
}

static void on_spice_closed(ug_spice_proxy *p, unsigned conn, const char *label, int error,
			    const char *message, void *user_data)
{
	struct app *a = user_data;
	int session = channel_session(a, conn);
	struct ug_spice_proxy_stats st;

	if (error && error != UG_E_CLOSED)
		msg("warning", "%s: ended: %s", label, message);
	else
		msg("", "%s: closed (%s)", label, message);
	if (session > 0 && !a->rec_done)
		check_output(a, ug_recorder_end_session(a->rec, session, now_ns()));
	g_hash_table_remove(a->channel_sessions, GUINT_TO_POINTER(conn));
	ug_spice_proxy_get_stats(p, &st);
	/* A SPICE session is every connection of one client: it is over when
	 * the last of them closed. */
	if (st.active == 0) {
		a->spice_sessions_ended++;
		msg("", "SPICE session %u ended: %u connections, %" PRIu64 " bytes client->server, %"
		    PRIu64 " bytes back", a->spice_sessions_ended, st.connections, st.bytes[0],
		    st.bytes[1]);
		if (!a->o.keep)
			g_main_loop_quit(a->loop);
	}
}

static int run_spice_proxy(struct app *a)
{
	char buf[UG_ADDRESS_TEXT_MAX], buf2[UG_ADDRESS_TEXT_MAX];
	guint sig1, sig2;
	int tls = a->o.tls_cert || a->o.tls_key || a->o.tls_ca || a->o.spice_tls_listen ||
		  a->o.spice_tls_connect;

	if (parse_address("--spice-listen", a->o.spice_listen, &a->listen_addr) < 0 ||
	    parse_address("--spice-connect", a->o.spice_connect, &a->connect_addr) < 0)
		return EXIT_USAGE;
	if (tls && !(a->o.tls_cert && a->o.tls_key && a->o.spice_tls_listen &&
		     a->o.spice_tls_connect)) {
		msg("error", "TLS termination needs --tls-cert, --tls-key, --spice-tls-listen and "
		    "--spice-tls-connect (and --tls-ca unless the system's CAs vouch for the server)");
		return EXIT_USAGE;
	}
	if (tls && (parse_address("--spice-tls-listen", a->o.spice_tls_listen,
				  &a->spice_tls_listen_addr) < 0 ||
		    parse_address("--spice-tls-connect", a->o.spice_tls_connect,
				  &a->spice_tls_connect_addr) < 0))
		return EXIT_USAGE;
	if (!ug_address_is_loopback(&a->listen_addr))
		msg("warning", "listening on %s, which is not a loopback address: anyone who can "
		    "reach it can use the SPICE session",
		    ug_address_format(&a->listen_addr, buf, sizeof(buf)));
	a->sproxy = ug_spice_proxy_new();
	a->channel_sessions = g_hash_table_new(g_direct_hash, g_direct_equal);
	if (!a->sproxy || !a->channel_sessions) {
		msg("error", "out of memory");
		return EXIT_FAIL;
	}
	ug_spice_proxy_set_callbacks(a->sproxy, on_spice_event, on_spice_closed, a);
	ug_spice_proxy_set_log(a->sproxy, on_log, a);
	if (tls && ug_spice_proxy_set_tls(a->sproxy, a->o.tls_cert, a->o.tls_key, a->o.tls_ca) < 0) {
		msg("error", "%s", ug_spice_proxy_errmsg(a->sproxy));
		return EXIT_FAIL;
	}
	if (ug_spice_proxy_start(a->sproxy, &a->listen_addr, &a->connect_addr) < 0) {
		msg("error", "%s", ug_spice_proxy_errmsg(a->sproxy));
		return EXIT_FAIL;
	}
	msg("", "listening on %s for a SPICE client; will connect to %s",
	    ug_address_format(ug_spice_proxy_address(a->sproxy), buf, sizeof(buf)),
	    ug_address_format(&a->connect_addr, buf2, sizeof(buf2)));
	if (tls) {
		if (ug_spice_proxy_start_tls(a->sproxy, &a->spice_tls_listen_addr,
					     &a->spice_tls_connect_addr) < 0) {
			msg("error", "%s", ug_spice_proxy_errmsg(a->sproxy));
			return EXIT_FAIL;
		}
		msg("", "listening on %s for SPICE over TLS; will connect to %s with TLS",
		    ug_address_format(ug_spice_proxy_tls_address(a->sproxy), buf, sizeof(buf)),
		    ug_address_format(&a->spice_tls_connect_addr, buf2, sizeof(buf2)));
	}
	if (drop_privileges(a) != 0)
		return EXIT_FAIL;
	sig1 = g_unix_signal_add(SIGINT, on_signal, a);
	sig2 = g_unix_signal_add(SIGTERM, on_signal, a);
	g_main_loop_run(a->loop);
	g_source_remove(sig1);
	g_source_remove(sig2);
	/* Sessions of channels still open end now (Ctrl-C). */
	if (!a->rec_done) {
		GHashTableIter it;
		gpointer k, v;

		g_hash_table_iter_init(&it, a->channel_sessions);
		while (g_hash_table_iter_next(&it, &k, &v))
			if (GPOINTER_TO_INT(v) > 0)
				check_output(a, ug_recorder_end_session(a->rec, GPOINTER_TO_INT(v),
									now_ns()));
	}
	{
		struct ug_spice_proxy_stats st;

		ug_spice_proxy_get_stats(a->sproxy, &st);
		msg("", "SPICE: %u connection%s (%" PRIu64 " usbredir channel%s, %" PRIu64
		    " encrypted, %u server connect failures), %" PRIu64 " LZ4 messages "
		    "host->guest, %" PRIu64 " guest->host", st.connections,
		    st.connections == 1 ? "" : "s", a->spice_usbredir,
		    a->spice_usbredir == 1 ? "" : "s", a->spice_encrypted, st.connect_failures,
		    a->spice_lz4[UG_DIR_H2G], a->spice_lz4[UG_DIR_G2H]);
		if (st.connect_failures)
			a->exit_code = EXIT_FAIL;
	}
	ug_spice_proxy_free(a->sproxy);
	a->sproxy = NULL;
	g_hash_table_destroy(a->channel_sessions);
	a->channel_sessions = NULL;
	return 0;
}

/* ---- captures ------------------------------------------------------------- */

static int setup_demux(struct app *a)
{
	enum ug_capture_demux_guest guest = UG_DEMUX_GUEST_AUTO;
	uint32_t caps = 0;
	int caps_known = 0;

	a->demux = ug_capture_demux_new(a->rec);
	if (!a->demux) {
		msg("error", "out of memory");
		return EXIT_FAIL;
	}
	ug_capture_demux_set_log(a->demux, on_log, a);
	if (a->o.guest) {
		if (!strcmp(a->o.guest, "client"))
			guest = UG_DEMUX_GUEST_CLIENT;
		else if (!strcmp(a->o.guest, "server"))
			guest = UG_DEMUX_GUEST_SERVER;
		else if (strcmp(a->o.guest, "auto")) {
			msg("error", "--guest: \"%s\" is not client, server or auto", a->o.guest);
			return EXIT_USAGE;
		}
		ug_capture_demux_set_guest(a->demux, guest);
	}
	if (a->o.caps) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(a->o.caps, &end, 0);
		if (errno || *end || end == a->o.caps || v > 0xffffffffu) {
			msg("error", "--caps: \"%s\" is not a 32-bit number (e.g. 0xff)", a->o.caps);
			return EXIT_USAGE;
		}
		caps = (uint32_t)v;
		caps_known = 1;
	}
	for (char **p = a->o.ports; p && *p; p++) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(*p, &end, 10);
		if (errno || *end || end == *p || v == 0 || v > 65535) {
			msg("error", "--port: \"%s\" is not a TCP port", *p);
			return EXIT_USAGE;
		}
		if (ug_capture_demux_force_port(a->demux, (uint16_t)v, caps, caps_known, guest) < 0) {
			msg("error", "--port %lu: %s", v, ug_capture_demux_errmsg(a->demux));
			return EXIT_USAGE;
		}
	}
	for (char **p = a->o.spice_ports; p && *p; p++) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(*p, &end, 10);
		if (errno || *end || end == *p || v == 0 || v > 65535) {
			msg("error", "--spice-port: \"%s\" is not a TCP port", *p);
			return EXIT_USAGE;
		}
		if (ug_capture_demux_spice_port(a->demux, (uint16_t)v) < 0) {
			msg("error", "--spice-port %lu: %s", v, ug_capture_demux_errmsg(a->demux));
			return EXIT_USAGE;
		}
	}
	if ((a->o.caps) && !a->o.ports)
		msg("warning", "--caps applies to the connections named with --port only");
	return 0;
}

/* Takes every event the capture has now; returns 0, or a negative UG_E_* when
 * the capture failed. */
static int pump_capture(struct app *a)
{
	struct ug_capture_event ev;
	int r;

	while ((r = ug_capture_next(a->cap, &ev)) > 0) {
		check_output(a, ug_capture_demux_event(a->demux, &ev));
		check_count(a);
		if (stop_requested && !a->live_stopping) {
			a->live_stopping = 1;
			ug_capture_stop(a->cap);
		}
	}
	return r;
}

static void progress(struct app *a, int final)
{
	static gint64 last;
	gint64 t = g_get_monotonic_time();
	uint64_t done, total;

	if (final) {
		if (last)
			fprintf(stderr, "\r\033[K");
		return;
	}
	if (t - last < 250000 || ug_capture_progress(a->cap, &done, &total) < 0 || !total)
		return;
	last = t;
	fprintf(stderr, "\rusbdump: reading %s: %3u%% (%" PRIu64 " of %" PRIu64 " MiB)",
		a->o.read_file, (unsigned)(done * 100 / total), done >> 20, total >> 20);
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int run_file(struct app *a)
{
	struct ug_capture_event ev;
	struct stat stt;
	int show_progress;
	int r, e;
	unsigned n = 0;

	if ((e = setup_demux(a)) != 0)
		return e;
	a->cap = ug_capture_new();
	if (!a->cap) {
		msg("error", "out of memory");
		return EXIT_FAIL;
	}
	r = ug_capture_open_file(a->cap, a->o.read_file);
	if (r < 0) {
		msg("error", "%s", ug_capture_errmsg(a->cap));
		/* A file that cannot be read is a failure; one that is no capture
		 * (or of a link type we do not read) is unusable input. */
		if (strcmp(a->o.read_file, "-") && access(a->o.read_file, R_OK) < 0)
			return EXIT_FAIL;
		return EXIT_UNUSABLE;
	}
	if (drop_privileges(a) != 0)
		return EXIT_FAIL;
	/* Reading a file runs no main loop: a signal only sets the flag, and
	 * the loop below stops the capture so the outputs are finalized. */
	signal(SIGINT, on_stop_signal);
	signal(SIGTERM, on_stop_signal);
	show_progress = isatty(STDERR_FILENO) && stat(a->o.read_file, &stt) == 0 &&
			(uint64_t)stt.st_size >= PROGRESS_MIN_BYTES;
	while ((r = ug_capture_next(a->cap, &ev)) > 0) {
		check_output(a, ug_capture_demux_event(a->demux, &ev));
		check_count(a);
		if (stop_requested && !a->live_stopping) {
			a->live_stopping = 1;
			ug_capture_stop(a->cap);
		}
		if (show_progress && (++n & 1023) == 0)
			progress(a, 0);
	}
	if (show_progress)
		progress(a, 1);
	if (r < 0) {
		msg("error", "%s: %s", a->o.read_file, ug_capture_errmsg(a->cap));
		a->exit_code = EXIT_FAIL;
	}
	check_output(a, ug_capture_demux_finish(a->demux, 0));
	return 0;
}

static gboolean on_capture_ready(gint fd, GIOCondition cond, gpointer user_data)
{
	struct app *a = user_data;
	int r;

	(void)fd;
	(void)cond;
	r = pump_capture(a);
	if (r < 0) {
		msg("error", "%s: %s", a->o.iface, ug_capture_errmsg(a->cap));
		a->exit_code = EXIT_FAIL;
		g_main_loop_quit(a->loop);
		return G_SOURCE_REMOVE;
	}
	if (ug_capture_at_end(a->cap)) {
		g_main_loop_quit(a->loop);
		return G_SOURCE_REMOVE;
	}
	return G_SOURCE_CONTINUE;
}

/* libpcap hands frames over in batches; a timer collects what a quiet
 * interface left in its buffer, and finishes a stop. */
static gboolean on_capture_tick(gpointer user_data)
{
	return on_capture_ready(-1, 0, user_data);
}

static int run_live(struct app *a)
{
	char *filter = a->o.rest && a->o.rest[0] ? g_strjoinv(" ", a->o.rest) : NULL;
	guint sig1, sig2, w, tick;
	int e;

	if ((e = setup_demux(a)) != 0) {
		g_free(filter);
		return e;
	}
	a->cap = ug_capture_new();
	if (!a->cap) {
		g_free(filter);
		msg("error", "out of memory");
		return EXIT_FAIL;
	}
	e = ug_capture_open_live(a->cap, a->o.iface, filter);
	g_free(filter);
	if (e < 0) {
		msg("error", "%s", ug_capture_errmsg(a->cap));
		return e == UG_E_INVAL ? EXIT_USAGE : EXIT_FAIL;
	}
	if (drop_privileges(a) != 0)
		return EXIT_FAIL;
	msg("", "capturing on %s; Ctrl-C stops", a->o.iface);
	w = g_unix_fd_add(ug_capture_fd(a->cap), G_IO_IN, on_capture_ready, a);
	tick = g_timeout_add(200, on_capture_tick, a);
	sig1 = g_unix_signal_add(SIGINT, on_signal, a);
	sig2 = g_unix_signal_add(SIGTERM, on_signal, a);
	g_main_loop_run(a->loop);
	g_source_remove(sig1);
	g_source_remove(sig2);
	if (!ug_capture_at_end(a->cap)) {
		g_source_remove(w);
		g_source_remove(tick);
		ug_capture_stop(a->cap);
		pump_capture(a);
	}
	check_output(a, ug_capture_demux_finish(a->demux, now_ns()));
	return 0;
}

/* ---- main ------------------------------------------------------------------ */

/*
 * Opens one output. A full disk is treated as it is mid-session: said once,
 * the output stays off, the session is served, and the exit status is 1.
 * Any other failure (no such directory, no permission) stops usbdump here.
 */
static int open_output(struct app *a, const char *what, const char *path,
		       int (*open_fn)(ug_recorder *, const char *))
{
	int e;

	if (!path)
		return 0;
	e = open_fn(a->rec, path);
	if (e == UG_E_NOSPC) {
		msg("error", "%s %s: %s; going on without it", what, path,
		    ug_recorder_errmsg(a->rec));
		a->output_error_reported = 1;
		return 0;
	}
	if (e < 0) {
		msg("error", "%s %s: %s", what, path, ug_recorder_errmsg(a->rec));
		return -1;
	}
	return 0;
}

static void summary(struct app *a, struct ug_recorder_stats *st)
{
	msg("", "%u session%s, %" PRIu64 " usbredir packets (%" PRIu64 " bytes), %" PRIu64
	    " transfers, %" PRIu64 " decode errors, %" PRIu64 " packets of unknown type, %" PRIu64
	    " gaps, %" PRIu64 " usbmon records written",
	    st->sessions, st->sessions == 1 ? "" : "s", st->packets, st->bytes, st->transfers,
	    st->decode_errors, st->unknown_packets, st->gaps, st->usbmon_records);
	if (a->demux) {
		struct ug_capture_demux_stats d;

		ug_capture_demux_get_stats(a->demux, &d);
		msg("", "%" PRIu64 " TCP connections: %" PRIu64 " usbredir, %" PRIu64 " SPICE (%" PRIu64
		    " usbredir channels, %" PRIu64 " other channels, %" PRIu64 " LZ4 messages), %"
		    PRIu64 " TLS, %" PRIu64 " other", d.connections, d.usbredir, d.spice,
		    d.spice_usbredir, d.spice_other, d.spice_lz4, d.tls, d.other);
		a->dstats = d;
		a->have_demux_stats = 1;
	}
}

/* Everything after option parsing; returns the exit status. main() frees. */
static int run(struct app *a)
{
	int sources, e, code;
	struct ug_recorder_stats st;

	sources = !!a->o.read_file + !!a->o.iface + !!(a->o.listen || a->o.connect) +
		  !!(a->o.spice_listen || a->o.spice_connect);
	if (sources != 1) {
		msg("error", "give exactly one source: --listen/--connect, --spice-listen/"
		    "--spice-connect, -r FILE or -i IFACE (try --help)");
		return EXIT_USAGE;
	}
	if ((a->o.spice_listen || a->o.spice_connect) &&
	    !(a->o.spice_listen && a->o.spice_connect)) {
		msg("error", "the SPICE proxy needs both --spice-listen and --spice-connect");
		return EXIT_USAGE;
	}
	if (a->o.reverse && !a->o.listen) {
		msg("error", "--reverse goes with --listen/--connect");
		return EXIT_USAGE;
	}
	if ((a->o.listen || a->o.connect) && !(a->o.listen && a->o.connect)) {
		msg("error", "the proxy needs both --listen and --connect");
		return EXIT_USAGE;
	}
	if (a->o.rest && a->o.rest[0] && !a->o.iface) {
		msg("error", "unexpected argument \"%s\" (a filter goes with -i)", a->o.rest[0]);
		return EXIT_USAGE;
	}
	if (a->o.count < 0 || a->o.bus < 0 || a->o.bus > 65535 || a->o.device < 0 ||
	    a->o.device > 127 || a->o.max_packet < 0 || a->o.max_packet > UINT32_MAX) {
		msg("error", "a number is out of range (-c >= 0, --bus 0..65535, --device 1..127, "
		    "--max-packet 64..4294967295)");
		return EXIT_USAGE;
	}
	if (a->o.json && a->o.verbose) {
		msg("error", "--json and -V exclude each other");
		return EXIT_USAGE;
	}
	if (!a->o.quiet && ((a->o.write_file && !strcmp(a->o.write_file, "-")) ||
			    (a->o.raw_file && !strcmp(a->o.raw_file, "-")))) {
		msg("error", "a capture written to stdout needs -q (no text on stdout)");
		return EXIT_USAGE;
	}
	if (a->o.user) {
		char err[256];

		/* Looked up now, so that a typo fails before anything is opened. */
		if (ug_privileges_resolve(a->o.user, &a->priv, err, sizeof(err)) < 0) {
			msg("error", "--user: %s", err);
			return EXIT_USAGE;
		}
	}

	a->rec = ug_recorder_new();
	a->loop = g_main_loop_new(NULL, FALSE);
	if (!a->rec || !a->loop) {
		msg("error", "out of memory");
		return EXIT_FAIL;
	}
	ug_recorder_set_log(a->rec, on_log, a);
	if ((a->o.bus || a->o.device) &&
	    ug_recorder_set_address(a->rec, (uint16_t)(a->o.bus ? a->o.bus : 1),
				    (uint8_t)(a->o.device ? a->o.device : 1)) < 0) {
		msg("error", "--bus/--device out of range");
		return EXIT_USAGE;
	}
	if (a->o.count > 0)
		ug_recorder_set_packet_limit(a->rec, (uint64_t)a->o.count);
	if (a->o.max_packet && ug_recorder_set_max_packet(a->rec, (uint32_t)a->o.max_packet) < 0) {
		msg("error", "--max-packet %" G_GINT64_FORMAT ": at least 64", a->o.max_packet);
		return EXIT_USAGE;
	}
	if (!a->o.quiet)
		ug_recorder_set_text(a->rec, stdout,
				     a->o.json ? UG_RENDER_JSON :
				     a->o.verbose ? UG_RENDER_VERBOSE : UG_RENDER_SUMMARY);
	if (open_output(a, "usbmon pcap", a->o.write_file, ug_recorder_open_usbmon) < 0 ||
	    open_output(a, "raw record", a->o.raw_file, ug_recorder_open_raw) < 0)
		return EXIT_FAIL;

	if (a->o.read_file)
		e = run_file(a);
	else if (a->o.iface)
		e = run_live(a);
	else if (a->o.spice_listen)
		e = run_spice_proxy(a);
	else
		e = run_proxy(a);
	if (!a->rec_done)
		finish_recording(a);
	ug_recorder_get_stats(a->rec, &st);
	if (e == 0 || e == EXIT_UNUSABLE)
		summary(a, &st);

	code = e ? e : a->exit_code;
	if (!code && a->output_error_reported)
		code = EXIT_FAIL;
	if (!code && a->have_demux_stats && a->dstats.usbredir == 0 &&
	    a->dstats.spice_usbredir == 0 && !stop_requested) {
		if (a->dstats.tls)
			msg("error", "no usbredir found: %" PRIu64 " TLS connection%s cannot be decoded",
			    a->dstats.tls, a->dstats.tls == 1 ? "" : "s");
		else if (a->dstats.spice)
			msg("error", "no usbredir found: %" PRIu64 " SPICE connection%s but no usbredir "
			    "channel among them", a->dstats.spice, a->dstats.spice == 1 ? "" : "s");
		else
			msg("error", "no usbredir connection found (if the capture starts inside "
			    "one, name its port with --port, or a SPICE server's with --spice-port)");
		code = EXIT_UNUSABLE;
	}
	if (!code && a->have_demux_stats && a->dstats.damaged) {
		msg("warning", "the capture is damaged (%" PRIu64 " place%s where reading lost "
		    "data); everything before was written", a->dstats.damaged,
		    a->dstats.damaged == 1 ? "" : "s");
		code = EXIT_UNDECODED;
	}
	if (!code && (st.decode_errors || st.gaps)) {
		msg("warning", "some traffic could not be decoded (%" PRIu64 " decode errors, %"
		    PRIu64 " gaps); everything else was written", st.decode_errors, st.gaps);
		code = EXIT_UNDECODED;
	}
	return code;
}

int main(int argc, char **argv)
{
	struct app app = { 0 };
	struct app *a = &app;
	GError *err = NULL;
	GOptionContext *ctx;
	int code;
	GOptionEntry entries[] = {
		{ "listen", 'l', 0, G_OPTION_ARG_STRING, &a->o.listen,
		  "Proxy: accept the usb-guest (QEMU's chardev) on ADDR (default host 127.0.0.1)",
		  "ADDR:PORT" },
		{ "connect", 'C', 0, G_OPTION_ARG_STRING, &a->o.connect,
		  "Proxy: connect to the usb-host (usbredirect --as, usbredirsrv) at ADDR", "ADDR:PORT" },
		{ "reverse", 0, 0, G_OPTION_ARG_NONE, &a->o.reverse,
		  "Proxy: the listening side is the usb-host, the connected side the usb-guest", NULL },
		{ "keep", 'k', 0, G_OPTION_ARG_NONE, &a->o.keep,
		  "Proxy: serve further connections as new sessions", NULL },
		{ "read", 'r', 0, G_OPTION_ARG_FILENAME, &a->o.read_file,
		  "Read a pcap/pcapng capture (tcpdump, Wireshark)", "FILE" },
		{ "interface", 'i', 0, G_OPTION_ARG_STRING, &a->o.iface,
		  "Capture live on IFACE; remaining arguments are a BPF filter", "IFACE" },
		{ "write", 'w', 0, G_OPTION_ARG_FILENAME, &a->o.write_file,
		  "Write usbmon records (pcap, link type 220) for Wireshark", "FILE" },
		{ "raw", 0, 0, G_OPTION_ARG_FILENAME, &a->o.raw_file,
		  "Write the lossless raw usbredir record (pcap, link type 252)", "FILE" },
		{ "verbose", 'V', 0, G_OPTION_ARG_NONE, &a->o.verbose,
		  "Text: every field and a hex dump per packet", NULL },
		{ "json", 0, 0, G_OPTION_ARG_NONE, &a->o.json, "Text: JSON lines", NULL },
		{ "quiet", 'q', 0, G_OPTION_ARG_NONE, &a->o.quiet, "No per-packet text", NULL },
		{ "count", 'c', 0, G_OPTION_ARG_INT64, &a->o.count,
		  "Stop recording after N usbredir packets", "N" },
		{ "bus", 0, 0, G_OPTION_ARG_INT, &a->o.bus, "usbmon bus number (default 1)", "N" },
		{ "device", 0, 0, G_OPTION_ARG_INT, &a->o.device,
		  "usbmon device number of the first session (default 1)", "N" },
		{ "max-packet", 0, 0, G_OPTION_ARG_INT64, &a->o.max_packet,
		  "Largest usbredir packet decoded, in bytes (default 128 MiB + 1 KiB)", "BYTES" },
		{ "port", 'p', 0, G_OPTION_ARG_STRING_ARRAY, &a->o.ports,
		  "Captures: decode connections on PORT as usbredir even without a hello", "PORT" },
		{ "caps", 0, 0, G_OPTION_ARG_STRING, &a->o.caps,
		  "Captures: negotiated caps word for --port connections (default 0xff)", "HEX" },
		{ "guest", 0, 0, G_OPTION_ARG_STRING, &a->o.guest,
		  "Captures: which TCP side is the usb-guest: client, server or auto", "SIDE" },
		{ "spice-listen", 0, 0, G_OPTION_ARG_STRING, &a->o.spice_listen,
		  "SPICE proxy: accept the SPICE client (remote-viewer, usbreplay --spice) on ADDR",
		  "ADDR:PORT" },
		{ "spice-connect", 0, 0, G_OPTION_ARG_STRING, &a->o.spice_connect,
		  "SPICE proxy: connect each channel to the SPICE server (QEMU -spice port=) at ADDR",
		  "HOST:PORT" },
		{ "spice-tls-listen", 0, 0, G_OPTION_ARG_STRING, &a->o.spice_tls_listen,
		  "SPICE proxy: also accept TLS clients on ADDR, terminating TLS", "ADDR:PORT" },
		{ "spice-tls-connect", 0, 0, G_OPTION_ARG_STRING, &a->o.spice_tls_connect,
		  "SPICE proxy: the server's TLS port (QEMU -spice tls-port=)", "HOST:PORT" },
		{ "tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &a->o.tls_cert,
		  "SPICE proxy: PEM certificate (chain) shown to TLS clients", "FILE" },
		{ "tls-key", 0, 0, G_OPTION_ARG_FILENAME, &a->o.tls_key,
		  "SPICE proxy: PEM private key of --tls-cert", "FILE" },
		{ "tls-ca", 0, 0, G_OPTION_ARG_FILENAME, &a->o.tls_ca,
		  "SPICE proxy: PEM CA to verify the server with (default: the system's)", "FILE" },
		{ "spice-port", 0, 0, G_OPTION_ARG_STRING_ARRAY, &a->o.spice_ports,
		  "Captures: connections on PORT are SPICE, that side the server", "PORT" },
		{ "user", 'Z', 0, G_OPTION_ARG_STRING, &a->o.user,
		  "Once the capture, listening sockets and output files are open, run as USER "
		  "(and GROUP) instead of root, like tcpdump -Z", "USER[:GROUP]" },
		{ "debug", 0, 0, G_OPTION_ARG_NONE, &a->o.debug, "Also print debug messages", NULL },
		{ G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &a->o.rest, NULL, "[FILTER...]" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL }
	};

	signal(SIGPIPE, SIG_IGN);
	ctx = g_option_context_new("- record usbredir sessions as pcap, raw record and text");
	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_set_summary(ctx,
		"Sources (one of):\n"
		"  --listen ADDR:PORT --connect HOST:PORT   proxy between QEMU and the usb-host\n"
		"  --spice-listen ADDR:PORT --spice-connect HOST:PORT\n"
		"                                           SPICE proxy between a client and QEMU\n"
		"  -r FILE                                  a tcpdump/Wireshark capture\n"
		"  -i IFACE [FILTER...]                     a live capture");
	g_option_context_set_description(ctx,
		"Exit status: 0 ok, 1 failure, 2 usage, 3 input unusable, 4 some traffic could "
		"not be decoded.\nSee usbdump(1).");
	if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
		msg("error", "%s (try --help)", err->message);
		g_error_free(err);
		code = EXIT_USAGE;
	} else {
		code = run(a);
	}
	g_option_context_free(ctx);
	ug_capture_demux_free(a->demux);
	ug_capture_free(a->cap);
	ug_recorder_free(a->rec);
	if (a->loop)
		g_main_loop_unref(a->loop);
	g_strfreev(a->o.ports);
	g_strfreev(a->o.rest);
	g_free(a->o.listen);
	g_free(a->o.connect);
	g_free(a->o.read_file);
	g_free(a->o.iface);
	g_free(a->o.write_file);
	g_free(a->o.raw_file);
	g_free(a->o.caps);
	g_free(a->o.guest);
	g_free(a->o.spice_listen);
	g_free(a->o.spice_connect);
	g_free(a->o.spice_tls_listen);
	g_free(a->o.spice_tls_connect);
	g_free(a->o.tls_cert);
	g_free(a->o.tls_key);
	g_free(a->o.tls_ca);
	g_strfreev(a->o.spice_ports);
	g_free(a->o.user);
	ug_privileges_free(a->priv);
	return code;
}
