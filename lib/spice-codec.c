/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-codec.c: the SPICE wire codec: link phase, data headers, main and spicevmc messages. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "common.h"
#include "spice-codec.h"

/* Like ug_errmsg_set(), but err may be NULL (callers that only want the code). */
static int fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err, UG_ERRMSG_SIZE, fmt, ap);
		va_end(ap);
	}
	return code;
}

int ug_spice_cap_test(const uint32_t *words, uint32_t num, unsigned bit)
{
	unsigned w = bit / 32;

	if (w >= num || w >= UG_SPICE_MAX_CAP_WORDS)
		return 0;
	return (words[w] >> (bit % 32)) & 1;
}

int ug_spice_cap_set(uint32_t *words, uint32_t *num, unsigned bit)
{
	unsigned w = bit / 32;

	if (w >= UG_SPICE_MAX_CAP_WORDS)
		return UG_E_INVAL;
	while (*num <= w)
		words[(*num)++] = 0;
	words[w] |= 1u << (bit % 32);
	return 0;
}

const char *ug_spice_link_error_str(uint32_t error)
{
	switch (error) {
	case SPICE_LINK_ERR_OK:
		return "no error";
	case SPICE_LINK_ERR_ERROR:
		return "the server reported a generic link error";
	case SPICE_LINK_ERR_INVALID_MAGIC:
		return "the server did not recognise the link magic";
	case SPICE_LINK_ERR_INVALID_DATA:
		return "the server rejected the link message as invalid";
	case SPICE_LINK_ERR_VERSION_MISMATCH:
		return "protocol version mismatch";
	case SPICE_LINK_ERR_NEED_SECURED:
		return "the server requires TLS for this channel (need secured)";
	case SPICE_LINK_ERR_NEED_UNSECURED:
		return "the server requires a plain connection for this channel (need unsecured)";
	case SPICE_LINK_ERR_PERMISSION_DENIED:
		return "permission denied: wrong password, or the password has expired";
	case SPICE_LINK_ERR_BAD_CONNECTION_ID:
		return "bad connection id: the session is gone (server restarted or another client "
		       "took over)";
	case SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE:
		return "channel not available";
	default:
		return "unknown link error";
	}
}

int ug_spice_link_error_code(uint32_t error)
{
	switch (error) {
	case SPICE_LINK_ERR_OK:
		return 0;
	case SPICE_LINK_ERR_PERMISSION_DENIED:
		return UG_E_AUTH;
	case SPICE_LINK_ERR_NEED_SECURED:
	case SPICE_LINK_ERR_NEED_UNSECURED:
		return UG_E_TLS;
	case SPICE_LINK_ERR_VERSION_MISMATCH:
		return UG_E_UNSUPPORTED;
	case SPICE_LINK_ERR_BAD_CONNECTION_ID:
	case SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE:
		return UG_E_NOTFOUND;
	default:
		return UG_E_PROTO;
	}
}

const char *ug_spice_channel_type_name(unsigned type)
{
	static const char *const names[] = {
		[SPICE_CHANNEL_MAIN] = "main",
		[SPICE_CHANNEL_DISPLAY] = "display",
		[SPICE_CHANNEL_INPUTS] = "inputs",
		[SPICE_CHANNEL_CURSOR] = "cursor",
		[SPICE_CHANNEL_PLAYBACK] = "playback",
		[SPICE_CHANNEL_RECORD] = "record",
		[SPICE_CHANNEL_TUNNEL] = "tunnel",
		[SPICE_CHANNEL_SMARTCARD] = "smartcard",
		[SPICE_CHANNEL_USBREDIR] = "usbredir",
		[SPICE_CHANNEL_PORT] = "port",
		[SPICE_CHANNEL_WEBDAV] = "webdav",
	};

	if (type < UG_NELEMS(names) && names[type])
		return names[type];
	return "unknown";
}

/* ---- link phase ------------------------------------------------------------ */

int ug_spice_link_header_decode(const uint8_t *p, size_t len, uint32_t max_size,
                                struct ug_spice_link_header *ret_hdr, char *err)
{
	uint32_t size;

