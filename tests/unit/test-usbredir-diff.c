/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-usbredir-diff.c: differential test of the usbredir codec against libusbredirparser, both roles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <usbredirfilter.h>
#include <usbredirparser.h>

#include "common.h"
#include "usbgate.h"
#include "usbredir-testgen.h"

#define CAP(c) (1u << usb_redir_cap_##c)
#define ALL_CAPS (TG_SIZE_CAPS | TG_TYPE_CAPS)

/* Printed with every failure so that a failing stream can be regenerated. */
static unsigned long long cur_seed;
static int cur_round;

#define DIFF_ASSERT(cond, ...) \
	do { \
		if (!(cond)) { \
			print_error("seed %llu round %d (UG_DIFF_SEED=%llu reruns it): ", \
				    cur_seed, cur_round, cur_seed); \
			print_error(__VA_ARGS__); \
			print_error("\n"); \
			fail_msg("%s", #cond); \
		} \
	} while (0)

/* ---- growable byte string -------------------------------------------------- */

struct bytes {
	uint8_t *b;
	size_t len, cap;
};

static void b_put(struct bytes *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2 + 4096;
		s->b = realloc(s->b, s->cap);
		assert_non_null(s->b);
	}
	if (n)
		memcpy(s->b + s->len, p, n);
	s->len += n;
}

/* ---- events: what a decoder reported, in order ------------------------------ */

struct ev {
	int err;                 /* 1: a parse error, 0: a packet */
	int no_id;               /* libusbredirparser's callback for it passes no id */
	uint32_t type;
	uint64_t id;
	union ug_usbredir_type_header h;
	char version[64];
	uint8_t *data;
	uint32_t data_len;
};

struct evs {
	struct ev *e;
	size_t n, cap;
};

static struct ev *ev_new(struct evs *v)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 256;
		v->e = realloc(v->e, v->cap * sizeof(*v->e));
		assert_non_null(v->e);
	}
	memset(&v->e[v->n], 0, sizeof(v->e[0]));
	return &v->e[v->n++];
}

static void evs_free(struct evs *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->e[i].data);
	free(v->e);
	memset(v, 0, sizeof(*v));
}

/* ---- libusbredirparser as the receiving side --------------------------------- */

struct lib {
	struct usbredirparser *p;
	/* Where reads come from: the stream, in random chunks. */
	const uint8_t *in;
	size_t in_len, in_pos;
	uint64_t rng;
	unsigned max_chunk;
	/* Where writes go (the sending parsers' output). */
	struct bytes out;
	struct evs ev;
};

static void lib_log(void *priv, int level, const char *msg)
{
	(void)priv;
	(void)level;
	(void)msg;
}

static int lib_read(void *priv, uint8_t *data, int count)
{
	struct lib *l = priv;
	size_t n = l->in_len - l->in_pos;

	if (n == 0)
		return 0;
	if (n > (size_t)count)
		n = (size_t)count;
	if (l->max_chunk) {
		size_t c = 1 + tg_below(&l->rng, l->max_chunk);
		if (n > c)
			n = c;
	}
	memcpy(data, l->in + l->in_pos, n);
	l->in_pos += n;
	return (int)n;
}

static int lib_write(void *priv, uint8_t *data, int count)
{
	struct lib *l = priv;

	b_put(&l->out, data, (size_t)count);
	return count;
}

/* Negotiated caps as this parser sees them now (0 before the peer's hello). */
static uint32_t lib_caps(struct usbredirparser *p)
{
	uint32_t caps = 0;

	if (!usbredirparser_have_peer_caps(p))
		return 0;
	for (int c = 0; c < 32; c++)
		if (usbredirparser_have_cap(p, c) && usbredirparser_peer_has_cap(p, c))
			caps |= 1u << c;
	return caps;
}

/*
 * libusbredirparser reuses its type-header buffer, so fields that were not on
 * the wire under the negotiated caps hold stale bytes: clear them as the
 * codec does.
 */
static struct ev *lib_ev(struct lib *l, uint32_t type, uint64_t id, const void *h, size_t hsize)
{
	struct ev *e = ev_new(&l->ev);
	uint32_t caps = lib_caps(l->p);

	e->type = type;
	e->id = id;
	if (h)
		memcpy(&e->h, h, hsize);
	if (type == usb_redir_device_connect && !tg_cap(caps, usb_redir_cap_connect_device_version))
		e->h.device_connect.device_version_bcd = 0;
	if (type == usb_redir_ep_info) {
		if (!tg_cap(caps, usb_redir_cap_ep_info_max_packet_size))
			memset(e->h.ep_info.max_packet_size, 0, sizeof(e->h.ep_info.max_packet_size));
		if (!tg_cap(caps, usb_redir_cap_bulk_streams))
			memset(e->h.ep_info.max_streams, 0, sizeof(e->h.ep_info.max_streams));
	}
	return e;
}

static void lib_data(struct lib *l, struct ev *e, uint8_t *data, int len)
{
	e->data_len = (uint32_t)len;
	if (len > 0) {
		e->data = malloc((size_t)len);
		assert_non_null(e->data);
		memcpy(e->data, data, (size_t)len);
	}
	usbredirparser_free_packet_data(l->p, data);
}

#define CB_NOHDR(name, t) \
	static void cb_##name(void *priv) { lib_ev(priv, t, 0, NULL, 0)->no_id = 1; }
#define CB_ID(name, t) \
	static void cb_##name(void *priv, uint64_t id) { lib_ev(priv, t, id, NULL, 0); }
#define CB_HDR(name, t) \
	static void cb_##name(void *priv, struct usb_redir_##name##_header *h) \
	{ lib_ev(priv, t, 0, h, sizeof(*h))->no_id = 1; }
