/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common.h: internal helpers shared by every lib/ module (export macro, byte order, messages). */
#ifndef UG_COMMON_H
#define UG_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "usbgate.h"

/* Marks a definition as part of the public ABI (the build hides the rest). */
#define UG_EXPORT __attribute__((visibility("default")))

#define UG_NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Wire integers are read and written byte by byte: no alignment, no casts. */
static inline uint16_t ug_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t ug_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline uint64_t ug_get_le64(const uint8_t *p)
{
	return (uint64_t)ug_get_le32(p) | ((uint64_t)ug_get_le32(p + 4) << 32);
}

static inline uint16_t ug_get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t ug_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	       (uint32_t)p[3];
}

static inline void ug_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void ug_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void ug_put_le64(uint8_t *p, uint64_t v)
{
	ug_put_le32(p, (uint32_t)v);
	ug_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline void ug_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void ug_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Size of every object's detail-message buffer. */
#define UG_ERRMSG_SIZE 256

/*
 * Formats an object's detail message into buf (UG_ERRMSG_SIZE bytes) and
 * returns code, so that error paths read "return ug_errmsg_set(s->err, UG_E_X,
 * "...", ...);".
 */
int ug_errmsg_set(char *buf, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Size of one log message, its NUL included; a longer one is cut. */
#define UG_LOG_MSG_SIZE 512

/*
 * Formats one message and hands it to an object's log callback fn with
 * user_data (nothing happens when fn is NULL). Every module logs through
 * these, usually behind a one-line macro of its own:
 *   #define logf_(o, ...) ug_log_emit((o)->log, (o)->log_user, __VA_ARGS__)
 * The message is a stack buffer, valid only during the callback.
 */
void ug_log_emit(ug_log_fn fn, void *user_data, int level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void ug_log_vemit(ug_log_fn fn, void *user_data, int level, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* The first error on OpenSSL's queue as text, for messages, and the queue
 * cleared ("no detail from OpenSSL" when it is empty). A thread's buffer. */
const char *ug_openssl_err(void);

#endif /* UG_COMMON_H */
