/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-codec.h: the SPICE wire codec (link messages, data headers, main and usbredir channel messages); no I/O. */
#ifndef UG_SPICE_CODEC_H
#define UG_SPICE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <spice/protocol.h>

#include "buf.h"
#include "usbgate.h"

/*
 * Message numbers, capability bits, link errors and the fixed sizes come
 * from spice-protocol's headers (SPICE_MSG_*, SPICE_MSGC_*, SPICE_LINK_ERR_*,
 * SPICE_COMMON_CAP_*, SPICE_SPICEVMC_CAP_*, SPICE_TICKET_PUBKEY_BYTES, ...).
 * Its packed structs only document the layout: every field below is read and
 * written byte by byte, little-endian.
 *
 * Every decode function takes the body bytes and their length, checks every
 * length against what is left before using it, and on failure returns a
 * negative UG_E_* and writes a sentence with the numbers into err (a buffer
 * of UG_ERRMSG_SIZE bytes; err may be NULL).
 */

/* "REDQ" + major + minor + size. */
#define UG_SPICE_LINK_HEADER_SIZE 16u
/* SpiceLinkMess without caps: connection_id .. caps_offset. */
#define UG_SPICE_LINK_MESS_SIZE 18u
/* SpiceLinkReply without caps: error, public key, counts, caps_offset. */
#define UG_SPICE_LINK_REPLY_SIZE (4u + SPICE_TICKET_PUBKEY_BYTES + 12u)
/* The encrypted ticket: one RSA-1024 block. */
#define UG_SPICE_TICKET_SIZE (SPICE_TICKET_KEY_PAIR_LENGTH / 8u)
#define UG_SPICE_MINI_HEADER_SIZE 6u
#define UG_SPICE_FULL_HEADER_SIZE 18u
/* Default limit on a link message body: real ones are under 300 bytes. */
#define UG_SPICE_DEFAULT_MAX_LINK 4096u
/* Default limit on one data message body (the net test PING is 256012). */
#define UG_SPICE_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u)
/* Capability words kept per list; more are counted but not stored. */
#define UG_SPICE_MAX_CAP_WORDS 8u
/* spice-server compresses spicevmc data only above this many bytes; so do we. */
#define UG_SPICE_COMPRESS_THRESHOLD 1000u

struct ug_spice_caps {
	uint32_t num_common;            /* words on the wire */
	uint32_t num_channel;
	uint32_t common[UG_SPICE_MAX_CAP_WORDS];
	uint32_t channel[UG_SPICE_MAX_CAP_WORDS];
};

/* 1 if bit is set in the first num words of words (bits past the kept words read as 0). */
int ug_spice_cap_test(const uint32_t *words, uint32_t num, unsigned bit);
/* Sets bit, growing *num as needed; UG_E_INVAL past the kept words. */
int ug_spice_cap_set(uint32_t *words, uint32_t *num, unsigned bit);

struct ug_spice_link_header {
	uint32_t major;
	uint32_t minor;
	uint32_t size;                  /* body bytes that follow */
};

struct ug_spice_link_mess {
	uint32_t connection_id;         /* 0 for main, else the session id */
	uint8_t channel_type;           /* SPICE_CHANNEL_* */
	uint8_t channel_id;
	struct ug_spice_caps caps;
};

struct ug_spice_link_reply {
	uint32_t error;                 /* SPICE_LINK_ERR_*; the rest is 0 when not OK */
	uint8_t pub_key[SPICE_TICKET_PUBKEY_BYTES]; /* DER SubjectPublicKeyInfo */
	struct ug_spice_caps caps;
};

/*
 * Link header: checks the magic and that size <= max_size. The major version
 * is returned, not judged: the caller compares it with SPICE_VERSION_MAJOR
 * (a server answers a mismatch with its own version and an error code).
 * len must be at least UG_SPICE_LINK_HEADER_SIZE.
 */
int ug_spice_link_header_decode(const uint8_t *p, size_t len, uint32_t max_size,
                                struct ug_spice_link_header *ret_hdr, char *err);

/*
 * Encodes header + link message + caps into out; *ret_len gets the size.
 * UG_E_TOOBIG (with the needed size in *ret_len) when out_size is short.
 */
int ug_spice_link_mess_encode(const struct ug_spice_link_mess *m, uint8_t *out,
                              size_t out_size, size_t *ret_len);
/* The link message body (after the 16-byte header), as the server reads it. */
int ug_spice_link_mess_decode(const uint8_t *body, size_t len, struct ug_spice_link_mess *ret_m,
                              char *err);

/* Encodes header + link reply + caps (what a server, or a test peer, sends). */
int ug_spice_link_reply_encode(const struct ug_spice_link_reply *r, uint8_t *out,
                               size_t out_size, size_t *ret_len);
/*
 * The link reply body. A reply with error != 0 needs only the error field;
 * an OK reply must hold the key, counts and caps inside len.
 */
int ug_spice_link_reply_decode(const uint8_t *body, size_t len,
                               struct ug_spice_link_reply *ret_r, char *err);

