/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-spice-client.c: unit tests of the SPICE client's URI, password and ticket handling (lib/spice-client.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <glib.h>
#include <lz4.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "buf.h"
#include "common.h"
#include "spice-client.h"
#include "transport.h"

static void test_uri_plain(void **state)
{
	struct ug_spice_uri u;
	char err[UG_ERRMSG_SIZE];

	assert_int_equal(ug_spice_uri_parse("spice://127.0.0.1:5900", &u, err), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 5900);
	assert_int_equal(u.tls_port, 0);
	assert_false(u.is_unix);

	assert_int_equal(ug_spice_uri_parse("spice://vmhost?port=5900&tls-port=5901", &u, err), 0);
	assert_string_equal(u.host, "vmhost");
	assert_int_equal(u.port, 5900);
	assert_int_equal(u.tls_port, 5901);

	assert_int_equal(ug_spice_uri_parse("spice://h:5900/?tls-port=5901", &u, err), 0);
	assert_int_equal(u.port, 5900);
	assert_int_equal(u.tls_port, 5901);

	assert_int_equal(ug_spice_uri_parse("spice://[::1]:5902", &u, err), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 5902);

	/* Only a TLS port: every channel goes over TLS. */
	assert_int_equal(ug_spice_uri_parse("spice://h?tls-port=5901", &u, err), 0);
	assert_int_equal(u.port, 0);
	assert_int_equal(u.tls_port, 5901);
}

static void test_uri_tls_and_unix(void **state)
{
	struct ug_spice_uri u;
	char err[UG_ERRMSG_SIZE];

	assert_int_equal(ug_spice_uri_parse("spice+tls://example.org:5901", &u, err), 0);
	assert_string_equal(u.host, "example.org");
	assert_int_equal(u.port, 0);
	assert_int_equal(u.tls_port, 5901);

	assert_int_equal(ug_spice_uri_parse("spice+unix:///run/qemu/spice.sock", &u, err), 0);
	assert_true(u.is_unix);
	assert_string_equal(u.path, "/run/qemu/spice.sock");
}

static void test_uri_errors(void **state)
{
	static const struct {
		const char *uri;
		const char *needle;
	} bad[] = {
		{ "vnc://h:5900", "must start with" },
		{ "spice://h", "no port" },
		{ "spice://:5900", "no host" },
		{ "spice://h:0", "outside 1..65535" },
		{ "spice://h:65536", "outside 1..65535" },
		{ "spice://h:59x0", "not a port number" },
		{ "spice://h:123456", "expected a port number" },
		{ "spice://h?port=", "expected a port number" },
		{ "spice://h?port", "has no value" },
		{ "spice://h?foo=1", "unknown query key \"foo\"" },
		{ "spice://[::1:5900", "without closing" },
		{ "spice+unix://relative", "absolute path" },
		{ "spice://user@h:5900", "not a host name" },
	};
	struct ug_spice_uri u;
	char err[UG_ERRMSG_SIZE];

	for (size_t i = 0; i < UG_NELEMS(bad); i++) {
		err[0] = '\0';
		assert_int_equal(ug_spice_uri_parse(bad[i].uri, &u, err), UG_E_INVAL);
		if (!strstr(err, bad[i].needle))
			fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].uri, err, bad[i].needle);
	}
	assert_int_equal(ug_spice_uri_parse(NULL, &u, err), UG_E_INVAL);
}

static void test_uri_password_refused_and_not_echoed(void **state)
{
	struct ug_spice_uri u;
	char err[UG_ERRMSG_SIZE];

	assert_int_equal(ug_spice_uri_parse("spice://h:5900?password=hunter2", &u, err),
	                 UG_E_INVAL);
	assert_non_null(strstr(err, "password"));
	assert_null(strstr(err, "hunter2"));
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void test_password_file(void **state)
{
	char path[] = "/tmp/ug-spice-pw-XXXXXX";
	char pw[UG_SPICE_PASSWORD_SIZE], err[UG_ERRMSG_SIZE];
	char long_pw[80];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	write_file(path, "s3cret\n", 7);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), 0);
	assert_string_equal(pw, "s3cret");
	write_file(path, "s3cret\r\nsecond line\n", 20);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), 0);
	assert_string_equal(pw, "s3cret");
	write_file(path, "no-newline", 10);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), 0);
	assert_string_equal(pw, "no-newline");
	write_file(path, "", 0);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), 0);
	assert_string_equal(pw, "");
	/* Exactly 60 bytes is the limit; 61 is refused without quoting it. */
	memset(long_pw, 'p', sizeof(long_pw));
	write_file(path, long_pw, 60);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), 0);
	assert_int_equal(strlen(pw), 60);
	long_pw[61] = '\n';
	write_file(path, long_pw, 62);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), UG_E_INVAL);
	assert_non_null(strstr(err, "61 bytes, limit 60"));
	assert_null(strstr(err, "pppp"));
	write_file(path, long_pw, sizeof(long_pw));
	assert_int_equal(ug_spice_password_from_file(path, pw, err), UG_E_INVAL);
	assert_null(strstr(err, "pppp"));
	write_file(path, "a\0b\n", 4);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), UG_E_INVAL);
	assert_non_null(strstr(err, "NUL"));
	unlink(path);
	assert_int_equal(ug_spice_password_from_file(path, pw, err), UG_E_IO);
	assert_non_null(strstr(err, path));
}

