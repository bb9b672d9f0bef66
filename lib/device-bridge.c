/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* device-bridge.c: a real USB device exported over a transport with libusb and libusbredirhost. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libusb.h>
#include <usbredirfilter.h>
#include <usbredirhost.h>

#include "common.h"
#include "transport.h"

/* How long the event thread blocks in libusb before it checks for a stop. */
#define EVENT_THREAD_TIMEOUT_US 250000
/* While the transport's queue is above half its limit the guest's requests
 * are not read (so it cannot ask for more data), and held writes are
 * retried at this period until the queue drains below a quarter. */
#define BACKPRESSURE_POLL_MS 5

static void fmt(char *buf, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));

/* snprintf() for messages where truncation is acceptable; buf may be NULL. */
static void fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;

	if (!buf || size == 0)
		return;
	va_start(ap, f);
	vsnprintf(buf, size, f, ap);
	va_end(ap);
}

/* ---- a main-context source that any thread may wake ------------------------- */

struct wake_source {
	GSource base;
	void (*fn)(void *data);
	void *data;
};

static gboolean wake_dispatch(GSource *src, GSourceFunc cb, gpointer user_data)
{
	struct wake_source *w = (struct wake_source *)src;

	g_source_set_ready_time(src, -1);
	w->fn(w->data);
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs wake_funcs = {
	.dispatch = wake_dispatch,
};

static GSource *wake_new(GMainContext *ctx, void (*fn)(void *), void *data)
{
	GSource *src = g_source_new(&wake_funcs, sizeof(struct wake_source));
	struct wake_source *w = (struct wake_source *)src;

	w->fn = fn;
	w->data = data;
	g_source_attach(src, ctx);
	return src;
}

/* Thread-safe: g_source_set_ready_time() locks the context and wakes it. */
static void wake(GSource *src)
{
	g_source_set_ready_time(src, 0);
}

static void wake_free(GSource **src)
{
	if (*src) {
		g_source_destroy(*src);
		g_source_unref(*src);
		*src = NULL;
	}
}

/* ---- device information ------------------------------------------------------- */

UG_EXPORT const char *ug_usb_speed_name(int speed)
{
	switch (speed) {
	case LIBUSB_SPEED_LOW:
		return "low (1.5 Mb/s)";
	case LIBUSB_SPEED_FULL:
		return "full (12 Mb/s)";
	case LIBUSB_SPEED_HIGH:
		return "high (480 Mb/s)";
	case LIBUSB_SPEED_SUPER:
		return "super (5 Gb/s)";
	case LIBUSB_SPEED_SUPER_PLUS:
		return "super+ (10 Gb/s)";
	default:
		return "unknown";
	}
}

/* Device strings end up in logs: keep them printable ASCII. */
static void read_string(libusb_device_handle *hd, uint8_t index, char *out, size_t size)
{
	unsigned char tmp[256];
	int n;

	out[0] = '\0';
	if (index == 0)
		return;
	n = libusb_get_string_descriptor_ascii(hd, index, tmp, sizeof(tmp) - 1);
	if (n <= 0)
		return;
	if ((size_t)n >= size)
		n = (int)size - 1;
	for (int i = 0; i < n; i++)
		out[i] = (tmp[i] >= 0x20 && tmp[i] < 0x7f) ? (char)tmp[i] : '?';
	out[n] = '\0';
}

static void fill_port_path(libusb_device *dev, struct ug_usb_device_info *info)
{
	uint8_t ports[8];
	int n = libusb_get_port_numbers(dev, ports, (int)sizeof(ports));
	size_t used;

	fmt(info->port_path, sizeof(info->port_path), "%u-", (unsigned)info->bus);
	used = strlen(info->port_path);
	if (n <= 0) {
		fmt(info->port_path + used, sizeof(info->port_path) - used, "0");
		return;
	}
	for (int i = 0; i < n && used < sizeof(info->port_path); i++) {
		fmt(info->port_path + used, sizeof(info->port_path) - used, i ? ".%u" : "%u",
		    (unsigned)ports[i]);
		used = strlen(info->port_path);
	}
}

/* Fills info from dev's descriptors; opens the device for its strings when
 * asked. Returns 0, or -1 when even the device descriptor is unreadable. */
static int fill_info(libusb_device *dev, int read_strings, struct ug_usb_device_info *info)
{
	struct libusb_device_descriptor dd;
	struct libusb_config_descriptor *cfg = NULL;

	memset(info, 0, sizeof(*info));
	if (libusb_get_device_descriptor(dev, &dd) != 0)
		return -1;
	info->bus = libusb_get_bus_number(dev);
	info->address = libusb_get_device_address(dev);
	info->speed = libusb_get_device_speed(dev);
	info->vendor_id = dd.idVendor;
	info->product_id = dd.idProduct;
	info->bcd_device = dd.bcdDevice;
	info->device_class = dd.bDeviceClass;
	info->device_subclass = dd.bDeviceSubClass;
	info->device_protocol = dd.bDeviceProtocol;
	fill_port_path(dev, info);
	if (libusb_get_active_config_descriptor(dev, &cfg) != 0 &&
	    libusb_get_config_descriptor(dev, 0, &cfg) != 0)
		cfg = NULL;
	if (cfg) {
		unsigned n = cfg->bNumInterfaces;

		if (n > UG_USB_MAX_INTERFACES)
			n = UG_USB_MAX_INTERFACES;
		for (unsigned i = 0; i < n; i++) {
			const struct libusb_interface *itf = &cfg->interface[i];

			if (itf->num_altsetting < 1)
				continue;
			info->interface_class[info->interface_count] = itf->altsetting[0].bInterfaceClass;
			info->interface_subclass[info->interface_count] =
				itf->altsetting[0].bInterfaceSubClass;
			info->interface_protocol[info->interface_count] =
				itf->altsetting[0].bInterfaceProtocol;
			info->interface_count++;
		}
		libusb_free_config_descriptor(cfg);
	}
	if (read_strings) {
		libusb_device_handle *hd;

		if (libusb_open(dev, &hd) == 0) {
			info->strings_read = 1;
			read_string(hd, dd.iSerialNumber, info->serial, sizeof(info->serial));
			read_string(hd, dd.iManufacturer, info->manufacturer, sizeof(info->manufacturer));
			read_string(hd, dd.iProduct, info->product, sizeof(info->product));
			libusb_close(hd);
		}
	}
	return 0;
}

static int info_check_rules(const struct usbredirfilter_rule *rules, int count,
                            const struct ug_usb_device_info *info)
{
	uint8_t cls[UG_USB_MAX_INTERFACES], sub[UG_USB_MAX_INTERFACES],
		proto[UG_USB_MAX_INTERFACES];

	/* usbredirfilter_check() takes non-const arrays. */
	memcpy(cls, info->interface_class, sizeof(cls));
	memcpy(sub, info->interface_subclass, sizeof(sub));
	memcpy(proto, info->interface_protocol, sizeof(proto));
	return usbredirfilter_check(rules, count, info->device_class, info->device_subclass,
	                            info->device_protocol, cls, sub, proto,
	                            info->interface_count, info->vendor_id, info->product_id,
	                            info->bcd_device, 0);
}

/* ---- filters ------------------------------------------------------------------ */

struct ug_usb_filter {
	struct usbredirfilter_rule *rules; /* NULL: allow everything */
	int count;
	char *text;
};

UG_EXPORT int ug_usb_filter_parse(const char *text, ug_usb_filter **ret_filter, char *errbuf,
                                  size_t errbuf_size)
{
	ug_usb_filter *f;
	int r;

	if (!text || !ret_filter) {
		fmt(errbuf, errbuf_size, "filter: no text");
		return UG_E_INVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return UG_E_NOMEM;
	if (text[0] != '\0') {
		r = usbredirfilter_string_to_rules(text, ",:", "|", &f->rules, &f->count);
		if (r != 0 || f->count == 0) {
			fmt(errbuf, errbuf_size,
			    "filter \"%s\": not usbredirfilter rules (class,vid,pid,version,allow|...)%s",
			    text, r == -ENOMEM ? ": out of memory" : "");
			ug_usb_filter_free(f);
			return r == -ENOMEM ? UG_E_NOMEM : UG_E_INVAL;
		}
		f->text = usbredirfilter_rules_to_string(f->rules, f->count, ",", "|");
	}
	if (!f->text) {
		f->text = strdup("");
		if (!f->text) {
			ug_usb_filter_free(f);
			return UG_E_NOMEM;
		}
	}
	*ret_filter = f;
	return 0;
}

UG_EXPORT int ug_usb_filter_allows(const ug_usb_filter *f, const struct ug_usb_device_info *info)
{
	if (!f || !f->rules)
		return 1;
	return info_check_rules(f->rules, f->count, info) == 0;
}

UG_EXPORT const char *ug_usb_filter_describe(const ug_usb_filter *f)
{
	return f ? f->text : "";
}

UG_EXPORT void ug_usb_filter_free(ug_usb_filter *f)
{
	if (!f)
		return;
	/* usbredirfilter allocated both; usbredirfilter_free() releases what it made. */
	if (f->rules) {
		usbredirfilter_free(f->rules);
		usbredirfilter_free(f->text);
	} else {
		free(f->text);
	}
	free(f);
}

/* ---- selectors ---------------------------------------------------------------- */

struct ug_usb_selector {
	char *text;
	int vid, pid;      /* -1: any */
	int bus, addr;     /* -1: any */
	char *port;        /* NULL: any */
	char *serial;      /* NULL: any */
	struct usbredirfilter_rule *rules;
	int rules_count;
};

static int parse_hex16(const char *s, size_t len, int *ret)
{
	unsigned v = 0;

	if (len == 1 && s[0] == '*') {
		*ret = -1;
		return 0;
	}
	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		len -= 2;
	}
	if (len == 0 || len > 4)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int d = g_ascii_xdigit_value(s[i]);

		if (d < 0)
			return -1;
		v = v * 16 + (unsigned)d;
	}
	*ret = (int)v;
	return 0;
}

