/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* render.c: usbredir packets as summary lines, verbose field lists with hex dumps, and JSON lines. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

/* The codec names the packet types; unknown ones are "unknown" here. */
static const char *type_name(uint32_t type)
{
	const char *n = ug_usbredir_type_name(type);

	return n ? n : "unknown";
}

UG_EXPORT const char *ug_render_status_name(uint32_t status)
{
	static const char *const names[] = {
		"success", "cancelled", "inval", "ioerror", "stall", "timeout", "babble",
	};

	return status < UG_NELEMS(names) ? names[status] : "unknown";
}

static const char *speed_name(uint8_t speed)
{
	static const char *const names[] = { "low", "full", "high", "super" };

	return speed < UG_NELEMS(names) ? names[speed] : "unknown";
}

static const char *ep_type_name(uint8_t type)
{
	static const char *const names[] = { "control", "iso", "bulk", "interrupt" };

	return type < UG_NELEMS(names) ? names[type] : "invalid";
}

static const char *descriptor_name(uint8_t type)
{
	switch (type) {
	case 0x01: return "DEVICE";
	case 0x02: return "CONFIGURATION";
	case 0x03: return "STRING";
	case 0x04: return "INTERFACE";
	case 0x05: return "ENDPOINT";
	case 0x06: return "DEVICE_QUALIFIER";
	case 0x07: return "OTHER_SPEED_CONFIGURATION";
	case 0x08: return "INTERFACE_POWER";
	case 0x09: return "OTG";
	case 0x0a: return "DEBUG";
	case 0x0b: return "INTERFACE_ASSOCIATION";
	case 0x0f: return "BOS";
	case 0x21: return "HID";
	case 0x22: return "REPORT";
	case 0x23: return "PHYSICAL";
	case 0x29: return "HUB";
	case 0x2a: return "SS_HUB";
	default: return NULL;
	}
}

static const char *standard_request_name(uint8_t req)
{
	static const char *const names[] = {
		"GET_STATUS", "CLEAR_FEATURE", NULL, "SET_FEATURE", NULL, "SET_ADDRESS",
		"GET_DESCRIPTOR", "SET_DESCRIPTOR", "GET_CONFIGURATION", "SET_CONFIGURATION",
		"GET_INTERFACE", "SET_INTERFACE", "SYNCH_FRAME",
	};

	if (req < UG_NELEMS(names))
		return names[req];
	if (req == 0x30)
		return "SET_SEL";
	if (req == 0x31)
		return "SET_ISOCH_DELAY";
	return NULL;
}

/* Class requests addressed to an interface, named where the number is
 * unambiguous among the classes a redirected device commonly has. */
static const char *class_request_name(uint8_t req)
{
	switch (req) {
	case 0x01: return "GET_REPORT";          /* HID */
	case 0x02: return "GET_IDLE";            /* HID */
	case 0x03: return "GET_PROTOCOL";        /* HID */
	case 0x09: return "SET_REPORT";          /* HID */
	case 0x0a: return "SET_IDLE";            /* HID */
	case 0x0b: return "SET_PROTOCOL";        /* HID */
	case 0x20: return "SET_LINE_CODING";     /* CDC */
	case 0x21: return "GET_LINE_CODING";     /* CDC */
	case 0x22: return "SET_CONTROL_LINE_STATE"; /* CDC */
	case 0x23: return "SEND_BREAK";          /* CDC */
	case 0xfe: return "GET_MAX_LUN";         /* mass storage */
	case 0xff: return "BULK_ONLY_MASS_STORAGE_RESET"; /* mass storage */
	default: return NULL;
	}
}

