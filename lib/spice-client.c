/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-client.c: the headless SPICE client session (GLib main context, OpenSSL) and its usbredir transports. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "common.h"
#include "spice-client.h"
#include "spice-codec.h"
#include "transport.h"

#if OPENSSL_VERSION_NUMBER < 0x30000000L
/* OpenSSL 1.1.1 names for what 3.0 renamed. */
#define EVP_PKEY_get_base_id EVP_PKEY_base_id
#define EVP_PKEY_get_size EVP_PKEY_size
#define EVP_PKEY_eq EVP_PKEY_cmp
#define SSL_get1_peer_certificate SSL_get_peer_certificate
#endif

/* Payload per spicevmc message we send: what spice-server's own buffers hold. */
#define VMC_CHUNK (64u * 1024u)
/* Limit on one decompressed spicevmc message from the server. */
#define VMC_MAX_UNCOMPRESSED (16u * 1024u * 1024u)
/* Limit on queued control messages (link, pongs, acks) per connection. */
#define CTRL_MAX_QUEUE (1u * 1024u * 1024u)
/* Bytes read per read call, and read calls per dispatch before yielding. */
#define READ_CHUNK (64u * 1024u)
#define READS_PER_DISPATCH 16

/* ---- URI, password, ticket --------------------------------------------------- */

static int parse_port(const char *s, size_t n, int *ret, char *err, const char *what)
{
	long v = 0;

	if (n == 0 || n > 5)
		return ug_errmsg_set(err, UG_E_INVAL, "%s: expected a port number 1..65535", what);
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return ug_errmsg_set(err, UG_E_INVAL, "%s: \"%.*s\" is not a port number",
			                     what, (int)n, s);
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return ug_errmsg_set(err, UG_E_INVAL, "%s: port %ld outside 1..65535", what, v);
	*ret = (int)v;
	return 0;
}

int ug_spice_uri_parse(const char *uri, struct ug_spice_uri *ret, char *err)
{
	struct ug_spice_uri u;
	const char *p, *q, *end, *hend;
	int tls = 0, r;

	memset(&u, 0, sizeof(u));
	if (!uri)
		return ug_errmsg_set(err, UG_E_INVAL, "no URI");
	if (strncmp(uri, "spice://", 8) == 0) {
		p = uri + 8;
	} else if (strncmp(uri, "spice+tls://", 12) == 0) {
		p = uri + 12;
		tls = 1;
	} else if (strncmp(uri, "spice+unix://", 13) == 0) {
		p = uri + 13;
		if (*p != '/')
			return ug_errmsg_set(
			        err, UG_E_INVAL,
			        "spice+unix URI needs an absolute path: spice+unix:///PATH");
		if (strchr(p, '?'))
			return ug_errmsg_set(err, UG_E_INVAL, "spice+unix URI takes no query");
		if (strlen(p) >= sizeof(u.path))
			return ug_errmsg_set(err, UG_E_INVAL,
			                     "unix socket path of %zu bytes, limit %zu", strlen(p),
			                     sizeof(u.path) - 1);
		strcpy(u.path, p);
		u.is_unix = 1;
		*ret = u;
		return 0;
	} else {
		return ug_errmsg_set(err, UG_E_INVAL,
		                     "URI must start with spice://, spice+tls:// or spice+unix://");
	}
	q = strchr(p, '?');
	end = q ? q : p + strlen(p);
	/* A trailing slash is what some tools print; accept it. */
	if (end > p && end[-1] == '/')
		end--;
	if (*p == '[') {
		hend = memchr(p, ']', (size_t)(end - p));
		if (!hend)
			return ug_errmsg_set(err, UG_E_INVAL, "IPv6 address without closing ']'");
		if ((size_t)(hend - p - 1) >= sizeof(u.host))
			return ug_errmsg_set(err, UG_E_INVAL, "host name too long");
		memcpy(u.host, p + 1, (size_t)(hend - p - 1));
		p = hend + 1;
		if (p < end && *p != ':')
			return ug_errmsg_set(err, UG_E_INVAL, "unexpected text after ']'");
	} else {
		hend = memchr(p, ':', (size_t)(end - p));
		if (!hend)
			hend = end;
		if ((size_t)(hend - p) >= sizeof(u.host))
			return ug_errmsg_set(err, UG_E_INVAL, "host name too long");
		memcpy(u.host, p, (size_t)(hend - p));
		p = hend;
	}
	if (u.host[0] == '\0')
		return ug_errmsg_set(err, UG_E_INVAL, "URI has no host");
	if (memchr(u.host, '/', strlen(u.host)) || memchr(u.host, '@', strlen(u.host)))
		return ug_errmsg_set(err, UG_E_INVAL, "host \"%.64s\" is not a host name", u.host);
	if (p < end && *p == ':') {
		r = parse_port(p + 1, (size_t)(end - p - 1), tls ? &u.tls_port : &u.port, err,
		               "URI port");
		if (r < 0)
			return r;
	}
	while (q && *q) {
		const char *kv = q + 1, *amp = strchr(kv, '&'), *eq;
		size_t len = amp ? (size_t)(amp - kv) : strlen(kv);

		q = amp;
		if (len == 0)
			continue;
		eq = memchr(kv, '=', len);
		if (!eq)
			return ug_errmsg_set(err, UG_E_INVAL, "query item \"%.*s\" has no value",
			                     (int)(len > 32 ? 32 : len), kv);
		if ((size_t)(eq - kv) == 4 && strncmp(kv, "port", 4) == 0) {
			r = parse_port(eq + 1, len - 5, &u.port, err, "port=");
		} else if ((size_t)(eq - kv) == 8 && strncmp(kv, "tls-port", 8) == 0) {
			r = parse_port(eq + 1, len - 9, &u.tls_port, err, "tls-port=");
		} else if ((size_t)(eq - kv) == 8 && strncmp(kv, "password", 8) == 0) {
			/* The value is not repeated: it would end up in logs. */
			return ug_errmsg_set(
			        err, UG_E_INVAL,
			        "a password in the URI is refused (it would be visible "
			        "in the process list): use a password file or variable");
		} else {
			return ug_errmsg_set(err, UG_E_INVAL,
			                     "unknown query key \"%.*s\" (known: port, tls-port)",
			                     (int)(eq - kv > 32 ? 32 : eq - kv), kv);
		}
		if (r < 0)
			return r;
	}
	if (!u.port && !u.tls_port)
		return ug_errmsg_set(err, UG_E_INVAL, "URI has no port (spice://HOST:PORT)");
	*ret = u;
	return 0;
}

static int password_set(const char *s, size_t n, char pw[UG_SPICE_PASSWORD_SIZE], char *err,
                        const char *from)
{
	if (n > SPICE_MAX_PASSWORD_LENGTH)
		return ug_errmsg_set(err, UG_E_INVAL, "password from %s has %zu bytes, limit %d",
		                     from, n, SPICE_MAX_PASSWORD_LENGTH);
	if (memchr(s, '\0', n))
		return ug_errmsg_set(err, UG_E_INVAL, "password from %s contains a NUL byte", from);
	memcpy(pw, s, n);
	pw[n] = '\0';
	return 0;
}

int ug_spice_password_from_file(const char *path, char pw[UG_SPICE_PASSWORD_SIZE], char *err)
{
	char buf[SPICE_MAX_PASSWORD_LENGTH + 4];
	size_t n;
	char *nl;
	FILE *f;
	int r;

	f = fopen(path, "rb");
	if (!f)
		return ug_errmsg_set(err, UG_E_IO, "password file %.128s: %s", path,
		                     strerror(errno));
	n = fread(buf, 1, sizeof(buf), f);
	if (ferror(f)) {
		fclose(f);
		return ug_errmsg_set(err, UG_E_IO, "password file %.128s: read error", path);
	}
	fclose(f);
	/* The first line only; a file written by echo ends with a newline. */
	nl = memchr(buf, '\n', n);
	if (nl) {
		n = (size_t)(nl - buf);
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	} else if (n == sizeof(buf)) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return ug_errmsg_set(err, UG_E_INVAL, "password file %.128s: longer than %d bytes",
		                     path, SPICE_MAX_PASSWORD_LENGTH);
	}
	r = password_set(buf, n, pw, err, "the file");
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