/* A sentence for a SPICE_LINK_ERR_* value; static storage. */
const char *ug_spice_link_error_str(uint32_t error);
/* The closest UG_E_* for a SPICE_LINK_ERR_* value. */
int ug_spice_link_error_code(uint32_t error);
/* Name of a channel type ("main", "usbredir", ...) or "unknown"; static. */
const char *ug_spice_channel_type_name(unsigned type);

/* ---- the push decoder: one per direction --------------------------------- */

/* What the next unit of a stream is: the link phase has its own framing. */
enum ug_spice_unit_kind {
	UG_SPICE_UNIT_LINK,     /* 16-byte link header + body of its size */
	UG_SPICE_UNIT_FIXED,    /* a fixed number of bytes: auth mechanism, ticket, link result */
	UG_SPICE_UNIT_MINI,     /* 6-byte mini data header + body */
	UG_SPICE_UNIT_FULL,     /* 18-byte data header + body */
};

/*
 * One unit. body points into the caller's fed buffer when the unit lay whole
 * in it, else into the decoder's own bounded buffer; valid until the next
 * ug_spice_dec_feed() or ug_spice_dec_next() on the same decoder.
 */
struct ug_spice_unit {
	enum ug_spice_unit_kind kind;
	uint64_t offset;                /* stream offset of the unit's first byte */
	struct ug_spice_link_header link; /* LINK only */
	uint16_t type;                  /* MINI/FULL: message type */
	uint64_t serial;                /* FULL only */
	uint32_t sub_list;              /* FULL only */
	const uint8_t *body;            /* may be NULL when size is 0 */
	uint32_t size;                  /* body bytes */
};

typedef struct ug_spice_dec ug_spice_dec;

/* A decoder expecting kind (fixed_len is the unit size for UG_SPICE_UNIT_FIXED). */
ug_spice_dec *ug_spice_dec_new(enum ug_spice_unit_kind kind, uint32_t fixed_len);
void ug_spice_dec_free(ug_spice_dec *d);
/* Limits on a data message body and a link body (defaults above). */
void ug_spice_dec_set_max_message(ug_spice_dec *d, uint32_t max);
void ug_spice_dec_set_max_link(ug_spice_dec *d, uint32_t max);
/* Changes what the next unit is; only between units (UG_E_STATE inside one). */
int ug_spice_dec_expect(ug_spice_dec *d, enum ug_spice_unit_kind kind, uint32_t fixed_len);

/*
 * Push bytes. The decoder keeps a pointer to buf (it copies only the bytes of
 * a unit split across feeds) until ug_spice_dec_next() returned 0; the caller
 * keeps buf unchanged until then. UG_E_STATE if the last feed is not used up.
 */
int ug_spice_dec_feed(ug_spice_dec *d, const void *buf, size_t len);

/*
 * Next unit: 1 and *ret_unit, 0 when more input is needed, or a negative
 * UG_E_*. UG_E_TOOBIG: a data message claimed more than the limit (checked
 * when its header is complete, before any body byte is kept); its body is
 * skipped as it arrives and decoding resumes after it. UG_E_PROTO on a bad
 * link magic or an over-long link body: the stream cannot be resynchronised
 * and every later call returns the same error.
 */
int ug_spice_dec_next(ug_spice_dec *d, struct ug_spice_unit *ret_unit);

/*
 * Gives back the fed bytes not consumed yet (they are forgotten: the caller
 * feeds them again later) and returns their count. For callers whose buffer
 * does not outlive the call, when next() returned 0 with bytes left (a
 * direction waiting for the other one).
 */
size_t ug_spice_dec_unfeed(ug_spice_dec *d);

uint64_t ug_spice_dec_offset(const ug_spice_dec *d);
const char *ug_spice_dec_errmsg(const ug_spice_dec *d);

/* ---- data messages --------------------------------------------------------- */

/* Encodes a data header (mini: 6 bytes, else 18 bytes with serial) into out. */
size_t ug_spice_header_encode(int mini, uint64_t serial, uint16_t type, uint32_t size,
                              uint8_t *out);
/*
 * Appends one whole message (header + body) to out. *serial is the
 * channel's last serial; it is incremented for every message (the full header
 * carries it, the mini header does not but both sides still count).
 */
int ug_spice_msg_append(struct ug_buf *out, int mini, uint64_t *serial, uint16_t type,
                        const void *body, size_t len);

struct ug_spice_ping {
	uint32_t id;
	uint64_t timestamp;
	uint32_t data_len;              /* opaque padding after the fixed part */
};
int ug_spice_ping_decode(const uint8_t *body, size_t len, struct ug_spice_ping *ret, char *err);
/* PING (server) and PONG (client) share the 12-byte fixed part. */
size_t ug_spice_pong_encode(uint32_t id, uint64_t timestamp, uint8_t out[12]);

struct ug_spice_set_ack {
	uint32_t generation;
	uint32_t window;
};
int ug_spice_set_ack_decode(const uint8_t *body, size_t len, struct ug_spice_set_ack *ret,
                            char *err);

