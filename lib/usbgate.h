/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbgate.h: the public API of libusbgate (usbredir, SPICE usbredir channel, usbmon capture). */
#ifndef USBGATE_H
#define USBGATE_H

/*
 * Conventions for every function below:
 * - Functions return 0 (or a count) on success and a negative UG_E_* code on
 *   failure; ug_strerror() names the code, and stateful objects keep a detail
 *   message (ug_<module>_errmsg()) that names the place and the numbers.
 * - Objects are opaque, made by *_new() and released by *_free(); every *_free()
 *   accepts NULL.
 * - Output parameters are named ret_*; they are written only on success.
 * - Pointers returned into an object's memory ("views") stay valid until the
 *   next call on that object unless the function says otherwise.
 * - The library never prints, logs, exits or aborts.
 */

#include <stddef.h>
#include <stdint.h>
#include <usbredirproto.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions and errors ------------------------------------------------- */

#define UG_VERSION_MAJOR 0
#define UG_VERSION_MINOR 1
#define UG_VERSION_MICRO 0

/* The library's version as "MAJOR.MINOR.MICRO"; static storage. */
const char *ug_version(void);

/*
 * The one list of error codes: it generates the enum and ug_strerror()'s
 * strings. Append new codes at the end of the list; never renumber.
 */
#define UG_ERRNO_MAP(X) \
	X(INVAL,       -1, "invalid argument") \
	X(NOMEM,       -2, "out of memory") \
	X(TOOBIG,      -3, "length exceeds the configured limit") \
	X(PROTO,       -4, "malformed protocol data") \
	X(TRUNCATED,   -5, "input ends inside a record") \
	X(UNSUPPORTED, -6, "unsupported format or feature") \
	X(IO,          -7, "input/output error") \
	X(STATE,       -8, "call not valid in this state") \
	X(AUTH,        -9, "authentication failed") \
	X(TLS,        -10, "TLS failure") \
	X(CLOSED,     -11, "peer closed the connection") \
	X(TIMEOUT,    -12, "timed out") \
	X(NOTFOUND,   -13, "not found") \
	X(USB,        -14, "USB device error") \
	X(MISMATCH,   -15, "replayed exchange diverged from the recording") \
	X(NOSPC,      -16, "no space left on device") \
	X(GAP,        -17, "data missing from the capture") \
	X(ENCRYPTED,  -18, "the stream is encrypted")

enum ug_error {
	UG_OK = 0,
#define UG_ERRNO_ENUM_(name, value, text) UG_E_##name = (value),
	UG_ERRNO_MAP(UG_ERRNO_ENUM_)
#undef UG_ERRNO_ENUM_
};

/* A fixed English sentence for code (0 or a UG_E_* value); static storage. */
const char *ug_strerror(int code);

/* Log levels for the optional log callbacks some objects accept. */
enum ug_log_level {
	UG_LOG_ERROR = 3,
	UG_LOG_WARNING = 4,
	UG_LOG_INFO = 6,
	UG_LOG_DEBUG = 7,
};
typedef void (*ug_log_fn)(int level, const char *message, void *user_data);

/* ---- usbredir codec -------------------------------------------------------
 *
 * A usbredir session has two byte streams: guest->host (sent by the usb-guest,
 * QEMU's usb-redir device) and host->guest (sent by the usb-host: usbredirect,
 * usbredirsrv, usbreplay). The session decoder keeps one push decoder per
 * direction and learns the negotiated capabilities from the two hellos, so the
 * id width (32 or 64 bits) and the caps-dependent type-header sizes
 * (device_connect, ep_info, bulk_packet) follow the real negotiation.
 *
 * Packet types, statuses and the type-header structs are usbredirproto.h's.
 * The decoder fills those structs field by field from the wire; the encoder
 * writes them field by field; nothing is cast from raw bytes.
 */