int ug_spice_password_from_env(const char *name, char pw[UG_SPICE_PASSWORD_SIZE], char *err)
{
	const char *v = getenv(name);

	if (!v)
		return ug_errmsg_set(err, UG_E_NOTFOUND, "environment variable %.64s is not set",
		                     name);
	return password_set(v, strlen(v), pw, err, "the environment");
}

int ug_spice_ticket_encrypt(const uint8_t *pubkey_der, size_t len, const char *password,
                            uint8_t out[UG_SPICE_TICKET_SIZE], char *err)
{
	const unsigned char *p = pubkey_der;
	EVP_PKEY *key;
	EVP_PKEY_CTX *ctx = NULL;
	size_t outlen = UG_SPICE_TICKET_SIZE, pwlen = strlen(password);
	int r = UG_E_AUTH;

	if (pwlen > SPICE_MAX_PASSWORD_LENGTH)
		return ug_errmsg_set(err, UG_E_INVAL, "password has %zu bytes, limit %d", pwlen,
		                     SPICE_MAX_PASSWORD_LENGTH);
	key = d2i_PUBKEY(NULL, &p, (long)len);
	if (!key)
		return ug_errmsg_set(err, UG_E_PROTO, "server's public key does not parse: %s",
		                     ug_openssl_err());
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA ||
	    EVP_PKEY_get_size(key) != UG_SPICE_TICKET_SIZE) {
		r = ug_errmsg_set(err, UG_E_PROTO, "server's key is not RSA-1024 (%d bytes)",
		                  EVP_PKEY_get_size(key));
		goto out;
	}
	ctx = EVP_PKEY_CTX_new(key, NULL);
	if (!ctx || EVP_PKEY_encrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha1()) <= 0 ||
	    EVP_PKEY_encrypt(ctx, out, &outlen, (const unsigned char *)password, pwlen + 1) <= 0) {
		r = ug_errmsg_set(err, UG_E_AUTH, "ticket encryption failed: %s", ug_openssl_err());
		goto out;
	}
	if (outlen != UG_SPICE_TICKET_SIZE) {
		r = ug_errmsg_set(err, UG_E_AUTH, "ticket of %zu bytes, expected %u", outlen,
		                  UG_SPICE_TICKET_SIZE);
		goto out;
	}
	r = 0;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(key);
	return r;
}

/* ---- connections ------------------------------------------------------------- */

enum conn_state {
	CONN_IDLE,
	CONN_CONNECTING,        /* TCP/unix connect in progress */
	CONN_HANDSHAKE,         /* TLS handshake */
	CONN_LINK_REPLY,        /* link message sent, waiting for the reply */
	CONN_LINK_RESULT,       /* ticket sent, waiting for the u32 result */
	CONN_READY,
};

struct conn;

/* What a channel does with its connection's events. */
struct conn_ops {
	void (*ready)(struct conn *k);
	/* A data message; returns 0 or a UG_E_* that ends the connection. */
	int (*message)(struct conn *k, const struct ug_spice_unit *u);
	/* The connection ended (error 0: orderly close); the conn is idle. */
	void (*closed)(struct conn *k, int error, const char *message);
};

struct conn_source {
	GSource base;
	struct conn *k;
	gpointer tag;
};

struct conn {
	ug_spice_client *c;
	const struct conn_ops *ops;
	uint8_t type, id;
	enum conn_state state;
	unsigned gen;           /* bumped on close: stale loops stop */
	int fd;
	SSL *ssl;
	int tls;
	int paused;
	int ssl_wants_write;    /* the last handshake step or SSL_read needs to write */
	int connect_err;        /* errno of a connect() that failed at once */
	GSource *timer;         /* bounds the link phase */
	int saw_disconnecting;  /* the server announced its close */
	GSource *src;
	struct addrinfo *ai_list, *ai_next;
	ug_spice_dec *dec;
	struct ug_buf out;      /* wire bytes to write */
	int mini;
	uint64_t serial;
	uint32_t ack_window, ack_left;
	struct ug_spice_caps server_caps;
	int busy;               /* inside conn_io */
	int doomed;             /* owner asked to free while busy */
	void (*free_fn)(struct conn *k);
	char err[UG_ERRMSG_SIZE]; /* detail of a failed message handler */
	char peer[300];         /* "127.0.0.1:5900" or the socket path */
};

struct spice_usbredir {
	ug_transport t;         /* first: the transport handle is this object */
	struct conn k;
	struct ug_buf plain;    /* usbredir bytes queued before the link completes */
	struct ug_buf scratch;  /* decompressed payloads */
	int lz4_local;
	int was_ready;
	struct spice_usbredir *next;
};

struct ug_spice_client {
	struct ug_spice_uri uri;
	int have_uri;
	char password[UG_SPICE_PASSWORD_SIZE];
	char *ca_file;
	char *host_subject;
	EVP_PKEY *pinned;
	int verify;
	ug_log_fn log_fn;
	void *log_data;
	struct ug_spice_client_callbacks cb;
	void *cb_data;
	ug_spice_wire_fn wire_fn;
	void *wire_data;
	SSL_CTX *ssl_ctx;
	struct conn main;
	int connected;          /* MAIN_INIT seen */
	int active;             /* between connect() and the end of the session */
	uint32_t session_id;
	uint8_t known[256 / 8]; /* usbredir ids announced in this session */
	uint32_t secure_types;  /* channel types the server wants over TLS */
	struct spice_usbredir *channels;
	unsigned link_timeout_ms;
	int busy;
	int doomed;
	char err[UG_ERRMSG_SIZE];
};

static void conn_io(struct conn *k, GIOCondition rev);

/* Logs through the object's callback (lib/error.c formats). */
#define logf_(o, ...) ug_log_emit((o)->log_fn, (o)->log_data, __VA_ARGS__)

static const char *conn_name(const struct conn *k, char *buf, size_t size)
{
	snprintf(buf, size, "%s channel %u", ug_spice_channel_type_name(k->type), k->id);
	return buf;
}

