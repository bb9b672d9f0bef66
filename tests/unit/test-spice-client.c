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

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common.h"
#include "spice-client.h"

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

	assert_int_equal(ug_spice_uri_parse("spice://h:5900?password=hunter2", &u, err), UG_E_INVAL);
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
	setenv("UG_TEST_SPICE_PW", "0123456789012345678901234567890123456789012345678901234567890", 1);
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
	uint8_t *der = NULL, ticket[UG_SPICE_TICKET_SIZE], ticket2[UG_SPICE_TICKET_SIZE], plain[128];
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
	assert_int_equal(ug_spice_ticket_encrypt(der, (size_t)der_len, "x", ticket, err), UG_E_PROTO);
	assert_non_null(strstr(err, "RSA-1024"));
	OPENSSL_free(der);
	EVP_PKEY_free(key);
	/* Over 60 bytes is refused before encrypting. */
	char pw61[62];
	memset(pw61, 'y', 61);
	pw61[61] = '\0';
	assert_int_equal(ug_spice_ticket_encrypt(junk, sizeof(junk), pw61, ticket, err), UG_E_INVAL);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
