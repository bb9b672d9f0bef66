/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pcap-writer.c: nanosecond pcap output through libpcap (usbmon, raw usbredir record) and the raw record reader. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "buf.h"
#include "common.h"

/* Exported-PDU tags (Wireshark's epan/exported_pdu.h). */
#define EXP_PDU_TAG_END_OF_OPT 0
#define EXP_PDU_TAG_DISSECTOR_NAME 12
#define EXP_PDU_TAG_P2P_DIRECTION 35

#define RAW_TAGS_SIZE 24
#define RAW_PREFIX_SIZE 24
#define RAW_MAGIC "UGRW"
#define RAW_VERSION 1

/* The largest record libpcap reads back for these link types. */
#define MAX_RECORD UG_USBMON_MAX_RECORD

struct ug_pcap_writer {
	pcap_t *dead;
	pcap_dumper_t *dumper;
	int linktype;
	int error;              /* sticky first error */
	uint64_t records;       /* records written and flushed completely */
	off_t good_end;         /* file offset after the last complete record, -1 unknown */
	char name[160];         /* the path, for messages */
	uint8_t *rec;           /* assembly buffer for raw records */
	char errmsg[UG_ERRMSG_SIZE];
};

UG_EXPORT ug_pcap_writer *ug_pcap_writer_new(void)
{
	return calloc(1, sizeof(struct ug_pcap_writer));
}

static int io_error(ug_pcap_writer *w, const char *what, int err)
{
	int code = (err == ENOSPC || err == EDQUOT) ? UG_E_NOSPC : UG_E_IO;

	if (!w->error) {
		w->error = code;
		ug_errmsg_set(w->errmsg, code, "%s: pcap %s after %llu records: %s", w->name, what,
		              (unsigned long long)w->records, strerror(err ? err : EIO));
	}
	return w->error;
}

/*
 * Cuts a regular file back to its last complete record, so that what was
 * written before a failure (a full disk) still reads to the end without a
 * half record. Other files (pipes, terminals) are left as they are.
 */
static void cut_to_last_record(int fd, off_t good_end)
{
	struct stat st;

	if (good_end >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > good_end &&
	    ftruncate(fd, good_end) != 0) {
		/* Nothing more can be done; the sticky error already says why. */
	}
}

/*
 * Pushes libpcap's stdio buffer to the file. prior_err is the errno of the
 * write just made (a full buffer may have failed there already, leaving only
 * the error flag for the flush to find).
 */
static int flush(ug_pcap_writer *w, const char *what, int prior_err)
{
	FILE *fp = pcap_dump_file(w->dumper);

	errno = 0;
	if (pcap_dump_flush(w->dumper) != 0 || ferror(fp)) {
		int err = errno ? errno : prior_err;

		cut_to_last_record(fileno(fp), w->good_end);
		return io_error(w, what, err);
	}
	w->good_end = ftello(fp);
	return 0;
}

UG_EXPORT int ug_pcap_writer_open(ug_pcap_writer *w, const char *path, int linktype)
{
	if (!w || !path)
		return UG_E_INVAL;
	if (w->dumper)
		return ug_errmsg_set(w->errmsg, UG_E_STATE, "pcap writer already open");
	if (linktype != UG_USBMON_LINKTYPE && linktype != UG_RAW_LINKTYPE)
		return ug_errmsg_set(w->errmsg, UG_E_INVAL, "pcap link type %d: only %d and %d",
		                     linktype, UG_USBMON_LINKTYPE, UG_RAW_LINKTYPE);
	w->dead = pcap_open_dead_with_tstamp_precision(linktype, MAX_RECORD,
	                                               PCAP_TSTAMP_PRECISION_NANO);
	if (!w->dead)
		return ug_errmsg_set(w->errmsg, UG_E_NOMEM, "pcap_open_dead failed");
	errno = 0;
	w->dumper = pcap_dump_open(w->dead, path);
	if (!w->dumper) {
		int err = errno;
		int code = (err == ENOSPC) ? UG_E_NOSPC : UG_E_IO;

		ug_errmsg_set(w->errmsg, code, "pcap %s: %s", path, pcap_geterr(w->dead));
		pcap_close(w->dead);
		w->dead = NULL;
		return code;
	}
	w->linktype = linktype;
	w->error = 0;
	w->records = 0;
	w->good_end = -1;
	snprintf(w->name, sizeof(w->name), "%s", path);
	return flush(w, "file header", 0);
}

