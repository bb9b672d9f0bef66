/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* standalone.c: runs a fuzz target over its corpus without libFuzzer, printing TAP for make check. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs larger than this are not corpus material; refuse them loudly. */
#define UG_FUZZ_MAX_INPUT (16u * 1024u * 1024u)

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_file(const char *path, int n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	size_t len;

	if (!f) {
		printf("not ok %d - %s: %s\n", n, path, strerror(errno));
		return 1;
	}
	buf = malloc(UG_FUZZ_MAX_INPUT + 1);
	if (!buf) {
		fclose(f);
		printf("not ok %d - %s: out of memory\n", n, path);
		return 1;
	}
	len = fread(buf, 1, UG_FUZZ_MAX_INPUT + 1, f);
	fclose(f);
	if (len > UG_FUZZ_MAX_INPUT) {
		free(buf);
		printf("not ok %d - %s: larger than %u bytes\n", n, path, UG_FUZZ_MAX_INPUT);
		return 1;
	}
	/* A crash or sanitizer report aborts the process: the harness sees it. */
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	printf("ok %d - %s\n", n, path);
	return 0;
}

/*
 * With arguments, replays the named files. Without, replays
 * $UG_SRCDIR/tests/fuzz/corpus/NAME/ where the program is called fuzz-NAME.
 */
int main(int argc, char **argv)
{
	char dir[4096];
	const char *base, *srcdir;
	char **names = NULL;
	size_t count = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int failed = 0;

	if (argc > 1) {
		printf("1..%d\n", argc - 1);
		for (int i = 1; i < argc; i++)
			failed |= run_file(argv[i], i);
		return failed;
	}
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strncmp(base, "fuzz-", 5) != 0) {
		printf("Bail out! program name %s does not start with fuzz-\n", base);
		return 1;
	}
	srcdir = getenv("UG_SRCDIR");
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", srcdir ? srcdir : ".", base + 5);
	d = opendir(dir);
	if (!d) {
		printf("Bail out! corpus %s: %s\n", dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (count == cap) {
			char **n = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));
			if (!n) {
				printf("Bail out! out of memory\n");
				return 1;
			}
			names = n;
		}
		if (!(names[count] = malloc(strlen(dir) + strlen(de->d_name) + 2))) {
			printf("Bail out! out of memory\n");
			return 1;
		}
		sprintf(names[count++], "%s/%s", dir, de->d_name);
	}
	closedir(d);
	if (count == 0) {
		printf("Bail out! corpus %s is empty\n", dir);
		return 1;
	}
	qsort(names, count, sizeof(*names), name_cmp);
	printf("1..%zu\n", count);
	for (size_t i = 0; i < count; i++) {
		failed |= run_file(names[i], (int)i + 1);
		free(names[i]);
	}
	free(names);
	return failed;
}
