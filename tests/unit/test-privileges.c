/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-privileges.c: unit tests of account resolution and the privilege drop (lib/privileges.c). */
/* getresuid() and getresgid(). */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

/* A uid and a gid no database entry uses, found at run time. */
static uint32_t free_uid(void)
{
	for (uint32_t id = 4242; id < 5242; id++)
		if (!getpwuid((uid_t)id))
			return id;
	fail_msg("no free uid between 4242 and 5241");
	return 0;
}

static uint32_t free_gid(uint32_t from)
{
	for (uint32_t id = from; id < from + 1000; id++)
		if (!getgrgid((gid_t)id))
			return id;
	fail_msg("no free gid from %u", from);
	return 0;
}

static int has_group(const ug_privileges *p, uint32_t gid)
{
	size_t n;
	const uint32_t *g = ug_privileges_groups(p, &n);

	for (size_t i = 0; i < n; i++)
		if (g[i] == gid)
			return 1;
	return 0;
}

static void test_resolve_root_by_name(void **state)
{
	ug_privileges *p = NULL;
	char err[256];

	assert_int_equal(ug_privileges_resolve("root", &p, err, sizeof(err)), 0);
	assert_int_equal(ug_privileges_uid(p), 0);
	assert_int_equal(ug_privileges_gid(p), 0);
	assert_true(has_group(p, 0));
	assert_true(strncmp(ug_privileges_describe(p), "root:root (uid 0, gid 0, groups ", 32) == 0);
	ug_privileges_free(p);
}

