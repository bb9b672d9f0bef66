/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-client.h: internals of the SPICE client that unit tests reach (URI, password, ticket). */
#ifndef UG_SPICE_CLIENT_H
#define UG_SPICE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "spice-codec.h"

struct ug_spice_uri {
	char host[256];         /* without brackets for IPv6 */
	char path[108];         /* spice+unix: the socket path */
	int is_unix;
	int port;               /* 0: none */
	int tls_port;           /* 0: none */
};

/* Parses a SPICE URI (see ug_spice_client_set_uri()); err gets the reason. */
int ug_spice_uri_parse(const char *uri, struct ug_spice_uri *ret, char *err);

/* Room for the longest password plus its NUL. */
#define UG_SPICE_PASSWORD_SIZE (SPICE_MAX_PASSWORD_LENGTH + 1)

/* Reads a password file into pw (NUL-terminated); err never quotes it. */
int ug_spice_password_from_file(const char *path, char pw[UG_SPICE_PASSWORD_SIZE], char *err);
int ug_spice_password_from_env(const char *name, char pw[UG_SPICE_PASSWORD_SIZE], char *err);

/*
 * The SPICE ticket: RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) with the
 * server's DER public key over the password and its NUL. out gets
 * UG_SPICE_TICKET_SIZE bytes.
 */
int ug_spice_ticket_encrypt(const uint8_t *pubkey_der, size_t len, const char *password,
                            uint8_t out[UG_SPICE_TICKET_SIZE], char *err);

#endif /* UG_SPICE_CLIENT_H */
