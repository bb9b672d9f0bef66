/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* privileges.c: resolving "USER[:GROUP]" and dropping root to it (groups, gids, uids), then checking. */
/* getresuid(), setresuid() and friends. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "common.h"

/* NSS entries larger than this are refused rather than chased. */
#define ENTRY_BUF_MAX (1024u * 1024u)
/* Groups listed in the description; the rest is "...". */
#define DESCRIBE_GROUPS 16

struct ug_privileges {
	uint32_t uid, gid;
	char *user;                 /* the passwd name, or the uid as text */
	char *group;                /* the group name, or the gid as text */
	uint32_t *groups;           /* supplementary groups, gid included */
	size_t n_groups;
	char *describe;
	char err[UG_ERRMSG_SIZE];
};

static void set_err(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!buf || size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

/* Decimal id: digits only, below (uint32_t)-1, which means "no change"
 * to the set*id calls. Returns 0 with *ret_id, or -1. */
static int parse_id(const char *s, uint32_t *ret_id)
{
	uint64_t v = 0;

	if (*s == '\0' || strlen(s) > 10)
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v >= UINT32_MAX)
		return -1;
	*ret_id = (uint32_t)v;
	return 0;
}

static int all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* The two NSS databases looked up here, and the words their errors use. */
enum nss_db { NSS_PASSWD, NSS_GROUP };

static int nss_call(enum nss_db db, const char *name, uint32_t id, void *ret_entry, char *buf,
                    size_t size, int *found)
{
	int r;

	if (db == NSS_PASSWD) {
		struct passwd *res = NULL;

		r = name ? getpwnam_r(name, ret_entry, buf, size, &res)
		         : getpwuid_r((uid_t)id, ret_entry, buf, size, &res);
		*found = res != NULL;
	} else {
		struct group *res = NULL;

		r = name ? getgrnam_r(name, ret_entry, buf, size, &res)
		         : getgrgid_r((gid_t)id, ret_entry, buf, size, &res);
		*found = res != NULL;
	}
	return r;
}

/*
 * One lookup by name (name != NULL) or id in the passwd or group database,
 * growing the string buffer on ERANGE up to ENTRY_BUF_MAX. Returns 1 found
 * (the entry's strings live in *ret_buf, freed by the caller), 0 not found,
 * or a negative UG_E_* with the reason in errbuf.
 */
static int nss_lookup(enum nss_db db, const char *name, uint32_t id, void *ret_entry,
                      char **ret_buf, char *errbuf, size_t errbuf_size)
{
	size_t size = 16384;

	for (;;) {
		char *buf = malloc(size);
		int found, r;

		if (!buf) {
			set_err(errbuf, errbuf_size, "out of memory");
			return UG_E_NOMEM;
		}
		r = nss_call(db, name, id, ret_entry, buf, size, &found);
		if (r == 0 && found) {
			*ret_buf = buf;
			return 1;
		}
		free(buf);
		/* "Not found" comes back as 0 or as one of these, by NSS module. */
		if (r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM)
			return 0;
		if (r == ERANGE && size < ENTRY_BUF_MAX) {
			size *= 2;
			continue;
		}
		if (name)
			set_err(errbuf, errbuf_size, "looking up %s \"%.64s\": %s",
			        db == NSS_PASSWD ? "user" : "group", name,
			        r == ERANGE ? "entry larger than 1048576 bytes" : strerror(r));
		else
			set_err(errbuf, errbuf_size, "looking up %s %u: %s",
			        db == NSS_PASSWD ? "uid" : "gid", id,
			        r == ERANGE ? "entry larger than 1048576 bytes" : strerror(r));
		return UG_E_IO;
	}
}

static int lookup_user(const char *name, uint32_t uid, struct passwd *ret_pw, char **ret_buf,
                       char *errbuf, size_t errbuf_size)
{
	return nss_lookup(NSS_PASSWD, name, uid, ret_pw, ret_buf, errbuf, errbuf_size);
}

static int lookup_group(const char *name, uint32_t gid, struct group *ret_gr, char **ret_buf,
                        char *errbuf, size_t errbuf_size)
{
	return nss_lookup(NSS_GROUP, name, gid, ret_gr, ret_buf, errbuf, errbuf_size);
}