UG_EXPORT int ug_render_setup(char *buf, size_t size, const uint8_t setup[8])
{
	uint8_t rt = setup[0], req = setup[1];
	uint16_t value = ug_get_le16(setup + 2);
	uint16_t index = ug_get_le16(setup + 4);
	uint16_t length = ug_get_le16(setup + 6);
	const char *name;

	if ((rt & 0x60) == 0x00 && (name = standard_request_name(req)) != NULL) {
		switch (req) {
		case 0x06: /* GET_DESCRIPTOR */
		case 0x07: { /* SET_DESCRIPTOR */
			const char *d = descriptor_name((uint8_t)(value >> 8));

			if (d && (value & 0xff) == 0 && index == 0)
				return snprintf(buf, size, "%s %s len %u", name, d, length);
			if (d)
				return snprintf(buf, size, "%s %s index %u lang 0x%04x len %u", name,
				                d, value & 0xff, index, length);
			return snprintf(buf, size, "%s type 0x%02x index %u lang 0x%04x len %u",
			                name, value >> 8, value & 0xff, index, length);
		}
		case 0x09: /* SET_CONFIGURATION */
		case 0x05: /* SET_ADDRESS */
			return snprintf(buf, size, "%s %u", name, value);
		case 0x0b: /* SET_INTERFACE */
			return snprintf(buf, size, "%s interface %u alt %u", name, index, value);
		case 0x0a: /* GET_INTERFACE */
			return snprintf(buf, size, "%s interface %u", name, index);
		case 0x08: /* GET_CONFIGURATION */
			return snprintf(buf, size, "%s", name);
		case 0x01: /* CLEAR_FEATURE */
		case 0x03: /* SET_FEATURE */
			if ((rt & 0x1f) == 2 && value == 0)
				return snprintf(buf, size, "%s ENDPOINT_HALT ep 0x%02x", name, index);
			return snprintf(buf, size, "%s feature %u index %u", name, value, index);
		default:
			return snprintf(buf, size, "%s value 0x%04x index %u len %u", name, value,
			                index, length);
		}
	}
	if ((rt & 0x60) == 0x20 && (rt & 0x1f) == 1 && (name = class_request_name(req)) != NULL)
		return snprintf(buf, size, "%s value 0x%04x interface %u len %u", name, value,
		                index, length);
	return snprintf(buf, size, "%s request 0x%02x value 0x%04x index 0x%04x len %u",
	                (rt & 0x60) == 0x20 ? "class" : (rt & 0x60) == 0x40 ? "vendor"
	                                                                    : "reserved",
	                req, value, index, length);
}

/* ---- the field walk shared by the verbose and JSON forms ------------------ */

struct out {
	FILE *f;
	enum ug_render_format format;
	int first;              /* JSON: no member written yet */
};