static gboolean source_dispatch(GSource *src, GSourceFunc cb, gpointer ud)
{
	struct conn_source *cs = (struct conn_source *)src;
	GIOCondition rev = g_source_query_unix_fd(src, cs->tag);

	g_source_set_ready_time(src, -1);
	conn_io(cs->k, rev);
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs source_funcs = {
	.dispatch = source_dispatch,
};

static void conn_init(struct conn *k, ug_spice_client *c, const struct conn_ops *ops,
                      uint8_t type, uint8_t id)
{
	memset(k, 0, sizeof(*k));
	k->c = c;
	k->ops = ops;
	k->type = type;
	k->id = id;
	k->fd = -1;
	ug_buf_init(&k->out, CTRL_MAX_QUEUE);
}

static void conn_update_watch(struct conn *k)
{
	struct conn_source *cs;
	GIOCondition cond = 0;

	if (!k->src)
		return;
	cs = (struct conn_source *)k->src;
	if (k->state == CONN_CONNECTING) {
		cond = G_IO_OUT;
	} else {
		if (!k->paused || k->state != CONN_READY)
			cond |= G_IO_IN;
		if (k->out.len > 0 || k->ssl_wants_write)
			cond |= G_IO_OUT;
	}
	g_source_modify_unix_fd(k->src, cs->tag, cond);
}

/* Stops all I/O and forgets the connection's state; the conn can start again. */
static void conn_stop_timer(struct conn *k)
{
	if (k->timer) {
		g_source_destroy(k->timer);
		g_source_unref(k->timer);
		k->timer = NULL;
	}
}

static void conn_reset(struct conn *k)
{
	k->gen++;
	conn_stop_timer(k);
	if (k->src) {
		g_source_destroy(k->src);
		g_source_unref(k->src);
		k->src = NULL;
	}
	if (k->ssl) {
		SSL_free(k->ssl);
		k->ssl = NULL;
	}
	if (k->fd >= 0) {
		close(k->fd);
		k->fd = -1;
	}
	if (k->ai_list) {
		freeaddrinfo(k->ai_list);
		k->ai_list = k->ai_next = NULL;
	}
	ug_spice_dec_free(k->dec);
	k->dec = NULL;
	ug_buf_reset(&k->out);
	k->state = CONN_IDLE;
	k->mini = 0;
	k->serial = 0;
	k->ack_window = k->ack_left = 0;
	k->ssl_wants_write = 0;
	k->saw_disconnecting = 0;
	memset(&k->server_caps, 0, sizeof(k->server_caps));
}

static void conn_release(struct conn *k)
{
	conn_reset(k);
	ug_buf_release(&k->out);
}

/* Ends the connection and tells its channel. */
static void conn_fail(struct conn *k, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_fail(struct conn *k, int error, const char *fmt, ...)
{
	char msg[UG_ERRMSG_SIZE];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn_reset(k);
	k->ops->closed(k, error, msg);
}

static int conn_queue(struct conn *k, const void *p, size_t n)
{
	int r = ug_buf_append(&k->out, p, n);

	if (r == 0)
		conn_update_watch(k);
	return r;
}

static int conn_queue_msg(struct conn *k, uint16_t type, const void *body, size_t len)
{
	int r = ug_spice_msg_append(&k->out, k->mini, &k->serial, type, body, len);

	if (r == 0)
		conn_update_watch(k);
	return r;
}

static int conn_start_socket(struct conn *k);

static gboolean conn_timeout(gpointer data)
{
	struct conn *k = data;
	static const char *const phase[] = {
		[CONN_IDLE] = "idle",
		[CONN_CONNECTING] = "connecting",
		[CONN_HANDSHAKE] = "in the TLS handshake",
		[CONN_LINK_REPLY] = "waiting for the link reply",
		[CONN_LINK_RESULT] = "waiting for the link result",
		[CONN_READY] = "waiting for the session (MAIN_INIT)",
	};
	char name[64];
	ug_spice_client *c = k->c;
	unsigned ms = c ? c->link_timeout_ms : 0;

	/* conn_fail() destroys this source; GLib keeps it alive until we return. */
	g_source_unref(k->timer);
	k->timer = NULL;
	k->busy++;
	if (c)
		c->busy++;
	conn_fail(k, UG_E_TIMEOUT, "%s: %s: no progress within %u ms (%s)",
	          conn_name(k, name, sizeof(name)), k->peer, ms, phase[k->state]);
	k->busy--;
	if (k->doomed && k->busy == 0)
		k->free_fn(k);
	if (c) {
		c->busy--;
		if (c->doomed && c->busy == 0) {
			c->doomed = 0;
			ug_spice_client_free(c);
		}
	}
	return G_SOURCE_REMOVE;
}

/* Connect, TLS and link must finish in time: a silent peer must not hang the caller. */
static void conn_start_timer(struct conn *k)
{
	ug_spice_client *c = k->c;

	conn_stop_timer(k);
	if (!c || c->link_timeout_ms == 0)
		return;
	k->timer = g_timeout_source_new(c->link_timeout_ms);
	g_source_set_callback(k->timer, conn_timeout, k, NULL);
	g_source_attach(k->timer, g_main_context_get_thread_default());
}

static int conn_start(struct conn *k, int tls)
{
	ug_spice_client *c = k->c;
	char port[16];
	struct addrinfo hints;
	int r;

	conn_reset(k);
	k->tls = tls;
	k->dec = ug_spice_dec_new(UG_SPICE_UNIT_LINK, 0);
	if (!k->dec)
		return UG_E_NOMEM;
	conn_start_timer(k);
	if (c->uri.is_unix) {
		snprintf(k->peer, sizeof(k->peer), "%s", c->uri.path);
		return conn_start_socket(k);
	}
	snprintf(port, sizeof(port), "%d", tls ? c->uri.tls_port : c->uri.port);
	snprintf(k->peer, sizeof(k->peer), strchr(c->uri.host, ':') ? "[%s]:%s" : "%s:%s",
	         c->uri.host, port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	/* Name resolution blocks the main context; SPICE servers are usually named by address. */
	r = getaddrinfo(c->uri.host, port, &hints, &k->ai_list);
	if (r != 0)
		return ug_errmsg_set(c->err, UG_E_NOTFOUND, "%s: %s", k->peer, gai_strerror(r));
	k->ai_next = k->ai_list;
	return conn_start_socket(k);
}

/* Starts a non-blocking connect to the next address (or the unix path). */
static int conn_start_socket(struct conn *k)
{
	ug_spice_client *c = k->c;
	struct sockaddr_un sun;
	const struct sockaddr *sa;
	socklen_t salen;
	int fd, one = 1, domain;

	if (c->uri.is_unix) {
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, c->uri.path, strlen(c->uri.path));
		sa = (const struct sockaddr *)&sun;
		salen = sizeof(sun);
		domain = AF_UNIX;
	} else {
		if (!k->ai_next)
			return ug_errmsg_set(c->err, UG_E_IO, "%s: no address left to try",
			                     k->peer);
		sa = k->ai_next->ai_addr;
		salen = k->ai_next->ai_addrlen;
		domain = k->ai_next->ai_family;
		k->ai_next = k->ai_next->ai_next;
	}
	fd = socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ug_errmsg_set(c->err, UG_E_IO, "%s: socket: %s", k->peer, strerror(errno));
	if (domain != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (k->fd >= 0)
		close(k->fd);
	k->fd = fd;
	if (!k->src) {
		k->src = g_source_new(&source_funcs, sizeof(struct conn_source));
		((struct conn_source *)k->src)->k = k;
		g_source_set_name(k->src, "ug-spice-channel");
		((struct conn_source *)k->src)->tag = g_source_add_unix_fd(k->src, fd, G_IO_OUT);
		g_source_attach(k->src, g_main_context_get_thread_default());
	} else {
		struct conn_source *cs = (struct conn_source *)k->src;

		g_source_remove_unix_fd(k->src, cs->tag);
		cs->tag = g_source_add_unix_fd(k->src, fd, G_IO_OUT);
	}
	k->state = CONN_CONNECTING;
	k->connect_err = 0;
	if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
		k->connect_err = errno;
		/* Reported from the main context like every other failure. */
		g_source_set_ready_time(k->src, 0);
		return 0;
	}
	conn_update_watch(k);
	return 0;
}

static int ssl_ctx_setup(ug_spice_client *c)
{
	if (c->ssl_ctx)
		return 0;
	c->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ssl_ctx)
		return ug_errmsg_set(c->err, UG_E_TLS, "TLS setup failed: %s", ug_openssl_err());
	SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(c->ssl_ctx,
	                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (c->verify && !c->pinned) {
		if (c->ca_file) {
			if (SSL_CTX_load_verify_locations(c->ssl_ctx, c->ca_file, NULL) != 1)
				return ug_errmsg_set(c->err, UG_E_TLS, "CA file %.128s: %s",
				                     c->ca_file, ug_openssl_err());
		} else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
			return ug_errmsg_set(c->err, UG_E_TLS, "system CA store: %s", ug_openssl_err());
		}
		SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_NONE, NULL);
	}
	return 0;
}

