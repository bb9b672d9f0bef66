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
#include <stdio.h>
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
 * A direction's packets other than hellos can only be decoded once the other
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
/*
 * The 1-based number, in the file, of the record where the packet last
 * returned by ug_raw_reader_next() starts (a fragmented packet also takes
 * the records after it); every record counts, fragments and other sessions'
 * included, so it is the number tshark shows as the frame. 0 before the
 * first packet (and for NULL); errors and the end of the file leave it as it
 * was.
 */
uint64_t ug_raw_reader_record(const ug_raw_reader *r);
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

/* ---- recorder: a usbredir session into the capture outputs --------------- */

/*
 * The recorder is the data path of architecture.md as one object: usbredir
 * bytes of one or more sessions, per direction, with timestamps, go through
 * the session decoder and the transfer tracker into the outputs: the usbmon
 * pcap, the lossless raw record (link type UG_RAW_LINKTYPE), and text in one
 * of the ug_render_* forms. usbdump (proxy, live capture, file),
 * usbredirsrv --pcap and the tests all record through it.
 *
 * Each session is one usbredir connection; it gets its own bus/device
 * address in the usbmon output (bus fixed, devices counted up from the first
 * device number) so that Wireshark keeps the devices apart.
 *
 * Decoding problems never stop a recording: they are counted, reported
 * through the log callback with the session, direction, offset and numbers,
 * and decoding goes on where the framing allows. A packet of an unknown
 * type is recorded as it is and counted; the first of each session is
 * logged at UG_LOG_WARNING. Output write errors are
 * sticky per output: that output stops, the others go on, and
 * ug_recorder_finish() returns the first error.
 */
typedef struct ug_recorder ug_recorder;

struct ug_recorder_stats {
	uint64_t packets;        /* usbredir packets decoded, both directions */
	uint64_t bytes;          /* usbredir bytes fed */
	uint64_t decode_errors;  /* packets or stretches that could not be decoded */
	uint64_t gaps;           /* stretches reported missing by the source */
	uint64_t usbmon_records; /* records written to the usbmon pcap */
	uint64_t transfers;      /* completed transfers (usbmon completions) */
	uint32_t sessions;
	uint64_t unknown_packets; /* packets of an unknown type, skipped by length */
};

ug_recorder *ug_recorder_new(void);
/* Finishes (errors ignored) and frees. Accepts NULL. */
void ug_recorder_free(ug_recorder *r);

/* Outputs; each is optional. Paths as for ug_pcap_writer_open(). */
int ug_recorder_open_usbmon(ug_recorder *r, const char *path);
int ug_recorder_open_raw(ug_recorder *r, const char *path);
/* Text to out (owned by the caller, kept open until finish) in format. */
void ug_recorder_set_text(ug_recorder *r, FILE *out, enum ug_render_format format);
/* Warnings about the decoded sessions (never secrets, never data bytes). */
void ug_recorder_set_log(ug_recorder *r, ug_log_fn fn, void *user_data);
/* Bus number and first device number for the usbmon output (default 1, 1). */
int ug_recorder_set_address(ug_recorder *r, uint16_t bus, uint8_t first_device);
/* Packet size limit of every session's decoder (default the codec's). */
int ug_recorder_set_max_packet(ug_recorder *r, uint32_t max);
/* Records at most max usbredir packets in all (0: no limit, the default);
 * later packets are still decoded but reach no output. */
int ug_recorder_set_packet_limit(ug_recorder *r, uint64_t max);
/* 1 once the packet limit was reached. */
int ug_recorder_limit_reached(const ug_recorder *r);

/*
 * A new session; label names it in messages and in the text output's
 * "session N: label" line ("tcp 127.0.0.1:4000 -> 127.0.0.1:5000"). Returns
 * the session number (1, 2, ...) or a negative UG_E_*.
 */
int ug_recorder_add_session(ug_recorder *r, const char *label);

/* For a session that starts after the hellos: the negotiated caps word. */
int ug_recorder_set_session_caps(ug_recorder *r, int session, uint32_t caps);

/* Bytes of one direction of a session, seen at ts_ns (ns since the epoch).
 * Returns 0, or the first sticky output error (decoding goes on regardless). */
int ug_recorder_feed(ug_recorder *r, int session, enum ug_dir dir, const void *data,
                     size_t len, uint64_t ts_ns);

/* len bytes of dir at the session's current offset were lost (capture
 * gap): what was being decoded in that direction is dropped and decoding of
 * that direction stops, reported once. */
int ug_recorder_gap(ug_recorder *r, int session, enum ug_dir dir, uint64_t len,
                    uint64_t ts_ns);

/* The session ended at ts_ns: outstanding transfers are completed as
 * shut down in the usbmon output; an incomplete last packet is reported. */
int ug_recorder_end_session(ug_recorder *r, int session, uint64_t ts_ns);

/* Ends every session, flushes and closes the outputs; returns 0 or the
 * first output error (UG_E_NOSPC, UG_E_IO) with ug_recorder_errmsg(). */
int ug_recorder_finish(ug_recorder *r);

void ug_recorder_get_stats(const ug_recorder *r, struct ug_recorder_stats *ret_stats);
const char *ug_recorder_errmsg(const ug_recorder *r);

/* ---- capture demux, proxy: sources into the recorder ---------------------- */

/*
 * The capture demultiplexer takes the events of a ug_capture and records
 * every usbredir connection in it through a ug_recorder (borrowed; it must
 * outlive the demux): one recorder session per connection, labelled
 * "tcp 127.0.0.1:51234 -> 127.0.0.1:4000" (client -> server).
 *
 * Per connection it keeps the first bytes of each side until
 * ug_capture_classify() decides, then hands the connection to the handler of
 * its protocol:
 * - raw usbredir: the usb-guest is the side whose hello version reads
 *   "qemu usb-redir guest ..."; else the side that first sends a packet only
 *   a usb-host sends (device_connect, interface_info, ep_info); if neither
 *   tells, the TCP client is assumed to be the guest and the log says so.
 *   Gaps become ug_recorder_gap(), the connection's end
 *   ug_recorder_end_session().
 * - TLS: reported at UG_LOG_WARNING as encrypted (UG_E_ENCRYPTED), skipped.
 * - SPICE: one ug_spice_stream per connection. The SPICE server's side is
 *   the one whose port was named with ug_capture_demux_spice_port() or seen
 *   as a server port in an earlier link of the same capture, else the side
 *   whose "REDQ" message is a link reply (178 bytes and more) rather than a
 *   client's link message, else the side the capture calls the server (the
 *   log says which). The main channel's session id and channel list are
 *   logged; every usbredir channel becomes one recorder session on its first
 *   usbredir bytes, labelled "spice usbredir channel N (HOST:PORT)"; other
 *   channels are counted and skipped; TLS is reported as encrypted.
 * - anything else: counted; a connection without a captured handshake is
 *   mentioned at UG_LOG_INFO, since it may be usbredir that started before
 *   the capture (see ug_capture_demux_force_port()).
 * While undecided, at most UG_CAPTURE_DEMUX_MAX_HELD bytes per connection
 * are held; past that the decision is made with what was seen.
 */
typedef struct ug_capture_demux ug_capture_demux;
struct ug_capture_event; /* see the capture sources section below */

#define UG_CAPTURE_DEMUX_MAX_HELD (256u * 1024u)
/* The caps word QEMU 7.2 and usbredir 0.13 negotiate (bits 0..7): what a
 * forced connection is decoded with when no caps were given. */
#define UG_CAPTURE_DEMUX_DEFAULT_CAPS 0xffu

/* Which TCP side is the usb-guest. */
enum ug_capture_demux_guest {
	UG_DEMUX_GUEST_AUTO = 0,    /* decide from the traffic (see above) */
	UG_DEMUX_GUEST_CLIENT = 1,  /* the TCP client (the side that connected) */
	UG_DEMUX_GUEST_SERVER = 2,
};

