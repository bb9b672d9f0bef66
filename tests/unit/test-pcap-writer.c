/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-pcap-writer.c: unit tests of pcap output (usbmon, raw record), flush per record, errors, raw reader. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <pcap/pcap.h>

#include "usbgate.h"

static char *tmp_path(const char *name)
{
	static char path[256];
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	snprintf(path, sizeof(path), "%s/ug-test-pcap-%ld-%s", dir, (long)getpid(), name);
	return path;
}

static void test_usbmon_file_readable_while_open(void **state)
{
	char *path = tmp_path("usbmon.pcap");
	ug_pcap_writer *w = ug_pcap_writer_new();
	uint8_t rec[64 + 18];
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	pcap_t *p;
	int n = 0;

	memset(rec, 0xab, sizeof(rec));
	assert_int_equal(ug_pcap_writer_open(w, path, UG_USBMON_LINKTYPE), 0);
	assert_int_equal(ug_pcap_writer_open(w, path, UG_USBMON_LINKTYPE), UG_E_STATE);
	for (int i = 0; i < 3; i++) {
		struct ug_usbmon_record r = { rec, 64 + 18, 64 + 1000,
		                              1732492800123456789ull + (uint64_t)i };

		assert_int_equal(ug_pcap_writer_write_usbmon(w, &r), 0);
	}
	assert_int_equal(ug_pcap_writer_records(w), 3);

	/* The writer is still open: every record must already be in the file. */
	p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	assert_non_null(p);
	assert_int_equal(pcap_datalink(p), DLT_USB_LINUX_MMAPPED);
	assert_int_equal(pcap_get_tstamp_precision(p), PCAP_TSTAMP_PRECISION_NANO);
	while (pcap_next_ex(p, &h, &data) == 1) {
		assert_int_equal(h->caplen, 64 + 18);
		assert_int_equal(h->ts.tv_sec, 1732492800);
		assert_int_equal(h->ts.tv_usec, 123456789 + n);
		assert_memory_equal(data, rec, sizeof(rec));
		n++;
	}
	assert_int_equal(n, 3);
	pcap_close(p);

	assert_int_equal(ug_pcap_writer_close(w), 0);
	ug_pcap_writer_free(w);
	unlink(path);
}

static void test_open_on_callers_stream(void **state)
{
	char *path = tmp_path("stream.pcap");
	FILE *fp = fopen(path, "w");
	ug_pcap_writer *w = ug_pcap_writer_new();
	uint8_t rec[64] = { 'x' };
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	pcap_t *p;

	assert_non_null(fp);
	assert_int_equal(ug_pcap_writer_open_file(w, fp, 7), UG_E_INVAL);
	assert_int_equal(ug_pcap_writer_open_file(w, fp, UG_USBMON_LINKTYPE), 0);
	assert_int_equal(ug_pcap_writer_write(w, 42, rec, 64, 64), 0);
	p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	assert_non_null(p);
	assert_int_equal(pcap_next_ex(p, &h, &data), 1);
	assert_int_equal(h->ts.tv_usec, 42);
	assert_int_equal(data[0], 'x');
	pcap_close(p);
	/* The writer closes the stream it was given. */
	assert_int_equal(ug_pcap_writer_close(w), 0);
	ug_pcap_writer_free(w);
	unlink(path);
}

static void test_disk_full_is_nospc(void **state)
{
	ug_pcap_writer *w = ug_pcap_writer_new();
	uint8_t rec[64] = { 0 };

	/* /dev/full fails every write with ENOSPC: the header flush already fails. */
	assert_int_equal(ug_pcap_writer_open(w, "/dev/full", UG_USBMON_LINKTYPE), UG_E_NOSPC);
	assert_non_null(strstr(ug_pcap_writer_errmsg(w), "No space left"));
	/* The error is sticky. */
	assert_int_equal(ug_pcap_writer_write(w, 0, rec, 64, 64), UG_E_NOSPC);
	assert_int_equal(ug_pcap_writer_close(w), UG_E_NOSPC);
	ug_pcap_writer_free(w);
}