enum ug_dir {
	UG_DIR_G2H = 0, /* guest -> host: written by the usb-guest */
	UG_DIR_H2G = 1, /* host -> guest: written by the usb-host */
};

/* Default packet size limit: the same as libusbredirparser's. */
#define UG_USBREDIR_DEFAULT_MAX_PACKET (128u * 1024u * 1024u)
/* How many capability words of a hello are kept (the rest are counted). */
#define UG_USBREDIR_MAX_CAP_WORDS 8

struct ug_usbredir_hello {
	char version[65];               /* NUL-terminated copy of the 64-byte field */
	uint32_t caps[UG_USBREDIR_MAX_CAP_WORDS];
	uint32_t caps_count;            /* cap words on the wire (may exceed the array) */
};

/* Type header of a decoded packet; the member is chosen by ug_usbredir_packet.type. */
union ug_usbredir_type_header {
	struct ug_usbredir_hello hello;
	struct usb_redir_device_connect_header device_connect;
	struct usb_redir_interface_info_header interface_info;
	struct usb_redir_ep_info_header ep_info;
	struct usb_redir_set_configuration_header set_configuration;
	struct usb_redir_configuration_status_header configuration_status;
	struct usb_redir_set_alt_setting_header set_alt_setting;
	struct usb_redir_get_alt_setting_header get_alt_setting;
	struct usb_redir_alt_setting_status_header alt_setting_status;
	struct usb_redir_start_iso_stream_header start_iso_stream;
	struct usb_redir_stop_iso_stream_header stop_iso_stream;
	struct usb_redir_iso_stream_status_header iso_stream_status;
	struct usb_redir_start_interrupt_receiving_header start_interrupt_receiving;
	struct usb_redir_stop_interrupt_receiving_header stop_interrupt_receiving;
	struct usb_redir_interrupt_receiving_status_header interrupt_receiving_status;
	struct usb_redir_alloc_bulk_streams_header alloc_bulk_streams;
	struct usb_redir_free_bulk_streams_header free_bulk_streams;
	struct usb_redir_bulk_streams_status_header bulk_streams_status;
	struct usb_redir_start_bulk_receiving_header start_bulk_receiving;
	struct usb_redir_stop_bulk_receiving_header stop_bulk_receiving;
	struct usb_redir_bulk_receiving_status_header bulk_receiving_status;
	struct usb_redir_control_packet_header control_packet;
	struct usb_redir_bulk_packet_header bulk_packet;
	struct usb_redir_iso_packet_header iso_packet;
	struct usb_redir_interrupt_packet_header interrupt_packet;
	struct usb_redir_buffered_bulk_packet_header buffered_bulk_packet;
};

/*
 * One decoded packet. Fields not present on the wire under the negotiated
 * caps (device_version_bcd, max_packet_size, max_streams, length_high) are 0.
 * The pointers are views: into the caller's fed buffer when the packet lay
 * whole in it, else into the decoder's own assembly buffer; valid until the
 * next ug_usbredir_session_feed() or ug_usbredir_session_next() on the same
 * direction.
 */
struct ug_usbredir_packet {
	enum ug_dir dir;
	uint32_t type;              /* usb_redir_* packet type */
	uint32_t length;            /* header field: type header + data bytes */
	uint64_t id;
	uint64_t offset;            /* stream offset of the packet's first byte */
	int known;                  /* 0: type unknown; only raw, data and length are set */
	union ug_usbredir_type_header h;
	const uint8_t *data;        /* data after the type header (may be NULL if 0 bytes) */
	uint32_t data_len;
	const uint8_t *raw;         /* the whole packet as on the wire */
	size_t raw_len;
};

typedef struct ug_usbredir_session ug_usbredir_session;

ug_usbredir_session *ug_usbredir_session_new(void);
void ug_usbredir_session_free(ug_usbredir_session *s);

/* Limit on a packet's length field (type header + data); checked as soon as
 * the header is complete, before any body byte is buffered. */