/* USER's memberships plus gid, bounded by the system's NGROUPS_MAX. */
static int member_groups(ug_privileges *p, char *errbuf, size_t errbuf_size)
{
	long max = sysconf(_SC_NGROUPS_MAX);
	int n = 32;

	if (max <= 0 || max > 65536)
		max = 65536;
	for (;;) {
		gid_t *list = calloc((size_t)n, sizeof(gid_t));
		int got = n;

		if (!list) {
			set_err(errbuf, errbuf_size, "out of memory");
			return UG_E_NOMEM;
		}
		if (getgrouplist(p->user, (gid_t)p->gid, list, &got) >= 0) {
			if (got > max) {
				free(list);
				set_err(errbuf, errbuf_size, "user \"%.64s\" is in %d groups, more "
				        "than the system's limit of %ld", p->user, got, max);
				return UG_E_INVAL;
			}
			p->groups = calloc((size_t)got, sizeof(uint32_t));
			if (!p->groups) {
				free(list);
				set_err(errbuf, errbuf_size, "out of memory");
				return UG_E_NOMEM;
			}
			for (int i = 0; i < got; i++)
				p->groups[i] = (uint32_t)list[i];
			p->n_groups = (size_t)got;
			free(list);
			return 0;
		}
		free(list);
		/* got now holds the number needed (glibc); grow to it, bounded. */
		if (got <= n)
			got = n * 2;
		if (got > max) {
			set_err(errbuf, errbuf_size, "user \"%.64s\" is in %d groups or more, more "
			        "than the system's limit of %ld", p->user, got, max);
			return UG_E_INVAL;
		}
		n = got;
	}
}

static int make_describe(ug_privileges *p)
{
	char buf[64 + 64 + 96 + DESCRIBE_GROUPS * 12];
	size_t used;

	snprintf(buf, sizeof(buf), "%.64s:%.64s (uid %u, gid %u, groups ", p->user, p->group,
	         p->uid, p->gid);
	used = strlen(buf);
	for (size_t i = 0; i < p->n_groups && i < DESCRIBE_GROUPS; i++) {
		snprintf(buf + used, sizeof(buf) - used, i ? ",%u" : "%u", p->groups[i]);
		used = strlen(buf);
	}
	snprintf(buf + used, sizeof(buf) - used, "%s)",
	         p->n_groups > DESCRIBE_GROUPS ? ",..." : "");
	p->describe = strdup(buf);
	return p->describe ? 0 : UG_E_NOMEM;
}

/* USER part: fills uid, user and (from the entry) gid; *ret_has_entry. */
static int resolve_user(ug_privileges *p, const char *text, int *ret_has_entry, char *errbuf,
                        size_t errbuf_size)
{
	struct passwd pw;
	char *buf = NULL;
	uint32_t id;
	int r;

	r = lookup_user(text, 0, &pw, &buf, errbuf, errbuf_size);
	if (r == 0 && all_digits(text)) {
		if (parse_id(text, &id) < 0) {
			set_err(errbuf, errbuf_size, "uid %.32s is out of range (0 to 4294967294)",
			        text);
			return UG_E_INVAL;
		}
		r = lookup_user(NULL, id, &pw, &buf, errbuf, errbuf_size);
		if (r == 0) {
			/* A bare uid is fine (containers, dynamic users), but it has
			 * no primary group to take. */
			p->uid = id;
			p->user = strdup(text);
			*ret_has_entry = 0;
			return p->user ? 0 : UG_E_NOMEM;
		}
	}
	if (r < 0)
		return r;
	if (r == 0) {
		set_err(errbuf, errbuf_size, "no user \"%.64s\" in the passwd database", text);
		return UG_E_NOTFOUND;
	}
	p->uid = (uint32_t)pw.pw_uid;
	p->gid = (uint32_t)pw.pw_gid;
	p->user = strdup(pw.pw_name);
	free(buf);
	*ret_has_entry = 1;
	return p->user ? 0 : UG_E_NOMEM;
}

/* The name of gid for the description: its group entry, else the number. */
static int name_primary_group(ug_privileges *p, char *errbuf, size_t errbuf_size)
{
	struct group gr;
	char *buf = NULL, num[16];
	int r = lookup_group(NULL, p->gid, &gr, &buf, errbuf, errbuf_size);

	if (r < 0)
		return r;
	if (r == 0) {
		snprintf(num, sizeof(num), "%u", p->gid);
		p->group = strdup(num);
	} else {
		p->group = strdup(gr.gr_name);
		free(buf);
	}
	return p->group ? 0 : UG_E_NOMEM;
}

/* GROUP part: fills gid and group. */
static int resolve_group(ug_privileges *p, const char *text, char *errbuf, size_t errbuf_size)
{
	struct group gr;
	char *buf = NULL;
	uint32_t id;
	int r;

	r = lookup_group(text, 0, &gr, &buf, errbuf, errbuf_size);
	if (r == 0 && all_digits(text)) {
		if (parse_id(text, &id) < 0) {
			set_err(errbuf, errbuf_size, "gid %.32s is out of range (0 to 4294967294)",
			        text);
			return UG_E_INVAL;
		}
		/* A gid needs no entry; with one, its name is shown. */
		p->gid = id;
		return name_primary_group(p, errbuf, errbuf_size);
	}
	if (r < 0)
		return r;
	if (r == 0) {
		set_err(errbuf, errbuf_size, "no group \"%.64s\" in the group database", text);
		return UG_E_NOTFOUND;
	}
	p->gid = (uint32_t)gr.gr_gid;
	p->group = strdup(gr.gr_name);
	free(buf);
	return p->group ? 0 : UG_E_NOMEM;
}

