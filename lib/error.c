/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* error.c: the library version, ug_strerror() from the one error list, detail and log messages. */
#include <openssl/err.h>
#include <stdio.h>

#include "common.h"

UG_EXPORT const char *ug_version(void)
{
	return PACKAGE_VERSION;
}

UG_EXPORT const char *ug_strerror(int code)
{
	switch (code) {
	case UG_OK:
		return "success";
#define UG_ERRNO_CASE_(name, value, text) case (value): return text;
	UG_ERRNO_MAP(UG_ERRNO_CASE_)
#undef UG_ERRNO_CASE_
	default:
		return "unknown error code";
	}
}

int ug_errmsg_set(char *buf, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, UG_ERRMSG_SIZE, fmt, ap);
	va_end(ap);
	return code;
}

void ug_log_vemit(ug_log_fn fn, void *user_data, int level, const char *fmt, va_list ap)
{
	char msg[UG_LOG_MSG_SIZE];

	if (!fn)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fn(level, msg, user_data);
}

void ug_log_emit(ug_log_fn fn, void *user_data, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ug_log_vemit(fn, user_data, level, fmt, ap);
	va_end(ap);
}

const char *ug_openssl_err(void)
{
	static __thread char buf[160];
	unsigned long e = ERR_get_error();

	if (!e)
		return "no detail from OpenSSL";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}