	if (len < UG_SPICE_LINK_HEADER_SIZE)
		return fail(err, UG_E_TRUNCATED, "link header needs %u bytes, have %zu",
		            UG_SPICE_LINK_HEADER_SIZE, len);
	if (ug_get_le32(p) != SPICE_MAGIC)
		return fail(err, UG_E_PROTO,
		            "link magic is 0x%08x, expected 0x%08x (\"REDQ\"): not a SPICE stream",
		            ug_get_le32(p), (unsigned)SPICE_MAGIC);
	size = ug_get_le32(p + 12);
	if (size > max_size)
		return fail(err, UG_E_TOOBIG, "link message claims %u bytes, limit %u", size,
		            max_size);
	ret_hdr->major = ug_get_le32(p + 4);
	ret_hdr->minor = ug_get_le32(p + 8);
	ret_hdr->size = size;
	return 0;
}

/*
 * Checks that num_common + num_channel cap words at caps_offset fit in a body
 * of len bytes whose fixed part is fixed bytes, then copies the kept words.
 */
static int caps_decode(const char *what, const uint8_t *body, size_t len, size_t fixed,
                       uint32_t num_common, uint32_t num_channel, uint32_t caps_offset,
                       struct ug_spice_caps *caps, char *err)
{
	uint64_t words = (uint64_t)num_common + num_channel;
	uint64_t bytes = words * 4;

	if (caps_offset < fixed || caps_offset > len)
		return fail(err, UG_E_PROTO, "%s caps_offset %u outside %zu..%zu", what,
		            caps_offset, fixed, len);
	if (bytes > len - caps_offset)
		return fail(err, UG_E_PROTO,
		            "%s claims %u common + %u channel caps (%llu bytes) at offset %u, "
		            "but the message has %zu bytes",
		            what, num_common, num_channel, (unsigned long long)bytes, caps_offset,
		            len);
	memset(caps, 0, sizeof(*caps));
	caps->num_common = num_common;
	caps->num_channel = num_channel;
	for (uint32_t i = 0; i < num_common && i < UG_SPICE_MAX_CAP_WORDS; i++)
		caps->common[i] = ug_get_le32(body + caps_offset + 4 * i);
	for (uint32_t i = 0; i < num_channel && i < UG_SPICE_MAX_CAP_WORDS; i++)
		caps->channel[i] = ug_get_le32(body + caps_offset + 4 * ((size_t)num_common + i));
	return 0;
}

/* Writes the kept cap words; counts beyond the kept words cannot be encoded. */
static int caps_check(const struct ug_spice_caps *caps)
{
	if (caps->num_common > UG_SPICE_MAX_CAP_WORDS || caps->num_channel > UG_SPICE_MAX_CAP_WORDS)
		return UG_E_INVAL;
	return 0;
}

static size_t caps_encode(const struct ug_spice_caps *caps, uint8_t *p)
{
	size_t n = 0;

	for (uint32_t i = 0; i < caps->num_common; i++, n += 4)
		ug_put_le32(p + n, caps->common[i]);
	for (uint32_t i = 0; i < caps->num_channel; i++, n += 4)
		ug_put_le32(p + n, caps->channel[i]);
	return n;
}

static void link_header_encode(uint8_t *p, uint32_t size)
{
	ug_put_le32(p, SPICE_MAGIC);
	ug_put_le32(p + 4, SPICE_VERSION_MAJOR);
	ug_put_le32(p + 8, SPICE_VERSION_MINOR);
	ug_put_le32(p + 12, size);
}

int ug_spice_link_mess_encode(const struct ug_spice_link_mess *m, uint8_t *out,
                              size_t out_size, size_t *ret_len)
{
	size_t body, total;
	uint8_t *p;

	if (caps_check(&m->caps) < 0)
		return UG_E_INVAL;
	body = UG_SPICE_LINK_MESS_SIZE + 4 * ((size_t)m->caps.num_common + m->caps.num_channel);
	total = UG_SPICE_LINK_HEADER_SIZE + body;
	if (out_size < total) {
		*ret_len = total;
		return UG_E_TOOBIG;
	}
	link_header_encode(out, (uint32_t)body);
	p = out + UG_SPICE_LINK_HEADER_SIZE;
	ug_put_le32(p, m->connection_id);
	p[4] = m->channel_type;
	p[5] = m->channel_id;
	ug_put_le32(p + 6, m->caps.num_common);
	ug_put_le32(p + 10, m->caps.num_channel);
	ug_put_le32(p + 14, UG_SPICE_LINK_MESS_SIZE);
	caps_encode(&m->caps, p + UG_SPICE_LINK_MESS_SIZE);
	*ret_len = total;
	return 0;
}