int ug_usbredir_session_set_max_packet(ug_usbredir_session *s, uint32_t max);

/* For a stream that starts after the hellos: the negotiated capability word
 * (bits usb_redir_cap_*, the intersection of both sides) to decode with. */
int ug_usbredir_session_set_caps(ug_usbredir_session *s, uint32_t negotiated_caps);

/* The negotiated capability word: known once both hellos were decoded or the
 * caps were set; until then the caps of hellos seen so far are not combined. */
uint32_t ug_usbredir_session_caps(const ug_usbredir_session *s);
/* 1 once the negotiated caps are known (both hellos, or set explicitly). */
int ug_usbredir_session_caps_known(const ug_usbredir_session *s);

/*
 * Push bytes of one direction. The decoder keeps a pointer to buf (it does not
 * copy what it can return as views) until ug_usbredir_session_next() returned 0
 * for that direction; the caller keeps buf unchanged until then. Bytes of a
 * packet that is split across feeds are copied into a bounded buffer.
 */
int ug_usbredir_session_feed(ug_usbredir_session *s, enum ug_dir dir,
                             const void *buf, size_t len);

/*
 * Take the next packet of one direction. Returns 1 and fills *ret_pkt, 0 when
 * more input is needed (all fed bytes were consumed or kept), or a negative
 * UG_E_* when the next packet is bad. After UG_E_PROTO (a bad type header or
 * data while the framing is intact) the packet has been skipped by its length
 * and decoding goes on with the next call. After UG_E_TOOBIG the body is
 * discarded as it arrives, without buffering, and decoding resumes after it.
 * The detail of the last error is in ug_usbredir_session_errmsg().
 */
int ug_usbredir_session_next(ug_usbredir_session *s, enum ug_dir dir,
                             struct ug_usbredir_packet *ret_pkt);

/* Bytes of dir consumed so far (stream offset of the next undecoded byte). */
uint64_t ug_usbredir_session_offset(const ug_usbredir_session *s, enum ug_dir dir);

/* Detail of the last error ("" if none), e.g. "host->guest offset 4096:
 * packet type 101 claims 4294967295 bytes, limit 134217728". */
const char *ug_usbredir_session_errmsg(const ug_usbredir_session *s);

/* Name of a packet type ("control_packet", ...), or NULL if unknown. */
const char *ug_usbredir_type_name(uint32_t type);

/*
 * Encode pkt (type, id, h, data/data_len; other fields ignored) as it goes on
 * the wire under negotiated_caps, byte for byte what libusbredirparser sends
 * for the same packet and caps. A hello is encoded with its own h.hello caps
 * and always with a 32-bit id. Writes at most out_size bytes; *ret_len gets
 * the packet size. Returns UG_E_TOOBIG (and the needed size in *ret_len) when
 * out_size is too small.
 */
int ug_usbredir_encode(uint32_t negotiated_caps, const struct ug_usbredir_packet *pkt,
                       void *out, size_t out_size, size_t *ret_len);

/* ---- transfer tracker, usbmon mapping, pcap writer, renderers ------------ */

/* ---- capture sources: pcap reader, TCP reassembly ------------------------ */