UG_EXPORT int ug_pcap_writer_open_file(ug_pcap_writer *w, FILE *fp, int linktype)
{
	if (!w || !fp)
		return UG_E_INVAL;
	if (w->dumper)
		return ug_errmsg_set(w->errmsg, UG_E_STATE, "pcap writer already open");
	if (linktype != UG_USBMON_LINKTYPE && linktype != UG_RAW_LINKTYPE)
		return ug_errmsg_set(w->errmsg, UG_E_INVAL, "pcap link type %d: only %d and %d",
		                     linktype, UG_USBMON_LINKTYPE, UG_RAW_LINKTYPE);
	w->dead = pcap_open_dead_with_tstamp_precision(linktype, MAX_RECORD,
	                                               PCAP_TSTAMP_PRECISION_NANO);
	if (!w->dead)
		return ug_errmsg_set(w->errmsg, UG_E_NOMEM, "pcap_open_dead failed");
	w->dumper = pcap_dump_fopen(w->dead, fp);
	if (!w->dumper) {
		ug_errmsg_set(w->errmsg, UG_E_IO, "pcap stream: %s", pcap_geterr(w->dead));
		pcap_close(w->dead);
		w->dead = NULL;
		return UG_E_IO;
	}
	w->linktype = linktype;
	w->error = 0;
	w->records = 0;
	w->good_end = -1;
	snprintf(w->name, sizeof(w->name), "pcap stream");
	return flush(w, "file header", 0);
}

UG_EXPORT int ug_pcap_writer_write(ug_pcap_writer *w, uint64_t ts_ns, const void *bytes,
                                   uint32_t caplen, uint32_t origlen)
{
	struct pcap_pkthdr h;

	if (!w || (!bytes && caplen))
		return UG_E_INVAL;
	if (!w->dumper)
		return ug_errmsg_set(w->errmsg, UG_E_STATE, "pcap writer not open");
	if (w->error)
		return w->error;
	if (caplen > MAX_RECORD)
		return ug_errmsg_set(w->errmsg, UG_E_TOOBIG,
		                     "pcap record of %u bytes, limit %u", caplen, MAX_RECORD);
	if (origlen < caplen)
		origlen = caplen;
	memset(&h, 0, sizeof(h));
	/* With nanosecond precision libpcap stores tv_usec as nanoseconds. */
	h.ts.tv_sec = (time_t)(ts_ns / 1000000000u);
	h.ts.tv_usec = (suseconds_t)(ts_ns % 1000000000u);
	h.caplen = caplen;
	h.len = origlen;
	errno = 0;
	pcap_dump((u_char *)w->dumper, &h, bytes);
	if (flush(w, "write", errno) < 0)
		return w->error;
	w->records++;
	return 0;
}

UG_EXPORT int ug_pcap_writer_write_usbmon(ug_pcap_writer *w, const struct ug_usbmon_record *rec)
{
	if (!w || !rec)
		return UG_E_INVAL;
	if (w->dumper && w->linktype != UG_USBMON_LINKTYPE)
		return ug_errmsg_set(w->errmsg, UG_E_STATE, "usbmon record to a link type %d file",
		                     w->linktype);
	return ug_pcap_writer_write(w, rec->ts_ns, rec->bytes, rec->caplen, rec->origlen);
}

/* The header of one raw record: exported-PDU tags, then usbgate's prefix. */
static void raw_header(uint8_t *p, const struct ug_raw_record *rec, uint32_t total,
                       uint32_t offset)
{
	uint8_t flags = 0;

	ug_put_be16(p, EXP_PDU_TAG_DISSECTOR_NAME);
	ug_put_be16(p + 2, 8);
	memcpy(p + 4, "usbredir", 8);
	ug_put_be16(p + 12, EXP_PDU_TAG_P2P_DIRECTION);
	ug_put_be16(p + 14, 4);
	/* P2P_DIR_SENT (0) for the guest's packets, P2P_DIR_RECV (1) for the host's. */
	ug_put_be32(p + 16, rec->dir == UG_DIR_H2G ? 1 : 0);
	ug_put_be16(p + 20, EXP_PDU_TAG_END_OF_OPT);
	ug_put_be16(p + 22, 0);
	p += RAW_TAGS_SIZE;

	if (rec->caps_known)
		flags |= UG_RAW_FLAG_CAPS_KNOWN;
	/* Hellos always carry 32-bit ids, whatever was negotiated. */
	if (rec->caps_known && (rec->caps & (1u << usb_redir_cap_64bits_ids)) &&
	    !(rec->len >= 4 && ug_get_le32(rec->bytes) == usb_redir_hello))
		flags |= UG_RAW_FLAG_ID64;
	memcpy(p, RAW_MAGIC, 4);
	p[4] = RAW_VERSION;
	p[5] = rec->dir == UG_DIR_H2G ? 1 : 0;
	p[6] = flags;
	p[7] = 0;
	ug_put_be32(p + 8, rec->caps);
	ug_put_be32(p + 12, rec->session);
	ug_put_be32(p + 16, total);
	ug_put_be32(p + 20, offset);
}