int ug_spice_link_mess_decode(const uint8_t *body, size_t len, struct ug_spice_link_mess *ret_m,
                              char *err)
{
	struct ug_spice_link_mess m;
	int r;

	if (len < UG_SPICE_LINK_MESS_SIZE)
		return fail(err, UG_E_PROTO, "link message has %zu bytes, needs at least %u", len,
		            UG_SPICE_LINK_MESS_SIZE);
	m.connection_id = ug_get_le32(body);
	m.channel_type = body[4];
	m.channel_id = body[5];
	r = caps_decode("link message", body, len, UG_SPICE_LINK_MESS_SIZE, ug_get_le32(body + 6),
	                ug_get_le32(body + 10), ug_get_le32(body + 14), &m.caps, err);
	if (r < 0)
		return r;
	*ret_m = m;
	return 0;
}

int ug_spice_link_reply_encode(const struct ug_spice_link_reply *r, uint8_t *out,
                               size_t out_size, size_t *ret_len)
{
	size_t body, total;
	uint8_t *p;

	if (caps_check(&r->caps) < 0)
		return UG_E_INVAL;
	body = UG_SPICE_LINK_REPLY_SIZE + 4 * ((size_t)r->caps.num_common + r->caps.num_channel);
	total = UG_SPICE_LINK_HEADER_SIZE + body;
	if (out_size < total) {
		*ret_len = total;
		return UG_E_TOOBIG;
	}
	link_header_encode(out, (uint32_t)body);
	p = out + UG_SPICE_LINK_HEADER_SIZE;
	ug_put_le32(p, r->error);
	memcpy(p + 4, r->pub_key, SPICE_TICKET_PUBKEY_BYTES);
	p += 4 + SPICE_TICKET_PUBKEY_BYTES;
	ug_put_le32(p, r->caps.num_common);
	ug_put_le32(p + 4, r->caps.num_channel);
	ug_put_le32(p + 8, UG_SPICE_LINK_REPLY_SIZE);
	caps_encode(&r->caps, out + UG_SPICE_LINK_HEADER_SIZE + UG_SPICE_LINK_REPLY_SIZE);
	*ret_len = total;
	return 0;
}

int ug_spice_link_reply_decode(const uint8_t *body, size_t len,
                               struct ug_spice_link_reply *ret_r, char *err)
{
	struct ug_spice_link_reply r;
	const uint8_t *p;
	int rc;

	if (len < 4)
		return fail(err, UG_E_PROTO, "link reply has %zu bytes, needs at least 4", len);
	memset(&r, 0, sizeof(r));
	r.error = ug_get_le32(body);
	if (r.error != SPICE_LINK_ERR_OK) {
		/* An error reply carries nothing else worth reading. */
		*ret_r = r;
		return 0;
	}
	if (len < UG_SPICE_LINK_REPLY_SIZE)
		return fail(err, UG_E_PROTO, "link reply has %zu bytes, needs at least %u", len,
		            UG_SPICE_LINK_REPLY_SIZE);
	memcpy(r.pub_key, body + 4, SPICE_TICKET_PUBKEY_BYTES);
	p = body + 4 + SPICE_TICKET_PUBKEY_BYTES;
	rc = caps_decode("link reply", body, len, UG_SPICE_LINK_REPLY_SIZE, ug_get_le32(p),
	                 ug_get_le32(p + 4), ug_get_le32(p + 8), &r.caps, err);
	if (rc < 0)
		return rc;
	*ret_r = r;
	return 0;
}

/* ---- the push decoder ------------------------------------------------------ */

struct ug_spice_dec {
	enum ug_spice_unit_kind kind;
	uint32_t fixed_len;
	uint32_t max_message;
	uint32_t max_link;
	const uint8_t *in;      /* caller's bytes not yet consumed */
	size_t in_len;
	struct ug_buf acc;      /* a unit split across feeds: header, then body */
	int acc_done;           /* acc holds a unit already returned: drop it first */
	size_t hdr_len;         /* header bytes of the unit being assembled */
	uint64_t body_len;      /* body bytes it announced (valid once acc has the header) */
	int have_header;
	uint64_t skip;          /* body bytes of a too-big message still to discard */
	uint64_t offset;        /* stream offset of the next unconsumed byte */
	uint64_t unit_offset;
	int dead;               /* unrecoverable framing error */
	int dead_code;
	char err[UG_ERRMSG_SIZE];
};