static int parse_dec(const char *s, size_t len, int max, int *ret)
{
	int v = 0;

	if (len == 0 || len > 3)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return -1;
	*ret = v;
	return 0;
}

/* B-P[.P...]: a bus and up to 7 hub ports, all decimal. */
static int valid_port_path(const char *s)
{
	const char *dash = strchr(s, '-');
	int v;

	if (!dash || parse_dec(s, (size_t)(dash - s), 255, &v) < 0)
		return 0;
	s = dash + 1;
	for (int n = 0; n < 7; n++) {
		const char *dot = strchr(s, '.');
		size_t len = dot ? (size_t)(dot - s) : strlen(s);

		if (parse_dec(s, len, 255, &v) < 0)
			return 0;
		if (!dot)
			return 1;
		s = dot + 1;
	}
	return 0;
}

static int selector_term(ug_usb_selector *sel, const char *term, char *errbuf, size_t errsize)
{
	const char *colon, *dash;
	size_t len = strlen(term);

	if (strcmp(term, "*") == 0 || strcmp(term, "any") == 0)
		return 0;
	if (strncmp(term, "serial=", 7) == 0) {
		if (term[7] == '\0' || len - 7 >= 128) {
			fmt(errbuf, errsize, "device \"%s\": serial must have 1 to 127 characters",
			    sel->text);
			return UG_E_INVAL;
		}
		free(sel->serial);
		sel->serial = strdup(term + 7);
		return sel->serial ? 0 : UG_E_NOMEM;
	}
	if (strncmp(term, "port=", 5) == 0) {
		if (!valid_port_path(term + 5) || len - 5 >= 48) {
			fmt(errbuf, errsize, "device \"%s\": port \"%s\" is not BUS-PORT[.PORT...]",
			    sel->text, term + 5);
			return UG_E_INVAL;
		}
		free(sel->port);
		sel->port = strdup(term + 5);
		return sel->port ? 0 : UG_E_NOMEM;
	}
	if (strncmp(term, "filter=", 7) == 0) {
		int r;

		if (sel->rules)
			usbredirfilter_free(sel->rules);
		sel->rules = NULL;
		r = usbredirfilter_string_to_rules(term + 7, ":", "|", &sel->rules,
		                                   &sel->rules_count);
		if (r != 0 || sel->rules_count == 0) {
			fmt(errbuf, errsize,
			    "device \"%s\": filter is not usbredirfilter rules "
			    "(class:vid:pid:version:allow|...)", sel->text);
			return r == -ENOMEM ? UG_E_NOMEM : UG_E_INVAL;
		}
		return 0;
	}
	if (strncmp(term, "vid=", 4) == 0 || strncmp(term, "pid=", 4) == 0) {
		int *dst = term[0] == 'v' ? &sel->vid : &sel->pid;

		if (parse_hex16(term + 4, len - 4, dst) < 0) {
			fmt(errbuf, errsize, "device \"%s\": \"%s\" needs 1 to 4 hex digits",
			    sel->text, term);
			return UG_E_INVAL;
		}
		return 0;
	}
	if (strncmp(term, "bus=", 4) == 0 || strncmp(term, "addr=", 5) == 0) {
		int is_bus = term[0] == 'b';
		const char *v = term + (is_bus ? 4 : 5);

		if (parse_dec(v, strlen(v), is_bus ? 255 : 127, is_bus ? &sel->bus : &sel->addr) < 0) {
			fmt(errbuf, errsize, "device \"%s\": \"%s\" is not a %s number", sel->text,
			    term, is_bus ? "bus (0-255)" : "device address (0-127)");
			return UG_E_INVAL;
		}
		return 0;
	}
	colon = strchr(term, ':');
	if (colon && !strchr(term, '=')) {
		if (parse_hex16(term, (size_t)(colon - term), &sel->vid) < 0 ||
		    parse_hex16(colon + 1, strlen(colon + 1), &sel->pid) < 0) {
			fmt(errbuf, errsize, "device \"%s\": \"%s\" is not VID:PID in hex",
			    sel->text, term);
			return UG_E_INVAL;
		}
		return 0;
	}
	dash = strchr(term, '-');
	if (dash && !strchr(term, '=')) {
		if (parse_dec(term, (size_t)(dash - term), 255, &sel->bus) < 0 ||
		    parse_dec(dash + 1, strlen(dash + 1), 127, &sel->addr) < 0) {
			fmt(errbuf, errsize,
			    "device \"%s\": \"%s\" is not BUS-ADDR (use port=%s for a port path)",
			    sel->text, term, term);
			return UG_E_INVAL;
		}
		return 0;
	}
	fmt(errbuf, errsize,
	    "device \"%s\": unknown term \"%s\" (expected VID:PID, BUS-ADDR, port=, serial=, "
	    "bus=, addr=, vid=, pid=, filter= or *)", sel->text, term);
	return UG_E_INVAL;
}