UG_EXPORT int ug_pcap_writer_write_raw(ug_pcap_writer *w, const struct ug_raw_record *rec)
{
	const uint32_t room = MAX_RECORD - UG_RAW_HEADER_SIZE;
	uint32_t total, offset = 0;
	int err;

	if (!w || !rec || (!rec->bytes && rec->len))
		return UG_E_INVAL;
	if (!w->dumper)
		return ug_errmsg_set(w->errmsg, UG_E_STATE, "pcap writer not open");
	if (w->linktype != UG_RAW_LINKTYPE)
		return ug_errmsg_set(w->errmsg, UG_E_STATE, "raw record to a link type %d file",
		                     w->linktype);
	if (rec->len > UINT32_MAX)
		return ug_errmsg_set(w->errmsg, UG_E_TOOBIG, "raw packet of %zu bytes", rec->len);
	total = (uint32_t)rec->len;
	if (!w->rec) {
		w->rec = malloc(MAX_RECORD);
		if (!w->rec)
			return ug_errmsg_set(w->errmsg, UG_E_NOMEM, "raw record buffer");
	}
	/* A packet larger than one readable record goes out in fragments. */
	do {
		uint32_t n = total - offset < room ? total - offset : room;

		raw_header(w->rec, rec, total, offset);
		if (n)
			memcpy(w->rec + UG_RAW_HEADER_SIZE, rec->bytes + offset, n);
		err = ug_pcap_writer_write(w, rec->ts_ns, w->rec, UG_RAW_HEADER_SIZE + n,
		                           UG_RAW_HEADER_SIZE + n);
		if (err)
			return err;
		offset += n;
	} while (offset < total);
	return 0;
}

UG_EXPORT uint64_t ug_pcap_writer_records(const ug_pcap_writer *w)
{
	return w ? w->records : 0;
}

UG_EXPORT int ug_pcap_writer_close(ug_pcap_writer *w)
{
	int err;

	if (!w)
		return UG_E_INVAL;
	if (!w->dumper)
		return w->error;
	err = w->error ? w->error : flush(w, "close", 0);
	/* pcap_dump_close() reports nothing, and some file systems report
	 * write errors only at fsync or close: ask for them here. Pipes and
	 * terminals cannot be synced, which is no error. */
	if (!err && fsync(fileno(pcap_dump_file(w->dumper))) != 0 && errno != EINVAL &&
	    errno != EROFS && errno != ENOTSUP)
		err = io_error(w, "close", errno);
	if (err) {
		/* Closing flushes what stdio still holds of the failed record:
		 * cut the file back once more after that. */
		int fd = dup(fileno(pcap_dump_file(w->dumper)));

		pcap_dump_close(w->dumper);
		if (fd >= 0) {
			cut_to_last_record(fd, w->good_end);
			close(fd);
		}
	} else {
		pcap_dump_close(w->dumper);
	}
	pcap_close(w->dead);
	w->dumper = NULL;
	w->dead = NULL;
	return err;
}

UG_EXPORT void ug_pcap_writer_free(ug_pcap_writer *w)
{
	if (!w)
		return;
	ug_pcap_writer_close(w);
	free(w->rec);
	free(w);
}

UG_EXPORT const char *ug_pcap_writer_errmsg(const ug_pcap_writer *w)
{
	return w ? w->errmsg : "";
}

/* ---- raw record reader ---------------------------------------------------- */

struct ug_raw_reader {
	pcap_t *p;
	uint32_t max_packet;
	uint64_t record_no;     /* records read from the file so far */
	uint64_t packet_record; /* the record where the packet last returned starts */
	struct ug_buf asm_buf;  /* a fragmented packet being joined */
	char errmsg[UG_ERRMSG_SIZE];
};