static size_t header_size(enum ug_spice_unit_kind kind)
{
	switch (kind) {
	case UG_SPICE_UNIT_LINK:
		return UG_SPICE_LINK_HEADER_SIZE;
	case UG_SPICE_UNIT_MINI:
		return UG_SPICE_MINI_HEADER_SIZE;
	case UG_SPICE_UNIT_FULL:
		return UG_SPICE_FULL_HEADER_SIZE;
	case UG_SPICE_UNIT_FIXED:
	default:
		return 0;
	}
}

ug_spice_dec *ug_spice_dec_new(enum ug_spice_unit_kind kind, uint32_t fixed_len)
{
	ug_spice_dec *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->max_message = UG_SPICE_DEFAULT_MAX_MESSAGE;
	d->max_link = UG_SPICE_DEFAULT_MAX_LINK;
	d->kind = kind;
	d->fixed_len = fixed_len;
	/* The maximum is fixed when a unit starts; see unit_max(). */
	ug_buf_init(&d->acc, 0);
	return d;
}

void ug_spice_dec_free(ug_spice_dec *d)
{
	if (!d)
		return;
	ug_buf_release(&d->acc);
	free(d);
}

void ug_spice_dec_set_max_message(ug_spice_dec *d, uint32_t max)
{
	d->max_message = max;
}

void ug_spice_dec_set_max_link(ug_spice_dec *d, uint32_t max)
{
	d->max_link = max;
}

int ug_spice_dec_expect(ug_spice_dec *d, enum ug_spice_unit_kind kind, uint32_t fixed_len)
{
	if ((d->acc.len > 0 && !d->acc_done) || d->skip > 0)
		return ug_errmsg_set(d->err, UG_E_STATE,
		                     "offset %llu: cannot change framing inside a unit",
		                     (unsigned long long)d->offset);
	d->kind = kind;
	d->fixed_len = fixed_len;
	return 0;
}

int ug_spice_dec_feed(ug_spice_dec *d, const void *buf, size_t len)
{
	if (d->in_len > 0)
		return ug_errmsg_set(d->err, UG_E_STATE,
		                     "feed while %zu bytes of the last feed are unused", d->in_len);
	d->in = buf;
	d->in_len = len;
	return 0;
}

size_t ug_spice_dec_unfeed(ug_spice_dec *d)
{
	size_t n = d->in_len;

	d->in = NULL;
	d->in_len = 0;
	return n;
}

uint64_t ug_spice_dec_offset(const ug_spice_dec *d)
{
	return d->offset;
}

const char *ug_spice_dec_errmsg(const ug_spice_dec *d)
{
	return d->err;
}

static void consume(ug_spice_dec *d, size_t n)
{
	/* Nothing may have been fed (in is NULL): advancing it by 0 is still undefined. */
	if (n == 0)
		return;
	d->in += n;
	d->in_len -= n;
	d->offset += n;
}

/*
 * Parses a complete header at p into u and the body length. Returns 0, or
 * UG_E_TOOBIG (body over the limit: skippable) or UG_E_PROTO (fatal).
 */
static int parse_header(ug_spice_dec *d, const uint8_t *p, struct ug_spice_unit *u,
                        uint64_t *ret_body)
{
	uint32_t size;
	int r;

	memset(u, 0, sizeof(*u));
	u->kind = d->kind;
	u->offset = d->unit_offset;
	switch (d->kind) {
	case UG_SPICE_UNIT_LINK: {
		char detail[UG_ERRMSG_SIZE];

		r = ug_spice_link_header_decode(p, UG_SPICE_LINK_HEADER_SIZE, d->max_link, &u->link,
		                                detail);
		if (r < 0) {
			/* The link phase has no resync point: a bad link header ends the stream. */
			ug_errmsg_set(d->err, 0, "offset %llu: %.200s",
			              (unsigned long long)u->offset, detail);
			d->dead = 1;
			d->dead_code = UG_E_PROTO;
			return UG_E_PROTO;
		}
		*ret_body = u->link.size;
		return 0;
	}
	case UG_SPICE_UNIT_FIXED:
		*ret_body = d->fixed_len;
		return 0;
	case UG_SPICE_UNIT_MINI:
		u->type = ug_get_le16(p);
		size = ug_get_le32(p + 2);
		break;
	case UG_SPICE_UNIT_FULL:
	default:
		u->serial = ug_get_le64(p);
		u->type = ug_get_le16(p + 8);
		size = ug_get_le32(p + 10);
		u->sub_list = ug_get_le32(p + 14);
		break;
	}
	*ret_body = size;
	if (size > d->max_message)
		return ug_errmsg_set(d->err, UG_E_TOOBIG,
		                     "offset %llu: message type %u claims %u bytes, limit %u",
		                     (unsigned long long)u->offset, u->type, size, d->max_message);
	return 0;
}