struct ug_capture_demux_stats {
	uint64_t connections;       /* connections seen */
	uint64_t usbredir;          /* recorded as raw usbredir */
	uint64_t spice;             /* SPICE connections (decoded as far as not TLS) */
	uint64_t spice_usbredir;    /* of those, usbredir channels (recorded once they carry data) */
	uint64_t spice_other;       /* of those, other channels (counted, skipped) */
	uint64_t spice_lz4;         /* LZ4 SPICEVMC_COMPRESSED_DATA messages decoded */
	uint64_t tls;               /* encrypted connections, skipped */
	uint64_t other;             /* neither usbredir, SPICE nor TLS */
	uint64_t guest_assumed;     /* usbredir connections whose guest side was assumed */
	uint64_t gaps;              /* gaps in recorded connections */
	uint64_t notices;           /* capture NOTICE events */
	uint64_t damaged;           /* of those, data lost to a cut or unreadable file */
};

ug_capture_demux *ug_capture_demux_new(ug_recorder *rec);
/* Ends the sessions still open (see ug_capture_demux_finish()) and frees. */
void ug_capture_demux_free(ug_capture_demux *d);
/* Messages: decisions, assumptions, skipped connections, capture notices. */
void ug_capture_demux_set_log(ug_capture_demux *d, ug_log_fn fn, void *user_data);

/*
 * Connections with port as either endpoint's port are raw usbredir even
 * without a hello (a capture that starts mid-stream), decoded with caps
 * (when caps_known is 0: UG_CAPTURE_DEMUX_DEFAULT_CAPS, said in the log) and
 * guest as the usb-guest's side. Hellos in the stream still take
 * precedence over caps. Up to 16 ports; UG_E_TOOBIG beyond.
 */
int ug_capture_demux_force_port(ug_capture_demux *d, uint16_t port, uint32_t caps,
                                int caps_known, enum ug_capture_demux_guest guest);
/*
 * Connections with port as either endpoint's port are SPICE, and the side
 * with that port is the SPICE server, also without a captured link (a
 * capture that starts mid-stream: the decoder then guesses the channel and
 * header kind and says so). Up to 16 ports (shared with force_port);
 * UG_E_TOOBIG beyond.
 */
int ug_capture_demux_spice_port(ug_capture_demux *d, uint16_t port);
/* The usb-guest's side for every usbredir connection (default AUTO). */
void ug_capture_demux_set_guest(ug_capture_demux *d, enum ug_capture_demux_guest guest);

/* One event from ug_capture_next(). Returns 0, or the recorder's first
 * sticky output error (the demux goes on regardless). */
int ug_capture_demux_event(ug_capture_demux *d, const struct ug_capture_event *ev);
/* Decides and ends every connection still open (capture stopped early). */
int ug_capture_demux_finish(ug_capture_demux *d, uint64_t ts_ns);

void ug_capture_demux_get_stats(const ug_capture_demux *d,
                                struct ug_capture_demux_stats *ret_stats);
/* Detail of the last failure of the demux itself ("" if none). */
const char *ug_capture_demux_errmsg(const ug_capture_demux *d);

/*
 * The proxy joins two transports: a, the usb-guest's side (e.g. QEMU's
 * chardev), and b, the usb-host's side (usbredirect, usbredirsrv). Every byte
 * one side delivers is sent to the other unchanged and in order, and only
 * then shown to the tap with its direction (UG_DIR_G2H for a -> b) and the
 * time it was received; what the tap does never changes what is forwarded.
 *
 * Backpressure: when the receiving transport's queue exceeds the high-water
 * mark, reading from the sending side is paused until the queue drained
 * below the low-water mark, so memory stays bounded by the high mark plus one
 * read. When either side ends, nothing more is read, the other side's queue
 * is flushed (for at most the flush timeout) and it is closed; the closed
 * callback then comes once. The proxy owns both transports from
 * ug_proxy_new() on and runs on the thread-default main context.
 */
typedef struct ug_proxy ug_proxy;
struct ug_transport; /* see the transport section below */

#define UG_PROXY_DEFAULT_HIGH_WATER (4u * 1024u * 1024u)
#define UG_PROXY_DEFAULT_LOW_WATER (1u * 1024u * 1024u)
#define UG_PROXY_DEFAULT_FLUSH_MS 5000u
/* Room above the high mark a transport's own queue limit keeps for one read. */
#define UG_PROXY_OVERSHOOT (16u * 1024u * 1024u)

/* data is valid during the call only. */
typedef void (*ug_proxy_tap_fn)(ug_proxy *p, enum ug_dir dir, const uint8_t *data,
                                size_t len, uint64_t ts_ns, void *user_data);
/* first_side: the side that ended first (UG_DIR_G2H for a, UG_DIR_H2G for b);
 * error and message as in ug_transport_closed_fn (UG_E_TIMEOUT when the other
 * side's queue could not be flushed in time). The callback may free p. */
typedef void (*ug_proxy_closed_fn)(ug_proxy *p, enum ug_dir first_side, int error,
                                   const char *message, void *user_data);

struct ug_proxy_stats {
	uint64_t bytes[2];      /* forwarded, per direction (UG_DIR_G2H: a -> b) */
	uint64_t pauses;        /* times a side was paused for backpressure */
	size_t max_pending;     /* the largest queue seen on either side */
};

/* Takes ownership of a and b (also on failure: NULL only for bad arguments
 * or OOM, and then neither is freed). */
ug_proxy *ug_proxy_new(struct ug_transport *a, struct ug_transport *b);
/* Frees both transports (closing them without a callback). Accepts NULL. */
void ug_proxy_free(ug_proxy *p);
/* Before ug_proxy_start(): watermarks in bytes (low <= high, high > 0). */
int ug_proxy_set_watermarks(ug_proxy *p, size_t high, size_t low);
void ug_proxy_set_flush_timeout(ug_proxy *p, unsigned ms);
void ug_proxy_set_tap(ug_proxy *p, ug_proxy_tap_fn fn, void *user_data);
void ug_proxy_set_closed(ug_proxy *p, ug_proxy_closed_fn fn, void *user_data);
/* Installs the transports' callbacks and resumes both (a caller may keep
 * one paused until the other is connected); forwarding starts with the next
 * main-loop iteration. UG_E_STATE when called twice. */
int ug_proxy_start(ug_proxy *p);
/* a (UG_DIR_G2H) or b (UG_DIR_H2G); owned by p. */
struct ug_transport *ug_proxy_transport(const ug_proxy *p, enum ug_dir side);
void ug_proxy_get_stats(const ug_proxy *p, struct ug_proxy_stats *ret_stats);
const char *ug_proxy_errmsg(const ug_proxy *p);

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
 * GAPs) and closed with UG_CAPTURE_CLOSE_END by the following next() calls.
 * A live capture first reads the frames the kernel still holds (captured
 * before the stop, handed over in blocks): the next next() call may wait for
 * them, 100 ms at most in all. */
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

/* ---- SPICE stream decoding ------------------------------------------------ */

/*
 * A passive decoder of ONE SPICE channel connection (one TCP connection), as
 * a capture or a proxy sees it from outside: both directions are fed, and
 * nothing is ever sent. It follows the link phase (the client's link
 * message, the server's link reply, the auth mechanism, the ticket and the
 * link result; the ticket is skipped, never exposed and never logged), learns
 * the channel and the negotiated data header (mini or full), then decodes
 * data messages both ways:
 * - main channel (type 1): MAIN_INIT (the session id) and CHANNELS_LIST
 *   (the channel table) become events;
 * - usbredir channels (type 9): SPICEVMC_DATA and LZ4 SPICEVMC_COMPRESSED_DATA
 *   are de-framed into one usbredir byte stream per direction. In SPICE the
 *   client (spice-gtk, usbredirsrv --spice) plays the usb-HOST and the
 *   server (QEMU's usb-redir device behind spice-server) the usb-GUEST, so
 *   client -> server bytes are UG_DIR_H2G and server -> client bytes are
 *   UG_DIR_G2H (QEMU's hello "qemu usb-redir guest" comes from the server);
 * - every other channel's messages are counted and skipped by their sizes.
 * A connection that starts with a TLS record is reported once as encrypted
 * (UG_E_ENCRYPTED) and its bytes are only counted.
 *
 * Gaps (bytes a capture lost) keep the framing where it is known: a gap
 * inside a message body damages only that message (its usbredir bytes
 * become a USBREDIR_GAP); a gap over a header loses the framing, and then
 * (as for a capture that starts mid-stream) the decoder looks for the next
 * point where three data headers in a row parse, chain by their sizes and
 * carry message types (and sizes) that the channel's direction sends,
 * within a bounded window. SPICE messages have no marker, so this is a
 * search, and it is reported as a NOTICE with the bytes skipped
 * (docs/spice-stream.md has the details).
 *
 * Use: feed one direction's bytes, then take events until next() returns 0,
 * then feed again (either direction). A direction that needs the other's
 * link first holds its bytes (bounded) and continues when the other
 * direction has been fed. Bounded everything: message size, held bytes,
 * the resync window, the decompressed size.
 */
