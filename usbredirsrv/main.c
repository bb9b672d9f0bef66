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
};

struct server {
	GMainLoop *loop;
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
	if (srv_read_config(srv->opts.config, &specs, &filter, &verbosity, &err) < 0) {
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

		if (srv_read_config(srv.opts.config, &config_specs, &file_filter, &v, &cerr) < 0) {
			fprintf(stderr, "usbredirsrv: %s\n", cerr);
			g_free(cerr);
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
	g_unix_signal_add(SIGTERM, on_sigterm, &srv);
	g_unix_signal_add(SIGINT, on_sigterm, &srv);
	g_unix_signal_add(SIGHUP, on_sighup, &srv);
	signal(SIGPIPE, SIG_IGN);
	g_message("usbredirsrv %s ready: %u export%s", PACKAGE_VERSION, srv.exports->len,
	          srv.exports->len == 1 ? "" : "s");
	g_main_loop_run(srv.loop);
	srv.exit_code = SRV_EXIT_OK;
out:
	/* Exports first: ending their sessions re-attaches the kernel drivers. */
	if (srv.exports)
		g_ptr_array_unref(srv.exports);
	ug_usb_host_free(srv.host);
	ug_usb_filter_free(srv.filter);
	if (config_specs)
		g_ptr_array_unref(config_specs);
	if (srv.loop)
		g_main_loop_unref(srv.loop);
	if (srv.exit_code == SRV_EXIT_OK && !srv.opts.list)
		g_message("stopped");
	srv_options_clear(&srv.opts);
	return srv.exit_code;
}
