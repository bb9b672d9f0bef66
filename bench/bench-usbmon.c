/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-usbmon.c: throughput of the capture output (tracker, usbmon mapping, pcap writer) against plain flushed writes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "usbgate.h"

/*
 * Workload: bulk IN transfers of 16 KiB (a guest reading a disk) and
 * 8-byte control transfers, as decoded packets (the codec is benchmarked
 * on its own). Anchor, in the same process: writing the same number of
 * records of the same sizes with fwrite() + fflush() per record, which is
 * the least any flush-per-record writer pays. Reported: transfers/s and
 * MB/s of each path, and the ratio to the anchor.
 */

#define BULK_LEN 16384u

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct ug_usbredir_packet bulk_pkt(enum ug_dir dir, uint64_t id, const uint8_t *data,
                                          uint32_t len)
{
	struct ug_usbredir_packet p;

	memset(&p, 0, sizeof(p));
	p.dir = dir;
	p.type = usb_redir_bulk_packet;
	p.id = id;
	p.known = 1;
	p.h.bulk_packet.endpoint = 0x81;
	p.h.bulk_packet.length = (uint16_t)BULK_LEN;
	p.h.bulk_packet.length_high = (uint16_t)(BULK_LEN >> 16);
	p.data = data;
	p.data_len = len;
	p.length = 10 + len;
	return p;
}

/* Runs n bulk transfers through tracker + mapper (+ writer when w). */
static double run_view(int n, const uint8_t *data, ug_pcap_writer *w, uint64_t *bytes)
{
	ug_tracker *t = ug_tracker_new();
	ug_usbmon *m = ug_usbmon_new();
	double t0 = now();

	*bytes = 0;
	for (int i = 0; i < n; i++) {
		struct ug_usbredir_packet req = bulk_pkt(UG_DIR_G2H, (uint64_t)i, NULL, 0);
		struct ug_usbredir_packet ans = bulk_pkt(UG_DIR_H2G, (uint64_t)i, data, BULK_LEN);
		const struct ug_usbredir_packet *pk[2] = { &req, &ans };

		for (int k = 0; k < 2; k++) {
			struct ug_transfer_event ev;
			struct ug_usbmon_record rec;

			ug_tracker_push(t, pk[k], (uint64_t)i * 1000 + (uint64_t)k);
			while (ug_tracker_next(t, &ev) == 1) {
				if (ug_usbmon_map(m, &ev, &rec) != 1)
					continue;
				*bytes += rec.caplen;
				if (w && ug_pcap_writer_write_usbmon(w, &rec) != 0) {
					fprintf(stderr, "write: %s\n", ug_pcap_writer_errmsg(w));
					exit(1);
				}
			}
		}
	}
	ug_tracker_free(t);
	ug_usbmon_free(m);
	return now() - t0;
}

/* The anchor: the same records, written as plain bytes with a flush each. */
static double run_anchor(int n, const uint8_t *data, const char *path)
{
	FILE *f = fopen(path, "w");
	uint8_t hdr[16 + 64] = { 0 };
	double t0 = now();

	for (int i = 0; i < n; i++) {
		fwrite(hdr, 1, sizeof(hdr), f); /* the submit */
		fflush(f);
		fwrite(hdr, 1, sizeof(hdr), f); /* the completion, with its data */
		fwrite(data, 1, BULK_LEN, f);
		fflush(f);
	}
	fclose(f);
	return now() - t0;
}

int main(void)
{
	const int n = 20000;
	char path[256];
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	uint8_t *data = malloc(BULK_LEN);
	ug_pcap_writer *w = ug_pcap_writer_new();
	uint64_t bytes;
	double t_view, t_write, t_anchor, mb;

	for (uint32_t i = 0; i < BULK_LEN; i++)
		data[i] = (uint8_t)i;
	snprintf(path, sizeof(path), "%s/bench-usbmon-%ld.pcap", dir, (long)getpid());

	t_view = run_view(n, data, NULL, &bytes);
	mb = (double)n * BULK_LEN / 1e6;
	printf("view only (tracker + usbmon mapping): %.0f transfers/s, %.0f MB/s of data\n",
	       n / t_view, mb / t_view);

	t_anchor = run_anchor(n, data, path);
	printf("anchor (fwrite + fflush per record):  %.0f transfers/s, %.0f MB/s\n",
	       n / t_anchor, mb / t_anchor);

	if (ug_pcap_writer_open(w, path, UG_USBMON_LINKTYPE) != 0) {
		fprintf(stderr, "%s\n", ug_pcap_writer_errmsg(w));
		return 1;
	}
	t_write = run_view(n, data, w, &bytes);
	if (ug_pcap_writer_close(w) != 0)
		return 1;
	printf("view + pcap writer (flush per record): %.0f transfers/s, %.0f MB/s, %.1f MB written\n",
	       n / t_write, mb / t_write, bytes / 1e6);
	printf("ratio pcap path / anchor time: %.2f\n", t_write / t_anchor);
	ug_pcap_writer_free(w);
	unlink(path);
	free(data);
	return 0;
}
