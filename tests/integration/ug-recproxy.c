/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ug-recproxy.c: a tiny recording proxy on libusbgate's public API, for the usbreplay tests. */
/*
 * ug-recproxy LISTEN-ADDR TARGET-ADDR RAW-PCAP USBMON-PCAP
 * Waits for one usb-guest (QEMU's usb-redir chardev) on LISTEN-ADDR, then
 * connects to the usb-host at TARGET-ADDR, forwards both directions
 * unchanged and records the session through ug_recorder (the lossless raw
 * record and the usbmon pcap). Ends when either side closes. The test
 * scripts compile it against the build tree, because usbdump (the real
 * tool for this) is written in parallel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib-unix.h>

#include "usbgate.h"

struct proxy {
	GMainLoop *loop;
	ug_listener *l;
	ug_connector *c;
	ug_transport *guest, *host;
	ug_recorder *rec;
	int session;
	int rc;
};

static uint64_t now_ns(void)
{
	return (uint64_t)g_get_real_time() * 1000u;
}

static void on_guest_data(ug_transport *t, const uint8_t *d, size_t n, void *u)
{
	struct proxy *p = u;

	(void)t;
	ug_recorder_feed(p->rec, p->session, UG_DIR_G2H, d, n, now_ns());
	if (p->host)
		ug_transport_send(p->host, d, n);
}

static void on_host_data(ug_transport *t, const uint8_t *d, size_t n, void *u)
{
	struct proxy *p = u;

	(void)t;
	ug_recorder_feed(p->rec, p->session, UG_DIR_H2G, d, n, now_ns());
	ug_transport_send(p->guest, d, n);
}

static void on_closed(ug_transport *t, int error, const char *msg, void *u)
{
	struct proxy *p = u;

	fprintf(stderr, "ug-recproxy: %s closed: %s\n", ug_transport_describe(t),
		msg && *msg ? msg : error ? ug_strerror(error) : "orderly");
	g_main_loop_quit(p->loop);
}

static void on_connected(ug_connector *c, ug_transport *t, int error, const char *msg, void *u)
{
	struct proxy *p = u;

	(void)c;
	if (!t) {
		fprintf(stderr, "ug-recproxy: cannot reach the host: %s\n",
			msg ? msg : ug_strerror(error));
		p->rc = 1;
		g_main_loop_quit(p->loop);
		return;
	}
	p->host = t;
	ug_transport_set_callbacks(t, on_host_data, on_closed, p);
	ug_transport_pause(p->guest, 0);
}

static void on_accept(ug_listener *l, ug_transport *t, void *u)
{
	struct proxy *p = u;

	ug_listener_pause(l, 1);
	if (p->guest) {
		ug_transport_free(t);
		return;
	}
	p->guest = t;
	/* Hold the guest's bytes until the host is there to take them. */
	ug_transport_pause(t, 1);
	ug_transport_set_callbacks(t, on_guest_data, on_closed, p);
	ug_connector_start(p->c, on_connected, p);
}

static gboolean on_signal(gpointer u)
{
	g_main_loop_quit(((struct proxy *)u)->loop);
	return G_SOURCE_CONTINUE;
}

int main(int argc, char **argv)
{
	struct proxy p;
	struct ug_address la, ta;
	char err[256], text[UG_ADDRESS_TEXT_MAX];

	if (argc != 5) {
		fprintf(stderr, "usage: ug-recproxy LISTEN TARGET RAW.pcap USBMON.pcap\n");
		return 2;
	}
	memset(&p, 0, sizeof(p));
	if (ug_address_parse(argv[1], &la, err, sizeof(err)) < 0 ||
	    ug_address_parse(argv[2], &ta, err, sizeof(err)) < 0) {
		fprintf(stderr, "ug-recproxy: %s\n", err);
		return 2;
	}
	p.loop = g_main_loop_new(NULL, FALSE);
	p.rec = ug_recorder_new();
	if (ug_recorder_open_raw(p.rec, argv[3]) < 0 || ug_recorder_open_usbmon(p.rec, argv[4]) < 0) {
		fprintf(stderr, "ug-recproxy: %s\n", ug_recorder_errmsg(p.rec));
		return 1;
	}
	p.session = ug_recorder_add_session(p.rec, "ug-recproxy");
	p.c = ug_connector_new(&ta);
	ug_connector_set_backoff(p.c, 100, 1000, 20);
	p.l = ug_listener_new();
	if (ug_listener_open(p.l, &la, on_accept, &p) < 0) {
		fprintf(stderr, "ug-recproxy: %s\n", ug_listener_errmsg(p.l));
		return 1;
	}
	fprintf(stderr, "ug-recproxy: listening on %s\n",
		ug_address_format(ug_listener_address(p.l), text, sizeof(text)));
	g_unix_signal_add(SIGINT, on_signal, &p);
	g_unix_signal_add(SIGTERM, on_signal, &p);
	g_main_loop_run(p.loop);
	ug_recorder_end_session(p.rec, p.session, now_ns());
	if (ug_recorder_finish(p.rec) < 0) {
		fprintf(stderr, "ug-recproxy: %s\n", ug_recorder_errmsg(p.rec));
		p.rc = 1;
	}
	ug_transport_free(p.guest);
	ug_transport_free(p.host);
	ug_connector_free(p.c);
	ug_listener_free(p.l);
	ug_recorder_free(p.rec);
	g_main_loop_unref(p.loop);
	return p.rc;
}