static void test_password_env(void **state)
{
	char pw[UG_SPICE_PASSWORD_SIZE], err[UG_ERRMSG_SIZE];

	setenv("UG_TEST_SPICE_PW", "from-env", 1);
	assert_int_equal(ug_spice_password_from_env("UG_TEST_SPICE_PW", pw, err), 0);
	assert_string_equal(pw, "from-env");
	setenv("UG_TEST_SPICE_PW", "0123456789012345678901234567890123456789012345678901234567890",
	       1);
	assert_int_equal(ug_spice_password_from_env("UG_TEST_SPICE_PW", pw, err), UG_E_INVAL);
	assert_null(strstr(err, "0123456789"));
	unsetenv("UG_TEST_SPICE_PW");
	assert_int_equal(ug_spice_password_from_env("UG_TEST_SPICE_PW", pw, err), UG_E_NOTFOUND);
	assert_non_null(strstr(err, "UG_TEST_SPICE_PW"));
}

/* What spice-server does with the ticket: OAEP-decrypt with its private key. */
static size_t oaep_decrypt(EVP_PKEY *key, const uint8_t *in, uint8_t *out, size_t out_size)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	size_t n = out_size;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()), 1);
	assert_int_equal(EVP_PKEY_decrypt(ctx, out, &n, in, UG_SPICE_TICKET_SIZE), 1);
	EVP_PKEY_CTX_free(ctx);
	return n;
}

static EVP_PKEY *rsa_key(unsigned bits)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
	EVP_PKEY *key = NULL;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits), 1);
	assert_int_equal(EVP_PKEY_keygen(ctx, &key), 1);
	EVP_PKEY_CTX_free(ctx);
	return key;
}

static void test_ticket_round_trip(void **state)
{
	EVP_PKEY *key = rsa_key(1024);
	uint8_t *der = NULL, ticket[UG_SPICE_TICKET_SIZE], ticket2[UG_SPICE_TICKET_SIZE],
	        plain[128];
	char err[UG_ERRMSG_SIZE];
	int der_len = i2d_PUBKEY(key, &der);
	size_t n;

	/* The key as spice-server sends it: SubjectPublicKeyInfo of RSA-1024, 162 bytes. */
	assert_int_equal(der_len, SPICE_TICKET_PUBKEY_BYTES);
	assert_int_equal(ug_spice_ticket_encrypt(der, (size_t)der_len, "s3cret", ticket, err), 0);
	n = oaep_decrypt(key, ticket, plain, sizeof(plain));
	assert_int_equal(n, 7);
	assert_memory_equal(plain, "s3cret", 7); /* with its NUL */
	/* OAEP is randomised: the same password never gives the same ticket. */
	assert_int_equal(ug_spice_ticket_encrypt(der, (size_t)der_len, "s3cret", ticket2, err), 0);
	assert_memory_not_equal(ticket, ticket2, sizeof(ticket));
	/* Ticketing disabled: "" still has to decrypt, to one NUL byte. */
	assert_int_equal(ug_spice_ticket_encrypt(der, (size_t)der_len, "", ticket, err), 0);
	n = oaep_decrypt(key, ticket, plain, sizeof(plain));
	assert_int_equal(n, 1);
	assert_int_equal(plain[0], 0);
	/* The longest password fits one OAEP block of RSA-1024 (86 bytes max). */
	char pw60[61];
	memset(pw60, 'x', 60);
	pw60[60] = '\0';
	assert_int_equal(ug_spice_ticket_encrypt(der, (size_t)der_len, pw60, ticket, err), 0);
	n = oaep_decrypt(key, ticket, plain, sizeof(plain));
	assert_int_equal(n, 61);
	OPENSSL_free(der);
	EVP_PKEY_free(key);
}

static void test_ticket_bad_keys(void **state)
{
	uint8_t junk[162], ticket[UG_SPICE_TICKET_SIZE], *der = NULL;
	char err[UG_ERRMSG_SIZE];
	EVP_PKEY *key;
	int der_len;

	memset(junk, 0x30, sizeof(junk));
	assert_int_equal(ug_spice_ticket_encrypt(junk, sizeof(junk), "x", ticket, err), UG_E_PROTO);
	assert_non_null(strstr(err, "does not parse"));
	/* A 2048-bit key would give a 256-byte ticket the server cannot take. */
	key = rsa_key(2048);
	der_len = i2d_PUBKEY(key, &der);
	assert_int_equal(ug_spice_ticket_encrypt(der, (size_t)der_len, "x", ticket, err),
	                 UG_E_PROTO);
	assert_non_null(strstr(err, "RSA-1024"));
	OPENSSL_free(der);
	EVP_PKEY_free(key);
	/* Over 60 bytes is refused before encrypting. */
	char pw61[62];
	memset(pw61, 'y', 61);
	pw61[61] = '\0';
	assert_int_equal(ug_spice_ticket_encrypt(junk, sizeof(junk), pw61, ticket, err),
	                 UG_E_INVAL);
	assert_null(strstr(err, "yyyy"));
}

