/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* capture-demux.c: capture events per connection -> classify -> usbredir sessions of a recorder. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "spice-codec.h"

#define MAX_FORCED_PORTS 16
/* SPICE server ports remembered from links seen in the capture. */
#define MAX_LEARNED_PORTS 16
/* The smallest SPICE link reply (error, public key, cap counts, caps offset). */
#define SPICE_LINK_REPLY_MIN 178u
/* Bytes of each side kept contiguous from offset 0 to classify the
 * connection and find the usb-guest (two hellos and a few packet headers). */
#define HEAD_MAX 4096u
/* Packet headers walked per side when looking for host-only packet types. */
#define WALK_MAX_PACKETS 16

/* A held stretch of one side: bytes (data != NULL) or a gap. */
struct chunk {
	struct chunk *next;
	int side;
	uint64_t ts_ns;
	uint64_t len;
	uint8_t *data;
};

struct conn;
struct ug_capture_demux;

/*
 * What happens to a connection once its protocol is known. The SPICE
 * decoder plugs in here: start() gets the connection with everything held
 * so far replayed through data() and gap() right after it.
 */
struct handler {
	const char *name;
	void (*start)(struct ug_capture_demux *d, struct conn *c);
	void (*data)(struct ug_capture_demux *d, struct conn *c, int side, const uint8_t *data,
		     size_t len, uint64_t ts_ns);
	void (*gap)(struct ug_capture_demux *d, struct conn *c, int side, uint64_t len,
		    uint64_t ts_ns);
	void (*close)(struct ug_capture_demux *d, struct conn *c, uint64_t ts_ns);
};

struct conn {
	struct conn *next;
	uint32_t id;
	uint32_t flags;
	uint16_t ports[2];              /* client, server */
	char label[160];
	char endpoint[2][64];           /* client, server as text */
	const struct handler *h;        /* NULL while undecided */
	struct chunk *held, **held_tail;
	uint64_t held_bytes;
	uint8_t head[2][HEAD_MAX];
	size_t head_len[2];
	int head_done[2];               /* a gap or the end stopped the head */
	int ended[2];
	/* usbredir */
	int session;                    /* recorder session, 0 if none */
	int guest_side;                 /* UG_CAPTURE_C2S or UG_CAPTURE_S2C */
	/* SPICE */
	ug_spice_stream *spice;
	int server_side;                /* the capture side that is the SPICE server */
	int spice_counted;              /* channel counted in the stats */
};

struct forced {
	uint16_t port;
	uint32_t caps;
	int caps_known;
	enum ug_capture_demux_guest guest;
};

struct ug_capture_demux {
	ug_recorder *rec;
	ug_log_fn log;
	void *log_user;
	struct conn *conns;
	struct forced forced[MAX_FORCED_PORTS];
	int nforced;
	uint16_t spice_ports[MAX_FORCED_PORTS];
	int nspice_ports;
	uint16_t learned[MAX_LEARNED_PORTS];
	int nlearned;
	enum ug_capture_demux_guest guest;
	int first_error;
	struct ug_capture_demux_stats stats;
	char errmsg[UG_ERRMSG_SIZE];
};

/* Logs through the object's callback (lib/error.c formats). */
#define logf_(o, ...) ug_log_emit((o)->log, (o)->log_user, __VA_ARGS__)

static void note_error(ug_capture_demux *d, int e)
{
	if (e < 0 && !d->first_error)
		d->first_error = e;
}

static const char *side_name(int side)
{
	return side == UG_CAPTURE_C2S ? "client" : "server";
}

static void format_endpoint(const struct ug_capture_endpoint *ep, char *buf, size_t size)
{
	char addr[INET6_ADDRSTRLEN];

	if (ep->family == 6) {
		if (!inet_ntop(AF_INET6, ep->addr, addr, sizeof(addr)))
			snprintf(addr, sizeof(addr), "?");
		snprintf(buf, size, "[%s]:%u", addr, (unsigned)ep->port);
	} else {
		if (!inet_ntop(AF_INET, ep->addr, addr, sizeof(addr)))
			snprintf(addr, sizeof(addr), "?");
		snprintf(buf, size, "%s:%u", addr, (unsigned)ep->port);
	}
}

static const struct forced *forced_for(const ug_capture_demux *d, const struct conn *c)
{
	for (int i = 0; i < d->nforced; i++)
		if (d->forced[i].port == c->ports[0] || d->forced[i].port == c->ports[1])
			return &d->forced[i];
	return NULL;
}

