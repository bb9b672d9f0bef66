/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbredir-codec.c: the usbredir session decoder (one push decoder per direction) and the type table. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common.h"
#include "usbredir-codec.h"

/* ---- the type table ------------------------------------------------------ */

#define FLD(st, m, sz, n, cap) { offsetof(struct st, m), (sz), (n), (cap) }

static const struct ug_usbredir_field f_hello[] = {
	FLD(ug_usbredir_hello, version, 1, 64, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_device_connect[] = {
	FLD(usb_redir_device_connect_header, speed, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_device_connect_header, device_class, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_device_connect_header, device_subclass, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_device_connect_header, device_protocol, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_device_connect_header, vendor_id, 2, 1, UG_CAP_NONE),
	FLD(usb_redir_device_connect_header, product_id, 2, 1, UG_CAP_NONE),
	FLD(usb_redir_device_connect_header, device_version_bcd, 2, 1,
	    usb_redir_cap_connect_device_version),
};
static const struct ug_usbredir_field f_interface_info[] = {
	FLD(usb_redir_interface_info_header, interface_count, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_interface_info_header, interface, 1, 32, UG_CAP_NONE),
	FLD(usb_redir_interface_info_header, interface_class, 1, 32, UG_CAP_NONE),
	FLD(usb_redir_interface_info_header, interface_subclass, 1, 32, UG_CAP_NONE),
	FLD(usb_redir_interface_info_header, interface_protocol, 1, 32, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_ep_info[] = {
	FLD(usb_redir_ep_info_header, type, 1, 32, UG_CAP_NONE),
	FLD(usb_redir_ep_info_header, interval, 1, 32, UG_CAP_NONE),
	FLD(usb_redir_ep_info_header, interface, 1, 32, UG_CAP_NONE),
	FLD(usb_redir_ep_info_header, max_packet_size, 2, 32,
	    usb_redir_cap_ep_info_max_packet_size),
	FLD(usb_redir_ep_info_header, max_streams, 4, 32, usb_redir_cap_bulk_streams),
};
static const struct ug_usbredir_field f_set_configuration[] = {
	FLD(usb_redir_set_configuration_header, configuration, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_configuration_status[] = {
	FLD(usb_redir_configuration_status_header, status, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_configuration_status_header, configuration, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_set_alt_setting[] = {
	FLD(usb_redir_set_alt_setting_header, interface, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_set_alt_setting_header, alt, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_get_alt_setting[] = {
	FLD(usb_redir_get_alt_setting_header, interface, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_alt_setting_status[] = {
	FLD(usb_redir_alt_setting_status_header, status, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_alt_setting_status_header, interface, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_alt_setting_status_header, alt, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_start_iso_stream[] = {
	FLD(usb_redir_start_iso_stream_header, endpoint, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_start_iso_stream_header, pkts_per_urb, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_start_iso_stream_header, no_urbs, 1, 1, UG_CAP_NONE),
};
/* stop_iso_stream, start/stop_interrupt_receiving: one endpoint byte. */
static const struct ug_usbredir_field f_endpoint[] = {
	FLD(usb_redir_stop_iso_stream_header, endpoint, 1, 1, UG_CAP_NONE),
};
/* iso_stream_status, interrupt_receiving_status: status, endpoint. */
static const struct ug_usbredir_field f_status_endpoint[] = {
	FLD(usb_redir_iso_stream_status_header, status, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_iso_stream_status_header, endpoint, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_alloc_bulk_streams[] = {
	FLD(usb_redir_alloc_bulk_streams_header, endpoints, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_alloc_bulk_streams_header, no_streams, 4, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_free_bulk_streams[] = {
	FLD(usb_redir_free_bulk_streams_header, endpoints, 4, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_bulk_streams_status[] = {
	FLD(usb_redir_bulk_streams_status_header, endpoints, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_streams_status_header, no_streams, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_streams_status_header, status, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_start_bulk_receiving[] = {
	FLD(usb_redir_start_bulk_receiving_header, stream_id, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_start_bulk_receiving_header, bytes_per_transfer, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_start_bulk_receiving_header, endpoint, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_start_bulk_receiving_header, no_transfers, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_stop_bulk_receiving[] = {
	FLD(usb_redir_stop_bulk_receiving_header, stream_id, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_stop_bulk_receiving_header, endpoint, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_bulk_receiving_status[] = {
	FLD(usb_redir_bulk_receiving_status_header, stream_id, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_receiving_status_header, endpoint, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_receiving_status_header, status, 1, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_control_packet[] = {
	FLD(usb_redir_control_packet_header, endpoint, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_control_packet_header, request, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_control_packet_header, requesttype, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_control_packet_header, status, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_control_packet_header, value, 2, 1, UG_CAP_NONE),
	FLD(usb_redir_control_packet_header, index, 2, 1, UG_CAP_NONE),
	FLD(usb_redir_control_packet_header, length, 2, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_bulk_packet[] = {
	FLD(usb_redir_bulk_packet_header, endpoint, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_packet_header, status, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_packet_header, length, 2, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_packet_header, stream_id, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_bulk_packet_header, length_high, 2, 1, usb_redir_cap_32bits_bulk_length),
};
/* iso_packet, interrupt_packet: endpoint, status, 16-bit length. */
static const struct ug_usbredir_field f_iso_packet[] = {
	FLD(usb_redir_iso_packet_header, endpoint, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_iso_packet_header, status, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_iso_packet_header, length, 2, 1, UG_CAP_NONE),
};
static const struct ug_usbredir_field f_buffered_bulk_packet[] = {
	FLD(usb_redir_buffered_bulk_packet_header, stream_id, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_buffered_bulk_packet_header, length, 4, 1, UG_CAP_NONE),
	FLD(usb_redir_buffered_bulk_packet_header, endpoint, 1, 1, UG_CAP_NONE),
	FLD(usb_redir_buffered_bulk_packet_header, status, 1, 1, UG_CAP_NONE),
};

#define NOFIELDS(t) { #t, usb_redir_##t, 0, 0, 0, 0, 0, NULL }
#define DESC(t, host, guest, data, st, f) \
	{ #t, usb_redir_##t, (host), (guest), (data), UG_NELEMS(f), sizeof(struct st), (f) }

/*
 * Which role accepts which type, and which types may carry data, as
 * libusbredirparser's usbredirparser_get_type_header_len() and
 * usbredirparser_expect_extra_data() decide for the receiving side.
 * Index: the type for 0..27, 28 + (type - 100) for the data packets.
 */
static const struct ug_usbredir_type_desc type_table[] = {
	DESC(hello, 1, 1, 1, ug_usbredir_hello, f_hello),
	DESC(device_connect, 0, 1, 0, usb_redir_device_connect_header, f_device_connect),
	{ "device_disconnect", usb_redir_device_disconnect, 0, 1, 0, 0, 0, NULL },
	{ "reset", usb_redir_reset, 1, 0, 0, 0, 0, NULL },
	DESC(interface_info, 0, 1, 0, usb_redir_interface_info_header, f_interface_info),
	DESC(ep_info, 0, 1, 0, usb_redir_ep_info_header, f_ep_info),
	DESC(set_configuration, 1, 0, 0, usb_redir_set_configuration_header,
	     f_set_configuration),
	{ "get_configuration", usb_redir_get_configuration, 1, 0, 0, 0, 0, NULL },
	DESC(configuration_status, 0, 1, 0, usb_redir_configuration_status_header,
	     f_configuration_status),
	DESC(set_alt_setting, 1, 0, 0, usb_redir_set_alt_setting_header, f_set_alt_setting),
	DESC(get_alt_setting, 1, 0, 0, usb_redir_get_alt_setting_header, f_get_alt_setting),
	DESC(alt_setting_status, 0, 1, 0, usb_redir_alt_setting_status_header,
	     f_alt_setting_status),
	DESC(start_iso_stream, 1, 0, 0, usb_redir_start_iso_stream_header, f_start_iso_stream),
	DESC(stop_iso_stream, 1, 0, 0, usb_redir_stop_iso_stream_header, f_endpoint),
	DESC(iso_stream_status, 0, 1, 0, usb_redir_iso_stream_status_header, f_status_endpoint),
	DESC(start_interrupt_receiving, 1, 0, 0, usb_redir_start_interrupt_receiving_header,
	     f_endpoint),
	DESC(stop_interrupt_receiving, 1, 0, 0, usb_redir_stop_interrupt_receiving_header,
	     f_endpoint),
	DESC(interrupt_receiving_status, 0, 1, 0, usb_redir_interrupt_receiving_status_header,
	     f_status_endpoint),
	DESC(alloc_bulk_streams, 1, 0, 0, usb_redir_alloc_bulk_streams_header,
	     f_alloc_bulk_streams),
	DESC(free_bulk_streams, 1, 0, 0, usb_redir_free_bulk_streams_header,
	     f_free_bulk_streams),
	DESC(bulk_streams_status, 0, 1, 0, usb_redir_bulk_streams_status_header,
	     f_bulk_streams_status),
	{ "cancel_data_packet", usb_redir_cancel_data_packet, 1, 0, 0, 0, 0, NULL },
	{ "filter_reject", usb_redir_filter_reject, 1, 0, 0, 0, 0, NULL },
	{ "filter_filter", usb_redir_filter_filter, 1, 1, 1, 0, 0, NULL },
	{ "device_disconnect_ack", usb_redir_device_disconnect_ack, 1, 0, 0, 0, 0, NULL },
	DESC(start_bulk_receiving, 1, 0, 0, usb_redir_start_bulk_receiving_header,
	     f_start_bulk_receiving),
	DESC(stop_bulk_receiving, 1, 0, 0, usb_redir_stop_bulk_receiving_header,
	     f_stop_bulk_receiving),
	DESC(bulk_receiving_status, 0, 1, 0, usb_redir_bulk_receiving_status_header,
	     f_bulk_receiving_status),
	DESC(control_packet, 1, 1, 1, usb_redir_control_packet_header, f_control_packet),
	DESC(bulk_packet, 1, 1, 1, usb_redir_bulk_packet_header, f_bulk_packet),
	DESC(iso_packet, 1, 1, 1, usb_redir_iso_packet_header, f_iso_packet),
	DESC(interrupt_packet, 1, 1, 1, usb_redir_interrupt_packet_header, f_iso_packet),
	DESC(buffered_bulk_packet, 0, 1, 1, usb_redir_buffered_bulk_packet_header,
	     f_buffered_bulk_packet),
};

#define UG_NTYPES UG_NELEMS(type_table)
#define FIRST_DATA_TYPE usb_redir_control_packet
#define NCONTROL_TYPES (usb_redir_bulk_receiving_status + 1)

static inline int type_index(uint32_t type)
{
	if (type < NCONTROL_TYPES)
		return (int)type;
	if (type >= FIRST_DATA_TYPE && type <= usb_redir_buffered_bulk_packet)
		return (int)(NCONTROL_TYPES + type - FIRST_DATA_TYPE);
	return -1;
}

const struct ug_usbredir_type_desc *ug_usbredir_type_desc(uint32_t type)
{
	int i = type_index(type);

	return i < 0 ? NULL : &type_table[i];
}

UG_EXPORT const char *ug_usbredir_type_name(uint32_t type)
{
	const struct ug_usbredir_type_desc *d = ug_usbredir_type_desc(type);

	return d ? d->name : NULL;
}

unsigned ug_usbredir_type_header_len(const struct ug_usbredir_type_desc *d, uint32_t caps)
{
	unsigned len = 0;

	for (unsigned i = 0; i < d->nfields; i++) {
		const struct ug_usbredir_field *f = &d->fields[i];

		if (f->cap == UG_CAP_NONE || ug_usbredir_has_cap(caps, f->cap))
			len += (unsigned)f->size * f->count;
	}
	return len;
}

/* ---- the session --------------------------------------------------------- */

/* One direction's push decoder. */
struct dec {
	/* Fed bytes not yet consumed: a view of the caller's buffer. */
	const uint8_t *in;
	size_t in_len;
	/*
	 * Bytes of a packet split across feeds, or bytes held while waiting for
	 * the other direction's hello. Everything here precedes in.
	 */
	struct ug_buf hold;
	size_t hold_drop;       /* bytes of a returned packet to drop at the next call */
	uint64_t skip;          /* body bytes of a rejected packet still to discard */
	uint64_t consumed;      /* stream offset of the next undecoded packet */
	int failed;             /* sticky error code, 0 if none */

	bool hello_seen;
	uint32_t hello_caps;    /* this sender's hello, word 0, normalised */

	/* Derived from the hellos or the explicit caps by update_params(). */
	bool ready;             /* the receiver's caps are known */
	unsigned hdr_len;
	uint32_t caps;          /* negotiated */
	uint32_t own;           /* the receiving side's own caps */
	int16_t thl[UG_NTYPES]; /* type header length, -1: not accepted by the receiver */
};

struct ug_usbredir_session {
	struct dec dec[2];
	uint32_t max_packet;
	bool caps_set;
	uint32_t set_caps;
	char errmsg[UG_ERRMSG_SIZE];
};

static const char *dir_name(enum ug_dir dir)
{
	return dir == UG_DIR_G2H ? "guest->host" : "host->guest";
}

static void update_params(struct ug_usbredir_session *s)
{
	for (int dir = 0; dir < 2; dir++) {
		struct dec *d = &s->dec[dir], *r = &s->dec[!dir];
		uint32_t caps = 0, own = 0;
		bool ready = true;

		if (d->hello_seen && r->hello_seen) {
			caps = d->hello_caps & r->hello_caps;
			own = r->hello_caps;
		} else if (s->caps_set) {
			caps = own = s->set_caps;
		} else if (r->hello_seen) {
			/* Like libusbredirparser before the peer's hello: no peer caps. */
			own = r->hello_caps;
		} else {
			ready = false;
		}
		d->ready = ready;
		d->caps = caps;
		d->own = own;
		d->hdr_len = ug_usbredir_has_cap(caps, usb_redir_cap_64bits_ids) ?
			     UG_USBREDIR_HDR64 : UG_USBREDIR_HDR32;
		for (unsigned i = 0; i < UG_NTYPES; i++) {
			const struct ug_usbredir_type_desc *td = &type_table[i];
			bool ok = dir == UG_DIR_G2H ? td->to_host : td->to_guest;

			d->thl[i] = ok ? (int16_t)ug_usbredir_type_header_len(td, caps) : -1;
		}
	}
}

UG_EXPORT ug_usbredir_session *ug_usbredir_session_new(void)
{
	ug_usbredir_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->max_packet = UG_USBREDIR_DEFAULT_MAX_PACKET;
	for (int dir = 0; dir < 2; dir++)
		ug_buf_init(&s->dec[dir].hold, (size_t)s->max_packet + UG_USBREDIR_HDR64);
	update_params(s);
	return s;
}

UG_EXPORT void ug_usbredir_session_free(ug_usbredir_session *s)
{
	if (!s)
		return;
	ug_buf_release(&s->dec[0].hold);
	ug_buf_release(&s->dec[1].hold);
	free(s);
}

UG_EXPORT int ug_usbredir_session_set_max_packet(ug_usbredir_session *s, uint32_t max)
{
	size_t hold_max;

	/*
	 * A held packet is at most one header plus max bytes; so is the wait
	 * buffer. With the sum representable, no later header + length can
	 * overflow a size_t either.
	 */
	if (!s || max == 0 || __builtin_add_overflow((size_t)max, UG_USBREDIR_HDR64, &hold_max))
		return UG_E_INVAL;
	s->max_packet = max;
	for (int dir = 0; dir < 2; dir++)
		s->dec[dir].hold.max = hold_max;
	return 0;
}

UG_EXPORT int ug_usbredir_session_set_caps(ug_usbredir_session *s, uint32_t negotiated_caps)
{
	if (!s)
		return UG_E_INVAL;
	s->caps_set = true;
	s->set_caps = ug_usbredir_caps_normalize(negotiated_caps);
	update_params(s);
	return 0;
}

UG_EXPORT int ug_usbredir_session_caps_known(const ug_usbredir_session *s)
{
	return s && ((s->dec[0].hello_seen && s->dec[1].hello_seen) || s->caps_set);
}

UG_EXPORT uint32_t ug_usbredir_session_caps(const ug_usbredir_session *s)
{
	if (!ug_usbredir_session_caps_known(s))
		return 0;
	return s->dec[0].caps;
}

UG_EXPORT uint64_t ug_usbredir_session_offset(const ug_usbredir_session *s, enum ug_dir dir)
{
	if (!s || (dir != UG_DIR_G2H && dir != UG_DIR_H2G))
		return 0;
	return s->dec[dir].consumed;
}

size_t ug_usbredir_session_held(const ug_usbredir_session *s, enum ug_dir dir)
{
	return s->dec[dir].hold.len;
}

UG_EXPORT const char *ug_usbredir_session_errmsg(const ug_usbredir_session *s)
{
	return s ? s->errmsg : "";
}

/* Drops the bytes of the packet returned by the previous call (its views die now). */
static inline void release_previous(struct dec *d)
{
	if (d->hold_drop) {
		ug_buf_consume(&d->hold, d->hold_drop);
		d->hold_drop = 0;
	}
}

/* Moves every unconsumed fed byte into the hold buffer, so the caller may reuse its buffer. */
static int hold_input(ug_usbredir_session *s, enum ug_dir dir)
{
	struct dec *d = &s->dec[dir];
	int r;

	if (d->in_len == 0)
		return 0;
	r = ug_buf_append(&d->hold, d->in, d->in_len);
	if (r < 0) {
		/* The bytes cannot be kept: this direction's stream is broken for good. */
		d->failed = r == UG_E_TOOBIG ? UG_E_STATE : r;
		if (r != UG_E_TOOBIG)
			return ug_errmsg_set(s->errmsg, d->failed,
					     "%s offset %llu: no memory to hold %zu more bytes",
					     dir_name(dir), (unsigned long long)d->consumed,
					     d->in_len);
		if (!d->ready)
			return ug_errmsg_set(s->errmsg, d->failed,
					     "%s offset %llu: %zu bytes held and %zu more fed while "
					     "the %s's hello is unknown, limit %zu: feed the other "
					     "direction or set the caps",
					     dir_name(dir), (unsigned long long)d->consumed,
					     d->hold.len, d->in_len,
					     dir == UG_DIR_G2H ? "host" : "guest", d->hold.max);
		return ug_errmsg_set(s->errmsg, d->failed,
				     "%s offset %llu: %zu bytes held and %zu more fed without "
				     "next() in between, limit %zu",
				     dir_name(dir), (unsigned long long)d->consumed, d->hold.len,
				     d->in_len, d->hold.max);
	}
	d->in += d->in_len;
	d->in_len = 0;
	return 0;
}

UG_EXPORT int ug_usbredir_session_feed(ug_usbredir_session *s, enum ug_dir dir,
				       const void *buf, size_t len)
{
	struct dec *d;
	int r;

	if (!s || (dir != UG_DIR_G2H && dir != UG_DIR_H2G) || (!buf && len))
		return UG_E_INVAL;
	d = &s->dec[dir];
	if (d->failed)
		return d->failed;
	release_previous(d);
	/* Bytes the caller did not drain with next() are kept, in order. */
	r = hold_input(s, dir);
	if (r < 0)
		return r;
	d->in = buf;
	d->in_len = len;
	return 0;
}

/* Discards skip bytes, from the hold buffer first; true when done. */
static bool do_skip(struct dec *d)
{
	size_t n;

	if (d->hold.len) {
		n = d->skip < d->hold.len ? (size_t)d->skip : d->hold.len;
		ug_buf_consume(&d->hold, n);
		d->skip -= n;
		d->consumed += n;
	}
	n = d->skip < d->in_len ? (size_t)d->skip : d->in_len;
	d->in += n;
	d->in_len -= n;
	d->skip -= n;
	d->consumed += n;
	return d->skip == 0;
}

/*
 * Appends to the hold buffer what is fed, up to want bytes held in all; want
 * never exceeds the buffer's maximum (the header was checked against the limit).
 */
static int top_up(struct dec *d, size_t want)
{
	size_t n;
	int r;

	if (d->hold.len >= want)
		return 0;
	n = want - d->hold.len;
	if (n > d->in_len)
		n = d->in_len;
	r = ug_buf_append(&d->hold, d->in, n);
	if (r < 0)
		return r;
	d->in += n;
	d->in_len -= n;
	return 0;
}

enum { CHECK_OK = 0, CHECK_WAIT = 1 };

/*
 * Validates a complete header before any body byte is buffered: the type is
 * one the receiving role accepts, the length within the limit and consistent
 * with the type header. Returns CHECK_OK (setting *ret_thl, -1 for an unknown
 * type), CHECK_WAIT when the receiver's caps are still unknown, or an error
 * with s->errmsg set.
 */
static int check_header(ug_usbredir_session *s, enum ug_dir dir, uint32_t type,
			uint32_t length, int *ret_thl)
{
	struct dec *d = &s->dec[dir];
	int idx = type_index(type);
	int thl;

	if (type != usb_redir_hello && !d->ready)
		return CHECK_WAIT;
	if (idx >= 0 && d->thl[idx] < 0)
		return ug_errmsg_set(s->errmsg, UG_E_PROTO,
				     "%s offset %llu: packet type %u (%s) is not accepted by "
				     "the %s, skipping %u bytes",
				     dir_name(dir), (unsigned long long)d->consumed, type,
				     type_table[idx].name,
				     dir == UG_DIR_G2H ? "usb-host" : "usb-guest", length);
	if (length > s->max_packet)
		return ug_errmsg_set(s->errmsg, UG_E_TOOBIG,
				     "%s offset %llu: packet type %u claims %u bytes, limit %u",
				     dir_name(dir), (unsigned long long)d->consumed, type, length,
				     s->max_packet);
	if (idx < 0) {
		*ret_thl = -1;
		return CHECK_OK;
	}
	thl = d->thl[idx];
	if (length < (uint32_t)thl)
		return ug_errmsg_set(s->errmsg, UG_E_PROTO,
				     "%s offset %llu: %s length %u is shorter than its %d-byte "
				     "type header",
				     dir_name(dir), (unsigned long long)d->consumed,
				     type_table[idx].name, length, thl);
	if (length > (uint32_t)thl && !type_table[idx].has_data)
		return ug_errmsg_set(s->errmsg, UG_E_PROTO,
				     "%s offset %llu: %s length %u exceeds its %d-byte type "
				     "header, but it carries no data",
				     dir_name(dir), (unsigned long long)d->consumed,
				     type_table[idx].name, length, thl);
	*ret_thl = thl;
	return CHECK_OK;
}

/* Reads the type header's fields that are on the wire under caps into h. */
static void get_fields(const struct ug_usbredir_type_desc *td, uint32_t caps,
		       const uint8_t *p, union ug_usbredir_type_header *h)
{
	uint8_t *base = (uint8_t *)h;

	memset(h, 0, td->struct_size);
	for (unsigned i = 0; i < td->nfields; i++) {
		const struct ug_usbredir_field *f = &td->fields[i];
		uint8_t *dst = base + f->off;

		if (f->cap != UG_CAP_NONE && !ug_usbredir_has_cap(caps, f->cap))
			continue;
		switch (f->size) {
		case 1:
			memcpy(dst, p, f->count);
			p += f->count;
			break;
		case 2:
			for (unsigned j = 0; j < f->count; j++, p += 2, dst += 2) {
				uint16_t v = ug_get_le16(p);
				memcpy(dst, &v, 2);
			}
			break;
		default:
			for (unsigned j = 0; j < f->count; j++, p += 4, dst += 4) {
				uint32_t v = ug_get_le32(p);
				memcpy(dst, &v, 4);
			}
			break;
		}
	}
}

static int reject(ug_usbredir_session *s, enum ug_dir dir, uint64_t offset, const char *what,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int reject(ug_usbredir_session *s, enum ug_dir dir, uint64_t offset, const char *what,
		  const char *fmt, ...)
{
	char tmp[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	return ug_errmsg_set(s->errmsg, UG_E_PROTO, "%s offset %llu: %s: %s", dir_name(dir),
			     (unsigned long long)offset, what, tmp);
}

/*
 * The checks libusbredirparser's usbredirparser_verify_type_header() makes on
 * a received packet, for the role that receives dir.
 */
static int verify(ug_usbredir_session *s, enum ug_dir dir, const struct ug_usbredir_packet *p)
{
	const struct dec *d = &s->dec[dir];
	const char *name = type_table[type_index(p->type)].name;
	bool to_host = dir == UG_DIR_G2H;
	uint32_t length = 0;
	int ep = -1;

#define NEED_OWN_CAP(cap, capname) \
	do { \
		if (!ug_usbredir_has_cap(d->own, cap)) \
			return reject(s, dir, p->offset, name, \
				      "the receiver did not announce %s", capname); \
	} while (0)
#define NEED_INPUT_EP(e) \
	do { \
		if (!((e) & 0x80)) \
			return reject(s, dir, p->offset, name, "endpoint %02x is not an input", \
				      (unsigned)(e)); \
	} while (0)

	switch (p->type) {
	case usb_redir_interface_info:
		if (p->h.interface_info.interface_count > 32)
			return reject(s, dir, p->offset, name, "interface_count %u > %u",
				      p->h.interface_info.interface_count, 32);
		break;
	case usb_redir_start_interrupt_receiving:
		NEED_INPUT_EP(p->h.start_interrupt_receiving.endpoint);
		break;
	case usb_redir_stop_interrupt_receiving:
		NEED_INPUT_EP(p->h.stop_interrupt_receiving.endpoint);
		break;
	case usb_redir_interrupt_receiving_status:
		NEED_INPUT_EP(p->h.interrupt_receiving_status.endpoint);
		break;
	case usb_redir_filter_reject:
		NEED_OWN_CAP(usb_redir_cap_filter, "cap_filter");
		break;
	case usb_redir_filter_filter:
		NEED_OWN_CAP(usb_redir_cap_filter, "cap_filter");
		if (p->data_len < 1)
			return reject(s, dir, p->offset, name, "no filter string");
		if (p->data[p->data_len - 1] != 0)
			return reject(s, dir, p->offset, name,
				      "filter string of %u bytes is not NUL-terminated",
				      p->data_len);
		break;
	case usb_redir_device_disconnect_ack:
		NEED_OWN_CAP(usb_redir_cap_device_disconnect_ack, "cap_device_disconnect_ack");
		break;
	case usb_redir_start_bulk_receiving:
		NEED_OWN_CAP(usb_redir_cap_bulk_receiving, "cap_bulk_receiving");
		if (p->h.start_bulk_receiving.bytes_per_transfer > UG_USBREDIR_MAX_BULK_TRANSFER)
			return reject(s, dir, p->offset, name, "bytes_per_transfer %u > %u",
				      p->h.start_bulk_receiving.bytes_per_transfer,
				      UG_USBREDIR_MAX_BULK_TRANSFER);
		NEED_INPUT_EP(p->h.start_bulk_receiving.endpoint);
		break;
	case usb_redir_stop_bulk_receiving:
		NEED_OWN_CAP(usb_redir_cap_bulk_receiving, "cap_bulk_receiving");
		NEED_INPUT_EP(p->h.stop_bulk_receiving.endpoint);
		break;
	case usb_redir_bulk_receiving_status:
		NEED_OWN_CAP(usb_redir_cap_bulk_receiving, "cap_bulk_receiving");
		NEED_INPUT_EP(p->h.bulk_receiving_status.endpoint);
		break;
	case usb_redir_control_packet:
		length = p->h.control_packet.length;
		ep = p->h.control_packet.endpoint;
		break;
	case usb_redir_bulk_packet:
		length = ((uint32_t)p->h.bulk_packet.length_high << 16) | p->h.bulk_packet.length;
		if (length > UG_USBREDIR_MAX_BULK_TRANSFER)
			return reject(s, dir, p->offset, name, "transfer length %u > %u", length,
				      UG_USBREDIR_MAX_BULK_TRANSFER);
		ep = p->h.bulk_packet.endpoint;
		break;
	case usb_redir_iso_packet:
		length = p->h.iso_packet.length;
		ep = p->h.iso_packet.endpoint;
		break;
	case usb_redir_interrupt_packet:
		length = p->h.interrupt_packet.length;
		ep = p->h.interrupt_packet.endpoint;
		break;
	case usb_redir_buffered_bulk_packet:
		NEED_OWN_CAP(usb_redir_cap_bulk_receiving, "cap_bulk_receiving");
		length = p->h.buffered_bulk_packet.length;
		if (length > UG_USBREDIR_MAX_BULK_TRANSFER)
			return reject(s, dir, p->offset, name, "transfer length %u > %u", length,
				      UG_USBREDIR_MAX_BULK_TRANSFER);
		ep = p->h.buffered_bulk_packet.endpoint;
		break;
	default:
		break;
	}
#undef NEED_OWN_CAP
#undef NEED_INPUT_EP

	if (ep < 0)
		return 0;
	/* Data flows with OUT requests to the host and with IN answers to the guest. */
	if (((ep & 0x80) != 0) != to_host) {
		if (p->data_len != length)
			return reject(s, dir, p->offset, name,
				      "%u data bytes, but the header says %u", p->data_len, length);
		return 0;
	}
	if (p->data_len)
		return reject(s, dir, p->offset, name,
			      "%u data bytes on endpoint %02x, which carries none in this direction",
			      p->data_len, (unsigned)ep);
	if (p->type == usb_redir_iso_packet || p->type == usb_redir_buffered_bulk_packet ||
	    (p->type == usb_redir_interrupt_packet && to_host))
		return reject(s, dir, p->offset, name,
			      "endpoint %02x without data: sent in the wrong direction",
			      (unsigned)ep);
	return 0;
}

static void take_hello(ug_usbredir_session *s, enum ug_dir dir, struct ug_usbredir_packet *p)
{
	struct dec *d = &s->dec[dir];
	uint32_t words = p->data_len / 4;

	p->h.hello.version[64] = '\0';
	p->h.hello.caps_count = words;
	for (uint32_t i = 0; i < words && i < UG_USBREDIR_MAX_CAP_WORDS; i++)
		p->h.hello.caps[i] = ug_get_le32(p->data + 4 * i);
	/* A second hello is passed on but, as libusbredirparser does, ignored. */
	if (d->hello_seen)
		return;
	d->hello_seen = true;
	d->hello_caps = ug_usbredir_caps_normalize(words ? p->h.hello.caps[0] : 0);
	update_params(s);
}

/* Fills *p from the complete packet at raw (hdr_len + length bytes) and verifies it. */
static int decode(ug_usbredir_session *s, enum ug_dir dir, const uint8_t *raw, uint32_t type,
		  uint32_t length, int thl, struct ug_usbredir_packet *p)
{
	struct dec *d = &s->dec[dir];
	unsigned hdr_len = d->hdr_len;

	p->dir = dir;
	p->type = type;
	p->length = length;
	p->id = hdr_len == UG_USBREDIR_HDR64 ? ug_get_le64(raw + 8) : ug_get_le32(raw + 8);
	p->offset = d->consumed;
	p->raw = raw;
	p->raw_len = hdr_len + (size_t)length;
	if (thl < 0) {
		p->known = 0;
		p->data = length ? raw + hdr_len : NULL;
		p->data_len = length;
		return 1;
	}
	p->known = 1;
	p->data = length > (uint32_t)thl ? raw + hdr_len + thl : NULL;
	p->data_len = length - (uint32_t)thl;
	get_fields(&type_table[type_index(type)], d->caps, raw + hdr_len, &p->h);
	if (type == usb_redir_hello) {
		take_hello(s, dir, p);
		return 1;
	}
	return verify(s, dir, p) < 0 ? UG_E_PROTO : 1;
}

/*
 * Copies what decode() filled: the fields and the used part of the type
 * header union (copying the whole union per packet costs more than decoding).
 */
static inline void copy_packet(struct ug_usbredir_packet *dst,
			       const struct ug_usbredir_packet *src, int thl)
{
	dst->dir = src->dir;
	dst->type = src->type;
	dst->length = src->length;
	dst->id = src->id;
	dst->offset = src->offset;
	dst->known = src->known;
	if (thl < 0)
		memset(&dst->h, 0, sizeof(dst->h));
	else
		memcpy(&dst->h, &src->h, type_table[type_index(src->type)].struct_size);
	dst->data = src->data;
	dst->data_len = src->data_len;
	dst->raw = src->raw;
	dst->raw_len = src->raw_len;
}

/*
 * The hot path for valid data packets: the checks verify() makes, on the wire
 * bytes, then the packet written straight into ret. Returns 0 without
 * touching ret when the packet is not a data packet or is invalid: the
 * general path then decodes it and words the error. Inlined into both
 * callers: as a call it costs a third of a control packet's decoding.
 */
static inline __attribute__((always_inline))
bool fast_data(const struct dec *d, enum ug_dir dir, const uint8_t *raw, uint32_t type,
	       uint32_t length, unsigned thl, struct ug_usbredir_packet *ret)
{
	const uint8_t *th = raw + d->hdr_len;
	uint32_t data_len = length - thl, len;
	bool to_host = dir == UG_DIR_G2H, with_data;
	uint8_t ep;

	switch (type) {
	case usb_redir_control_packet:
		ep = th[0];
		len = ug_get_le16(th + 8);
		with_data = ((ep & 0x80) != 0) != to_host;
		if (data_len != (with_data ? len : 0))
			return false;
		ret->h.control_packet.endpoint = ep;
		ret->h.control_packet.request = th[1];
		ret->h.control_packet.requesttype = th[2];
		ret->h.control_packet.status = th[3];
		ret->h.control_packet.value = ug_get_le16(th + 4);
		ret->h.control_packet.index = ug_get_le16(th + 6);
		ret->h.control_packet.length = (uint16_t)len;
		break;
	case usb_redir_bulk_packet: {
		uint16_t high = thl == 10 ? ug_get_le16(th + 8) : 0;

		ep = th[0];
		len = ((uint32_t)high << 16) | ug_get_le16(th + 2);
		with_data = ((ep & 0x80) != 0) != to_host;
		if (len > UG_USBREDIR_MAX_BULK_TRANSFER || data_len != (with_data ? len : 0))
			return false;
		ret->h.bulk_packet.endpoint = ep;
		ret->h.bulk_packet.status = th[1];
		ret->h.bulk_packet.length = (uint16_t)len;
		ret->h.bulk_packet.stream_id = ug_get_le32(th + 4);
		ret->h.bulk_packet.length_high = high;
		break;
	}
	case usb_redir_iso_packet:
	case usb_redir_interrupt_packet:
		ep = th[0];
		len = ug_get_le16(th + 2);
		with_data = ((ep & 0x80) != 0) != to_host;
		/* Iso always carries data; interrupt status answers go to the guest only. */
		if (!with_data && (type == usb_redir_iso_packet || to_host))
			return false;
		if (data_len != (with_data ? len : 0))
			return false;
		/* Both headers have the same layout. */
		ret->h.iso_packet.endpoint = ep;
		ret->h.iso_packet.status = th[1];
		ret->h.iso_packet.length = (uint16_t)len;
		break;
	default:
		return false;
	}
	ret->dir = dir;
	ret->type = type;
	ret->length = length;
	ret->id = d->hdr_len == UG_USBREDIR_HDR64 ? ug_get_le64(raw + 8) : ug_get_le32(raw + 8);
	ret->offset = d->consumed;
	ret->known = 1;
	ret->data = data_len ? th + thl : NULL;
	ret->data_len = data_len;
	ret->raw = raw;
	ret->raw_len = d->hdr_len + (size_t)length;
	return true;
}

/* After a header-time error: drop the header, then skip the body as it streams by. */
static int skip_packet(struct dec *d, bool from_hold, uint32_t length, int err)
{
	if (from_hold)
		ug_buf_consume(&d->hold, d->hdr_len);
	else {
		d->in += d->hdr_len;
		d->in_len -= d->hdr_len;
	}
	d->consumed += d->hdr_len;
	d->skip = length;
	return err;
}

/* Every case of next(): held bytes, skips, waits, errors, the non-data packet types. */
static int next_general(ug_usbredir_session *s, enum ug_dir dir,
			struct ug_usbredir_packet *ret_pkt)
{
	struct ug_usbredir_packet pkt;
	struct dec *d = &s->dec[dir];
	const uint8_t *hp;
	uint32_t type, length;
	size_t total;
	int thl = -1, r;
	bool from_hold;

	if (d->failed)
		return d->failed;
	release_previous(d);
	if (d->skip && !do_skip(d))
		return 0;
	/* Until the sender's hello the header is 12 bytes; after it the receiver's caps decide. */
	if (!d->ready && d->hello_seen)
		return hold_input(s, dir);
	from_hold = d->hold.len != 0;
	if (from_hold) {
		r = top_up(d, d->hdr_len);
		if (r < 0 || d->hold.len < d->hdr_len)
			return r;
		hp = ug_buf_peek(&d->hold);
	} else {
		if (d->in_len < d->hdr_len)
			return hold_input(s, dir);
		hp = d->in;
	}
	type = ug_get_le32(hp);
	length = ug_get_le32(hp + 4);
	r = check_header(s, dir, type, length, &thl);
	if (r == CHECK_WAIT)
		return hold_input(s, dir);
	if (r < 0)
		return skip_packet(d, from_hold, length, r);
	total = d->hdr_len + (size_t)length;
	if (!from_hold) {
		/* The zero-copy case: the whole packet lies in the fed buffer. */
		if (d->in_len < total)
			return hold_input(s, dir);
		d->in += total;
		d->in_len -= total;
	} else {
		r = top_up(d, total);
		if (r < 0 || d->hold.len < total)
			return r;
		hp = ug_buf_peek(&d->hold);
		d->hold_drop = total;
	}
	if (thl >= 0 && fast_data(d, dir, hp, type, length, (unsigned)thl, ret_pkt)) {
		d->consumed += total;
		return 1;
	}
	r = decode(s, dir, hp, type, length, thl, &pkt);
	d->consumed += total;
	if (r > 0)
		copy_packet(ret_pkt, &pkt, thl);
	return r;
}

/*
 * The common case first, in a function small enough to keep its state in
 * registers: nothing held or to skip, the caps known, and a valid data packet
 * wholly in the fed buffer. It changes nothing until the packet is accepted,
 * so anything else can go to next_general() and be decoded from scratch there,
 * with the same result and the same error text.
 */
UG_EXPORT int ug_usbredir_session_next(ug_usbredir_session *s, enum ug_dir dir,
				       struct ug_usbredir_packet *ret_pkt)
{
	struct dec *d;
	uint32_t type, length;
	size_t total;
	int thl;

	if (!s || (dir != UG_DIR_G2H && dir != UG_DIR_H2G) || !ret_pkt)
		return UG_E_INVAL;
	d = &s->dec[dir];
	if (d->failed || d->hold_drop || d->skip || d->hold.len || !d->ready ||
	    d->in_len < d->hdr_len)
		return next_general(s, dir, ret_pkt);
	type = ug_get_le32(d->in);
	length = ug_get_le32(d->in + 4);
	/* Only the types fast_data() knows; the rest take the general path. */
	if (type < FIRST_DATA_TYPE || type > usb_redir_interrupt_packet ||
	    length > s->max_packet)
		return next_general(s, dir, ret_pkt);
	thl = d->thl[NCONTROL_TYPES + type - FIRST_DATA_TYPE];
	total = d->hdr_len + (size_t)length;
	if (thl < 0 || length < (uint32_t)thl || d->in_len < total ||
	    !fast_data(d, dir, d->in, type, length, (unsigned)thl, ret_pkt))
		return next_general(s, dir, ret_pkt);
	d->in += total;
	d->in_len -= total;
	d->consumed += total;
	return 1;
}
