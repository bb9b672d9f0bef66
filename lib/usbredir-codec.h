/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbredir-codec.h: internal tables shared by the usbredir decoder and encoder. */
#ifndef UG_USBREDIR_CODEC_H
#define UG_USBREDIR_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "usbgate.h"

/* Header sizes: type, length and a 32-bit or 64-bit id. */
#define UG_USBREDIR_HDR32 12u
#define UG_USBREDIR_HDR64 16u
/* The largest type header (ep_info with max_packet_size and max_streams). */
#define UG_USBREDIR_MAX_TYPE_HEADER 288u
/* libusbredirparser's own limit on bulk transfer lengths (bulk, buffered bulk,
 * start_bulk_receiving's bytes_per_transfer). */
#define UG_USBREDIR_MAX_BULK_TRANSFER (128u * 1024u * 1024u)
/* No cap requirement for a field. */
#define UG_CAP_NONE 0xffu

/*
 * One wire field of a type header: count little-endian integers of size bytes,
 * stored at offset off of the usbredirproto.h struct in the union. A field with
 * cap != UG_CAP_NONE is on the wire only when that cap was negotiated.
 */
struct ug_usbredir_field {
	uint16_t off;
	uint8_t size;
	uint8_t count;
	uint8_t cap;
};

struct ug_usbredir_type_desc {
	const char *name;
	uint32_t type;
	uint8_t to_host;      /* the usb-host accepts it (guest->host stream) */
	uint8_t to_guest;     /* the usb-guest accepts it (host->guest stream) */
	uint8_t has_data;     /* bytes may follow the type header */
	uint8_t nfields;
	uint16_t struct_size; /* sizeof the union member, zeroed before decoding */
	const struct ug_usbredir_field *fields;
};

/* The descriptor of a known packet type, or NULL. */
const struct ug_usbredir_type_desc *ug_usbredir_type_desc(uint32_t type);

/*
 * Capability word as libusbredirparser uses it: bulk_streams without
 * ep_info_max_packet_size is dropped (usbredirparser_verify_caps).
 */
static inline uint32_t ug_usbredir_caps_normalize(uint32_t caps)
{
	if (!(caps & (1u << usb_redir_cap_ep_info_max_packet_size)))
		caps &= ~(1u << usb_redir_cap_bulk_streams);
	return caps;
}

static inline int ug_usbredir_has_cap(uint32_t caps, unsigned cap)
{
	return (caps >> cap) & 1u;
}

/* Wire size of a type header under the negotiated caps. */
unsigned ug_usbredir_type_header_len(const struct ug_usbredir_type_desc *d, uint32_t caps);

/* Bytes a direction holds in its assembly buffer (for tests: what was copied). */
size_t ug_usbredir_session_held(const ug_usbredir_session *s, enum ug_dir dir);

#endif /* UG_USBREDIR_CODEC_H */