/* ---- usbredir: which side is the usb-guest --------------------------------- */

/* The hello's version field of one side, if its head starts with a hello. */
static int head_hello(const struct conn *c, int side, char version[65], uint32_t *ret_caps)
{
	const uint8_t *p = c->head[side];
	size_t n = c->head_len[side];

	if (n < 12 + 64 || ug_get_le32(p) != usb_redir_hello)
		return 0;
	memcpy(version, p + 12, 64);
	version[64] = '\0';
	if (ret_caps)
		*ret_caps = n >= 12 + 64 + 4 ? ug_get_le32(p + 12 + 64) : 0;
	return 1;
}

static int host_only_type(uint32_t type)
{
	return type == usb_redir_device_connect || type == usb_redir_interface_info ||
	       type == usb_redir_ep_info;
}

/* Types only a usb-guest sends (requests and acknowledgements). */
static int guest_only_type(uint32_t type)
{
	switch (type) {
	case usb_redir_reset:
	case usb_redir_set_configuration:
	case usb_redir_get_configuration:
	case usb_redir_set_alt_setting:
	case usb_redir_get_alt_setting:
	case usb_redir_start_iso_stream:
	case usb_redir_stop_iso_stream:
	case usb_redir_start_interrupt_receiving:
	case usb_redir_stop_interrupt_receiving:
	case usb_redir_alloc_bulk_streams:
	case usb_redir_free_bulk_streams:
	case usb_redir_cancel_data_packet:
	case usb_redir_device_disconnect_ack:
	case usb_redir_start_bulk_receiving:
	case usb_redir_stop_bulk_receiving:
		return 1;
	default:
		return 0;
	}
}

/*
 * Type-header length of the data packets whose first type-header byte is
 * the endpoint, under caps; 0 for other types.
 */
static uint32_t data_header_len(uint32_t type, uint32_t caps)
{
	switch (type) {
	case usb_redir_control_packet:
		return 10;
	case usb_redir_bulk_packet:
		return (caps & (1u << usb_redir_cap_32bits_bulk_length)) ? 10 : 8;
	case usb_redir_iso_packet:
	case usb_redir_interrupt_packet:
		return 4;
	default:
		return 0;
	}
}

/*
 * Walks one side's packet headers in its head and weighs the evidence that
 * this side is the usb-host: +1 per host-only packet and per data packet
 * carrying data for an IN endpoint, -1 per guest-only packet and per data
 * packet carrying data for an OUT endpoint. hdr_len is 12 or 16 (id width).
 */
static int host_score(const struct conn *c, int side, size_t hdr_len, uint32_t caps)
{
	const uint8_t *p = c->head[side];
	size_t n = c->head_len[side], off = 0;
	int score = 0;

	for (int i = 0; i < WALK_MAX_PACKETS && off + 8 <= n; i++) {
		uint32_t type = ug_get_le32(p + off);
		uint32_t len = ug_get_le32(p + off + 4);
		/* The hellos always carry 32-bit ids. */
		size_t h = type == usb_redir_hello ? 12 : hdr_len;
		uint32_t thl = data_header_len(type, caps);

		if (host_only_type(type))
			score++;
		else if (guest_only_type(type))
			score--;
		else if (thl && len > thl && off + h < n)
			score += (p[off + h] & 0x80) ? 1 : -1;
		if (len > HEAD_MAX || off + h + len > n)
			break;
		off += h + len;
	}
	return score;
}

/*
 * Finds the usb-guest's side. Returns 1 with *ret_side when the traffic
 * tells, 0 when it does not (yet). caps is what to walk the headers with
 * when the hellos are not both there (a capture that starts mid-stream).
 */
static int find_guest(const struct conn *c, uint32_t caps, int *ret_side, const char **ret_why)
{
	char version[2][65];
	uint32_t hcaps[2] = { 0, 0 };
	int hello[2], score[2];
	size_t hdr_len;

	for (int s = 0; s < 2; s++) {
		hello[s] = head_hello(c, s, version[s], &hcaps[s]);
		if (hello[s] && strstr(version[s], "usb-redir guest")) {
			*ret_side = s;
			*ret_why = "its hello names a QEMU usb-redir guest";
			return 1;
		}
	}
	if (hello[0] && hello[1])
		caps = hcaps[0] & hcaps[1];
	else if (hello[0] || hello[1])
		caps = 0; /* Before the peer's hello, the ids are 32-bit. */
	hdr_len = (caps & (1u << usb_redir_cap_64bits_ids)) ? 16 : 12;
	for (int s = 0; s < 2; s++)
		score[s] = host_score(c, s, hdr_len, caps);
	if (score[0] != score[1]) {
		*ret_side = score[0] > score[1] ? 1 : 0;
		*ret_why = "the other side sends what only a usb-host sends (device and endpoint "
			   "info, IN data)";
		return 1;
	}
	return 0;
}

