/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-loader.c: fuzzes usbreplay's capture loader (raw record and usbmon pcaps) and the request pairing on what it loads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/*
 * The input is a capture file as it is: libpcap reads files only, so it goes
 * through one temporary file per process. Limits are small so that the
 * too-big paths are reached and memory stays bounded.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct ug_recording_limits lim = { 0 };
	ug_recording *r;
	FILE *f;
	int rc;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/ug-fuzz-loader-%d.pcap", (int)getpid());
	f = fopen(path, "wb");
	if (!f)
		return 0;
	if (size && fwrite(data, 1, size, f) != size) {
		fclose(f);
		return 0;
	}
	fclose(f);
	r = ug_recording_new();
	CHECK(r);
	lim.max_packets = 100000;
	lim.max_bytes = 32u * 1024u * 1024u;
	lim.max_packet = 1024u * 1024u;
	lim.max_pending = 256;
	CHECK(ug_recording_set_limits(r, &lim) == 0);
	/* Speed from the input's last byte, so both usbmon paths are reached. */
	if (size && (data[size - 1] & 1))
		ug_recording_set_speed(r, usb_redir_speed_high);
	rc = ug_recording_load(r, path);
	if (rc == 0) {
		struct ug_recorded_packet p;
		ug_emulated_device *d;
		ug_replay_guest *g;
		size_t n = ug_recording_count(r);

		CHECK(n > 0);
		for (size_t i = 0; i < n; i++) {
			CHECK(ug_recording_get(r, i, &p) == 0);
			CHECK(p.pkt.data_len == 0 || p.pkt.data != NULL);
			if (p.pkt.data_len)
				CHECK(p.pkt.data[0] == p.pkt.data[0] && p.pkt.data[p.pkt.data_len - 1] ==
				      p.pkt.data[p.pkt.data_len - 1]);
		}
		CHECK(ug_recording_get(r, n, &p) == UG_E_INVAL);
		/* The pairing of requests and answers on hostile recordings. */
		d = ug_emulated_device_new(r, NULL);
		g = ug_replay_guest_new(r, NULL);
		CHECK(d && g);
		ug_emulated_device_free(d);
		ug_replay_guest_free(g);
	} else {
		CHECK(rc < 0);
		CHECK(ug_recording_errmsg(r)[0] != 0);
	}
	ug_recording_free(r);
	return 0;
}