UG_EXPORT int ug_usb_selector_parse(const char *text, ug_usb_selector **ret_sel, char *errbuf,
                                    size_t errbuf_size)
{
	ug_usb_selector *sel;
	char **terms;
	int r = 0;

	if (!text || !ret_sel || text[0] == '\0') {
		fmt(errbuf, errbuf_size, "device: empty selector");
		return UG_E_INVAL;
	}
	sel = calloc(1, sizeof(*sel));
	if (!sel)
		return UG_E_NOMEM;
	sel->vid = sel->pid = sel->bus = sel->addr = -1;
	sel->text = strdup(text);
	if (!sel->text) {
		free(sel);
		return UG_E_NOMEM;
	}
	terms = g_strsplit(text, ",", -1);
	for (char **p = terms; *p && r == 0; p++) {
		g_strstrip(*p);
		if (**p == '\0') {
			fmt(errbuf, errbuf_size, "device \"%s\": empty term", text);
			r = UG_E_INVAL;
			break;
		}
		r = selector_term(sel, *p, errbuf, errbuf_size);
	}
	g_strfreev(terms);
	if (r < 0) {
		ug_usb_selector_free(sel);
		return r;
	}
	*ret_sel = sel;
	return 0;
}

UG_EXPORT int ug_usb_selector_match(const ug_usb_selector *sel,
                                    const struct ug_usb_device_info *info)
{
	if (info->device_class == LIBUSB_CLASS_HUB)
		return 0;
	if (sel->vid >= 0 && sel->vid != info->vendor_id)
		return 0;
	if (sel->pid >= 0 && sel->pid != info->product_id)
		return 0;
	if (sel->bus >= 0 && sel->bus != info->bus)
		return 0;
	if (sel->addr >= 0 && sel->addr != info->address)
		return 0;
	if (sel->port && strcmp(sel->port, info->port_path) != 0)
		return 0;
	if (sel->serial && (!info->strings_read || strcmp(sel->serial, info->serial) != 0))
		return 0;
	if (sel->rules && info_check_rules(sel->rules, sel->rules_count, info) != 0)
		return 0;
	return 1;
}

UG_EXPORT int ug_usb_selector_needs_strings(const ug_usb_selector *sel)
{
	return sel->serial != NULL;
}

UG_EXPORT const char *ug_usb_selector_describe(const ug_usb_selector *sel)
{
	return sel->text;
}