static void test_broken_pipe_is_io(void **state)
{
	int fds[2];
	char path[64];
	ug_pcap_writer *w = ug_pcap_writer_new();
	uint8_t rec[64] = { 0 };
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);

	assert_int_equal(pipe(fds), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[1]);
	assert_int_equal(ug_pcap_writer_open(w, path, UG_USBMON_LINKTYPE), 0);
	close(fds[0]);
	assert_int_equal(ug_pcap_writer_write(w, 0, rec, 64, 64), UG_E_IO);
	assert_non_null(strstr(ug_pcap_writer_errmsg(w), "Broken pipe"));
	assert_int_equal(ug_pcap_writer_write(w, 0, rec, 64, 64), UG_E_IO);
	ug_pcap_writer_free(w);
	close(fds[1]);
	signal(SIGPIPE, old);
}

static void test_argument_checks(void **state)
{
	ug_pcap_writer *w = ug_pcap_writer_new();
	char *path = tmp_path("args.pcap");
	static uint8_t big[UG_USBMON_MAX_RECORD + 1];
	struct ug_raw_record raw = { UG_DIR_G2H, 0, 0, 0, 0, big, 12 };
	struct ug_usbmon_record mon = { big, 64, 64, 0 };

	assert_int_equal(ug_pcap_writer_write(w, 0, big, 64, 64), UG_E_STATE);
	assert_int_equal(ug_pcap_writer_open(w, path, 1), UG_E_INVAL);
	assert_int_equal(ug_pcap_writer_open(w, "/nonexistent-dir/x.pcap", UG_RAW_LINKTYPE), UG_E_IO);
	assert_non_null(strstr(ug_pcap_writer_errmsg(w), "/nonexistent-dir/x.pcap"));
	assert_int_equal(ug_pcap_writer_open(w, path, UG_USBMON_LINKTYPE), 0);
	assert_int_equal(ug_pcap_writer_write(w, 0, big, sizeof(big), sizeof(big)), UG_E_TOOBIG);
	assert_non_null(strstr(ug_pcap_writer_errmsg(w), "262145"));
	assert_int_equal(ug_pcap_writer_write_raw(w, &raw), UG_E_STATE);
	assert_int_equal(ug_pcap_writer_close(w), 0);
	assert_int_equal(ug_pcap_writer_open(w, path, UG_RAW_LINKTYPE), 0);
	assert_int_equal(ug_pcap_writer_write_usbmon(w, &mon), UG_E_STATE);
	ug_pcap_writer_free(w);
	ug_pcap_writer_free(NULL);
	unlink(path);
}

/* A hello (32-bit id) and a bulk packet with a 64-bit id, as on the wire. */
static const uint8_t hello[12 + 64 + 4] = { 0, 0, 0, 0, 68, 0, 0, 0, 0, 0, 0, 0, 'u', 's', 'b' };
static const uint8_t bulk_hdr[16 + 10] = { 101, 0, 0, 0, 10 + 4, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0,
                                           0x81, 0, 4, 0, 0, 0, 0, 0, 0, 0 };

