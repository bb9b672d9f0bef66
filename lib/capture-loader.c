/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* capture-loader.c: loads a raw usbredir record or a usbmon pcap into an in-memory usbredir session. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <pcap/pcap.h>

#include "buf.h"
#include "common.h"
#include "usbredir-codec.h"

/*
 * Packets are kept compactly: an index entry each, their type headers (as the
 * bytes of the usbredirproto.h struct, struct_size of the type) in one
 * arena and their data in another. Arenas grow by reallocation, so entries
 * hold offsets, never pointers.
 */
struct entry {
	uint64_t id;
	uint64_t record;
	uint64_t ts_ns;
	uint64_t data_off;
	uint32_t data_len;
	uint32_t hdr_off;
	uint32_t type;
	uint16_t hdr_len;
	uint8_t dir;
};

struct ug_recording {
	struct ug_recording_limits lim;
	struct entry *ents;
	size_t n, alloc;
	struct ug_buf hdrs;
	struct ug_buf data;
	uint32_t caps[2];
	int have_caps[2];
	int speed;              /* -1: not set */
	uint32_t session;       /* 0: the first */
	int format;
	int loaded;
	char errmsg[UG_ERRMSG_SIZE];
};

UG_EXPORT ug_recording *ug_recording_new(void)
{
	ug_recording *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->lim.max_packets = UG_RECORDING_DEFAULT_MAX_PACKETS;
	r->lim.max_bytes = UG_RECORDING_DEFAULT_MAX_BYTES;
	r->lim.max_packet = UG_USBREDIR_DEFAULT_MAX_PACKET;
	r->lim.max_pending = UG_RECORDING_DEFAULT_MAX_PENDING;
	r->speed = -1;
	r->format = -1;
	ug_buf_init(&r->hdrs, (size_t)r->lim.max_bytes);
	ug_buf_init(&r->data, (size_t)r->lim.max_bytes);
	return r;
}

UG_EXPORT void ug_recording_free(ug_recording *r)
{
	if (!r)
		return;
	free(r->ents);
	ug_buf_release(&r->hdrs);
	ug_buf_release(&r->data);
	free(r);
}

UG_EXPORT int ug_recording_set_limits(ug_recording *r, const struct ug_recording_limits *l)
{
	if (!r || !l)
		return UG_E_INVAL;
	if (r->loaded)
		return ug_errmsg_set(r->errmsg, UG_E_STATE, "limits must be set before loading");
	if (l->max_packets)
		r->lim.max_packets = l->max_packets;
	if (l->max_bytes) {
		r->lim.max_bytes = l->max_bytes;
		r->hdrs.max = r->data.max = (size_t)l->max_bytes;
	}
	if (l->max_packet)
		r->lim.max_packet = l->max_packet;
	if (l->max_pending)
		r->lim.max_pending = l->max_pending;
	return 0;
}

UG_EXPORT int ug_recording_set_speed(ug_recording *r, int speed)
{
	if (!r || speed < usb_redir_speed_low || speed > usb_redir_speed_unknown)
		return UG_E_INVAL;
	r->speed = speed;
	return 0;
}

UG_EXPORT int ug_recording_set_session(ug_recording *r, uint32_t session)
{
	if (!r)
		return UG_E_INVAL;
	r->session = session;
	return 0;
}

UG_EXPORT size_t ug_recording_count(const ug_recording *r)
{
	return r ? r->n : 0;
}

UG_EXPORT uint32_t ug_recording_caps(const ug_recording *r, enum ug_dir dir)
{
	return r && (dir == UG_DIR_G2H || dir == UG_DIR_H2G) ? r->caps[dir] : 0;
}

UG_EXPORT uint32_t ug_recording_negotiated_caps(const ug_recording *r)
{
	return r ? ug_usbredir_caps_normalize(r->caps[0] & r->caps[1]) : 0;
}

UG_EXPORT int ug_recording_format(const ug_recording *r)
{
	return r && r->loaded ? r->format : -1;
}

UG_EXPORT uint64_t ug_recording_memory(const ug_recording *r)
{
	if (!r)
		return 0;
	return (uint64_t)r->alloc * sizeof(struct entry) + r->hdrs.alloc + r->data.alloc;
}

UG_EXPORT const char *ug_recording_errmsg(const ug_recording *r)
{
	return r ? r->errmsg : "";
}

static const struct {
	int speed;
	const char *name, *alias, *label;
} speeds[] = {
	{ usb_redir_speed_low, "low", "1.5", "low (1.5 Mb/s)" },
	{ usb_redir_speed_full, "full", "12", "full (12 Mb/s)" },
	{ usb_redir_speed_high, "high", "480", "high (480 Mb/s)" },
	{ usb_redir_speed_super, "super", "5000", "super (5 Gb/s)" },
};

UG_EXPORT const char *ug_recording_speed_name(int speed)
{
	for (size_t i = 0; i < UG_NELEMS(speeds); i++)
		if (speeds[i].speed == speed)
			return speeds[i].label;
	return "unknown";
}

UG_EXPORT int ug_recording_parse_speed(const char *text, int *ret_speed)
{
	if (!text || !ret_speed)
		return UG_E_INVAL;
	for (size_t i = 0; i < UG_NELEMS(speeds); i++)
		if (!strcmp(text, speeds[i].name) || !strcmp(text, speeds[i].alias)) {
			*ret_speed = speeds[i].speed;
			return 0;
		}
	return UG_E_INVAL;
}

