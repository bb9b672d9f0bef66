/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbredir-testgen.h: random valid usbredir packets and comparisons for the codec's tests. */
#ifndef UG_USBREDIR_TESTGEN_H
#define UG_USBREDIR_TESTGEN_H

#include <stdint.h>
#include <string.h>

#include "usbgate.h"

/* The caps that change sizes, and those that only allow packet types. */
#define TG_SIZE_CAPS ((1u << usb_redir_cap_connect_device_version) | \
		      (1u << usb_redir_cap_ep_info_max_packet_size) | \
		      (1u << usb_redir_cap_bulk_streams) | \
		      (1u << usb_redir_cap_64bits_ids) | \
		      (1u << usb_redir_cap_32bits_bulk_length))
#define TG_TYPE_CAPS ((1u << usb_redir_cap_filter) | \
		      (1u << usb_redir_cap_device_disconnect_ack) | \
		      (1u << usb_redir_cap_bulk_receiving))

/* Every known packet type. */
static const uint32_t tg_types[] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
	24, 25, 26, 27, 100, 101, 102, 103, 104,
};
#define TG_NTYPES (sizeof(tg_types) / sizeof(tg_types[0]))

/* xorshift64*: small, seedable, the same everywhere. */
static inline uint64_t tg_rand(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static inline uint32_t tg_below(uint64_t *st, uint32_t n)
{
	return n ? (uint32_t)(tg_rand(st) % n) : 0;
}

static inline int tg_cap(uint32_t caps, unsigned cap)
{
	return (caps >> cap) & 1u;
}

/* libusbredirparser's bulk_streams rule: only together with ep_info_max_packet_size. */
static inline uint32_t tg_norm(uint32_t caps)
{
	if (!tg_cap(caps, usb_redir_cap_ep_info_max_packet_size))
		caps &= ~(1u << usb_redir_cap_bulk_streams);
	return caps;
}

/* Whether the receiving role accepts type (written independently of lib/). */
static inline int tg_accepted(uint32_t type, enum ug_dir dir)
{
	int host_bound;

	switch (type) {
	case usb_redir_hello: case usb_redir_filter_filter: case usb_redir_control_packet:
	case usb_redir_bulk_packet: case usb_redir_iso_packet: case usb_redir_interrupt_packet:
		return 1;
	case usb_redir_reset: case usb_redir_set_configuration: case usb_redir_get_configuration:
	case usb_redir_set_alt_setting: case usb_redir_get_alt_setting:
	case usb_redir_start_iso_stream: case usb_redir_stop_iso_stream:
	case usb_redir_start_interrupt_receiving: case usb_redir_stop_interrupt_receiving:
	case usb_redir_alloc_bulk_streams: case usb_redir_free_bulk_streams:
	case usb_redir_cancel_data_packet: case usb_redir_filter_reject:
	case usb_redir_device_disconnect_ack: case usb_redir_start_bulk_receiving:
	case usb_redir_stop_bulk_receiving:
		host_bound = 1;
		break;
	default:
		host_bound = 0;
		break;
	}
	return host_bound == (dir == UG_DIR_G2H);
}

/* Expected type header size under negotiated caps (from usbredirproto.h, by hand). */
static inline int tg_thl(uint32_t type, uint32_t caps)
{
	caps = tg_norm(caps);
	switch (type) {
	case 0: return 64;
	case 1: return tg_cap(caps, usb_redir_cap_connect_device_version) ? 10 : 8;
	case 4: return 132;
	case 5: return tg_cap(caps, usb_redir_cap_bulk_streams) ? 288 :
		       tg_cap(caps, usb_redir_cap_ep_info_max_packet_size) ? 160 : 96;
	case 6: return 1;
	case 8: return 2;
	case 9: return 2;
	case 10: return 1;
	case 11: return 3;
	case 12: return 3;
	case 13: return 1;
	case 14: return 2;
	case 15: return 1;
	case 16: return 1;
	case 17: return 2;
	case 18: return 8;
	case 19: return 4;
	case 20: return 9;
	case 25: return 10;
	case 26: return 5;
	case 27: return 6;
	case 100: return 10;
	case 101: return tg_cap(caps, usb_redir_cap_32bits_bulk_length) ? 10 : 8;
	case 102: return 4;
	case 103: return 4;
	case 104: return 10;
	default: return 0;
	}
}

/* Bytes of the union member for type that the codec fills. */
static inline size_t tg_hsize(uint32_t type)
{
	switch (type) {
	case 0: return sizeof(struct ug_usbredir_hello);
	case 1: return sizeof(struct usb_redir_device_connect_header);
	case 4: return sizeof(struct usb_redir_interface_info_header);
	case 5: return sizeof(struct usb_redir_ep_info_header);
	default: return (size_t)tg_thl(type, ~0u);
	}
}

/* A data buffer large enough for every generated packet. */
#define TG_MAX_DATA 70000u

static inline void tg_fill(uint64_t *st, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)tg_rand(st);
}