/*
 * A capture source turns a pcap or pcapng file, or a live interface, into the
 * directed TCP byte streams of every connection in it, with timestamps: layer
 * 3 of the architecture for captures. A usbdump -r loop reads:
 *
 *	ug_capture *c = ug_capture_new();
 *	if (ug_capture_open_file(c, path) < 0) ... ug_capture_errmsg(c) ...
 *	while ((r = ug_capture_next(c, &ev)) > 0) {
 *		switch (ev.type) {
 *		case UG_CAPTURE_OPEN:   make per-connection state for ev.conn->id
 *		case UG_CAPTURE_DATA:   while ev.conn->proto is NEED_MORE keep
 *		                        the bytes; then feed them and what follows
 *		                        to the usbredir or SPICE decoder of
 *		                        ev.side (TLS: report it as encrypted)
 *		case UG_CAPTURE_GAP:    tell that decoder to resync after the gap
 *		case UG_CAPTURE_END:    that side sent FIN
 *		case UG_CAPTURE_CLOSE:  drop the per-connection state
 *		case UG_CAPTURE_NOTICE: print ev.message as a warning
 *		}
 *	}
 *	ug_capture_free(c);
 *
 * TCP reassembly rules (docs/capture.md says why):
 * - A connection is keyed by its two address/port pairs. The client is the
 *   sender of the SYN; when no handshake was captured (the capture starts
 *   mid-stream) it is the first side seen sending data or FIN, and
 *   conn->flags lacks UG_CAPTURE_CONN_HANDSHAKE.
 * - Each side's stream offset 0 is the byte after its SYN, or, mid-stream,
 *   the first byte captured (or acknowledged by the other side) from it.
 *   Offsets are 64-bit: sequence numbers wrap, offsets do not.
 * - Overlapping data: the first copy captured wins. Bytes already delivered
 *   cannot be taken back, so the same rule is applied to data still held out
 *   of order; differing retransmitted bytes are counted, never delivered.
 * - Missing data becomes a GAP (offset, length) and delivery goes on after
 *   it, when: the other side acknowledged bytes that were never captured
 *   and they did not turn up within the reorder window; a
 *   frame was cut by the snapshot length; the out-of-order data held for one
 *   side or in total would exceed its limit (the oldest hole is given up);
 *   the connection ends (FIN, RST, eviction, end of capture) with holes.
 * - Data starting further than the window ahead of the next expected byte
 *   is dropped with a NOTICE (it is most likely garbage), unless the other
 *   side acknowledged beyond where it starts: then the capture lost more
 *   than a window, and the hole becomes a GAP.
 * - The connection table is bounded: when it is full the least recently
 *   active connection is closed (CLOSE with UG_CAPTURE_CLOSE_EVICTED).
 */
typedef struct ug_capture ug_capture;

enum ug_capture_event_type {
	UG_CAPTURE_OPEN = 1,    /* a new connection; conn describes it */
	UG_CAPTURE_DATA = 2,    /* in-order bytes of one side: data, len at offset */
	UG_CAPTURE_GAP = 3,     /* len bytes of one side at offset are missing */
	UG_CAPTURE_END = 4,     /* one side's stream ended with its FIN */
	UG_CAPTURE_CLOSE = 5,   /* the connection is over; reason says why */
	UG_CAPTURE_NOTICE = 6,  /* something was skipped; message says what */
};

/* Which way the bytes go. */
enum ug_capture_side {
	UG_CAPTURE_C2S = 0,     /* client -> server */
	UG_CAPTURE_S2C = 1,     /* server -> client */
};

/* ev.reason of a GAP. */
enum ug_capture_gap_reason {
	UG_CAPTURE_GAP_NOT_CAPTURED = 1, /* acknowledged by the peer, never captured */
	UG_CAPTURE_GAP_SNAPLEN = 2,      /* the frame was cut by the snapshot length */
	UG_CAPTURE_GAP_LIMIT = 3,        /* hole given up to keep memory bounded */
	UG_CAPTURE_GAP_AT_CLOSE = 4,     /* still missing when the connection ended */
};

/* ev.reason of a CLOSE. */
enum ug_capture_close_reason {
	UG_CAPTURE_CLOSE_FIN = 1,       /* both sides sent FIN and all data arrived */
	UG_CAPTURE_CLOSE_RST = 2,       /* a RST was captured */
	UG_CAPTURE_CLOSE_EVICTED = 3,   /* the connection table was full */
	UG_CAPTURE_CLOSE_REUSED = 4,    /* a new SYN on the same addresses and ports */
	UG_CAPTURE_CLOSE_END = 5,       /* the capture ended (or was stopped) first */
};