UG_EXPORT ug_raw_reader *ug_raw_reader_new(void)
{
	ug_raw_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->max_packet = UG_USBREDIR_DEFAULT_MAX_PACKET;
	ug_buf_init(&r->asm_buf, r->max_packet);
	return r;
}

UG_EXPORT void ug_raw_reader_free(ug_raw_reader *r)
{
	if (!r)
		return;
	if (r->p)
		pcap_close(r->p);
	ug_buf_release(&r->asm_buf);
	free(r);
}

UG_EXPORT int ug_raw_reader_set_max_packet(ug_raw_reader *r, uint32_t max)
{
	if (!r || max == 0)
		return UG_E_INVAL;
	r->max_packet = max;
	r->asm_buf.max = max;
	return 0;
}

UG_EXPORT int ug_raw_reader_open(ug_raw_reader *r, const char *path)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	int dlt;

	if (!r || !path)
		return UG_E_INVAL;
	if (r->p)
		return ug_errmsg_set(r->errmsg, UG_E_STATE, "raw reader already open");
	errbuf[0] = 0;
	r->p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	if (!r->p)
		return ug_errmsg_set(r->errmsg, UG_E_IO, "%s: %s", path, errbuf);
	dlt = pcap_datalink(r->p);
	if (dlt != UG_RAW_LINKTYPE) {
		pcap_close(r->p);
		r->p = NULL;
		return ug_errmsg_set(r->errmsg, UG_E_UNSUPPORTED,
		                     "%s: link type %d, not the raw usbredir record (%d)", path, dlt,
		                     UG_RAW_LINKTYPE);
	}
	r->record_no = 0;
	r->packet_record = 0;
	ug_buf_reset(&r->asm_buf);
	return 0;
}

/* One parsed record: its prefix fields and the fragment it carries. */
struct raw_frag {
	int dir;
	uint8_t flags;
	uint32_t caps, session, total, offset;
	const uint8_t *bytes;
	uint32_t len;
	uint64_t ts_ns;
};

static int parse_record(ug_raw_reader *r, const struct pcap_pkthdr *h, const uint8_t *p,
                        struct raw_frag *f)
{
	uint32_t left = h->caplen, pos = 0;
	int named = 0;

	if (h->caplen < h->len)
		return ug_errmsg_set(r->errmsg, UG_E_TRUNCATED,
		                     "record %llu: %u of %u bytes captured",
		                     (unsigned long long)r->record_no, h->caplen, h->len);
	/* Tags: walk them by their lengths until the end-of-options tag. */
	for (;;) {
		uint16_t tag, tlen;

		if (left - pos < 4)
			return ug_errmsg_set(r->errmsg, UG_E_PROTO,
			                     "record %llu: tags run past %u bytes",
			                     (unsigned long long)r->record_no, left);
		tag = ug_get_be16(p + pos);
		tlen = ug_get_be16(p + pos + 2);
		pos += 4;
		if (tag == EXP_PDU_TAG_END_OF_OPT)
			break;
		if (tlen > left - pos)
			return ug_errmsg_set(r->errmsg, UG_E_PROTO,
			                     "record %llu: tag %u claims %u bytes, %u left",
			                     (unsigned long long)r->record_no, tag, tlen, left - pos);
		if (tag == EXP_PDU_TAG_DISSECTOR_NAME) {
			uint16_t n = tlen;

			while (n && p[pos + n - 1] == 0)
				n--;
			named = n == 8 && memcmp(p + pos, "usbredir", 8) == 0;
		}
		pos += tlen;
	}
	if (!named)
		return ug_errmsg_set(r->errmsg, UG_E_PROTO,
		                     "record %llu: not tagged with dissector name \"usbredir\"",
		                     (unsigned long long)r->record_no);
	if (left - pos < RAW_PREFIX_SIZE || memcmp(p + pos, RAW_MAGIC, 4) != 0)
		return ug_errmsg_set(r->errmsg, UG_E_PROTO, "record %llu: no usbgate prefix",
		                     (unsigned long long)r->record_no);
	if (p[pos + 4] != RAW_VERSION)
		return ug_errmsg_set(r->errmsg, UG_E_UNSUPPORTED,
		                     "record %llu: prefix version %u, this reader knows %u",
		                     (unsigned long long)r->record_no, p[pos + 4], RAW_VERSION);
	f->dir = p[pos + 5] ? UG_DIR_H2G : UG_DIR_G2H;
	f->flags = p[pos + 6];
	f->caps = ug_get_be32(p + pos + 8);
	f->session = ug_get_be32(p + pos + 12);
	f->total = ug_get_be32(p + pos + 16);
	f->offset = ug_get_be32(p + pos + 20);
	pos += RAW_PREFIX_SIZE;
	f->bytes = p + pos;
	f->len = left - pos;
	f->ts_ns = (uint64_t)h->ts.tv_sec * 1000000000u + (uint64_t)h->ts.tv_usec;
	if (f->offset > f->total || f->len > f->total - f->offset)
		return ug_errmsg_set(r->errmsg, UG_E_PROTO,
		                     "record %llu: fragment of %u bytes at %u exceeds packet of %u",
		                     (unsigned long long)r->record_no, f->len, f->offset, f->total);
	if (f->total > r->max_packet)
		return ug_errmsg_set(r->errmsg, UG_E_TOOBIG,
		                     "record %llu: packet of %u bytes, limit %u",
		                     (unsigned long long)r->record_no, f->total, r->max_packet);
	return 0;
}