int ug_spice_dec_next(ug_spice_dec *d, struct ug_spice_unit *ret_unit)
{
	struct ug_spice_unit u;
	size_t hs, n;
	uint64_t body;
	int r;

	if (d->dead) {
		d->in_len = 0;
		return d->dead_code;
	}
	if (d->acc_done) {
		ug_buf_reset(&d->acc);
		d->acc_done = 0;
		d->have_header = 0;
	}
	if (d->skip > 0) {
		n = d->in_len < d->skip ? d->in_len : (size_t)d->skip;
		consume(d, n);
		d->skip -= n;
		if (d->skip > 0)
			return 0;
	}
	hs = header_size(d->kind);
	if (d->acc.len == 0) {
		if (d->in_len == 0)
			return 0;
		d->unit_offset = d->offset;
		/* Fast path: the whole unit lies in the caller's buffer. */
		if (d->in_len >= hs) {
			r = parse_header(d, d->in, &u, &body);
			if (r == UG_E_TOOBIG) {
				consume(d, hs);
				d->skip = body;
				return r;
			}
			if (r < 0)
				return r;
			if (d->in_len - hs >= body) {
				u.body = body ? d->in + hs : NULL;
				u.size = (uint32_t)body;
				consume(d, hs + (size_t)body);
				*ret_unit = u;
				return 1;
			}
		}
		/* The unit is split: assemble it, bounded by its own size. */
		d->acc.max = hs;
		d->have_header = 0;
	}
	if (!d->have_header) {
		n = hs - d->acc.len;
		if (n > d->in_len)
			n = d->in_len;
		if (ug_buf_append(&d->acc, d->in, n) < 0)
			return ug_errmsg_set(d->err, UG_E_NOMEM, "offset %llu: out of memory",
			                     (unsigned long long)d->offset);
		consume(d, n);
		if (d->acc.len < hs)
			return 0;
		r = parse_header(d, ug_buf_peek(&d->acc), &u, &body);
		if (r == UG_E_TOOBIG) {
			ug_buf_reset(&d->acc);
			d->skip = body;
			n = d->in_len < d->skip ? d->in_len : (size_t)d->skip;
			consume(d, n);
			d->skip -= n;
			return r;
		}
		if (r < 0)
			return r;
		d->have_header = 1;
		d->hdr_len = hs;
		d->body_len = body;
		/* body is within max_message or max_link, so this cannot overflow. */
		d->acc.max = hs + (size_t)body;
	}
	n = d->hdr_len + (size_t)d->body_len - d->acc.len;
	if (n > d->in_len)
		n = d->in_len;
	if (ug_buf_append(&d->acc, d->in, n) < 0)
		return ug_errmsg_set(d->err, UG_E_NOMEM,
		                     "offset %llu: out of memory for a %llu-byte message",
		                     (unsigned long long)d->offset,
		                     (unsigned long long)d->body_len);
	consume(d, n);
	if (d->acc.len < d->hdr_len + d->body_len)
		return 0;
	r = parse_header(d, ug_buf_peek(&d->acc), &u, &body);
	if (r < 0)
		return r;
	u.body = body ? ug_buf_peek(&d->acc) + d->hdr_len : NULL;
	u.size = (uint32_t)body;
	d->acc_done = 1;
	*ret_unit = u;
	return 1;
}

/* ---- data messages --------------------------------------------------------- */

size_t ug_spice_header_encode(int mini, uint64_t serial, uint16_t type, uint32_t size,
                              uint8_t *out)
{
	if (mini) {
		ug_put_le16(out, type);
		ug_put_le32(out + 2, size);
		return UG_SPICE_MINI_HEADER_SIZE;
	}
	ug_put_le64(out, serial);
	ug_put_le16(out + 8, type);
	ug_put_le32(out + 10, size);
	ug_put_le32(out + 14, 0);
	return UG_SPICE_FULL_HEADER_SIZE;
}

int ug_spice_msg_append(struct ug_buf *out, int mini, uint64_t *serial, uint16_t type,
                        const void *body, size_t len)
{
	uint8_t hdr[UG_SPICE_FULL_HEADER_SIZE];
	size_t hl, total;
	int r;

	if (len > UINT32_MAX)
		return UG_E_TOOBIG;
	hl = ug_spice_header_encode(mini, *serial + 1, type, (uint32_t)len, hdr);
	if (__builtin_add_overflow(hl, len, &total))
		return UG_E_TOOBIG;
	r = ug_buf_reserve(out, total);
	if (r < 0)
		return r;
	ug_buf_append(out, hdr, hl);
	ug_buf_append(out, body, len);
	(*serial)++;
	return 0;
}

