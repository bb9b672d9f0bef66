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

/* Default packet size limit: the same as libusbredirparser's (a 128 MiB bulk
 * transfer plus 1 KiB for headers), so that every packet it accepts is accepted. */
#define UG_USBREDIR_DEFAULT_MAX_PACKET (128u * 1024u * 1024u + 1024u)
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
 * (bits usb_redir_cap_*, the intersection of both sides) to decode with. Once
 * both hellos have been decoded, they decide instead. */
int ug_usbredir_session_set_caps(ug_usbredir_session *s, uint32_t negotiated_caps);

/* The negotiated capability word (the intersection of both hellos, where
 * bulk_streams counts only with ep_info_max_packet_size), or the caps set;
 * 0 while ug_usbredir_session_caps_known() is 0. */
uint32_t ug_usbredir_session_caps(const ug_usbredir_session *s);
/* 1 once the negotiated caps are known (both hellos, or set explicitly). */
int ug_usbredir_session_caps_known(const ug_usbredir_session *s);

/*
 * Push bytes of one direction. The decoder keeps a pointer to buf (it does not
 * copy what it can return as views) until ug_usbredir_session_next() returned 0
 * for that direction; the caller keeps buf unchanged until then. Bytes of a
 * packet that is split across feeds are copied into a bounded buffer, and so
 * are bytes left over when feed() is called again before next() returned 0.
 * Ends the validity of views returned for this direction.
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
 *
 * Unknown packet types are returned with known = 0 (libusbredirparser rejects
 * them). A hello's data are its capability words; a second hello in the same
 * direction is returned but, as in libusbredirparser, changes nothing. The
 * packets accepted and rejected are libusbredirparser's for the receiving
 * role; docs/usbredir-codec.md lists the rules.
 *
 * A direction's packets after its hello can only be decoded once the other
 * direction's hello was decoded (or the caps were set): until then next()
 * holds the fed bytes (at most one maximal packet, else UG_E_STATE for good)
 * and returns 0. Poll both directions after decoding a hello.
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

/*
 * Transfer tracker: turns one usbredir session (one device connection at a
 * time) into USB transfers. It pairs each guest request with the host's
 * answer by id (a 32- or 64-bit id, as the packets carry it), turns host-pushed
 * stream data (interrupt receiving, iso streams, buffered bulk receiving) into
 * transfers of their own, and turns set/get_configuration and
 * set/get_alt_setting into the control transfers the guest's stack made.
 *
 * Push one decoded packet, with the caller's timestamp, then take the events
 * it produced:
 *	ug_tracker_push(t, &pkt, ts_ns);
 *	while (ug_tracker_next(t, &ev) == 1)
 *		consume(&ev);
 * An event's data pointer points into the pushed packet's data: it is valid
 * as long as that packet view is (until the next ug_tracker_push() at the
 * latest). Everything else in an event is a copy.
 *
 * Bounds: at most max_outstanding requests wait for an answer (default
 * UG_TRACKER_DEFAULT_MAX_OUTSTANDING); one more drops the oldest, which is
 * reported as UG_TRANSFER_ABANDON with reason UG_ABANDON_LIMIT. A request that
 * reuses the id of one still outstanding abandons the older one
 * (UG_ABANDON_ID_REUSED). The event queue holds at most max_outstanding + 8
 * events.
 */
#include <stdio.h>

typedef struct ug_tracker ug_tracker;

#define UG_TRACKER_DEFAULT_MAX_OUTSTANDING 4096u

/* USB transfer types, numbered as usbmon numbers them. */
enum ug_xfer_type {
	UG_XFER_ISO = 0,
	UG_XFER_INTERRUPT = 1,
	UG_XFER_CONTROL = 2,
	UG_XFER_BULK = 3,
};

enum ug_transfer_event_kind {
	UG_TRANSFER_SUBMIT = 1,   /* a request went to the device */
	UG_TRANSFER_COMPLETE = 2, /* its answer came back (status, data) */
	UG_TRANSFER_ABANDON = 3,  /* no answer will come; reason says why */
	UG_TRANSFER_NOTICE = 4,   /* an anomaly in the session; note says what */
};

/* Where a transfer comes from. */
enum ug_transfer_origin {
	UG_ORIGIN_REQUEST = 0,    /* a data packet the guest sent */
	UG_ORIGIN_STREAM = 1,     /* data the host pushed (receiving, iso stream) */
	UG_ORIGIN_SET_CONFIGURATION = 2, /* synthesized: SET_CONFIGURATION */
	UG_ORIGIN_GET_CONFIGURATION = 3, /* synthesized: GET_CONFIGURATION */
	UG_ORIGIN_SET_ALT_SETTING = 4,   /* synthesized: SET_INTERFACE */
	UG_ORIGIN_GET_ALT_SETTING = 5,   /* synthesized: GET_INTERFACE */
};

