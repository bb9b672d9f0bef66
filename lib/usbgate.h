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


/* ---- end of areas -------------------------------------------------------- */

#ifdef __cplusplus
}
#endif

#endif /* USBGATE_H */