struct ug_capture_endpoint {
	uint8_t family;         /* 4 or 6 */
	uint8_t addr[16];       /* IPv4 in the first 4 bytes, network order */
	uint16_t port;
};

/* conn->flags */
#define UG_CAPTURE_CONN_HANDSHAKE 0x1  /* the client's SYN was captured */

/* One connection; owned by the capture, valid until the call after its CLOSE.
 * flags can gain UG_CAPTURE_CONN_HANDSHAKE after OPEN when the capture has
 * the SYN after the SYN+ACK. */
struct ug_capture_conn {
	uint32_t id;            /* 1, 2, ... in order of appearance */
	uint32_t flags;         /* UG_CAPTURE_CONN_* */
	struct ug_capture_endpoint client, server;
	int proto;              /* enum ug_capture_proto from the first bytes of
	                         * each side (ug_capture_classify()), updated as
	                         * DATA arrives: NEED_MORE until decided, never
	                         * NEED_MORE at CLOSE. A consumer holds the DATA
	                         * of a connection while it is NEED_MORE, then
	                         * feeds the held bytes to the right decoder. */
};

/*
 * One event. data, conn and message point into the capture's memory and stay
 * valid until the next call on the capture (conn: see above).
 */
struct ug_capture_event {
	enum ug_capture_event_type type;
	const struct ug_capture_conn *conn; /* NULL only for NOTICEs about no connection */
	enum ug_capture_side side;  /* DATA, GAP, END, and NOTICEs about one side */
	uint64_t ts_ns;         /* capture time (ns since the epoch) of the frame
	                         * that completed the data or caused the event */
	uint64_t frame;         /* that frame's number (1-based), 0 if none */
	uint64_t offset;        /* DATA, GAP: stream offset of the first byte */
	uint64_t len;           /* DATA: bytes at data; GAP: bytes missing */
	const uint8_t *data;    /* DATA */
	int reason;             /* GAP, CLOSE: the enums above; NOTICE: a UG_E_* */
	const char *message;    /* NOTICE and GAP: one line, names frame and numbers */
};

/* Limits (see ug_capture_set_limits); 0 in a field keeps the current value. */
struct ug_capture_limits {
	uint32_t max_connections;       /* open connections tracked at once */
	uint64_t max_buffered_per_side; /* out-of-order bytes held for one side */
	uint64_t max_buffered_total;    /* out-of-order bytes held in all */
	uint64_t window;                /* how far ahead of the next byte data may start */
	uint32_t reorder_window;        /* segments of a connection to wait, after an
	                                 * ACK showed a hole, before it is a gap (1:
	                                 * at once); captures reorder ACKs and data */
};
#define UG_CAPTURE_DEFAULT_MAX_CONNECTIONS 1024u
#define UG_CAPTURE_DEFAULT_MAX_BUFFERED_PER_SIDE (4u * 1024u * 1024u)
#define UG_CAPTURE_DEFAULT_MAX_BUFFERED_TOTAL (16u * 1024u * 1024u)
#define UG_CAPTURE_DEFAULT_WINDOW (64u * 1024u * 1024u)
#define UG_CAPTURE_DEFAULT_REORDER_WINDOW 32u

struct ug_capture_stats {
	uint64_t frames;            /* frames read */
	uint64_t frames_skipped;    /* frames that were not usable IPv4/IPv6 TCP */
	uint64_t frames_dropped;    /* live: frames the kernel or libpcap dropped */
	uint64_t segments;          /* TCP segments handed to reassembly */
	uint64_t bytes_delivered;   /* in DATA events */
	uint64_t bytes_duplicate;   /* retransmitted or overlapping, dropped (first wins) */
	uint64_t bytes_conflicting; /* of those, bytes that differed from the first copy */
	uint64_t bytes_missing;     /* in GAP events */
	uint64_t bytes_dropped;     /* beyond the window or over the memory limits */
	uint64_t connections;       /* connections opened */
	uint64_t connections_evicted;
	uint64_t notices;
};