UG_EXPORT int ug_recording_get(const ug_recording *r, size_t index,
			       struct ug_recorded_packet *ret)
{
	const struct entry *e;

	if (!r || !ret || index >= r->n)
		return UG_E_INVAL;
	e = &r->ents[index];
	memset(ret, 0, sizeof(*ret));
	ret->pkt.dir = e->dir;
	ret->pkt.type = e->type;
	ret->pkt.id = e->id;
	ret->pkt.known = 1;
	if (e->hdr_len)
		memcpy(&ret->pkt.h, ug_buf_peek(&r->hdrs) + e->hdr_off, e->hdr_len);
	ret->pkt.data = e->data_len ? ug_buf_peek(&r->data) + e->data_off : NULL;
	ret->pkt.data_len = e->data_len;
	ret->pkt.length = e->hdr_len + e->data_len;
	ret->record = e->record;
	ret->ts_ns = e->ts_ns;
	return 0;
}

UG_EXPORT int ug_recording_device(const ug_recording *r,
				  struct usb_redir_device_connect_header *ret_dev)
{
	struct ug_recorded_packet p;

	if (!r || !ret_dev)
		return UG_E_INVAL;
	for (size_t i = 0; i < r->n; i++) {
		if (r->ents[i].type != usb_redir_device_connect || r->ents[i].dir != UG_DIR_H2G)
			continue;
		ug_recording_get(r, i, &p);
		*ret_dev = p.pkt.h.device_connect;
		return 0;
	}
	return UG_E_NOTFOUND;
}

/* Appends one packet (header struct copied from h, data copied). */
static int add_packet(ug_recording *r, enum ug_dir dir, uint32_t type, uint64_t id,
		      const union ug_usbredir_type_header *h, const uint8_t *data,
		      uint32_t data_len, uint64_t record, uint64_t ts_ns)
{
	const struct ug_usbredir_type_desc *td = ug_usbredir_type_desc(type);
	size_t hdr_len = td ? td->struct_size : 0;
	struct entry *e;
	uint64_t total;
	int rc;

	if (r->n >= r->lim.max_packets)
		return ug_errmsg_set(r->errmsg, UG_E_TOOBIG,
				     "record %llu: more than %llu packets (the packet limit)",
				     (unsigned long long)record,
				     (unsigned long long)r->lim.max_packets);
	if (__builtin_add_overflow((uint64_t)r->hdrs.len, (uint64_t)r->data.len, &total) ||
	    __builtin_add_overflow(total, (uint64_t)hdr_len + data_len, &total) ||
	    total > r->lim.max_bytes)
		return ug_errmsg_set(r->errmsg, UG_E_TOOBIG,
				     "record %llu: the recording would exceed %llu bytes (the memory limit)",
				     (unsigned long long)record,
				     (unsigned long long)r->lim.max_bytes);
	if (r->n == r->alloc) {
		size_t na = r->alloc ? r->alloc * 2 : 256;
		struct entry *ne;

		if (na > r->lim.max_packets)
			na = (size_t)r->lim.max_packets;
		ne = reallocarray(r->ents, na, sizeof(*ne));
		if (!ne)
			return ug_errmsg_set(r->errmsg, UG_E_NOMEM, "out of memory at record %llu",
					     (unsigned long long)record);
		r->ents = ne;
		r->alloc = na;
	}
	e = &r->ents[r->n];
	memset(e, 0, sizeof(*e));
	e->hdr_off = (uint32_t)r->hdrs.len;
	e->data_off = r->data.len;
	if (r->hdrs.len + hdr_len > UINT32_MAX)
		return ug_errmsg_set(r->errmsg, UG_E_TOOBIG, "record %llu: header arena full",
				     (unsigned long long)record);
	if (hdr_len && (rc = ug_buf_append(&r->hdrs, h, hdr_len)) < 0)
		return ug_errmsg_set(r->errmsg, rc, "record %llu: cannot hold a header",
				     (unsigned long long)record);
	if (data_len && (rc = ug_buf_append(&r->data, data, data_len)) < 0) {
		r->hdrs.len -= hdr_len;
		return ug_errmsg_set(r->errmsg, rc, "record %llu: cannot hold %u data bytes",
				     (unsigned long long)record, data_len);
	}
	e->id = id;
	e->record = record;
	e->ts_ns = ts_ns;
	e->data_len = data_len;
	e->type = type;
	e->hdr_len = (uint16_t)hdr_len;
	e->dir = (uint8_t)dir;
	r->n++;
	return 0;
}

static int add_decoded(ug_recording *r, const struct ug_usbredir_packet *p, uint64_t record,
		       uint64_t ts_ns)
{
	if (!p->known)
		return 0;
	if (p->type == usb_redir_hello) {
		r->caps[p->dir] = p->h.hello.caps_count ? p->h.hello.caps[0] : 0;
		r->have_caps[p->dir] = 1;
	}
	return add_packet(r, p->dir, p->type, p->id, &p->h,
			  p->type == usb_redir_hello ? NULL : p->data,
			  p->type == usb_redir_hello ? 0 : p->data_len, record, ts_ns);
}

