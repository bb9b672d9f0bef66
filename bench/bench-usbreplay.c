/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-usbreplay.c: load time of a 100 MB capture and transfers/s served by the emulated device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "usbgate.h"
#include "../tests/unit/replay-testgen.h"

/*
 * Three measurements, each against an anchor run in the same process:
 * 1. Loading a ~100 MB raw record (mass storage reads of 512 KiB) with the
 *    capture loader, against reading the same file with the raw record
 *    reader alone (the I/O and pcap parsing floor).
 * 2. Transfers/s and MB/s the emulated device serves to the replayed guest
 *    over a socket pair, for that capture (large transfers) and for a
 *    capture of 20000 small control transfers (per-request overhead).
 * 3. The rate of the original recording of tests/data/storage.raw.pcap
 *    (bulk IN bytes over the time the recorded guest spent reading), against
 *    the rate at which the emulated device serves the same capture.
 */

static double now_s(void)
{
	return (double)g_get_monotonic_time() / 1e6;
}

static int done_flag;

static void done_cb(void *owner, int error, const char *message, void *user_data)
{
	(void)owner;
	(void)error;
	(void)message;
	(void)user_data;
	done_flag = 1;
}

/* Replays rec's guest against an emulated device of rec; returns seconds. */
static double serve(ug_recording *rec, struct ug_replay_summary *ret)
{
	int sv[2];
	ug_emulated_device *d = ug_emulated_device_new(rec, NULL);
	ug_replay_guest *g = ug_replay_guest_new(rec, NULL);
	double t0;

	if (!d || !g || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		exit(1);
	done_flag = 0;
	ug_replay_guest_set_done(g, done_cb, NULL);
	t0 = now_s();
	ug_emulated_device_attach(d, ug_transport_socket_new(sv[0], "device"));
	ug_replay_guest_attach(g, ug_transport_socket_new(sv[1], "guest"));
	while (!done_flag)
		g_main_context_iteration(NULL, TRUE);
	t0 = now_s() - t0;
	ug_replay_report_summary(ug_replay_guest_report(g), ret);
	ug_replay_guest_free(g);
	ug_emulated_device_free(d);
	return t0;
}

static uint64_t bulk_in_bytes(ug_recording *rec, uint64_t *ret_first, uint64_t *ret_last)
{
	struct ug_recorded_packet p;
	uint64_t bytes = 0;

	*ret_first = *ret_last = 0;
	for (size_t i = 0; i < ug_recording_count(rec); i++) {
		ug_recording_get(rec, i, &p);
		if (p.pkt.dir != UG_DIR_H2G || p.pkt.type != usb_redir_bulk_packet || p.pkt.data_len < 512)
			continue;
		if (!*ret_first)
			*ret_first = p.ts_ns;
		*ret_last = p.ts_ns;
		bytes += p.pkt.data_len;
	}
	return bytes;
}

int main(int argc, char **argv)
{
	char *big = tg_tmpname("bench-big"), *small = tg_tmpname("bench-small");
	const char *storage = argc > 1 ? argv[1] : NULL;
	struct ug_replay_summary sum;
	struct tg g;
	double t, t_anchor, size_mb;
	ug_recording *rec;
	ug_raw_reader *rd;
	struct ug_raw_record rr;
	uint64_t first, last, bytes;

	/* ~100 MB: 200 reads of 512 KiB. */
	tg_init(&g);
	tg_hellos(&g);
	tg_device(&g);
	tg_control_in(&g, 0x80, 6, 0x0100, 0, 18, tg_dev_desc, 18, 0);
	tg_set_configuration(&g, 1);
	for (uint32_t i = 0; i < 200; i++)
		tg_read(&g, i + 1, i * 1024, 512 * 1024);
	if (tg_record(&g, big, NULL) < 0)
		return 1;
	tg_free(&g);
	{
		FILE *f = fopen(big, "rb");

		fseek(f, 0, SEEK_END);
		size_mb = (double)ftell(f) / 1e6;
		fclose(f);
	}

	/* Anchor: the raw record reader alone over the same file. */
	t_anchor = now_s();
	rd = ug_raw_reader_new();
	ug_raw_reader_open(rd, big);
	while (ug_raw_reader_next(rd, &rr) == 1)
		;
	ug_raw_reader_free(rd);
	t_anchor = now_s() - t_anchor;

	t = now_s();
	rec = ug_recording_new();
	if (ug_recording_load(rec, big) < 0) {
		fprintf(stderr, "load: %s\n", ug_recording_errmsg(rec));
		return 1;
	}
	t = now_s() - t;
	printf("load: %.1f MB capture, %zu packets, in %.3f s (%.0f MB/s, %.1f MiB held); "
	       "raw record reader alone %.3f s: ratio %.2f\n",
	       size_mb, ug_recording_count(rec), t, size_mb / t,
	       (double)ug_recording_memory(rec) / 1048576.0, t_anchor, t / t_anchor);

	t = serve(rec, &sum);
	printf("serve (512 KiB reads): %llu transfers in %.3f s: %.0f transfers/s, %.0f MB/s, %llu diverged\n",
	       (unsigned long long)sum.requests, t, (double)sum.requests / t,
	       (double)bulk_in_bytes(rec, &first, &last) / 1e6 / t, (unsigned long long)sum.diverged);
	ug_recording_free(rec);
	unlink(big);

	/* 20000 small control transfers: the per-request cost. */
	tg_init(&g);
	tg_hellos(&g);
	tg_device(&g);
	for (int i = 0; i < 20000; i++)
		tg_control_in(&g, 0x80, 6, (uint16_t)(0x0300 | (i & 0xff)), (uint16_t)(i >> 8), 18,
			      tg_dev_desc, 18, 0);
	tg_record(&g, small, NULL);
	tg_free(&g);
	rec = ug_recording_new();
	ug_recording_load(rec, small);
	t = serve(rec, &sum);
	printf("serve (control, 18 bytes): %llu transfers in %.3f s: %.0f transfers/s, %llu diverged\n",
	       (unsigned long long)sum.requests, t, (double)sum.requests / t,
	       (unsigned long long)sum.diverged);
	ug_recording_free(rec);
	unlink(small);

	/* The original recording's read rate against the served rate. */
	if (storage) {
		rec = ug_recording_new();
		if (ug_recording_load(rec, storage) == 0) {
			double rec_s, rate_rec;

			bytes = bulk_in_bytes(rec, &first, &last);
			rec_s = (double)(last - first) / 1e9;
			rate_rec = rec_s > 0 ? (double)bytes / 1e6 / rec_s : 0;
			t = serve(rec, &sum);
			printf("%s: recorded guest read %.2f MB at %.1f MB/s; replay serves it at %.1f MB/s "
			       "(%llu transfers in %.3f s, %.0f transfers/s): ratio %.1f\n",
			       storage, (double)bytes / 1e6, rate_rec, (double)bytes / 1e6 / t,
			       (unsigned long long)sum.requests, t, (double)sum.requests / t,
			       rate_rec > 0 ? ((double)bytes / 1e6 / t) / rate_rec : 0);
		}
		ug_recording_free(rec);
	}
	g_free(big);
	g_free(small);
	return 0;
}
