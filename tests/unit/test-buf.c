/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-buf.c: unit tests of the bounded buffer (lib/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "usbgate.h"

static void test_append_within_max(void **state)
{
	struct ug_buf b;
	uint8_t chunk[100];

	memset(chunk, 0xab, sizeof(chunk));
	ug_buf_init(&b, 1000);
	for (int i = 0; i < 10; i++)
		assert_int_equal(ug_buf_append(&b, chunk, sizeof(chunk)), 0);
	assert_int_equal(b.len, 1000);
	assert_int_equal(ug_buf_peek(&b)[999], 0xab);
	ug_buf_release(&b);
	assert_null(b.data);
	assert_int_equal(b.max, 1000);
}

static void test_append_over_max_leaves_buffer_unchanged(void **state)
{
	struct ug_buf b;
	uint8_t chunk[600] = { 1 };

	ug_buf_init(&b, 1000);
	assert_int_equal(ug_buf_append(&b, chunk, sizeof(chunk)), 0);
	assert_int_equal(ug_buf_append(&b, chunk, sizeof(chunk)), UG_E_TOOBIG);
	assert_int_equal(b.len, 600);
	ug_buf_release(&b);
}

static void test_huge_reserve_allocates_nothing(void **state)
{
	struct ug_buf b;

	ug_buf_init(&b, 1 << 20);
	assert_int_equal(ug_buf_reserve(&b, SIZE_MAX), UG_E_TOOBIG);
	assert_int_equal(ug_buf_reserve(&b, (1 << 20) + 1), UG_E_TOOBIG);
	assert_null(b.data);
	ug_buf_release(&b);
}

static void test_consume_then_append_keeps_order(void **state)
{
	struct ug_buf b;
	uint8_t in[300];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	ug_buf_init(&b, 300);
	assert_int_equal(ug_buf_append(&b, in, 300), 0);
	ug_buf_consume(&b, 250);
	assert_int_equal(b.len, 50);
	assert_int_equal(ug_buf_peek(&b)[0], 250 & 0xff);
	/* Appending 250 more must slide, not exceed max. */
	assert_int_equal(ug_buf_append(&b, in, 250), 0);
	assert_int_equal(b.len, 300);
	assert_int_equal(ug_buf_peek(&b)[0], 250 & 0xff);
	assert_int_equal(ug_buf_peek(&b)[50], 0);
	assert_int_equal(ug_buf_peek(&b)[299], 249);
	ug_buf_consume(&b, 1000);
	assert_int_equal(b.len, 0);
	ug_buf_release(&b);
}

static void test_tail_commit(void **state)
{
	struct ug_buf b;
	uint8_t *t;

	ug_buf_init(&b, 16);
	t = ug_buf_tail(&b, 16);
	assert_non_null(t);
	memcpy(t, "0123456789abcdef", 16);
	ug_buf_commit(&b, 16);
	assert_memory_equal(ug_buf_peek(&b), "0123456789abcdef", 16);
	assert_null(ug_buf_tail(&b, 1));
	ug_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_within_max),
		cmocka_unit_test(test_append_over_max_leaves_buffer_unchanged),
		cmocka_unit_test(test_huge_reserve_allocates_nothing),
		cmocka_unit_test(test_consume_then_append_keeps_order),
		cmocka_unit_test(test_tail_commit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