/* ---- raw record ---------------------------------------------------------- */

/* Where each record of one direction starts in its stream, so that a packet
 * the decoder releases later (held until both hellos were seen) keeps the
 * number and time of its own record. */
struct rec_pos {
	uint64_t offset, record, ts_ns;
};

static int drain(ug_recording *r, ug_usbredir_session *s, enum ug_dir dir, GArray *pos,
		 uint64_t cur)
{
	struct ug_usbredir_packet p;
	int rc;

	while ((rc = ug_usbredir_session_next(s, dir, &p)) == 1) {
		uint64_t record = 0, ts = 0;

		while (pos->len) {
			struct rec_pos *rp = &g_array_index(pos, struct rec_pos, 0);

			if (rp->offset > p.offset)
				break;
			record = rp->record;
			ts = rp->ts_ns;
			g_array_remove_index(pos, 0);
		}
		if ((rc = add_decoded(r, &p, record, ts)) < 0)
			return rc;
	}
	if (rc < 0)
		return ug_errmsg_set(r->errmsg, UG_E_PROTO, "record %llu: %s",
				     (unsigned long long)cur, ug_usbredir_session_errmsg(s));
	return 0;
}

static int load_raw(ug_recording *r, const char *path)
{
	ug_raw_reader *rd = ug_raw_reader_new();
	ug_usbredir_session *s = ug_usbredir_session_new();
	struct ug_raw_record rec;
	uint64_t fed[2] = { 0, 0 };
	GArray *pos[2];
	uint32_t session = r->session;
	int rc;

	pos[0] = g_array_new(FALSE, FALSE, sizeof(struct rec_pos));
	pos[1] = g_array_new(FALSE, FALSE, sizeof(struct rec_pos));

	if (!rd || !s) {
		rc = ug_errmsg_set(r->errmsg, UG_E_NOMEM, "out of memory");
		goto out;
	}
	ug_raw_reader_set_max_packet(rd, r->lim.max_packet);
	ug_usbredir_session_set_max_packet(s, r->lim.max_packet);
	if ((rc = ug_raw_reader_open(rd, path)) < 0) {
		ug_errmsg_set(r->errmsg, rc, "%s", ug_raw_reader_errmsg(rd));
		goto out;
	}
	while ((rc = ug_raw_reader_next(rd, &rec)) == 1) {
		/* The file's number for the record where this packet
		 * starts, as tshark shows it; the reader counts fragments. */
		uint64_t record = ug_raw_reader_record(rd);
		struct rec_pos rp;

		if (!session)
			session = rec.session;
		if (rec.session != session)
			continue;
		/* A recording that starts mid-session (its first packet is
		 * no hello) says which caps its packets were encoded under. */
		if (!fed[0] && !fed[1] && rec.caps_known && rec.len >= 4 &&
		    (rec.bytes[0] | rec.bytes[1] | rec.bytes[2] | rec.bytes[3]) != 0)
			ug_usbredir_session_set_caps(s, rec.caps);
		rp.offset = fed[rec.dir];
		rp.record = record;
		rp.ts_ns = rec.ts_ns;
		fed[rec.dir] += rec.len;
		g_array_append_val(pos[rec.dir], rp);
		/* Records held back for the other hello are bounded too. */
		if (pos[rec.dir]->len > 4096) {
			rc = ug_errmsg_set(r->errmsg, UG_E_PROTO,
					   "record %llu: more than 4096 packets before both hellos",
					   (unsigned long long)record);
			goto out;
		}
		if ((rc = ug_usbredir_session_feed(s, rec.dir, rec.bytes, rec.len)) < 0) {
			ug_errmsg_set(r->errmsg, rc, "record %llu: %s", (unsigned long long)record,
				      ug_usbredir_session_errmsg(s));
			goto out;
		}
		if ((rc = drain(r, s, rec.dir, pos[rec.dir], record)) < 0 ||
		    (rc = drain(r, s, !rec.dir, pos[!rec.dir], record)) < 0)
			goto out;
	}
	if (rc < 0) {
		ug_errmsg_set(r->errmsg, rc, "%s", ug_raw_reader_errmsg(rd));
		goto out;
	}
	if (!r->have_caps[0] || !r->have_caps[1]) {
		if (!ug_raw_reader_record(rd)) {
			rc = ug_errmsg_set(r->errmsg, UG_E_NOTFOUND, "%s: no records", path);
			goto out;
		}
		/* A recording that started after the hellos: the record's
		 * negotiated caps stand for both sides. */
		r->caps[0] = r->caps[1] = ug_usbredir_session_caps(s);
	}
	for (int d = 0; d < 2; d++)
		if (ug_usbredir_session_offset(s, d) != fed[d]) {
			rc = ug_errmsg_set(r->errmsg, UG_E_TRUNCATED,
					   "%s: the %s stream ends inside a packet (%llu of %llu bytes decoded)",
					   path, d == UG_DIR_G2H ? "guest->host" : "host->guest",
					   (unsigned long long)ug_usbredir_session_offset(s, d),
					   (unsigned long long)fed[d]);
			goto out;
		}
	rc = 0;
out:
	g_array_free(pos[0], TRUE);
	g_array_free(pos[1], TRUE);
	ug_usbredir_session_free(s);
	ug_raw_reader_free(rd);
	return rc;
}

