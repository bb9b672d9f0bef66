/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-client-probe.c: drives libusbgate's SPICE client against a real server for spice-qemu.sh, playing a fake keyboard as usb-host. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>
#include <usbredirparser.h>

#include "spice-codec.h"
#include "usbgate.h"

/*
 * Output lines on stdout (one event each) are what the test script waits
 * for; commands come on stdin: "attach", "detach", "quit". Exit codes:
 * 0 ok, 1 other failure, 2 usage, 3 authentication refused, 4 TLS failure,
 * 5 no such channel / server gone, 6 timeout.
 */

#define MAX_CH 8

struct probe;

struct chan {
	struct probe *p;
	unsigned id;
	ug_transport *t;
	struct usbredirparser *parser;
	GByteArray *in;
	int hello;
	int attached;
	int configured;
};

struct probe {
	ug_spice_client *c;
	GMainLoop *loop;
	int exit_code;
	unsigned want_channels;
	int attach_id;
	int link_only;
	int lz4;
	int reconnect;
	unsigned sessions;
	const char *record_dir;
	struct chan ch[MAX_CH];
	unsigned nch;
	unsigned hellos;
	/* Passive decoders of the tapped wire, per channel connection. */
	ug_spice_stream *tap[2][MAX_CH + 1];
	unsigned lz4_sent, lz4_received, vmc_sent, vmc_received;
	FILE *rec[16][2];
};

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void quit(struct probe *p, int code)
{
	if (p->exit_code < 0)
		p->exit_code = code;
	g_main_loop_quit(p->loop);
}

static int exit_code_for(int error)
{
	switch (error) {
	case UG_E_AUTH:
		return 3;
	case UG_E_TLS:
		return 4;
	case UG_E_NOTFOUND:
		return 5;
	default:
		return 1;
	}
}

/* ---- the fake keyboard ------------------------------------------------------ */

static const uint8_t dev_desc[18] = {
	18, 1, 0x10, 0x01, 0, 0, 0, 64, 0x09, 0x12, 0x01, 0x00, 0x00, 0x01, 1, 2, 0, 1,
};

static const uint8_t report_desc[63] = {
	0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00,
	0x25, 0x01, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02, 0x95, 0x01, 0x75, 0x08, 0x81, 0x01,
	0x95, 0x05, 0x75, 0x01, 0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, 0x95, 0x01,
	0x75, 0x03, 0x91, 0x01, 0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07,
	0x19, 0x00, 0x29, 0x65, 0x81, 0x00, 0xc0,
};

/*
 * The configuration descriptor: config, interface (HID boot keyboard), HID,
 * endpoint 0x81, then vendor-specific padding descriptors so that the whole
 * is above spice's 1000-byte compression threshold and compressible: the
 * guest reads it whole, which sends it through LZ4 when the server allows.
 */
#define PAD_DESCS 8
#define CONFIG_LEN (9 + 9 + 9 + 7 + PAD_DESCS * 255)

static size_t config_desc(uint8_t *b)
{
	size_t n = 0;

	memcpy(b + n,
	       (const uint8_t[]){9, 2, CONFIG_LEN & 0xff, CONFIG_LEN >> 8, 1, 1, 0, 0xa0, 50}, 9);
	n += 9;
	memcpy(b + n, (const uint8_t[]){ 9, 4, 0, 0, 1, 3, 1, 1, 0 }, 9);
	n += 9;
	memcpy(b + n, (const uint8_t[]){9, 0x21, 0x11, 0x01, 0, 1, 0x22, sizeof(report_desc), 0},
	       9);
	n += 9;
	memcpy(b + n, (const uint8_t[]){ 7, 5, 0x81, 3, 8, 0, 10 }, 7);
	n += 7;
	for (int i = 0; i < PAD_DESCS; i++) {
		b[n] = 255;
		b[n + 1] = 0xff;
		for (int j = 2; j < 255; j++)
			b[n + j] = (uint8_t)(j % 8 == 0 ? i : 0);
		n += 255;
	}
	return n;
}