static int conn_tls_begin(struct conn *k)
{
	ug_spice_client *c = k->c;
	struct in6_addr a6;
	struct in_addr a4;
	int is_ip;

	if (ssl_ctx_setup(c) < 0)
		return UG_E_TLS;
	k->ssl = SSL_new(c->ssl_ctx);
	if (!k->ssl || SSL_set_fd(k->ssl, k->fd) != 1)
		return ug_errmsg_set(c->err, UG_E_TLS, "TLS setup failed: %s", ug_openssl_err());
	is_ip = inet_pton(AF_INET, c->uri.host, &a4) == 1 ||
	        inet_pton(AF_INET6, c->uri.host, &a6) == 1;
	if (!c->uri.is_unix && !is_ip)
		SSL_set_tlsext_host_name(k->ssl, c->uri.host);
	if (c->verify && !c->pinned && !c->host_subject && !c->uri.is_unix) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(k->ssl);
		int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->uri.host)
		               : X509_VERIFY_PARAM_set1_host(vp, c->uri.host, 0);

		if (ok != 1)
			return ug_errmsg_set(c->err, UG_E_TLS, "TLS host check setup failed: %s",
			                     ug_openssl_err());
	}
	SSL_set_connect_state(k->ssl);
	k->state = CONN_HANDSHAKE;
	return 0;
}

/* Compares the certificate subject with "K=V,K=V" in order. */
static int subject_matches(X509 *cert, const char *want, char *why, size_t whysize)
{
	X509_NAME *name = X509_get_subject_name(cert), *exp = X509_NAME_new();
	char *dup = strdup(want), *save = NULL, *tok;
	int ok = 0;

	if (!exp || !dup)
		goto out;
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		while (*tok == ' ')
			tok++;
		if (!eq || eq == tok) {
			snprintf(why, whysize, "host subject item \"%.40s\" is not KEY=VALUE", tok);
			goto out;
		}
		*eq = '\0';
		if (!X509_NAME_add_entry_by_txt(exp, tok, MBSTRING_UTF8, (unsigned char *)eq + 1,
		                                -1, -1, 0)) {
			snprintf(why, whysize, "host subject key \"%.40s\" is unknown", tok);
			goto out;
		}
	}
	ok = X509_NAME_cmp(name, exp) == 0;
	if (!ok) {
		char got[128];

		X509_NAME_oneline(name, got, sizeof(got));
		snprintf(why, whysize,
		         "certificate subject %s does not match the expected host subject", got);
	}
out:
	free(dup);
	X509_NAME_free(exp);
	return ok;
}

/* Checks done after the handshake: pinned key or host subject. */
static int conn_tls_check_peer(struct conn *k)
{
	ug_spice_client *c = k->c;
	X509 *cert = SSL_get1_peer_certificate(k->ssl);
	char why[200];
	int r = 0;

	if (!cert)
		return ug_errmsg_set(c->err, UG_E_TLS, "%s: server sent no certificate", k->peer);
	if (c->pinned) {
		if (EVP_PKEY_eq(X509_get0_pubkey(cert), c->pinned) != 1)
			r = ug_errmsg_set(
			        c->err, UG_E_TLS,
			        "%s: the server's public key does not match the pinned key",
			        k->peer);
	} else if (c->verify && c->host_subject) {
		if (!subject_matches(cert, c->host_subject, why, sizeof(why)))
			r = ug_errmsg_set(c->err, UG_E_TLS, "%s: %s", k->peer, why);
	}
	X509_free(cert);
	return r;
}

static void conn_send_link(struct conn *k)
{
	ug_spice_client *c = k->c;
	struct ug_spice_link_mess m;
	uint8_t buf[128];
	size_t len;

	memset(&m, 0, sizeof(m));
	m.connection_id = k->type == SPICE_CHANNEL_MAIN ? 0 : c->session_id;
	m.channel_type = k->type;
	m.channel_id = k->id;
	ug_spice_cap_set(m.caps.common, &m.caps.num_common,
	                 SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION);
	ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_AUTH_SPICE);
	ug_spice_cap_set(m.caps.common, &m.caps.num_common, SPICE_COMMON_CAP_MINI_HEADER);
	if (k->type == SPICE_CHANNEL_USBREDIR)
		ug_spice_cap_set(m.caps.channel, &m.caps.num_channel,
		                 SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4);
	ug_spice_link_mess_encode(&m, buf, sizeof(buf), &len);
	conn_queue(k, buf, len);
	k->state = CONN_LINK_REPLY;
	conn_update_watch(k);
}

static void conn_do_handshake(struct conn *k);

static void conn_connected(struct conn *k)
{
	ug_spice_client *c = k->c;
	char name[64];
	int r;

	logf_(c, UG_LOG_DEBUG, "%s: connected to %s%s", conn_name(k, name, sizeof(name)), k->peer,
	      k->tls ? " (TLS)" : "");
	if (k->tls) {
		r = conn_tls_begin(k);
		if (r < 0) {
			conn_fail(k, r, "%s", c->err);
			return;
		}
		/* The ClientHello goes out now; the rest follows the socket. */
		conn_do_handshake(k);
		return;
	}
	conn_send_link(k);
}

static int tls_port_known(const ug_spice_client *c)
{
	return !c->uri.is_unix && c->uri.tls_port != 0;
}

/* The link reply: errors in words, TLS retry, auth selection, ticket. */
static void conn_on_link_reply(struct conn *k, const struct ug_spice_unit *u)
{
	ug_spice_client *c = k->c;
	struct ug_spice_link_reply rep;
	uint8_t ticket[UG_SPICE_TICKET_SIZE], mech[4];
	char name[64];
	int r;

	conn_name(k, name, sizeof(name));
	if (u->link.major != SPICE_VERSION_MAJOR) {
		conn_fail(k, UG_E_UNSUPPORTED, "%s: server speaks SPICE %u.%u, this client %u.%u",
		          name, u->link.major, u->link.minor, SPICE_VERSION_MAJOR,
		          SPICE_VERSION_MINOR);
		return;
	}
	r = ug_spice_link_reply_decode(u->body, u->size, &rep, c->err);
	if (r < 0) {
		conn_fail(k, r, "%s: %s", name, c->err);
		return;
	}
	if (rep.error == SPICE_LINK_ERR_NEED_SECURED && !k->tls && tls_port_known(c)) {
		logf_(c, UG_LOG_INFO, "%s: the server requires TLS, reconnecting to port %d", name,
		      c->uri.tls_port);
		c->secure_types |= 1u << k->type;
		r = conn_start(k, 1);
		if (r < 0)
			conn_fail(k, r, "%s", c->err);
		return;
	}
	if (rep.error != SPICE_LINK_ERR_OK) {
		conn_fail(k, ug_spice_link_error_code(rep.error), "%s: link refused: %s%s", name,
		          ug_spice_link_error_str(rep.error),
		          rep.error == SPICE_LINK_ERR_NEED_SECURED
		          ? "; no TLS port is known (use spice+tls:// or ?tls-port=)" : "");
		return;
	}
	k->server_caps = rep.caps;
	if (ug_spice_cap_test(rep.caps.common, rep.caps.num_common,
	                      SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION)) {
		if (!ug_spice_cap_test(rep.caps.common, rep.caps.num_common,
		                       SPICE_COMMON_CAP_AUTH_SPICE) &&
		    ug_spice_cap_test(rep.caps.common, rep.caps.num_common,
		                      SPICE_COMMON_CAP_AUTH_SASL)) {
			conn_fail(k, UG_E_UNSUPPORTED,
			          "%s: the server accepts SASL authentication only, which this "
			          "client does not support (give the VM a SPICE password)",
			          name);
			return;
		}
		ug_put_le32(mech, SPICE_COMMON_CAP_AUTH_SPICE);
		conn_queue(k, mech, sizeof(mech));
	}
	r = ug_spice_ticket_encrypt(rep.pub_key, sizeof(rep.pub_key), c->password, ticket, c->err);
	if (r < 0) {
		conn_fail(k, r, "%s: %s", name, c->err);
		return;
	}
	conn_queue(k, ticket, sizeof(ticket));
	k->mini = ug_spice_cap_test(rep.caps.common, rep.caps.num_common,
	                            SPICE_COMMON_CAP_MINI_HEADER);
	k->state = CONN_LINK_RESULT;
	ug_spice_dec_expect(k->dec, UG_SPICE_UNIT_FIXED, 4);
}