typedef struct ug_spice_stream ug_spice_stream;

enum ug_spice_stream_event_type {
	UG_SPICE_STREAM_LINK = 1,           /* both link messages seen: channel, session, mini */
	UG_SPICE_STREAM_MAIN_INIT = 2,      /* main channel: session_id */
	UG_SPICE_STREAM_CHANNELS = 3,       /* main channel: channels[], n_channels */
	UG_SPICE_STREAM_USBREDIR_DATA = 4,  /* usbredir bytes: dir, data, len, usbredir_offset */
	UG_SPICE_STREAM_USBREDIR_GAP = 5,   /* usbredir bytes of dir lost (gap_len, 0 = unknown) */
	UG_SPICE_STREAM_NOTICE = 6,         /* something was skipped or assumed: code, message */
	UG_SPICE_STREAM_ERROR = 7,          /* a direction (or the link) failed: code, message */
};

struct ug_spice_stream_channel {
	uint8_t type;                       /* SPICE_CHANNEL_* (9: usbredir) */
	uint8_t id;
};

/* channel_type before the link is known (a capture that starts mid-stream). */
#define UG_SPICE_STREAM_CHANNEL_UNKNOWN 0u

/*
 * One event; pointers are views into the decoder (or the fed buffer) valid
 * until the next ug_spice_stream_* call on the same decoder.
 */
struct ug_spice_stream_event {
	enum ug_spice_stream_event_type type;
	int from_server;                    /* the TCP direction the event was decoded from */
	uint64_t offset;                    /* that direction's stream offset of the message
	                                     * or of the problem */
	unsigned channel_type, channel_id;  /* as far as known (every event) */
	uint32_t session_id;                /* LINK: the client's connection_id (0 for main);
	                                     * MAIN_INIT: the new session id */
	int mini;                           /* LINK: 1 mini headers, 0 full headers */
	uint32_t link_error;                /* LINK: the reply's error, else the link
	                                     * result (SPICE_LINK_ERR_*; 0 ok) */
	enum ug_dir dir;                    /* USBREDIR_*: H2G client->server, G2H back */
	uint64_t usbredir_offset;           /* USBREDIR_*: bytes of dir delivered before */
	const uint8_t *data;                /* USBREDIR_DATA */
	size_t len;
	int compressed;                     /* USBREDIR_DATA: from an LZ4 message */
	uint64_t gap_len;                   /* USBREDIR_GAP: bytes lost, 0 if unknown */
	const struct ug_spice_stream_channel *channels; /* CHANNELS */
	size_t n_channels;
	int code;                           /* NOTICE, ERROR: a UG_E_* */
	const char *message;                /* NOTICE, ERROR: names offsets and numbers */
};

struct ug_spice_stream_stats {
	uint64_t bytes[2];                  /* fed, [0] client->server, [1] server->client */
	uint64_t gap_bytes[2];              /* reported missing */
	uint64_t messages[2];               /* data messages decoded */
	uint64_t skipped_messages[2];       /* of those, not decoded (other types, channels) */
	uint64_t usbredir_bytes[2];         /* delivered, indexed by enum ug_dir */
	uint64_t lz4_messages[2];           /* COMPRESSED_DATA decoded, by enum ug_dir */
	uint64_t resyncs;                   /* resync points found */
	uint64_t resync_skipped;            /* bytes skipped while looking for them */
	int encrypted;                      /* 1 if the connection is TLS */
};

/* Defaults: a data message body at most 16 MiB (also the decompressed size of
 * one COMPRESSED_DATA); 1 MiB held per direction while waiting for the other
 * direction or while looking for a resync point. */
#define UG_SPICE_STREAM_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u)
#define UG_SPICE_STREAM_DEFAULT_MAX_HOLD (1024u * 1024u)

ug_spice_stream *ug_spice_stream_new(void);
void ug_spice_stream_free(ug_spice_stream *s);
/* Limits (0 keeps a value); before the first feed. */
int ug_spice_stream_set_limits(ug_spice_stream *s, uint32_t max_message, uint32_t max_hold);
/*
 * For a connection whose link was not captured: decode it as channel
 * (type, id) with mini (1) or full (0) headers. Without this the decoder
 * guesses (it tries both header kinds and assumes usbredir when the message
 * types fit) and says what it assumed in a NOTICE. Before the first feed.
 */
int ug_spice_stream_assume(ug_spice_stream *s, unsigned channel_type, unsigned channel_id,
                           int mini);
/*
 * Bytes of one direction (from_server 0: client -> server). The decoder
 * keeps a pointer to buf until next() returned 0 (it copies what it must
 * hold); UG_E_STATE when called before that.
 */
int ug_spice_stream_feed(ug_spice_stream *s, int from_server, const void *buf, size_t len);
/* len bytes of that direction are missing (a capture gap); same rules as feed. */
int ug_spice_stream_gap(ug_spice_stream *s, int from_server, uint64_t len);
/* That direction ended (FIN, end of capture): an unfinished message is reported. */
int ug_spice_stream_end(ug_spice_stream *s, int from_server);
/*
 * The next event: 1 and *ret_ev, or 0 when everything fed is decoded (or
 * held). Problems in the data are events (NOTICE, ERROR, USBREDIR_GAP),
 * never return values: decoding goes on wherever it can.
 */
int ug_spice_stream_next(ug_spice_stream *s, struct ug_spice_stream_event *ret_ev);
/* 1 and the channel once known (link decoded, assumed or guessed), else 0. */
int ug_spice_stream_channel(const ug_spice_stream *s, unsigned *ret_type, unsigned *ret_id);
void ug_spice_stream_get_stats(const ug_spice_stream *s, struct ug_spice_stream_stats *ret);
/* The last ERROR's message ("" if none); owned by s. */
const char *ug_spice_stream_errmsg(const ug_spice_stream *s);

/*
 * A SPICE proxy on the thread-default GLib main context: it listens for a
 * SPICE client's connections (a client opens one TCP connection per
 * channel), connects each to the real server, and forwards every byte
 * unchanged both ways (through ug_proxy, so with its backpressure) before a
 * ug_spice_stream decoder per connection looks at a copy. Each decoder
 * event comes to the event callback with the connection's number (1, 2, ...
 * in order of acceptance) and a label that names the channel once the link
 * is decoded ("spice usbredir channel 1 (127.0.0.1:5930)"), so usbdump can
 * feed one ug_recorder session per usbredir channel: USBREDIR_DATA to
 * ug_recorder_feed(), USBREDIR_GAP to ug_recorder_gap(). A connection that
 * is TLS is forwarded unchanged and reported as encrypted (an ERROR event
 * with UG_E_ENCRYPTED). To inspect TLS sessions, give the proxy a
 * certificate and key for the client-facing side and a CA for the server
 * side (ug_spice_proxy_set_tls) and start a second listener for the
 * server's TLS port (ug_spice_proxy_start_tls): connections there are TLS
 * terminated on both legs with OpenSSL, the server's certificate verified
 * (CA and the server address), and decoded in plaintext. The client must
 * then trust the proxy's certificate.
 */
typedef struct ug_spice_proxy ug_spice_proxy;
struct ug_address; /* see the transport section below */