UG_EXPORT void ug_usb_selector_free(ug_usb_selector *sel)
{
	if (!sel)
		return;
	free(sel->text);
	free(sel->port);
	free(sel->serial);
	if (sel->rules)
		usbredirfilter_free(sel->rules);
	free(sel);
}

/* ---- the host: libusb context, event thread, hotplug ---------------------------- */

struct hotplug_event {
	libusb_device *dev; /* one reference held */
	int arrived;
};

struct ug_usb_host {
	libusb_context *ctx;       /* NULL when libusb cannot work here */
	GMainContext *main_ctx;
	GThread *thread;
	gint stop;
	int has_hotplug;
	libusb_hotplug_callback_handle hotplug_handle;
	GMutex qlock;              /* guards events */
	GQueue events;             /* struct hotplug_event *, from the event thread */
	GSource *wake;             /* hands events to the main context */
	GList *bridges;            /* ug_device_bridge *, in creation order */
	ug_usb_host_hotplug_fn hotplug_fn;
	void *hotplug_data;
	int verbosity;
	ug_log_fn log_fn;
	void *log_data;
	char err[UG_ERRMSG_SIZE];
};

struct ug_device_bridge {
	ug_usb_host *h;
	char *name;
	ug_usb_selector *sel;
	const ug_usb_filter *filter;
	libusb_device *dev;        /* the device this bridge exports (one reference), or NULL */
	struct ug_usb_device_info info;
	ug_transport *t;           /* the session's transport, or NULL */
	struct usbredirhost *rh;   /* the session's usbredirhost, or NULL */
	int dev_in_session;        /* dev was handed to rh */
	const uint8_t *in;         /* guest bytes being fed to rh */
	size_t in_len;
	GSource *wake;             /* write requests from usbredirhost, any thread */
	GSource *poll_src;         /* back-pressure poll */
	int reads_paused;
	gint pending_snapshot;     /* transport queue size in KiB, for the event thread */
	ug_device_bridge_event_fn ev_fn;
	void *ev_data;
	ug_device_bridge_tap_fn tap_fn;
	void *tap_data;
	char err[UG_ERRMSG_SIZE];
};

/* The host's verbosity filter: info needs 1, debug 2; warnings and
 * errors always pass. Checked before formatting anything. */
static int hlog_wanted(const ug_usb_host *h, int level)
{
	if (!h->log_fn)
		return 0;
	if (level == UG_LOG_DEBUG && h->verbosity < 2)
		return 0;
	if (level == UG_LOG_INFO && h->verbosity < 1)
		return 0;
	return 1;
}