static void test_raw_record_layout(void **state)
{
	char *path = tmp_path("raw-layout.pcap");
	ug_pcap_writer *w = ug_pcap_writer_new();
	struct ug_raw_record r = { UG_DIR_H2G, 5000000001ull, 0xff, 1, 3, bulk_hdr, sizeof(bulk_hdr) };
	static const uint8_t want[48] = {
		0, 12, 0, 8, 'u', 's', 'b', 'r', 'e', 'd', 'i', 'r', /* dissector name */
		0, 35, 0, 4, 0, 0, 0, 1,                             /* direction: received */
		0, 0, 0, 0,                                          /* end of options */
		'U', 'G', 'R', 'W', 1, 1, 0x03, 0,                   /* magic, version, dir, flags */
		0, 0, 0, 0xff, 0, 0, 0, 3,                           /* caps, session */
		0, 0, 0, sizeof(bulk_hdr), 0, 0, 0, 0,               /* total, offset */
	};
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	pcap_t *p;

	assert_int_equal(ug_pcap_writer_open(w, path, UG_RAW_LINKTYPE), 0);
	assert_int_equal(ug_pcap_writer_write_raw(w, &r), 0);
	r.dir = UG_DIR_G2H;
	r.bytes = hello;
	r.len = sizeof(hello);
	assert_int_equal(ug_pcap_writer_write_raw(w, &r), 0);

	p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	assert_non_null(p);
	assert_int_equal(pcap_datalink(p), DLT_WIRESHARK_UPPER_PDU);
	assert_int_equal(pcap_next_ex(p, &h, &data), 1);
	assert_int_equal(h->caplen, 48 + sizeof(bulk_hdr));
	assert_int_equal(h->ts.tv_sec, 5);
	assert_int_equal(h->ts.tv_usec, 1);
	assert_memory_equal(data, want, 48);
	assert_memory_equal(data + 48, bulk_hdr, sizeof(bulk_hdr));
	/* The hello: sent by the guest, and flagged 32-bit id whatever the caps. */
	assert_int_equal(pcap_next_ex(p, &h, &data), 1);
	assert_int_equal(data[19], 0);
	assert_int_equal(data[29], 0);
	assert_int_equal(data[30], UG_RAW_FLAG_CAPS_KNOWN);
	assert_memory_equal(data + 48, hello, sizeof(hello));
	pcap_close(p);
	ug_pcap_writer_free(w);
	unlink(path);
}

static void test_raw_round_trip_with_fragments(void **state)
{
	char *path = tmp_path("raw-rt.pcap");
	ug_pcap_writer *w = ug_pcap_writer_new();
	ug_raw_reader *rd = ug_raw_reader_new();
	size_t big_len = 600000;
	uint8_t *big = malloc(big_len);
	struct ug_raw_record r, got;

	for (size_t i = 0; i < big_len; i++)
		big[i] = (uint8_t)(i ^ (i >> 8));
	assert_int_equal(ug_pcap_writer_open(w, path, UG_RAW_LINKTYPE), 0);
	r = (struct ug_raw_record){ UG_DIR_G2H, 1, 0, 0, 1, hello, sizeof(hello) };
	assert_int_equal(ug_pcap_writer_write_raw(w, &r), 0);
	r = (struct ug_raw_record){ UG_DIR_H2G, 2, 0xff, 1, 1, big, big_len };
	assert_int_equal(ug_pcap_writer_write_raw(w, &r), 0);
	/* 600000 bytes in records of at most 262144 - 48: three records. */
	assert_int_equal(ug_pcap_writer_records(w), 4);
	r = (struct ug_raw_record){ UG_DIR_G2H, 3, 0xff, 1, 2, bulk_hdr, sizeof(bulk_hdr) };
	assert_int_equal(ug_pcap_writer_write_raw(w, &r), 0);
	assert_int_equal(ug_pcap_writer_close(w), 0);
	ug_pcap_writer_free(w);

	assert_int_equal(ug_raw_reader_next(rd, &got), UG_E_STATE);
	assert_int_equal(ug_raw_reader_open(rd, path), 0);
	assert_int_equal(ug_raw_reader_record(rd), 0);
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(ug_raw_reader_record(rd), 1);
	assert_int_equal(got.dir, UG_DIR_G2H);
	assert_int_equal(got.ts_ns, 1);
	assert_int_equal(got.caps_known, 0);
	assert_int_equal(got.len, sizeof(hello));
	assert_memory_equal(got.bytes, hello, sizeof(hello));
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(got.dir, UG_DIR_H2G);
	assert_int_equal(got.caps, 0xff);
	assert_int_equal(got.caps_known, 1);
	assert_int_equal(got.session, 1);
	assert_int_equal(got.len, big_len);
	assert_memory_equal(got.bytes, big, big_len);
	/* The big packet is records 2 to 4, numbered where it starts. */
	assert_int_equal(ug_raw_reader_record(rd), 2);
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(ug_raw_reader_record(rd), 5);
	assert_int_equal(got.session, 2);
	assert_memory_equal(got.bytes, bulk_hdr, sizeof(bulk_hdr));
	assert_int_equal(ug_raw_reader_next(rd, &got), 0);
	assert_int_equal(ug_raw_reader_record(rd), 5);
	ug_raw_reader_free(rd);

	/* A limit below the big packet refuses it, naming the numbers. */
	rd = ug_raw_reader_new();
	assert_int_equal(ug_raw_reader_set_max_packet(rd, 100000), 0);
	assert_int_equal(ug_raw_reader_open(rd, path), 0);
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(ug_raw_reader_next(rd, &got), UG_E_TOOBIG);
	assert_non_null(strstr(ug_raw_reader_errmsg(rd), "record 2: packet of 600000 bytes"));
	/* An error leaves the number of the last packet returned. */
	assert_int_equal(ug_raw_reader_record(rd), 1);
	ug_raw_reader_free(rd);

	/* Cut inside the fragmented packet: truncated, not a short packet. */
	assert_int_equal(truncate(path, 24 + 16 + 48 + sizeof(hello) + 16 + 262144 + 100), 0);
	rd = ug_raw_reader_new();
	assert_int_equal(ug_raw_reader_open(rd, path), 0);
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(ug_raw_reader_next(rd, &got), UG_E_TRUNCATED);
	ug_raw_reader_free(rd);
	free(big);
	unlink(path);
}

