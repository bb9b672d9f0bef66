/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbmon-session.c: builds realistic usbredir sessions with libusbredirparser and writes them as usbmon, raw, text and JSON. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <usbredirparser.h>

#include "usbgate.h"
#include "usbmon-session.h"

/* Both sides announce every capability, as QEMU 7.2 and usbredirect do. */
#define ALL_CAPS 0xffu
#define T0_NS 1732492800000000000ull /* 2024-11-25 00:00:00 UTC */

struct out {
	ug_pcap_writer *mon;
	ug_pcap_writer *raw;
	FILE *text;
	FILE *json;
	struct session_stats *st;
	uint64_t ts;            /* shared clock of all sessions, ns */
	int failed;
};

struct sess {
	struct out *o;
	struct usbredirparser *g; /* the usb-guest side (QEMU's role) */
	struct usbredirparser *h; /* the usb-host side (usbredirect's role) */
	uint8_t *wbuf;          /* bytes of the packet just written */
	size_t wlen, walloc;
	const uint8_t *rbuf;    /* bytes offered to a parser's read */
	size_t rlen;
	ug_usbredir_session *dec; /* the codec, decoding what the parsers wrote */
	ug_tracker *t;
	ug_usbmon *m;
	uint32_t session;
	uint32_t host_caps;     /* what the usb-host side announces */
	uint64_t next_id;
};