static void test_client_config_errors(void **state)
{
	ug_spice_client *c = ug_spice_client_new();
	ug_transport *t = NULL;

	assert_non_null(c);
	assert_int_equal(ug_spice_client_connect(c), UG_E_INVAL);
	assert_non_null(strstr(ug_spice_client_errmsg(c), "no SPICE URI"));
	assert_int_equal(ug_spice_client_set_uri(c, "spice://h"), UG_E_INVAL);
	assert_int_equal(ug_spice_client_open_usbredir(c, 0, &t), UG_E_STATE);
	assert_null(t);
	assert_int_equal(ug_spice_client_set_pubkey_file(c, "/nonexistent/key.pem"), UG_E_IO);
	assert_int_equal(ug_spice_client_is_connected(c), 0);
	ug_spice_client_free(c);
	ug_spice_client_free(NULL);
}

/* ---- a scripted SPICE server on loopback ------------------------------------
 *
 * QEMU's spice-server is the reference peer (tests/integration/spice-qemu.sh);
 * this one plays the server's side of the protocol with the codec, one
 * blocking thread per connection, to reach what QEMU does not do on demand:
 * SASL-only, version mismatch, a silent close, corrupt LZ4, migration, a
 * full header, NOTIFY. The client runs on the test's main context.
 */

enum scenario {
	SC_HAPPY,
	SC_FULL_HEADER,
	SC_SASL_ONLY,
	SC_VERSION,
	SC_SILENT_USBREDIR,
	SC_CORRUPT_LZ4,
	SC_MIGRATE,
	SC_STALL,
};

#define SESSION_ID 0x5eed1234u
#define PING_PAD 256000

struct server {
	enum scenario sc;
	int lfd;
	int port;
	EVP_PKEY *key;
	const char *password;
	GThread *acceptor;
	GThread *conns[16];     /* joined by server_stop(), which also closes fds */
	int fds[16];
	int nconns;
	/* What the server saw, read by the test after the main loop ran. */
	GMutex lock;
	int pong_ok;
	int attach_seen;
	int migrate_error_seen;
	int bad_connection_id;
	int vmc_raw, vmc_lz4;
	uint8_t got[8192];
	size_t got_len;
	int stop;
};

static int read_exact(int fd, void *p, size_t n)
{
	uint8_t *b = p;

	while (n > 0) {
		ssize_t r = recv(fd, b, n, 0);

		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t r = send(fd, b, n, MSG_NOSIGNAL);

		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int send_msg(int fd, int mini, uint64_t *serial, uint16_t type, const void *body, size_t len)
{
	struct ug_buf b;
	int r;

	ug_buf_init(&b, len + 64);
	ug_spice_msg_append(&b, mini, serial, type, body, len);
	r = write_all(fd, ug_buf_peek(&b), b.len);
	ug_buf_release(&b);
	return r;
}

/* Reads one data message into a malloc'ed body; returns the type or -1. */
static int read_msg(int fd, int mini, uint8_t **body, uint32_t *len)
{
	uint8_t h[UG_SPICE_FULL_HEADER_SIZE];
	uint16_t type;

	if (read_exact(fd, h, mini ? 6 : 18) < 0)
		return -1;
	type = ug_get_le16(h + (mini ? 0 : 8));
	*len = ug_get_le32(h + (mini ? 2 : 10));
	if (*len > (1u << 20))
		return -1;
	*body = malloc(*len + 1);
	if (read_exact(fd, *body, *len) < 0) {
		free(*body);
		return -1;
	}
	return type;
}

static void serve_main(struct server *sv, int fd, int mini)
{
	struct ug_spice_main_init mi = { SESSION_ID, 1, 3, 2, 0, 10, 0, 0 };
	struct ug_spice_channel_id ids[3] = {
	        {SPICE_CHANNEL_MAIN, 0}, {SPICE_CHANNEL_USBREDIR, 0}, {SPICE_CHANNEL_USBREDIR, 3}};
	uint64_t serial = 0;
	uint8_t b[64], *body, *ping;
	uint32_t len;
	struct ug_buf list;
	int t;

	ug_spice_main_init_encode(&mi, b);
	send_msg(fd, mini, &serial, SPICE_MSG_MAIN_INIT, b, 32);
	/* The client must attach before the list comes. */
	while ((t = read_msg(fd, mini, &body, &len)) >= 0) {
		free(body);
		if (t == SPICE_MSGC_MAIN_ATTACH_CHANNELS)
			break;
	}
	if (t < 0)
		return;
	g_mutex_lock(&sv->lock);
	sv->attach_seen = 1;
	g_mutex_unlock(&sv->lock);
	ug_buf_init(&list, 1024);
	ug_spice_channels_list_encode(ids, 3, &list);
	send_msg(fd, mini, &serial, SPICE_MSG_MAIN_CHANNELS_LIST, ug_buf_peek(&list), list.len);
	ug_buf_release(&list);
	/* NOTIFY with its NUL, as spice-server sends it. */
	memset(b, 0, sizeof(b));
	ug_put_le32(b + 8, SPICE_NOTIFY_SEVERITY_WARN);
	ug_put_le32(b + 20, 16);
	memcpy(b + 24, "scripted notice", 16);
	send_msg(fd, mini, &serial, SPICE_MSG_NOTIFY, b, 40);
	/* A PING as big as spice-server's network test. */
	ping = calloc(1, 12 + PING_PAD);
	ug_spice_pong_encode(5, 0x1122334455667788ull, ping);
	send_msg(fd, mini, &serial, SPICE_MSG_PING, ping, 12 + PING_PAD);
	free(ping);
	if (sv->sc == SC_MIGRATE) {
		memset(b, 0, sizeof(b));
		ug_put_le16(b, 5930);
		ug_put_le16(b + 2, 5931);
		ug_put_le32(b + 4, 6);
		ug_put_le32(b + 8, 20);
		memcpy(b + 20, "other", 6);
		send_msg(fd, mini, &serial, SPICE_MSG_MAIN_MIGRATE_BEGIN, b, 26);
	}
	while ((t = read_msg(fd, mini, &body, &len)) >= 0) {
		g_mutex_lock(&sv->lock);
		if (t == SPICE_MSGC_PONG && len == 12 && ug_get_le32(body) == 5 &&
		    ug_get_le64(body + 4) == 0x1122334455667788ull)
			sv->pong_ok = 1;
		if (t == SPICE_MSGC_MAIN_MIGRATE_CONNECT_ERROR)
			sv->migrate_error_seen = 1;
		g_mutex_unlock(&sv->lock);
		free(body);
	}
}

static void fill_pattern(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i % 50) < 30 ? 'a' : i);
}