#define CB_ID_HDR(name, t) \
	static void cb_##name(void *priv, uint64_t id, struct usb_redir_##name##_header *h) \
	{ lib_ev(priv, t, id, h, sizeof(*h)); }
#define CB_DATA(name, hname, t) \
	static void cb_##name(void *priv, uint64_t id, struct usb_redir_##hname##_header *h, \
			      uint8_t *data, int len) \
	{ lib_data(priv, lib_ev(priv, t, id, h, sizeof(*h)), data, len); }

CB_HDR(device_connect, usb_redir_device_connect)
CB_NOHDR(device_disconnect, usb_redir_device_disconnect)
CB_NOHDR(reset, usb_redir_reset)
CB_HDR(interface_info, usb_redir_interface_info)
CB_HDR(ep_info, usb_redir_ep_info)
CB_ID_HDR(set_configuration, usb_redir_set_configuration)
CB_ID(get_configuration, usb_redir_get_configuration)
CB_ID_HDR(configuration_status, usb_redir_configuration_status)
CB_ID_HDR(set_alt_setting, usb_redir_set_alt_setting)
CB_ID_HDR(get_alt_setting, usb_redir_get_alt_setting)
CB_ID_HDR(alt_setting_status, usb_redir_alt_setting_status)
CB_ID_HDR(start_iso_stream, usb_redir_start_iso_stream)
CB_ID_HDR(stop_iso_stream, usb_redir_stop_iso_stream)
CB_ID_HDR(iso_stream_status, usb_redir_iso_stream_status)
CB_ID_HDR(start_interrupt_receiving, usb_redir_start_interrupt_receiving)
CB_ID_HDR(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving)
CB_ID_HDR(interrupt_receiving_status, usb_redir_interrupt_receiving_status)
CB_ID_HDR(alloc_bulk_streams, usb_redir_alloc_bulk_streams)
CB_ID_HDR(free_bulk_streams, usb_redir_free_bulk_streams)
CB_ID_HDR(bulk_streams_status, usb_redir_bulk_streams_status)
CB_ID(cancel_data_packet, usb_redir_cancel_data_packet)
CB_NOHDR(filter_reject, usb_redir_filter_reject)
CB_NOHDR(device_disconnect_ack, usb_redir_device_disconnect_ack)
CB_ID_HDR(start_bulk_receiving, usb_redir_start_bulk_receiving)
CB_ID_HDR(stop_bulk_receiving, usb_redir_stop_bulk_receiving)
CB_ID_HDR(bulk_receiving_status, usb_redir_bulk_receiving_status)
CB_DATA(control_packet, control_packet, usb_redir_control_packet)
CB_DATA(bulk_packet, bulk_packet, usb_redir_bulk_packet)
CB_DATA(iso_packet, iso_packet, usb_redir_iso_packet)
CB_DATA(interrupt_packet, interrupt_packet, usb_redir_interrupt_packet)
CB_DATA(buffered_bulk_packet, buffered_bulk_packet, usb_redir_buffered_bulk_packet)

static void cb_hello(void *priv, struct usb_redir_hello_header *h)
{
	struct ev *e = lib_ev(priv, usb_redir_hello, 0, NULL, 0);

	e->no_id = 1;
	memcpy(e->version, h->version, sizeof(e->version));
}

/* The parser hands over parsed rules; keep the string they print back to. */
static void cb_filter_filter(void *priv, struct usbredirfilter_rule *rules, int count)
{
	struct ev *e = lib_ev(priv, usb_redir_filter_filter, 0, NULL, 0);
	e->no_id = 1;
	char *str = usbredirfilter_rules_to_string(rules, count, ",", "|");

	assert_non_null(str);
	e->data_len = (uint32_t)strlen(str) + 1;
	e->data = malloc(e->data_len);
	assert_non_null(e->data);
	memcpy(e->data, str, e->data_len);
	usbredirfilter_free(str);
	usbredirfilter_free(rules);
}

static void lib_init(struct lib *l, int host, uint32_t caps, uint64_t rng)
{
	struct usbredirparser *p = usbredirparser_create();
	uint32_t c[USB_REDIR_CAPS_SIZE] = { caps };

	assert_non_null(p);
	memset(l, 0, sizeof(*l));
	l->p = p;
	l->rng = rng | 1;
	p->priv = l;
	p->log_func = lib_log;
	p->read_func = lib_read;
	p->write_func = lib_write;
	p->hello_func = cb_hello;
#define SET(n) p->n##_func = cb_##n
	SET(device_connect); SET(device_disconnect); SET(reset); SET(interface_info);
	SET(ep_info); SET(set_configuration); SET(get_configuration);
	SET(configuration_status); SET(set_alt_setting); SET(get_alt_setting);
	SET(alt_setting_status); SET(start_iso_stream); SET(stop_iso_stream);
	SET(iso_stream_status); SET(start_interrupt_receiving); SET(stop_interrupt_receiving);
	SET(interrupt_receiving_status); SET(alloc_bulk_streams); SET(free_bulk_streams);
	SET(bulk_streams_status); SET(cancel_data_packet); SET(filter_reject);
	SET(filter_filter); SET(device_disconnect_ack); SET(start_bulk_receiving);
	SET(stop_bulk_receiving); SET(bulk_receiving_status); SET(control_packet);
	SET(bulk_packet); SET(iso_packet); SET(interrupt_packet); SET(buffered_bulk_packet);
#undef SET
	usbredirparser_init(p, host ? "usbgate diff host" : "usbgate diff guest", c,
			    USB_REDIR_CAPS_SIZE, host ? usbredirparser_fl_usb_host : 0);
}

static void lib_free(struct lib *l)
{
	usbredirparser_destroy(l->p);
	free(l->out.b);
	evs_free(&l->ev);
}