static void conn_on_link_result(struct conn *k, const struct ug_spice_unit *u)
{
	ug_spice_client *c = k->c;
	uint32_t result = ug_get_le32(u->body);
	char name[64];

	conn_name(k, name, sizeof(name));
	if (result == SPICE_LINK_ERR_NEED_SECURED && !k->tls && tls_port_known(c)) {
		int r;

		logf_(c, UG_LOG_INFO, "%s: the server requires TLS, reconnecting to port %d", name,
		      c->uri.tls_port);
		c->secure_types |= 1u << k->type;
		r = conn_start(k, 1);
		if (r < 0)
			conn_fail(k, r, "%s", c->err);
		return;
	}
	if (result != SPICE_LINK_ERR_OK) {
		conn_fail(k, ug_spice_link_error_code(result), "%s: link refused: %s%s", name,
		          ug_spice_link_error_str(result),
		          result == SPICE_LINK_ERR_NEED_SECURED
		          ? "; no TLS port is known (use spice+tls:// or ?tls-port=)" : "");
		return;
	}
	ug_spice_dec_expect(k->dec, k->mini ? UG_SPICE_UNIT_MINI : UG_SPICE_UNIT_FULL, 0);
	k->state = CONN_READY;
	/* The main channel's timer runs on until MAIN_INIT: the session is not up yet. */
	if (k->type != SPICE_CHANNEL_MAIN)
		conn_stop_timer(k);
	logf_(c, UG_LOG_DEBUG, "%s: linked (%s header)", name, k->mini ? "mini" : "full");
	k->ops->ready(k);
}

/* Messages every channel handles the same way. Returns 1 if handled. */
static int conn_common_message(struct conn *k, const struct ug_spice_unit *u, int *ret)
{
	ug_spice_client *c = k->c;
	char name[64], *err = k->err;
	uint8_t b[12];

	conn_name(k, name, sizeof(name));
	*ret = 0;
	switch (u->type) {
	case SPICE_MSG_PING: {
		struct ug_spice_ping p;

		*ret = ug_spice_ping_decode(u->body, u->size, &p, err);
		if (*ret == 0)
			*ret = conn_queue_msg(k, SPICE_MSGC_PONG, b,
			                      ug_spice_pong_encode(p.id, p.timestamp, b));
		return 1;
	}
	case SPICE_MSG_SET_ACK: {
		struct ug_spice_set_ack a;

		*ret = ug_spice_set_ack_decode(u->body, u->size, &a, err);
		if (*ret == 0) {
			ug_put_le32(b, a.generation);
			k->ack_window = k->ack_left = a.window;
			*ret = conn_queue_msg(k, SPICE_MSGC_ACK_SYNC, b, 4);
		}
		return 1;
	}
	case SPICE_MSG_NOTIFY: {
		struct ug_spice_notify n;
		static const int levels[] = { UG_LOG_INFO, UG_LOG_WARNING, UG_LOG_ERROR };

		if (ug_spice_notify_decode(u->body, u->size, &n, err) == 0)
			logf_(c, n.severity < 3 ? levels[n.severity] : UG_LOG_WARNING,
			      "%s: server notice: %.*s", name,
			      (int)(n.message_len > 300 ? 300 : n.message_len),
			      (const char *)n.message);
		return 1;
	}
	case SPICE_MSG_DISCONNECTING: {
		struct ug_spice_disconnecting d;

		k->saw_disconnecting = 1;
		if (ug_spice_disconnecting_decode(u->body, u->size, &d, err) == 0)
			logf_(c, UG_LOG_INFO, "%s: server is disconnecting: %s", name,
			      ug_spice_link_error_str(d.reason));
		return 1;
	}
	case SPICE_MSG_MIGRATE: {
		uint32_t flags = 0;

		ug_spice_migrate_decode(u->body, u->size, &flags, err);
		logf_(c, UG_LOG_WARNING, "%s: server started a migration (flags 0x%x); this client "
		      "does not follow migrations", name, flags);
		return 1;
	}
	case SPICE_MSG_MIGRATE_DATA:
	case SPICE_MSG_WAIT_FOR_CHANNELS:
	case SPICE_MSG_LIST:
		return 1;
	default:
		return 0;
	}
}

static int conn_handle_message(struct conn *k, const struct ug_spice_unit *u)
{
	int r;

	if (k->ack_window) {
		/* The server sends at most window messages before it waits for our ACK. */
		if (--k->ack_left == 0) {
			k->ack_left = k->ack_window;
			r = conn_queue_msg(k, SPICE_MSGC_ACK, NULL, 0);
			if (r < 0)
				return r;
		}
	}
	if (conn_common_message(k, u, &r))
		return r;
	return k->ops->message(k, u);
}

static void wire_tap(struct conn *k, int from_server, const uint8_t *p, size_t n)
{
	if (k->c && k->c->wire_fn && n > 0)
		k->c->wire_fn(k->type, k->id, from_server, p, n, k->c->wire_data);
}

/* Feeds bytes read from the server; returns 0 or stops after a failure. */
static void conn_feed(struct conn *k, const uint8_t *p, size_t n)
{
	struct ug_spice_unit u;
	unsigned gen = k->gen;
	char name[64];
	int r;

	wire_tap(k, 1, p, n);
	ug_spice_dec_feed(k->dec, p, n);
	while (k->gen == gen && (r = ug_spice_dec_next(k->dec, &u)) != 0) {
		if (r < 0) {
			conn_fail(k, r, "%s: %s", conn_name(k, name, sizeof(name)),
			          ug_spice_dec_errmsg(k->dec));
			return;
		}
		switch (k->state) {
		case CONN_LINK_REPLY:
			conn_on_link_reply(k, &u);
			break;
		case CONN_LINK_RESULT:
			conn_on_link_result(k, &u);
			break;
		case CONN_READY:
			r = conn_handle_message(k, &u);
			if (r < 0 && k->gen == gen) {
				conn_fail(k, r, "%s: message type %u: %s",
				          conn_name(k, name, sizeof(name)), u.type, k->err);
				return;
			}
			break;
		default:
			break;
		}
	}
}

static void conn_closed_by_peer(struct conn *k, int error, const char *why)
{
	char name[64];

	conn_name(k, name, sizeof(name));
	switch (k->state) {
	case CONN_LINK_REPLY:
		conn_fail(k, UG_E_NOTFOUND,
		          "%s: %s closed the connection without a link reply: no such channel, "
		          "the channel is busy, or not a SPICE server", name, k->peer);
		break;
	case CONN_LINK_RESULT:
		conn_fail(k, UG_E_AUTH, "%s: %s closed the connection after the ticket", name,
		          k->peer);
		break;
	case CONN_HANDSHAKE:
		conn_fail(k, UG_E_TLS, "%s: %s closed the connection during the TLS handshake%s%s",
		          name, k->peer, why ? ": " : "", why ? why : "");
		break;
	default:
		/*
		 * A main channel that closes unannounced means the server went away
		 * (VM stopped, killed, or another client took over): a failure for the
		 * caller, unlike a usbredir channel closing because its device left.
		 */
		if (!error && k->type == SPICE_CHANNEL_MAIN && !k->saw_disconnecting)
			error = UG_E_CLOSED;
		conn_fail(k, error, "%s: %s %s", name, k->peer,
		          why ? why : "closed the connection");
		break;
	}
}

static void conn_do_connect_done(struct conn *k)
{
	ug_spice_client *c = k->c;
	int soerr = 0, r;
	socklen_t sl = sizeof(soerr);
	char name[64];

	if (k->connect_err)
		soerr = k->connect_err;
	else if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr == 0) {
		conn_connected(k);
		return;
	}
	if (!c->uri.is_unix && k->ai_next) {
		r = conn_start_socket(k);
		if (r == 0)
			return;
	}
	conn_fail(k, UG_E_IO, "%s: connect to %s: %s", conn_name(k, name, sizeof(name)), k->peer,
	          strerror(soerr));
}