/* ---- usbmon -------------------------------------------------------------- */

#define MAX_IFACES 32

/* What the configuration descriptor says about one endpoint or interface. */
struct dev_model {
	int have_dev, have_cfg;
	uint8_t dev_desc[18];
	uint8_t *cfg;
	size_t cfg_len;
	uint8_t alt[MAX_IFACES];  /* current alternate setting per interface number */
};

/* A submit waiting for its completion. */
struct pending {
	uint64_t urb;
	uint64_t record;
	uint64_t seq;           /* the usbredir id we gave it */
	uint8_t xfer_type, ep;
	uint8_t setup[8];
	int is_setup;
	uint32_t req_len;       /* usbmon length of the submit */
	uint32_t out_len;       /* OUT data bytes kept after the struct */
};

/* Packets whose header is filled in once the descriptors are known. */
struct fixup {
	size_t index;
	uint8_t alt[MAX_IFACES];
};

struct usbmon_ctx {
	struct dev_model m;
	GHashTable *pending;    /* urb id -> struct pending */
	GArray *fixups;
	uint64_t next_id, next_stream_id;
	uint8_t receiving[32];  /* interrupt IN endpoints whose receiving started */
	int bigendian;
};

static int ep_index(uint8_t ep)
{
	return ((ep & 0x80) >> 3) | (ep & 0x0f);
}

/* Walks the configuration descriptor and fills ep_info and interface_info for
 * the alternate settings in alt. */
static void model_headers(const struct dev_model *m, const uint8_t *alt,
			  struct usb_redir_ep_info_header *epi,
			  struct usb_redir_interface_info_header *ifi)
{
	const uint8_t *p = m->cfg;
	size_t left = m->cfg_len;
	int cur_if = -1, cur_alt = 0, use = 0;

	memset(epi, 0, sizeof(*epi));
	memset(ifi, 0, sizeof(*ifi));
	for (int i = 0; i < 32; i++)
		epi->type[i] = usb_redir_type_invalid;
	epi->type[0] = epi->type[16] = usb_redir_type_control;
	if (m->have_dev) {
		epi->max_packet_size[0] = epi->max_packet_size[16] = m->dev_desc[7];
		if (ug_get_le16(m->dev_desc + 2) >= 0x0300)
			epi->max_packet_size[0] = epi->max_packet_size[16] =
				(uint16_t)(1u << (m->dev_desc[7] & 15));
	}
	while (left >= 2) {
		uint8_t len = p[0], type = p[1];

		if (len < 2 || len > left)
			break;
		if (type == 4 && len >= 9) {
			cur_if = p[2];
			cur_alt = p[3];
			use = cur_if < MAX_IFACES && alt[cur_if] == cur_alt;
			if (use && ifi->interface_count < 32) {
				unsigned k = ifi->interface_count++;
				ifi->interface[k] = p[2];
				ifi->interface_class[k] = p[5];
				ifi->interface_subclass[k] = p[6];
				ifi->interface_protocol[k] = p[7];
			}
		} else if (type == 5 && len >= 7 && use && cur_if >= 0) {
			int k = ep_index(p[2]);

			epi->type[k] = p[3] & 3;
			epi->interval[k] = p[6];
			epi->interface[k] = (uint8_t)cur_if;
			epi->max_packet_size[k] = ug_get_le16(p + 4) & 0x1fff;
		}
		p += len;
		left -= len;
	}
}

static int model_speed(const ug_recording *r, const struct dev_model *m)
{
	if (r->speed >= 0)
		return r->speed;
	if (m->have_dev && ug_get_le16(m->dev_desc + 2) >= 0x0300)
		return usb_redir_speed_super;
	return -1;
}

static uint8_t status_from_errno(int32_t st)
{
	switch (st) {
	case 0: return usb_redir_success;
	case -ENOENT: case -ECONNRESET: return usb_redir_cancelled;
	case -EINVAL: return usb_redir_inval;
	case -EPIPE: return usb_redir_stall;
	case -ETIMEDOUT: return usb_redir_timeout;
	case -EOVERFLOW: return usb_redir_babble;
	default: return usb_redir_ioerror;
	}
}

/* Learns descriptors from a completed GET_DESCRIPTOR. */
static int learn_descriptor(ug_recording *r, struct usbmon_ctx *c, const uint8_t *setup,
			    const uint8_t *data, uint32_t len)
{
	uint8_t dtype = setup[3];

	if (setup[0] != 0x80 || setup[1] != 6)
		return 0;
	if (dtype == 1 && len >= 18 && !c->m.have_dev) {
		memcpy(c->m.dev_desc, data, 18);
		c->m.have_dev = 1;
	} else if (dtype == 2 && len >= 9 && ug_get_le16(data + 2) <= len &&
		   ug_get_le16(data + 2) > c->m.cfg_len) {
		/* The full descriptor (wTotalLength bytes) replaces the 9-byte
		 * header Linux reads first. */
		uint16_t total = ug_get_le16(data + 2);
		uint8_t *n = realloc(c->m.cfg, total);

		if (!n)
			return ug_errmsg_set(r->errmsg, UG_E_NOMEM, "out of memory");
		memcpy(n, data, total);
		c->m.cfg = n;
		c->m.cfg_len = total;
		c->m.have_cfg = 1;
	}
	return 0;
}