UG_EXPORT int ug_privileges_resolve(const char *spec, ug_privileges **ret_priv, char *errbuf,
                                    size_t errbuf_size)
{
	char text[UG_PRIVILEGES_SPEC_MAX + 1];
	const char *user, *group = NULL;
	ug_privileges *p;
	int has_entry = 0, r;
	size_t len;

	if (!spec || !ret_priv) {
		set_err(errbuf, errbuf_size, "no account given");
		return UG_E_INVAL;
	}
	len = strnlen(spec, UG_PRIVILEGES_SPEC_MAX + 1);
	if (len > UG_PRIVILEGES_SPEC_MAX) {
		set_err(errbuf, errbuf_size, "account \"%.32s...\" is longer than %u bytes", spec,
		        UG_PRIVILEGES_SPEC_MAX);
		return UG_E_INVAL;
	}
	memcpy(text, spec, len + 1);
	user = text;
	{
		char *colon = strchr(text, ':');

		if (colon) {
			*colon = '\0';
			group = colon + 1;
		}
	}
	if (user[0] == '\0' || (group && (group[0] == '\0' || strchr(group, ':')))) {
		set_err(errbuf, errbuf_size, "account \"%.64s\": expected USER or USER:GROUP "
		        "(names or numbers)", spec);
		return UG_E_INVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		set_err(errbuf, errbuf_size, "out of memory");
		return UG_E_NOMEM;
	}
	r = resolve_user(p, user, &has_entry, errbuf, errbuf_size);
	if (r == 0 && !has_entry && !group) {
		set_err(errbuf, errbuf_size, "uid %u has no passwd entry, so no primary group: "
		        "give one, as %u:GID", p->uid, p->uid);
		r = UG_E_INVAL;
	}
	if (r == 0)
		r = group ? resolve_group(p, group, errbuf, errbuf_size)
		          : name_primary_group(p, errbuf, errbuf_size);
	if (r == 0 && has_entry) {
		r = member_groups(p, errbuf, errbuf_size);
	} else if (r == 0) {
		p->groups = malloc(sizeof(uint32_t));
		if (p->groups) {
			p->groups[0] = p->gid;
			p->n_groups = 1;
		} else {
			r = UG_E_NOMEM;
		}
	}
	if (r == 0)
		r = make_describe(p);
	if (r < 0) {
		if (r == UG_E_NOMEM)
			set_err(errbuf, errbuf_size, "out of memory");
		ug_privileges_free(p);
		return r;
	}
	*ret_priv = p;
	return 0;
}

UG_EXPORT uint32_t ug_privileges_uid(const ug_privileges *p)
{
	return p->uid;
}

UG_EXPORT uint32_t ug_privileges_gid(const ug_privileges *p)
{
	return p->gid;
}

UG_EXPORT const uint32_t *ug_privileges_groups(const ug_privileges *p, size_t *ret_count)
{
	*ret_count = p->n_groups;
	return p->groups;
}

UG_EXPORT const char *ug_privileges_describe(const ug_privileges *p)
{
	return p->describe;
}

UG_EXPORT const char *ug_privileges_errmsg(const ug_privileges *p)
{
	return p->err;
}

static int cmp_gid(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;

	return x < y ? -1 : x > y;
}

/* 1 if the kernel's supplementary list is the set p asked for. */
static int groups_are(const ug_privileges *p, gid_t *want)
{
	int n = getgroups(0, NULL);
	gid_t *have;
	size_t nw = p->n_groups, nh;
	int same;

	if (n < 0)
		return 0;
	have = calloc((size_t)n + 1, sizeof(gid_t));
	if (!have)
		return 0;
	n = getgroups(n, have);
	if (n < 0) {
		free(have);
		return 0;
	}
	nh = (size_t)n;
	/* Compare as sets: the kernel sorts the list, getgrouplist() may repeat. */
	qsort(have, nh, sizeof(gid_t), cmp_gid);
	qsort(want, nw, sizeof(gid_t), cmp_gid);
	{
		size_t i = 0, j = 0;

		same = 1;
		while (same && (i < nw || j < nh)) {
			gid_t w = i < nw ? want[i] : 0, h = j < nh ? have[j] : 0;

			if (i < nw && j < nh && w == h) {
				for (i++; i < nw && want[i] == w; i++)
					;
				for (j++; j < nh && have[j] == h; j++)
					;
			} else {
				same = 0;
			}
		}
	}
	free(have);
	return same;
}