static uint32_t walk_caps(const ug_capture_demux *d, const struct conn *c);

/* ---- handlers ------------------------------------------------------------ */

static enum ug_dir usbredir_dir(const struct conn *c, int side)
{
	return side == c->guest_side ? UG_DIR_G2H : UG_DIR_H2G;
}

static void usbredir_start(ug_capture_demux *d, struct conn *c)
{
	const struct forced *f = forced_for(d, c);
	enum ug_capture_demux_guest g = f ? f->guest : d->guest;
	const char *why = NULL;
	int side = UG_CAPTURE_C2S;
	int n;

	d->stats.usbredir++;
	if (g == UG_DEMUX_GUEST_CLIENT) {
		side = UG_CAPTURE_C2S;
		why = "as told";
	} else if (g == UG_DEMUX_GUEST_SERVER) {
		side = UG_CAPTURE_S2C;
		why = "as told";
	} else if (!find_guest(c, walk_caps(d, c), &side, &why)) {
		side = UG_CAPTURE_C2S;
		why = NULL;
		d->stats.guest_assumed++;
	}
	c->guest_side = side;
	n = ug_recorder_add_session(d->rec, c->label);
	if (n < 0) {
		note_error(d, n);
		logf_(d, UG_LOG_ERROR, "connection %u (%s): cannot record: %s", c->id, c->label,
		      ug_recorder_errmsg(d->rec));
		return;
	}
	c->session = n;
	if (why)
		logf_(d, UG_LOG_INFO, "connection %u (%s): usbredir session %d; usb-guest: the %s (%s)",
		      c->id, c->label, n, side_name(side), why);
	else
		logf_(d, UG_LOG_WARNING,
		      "connection %u (%s): usbredir session %d; cannot tell which side is the "
		      "usb-guest: assuming the TCP client (the side that connected)",
		      c->id, c->label, n);
	if (f) {
		uint32_t caps = f->caps_known ? f->caps : UG_CAPTURE_DEMUX_DEFAULT_CAPS;

		note_error(d, ug_recorder_set_session_caps(d->rec, n, caps));
		if (!f->caps_known)
			logf_(d, UG_LOG_WARNING,
			      "connection %u (%s): decoding with assumed caps 0x%x (QEMU 7.2 with "
			      "usbredir 0.13) unless hellos are seen",
			      c->id, c->label, (unsigned)caps);
	}
}

static void usbredir_data(ug_capture_demux *d, struct conn *c, int side, const uint8_t *data,
			  size_t len, uint64_t ts_ns)
{
	if (!c->session)
		return;
	note_error(d, ug_recorder_feed(d->rec, c->session, usbredir_dir(c, side), data, len, ts_ns));
}

static void usbredir_gap(ug_capture_demux *d, struct conn *c, int side, uint64_t len,
			 uint64_t ts_ns)
{
	d->stats.gaps++;
	if (!c->session)
		return;
	note_error(d, ug_recorder_gap(d->rec, c->session, usbredir_dir(c, side), len, ts_ns));
}

static void usbredir_close(ug_capture_demux *d, struct conn *c, uint64_t ts_ns)
{
	if (c->session)
		note_error(d, ug_recorder_end_session(d->rec, c->session, ts_ns));
}

static const struct handler usbredir_handler = {
	.name = "usbredir",
	.start = usbredir_start,
	.data = usbredir_data,
	.gap = usbredir_gap,
	.close = usbredir_close,
};

/* ---- SPICE ---------------------------------------------------------------- */

static int spice_port_named(const ug_capture_demux *d, uint16_t port)
{
	for (int i = 0; i < d->nspice_ports; i++)
		if (d->spice_ports[i] == port)
			return 1;
	return 0;
}

static int spice_port_learned(const ug_capture_demux *d, uint16_t port)
{
	for (int i = 0; i < d->nlearned; i++)
		if (d->learned[i] == port)
			return 1;
	return 0;
}

static void learn_port(ug_capture_demux *d, uint16_t port)
{
	if (spice_port_learned(d, port) || d->nlearned >= MAX_LEARNED_PORTS)
		return;
	d->learned[d->nlearned++] = port;
}

