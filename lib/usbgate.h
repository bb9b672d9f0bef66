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