ug_capture *ug_capture_new(void);
/* Closes the file or interface and frees everything. Accepts NULL. */
void ug_capture_free(ug_capture *c);

/* Replaces the reassembly limits; only before the first ug_capture_next(). */
int ug_capture_set_limits(ug_capture *c, const struct ug_capture_limits *limits);

/*
 * Opens a pcap or pcapng file for reading (libpcap, nanosecond timestamps).
 * Link types: Ethernet (with VLAN tags), Linux cooked v1 and v2, BSD
 * loopback (NULL, LOOP), raw IP (RAW, IPV4, IPV6); others fail with
 * UG_E_UNSUPPORTED and an errmsg naming the link type. UG_E_IO when the file
 * cannot be read or is not a capture.
 */
int ug_capture_open_file(ug_capture *c, const char *path);

/* The same for a capture file image in memory; buf must stay unchanged
 * until ug_capture_free() (it is read in place, not copied). */
int ug_capture_open_memory(ug_capture *c, const void *buf, size_t len);

/*
 * Opens a live capture on iface (e.g. "lo", "any") with an optional BPF filter
 * expression (NULL: all TCP) in non-blocking mode. Needs the capture
 * privilege; UG_E_IO with libpcap's reason otherwise.
 */
int ug_capture_open_live(ug_capture *c, const char *iface, const char *filter);

/* Live: a file descriptor to poll for input (e.g. g_unix_fd_add() in a GLib
 * main loop), owned by the capture; -1 for files. When it polls readable,
 * call ug_capture_next() until it returns 0: frames already in libpcap's
 * ring do not make the descriptor readable again. */
int ug_capture_fd(const ug_capture *c);

/*
 * The next event into *ret_ev: returns 1. Returns 0 when there is none now:
 * for a file that means the capture is over (everything was read and every
 * connection closed); for a live capture wait for ug_capture_fd() and call
 * again, until ug_capture_stop() and the last events, then 0 for good.
 * A negative UG_E_* is returned for failures that end the capture (details
 * in ug_capture_errmsg()); problems in single frames (malformed, truncated,
 * IP fragments, unknown protocols) are NOTICE events and reading goes on.
 * A file cut short ends with a NOTICE of reason UG_E_TRUNCATED.
 */
int ug_capture_next(ug_capture *c, struct ug_capture_event *ret_ev);

/* Stops reading: the connections still open are flushed (their holes as
 * GAPs) and closed with UG_CAPTURE_CLOSE_END by the following next() calls. */
void ug_capture_stop(ug_capture *c);

/* 1 once ug_capture_next() has returned 0 for good. */
int ug_capture_at_end(const ug_capture *c);

/* Files: bytes of the file read so far and its size, for a progress
 * indicator (*ret_total is 0 when the size is unknown, e.g. a pipe).
 * UG_E_STATE for live captures and before a file is open. */
int ug_capture_progress(const ug_capture *c, uint64_t *ret_done, uint64_t *ret_total);

void ug_capture_get_stats(const ug_capture *c, struct ug_capture_stats *ret_stats);

/* The libpcap link type (DLT_*) of the open capture, or -1. */
int ug_capture_linktype(const ug_capture *c);

/* Detail of the last error ("" if none); owned by c. */
const char *ug_capture_errmsg(const ug_capture *c);

/* Writes "127.0.0.1:5900" or "[::1]:5900" into buf (NUL-terminated, cut to
 * size); returns buf. UG_CAPTURE_ENDPOINT_STRLEN bytes always suffice. */
#define UG_CAPTURE_ENDPOINT_STRLEN 56
char *ug_capture_endpoint_format(const struct ug_capture_endpoint *e, char *buf, size_t size);