/* 1 if the side's head starts with a SPICE link header; *ret_size its size. */
static int head_link(const struct conn *c, int side, uint32_t *ret_size)
{
	if (c->head_len[side] < 16 || memcmp(c->head[side], "REDQ", 4) != 0)
		return 0;
	*ret_size = ug_get_le32(c->head[side] + 12);
	return 1;
}

/*
 * Which capture side is the SPICE server. A capture that starts
 * mid-stream may have its client and server swapped (no SYN seen), so the
 * ports the user named or earlier links showed come first, then the link
 * messages themselves: a link reply carries a 162-byte key and is never
 * shorter than 178 bytes, a client's link message is 18 bytes plus caps.
 */
static int spice_server_side(const ug_capture_demux *d, const struct conn *c, const char **why)
{
	uint32_t size;

	for (int s = 0; s < 2; s++) {
		if (spice_port_named(d, c->ports[s])) {
			*why = "its port was named as the SPICE server's";
			return s;
		}
	}
	for (int s = 0; s < 2; s++) {
		if (spice_port_learned(d, c->ports[s]) && !spice_port_learned(d, c->ports[!s])) {
			*why = "its port is a SPICE server's in an earlier link";
			return s;
		}
	}
	for (int s = 0; s < 2; s++) {
		if (head_link(c, s, &size)) {
			*why = size >= SPICE_LINK_REPLY_MIN ? "it sent the link reply"
							    : "the other side sent the link message";
			return size >= SPICE_LINK_REPLY_MIN ? s : !s;
		}
	}
	*why = NULL;
	return UG_CAPTURE_S2C;
}

static void spice_label(const struct conn *c, char *buf, size_t size)
{
	unsigned type = 0, id = 0;

	if (c->spice && ug_spice_stream_channel(c->spice, &type, &id) == 1)
		snprintf(buf, size, "spice %s channel %u (%s)", ug_spice_channel_type_name(type), id,
			 c->endpoint[c->server_side]);
	else
		snprintf(buf, size, "spice connection %u (%s)", c->id, c->endpoint[c->server_side]);
}

static void spice_count(ug_capture_demux *d, struct conn *c)
{
	unsigned type = 0, id = 0;

	if (c->spice_counted || !c->spice || ug_spice_stream_channel(c->spice, &type, &id) != 1)
		return;
	c->spice_counted = 1;
	if (type == SPICE_CHANNEL_USBREDIR)
		d->stats.spice_usbredir++;
	else
		d->stats.spice_other++;
}

static void spice_event(ug_capture_demux *d, struct conn *c, const struct ug_spice_stream_event *ev,
			uint64_t ts_ns)
{
	char label[192];
	char list[256];
	size_t used = 0;

	spice_label(c, label, sizeof(label));
	switch (ev->type) {
	case UG_SPICE_STREAM_LINK:
		spice_count(d, c);
		learn_port(d, c->ports[c->server_side]);
		if (ev->link_error)
			logf_(d, UG_LOG_WARNING, "connection %u (%s): SPICE link refused (error %u)",
			      c->id, label, (unsigned)ev->link_error);
		else
			logf_(d, UG_LOG_INFO, "connection %u (%s): SPICE link, session 0x%08x, %s headers",
			      c->id, label, (unsigned)ev->session_id, ev->mini ? "mini" : "full");
		break;
	case UG_SPICE_STREAM_MAIN_INIT:
		logf_(d, UG_LOG_INFO, "connection %u (%s): SPICE session id 0x%08x", c->id, label,
		      (unsigned)ev->session_id);
		break;
	case UG_SPICE_STREAM_CHANNELS:
		list[0] = '\0';
		for (size_t i = 0; i < ev->n_channels && used + 24 < sizeof(list); i++) {
			int w = snprintf(list + used, sizeof(list) - used, "%s%s %u",
					 i ? ", " : "",
					 ug_spice_channel_type_name(ev->channels[i].type),
					 (unsigned)ev->channels[i].id);
			if (w < 0)
				break;
			used += (size_t)w < sizeof(list) - used ? (size_t)w : sizeof(list) - used - 1;
		}
		logf_(d, UG_LOG_INFO, "connection %u (%s): SPICE channels (%zu): %s", c->id, label,
		      ev->n_channels, list);
		break;
	case UG_SPICE_STREAM_USBREDIR_DATA:
		spice_count(d, c);
		if (!c->session) {
			int n = ug_recorder_add_session(d->rec, label);

			if (n < 0) {
				note_error(d, n);
				logf_(d, UG_LOG_ERROR, "connection %u (%s): cannot record: %s", c->id,
				      label, ug_recorder_errmsg(d->rec));
				c->session = -1;
			} else {
				c->session = n;
				logf_(d, UG_LOG_INFO, "connection %u (%s): usbredir session %d", c->id,
				      label, n);
			}
		}
		if (c->session > 0)
			note_error(d, ug_recorder_feed(d->rec, c->session, ev->dir, ev->data, ev->len,
						       ts_ns));
		break;
	case UG_SPICE_STREAM_USBREDIR_GAP:
		d->stats.gaps++;
		if (c->session > 0)
			note_error(d, ug_recorder_gap(d->rec, c->session, ev->dir, ev->gap_len, ts_ns));
		break;
	case UG_SPICE_STREAM_NOTICE:
		logf_(d, UG_LOG_WARNING, "connection %u (%s): %s", c->id, label,
		      ev->message ? ev->message : "SPICE notice");
		break;
	case UG_SPICE_STREAM_ERROR:
		logf_(d, UG_LOG_WARNING, "connection %u (%s): %s", c->id, label,
		      ev->code == UG_E_ENCRYPTED && !ev->message ? ug_strerror(UG_E_ENCRYPTED)
								  : ev->message ? ev->message : "");
		break;
	}
}