/* ev and label are valid during the call; ts_ns is when the bytes arrived. */
typedef void (*ug_spice_proxy_event_fn)(ug_spice_proxy *p, unsigned conn, const char *label,
                                        const struct ug_spice_stream_event *ev,
                                        uint64_t ts_ns, void *user_data);
/* A connection ended (error/message as ug_proxy_closed_fn's); its decoder's
 * last events came before. May not free p. */
typedef void (*ug_spice_proxy_closed_fn)(ug_spice_proxy *p, unsigned conn, const char *label,
                                         int error, const char *message, void *user_data);

struct ug_spice_proxy_stats {
	uint32_t connections;           /* accepted */
	uint32_t active;                /* open now */
	uint32_t connect_failures;      /* the server could not be reached */
	uint64_t bytes[2];              /* forwarded, [0] client->server, [1] back */
};

ug_spice_proxy *ug_spice_proxy_new(void);
/* Closes every connection (no callbacks) and the listener. Accepts NULL. */
void ug_spice_proxy_free(ug_spice_proxy *p);
void ug_spice_proxy_set_callbacks(ug_spice_proxy *p, ug_spice_proxy_event_fn on_event,
                                  ug_spice_proxy_closed_fn on_closed, void *user_data);
/* Connection-level messages (accepted, connect failures) at UG_LOG_INFO/WARNING. */
void ug_spice_proxy_set_log(ug_spice_proxy *p, ug_log_fn fn, void *user_data);
/* Limits of each connection's decoder (see ug_spice_stream_set_limits). */
int ug_spice_proxy_set_limits(ug_spice_proxy *p, uint32_t max_message, uint32_t max_hold);
/* Listens on listen_addr (port 0: a free one) and connects each accepted
 * connection to server. UG_E_IO (with errmsg) when it cannot listen. */
int ug_spice_proxy_start(ug_spice_proxy *p, const struct ug_address *listen_addr,
                         const struct ug_address *server);
/* The bound address (after start). */
const struct ug_address *ug_spice_proxy_address(const ug_spice_proxy *p);
/* TLS termination: PEM certificate (chain) and key shown to clients, CA file
 * (NULL: the system's) to verify the server with. UG_E_TLS with errmsg. */
int ug_spice_proxy_set_tls(ug_spice_proxy *p, const char *cert_file, const char *key_file,
                           const char *ca_file);
/* A second listener whose connections are TLS on both legs, to server (the
 * SPICE server's TLS port). UG_E_STATE without ug_spice_proxy_set_tls(). */
int ug_spice_proxy_start_tls(ug_spice_proxy *p, const struct ug_address *listen_addr,
                             const struct ug_address *server);
const struct ug_address *ug_spice_proxy_tls_address(const ug_spice_proxy *p);
void ug_spice_proxy_get_stats(const ug_spice_proxy *p, struct ug_spice_proxy_stats *ret);
const char *ug_spice_proxy_errmsg(const ug_spice_proxy *p);

/* ---- SPICE codec and client ---------------------------------------------- */

/*
 * A headless SPICE client session: it links the main channel, learns the
 * session id and the channel list (and later lists for hot-plugged
 * channels), answers PING on every channel, logs NOTIFY and DISCONNECTING,
 * refuses migration, and opens usbredir channels (type 9) on request, each
 * as a ug_transport that carries the de-framed usbredir byte stream. The
 * session runs on the thread-default GLib main context of the thread that
 * called ug_spice_client_connect(); every callback comes from that context,
 * never from inside a ug_spice_client_* or ug_transport_* call, with one
 * exception: ug_spice_client_disconnect() and ug_spice_client_free() make the
 * open transports' closed callbacks (UG_E_CLOSED) before they return.
 *
 * spice-server admits one client: connecting disconnects a viewer that is
 * already connected to the same VM (the client logs a warning first).
 */
typedef struct ug_spice_client ug_spice_client;
struct ug_transport; /* see the transport section below */

struct ug_spice_client_callbacks {
	/* The main channel is linked and the session id is known. */
	void (*connected)(ug_spice_client *c, void *user_data);
	/* A usbredir channel exists (initial list or hot-plug); ids are 0..255.
	 * Called once per id per session. */
	void (*channel_added)(ug_spice_client *c, unsigned channel_id, void *user_data);
	/* An opened usbredir channel's connection ended while the session is up
	 * (its transport got its closed callback just before). */
	void (*channel_removed)(ug_spice_client *c, unsigned channel_id, void *user_data);
	/* The session ended: error is 0 when the server announced it
	 * (DISCONNECTING) and closed, UG_E_CLOSED when the main channel closed
	 * unannounced (server gone), else a UG_E_* code (UG_E_AUTH for a refused
	 * password, UG_E_TLS for a failed certificate check, UG_E_TIMEOUT, ...);
	 * message says it in words. Every open usbredir
	 * transport has been closed before. ug_spice_client_connect() may be
	 * called again from here or later: that is the reconnect hook. */
	void (*disconnected)(ug_spice_client *c, int error, const char *message, void *user_data);
};

ug_spice_client *ug_spice_client_new(void);
/* Closes everything; open transports stay valid (closed) until the caller
 * frees them. Accepts NULL; may be called from a callback. */
void ug_spice_client_free(ug_spice_client *c);

/*
 * The server: spice://HOST[:PORT], spice+tls://HOST[:PORT] (PORT is then the
 * TLS port), spice+unix:///PATH, with query keys port=N and tls-port=N
 * (spice://h?port=5900&tls-port=5901). A password in the URI is refused:
 * use a file or the environment. UG_E_INVAL with the reason in errmsg.
 */
int ug_spice_client_set_uri(ug_spice_client *c, const char *uri);
/* The password, read now: a file's first line (at most 60 bytes; one
 * trailing newline is dropped) or an environment variable. Without either the
 * ticket is encrypted over "", which a server with disable-ticketing accepts.
 * The password never appears in errmsg or log messages. */
int ug_spice_client_set_password_file(ug_spice_client *c, const char *path);
int ug_spice_client_set_password_env(ug_spice_client *c, const char *name);
/* TLS: CA certificates (PEM) to verify the server with; default: the
 * system's. Verification is on by default; by default the certificate must
 * match the URI's host (DNS name or IP address). */
int ug_spice_client_set_ca_file(ug_spice_client *c, const char *path);
/* Check the certificate's subject instead of the host name, written as
 * spice-gtk does, in the certificate's order: "C=XX,O=Org,CN=name". */
int ug_spice_client_set_host_subject(ug_spice_client *c, const char *subject);
/* Pin the server's public key (a PEM or DER file): it must match, and it
 * replaces the CA, host and subject checks. */
int ug_spice_client_set_pubkey_file(ug_spice_client *c, const char *path);
/* 0 turns certificate verification off (logged as a warning at connect). */
void ug_spice_client_set_verify(ug_spice_client *c, int verify);
/* Every channel's connect, TLS handshake and link (for the main channel: up
 * to MAIN_INIT) must finish within ms, else it fails with UG_E_TIMEOUT;
 * 0 waits forever. */
void ug_spice_client_set_link_timeout(ug_spice_client *c, unsigned ms);
#define UG_SPICE_DEFAULT_LINK_TIMEOUT_MS 15000u
void ug_spice_client_set_log(ug_spice_client *c, ug_log_fn fn, void *user_data);
/* cb is copied; user_data is passed to every callback. */
void ug_spice_client_set_callbacks(ug_spice_client *c,
                                   const struct ug_spice_client_callbacks *cb,
                                   void *user_data);
/* Every byte of every channel connection as it goes on the wire (inside TLS),
 * for debugging and recording test seeds; data is valid during the call. */
typedef void (*ug_spice_wire_fn)(unsigned channel_type, unsigned channel_id, int from_server,
                                 const uint8_t *data, size_t len, void *user_data);
void ug_spice_client_set_wire_tap(ug_spice_client *c, ug_spice_wire_fn fn, void *user_data);

/* Starts linking the main channel; the outcome comes through the callbacks.
 * UG_E_INVAL without a URI, UG_E_STATE while connected or connecting. */
int ug_spice_client_connect(ug_spice_client *c);
/* Closes the session: the open transports get their closed callback now;
 * no disconnected callback follows. */