static void fill(struct ug_raw_record *rec, const struct raw_frag *f, const uint8_t *bytes)
{
	rec->dir = f->dir;
	rec->ts_ns = f->ts_ns;
	rec->caps = f->caps;
	rec->caps_known = (f->flags & UG_RAW_FLAG_CAPS_KNOWN) != 0;
	rec->session = f->session;
	rec->bytes = bytes;
	rec->len = f->total;
}

UG_EXPORT int ug_raw_reader_next(ug_raw_reader *r, struct ug_raw_record *ret_rec)
{
	struct raw_frag first = { 0 };
	uint64_t first_no = 0;
	int joining = 0;

	if (!r || !ret_rec)
		return UG_E_INVAL;
	if (!r->p)
		return ug_errmsg_set(r->errmsg, UG_E_STATE, "raw reader not open");
	ug_buf_reset(&r->asm_buf);
	for (;;) {
		struct pcap_pkthdr *h;
		const u_char *p;
		struct raw_frag f = { 0 };
		int rc = pcap_next_ex(r->p, &h, &p);
		int err;

		if (rc == PCAP_ERROR_BREAK) {
			if (joining)
				return ug_errmsg_set(r->errmsg, UG_E_TRUNCATED,
				                     "file ends inside a packet of %u bytes (%zu joined)",
				                     first.total, r->asm_buf.len);
			return 0;
		}
		if (rc != 1)
			return ug_errmsg_set(r->errmsg,
			                     strstr(pcap_geterr(r->p), "truncated") ? UG_E_TRUNCATED
			                                                            : UG_E_IO,
			                     "record %llu: %s", (unsigned long long)r->record_no + 1,
			                     pcap_geterr(r->p));
		r->record_no++;
		err = parse_record(r, h, p, &f);
		if (err)
			return err;
		if (!joining) {
			if (f.offset != 0)
				return ug_errmsg_set(r->errmsg, UG_E_PROTO,
				                     "record %llu: fragment at %u without its start",
				                     (unsigned long long)r->record_no, f.offset);
			if (f.len == f.total) {
				fill(ret_rec, &f, f.bytes);
				r->packet_record = r->record_no;
				return 1;
			}
			first = f;
			first_no = r->record_no;
			joining = 1;
		} else if (f.offset != r->asm_buf.len || f.total != first.total ||
		           f.dir != first.dir || f.session != first.session) {
			return ug_errmsg_set(r->errmsg, UG_E_PROTO,
			                     "record %llu: fragment at %u of %u does not continue "
			                     "the packet of %u joined to %zu",
			                     (unsigned long long)r->record_no, f.offset, f.total,
			                     first.total, r->asm_buf.len);
		}
		err = ug_buf_append(&r->asm_buf, f.bytes, f.len);
		if (err)
			return ug_errmsg_set(r->errmsg, err, "record %llu: joining %u bytes",
			                     (unsigned long long)r->record_no, f.total);
		if (r->asm_buf.len == first.total) {
			fill(ret_rec, &first, ug_buf_peek(&r->asm_buf));
			r->packet_record = first_no;
			return 1;
		}
	}
}

UG_EXPORT uint64_t ug_raw_reader_record(const ug_raw_reader *r)
{
	return r ? r->packet_record : 0;
}

UG_EXPORT const char *ug_raw_reader_errmsg(const ug_raw_reader *r)
{
	return r ? r->errmsg : "";
}