enum ug_abandon_reason {
	UG_ABANDON_NONE = 0,
	UG_ABANDON_DISCONNECT = 1, /* the device went away (or the session ended) */
	UG_ABANDON_LIMIT = 2,      /* dropped: too many outstanding requests */
	UG_ABANDON_ID_REUSED = 3,  /* the guest reused its id while outstanding */
};

/* One transfer as the tracker knows it; the same on submit and completion. */
struct ug_transfer {
	uint64_t serial;        /* unique within the tracker, never reused */
	uint64_t id;            /* the usbredir id (guest's, or host's for streams) */
	uint32_t packet_type;   /* usb_redir_* type of the request packet */
	uint8_t origin;         /* enum ug_transfer_origin */
	uint8_t xfer_type;      /* enum ug_xfer_type */
	uint8_t endpoint;       /* endpoint address, 0x80 set for IN */
	uint8_t has_setup;      /* 1 for control transfers */
	uint8_t setup[8];       /* the setup packet as on the USB wire */
	uint8_t interval;       /* bInterval from ep_info (interrupt, iso) */
	uint32_t stream_id;     /* bulk stream id (bulk, buffered bulk) */
	uint32_t req_length;    /* bytes asked for (IN) or sent (OUT) */
	uint64_t submit_ts_ns;
	uint32_t connection;    /* device connection number in this session, from 1 */
};

struct ug_transfer_event {
	enum ug_transfer_event_kind kind;
	struct ug_transfer xfer;
	uint64_t ts_ns;         /* the caller's timestamp of the packet behind it */
	uint8_t status;         /* usbredir status (COMPLETE) */
	uint32_t actual_length; /* COMPLETE: bytes transferred */
	const uint8_t *data;    /* OUT data on SUBMIT, IN data on COMPLETE, else NULL */
	uint32_t data_len;
	enum ug_abandon_reason reason; /* ABANDON */
	const char *note;       /* NOTICE (and ABANDON): static or tracker-owned text,
	                         * valid until the next ug_tracker_push() */
};

ug_tracker *ug_tracker_new(void);
void ug_tracker_free(ug_tracker *t);

/* Limit on outstanding requests (>= 1). */
int ug_tracker_set_max_outstanding(ug_tracker *t, uint32_t max);

/*
 * Account one packet seen at ts_ns (the caller's clock, nanoseconds). Returns
 * 0 (events may be queued), UG_E_INVAL for a NULL packet, or UG_E_NOMEM (the
 * packet's events may be incomplete). Unknown packets (known == 0) produce no
 * event. The packet's data must stay valid while its events are taken; events
 * of the previous packet that were not taken are dropped. reset and
 * interface_info change nothing here (the kernel logs no URB for them).
 */
int ug_tracker_push(ug_tracker *t, const struct ug_usbredir_packet *pkt, uint64_t ts_ns);

/* The session ended: every outstanding request is abandoned (DISCONNECT);
 * take the events with ug_tracker_next(). */
int ug_tracker_finish(ug_tracker *t, uint64_t ts_ns);

/* Takes the next event: 1 and *ret_ev filled, 0 when none is queued. */
int ug_tracker_next(ug_tracker *t, struct ug_transfer_event *ret_ev);

/* Requests waiting for an answer. */
uint32_t ug_tracker_outstanding(const ug_tracker *t);

/* The endpoint's type from the last ep_info (usb_redir_type_*), or
 * usb_redir_type_invalid. */
int ug_tracker_endpoint_type(const ug_tracker *t, uint8_t endpoint);

/* 1 while a device is connected (device_connect seen, no disconnect since). */
int ug_tracker_connected(const ug_tracker *t);

/* The device_connect header of the current connection (zeroed if none). */
const struct usb_redir_device_connect_header *ug_tracker_device(const ug_tracker *t);

/* Counters: NOTICE and ABANDON events so far. */
uint64_t ug_tracker_notices(const ug_tracker *t);
uint64_t ug_tracker_abandoned(const ug_tracker *t);

