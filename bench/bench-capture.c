/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-capture.c: reads a capture through ug_capture (pcap source + TCP reassembly) and prints MB/s. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "usbgate.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_event(const struct ug_capture_event *ev)
{
	static const char *const names[] = { "?", "OPEN", "DATA", "GAP", "END", "CLOSE", "NOTICE" };
	unsigned id = ev->conn ? ev->conn->id : 0;

	printf("%-6s frame %" PRIu64 " conn %u side %d offset %" PRIu64 " len %" PRIu64
	       " reason %d%s%s\n", names[ev->type], ev->frame, id, (int)ev->side, ev->offset,
	       ev->len, ev->reason, ev->message ? " " : "", ev->message ? ev->message : "");
}

/*
 * Usage: bench-capture [-v] FILE
 * Without a file (as "make bench" runs it) it only says how to use it: the
 * real run is bench/bench-capture-read.sh, which makes the capture.
 * -v prints every event instead of timing (a debugging aid).
 */
int main(int argc, char **argv)
{
	struct ug_capture_stats st;
	struct ug_capture_event ev;
	uint64_t done = 0, total = 0, events = 0;
	int verbose = 0, r;
	double t0, dt;
	ug_capture *c;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		verbose = 1;
		argc--;
		argv++;
	}
	if (argc != 2) {
		printf("usage: bench-capture [-v] FILE (bench/bench-capture-read.sh runs it)\n");
		return 0;
	}
	c = ug_capture_new();
	if (!c)
		return 1;
	if ((r = ug_capture_open_file(c, argv[1])) < 0) {
		fprintf(stderr, "bench-capture: %s (%s)\n", ug_capture_errmsg(c), ug_strerror(r));
		ug_capture_free(c);
		return 1;
	}
	t0 = now();
	while ((r = ug_capture_next(c, &ev)) == 1) {
		events++;
		if (verbose)
			print_event(&ev);
	}
	dt = now() - t0;
	if (r < 0) {
		fprintf(stderr, "bench-capture: %s (%s)\n", ug_capture_errmsg(c), ug_strerror(r));
		ug_capture_free(c);
		return 1;
	}
	ug_capture_progress(c, &done, &total);
	ug_capture_get_stats(c, &st);
	printf("read %" PRIu64 " bytes (%" PRIu64 " frames, %" PRIu64 " connections, %" PRIu64
	       " events, %" PRIu64 " stream bytes, %" PRIu64 " missing, %" PRIu64 " duplicate, %"
	       PRIu64 " dropped, %" PRIu64 " notices) in %.3f s: %.1f MB/s\n",
	       done, st.frames, st.connections, events, st.bytes_delivered, st.bytes_missing,
	       st.bytes_duplicate, st.bytes_dropped, st.notices, dt,
	       dt > 0 ? (double)done / dt / 1e6 : 0.0);
	ug_capture_free(c);
	return 0;
}