/* Everything the parser queued so far, as bytes. */
static void lib_flush(struct lib *l)
{
	while (usbredirparser_has_data_to_write(l->p))
		assert_int_equal(usbredirparser_do_write(l->p), 0);
}

/* Reads a whole stream; parse errors become events. */
static void lib_read_all(struct lib *l, const uint8_t *in, size_t len, unsigned max_chunk)
{
	int r;

	l->in = in;
	l->in_len = len;
	l->in_pos = 0;
	l->max_chunk = max_chunk;
	for (;;) {
		r = usbredirparser_do_read(l->p);
		if (r == usbredirparser_read_parse_error) {
			ev_new(&l->ev)->err = 1;
			continue;
		}
		assert_int_equal(r, 0);
		if (l->in_pos == l->in_len)
			break;
	}
}

/* Sends p through libusbredirparser's send function for its type. */
static void lib_send(struct lib *l, struct ug_usbredir_packet *p)
{
	struct usbredirparser *u = l->p;
	union ug_usbredir_type_header *h = &p->h;
	uint8_t *d = (uint8_t *)p->data;
	int n = (int)p->data_len;

	switch (p->type) {
	case usb_redir_device_connect: usbredirparser_send_device_connect(u, &h->device_connect); break;
	case usb_redir_device_disconnect: usbredirparser_send_device_disconnect(u); break;
	case usb_redir_reset: usbredirparser_send_reset(u); break;
	case usb_redir_interface_info: usbredirparser_send_interface_info(u, &h->interface_info); break;
	case usb_redir_ep_info: usbredirparser_send_ep_info(u, &h->ep_info); break;
	case usb_redir_set_configuration:
		usbredirparser_send_set_configuration(u, p->id, &h->set_configuration); break;
	case usb_redir_get_configuration: usbredirparser_send_get_configuration(u, p->id); break;
	case usb_redir_configuration_status:
		usbredirparser_send_configuration_status(u, p->id, &h->configuration_status); break;
	case usb_redir_set_alt_setting:
		usbredirparser_send_set_alt_setting(u, p->id, &h->set_alt_setting); break;
	case usb_redir_get_alt_setting:
		usbredirparser_send_get_alt_setting(u, p->id, &h->get_alt_setting); break;
	case usb_redir_alt_setting_status:
		usbredirparser_send_alt_setting_status(u, p->id, &h->alt_setting_status); break;
	case usb_redir_start_iso_stream:
		usbredirparser_send_start_iso_stream(u, p->id, &h->start_iso_stream); break;
	case usb_redir_stop_iso_stream:
		usbredirparser_send_stop_iso_stream(u, p->id, &h->stop_iso_stream); break;
	case usb_redir_iso_stream_status:
		usbredirparser_send_iso_stream_status(u, p->id, &h->iso_stream_status); break;
	case usb_redir_start_interrupt_receiving:
		usbredirparser_send_start_interrupt_receiving(u, p->id, &h->start_interrupt_receiving);
		break;
	case usb_redir_stop_interrupt_receiving:
		usbredirparser_send_stop_interrupt_receiving(u, p->id, &h->stop_interrupt_receiving);
		break;
	case usb_redir_interrupt_receiving_status:
		usbredirparser_send_interrupt_receiving_status(u, p->id,
							       &h->interrupt_receiving_status);
		break;
	case usb_redir_alloc_bulk_streams:
		usbredirparser_send_alloc_bulk_streams(u, p->id, &h->alloc_bulk_streams); break;
	case usb_redir_free_bulk_streams:
		usbredirparser_send_free_bulk_streams(u, p->id, &h->free_bulk_streams); break;
	case usb_redir_bulk_streams_status:
		usbredirparser_send_bulk_streams_status(u, p->id, &h->bulk_streams_status); break;
	case usb_redir_cancel_data_packet: usbredirparser_send_cancel_data_packet(u, p->id); break;
	case usb_redir_filter_reject: usbredirparser_send_filter_reject(u); break;
	case usb_redir_filter_filter: {
		struct usbredirfilter_rule *rules;
		int count;

		assert_int_equal(usbredirfilter_string_to_rules((const char *)p->data, ",", "|",
								&rules, &count), 0);
		usbredirparser_send_filter_filter(u, rules, count);
		usbredirfilter_free(rules);
		break;
	}
	case usb_redir_device_disconnect_ack:
		/* libusbredirparser sends this one itself, after a device_disconnect. */
		break;
	case usb_redir_start_bulk_receiving:
		usbredirparser_send_start_bulk_receiving(u, p->id, &h->start_bulk_receiving); break;
	case usb_redir_stop_bulk_receiving:
		usbredirparser_send_stop_bulk_receiving(u, p->id, &h->stop_bulk_receiving); break;
	case usb_redir_bulk_receiving_status:
		usbredirparser_send_bulk_receiving_status(u, p->id, &h->bulk_receiving_status); break;
	case usb_redir_control_packet:
		usbredirparser_send_control_packet(u, p->id, &h->control_packet, d, n); break;
	case usb_redir_bulk_packet: usbredirparser_send_bulk_packet(u, p->id, &h->bulk_packet, d, n); break;
	case usb_redir_iso_packet: usbredirparser_send_iso_packet(u, p->id, &h->iso_packet, d, n); break;
	case usb_redir_interrupt_packet:
		usbredirparser_send_interrupt_packet(u, p->id, &h->interrupt_packet, d, n); break;
	case usb_redir_buffered_bulk_packet:
		usbredirparser_send_buffered_bulk_packet(u, p->id, &h->buffered_bulk_packet, d, n);
		break;
	default:
		fail_msg("no send function for type %u", p->type);
	}
}

/* ---- our side ---------------------------------------------------------------- */

struct ours {
	struct evs ev[2];
	int hellos[2];
};

