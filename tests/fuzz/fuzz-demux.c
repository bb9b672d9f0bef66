/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-demux.c: fuzzes a capture image through the capture source, the demux and a recorder without outputs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/*
 * The input is a pcap or pcapng image as tcpdump writes it. The first
 * connection's server port is also forced as usbredir with the caps in the
 * image's last byte, so the mid-stream path is reached as well as the
 * classified one.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ug_capture *c = ug_capture_new();
	ug_recorder *rec = ug_recorder_new();
	ug_capture_demux *d = ug_capture_demux_new(rec);
	struct ug_capture_event ev;
	struct ug_capture_demux_stats st;
	struct ug_recorder_stats rs;
	int forced = 0;
	int e;

	CHECK(c && rec && d);
	/* A small packet limit keeps the fuzzer's memory low and reaches the
	 * too-big path. */
	ug_recorder_set_max_packet(rec, 1u << 20);
	if (size > 0 && ug_capture_open_memory(c, data, size) == 0) {
		while ((e = ug_capture_next(c, &ev)) > 0) {
			if (ev.type == UG_CAPTURE_OPEN && !forced) {
				forced = 1;
				ug_capture_demux_force_port(d, ev.conn->server.port, data[size - 1],
							    data[size - 1] & 1,
							    (enum ug_capture_demux_guest)(data[size - 1] % 3));
			}
			ug_capture_demux_event(d, &ev);
		}
	}
	ug_capture_demux_finish(d, 0);
	ug_capture_demux_get_stats(d, &st);
	CHECK(st.usbredir + st.spice + st.tls + st.other <= st.connections);
	ug_recorder_get_stats(rec, &rs);
	/* At most one recorder session per raw usbredir connection and per SPICE
	 * usbredir channel (a channel gets one only once it carries data). */
	CHECK(rs.sessions <= st.usbredir + st.spice_usbredir);
	ug_capture_demux_free(d);
	ug_recorder_free(rec);
	ug_capture_free(c);
	return 0;
}