/*
 * usbmon mapping: builds Linux usbmon records (pcap link type 220,
 * DLT_USB_LINUX_MMAPPED: a 64-byte header in host byte order, iso descriptors,
 * data) from transfer events, so that Wireshark's USB dissector sees what the
 * guest's kernel would have logged: 'S' on submit with -EINPROGRESS, 'C' on
 * completion, flag_setup 0 with the setup packet on control submits, data on
 * OUT submits and IN completions only ('<' on IN submits, '>' on OUT
 * completions), URB ids that are never reused, the bus and device numbers
 * set here. Abandoned transfers get a completion with -ESHUTDOWN when the
 * device went away and nothing otherwise; notices map to no record.
 *
 * A record never exceeds UG_USBMON_MAX_RECORD bytes (what libpcap reads back):
 * longer data is cut, and the header's length field keeps the true length.
 */
typedef struct ug_usbmon ug_usbmon;

#define UG_USBMON_LINKTYPE 220
#define UG_USBMON_HEADER_SIZE 64
#define UG_USBMON_ISODESC_SIZE 16
#define UG_USBMON_MAX_RECORD 262144u

struct ug_usbmon_record {
	const uint8_t *bytes;   /* the record; valid until the next map or free */
	uint32_t caplen;        /* bytes at bytes */
	uint32_t origlen;       /* the record's length had nothing been cut */
	uint64_t ts_ns;
};

ug_usbmon *ug_usbmon_new(void);
void ug_usbmon_free(ug_usbmon *m);

/* Bus and device numbers written into records (default bus 1, device 1).
 * When one output carries several devices, give each its own numbers: one
 * per session, and a new one when a session's tracker reports a new
 * connection (ug_transfer.connection), as the kernel gives a re-plugged
 * device a new address; Wireshark keeps what it learned per address. */
int ug_usbmon_set_address(ug_usbmon *m, uint16_t bus, uint8_t device);

/* Returns 1 and fills *ret_rec when ev maps to a record, 0 when it maps to
 * none, UG_E_INVAL for bad arguments. */
int ug_usbmon_map(ug_usbmon *m, const struct ug_transfer_event *ev,
                  struct ug_usbmon_record *ret_rec);

/* The URB id written for a transfer serial (for tests and cross-references). */
uint64_t ug_usbmon_urb_id(const ug_usbmon *m, uint64_t serial);

/* The Linux errno (negative) a usbredir status maps to. */
int ug_usbmon_status(uint8_t usbredir_status);

/*
 * pcap writer: classic pcap files with nanosecond timestamps, written through
 * libpcap, one link type per file: UG_USBMON_LINKTYPE for usbmon records, or
 * UG_RAW_LINKTYPE for the lossless raw record. Every record is flushed to the
 * file before the write returns, so a killed process leaves a readable file.
 * Write errors are sticky: UG_E_NOSPC for a full disk, UG_E_IO otherwise, with
 * the detail in ug_pcap_writer_errmsg().
 *
 * The raw record (link type 252, Wireshark's exported PDU) is, per usbredir
 * packet, in big-endian:
 *	u16 12 (EXP_PDU_TAG_DISSECTOR_NAME), u16 8, "usbredir"
 *	u16 35 (EXP_PDU_TAG_P2P_DIRECTION), u16 4, u32 0 (guest->host) or 1
 *	u16 0 (EXP_PDU_TAG_END_OF_OPT), u16 0
 * then usbgate's 24-byte prefix:
 *	"UGRW", u8 version 1, u8 dir (0 g2h, 1 h2g), u8 flags, u8 0,
 *	u32 caps (negotiated caps word), u32 session, u32 total (packet length),
 *	u32 offset (of this fragment in the packet)
 * then the packet bytes exactly as on the wire, [offset, offset + n). Flags:
 * bit 0 caps known, bit 1 the header has a 64-bit id. A packet that does not
 * fit in one record of UG_USBMON_MAX_RECORD bytes is split into fragments
 * with increasing offsets; the reader joins them.
 */
typedef struct ug_pcap_writer ug_pcap_writer;

#define UG_RAW_LINKTYPE 252
#define UG_RAW_HEADER_SIZE 48   /* tags (24) + prefix (24) */
#define UG_RAW_FLAG_CAPS_KNOWN 0x01u
#define UG_RAW_FLAG_ID64 0x02u

/* One raw usbredir packet with what is needed to decode it again. */
struct ug_raw_record {
	enum ug_dir dir;
	uint64_t ts_ns;
	uint32_t caps;          /* negotiated caps word the packet was encoded under */
	int caps_known;
	uint32_t session;       /* the caller's session number */
	const uint8_t *bytes;   /* the whole packet as on the wire */
	size_t len;
};

