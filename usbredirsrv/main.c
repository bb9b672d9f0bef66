/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* main.c: usbredirsrv, a daemon exporting USB devices to QEMU over usbredir TCP or unix sockets. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define G_LOG_DOMAIN "usbredirsrv"
#include <glib.h>
#include <glib-unix.h>

#include "usbgate.h"
#include "usbredirsrv.h"

/* One running export: a bridge plus the listener or connector feeding it. */
struct export {
	struct srv_export_spec *spec;   /* owned */
	ug_usb_filter *filter;          /* the export's own rules, or NULL */
	ug_device_bridge *bridge;
	ug_listener *listener;          /* listen mode */
	ug_connector *connector;        /* connect mode */
	struct ug_address addr;
	char addr_text[UG_ADDRESS_TEXT_MAX];
	int stopping;
	struct server *srv;
	int rec_session;                /* recorder session of the running session, or 0 */
};

struct spice_mode;

struct server {
	GMainLoop *loop;
	ug_recorder *rec;               /* --pcap, or NULL */
	struct spice_mode *spice;       /* --spice, or NULL */
	ug_usb_host *host;
	ug_usb_filter *filter;          /* global rules, or NULL */
	GPtrArray *exports;             /* struct export * */
	struct srv_options opts;
	int verbosity;
	int exit_code;
};

static int log_verbosity;

/* Drops what -v did not ask for, then writes to journald when stderr is
 * connected to it (fields and priority kept), else one line on stderr. */