static size_t string_desc(unsigned idx, uint8_t *b)
{
	static const char *const s[] = { NULL, "usbgate", "usbgate probe keyboard" };
	size_t n;

	if (idx == 0) {
		memcpy(b, (const uint8_t[]){ 4, 3, 0x09, 0x04 }, 4);
		return 4;
	}
	if (idx >= G_N_ELEMENTS(s))
		return 0;
	n = strlen(s[idx]);
	b[0] = (uint8_t)(2 + 2 * n);
	b[1] = 3;
	for (size_t i = 0; i < n; i++) {
		b[2 + 2 * i] = (uint8_t)s[idx][i];
		b[3 + 2 * i] = 0;
	}
	return 2 + 2 * n;
}

static void flush(struct chan *ch)
{
	if (ch->parser && usbredirparser_has_data_to_write(ch->parser))
		usbredirparser_do_write(ch->parser);
}

static void send_device(struct chan *ch)
{
	struct usb_redir_ep_info_header ep = { 0 };
	struct usb_redir_interface_info_header ii = { 0 };
	struct usb_redir_device_connect_header dc = { 0 };

	for (int i = 0; i < 32; i++)
		ep.type[i] = usb_redir_type_invalid;
	ep.type[0] = ep.type[16] = usb_redir_type_control;
	ep.max_packet_size[0] = ep.max_packet_size[16] = 64;
	ep.type[17] = usb_redir_type_interrupt;
	ep.interval[17] = 10;
	ep.max_packet_size[17] = 8;
	ii.interface_count = 1;
	ii.interface_class[0] = 3;
	ii.interface_subclass[0] = 1;
	ii.interface_protocol[0] = 1;
	dc.speed = usb_redir_speed_full;
	dc.vendor_id = 0x1209;
	dc.product_id = 0x0001;
	dc.device_version_bcd = 0x0100;
	usbredirparser_send_ep_info(ch->parser, &ep);
	usbredirparser_send_interface_info(ch->parser, &ii);
	usbredirparser_send_device_connect(ch->parser, &dc);
	flush(ch);
	ch->attached = 1;
	out("DEVICE_SENT %u", ch->id);
}

static void pr_log(void *priv, int level, const char *msg)
{
	struct chan *ch = priv;

	if (level <= usbredirparser_warning)
		fprintf(stderr, "probe: usbredir channel %u: %s\n", ch->id, msg);
}

static int pr_read(void *priv, uint8_t *data, int count)
{
	struct chan *ch = priv;
	int n = (int)ch->in->len < count ? (int)ch->in->len : count;

	memcpy(data, ch->in->data, (size_t)n);
	g_byte_array_remove_range(ch->in, 0, (guint)n);
	return n;
}

static int pr_write(void *priv, uint8_t *data, int count)
{
	struct chan *ch = priv;

	if (!ch->t || ug_transport_send(ch->t, data, (size_t)count) < 0)
		return -1;
	return count;
}

static void pr_hello(void *priv, struct usb_redir_hello_header *h)
{
	struct chan *ch = priv;
	struct probe *p = ch->p;

	ch->hello = 1;
	out("HELLO %u %.64s", ch->id, h->version);
	if (++p->hellos == p->want_channels && p->attach_id >= 0) {
		for (unsigned i = 0; i < p->nch; i++)
			if ((int)p->ch[i].id == p->attach_id)
				send_device(&p->ch[i]);
	}
}

static void pr_reset(void *priv)
{
}