static void serve_usbredir(struct server *sv, int fd, int mini, uint32_t connection_id)
{
	static uint8_t plain[5000], comp[6000];
	uint64_t serial = 0;
	uint8_t *body;
	uint32_t len;
	int t, c;

	if (connection_id != SESSION_ID) {
		g_mutex_lock(&sv->lock);
		sv->bad_connection_id = 1;
		g_mutex_unlock(&sv->lock);
	}
	send_msg(fd, mini, &serial, SPICE_MSG_SPICEVMC_DATA, "hello bytes", 11);
	fill_pattern(plain, sizeof(plain));
	c = LZ4_compress_default((const char *)plain, (char *)comp + 5, sizeof(plain),
	                         sizeof(comp) - 5);
	comp[0] = SPICE_DATA_COMPRESSION_TYPE_LZ4;
	ug_put_le32(comp + 1, sizeof(plain));
	if (sv->sc == SC_CORRUPT_LZ4)
		memset(comp + 5 + c / 2, 0xff, (size_t)c / 2);
	send_msg(fd, mini, &serial, SPICE_MSG_SPICEVMC_COMPRESSED_DATA, comp, (size_t)c + 5);
	while ((t = read_msg(fd, mini, &body, &len)) >= 0) {
		g_mutex_lock(&sv->lock);
		if (t == SPICE_MSGC_SPICEVMC_DATA && sv->got_len + len <= sizeof(sv->got)) {
			memcpy(sv->got + sv->got_len, body, len);
			sv->got_len += len;
			sv->vmc_raw++;
		} else if (t == SPICE_MSGC_SPICEVMC_COMPRESSED_DATA && len > 5) {
			int n = LZ4_decompress_safe((const char *)body + 5,
			                            (char *)sv->got + sv->got_len, (int)len - 5,
			                            (int)(sizeof(sv->got) - sv->got_len));

			if (n > 0 && (uint32_t)n == ug_get_le32(body + 1))
				sv->got_len += (size_t)n;
			sv->vmc_lz4++;
		}
		g_mutex_unlock(&sv->lock);
		free(body);
	}
}

static gpointer serve_conn(gpointer data)
{
	struct server *sv = ((void **)data)[0];
	int fd = GPOINTER_TO_INT(((void **)data)[1]);
	uint8_t h[16], body[512], out[512], ticket[128], plain[128];
	struct ug_spice_link_header lh;
	struct ug_spice_link_mess m;
	struct ug_spice_link_reply r;
	uint8_t *der = NULL;
	size_t len, n = sizeof(plain);
	int mini, der_len;
	EVP_PKEY_CTX *ctx;
	uint32_t result;

	g_free(data);
	if (read_exact(fd, h, 16) < 0 || ug_spice_link_header_decode(h, 16, 512, &lh, NULL) < 0 ||
	    read_exact(fd, body, lh.size) < 0 ||
	    ug_spice_link_mess_decode(body, lh.size, &m, NULL) < 0)
		goto out;
	if (sv->sc == SC_SILENT_USBREDIR && m.channel_type == SPICE_CHANNEL_USBREDIR)
		goto out;
	if (sv->sc == SC_STALL) {
		/* Accept the link message and say nothing until the client gives up. */
		while (recv(fd, body, sizeof(body), 0) > 0)
			;
		goto out;
	}
	memset(&r, 0, sizeof(r));
	der_len = i2d_PUBKEY(sv->key, &der);
	memcpy(r.pub_key, der, (size_t)der_len);
	OPENSSL_free(der);
	ug_spice_cap_set(r.caps.common, &r.caps.num_common,
	                 SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION);
	if (sv->sc == SC_SASL_ONLY) {
		ug_spice_cap_set(r.caps.common, &r.caps.num_common, SPICE_COMMON_CAP_AUTH_SASL);
	} else {
		ug_spice_cap_set(r.caps.common, &r.caps.num_common, SPICE_COMMON_CAP_AUTH_SPICE);
	}
	if (sv->sc != SC_FULL_HEADER)
		ug_spice_cap_set(r.caps.common, &r.caps.num_common, SPICE_COMMON_CAP_MINI_HEADER);
	if (m.channel_type == SPICE_CHANNEL_USBREDIR)
		ug_spice_cap_set(r.caps.channel, &r.caps.num_channel,
		                 SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4);
	ug_spice_link_reply_encode(&r, out, sizeof(out), &len);
	if (sv->sc == SC_VERSION)
		ug_put_le32(out + 4, 3);
	if (write_all(fd, out, len) < 0 || sv->sc == SC_VERSION || sv->sc == SC_SASL_ONLY)
		goto out;
	if (read_exact(fd, h, 4) < 0 || ug_get_le32(h) != SPICE_COMMON_CAP_AUTH_SPICE ||
	    read_exact(fd, ticket, 128) < 0)
		goto out;
	ctx = EVP_PKEY_CTX_new(sv->key, NULL);
	EVP_PKEY_decrypt_init(ctx);
	EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING);
	result = EVP_PKEY_decrypt(ctx, plain, &n, ticket, 128) == 1 &&
	                         n == strlen(sv->password) + 1 &&
	                         memcmp(plain, sv->password, n) == 0
	                 ? SPICE_LINK_ERR_OK
	                 : SPICE_LINK_ERR_PERMISSION_DENIED;
	EVP_PKEY_CTX_free(ctx);
	ug_put_le32(h, result);
	if (write_all(fd, h, 4) < 0 || result != SPICE_LINK_ERR_OK)
		goto out;
	mini = sv->sc != SC_FULL_HEADER;
	if (m.channel_type == SPICE_CHANNEL_MAIN)
		serve_main(sv, fd, mini);
	else
		serve_usbredir(sv, fd, mini, m.connection_id);