static void test_resolve_nobody_by_name_and_number(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	ug_privileges *p = NULL, *q = NULL;
	char err[256], num[16], want[128];
	struct group *gr;

	assert_non_null(pw);
	gr = getgrgid(pw->pw_gid);
	assert_int_equal(ug_privileges_resolve("nobody", &p, err, sizeof(err)), 0);
	assert_int_equal(ug_privileges_uid(p), pw->pw_uid);
	assert_int_equal(ug_privileges_gid(p), pw->pw_gid);
	assert_true(has_group(p, pw->pw_gid));
	snprintf(want, sizeof(want), "nobody:%s (uid %u, gid %u, groups ", gr ? gr->gr_name : "?",
	         (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	assert_true(strncmp(ug_privileges_describe(p), want, strlen(want)) == 0);
	/* The uid as a number finds the same entry, and its name. */
	snprintf(num, sizeof(num), "%u", (unsigned)pw->pw_uid);
	assert_int_equal(ug_privileges_resolve(num, &q, err, sizeof(err)), 0);
	assert_int_equal(ug_privileges_uid(q), pw->pw_uid);
	assert_int_equal(ug_privileges_gid(q), pw->pw_gid);
	assert_string_equal(ug_privileges_describe(q), ug_privileges_describe(p));
	ug_privileges_free(p);
	ug_privileges_free(q);
}

static void test_resolve_explicit_group(void **state)
{
	ug_privileges *p = NULL;
	char err[256], spec[64];
	uint32_t gid = free_gid(4300);

	/* By name: gid 0 from the group database. */
	assert_int_equal(ug_privileges_resolve("nobody:root", &p, err, sizeof(err)), 0);
	assert_int_equal(ug_privileges_gid(p), 0);
	assert_true(has_group(p, 0));
	assert_non_null(strstr(ug_privileges_describe(p), "nobody:root (uid "));
	ug_privileges_free(p);
	/* A gid without an entry is fine, and named by its number. */
	snprintf(spec, sizeof(spec), "nobody:%u", gid);
	assert_int_equal(ug_privileges_resolve(spec, &p, err, sizeof(err)), 0);
	assert_int_equal(ug_privileges_gid(p), gid);
	assert_true(has_group(p, gid));
	ug_privileges_free(p);
}

static void test_resolve_uid_without_entry(void **state)
{
	uint32_t uid = free_uid(), gid = free_gid(4300);
	ug_privileges *p = NULL;
	const uint32_t *g;
	char err[256], spec[64], want[128];
	size_t n;

	snprintf(spec, sizeof(spec), "%u", uid);
	assert_int_equal(ug_privileges_resolve(spec, &p, err, sizeof(err)), UG_E_INVAL);
	assert_null(p);
	snprintf(want, sizeof(want), "uid %u has no passwd entry, so no primary group: give one, "
	         "as %u:GID", uid, uid);
	assert_string_equal(err, want);

	snprintf(spec, sizeof(spec), "%u:%u", uid, gid);
	assert_int_equal(ug_privileges_resolve(spec, &p, err, sizeof(err)), 0);
	assert_int_equal(ug_privileges_uid(p), uid);
	assert_int_equal(ug_privileges_gid(p), gid);
	g = ug_privileges_groups(p, &n);
	assert_int_equal(n, 1);
	assert_int_equal(g[0], gid);
	snprintf(want, sizeof(want), "%u:%u (uid %u, gid %u, groups %u)", uid, gid, uid, gid, gid);
	assert_string_equal(ug_privileges_describe(p), want);
	ug_privileges_free(p);
}

static void test_resolve_unknown_names(void **state)
{
	ug_privileges *p = NULL;
	char err[256];

	assert_int_equal(ug_privileges_resolve("ug-no-such-user", &p, err, sizeof(err)),
	                 UG_E_NOTFOUND);
	assert_null(p);
	assert_string_equal(err, "no user \"ug-no-such-user\" in the passwd database");
	assert_int_equal(ug_privileges_resolve("nobody:ug-no-such-group", &p, err, sizeof(err)),
	                 UG_E_NOTFOUND);
	assert_null(p);
	assert_string_equal(err, "no group \"ug-no-such-group\" in the group database");
	/* Not a number and not a name. */
	assert_int_equal(ug_privileges_resolve("-1", &p, err, sizeof(err)), UG_E_NOTFOUND);
	assert_null(p);
}

static void test_resolve_malformed(void **state)
{
	static const char *const bad[] = { "", ":", ":0", "nobody:", "root::" };
	ug_privileges *p = NULL;
	char err[256], longer[UG_PRIVILEGES_SPEC_MAX + 2], exact[UG_PRIVILEGES_SPEC_MAX + 1];

	for (size_t i = 0; i < UG_NELEMS(bad); i++) {
		err[0] = '\0';
		assert_int_equal(ug_privileges_resolve(bad[i], &p, err, sizeof(err)), UG_E_INVAL);
		assert_null(p);
		assert_non_null(strstr(err, "expected USER or USER:GROUP"));
	}
	assert_int_equal(ug_privileges_resolve("4294967295", &p, err, sizeof(err)), UG_E_INVAL);
	assert_string_equal(err, "uid 4294967295 is out of range (0 to 4294967294)");
	assert_int_equal(ug_privileges_resolve("99999999999", &p, err, sizeof(err)), UG_E_INVAL);
	assert_string_equal(err, "uid 99999999999 is out of range (0 to 4294967294)");
	assert_int_equal(ug_privileges_resolve("root:4294967295", &p, err, sizeof(err)),
	                 UG_E_INVAL);
	assert_string_equal(err, "gid 4294967295 is out of range (0 to 4294967294)");
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	assert_int_equal(ug_privileges_resolve(longer, &p, err, sizeof(err)), UG_E_INVAL);
	assert_non_null(strstr(err, "is longer than 256 bytes"));
	/* The longest accepted text gets looked up. */
	memset(exact, 'a', sizeof(exact) - 1);
	exact[sizeof(exact) - 1] = '\0';
	assert_int_equal(ug_privileges_resolve(exact, &p, err, sizeof(err)), UG_E_NOTFOUND);
	assert_int_equal(ug_privileges_resolve(NULL, &p, err, sizeof(err)), UG_E_INVAL);
	assert_int_equal(ug_privileges_resolve("root", NULL, err, sizeof(err)), UG_E_INVAL);
	/* Small or absent message buffers are fine. */
	assert_int_equal(ug_privileges_resolve("ug-no-such-user", &p, err, 8), UG_E_NOTFOUND);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(ug_privileges_resolve("ug-no-such-user", &p, NULL, 0), UG_E_NOTFOUND);
	assert_null(p);
	ug_privileges_free(NULL);
}

static void test_drop_to_root_is_a_noop(void **state)
{
	ug_privileges *p = NULL;
	char err[256];
	uid_t ru, eu, su;

	assert_int_equal(ug_privileges_resolve("0", &p, err, sizeof(err)), 0);
	assert_int_equal(getresuid(&ru, &eu, &su), 0);
	assert_int_equal(ug_privileges_drop(p), 1);
	assert_non_null(strstr(ug_privileges_errmsg(p), "is root: privileges are not dropped"));
	{
		uid_t ru2, eu2, su2;

		assert_int_equal(getresuid(&ru2, &eu2, &su2), 0);
		assert_true(ru == ru2 && eu == eu2 && su == su2);
	}
	ug_privileges_free(p);
}

/* ---- the drop itself: in a forked child, as root -------------------------- */

static int root_or_skip(const char *what)
{
	if (geteuid() == 0)
		return 1;
	/* cmocka 1.1's skip() reads as a failure to automake's TAP driver;
	 * the case passes and says loudly what it did not test. */
	print_message("# SKIP %s needs root (running as uid %u): the drop was NOT tested\n",
	              what, (unsigned)geteuid());
	return 0;
}

struct thread_ids {
	int go[2];                      /* the main thread writes a byte after the drop */
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
};

/* Reports its own ids (credentials are per thread in the kernel). */
static void *thread_main(void *data)
{
	struct thread_ids *t = data;
	char c;

	if (read(t->go[0], &c, 1) != 1)
		return NULL;
	getresuid(&t->ru, &t->eu, &t->su);
	getresgid(&t->rg, &t->eg, &t->sg);
	return NULL;
}

/* The child's checks; returns 0 or the number of the failed step. */
static int child_drop(const char *spec, uint32_t uid, uint32_t gid, const char *other_spec)
{
	struct thread_ids t;
	pthread_t th;
	ug_privileges *p = NULL, *q = NULL;
	char err[256];
	uid_t ru, eu, su;
	gid_t rg, eg, sg, groups[64];
	int n;

	memset(&t, 0, sizeof(t));
	if (ug_privileges_resolve(spec, &p, err, sizeof(err)) != 0)
		return 1;
	/* A thread started while root, as libusb's event thread is. */
	if (pipe(t.go) != 0 || pthread_create(&th, NULL, thread_main, &t) != 0)
		return 2;
	if (ug_privileges_drop(p) != 0) {
		fprintf(stderr, "# drop: %s\n", ug_privileges_errmsg(p));
		return 3;
	}
	if (write(t.go[1], "x", 1) != 1 || pthread_join(th, NULL) != 0)
		return 4;
	if (t.ru != uid || t.eu != uid || t.su != uid || t.rg != gid || t.eg != gid ||
	    t.sg != gid)
		return 5;
	if (getresuid(&ru, &eu, &su) != 0 || ru != uid || eu != uid || su != uid)
		return 6;
	if (getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid)
		return 7;
	n = getgroups((int)UG_NELEMS(groups), groups);
	if (n < 1)
		return 8;
	for (int i = 0; i < n; i++)
		if (groups[i] == 0 && gid != 0)
			return 9;
	if (setuid(0) == 0 || seteuid(0) == 0)
		return 10;
	/* Again: nothing to do, said so. */
	if (ug_privileges_drop(p) != 1 ||
	    !strstr(ug_privileges_errmsg(p), "already running as uid"))
		return 11;
	/* To someone else, without root: refused, naming the step. */
	if (ug_privileges_resolve(other_spec, &q, err, sizeof(err)) != 0)
		return 12;
	if (ug_privileges_drop(q) != UG_E_STATE || !strstr(ug_privileges_errmsg(q), "setgroups") ||
	    !strstr(ug_privileges_errmsg(q), "Operation not permitted")) {
		fprintf(stderr, "# second drop: %s\n", ug_privileges_errmsg(q));
		return 13;
	}
	ug_privileges_free(p);
	ug_privileges_free(q);
	return 0;
}

static void run_child(const char *spec, uint32_t uid, uint32_t gid, const char *other)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_drop(spec, uid, gid, other));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("dropping to %s failed at step %d", spec, WEXITSTATUS(status));
}

static void test_drop_to_nobody(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	char other[64];

	if (!root_or_skip("dropping to nobody"))
		return;
	assert_non_null(pw);
	snprintf(other, sizeof(other), "%u:%u", free_uid(), free_gid(4300));
	run_child("nobody", (uint32_t)pw->pw_uid, (uint32_t)pw->pw_gid, other);
}

static void test_drop_to_bare_uid_and_gid(void **state)
{
	uint32_t uid = free_uid(), gid = free_gid(4300);
	char spec[64];

	if (!root_or_skip("dropping to a bare uid"))
		return;
	snprintf(spec, sizeof(spec), "%u:%u", uid, gid);
	run_child(spec, uid, gid, "nobody");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resolve_root_by_name),
		cmocka_unit_test(test_resolve_nobody_by_name_and_number),
		cmocka_unit_test(test_resolve_explicit_group),
		cmocka_unit_test(test_resolve_uid_without_entry),
		cmocka_unit_test(test_resolve_unknown_names),
		cmocka_unit_test(test_resolve_malformed),
		cmocka_unit_test(test_drop_to_root_is_a_noop),
		cmocka_unit_test(test_drop_to_nobody),
		cmocka_unit_test(test_drop_to_bare_uid_and_gid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
