/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-error.c: unit tests of the error list, ug_strerror() and detail messages (lib/error.c). */
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
		cmocka_unit_test(test_version_matches_header),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