static void spice_drain(ug_capture_demux *d, struct conn *c, uint64_t ts_ns)
{
	struct ug_spice_stream_event ev;

	while (ug_spice_stream_next(c->spice, &ev) > 0)
		spice_event(d, c, &ev, ts_ns);
}

static void spice_start(ug_capture_demux *d, struct conn *c)
{
	const char *why;
	uint32_t size;

	d->stats.spice++;
	c->server_side = spice_server_side(d, c, &why);
	c->spice = ug_spice_stream_new();
	if (!c->spice) {
		note_error(d, ug_errmsg_set(d->errmsg, UG_E_NOMEM, "connection %u: SPICE decoder",
					    c->id));
		return;
	}
	if (why)
		logf_(d, UG_LOG_INFO, "connection %u (%s): SPICE; the server is %s (%s)", c->id,
		      c->label, c->endpoint[c->server_side], why);
	else
		logf_(d, UG_LOG_WARNING,
		      "connection %u (%s): SPICE without a captured link; assuming the capture's "
		      "server side %s is the SPICE server (name it with --spice-port if not)",
		      c->id, c->label, c->endpoint[c->server_side]);
	if (!head_link(c, 0, &size) && !head_link(c, 1, &size))
		logf_(d, UG_LOG_WARNING,
		      "connection %u (%s): SPICE link not captured; the decoder guesses the channel "
		      "and header kind", c->id, c->label);
}

static void spice_data(ug_capture_demux *d, struct conn *c, int side, const uint8_t *data,
		       size_t len, uint64_t ts_ns)
{
	if (!c->spice)
		return;
	if (ug_spice_stream_feed(c->spice, side == c->server_side, data, len) == 0)
		spice_drain(d, c, ts_ns);
}

static void spice_gap(ug_capture_demux *d, struct conn *c, int side, uint64_t len,
		      uint64_t ts_ns)
{
	if (!c->spice)
		return;
	if (ug_spice_stream_gap(c->spice, side == c->server_side, len) == 0)
		spice_drain(d, c, ts_ns);
}

static void spice_close(ug_capture_demux *d, struct conn *c, uint64_t ts_ns)
{
	struct ug_spice_stream_stats st;
	char label[192];

	if (!c->spice)
		return;
	for (int s = 0; s < 2; s++)
		if (ug_spice_stream_end(c->spice, s) == 0)
			spice_drain(d, c, ts_ns);
	spice_count(d, c);
	ug_spice_stream_get_stats(c->spice, &st);
	d->stats.spice_lz4 += st.lz4_messages[0] + st.lz4_messages[1];
	spice_label(c, label, sizeof(label));
	/* A connection taken for SPICE that turned out encrypted is a TLS
	 * connection: count it once, there. */
	if (st.encrypted) {
		d->stats.tls++;
		if (d->stats.spice > 0)
			d->stats.spice--;
	}
	logf_(d, UG_LOG_INFO,
	      "connection %u (%s): SPICE closed; %llu/%llu bytes client->server/back, %llu/%llu "
	      "messages, %llu skipped, %llu LZ4, %llu/%llu usbredir bytes host->guest/back%s",
	      c->id, label, (unsigned long long)st.bytes[0], (unsigned long long)st.bytes[1],
	      (unsigned long long)st.messages[0], (unsigned long long)st.messages[1],
	      (unsigned long long)(st.skipped_messages[0] + st.skipped_messages[1]),
	      (unsigned long long)(st.lz4_messages[0] + st.lz4_messages[1]),
	      (unsigned long long)st.usbredir_bytes[UG_DIR_H2G],
	      (unsigned long long)st.usbredir_bytes[UG_DIR_G2H], st.encrypted ? ", encrypted" : "");
	if (c->session > 0)
		note_error(d, ug_recorder_end_session(d->rec, c->session, ts_ns));
	ug_spice_stream_free(c->spice);
	c->spice = NULL;
}