static void ours_take(ug_usbredir_session *s, enum ug_dir dir, struct ours *o)
{
	struct ug_usbredir_packet p;
	int r;

	while ((r = ug_usbredir_session_next(s, dir, &p)) != 0) {
		struct ev *e = ev_new(&o->ev[dir]);

		if (r < 0) {
			DIFF_ASSERT(r == UG_E_PROTO || r == UG_E_TOOBIG, "next() returned %d: %s", r,
				    ug_usbredir_session_errmsg(s));
			DIFF_ASSERT(ug_usbredir_session_errmsg(s)[0] != '\0', "no errmsg");
			e->err = 1;
			continue;
		}
		/* libusbredirparser reports an unknown type as a parse error. */
		if (!p.known) {
			e->err = 1;
			continue;
		}
		e->type = p.type;
		e->id = p.id;
		memcpy(&e->h, &p.h, tg_hsize(p.type));
		if (p.type == usb_redir_hello) {
			memcpy(e->version, p.h.hello.version, 64);
			/* A second hello is ignored, without a word, by libusbredirparser. */
			if (o->hellos[dir]++) {
				o->ev[dir].n--;
				continue;
			}
			continue;
		}
		if (p.type == usb_redir_filter_filter) {
			struct usbredirfilter_rule *rules;
			int count;
			char *str;

			/* libusbredirparser drops a filter it cannot parse, without an error. */
			if (usbredirfilter_string_to_rules((const char *)p.data, ",", "|", &rules,
							   &count) != 0) {
				o->ev[dir].n--;
				continue;
			}
			str = usbredirfilter_rules_to_string(rules, count, ",", "|");
			usbredirfilter_free(rules);
			assert_non_null(str);
			e->data_len = (uint32_t)strlen(str) + 1;
			e->data = malloc(e->data_len);
			memcpy(e->data, str, e->data_len);
			usbredirfilter_free(str);
			continue;
		}
		e->data_len = p.data_len;
		if (p.data_len) {
			e->data = malloc(p.data_len);
			assert_non_null(e->data);
			memcpy(e->data, p.data, p.data_len);
		}
	}
}

static void compare(const struct evs *lib, const struct evs *our, const char *what)
{
	size_t n = lib->n < our->n ? lib->n : our->n;

	for (size_t i = 0; i < n; i++) {
		const struct ev *a = &lib->e[i], *b = &our->e[i];

		DIFF_ASSERT(a->err == b->err, "%s event %zu: libusbredirparser %s (type %u), ours %s "
			    "(type %u)", what, i, a->err ? "error" : "packet", a->type,
			    b->err ? "error" : "packet", b->type);
		if (a->err)
			continue;
		DIFF_ASSERT(a->type == b->type, "%s event %zu: type %u vs %u", what, i, a->type,
			    b->type);
		DIFF_ASSERT(a->no_id || a->id == b->id, "%s event %zu (%s): id %llu vs %llu", what, i,
			    ug_usbredir_type_name(a->type), (unsigned long long)a->id,
			    (unsigned long long)b->id);
		if (a->type == usb_redir_hello) {
			DIFF_ASSERT(memcmp(a->version, b->version, 64) == 0, "%s hello version", what);
			continue;
		}
		DIFF_ASSERT(memcmp(&a->h, &b->h, tg_hsize(a->type)) == 0,
			    "%s event %zu (%s): type header differs", what, i,
			    ug_usbredir_type_name(a->type));
		DIFF_ASSERT(a->data_len == b->data_len, "%s event %zu (%s): data %u vs %u bytes", what,
			    i, ug_usbredir_type_name(a->type), a->data_len, b->data_len);
		if (a->data_len)
			DIFF_ASSERT(memcmp(a->data, b->data, a->data_len) == 0,
				    "%s event %zu (%s): data differs", what, i,
				    ug_usbredir_type_name(a->type));
	}
	DIFF_ASSERT(lib->n == our->n, "%s: libusbredirparser %zu events, ours %zu", what, lib->n,
		    our->n);
}

/* ---- stream generation ---------------------------------------------------------- */

/*
 * A malformed packet with intact framing: a valid one whose type, length
 * (with the body resized to match), a type header byte or its endpoint is
 * changed, so both decoders must make the same call and stay in step.
 */
static void mutate(uint64_t *st, struct bytes *out, const uint8_t *pkt, size_t len,
		   unsigned hdr_len)
{
	uint8_t buf[TG_MAX_DATA + 512];
	uint32_t length = (uint32_t)(len - hdr_len);

	memcpy(buf, pkt, len);
	if (tg_below(st, 4) == 0) {
		/* Limits at their edges, where an off-by-one would show. */
		uint8_t *h = buf + hdr_len;
		uint32_t mib128 = 128u * 1024u * 1024u;

		switch (ug_get_le32(buf)) {
		case usb_redir_interface_info:
			ug_put_le32(h, 32 + tg_below(st, 2));
			break;
		case usb_redir_start_bulk_receiving:
			ug_put_le32(h + 4, mib128 + tg_below(st, 2));
			break;
		case usb_redir_buffered_bulk_packet:
			ug_put_le32(h + 4, mib128 + tg_below(st, 2));
			break;
		case usb_redir_bulk_packet:
			if (length >= 10) {
				uint32_t l = mib128 + tg_below(st, 2);
				ug_put_le16(h + 2, (uint16_t)l);
				ug_put_le16(h + 8, (uint16_t)(l >> 16));
			}
			break;
		}
		b_put(out, buf, len);
		return;
	}
	switch (tg_below(st, 5)) {
	case 0: {
		static const uint32_t odd[] = { 28, 29, 99, 105, 1000, 0x7fffffff, 0xffffffff };
		uint32_t t = tg_below(st, 3) ? tg_types[tg_below(st, TG_NTYPES)] : odd[tg_below(st, 7)];
		ug_put_le32(buf, t);
		break;
	}
	case 1: {
		uint32_t nl = tg_below(st, 2) ? length + tg_below(st, 8) : tg_below(st, length + 1);
		if (nl > length)
			memset(buf + len, (int)tg_below(st, 256), nl - length);
		ug_put_le32(buf + 4, nl);
		len = hdr_len + nl;
		break;
	}
	case 2:
	case 3:
		if (length) {
			uint32_t at = tg_below(st, length < 16 ? length : 16);
			buf[hdr_len + at] ^= (uint8_t)(1u << tg_below(st, 8));
		}
		break;
	default:
		/* Endpoints and lengths sit in the first bytes of the data packets' headers. */
		if (length)
			buf[hdr_len] ^= 0x80;
		break;
	}
	b_put(out, buf, len);
}