static void json_string(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			/* Bytes outside printable ASCII are written as Latin-1
			 * code points, so any byte string stays valid JSON. */
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void key(struct out *o, const char *name)
{
	if (o->format == UG_RENDER_JSON) {
		fputs(o->first ? "" : ",", o->f);
		o->first = 0;
		fprintf(o->f, "\"%s\":", name);
	} else {
		fprintf(o->f, "    %s: ", name);
	}
}

static void end(struct out *o)
{
	if (o->format != UG_RENDER_JSON)
		fputc('\n', o->f);
}

static void fu(struct out *o, const char *name, uint64_t v)
{
	key(o, name);
	fprintf(o->f, "%" PRIu64, v);
	end(o);
}

static void fx(struct out *o, const char *name, uint64_t v, int width)
{
	key(o, name);
	if (o->format == UG_RENDER_JSON)
		fprintf(o->f, "%" PRIu64, v);
	else
		fprintf(o->f, "0x%0*" PRIx64, width, v);
	end(o);
}

/* Peer-supplied strings in the text forms: printable ASCII as is, the rest
 * as \xNN, so that a hostile version string cannot move the terminal. */
static void text_string(FILE *f, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f || c == '\\')
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

static void fs(struct out *o, const char *name, const char *s, size_t n)
{
	key(o, name);
	if (o->format == UG_RENDER_JSON)
		json_string(o->f, s, n);
	else
		text_string(o->f, s, n);
	end(o);
}

static void fstr(struct out *o, const char *name, const char *s)
{
	fs(o, name, s, strlen(s));
}

static void hex(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

static void hexdump(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t off = 0; off < n; off += 16) {
		size_t k = n - off < 16 ? n - off : 16;

		fprintf(f, "    %04zx ", off);
		for (size_t i = 0; i < 16; i++) {
			if (i < k)
				fprintf(f, " %02x", p[off + i]);
			else
				fputs("   ", f);
		}
		fputs("  ", f);
		for (size_t i = 0; i < k; i++) {
			uint8_t c = p[off + i];

			fputc(c >= 0x20 && c < 0x7f ? c : '.', f);
		}
		fputc('\n', f);
	}
}

static void ep_info_fields(struct out *o, const struct usb_redir_ep_info_header *e)
{
	int first = 1;

	key(o, "endpoints");
	if (o->format == UG_RENDER_JSON)
		fputc('[', o->f);
	for (unsigned i = 0; i < 32; i++) {
		unsigned addr = ((i & 0x10) << 3) | (i & 0x0f);

		if (e->type[i] == usb_redir_type_invalid)
			continue;
		if (o->format == UG_RENDER_JSON) {
			fprintf(o->f,
			        "%s{\"address\":%u,\"type\":\"%s\",\"interval\":%u,\"interface\":%u,"
			        "\"max_packet_size\":%u,\"max_streams\":%u}",
			        first ? "" : ",", addr, ep_type_name(e->type[i]), e->interval[i],
			        e->interface[i], e->max_packet_size[i], e->max_streams[i]);
		} else {
			fprintf(o->f,
			        "\n      ep 0x%02x %s interval %u interface %u max_packet_size %u "
			        "max_streams %u",
			        addr, ep_type_name(e->type[i]), e->interval[i], e->interface[i],
			        e->max_packet_size[i], e->max_streams[i]);
		}
		first = 0;
	}
	if (o->format == UG_RENDER_JSON)
		fputc(']', o->f);
	end(o);
}

static void interface_info_fields(struct out *o, const struct usb_redir_interface_info_header *h)
{
	uint32_t n = h->interface_count < 32 ? h->interface_count : 32;

	fu(o, "interface_count", h->interface_count);
	key(o, "interfaces");
	if (o->format == UG_RENDER_JSON)
		fputc('[', o->f);
	for (uint32_t i = 0; i < n; i++) {
		if (o->format == UG_RENDER_JSON)
			fprintf(o->f, "%s{\"interface\":%u,\"class\":%u,\"subclass\":%u,\"protocol\":%u}",
			        i ? "," : "", h->interface[i], h->interface_class[i],
			        h->interface_subclass[i], h->interface_protocol[i]);
		else
			fprintf(o->f, "\n      interface %u class 0x%02x subclass 0x%02x protocol 0x%02x",
			        h->interface[i], h->interface_class[i], h->interface_subclass[i],
			        h->interface_protocol[i]);
	}
	if (o->format == UG_RENDER_JSON)
		fputc(']', o->f);
	end(o);
}

static void setup_of(const struct usb_redir_control_packet_header *c, uint8_t setup[8])
{
	setup[0] = c->requesttype;
	setup[1] = c->request;
	ug_put_le16(setup + 2, c->value);
	ug_put_le16(setup + 4, c->index);
	ug_put_le16(setup + 6, c->length);
}

static void fields(struct out *o, const struct ug_usbredir_packet *pkt)
{
	const union ug_usbredir_type_header *h = &pkt->h;

	if (!pkt->known)
		return;
	switch (pkt->type) {
	case usb_redir_hello: {
		uint32_t n = h->hello.caps_count < UG_USBREDIR_MAX_CAP_WORDS ? h->hello.caps_count
		                                                               : UG_USBREDIR_MAX_CAP_WORDS;

		fs(o, "version", h->hello.version, strnlen(h->hello.version, 64));
		fu(o, "caps_count", h->hello.caps_count);
		key(o, "caps");
		if (o->format == UG_RENDER_JSON)
			fputc('[', o->f);
		for (uint32_t i = 0; i < n; i++)
			fprintf(o->f, o->format == UG_RENDER_JSON ? "%s%u" : "%s0x%08x",
			        i ? (o->format == UG_RENDER_JSON ? "," : " ") : "", h->hello.caps[i]);
		if (o->format == UG_RENDER_JSON)
			fputc(']', o->f);
		end(o);
		break;
	}
	case usb_redir_device_connect:
		fstr(o, "speed", speed_name(h->device_connect.speed));
		fx(o, "device_class", h->device_connect.device_class, 2);
		fx(o, "device_subclass", h->device_connect.device_subclass, 2);
		fx(o, "device_protocol", h->device_connect.device_protocol, 2);
		fx(o, "vendor_id", h->device_connect.vendor_id, 4);
		fx(o, "product_id", h->device_connect.product_id, 4);
		fx(o, "device_version_bcd", h->device_connect.device_version_bcd, 4);
		break;
	case usb_redir_interface_info:
		interface_info_fields(o, &h->interface_info);
		break;
	case usb_redir_ep_info:
		ep_info_fields(o, &h->ep_info);
		break;
	case usb_redir_set_configuration:
		fu(o, "configuration", h->set_configuration.configuration);
		break;
	case usb_redir_configuration_status:
		fstr(o, "status", ug_render_status_name(h->configuration_status.status));
		fu(o, "status_code", h->configuration_status.status);
		fu(o, "configuration", h->configuration_status.configuration);
		break;
	case usb_redir_set_alt_setting:
		fu(o, "interface", h->set_alt_setting.interface);
		fu(o, "alt", h->set_alt_setting.alt);
		break;
	case usb_redir_get_alt_setting:
		fu(o, "interface", h->get_alt_setting.interface);
		break;
	case usb_redir_alt_setting_status:
		fstr(o, "status", ug_render_status_name(h->alt_setting_status.status));
		fu(o, "status_code", h->alt_setting_status.status);
		fu(o, "interface", h->alt_setting_status.interface);
		fu(o, "alt", h->alt_setting_status.alt);
		break;
	case usb_redir_start_iso_stream:
		fx(o, "endpoint", h->start_iso_stream.endpoint, 2);
		fu(o, "pkts_per_urb", h->start_iso_stream.pkts_per_urb);
		fu(o, "no_urbs", h->start_iso_stream.no_urbs);
		break;
	case usb_redir_stop_iso_stream:
		fx(o, "endpoint", h->stop_iso_stream.endpoint, 2);
		break;
	case usb_redir_iso_stream_status:
		fstr(o, "status", ug_render_status_name(h->iso_stream_status.status));
		fu(o, "status_code", h->iso_stream_status.status);
		fx(o, "endpoint", h->iso_stream_status.endpoint, 2);
		break;
	case usb_redir_start_interrupt_receiving:
		fx(o, "endpoint", h->start_interrupt_receiving.endpoint, 2);
		break;
	case usb_redir_stop_interrupt_receiving:
		fx(o, "endpoint", h->stop_interrupt_receiving.endpoint, 2);
		break;
	case usb_redir_interrupt_receiving_status:
		fstr(o, "status", ug_render_status_name(h->interrupt_receiving_status.status));
		fu(o, "status_code", h->interrupt_receiving_status.status);
		fx(o, "endpoint", h->interrupt_receiving_status.endpoint, 2);
		break;
	case usb_redir_alloc_bulk_streams:
		fx(o, "endpoints", h->alloc_bulk_streams.endpoints, 8);
		fu(o, "no_streams", h->alloc_bulk_streams.no_streams);
		break;
	case usb_redir_free_bulk_streams:
		fx(o, "endpoints", h->free_bulk_streams.endpoints, 8);
		break;
	case usb_redir_bulk_streams_status:
		fx(o, "endpoints", h->bulk_streams_status.endpoints, 8);
		fu(o, "no_streams", h->bulk_streams_status.no_streams);
		fstr(o, "status", ug_render_status_name(h->bulk_streams_status.status));
		fu(o, "status_code", h->bulk_streams_status.status);
		break;
	case usb_redir_start_bulk_receiving:
		fu(o, "stream_id", h->start_bulk_receiving.stream_id);
		fu(o, "bytes_per_transfer", h->start_bulk_receiving.bytes_per_transfer);
		fx(o, "endpoint", h->start_bulk_receiving.endpoint, 2);
		fu(o, "no_transfers", h->start_bulk_receiving.no_transfers);
		break;
	case usb_redir_stop_bulk_receiving:
		fu(o, "stream_id", h->stop_bulk_receiving.stream_id);
		fx(o, "endpoint", h->stop_bulk_receiving.endpoint, 2);
		break;
	case usb_redir_bulk_receiving_status:
		fu(o, "stream_id", h->bulk_receiving_status.stream_id);
		fx(o, "endpoint", h->bulk_receiving_status.endpoint, 2);
		fstr(o, "status", ug_render_status_name(h->bulk_receiving_status.status));
		fu(o, "status_code", h->bulk_receiving_status.status);
		break;
	case usb_redir_filter_filter:
		fs(o, "filter", pkt->data ? (const char *)pkt->data : "",
		   pkt->data ? strnlen((const char *)pkt->data, pkt->data_len) : 0);
		break;
	case usb_redir_control_packet: {
		const struct usb_redir_control_packet_header *c = &h->control_packet;
		uint8_t setup[8];
		char s[128];

		setup_of(c, setup);
		ug_render_setup(s, sizeof(s), setup);
		fx(o, "endpoint", c->endpoint, 2);
		fx(o, "request", c->request, 2);
		fx(o, "requesttype", c->requesttype, 2);
		fstr(o, "status", ug_render_status_name(c->status));
		fu(o, "status_code", c->status);
		fx(o, "value", c->value, 4);
		fx(o, "index", c->index, 4);
		fu(o, "length", c->length);
		fstr(o, "request_summary", s);
		break;
	}
	case usb_redir_bulk_packet:
		fx(o, "endpoint", h->bulk_packet.endpoint, 2);
		fstr(o, "status", ug_render_status_name(h->bulk_packet.status));
		fu(o, "status_code", h->bulk_packet.status);
		fu(o, "length", h->bulk_packet.length | ((uint32_t)h->bulk_packet.length_high << 16));
		fu(o, "stream_id", h->bulk_packet.stream_id);
		fu(o, "length_high", h->bulk_packet.length_high);
		break;
	case usb_redir_iso_packet:
		fx(o, "endpoint", h->iso_packet.endpoint, 2);
		fstr(o, "status", ug_render_status_name(h->iso_packet.status));
		fu(o, "status_code", h->iso_packet.status);
		fu(o, "length", h->iso_packet.length);
		break;
	case usb_redir_interrupt_packet:
		fx(o, "endpoint", h->interrupt_packet.endpoint, 2);
		fstr(o, "status", ug_render_status_name(h->interrupt_packet.status));
		fu(o, "status_code", h->interrupt_packet.status);
		fu(o, "length", h->interrupt_packet.length);
		break;
	case usb_redir_buffered_bulk_packet:
		fu(o, "stream_id", h->buffered_bulk_packet.stream_id);
		fu(o, "length", h->buffered_bulk_packet.length);
		fx(o, "endpoint", h->buffered_bulk_packet.endpoint, 2);
		fstr(o, "status", ug_render_status_name(h->buffered_bulk_packet.status));
		fu(o, "status_code", h->buffered_bulk_packet.status);
		break;
	default:
		break;
	}
}

/* ---- the summary line ------------------------------------------------------ */

static void summary(FILE *f, uint64_t ts_ns, uint32_t session, const struct ug_usbredir_packet *pkt)
{
	const union ug_usbredir_type_header *h = &pkt->h;
	int h2g = pkt->dir == UG_DIR_H2G;

	fprintf(f, "%5" PRIu64 ".%09" PRIu64 " ", ts_ns / 1000000000u, ts_ns % 1000000000u);
	if (session)
		fprintf(f, "#%" PRIu32 " ", session);
	fprintf(f, "%s %-26s id %" PRIu64, h2g ? "host->guest" : "guest->host",
	        pkt->known ? type_name(pkt->type) : "unknown", pkt->id);
	if (!pkt->known) {
		fprintf(f, " type %" PRIu32 " length %" PRIu32 "\n", pkt->type, pkt->length);
		return;
	}
	switch (pkt->type) {
	case usb_redir_hello:
		fputs(" \"", f);
		text_string(f, h->hello.version, strnlen(h->hello.version, 64));
		fprintf(f, "\" caps 0x%08x", h->hello.caps_count ? h->hello.caps[0] : 0);
		break;
	case usb_redir_device_connect:
		fprintf(f, " %04x:%04x %s speed class 0x%02x bcd 0x%04x",
		        h->device_connect.vendor_id, h->device_connect.product_id,
		        speed_name(h->device_connect.speed), h->device_connect.device_class,
		        h->device_connect.device_version_bcd);
		break;
	case usb_redir_interface_info:
		fprintf(f, " %u interfaces", h->interface_info.interface_count);
		for (uint32_t i = 0; i < h->interface_info.interface_count && i < 32; i++)
			fprintf(f, " %u:%02x/%02x/%02x", h->interface_info.interface[i],
			        h->interface_info.interface_class[i],
			        h->interface_info.interface_subclass[i],
			        h->interface_info.interface_protocol[i]);
		break;
	case usb_redir_ep_info:
		for (unsigned i = 0; i < 32; i++)
			if (h->ep_info.type[i] != usb_redir_type_invalid)
				fprintf(f, " 0x%02x:%s", ((i & 0x10) << 3) | (i & 0x0f),
				        ep_type_name(h->ep_info.type[i]));
		break;
	case usb_redir_set_configuration:
		fprintf(f, " configuration %u", h->set_configuration.configuration);
		break;
	case usb_redir_configuration_status:
		fprintf(f, " status %s configuration %u",
		        ug_render_status_name(h->configuration_status.status),
		        h->configuration_status.configuration);
		break;
	case usb_redir_set_alt_setting:
		fprintf(f, " interface %u alt %u", h->set_alt_setting.interface,
		        h->set_alt_setting.alt);
		break;
	case usb_redir_get_alt_setting:
		fprintf(f, " interface %u", h->get_alt_setting.interface);
		break;
	case usb_redir_alt_setting_status:
		fprintf(f, " status %s interface %u alt %u",
		        ug_render_status_name(h->alt_setting_status.status),
		        h->alt_setting_status.interface, h->alt_setting_status.alt);
		break;
	case usb_redir_start_iso_stream:
		fprintf(f, " ep 0x%02x pkts_per_urb %u no_urbs %u", h->start_iso_stream.endpoint,
		        h->start_iso_stream.pkts_per_urb, h->start_iso_stream.no_urbs);
		break;
	case usb_redir_stop_iso_stream:
	case usb_redir_start_interrupt_receiving:
	case usb_redir_stop_interrupt_receiving:
		/* All three headers are just the endpoint. */
		fprintf(f, " ep 0x%02x", h->stop_iso_stream.endpoint);
		break;
	case usb_redir_iso_stream_status:
	case usb_redir_interrupt_receiving_status:
		fprintf(f, " ep 0x%02x status %s", h->iso_stream_status.endpoint,
		        ug_render_status_name(h->iso_stream_status.status));
		break;
	case usb_redir_alloc_bulk_streams:
		fprintf(f, " endpoints 0x%08x streams %u", h->alloc_bulk_streams.endpoints,
		        h->alloc_bulk_streams.no_streams);
		break;
	case usb_redir_free_bulk_streams:
		fprintf(f, " endpoints 0x%08x", h->free_bulk_streams.endpoints);
		break;
	case usb_redir_bulk_streams_status:
		fprintf(f, " endpoints 0x%08x streams %u status %s",
		        h->bulk_streams_status.endpoints, h->bulk_streams_status.no_streams,
		        ug_render_status_name(h->bulk_streams_status.status));
		break;
	case usb_redir_start_bulk_receiving:
		fprintf(f, " ep 0x%02x stream %u bytes_per_transfer %u no_transfers %u",
		        h->start_bulk_receiving.endpoint, h->start_bulk_receiving.stream_id,
		        h->start_bulk_receiving.bytes_per_transfer,
		        h->start_bulk_receiving.no_transfers);
		break;
	case usb_redir_stop_bulk_receiving:
		fprintf(f, " ep 0x%02x stream %u", h->stop_bulk_receiving.endpoint,
		        h->stop_bulk_receiving.stream_id);
		break;
	case usb_redir_bulk_receiving_status:
		fprintf(f, " ep 0x%02x stream %u status %s", h->bulk_receiving_status.endpoint,
		        h->bulk_receiving_status.stream_id,
		        ug_render_status_name(h->bulk_receiving_status.status));
		break;
	case usb_redir_control_packet: {
		uint8_t setup[8];
		char s[128];

		setup_of(&h->control_packet, setup);
		ug_render_setup(s, sizeof(s), setup);
		fprintf(f, " ep 0x%02x", h->control_packet.endpoint);
		if (h2g)
			fprintf(f, " status %s", ug_render_status_name(h->control_packet.status));
		fprintf(f, " data %" PRIu32 " %s", pkt->data_len, s);
		break;
	}
	case usb_redir_bulk_packet:
		fprintf(f, " ep 0x%02x", h->bulk_packet.endpoint);
		if (h2g)
			fprintf(f, " status %s", ug_render_status_name(h->bulk_packet.status));
		fprintf(f, " len %" PRIu32 " data %" PRIu32,
		        h->bulk_packet.length | ((uint32_t)h->bulk_packet.length_high << 16),
		        pkt->data_len);
		if (h->bulk_packet.stream_id)
			fprintf(f, " stream %u", h->bulk_packet.stream_id);
		break;
	case usb_redir_iso_packet:
	case usb_redir_interrupt_packet:
		/* The two headers have the same layout. */
		fprintf(f, " ep 0x%02x", h->iso_packet.endpoint);
		if (h2g)
			fprintf(f, " status %s", ug_render_status_name(h->iso_packet.status));
		fprintf(f, " len %u data %" PRIu32, h->iso_packet.length, pkt->data_len);
		break;
	case usb_redir_buffered_bulk_packet:
		fprintf(f, " ep 0x%02x", h->buffered_bulk_packet.endpoint);
		if (h2g)
			fprintf(f, " status %s",
			        ug_render_status_name(h->buffered_bulk_packet.status));
		fprintf(f, " len %u data %" PRIu32 " stream %u", h->buffered_bulk_packet.length,
		        pkt->data_len, h->buffered_bulk_packet.stream_id);
		break;
	case usb_redir_filter_filter:
		fputs(" \"", f);
		if (pkt->data)
			text_string(f, (const char *)pkt->data,
			            strnlen((const char *)pkt->data, pkt->data_len));
		fputc('"', f);
		break;
	default:
		break;
	}
	fputc('\n', f);
}

UG_EXPORT int ug_render_packet(FILE *f, enum ug_render_format format, uint64_t ts_ns,
                               uint32_t session, const struct ug_usbredir_packet *pkt)
{
	struct out o = { f, format, 1 };

	if (!f || !pkt)
		return UG_E_INVAL;
	switch (format) {
	case UG_RENDER_SUMMARY:
		summary(f, ts_ns, session, pkt);
		break;
	case UG_RENDER_VERBOSE:
		summary(f, ts_ns, session, pkt);
		fu(&o, "type", pkt->type);
		fu(&o, "packet_length", pkt->length);
		fu(&o, "id", pkt->id);
		fu(&o, "offset", pkt->offset);
		fields(&o, pkt);
		fu(&o, "data_len", pkt->data_len);
		if (pkt->data_len && pkt->data)
			hexdump(f, pkt->data, pkt->data_len);
		break;
	case UG_RENDER_JSON:
		fputc('{', f);
		key(&o, "ts");
		fprintf(f, "%" PRIu64 ".%09" PRIu64, ts_ns / 1000000000u, ts_ns % 1000000000u);
		fu(&o, "session", session);
		fstr(&o, "dir", pkt->dir == UG_DIR_H2G ? "h2g" : "g2h");
		fstr(&o, "type", pkt->known ? type_name(pkt->type) : "unknown");
		fu(&o, "type_num", pkt->type);
		fu(&o, "packet_length", pkt->length);
		fu(&o, "id", pkt->id);
		fu(&o, "offset", pkt->offset);
		fields(&o, pkt);
		fu(&o, "data_len", pkt->data_len);
		key(&o, "data");
		fputc('"', f);
		if (pkt->data)
			hex(f, pkt->data, pkt->data_len);
		fputs("\"}\n", f);
		break;
	default:
		return UG_E_INVAL;
	}
	if (ferror(f))
		return UG_E_IO;
	return 0;
}

/* ---- the transfer view ----------------------------------------------------- */

static const char *xfer_type_name(uint8_t t)
{
	static const char *const names[] = { "iso", "interrupt", "control", "bulk" };

	return t < UG_NELEMS(names) ? names[t] : "unknown";
}

static const char *event_name(enum ug_transfer_event_kind k)
{
	switch (k) {
	case UG_TRANSFER_SUBMIT: return "submit";
	case UG_TRANSFER_COMPLETE: return "complete";
	case UG_TRANSFER_ABANDON: return "abandon";
	case UG_TRANSFER_NOTICE: return "notice";
	default: return "unknown";
	}
}

static const char *origin_name(uint8_t o)
{
	static const char *const names[] = {
		"request", "stream", "set_configuration", "get_configuration",
		"set_alt_setting", "get_alt_setting",
	};

	return o < UG_NELEMS(names) ? names[o] : "unknown";
}

UG_EXPORT int ug_render_transfer(FILE *f, enum ug_render_format format, uint64_t ts_ns,
                                 uint32_t session, const struct ug_transfer_event *ev)
{
	const struct ug_transfer *x;
	char setup[128] = "";
	int done;

	if (!f || !ev || (format != UG_RENDER_SUMMARY && format != UG_RENDER_VERBOSE &&
	                  format != UG_RENDER_JSON))
		return UG_E_INVAL;
	x = &ev->xfer;
	if (x->has_setup)
		ug_render_setup(setup, sizeof(setup), x->setup);
	done = ev->kind == UG_TRANSFER_COMPLETE || ev->kind == UG_TRANSFER_ABANDON;

	if (format == UG_RENDER_JSON) {
		struct out o = { f, format, 1 };

		fputc('{', f);
		key(&o, "ts");
		fprintf(f, "%" PRIu64 ".%09" PRIu64, ts_ns / 1000000000u, ts_ns % 1000000000u);
		fu(&o, "session", session);
		fstr(&o, "event", event_name(ev->kind));
		fu(&o, "serial", x->serial);
		fu(&o, "id", x->id);
		fu(&o, "connection", x->connection);
		fstr(&o, "packet_type", type_name(x->packet_type));
		fstr(&o, "origin", origin_name(x->origin));
		fstr(&o, "transfer_type", xfer_type_name(x->xfer_type));
		fu(&o, "endpoint", x->endpoint);
		if (x->has_setup) {
			key(&o, "setup");
			fputc('"', f);
			hex(f, x->setup, 8);
			fputc('"', f);
			fstr(&o, "request_summary", setup);
		}
		fu(&o, "interval", x->interval);
		fu(&o, "stream_id", x->stream_id);
		fu(&o, "req_length", x->req_length);
		if (ev->kind == UG_TRANSFER_COMPLETE) {
			fstr(&o, "status", ug_render_status_name(ev->status));
			fu(&o, "status_code", ev->status);
			fu(&o, "actual_length", ev->actual_length);
		}
		if (done && ev->ts_ns >= x->submit_ts_ns)
			fu(&o, "latency_ns", ev->ts_ns - x->submit_ts_ns);
		if (ev->note)
			fstr(&o, "note", ev->note);
		fu(&o, "data_len", ev->data_len);
		key(&o, "data");
		fputc('"', f);
		if (ev->data)
			hex(f, ev->data, ev->data_len);
		fputs("\"}\n", f);
		return ferror(f) ? UG_E_IO : 0;
	}

	fprintf(f, "%5" PRIu64 ".%09" PRIu64 " ", ts_ns / 1000000000u, ts_ns % 1000000000u);
	if (session)
		fprintf(f, "#%" PRIu32 " ", session);
	fprintf(f, "%-8s %-9s ep 0x%02x xfer %" PRIu64 " id %" PRIu64, event_name(ev->kind),
	        xfer_type_name(x->xfer_type), x->endpoint, x->serial, x->id);
	if (x->origin != UG_ORIGIN_REQUEST)
		fprintf(f, " (%s)", origin_name(x->origin));
	switch (ev->kind) {
	case UG_TRANSFER_SUBMIT:
		fprintf(f, " len %" PRIu32, x->req_length);
		break;
	case UG_TRANSFER_COMPLETE:
		fprintf(f, " status %s len %" PRIu32, ug_render_status_name(ev->status),
		        ev->actual_length);
		break;
	default:
		break;
	}
	if (setup[0])
		fprintf(f, " %s", setup);
	if (done && ev->ts_ns >= x->submit_ts_ns)
		fprintf(f, " after %" PRIu64 ".%03" PRIu64 " ms",
		        (ev->ts_ns - x->submit_ts_ns) / 1000000u,
		        (ev->ts_ns - x->submit_ts_ns) / 1000u % 1000u);
	if (ev->note)
		fprintf(f, ": %s", ev->note);
	fputc('\n', f);
	if (format == UG_RENDER_VERBOSE && ev->data && ev->data_len)
		hexdump(f, ev->data, ev->data_len);
	return ferror(f) ? UG_E_IO : 0;
}