void ug_spice_client_disconnect(ug_spice_client *c);
/* 1 between the connected and disconnected callbacks. */
int ug_spice_client_is_connected(const ug_spice_client *c);
uint32_t ug_spice_client_session_id(const ug_spice_client *c);

/*
 * Opens usbredir channel channel_id of the connected session and returns it
 * as a transport (owned by the caller: ug_transport_free()). Bytes sent
 * before the channel is linked are queued. Link failures arrive as the
 * transport's closed callback with a UG_E_* and a sentence. UG_E_STATE when
 * not connected, UG_E_NOTFOUND for an id not in the channel list, UG_E_STATE
 * when the channel is already open.
 */
int ug_spice_client_open_usbredir(ug_spice_client *c, unsigned channel_id,
                                  struct ug_transport **ret_transport);
/* LZ4 for what this usbredir transport sends (default on; used only when
 * the server announced it and above 1000 bytes). Turn it off for devices
 * with isochronous endpoints. Returns UG_E_INVAL for other transports. */
int ug_spice_usbredir_set_lz4(struct ug_transport *t, int on);

/* Detail of the last failure ("" if none), e.g. "usbredir channel 1: link
 * refused: permission denied: wrong password, or the password has expired";
 * owned by c, valid until the next call on c. */
const char *ug_spice_client_errmsg(const ug_spice_client *c);


/* ---- capture loader -------------------------------------------------------
 *
 * A recording is one usbredir session held in memory as a list of packets in
 * capture order, loaded from usbdump's lossless raw record (link type
 * UG_RAW_LINKTYPE: every packet exactly as it was on the wire) or from a
 * usbmon pcap (link type UG_USBMON_LINKTYPE, as usbdump and usbredirsrv
 * --pcap write it). From a usbmon capture the usbredir session is rebuilt:
 * hellos with the caps QEMU needs, then ep_info, interface_info and
 * device_connect derived from the recorded GET_DESCRIPTOR replies (device and
 * configuration), then one request and one answer per recorded transfer
 * (SET_CONFIGURATION, SET_INTERFACE and their GETs become set_configuration,
 * set_alt_setting, ...; interrupt IN becomes interrupt receiving with pushed
 * interrupt packets). Such synthesized packets carry record 0 when no record
 * stands behind them.
 *
 * A capture that cannot be replayed is refused: UG_E_UNSUPPORTED (not a
 * pcap, or another link type), UG_E_TRUNCATED (cut inside a record),
 * UG_E_PROTO (a malformed record or packet), UG_E_NOTFOUND (no device: no
 * device_connect, or no device/configuration descriptor in a usbmon
 * capture), UG_E_INVAL (a usbmon capture needs the speed and none was set),
 * UG_E_TOOBIG (a limit was hit); ug_recording_errmsg() says why and names the
 * record number.
 */
typedef struct ug_recording ug_recording;

/* One recorded packet; h is a copy, data points into the recording and stays
 * valid until ug_recording_free(). */
struct ug_recorded_packet {
	struct ug_usbredir_packet pkt;  /* raw/raw_len and offset are not set */
	uint64_t record;                /* 1-based record number in the capture; 0: synthesized */
	uint64_t ts_ns;                 /* capture time */
};

struct ug_recording_limits {
	uint64_t max_packets;   /* packets held (default 16 Mi) */
	uint64_t max_bytes;     /* data plus headers held (default 1 GiB) */
	uint32_t max_packet;    /* one packet's length (default the codec's) */
	uint32_t max_pending;   /* usbmon submits waiting for completion (default 4096) */
};
#define UG_RECORDING_DEFAULT_MAX_PACKETS (16u * 1024u * 1024u)
#define UG_RECORDING_DEFAULT_MAX_BYTES (1024ull * 1024u * 1024u)
#define UG_RECORDING_DEFAULT_MAX_PENDING 4096u

ug_recording *ug_recording_new(void);
void ug_recording_free(ug_recording *r);
/* 0 in a field keeps the current value. Before loading. */
int ug_recording_set_limits(ug_recording *r, const struct ug_recording_limits *limits);
/* The device speed (usb_redir_speed_*) for captures that do not carry it (a
 * usbmon capture of a device below USB 3); it overrides the recorded one. */
int ug_recording_set_speed(ug_recording *r, int speed);
/* Which session of a raw record with several to load (default: the first). */
int ug_recording_set_session(ug_recording *r, uint32_t session);
/* Loads a capture file; the format is taken from its link type. Once. */
int ug_recording_load(ug_recording *r, const char *path);

/* Packets held, and one of them by index (0-based, capture order). */
size_t ug_recording_count(const ug_recording *r);
int ug_recording_get(const ug_recording *r, size_t index, struct ug_recorded_packet *ret);
/* The hello caps of each side (the first hello word), and their intersection. */
uint32_t ug_recording_caps(const ug_recording *r, enum ug_dir dir);
uint32_t ug_recording_negotiated_caps(const ug_recording *r);
/* The first device_connect of the recording. */
int ug_recording_device(const ug_recording *r,
                        struct usb_redir_device_connect_header *ret_dev);
/* UG_RAW_LINKTYPE or UG_USBMON_LINKTYPE once loaded, else -1. */
int ug_recording_format(const ug_recording *r);
/* Bytes held (headers, data and the index). */
uint64_t ug_recording_memory(const ug_recording *r);
const char *ug_recording_errmsg(const ug_recording *r);
/* "super (5 Gb/s)"-style name for the usbredir speed, or parses "low",
 * "full", "high", "super" (and 1.5, 12, 480, 5000) into *ret_speed. */
const char *ug_recording_speed_name(int speed);
int ug_recording_parse_speed(const char *text, int *ret_speed);

/*
 * Replay rules and report, shared by the emulated device and the replayed
 * guest.
 *
 * Rules say what may differ between the recording and the live session.
 * ug_replay_rules_add() takes one rule as users write it:
 *   status | length | data   that part of an answer is not compared (guest
 *                            mode) / OUT data is not matched (device mode)
 *   EP:FROM-TO               data bytes FROM..TO (inclusive, decimal or 0x
 *                            hex) on endpoint EP (0x81, 2, or * for any) are
 *                            masked, in requests and answers
 *   setup:FROM-TO            bytes of the control setup packet are masked
 *                            when matching (device mode)
 * Bulk-only mass storage tags (CBW/CSW bytes 4-7) are handled by default:
 * the emulated device matches a CBW without its tag and answers the CSW with
 * the guest's tag; ug_replay_rules_set_bot_tags(r, 0) turns that off.
 */
typedef struct ug_replay_rules ug_replay_rules;

ug_replay_rules *ug_replay_rules_new(void);
void ug_replay_rules_free(ug_replay_rules *r);
/* Returns 0, or UG_E_INVAL with a sentence in errbuf; at most 64 rules. */
int ug_replay_rules_add(ug_replay_rules *r, const char *rule, char *errbuf, size_t errbuf_size);
void ug_replay_rules_set_bot_tags(ug_replay_rules *r, int on);

/*
 * A report: the divergences found (at most UG_REPLAY_MAX_DIVERGENCES kept,
 * all counted) and counters. Data kept per divergence is a window of at
 * most UG_REPLAY_MAX_DIFF_DATA bytes per side around the first difference
 * (the true lengths are kept).
 */
#define UG_REPLAY_MAX_DIVERGENCES 1000u
#define UG_REPLAY_MAX_DIFF_DATA 4096u

struct ug_divergence {
	uint64_t record;        /* record number in the capture: the recorded answer
	                         * (guest mode) or the recorded request nearest to the
	                         * unmatched one (device mode); 0: none */
	uint64_t seq;           /* 1-based number of the live request */
	char transfer[160];     /* "control_packet ep 0x80 GET_DESCRIPTOR DEVICE ... id 5" */
	char reason[160];       /* "data differs at byte 12", "no recorded transfer matches" */
	int exp_status, got_status;        /* usbredir status, -1 when none */
	uint32_t exp_length, got_length;   /* length fields */
	const uint8_t *exp_data, *got_data; /* owned by the report */
	uint32_t exp_data_len, got_data_len; /* bytes kept at the pointers */
	uint32_t data_offset;   /* offset in the transfer's data of the kept bytes */
};

