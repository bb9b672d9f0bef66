/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* replay-testgen.h: builds small usbredir sessions with the encoder and records them through ug_recorder. */
#ifndef REPLAY_TESTGEN_H
#define REPLAY_TESTGEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "usbgate.h"

#define TG_CAPS ((1u << usb_redir_cap_connect_device_version) | (1u << usb_redir_cap_filter) | \
		 (1u << usb_redir_cap_ep_info_max_packet_size) | (1u << usb_redir_cap_64bits_ids) | \
		 (1u << usb_redir_cap_32bits_bulk_length))

/* The device the session describes: a bcdUSB 2.00 mass storage stick with
 * bulk endpoints 0x81/0x02, plus an interrupt IN endpoint 0x83. */
static const uint8_t tg_dev_desc[18] = {
	18, 1, 0x00, 0x02, 0, 0, 0, 64, 0xf4, 0x46, 0x01, 0x00, 0x00, 0x01, 1, 2, 3, 1,
};
static const uint8_t tg_cfg_desc[39] = {
	9, 2, 39, 0, 1, 1, 0, 0x80, 50,
	9, 4, 0, 0, 3, 8, 6, 0x50, 0,
	7, 5, 0x81, 2, 0x00, 0x02, 0,
	7, 5, 0x02, 2, 0x00, 0x02, 0,
	7, 5, 0x83, 3, 0x08, 0x00, 10,
};

struct tg {
	GByteArray *s[2];       /* the encoded byte stream per direction */
	GArray *order;          /* (dir, start, len) per packet, in session order */
	uint64_t next_id;
};

struct tg_pkt {
	int dir;
	guint start, len;
};

static inline void tg_init(struct tg *g)
{
	g->s[0] = g_byte_array_new();
	g->s[1] = g_byte_array_new();
	g->order = g_array_new(FALSE, FALSE, sizeof(struct tg_pkt));
	g->next_id = 1;
}

static inline void tg_free(struct tg *g)
{
	g_byte_array_free(g->s[0], TRUE);
	g_byte_array_free(g->s[1], TRUE);
	g_array_free(g->order, TRUE);
}

static inline void tg_add(struct tg *g, int dir, struct ug_usbredir_packet *p)
{
	size_t len = 0;
	struct tg_pkt tp;
	uint8_t *buf;

	p->dir = dir;
	ug_usbredir_encode(TG_CAPS, p, NULL, 0, &len);
	buf = g_malloc(len);
	if (ug_usbredir_encode(TG_CAPS, p, buf, len, &len) < 0)
		abort();
	tp.dir = dir;
	tp.start = g->s[dir]->len;
	tp.len = (guint)len;
	g_byte_array_append(g->s[dir], buf, (guint)len);
	g_array_append_val(g->order, tp);
	g_free(buf);
}

static inline void tg_hellos(struct tg *g)
{
	struct ug_usbredir_packet p;

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_hello;
	p.h.hello.caps_count = 1;
	p.h.hello.caps[0] = TG_CAPS;
	snprintf(p.h.hello.version, sizeof(p.h.hello.version), "qemu usb-redir guest test");
	tg_add(g, UG_DIR_G2H, &p);
	snprintf(p.h.hello.version, sizeof(p.h.hello.version), "test host");
	tg_add(g, UG_DIR_H2G, &p);
}

static inline void tg_device(struct tg *g)
{
	struct ug_usbredir_packet p;

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_ep_info;
	for (int i = 0; i < 32; i++)
		p.h.ep_info.type[i] = usb_redir_type_invalid;
	p.h.ep_info.type[0] = p.h.ep_info.type[16] = usb_redir_type_control;
	p.h.ep_info.max_packet_size[0] = p.h.ep_info.max_packet_size[16] = 64;
	p.h.ep_info.type[17] = usb_redir_type_bulk;
	p.h.ep_info.max_packet_size[17] = 512;
	p.h.ep_info.type[2] = usb_redir_type_bulk;
	p.h.ep_info.max_packet_size[2] = 512;
	p.h.ep_info.type[19] = usb_redir_type_interrupt;
	p.h.ep_info.interval[19] = 10;
	p.h.ep_info.max_packet_size[19] = 8;
	tg_add(g, UG_DIR_H2G, &p);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_interface_info;
	p.h.interface_info.interface_count = 1;
	p.h.interface_info.interface_class[0] = 8;
	p.h.interface_info.interface_subclass[0] = 6;
	p.h.interface_info.interface_protocol[0] = 0x50;
	tg_add(g, UG_DIR_H2G, &p);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_device_connect;
	p.h.device_connect.speed = usb_redir_speed_high;
	p.h.device_connect.vendor_id = 0x46f4;
	p.h.device_connect.product_id = 0x0001;
	p.h.device_connect.device_version_bcd = 0x0100;
	tg_add(g, UG_DIR_H2G, &p);
}

