/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-error.c: unit tests of the error list, ug_strerror(), detail and log messages (lib/error.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"

static void test_every_code_has_its_own_text(void **state)
{
	static const int codes[] = {
#define X_(name, value, text) UG_E_##name,
		UG_ERRNO_MAP(X_)
#undef X_
	};
	static const char *const texts[] = {
#define X_(name, value, text) text,
		UG_ERRNO_MAP(X_)
#undef X_
	};

	for (size_t i = 0; i < UG_NELEMS(codes); i++) {
		assert_true(codes[i] < 0);
		assert_string_equal(ug_strerror(codes[i]), texts[i]);
		for (size_t j = 0; j < i; j++)
			assert_int_not_equal(codes[i], codes[j]);
	}
	assert_string_equal(ug_strerror(0), "success");
	assert_string_equal(ug_strerror(-9999), "unknown error code");
}

static void test_errmsg_set_formats_and_returns_code(void **state)
{
	char msg[UG_ERRMSG_SIZE];
	char long_arg[600];

	assert_int_equal(ug_errmsg_set(msg, UG_E_TOOBIG, "packet type %u claims %u bytes, limit %u",
	                               101u, 4294967295u, 134217728u),
	                 UG_E_TOOBIG);
	assert_string_equal(msg, "packet type 101 claims 4294967295 bytes, limit 134217728");
	memset(long_arg, 'x', sizeof(long_arg) - 1);
	long_arg[sizeof(long_arg) - 1] = 0;
	ug_errmsg_set(msg, UG_E_PROTO, "%s", long_arg);
	assert_int_equal(strlen(msg), UG_ERRMSG_SIZE - 1);
}

struct logged {
	int calls, level;
	char msg[2 * UG_LOG_MSG_SIZE];
};

static void log_cb(int level, const char *message, void *user_data)
{
	struct logged *l = user_data;

	l->calls++;
	l->level = level;
	snprintf(l->msg, sizeof(l->msg), "%s", message);
}

static void test_log_emit_formats_cuts_and_skips_without_callback(void **state)
{
	struct logged l = { 0 };
	char long_arg[UG_LOG_MSG_SIZE + 100];

	ug_log_emit(log_cb, &l, UG_LOG_WARNING, "session %d: %s offset %llu", 3, "guest->host",
	            80ull);
	assert_int_equal(l.calls, 1);
	assert_int_equal(l.level, UG_LOG_WARNING);
	assert_string_equal(l.msg, "session 3: guest->host offset 80");
	memset(long_arg, 'y', sizeof(long_arg) - 1);
	long_arg[sizeof(long_arg) - 1] = 0;
	ug_log_emit(log_cb, &l, UG_LOG_DEBUG, "%s", long_arg);
	assert_int_equal(l.calls, 2);
	assert_int_equal(strlen(l.msg), UG_LOG_MSG_SIZE - 1);
	/* No callback: nothing happens (and nothing is formatted). */
	ug_log_emit(NULL, &l, UG_LOG_ERROR, "%s", "unseen");
	assert_int_equal(l.calls, 2);
}

static void test_version_matches_header(void **state)
{
	char want[32];

	snprintf(want, sizeof(want), "%d.%d.%d", UG_VERSION_MAJOR, UG_VERSION_MINOR,
	         UG_VERSION_MICRO);
	assert_string_equal(ug_version(), want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_code_has_its_own_text),
		cmocka_unit_test(test_errmsg_set_formats_and_returns_code),
		cmocka_unit_test(test_log_emit_formats_cuts_and_skips_without_callback),
		cmocka_unit_test(test_version_matches_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