struct ug_replay_summary {
	uint64_t requests;      /* live requests handled (device) or sent (guest) */
	uint64_t matched;       /* answered from / equal to the recording */
	uint64_t reused;        /* device: answered from an already used transfer */
	uint64_t diverged;      /* divergences, all of them */
	uint64_t skipped;       /* guest: recorded requests not sent (no recorded answer) */
	uint64_t pushed;        /* stream packets sent (device) or received (guest) */
	uint64_t unused;        /* device: recorded requests the guest never made */
	uint64_t elapsed_ns;
	int completed;          /* guest: every request was sent and answered */
};

typedef struct ug_replay_report ug_replay_report;

/* name labels the JUnit test suite ("usbreplay"); copied. */
ug_replay_report *ug_replay_report_new(const char *name);
void ug_replay_report_free(ug_replay_report *r);
size_t ug_replay_report_count(const ug_replay_report *r);
const struct ug_divergence *ug_replay_report_get(const ug_replay_report *r, size_t index);
void ug_replay_report_summary(const ug_replay_report *r, struct ug_replay_summary *ret);
/* Text: each divergence with a hex diff (verbose also lists matches' counts
 * per endpoint), then the summary line. */
int ug_replay_report_write_text(const ug_replay_report *r, FILE *out, int verbose);
/* One JSON object: {"summary":{...},"divergences":[...]} with data as hex. */
int ug_replay_report_write_json(const ug_replay_report *r, FILE *out);
/* JUnit XML: one test case per divergence, or one passing case. */
int ug_replay_report_write_junit(const ug_replay_report *r, FILE *out);

/*
 * The emulated device: the usb-host role answering from a recording over any
 * transport (socket, SPICE usbredir channel). On attach it sends its hello
 * (the recorded host caps plus ep_info_max_packet_size, 32bits_bulk_length,
 * 64bits_ids and connect_device_version, which QEMU needs to attach behind
 * xhci), and after the guest's hello the recorded ep_info, interface_info
 * and device_connect. Each guest request is answered from the recording:
 * per endpoint, the next recorded request with the same setup packet
 * (control) or the same OUT data (requested length for IN), in recorded
 * order, preferring the transfers that follow the last one matched; when
 * none is left an already used identical one is answered again (counted as
 * reused). Strict mode requires the exact recorded global order and never
 * reuses. A descriptor read (GET_DESCRIPTOR) shorter than every recorded
 * one of the same descriptor is answered with the recorded bytes cut to its
 * wLength, as a device does (counted as reused). A request without a match
 * gets the unmatched status (default stall) and is reported. set_configuration and set_alt_setting re-send
 * the recorded ep_info and interface_info before their status. Stream data
 * the recorded host pushed (interrupt receiving, bulk receiving, iso
 * streams) is pushed once the guest starts receiving on that endpoint, as
 * fast as the transport takes it or at the recorded pace.
 *
 * Guest input is bounded: packets above the limit (default
 * UG_EMULATED_DEFAULT_MAX_PACKET) are skipped and reported; decoding errors
 * are reported and skipped by length; a guest that closes inside a packet
 * is logged (UG_LOG_WARNING, bytes and offset), not reported. Runs on the
 * thread-default main context; the done callback comes once the transport
 * ended.
 */
typedef struct ug_emulated_device ug_emulated_device;

#define UG_EMULATED_DEFAULT_MAX_PACKET (8u * 1024u * 1024u + 1024u)

enum ug_replay_pace {
	UG_PACE_FAST = 0,
	UG_PACE_RECORDED = 1,
};

/* error/message as in ug_transport_closed_fn. */
typedef void (*ug_replay_done_fn)(void *owner, int error, const char *message, void *user_data);

/* rec and rules are borrowed (rules may be NULL) and must outlive the device. */
ug_emulated_device *ug_emulated_device_new(const ug_recording *rec, const ug_replay_rules *rules);
void ug_emulated_device_free(ug_emulated_device *d);
void ug_emulated_device_set_strict(ug_emulated_device *d, int strict);
void ug_emulated_device_set_pace(ug_emulated_device *d, enum ug_replay_pace pace);
/* Holds pushed stream data for ms after the guest starts receiving (default
 * 0): a guest's kernel may start receiving long before the program that
 * reads the device is there. */
void ug_emulated_device_set_stream_delay(ug_emulated_device *d, unsigned ms);
/* usbredir status for requests without a match (default usb_redir_stall). */
void ug_emulated_device_set_unmatched_status(ug_emulated_device *d, uint8_t status);
int ug_emulated_device_set_max_packet(ug_emulated_device *d, uint32_t max);
void ug_emulated_device_set_log(ug_emulated_device *d, ug_log_fn fn, void *user_data);
void ug_emulated_device_set_done(ug_emulated_device *d, ug_replay_done_fn fn, void *user_data);
/* Starts a session on t (owned by the device from now on, in every case).
 * UG_E_STATE when a session ran already. */
int ug_emulated_device_attach(ug_emulated_device *d, struct ug_transport *t);
/* Ends the session (no done callback). */
void ug_emulated_device_stop(ug_emulated_device *d);
/* The report (owned by d). */
const ug_replay_report *ug_emulated_device_report(const ug_emulated_device *d);

/*
 * The replayed guest: the usb-guest role against a live usb-host
 * (usbredirsrv, usbredirect). It sends the recorded hello, waits for the
 * host's device_connect (compared with the recording), then sends the
 * recorded guest requests in order, each after the previous was answered,
 * with the recorded ids, and compares each answer (status, length, data,
 * under the rules) with the recorded one. Requests the recording holds no
 * answer for (cancelled, or pending at the end) are skipped; stream data
 * the host pushes is counted, not compared. An answer that does not come
 * within the timeout (default 10 s) ends the replay as a divergence. When
 * the last request was answered (or the replay ended) the transport is
 * closed and the done callback comes.
 */
typedef struct ug_replay_guest ug_replay_guest;

ug_replay_guest *ug_replay_guest_new(const ug_recording *rec, const ug_replay_rules *rules);
void ug_replay_guest_free(ug_replay_guest *g);
void ug_replay_guest_set_timeout(ug_replay_guest *g, unsigned ms);
void ug_replay_guest_set_log(ug_replay_guest *g, ug_log_fn fn, void *user_data);
void ug_replay_guest_set_done(ug_replay_guest *g, ug_replay_done_fn fn, void *user_data);
int ug_replay_guest_set_max_packet(ug_replay_guest *g, uint32_t max);
/* Starts on t (owned by g from now on). UG_E_STATE when already started. */
int ug_replay_guest_attach(ug_replay_guest *g, struct ug_transport *t);
const ug_replay_report *ug_replay_guest_report(const ug_replay_guest *g);

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

/*
 * Socket addresses as users write them. Accepted forms:
 *   HOST:PORT, [IPV6]:PORT, tcp:HOST:PORT   a TCP address (name or literal)
 *   PORT, :PORT                             TCP on 127.0.0.1 (the safe default)
 *   unix:PATH                               a unix stream socket
 * A listener binds a non-loopback address only when one is written out.
 */
enum ug_address_family {
	UG_ADDRESS_TCP = 1,
	UG_ADDRESS_UNIX = 2,
};

#define UG_ADDRESS_HOST_MAX 256
#define UG_ADDRESS_PATH_MAX 108 /* sizeof(sun_path) on Linux */
#define UG_ADDRESS_TEXT_MAX 300 /* enough for ug_address_format() of any address */

struct ug_address {
	enum ug_address_family family;
	char host[UG_ADDRESS_HOST_MAX]; /* TCP: name or literal, without brackets */
	uint16_t port;                  /* TCP: 0 lets a listener pick a free port */
	char path[UG_ADDRESS_PATH_MAX]; /* unix: NUL-terminated path */
};

/* Parses text into *ret_addr. Returns 0, or UG_E_INVAL with a sentence naming
 * the text in errbuf (errbuf_size bytes, may be 0). */