out:
	/* server_stop() closes fd once every thread is joined. */
	shutdown(fd, SHUT_WR);
	return NULL;
}

static gpointer serve(gpointer data)
{
	struct server *sv = data;

	for (;;) {
		int fd = accept(sv->lfd, NULL, NULL);
		void **arg;

		if (fd < 0 || sv->stop || sv->nconns == (int)G_N_ELEMENTS(sv->conns)) {
			if (fd >= 0)
				close(fd);
			return NULL;
		}
		arg = g_new(void *, 2);
		arg[0] = sv;
		arg[1] = GINT_TO_POINTER(fd);
		g_mutex_lock(&sv->lock);
		sv->fds[sv->nconns] = fd;
		sv->conns[sv->nconns++] = g_thread_new("spice-conn", serve_conn, arg);
		g_mutex_unlock(&sv->lock);
	}
}

static struct server *server_start(enum scenario sc, const char *password)
{
	struct server *sv = calloc(1, sizeof(*sv));
	struct sockaddr_in a;
	socklen_t al = sizeof(a);

	sv->sc = sc;
	sv->password = password;
	sv->key = rsa_key(1024);
	g_mutex_init(&sv->lock);
	sv->lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(sv->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(sv->lfd, 8), 0);
	getsockname(sv->lfd, (struct sockaddr *)&a, &al);
	sv->port = ntohs(a.sin_port);
	sv->acceptor = g_thread_new("spice-accept", serve, sv);
	return sv;
}

static void server_stop(struct server *sv)
{
	struct sockaddr_in a;
	int fd;

	/* Wake the acceptor with one last connection. */
	sv->stop = 1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)sv->port);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	g_thread_join(sv->acceptor);
	close(sv->lfd);
	/* Unblock the connection threads, then wait for them. */
	for (int i = 0; i < sv->nconns; i++)
		shutdown(sv->fds[i], SHUT_RDWR);
	for (int i = 0; i < sv->nconns; i++) {
		g_thread_join(sv->conns[i]);
		close(sv->fds[i]);
	}
	EVP_PKEY_free(sv->key);
	g_mutex_clear(&sv->lock);
	free(sv);
}

/* The client side: what the callbacks saw. */
struct run {
	GMainLoop *loop;
	ug_spice_client *c;
	int connected;
	unsigned added[8];
	unsigned nadded;
	int disconnected;
	int disc_error;
	char disc_msg[UG_ERRMSG_SIZE];
	char log[8192];
	ug_transport *t;
	uint8_t data[8192];
	size_t data_len;
	int t_closed;
	int t_error;
	char t_msg[UG_ERRMSG_SIZE];
	int open_id;
	int free_in_disconnect;
	int reconnects_in_cb;   /* connect() again from the disconnected callback */
	int disconnects;
	int sent;
};

static void r_log(int level, const char *message, void *user_data)
{
	struct run *r = user_data;
	size_t l = strlen(r->log);

	snprintf(r->log + l, sizeof(r->log) - l, "%s\n", message);
}

static void r_data(ug_transport *t, const uint8_t *data, size_t len, void *user_data)
{
	struct run *r = user_data;

	if (r->data_len + len <= sizeof(r->data)) {
		memcpy(r->data + r->data_len, data, len);
		r->data_len += len;
	}
	/* Once the server's 11 + 5000 bytes are in, answer with 3000 compressible bytes. */
	if (r->data_len == 11 + 5000 && !r->sent) {
		uint8_t out[3000];

		fill_pattern(out, sizeof(out));
		assert_int_equal(ug_transport_send(t, "raw", 3), 0);
		assert_int_equal(ug_transport_send(t, out, sizeof(out)), 0);
		r->sent = 1;
	}
}

static void r_closed(ug_transport *t, int error, const char *message, void *user_data)
{
	struct run *r = user_data;

	r->t_closed = 1;
	r->t_error = error;
	snprintf(r->t_msg, sizeof(r->t_msg), "%s", message);
	g_main_loop_quit(r->loop);
}