static void fail(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct out *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("usbmon-session: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	o->failed = 1;
}

static int cb_write(void *priv, uint8_t *data, int count)
{
	struct sess *s = priv;

	if (s->wlen + (size_t)count > s->walloc) {
		size_t n = (s->wlen + (size_t)count) * 2;
		uint8_t *nb = realloc(s->wbuf, n);

		if (!nb)
			return -1;
		s->wbuf = nb;
		s->walloc = n;
	}
	memcpy(s->wbuf + s->wlen, data, (size_t)count);
	s->wlen += (size_t)count;
	return count;
}

static int cb_read(void *priv, uint8_t *data, int count)
{
	struct sess *s = priv;
	size_t n = s->rlen < (size_t)count ? s->rlen : (size_t)count;

	memcpy(data, s->rbuf, n);
	s->rbuf += n;
	s->rlen -= n;
	return (int)n;
}

static void cb_log(void *priv, int level, const char *msg)
{
	struct sess *s = priv;

	if (level <= usbredirparser_error)
		fail(s->o, "session %u: usbredirparser: %s", s->session, msg);
}

static void cb_hello(void *priv, struct usb_redir_hello_header *hello)
{
}

/* Runs one decoded packet through every output, as usbdump will. */
static void output(struct sess *s, const struct ug_usbredir_packet *pkt)
{
	struct out *o = s->o;
	struct ug_transfer_event ev;
	struct ug_usbmon_record rec;
	struct ug_raw_record raw = {
		pkt->dir, o->ts, ug_usbredir_session_caps(s->dec),
		ug_usbredir_session_caps_known(s->dec), s->session, pkt->raw, pkt->raw_len,
	};

	o->st->packets++;
	if (ug_tracker_push(s->t, pkt, o->ts) != 0)
		fail(o, "tracker push failed");
	while (ug_tracker_next(s->t, &ev) == 1) {
		int rc = ug_usbmon_map(s->m, &ev, &rec);

		if (ev.kind == UG_TRANSFER_NOTICE || ev.kind == UG_TRANSFER_ABANDON)
			o->st->notices++;
		if (rc < 0)
			fail(o, "usbmon map: %s", ug_strerror(rc));
		if (rc != 1)
			continue;
		if (rec.bytes[8] == 'S')
			o->st->submits++;
		else
			o->st->completions++;
		if (rec.caplen < rec.origlen)
			o->st->capped++;
		if (o->mon && ug_pcap_writer_write_usbmon(o->mon, &rec) != 0)
			fail(o, "usbmon write: %s", ug_pcap_writer_errmsg(o->mon));
	}
	if (o->raw) {
		uint64_t before = ug_pcap_writer_records(o->raw);

		if (ug_pcap_writer_write_raw(o->raw, &raw) != 0)
			fail(o, "raw write: %s", ug_pcap_writer_errmsg(o->raw));
		o->st->raw_records += (unsigned)(ug_pcap_writer_records(o->raw) - before);
	}
	if (o->text)
		ug_render_packet(o->text, UG_RENDER_SUMMARY, o->ts - T0_NS, s->session, pkt);
	if (o->json)
		ug_render_packet(o->json, UG_RENDER_JSON, o->ts - T0_NS, s->session, pkt);
}

/* Renders a packet as a JSON line into a fresh string (every field). */
static char *json_of(const struct ug_usbredir_packet *pkt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	ug_render_packet(f, UG_RENDER_JSON, 0, 0, pkt);
	fclose(f);
	return buf;
}

/*
 * The wire bytes go through the codec, as usbdump will decode them; the
 * codec's packet must say exactly what the test meant to send (compared
 * field by field through the JSON renderer), and it is what the outputs get.
 */
static void decode_and_output(struct sess *s, struct ug_usbredir_packet *want)
{
	struct ug_usbredir_packet got;
	char *a, *b;
	int rc;

	rc = ug_usbredir_session_feed(s->dec, want->dir, want->raw, want->raw_len);
	if (rc == 0)
		rc = ug_usbredir_session_next(s->dec, want->dir, &got);
	if (rc != 1) {
		fail(s->o, "session %u: codec returned %d for type %u: %s", s->session, rc,
		     want->type, ug_usbredir_session_errmsg(s->dec));
		return;
	}
	want->offset = got.offset;
	a = json_of(want);
	b = json_of(&got);
	if (!a || !b || strcmp(a, b) != 0)
		fail(s->o, "session %u: codec disagrees:\n  meant %s  codec %s", s->session,
		     a ? a : "?", b ? b : "?");
	free(a);
	free(b);
	if (got.raw_len != want->raw_len || memcmp(got.raw, want->raw, got.raw_len) != 0)
		fail(s->o, "session %u: codec raw view differs", s->session);
	output(s, &got);
	if (ug_usbredir_session_next(s->dec, want->dir, &got) != 0)
		fail(s->o, "session %u: codec found a second packet", s->session);
}

/*
 * Sends one packet with the parser of its direction, takes the bytes it
 * wrote as the wire bytes, and describes the same packet as the codec would.
 */
static void send_pkt(struct sess *s, enum ug_dir dir, uint32_t type, uint64_t id,
                     union ug_usbredir_type_header *h, const uint8_t *data, uint32_t data_len)
{
	struct usbredirparser *p = dir == UG_DIR_G2H ? s->g : s->h;
	uint8_t *d = (uint8_t *)data;
	int n = (int)data_len;
	struct ug_usbredir_packet pkt;
	size_t hdr;

	s->wlen = 0;
	switch (type) {
	case usb_redir_device_connect:
		usbredirparser_send_device_connect(p, &h->device_connect);
		break;
	case usb_redir_device_disconnect:
		usbredirparser_send_device_disconnect(p);
		break;
	case usb_redir_interface_info:
		usbredirparser_send_interface_info(p, &h->interface_info);
		break;
	case usb_redir_ep_info:
		usbredirparser_send_ep_info(p, &h->ep_info);
		break;
	case usb_redir_set_configuration:
		usbredirparser_send_set_configuration(p, id, &h->set_configuration);
		break;
	case usb_redir_get_configuration:
		usbredirparser_send_get_configuration(p, id);
		break;
	case usb_redir_configuration_status:
		usbredirparser_send_configuration_status(p, id, &h->configuration_status);
		break;
	case usb_redir_set_alt_setting:
		usbredirparser_send_set_alt_setting(p, id, &h->set_alt_setting);
		break;
	case usb_redir_get_alt_setting:
		usbredirparser_send_get_alt_setting(p, id, &h->get_alt_setting);
		break;
	case usb_redir_alt_setting_status:
		usbredirparser_send_alt_setting_status(p, id, &h->alt_setting_status);
		break;
	case usb_redir_start_iso_stream:
		usbredirparser_send_start_iso_stream(p, id, &h->start_iso_stream);
		break;
	case usb_redir_stop_iso_stream:
		usbredirparser_send_stop_iso_stream(p, id, &h->stop_iso_stream);
		break;
	case usb_redir_iso_stream_status:
		usbredirparser_send_iso_stream_status(p, id, &h->iso_stream_status);
		break;
	case usb_redir_start_interrupt_receiving:
		usbredirparser_send_start_interrupt_receiving(p, id, &h->start_interrupt_receiving);
		break;
	case usb_redir_interrupt_receiving_status:
		usbredirparser_send_interrupt_receiving_status(p, id, &h->interrupt_receiving_status);
		break;
	case usb_redir_cancel_data_packet:
		usbredirparser_send_cancel_data_packet(p, id);
		break;
	case usb_redir_control_packet:
		usbredirparser_send_control_packet(p, id, &h->control_packet, d, n);
		break;
	case usb_redir_bulk_packet:
		usbredirparser_send_bulk_packet(p, id, &h->bulk_packet, d, n);
		break;
	case usb_redir_iso_packet:
		usbredirparser_send_iso_packet(p, id, &h->iso_packet, d, n);
		break;
	case usb_redir_interrupt_packet:
		usbredirparser_send_interrupt_packet(p, id, &h->interrupt_packet, d, n);
		break;
	default:
		fail(s->o, "send_pkt: type %u not handled", type);
		return;
	}
	usbredirparser_do_write(p);
	/* The guest announces everything: the host's caps decide the id width. */
	hdr = (s->host_caps & (1u << usb_redir_cap_64bits_ids)) ? 16 : 12;
	if (s->wlen < hdr + data_len) {
		fail(s->o, "session %u: type %u id %llu: parser wrote %zu bytes", s->session, type,
		     (unsigned long long)id, s->wlen);
		return;
	}
	memset(&pkt, 0, sizeof(pkt));
	pkt.dir = dir;
	pkt.type = type;
	pkt.id = id;
	pkt.known = 1;
	pkt.h = *h;
	pkt.raw = s->wbuf;
	pkt.raw_len = s->wlen;
	pkt.length = (uint32_t)(s->wlen - hdr);
	pkt.data = data_len ? s->wbuf + s->wlen - data_len : NULL;
	pkt.data_len = data_len;
	decode_and_output(s, &pkt);
	/* The host answers within tens of microseconds; the guest thinks longer. */
	s->o->ts += dir == UG_DIR_G2H ? 45000 : 120000;
}

/* Both hellos, through both parsers, so that each learns the other's caps. */
static void hellos(struct sess *s)
{
	struct usbredirparser *from[2] = { s->g, s->h };
	struct usbredirparser *to[2] = { s->h, s->g };
	static const char *const versions[2] = { "qemu usb-redir guest 7.2.22", "usbredirect 0.13.0" };

	for (int i = 0; i < 2; i++) {
		struct ug_usbredir_packet pkt;

		s->wlen = 0;
		usbredirparser_do_write(from[i]);
		if (s->wlen != 12 + 64 + 4) {
			fail(s->o, "hello of %zu bytes", s->wlen);
			return;
		}
		memset(&pkt, 0, sizeof(pkt));
		pkt.dir = i == 0 ? UG_DIR_G2H : UG_DIR_H2G;
		pkt.type = usb_redir_hello;
		pkt.known = 1;
		snprintf(pkt.h.hello.version, sizeof(pkt.h.hello.version), "%s", versions[i]);
		pkt.h.hello.caps[0] = i == 0 ? ALL_CAPS : s->host_caps;
		pkt.h.hello.caps_count = 1;
		pkt.raw = s->wbuf;
		pkt.raw_len = s->wlen;
		pkt.length = 68;
		/* The codec also gives a hello's cap words as its data. */
		pkt.data = s->wbuf + 12 + 64;
		pkt.data_len = 4;
		decode_and_output(s, &pkt);
		s->rbuf = s->wbuf;
		s->rlen = s->wlen;
		usbredirparser_do_read(to[i]);
		s->o->ts += 30000;
	}
}

static struct usbredirparser *make_parser(struct sess *s, const char *version, int flags,
                                         uint32_t cap_word)
{
	struct usbredirparser *p = usbredirparser_create();
	uint32_t caps[USB_REDIR_CAPS_SIZE] = { cap_word };

	p->priv = s;
	p->log_func = cb_log;
	p->read_func = cb_read;
	p->write_func = cb_write;
	p->hello_func = cb_hello;
	usbredirparser_init(p, version, caps, USB_REDIR_CAPS_SIZE, flags);
	return p;
}

static void sess_init(struct sess *s, struct out *o, uint32_t session, uint8_t devnum,
                      uint32_t host_caps)
{
	memset(s, 0, sizeof(*s));
	s->o = o;
	s->session = session;
	s->next_id = 1;
	s->dec = ug_usbredir_session_new();
	s->t = ug_tracker_new();
	s->m = ug_usbmon_new();
	ug_usbmon_set_address(s->m, 1, devnum);
	s->host_caps = host_caps;
	s->g = make_parser(s, "qemu usb-redir guest 7.2.22", 0, ALL_CAPS);
	s->h = make_parser(s, "usbredirect 0.13.0", usbredirparser_fl_usb_host, host_caps);
	hellos(s);
}

static void sess_end(struct sess *s)
{
	ug_tracker_finish(s->t, s->o->ts);
	{
		struct ug_transfer_event ev;

		while (ug_tracker_next(s->t, &ev) == 1)
			s->o->st->notices++;
	}
	usbredirparser_destroy(s->g);
	usbredirparser_destroy(s->h);
	ug_tracker_free(s->t);
	ug_usbmon_free(s->m);
	ug_usbredir_session_free(s->dec);
	free(s->wbuf);
}

/* ---- what the devices say ------------------------------------------------- */

static void ep_info(struct sess *s, const uint8_t *eps, const uint8_t *types,
                    const uint8_t *intervals, const uint16_t *mps, int n)
{
	union ug_usbredir_type_header h;

	memset(&h, 0, sizeof(h));
	memset(h.ep_info.type, usb_redir_type_invalid, 32);
	h.ep_info.type[0] = h.ep_info.type[16] = usb_redir_type_control;
	h.ep_info.max_packet_size[0] = h.ep_info.max_packet_size[16] = mps[0];
	for (int i = 1; i < n; i++) {
		unsigned idx = ((eps[i] & 0x80u) >> 3) | (eps[i] & 0x0fu);

		h.ep_info.type[idx] = types[i];
		h.ep_info.interval[idx] = intervals[i];
		h.ep_info.max_packet_size[idx] = mps[i];
	}
	send_pkt(s, UG_DIR_H2G, usb_redir_ep_info, 0, &h, NULL, 0);
}

static void interface_info(struct sess *s, uint8_t cls, uint8_t sub, uint8_t proto)
{
	union ug_usbredir_type_header h;

	memset(&h, 0, sizeof(h));
	h.interface_info.interface_count = 1;
	h.interface_info.interface_class[0] = cls;
	h.interface_info.interface_subclass[0] = sub;
	h.interface_info.interface_protocol[0] = proto;
	send_pkt(s, UG_DIR_H2G, usb_redir_interface_info, 0, &h, NULL, 0);
}

static void connect_device(struct sess *s, uint8_t speed, uint16_t vid, uint16_t pid, uint16_t bcd)
{
	union ug_usbredir_type_header h;

	memset(&h, 0, sizeof(h));
	h.device_connect.speed = speed;
	h.device_connect.vendor_id = vid;
	h.device_connect.product_id = pid;
	h.device_connect.device_version_bcd = bcd;
	send_pkt(s, UG_DIR_H2G, usb_redir_device_connect, 0, &h, NULL, 0);
}

/* A control transfer: the guest's request, then the host's answer. */
static void control(struct sess *s, uint8_t rt, uint8_t req, uint16_t value, uint16_t index,
                    uint16_t length, const uint8_t *out, const uint8_t *in, uint16_t in_len,
                    uint8_t status)
{
	union ug_usbredir_type_header h;
	uint64_t id = s->next_id++;

	memset(&h, 0, sizeof(h));
	h.control_packet.endpoint = rt & 0x80;
	h.control_packet.requesttype = rt;
	h.control_packet.request = req;
	h.control_packet.value = value;
	h.control_packet.index = index;
	h.control_packet.length = length;
	send_pkt(s, UG_DIR_G2H, usb_redir_control_packet, id, &h, (rt & 0x80) ? NULL : out,
	         (rt & 0x80) ? 0 : length);
	h.control_packet.status = status;
	h.control_packet.length = (rt & 0x80) ? in_len : length;
	send_pkt(s, UG_DIR_H2G, usb_redir_control_packet, id, &h, (rt & 0x80) ? in : NULL,
	         (rt & 0x80) ? in_len : 0);
	s->o->st->data_requests++;
}

static void get_descriptor(struct sess *s, uint8_t type, uint8_t index, uint16_t lang,
                           uint16_t length, const uint8_t *desc, uint16_t desc_len)
{
	uint16_t n = desc_len < length ? desc_len : length;

	control(s, 0x80, 0x06, (uint16_t)(type << 8 | index), lang, length, NULL, desc, n, 0);
}

static void string_descriptor(struct sess *s, uint8_t index, const char *ascii)
{
	uint8_t d[2 + 2 * 64];
	size_t n = strlen(ascii);

	d[0] = (uint8_t)(2 + 2 * n);
	d[1] = 0x03;
	for (size_t i = 0; i < n; i++) {
		d[2 + 2 * i] = (uint8_t)ascii[i];
		d[3 + 2 * i] = 0;
	}
	get_descriptor(s, 0x03, index, 0x0409, 255, d, d[0]);
}

static void set_configuration(struct sess *s, uint8_t value, void (*reinfo)(struct sess *))
{
	union ug_usbredir_type_header h;
	uint64_t id = s->next_id++;

	memset(&h, 0, sizeof(h));
	h.set_configuration.configuration = value;
	send_pkt(s, UG_DIR_G2H, usb_redir_set_configuration, id, &h, NULL, 0);
	/* usbredirhost re-sends the endpoint and interface info first. */
	reinfo(s);
	memset(&h, 0, sizeof(h));
	h.configuration_status.status = usb_redir_success;
	h.configuration_status.configuration = value;
	send_pkt(s, UG_DIR_H2G, usb_redir_configuration_status, id, &h, NULL, 0);
	s->o->st->synthesized++;
}

static void set_alt(struct sess *s, uint8_t iface, uint8_t alt, void (*reinfo)(struct sess *))
{
	union ug_usbredir_type_header h;
	uint64_t id = s->next_id++;

	memset(&h, 0, sizeof(h));
	h.set_alt_setting.interface = iface;
	h.set_alt_setting.alt = alt;
	send_pkt(s, UG_DIR_G2H, usb_redir_set_alt_setting, id, &h, NULL, 0);
	reinfo(s);
	memset(&h, 0, sizeof(h));
	h.alt_setting_status.interface = iface;
	h.alt_setting_status.alt = alt;
	send_pkt(s, UG_DIR_H2G, usb_redir_alt_setting_status, id, &h, NULL, 0);
	s->o->st->synthesized++;
}

static void bulk(struct sess *s, uint8_t ep, const uint8_t *data, uint32_t len, uint32_t in_len)
{
	union ug_usbredir_type_header h;
	uint64_t id = s->next_id++;
	int in = ep & 0x80;

	memset(&h, 0, sizeof(h));
	h.bulk_packet.endpoint = ep;
	h.bulk_packet.length = (uint16_t)len;
	h.bulk_packet.length_high = (uint16_t)(len >> 16);
	send_pkt(s, UG_DIR_G2H, usb_redir_bulk_packet, id, &h, in ? NULL : data, in ? 0 : len);
	if (in) {
		h.bulk_packet.length = (uint16_t)in_len;
		h.bulk_packet.length_high = (uint16_t)(in_len >> 16);
	}
	send_pkt(s, UG_DIR_H2G, usb_redir_bulk_packet, id, &h, in ? data : NULL, in ? in_len : 0);
	s->o->st->data_requests++;
}

/* ---- device 1: a USB 2.0 flash drive (SanDisk Cruzer Blade-like) --------- */

static const uint8_t msc_device[18] = {
	0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x40, 0x81, 0x07, 0x67, 0x55, 0x00, 0x01,
	0x01, 0x02, 0x03, 0x01,
};
static const uint8_t msc_config[32] = {
	0x09, 0x02, 0x20, 0x00, 0x01, 0x01, 0x00, 0x80, 0x32,       /* config 1, 100 mA */
	0x09, 0x04, 0x00, 0x00, 0x02, 0x08, 0x06, 0x50, 0x00,       /* mass storage, SCSI, BBB */
	0x07, 0x05, 0x81, 0x02, 0x00, 0x02, 0x00,                   /* bulk IN 512 */
	0x07, 0x05, 0x02, 0x02, 0x00, 0x02, 0x00,                   /* bulk OUT 512 */
};

static void msc_info(struct sess *s)
{
	static const uint8_t eps[3] = { 0, 0x81, 0x02 };
	static const uint8_t types[3] = { 0, usb_redir_type_bulk, usb_redir_type_bulk };
	static const uint8_t intervals[3] = { 0, 0, 0 };
	static const uint16_t mps[3] = { 64, 512, 512 };

	ep_info(s, eps, types, intervals, mps, 3);
	interface_info(s, 0x08, 0x06, 0x50);
}

static uint32_t cbw_tag = 0x10;

/* One SCSI command through Bulk-Only Transport: CBW, data, CSW. */
static void scsi(struct sess *s, const uint8_t *cdb, uint8_t cdb_len, const uint8_t *in,
                 uint32_t in_len)
{
	uint8_t cbw[31], csw[13];
	uint32_t tag = cbw_tag++;

	memset(cbw, 0, sizeof(cbw));
	memcpy(cbw, "USBC", 4);
	cbw[4] = (uint8_t)tag;
	cbw[5] = (uint8_t)(tag >> 8);
	cbw[8] = (uint8_t)in_len;
	cbw[9] = (uint8_t)(in_len >> 8);
	cbw[10] = (uint8_t)(in_len >> 16);
	cbw[11] = (uint8_t)(in_len >> 24);
	cbw[12] = in_len ? 0x80 : 0x00;
	cbw[13] = 0; /* LUN */
	cbw[14] = cdb_len;
	memcpy(cbw + 15, cdb, cdb_len);
	bulk(s, 0x02, cbw, 31, 0);
	if (in_len)
		bulk(s, 0x81, in, in_len, in_len);
	memset(csw, 0, sizeof(csw));
	memcpy(csw, "USBS", 4);
	csw[4] = (uint8_t)tag;
	csw[5] = (uint8_t)(tag >> 8);
	bulk(s, 0x81, csw, 13, 13);
}

static void flash_drive(struct out *o)
{
	static const uint8_t langs[4] = { 0x04, 0x03, 0x09, 0x04 };
	static const uint8_t inquiry_cdb[6] = { 0x12, 0x00, 0x00, 0x00, 0x24, 0x00 };
	static const uint8_t tur_cdb[6] = { 0x00 };
	static const uint8_t cap_cdb[10] = { 0x25 };
	static const uint8_t read0_cdb[10] = { 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00 };
	static const uint8_t readbig_cdb[10] = { 0x28, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x04, 0x00, 0x00 };
	/* Standard INQUIRY data: removable direct-access device, SPC-4. */
	static const uint8_t inquiry[36] = {
		0x00, 0x80, 0x06, 0x02, 0x1f, 0x00, 0x00, 0x00, 'S', 'a', 'n', 'D', 'i', 's', 'k', ' ',
		'C', 'r', 'u', 'z', 'e', 'r', ' ', 'B', 'l', 'a', 'd', 'e', ' ', ' ', ' ', ' ',
		'1', '.', '0', '0',
	};
	/* 128 MiB: last LBA 262143, 512-byte blocks. */
	static const uint8_t capacity[8] = { 0x00, 0x03, 0xff, 0xff, 0x00, 0x00, 0x02, 0x00 };
	static const uint8_t max_lun = 0;
	uint8_t *disk = calloc(1, 512 * 1024);
	union ug_usbredir_type_header h;
	struct sess s;
	uint64_t id;

	for (size_t i = 0; i < 512 * 1024; i++)
		disk[i] = (uint8_t)(i * 31 + (i >> 9));
	/* A partition table in the first sector, as a formatted stick has. */
	memset(disk, 0, 512);
	disk[446] = 0x00;
	disk[446 + 4] = 0x0c;
	disk[446 + 8] = 0x00;
	disk[446 + 9] = 0x08;
	disk[510] = 0x55;
	disk[511] = 0xaa;

	sess_init(&s, o, 1, 1, ALL_CAPS);
	msc_info(&s);
	connect_device(&s, usb_redir_speed_high, 0x0781, 0x5567, 0x0100);

	get_descriptor(&s, 0x01, 0, 0, 64, msc_device, 18);
	get_descriptor(&s, 0x01, 0, 0, 18, msc_device, 18);
	get_descriptor(&s, 0x02, 0, 0, 9, msc_config, 32);
	get_descriptor(&s, 0x02, 0, 0, 32, msc_config, 32);
	get_descriptor(&s, 0x03, 0, 0, 255, langs, 4);
	string_descriptor(&s, 2, "Cruzer Blade");
	string_descriptor(&s, 1, "SanDisk");
	string_descriptor(&s, 3, "4C530001230915117493");
	set_configuration(&s, 1, msc_info);
	control(&s, 0xa1, 0xfe, 0, 0, 1, NULL, &max_lun, 1, 0);

	scsi(&s, inquiry_cdb, 6, inquiry, 36);
	scsi(&s, tur_cdb, 6, NULL, 0);
	scsi(&s, cap_cdb, 10, capacity, 8);
	scsi(&s, read0_cdb, 10, disk, 4096);
	/* 512 KiB in one transfer: more than one usbmon record can carry. */
	scsi(&s, readbig_cdb, 10, disk, 512 * 1024);

	/* A read the guest gives up on: cancel, then the host's answer. */
	id = s.next_id++;
	memset(&h, 0, sizeof(h));
	h.bulk_packet.endpoint = 0x81;
	h.bulk_packet.length = 512;
	send_pkt(&s, UG_DIR_G2H, usb_redir_bulk_packet, id, &h, NULL, 0);
	send_pkt(&s, UG_DIR_G2H, usb_redir_cancel_data_packet, id, &h, NULL, 0);
	h.bulk_packet.status = usb_redir_cancelled;
	h.bulk_packet.length = 0;
	send_pkt(&s, UG_DIR_H2G, usb_redir_bulk_packet, id, &h, NULL, 0);
	o->st->data_requests++;

	sess_end(&s);
	free(disk);
}

/*
 * Device 4: the same flash drive behind an older usb-host that announces
 * neither 64-bit ids nor 32-bit bulk lengths (nor bulk streams or bulk
 * receiving): 12-byte headers, 8-byte bulk headers.
 */
static void flash_drive_old_host(struct out *o)
{
	static const uint8_t inquiry_cdb[6] = { 0x12, 0x00, 0x00, 0x00, 0x24, 0x00 };
	static const uint8_t inquiry[36] = {
		0x00, 0x80, 0x06, 0x02, 0x1f, 0x00, 0x00, 0x00, 'S', 'a', 'n', 'D', 'i', 's', 'k', ' ',
		'C', 'r', 'u', 'z', 'e', 'r', ' ', 'B', 'l', 'a', 'd', 'e', ' ', ' ', ' ', ' ',
		'1', '.', '0', '0',
	};
	const uint32_t caps = (1u << usb_redir_cap_connect_device_version) |
	                      (1u << usb_redir_cap_filter) |
	                      (1u << usb_redir_cap_device_disconnect_ack) |
	                      (1u << usb_redir_cap_ep_info_max_packet_size);
	struct sess s;

	sess_init(&s, o, 4, 4, caps);
	msc_info(&s);
	connect_device(&s, usb_redir_speed_high, 0x0781, 0x5567, 0x0100);
	get_descriptor(&s, 0x01, 0, 0, 18, msc_device, 18);
	get_descriptor(&s, 0x02, 0, 0, 32, msc_config, 32);
	set_configuration(&s, 1, msc_info);
	scsi(&s, inquiry_cdb, 6, inquiry, 36);
	sess_end(&s);
}

/* ---- device 2: a low-speed boot keyboard (Logitech K120-like) ------------ */

/* The boot keyboard report descriptor of HID 1.11 appendix E.6. */
static const uint8_t kbd_report[63] = {
	0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00,
	0x25, 0x01, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02, 0x95, 0x01, 0x75, 0x08, 0x81, 0x01,
	0x95, 0x05, 0x75, 0x01, 0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, 0x95, 0x01,
	0x75, 0x03, 0x91, 0x01, 0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07,
	0x19, 0x00, 0x29, 0x65, 0x81, 0x00, 0xc0,
};
static const uint8_t kbd_device[18] = {
	0x12, 0x01, 0x10, 0x01, 0x00, 0x00, 0x00, 0x08, 0x6d, 0x04, 0x1c, 0xc3, 0x00, 0x64,
	0x01, 0x02, 0x00, 0x01,
};
static const uint8_t kbd_config[34] = {
	0x09, 0x02, 0x22, 0x00, 0x01, 0x01, 0x00, 0xa0, 0x32,       /* remote wakeup, 100 mA */
	0x09, 0x04, 0x00, 0x00, 0x01, 0x03, 0x01, 0x01, 0x00,       /* HID, boot, keyboard */
	0x09, 0x21, 0x10, 0x01, 0x00, 0x01, 0x22, 0x3f, 0x00,       /* HID 1.10, report 63 */
	0x07, 0x05, 0x81, 0x03, 0x08, 0x00, 0x0a,                   /* interrupt IN 8, 10 ms */
};

static void kbd_info(struct sess *s)
{
	static const uint8_t eps[2] = { 0, 0x81 };
	static const uint8_t types[2] = { 0, usb_redir_type_interrupt };
	static const uint8_t intervals[2] = { 0, 10 };
	static const uint16_t mps[2] = { 8, 8 };

	ep_info(s, eps, types, intervals, mps, 2);
	interface_info(s, 0x03, 0x01, 0x01);
}

static void key_report(struct sess *s, uint64_t id, uint8_t modifiers, uint8_t key)
{
	union ug_usbredir_type_header h;
	uint8_t report[8] = { modifiers, 0, key, 0, 0, 0, 0, 0 };

	memset(&h, 0, sizeof(h));
	h.interrupt_packet.endpoint = 0x81;
	h.interrupt_packet.length = 8;
	send_pkt(s, UG_DIR_H2G, usb_redir_interrupt_packet, id, &h, report, 8);
	s->o->st->stream_packets++;
	s->o->ts += 8000000; /* a typist's pace */
}

static void keyboard(struct out *o)
{
	static const uint8_t langs[4] = { 0x04, 0x03, 0x09, 0x04 };
	static const uint8_t leds = 0x02; /* caps lock */
	union ug_usbredir_type_header h;
	struct sess s;
	uint64_t id;

	sess_init(&s, o, 2, 2, ALL_CAPS);
	kbd_info(&s);
	connect_device(&s, usb_redir_speed_low, 0x046d, 0xc31c, 0x6400);

	get_descriptor(&s, 0x01, 0, 0, 64, kbd_device, 18);
	get_descriptor(&s, 0x01, 0, 0, 18, kbd_device, 18);
	get_descriptor(&s, 0x02, 0, 0, 9, kbd_config, 34);
	get_descriptor(&s, 0x02, 0, 0, 34, kbd_config, 34);
	get_descriptor(&s, 0x03, 0, 0, 255, langs, 4);
	string_descriptor(&s, 2, "USB Keyboard");
	string_descriptor(&s, 1, "Logitech");
	set_configuration(&s, 1, kbd_info);

	id = s.next_id++;
	send_pkt(&s, UG_DIR_G2H, usb_redir_get_configuration, id, &h, NULL, 0);
	memset(&h, 0, sizeof(h));
	h.configuration_status.configuration = 1;
	send_pkt(&s, UG_DIR_H2G, usb_redir_configuration_status, id, &h, NULL, 0);
	o->st->synthesized++;

	control(&s, 0x21, 0x0a, 0, 0, 0, NULL, NULL, 0, 0);          /* SET_IDLE */
	control(&s, 0x81, 0x06, 0x2200, 0, 63, NULL, kbd_report, 63, 0);
	set_alt(&s, 0, 0, kbd_info);
	id = s.next_id++;
	memset(&h, 0, sizeof(h));
	h.get_alt_setting.interface = 0;
	send_pkt(&s, UG_DIR_G2H, usb_redir_get_alt_setting, id, &h, NULL, 0);
	memset(&h, 0, sizeof(h));
	send_pkt(&s, UG_DIR_H2G, usb_redir_alt_setting_status, id, &h, NULL, 0);
	o->st->synthesized++;

	id = s.next_id++;
	memset(&h, 0, sizeof(h));
	h.start_interrupt_receiving.endpoint = 0x81;
	send_pkt(&s, UG_DIR_G2H, usb_redir_start_interrupt_receiving, id, &h, NULL, 0);
	memset(&h, 0, sizeof(h));
	h.interrupt_receiving_status.endpoint = 0x81;
	send_pkt(&s, UG_DIR_H2G, usb_redir_interrupt_receiving_status, id, &h, NULL, 0);

	/* "aB": a, release, shift+b, release; the host numbers its packets. */
	key_report(&s, 1, 0x00, 0x04);
	key_report(&s, 2, 0x00, 0x00);
	key_report(&s, 3, 0x02, 0x05);
	key_report(&s, 4, 0x00, 0x00);
	control(&s, 0x21, 0x09, 0x0200, 0, 1, &leds, NULL, 0, 0);    /* SET_REPORT output: LEDs */

	send_pkt(&s, UG_DIR_H2G, usb_redir_device_disconnect, 0, &h, NULL, 0);
	sess_end(&s);
}

/* ---- device 3: a full-speed vendor device with iso endpoints ------------- */

static const uint8_t iso_device[18] = {
	0x12, 0x01, 0x00, 0x02, 0xff, 0x00, 0x00, 0x40, 0xd8, 0x04, 0x0e, 0x00, 0x01, 0x00,
	0x00, 0x00, 0x00, 0x01,
};
static const uint8_t iso_config[41] = {
	0x09, 0x02, 0x29, 0x00, 0x01, 0x01, 0x00, 0x80, 0x32,
	0x09, 0x04, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00,       /* alt 0: no endpoints */
	0x09, 0x04, 0x00, 0x01, 0x02, 0xff, 0x00, 0x00, 0x00,       /* alt 1: two iso endpoints */
	0x07, 0x05, 0x83, 0x05, 0xc0, 0x00, 0x01,                   /* iso IN async 192 */
	0x07, 0x05, 0x03, 0x05, 0xc0, 0x00, 0x01,                   /* iso OUT async 192 */
};

static void iso_info0(struct sess *s)
{
	static const uint8_t eps[1] = { 0 };
	static const uint8_t types[1] = { 0 };
	static const uint8_t intervals[1] = { 0 };
	static const uint16_t mps[1] = { 64 };

	ep_info(s, eps, types, intervals, mps, 1);
	interface_info(s, 0xff, 0, 0);
}

static void iso_info1(struct sess *s)
{
	static const uint8_t eps[3] = { 0, 0x83, 0x03 };
	static const uint8_t types[3] = { 0, usb_redir_type_iso, usb_redir_type_iso };
	static const uint8_t intervals[3] = { 0, 1, 1 };
	static const uint16_t mps[3] = { 64, 192, 192 };

	ep_info(s, eps, types, intervals, mps, 3);
	interface_info(s, 0xff, 0, 0);
}

static void iso_device_session(struct out *o)
{
	union ug_usbredir_type_header h;
	uint8_t frame[192];
	struct sess s;
	uint64_t id;

	sess_init(&s, o, 3, 3, ALL_CAPS);
	iso_info0(&s);
	connect_device(&s, usb_redir_speed_full, 0x04d8, 0x000e, 0x0001);
	get_descriptor(&s, 0x01, 0, 0, 18, iso_device, 18);
	get_descriptor(&s, 0x02, 0, 0, 41, iso_config, 41);
	set_configuration(&s, 1, iso_info0);
	set_alt(&s, 0, 1, iso_info1);

	id = s.next_id++;
	memset(&h, 0, sizeof(h));
	h.start_iso_stream.endpoint = 0x83;
	h.start_iso_stream.pkts_per_urb = 8;
	h.start_iso_stream.no_urbs = 3;
	send_pkt(&s, UG_DIR_G2H, usb_redir_start_iso_stream, id, &h, NULL, 0);
	memset(&h, 0, sizeof(h));
	h.iso_stream_status.endpoint = 0x83;
	send_pkt(&s, UG_DIR_H2G, usb_redir_iso_stream_status, id, &h, NULL, 0);
	for (uint64_t i = 0; i < 3; i++) {
		memset(frame, (int)(0x30 + i), sizeof(frame));
		memset(&h, 0, sizeof(h));
		h.iso_packet.endpoint = 0x83;
		h.iso_packet.length = sizeof(frame);
		send_pkt(&s, UG_DIR_H2G, usb_redir_iso_packet, 100 + i, &h, frame, sizeof(frame));
		o->st->stream_packets++;
	}
	/* Iso OUT: the guest streams frames; no per-packet answer comes. */
	id = s.next_id++;
	memset(&h, 0, sizeof(h));
	h.start_iso_stream.endpoint = 0x03;
	h.start_iso_stream.pkts_per_urb = 8;
	h.start_iso_stream.no_urbs = 3;
	send_pkt(&s, UG_DIR_G2H, usb_redir_start_iso_stream, id, &h, NULL, 0);
	for (int i = 0; i < 2; i++) {
		memset(frame, 0x60 + i, sizeof(frame));
		memset(&h, 0, sizeof(h));
		h.iso_packet.endpoint = 0x03;
		h.iso_packet.length = sizeof(frame);
		send_pkt(&s, UG_DIR_G2H, usb_redir_iso_packet, s.next_id++, &h, frame, sizeof(frame));
		o->st->stream_packets++;
	}
	id = s.next_id++;
	memset(&h, 0, sizeof(h));
	h.stop_iso_stream.endpoint = 0x83;
	send_pkt(&s, UG_DIR_G2H, usb_redir_stop_iso_stream, id, &h, NULL, 0);
	sess_end(&s);
}

int usbmon_session_write(const char *usbmon_path, const char *raw_path, FILE *text,
                         FILE *json, struct session_stats *ret_stats)
{
	struct session_stats st;
	struct out o;
	int rc = 0;

	memset(&st, 0, sizeof(st));
	memset(&o, 0, sizeof(o));
	o.st = &st;
	o.ts = T0_NS;
	o.text = text;
	o.json = json;
	cbw_tag = 0x10;
	if (usbmon_path) {
		o.mon = ug_pcap_writer_new();
		if (ug_pcap_writer_open(o.mon, usbmon_path, UG_USBMON_LINKTYPE) != 0)
			fail(&o, "%s", ug_pcap_writer_errmsg(o.mon));
	}
	if (raw_path) {
		o.raw = ug_pcap_writer_new();
		if (ug_pcap_writer_open(o.raw, raw_path, UG_RAW_LINKTYPE) != 0)
			fail(&o, "%s", ug_pcap_writer_errmsg(o.raw));
	}
	if (!o.failed) {
		flash_drive(&o);
		keyboard(&o);
		iso_device_session(&o);
		flash_drive_old_host(&o);
	}
	if (o.mon && ug_pcap_writer_close(o.mon) != 0)
		fail(&o, "%s", ug_pcap_writer_errmsg(o.mon));
	if (o.raw && ug_pcap_writer_close(o.raw) != 0)
		fail(&o, "%s", ug_pcap_writer_errmsg(o.raw));
	ug_pcap_writer_free(o.mon);
	ug_pcap_writer_free(o.raw);
	if (o.failed)
		rc = -1;
	else
		*ret_stats = st;
	return rc;
}