static void conn_do_handshake(struct conn *k)
{
	ug_spice_client *c = k->c;
	char name[64];
	int r = SSL_do_handshake(k->ssl), e;

	if (r == 1) {
		k->ssl_wants_write = 0;
		r = conn_tls_check_peer(k);
		if (r < 0) {
			conn_fail(k, r, "%s", c->err);
			return;
		}
		conn_send_link(k);
		return;
	}
	e = SSL_get_error(k->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		k->ssl_wants_write = e == SSL_ERROR_WANT_WRITE;
		conn_update_watch(k);
		return;
	}
	conn_name(k, name, sizeof(name));
	if (SSL_get_verify_result(k->ssl) != X509_V_OK) {
		long v = SSL_get_verify_result(k->ssl);

		ERR_clear_error();
		conn_fail(k, UG_E_TLS, "%s: %s: certificate verification failed: %s", name, k->peer,
		          X509_verify_cert_error_string(v));
		return;
	}
	conn_fail(k, UG_E_TLS, "%s: %s: TLS handshake failed: %s", name, k->peer,
	          e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 ? "connection closed"
	                                                          : ug_openssl_err());
}

/* Writes what is queued; returns 0, or a negative code after conn_fail(). */
static int conn_write(struct conn *k)
{
	char name[64];

	while (k->out.len > 0) {
		const uint8_t *p = ug_buf_peek(&k->out);
		size_t n = k->out.len;
		ssize_t w;

		if (k->ssl) {
			int r = SSL_write(k->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n), e;

			if (r <= 0) {
				e = SSL_get_error(k->ssl, r);
				/* The queue being non-empty keeps G_IO_OUT on; reads go on anyway.
				 */
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				conn_fail(k, UG_E_TLS, "%s: %s: TLS write failed: %s",
				          conn_name(k, name, sizeof(name)), k->peer, ug_openssl_err());
				return UG_E_TLS;
			}
			w = r;
		} else {
			w = send(k->fd, p, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					break;
				conn_fail(k, UG_E_IO, "%s: %s: write: %s",
				          conn_name(k, name, sizeof(name)), k->peer,
				          strerror(errno));
				return UG_E_IO;
			}
		}
		wire_tap(k, 0, p, (size_t)w);
		ug_buf_consume(&k->out, (size_t)w);
	}
	return 0;
}

/* Reads and decodes; returns 0, or a negative code once the conn has ended. */
static int conn_read(struct conn *k)
{
	uint8_t *buf = g_malloc(READ_CHUNK);
	unsigned gen = k->gen;
	int r = 0;

	k->ssl_wants_write = 0;
	for (int i = 0; i < READS_PER_DISPATCH && k->gen == gen; i++) {
		ssize_t n;

		if (k->ssl) {
			int s = SSL_read(k->ssl, buf, READ_CHUNK), e;

			if (s <= 0) {
				e = SSL_get_error(k->ssl, s);
				if (e == SSL_ERROR_WANT_READ)
					break;
				if (e == SSL_ERROR_WANT_WRITE) {
					k->ssl_wants_write = 1;
					break;
				}
				if (e == SSL_ERROR_ZERO_RETURN ||
				    (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
					conn_closed_by_peer(k, 0, NULL);
				} else {
					conn_closed_by_peer(k, UG_E_TLS, ug_openssl_err());
				}
				r = UG_E_CLOSED;
				break;
			}
			n = s;
		} else {
			n = recv(k->fd, buf, READ_CHUNK, 0);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					break;
				conn_closed_by_peer(k, UG_E_IO, strerror(errno));
				r = UG_E_IO;
				break;
			}
			if (n == 0) {
				conn_closed_by_peer(k, 0, NULL);
				r = UG_E_CLOSED;
				break;
			}
		}
		conn_feed(k, buf, (size_t)n);
		if (k->paused && k->state == CONN_READY)
			break;
		if (k->ssl == NULL && (size_t)n < READ_CHUNK)
			break;
	}
	/* TLS may hold decrypted bytes the socket no longer signals: come back for them. */
	if (k->gen == gen && k->ssl && SSL_pending(k->ssl) > 0 &&
	    !(k->paused && k->state == CONN_READY))
		g_source_set_ready_time(k->src, 0);
	g_free(buf);
	return r;
}

static void conn_io(struct conn *k, GIOCondition rev)
{
	ug_spice_client *c = k->c;
	unsigned gen = k->gen;

	k->busy++;
	if (c)
		c->busy++;
	switch (k->state) {
	case CONN_CONNECTING:
		conn_do_connect_done(k);
		break;
	case CONN_HANDSHAKE:
		conn_do_handshake(k);
		if (k->gen == gen && k->state != CONN_HANDSHAKE && conn_write(k) == 0)
			conn_update_watch(k);
		break;
	case CONN_LINK_REPLY:
	case CONN_LINK_RESULT:
	case CONN_READY:
		if (conn_write(k) < 0)
			break;
		if (k->gen == gen && (!k->paused || k->state != CONN_READY))
			if (conn_read(k) < 0)
				break;
		/* Replies queued while reading (PONG, ACK, link steps) go out now. */
		if (k->gen == gen && conn_write(k) == 0 && k->gen == gen)
			conn_update_watch(k);
		break;
	default:
		break;
	}
	k->busy--;
	if (k->doomed && k->busy == 0)
		k->free_fn(k);
	if (c) {
		c->busy--;
		if (c->doomed && c->busy == 0) {
			c->doomed = 0;
			ug_spice_client_free(c);
		}
	}
}

/* ---- the usbredir channel as a transport ------------------------------------- */

static struct spice_usbredir *ch_of_conn(struct conn *k)
{
	return (struct spice_usbredir *)((char *)k - offsetof(struct spice_usbredir, k));
}

static void ch_detach(struct spice_usbredir *ch)
{
	ug_spice_client *c = ch->k.c;
	struct spice_usbredir **pp;

	if (!c)
		return;
	for (pp = &c->channels; *pp; pp = &(*pp)->next) {
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	}
	ch->next = NULL;
	ch->k.c = NULL;
}

/* Moves the bytes queued before the link into SPICE messages. */
static int ch_flush_plain(struct spice_usbredir *ch)
{
	struct conn *k = &ch->k;
	int lz4 = ch->lz4_local &&
	          ug_spice_cap_test(k->server_caps.channel, k->server_caps.num_channel,
	                            SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4);
	int r;

	if (ch->plain.len == 0)
		return 0;
	r = ug_spice_vmc_append(&k->out, k->mini, &k->serial, lz4, VMC_CHUNK,
	                        ug_buf_peek(&ch->plain), ch->plain.len);
	if (r == 0) {
		ug_buf_reset(&ch->plain);
		conn_update_watch(k);
	}
	return r;
}

static void ch_ready(struct conn *k)
{
	struct spice_usbredir *ch = ch_of_conn(k);

	ch->was_ready = 1;
	logf_(k->c, UG_LOG_INFO, "usbredir channel %u: linked%s", k->id,
	      ug_spice_cap_test(k->server_caps.channel, k->server_caps.num_channel,
	                        SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4)
	              ? ", server accepts LZ4"
	              : "");
	if (ch_flush_plain(ch) < 0)
		conn_fail(k, UG_E_NOMEM, "usbredir channel %u: cannot queue %zu bytes", k->id,
		          ch->plain.len);
}

static int ch_message(struct conn *k, const struct ug_spice_unit *u)
{
	struct spice_usbredir *ch = ch_of_conn(k);
	const uint8_t *data;
	size_t len;
	int r;

	r = ug_spice_vmc_payload(u, VMC_MAX_UNCOMPRESSED, &ch->scratch, &data, &len, k->err);
	if (r < 0)
		return r;
	if (r == 0) {
		logf_(k->c, UG_LOG_DEBUG, "usbredir channel %u: ignored message type %u (%u bytes)",
		      k->id, u->type, u->size);
		return 0;
	}
	ug_transport_deliver(&ch->t, data, len);
	return 0;
}