/* One raw record carrying bytes [offset, offset + n) of a packet of total
 * bytes, written by hand so that fragments can be of any size. */
static void put_fragment(ug_pcap_writer *w, uint32_t session, const uint8_t *pkt,
                         uint32_t total, uint32_t offset, uint32_t n)
{
	uint8_t rec[48 + 64];
	const uint32_t be[4] = { 0xff, session, total, offset };

	assert_true(n <= 64);
	memset(rec, 0, sizeof(rec));
	memcpy(rec, "\0\x0c\0\x08usbredir\0\x23\0\x04\0\0\0\0\0\0\0\0UGRW\x01\0\x01\0", 32);
	for (int i = 0; i < 4; i++)
		for (int b = 0; b < 4; b++)
			rec[32 + 4 * i + b] = (uint8_t)(be[i] >> (24 - 8 * b));
	memcpy(rec + 48, pkt + offset, n);
	assert_int_equal(ug_pcap_writer_write(w, 0, rec, 48 + n, 48 + n), 0);
}

/* ug_raw_reader_record() counts the file's records, whatever size another
 * writer gave the fragments: it cannot be rebuilt from packet lengths. */
static void test_raw_reader_record_numbers(void **state)
{
	char *path = tmp_path("raw-numbers.pcap");
	ug_pcap_writer *w = ug_pcap_writer_new();
	ug_raw_reader *rd = ug_raw_reader_new();
	struct ug_raw_record got;

	assert_int_equal(ug_raw_reader_record(NULL), 0);
	assert_int_equal(ug_pcap_writer_open(w, path, UG_RAW_LINKTYPE), 0);
	/* Records 1-3: the 80-byte hello in fragments of 30, 30 and 20. */
	put_fragment(w, 1, hello, sizeof(hello), 0, 30);
	put_fragment(w, 1, hello, sizeof(hello), 30, 30);
	put_fragment(w, 1, hello, sizeof(hello), 60, 20);
	/* Record 4: another session's packet; record 5: a bulk header. */
	put_fragment(w, 2, bulk_hdr, sizeof(bulk_hdr), 0, sizeof(bulk_hdr));
	put_fragment(w, 1, bulk_hdr, sizeof(bulk_hdr), 0, sizeof(bulk_hdr));
	/* Record 6: a fragment whose start is missing. */
	put_fragment(w, 1, bulk_hdr, sizeof(bulk_hdr), 10, 16);
	assert_int_equal(ug_pcap_writer_close(w), 0);
	ug_pcap_writer_free(w);

	assert_int_equal(ug_raw_reader_open(rd, path), 0);
	assert_int_equal(ug_raw_reader_record(rd), 0);
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(got.len, sizeof(hello));
	assert_memory_equal(got.bytes, hello, sizeof(hello));
	assert_int_equal(ug_raw_reader_record(rd), 1);
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(got.session, 2);
	assert_int_equal(ug_raw_reader_record(rd), 4);
	assert_int_equal(ug_raw_reader_next(rd, &got), 1);
	assert_int_equal(got.session, 1);
	assert_int_equal(ug_raw_reader_record(rd), 5);
	assert_int_equal(ug_raw_reader_next(rd, &got), UG_E_PROTO);
	assert_non_null(strstr(ug_raw_reader_errmsg(rd), "record 6: fragment at 10 without its start"));
	assert_int_equal(ug_raw_reader_record(rd), 5);
	assert_int_equal(ug_raw_reader_next(rd, &got), 0);
	assert_int_equal(ug_raw_reader_record(rd), 5);
	ug_raw_reader_free(rd);
	unlink(path);
}