static int add_fixup(ug_recording *r, struct usbmon_ctx *c, uint64_t record, uint64_t ts,
		     uint64_t id)
{
	union ug_usbredir_type_header h;
	struct fixup f;
	int rc;

	memset(&h, 0, sizeof(h));
	memcpy(f.alt, c->m.alt, sizeof(f.alt));
	f.index = r->n;
	if ((rc = add_packet(r, UG_DIR_H2G, usb_redir_ep_info, id, &h, NULL, 0, record, ts)) < 0 ||
	    (rc = add_packet(r, UG_DIR_H2G, usb_redir_interface_info, id, &h, NULL, 0, record,
			     ts)) < 0)
		return rc;
	g_array_append_val(c->fixups, f);
	return 0;
}

/* One completed transfer becomes a request and its answer. */
static int usbmon_transfer(ug_recording *r, struct usbmon_ctx *c, const struct pending *pd,
			   int32_t status, const uint8_t *data, uint32_t data_len,
			   uint32_t req_len, const uint8_t *out_data, uint32_t out_len,
			   uint64_t record, uint64_t ts)
{
	union ug_usbredir_type_header h, a;
	uint8_t st;
	uint64_t id = pd->seq;
	int rc;

	/* A transfer the device never answered (it went away) has no reply. */
	if (status == -ESHUTDOWN || status == -ENODEV)
		return 0;
	st = status_from_errno(status);
	memset(&h, 0, sizeof(h));
	memset(&a, 0, sizeof(a));
	if (pd->xfer_type == UG_XFER_CONTROL && pd->is_setup) {
		const uint8_t *s = pd->setup;
		uint8_t rt = s[0], req = s[1];

		if (rt == 0x00 && req == 5)
			return 0;       /* SET_ADDRESS never reaches the wire */
		if (rt == 0x00 && req == 9) {
			h.set_configuration.configuration = s[2];
			if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_set_configuration, id, &h,
					     NULL, 0, pd->record, ts)) < 0)
				return rc;
			if (st == usb_redir_success) {
				memset(c->m.alt, 0, sizeof(c->m.alt));
				if ((rc = add_fixup(r, c, record, ts, id)) < 0)
					return rc;
			}
			a.configuration_status.status = st;
			a.configuration_status.configuration = s[2];
			return add_packet(r, UG_DIR_H2G, usb_redir_configuration_status, id, &a,
					  NULL, 0, record, ts);
		}
		if (rt == 0x01 && req == 11) {
			h.set_alt_setting.interface = s[4];
			h.set_alt_setting.alt = s[2];
			if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_set_alt_setting, id, &h,
					     NULL, 0, pd->record, ts)) < 0)
				return rc;
			if (st == usb_redir_success) {
				if (s[4] < MAX_IFACES)
					c->m.alt[s[4]] = s[2];
				if ((rc = add_fixup(r, c, record, ts, id)) < 0)
					return rc;
			}
			a.alt_setting_status.status = st;
			a.alt_setting_status.interface = s[4];
			a.alt_setting_status.alt = s[2];
			return add_packet(r, UG_DIR_H2G, usb_redir_alt_setting_status, id, &a,
					  NULL, 0, record, ts);
		}
		if (rt == 0x80 && req == 8) {
			if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_get_configuration, id, &h,
					     NULL, 0, pd->record, ts)) < 0)
				return rc;
			a.configuration_status.status = st;
			a.configuration_status.configuration = data_len ? data[0] : 0;
			return add_packet(r, UG_DIR_H2G, usb_redir_configuration_status, id, &a,
					  NULL, 0, record, ts);
		}
		if (rt == 0x81 && req == 10) {
			h.get_alt_setting.interface = s[4];
			if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_get_alt_setting, id, &h,
					     NULL, 0, pd->record, ts)) < 0)
				return rc;
			a.alt_setting_status.status = st;
			a.alt_setting_status.interface = s[4];
			a.alt_setting_status.alt = data_len ? data[0] : 0;
			return add_packet(r, UG_DIR_H2G, usb_redir_alt_setting_status, id, &a,
					  NULL, 0, record, ts);
		}
		if (st == usb_redir_success && (rc = learn_descriptor(r, c, s, data, data_len)) < 0)
			return rc;
		h.control_packet.endpoint = rt & 0x80;
		h.control_packet.requesttype = rt;
		h.control_packet.request = req;
		h.control_packet.value = ug_get_le16(s + 2);
		h.control_packet.index = ug_get_le16(s + 4);
		h.control_packet.length = ug_get_le16(s + 6);
		a = h;
		a.control_packet.status = st;
		a.control_packet.length = (uint16_t)((rt & 0x80) ? data_len : out_len);
		if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_control_packet, id, &h, out_data,
				     out_len, pd->record, ts)) < 0)
			return rc;
		return add_packet(r, UG_DIR_H2G, usb_redir_control_packet, id, &a, data, data_len,
				  record, ts);
	}
	if (pd->xfer_type == UG_XFER_BULK) {
		uint32_t n = (pd->ep & 0x80) ? req_len : out_len;

		h.bulk_packet.endpoint = pd->ep;
		h.bulk_packet.length = (uint16_t)n;
		h.bulk_packet.length_high = (uint16_t)(n >> 16);
		a = h;
		a.bulk_packet.status = st;
		n = (pd->ep & 0x80) ? data_len : out_len;
		a.bulk_packet.length = (uint16_t)n;
		a.bulk_packet.length_high = (uint16_t)(n >> 16);
		if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_bulk_packet, id, &h, out_data,
				     out_len, pd->record, ts)) < 0)
			return rc;
		return add_packet(r, UG_DIR_H2G, usb_redir_bulk_packet, id, &a, data, data_len,
				  record, ts);
	}
	if (pd->xfer_type == UG_XFER_INTERRUPT) {
		if (pd->ep & 0x80) {
			int k = ep_index(pd->ep);

			/* QEMU receives interrupt IN as a stream: the guest
			 * asks once, then the host pushes each transfer. */
			if (!c->receiving[k]) {
				c->receiving[k] = 1;
				h.start_interrupt_receiving.endpoint = pd->ep;
				if ((rc = add_packet(r, UG_DIR_G2H,
						     usb_redir_start_interrupt_receiving, id, &h,
						     NULL, 0, pd->record, ts)) < 0)
					return rc;
				a.interrupt_receiving_status.endpoint = pd->ep;
				a.interrupt_receiving_status.status = usb_redir_success;
				if ((rc = add_packet(r, UG_DIR_H2G,
						     usb_redir_interrupt_receiving_status, id, &a,
						     NULL, 0, pd->record, ts)) < 0)
					return rc;
			}
			if (st == usb_redir_cancelled)
				return 0;
			memset(&a, 0, sizeof(a));
			a.interrupt_packet.endpoint = pd->ep;
			a.interrupt_packet.status = st;
			a.interrupt_packet.length = (uint16_t)data_len;
			return add_packet(r, UG_DIR_H2G, usb_redir_interrupt_packet,
					  c->next_stream_id++, &a, data, data_len, record, ts);
		}
		h.interrupt_packet.endpoint = pd->ep;
		h.interrupt_packet.length = (uint16_t)out_len;
		a = h;
		a.interrupt_packet.status = st;
		if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_interrupt_packet, id, &h, out_data,
				     out_len, pd->record, ts)) < 0)
			return rc;
		return add_packet(r, UG_DIR_H2G, usb_redir_interrupt_packet, id, &a, NULL, 0,
				  record, ts);
	}
	/* Isochronous transfers are not rebuilt from usbmon (their packets
	 * have no one-to-one usbredir form there). */
	return 0;
}