static void hlog(ug_usb_host *h, int level, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

static void hlog(ug_usb_host *h, int level, const char *f, ...)
{
	va_list ap;

	if (!hlog_wanted(h, level))
		return;
	va_start(ap, f);
	ug_log_vemit(h->log_fn, h->log_data, level, f, ap);
	va_end(ap);
}

/* libusb's own messages (some come without a context) go to the log
 * callback of the first host, at debug level; never to stderr. */
G_LOCK_DEFINE_STATIC(libusb_log);
static ug_usb_host *libusb_log_host;

static void LIBUSB_CALL forward_libusb_log(libusb_context *ctx, enum libusb_log_level level,
                                      const char *str)
{
	size_t len = strlen(str);

	while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	G_LOCK(libusb_log);
	if (libusb_log_host)
		hlog(libusb_log_host, UG_LOG_DEBUG, "%.*s", (int)len, str);
	G_UNLOCK(libusb_log);
}

static void bridge_device_arrived(ug_device_bridge *b, libusb_device *dev);
static void bridge_device_left(ug_device_bridge *b, libusb_device *dev);

static gpointer event_thread(gpointer data)
{
	ug_usb_host *h = data;

	while (!g_atomic_int_get(&h->stop)) {
		struct timeval tv = { 0, EVENT_THREAD_TIMEOUT_US };

		libusb_handle_events_timeout_completed(h->ctx, &tv, NULL);
	}
	return NULL;
}

/* Event thread: queue the event for the main context; libusb functions that
 * open devices are not called from inside a hotplug callback. */
static int LIBUSB_CALL hotplug_cb(libusb_context *ctx, libusb_device *dev,
                                  libusb_hotplug_event event, void *user_data)
{
	ug_usb_host *h = user_data;
	struct hotplug_event *e = malloc(sizeof(*e));

	if (!e)
		return 0;
	e->dev = libusb_ref_device(dev);
	e->arrived = event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED;
	g_mutex_lock(&h->qlock);
	g_queue_push_tail(&h->events, e);
	g_mutex_unlock(&h->qlock);
	wake(h->wake);
	return 0;
}

static int device_claimed(ug_usb_host *h, libusb_device *dev)
{
	for (GList *l = h->bridges; l; l = l->next)
		if (((ug_device_bridge *)l->data)->dev == dev)
			return 1;
	return 0;
}

static void host_handle_events(void *data)
{
	ug_usb_host *h = data;

	for (;;) {
		struct hotplug_event *e;

		g_mutex_lock(&h->qlock);
		e = g_queue_pop_head(&h->events);
		g_mutex_unlock(&h->qlock);
		if (!e)
			break;
		if (e->arrived) {
			hlog(h, UG_LOG_DEBUG, "hotplug: device arrived on bus %u address %u",
			     (unsigned)libusb_get_bus_number(e->dev),
			     (unsigned)libusb_get_device_address(e->dev));
			for (GList *l = h->bridges; l && !device_claimed(h, e->dev); l = l->next)
				bridge_device_arrived(l->data, e->dev);
		} else {
			hlog(h, UG_LOG_DEBUG, "hotplug: device left bus %u address %u",
			     (unsigned)libusb_get_bus_number(e->dev),
			     (unsigned)libusb_get_device_address(e->dev));
			for (GList *l = h->bridges; l; l = l->next)
				bridge_device_left(l->data, e->dev);
		}
		/* The application hears of it after the bridges, hubs left out as
		 * in ug_usb_host_list(). */
		if (h->hotplug_fn) {
			struct ug_usb_device_info info;

			if (fill_info(e->dev, e->arrived, &info) == 0 &&
			    info.device_class != LIBUSB_CLASS_HUB)
				h->hotplug_fn(h, e->arrived, &info, h->hotplug_data);
		}
		libusb_unref_device(e->dev);
		free(e);
	}
}

UG_EXPORT ug_usb_host *ug_usb_host_new(char *errbuf, size_t errbuf_size)
{
	ug_usb_host *h = calloc(1, sizeof(*h));
	GError *gerr = NULL;
	int r;

	if (!h) {
		fmt(errbuf, errbuf_size, "usb: out of memory");
		return NULL;
	}
	h->main_ctx = g_main_context_ref_thread_default();
	g_mutex_init(&h->qlock);
	g_queue_init(&h->events);
	h->wake = wake_new(h->main_ctx, host_handle_events, h);
	r = libusb_init(&h->ctx);
	if (r != 0) {
		/* No usbfs (a container, a machine without USB): run without devices. */
		h->ctx = NULL;
		fmt(h->err, sizeof(h->err), "usb: libusb cannot start here: %s",
		    libusb_strerror(r));
		return h;
	}
	G_LOCK(libusb_log);
	if (!libusb_log_host)
		libusb_log_host = h;
	G_UNLOCK(libusb_log);
	libusb_set_log_cb(NULL, forward_libusb_log, LIBUSB_LOG_CB_GLOBAL);
	libusb_set_log_cb(h->ctx, forward_libusb_log, LIBUSB_LOG_CB_CONTEXT);
	libusb_set_option(h->ctx, LIBUSB_OPTION_LOG_LEVEL, LIBUSB_LOG_LEVEL_NONE);
	if (libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) {
		r = libusb_hotplug_register_callback(h->ctx,
		                                     LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED |
		                                     LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
		                                     0, LIBUSB_HOTPLUG_MATCH_ANY,
		                                     LIBUSB_HOTPLUG_MATCH_ANY,
		                                     LIBUSB_HOTPLUG_MATCH_ANY, hotplug_cb, h,
		                                     &h->hotplug_handle);
		h->has_hotplug = r == 0;
	}
	if (!h->has_hotplug)
		fmt(h->err, sizeof(h->err), "usb: libusb offers no hotplug events here");
	h->thread = g_thread_try_new("ug-libusb-events", event_thread, h, &gerr);
	if (!h->thread) {
		fmt(errbuf, errbuf_size, "usb: cannot start the libusb event thread: %s",
		    gerr ? gerr->message : "?");
		g_clear_error(&gerr);
		ug_usb_host_free(h);
		return NULL;
	}
	return h;
}

UG_EXPORT void ug_usb_host_set_log(ug_usb_host *h, int verbosity, ug_log_fn fn, void *user_data)
{
	h->verbosity = verbosity;
	h->log_fn = fn;
	h->log_data = user_data;
	if (h->ctx && verbosity >= 3)
		libusb_set_option(h->ctx, LIBUSB_OPTION_LOG_LEVEL, LIBUSB_LOG_LEVEL_WARNING);
}

UG_EXPORT int ug_usb_host_available(const ug_usb_host *h)
{
	return h->ctx != NULL;
}

UG_EXPORT int ug_usb_host_has_hotplug(const ug_usb_host *h)
{
	return h->has_hotplug;
}

UG_EXPORT void ug_usb_host_set_hotplug(ug_usb_host *h, ug_usb_host_hotplug_fn fn,
                                       void *user_data)
{
	h->hotplug_fn = fn;
	h->hotplug_data = user_data;
}

static int info_cmp(const void *a, const void *b)
{
	const struct ug_usb_device_info *x = a, *y = b;

	if (x->bus != y->bus)
		return x->bus < y->bus ? -1 : 1;
	return strcmp(x->port_path, y->port_path);
}

UG_EXPORT int ug_usb_host_list(ug_usb_host *h, struct ug_usb_device_info **ret_list,
                               size_t *ret_count)
{
	libusb_device **devs = NULL;
	struct ug_usb_device_info *list;
	ssize_t n;
	size_t count = 0;

	if (!h->ctx) {
		*ret_list = NULL;
		*ret_count = 0;
		return 0;
	}
	n = libusb_get_device_list(h->ctx, &devs);
	if (n < 0)
		return ug_errmsg_set(h->err, UG_E_USB, "usb: cannot list devices: %s",
		                     libusb_strerror((int)n));
	list = calloc((size_t)n + 1, sizeof(*list));
	if (!list) {
		libusb_free_device_list(devs, 1);
		return UG_E_NOMEM;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (fill_info(devs[i], 1, &list[count]) < 0)
			continue;
		if (list[count].device_class == LIBUSB_CLASS_HUB)
			continue;
		count++;
	}
	libusb_free_device_list(devs, 1);
	qsort(list, count, sizeof(*list), info_cmp);
	*ret_list = list;
	*ret_count = count;
	return 0;
}

UG_EXPORT const char *ug_usb_host_errmsg(const ug_usb_host *h)
{
	return h->err;
}

UG_EXPORT void ug_usb_host_free(ug_usb_host *h)
{
	if (!h)
		return;
	for (GList *l = h->bridges; l; l = l->next)
		ug_device_bridge_end_session(l->data);
	if (h->thread) {
		g_atomic_int_set(&h->stop, 1);
		libusb_interrupt_event_handler(h->ctx);
		g_thread_join(h->thread);
	}
	if (h->ctx && h->has_hotplug)
		libusb_hotplug_deregister_callback(h->ctx, h->hotplug_handle);
	wake_free(&h->wake);
	for (;;) {
		struct hotplug_event *e = g_queue_pop_head(&h->events);

		if (!e)
			break;
		libusb_unref_device(e->dev);
		free(e);
	}
	/* Bridges left alive lose their host: drop their device references now. */
	for (GList *l = h->bridges; l; l = l->next) {
		ug_device_bridge *b = l->data;

		if (b->dev) {
			libusb_unref_device(b->dev);
			b->dev = NULL;
		}
		b->h = NULL;
	}
	g_list_free(h->bridges);
	if (h->ctx)
		libusb_exit(h->ctx);
	G_LOCK(libusb_log);
	if (libusb_log_host == h)
		libusb_log_host = NULL;
	G_UNLOCK(libusb_log);
	g_mutex_clear(&h->qlock);
	g_main_context_unref(h->main_ctx);
	free(h);
}

/* ---- the bridge: usbredirhost callbacks -------------------------------------- */

/* A ug_log_fn that puts the bridge's name in front of a message that
 * ug_log_vemit() has formatted, then passes it on to the host's log. */
static void blog_prefix(int level, const char *msg, void *user_data)
{
	ug_device_bridge *b = user_data;

	hlog(b->h, level, "%s: %s", b->name, msg);
}

static void blog(ug_device_bridge *b, int level, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

static void blog(ug_device_bridge *b, int level, const char *f, ...)
{
	va_list ap;

	if (!b->h || !hlog_wanted(b->h, level))
		return;
	va_start(ap, f);
	ug_log_vemit(blog_prefix, b, level, f, ap);
	va_end(ap);
}

static void emit(ug_device_bridge *b, enum ug_device_bridge_event ev, int error,
                 const char *message)
{
	if (b->ev_fn)
		b->ev_fn(b, ev, error, message ? message : "", b->ev_data);
}

/* Any thread. */
static void rh_log(void *priv, int level, const char *msg)
{
	ug_device_bridge *b = priv;
	int ul;

	switch (level) {
	case usbredirparser_error:
		/* A device unplugged in the middle of a transfer makes
		 * usbredirhost report the failed submit as an error; the
		 * unplug itself is logged next, so this is only a warning. */
		ul = strstr(msg, "LIBUSB_ERROR_NO_DEVICE") ? UG_LOG_WARNING : UG_LOG_ERROR;
		break;
	case usbredirparser_warning:
		ul = UG_LOG_WARNING;
		break;
	case usbredirparser_info:
		ul = UG_LOG_INFO;
		break;
	default:
		ul = UG_LOG_DEBUG;
		break;
	}
	blog(b, ul, "%s", msg);
}

/* Main context, inside usbredirhost_read_guest_data(). */
static int rh_read(void *priv, uint8_t *data, int count)
{
	ug_device_bridge *b = priv;
	size_t n;

	if (count <= 0 || b->in_len == 0)
		return 0;
	n = b->in_len < (size_t)count ? b->in_len : (size_t)count;
	memcpy(data, b->in, n);
	b->in += n;
	b->in_len -= n;
	return (int)n;
}

static void bridge_update_backpressure(ug_device_bridge *b);

/* Main context, inside usbredirhost_write_guest_data(). */
static int rh_write(void *priv, uint8_t *data, int count)
{
	ug_device_bridge *b = priv;
	int r;

	/* With usbredirhost_fl_write_cb_owns_buffer we own data once we return
	 * count, and must accept a packet whole or not at all. */
	if (b->t && count > 0) {
		r = ug_transport_send(b->t, data, (size_t)count);
		if (r == UG_E_TOOBIG) {
			/* Leave it in usbredirhost's queue; the poll retries. */
			bridge_update_backpressure(b);
			return 0;
		}
		if (r == 0 && b->tap_fn)
			b->tap_fn(b, UG_DIR_H2G, data, (size_t)count, b->tap_data);
	}
	/* Sent, or dropped after UG_E_CLOSED: the closed callback ends the session. */
	if (b->rh)
		usbredirhost_free_write_buffer(b->rh, data);
	return count;
}

/* Any thread: packets are queued; write them from the main context. */
static void rh_flush(void *priv)
{
	ug_device_bridge *b = priv;

	wake(b->wake);
}

/* Any thread: lets usbredirhost drop iso packets when the peer is slow. */
static uint64_t rh_buffered(void *priv)
{
	ug_device_bridge *b = priv;

	return (uint64_t)g_atomic_int_get(&b->pending_snapshot) * 1024u;
}

static void *lock_alloc(void)
{
	GMutex *m = g_new0(GMutex, 1);

	g_mutex_init(m);
	return m;
}

static void lock_lock(void *m)
{
	g_mutex_lock(m);
}

static void lock_unlock(void *m)
{
	g_mutex_unlock(m);
}

static void lock_free(void *m)
{
	g_mutex_clear(m);
	g_free(m);
}

static void bridge_write(ug_device_bridge *b)
{
	if (!b->rh || !b->t)
		return;
	if (usbredirhost_has_data_to_write(b->rh) > 0 && usbredirhost_write_guest_data(b->rh) < 0)
		blog(b, UG_LOG_WARNING, "writing to the guest failed");
	bridge_update_backpressure(b);
}

static void bridge_on_wake(void *data)
{
	bridge_write(data);
}

static gboolean bridge_on_poll(gpointer data)
{
	ug_device_bridge *b = data;

	bridge_write(b);
	if (b->poll_src)
		return G_SOURCE_CONTINUE;
	return G_SOURCE_REMOVE;
}

/* Pauses reading the guest while the transport is backed up, resumes when
 * it drained; polls meanwhile, since the transport has no drain callback. */
static void bridge_update_backpressure(ug_device_bridge *b)
{
	size_t pending, max;
	int held;

	if (!b->t)
		return;
	pending = ug_transport_pending(b->t);
	max = b->t->max_pending;
	g_atomic_int_set(&b->pending_snapshot, (gint)MIN(pending / 1024u, (size_t)G_MAXINT));
	held = b->rh && usbredirhost_has_data_to_write(b->rh) > 0;
	if (!b->reads_paused && (pending > max / 2 || held)) {
		b->reads_paused = 1;
		ug_transport_pause(b->t, 1);
	} else if (b->reads_paused && pending <= max / 4 && !held) {
		b->reads_paused = 0;
		ug_transport_pause(b->t, 0);
	}
	if (b->reads_paused && !b->poll_src) {
		b->poll_src = g_timeout_source_new(BACKPRESSURE_POLL_MS);
		g_source_set_callback(b->poll_src, bridge_on_poll, b, NULL);
		g_source_attach(b->poll_src, b->h ? b->h->main_ctx : NULL);
	} else if (!b->reads_paused && b->poll_src) {
		g_source_destroy(b->poll_src);
		g_source_unref(b->poll_src);
		b->poll_src = NULL;
	}
}

/* ---- the bridge: sessions and devices ------------------------------------------ */

static void bridge_describe_device(ug_device_bridge *b, char *buf, size_t size)
{
	fmt(buf, size, "%04x:%04x at %s (bus %u address %u%s%s)", b->info.vendor_id,
	    b->info.product_id, b->info.port_path, (unsigned)b->info.bus,
	    (unsigned)b->info.address, b->info.serial[0] ? ", serial " : "", b->info.serial);
}

/* Opens the bridge's device and hands it to the running session. */
static void bridge_offer_device(ug_device_bridge *b)
{
	libusb_device_handle *hd = NULL;
	char what[256];
	int r;

	if (!b->rh || !b->dev || b->dev_in_session)
		return;
	bridge_describe_device(b, what, sizeof(what));
	r = libusb_open(b->dev, &hd);
	if (r != 0) {
		blog(b, UG_LOG_WARNING, "cannot open %s: %s", what, libusb_strerror(r));
		return;
	}
	/* usbredirhost owns hd from here, also when it fails. */
	r = usbredirhost_set_device(b->rh, hd);
	if (r != usb_redir_success) {
		blog(b, UG_LOG_WARNING, "cannot export %s: usbredirhost status %d", what, r);
		return;
	}
	b->dev_in_session = 1;
	blog(b, UG_LOG_INFO, "offered %s to the guest", what);
}

static int bridge_wants(ug_device_bridge *b, libusb_device *dev,
                        struct ug_usb_device_info *ret_info)
{
	struct ug_usb_device_info info;

	if (fill_info(dev, ug_usb_selector_needs_strings(b->sel), &info) < 0)
		return 0;
	if (!ug_usb_selector_match(b->sel, &info) || !ug_usb_filter_allows(b->filter, &info))
		return 0;
	*ret_info = info;
	return 1;
}

static void bridge_claim(ug_device_bridge *b, libusb_device *dev,
                         const struct ug_usb_device_info *info)
{
	char what[256];

	b->dev = libusb_ref_device(dev);
	b->info = *info;
	bridge_describe_device(b, what, sizeof(what));
	blog(b, UG_LOG_INFO, "device %s selected", what);
	emit(b, UG_BRIDGE_DEVICE_ADDED, 0, what);
	bridge_offer_device(b);
}

static void bridge_device_arrived(ug_device_bridge *b, libusb_device *dev)
{
	struct ug_usb_device_info info;

	if (b->dev || !bridge_wants(b, dev, &info))
		return;
	bridge_claim(b, dev, &info);
}

static void bridge_device_left(ug_device_bridge *b, libusb_device *dev)
{
	char what[256];

	if (b->dev != dev)
		return;
	bridge_describe_device(b, what, sizeof(what));
	if (b->rh && b->dev_in_session) {
		/* Sends device_disconnect to the guest and closes the handle. */
		usbredirhost_set_device(b->rh, NULL);
	}
	b->dev_in_session = 0;
	libusb_unref_device(b->dev);
	b->dev = NULL;
	blog(b, UG_LOG_INFO, "device %s unplugged", what);
	emit(b, UG_BRIDGE_DEVICE_REMOVED, 0, what);
	ug_device_bridge_rescan(b);
}

UG_EXPORT void ug_device_bridge_rescan(ug_device_bridge *b)
{
	libusb_device **devs = NULL;
	ssize_t n;

	if (!b->h || !b->h->ctx || b->dev)
		return;
	n = libusb_get_device_list(b->h->ctx, &devs);
	for (ssize_t i = 0; i < n && !b->dev; i++) {
		struct ug_usb_device_info info;

		if (device_claimed(b->h, devs[i]) || !bridge_wants(b, devs[i], &info))
			continue;
		bridge_claim(b, devs[i], &info);
	}
	if (n >= 0)
		libusb_free_device_list(devs, 1);
}

UG_EXPORT ug_device_bridge *ug_device_bridge_new(ug_usb_host *h, const char *name,
                                                 ug_usb_selector *sel,
                                                 const ug_usb_filter *filter)
{
	ug_device_bridge *b;

	if (!h || !sel)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->name = strdup(name ? name : ug_usb_selector_describe(sel));
	if (!b->name) {
		free(b);
		return NULL;
	}
	b->h = h;
	b->sel = sel;
	b->filter = filter;
	b->wake = wake_new(h->main_ctx, bridge_on_wake, b);
	h->bridges = g_list_append(h->bridges, b);
	ug_device_bridge_rescan(b);
	return b;
}

UG_EXPORT void ug_device_bridge_set_tap(ug_device_bridge *b, ug_device_bridge_tap_fn fn,
                                        void *user_data)
{
	b->tap_fn = fn;
	b->tap_data = user_data;
}

UG_EXPORT void ug_device_bridge_set_events(ug_device_bridge *b, ug_device_bridge_event_fn fn,
                                           void *user_data)
{
	b->ev_fn = fn;
	b->ev_data = user_data;
}

static void bridge_teardown(ug_device_bridge *b)
{
	if (b->rh) {
		/* Releases the interfaces, re-attaches the kernel drivers and
		 * closes the handle (usbredirhost_set_device(rh, NULL) inside). */
		usbredirhost_close(b->rh);
		b->rh = NULL;
	}
	b->dev_in_session = 0;
	if (b->poll_src) {
		g_source_destroy(b->poll_src);
		g_source_unref(b->poll_src);
		b->poll_src = NULL;
	}
	b->reads_paused = 0;
	g_atomic_int_set(&b->pending_snapshot, 0);
	if (b->t) {
		ug_transport_free(b->t);
		b->t = NULL;
	}
}

static void bridge_on_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	ug_device_bridge *b = user_data;

	if (b->tap_fn)
		b->tap_fn(b, UG_DIR_G2H, data, len, b->tap_data);
	b->in = data;
	b->in_len = len;
	while (b->in_len > 0 && b->rh) {
		size_t before = b->in_len;
		int r = usbredirhost_read_guest_data(b->rh);

		switch (r) {
		case 0:
			break;
		case usbredirhost_read_parse_error:
			blog(b, UG_LOG_WARNING, "malformed packet from the guest (%s), skipped",
			     ug_transport_describe(t));
			break;
		case usbredirhost_read_device_rejected:
			blog(b, UG_LOG_WARNING, "the guest rejected the device; released");
			usbredirhost_set_device(b->rh, NULL);
			b->dev_in_session = 0;
			break;
		case usbredirhost_read_device_lost:
			blog(b, UG_LOG_WARNING, "lost the connection to the device");
			b->dev_in_session = 0;
			break;
		default:
			blog(b, UG_LOG_WARNING, "reading from the guest failed (%d)", r);
			break;
		}
		if (b->in_len == before)
			break;
	}
	b->in = NULL;
	b->in_len = 0;
}

static void bridge_on_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	ug_device_bridge *b = user_data;
	char msg[UG_ERRMSG_SIZE];

	fmt(msg, sizeof(msg), "%s", message);
	bridge_teardown(b);
	blog(b, UG_LOG_INFO, "session ended: %s; device released", msg);
	emit(b, UG_BRIDGE_SESSION_ENDED, error, msg);
}