static void r_connected(ug_spice_client *c, void *user_data)
{
	((struct run *)user_data)->connected = 1;
}

static void r_added(ug_spice_client *c, unsigned id, void *user_data)
{
	struct run *r = user_data;

	r->added[r->nadded++] = id;
	if ((int)id == r->open_id) {
		assert_int_equal(ug_spice_client_open_usbredir(c, id, &r->t), 0);
		ug_transport_set_callbacks(r->t, r_data, r_closed, r);
		/* Queued before the link completes: must arrive first. */
		assert_int_equal(ug_transport_send(r->t, "early", 5), 0);
	}
}

static void r_disconnected(ug_spice_client *c, int error, const char *message, void *user_data)
{
	struct run *r = user_data;

	r->disconnected = 1;
	r->disconnects++;
	r->disc_error = error;
	snprintf(r->disc_msg, sizeof(r->disc_msg), "%s", message);
	if (r->free_in_disconnect) {
		/* Freeing the client from its own callback is allowed. */
		ug_spice_client_free(c);
		r->c = NULL;
	}
	if (r->reconnects_in_cb > 0) {
		/* So is connecting again: the reconnect hook. */
		r->reconnects_in_cb--;
		assert_int_equal(ug_spice_client_connect(c), 0);
		return;
	}
	g_main_loop_quit(r->loop);
}

static gboolean r_timeout(gpointer user_data)
{
	g_main_loop_quit(((struct run *)user_data)->loop);
	return G_SOURCE_REMOVE;
}

static gboolean r_poll_server(gpointer user_data)
{
	void **a = user_data;
	struct run *r = a[0];
	struct server *sv = a[1];
	int done;

	g_mutex_lock(&sv->lock);
	done = sv->got_len >= 5 + 3 + 3000 && sv->pong_ok;
	if (sv->sc == SC_MIGRATE)
		done = sv->migrate_error_seen;
	g_mutex_unlock(&sv->lock);
	if (done)
		g_main_loop_quit(r->loop);
	return G_SOURCE_CONTINUE;
}

/* Runs the client against sv until a callback ends it, the server saw enough, or 10 s. */
static void run_client(struct server *sv, struct run *r, const char *password)
{
	struct ug_spice_client_callbacks cb = { r_connected, r_added, NULL, r_disconnected };
	char uri[64];
	void *poll_args[2] = { r, sv };
	guint t1, t2;

	r->loop = g_main_loop_new(NULL, FALSE);
	r->c = ug_spice_client_new();
	snprintf(uri, sizeof(uri), "spice://127.0.0.1:%d", sv->port);
	assert_int_equal(ug_spice_client_set_uri(r->c, uri), 0);
	if (password) {
		setenv("UG_TEST_SPICE_PW", password, 1);
		assert_int_equal(ug_spice_client_set_password_env(r->c, "UG_TEST_SPICE_PW"), 0);
		unsetenv("UG_TEST_SPICE_PW");
	}
	ug_spice_client_set_log(r->c, r_log, r);
	ug_spice_client_set_callbacks(r->c, &cb, r);
	assert_int_equal(ug_spice_client_connect(r->c), 0);
	assert_int_equal(ug_spice_client_connect(r->c), UG_E_STATE);
	t1 = g_timeout_add_seconds(10, r_timeout, r);
	t2 = g_timeout_add(20, r_poll_server, poll_args);
	g_main_loop_run(r->loop);
	g_source_remove(t1);
	g_source_remove(t2);
}

static void run_finish(struct run *r)
{
	ug_transport_free(r->t);
	ug_spice_client_free(r->c);
	g_main_loop_unref(r->loop);
}

static void check_happy(enum scenario sc)
{
	static uint8_t want[5000];
	struct server *sv = server_start(sc, "s3cret");
	struct run r = { .open_id = 3 };

	run_client(sv, &r, "s3cret");
	assert_true(r.connected);
	assert_int_equal(ug_spice_client_session_id(r.c), SESSION_ID);
	assert_int_equal(r.nadded, 2);
	assert_int_equal(r.added[0], 0);
	assert_int_equal(r.added[1], 3);
	assert_false(r.disconnected);
	/* The server's DATA, then its LZ4 block decompressed, in order. */
	fill_pattern(want, sizeof(want));
	assert_int_equal(r.data_len, 11 + 5000);
	assert_memory_equal(r.data, "hello bytes", 11);
	assert_memory_equal(r.data + 11, want, sizeof(want));
	g_mutex_lock(&sv->lock);
	assert_true(sv->attach_seen);
	assert_true(sv->pong_ok);
	assert_false(sv->bad_connection_id);
	/* "early" + "raw" as DATA; the 3000 compressible bytes as LZ4. */
	assert_int_equal(sv->got_len, 5 + 3 + 3000);
	assert_memory_equal(sv->got, "earlyraw", 8);
	assert_int_equal(sv->vmc_lz4, 1);
	g_mutex_unlock(&sv->lock);
	assert_non_null(strstr(r.log, "server notice: scripted notice\n"));
	assert_non_null(strstr(r.log, "admits one client"));
	assert_null(strstr(r.log, "s3cret"));
	assert_string_equal(ug_transport_describe(r.t), "spice usbredir channel 3 (127.0.0.1)");
	/* Opening it twice, or an unknown id, is refused. */
	ug_transport *t2 = NULL;
	assert_int_equal(ug_spice_client_open_usbredir(r.c, 3, &t2), UG_E_STATE);
	assert_int_equal(ug_spice_client_open_usbredir(r.c, 7, &t2), UG_E_NOTFOUND);
	assert_non_null(strstr(ug_spice_client_errmsg(r.c),
	                       "channel 7 is not in the server's channel list"));
	assert_null(t2);
	/* Disconnecting closes the transport (no disconnected callback for it). */
	ug_spice_client_disconnect(r.c);
	assert_true(r.t_closed);
	assert_false(r.disconnected);
	assert_int_equal(ug_transport_send(r.t, "x", 1), UG_E_CLOSED);
	run_finish(&r);
	server_stop(sv);
}