int ug_address_parse(const char *text, struct ug_address *ret_addr, char *errbuf,
                     size_t errbuf_size);
/* Writes "127.0.0.1:4000", "[::1]:4000" or "unix:/run/x.sock" into buf
 * (always NUL-terminated, truncated to size). Returns buf. */
char *ug_address_format(const struct ug_address *addr, char *buf, size_t size);
/* 1 for unix sockets, 127.0.0.0/8, ::1 and "localhost"; 0 for anything else
 * (a name other than localhost is not resolved and counts as non-loopback). */
int ug_address_is_loopback(const struct ug_address *addr);

/*
 * Wraps a connected stream socket (TCP or unix) as a transport; takes
 * ownership of fd (made non-blocking and close-on-exec here). desc is copied
 * and used as the prefix of messages. Returns NULL when fd < 0 or on OOM
 * (fd is closed then).
 */
ug_transport *ug_transport_socket_new(int fd, const char *desc);

/*
 * A listening socket on the thread-default main context. Each accepted
 * connection becomes a socket transport handed to the accept callback, which
 * owns it from then on. The description of an accepted transport reads
 * "tcp 127.0.0.1:4000 from 127.0.0.1:51234" or "unix /run/x.sock".
 * A unix listener removes a stale socket file it finds (one nobody answers
 * on) before binding, and removes its own file when freed.
 */
typedef struct ug_listener ug_listener;
typedef void (*ug_listener_accept_fn)(ug_listener *l, ug_transport *t, void *user_data);

ug_listener *ug_listener_new(void);
/* Binds and listens on every address a TCP name resolves to (one for a
 * literal). Returns 0, UG_E_INVAL (bad address), UG_E_IO (bind or listen
 * failed; the message names the address and the system's reason). */
int ug_listener_open(ug_listener *l, const struct ug_address *addr,
                     ug_listener_accept_fn on_accept, void *user_data);
/* The bound address: the port the kernel picked when 0 was asked for. */
const struct ug_address *ug_listener_address(const ug_listener *l);
/* While paused, connections wait in the kernel's backlog. */
void ug_listener_pause(ug_listener *l, int paused);
const char *ug_listener_errmsg(const ug_listener *l);
void ug_listener_free(ug_listener *l);

/*
 * Connects to an address, retrying with exponential backoff: the first
 * attempt at once, then after initial_ms, doubled per failure up to max_ms,
 * each delay scaled by a random factor in [0.75, 1.25] so that many clients
 * do not retry in step. Each attempt gives up after UG_CONNECTOR_ATTEMPT_MS.
 * The callback gets the connected transport (owned by the callee from then
 * on; error 0), or NULL with a UG_E_* code and a message once max_attempts
 * (0: unlimited) attempts failed. After the callback the connector is idle
 * and may be started again (the backoff starts over).
 */
typedef struct ug_connector ug_connector;
typedef void (*ug_connector_fn)(ug_connector *c, ug_transport *t, int error,
                                const char *message, void *user_data);
#define UG_CONNECTOR_ATTEMPT_MS 10000u

ug_connector *ug_connector_new(const struct ug_address *addr);
/* Defaults: 100 ms, 5000 ms, unlimited. initial_ms 0 means 1. */
void ug_connector_set_backoff(ug_connector *c, unsigned initial_ms, unsigned max_ms,
                              unsigned max_attempts);
/* Each failed attempt is reported at UG_LOG_INFO with the delay before the next. */
void ug_connector_set_log(ug_connector *c, ug_log_fn fn, void *user_data);
/* Starts attempting; UG_E_STATE if already started. */
int ug_connector_start(ug_connector *c, ug_connector_fn on_done, void *user_data);
/* Stops attempting; no callback follows. */
void ug_connector_stop(ug_connector *c);
/* Failed attempts since the last start. */
unsigned ug_connector_attempts(const ug_connector *c);
const char *ug_connector_errmsg(const ug_connector *c);
void ug_connector_free(ug_connector *c);

/*
 * USB devices of this host (libusb-1.0), and the device bridge that exports
 * one of them over a transport with libusbredirhost (the usb-host role).
 *
 * Threads: a ug_usb_host runs libusb's event handling in its own thread, as
 * libusbredirhost expects; everything else (hotplug handling, the bridges'
 * transports, every callback except the log callbacks) runs on the
 * thread-default main context of the thread that made the host. Log
 * callbacks may be called from the event thread too and must be thread-safe
 * (g_log() is).
 */

#define UG_USB_MAX_INTERFACES 32

/* What a listing shows and what selectors match on. */
struct ug_usb_device_info {
	uint8_t bus;
	uint8_t address;
	char port_path[48];             /* "1-1.2": bus, then each hub port */
	uint16_t vendor_id;
	uint16_t product_id;
	uint16_t bcd_device;
	uint8_t device_class, device_subclass, device_protocol;
	uint8_t interface_count;        /* of the active (else the first) configuration */
	uint8_t interface_class[UG_USB_MAX_INTERFACES];
	uint8_t interface_subclass[UG_USB_MAX_INTERFACES];
	uint8_t interface_protocol[UG_USB_MAX_INTERFACES];
	int speed;                      /* enum libusb_speed */
	int strings_read;               /* 1 if the device could be opened to read strings */
	char serial[128];               /* "" when absent or unreadable */
	char manufacturer[128];
	char product[128];
};

/* "low (1.5 Mb/s)", "full (12 Mb/s)", "high (480 Mb/s)", "super (5 Gb/s)",
 * "super+ (10 Gb/s)" or "unknown"; static storage. */
const char *ug_usb_speed_name(int speed);

/*
 * A device selector. Terms separated by ',' must all match:
 *   VID:PID           hex ids, either may be '*'    (046d:c52b, 46f4:*)
 *   BUS-ADDR          decimal bus and address, as usbredirect takes them
 *   bus=N addr=N      the same, one at a time
 *   port=B-P[.P...]   the physical port path (stable across replugs)
 *   serial=TEXT       the iSerialNumber string (no ',' in it)
 *   filter=RULES      usbredirfilter rules, fields separated by ':' and rules
 *                     by '|', as in QEMU's usb-redir filter= property
 *   *                 any device
 * Hubs are never selected.
 */
typedef struct ug_usb_selector ug_usb_selector;

/* Returns 0 and a new selector, or UG_E_INVAL with the reason in errbuf. */
int ug_usb_selector_parse(const char *text, ug_usb_selector **ret_sel, char *errbuf,
                          size_t errbuf_size);
/* 1 if info matches every term; a serial term never matches a device whose
 * strings could not be read. */
int ug_usb_selector_match(const ug_usb_selector *sel, const struct ug_usb_device_info *info);
/* 1 if matching needs the device's strings (a serial term). */
int ug_usb_selector_needs_strings(const ug_usb_selector *sel);
/* The text it was parsed from; owned by sel. */
const char *ug_usb_selector_describe(const ug_usb_selector *sel);
void ug_usb_selector_free(ug_usb_selector *sel);

/*
 * usbredirfilter rules, parsed by libusbredirparser's own parser:
 * "class,vid,pid,version,allow" with fields separated by ',' or ':' and
 * rules by '|'; -1 is a wildcard. An empty text allows everything.
 */
typedef struct ug_usb_filter ug_usb_filter;
int ug_usb_filter_parse(const char *text, ug_usb_filter **ret_filter, char *errbuf,
                        size_t errbuf_size);
/* 1 if the rules allow the device (usbredirfilter_check says 0), else 0.
 * A device no rule matches is refused. */
int ug_usb_filter_allows(const ug_usb_filter *f, const struct ug_usb_device_info *info);
/* The rules in canonical form (',' and '|'); owned by f. */
const char *ug_usb_filter_describe(const ug_usb_filter *f);
void ug_usb_filter_free(ug_usb_filter *f);

typedef struct ug_usb_host ug_usb_host;

/*
 * Initialises libusb, starts the event thread and registers for hotplug.
 * On a machine without usbfs (no USB at all) the host is still made: it
 * lists no devices, and ug_usb_host_errmsg() says why. Returns NULL only
 * on OOM or when the thread cannot start (reason in errbuf).
 */