static uint64_t mon64(const struct usbmon_ctx *c, const uint8_t *p)
{
	if (c->bigendian) {
		uint64_t v = 0;
		for (int i = 0; i < 8; i++)
			v = (v << 8) | p[i];
		return v;
	}
	return ug_get_le64(p);
}

static uint32_t mon32(const struct usbmon_ctx *c, const uint8_t *p)
{
	return c->bigendian ? ug_get_be32(p) : ug_get_le32(p);
}

static int usbmon_record(ug_recording *r, struct usbmon_ctx *c, const uint8_t *p, uint32_t caplen,
			 uint64_t record, uint64_t ts)
{
	uint64_t urb;
	uint8_t kind, xfer, ep;
	int32_t status;
	uint32_t length, len_cap, ndesc, hdr;
	const uint8_t *data;

	if (caplen < UG_USBMON_HEADER_SIZE)
		return ug_errmsg_set(r->errmsg, UG_E_PROTO,
				     "record %llu: %u bytes, shorter than the %u-byte usbmon header",
				     (unsigned long long)record, caplen, UG_USBMON_HEADER_SIZE);
	urb = mon64(c, p);
	kind = p[8];
	xfer = p[9];
	ep = p[10];
	status = (int32_t)mon32(c, p + 28);
	length = mon32(c, p + 32);
	len_cap = mon32(c, p + 36);
	ndesc = mon32(c, p + 60);
	hdr = UG_USBMON_HEADER_SIZE;
	if (xfer == UG_XFER_ISO) {
		if (ndesc > (caplen - hdr) / UG_USBMON_ISODESC_SIZE)
			return ug_errmsg_set(r->errmsg, UG_E_PROTO,
					     "record %llu: %u iso descriptors do not fit in %u bytes",
					     (unsigned long long)record, ndesc, caplen);
		hdr += ndesc * UG_USBMON_ISODESC_SIZE;
	}
	if (len_cap > caplen - hdr)
		return ug_errmsg_set(r->errmsg, UG_E_PROTO,
				     "record %llu: len_cap %u exceeds the %u bytes captured after the header",
				     (unsigned long long)record, len_cap, caplen - hdr);
	if (len_cap < length && p[15] == 0)
		return ug_errmsg_set(r->errmsg, UG_E_TRUNCATED,
				     "record %llu: transfer data cut from %u to %u bytes; it cannot be replayed",
				     (unsigned long long)record, length, len_cap);
	data = p + hdr;
	if (kind == 'S') {
		struct pending *pd;

		if (g_hash_table_size(c->pending) >= r->lim.max_pending)
			return ug_errmsg_set(r->errmsg, UG_E_TOOBIG,
					     "record %llu: more than %u transfers outstanding",
					     (unsigned long long)record, r->lim.max_pending);
		pd = g_new0(struct pending, 1);
		pd->urb = urb;
		pd->record = record;
		pd->seq = c->next_id++;
		pd->xfer_type = xfer;
		pd->ep = ep;
		pd->is_setup = p[14] == 0;
		memcpy(pd->setup, p + 40, 8);
		pd->req_len = length;
		/* The OUT data of a submit is kept with it until completion. */
		if (!(ep & 0x80) && p[15] == 0 && len_cap) {
			struct pending *big = g_malloc0(sizeof(*big) + len_cap);

			*big = *pd;
			g_free(pd);
			pd = big;
			pd->out_len = len_cap;
			memcpy(pd + 1, data, len_cap);
		}
		g_hash_table_replace(c->pending, &pd->urb, pd);
		return 0;
	}
	if (kind == 'C' || kind == 'E') {
		struct pending *pd = g_hash_table_lookup(c->pending, &urb);
		const uint8_t *out;
		int rc;

		if (!pd)
			return 0;       /* its submit is before the capture began */
		out = pd->out_len ? (const uint8_t *)(pd + 1) : NULL;
		rc = usbmon_transfer(r, c, pd, kind == 'E' ? -EPROTO : status,
				     (ep & 0x80) ? data : NULL, (ep & 0x80) ? len_cap : 0,
				     pd->req_len, out, pd->out_len, record, ts);
		g_hash_table_remove(c->pending, &urb);
		return rc;
	}
	return ug_errmsg_set(r->errmsg, UG_E_PROTO, "record %llu: usbmon event type 0x%02x",
			     (unsigned long long)record, kind);
}