UG_EXPORT int ug_device_bridge_attach(ug_device_bridge *b, ug_transport *t)
{
	static const int verbose_of[] = { usbredirparser_warning, usbredirparser_info,
	                                  usbredirparser_debug, usbredirparser_debug_data };
	char version[64];
	int v;

	if (!t)
		return UG_E_INVAL;
	if (b->t || !b->h) {
		ug_errmsg_set(b->err, UG_E_STATE, "%s: a session is already running; refused %s",
		              b->name, ug_transport_describe(t));
		ug_transport_free(t);
		return UG_E_STATE;
	}
	b->t = t;
	ug_transport_set_callbacks(t, bridge_on_data, bridge_on_closed, b);
	v = b->h->verbosity < 0 ? 0 : b->h->verbosity > 3 ? 3 : b->h->verbosity;
	fmt(version, sizeof(version), "usbgate %s", ug_version());
	/* The device is handed over after the hello, by bridge_offer_device(), so
	 * that a device usbredirhost cannot claim still leaves a working session. */
	b->rh = usbredirhost_open_full(b->h->ctx, NULL, rh_log, rh_read, rh_write, rh_flush,
	                               lock_alloc, lock_lock, lock_unlock, lock_free, b, version,
	                               verbose_of[v], usbredirhost_fl_write_cb_owns_buffer);
	if (!b->rh) {
		ug_errmsg_set(b->err, UG_E_USB, "%s: usbredirhost could not start for %s", b->name,
		              ug_transport_describe(t));
		b->t = NULL;
		ug_transport_free(t);
		return UG_E_USB;
	}
	usbredirhost_set_buffered_output_size_cb(b->rh, rh_buffered);
	blog(b, UG_LOG_INFO, "session started on %s", ug_transport_describe(t));
	emit(b, UG_BRIDGE_SESSION_STARTED, 0, ug_transport_describe(t));
	if (!b->dev)
		ug_device_bridge_rescan(b);
	else
		bridge_offer_device(b);
	/* The hello is queued; write it now rather than on the next wake-up. */
	bridge_write(b);
	return 0;
}