int ug_spice_ping_decode(const uint8_t *body, size_t len, struct ug_spice_ping *ret, char *err)
{
	if (len < 12)
		return fail(err, UG_E_PROTO, "PING has %zu bytes, needs 12", len);
	if (len - 12 > UINT32_MAX)
		return fail(err, UG_E_TOOBIG, "PING padding of %zu bytes", len - 12);
	ret->id = ug_get_le32(body);
	ret->timestamp = ug_get_le64(body + 4);
	ret->data_len = (uint32_t)(len - 12);
	return 0;
}

size_t ug_spice_pong_encode(uint32_t id, uint64_t timestamp, uint8_t out[12])
{
	ug_put_le32(out, id);
	ug_put_le64(out + 4, timestamp);
	return 12;
}

int ug_spice_set_ack_decode(const uint8_t *body, size_t len, struct ug_spice_set_ack *ret,
                            char *err)
{
	if (len < 8)
		return fail(err, UG_E_PROTO, "SET_ACK has %zu bytes, needs 8", len);
	ret->generation = ug_get_le32(body);
	ret->window = ug_get_le32(body + 4);
	return 0;
}

int ug_spice_notify_decode(const uint8_t *body, size_t len, struct ug_spice_notify *ret,
                           char *err)
{
	uint32_t mlen;

	if (len < 24)
		return fail(err, UG_E_PROTO, "NOTIFY has %zu bytes, needs at least 24", len);
	mlen = ug_get_le32(body + 20);
	if (mlen > len - 24)
		return fail(err, UG_E_PROTO, "NOTIFY text claims %u bytes, %zu left", mlen,
		            len - 24);
	ret->timestamp = ug_get_le64(body);
	ret->severity = ug_get_le32(body + 8);
	ret->visibility = ug_get_le32(body + 12);
	ret->what = ug_get_le32(body + 16);
	ret->message = body + 24;
	/* spice-server counts the terminating NUL; the view leaves it out. */
	ret->message_len = mlen;
	while (ret->message_len > 0 && ret->message[ret->message_len - 1] == '\0')
		ret->message_len--;
	return 0;
}

int ug_spice_disconnecting_decode(const uint8_t *body, size_t len,
                                  struct ug_spice_disconnecting *ret, char *err)
{
	if (len < 12)
		return fail(err, UG_E_PROTO, "DISCONNECTING has %zu bytes, needs 12", len);
	ret->timestamp = ug_get_le64(body);
	ret->reason = ug_get_le32(body + 8);
	return 0;
}

size_t ug_spice_disconnecting_encode(uint64_t timestamp, uint32_t reason, uint8_t out[12])
{
	ug_put_le64(out, timestamp);
	ug_put_le32(out + 8, reason);
	return 12;
}

int ug_spice_migrate_decode(const uint8_t *body, size_t len, uint32_t *ret_flags, char *err)
{
	if (len < 4)
		return fail(err, UG_E_PROTO, "MIGRATE has %zu bytes, needs 4", len);
	*ret_flags = ug_get_le32(body);
	return 0;
}

int ug_spice_migrate_begin_decode(const uint8_t *body, size_t len,
                                  struct ug_spice_migrate_dst *ret, char *err)
{
	struct ug_spice_migrate_dst m;
	uint32_t hsize, hoff;

	if (len < 20)
		return fail(err, UG_E_PROTO, "MIGRATE_BEGIN has %zu bytes, needs at least 20", len);
	m.port = ug_get_le16(body);
	m.sport = ug_get_le16(body + 2);
	hsize = ug_get_le32(body + 4);
	hoff = ug_get_le32(body + 8);
	if (hoff > len || hsize > len - hoff)
		return fail(err, UG_E_PROTO,
		            "MIGRATE_BEGIN host of %u bytes at offset %u, message has %zu", hsize,
		            hoff, len);
	m.host = body + hoff;
	m.host_len = hsize;
	while (m.host_len > 0 && m.host[m.host_len - 1] == '\0')
		m.host_len--;
	*ret = m;
	return 0;
}