/* Puts the session's opening (hellos, ep_info, interface_info,
 * device_connect) in front and fills the deferred headers. */
static int usbmon_finish(ug_recording *r, struct usbmon_ctx *c, const char *path)
{
	union ug_usbredir_type_header h;
	struct entry *tmp;
	size_t n_old = r->n;
	int speed, rc;
	uint8_t zero[MAX_IFACES] = { 0 };

	if (!c->m.have_dev || !c->m.have_cfg)
		return ug_errmsg_set(r->errmsg, UG_E_NOTFOUND,
				     "%s: no %s descriptor reply in the capture: the device cannot be modelled",
				     path, c->m.have_dev ? "configuration" : "device");
	speed = model_speed(r, &c->m);
	if (speed < 0)
		return ug_errmsg_set(r->errmsg, UG_E_INVAL,
				     "%s: a usbmon capture does not say the device's speed (bcdUSB %x.%02x): give it",
				     path, c->m.dev_desc[3], c->m.dev_desc[2]);
	for (guint i = 0; i < c->fixups->len; i++) {
		struct fixup *f = &g_array_index(c->fixups, struct fixup, i);
		union ug_usbredir_type_header e, ifh;

		memset(&e, 0, sizeof(e));
		memset(&ifh, 0, sizeof(ifh));
		model_headers(&c->m, f->alt, &e.ep_info, &ifh.interface_info);
		memcpy(r->hdrs.data + r->hdrs.start + r->ents[f->index].hdr_off, &e.ep_info,
		       sizeof(e.ep_info));
		memcpy(r->hdrs.data + r->hdrs.start + r->ents[f->index + 1].hdr_off,
		       &ifh.interface_info, sizeof(ifh.interface_info));
	}
	r->caps[UG_DIR_G2H] = 0xff | (1u << usb_redir_cap_64bits_ids) |
			      (1u << usb_redir_cap_32bits_bulk_length);
	r->caps[UG_DIR_H2G] = (1u << usb_redir_cap_connect_device_version) |
			      (1u << usb_redir_cap_filter) |
			      (1u << usb_redir_cap_ep_info_max_packet_size) |
			      (1u << usb_redir_cap_64bits_ids) |
			      (1u << usb_redir_cap_32bits_bulk_length);
	memset(&h, 0, sizeof(h));
	snprintf(h.hello.version, sizeof(h.hello.version), "qemu usb-redir guest (usbmon capture)");
	h.hello.caps_count = 1;
	h.hello.caps[0] = r->caps[UG_DIR_G2H];
	if ((rc = add_packet(r, UG_DIR_G2H, usb_redir_hello, 0, &h, NULL, 0, 0, 0)) < 0)
		return rc;
	snprintf(h.hello.version, sizeof(h.hello.version), "usbgate (usbmon capture)");
	h.hello.caps[0] = r->caps[UG_DIR_H2G];
	if ((rc = add_packet(r, UG_DIR_H2G, usb_redir_hello, 0, &h, NULL, 0, 0, 0)) < 0)
		return rc;
	memset(&h, 0, sizeof(h));
	/* The device is configured when it is offered, as a host's kernel
	 * leaves it: the first configuration, alternate settings 0. */
	{
		union ug_usbredir_type_header ifh;

		memset(&ifh, 0, sizeof(ifh));
		model_headers(&c->m, zero, &h.ep_info, &ifh.interface_info);
		if ((rc = add_packet(r, UG_DIR_H2G, usb_redir_ep_info, 0, &h, NULL, 0, 0, 0)) < 0 ||
		    (rc = add_packet(r, UG_DIR_H2G, usb_redir_interface_info, 0, &ifh, NULL, 0, 0,
				     0)) < 0)
			return rc;
	}
	memset(&h, 0, sizeof(h));
	h.device_connect.speed = (uint8_t)speed;
	h.device_connect.device_class = c->m.dev_desc[4];
	h.device_connect.device_subclass = c->m.dev_desc[5];
	h.device_connect.device_protocol = c->m.dev_desc[6];
	h.device_connect.vendor_id = ug_get_le16(c->m.dev_desc + 8);
	h.device_connect.product_id = ug_get_le16(c->m.dev_desc + 10);
	h.device_connect.device_version_bcd = ug_get_le16(c->m.dev_desc + 12);
	if ((rc = add_packet(r, UG_DIR_H2G, usb_redir_device_connect, 0, &h, NULL, 0, 0, 0)) < 0)
		return rc;
	/* Rotate the five opening packets to the front. */
	tmp = malloc(5 * sizeof(*tmp));
	if (!tmp)
		return ug_errmsg_set(r->errmsg, UG_E_NOMEM, "out of memory");
	memcpy(tmp, r->ents + n_old, 5 * sizeof(*tmp));
	memmove(r->ents + 5, r->ents, n_old * sizeof(*tmp));
	memcpy(r->ents, tmp, 5 * sizeof(*tmp));
	free(tmp);
	return 0;
}