struct ug_spice_notify {
	uint64_t timestamp;
	uint32_t severity;              /* SPICE_NOTIFY_SEVERITY_* */
	uint32_t visibility;
	uint32_t what;
	const uint8_t *message;         /* view into the body, not NUL-terminated */
	uint32_t message_len;
};
int ug_spice_notify_decode(const uint8_t *body, size_t len, struct ug_spice_notify *ret,
                           char *err);

struct ug_spice_disconnecting {
	uint64_t timestamp;
	uint32_t reason;                /* SPICE_LINK_ERR_* */
};
int ug_spice_disconnecting_decode(const uint8_t *body, size_t len,
                                  struct ug_spice_disconnecting *ret, char *err);
size_t ug_spice_disconnecting_encode(uint64_t timestamp, uint32_t reason, uint8_t out[12]);

/* SPICE_MSG_MIGRATE: just the flags (SPICE_MIGRATE_NEED_FLUSH, ..._NEED_DATA_TRANSFER). */
int ug_spice_migrate_decode(const uint8_t *body, size_t len, uint32_t *ret_flags, char *err);

/*
 * MAIN_MIGRATE_BEGIN and MAIN_MIGRATE_BEGIN_SEAMLESS start with the
 * destination: u16 port, u16 sport, u32 host_size, u32 host offset (from the
 * body start), u32 subject size, u32 subject offset. Enough to name the
 * destination when refusing; host points into the body.
 */
struct ug_spice_migrate_dst {
	uint16_t port;
	uint16_t sport;
	const uint8_t *host;
	uint32_t host_len;              /* without a trailing NUL */
};
int ug_spice_migrate_begin_decode(const uint8_t *body, size_t len,
                                  struct ug_spice_migrate_dst *ret, char *err);

struct ug_spice_main_init {
	uint32_t session_id;
	uint32_t display_channels_hint;
	uint32_t supported_mouse_modes;
	uint32_t current_mouse_mode;
	uint32_t agent_connected;
	uint32_t agent_tokens;
	uint32_t multi_media_time;
	uint32_t ram_hint;
};
#define UG_SPICE_MAIN_INIT_SIZE 32u
int ug_spice_main_init_decode(const uint8_t *body, size_t len, struct ug_spice_main_init *ret,
                              char *err);
size_t ug_spice_main_init_encode(const struct ug_spice_main_init *m, uint8_t out[32]);

struct ug_spice_channel_id {
	uint8_t type;
	uint8_t id;
};
/* Most channels a list may name: 256 ids of each of the 11 known types, rounded up. */
#define UG_SPICE_MAX_CHANNELS 4096u
/*
 * CHANNELS_LIST: u32 n, then n x {u8 type, u8 id}. n must fit both the body
 * and max_out (and UG_SPICE_MAX_CHANNELS); *ret_n gets n.
 */
int ug_spice_channels_list_decode(const uint8_t *body, size_t len,
                                  struct ug_spice_channel_id *out, size_t max_out,
                                  size_t *ret_n, char *err);
int ug_spice_channels_list_encode(const struct ug_spice_channel_id *ids, size_t n,
                                  struct ug_buf *out);

/* ---- spicevmc payloads ----------------------------------------------------- */

/* SPICEVMC_COMPRESSED_DATA: u8 type, u32 uncompressed_size, compressed block. */
#define UG_SPICE_VMC_COMPRESSED_HEADER 5u

/*
 * Decompresses a SPICEVMC_COMPRESSED_DATA body and appends the bytes to out.
 * The claimed uncompressed size is checked against limit (and out's own
 * maximum) before anything is allocated; the LZ4 block must decode to
 * exactly that many bytes. UG_E_TOOBIG, UG_E_UNSUPPORTED (not LZ4),
 * UG_E_PROTO (corrupt block or size mismatch), UG_E_NOMEM. On error out is
 * unchanged.
 */
int ug_spice_vmc_decompress(const uint8_t *body, size_t len, uint32_t limit,
                            struct ug_buf *out, char *err);

/*
 * The usbredir bytes a spicevmc message carries, in either direction:
 * returns 1 with *ret_data and *ret_len (the body itself for SPICEVMC_DATA, the
 * decompressed block in scratch, which is reset first, for
 * COMPRESSED_DATA), 0 for any other message type, or a negative UG_E_* from
 * ug_spice_vmc_decompress(). *ret_data stays valid until scratch or the
 * unit's buffer changes.
 */
int ug_spice_vmc_payload(const struct ug_spice_unit *u, uint32_t limit, struct ug_buf *scratch,
                         const uint8_t **ret_data, size_t *ret_len, char *err);

/*
 * Appends usbredir bytes as spicevmc messages (of type SPICE_MSGC_SPICEVMC_*
 * or SPICE_MSG_SPICEVMC_*: both directions use 101 and 102), split into
 * messages of at most max_chunk bytes of payload. A chunk above
 * UG_SPICE_COMPRESS_THRESHOLD is sent LZ4-compressed when lz4 is set and the
 * block is smaller than the input; otherwise as SPICEVMC_DATA. On error out
 * is unchanged.
 */
int ug_spice_vmc_append(struct ug_buf *out, int mini, uint64_t *serial, int lz4,
                        size_t max_chunk, const void *data, size_t len);

#endif /* UG_SPICE_CODEC_H */