/* Bytes of p from our encoder; they must equal what libusbredirparser sent. */
static void encode_checked(uint32_t caps, const struct ug_usbredir_packet *p, struct lib *tx,
			   struct bytes *stream)
{
	static uint8_t buf[TG_MAX_DATA + 512];
	size_t len = 0;

	DIFF_ASSERT(ug_usbredir_encode(caps, p, buf, sizeof(buf), &len) == 0, "encode %u", p->type);
	if (p->type != usb_redir_device_disconnect_ack) {
		lib_flush(tx);
		DIFF_ASSERT(tx->out.len == len, "%s: libusbredirparser sent %zu bytes, we encode %zu",
			    ug_usbredir_type_name(p->type), tx->out.len, len);
		DIFF_ASSERT(memcmp(tx->out.b, buf, len) == 0,
			    "%s: encoding differs from libusbredirparser's",
			    ug_usbredir_type_name(p->type));
		tx->out.len = 0;
	}
	b_put(stream, buf, len);
}

struct round_cfg {
	uint32_t gcaps, hcaps;
	int packets;
	int bad_percent;
	uint32_t max_data;
	/* The guest's hello is left out: its packets go with no caps and 32-bit ids. */
	int no_guest_hello;
};

static unsigned long long total_packets, total_errors, total_acks;

/*
 * With UG_WRITE_CORPUS=DIR the generated streams are also written as seeds
 * for fuzz-usbredir (4 control bytes, then the stream; see fuzz-usbredir.c).
 */
static const char *corpus_dir;
static int seed_no;