static void pr_set_config(void *priv, uint64_t id, struct usb_redir_set_configuration_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_configuration_status_header st = { usb_redir_success, h->configuration };

	ch->configured = h->configuration;
	out("SET_CONFIGURATION %u %u", ch->id, h->configuration);
	usbredirparser_send_configuration_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_get_config(void *priv, uint64_t id)
{
	struct chan *ch = priv;
	struct usb_redir_configuration_status_header st = { usb_redir_success,
	                                                    (uint8_t)ch->configured };

	usbredirparser_send_configuration_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_set_alt(void *priv, uint64_t id, struct usb_redir_set_alt_setting_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_alt_setting_status_header st = { usb_redir_success, h->interface, h->alt };

	usbredirparser_send_alt_setting_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_get_alt(void *priv, uint64_t id, struct usb_redir_get_alt_setting_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_alt_setting_status_header st = { usb_redir_success, h->interface, 0 };

	usbredirparser_send_alt_setting_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_start_int(void *priv, uint64_t id,
                         struct usb_redir_start_interrupt_receiving_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_interrupt_receiving_status_header st = { usb_redir_success, h->endpoint };

	usbredirparser_send_interrupt_receiving_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_stop_int(void *priv, uint64_t id,
                        struct usb_redir_stop_interrupt_receiving_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_interrupt_receiving_status_header st = { usb_redir_success, h->endpoint };

	usbredirparser_send_interrupt_receiving_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_start_iso(void *priv, uint64_t id, struct usb_redir_start_iso_stream_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_iso_stream_status_header st = { usb_redir_stall, h->endpoint };

	usbredirparser_send_iso_stream_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_stop_iso(void *priv, uint64_t id, struct usb_redir_stop_iso_stream_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_iso_stream_status_header st = { usb_redir_success, h->endpoint };

	usbredirparser_send_iso_stream_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_alloc_streams(void *priv, uint64_t id, struct usb_redir_alloc_bulk_streams_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_bulk_streams_status_header st = {h->endpoints, h->no_streams,
	                                                  usb_redir_stall};

	usbredirparser_send_bulk_streams_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_free_streams(void *priv, uint64_t id, struct usb_redir_free_bulk_streams_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_bulk_streams_status_header st = { h->endpoints, 0, usb_redir_success };

	usbredirparser_send_bulk_streams_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_cancel(void *priv, uint64_t id)
{
	/* Every request is answered at once, so there is never one to cancel. */
}

static void pr_filter_reject(void *priv)
{
}

static void pr_filter_filter(void *priv, struct usbredirfilter_rule *rules, int count)
{
	free(rules);
}

static void pr_disconnect_ack(void *priv)
{
	struct chan *ch = priv;

	out("DISCONNECT_ACK %u", ch->id);
}

static void pr_start_bulk_recv(void *priv, uint64_t id,
                               struct usb_redir_start_bulk_receiving_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_bulk_receiving_status_header st = {h->stream_id, h->endpoint,
	                                                    usb_redir_stall};

	usbredirparser_send_bulk_receiving_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_stop_bulk_recv(void *priv, uint64_t id,
                              struct usb_redir_stop_bulk_receiving_header *h)
{
	struct chan *ch = priv;
	struct usb_redir_bulk_receiving_status_header st = { h->stream_id, h->endpoint,
	                                                      usb_redir_success };

	usbredirparser_send_bulk_receiving_status(ch->parser, id, &st);
	flush(ch);
}

static void pr_control(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                       uint8_t *data, int data_len)
{
	struct chan *ch = priv;
	struct usb_redir_control_packet_header r = *h;
	uint8_t buf[4096];
	size_t n = 0;
	int in = h->requesttype & 0x80;

	r.status = usb_redir_success;
	if (in && h->request == 6) {
		switch (h->value >> 8) {
		case 1:
			memcpy(buf, dev_desc, sizeof(dev_desc));
			n = sizeof(dev_desc);
			break;
		case 2:
			n = config_desc(buf);
			break;
		case 3:
			n = string_desc(h->value & 0xff, buf);
			if (!n)
				r.status = usb_redir_stall;
			break;
		case 0x22:
			memcpy(buf, report_desc, sizeof(report_desc));
			n = sizeof(report_desc);
			break;
		default:
			r.status = usb_redir_stall;
		}
	} else if (in && h->request == 0) {
		buf[0] = buf[1] = 0;
		n = 2;
	} else if (!in && (h->requesttype & 0x60) == 0x20) {
		/* HID class requests (SET_IDLE, SET_PROTOCOL, SET_REPORT): accepted. */
	} else if (!in && (h->request == 1 || h->request == 3)) {
		/* CLEAR_FEATURE / SET_FEATURE: accepted. */
	} else {
		r.status = usb_redir_stall;
	}
	if (n > h->length)
		n = h->length;
	r.length = in ? (uint16_t)n : h->length;
	fprintf(stderr,
	        "probe: channel %u control type 0x%02x req %u value 0x%04x len %u -> %s %zu\n",
	        ch->id, h->requesttype, h->request, h->value, h->length,
	        r.status == usb_redir_success ? "ok" : "stall", n);
	if (in && n >= 1000)
		out("CONTROL_BIG %u %zu", ch->id, n);
	usbredirparser_send_control_packet(ch->parser, id, &r, in ? buf : NULL, in ? (int)n : 0);
	if (data)
		usbredirparser_free_packet_data(ch->parser, data);
	flush(ch);
}

static void pr_data_stall(struct chan *ch, uint64_t id, uint8_t *data)
{
	if (data)
		usbredirparser_free_packet_data(ch->parser, data);
}

static void pr_bulk(void *priv, uint64_t id, struct usb_redir_bulk_packet_header *h, uint8_t *data,
                    int len)
{
	struct chan *ch = priv;
	struct usb_redir_bulk_packet_header r = *h;

	pr_data_stall(ch, id, data);
	r.status = usb_redir_stall;
	r.length = 0;
	r.length_high = 0;
	usbredirparser_send_bulk_packet(ch->parser, id, &r, NULL, 0);
	flush(ch);
}

static void pr_iso(void *priv, uint64_t id, struct usb_redir_iso_packet_header *h, uint8_t *data,
                   int len)
{
	pr_data_stall(priv, id, data);
}

static void pr_interrupt(void *priv, uint64_t id, struct usb_redir_interrupt_packet_header *h,
                         uint8_t *data, int len)
{
	struct chan *ch = priv;
	struct usb_redir_interrupt_packet_header r = *h;

	pr_data_stall(ch, id, data);
	r.status = usb_redir_success;
	usbredirparser_send_interrupt_packet(ch->parser, id, &r, NULL, 0);
	flush(ch);
}

static void chan_parser_init(struct chan *ch)
{
	uint32_t caps[USB_REDIR_CAPS_SIZE] = { 0 };
	struct usbredirparser *pr = usbredirparser_create();

	pr->priv = ch;
	pr->log_func = pr_log;
	pr->read_func = pr_read;
	pr->write_func = pr_write;
	pr->hello_func = pr_hello;
	pr->reset_func = pr_reset;
	pr->set_configuration_func = pr_set_config;
	pr->get_configuration_func = pr_get_config;
	pr->set_alt_setting_func = pr_set_alt;
	pr->get_alt_setting_func = pr_get_alt;
	pr->start_iso_stream_func = pr_start_iso;
	pr->stop_iso_stream_func = pr_stop_iso;
	pr->start_interrupt_receiving_func = pr_start_int;
	pr->stop_interrupt_receiving_func = pr_stop_int;
	pr->alloc_bulk_streams_func = pr_alloc_streams;
	pr->free_bulk_streams_func = pr_free_streams;
	pr->cancel_data_packet_func = pr_cancel;
	pr->filter_reject_func = pr_filter_reject;
	pr->filter_filter_func = pr_filter_filter;
	pr->device_disconnect_ack_func = pr_disconnect_ack;
	pr->start_bulk_receiving_func = pr_start_bulk_recv;
	pr->stop_bulk_receiving_func = pr_stop_bulk_recv;
	pr->control_packet_func = pr_control;
	pr->bulk_packet_func = pr_bulk;
	pr->iso_packet_func = pr_iso;
	pr->interrupt_packet_func = pr_interrupt;
	usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
	usbredirparser_caps_set_cap(caps, usb_redir_cap_filter);
	usbredirparser_caps_set_cap(caps, usb_redir_cap_device_disconnect_ack);
	usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
	usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
	usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
	usbredirparser_init(pr, "usbgate spice-client-probe", caps, USB_REDIR_CAPS_SIZE,
	                    usbredirparser_fl_usb_host);
	ch->parser = pr;
	flush(ch);
}

/* ---- transports and the client ---------------------------------------------- */

static void on_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct chan *ch = user_data;

	g_byte_array_append(ch->in, data, (guint)len);
	if (usbredirparser_do_read(ch->parser) < 0)
		fprintf(stderr, "probe: usbredir channel %u: parse error\n", ch->id);
	flush(ch);
}

static void on_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	struct chan *ch = user_data;

	out("CHANNEL_CLOSED %u %d %s", ch->id, error, message);
	if (ch->p->exit_code < 0 && !ch->hello && !ch->p->reconnect) {
		fprintf(stderr, "probe: %s\n", message);
		quit(ch->p, exit_code_for(error));
	}
}

static void open_all(struct probe *p, unsigned from)
{
	for (unsigned i = from; i < p->nch; i++) {
		struct chan *ch = &p->ch[i];
		int r = ug_spice_client_open_usbredir(p->c, ch->id, &ch->t);

		if (r < 0) {
			fprintf(stderr, "probe: %s\n", ug_spice_client_errmsg(p->c));
			quit(p, exit_code_for(r));
			return;
		}
		if (!p->lz4)
			ug_spice_usbredir_set_lz4(ch->t, 0);
		ch->in = g_byte_array_new();
		ug_transport_set_callbacks(ch->t, on_data, on_closed, ch);
		chan_parser_init(ch);
	}
}

static void on_connected(ug_spice_client *c, void *user_data)
{
	struct probe *p = user_data;

	out("CONNECTED session=0x%08x count=%u", ug_spice_client_session_id(c), ++p->sessions);
}

static void on_channel_added(ug_spice_client *c, unsigned id, void *user_data)
{
	struct probe *p = user_data;

	out("CHANNEL usbredir %u", id);
	if (p->nch >= MAX_CH)
		return;
	p->ch[p->nch].p = p;
	p->ch[p->nch].id = id;
	p->nch++;
	if (p->nch == p->want_channels) {
		if (p->link_only) {
			quit(p, 0);
			return;
		}
		open_all(p, 0);
	} else if (p->nch > p->want_channels && !p->link_only) {
		/* A hot-plugged channel: opened like the first ones. */
		open_all(p, p->nch - 1);
	}
}

static void on_channel_removed(ug_spice_client *c, unsigned id, void *user_data)
{
	out("CHANNEL_REMOVED %u", id);
}

static void forget_channels(struct probe *p)
{
	for (unsigned i = 0; i < p->nch; i++) {
		ug_transport_free(p->ch[i].t);
		if (p->ch[i].parser)
			usbredirparser_destroy(p->ch[i].parser);
		if (p->ch[i].in)
			g_byte_array_free(p->ch[i].in, TRUE);
		memset(&p->ch[i], 0, sizeof(p->ch[i]));
	}
	p->nch = 0;
	p->hellos = 0;
}

static gboolean do_reconnect(gpointer user_data)
{
	struct probe *p = user_data;

	if (ug_spice_client_connect(p->c) < 0) {
		fprintf(stderr, "probe: %s\n", ug_spice_client_errmsg(p->c));
		quit(p, 1);
	}
	return G_SOURCE_REMOVE;
}

static void on_disconnected(ug_spice_client *c, int error, const char *message, void *user_data)
{
	struct probe *p = user_data;

	out("DISCONNECTED %d %s", error, message);
	fprintf(stderr, "probe: %s\n", message);
	if (p->reconnect) {
		/* The reconnect hook: the same client connects again, the devices are re-attached.
		 */
		forget_channels(p);
		g_timeout_add(300, do_reconnect, p);
		return;
	}
	quit(p, error ? exit_code_for(error) : 0);
}

static void on_log(int level, const char *message, void *user_data)
{
	fprintf(stderr, "probe: [%d] %s\n", level, message);
}

/* Counts spicevmc messages both ways by decoding the tapped wire, as a capture would. */
static void on_wire(unsigned type, unsigned id, int from_server, const uint8_t *data, size_t len,
                    void *user_data)
{
	struct probe *p = user_data;
	unsigned slot = type == 9 && id < MAX_CH ? id + 1 : 0;
	int kind = type == 9 ? 1 : 0;
	ug_spice_stream **dp = &p->tap[kind][slot];
	struct ug_spice_stream_event ev;
	int r;

	if (p->record_dir && slot < 16) {
		FILE **f = &p->rec[type == 9 ? slot : 0][from_server];

		if (!*f) {
			char path[4096];

			snprintf(path, sizeof(path), "%s/%s%u-%s.bin", p->record_dir,
			         type == 9 ? "usbredir" : "main", type == 9 ? id : 0,
			         from_server ? "s2c" : "c2s");
			*f = fopen(path, "wb");
		}
		if (*f) {
			fwrite(data, 1, len, *f);
			fflush(*f);
		}
	}
	/* A new link on the same channel (reconnect, TLS retry) starts over. */
	if (!from_server && len >= 4 && memcmp(data, "REDQ", 4) == 0) {
		ug_spice_stream_free(*dp);
		*dp = NULL;
	}
	if (!*dp)
		*dp = ug_spice_stream_new();
	/* The tap's bytes live only during this call: the decoder copies what it
	 * holds (a direction waiting for the other's link) once drained. */
	if (!*dp || ug_spice_stream_feed(*dp, from_server, data, len) < 0)
		return;
	while ((r = ug_spice_stream_next(*dp, &ev)) > 0) {
		if (ev.type == UG_SPICE_STREAM_ERROR || ev.type == UG_SPICE_STREAM_NOTICE ||
		    ev.type == UG_SPICE_STREAM_USBREDIR_GAP) {
			fprintf(stderr, "probe: tap: %s\n", ev.message);
			continue;
		}
		/* Each usbredir event is one non-empty spicevmc message; H2G is what this
		 * client (the usb-host) sent. */
		if (ev.type != UG_SPICE_STREAM_USBREDIR_DATA || type != 9)
			continue;
		if (ev.compressed) {
			if (ev.dir == UG_DIR_G2H)
				p->lz4_received++;
			else
				p->lz4_sent++;
		} else {
			if (ev.dir == UG_DIR_G2H)
				p->vmc_received++;
			else
				p->vmc_sent++;
		}
	}
	if (r < 0)
		fprintf(stderr, "probe: tap: %s\n", ug_strerror(r));
}

static gboolean on_stdin(gint fd, GIOCondition cond, gpointer user_data)
{
	struct probe *p = user_data;
	char line[256];
	ssize_t n = read(fd, line, sizeof(line) - 1);

	if (n <= 0) {
		quit(p, 0);
		return G_SOURCE_REMOVE;
	}
	line[n] = '\0';
	for (char *cmd = strtok(line, "\n"); cmd; cmd = strtok(NULL, "\n")) {
		if (strcmp(cmd, "detach") == 0) {
			for (unsigned i = 0; i < p->nch; i++) {
				if (p->ch[i].attached) {
					usbredirparser_send_device_disconnect(p->ch[i].parser);
					flush(&p->ch[i]);
					p->ch[i].attached = 0;
					out("DETACH_SENT %u", p->ch[i].id);
				}
			}
		} else if (strcmp(cmd, "attach") == 0) {
			for (unsigned i = 0; i < p->nch; i++)
				if ((int)p->ch[i].id == p->attach_id && !p->ch[i].attached)
					send_device(&p->ch[i]);
		} else if (strcmp(cmd, "stats") == 0) {
			out("STATS vmc_sent=%u lz4_sent=%u vmc_received=%u lz4_received=%u",
			    p->vmc_sent, p->lz4_sent, p->vmc_received, p->lz4_received);
		} else if (strcmp(cmd, "quit") == 0) {
			quit(p, 0);
		}
	}
	return G_SOURCE_CONTINUE;
}

static gboolean on_timeout(gpointer user_data)
{
	struct probe *p = user_data;

	out("TIMEOUT");
	quit(p, 6);
	return G_SOURCE_REMOVE;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: spice-client-probe --uri URI [--password-file F | --password-env VAR]\n"
	        "       [--ca-file F] [--host-subject S] [--pubkey F] [--no-verify] [--channels "
	        "N]\n"
	        "       [--attach ID] [--link-only] [--no-lz4] [--record DIR] [--timeout SEC]\n"
	        "       [--no-stdin] [--reconnect]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "uri", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "password-env", required_argument, NULL, 'e' },
		{ "ca-file", required_argument, NULL, 'c' },
		{ "host-subject", required_argument, NULL, 's' },
		{ "pubkey", required_argument, NULL, 'K' },
		{ "no-verify", no_argument, NULL, 'k' },
		{ "channels", required_argument, NULL, 'n' },
		{ "attach", required_argument, NULL, 'a' },
		{ "link-only", no_argument, NULL, 'l' },
		{ "no-lz4", no_argument, NULL, 'z' },
		{ "record", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "no-stdin", no_argument, NULL, 'i' },
		{ "reconnect", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	struct ug_spice_client_callbacks cb = {
		.connected = on_connected,
		.channel_added = on_channel_added,
		.channel_removed = on_channel_removed,
		.disconnected = on_disconnected,
	};
	struct probe p;
	int o, r, timeout = 30, use_stdin = 1;

	memset(&p, 0, sizeof(p));
	p.exit_code = -1;
	p.want_channels = 2;
	p.attach_id = -1;
	p.lz4 = 1;
	p.c = ug_spice_client_new();
	ug_spice_client_set_log(p.c, on_log, &p);
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		r = 0;
		switch (o) {
		case 'u':
			r = ug_spice_client_set_uri(p.c, optarg);
			break;
		case 'p':
			r = ug_spice_client_set_password_file(p.c, optarg);
			break;
		case 'e':
			r = ug_spice_client_set_password_env(p.c, optarg);
			break;
		case 'c':
			r = ug_spice_client_set_ca_file(p.c, optarg);
			break;
		case 's':
			r = ug_spice_client_set_host_subject(p.c, optarg);
			break;
		case 'K':
			r = ug_spice_client_set_pubkey_file(p.c, optarg);
			break;
		case 'k':
			ug_spice_client_set_verify(p.c, 0);
			break;
		case 'n':
			p.want_channels = (unsigned)atoi(optarg);
			break;
		case 'a':
			p.attach_id = atoi(optarg);
			break;
		case 'l':
			p.link_only = 1;
			break;
		case 'z':
			p.lz4 = 0;
			break;
		case 'r':
			p.record_dir = optarg;
			break;
		case 't':
			timeout = atoi(optarg);
			break;
		case 'i':
			use_stdin = 0;
			break;
		case 'R':
			p.reconnect = 1;
			break;
		default:
			usage();
			return 2;
		}
		if (r < 0) {
			fprintf(stderr, "probe: %s\n", ug_spice_client_errmsg(p.c));
			return 2;
		}
	}
	if (p.want_channels == 0 || p.want_channels > MAX_CH) {
		usage();
		return 2;
	}
	p.loop = g_main_loop_new(NULL, FALSE);
	ug_spice_client_set_callbacks(p.c, &cb, &p);
	ug_spice_client_set_wire_tap(p.c, on_wire, &p);
	r = ug_spice_client_connect(p.c);
	if (r < 0) {
		fprintf(stderr, "probe: %s\n", ug_spice_client_errmsg(p.c));
		return r == UG_E_INVAL ? 2 : exit_code_for(r);
	}
	if (use_stdin)
		g_unix_fd_add(0, G_IO_IN | G_IO_HUP, on_stdin, &p);
	g_timeout_add_seconds((guint)timeout, on_timeout, &p);
	g_main_loop_run(p.loop);
	out("STATS vmc_sent=%u lz4_sent=%u vmc_received=%u lz4_received=%u", p.vmc_sent, p.lz4_sent,
	    p.vmc_received, p.lz4_received);
	forget_channels(&p);
	ug_spice_client_free(p.c);
	for (int k = 0; k < 2; k++) {
		for (unsigned i = 0; i <= MAX_CH; i++)
			ug_spice_stream_free(p.tap[k][i]);
	}
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 2; j++)
			if (p.rec[i][j])
				fclose(p.rec[i][j]);
	g_main_loop_unref(p.loop);
	return p.exit_code < 0 ? 0 : p.exit_code;
}