static void ch_closed(struct conn *k, int error, const char *message)
{
	struct spice_usbredir *ch = ch_of_conn(k);
	ug_spice_client *c = k->c;
	int was_ready = ch->was_ready;
	unsigned id = k->id;

	if (c && error)
		snprintf(c->err, sizeof(c->err), "%s", message);
	ch_detach(ch);
	/* The caller may free the transport in this callback: ch is not used after it. */
	ug_transport_report_closed(&ch->t, error, message);
	if (c && was_ready && c->connected && c->cb.channel_removed)
		c->cb.channel_removed(c, id, c->cb_data);
}

static const struct conn_ops ch_ops = {
	.ready = ch_ready,
	.message = ch_message,
	.closed = ch_closed,
};

static int ch_send(ug_transport *t, const void *data, size_t len)
{
	struct spice_usbredir *ch = (struct spice_usbredir *)t;
	struct conn *k = &ch->k;
	size_t pending = k->out.len + ch->plain.len;
	int lz4, r;

	if (len > t->max_pending || pending > t->max_pending - len)
		return UG_E_TOOBIG;
	if (k->state != CONN_READY) {
		ch->plain.max = t->max_pending;
		return ug_buf_append(&ch->plain, data, len);
	}
	lz4 = ch->lz4_local && ug_spice_cap_test(k->server_caps.channel, k->server_caps.num_channel,
	                                         SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4);
	/* Headers add a few bytes per 64 KiB; leave room for them and the control messages. */
	k->out.max = t->max_pending + t->max_pending / 1024 + CTRL_MAX_QUEUE;
	r = ug_spice_vmc_append(&k->out, k->mini, &k->serial, lz4, VMC_CHUNK, data, len);
	if (r == 0)
		conn_update_watch(k);
	return r;
}

static size_t ch_pending(const ug_transport *t)
{
	const struct spice_usbredir *ch = (const struct spice_usbredir *)t;

	return ch->k.out.len + ch->plain.len;
}

static void ch_pause(ug_transport *t, int paused)
{
	struct spice_usbredir *ch = (struct spice_usbredir *)t;

	ch->k.paused = paused;
	conn_update_watch(&ch->k);
	/* Bytes TLS already decrypted would not wake the source again. */
	if (!paused && ch->k.src && ch->k.ssl && SSL_pending(ch->k.ssl) > 0)
		g_source_set_ready_time(ch->k.src, 0);
}

static void ch_close(ug_transport *t)
{
	struct spice_usbredir *ch = (struct spice_usbredir *)t;

	/* Best effort: what the kernel takes now goes out, the rest is dropped. */
	if (ch->k.state == CONN_READY && ch->k.fd >= 0 && !ch->k.ssl)
		conn_write(&ch->k);
	ch_detach(ch);
	conn_reset(&ch->k);
}

static void ch_free_real(struct conn *k)
{
	struct spice_usbredir *ch = ch_of_conn(k);

	conn_release(&ch->k);
	ug_buf_release(&ch->plain);
	ug_buf_release(&ch->scratch);
	free(ch);
}

static void ch_destroy(ug_transport *t)
{
	struct spice_usbredir *ch = (struct spice_usbredir *)t;

	ch_detach(ch);
	conn_reset(&ch->k);
	if (ch->k.busy) {
		ch->k.doomed = 1;
		return;
	}
	ch_free_real(&ch->k);
}

static const struct ug_transport_vtable ch_vtable = {
	.send = ch_send,
	.pending = ch_pending,
	.pause = ch_pause,
	.close = ch_close,
	.destroy = ch_destroy,
};

UG_EXPORT int ug_spice_usbredir_set_lz4(ug_transport *t, int on)
{
	if (!t || t->vt != &ch_vtable)
		return UG_E_INVAL;
	((struct spice_usbredir *)t)->lz4_local = !!on;
	return 0;
}

/* ---- the main channel and the session --------------------------------------- */

static ug_spice_client *client_of_main(struct conn *k)
{
	return (ug_spice_client *)((char *)k - offsetof(ug_spice_client, main));
}

/* Ends the session: closes every channel, then tells the caller. */
static void session_end(ug_spice_client *c, int error, const char *message, int notify)
{
	int was_active = c->active;

	c->active = 0;
	c->connected = 0;
	conn_reset(&c->main);
	while (c->channels) {
		struct spice_usbredir *ch = c->channels;

		ch_detach(ch);
		conn_reset(&ch->k);
		ug_transport_report_closed(&ch->t, error ? error : UG_E_CLOSED,
		                           message && *message ? message : "SPICE session ended");
	}
	if (notify && was_active && c->cb.disconnected)
		c->cb.disconnected(c, error, message, c->cb_data);
}

static void main_ready(struct conn *k)
{
	logf_(k->c, UG_LOG_DEBUG, "main channel: linked, waiting for MAIN_INIT");
}

static void main_channels(ug_spice_client *c, const struct ug_spice_channel_id *ids, size_t n)
{
	for (size_t i = 0; i < n && c->active; i++) {
		unsigned id = ids[i].id;

		if (ids[i].type != SPICE_CHANNEL_USBREDIR)
			continue;
		if (c->known[id / 8] & (1u << (id % 8)))
			continue;
		c->known[id / 8] |= (uint8_t)(1u << (id % 8));
		logf_(c, UG_LOG_INFO, "usbredir channel %u available", id);
		if (c->cb.channel_added)
			c->cb.channel_added(c, id, c->cb_data);
	}
}

static int main_message(struct conn *k, const struct ug_spice_unit *u)
{
	ug_spice_client *c = client_of_main(k);
	char *err = k->err;
	int r;

	switch (u->type) {
	case SPICE_MSG_MAIN_INIT: {
		struct ug_spice_main_init mi;

		r = ug_spice_main_init_decode(u->body, u->size, &mi, err);
		if (r < 0)
			return r;
		c->session_id = mi.session_id;
		memset(c->known, 0, sizeof(c->known));
		r = conn_queue_msg(k, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
		if (r < 0)
			return ug_errmsg_set(err, r, "cannot queue ATTACH_CHANNELS");
		c->connected = 1;
		conn_stop_timer(k);
		logf_(c, UG_LOG_INFO, "SPICE session 0x%08x on %s", mi.session_id, k->peer);
		if (c->cb.connected)
			c->cb.connected(c, c->cb_data);
		return 0;
	}
	case SPICE_MSG_MAIN_CHANNELS_LIST: {
		struct ug_spice_channel_id *ids =
		        g_new(struct ug_spice_channel_id, UG_SPICE_MAX_CHANNELS);
		size_t n;

		r = ug_spice_channels_list_decode(u->body, u->size, ids, UG_SPICE_MAX_CHANNELS, &n,
		                                  err);
		if (r == 0)
			main_channels(c, ids, n);
		g_free(ids);
		return r;
	}
	case SPICE_MSG_MAIN_MIGRATE_BEGIN:
	case SPICE_MSG_MAIN_MIGRATE_BEGIN_SEAMLESS: {
		struct ug_spice_migrate_dst d;

		if (ug_spice_migrate_begin_decode(u->body, u->size, &d, err) == 0)
			logf_(c, UG_LOG_WARNING,
			      "main channel: server asks to migrate to %.*s port %u (TLS port %u); "
			      "refused: this client does not follow migrations",
			      (int)(d.host_len > 128 ? 128 : d.host_len), (const char *)d.host,
			      d.port, d.sport);
		else
			logf_(c, UG_LOG_WARNING, "main channel: migration refused (%s)", err);
		return conn_queue_msg(k, SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR, NULL, 0);
	}
	case SPICE_MSG_MAIN_MIGRATE_SWITCH_HOST:
		logf_(c, UG_LOG_WARNING, "main channel: server switched host after a migration; "
		      "the session will end and the caller may reconnect");
		return 0;
	case SPICE_MSG_MAIN_MIGRATE_CANCEL:
		logf_(c, UG_LOG_INFO, "main channel: migration cancelled");
		return 0;
	default:
		return 0;
	}
}

static void main_closed(struct conn *k, int error, const char *message)
{
	ug_spice_client *c = client_of_main(k);

	snprintf(c->err, sizeof(c->err), "%s", message);
	session_end(c, error, message, 1);
}

static const struct conn_ops main_ops = {
	.ready = main_ready,
	.message = main_message,
	.closed = main_closed,
};

static void main_free_real(struct conn *k)
{
	(void)k;
}

UG_EXPORT ug_spice_client *ug_spice_client_new(void)
{
	ug_spice_client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->verify = 1;
	c->link_timeout_ms = UG_SPICE_DEFAULT_LINK_TIMEOUT_MS;
	conn_init(&c->main, c, &main_ops, SPICE_CHANNEL_MAIN, 0);
	c->main.free_fn = main_free_real;
	return c;
}

UG_EXPORT void ug_spice_client_free(ug_spice_client *c)
{
	if (!c)
		return;
	memset(&c->cb, 0, sizeof(c->cb));
	c->log_fn = NULL;
	c->wire_fn = NULL;
	session_end(c, 0, NULL, 0);
	if (c->busy) {
		/* Called from one of our callbacks: finish when the dispatch unwinds. */
		c->doomed = 1;
		return;
	}
	conn_release(&c->main);
	OPENSSL_cleanse(c->password, sizeof(c->password));
	free(c->ca_file);
	free(c->host_subject);
	EVP_PKEY_free(c->pinned);
	SSL_CTX_free(c->ssl_ctx);
	free(c);
}

UG_EXPORT int ug_spice_client_set_uri(ug_spice_client *c, const char *uri)
{
	struct ug_spice_uri u;
	int r = ug_spice_uri_parse(uri, &u, c->err);

	if (r < 0)
		return r;
	c->uri = u;
	c->have_uri = 1;
	return 0;
}

UG_EXPORT int ug_spice_client_set_password_file(ug_spice_client *c, const char *path)
{
	return ug_spice_password_from_file(path, c->password, c->err);
}

UG_EXPORT int ug_spice_client_set_password_env(ug_spice_client *c, const char *name)
{
	return ug_spice_password_from_env(name, c->password, c->err);
}

static int set_str(ug_spice_client *c, char **dst, const char *s)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		return ug_errmsg_set(c->err, UG_E_NOMEM, "out of memory");
	free(*dst);
	*dst = d;
	SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = NULL;
	return 0;
}