int ug_spice_main_init_decode(const uint8_t *body, size_t len, struct ug_spice_main_init *ret,
                              char *err)
{
	if (len < UG_SPICE_MAIN_INIT_SIZE)
		return fail(err, UG_E_PROTO, "MAIN_INIT has %zu bytes, needs %u", len,
		            UG_SPICE_MAIN_INIT_SIZE);
	ret->session_id = ug_get_le32(body);
	ret->display_channels_hint = ug_get_le32(body + 4);
	ret->supported_mouse_modes = ug_get_le32(body + 8);
	ret->current_mouse_mode = ug_get_le32(body + 12);
	ret->agent_connected = ug_get_le32(body + 16);
	ret->agent_tokens = ug_get_le32(body + 20);
	ret->multi_media_time = ug_get_le32(body + 24);
	ret->ram_hint = ug_get_le32(body + 28);
	return 0;
}

size_t ug_spice_main_init_encode(const struct ug_spice_main_init *m, uint8_t out[32])
{
	ug_put_le32(out, m->session_id);
	ug_put_le32(out + 4, m->display_channels_hint);
	ug_put_le32(out + 8, m->supported_mouse_modes);
	ug_put_le32(out + 12, m->current_mouse_mode);
	ug_put_le32(out + 16, m->agent_connected);
	ug_put_le32(out + 20, m->agent_tokens);
	ug_put_le32(out + 24, m->multi_media_time);
	ug_put_le32(out + 28, m->ram_hint);
	return UG_SPICE_MAIN_INIT_SIZE;
}

int ug_spice_channels_list_decode(const uint8_t *body, size_t len,
                                  struct ug_spice_channel_id *out, size_t max_out,
                                  size_t *ret_n, char *err)
{
	uint32_t n;

	if (len < 4)
		return fail(err, UG_E_PROTO, "CHANNELS_LIST has %zu bytes, needs at least 4", len);
	n = ug_get_le32(body);
	if (n > (len - 4) / 2)
		return fail(err, UG_E_PROTO,
		            "CHANNELS_LIST claims %u channels (%llu bytes), %zu bytes left", n,
		            (unsigned long long)n * 2, len - 4);
	if (n > max_out || n > UG_SPICE_MAX_CHANNELS)
		return fail(err, UG_E_TOOBIG, "CHANNELS_LIST claims %u channels, limit %zu", n,
		            max_out < UG_SPICE_MAX_CHANNELS ? max_out : UG_SPICE_MAX_CHANNELS);
	for (uint32_t i = 0; i < n; i++) {
		out[i].type = body[4 + 2 * i];
		out[i].id = body[5 + 2 * i];
	}
	*ret_n = n;
	return 0;
}

int ug_spice_channels_list_encode(const struct ug_spice_channel_id *ids, size_t n,
                                  struct ug_buf *out)
{
	uint8_t *p;
	int r;

	if (n > UG_SPICE_MAX_CHANNELS)
		return UG_E_TOOBIG;
	r = ug_buf_reserve(out, 4 + 2 * n);
	if (r < 0)
		return r;
	p = ug_buf_tail(out, 4 + 2 * n);
	ug_put_le32(p, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		p[4 + 2 * i] = ids[i].type;
		p[5 + 2 * i] = ids[i].id;
	}
	ug_buf_commit(out, 4 + 2 * n);
	return 0;
}

/* ---- spicevmc payloads ----------------------------------------------------- */

int ug_spice_vmc_decompress(const uint8_t *body, size_t len, uint32_t limit,
                            struct ug_buf *out, char *err)
{
	uint32_t usize;
	size_t csize;
	uint8_t *dst;
	int n, r;