static const struct handler spice_handler = {
	.name = "spice",
	.start = spice_start,
	.data = spice_data,
	.gap = spice_gap,
	.close = spice_close,
};

static void tls_start(ug_capture_demux *d, struct conn *c)
{
	d->stats.tls++;
	logf_(d, UG_LOG_WARNING, "connection %u (%s): TLS: %s; skipped", c->id, c->label,
	      ug_strerror(UG_E_ENCRYPTED));
}

static const struct handler tls_handler = {
	.name = "tls",
	.start = tls_start,
};

static void other_start(ug_capture_demux *d, struct conn *c)
{
	d->stats.other++;
	if (!(c->flags & UG_CAPTURE_CONN_HANDSHAKE))
		logf_(d, UG_LOG_INFO,
		      "connection %u (%s): no usbredir hello, SPICE link or TLS handshake; the "
		      "capture may start inside it (force its port to decode it as usbredir)",
		      c->id, c->label);
	else
		logf_(d, UG_LOG_DEBUG, "connection %u (%s): not usbredir, skipped", c->id, c->label);
}

static const struct handler other_handler = {
	.name = "other",
	.start = other_start,
};

/* The handler per classification. */
static const struct handler *handler_for(enum ug_capture_proto proto)
{
	switch (proto) {
	case UG_CAPTURE_PROTO_USBREDIR:
		return &usbredir_handler;
	case UG_CAPTURE_PROTO_SPICE:
		return &spice_handler;
	case UG_CAPTURE_PROTO_TLS:
		return &tls_handler;
	default:
		return &other_handler;
	}
}

/* ---- connections --------------------------------------------------------- */