static void write_seed(const char *kind, const uint8_t ctl[4], const uint8_t *b, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s-%02d", corpus_dir, kind, seed_no);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(ctl, 1, 4, f), 4);
	assert_int_equal(fwrite(b, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_seeds(const struct bytes *stream, uint32_t gown, uint32_t hown, uint32_t caps,
			int bad)
{
	const char *tag = bad ? "malformed" : "libusbredirparser";
	char kind[64];
	uint8_t ctl[4];
	size_t hello_len = 12 + 64 + 4;

	/* Each direction from its hello, the other side's hello fed by the target. */
	ctl[0] = (uint8_t)gown;
	ctl[1] = (uint8_t)hown;
	ctl[2] = 0;
	ctl[3] = (uint8_t)seed_no;
	snprintf(kind, sizeof(kind), "g2h-%s", tag);
	write_seed(kind, ctl, stream[0].b, stream[0].len);
	ctl[0] = (uint8_t)hown;
	ctl[1] = (uint8_t)gown;
	ctl[2] = 0x02;
	snprintf(kind, sizeof(kind), "h2g-%s", tag);
	write_seed(kind, ctl, stream[1].b, stream[1].len);
	/* The same after the hellos, as a capture that starts mid-stream. */
	ctl[0] = (uint8_t)caps;
	ctl[2] = 0x01 | (seed_no % 2 ? 0x02 : 0) | (seed_no % 3 ? 0 : 0x04);
	snprintf(kind, sizeof(kind), "midstream-%s", tag);
	const struct bytes *b = &stream[seed_no % 2];
	write_seed(kind, ctl, b->b + hello_len, b->len - hello_len);
	seed_no++;
}

/* Rounds per test: about 150 packets each, a few seconds in all. */
#define ROUNDS 640

static void one_round(uint64_t *st, const struct round_cfg *cfg)
{
	static uint8_t data[TG_MAX_DATA];
	struct lib gtx, htx, grx, hrx;
	struct bytes stream[2] = { { 0 }, { 0 } };
	uint32_t gown, hown, caps;
	struct ug_usbredir_packet p;
	struct ours o;

	memset(&o, 0, sizeof(o));
	/* Senders: a guest and a host that exchange hellos. */
	lib_init(&gtx, 0, cfg->gcaps, tg_rand(st));
	lib_init(&htx, 1, cfg->hcaps, tg_rand(st));
	lib_flush(&gtx);
	lib_flush(&htx);
	/* Our encoder writes the same hellos (the guest parser adds disconnect_ack). */
	gown = tg_norm(cfg->gcaps | CAP(device_disconnect_ack));
	hown = tg_norm(cfg->hcaps);
	caps = gown & hown;
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_hello;
	p.h.hello.caps_count = 1;
	strcpy(p.h.hello.version, "usbgate diff guest");
	p.h.hello.caps[0] = gown;
	encode_checked(caps, &p, &gtx, &stream[UG_DIR_G2H]);
	strcpy(p.h.hello.version, "usbgate diff host");
	p.h.hello.caps[0] = hown;
	encode_checked(caps, &p, &htx, &stream[UG_DIR_H2G]);
	lib_read_all(&htx, stream[UG_DIR_G2H].b, stream[UG_DIR_G2H].len, 0);
	if (cfg->no_guest_hello) {
		/* The guest parser never hears from the host, so it sends with no caps. */
		stream[UG_DIR_G2H].len = 0;
		caps = 0;
	} else {
		lib_read_all(&gtx, stream[UG_DIR_H2G].b, stream[UG_DIR_H2G].len, 0);
		DIFF_ASSERT(lib_caps(gtx.p) == caps && lib_caps(htx.p) == caps,
			    "negotiation: lib %x/%x, expected %x", lib_caps(gtx.p),
			    lib_caps(htx.p), caps);
	}

	for (int i = 0; i < cfg->packets; i++) {
		enum ug_dir dir = cfg->no_guest_hello ? UG_DIR_G2H : (enum ug_dir)tg_below(st, 2);
		struct lib *tx = dir == UG_DIR_G2H ? &gtx : &htx;
		/* Without peer caps libusbredirparser sends no cap-gated types. */
		uint32_t receiver = cfg->no_guest_hello ? 0 : dir == UG_DIR_G2H ? hown : gown;
		uint32_t t = tg_random_type(st, dir, receiver);
		unsigned hdr = tg_cap(caps, usb_redir_cap_64bits_ids) ? 16 : 12;

		tg_packet(st, t, dir, caps, cfg->max_data, &p, data);
		switch (t) {
		case usb_redir_device_connect: case usb_redir_device_disconnect:
		case usb_redir_reset: case usb_redir_interface_info: case usb_redir_ep_info:
		case usb_redir_filter_reject: case usb_redir_filter_filter:
		case usb_redir_device_disconnect_ack:
			/* libusbredirparser's send functions for these take no id: it sends 0. */
			p.id = 0;
			break;
		}
		if (t == usb_redir_filter_filter) {
			/* The string as libusbredirparser prints the rules back. */
			struct usbredirfilter_rule *rules;
			int count;
			char *str;

			assert_int_equal(usbredirfilter_string_to_rules((const char *)p.data, ",", "|",
									&rules, &count), 0);
			str = usbredirfilter_rules_to_string(rules, count, ",", "|");
			usbredirfilter_free(rules);
			assert_non_null(str);
			p.data_len = (uint32_t)strlen(str) + 1;
			memcpy(data, str, p.data_len);
			p.data = data;
			usbredirfilter_free(str);
		}
		if (t == usb_redir_device_disconnect_ack) {
			/* libusbredirparser has no send function for it: ours alone. */
			encode_checked(caps, &p, tx, &stream[dir]);
			continue;
		}
		lib_send(tx, &p);
		if (tg_below(st, 100) < (uint32_t)cfg->bad_percent) {
			struct bytes tmp = { 0 };

			encode_checked(caps, &p, tx, &tmp);
			mutate(st, &stream[dir], tmp.b, tmp.len, hdr);
			free(tmp.b);
		} else {
			encode_checked(caps, &p, tx, &stream[dir]);
		}
	}

	if (corpus_dir)
		write_seeds(stream, gown, hown, caps, cfg->bad_percent);

	/* Receivers: libusbredirparser in each role, random read sizes. */
	lib_init(&hrx, 1, cfg->hcaps, tg_rand(st));
	lib_init(&grx, 0, cfg->gcaps, tg_rand(st));
	lib_read_all(&hrx, stream[UG_DIR_G2H].b, stream[UG_DIR_G2H].len,
		     tg_below(st, 2) ? 1 + tg_below(st, 300) : 0);
	lib_read_all(&grx, stream[UG_DIR_H2G].b, stream[UG_DIR_H2G].len,
		     tg_below(st, 2) ? 1 + tg_below(st, 300) : 0);

	/*
	 * libusbredirparser has no send function for device_disconnect_ack: the
	 * guest parser queues one per device_disconnect when the host announced
	 * the cap. Our encoder must write the same bytes as those.
	 */
	if (!cfg->no_guest_hello) {
		struct bytes want = { 0 };
		size_t acks = 0;

		memset(&p, 0, sizeof(p));
		p.type = usb_redir_hello;
		p.h.hello.caps_count = 1;
		strcpy(p.h.hello.version, "usbgate diff guest");
		p.h.hello.caps[0] = gown;
		uint8_t hb[12 + 64 + 4];
		size_t hn = 0;
		assert_int_equal(ug_usbredir_encode(caps, &p, hb, sizeof(hb), &hn), 0);
		b_put(&want, hb, hn);
		lib_flush(&grx);
		for (size_t i = 0; i < grx.ev.n; i++)
			acks += !grx.ev.e[i].err && grx.ev.e[i].type == usb_redir_device_disconnect;
		if (!tg_cap(hown, usb_redir_cap_device_disconnect_ack))
			acks = 0;
		total_acks += acks;
		memset(&p, 0, sizeof(p));
		p.type = usb_redir_device_disconnect_ack;
		for (size_t i = 0; i < acks; i++) {
			uint8_t buf[16];
			size_t n = 0;

			assert_int_equal(ug_usbredir_encode(caps, &p, buf, sizeof(buf), &n), 0);
			b_put(&want, buf, n);
		}
		DIFF_ASSERT(grx.out.len == want.len && memcmp(grx.out.b, want.b, want.len) == 0,
			    "device_disconnect_ack: libusbredirparser wrote %zu bytes, we %zu",
			    grx.out.len, want.len);
		free(want.b);
	}

	/* Our session: both directions interleaved in random chunks. */
	ug_usbredir_session *s = ug_usbredir_session_new();
	size_t pos[2] = { 0, 0 };
	unsigned maxc = tg_below(st, 3) == 0 ? 1 : 1 + tg_below(st, 5000);

	assert_non_null(s);
	while (pos[0] < stream[0].len || pos[1] < stream[1].len) {
		enum ug_dir dir = (enum ug_dir)tg_below(st, 2);
		size_t n = 1 + tg_below(st, maxc);

		if (pos[dir] >= stream[dir].len)
			dir = (enum ug_dir)!dir;
		if (n > stream[dir].len - pos[dir])
			n = stream[dir].len - pos[dir];
		assert_int_equal(ug_usbredir_session_feed(s, dir, stream[dir].b + pos[dir], n), 0);
		pos[dir] += n;
		ours_take(s, dir, &o);
		ours_take(s, (enum ug_dir)!dir, &o);
	}
	ours_take(s, UG_DIR_G2H, &o);
	ours_take(s, UG_DIR_H2G, &o);
	DIFF_ASSERT(ug_usbredir_session_caps(s) == caps, "session caps %x, expected %x",
		    ug_usbredir_session_caps(s), caps);
	DIFF_ASSERT(ug_usbredir_session_caps_known(s) == !cfg->no_guest_hello, "caps_known");
	for (int dir = 0; dir < 2; dir++)
		DIFF_ASSERT(ug_usbredir_session_offset(s, (enum ug_dir)dir) <= stream[dir].len,
			    "offset past the stream");

	compare(&hrx.ev, &o.ev[UG_DIR_G2H], "guest->host");
	compare(&grx.ev, &o.ev[UG_DIR_H2G], "host->guest");
	total_packets += hrx.ev.n + grx.ev.n;
	for (size_t i = 0; i < hrx.ev.n; i++)
		total_errors += (unsigned)hrx.ev.e[i].err;
	for (size_t i = 0; i < grx.ev.n; i++)
		total_errors += (unsigned)grx.ev.e[i].err;

	ug_usbredir_session_free(s);
	for (int dir = 0; dir < 2; dir++) {
		evs_free(&o.ev[dir]);
		free(stream[dir].b);
	}
	lib_free(&gtx);
	lib_free(&htx);
	lib_free(&hrx);
	lib_free(&grx);
}

static uint64_t base_seed(void)
{
	const char *e = getenv("UG_DIFF_SEED");

	return e ? strtoull(e, NULL, 0) : 20261125;
}

/* Valid streams under every combination of the size-changing caps (32), many times. */
static void test_diff_valid_streams(void **state)
{
	static const unsigned size_caps[] = {
		usb_redir_cap_connect_device_version, usb_redir_cap_ep_info_max_packet_size,
		usb_redir_cap_bulk_streams, usb_redir_cap_64bits_ids, usb_redir_cap_32bits_bulk_length,
	};

	cur_seed = base_seed();
	total_packets = 0;
	total_errors = 0;
	total_acks = 0;
	for (cur_round = 0; cur_round < ROUNDS; cur_round++) {
		uint64_t st = cur_seed * 1000003u + (uint64_t)cur_round * 7919u + 1;
		struct round_cfg cfg;
		uint32_t bits = (uint32_t)cur_round % 32, both = 0;

		for (unsigned i = 0; i < 5; i++)
			if (bits & (1u << i))
				both |= 1u << size_caps[i];
		/* Each side also announces some caps the other lacks. */
		cfg.gcaps = both | ((uint32_t)tg_rand(&st) & ALL_CAPS & ~TG_SIZE_CAPS);
		cfg.hcaps = both | ((uint32_t)tg_rand(&st) & ALL_CAPS & ~TG_SIZE_CAPS);
		if (cur_round >= 64) {
			cfg.gcaps |= (uint32_t)tg_rand(&st) & TG_SIZE_CAPS;
			cfg.hcaps |= (uint32_t)tg_rand(&st) & TG_SIZE_CAPS;
		}
		cfg.packets = 150;
		cfg.bad_percent = 0;
		cfg.max_data = cur_round % 8 == 0 ? TG_MAX_DATA : 2048;
		cfg.no_guest_hello = 0;
		one_round(&st, &cfg);
	}
	print_message("# %llu packets decoded identically, %llu disconnect acks encoded as "
		      "libusbredirparser queues them (seed %llu)\n", total_packets, total_acks,
		      cur_seed);
	assert_true(total_acks > 100);
	assert_true(total_errors == 0);
	assert_true(total_packets > 80000);
}

/* Streams with malformed packets (framing intact): the same packets and the same rejections. */
static void test_diff_malformed_streams(void **state)
{
	cur_seed = base_seed() + 1;
	total_packets = 0;
	total_errors = 0;
	for (cur_round = 0; cur_round < ROUNDS; cur_round++) {
		uint64_t st = cur_seed * 1000003u + (uint64_t)cur_round * 7919u + 1;
		struct round_cfg cfg;

		cfg.gcaps = (uint32_t)tg_rand(&st) & ALL_CAPS;
		cfg.hcaps = (uint32_t)tg_rand(&st) & ALL_CAPS;
		cfg.packets = 150;
		cfg.bad_percent = 25;
		cfg.max_data = 1024;
		cfg.no_guest_hello = cur_round % 10 == 9;
		one_round(&st, &cfg);
	}
	print_message("# %llu events (%llu of them rejections) identical (seed %llu)\n",
		      total_packets, total_errors, cur_seed);
	assert_true(total_packets > 80000);
}

/* A packet over libusbredirparser's limit is skipped by both, and the next one decoded. */
static void test_diff_over_limit(void **state)
{
	const uint32_t big = 128u * 1024u * 1024u + 1025u;
	struct bytes st2[2] = { { 0 }, { 0 } };
	struct lib gtx, hrx;
	struct ug_usbredir_packet p;
	struct ours o;
	uint8_t hdr[12];

	memset(&o, 0, sizeof(o));
	cur_seed = 0;
	cur_round = 0;
	lib_init(&gtx, 0, 0, 1);
	lib_flush(&gtx);
	b_put(&st2[0], gtx.out.b, gtx.out.len);
	lib_init(&hrx, 1, 0, 1);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_hello;
	p.h.hello.caps_count = 1;
	strcpy(p.h.hello.version, "usbgate diff host");
	uint8_t h2g[200];
	size_t hl = 0;
	assert_int_equal(ug_usbredir_encode(0, &p, h2g, sizeof(h2g), &hl), 0);
	/* A bulk packet claiming more than the limit, its body, then a reset. */
	ug_put_le32(hdr, usb_redir_bulk_packet);
	ug_put_le32(hdr + 4, big);
	ug_put_le32(hdr + 8, 1);
	b_put(&st2[0], hdr, 12);
	size_t at = st2[0].len;
	st2[0].cap = at + big + 12;
	st2[0].b = realloc(st2[0].b, st2[0].cap);
	assert_non_null(st2[0].b);
	memset(st2[0].b + at, 0, big);
	st2[0].len = at + big;
	ug_put_le32(hdr, usb_redir_reset);
	ug_put_le32(hdr + 4, 0);
	ug_put_le32(hdr + 8, 2);
	b_put(&st2[0], hdr, 12);
	lib_read_all(&hrx, st2[0].b, st2[0].len, 0);

	ug_usbredir_session *s = ug_usbredir_session_new();
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_H2G, h2g, hl), 0);
	ours_take(s, UG_DIR_H2G, &o);
	assert_int_equal(ug_usbredir_session_feed(s, UG_DIR_G2H, st2[0].b, st2[0].len), 0);
	ours_take(s, UG_DIR_G2H, &o);
	compare(&hrx.ev, &o.ev[UG_DIR_G2H], "guest->host");
	assert_int_equal(o.ev[UG_DIR_G2H].n, 3);
	assert_int_equal(o.ev[UG_DIR_G2H].e[1].err, 1);
	assert_int_equal(o.ev[UG_DIR_G2H].e[2].type, usb_redir_reset);
	ug_usbredir_session_free(s);
	evs_free(&o.ev[0]);
	evs_free(&o.ev[1]);
	free(st2[0].b);
	free(st2[1].b);
	lib_free(&gtx);
	lib_free(&hrx);
}

static uint8_t *read_data(const char *name, size_t *ret_len)
{
	const char *src = getenv("UG_SRCDIR");
	char path[4096];
	uint8_t *b = malloc(1 << 16);
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/data/%s", src ? src : ".", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_non_null(b);
	*ret_len = fread(b, 1, 1 << 16, f);
	fclose(f);
	return b;
}

/* A real QEMU session (tests/data/usbredir-seabios-kbd.*), in every chunking. */
static void test_diff_real_qemu_session(void **state)
{
	size_t glen, hlen;
	uint8_t *g = read_data("usbredir-seabios-kbd.g2h", &glen);
	uint8_t *h = read_data("usbredir-seabios-kbd.h2g", &hlen);

	cur_seed = 0;
	for (cur_round = 1; cur_round < 40; cur_round++) {
		struct lib hrx, grx;
		struct ours o;
		ug_usbredir_session *s = ug_usbredir_session_new();
		size_t pos[2] = { 0, 0 }, len[2] = { glen, hlen };
		const uint8_t *b[2] = { g, h };
		uint64_t st = (uint64_t)cur_round;

		memset(&o, 0, sizeof(o));
		/* The receivers announce what the real peers announced. */
		lib_init(&hrx, 1, 0x7e, st);
		lib_init(&grx, 0, 0xff, st);
		lib_read_all(&hrx, g, glen, (unsigned)cur_round);
		lib_read_all(&grx, h, hlen, (unsigned)cur_round);
		while (pos[0] < len[0] || pos[1] < len[1]) {
			enum ug_dir dir = (enum ug_dir)tg_below(&st, 2);
			size_t n = (size_t)cur_round;

			if (pos[dir] >= len[dir])
				dir = (enum ug_dir)!dir;
			if (n > len[dir] - pos[dir])
				n = len[dir] - pos[dir];
			assert_int_equal(ug_usbredir_session_feed(s, dir, b[dir] + pos[dir], n), 0);
			pos[dir] += n;
			ours_take(s, dir, &o);
			ours_take(s, (enum ug_dir)!dir, &o);
		}
		compare(&hrx.ev, &o.ev[UG_DIR_G2H], "guest->host");
		compare(&grx.ev, &o.ev[UG_DIR_H2G], "host->guest");
		assert_int_equal(o.ev[UG_DIR_G2H].n, 10);
		assert_int_equal(o.ev[UG_DIR_H2G].n, 16);
		ug_usbredir_session_free(s);
		evs_free(&o.ev[0]);
		evs_free(&o.ev[1]);
		lib_free(&hrx);
		lib_free(&grx);
	}
	free(g);
	free(h);
}

/* Writes fuzz seeds instead of testing: small streams, some malformed. */
static int make_corpus(const char *dir)
{
	corpus_dir = dir;
	for (cur_round = 0; cur_round < 16; cur_round++) {
		uint64_t st = 0xc0de + (uint64_t)cur_round;
		struct round_cfg cfg;

		cfg.gcaps = cur_round < 4 ? 0xff : (uint32_t)tg_rand(&st) & ALL_CAPS;
		cfg.hcaps = cur_round < 4 ? 0xff : (uint32_t)tg_rand(&st) & ALL_CAPS;
		cfg.packets = 24;
		cfg.bad_percent = cur_round % 4 == 3 ? 30 : 0;
		cfg.max_data = 256;
		cfg.no_guest_hello = 0;
		one_round(&st, &cfg);
	}
	return 0;
}

int main(void)
{
	if (getenv("UG_WRITE_CORPUS"))
		return make_corpus(getenv("UG_WRITE_CORPUS"));

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_diff_valid_streams),
		cmocka_unit_test(test_diff_malformed_streams),
		cmocka_unit_test(test_diff_over_limit),
		cmocka_unit_test(test_diff_real_qemu_session),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