static const char *const tg_filters[] = {
	"0x03,-1,-1,-1,0|-1,-1,-1,-1,1",
	"-1,-1,-1,-1,1",
	"0x08,0x46f4,0x0001,-1,1|-1,-1,-1,-1,0",
};

/* Whether the receiver of dir (own caps) accepts a type that needs a cap. */
static inline int tg_allowed_by_caps(uint32_t type, uint32_t receiver_caps)
{
	switch (type) {
	case usb_redir_filter_reject: case usb_redir_filter_filter:
		return tg_cap(receiver_caps, usb_redir_cap_filter);
	case usb_redir_device_disconnect_ack:
		return tg_cap(receiver_caps, usb_redir_cap_device_disconnect_ack);
	case usb_redir_start_bulk_receiving: case usb_redir_stop_bulk_receiving:
	case usb_redir_bulk_receiving_status: case usb_redir_buffered_bulk_packet:
		return tg_cap(receiver_caps, usb_redir_cap_bulk_receiving);
	default:
		return 1;
	}
}

/*
 * Fills *p with a random packet of type that the receiver of dir accepts under
 * the negotiated caps; data goes to databuf (TG_MAX_DATA bytes). Fields that
 * are not on the wire under caps are 0. max_data bounds the data length.
 */
static inline void tg_packet(uint64_t *st, uint32_t type, enum ug_dir dir, uint32_t caps,
			     uint32_t max_data, struct ug_usbredir_packet *p, uint8_t *databuf)
{
	int to_host = dir == UG_DIR_G2H;
	uint32_t len = 0;
	int ep = -1, data = 0;
	union ug_usbredir_type_header *h = &p->h;

	caps = tg_norm(caps);
	memset(p, 0, sizeof(*p));
	p->dir = dir;
	p->type = type;
	p->known = 1;
	p->id = tg_cap(caps, usb_redir_cap_64bits_ids) ? tg_rand(st) : (uint32_t)tg_rand(st);
	if (tg_below(st, 4) == 0)
		p->id = tg_below(st, 16);
	tg_fill(st, (uint8_t *)h, tg_hsize(type));
	switch (type) {
	case usb_redir_hello:
		memset(h->hello.version, 0, sizeof(h->hello.version));
		strcpy(h->hello.version, "usbgate test");
		memset(h->hello.caps, 0, sizeof(h->hello.caps));
		h->hello.caps_count = 1;
		h->hello.caps[0] = caps;
		p->id = 0;
		break;
	case usb_redir_device_connect:
		if (!tg_cap(caps, usb_redir_cap_connect_device_version))
			h->device_connect.device_version_bcd = 0;
		break;
	case usb_redir_interface_info:
		h->interface_info.interface_count = tg_below(st, 33);
		break;
	case usb_redir_ep_info:
		if (!tg_cap(caps, usb_redir_cap_ep_info_max_packet_size))
			memset(h->ep_info.max_packet_size, 0, sizeof(h->ep_info.max_packet_size));
		if (!tg_cap(caps, usb_redir_cap_bulk_streams))
			memset(h->ep_info.max_streams, 0, sizeof(h->ep_info.max_streams));
		break;
	case usb_redir_start_interrupt_receiving:
		h->start_interrupt_receiving.endpoint |= 0x80;
		break;
	case usb_redir_stop_interrupt_receiving:
		h->stop_interrupt_receiving.endpoint |= 0x80;
		break;
	case usb_redir_interrupt_receiving_status:
		h->interrupt_receiving_status.endpoint |= 0x80;
		break;
	case usb_redir_start_bulk_receiving:
		h->start_bulk_receiving.endpoint |= 0x80;
		h->start_bulk_receiving.bytes_per_transfer %= 128u * 1024u * 1024u + 1u;
		break;
	case usb_redir_stop_bulk_receiving:
		h->stop_bulk_receiving.endpoint |= 0x80;
		break;
	case usb_redir_bulk_receiving_status:
		h->bulk_receiving_status.endpoint |= 0x80;
		break;
	case usb_redir_filter_filter: {
		const char *f = tg_filters[tg_below(st, 3)];
		p->data_len = (uint32_t)strlen(f) + 1;
		memcpy(databuf, f, p->data_len);
		p->data = databuf;
		break;
	}
	case usb_redir_control_packet:
		ep = tg_below(st, 2) ? 0x80 : 0x00;
		len = tg_below(st, 4) ? tg_below(st, 64) : tg_below(st, 4097);
		break;
	case usb_redir_bulk_packet:
		ep = (int)(tg_below(st, 15) + 1) | (tg_below(st, 2) ? 0x80 : 0);
		len = tg_below(st, 3) ? tg_below(st, 512) : tg_below(st, max_data + 1);
		if (!tg_cap(caps, usb_redir_cap_32bits_bulk_length))
			len &= 0xffff;
		break;
	case usb_redir_iso_packet:
		/* Iso packets always carry data towards their receiver. */
		ep = (int)(tg_below(st, 15) + 1) | (to_host ? 0 : 0x80);
		len = tg_below(st, 1025);
		break;
	case usb_redir_interrupt_packet:
		ep = (int)(tg_below(st, 15) + 1) | (to_host ? 0 : (tg_below(st, 2) ? 0x80 : 0));
		len = tg_below(st, 65);
		break;
	case usb_redir_buffered_bulk_packet:
		ep = (int)(tg_below(st, 15) + 1) | 0x80;
		len = tg_below(st, 3) ? tg_below(st, 512) : tg_below(st, max_data + 1);
		break;
	default:
		break;
	}
	if (ep >= 0) {
		if (len > max_data)
			len = max_data;
		data = ((ep & 0x80) != 0) != to_host;
		switch (type) {
		case usb_redir_control_packet:
			h->control_packet.endpoint = (uint8_t)ep;
			h->control_packet.length = (uint16_t)len;
			break;
		case usb_redir_bulk_packet:
			h->bulk_packet.endpoint = (uint8_t)ep;
			h->bulk_packet.length = (uint16_t)len;
			h->bulk_packet.length_high = tg_cap(caps, usb_redir_cap_32bits_bulk_length) ?
						     (uint16_t)(len >> 16) : 0;
			break;
		case usb_redir_iso_packet:
			h->iso_packet.endpoint = (uint8_t)ep;
			h->iso_packet.length = (uint16_t)len;
			break;
		case usb_redir_interrupt_packet:
			h->interrupt_packet.endpoint = (uint8_t)ep;
			h->interrupt_packet.length = (uint16_t)len;
			break;
		case usb_redir_buffered_bulk_packet:
			h->buffered_bulk_packet.endpoint = (uint8_t)ep;
			h->buffered_bulk_packet.length = len;
			break;
		}
		if (data && len) {
			tg_fill(st, databuf, len);
			p->data = databuf;
			p->data_len = len;
		}
	}
}

/* A random type the receiver of dir accepts under these caps (no hello). */
static inline uint32_t tg_random_type(uint64_t *st, enum ug_dir dir, uint32_t receiver_caps)
{
	for (;;) {
		uint32_t t = tg_types[1 + tg_below(st, TG_NTYPES - 1)];

		/* Weight the data packets as real sessions do. */
		if (tg_below(st, 2))
			t = 100 + tg_below(st, 5);
		if (tg_accepted(t, dir) && tg_allowed_by_caps(t, receiver_caps))
			return t;
	}
}

#endif /* UG_USBREDIR_TESTGEN_H */