	if (len < UG_SPICE_VMC_COMPRESSED_HEADER)
		return fail(err, UG_E_PROTO, "COMPRESSED_DATA has %zu bytes, needs at least %u",
		            len, UG_SPICE_VMC_COMPRESSED_HEADER);
	if (body[0] != SPICE_DATA_COMPRESSION_TYPE_LZ4)
		return fail(err, UG_E_UNSUPPORTED,
		            "COMPRESSED_DATA compression type %u, only LZ4 (%u)", body[0],
		            SPICE_DATA_COMPRESSION_TYPE_LZ4);
	usize = ug_get_le32(body + 1);
	csize = len - UG_SPICE_VMC_COMPRESSED_HEADER;
	if (usize > limit || usize > LZ4_MAX_INPUT_SIZE)
		return fail(err, UG_E_TOOBIG,
		            "COMPRESSED_DATA claims %u uncompressed bytes, limit %u", usize,
		            limit < LZ4_MAX_INPUT_SIZE ? limit : (uint32_t)LZ4_MAX_INPUT_SIZE);
	if (csize > INT32_MAX)
		return fail(err, UG_E_TOOBIG, "COMPRESSED_DATA block of %zu bytes", csize);
	if (usize == 0)
		return fail(err, UG_E_PROTO, "COMPRESSED_DATA claims 0 uncompressed bytes");
	r = ug_buf_reserve(out, usize);
	if (r == UG_E_TOOBIG)
		return fail(err, r,
		            "COMPRESSED_DATA claims %u uncompressed bytes, %zu of %zu buffered",
		            usize, out->len, out->max);
	if (r < 0)
		return fail(err, r, "out of memory for %u uncompressed bytes", usize);
	dst = ug_buf_tail(out, usize);
	n = LZ4_decompress_safe((const char *)body + UG_SPICE_VMC_COMPRESSED_HEADER, (char *)dst,
	                        (int)csize, (int)usize);
	if (n < 0)
		return fail(err, UG_E_PROTO,
		            "COMPRESSED_DATA: corrupt LZ4 block of %zu bytes (claimed %u bytes)",
		            csize, usize);
	if ((uint32_t)n != usize)
		return fail(err, UG_E_PROTO,
		            "COMPRESSED_DATA: LZ4 block gave %d bytes, header claimed %u", n,
		            usize);
	ug_buf_commit(out, usize);
	return 0;
}

int ug_spice_vmc_payload(const struct ug_spice_unit *u, uint32_t limit, struct ug_buf *scratch,
                         const uint8_t **ret_data, size_t *ret_len, char *err)
{
	int r;

	/* The client's and the server's message numbers are the same (101, 102). */
	switch (u->type) {
	case SPICE_MSG_SPICEVMC_DATA:
		*ret_data = u->body;
		*ret_len = u->size;
		return 1;
	case SPICE_MSG_SPICEVMC_COMPRESSED_DATA:
		ug_buf_reset(scratch);
		r = ug_spice_vmc_decompress(u->body, u->size, limit, scratch, err);
		if (r < 0)
			return r;
		*ret_data = ug_buf_peek(scratch);
		*ret_len = scratch->len;
		return 1;
	default:
		return 0;
	}
}

int ug_spice_vmc_append(struct ug_buf *out, int mini, uint64_t *serial, int lz4,
                        size_t max_chunk, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t start_len = out->len;
	uint64_t start_serial = *serial;
	uint8_t *tmp = NULL;
	size_t tmp_size = 0;
	int r = 0;

	if (max_chunk == 0 || max_chunk > LZ4_MAX_INPUT_SIZE)
		return UG_E_INVAL;
	while (len > 0) {
		size_t n = len < max_chunk ? len : max_chunk;
		int c = 0;

		if (lz4 && n > UG_SPICE_COMPRESS_THRESHOLD) {
			size_t bound =
			        (size_t)LZ4_compressBound((int)n) + UG_SPICE_VMC_COMPRESSED_HEADER;

			if (bound > tmp_size) {
				uint8_t *t = realloc(tmp, bound);

				if (!t) {
					r = UG_E_NOMEM;
					break;
				}
				tmp = t;
				tmp_size = bound;
			}
			c = LZ4_compress_default(
			        (const char *)p, (char *)tmp + UG_SPICE_VMC_COMPRESSED_HEADER,
			        (int)n, (int)(tmp_size - UG_SPICE_VMC_COMPRESSED_HEADER));
		}
		if (c > 0 && (size_t)c + UG_SPICE_VMC_COMPRESSED_HEADER < n) {
			tmp[0] = SPICE_DATA_COMPRESSION_TYPE_LZ4;
			ug_put_le32(tmp + 1, (uint32_t)n);
			r = ug_spice_msg_append(out, mini, serial,
			                        SPICE_MSGC_SPICEVMC_COMPRESSED_DATA, tmp,
			                        (size_t)c + UG_SPICE_VMC_COMPRESSED_HEADER);
		} else {
			r = ug_spice_msg_append(out, mini, serial, SPICE_MSGC_SPICEVMC_DATA, p, n);
		}
		if (r < 0)
			break;
		p += n;
		len -= n;
	}
	free(tmp);
	if (r < 0) {
		/* All or nothing: drop the messages this call appended. */
		out->len = start_len;
		*serial = start_serial;
	}
	return r;
}