/* A control IN transfer answered with data. */
static inline uint64_t tg_control_in(struct tg *g, uint8_t rt, uint8_t req, uint16_t value,
				     uint16_t index, uint16_t length, const uint8_t *data,
				     uint16_t data_len, uint8_t status)
{
	struct ug_usbredir_packet p;
	uint64_t id = g->next_id++;

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_control_packet;
	p.id = id;
	p.h.control_packet.endpoint = 0x80;
	p.h.control_packet.requesttype = rt;
	p.h.control_packet.request = req;
	p.h.control_packet.value = value;
	p.h.control_packet.index = index;
	p.h.control_packet.length = length;
	tg_add(g, UG_DIR_G2H, &p);
	p.h.control_packet.status = status;
	p.h.control_packet.length = data_len;
	p.data = data;
	p.data_len = data_len;
	tg_add(g, UG_DIR_H2G, &p);
	return id;
}

static inline void tg_set_configuration(struct tg *g, uint8_t config)
{
	struct ug_usbredir_packet p;
	uint64_t id = g->next_id++;

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_set_configuration;
	p.id = id;
	p.h.set_configuration.configuration = config;
	tg_add(g, UG_DIR_G2H, &p);
	tg_device(g); /* ep_info, interface_info (and a device_connect we drop) */
	g_array_set_size(g->order, g->order->len - 1);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_configuration_status;
	p.id = id;
	p.h.configuration_status.configuration = config;
	tg_add(g, UG_DIR_H2G, &p);
}

/* One bulk transfer: OUT with data, or IN answered with data. */
static inline void tg_bulk(struct tg *g, uint8_t ep, const uint8_t *out, uint32_t out_len,
			   uint32_t in_req, const uint8_t *in, uint32_t in_len, uint8_t status)
{
	struct ug_usbredir_packet p;
	uint64_t id = g->next_id++;
	uint32_t n = (ep & 0x80) ? in_req : out_len;

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_bulk_packet;
	p.id = id;
	p.h.bulk_packet.endpoint = ep;
	p.h.bulk_packet.length = (uint16_t)n;
	p.h.bulk_packet.length_high = (uint16_t)(n >> 16);
	p.data = (ep & 0x80) ? NULL : out;
	p.data_len = (ep & 0x80) ? 0 : out_len;
	tg_add(g, UG_DIR_G2H, &p);
	n = (ep & 0x80) ? in_len : out_len;
	p.h.bulk_packet.status = status;
	p.h.bulk_packet.length = (uint16_t)n;
	p.h.bulk_packet.length_high = (uint16_t)(n >> 16);
	p.data = (ep & 0x80) ? in : NULL;
	p.data_len = (ep & 0x80) ? in_len : 0;
	tg_add(g, UG_DIR_H2G, &p);
}

static inline void tg_cbw(uint8_t cbw[31], uint32_t tag, uint32_t lba, uint32_t len)
{
	memset(cbw, 0, 31);
	memcpy(cbw, "USBC", 4);
	cbw[4] = (uint8_t)tag;
	cbw[5] = (uint8_t)(tag >> 8);
	cbw[8] = (uint8_t)len;
	cbw[9] = (uint8_t)(len >> 8);
	cbw[12] = 0x80;
	cbw[14] = 10;
	cbw[15] = 0x28; /* READ(10) */
	cbw[17] = (uint8_t)(lba >> 24);
	cbw[18] = (uint8_t)(lba >> 16);
	cbw[19] = (uint8_t)(lba >> 8);
	cbw[20] = (uint8_t)lba;
	cbw[23] = (uint8_t)(len / 512);
}