/* The calling thread's permitted and effective capability sets, both words. */
static int read_caps(uint64_t *ret_permitted, uint64_t *ret_effective)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) != 0)
		return -1;
	*ret_permitted = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
	*ret_effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
	return 0;
}

static int verify(ug_privileges *p, gid_t *want)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	uint64_t prm, eff;

	if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
		return ug_errmsg_set(p->err, UG_E_STATE, "after the drop: cannot read the ids: %s",
		                     strerror(errno));
	if (ru != p->uid || eu != p->uid || su != p->uid || rg != p->gid || eg != p->gid ||
	    sg != p->gid)
		return ug_errmsg_set(p->err, UG_E_STATE, "after the drop the ids are uid %u/%u/%u "
		                     "gid %u/%u/%u (real/effective/saved), expected uid %u gid %u",
		                     (unsigned)ru, (unsigned)eu, (unsigned)su, (unsigned)rg,
		                     (unsigned)eg, (unsigned)sg, p->uid, p->gid);
	if (!groups_are(p, want))
		return ug_errmsg_set(p->err, UG_E_STATE, "after the drop the supplementary groups "
		                     "are not the %zu asked for", p->n_groups);
	/* The point of it all: root must be out of reach. */
	if (setuid(0) == 0 || seteuid(0) == 0)
		return ug_errmsg_set(p->err, UG_E_STATE, "after dropping to uid %u the process "
		                     "could switch back to uid 0: refusing to go on", p->uid);
	if (p->gid != 0 && (setgid(0) == 0 || setegid(0) == 0))
		return ug_errmsg_set(p->err, UG_E_STATE, "after dropping to gid %u the process "
		                     "could switch back to gid 0: refusing to go on", p->gid);
	if (read_caps(&prm, &eff) != 0)
		return ug_errmsg_set(p->err, UG_E_STATE, "after the drop: capget: %s",
		                     strerror(errno));
	if (prm || eff)
		return ug_errmsg_set(p->err, UG_E_STATE, "after dropping to uid %u capabilities "
		                     "remain (permitted 0x%llx, effective 0x%llx): refusing to go on",
		                     p->uid, (unsigned long long)prm, (unsigned long long)eff);
	return 0;
}

UG_EXPORT int ug_privileges_drop(ug_privileges *p)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	gid_t *want;
	int r;

	if (p->uid == 0)
		return ug_errmsg_set(p->err, 1, "%s is root: privileges are not dropped",
		                     p->describe);
	if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
		return ug_errmsg_set(p->err, UG_E_STATE, "cannot read the process's ids: %s",
		                     strerror(errno));
	if (ru == p->uid && eu == p->uid && su == p->uid && rg == p->gid && eg == p->gid &&
	    sg == p->gid)
		return ug_errmsg_set(p->err, 1, "already running as uid %u gid %u: nothing to drop",
		                     p->uid, p->gid);
	want = calloc(p->n_groups ? p->n_groups : 1, sizeof(gid_t));
	if (!want)
		return ug_errmsg_set(p->err, UG_E_NOMEM, "out of memory");
	for (size_t i = 0; i < p->n_groups; i++)
		want[i] = (gid_t)p->groups[i];
	/* Capabilities must go with uid 0 (the kernel's default; keep-caps
	 * would keep them). A failure here is caught by the check below. */
	(void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	/* Groups and gids while still root: after setresuid() nothing may change them. */
	if (setgroups(p->n_groups, want) != 0) {
		r = ug_errmsg_set(p->err, UG_E_STATE, "setgroups (%zu groups) as uid %u: %s",
		                  p->n_groups, (unsigned)eu, strerror(errno));
		goto out;
	}
	if (setresgid((gid_t)p->gid, (gid_t)p->gid, (gid_t)p->gid) != 0) {
		r = ug_errmsg_set(p->err, UG_E_STATE, "setresgid(%u) as uid %u: %s", p->gid,
		                  (unsigned)eu, strerror(errno));
		goto out;
	}
	if (setresuid((uid_t)p->uid, (uid_t)p->uid, (uid_t)p->uid) != 0) {
		r = ug_errmsg_set(p->err, UG_E_STATE, "setresuid(%u) as uid %u: %s", p->uid,
		                  (unsigned)eu, strerror(errno));
		goto out;
	}
	r = verify(p, want);
out:
	free(want);
	return r;
}

UG_EXPORT void ug_privileges_free(ug_privileges *p)
{
	if (!p)
		return;
	free(p->user);
	free(p->group);
	free(p->groups);
	free(p->describe);
	free(p);
}