static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields,
                                   gsize n_fields, gpointer user_data)
{
	if ((level & G_LOG_LEVEL_DEBUG) && log_verbosity < 2)
		return G_LOG_WRITER_HANDLED;
	if ((level & G_LOG_LEVEL_INFO) && log_verbosity < 1)
		return G_LOG_WRITER_HANDLED;
	if (g_log_writer_is_journald(fileno(stderr)) &&
	    g_log_writer_journald(level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
		return G_LOG_WRITER_HANDLED;
	{
		/* One plain line: the serial consoles and log files this goes to
		 * are not terminals worth colouring. */
		char *line = g_log_writer_format_fields(level, fields, n_fields, FALSE);

		fprintf(stderr, "%s\n", line);
		g_free(line);
	}
	return G_LOG_WRITER_HANDLED;
}

static GLogLevelFlags glib_level(int ug_level)
{
	switch (ug_level) {
	case UG_LOG_ERROR:
		return G_LOG_LEVEL_CRITICAL;
	case UG_LOG_WARNING:
		return G_LOG_LEVEL_WARNING;
	case UG_LOG_INFO:
		return G_LOG_LEVEL_INFO;
	default:
		return G_LOG_LEVEL_DEBUG;
	}
}

/* The library's log callback; may run on libusb's event thread. */
static void lib_log(int level, const char *message, void *user_data)
{
	g_log_structured(G_LOG_DOMAIN, glib_level(level), "MESSAGE", "%s", message);
}

static void export_log(struct export *e, GLogLevelFlags level, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);

static void export_log(struct export *e, GLogLevelFlags level, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_log_structured(G_LOG_DOMAIN, level, "USBREDIRSRV_EXPORT", e->spec->name,
	                 "USBREDIRSRV_ADDRESS", e->addr_text, "USBREDIRSRV_DEVICE",
	                 e->spec->device, "MESSAGE", "export %s: %s", e->spec->name, msg);
	g_free(msg);
}

static void connector_log(int level, const char *message, void *user_data)
{
	struct export *e = user_data;

	export_log(e, glib_level(level), "%s", message);
}

static void export_start_connecting(struct export *e);

static uint64_t now_ns(void)
{
	return (uint64_t)g_get_real_time() * 1000u;
}

/* --pcap: a recorder session per bridge session, opened at its first byte
 * so that the hello, sent from inside ug_device_bridge_attach(), is in it. */
static void recorder_tap(ug_recorder *rec, int *session, const char *label, enum ug_dir dir,
                         const uint8_t *data, size_t len)
{
	if (!rec)
		return;
	if (*session == 0) {
		int r = ug_recorder_add_session(rec, label);

		if (r < 0) {
			g_warning("--pcap: %s", ug_recorder_errmsg(rec));
			return;
		}
		*session = r;
	}
	if (ug_recorder_feed(rec, *session, dir, data, len, now_ns()) < 0)
		g_debug("--pcap: %s", ug_recorder_errmsg(rec));
}

static void recorder_end(ug_recorder *rec, int *session)
{
	if (rec && *session > 0)
		ug_recorder_end_session(rec, *session, now_ns());
	*session = 0;
}

static void on_bridge_tap(ug_device_bridge *b, enum ug_dir dir, const uint8_t *data, size_t len,
                          void *user_data)
{
	struct export *e = user_data;
	char label[UG_ADDRESS_TEXT_MAX + 64];

	g_snprintf(label, sizeof(label), "export %s %s", e->spec->name, e->addr_text);
	recorder_tap(e->srv->rec, &e->rec_session, label, dir, data, len);
}

static void on_bridge_event(ug_device_bridge *b, enum ug_device_bridge_event ev, int error,
                            const char *message, void *user_data)
{
	struct export *e = user_data;

	switch (ev) {
	case UG_BRIDGE_DEVICE_ADDED:
		export_log(e, G_LOG_LEVEL_MESSAGE, "device %s present", message);
		break;
	case UG_BRIDGE_DEVICE_REMOVED:
		export_log(e, G_LOG_LEVEL_MESSAGE, "device %s unplugged", message);
		break;
	case UG_BRIDGE_SESSION_STARTED:
		export_log(e, G_LOG_LEVEL_MESSAGE, "session started: %s", message);
		break;
	case UG_BRIDGE_SESSION_ENDED:
		export_log(e, error ? G_LOG_LEVEL_WARNING : G_LOG_LEVEL_MESSAGE,
		           "session ended: %s", message);
		recorder_end(e->srv->rec, &e->rec_session);
		if (e->stopping)
			break;
		/* Offer the device again: accept the next peer, or reconnect. */
		if (e->listener)
			ug_listener_pause(e->listener, 0);
		else
			export_start_connecting(e);
		break;
	}
}

static void on_accept(ug_listener *l, ug_transport *t, void *user_data)
{
	struct export *e = user_data;

	if (ug_device_bridge_in_session(e->bridge)) {
		export_log(e, G_LOG_LEVEL_WARNING, "refused %s: a session is running",
		           ug_transport_describe(t));
		ug_transport_free(t);
		return;
	}
	/* One peer per device: later ones wait in the backlog until this ends. */
	ug_listener_pause(l, 1);
	if (ug_device_bridge_attach(e->bridge, t) < 0) {
		export_log(e, G_LOG_LEVEL_WARNING, "%s", ug_device_bridge_errmsg(e->bridge));
		ug_listener_pause(l, 0);
	}
}

static void on_connected(ug_connector *c, ug_transport *t, int error, const char *message,
                         void *user_data)
{
	struct export *e = user_data;

	if (!t) {
		export_log(e, G_LOG_LEVEL_WARNING, "%s", message);
		return;
	}
	if (ug_device_bridge_attach(e->bridge, t) < 0) {
		export_log(e, G_LOG_LEVEL_WARNING, "%s", ug_device_bridge_errmsg(e->bridge));
		export_start_connecting(e);
	}
}

static void export_start_connecting(struct export *e)
{
	if (ug_connector_start(e->connector, on_connected, e) < 0)
		export_log(e, G_LOG_LEVEL_WARNING, "%s", ug_connector_errmsg(e->connector));
}

static void export_free(gpointer p)
{
	struct export *e = p;

	if (!e)
		return;
	e->stopping = 1;
	ug_listener_free(e->listener);
	ug_connector_free(e->connector);
	if (e->bridge) {
		if (ug_device_bridge_in_session(e->bridge))
			export_log(e, G_LOG_LEVEL_MESSAGE, "stopping; device released");
		ug_device_bridge_free(e->bridge);
	}
	recorder_end(e->srv->rec, &e->rec_session);
	ug_usb_filter_free(e->filter);
	srv_export_spec_free(e->spec);
	g_free(e);
}

/* Builds and starts one export; takes spec. Returns NULL (logged) on failure. */
static struct export *export_start(struct server *srv, struct srv_export_spec *spec)
{
	struct export *e = g_new0(struct export, 1);
	ug_usb_selector *sel;
	char err[256];

	e->spec = spec;
	e->srv = srv;
	if (ug_address_parse(spec->address, &e->addr, err, sizeof(err)) < 0 ||
	    ug_usb_selector_parse(spec->device, &sel, err, sizeof(err)) < 0 ||
	    (spec->filter && ug_usb_filter_parse(spec->filter, &e->filter, err, sizeof(err)) < 0)) {
		/* Checked when the options were read; only OOM gets here. */
		export_log(e, G_LOG_LEVEL_CRITICAL, "%s", err);
		export_free(e);
		return NULL;
	}
	ug_address_format(&e->addr, e->addr_text, sizeof(e->addr_text));
	e->bridge = ug_device_bridge_new(srv->host, spec->name, sel,
	                                 e->filter ? e->filter : srv->filter);
	if (!e->bridge) {
		ug_usb_selector_free(sel);
		export_log(e, G_LOG_LEVEL_CRITICAL, "out of memory");
		export_free(e);
		return NULL;
	}
	ug_device_bridge_set_events(e->bridge, on_bridge_event, e);
	if (srv->rec)
		ug_device_bridge_set_tap(e->bridge, on_bridge_tap, e);
	if (!ug_address_is_loopback(&e->addr))
		export_log(e, G_LOG_LEVEL_WARNING,
		           "%s %s is not a loopback address: anyone who reaches it can use the "
		           "device", spec->connect ? "connecting to" : "listening on", e->addr_text);
	if (spec->connect) {
		e->connector = ug_connector_new(&e->addr);
		if (!e->connector) {
			export_free(e);
			return NULL;
		}
		ug_connector_set_backoff(e->connector, 250, 5000, 0);
		ug_connector_set_log(e->connector, connector_log, e);
		export_start_connecting(e);
		export_log(e, G_LOG_LEVEL_MESSAGE, "device %s, connecting to %s", spec->device,
		           e->addr_text);
	} else {
		e->listener = ug_listener_new();
		if (!e->listener || ug_listener_open(e->listener, &e->addr, on_accept, e) < 0) {
			export_log(e, G_LOG_LEVEL_CRITICAL, "%s",
			           e->listener ? ug_listener_errmsg(e->listener) : "out of memory");
			export_free(e);
			return NULL;
		}
		ug_address_format(ug_listener_address(e->listener), e->addr_text,
		                  sizeof(e->addr_text));
		export_log(e, G_LOG_LEVEL_MESSAGE, "device %s, listening on %s", spec->device,
		           e->addr_text);
	}
	return e;
}

static struct srv_export_spec *spec_copy(const struct srv_export_spec *s)
{
	struct srv_export_spec *c = g_new0(struct srv_export_spec, 1);

	c->name = g_strdup(s->name);
	c->device = g_strdup(s->device);
	c->address = g_strdup(s->address);
	c->filter = g_strdup(s->filter);
	c->connect = s->connect;
	c->from_config = s->from_config;
	return c;
}

/* Applies a new set of config exports: unchanged ones keep running (and
 * their sessions), changed or removed ones stop, new ones start. */
static int apply_config_exports(struct server *srv, GPtrArray *specs, int fail_fast)
{
	for (guint i = srv->exports->len; i-- > 0;) {
		struct export *e = srv->exports->pdata[i];
		int keep = !e->spec->from_config;

		for (guint j = 0; j < specs->len && !keep; j++)
			keep = srv_export_spec_equal(e->spec, specs->pdata[j]);
		if (!keep) {
			export_log(e, G_LOG_LEVEL_MESSAGE, "removed from the configuration");
			g_ptr_array_remove_index(srv->exports, i);
		}
	}
	for (guint j = 0; j < specs->len; j++) {
		struct srv_export_spec *s = specs->pdata[j];
		int have = 0;

		for (guint i = 0; i < srv->exports->len && !have; i++)
			have = srv_export_spec_equal(((struct export *)srv->exports->pdata[i])->spec, s);
		if (!have) {
			struct export *e = export_start(srv, spec_copy(s));

			if (!e && fail_fast)
				return -1;
			if (e)
				g_ptr_array_add(srv->exports, e);
		}
	}
	return 0;
}

/* ---- --spice: usbredir channels of a SPICE session ---------------------- */

#define SPICE_MAX_CHANNELS 256
#define SPICE_DEFAULT_AUTO_CONNECT "0x03,-1,-1,-1,0|-1,-1,-1,-1,1"

/* A local device given to the VM over one usbredir channel. */
struct spice_dev {
	struct spice_mode *m;
	char port_path[48];
	ug_device_bridge *bridge;
	int channel;                    /* the channel its session runs on, or -1 */
	int rec_session;
};

/* One --from export, bridged byte for byte into one usbredir channel. */
struct spice_from {
	struct spice_mode *m;
	struct ug_address addr;
	char text[UG_ADDRESS_TEXT_MAX];
	ug_connector *conn;
	int connecting;
	ug_proxy *proxy;
	int channel;                    /* the channel the proxy runs on, or -1 */
	int rec_session;
	unsigned backoff_ms;            /* delay before the next attempt */
	guint retry_id;
};

struct spice_mode {
	struct server *srv;
	ug_spice_client *client;
	unsigned char present[SPICE_MAX_CHANNELS]; /* offered by the server */
	unsigned char busy[SPICE_MAX_CHANNELS];    /* carrying a session */
	/* --from: usbredir exports, each bridged into a channel of its own. */
	int from_mode;
	GPtrArray *froms;               /* struct spice_from * */
	/* Local devices: rules, devices seen, bridges. */
	ug_usb_filter *auto_filter;
	ug_usb_filter *roc_filter;
	GHashTable *known;              /* port paths present at the last scan */
	GPtrArray *devs;                /* struct spice_dev * */
	guint poll_id, reconnect_id, assign_id;
	unsigned backoff_ms;
	int stopping;
};

static void spice_dev_free(gpointer p)
{
	struct spice_dev *d = p;

	if (!d)
		return;
	ug_device_bridge_free(d->bridge);
	recorder_end(d->m->srv->rec, &d->rec_session);
	g_free(d);
}

static void spice_schedule_assign(struct spice_mode *m);

static int spice_free_channel(struct spice_mode *m)
{
	for (int i = 0; i < SPICE_MAX_CHANNELS; i++)
		if (m->present[i] && !m->busy[i])
			return i;
	return -1;
}

static int spice_free_channel_count(struct spice_mode *m)
{
	int n = 0;

	for (int i = 0; i < SPICE_MAX_CHANNELS; i++)
		n += m->present[i] && !m->busy[i];
	return n;
}

/* A usbredir channel refused on TLS verification or on the password (it
 * links on its own connection, maybe to the TLS port) does not get better
 * by trying again: end as the main channel would. Returns 1 if it ended. */
static int spice_channel_fatal(struct spice_mode *m, int error, const char *message)
{
	if (error != UG_E_TLS && error != UG_E_AUTH)
		return 0;
	g_critical("SPICE: %s", message);
	m->srv->exit_code = error == UG_E_AUTH ? SRV_EXIT_SPICE_AUTH : SRV_EXIT_SPICE_LINK;
	m->stopping = 1;
	g_main_loop_quit(m->srv->loop);
	return 1;
}

static void on_dev_tap(ug_device_bridge *b, enum ug_dir dir, const uint8_t *data, size_t len,
                       void *user_data)
{
	struct spice_dev *d = user_data;
	char label[128];

	g_snprintf(label, sizeof(label), "device port=%s on spice usbredir channel %d",
	           d->port_path, d->channel);
	recorder_tap(d->m->srv->rec, &d->rec_session, label, dir, data, len);
}

static void on_dev_event(ug_device_bridge *b, enum ug_device_bridge_event ev, int error,
                         const char *message, void *user_data)
{
	struct spice_dev *d = user_data;

	switch (ev) {
	case UG_BRIDGE_DEVICE_ADDED:
		g_message("device port=%s: %s present", d->port_path, message);
		break;
	case UG_BRIDGE_DEVICE_REMOVED:
		g_message("device port=%s: %s unplugged", d->port_path, message);
		break;
	case UG_BRIDGE_SESSION_STARTED:
		g_message("device port=%s attached to the VM on %s", d->port_path, message);
		break;
	case UG_BRIDGE_SESSION_ENDED:
		g_log(G_LOG_DOMAIN, error ? G_LOG_LEVEL_WARNING : G_LOG_LEVEL_MESSAGE,
		      "device port=%s detached: %s", d->port_path, message);
		recorder_end(d->m->srv->rec, &d->rec_session);
		if (d->channel >= 0)
			d->m->busy[d->channel] = 0;
		d->channel = -1;
		if (spice_channel_fatal(d->m, error, message))
			break;
		/* The channel's removal (if that is why) comes next: decide later. */
		spice_schedule_assign(d->m);
		break;
	}
}

static void spice_add_dev(struct spice_mode *m, const struct ug_usb_device_info *info,
                          const char *why)
{
	char text[64], err[256];
	ug_usb_selector *sel;
	struct spice_dev *d;

	for (guint i = 0; i < m->devs->len; i++)
		if (strcmp(((struct spice_dev *)m->devs->pdata[i])->port_path, info->port_path) == 0)
			return;
	/* The port path stays the same across replugs, so the bridge gets the
	 * same device back when it returns. */
	g_snprintf(text, sizeof(text), "port=%s", info->port_path);
	if (ug_usb_selector_parse(text, &sel, err, sizeof(err)) < 0) {
		g_warning("device %s: %s", info->port_path, err);
		return;
	}
	d = g_new0(struct spice_dev, 1);
	d->m = m;
	d->channel = -1;
	g_strlcpy(d->port_path, info->port_path, sizeof(d->port_path));
	d->bridge = ug_device_bridge_new(m->srv->host, text, sel, NULL);
	if (!d->bridge) {
		ug_usb_selector_free(sel);
		g_free(d);
		return;
	}
	ug_device_bridge_set_events(d->bridge, on_dev_event, d);
	if (m->srv->rec)
		ug_device_bridge_set_tap(d->bridge, on_dev_tap, d);
	g_message("device port=%s %04x:%04x %s: selected (%s)", info->port_path, info->vendor_id,
	          info->product_id, info->product, why);
	g_ptr_array_add(m->devs, d);
}

/* Devices present at start go by --redirect-on-connect, devices that
 * appear later by the auto-connect filter, as in spice-gtk. */
static void spice_scan(struct spice_mode *m, int initial)
{
	struct ug_usb_device_info *list;
	size_t count;
	GHashTable *now;

	if (ug_usb_host_list(m->srv->host, &list, &count) < 0)
		return;
	now = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	for (size_t i = 0; i < count; i++) {
		const struct ug_usb_device_info *d = &list[i];

		g_hash_table_add(now, g_strdup(d->port_path));
		if (g_hash_table_contains(m->known, d->port_path))
			continue;
		if (initial) {
			if (m->roc_filter && ug_usb_filter_allows(m->roc_filter, d))
				spice_add_dev(m, d, "--redirect-on-connect");
		} else if (ug_usb_filter_allows(m->auto_filter, d)) {
			spice_add_dev(m, d, "plugged in, auto-connect filter");
		}
	}
	free(list);
	g_hash_table_unref(m->known);
	m->known = now;
}

static gboolean spice_poll(gpointer data)
{
	struct spice_mode *m = data;
	guint before = m->devs->len;

	spice_scan(m, 0);
	if (m->devs->len != before)
		spice_schedule_assign(m);
	return G_SOURCE_CONTINUE;
}

/* A hotplug event: the same scan as the poll, compared with the last. */
static void on_usb_hotplug(ug_usb_host *h, int arrived, const struct ug_usb_device_info *info,
                           void *user_data)
{
	spice_poll(user_data);
}

static void on_proxy_tap(ug_proxy *p, enum ug_dir dir, const uint8_t *data, size_t len,
                         uint64_t ts_ns, void *user_data)
{
	struct spice_from *f = user_data;
	char label[UG_ADDRESS_TEXT_MAX + 64];

	g_snprintf(label, sizeof(label), "%s on spice usbredir channel %d", f->text, f->channel);
	recorder_tap(f->m->srv->rec, &f->rec_session, label, dir, data, len);
}

static gboolean spice_assign(gpointer data);

static gboolean spice_from_retry(gpointer data)
{
	struct spice_from *f = data;

	f->retry_id = 0;
	spice_assign(f->m);
	return G_SOURCE_REMOVE;
}

static void on_proxy_closed(ug_proxy *p, enum ug_dir first_side, int error, const char *message,
                            void *user_data)
{
	struct spice_from *f = user_data;
	struct spice_mode *m = f->m;
	struct ug_proxy_stats st;

	g_log(G_LOG_DOMAIN, error ? G_LOG_LEVEL_WARNING : G_LOG_LEVEL_MESSAGE,
	      "%s detached (%s side ended first): %s", f->text,
	      first_side == UG_DIR_G2H ? "SPICE" : "export", message);
	ug_proxy_get_stats(p, &st);
	recorder_end(m->srv->rec, &f->rec_session);
	if (f->channel >= 0)
		m->busy[f->channel] = 0;
	f->channel = -1;
	ug_proxy_free(p);
	f->proxy = NULL;
	if (first_side == UG_DIR_G2H && spice_channel_fatal(m, error, message))
		return;
	/* An export that closes before sending anything (a port forward whose
	 * target is not listening yet, an exporter restarting) is retried with
	 * backoff rather than in a tight loop; one that worked, at once. */
	if (first_side == UG_DIR_H2G && st.bytes[UG_DIR_H2G] == 0) {
		f->backoff_ms = f->backoff_ms ? MIN(f->backoff_ms * 2, 5000u) : 250u;
		if (!f->retry_id && !m->stopping)
			f->retry_id = g_timeout_add(f->backoff_ms, spice_from_retry, f);
		return;
	}
	f->backoff_ms = 0;
	spice_schedule_assign(m);
}

static void on_from_connected(ug_connector *c, ug_transport *t, int error, const char *message,
                              void *user_data)
{
	struct spice_from *f = user_data;
	struct spice_mode *m = f->m;
	ug_transport *st;
	int ch;

	f->connecting = 0;
	if (!t) {
		g_warning("--from %s: %s", f->text, message);
		return;
	}
	ch = spice_free_channel(m);
	if (ch < 0 || ug_spice_client_open_usbredir(m->client, (unsigned)ch, &st) < 0) {
		g_warning("%s: no usbredir channel to attach it to%s%s", f->text,
		          ch < 0 ? "" : ": ", ch < 0 ? "" : ug_spice_client_errmsg(m->client));
		ug_transport_free(t);
		spice_schedule_assign(m);
		return;
	}
	f->proxy = ug_proxy_new(st, t);
	if (!f->proxy) {
		ug_transport_free(st);
		ug_transport_free(t);
		return;
	}
	m->busy[ch] = 1;
	f->channel = ch;
	ug_proxy_set_closed(f->proxy, on_proxy_closed, f);
	if (m->srv->rec)
		ug_proxy_set_tap(f->proxy, on_proxy_tap, f);
	ug_proxy_start(f->proxy);
	g_message("%s attached to the VM on spice usbredir channel %d", f->text, ch);
}

static void spice_from_free(gpointer p)
{
	struct spice_from *f = p;

	if (f->retry_id)
		g_source_remove(f->retry_id);
	ug_connector_free(f->conn);
	/* The proxy owns the channel's transport: free it before the client. */
	ug_proxy_free(f->proxy);
	recorder_end(f->m->srv->rec, &f->rec_session);
	g_free(f);
}

static void connector_plain_log(int level, const char *message, void *user_data)
{
	g_log_structured(G_LOG_DOMAIN, glib_level(level), "MESSAGE", "--from: %s", message);
}

/* Gives waiting devices (or the --from export) the free channels. */
static gboolean spice_assign(gpointer data)
{
	struct spice_mode *m = data;

	m->assign_id = 0;
	if (m->stopping || !ug_spice_client_is_connected(m->client))
		return G_SOURCE_REMOVE;
	if (m->from_mode) {
		/* As many exports connect as there are free channels for them. */
		int avail = spice_free_channel_count(m);

		for (guint i = 0; i < m->froms->len; i++)
			avail -= ((struct spice_from *)m->froms->pdata[i])->connecting;
		for (guint i = 0; i < m->froms->len && avail > 0; i++) {
			struct spice_from *f = m->froms->pdata[i];

			if (f->proxy || f->connecting || f->retry_id)
				continue;
			f->connecting = 1;
			if (ug_connector_start(f->conn, on_from_connected, f) < 0) {
				f->connecting = 0;
				g_warning("--from: %s", ug_connector_errmsg(f->conn));
				continue;
			}
			avail--;
		}
		return G_SOURCE_REMOVE;
	}
	for (guint i = 0; i < m->devs->len; i++) {
		struct spice_dev *d = m->devs->pdata[i];
		ug_transport *t;
		int ch;

		if (d->channel >= 0 || !ug_device_bridge_device(d->bridge, NULL))
			continue;
		ch = spice_free_channel(m);
		if (ch < 0) {
			g_warning("device port=%s waits: every usbredir channel of the VM is in use",
			          d->port_path);
			break;
		}
		if (ug_spice_client_open_usbredir(m->client, (unsigned)ch, &t) < 0) {
			g_warning("%s", ug_spice_client_errmsg(m->client));
			break;
		}
		m->busy[ch] = 1;
		d->channel = ch;
		if (ug_device_bridge_attach(d->bridge, t) < 0) {
			g_warning("%s", ug_device_bridge_errmsg(d->bridge));
			m->busy[ch] = 0;
			d->channel = -1;
		}
	}
	return G_SOURCE_REMOVE;
}

static void spice_schedule_assign(struct spice_mode *m)
{
	if (!m->assign_id && !m->stopping)
		m->assign_id = g_idle_add(spice_assign, m);
}

static void on_spice_connected(ug_spice_client *c, void *user_data)
{
	struct spice_mode *m = user_data;

	m->backoff_ms = 0;
	g_message("SPICE session %08x connected", ug_spice_client_session_id(c));
}

static void on_channel_added(ug_spice_client *c, unsigned id, void *user_data)
{
	struct spice_mode *m = user_data;

	if (id >= SPICE_MAX_CHANNELS)
		return;
	g_info("the VM offers usbredir channel %u", id);
	m->present[id] = 1;
	m->busy[id] = 0;
	spice_schedule_assign(m);
}

static void on_channel_removed(ug_spice_client *c, unsigned id, void *user_data)
{
	struct spice_mode *m = user_data;

	if (id >= SPICE_MAX_CHANNELS)
		return;
	g_message("usbredir channel %u closed", id);
	m->present[id] = 0;
	m->busy[id] = 0;
	spice_schedule_assign(m);
}

static gboolean spice_reconnect(gpointer data)
{
	struct spice_mode *m = data;

	m->reconnect_id = 0;
	if (ug_spice_client_connect(m->client) < 0)
		g_warning("%s", ug_spice_client_errmsg(m->client));
	return G_SOURCE_REMOVE;
}

static void on_spice_disconnected(ug_spice_client *c, int error, const char *message,
                                  void *user_data)
{
	struct spice_mode *m = user_data;
	struct server *srv = m->srv;

	memset(m->present, 0, sizeof(m->present));
	memset(m->busy, 0, sizeof(m->busy));
	if (error == UG_E_AUTH || error == UG_E_TLS || srv->opts.no_reconnect) {
		/* A refused password or certificate does not get better by
		 * trying again: say so and stop. */
		if (error)
			g_critical("SPICE: %s", message);
		else
			g_message("SPICE session ended: %s", message);
		srv->exit_code = error == UG_E_AUTH ? SRV_EXIT_SPICE_AUTH :
		                 error ? SRV_EXIT_SPICE_LINK : SRV_EXIT_OK;
		g_main_loop_quit(srv->loop);
		return;
	}
	m->backoff_ms = m->backoff_ms ? MIN(m->backoff_ms * 2, 5000u) : 250u;
	g_warning("SPICE session ended: %s; reconnecting in %u ms (devices are re-attached)",
	          message, m->backoff_ms);
	m->reconnect_id = g_timeout_add(m->backoff_ms, spice_reconnect, m);
}

static void spice_lib_log(int level, const char *message, void *user_data)
{
	g_log_structured(G_LOG_DOMAIN, glib_level(level), "MESSAGE", "SPICE: %s", message);
}

static void spice_mode_free(struct spice_mode *m)
{
	if (!m)
		return;
	m->stopping = 1;
	ug_usb_host_set_hotplug(m->srv->host, NULL, NULL);
	if (m->poll_id)
		g_source_remove(m->poll_id);
	if (m->reconnect_id)
		g_source_remove(m->reconnect_id);
	if (m->assign_id)
		g_source_remove(m->assign_id);
	/* The proxies and the bridges own the channels' transports: free them
	 * before the client. */
	if (m->froms)
		g_ptr_array_unref(m->froms);
	if (m->devs)
		g_ptr_array_unref(m->devs);
	ug_spice_client_free(m->client);
	ug_usb_filter_free(m->auto_filter);
	ug_usb_filter_free(m->roc_filter);
	if (m->known)
		g_hash_table_unref(m->known);
	g_free(m);
}

/* Sets up --spice; returns NULL with the message printed and *ret_code set. */
static struct spice_mode *spice_mode_start(struct server *srv, int *ret_code)
{
	static const struct ug_spice_client_callbacks cb = {
		.connected = on_spice_connected,
		.channel_added = on_channel_added,
		.channel_removed = on_channel_removed,
		.disconnected = on_spice_disconnected,
	};
	struct srv_options *o = &srv->opts;
	struct spice_mode *m = g_new0(struct spice_mode, 1);
	char err[256];

	*ret_code = SRV_EXIT_USAGE;
	m->srv = srv;
	m->froms = g_ptr_array_new_with_free_func(spice_from_free);
	m->known = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	m->devs = g_ptr_array_new_with_free_func(spice_dev_free);
	m->client = ug_spice_client_new();
	if (!m->client)
		goto fail_oom;
	ug_spice_client_set_log(m->client, spice_lib_log, NULL);
	if (ug_spice_client_set_uri(m->client, o->spice) < 0 ||
	    (o->spice_password_file &&
	     ug_spice_client_set_password_file(m->client, o->spice_password_file) < 0) ||
	    (!o->spice_password_file && g_getenv("USBREDIRSRV_SPICE_PASSWORD") &&
	     ug_spice_client_set_password_env(m->client, "USBREDIRSRV_SPICE_PASSWORD") < 0) ||
	    (o->spice_ca_file && ug_spice_client_set_ca_file(m->client, o->spice_ca_file) < 0) ||
	    (o->spice_host_subject &&
	     ug_spice_client_set_host_subject(m->client, o->spice_host_subject) < 0)) {
		fprintf(stderr, "usbredirsrv: --spice: %s\n", ug_spice_client_errmsg(m->client));
		goto fail;
	}
	ug_spice_client_set_callbacks(m->client, &cb, m);
	for (char **a = o->from; a && *a; a++) {
		struct spice_from *f = g_new0(struct spice_from, 1);

		m->from_mode = 1;
		f->m = m;
		f->channel = -1;
		g_ptr_array_add(m->froms, f);
		if (ug_address_parse(*a, &f->addr, err, sizeof(err)) < 0) {
			fprintf(stderr, "usbredirsrv: --from: %s\n", err);
			goto fail;
		}
		ug_address_format(&f->addr, f->text, sizeof(f->text));
		f->conn = ug_connector_new(&f->addr);
		if (!f->conn)
			goto fail_oom;
		ug_connector_set_backoff(f->conn, 250, 5000, 0);
		ug_connector_set_log(f->conn, connector_plain_log, NULL);
		if (!ug_address_is_loopback(&f->addr))
			g_warning("--from %s is not a loopback address", f->text);
	}
	if (!m->from_mode) {
		if (ug_usb_filter_parse(o->auto_connect ? o->auto_connect :
		                        SPICE_DEFAULT_AUTO_CONNECT, &m->auto_filter, err,
		                        sizeof(err)) < 0 ||
		    (o->redirect_on_connect &&
		     ug_usb_filter_parse(o->redirect_on_connect, &m->roc_filter, err,
		                         sizeof(err)) < 0)) {
			fprintf(stderr, "usbredirsrv: %s\n", err);
			goto fail;
		}
		spice_scan(m, 1);
		/* New devices from libusb's hotplug events; where libusb has
		 * none, a scan each second. */
		if (ug_usb_host_has_hotplug(srv->host)) {
			ug_usb_host_set_hotplug(srv->host, on_usb_hotplug, m);
			g_info("new USB devices: from libusb hotplug events");
		} else {
			m->poll_id = g_timeout_add_seconds(1, spice_poll, m);
			g_info("new USB devices: libusb has no hotplug events here, a scan each second");
		}
	}
	if (ug_spice_client_connect(m->client) < 0) {
		fprintf(stderr, "usbredirsrv: --spice: %s\n", ug_spice_client_errmsg(m->client));
		goto fail;
	}
	if (m->from_mode) {
		for (guint i = 0; i < m->froms->len; i++)
			g_message("attaching %s to the VM at %s",
			          ((struct spice_from *)m->froms->pdata[i])->text, o->spice);
	} else {
		g_message("attaching USB devices to the VM at %s", o->spice);
	}
	*ret_code = SRV_EXIT_OK;
	return m;
fail_oom:
	fprintf(stderr, "usbredirsrv: out of memory\n");
	*ret_code = SRV_EXIT_FAILURE;
fail:
	spice_mode_free(m);
	return NULL;
}

static gboolean on_sighup(gpointer data)
{
	struct server *srv = data;
	GPtrArray *specs;
	char *filter = NULL, *err = NULL;
	int verbosity = srv->verbosity;

	if (!srv->opts.config) {
		g_message("SIGHUP: no --config file to re-read");
		return G_SOURCE_CONTINUE;
	}
	if (srv_read_config(srv->opts.config, &specs, &filter, &verbosity, NULL, &err) < 0) {
		g_warning("SIGHUP: keeping the running configuration: %s", err);
		g_free(err);
		return G_SOURCE_CONTINUE;
	}
	if (g_strcmp0(filter, srv->opts.filter) != 0 && filter)
		g_message("SIGHUP: the global filter applies from the next start; "
		          "it is not changed at run time");
	g_free(filter);
	g_message("SIGHUP: re-reading %s", srv->opts.config);
	apply_config_exports(srv, specs, 0);
	g_ptr_array_unref(specs);
	return G_SOURCE_CONTINUE;
}

static gboolean on_sigterm(gpointer data)
{
	struct server *srv = data;

	g_message("shutting down; releasing devices");
	g_main_loop_quit(srv->loop);
	return G_SOURCE_CONTINUE;
}

static void print_classes(const struct ug_usb_device_info *d, char *buf, size_t size)
{
	size_t used = 0;

	if (d->device_class != 0 || d->interface_count == 0) {
		g_snprintf(buf, size, "%02x", d->device_class);
		return;
	}
	buf[0] = '\0';
	for (unsigned i = 0; i < d->interface_count && used + 4 < size; i++) {
		g_snprintf(buf + used, size - used, i ? "/%02x" : "%02x", d->interface_class[i]);
		used = strlen(buf);
	}
}

/* --list: every device, and which export (if any) the rules give it to. */
static int list_devices(struct server *srv, GPtrArray *specs)
{
	struct ug_usb_device_info *list;
	size_t count;

	if (ug_usb_host_list(srv->host, &list, &count) < 0) {
		fprintf(stderr, "usbredirsrv: %s\n", ug_usb_host_errmsg(srv->host));
		return SRV_EXIT_FAILURE;
	}
	if (count == 0) {
		printf("no USB devices found%s%s\n", ug_usb_host_available(srv->host) ? "" : ": ",
		       ug_usb_host_available(srv->host) ? "" : ug_usb_host_errmsg(srv->host));
		free(list);
		return SRV_EXIT_OK;
	}
	printf("%-7s %-12s %-9s %-8s %-16s %-20s %-12s %s\n", "BUS-ADR", "PORT", "VID:PID",
	       "CLASS", "SPEED", "SERIAL", "EXPORT", "PRODUCT");
	for (size_t i = 0; i < count; i++) {
		const struct ug_usb_device_info *d = &list[i];
		const char *taker = "-";
		char cls[40], busaddr[16];

		for (guint j = 0; j < specs->len; j++) {
			const struct srv_export_spec *s = specs->pdata[j];
			ug_usb_selector *sel;
			ug_usb_filter *f = NULL;
			int ok;

			if (ug_usb_selector_parse(s->device, &sel, NULL, 0) < 0)
				continue;
			if (s->filter && ug_usb_filter_parse(s->filter, &f, NULL, 0) < 0)
				f = NULL;
			ok = ug_usb_selector_match(sel, d) &&
			     ug_usb_filter_allows(f ? f : srv->filter, d);
			ug_usb_selector_free(sel);
			ug_usb_filter_free(f);
			if (ok) {
				taker = s->name;
				break;
			}
		}
		print_classes(d, cls, sizeof(cls));
		g_snprintf(busaddr, sizeof(busaddr), "%03u-%03u", d->bus, d->address);
		printf("%-7s %-12s %04x:%04x %-8s %-16s %-20s %-12s %s%s%s\n", busaddr, d->port_path,
		       d->vendor_id, d->product_id, cls, ug_usb_speed_name(d->speed),
		       d->serial[0] ? d->serial : (d->strings_read ? "-" : "(no access)"), taker,
		       d->manufacturer, d->manufacturer[0] ? " " : "", d->product);
	}
	free(list);
	return SRV_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct server srv;
	GPtrArray *config_specs = NULL;
	ug_privileges *priv = NULL;
	int user_from_file = 0;
	char err[256];
	int r;

	memset(&srv, 0, sizeof(srv));
	g_log_set_writer_func(log_writer, NULL, NULL);
	r = srv_parse_options(&argc, &argv, &srv.opts);
	if (r != 0) {
		srv_options_clear(&srv.opts);
		return r < 0 ? SRV_EXIT_OK : r;
	}
	srv.verbosity = srv.opts.verbosity;
	if (srv.opts.config) {
		char *cerr = NULL;
		int v = -1;

		char *file_filter = NULL;

		/* --user on the command line wins over user= in the file. */
		user_from_file = !srv.opts.user;
		if (srv_read_config(srv.opts.config, &config_specs, &file_filter, &v,
		                    srv.opts.user ? NULL : &srv.opts.user, &cerr) < 0) {
			fprintf(stderr, "usbredirsrv: %s\n", cerr);
			g_free(cerr);
			srv_options_clear(&srv.opts);
			return SRV_EXIT_USAGE;
		}
		/* A file that exports nothing, with nothing else to do, is a mistake
		 * to say at once rather than a daemon idling until SIGHUP. */
		if (config_specs->len == 0 && srv.opts.exports->len == 0 && !srv.opts.spice &&
		    !srv.opts.list) {
			fprintf(stderr, "usbredirsrv: nothing to do: %s has no [export NAME] group\n",
				srv.opts.config);
			g_free(file_filter);
			g_ptr_array_unref(config_specs);
			srv_options_clear(&srv.opts);
			return SRV_EXIT_USAGE;
		}
		/* --filter and -v on the command line win over the file. */
		if (!srv.opts.filter)
			srv.opts.filter = file_filter;
		else
			g_free(file_filter);
		if (v >= 0 && srv.opts.verbosity == 0)
			srv.verbosity = v;
	}
	log_verbosity = srv.verbosity;
	/* --user (or user=): looked up before anything is opened. */
	if (srv.opts.user && !srv.opts.list &&
	    ug_privileges_resolve(srv.opts.user, &priv, err, sizeof(err)) < 0) {
		if (user_from_file)
			fprintf(stderr, "usbredirsrv: %s: [usbredirsrv]: user: %s\n",
			        srv.opts.config, err);
		else
			fprintf(stderr, "usbredirsrv: --user: %s\n", err);
		srv.exit_code = SRV_EXIT_USAGE;
		goto out;
	}
	if (srv.opts.filter && ug_usb_filter_parse(srv.opts.filter, &srv.filter, err,
	                                            sizeof(err)) < 0) {
		fprintf(stderr, "usbredirsrv: %s\n", err);
		srv.exit_code = SRV_EXIT_USAGE;
		goto out;
	}
	srv.host = ug_usb_host_new(err, sizeof(err));
	if (!srv.host) {
		fprintf(stderr, "usbredirsrv: %s\n", err);
		srv.exit_code = SRV_EXIT_FAILURE;
		goto out;
	}
	ug_usb_host_set_log(srv.host, srv.verbosity, lib_log, NULL);
	if (srv.opts.list) {
		GPtrArray *all = g_ptr_array_new();

		for (guint i = 0; i < srv.opts.exports->len; i++)
			g_ptr_array_add(all, srv.opts.exports->pdata[i]);
		for (guint i = 0; config_specs && i < config_specs->len; i++)
			g_ptr_array_add(all, config_specs->pdata[i]);
		srv.exit_code = list_devices(&srv, all);
		g_ptr_array_unref(all);
		goto out;
	}
	if (!ug_usb_host_available(srv.host))
		g_warning("%s; exports will have no device", ug_usb_host_errmsg(srv.host));
	else if (!ug_usb_host_has_hotplug(srv.host))
		g_warning("%s; unplugged devices are not offered again", ug_usb_host_errmsg(srv.host));

	if (srv.opts.pcap) {
		srv.rec = ug_recorder_new();
		if (!srv.rec || ug_recorder_open_usbmon(srv.rec, srv.opts.pcap) < 0) {
			fprintf(stderr, "usbredirsrv: --pcap: %s\n",
			        srv.rec ? ug_recorder_errmsg(srv.rec) : "out of memory");
			srv.exit_code = SRV_EXIT_FAILURE;
			goto out;
		}
		ug_recorder_set_log(srv.rec, lib_log, NULL);
	}
	srv.loop = g_main_loop_new(NULL, FALSE);
	srv.exports = g_ptr_array_new_with_free_func(export_free);
	for (guint i = 0; i < srv.opts.exports->len; i++) {
		struct export *e = export_start(&srv, spec_copy(srv.opts.exports->pdata[i]));

		if (!e) {
			srv.exit_code = SRV_EXIT_FAILURE;
			goto out;
		}
		g_ptr_array_add(srv.exports, e);
	}
	if (config_specs && apply_config_exports(&srv, config_specs, 1) < 0) {
		srv.exit_code = SRV_EXIT_FAILURE;
		goto out;
	}
	if (srv.opts.spice) {
		srv.spice = spice_mode_start(&srv, &srv.exit_code);
		if (!srv.spice)
			goto out;
	}
	/* Everything root was needed for is open: the libusb context (and its
	 * hotplug socket), the listening sockets and the --pcap file. */
	if (priv) {
		r = ug_privileges_drop(priv);
		if (r < 0) {
			fprintf(stderr, "usbredirsrv: --user: %s\n", ug_privileges_errmsg(priv));
			srv.exit_code = SRV_EXIT_FAILURE;
			goto out;
		}
		if (r > 0)
			g_warning("--user: %s", ug_privileges_errmsg(priv));
		else
			g_message("running as %s from now on", ug_privileges_describe(priv));
	}
	g_unix_signal_add(SIGTERM, on_sigterm, &srv);
	g_unix_signal_add(SIGINT, on_sigterm, &srv);
	g_unix_signal_add(SIGHUP, on_sighup, &srv);
	signal(SIGPIPE, SIG_IGN);
	g_message("usbredirsrv %s ready: %u export%s%s", PACKAGE_VERSION, srv.exports->len,
	          srv.exports->len == 1 ? "" : "s", srv.spice ? " and --spice" : "");
	g_main_loop_run(srv.loop);
out:
	/* Exports first: ending their sessions re-attaches the kernel drivers. */
	spice_mode_free(srv.spice);
	if (srv.exports)
		g_ptr_array_unref(srv.exports);
	if (srv.rec) {
		if (ug_recorder_finish(srv.rec) < 0)
			g_warning("--pcap: %s", ug_recorder_errmsg(srv.rec));
		ug_recorder_free(srv.rec);
	}
	ug_usb_host_free(srv.host);
	ug_usb_filter_free(srv.filter);
	if (config_specs)
		g_ptr_array_unref(config_specs);
	ug_privileges_free(priv);
	if (srv.loop)
		g_main_loop_unref(srv.loop);
	if (srv.exit_code == SRV_EXIT_OK && !srv.opts.list)
		g_message("stopped");
	srv_options_clear(&srv.opts);
	return srv.exit_code;
}