static struct conn *find_conn(ug_capture_demux *d, uint32_t id)
{
	for (struct conn *c = d->conns; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void free_held(struct conn *c)
{
	struct chunk *k = c->held;

	while (k) {
		struct chunk *next = k->next;

		free(k->data);
		free(k);
		k = next;
	}
	c->held = NULL;
	c->held_tail = &c->held;
	c->held_bytes = 0;
}

static void remove_conn(ug_capture_demux *d, struct conn *c)
{
	for (struct conn **pp = &d->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	free_held(c);
	ug_spice_stream_free(c->spice);
	free(c);
}

/* Gives the connection to its handler and replays what was held. */
static void decide(ug_capture_demux *d, struct conn *c, enum ug_capture_proto proto)
{
	const struct handler *h;

	if (proto != UG_CAPTURE_PROTO_USBREDIR && forced_for(d, c))
		proto = UG_CAPTURE_PROTO_USBREDIR;
	else if (proto != UG_CAPTURE_PROTO_SPICE && proto != UG_CAPTURE_PROTO_TLS &&
		 proto != UG_CAPTURE_PROTO_USBREDIR &&
		 (spice_port_named(d, c->ports[0]) || spice_port_named(d, c->ports[1])))
		proto = UG_CAPTURE_PROTO_SPICE;
	h = handler_for(proto);
	c->h = h;
	if (h->start)
		h->start(d, c);
	for (struct chunk *k = c->held; k; k = k->next) {
		if (k->data && h->data)
			h->data(d, c, k->side, k->data, (size_t)k->len, k->ts_ns);
		else if (!k->data && h->gap)
			h->gap(d, c, k->side, k->len, k->ts_ns);
	}
	free_held(c);
}

static enum ug_capture_proto classify(const struct conn *c)
{
	return ug_capture_classify(c->head[0], c->head_len[0], c->head[1], c->head_len[1]);
}

/*
 * Decides when the bytes allow: a final classification, and for usbredir a
 * guest side the traffic shows (or the held limit was reached).
 */
static void try_decide(ug_capture_demux *d, struct conn *c, int final)
{
	enum ug_capture_proto proto = classify(c);
	int side;
	const char *why;

	if (c->held_bytes >= UG_CAPTURE_DEMUX_MAX_HELD)
		final = 1;
	if (!final) {
		if (proto == UG_CAPTURE_PROTO_NEED_MORE) {
			/* Both heads stopped growing (gaps, FINs): nothing more will come. */
			if (!((c->head_done[0] || c->ended[0]) && (c->head_done[1] || c->ended[1])))
				return;
		}
		if ((proto == UG_CAPTURE_PROTO_USBREDIR || forced_for(d, c)) &&
		    !find_guest(c, walk_caps(d, c), &side, &why) &&
		    !((c->head_done[0] || c->ended[0]) && (c->head_done[1] || c->ended[1])))
			return;
	}
	decide(d, c, proto);
}

static int hold(ug_capture_demux *d, struct conn *c, int side, const uint8_t *data, uint64_t len,
		uint64_t ts_ns)
{
	struct chunk *k = calloc(1, sizeof(*k));

	if (!k)
		return ug_errmsg_set(d->errmsg, UG_E_NOMEM, "connection %u: holding %llu bytes",
				     c->id, (unsigned long long)len);
	if (data) {
		k->data = malloc(len ? (size_t)len : 1);
		if (!k->data) {
			free(k);
			return ug_errmsg_set(d->errmsg, UG_E_NOMEM, "connection %u: holding %llu bytes",
					     c->id, (unsigned long long)len);
		}
		memcpy(k->data, data, (size_t)len);
		c->held_bytes += len;
	}
	k->side = side;
	k->len = len;
	k->ts_ns = ts_ns;
	*c->held_tail = k;
	c->held_tail = &k->next;
	return 0;
}

static int on_open(ug_capture_demux *d, const struct ug_capture_event *ev)
{
	struct conn *c = calloc(1, sizeof(*c));
	char a[64], b[64];

	if (!c)
		return ug_errmsg_set(d->errmsg, UG_E_NOMEM, "connection %u", ev->conn->id);
	c->id = ev->conn->id;
	c->flags = ev->conn->flags;
	c->ports[0] = ev->conn->client.port;
	c->ports[1] = ev->conn->server.port;
	c->held_tail = &c->held;
	format_endpoint(&ev->conn->client, a, sizeof(a));
	format_endpoint(&ev->conn->server, b, sizeof(b));
	snprintf(c->endpoint[0], sizeof(c->endpoint[0]), "%s", a);
	snprintf(c->endpoint[1], sizeof(c->endpoint[1]), "%s", b);
	snprintf(c->label, sizeof(c->label), "tcp %s -> %s", a, b);
	c->next = d->conns;
	d->conns = c;
	d->stats.connections++;
	return 0;
}

static void on_data(ug_capture_demux *d, struct conn *c, const struct ug_capture_event *ev)
{
	int side = ev->side == UG_CAPTURE_S2C ? 1 : 0;

	if (c->h) {
		if (c->h->data)
			c->h->data(d, c, side, ev->data, (size_t)ev->len, ev->ts_ns);
		return;
	}
	if (!c->head_done[side] && ev->offset == c->head_len[side]) {
		size_t room = HEAD_MAX - c->head_len[side];
		size_t n = ev->len < room ? (size_t)ev->len : room;

		memcpy(c->head[side] + c->head_len[side], ev->data, n);
		c->head_len[side] += n;
		if (c->head_len[side] == HEAD_MAX)
			c->head_done[side] = 1;
	} else {
		c->head_done[side] = 1;
	}
	note_error(d, hold(d, c, side, ev->data, ev->len, ev->ts_ns));
	try_decide(d, c, 0);
}

static void on_gap(ug_capture_demux *d, struct conn *c, const struct ug_capture_event *ev)
{
	int side = ev->side == UG_CAPTURE_S2C ? 1 : 0;

	if (c->h) {
		if (c->h->gap)
			c->h->gap(d, c, side, ev->len, ev->ts_ns);
		return;
	}
	c->head_done[side] = 1;
	note_error(d, hold(d, c, side, NULL, ev->len, ev->ts_ns));
	try_decide(d, c, 0);
}

static void on_close(ug_capture_demux *d, struct conn *c, uint64_t ts_ns)
{
	if (!c->h)
		decide(d, c, classify(c));
	if (c->h->close)
		c->h->close(d, c, ts_ns);
	remove_conn(d, c);
}

/* The caps a forced connection is walked and decoded with. */
static uint32_t walk_caps(const ug_capture_demux *d, const struct conn *c)
{
	const struct forced *f = forced_for(d, c);

	if (!f)
		return 0;
	return f->caps_known ? f->caps : UG_CAPTURE_DEMUX_DEFAULT_CAPS;
}

/* ---- public API ---------------------------------------------------------- */

UG_EXPORT ug_capture_demux *ug_capture_demux_new(ug_recorder *rec)
{
	ug_capture_demux *d;

	if (!rec)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->rec = rec;
	return d;
}

UG_EXPORT void ug_capture_demux_free(ug_capture_demux *d)
{
	if (!d)
		return;
	ug_capture_demux_finish(d, 0);
	free(d);
}

UG_EXPORT void ug_capture_demux_set_log(ug_capture_demux *d, ug_log_fn fn, void *user_data)
{
	d->log = fn;
	d->log_user = user_data;
}

UG_EXPORT int ug_capture_demux_force_port(ug_capture_demux *d, uint16_t port, uint32_t caps,
					  int caps_known, enum ug_capture_demux_guest guest)
{
	if (guest != UG_DEMUX_GUEST_AUTO && guest != UG_DEMUX_GUEST_CLIENT &&
	    guest != UG_DEMUX_GUEST_SERVER)
		return ug_errmsg_set(d->errmsg, UG_E_INVAL, "guest side %d", (int)guest);
	if (d->nforced >= MAX_FORCED_PORTS)
		return ug_errmsg_set(d->errmsg, UG_E_TOOBIG, "port %u: more than %d forced ports",
				     (unsigned)port, MAX_FORCED_PORTS);
	d->forced[d->nforced].port = port;
	d->forced[d->nforced].caps = caps;
	d->forced[d->nforced].caps_known = !!caps_known;
	d->forced[d->nforced].guest = guest;
	d->nforced++;
	return 0;
}

UG_EXPORT int ug_capture_demux_spice_port(ug_capture_demux *d, uint16_t port)
{
	if (d->nspice_ports >= MAX_FORCED_PORTS)
		return ug_errmsg_set(d->errmsg, UG_E_TOOBIG, "port %u: more than %d SPICE ports",
				     (unsigned)port, MAX_FORCED_PORTS);
	d->spice_ports[d->nspice_ports++] = port;
	return 0;
}

UG_EXPORT void ug_capture_demux_set_guest(ug_capture_demux *d, enum ug_capture_demux_guest guest)
{
	d->guest = guest;
}

UG_EXPORT int ug_capture_demux_event(ug_capture_demux *d, const struct ug_capture_event *ev)
{
	struct conn *c;

	if (!ev)
		return UG_E_INVAL;
	if (ev->type == UG_CAPTURE_NOTICE) {
		d->stats.notices++;
		/* A file cut short or unreadable loses whatever came after: that is
		 * traffic not decoded, unlike a skipped frame of another protocol. */
		if (ev->reason == UG_E_TRUNCATED || ev->reason == UG_E_IO)
			d->stats.damaged++;
		logf_(d, UG_LOG_WARNING, "%s", ev->message ? ev->message : "capture notice");
		return d->first_error;
	}
	if (!ev->conn)
		return d->first_error;
	if (ev->type == UG_CAPTURE_OPEN) {
		note_error(d, on_open(d, ev));
		return d->first_error;
	}
	c = find_conn(d, ev->conn->id);
	if (!c)
		return d->first_error;
	switch (ev->type) {
	case UG_CAPTURE_DATA:
		if (ev->len)
			on_data(d, c, ev);
		break;
	case UG_CAPTURE_GAP:
		if (ev->message && c->h == &usbredir_handler)
			logf_(d, UG_LOG_WARNING, "connection %u (%s): %s", c->id, c->label, ev->message);
		on_gap(d, c, ev);
		break;
	case UG_CAPTURE_END:
		c->ended[ev->side == UG_CAPTURE_S2C ? 1 : 0] = 1;
		if (!c->h)
			try_decide(d, c, 0);
		break;
	case UG_CAPTURE_CLOSE:
		on_close(d, c, ev->ts_ns);
		break;
	default:
		break;
	}
	return d->first_error;
}

UG_EXPORT int ug_capture_demux_finish(ug_capture_demux *d, uint64_t ts_ns)
{
	while (d->conns)
		on_close(d, d->conns, ts_ns);
	return d->first_error;
}

UG_EXPORT void ug_capture_demux_get_stats(const ug_capture_demux *d,
					  struct ug_capture_demux_stats *ret_stats)
{
	*ret_stats = d->stats;
}

UG_EXPORT const char *ug_capture_demux_errmsg(const ug_capture_demux *d)
{
	return d->errmsg;
}