ug_pcap_writer *ug_pcap_writer_new(void);
/* Closes (errors ignored; call ug_pcap_writer_close() to see them) and frees. */
void ug_pcap_writer_free(ug_pcap_writer *w);

/* Opens path ("-" for stdout) for linktype; the file header is flushed at once. */
int ug_pcap_writer_open(ug_pcap_writer *w, const char *path, int linktype);

/* The same on a stream the caller opened for writing; the writer owns fp
 * from then on (even on failure of a later call) and closes it on
 * ug_pcap_writer_close(). On failure of this call fp is still the caller's. */
int ug_pcap_writer_open_file(ug_pcap_writer *w, FILE *fp, int linktype);

/* One record: caplen bytes of a record whose full length was origlen. */
int ug_pcap_writer_write(ug_pcap_writer *w, uint64_t ts_ns, const void *bytes,
                         uint32_t caplen, uint32_t origlen);
int ug_pcap_writer_write_usbmon(ug_pcap_writer *w, const struct ug_usbmon_record *rec);
/* One usbredir packet as raw record(s); the file must have UG_RAW_LINKTYPE. */
int ug_pcap_writer_write_raw(ug_pcap_writer *w, const struct ug_raw_record *rec);

/* Records written so far. */
uint64_t ug_pcap_writer_records(const ug_pcap_writer *w);

/* Flushes and closes; returns the first error seen on the file. */
int ug_pcap_writer_close(ug_pcap_writer *w);
const char *ug_pcap_writer_errmsg(const ug_pcap_writer *w);

/*
 * Raw record reader: yields the usbredir packets of a UG_RAW_LINKTYPE file
 * in file order, fragments joined (up to the packet limit, default
 * UG_USBREDIR_DEFAULT_MAX_PACKET). rec->bytes is valid until the next call.
 * Returns 1 with a record, 0 at the end of the file, UG_E_UNSUPPORTED for
 * another link type, UG_E_PROTO for a malformed record (errmsg names the
 * record number), UG_E_TRUNCATED for a file cut inside a record.
 */
typedef struct ug_raw_reader ug_raw_reader;

ug_raw_reader *ug_raw_reader_new(void);
void ug_raw_reader_free(ug_raw_reader *r);
int ug_raw_reader_set_max_packet(ug_raw_reader *r, uint32_t max);
int ug_raw_reader_open(ug_raw_reader *r, const char *path);
int ug_raw_reader_next(ug_raw_reader *r, struct ug_raw_record *ret_rec);
const char *ug_raw_reader_errmsg(const ug_raw_reader *r);

/*
 * Renderers: one usbredir packet as text, in one of three forms, written to
 * a stdio stream the caller owns:
 * - UG_RENDER_SUMMARY: one line like tshark's summary: time, direction,
 *   type, id, endpoint, status, lengths, and a decoded summary of standard
 *   and common class requests ("GET_DESCRIPTOR DEVICE len 18").
 * - UG_RENDER_VERBOSE: the summary line, then every field, then a hex dump.
 * - UG_RENDER_JSON: one JSON object per line with every field; data as hex.
 * ts_ns is printed as seconds with nanoseconds: pass a time relative to the
 * start of the session for tshark-like output. Returns 0 or UG_E_IO when the
 * stream reports an error.
 */
enum ug_render_format {
	UG_RENDER_SUMMARY = 0,
	UG_RENDER_VERBOSE = 1,
	UG_RENDER_JSON = 2,
};

int ug_render_packet(FILE *out, enum ug_render_format format,
                     uint64_t ts_ns, uint32_t session,
                     const struct ug_usbredir_packet *pkt);

/*
 * One transfer event of the tracker (the transfer view): submits,
 * completions (with the time since the submit), abandons and notices, as a
 * summary line, the line plus a hex dump of the event's data (VERBOSE), or a
 * JSON line with every field. Returns 0, UG_E_INVAL or UG_E_IO as above.
 */
int ug_render_transfer(FILE *out, enum ug_render_format format, uint64_t ts_ns,
                       uint32_t session, const struct ug_transfer_event *ev);

/* Writes a short description of a control setup packet ("GET_DESCRIPTOR
 * DEVICE len 18", "SET_CONFIGURATION 1") into buf (NUL-terminated, cut to
 * size); returns the length it wanted, like snprintf. */
int ug_render_setup(char *buf, size_t size, const uint8_t setup[8]);

/* Name of a usbredir status ("success", "stall", ...); "status N" is not
 * returned: unknown values give "unknown". Static storage. */
const char *ug_render_status_name(uint32_t status);

/* ---- capture sources: pcap reader, TCP reassembly ------------------------ */

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