static inline void tg_csw(uint8_t csw[13], uint32_t tag)
{
	memset(csw, 0, 13);
	memcpy(csw, "USBS", 4);
	csw[4] = (uint8_t)tag;
	csw[5] = (uint8_t)(tag >> 8);
}

/* A SCSI READ through bulk-only transport: CBW, data, CSW. */
static inline void tg_read(struct tg *g, uint32_t tag, uint32_t lba, uint32_t len)
{
	uint8_t cbw[31], csw[13];
	uint8_t *data = g_malloc(len);

	tg_cbw(cbw, tag, lba, len);
	tg_csw(csw, tag);
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(lba * 7 + i);
	tg_bulk(g, 0x02, cbw, 31, 0, NULL, 0, 0);
	tg_bulk(g, 0x81, NULL, 0, len, data, len, 0);
	tg_bulk(g, 0x81, NULL, 0, 13, csw, 13, 0);
	g_free(data);
}

/* start_interrupt_receiving on 0x83 and n pushed reports. */
static inline void tg_interrupt_stream(struct tg *g, int n)
{
	struct ug_usbredir_packet p;
	uint64_t id = g->next_id++;
	uint8_t report[8];

	memset(&p, 0, sizeof(p));
	p.type = usb_redir_start_interrupt_receiving;
	p.id = id;
	p.h.start_interrupt_receiving.endpoint = 0x83;
	tg_add(g, UG_DIR_G2H, &p);
	memset(&p, 0, sizeof(p));
	p.type = usb_redir_interrupt_receiving_status;
	p.id = id;
	p.h.interrupt_receiving_status.endpoint = 0x83;
	tg_add(g, UG_DIR_H2G, &p);
	for (int i = 0; i < n; i++) {
		memset(report, 0, sizeof(report));
		report[2] = (uint8_t)(4 + i);
		memset(&p, 0, sizeof(p));
		p.type = usb_redir_interrupt_packet;
		p.id = 1000 + (uint64_t)i;
		p.h.interrupt_packet.endpoint = 0x83;
		p.h.interrupt_packet.length = 8;
		p.data = report;
		p.data_len = 8;
		tg_add(g, UG_DIR_H2G, &p);
	}
}

/* The standard session of the tests: enumeration, two reads, a stream. */
static inline void tg_standard(struct tg *g)
{
	tg_hellos(g);
	tg_device(g);
	tg_control_in(g, 0x80, 6, 0x0100, 0, 18, tg_dev_desc, 18, 0);
	tg_control_in(g, 0x80, 6, 0x0200, 0, 9, tg_cfg_desc, 9, 0);
	tg_control_in(g, 0x80, 6, 0x0200, 0, 39, tg_cfg_desc, 39, 0);
	tg_set_configuration(g, 1);
	tg_read(g, 1, 0, 512);
	tg_read(g, 2, 8, 4096);
	tg_interrupt_stream(g, 3);
}

/* Writes the session through ug_recorder (raw and/or usbmon; NULL to skip),
 * packet by packet in session order, 1 ms apart. */
static inline int tg_record(struct tg *g, const char *raw, const char *usbmon)
{
	ug_recorder *r = ug_recorder_new();
	int s, rc;
	uint64_t ts = 1700000000ull * 1000000000ull;

	if (raw && ug_recorder_open_raw(r, raw) < 0)
		return -1;
	if (usbmon && ug_recorder_open_usbmon(r, usbmon) < 0)
		return -1;
	s = ug_recorder_add_session(r, "testgen");
	for (guint i = 0; i < g->order->len; i++) {
		struct tg_pkt *tp = &g_array_index(g->order, struct tg_pkt, i);

		ug_recorder_feed(r, s, tp->dir, g->s[tp->dir]->data + tp->start, tp->len, ts);
		ts += 1000000;
	}
	ug_recorder_end_session(r, s, ts);
	rc = ug_recorder_finish(r);
	ug_recorder_free(r);
	return rc;
}

/* A temporary file name under the test's build directory. */
static inline char *tg_tmpname(const char *tag)
{
	return g_strdup_printf("%s/ug-test-%s-%d.pcap", g_get_tmp_dir(), tag, (int)getpid());
}

#endif /* REPLAY_TESTGEN_H */

/* ---- a scripted usbredir peer on a real socket, for the endpoint tests ---- */
#include <sys/socket.h>