static int load_usbmon(ug_recording *r, pcap_t *pc, const char *path)
{
	struct usbmon_ctx c;
	struct pcap_pkthdr *ph;
	const u_char *p;
	uint64_t record = 0;
	int rc, prc;

	memset(&c, 0, sizeof(c));
	c.pending = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
	c.fixups = g_array_new(FALSE, FALSE, sizeof(struct fixup));
	c.next_id = 1;
	c.next_stream_id = 0x80000000u;
	c.bigendian = (G_BYTE_ORDER == G_LITTLE_ENDIAN) == (pcap_is_swapped(pc) != 0);
	while ((prc = pcap_next_ex(pc, &ph, &p)) == 1) {
		uint64_t ts;

		record++;
		ts = (uint64_t)ph->ts.tv_sec * 1000000000u + (uint64_t)ph->ts.tv_usec;
		if ((rc = usbmon_record(r, &c, p, ph->caplen, record, ts)) < 0)
			goto out;
	}
	if (prc != PCAP_ERROR_BREAK) {
		const char *e = pcap_geterr(pc);

		rc = ug_errmsg_set(r->errmsg, strstr(e, "truncated") ? UG_E_TRUNCATED : UG_E_PROTO,
				   "%s: record %llu: %s", path, (unsigned long long)record + 1, e);
		goto out;
	}
	if (!record) {
		rc = ug_errmsg_set(r->errmsg, UG_E_NOTFOUND, "%s: no records", path);
		goto out;
	}
	rc = usbmon_finish(r, &c, path);
out:
	free(c.m.cfg);
	g_hash_table_destroy(c.pending);
	g_array_free(c.fixups, TRUE);
	return rc;
}

/* Refuses sessions an emulated device could not offer. */
static int check_model(ug_recording *r, const char *path)
{
	struct usb_redir_device_connect_header dev;

	if (ug_recording_device(r, &dev) < 0)
		return ug_errmsg_set(r->errmsg, UG_E_NOTFOUND,
				     "%s: no device_connect in %zu packets: no device to replay",
				     path, r->n);
	if (r->speed >= 0) {
		for (size_t i = 0; i < r->n; i++)
			if (r->ents[i].type == usb_redir_device_connect) {
				uint8_t *h = r->hdrs.data + r->hdrs.start + r->ents[i].hdr_off;
				struct usb_redir_device_connect_header d;

				memcpy(&d, h, sizeof(d));
				d.speed = (uint8_t)r->speed;
				memcpy(h, &d, sizeof(d));
			}
	}
	return 0;
}

UG_EXPORT int ug_recording_load(ug_recording *r, const char *path)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	pcap_t *pc;
	int dlt, rc;

	if (!r || !path)
		return UG_E_INVAL;
	if (r->loaded)
		return ug_errmsg_set(r->errmsg, UG_E_STATE, "a recording is loaded already");
	r->loaded = 1;
	errbuf[0] = 0;
	pc = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	if (!pc) {
		FILE *f = fopen(path, "rb");

		if (!f)
			return ug_errmsg_set(r->errmsg, UG_E_IO, "%s: %s", path, strerror(errno));
		fclose(f);
		return ug_errmsg_set(r->errmsg,
				     strstr(errbuf, "truncated") ? UG_E_TRUNCATED : UG_E_UNSUPPORTED,
				     "%s: not a capture usbreplay reads (%s)", path, errbuf);
	}
	dlt = pcap_datalink(pc);
	if (dlt == UG_USBMON_LINKTYPE) {
		r->format = dlt;
		rc = load_usbmon(r, pc, path);
		pcap_close(pc);
	} else if (dlt == UG_RAW_LINKTYPE) {
		pcap_close(pc);
		r->format = dlt;
		rc = load_raw(r, path);
	} else {
		pcap_close(pc);
		return ug_errmsg_set(r->errmsg, UG_E_UNSUPPORTED,
				     "%s: link type %d; usbreplay reads usbmon (%d) and the raw usbredir record (%d)",
				     path, dlt, UG_USBMON_LINKTYPE, UG_RAW_LINKTYPE);
	}
	if (rc < 0)
		return rc;
	return check_model(r, path);
}