static void test_fake_server_happy_mini(void **state)
{
	check_happy(SC_HAPPY);
}

static void test_fake_server_happy_full_header(void **state)
{
	check_happy(SC_FULL_HEADER);
}

static void test_fake_server_wrong_password(void **state)
{
	struct server *sv = server_start(SC_HAPPY, "s3cret");
	struct run r = { .open_id = -1 };

	run_client(sv, &r, "letmein");
	assert_false(r.connected);
	assert_true(r.disconnected);
	assert_int_equal(r.disc_error, UG_E_AUTH);
	assert_non_null(strstr(r.disc_msg, "permission denied: wrong password"));
	assert_null(strstr(r.disc_msg, "letmein"));
	assert_null(strstr(r.log, "letmein"));
	assert_int_equal(ug_spice_client_is_connected(r.c), 0);
	run_finish(&r);
	server_stop(sv);
}

static void test_fake_server_sasl_only(void **state)
{
	struct server *sv = server_start(SC_SASL_ONLY, "");
	struct run r = { .open_id = -1, .free_in_disconnect = 1 };

	run_client(sv, &r, NULL);
	assert_true(r.disconnected);
	assert_int_equal(r.disc_error, UG_E_UNSUPPORTED);
	assert_non_null(strstr(r.disc_msg, "SASL"));
	assert_null(r.c);
	run_finish(&r);
	server_stop(sv);
}

static void test_fake_server_version_mismatch(void **state)
{
	struct server *sv = server_start(SC_VERSION, "");
	struct run r = { .open_id = -1 };

	run_client(sv, &r, NULL);
	assert_true(r.disconnected);
	assert_int_equal(r.disc_error, UG_E_UNSUPPORTED);
	assert_non_null(strstr(r.disc_msg, "SPICE 3.2"));
	run_finish(&r);
	server_stop(sv);
}

static void test_fake_server_no_such_channel(void **state)
{
	struct server *sv = server_start(SC_SILENT_USBREDIR, "");
	struct run r = { .open_id = 0 };

	run_client(sv, &r, NULL);
	assert_true(r.connected);
	assert_true(r.t_closed);
	assert_int_equal(r.t_error, UG_E_NOTFOUND);
	assert_non_null(strstr(r.t_msg, "without a link reply: no such channel"));
	assert_string_equal(ug_spice_client_errmsg(r.c), r.t_msg);
	assert_false(r.disconnected);
	run_finish(&r);
	server_stop(sv);
}

static void test_fake_server_corrupt_lz4(void **state)
{
	struct server *sv = server_start(SC_CORRUPT_LZ4, "");
	struct run r = { .open_id = 3 };

	run_client(sv, &r, NULL);
	assert_true(r.t_closed);
	assert_int_equal(r.t_error, UG_E_PROTO);
	assert_non_null(strstr(r.t_msg, "LZ4"));
	/* The DATA before the bad block was delivered, nothing after it. */
	assert_int_equal(r.data_len, 11);
	run_finish(&r);
	server_stop(sv);
}

static void test_fake_server_migration_refused(void **state)
{
	struct server *sv = server_start(SC_MIGRATE, "");
	struct run r = { .open_id = -1 };

	run_client(sv, &r, NULL);
	g_mutex_lock(&sv->lock);
	assert_true(sv->migrate_error_seen);
	g_mutex_unlock(&sv->lock);
	assert_non_null(strstr(r.log, "migrate to other port 5930"));
	assert_non_null(strstr(r.log, "refused"));
	assert_false(r.disconnected);
	run_finish(&r);
	server_stop(sv);
}

static void test_fake_server_stalls(void **state)
{
	struct server *sv = server_start(SC_STALL, "");
	struct run r = { .open_id = -1 };
	struct ug_spice_client_callbacks cb = { r_connected, r_added, NULL, r_disconnected };
	char uri[64];
	gint64 t0;

	r.loop = g_main_loop_new(NULL, FALSE);
	r.c = ug_spice_client_new();
	snprintf(uri, sizeof(uri), "spice://127.0.0.1:%d", sv->port);
	assert_int_equal(ug_spice_client_set_uri(r.c, uri), 0);
	ug_spice_client_set_callbacks(r.c, &cb, &r);
	ug_spice_client_set_link_timeout(r.c, 300);
	assert_int_equal(ug_spice_client_connect(r.c), 0);
	t0 = g_get_monotonic_time();
	guint t = g_timeout_add_seconds(10, r_timeout, &r);
	g_main_loop_run(r.loop);
	g_source_remove(t);
	assert_true(r.disconnected);
	assert_int_equal(r.disc_error, UG_E_TIMEOUT);
	assert_non_null(strstr(r.disc_msg, "no progress within 300 ms (waiting for the link reply)"));
	/* Not a timing assertion: only that it did not wait for the 10 s guard. */
	assert_true(g_get_monotonic_time() - t0 < 9 * G_USEC_PER_SEC);
	run_finish(&r);
	server_stop(sv);
}