UG_EXPORT int ug_device_bridge_in_session(const ug_device_bridge *b)
{
	return b->t != NULL;
}

UG_EXPORT int ug_device_bridge_device(const ug_device_bridge *b,
                                      struct ug_usb_device_info *ret_info)
{
	if (!b->dev)
		return 0;
	if (ret_info)
		*ret_info = b->info;
	return 1;
}

UG_EXPORT void ug_device_bridge_end_session(ug_device_bridge *b)
{
	if (!b || !b->t)
		return;
	blog(b, UG_LOG_INFO, "ending the session on %s; device released",
	     ug_transport_describe(b->t));
	bridge_teardown(b);
}

UG_EXPORT const char *ug_device_bridge_name(const ug_device_bridge *b)
{
	return b->name;
}

UG_EXPORT const char *ug_device_bridge_errmsg(const ug_device_bridge *b)
{
	return b->err;
}

UG_EXPORT void ug_device_bridge_free(ug_device_bridge *b)
{
	if (!b)
		return;
	bridge_teardown(b);
	if (b->h)
		b->h->bridges = g_list_remove(b->h->bridges, b);
	if (b->dev)
		libusb_unref_device(b->dev);
	wake_free(&b->wake);
	ug_usb_selector_free(b->sel);
	free(b->name);
	free(b);
}
