/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbredir-packets.h: hand-built decoded usbredir packets for the tracker, usbmon and render tests. */
#ifndef UG_TEST_USBREDIR_PACKETS_H
#define UG_TEST_USBREDIR_PACKETS_H

#include <string.h>

#include "usbgate.h"

/*
 * These build struct ug_usbredir_packet values as the codec would deliver
 * them (known, typed header, data view), without depending on the codec.
 * raw/raw_len stay NULL: the consumers under test do not read them.
 */
static inline struct ug_usbredir_packet pk_base(enum ug_dir dir, uint32_t type, uint64_t id)
{
	struct ug_usbredir_packet p;

	memset(&p, 0, sizeof(p));
	p.dir = dir;
	p.type = type;
	p.id = id;
	p.known = 1;
	return p;
}

static inline struct ug_usbredir_packet pk_control(enum ug_dir dir, uint64_t id, uint8_t rt,
                                                   uint8_t req, uint16_t value, uint16_t index,
                                                   uint16_t length, uint8_t status,
                                                   const uint8_t *data, uint32_t data_len)
{
	struct ug_usbredir_packet p = pk_base(dir, usb_redir_control_packet, id);

	p.h.control_packet.endpoint = rt & 0x80;
	p.h.control_packet.requesttype = rt;
	p.h.control_packet.request = req;
	p.h.control_packet.value = value;
	p.h.control_packet.index = index;
	p.h.control_packet.length = length;
	p.h.control_packet.status = status;
	p.data = data;
	p.data_len = data_len;
	p.length = 10 + data_len;
	return p;
}

static inline struct ug_usbredir_packet pk_bulk(enum ug_dir dir, uint64_t id, uint8_t ep,
                                                uint32_t length, uint8_t status,
                                                const uint8_t *data, uint32_t data_len)
{
	struct ug_usbredir_packet p = pk_base(dir, usb_redir_bulk_packet, id);

	p.h.bulk_packet.endpoint = ep;
	p.h.bulk_packet.length = (uint16_t)length;
	p.h.bulk_packet.length_high = (uint16_t)(length >> 16);
	p.h.bulk_packet.status = status;
	p.data = data;
	p.data_len = data_len;
	p.length = 10 + data_len;
	return p;
}

static inline struct ug_usbredir_packet pk_intr(enum ug_dir dir, uint64_t id, uint8_t ep,
                                                uint16_t length, uint8_t status,
                                                const uint8_t *data, uint32_t data_len)
{
	struct ug_usbredir_packet p = pk_base(dir, usb_redir_interrupt_packet, id);

	p.h.interrupt_packet.endpoint = ep;
	p.h.interrupt_packet.length = length;
	p.h.interrupt_packet.status = status;
	p.data = data;
	p.data_len = data_len;
	p.length = 4 + data_len;
	return p;
}

static inline struct ug_usbredir_packet pk_iso(enum ug_dir dir, uint64_t id, uint8_t ep,
                                               uint16_t length, uint8_t status,
                                               const uint8_t *data, uint32_t data_len)
{
	struct ug_usbredir_packet p = pk_base(dir, usb_redir_iso_packet, id);

	p.h.iso_packet.endpoint = ep;
	p.h.iso_packet.length = length;
	p.h.iso_packet.status = status;
	p.data = data;
	p.data_len = data_len;
	p.length = 4 + data_len;
	return p;
}

static inline struct ug_usbredir_packet pk_bbulk(enum ug_dir dir, uint64_t id, uint8_t ep,
                                                 uint32_t stream, uint8_t status,
                                                 const uint8_t *data, uint32_t data_len)
{
	struct ug_usbredir_packet p = pk_base(dir, usb_redir_buffered_bulk_packet, id);

	p.h.buffered_bulk_packet.endpoint = ep;
	p.h.buffered_bulk_packet.stream_id = stream;
	p.h.buffered_bulk_packet.length = data_len;
	p.h.buffered_bulk_packet.status = status;
	p.data = data;
	p.data_len = data_len;
	p.length = 10 + data_len;
	return p;
}

#endif /* UG_TEST_USBREDIR_PACKETS_H */