UG_EXPORT int ug_spice_client_set_ca_file(ug_spice_client *c, const char *path)
{
	return set_str(c, &c->ca_file, path);
}

UG_EXPORT int ug_spice_client_set_host_subject(ug_spice_client *c, const char *subject)
{
	return set_str(c, &c->host_subject, subject);
}

UG_EXPORT int ug_spice_client_set_pubkey_file(ug_spice_client *c, const char *path)
{
	EVP_PKEY *k = NULL;
	FILE *f = fopen(path, "rb");

	if (!f)
		return ug_errmsg_set(c->err, UG_E_IO, "public key %.128s: %s", path,
		                     strerror(errno));
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	if (!k) {
		rewind(f);
		ERR_clear_error();
		k = d2i_PUBKEY_fp(f, NULL);
	}
	fclose(f);
	if (!k)
		return ug_errmsg_set(c->err, UG_E_INVAL,
		                     "public key %.128s: neither PEM nor DER: %s", path, ug_openssl_err());
	EVP_PKEY_free(c->pinned);
	c->pinned = k;
	SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = NULL;
	return 0;
}

UG_EXPORT void ug_spice_client_set_link_timeout(ug_spice_client *c, unsigned ms)
{
	c->link_timeout_ms = ms;
}

UG_EXPORT void ug_spice_client_set_verify(ug_spice_client *c, int verify)
{
	c->verify = !!verify;
	SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = NULL;
}

UG_EXPORT void ug_spice_client_set_log(ug_spice_client *c, ug_log_fn fn, void *user_data)
{
	c->log_fn = fn;
	c->log_data = user_data;
}

UG_EXPORT void ug_spice_client_set_callbacks(ug_spice_client *c,
                                             const struct ug_spice_client_callbacks *cb,
                                             void *user_data)
{
	if (cb)
		c->cb = *cb;
	else
		memset(&c->cb, 0, sizeof(c->cb));
	c->cb_data = user_data;
}

UG_EXPORT void ug_spice_client_set_wire_tap(ug_spice_client *c, ug_spice_wire_fn fn,
                                            void *user_data)
{
	c->wire_fn = fn;
	c->wire_data = user_data;
}

/* Whether channels of type go over TLS: always for spice+tls, else once the server asked. */
static int use_tls(const ug_spice_client *c, unsigned type)
{
	if (c->uri.is_unix)
		return 0;
	if (!c->uri.port)
		return 1;
	return c->uri.tls_port && (c->secure_types & (1u << type));
}

UG_EXPORT int ug_spice_client_connect(ug_spice_client *c)
{
	int r;

	if (!c->have_uri)
		return ug_errmsg_set(c->err, UG_E_INVAL, "no SPICE URI set");
	if (c->active)
		return ug_errmsg_set(c->err, UG_E_STATE, "already connected or connecting");
	if (!c->verify)
		logf_(c, UG_LOG_WARNING, "TLS certificate verification is off");
	logf_(c, UG_LOG_WARNING,
	      "spice-server admits one client: a viewer connected to %s will be disconnected",
	      c->uri.is_unix ? c->uri.path : c->uri.host);
	c->connected = 0;
	c->session_id = 0;
	memset(c->known, 0, sizeof(c->known));
	c->err[0] = '\0';
	r = conn_start(&c->main, use_tls(c, SPICE_CHANNEL_MAIN));
	if (r < 0) {
		conn_reset(&c->main);
		return r;
	}
	c->active = 1;
	return 0;
}

UG_EXPORT void ug_spice_client_disconnect(ug_spice_client *c)
{
	session_end(c, 0, "disconnected by the caller", 0);
}

UG_EXPORT int ug_spice_client_is_connected(const ug_spice_client *c)
{
	return c->connected;
}

UG_EXPORT uint32_t ug_spice_client_session_id(const ug_spice_client *c)
{
	return c->session_id;
}

UG_EXPORT int ug_spice_client_open_usbredir(ug_spice_client *c, unsigned channel_id,
                                            ug_transport **ret_transport)
{
	struct spice_usbredir *ch;
	char desc[160];
	int r;

	if (!c->connected)
		return ug_errmsg_set(c->err, UG_E_STATE,
		                     "usbredir channel %u: session not connected", channel_id);
	if (channel_id > 255 || !(c->known[channel_id / 8] & (1u << (channel_id % 8))))
		return ug_errmsg_set(c->err, UG_E_NOTFOUND,
		                     "usbredir channel %u is not in the server's channel list",
		                     channel_id);
	for (ch = c->channels; ch; ch = ch->next)
		if (ch->k.id == channel_id)
			return ug_errmsg_set(c->err, UG_E_STATE,
			                     "usbredir channel %u is already open", channel_id);
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return ug_errmsg_set(c->err, UG_E_NOMEM, "out of memory");
	snprintf(desc, sizeof(desc), "spice usbredir channel %u (%.100s)", channel_id,
	         c->uri.is_unix ? c->uri.path : c->uri.host);
	ug_transport_init(&ch->t, &ch_vtable, desc);
	conn_init(&ch->k, c, &ch_ops, SPICE_CHANNEL_USBREDIR, (uint8_t)channel_id);
	ch->k.free_fn = ch_free_real;
	ug_buf_init(&ch->plain, UG_TRANSPORT_DEFAULT_MAX_PENDING);
	ug_buf_init(&ch->scratch, VMC_MAX_UNCOMPRESSED);
	ch->lz4_local = 1;
	r = conn_start(&ch->k, use_tls(c, SPICE_CHANNEL_USBREDIR));
	if (r < 0) {
		ch_free_real(&ch->k);
		return r;
	}
	ch->next = c->channels;
	c->channels = ch;
	*ret_transport = &ch->t;
	return 0;
}

UG_EXPORT const char *ug_spice_client_errmsg(const ug_spice_client *c)
{
	return c->err;
}