static void test_connect_refused(void **state)
{
	struct run r = { .open_id = -1 };
	struct ug_spice_client_callbacks cb = { r_connected, r_added, NULL, r_disconnected };
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	char uri[64];

	/* A port that was just free: nobody listens there. */
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	port = ntohs(a.sin_port);
	close(fd);
	r.loop = g_main_loop_new(NULL, FALSE);
	r.c = ug_spice_client_new();
	snprintf(uri, sizeof(uri), "spice://127.0.0.1:%d", port);
	assert_int_equal(ug_spice_client_set_uri(r.c, uri), 0);
	ug_spice_client_set_callbacks(r.c, &cb, &r);
	/* The first run reconnects twice from inside the callback, the second after it. */
	r.reconnects_in_cb = 2;
	for (int attempt = 0; attempt < 2; attempt++) {
		r.disconnected = 0;
		assert_int_equal(ug_spice_client_connect(r.c), 0);
		guint t = g_timeout_add_seconds(5, r_timeout, &r);
		g_main_loop_run(r.loop);
		g_source_remove(t);
		assert_true(r.disconnected);
		assert_int_equal(r.disc_error, UG_E_IO);
		assert_non_null(strstr(r.disc_msg, "Connection refused"));
	}
	assert_int_equal(r.disconnects, 4);
	run_finish(&r);
}

static gboolean quit_soon(gpointer user_data)
{
	g_main_loop_quit(user_data);
	return G_SOURCE_REMOVE;
}

static void spin(GMainLoop *loop, unsigned ms)
{
	g_timeout_add(ms, quit_soon, loop);
	g_main_loop_run(loop);
}

static void test_fake_server_pause_and_limits(void **state)
{
	struct server *sv = server_start(SC_HAPPY, "");
	struct run r = { .open_id = 3 };
	uint8_t big[200] = { 0 };

	/* Connect and wait for the session by hand: this test drives the loop itself. */
	r.loop = g_main_loop_new(NULL, FALSE);
	r.c = ug_spice_client_new();
	char uri[64];
	struct ug_spice_client_callbacks cb = { r_connected, NULL, NULL, r_disconnected };
	snprintf(uri, sizeof(uri), "spice://127.0.0.1:%d", sv->port);
	assert_int_equal(ug_spice_client_set_uri(r.c, uri), 0);
	ug_spice_client_set_callbacks(r.c, &cb, &r);
	assert_int_equal(ug_spice_client_connect(r.c), 0);
	for (int i = 0; i < 100 && !ug_spice_client_is_connected(r.c); i++)
		spin(r.loop, 20);
	spin(r.loop, 100);
	assert_true(r.connected);
	assert_int_equal(ug_spice_client_open_usbredir(r.c, 3, &r.t), 0);
	ug_transport_set_callbacks(r.t, r_data, r_closed, &r);
	/* The queue limit counts bytes not yet handed to the kernel. */
	ug_transport_set_max_pending(r.t, 100);
	assert_int_equal(ug_transport_send(r.t, big, sizeof(big)), UG_E_TOOBIG);
	assert_int_equal(ug_transport_send(r.t, big, 60), 0);
	assert_int_equal(ug_transport_pending(r.t), 60);
	assert_int_equal(ug_transport_send(r.t, big, 60), UG_E_TOOBIG);
	ug_transport_set_max_pending(r.t, UG_TRANSPORT_DEFAULT_MAX_PENDING);
	/* Paused: the server's bytes wait in the socket. */
	ug_transport_pause(r.t, 1);
	spin(r.loop, 300);
	assert_int_equal(r.data_len, 0);
	assert_int_equal(ug_transport_pending(r.t), 0);
	ug_transport_pause(r.t, 0);
	for (int i = 0; i < 100 && r.data_len < 11 + 5000; i++)
		spin(r.loop, 20);
	assert_int_equal(r.data_len, 11 + 5000);
	assert_memory_equal(r.data, "hello bytes", 11);
	/* Closing by the caller: no callback follows. */
	ug_transport_close(r.t);
	assert_false(r.t_closed);
	run_finish(&r);
	server_stop(sv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_plain),
		cmocka_unit_test(test_uri_tls_and_unix),
		cmocka_unit_test(test_uri_errors),
		cmocka_unit_test(test_uri_password_refused_and_not_echoed),
		cmocka_unit_test(test_password_file),
		cmocka_unit_test(test_password_env),
		cmocka_unit_test(test_ticket_round_trip),
		cmocka_unit_test(test_ticket_bad_keys),
		cmocka_unit_test(test_client_config_errors),
		cmocka_unit_test(test_fake_server_happy_mini),
		cmocka_unit_test(test_fake_server_happy_full_header),
		cmocka_unit_test(test_fake_server_wrong_password),
		cmocka_unit_test(test_fake_server_sasl_only),
		cmocka_unit_test(test_fake_server_version_mismatch),
		cmocka_unit_test(test_fake_server_no_such_channel),
		cmocka_unit_test(test_fake_server_corrupt_lz4),
		cmocka_unit_test(test_fake_server_migration_refused),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_fake_server_stalls),
		cmocka_unit_test(test_fake_server_pause_and_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