ug_usb_host *ug_usb_host_new(char *errbuf, size_t errbuf_size);
/* 0 none, 1 info, 2 debug, 3 also usbredir packet dumps. */
void ug_usb_host_set_log(ug_usb_host *h, int verbosity, ug_log_fn fn, void *user_data);
/* 1 if libusb works here, 0 if the host runs without USB. */
int ug_usb_host_available(const ug_usb_host *h);
/* 1 if libusb reports hotplug events on this system. */
int ug_usb_host_has_hotplug(const ug_usb_host *h);
/*
 * Hotplug events for the application, when ug_usb_host_has_hotplug(): fn is
 * called on the host's main context for each device that arrived (arrived
 * 1, strings read where the device can be opened) or left (0), after the
 * bridges had the event (an arrived device may already belong to one).
 * Hubs are left out. info is valid during the call. NULL fn stops them.
 */
typedef void (*ug_usb_host_hotplug_fn)(ug_usb_host *h, int arrived,
                                       const struct ug_usb_device_info *info, void *user_data);
void ug_usb_host_set_hotplug(ug_usb_host *h, ug_usb_host_hotplug_fn fn, void *user_data);
/* Every non-hub device now present, sorted by bus and port path; strings are
 * read where the device can be opened. *ret_list is freed with free(). */
int ug_usb_host_list(ug_usb_host *h, struct ug_usb_device_info **ret_list, size_t *ret_count);
const char *ug_usb_host_errmsg(const ug_usb_host *h);
/* Ends every bridge's session first (devices released), then stops the
 * thread. Bridges must be freed before their host. Accepts NULL. */
void ug_usb_host_free(ug_usb_host *h);

/*
 * A device bridge exports the one device its selector (and optional filter)
 * picks. Between sessions the device stays with the host's own drivers.
 * ug_device_bridge_attach() starts a session on a transport: the device is
 * opened and handed to libusbredirhost, which claims its interfaces
 * (detaching kernel drivers) and speaks usbredir with the guest through its
 * own parser. When the transport ends, the device is released and the
 * kernel drivers re-attached. If the device is unplugged during a session
 * the guest gets device_disconnect; when a matching device is plugged in
 * (libusb hotplug) it is offered to the guest again with device_connect.
 * Two bridges never hold the same device.
 */
typedef struct ug_device_bridge ug_device_bridge;

enum ug_device_bridge_event {
	UG_BRIDGE_DEVICE_ADDED = 1,   /* a matching device now belongs to the bridge */
	UG_BRIDGE_DEVICE_REMOVED,     /* it was unplugged */
	UG_BRIDGE_SESSION_STARTED,
	UG_BRIDGE_SESSION_ENDED,      /* error/message as in ug_transport_closed_fn */
};
/* message names the device or the transport; valid during the call. */
typedef void (*ug_device_bridge_event_fn)(ug_device_bridge *b,
                                          enum ug_device_bridge_event ev, int error,
                                          const char *message, void *user_data);

/* Takes ownership of sel; filter (may be NULL) is borrowed and must outlive
 * the bridge. name labels messages ("storage"). */
ug_device_bridge *ug_device_bridge_new(ug_usb_host *h, const char *name, ug_usb_selector *sel,
                                       const ug_usb_filter *filter);
void ug_device_bridge_set_events(ug_device_bridge *b, ug_device_bridge_event_fn fn,
                                 void *user_data);
/*
 * A tap sees every byte of a session as it passes: UG_DIR_G2H what the guest
 * sent (before libusbredirhost parses it), UG_DIR_H2G what goes to the guest
 * (as handed to the transport). A session is one usbredir stream per
 * direction from SESSION_STARTED to SESSION_ENDED. data is valid only during
 * the call; it is made from the main context. (For captures: feed it to a
 * ug_usbredir_session.)
 */
typedef void (*ug_device_bridge_tap_fn)(ug_device_bridge *b, enum ug_dir dir,
                                        const uint8_t *data, size_t len, void *user_data);
void ug_device_bridge_set_tap(ug_device_bridge *b, ug_device_bridge_tap_fn fn, void *user_data);
/* Looks for a matching device now (a new bridge does this itself). */
void ug_device_bridge_rescan(ug_device_bridge *b);
/* Starts a session on t (ownership passes to the bridge in every case).
 * Returns 0, UG_E_STATE if a session is running (t is freed), or UG_E_USB
 * when libusbredirhost cannot start (t is freed). */
int ug_device_bridge_attach(ug_device_bridge *b, ug_transport *t);
/* 1 while a session runs. */
int ug_device_bridge_in_session(const ug_device_bridge *b);
/* 1 and *ret_info when the bridge holds a device. */
int ug_device_bridge_device(const ug_device_bridge *b, struct ug_usb_device_info *ret_info);
/* Ends the session, if any (device released); no SESSION_ENDED event. */
void ug_device_bridge_end_session(ug_device_bridge *b);
const char *ug_device_bridge_name(const ug_device_bridge *b);
const char *ug_device_bridge_errmsg(const ug_device_bridge *b);
void ug_device_bridge_free(ug_device_bridge *b);

/* ---- privileges: running as another user after start-up ----------------- */

/*
 * A tool started as root for what only root may open (a libusb context, a
 * live capture, a privileged port, output files in a protected place)
 * resolves the account to run as before it opens anything, opens
 * everything, then drops to that account for good: supplementary groups,
 * then the real, effective and saved group id, then the three user ids.
 * What is already open stays usable; everything opened later (a device
 * for a new session, a socket bound on SIGHUP, a file) needs the new
 * account's permissions.
 *
 * The account is "USER" or "USER:GROUP". USER is a name from the passwd
 * database, or a decimal uid (tried as a name first, as chown(1) does).
 * Without GROUP the account's primary group applies; GROUP (a name or a
 * decimal gid) replaces it. The supplementary groups are USER's memberships
 * in the group database plus the group (getgrouplist()). A uid without a
 * passwd entry needs GROUP, and then the group is its only one.
 */
typedef struct ug_privileges ug_privileges;

/* Longest account text accepted ("USER:GROUP"), in bytes. */
#define UG_PRIVILEGES_SPEC_MAX 256

/*
 * Looks the account up now (so that a typo fails before anything is
 * opened). Returns 0 and a new object, UG_E_INVAL for malformed text (empty
 * parts, a number out of range, longer than UG_PRIVILEGES_SPEC_MAX, a uid
 * without a passwd entry and no group), UG_E_NOTFOUND for a name the
 * databases do not know, UG_E_IO when the lookup itself fails (NSS), or
 * UG_E_NOMEM; the reason, naming the text, is in errbuf.
 */
int ug_privileges_resolve(const char *spec, ug_privileges **ret_priv, char *errbuf,
                          size_t errbuf_size);
uint32_t ug_privileges_uid(const ug_privileges *p);
uint32_t ug_privileges_gid(const ug_privileges *p);
/* The supplementary groups the drop sets; *ret_count entries, owned by p. */
const uint32_t *ug_privileges_groups(const ug_privileges *p, size_t *ret_count);
/* "nobody:nogroup (uid 65534, gid 65534, groups 65534)"; owned by p. */
const char *ug_privileges_describe(const ug_privileges *p);

/*
 * Switches the whole process (glibc applies each id change to every
 * thread) to the account, then checks the result: the three uids and gids
 * read back as set, the supplementary groups are exactly those, setuid(0)
 * and setgid(0) fail, and no capability is left in the permitted or
 * effective set. Returns 0 when dropped; 1 when nothing was done and
 * ug_privileges_errmsg() says why, for the caller to warn: the account is
 * uid 0, or the process runs as exactly that account already. Returns
 * UG_E_STATE when a step fails (not root: EPERM) or a check fails; the
 * message names the step and the ids. After UG_E_STATE the process may be
 * half-switched (or root again): the caller must not go on, only exit.
 */
int ug_privileges_drop(ug_privileges *p);
const char *ug_privileges_errmsg(const ug_privileges *p);
void ug_privileges_free(ug_privileges *p);


/* ---- end of areas -------------------------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* USBGATE_H */