struct tg_rx {
	struct ug_usbredir_packet pkt;  /* data points into data below */
	uint8_t *data;
};

struct tg_peer {
	ug_transport *t;
	ug_usbredir_session *s;
	enum ug_dir rx_dir;             /* what the peer receives */
	GArray *rx;                     /* struct tg_rx */
	int closed;
};

static inline void tg_peer_on_data(ug_transport *t, const uint8_t *d, size_t n, void *u)
{
	struct tg_peer *p = u;
	struct ug_usbredir_packet pk;

	(void)t;
	ug_usbredir_session_feed(p->s, p->rx_dir, d, n);
	while (ug_usbredir_session_next(p->s, p->rx_dir, &pk) == 1) {
		struct tg_rx r;

		r.pkt = pk;
		r.data = pk.data_len ? g_memdup2(pk.data, pk.data_len) : NULL;
		r.pkt.data = r.data;
		r.pkt.raw = NULL;
		g_array_append_val(p->rx, r);
	}
}

static inline void tg_peer_on_closed(ug_transport *t, int e, const char *m, void *u)
{
	(void)t;
	(void)e;
	(void)m;
	((struct tg_peer *)u)->closed = 1;
}

/* Makes a connected socket pair: *other gets the second end as a transport
 * for the endpoint under test; the peer keeps the first. */
static inline void tg_peer_init(struct tg_peer *p, enum ug_dir rx_dir, ug_transport **other)
{
	int sv[2];

	memset(p, 0, sizeof(*p));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	p->t = ug_transport_socket_new(sv[0], "test peer");
	*other = ug_transport_socket_new(sv[1], "endpoint under test");
	p->s = ug_usbredir_session_new();
	p->rx_dir = rx_dir;
	p->rx = g_array_new(FALSE, FALSE, sizeof(struct tg_rx));
	ug_transport_set_callbacks(p->t, tg_peer_on_data, tg_peer_on_closed, p);
}

static inline void tg_peer_free(struct tg_peer *p)
{
	for (guint i = 0; i < p->rx->len; i++)
		g_free(g_array_index(p->rx, struct tg_rx, i).data);
	g_array_free(p->rx, TRUE);
	ug_transport_free(p->t);
	ug_usbredir_session_free(p->s);
}

/* Sends a packet from the peer (its direction is !rx_dir); a hello is fed
 * to the peer's own decoder too, so that it learns the caps. */
static inline void tg_peer_send(struct tg_peer *p, struct ug_usbredir_packet *pk)
{
	uint8_t buf[70000];
	size_t len = 0;
	enum ug_dir tx = p->rx_dir == UG_DIR_G2H ? UG_DIR_H2G : UG_DIR_G2H;
	struct ug_usbredir_packet dummy;

	if (ug_usbredir_encode(pk->type == usb_redir_hello ? 0 : ug_usbredir_session_caps(p->s), pk,
			       buf, sizeof(buf), &len) < 0)
		abort();
	ug_transport_send(p->t, buf, len);
	if (pk->type == usb_redir_hello) {
		ug_usbredir_session_feed(p->s, tx, buf, len);
		while (ug_usbredir_session_next(p->s, tx, &dummy) == 1)
			;
	}
}

static inline void tg_peer_send_bytes(struct tg_peer *p, const void *b, size_t n)
{
	ug_transport_send(p->t, b, n);
}

/* Runs the default main context until the peer has received n packets (or
 * closed), at most 3 s. Returns 1 when it got them. */
static inline int tg_run_until(struct tg_peer *p, guint n)
{
	gint64 end = g_get_monotonic_time() + 3000000;

	while (p->rx->len < n && !p->closed && g_get_monotonic_time() < end) {
		if (!g_main_context_iteration(NULL, FALSE))
			g_usleep(1000);
	}
	return p->rx->len >= n;
}

static inline void tg_run_ms(unsigned ms)
{
	gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;

	while (g_get_monotonic_time() < end)
		if (!g_main_context_iteration(NULL, FALSE))
			g_usleep(1000);
}

static inline const struct ug_usbredir_packet *tg_rx_get(struct tg_peer *p, guint i)
{
	return &g_array_index(p->rx, struct tg_rx, i).pkt;
}
