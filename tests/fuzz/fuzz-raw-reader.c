/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-raw-reader.c: fuzzes the raw usbredir record reader with arbitrary capture files. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "usbgate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The reader opens files by path (libpcap does the file I/O), so the input
 * goes into an anonymous memory file reached through /proc. The packet
 * limit is kept small so that joining fragments hits it.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-raw", 0);
	char path[64];
	ug_raw_reader *r;
	struct ug_raw_record rec;
	int rc, n = 0;

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = ug_raw_reader_new();
	ug_raw_reader_set_max_packet(r, 1u << 20);
	if (ug_raw_reader_open(r, path) == 0) {
		/* Errors that keep the framing (PROTO, TOOBIG) let reading go on. */
		while ((rc = ug_raw_reader_next(r, &rec)) != 0 && n++ < 100000) {
			if (rc == 1) {
				if (rec.len > (1u << 20))
					abort();
				if (rec.len)
					(void)(volatile uint8_t)rec.bytes[rec.len - 1];
			} else if (rc != UG_E_PROTO && rc != UG_E_TOOBIG) {
				break;
			}
		}
	}
	ug_raw_reader_free(r);
	close(fd);
	return 0;
}
