/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbredir-encode.c: writes usbredir packets as libusbredirparser sends them. */
#include <string.h>

#include "common.h"
#include "usbredir-codec.h"

/* Writes the type header's fields that are on the wire under caps from h. */
static uint8_t *put_fields(const struct ug_usbredir_type_desc *td, uint32_t caps,
			   const union ug_usbredir_type_header *h, uint8_t *p)
{
	const uint8_t *base = (const uint8_t *)h;

	for (unsigned i = 0; i < td->nfields; i++) {
		const struct ug_usbredir_field *f = &td->fields[i];
		const uint8_t *src = base + f->off;

		if (f->cap != UG_CAP_NONE && !ug_usbredir_has_cap(caps, f->cap))
			continue;
		switch (f->size) {
		case 1:
			memcpy(p, src, f->count);
			p += f->count;
			break;
		case 2:
			for (unsigned j = 0; j < f->count; j++, p += 2, src += 2) {
				uint16_t v;
				memcpy(&v, src, 2);
				ug_put_le16(p, v);
			}
			break;
		default:
			for (unsigned j = 0; j < f->count; j++, p += 4, src += 4) {
				uint32_t v;
				memcpy(&v, src, 4);
				ug_put_le32(p, v);
			}
			break;
		}
	}
	return p;
}

/*
 * libusbredirparser's usbredirparser_queue(): a 12-byte header until both
 * sides announced 64-bit ids (the hello is queued before the peer's caps are
 * known, so it always has 12), the type header with the fields the negotiated
 * caps put on the wire (bulk length_high only with 32bits_bulk_length), then
 * the data. Unknown types are written with no type header and their data.
 */
UG_EXPORT int ug_usbredir_encode(uint32_t negotiated_caps, const struct ug_usbredir_packet *pkt,
				 void *out, size_t out_size, size_t *ret_len)
{
	const struct ug_usbredir_type_desc *td;
	uint32_t caps = ug_usbredir_caps_normalize(negotiated_caps);
	unsigned hdr_len, thl = 0;
	uint64_t length, total;
	uint32_t data_len;
	uint8_t *p;

	if (!pkt || !ret_len || (!out && out_size) || (!pkt->data && pkt->data_len))
		return UG_E_INVAL;
	td = ug_usbredir_type_desc(pkt->type);
	if (td)
		thl = ug_usbredir_type_header_len(td, caps);
	if (pkt->type == usb_redir_hello) {
		if (pkt->h.hello.caps_count > UG_USBREDIR_MAX_CAP_WORDS)
			return UG_E_INVAL;
		hdr_len = UG_USBREDIR_HDR32;
		data_len = pkt->h.hello.caps_count * 4;
	} else {
		hdr_len = ug_usbredir_has_cap(caps, usb_redir_cap_64bits_ids) ?
			  UG_USBREDIR_HDR64 : UG_USBREDIR_HDR32;
		data_len = pkt->data_len;
	}
	length = (uint64_t)thl + data_len;
	if (length > UINT32_MAX)
		return UG_E_INVAL;
	total = hdr_len + length;
	if (total > out_size) {
		*ret_len = (size_t)total;
		return UG_E_TOOBIG;
	}
	p = out;
	ug_put_le32(p, pkt->type);
	ug_put_le32(p + 4, (uint32_t)length);
	if (hdr_len == UG_USBREDIR_HDR64)
		ug_put_le64(p + 8, pkt->id);
	else
		ug_put_le32(p + 8, (uint32_t)pkt->id);
	p += hdr_len;
	if (td)
		p = put_fields(td, caps, &pkt->h, p);
	if (pkt->type == usb_redir_hello) {
		for (uint32_t i = 0; i < pkt->h.hello.caps_count; i++, p += 4)
			ug_put_le32(p, pkt->h.hello.caps[i]);
	} else if (data_len) {
		memcpy(p, pkt->data, data_len);
	}
	*ret_len = (size_t)total;
	return 0;
}
