/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-usbmon-view.c: fuzzes the session view (tracker -> usbmon records -> renderers) with arbitrary packet sequences. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The input is a sequence of packets, each:
 *   u8 flags (bit 0 host->guest, bit 1 64-bit id follows, bit 2 unknown type)
 *   u8 type selector (index into the table below)
 *   u16 or u64 id (little-endian)
 *   the type header's bytes (its size in usbredirproto.h)
 *   u16 data length, then that many data bytes (cut to what is left)
 * The first byte sets the tracker's outstanding limit, so that the limit
 * paths run too. Decoded packets come from the codec, whose structs may hold
 * any value, so header bytes are copied in as they come.
 */
static const struct {
	uint32_t type;
	size_t hdr;
} types[] = {
	{ usb_redir_hello, sizeof(struct ug_usbredir_hello) },
	{ usb_redir_device_connect, sizeof(struct usb_redir_device_connect_header) },
	{ usb_redir_device_disconnect, 0 },
	{ usb_redir_reset, 0 },
	{ usb_redir_interface_info, sizeof(struct usb_redir_interface_info_header) },
	{ usb_redir_ep_info, sizeof(struct usb_redir_ep_info_header) },
	{ usb_redir_set_configuration, sizeof(struct usb_redir_set_configuration_header) },
	{ usb_redir_get_configuration, 0 },
	{ usb_redir_configuration_status, sizeof(struct usb_redir_configuration_status_header) },
	{ usb_redir_set_alt_setting, sizeof(struct usb_redir_set_alt_setting_header) },
	{ usb_redir_get_alt_setting, sizeof(struct usb_redir_get_alt_setting_header) },
	{ usb_redir_alt_setting_status, sizeof(struct usb_redir_alt_setting_status_header) },
	{ usb_redir_start_iso_stream, sizeof(struct usb_redir_start_iso_stream_header) },
	{ usb_redir_stop_iso_stream, sizeof(struct usb_redir_stop_iso_stream_header) },
	{ usb_redir_iso_stream_status, sizeof(struct usb_redir_iso_stream_status_header) },
	{ usb_redir_start_interrupt_receiving,
	  sizeof(struct usb_redir_start_interrupt_receiving_header) },
	{ usb_redir_stop_interrupt_receiving,
	  sizeof(struct usb_redir_stop_interrupt_receiving_header) },
	{ usb_redir_interrupt_receiving_status,
	  sizeof(struct usb_redir_interrupt_receiving_status_header) },
	{ usb_redir_alloc_bulk_streams, sizeof(struct usb_redir_alloc_bulk_streams_header) },
	{ usb_redir_free_bulk_streams, sizeof(struct usb_redir_free_bulk_streams_header) },
	{ usb_redir_bulk_streams_status, sizeof(struct usb_redir_bulk_streams_status_header) },
	{ usb_redir_cancel_data_packet, 0 },
	{ usb_redir_filter_reject, 0 },
	{ usb_redir_filter_filter, 0 },
	{ usb_redir_device_disconnect_ack, 0 },
	{ usb_redir_start_bulk_receiving, sizeof(struct usb_redir_start_bulk_receiving_header) },
	{ usb_redir_stop_bulk_receiving, sizeof(struct usb_redir_stop_bulk_receiving_header) },
	{ usb_redir_bulk_receiving_status, sizeof(struct usb_redir_bulk_receiving_status_header) },
	{ usb_redir_control_packet, sizeof(struct usb_redir_control_packet_header) },
	{ usb_redir_bulk_packet, sizeof(struct usb_redir_bulk_packet_header) },
	{ usb_redir_iso_packet, sizeof(struct usb_redir_iso_packet_header) },
	{ usb_redir_interrupt_packet, sizeof(struct usb_redir_interrupt_packet_header) },
	{ usb_redir_buffered_bulk_packet, sizeof(struct usb_redir_buffered_bulk_packet_header) },
};

static FILE *sink(void)
{
	static FILE *f;

	if (!f)
		f = fopen("/dev/null", "w");
	return f;
}

static void check_record(const struct ug_usbmon_record *r)
{
	/* The invariants every record must keep, whatever came in. */
	if (r->caplen < UG_USBMON_HEADER_SIZE || r->caplen > UG_USBMON_MAX_RECORD ||
	    r->origlen < r->caplen)
		abort();
	if (r->bytes[8] != 'S' && r->bytes[8] != 'C')
		abort();
	if (r->bytes[8] == 'C' && r->bytes[14] != '-')
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ug_tracker *t = ug_tracker_new();
	ug_usbmon *m = ug_usbmon_new();
	uint64_t ts = 0;
	size_t pos = 1;

	if (!t || !m || size < 1)
		goto out;
	ug_tracker_set_max_outstanding(t, 1 + data[0] % 16);
	while (size - pos >= 4) {
		struct ug_usbredir_packet pkt;
		struct ug_transfer_event ev;
		struct ug_usbmon_record rec;
		uint8_t flags = data[pos], sel = data[pos + 1];
		size_t hdr, n;

		memset(&pkt, 0, sizeof(pkt));
		pos += 2;
		pkt.dir = (flags & 1) ? UG_DIR_H2G : UG_DIR_G2H;
		if ((flags & 2) && size - pos >= 8) {
			memcpy(&pkt.id, data + pos, 8);
			pos += 8;
		} else {
			pkt.id = (uint64_t)data[pos] | ((uint64_t)data[pos + 1] << 8);
			pos += 2;
		}
		sel %= sizeof(types) / sizeof(types[0]);
		pkt.type = types[sel].type;
		pkt.known = !(flags & 4);
		hdr = types[sel].hdr;
		if (hdr > size - pos)
			break;
		memcpy(&pkt.h, data + pos, hdr);
		pos += hdr;
		if (pkt.type == usb_redir_hello)
			pkt.h.hello.version[64] = 0;
		n = 0;
		if (size - pos >= 2) {
			n = (size_t)data[pos] | ((size_t)data[pos + 1] << 8);
			pos += 2;
			if (n > size - pos)
				n = size - pos;
		}
		pkt.data = n ? data + pos : NULL;
		pkt.data_len = (uint32_t)n;
		pkt.length = (uint32_t)(hdr + n);
		pos += n;

		ts += 1000;
		ug_render_packet(sink(), UG_RENDER_SUMMARY, ts, 1, &pkt);
		ug_render_packet(sink(), UG_RENDER_VERBOSE, ts, 1, &pkt);
		ug_render_packet(sink(), UG_RENDER_JSON, ts, 1, &pkt);
		if (ug_tracker_push(t, &pkt, ts) != 0)
			continue;
		while (ug_tracker_next(t, &ev) == 1) {
			ug_render_transfer(sink(), UG_RENDER_VERBOSE, ts, 1, &ev);
			ug_render_transfer(sink(), UG_RENDER_JSON, ts, 1, &ev);
			if (ug_usbmon_map(m, &ev, &rec) == 1)
				check_record(&rec);
		}
		if (ug_tracker_outstanding(t) > 16)
			abort();
	}
	{
		struct ug_transfer_event ev;
		struct ug_usbmon_record rec;

		ug_tracker_finish(t, ts);
		while (ug_tracker_next(t, &ev) == 1)
			if (ug_usbmon_map(m, &ev, &rec) == 1)
				check_record(&rec);
	}
out:
	ug_tracker_free(t);
	ug_usbmon_free(m);
	return 0;
}