static void test_raw_reader_refuses_bad_input(void **state)
{
	char *path = tmp_path("raw-bad.pcap");
	ug_pcap_writer *w = ug_pcap_writer_new();
	ug_raw_reader *rd = ug_raw_reader_new();
	struct ug_raw_record got;
	uint8_t rec[48 + 12];
	uint8_t mon[64] = { 0 };

	/* A usbmon file is not a raw record file. */
	assert_int_equal(ug_pcap_writer_open(w, path, UG_USBMON_LINKTYPE), 0);
	assert_int_equal(ug_pcap_writer_write(w, 0, mon, 64, 64), 0);
	assert_int_equal(ug_pcap_writer_close(w), 0);
	assert_int_equal(ug_raw_reader_open(rd, path), UG_E_UNSUPPORTED);
	assert_non_null(strstr(ug_raw_reader_errmsg(rd), "link type 220"));

	/* Exported PDUs for another dissector, a tag running past the
	 * record, and a continuation fragment without its start. */
	assert_int_equal(ug_pcap_writer_open(w, path, UG_RAW_LINKTYPE), 0);
	memset(rec, 0, sizeof(rec));
	memcpy(rec, "\0\x0c\0\x08sipsip\0\0", 12);
	assert_int_equal(ug_pcap_writer_write(w, 0, rec, sizeof(rec), sizeof(rec)), 0);
	memcpy(rec, "\0\x0c\x01\x00usbredir", 12);
	assert_int_equal(ug_pcap_writer_write(w, 0, rec, sizeof(rec), sizeof(rec)), 0);
	memcpy(rec, "\0\x0c\0\x08usbredir\0\x23\0\x04\0\0\0\0\0\0\0\0UGRW\x01\0\0\0", 32);
	memcpy(rec + 40, "\0\0\0\x20\0\0\0\x10", 8); /* total 32, offset 16 */
	assert_int_equal(ug_pcap_writer_write(w, 0, rec, sizeof(rec), sizeof(rec)), 0);
	assert_int_equal(ug_pcap_writer_close(w), 0);
	ug_pcap_writer_free(w);

	ug_raw_reader_free(rd);
	rd = ug_raw_reader_new();
	assert_int_equal(ug_raw_reader_open(rd, path), 0);
	assert_int_equal(ug_raw_reader_next(rd, &got), UG_E_PROTO);
	assert_non_null(strstr(ug_raw_reader_errmsg(rd), "record 1"));
	assert_int_equal(ug_raw_reader_next(rd, &got), UG_E_PROTO);
	assert_non_null(strstr(ug_raw_reader_errmsg(rd), "tag 12 claims 256 bytes"));
	assert_int_equal(ug_raw_reader_next(rd, &got), UG_E_PROTO);
	assert_non_null(strstr(ug_raw_reader_errmsg(rd), "without its start"));
	assert_int_equal(ug_raw_reader_next(rd, &got), 0);
	ug_raw_reader_free(rd);
	ug_raw_reader_free(NULL);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usbmon_file_readable_while_open),
		cmocka_unit_test(test_open_on_callers_stream),
		cmocka_unit_test(test_disk_full_is_nospc),
		cmocka_unit_test(test_broken_pipe_is_io),
		cmocka_unit_test(test_argument_checks),
		cmocka_unit_test(test_raw_record_layout),
		cmocka_unit_test(test_raw_round_trip_with_fragments),
		cmocka_unit_test(test_raw_reader_record_numbers),
		cmocka_unit_test(test_raw_reader_refuses_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
