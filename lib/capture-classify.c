/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* capture-classify.c: tells raw usbredir, SPICE and TLS connections apart by their first bytes. */
#include <string.h>

#include "common.h"

/* The verdict of one test on one side's first bytes. */
enum verdict {
	NO = 0,     /* these bytes cannot start that protocol */
	MAYBE = 1,  /* consistent so far, more bytes needed */
	YES = 2,
};

/* A hello's caps words beyond this many would be absurd: not a hello. */
#define HELLO_MAX_CAP_WORDS 64

/*
 * usbredir hello: u32 type 0, u32 length 64 + 4 * n, u32 id 0 (hellos always
 * carry a 32-bit id), then char version[64]: printable text, NUL-terminated.
 */
static enum verdict usbredir_hello(const uint8_t *b, size_t n)
{
	uint32_t len;

	/* Type 0 and id 0: every byte present must be zero. */
	for (size_t i = 0; i < 12 && i < n; i++) {
		if ((i < 4 || i >= 8) && b[i] != 0)
			return NO;
	}
	if (n < 8)
		return MAYBE;
	len = ug_get_le32(b + 4);
	if (len < 64 || len > 64 + 4 * HELLO_MAX_CAP_WORDS || (len - 64) % 4 != 0)
		return NO;
	for (size_t i = 12; i < 12 + 64; i++) {
		if (i >= n)
			return MAYBE;
		if (b[i] == 0)
			return i > 12 ? YES : NO;
		if (b[i] < 0x20 || b[i] > 0x7e)
			return NO;
	}
	return NO;      /* no NUL in 64 bytes */
}

/* SPICE link header: "REDQ", u32 major 2. */
static enum verdict spice_link(const uint8_t *b, size_t n)
{
	static const uint8_t magic[8] = { 'R', 'E', 'D', 'Q', 2, 0, 0, 0 };
	size_t k = n < 8 ? n : 8;

	if (memcmp(b, magic, k) != 0)
		return NO;
	return n >= 8 ? YES : MAYBE;
}

/* TLS: a handshake record (0x16), version 3.x, length, then a client hello
 * (client side) or server hello (server side). */
static enum verdict tls_record(const uint8_t *b, size_t n, uint8_t hello_type)
{
	if (n >= 1 && b[0] != 0x16)
		return NO;
	if (n >= 2 && b[1] != 0x03)
		return NO;
	if (n >= 3 && b[2] > 0x04)
		return NO;
	if (n >= 5 && (ug_get_be16(b + 3) == 0 || ug_get_be16(b + 3) > 16384 + 2048))
		return NO;
	if (n >= 6)
		return b[5] == hello_type ? YES : NO;
	return MAYBE;
}

UG_EXPORT enum ug_capture_proto ug_capture_classify(const uint8_t *c2s, size_t c2s_len,
                                                    const uint8_t *s2c, size_t s2c_len)
{
	static const uint8_t none[1];
	enum verdict v[3][2];
	int maybe = 0;

	if (!c2s || !c2s_len) {
		c2s = none;
		c2s_len = 0;
	}
	if (!s2c || !s2c_len) {
		s2c = none;
		s2c_len = 0;
	}
	v[0][0] = usbredir_hello(c2s, c2s_len);
	v[0][1] = usbredir_hello(s2c, s2c_len);
	v[1][0] = spice_link(c2s, c2s_len);
	v[1][1] = spice_link(s2c, s2c_len);
	v[2][0] = tls_record(c2s, c2s_len, 1);
	v[2][1] = tls_record(s2c, s2c_len, 2);
	for (int p = 0; p < 3; p++) {
		if (v[p][0] == YES || v[p][1] == YES)
			return p == 0 ? UG_CAPTURE_PROTO_USBREDIR :
			       p == 1 ? UG_CAPTURE_PROTO_SPICE : UG_CAPTURE_PROTO_TLS;
		if (v[p][0] == MAYBE || v[p][1] == MAYBE)
			maybe = 1;
	}
	return maybe ? UG_CAPTURE_PROTO_NEED_MORE : UG_CAPTURE_PROTO_UNKNOWN;
}

UG_EXPORT const char *ug_capture_proto_name(enum ug_capture_proto proto)
{
	switch (proto) {
	case UG_CAPTURE_PROTO_NEED_MORE:
		return "need-more";
	case UG_CAPTURE_PROTO_USBREDIR:
		return "usbredir";
	case UG_CAPTURE_PROTO_SPICE:
		return "spice";
	case UG_CAPTURE_PROTO_TLS:
		return "tls";
	default:
		return "unknown";
	}
}