/*
 * What a connection carries, from the first bytes of each side (either may
 * be short or empty). Returns UG_CAPTURE_PROTO_NEED_MORE while the bytes seen
 * could still turn out to be one of the protocols and more could come; once
 * both sides have UG_CAPTURE_CLASSIFY_BYTES bytes (or ended) the answer is
 * final. A usbredir hello (type 0, length 64 + 4 * caps words, id 0, a
 * NUL-terminated printable version) on either side means raw usbredir; "REDQ"
 * with major version 2 means SPICE; a TLS handshake record (0x16 0x03 ...)
 * means TLS.
 */
enum ug_capture_proto {
	UG_CAPTURE_PROTO_NEED_MORE = 0,
	UG_CAPTURE_PROTO_UNKNOWN = 1,
	UG_CAPTURE_PROTO_USBREDIR = 2,
	UG_CAPTURE_PROTO_SPICE = 3,
	UG_CAPTURE_PROTO_TLS = 4,
};
#define UG_CAPTURE_CLASSIFY_BYTES 80u
enum ug_capture_proto ug_capture_classify(const uint8_t *c2s, size_t c2s_len,
                                          const uint8_t *s2c, size_t s2c_len);
/* "usbredir", "spice", "tls", "unknown", "need-more"; static storage. */
const char *ug_capture_proto_name(enum ug_capture_proto proto);

/* ---- SPICE codec and client ---------------------------------------------- */

/* ---- device bridge, emulated device, transports -------------------------- */

/*
 * A transport is one bidirectional usbredir byte stream: a TCP or unix
 * socket, or one SPICE usbredir channel. Endpoints (the device bridge, the
 * emulated device, the replayed guest, a proxy leg) send bytes into it and get
 * the peer's bytes from its data callback, whatever carries them. Transports
 * run on the thread-default GLib main context of the thread that made them;
 * callbacks are invoked from that context, never from inside
 * ug_transport_send().
 */
typedef struct ug_transport ug_transport;

/* Bytes from the peer; data is valid only during the call. */
typedef void (*ug_transport_data_fn)(ug_transport *t, const uint8_t *data, size_t len,
                                     void *user_data);
/* The stream ended: error is 0 for an orderly close by the peer, else a
 * UG_E_* code; message names the place ("tcp 127.0.0.1:4000: connection reset
 * by peer"). No callback follows this one. */
typedef void (*ug_transport_closed_fn)(ug_transport *t, int error, const char *message,
                                       void *user_data);

void ug_transport_set_callbacks(ug_transport *t, ug_transport_data_fn on_data,
                                ug_transport_closed_fn on_closed, void *user_data);

/* Queues len bytes for the peer, in order. Returns 0, UG_E_CLOSED, or
 * UG_E_TOOBIG when the queue would exceed its limit (nothing is queued then). */
int ug_transport_send(ug_transport *t, const void *data, size_t len);

/* Bytes queued and not yet handed to the kernel (or the SPICE layer). */
size_t ug_transport_pending(const ug_transport *t);

/* Limit on pending bytes (default UG_TRANSPORT_DEFAULT_MAX_PENDING). */
void ug_transport_set_max_pending(ug_transport *t, size_t max);
#define UG_TRANSPORT_DEFAULT_MAX_PENDING (64u * 1024u * 1024u)

/* Flow control: while paused, no data callback is made and the transport
 * stops reading, so the peer's sends back up into its own buffers. */
void ug_transport_pause(ug_transport *t, int paused);

/* A one-line description for messages ("tcp 127.0.0.1:4000 from
 * 127.0.0.1:51234", "spice usbredir channel 1"); owned by t. */
const char *ug_transport_describe(const ug_transport *t);

/* Closes the stream after flushing what is queued (best effort); no
 * callback is made after this returns. */
void ug_transport_close(ug_transport *t);

/* Closes (if open) and frees. Accepts NULL. */
void ug_transport_free(ug_transport *t);


/* ---- end of areas -------------------------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* USBGATE_H */
