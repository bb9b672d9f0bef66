/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pcap-source.c: ug_capture, frames from libpcap (files or live) decoded down to TCP and reassembled. */
#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "tcp-reassembly.h"

/* What a live capture keeps of each frame: enough for any TCP segment. */
#define LIVE_SNAPLEN 262144
/* Kernel ring for a live capture, and how long a partly filled block waits. */
#define LIVE_BUFFER (32 * 1024 * 1024)
#define LIVE_TIMEOUT_MS 50
/* How many VLAN tags and IPv6 extension headers are walked before giving up. */
#define MAX_VLAN_TAGS 4
#define MAX_IPV6_EXT 16

struct ug_capture {
	pcap_t *p;
	int live;
	int linktype;
	int nano;               /* timestamps are in ns (else us) */
	uint64_t file_size;     /* 0 when unknown */
	struct ug_tcp_reasm *r;
	struct ug_capture_stats st;
	uint64_t frame;         /* number of the last frame read */
	uint64_t last_ts;
	int stopped;            /* ug_capture_stop() was called */
	gint64 drain_until;     /* live, stopped: read what the kernel holds until then (us) */
	int finished;           /* the reassembler was told there is no more */
	int ended;              /* next() returned 0 for good */
	char err[UG_ERRMSG_SIZE];
};

UG_EXPORT ug_capture *ug_capture_new(void)
{
	ug_capture *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->r = ug_tcp_reasm_new();
	if (!c->r) {
		free(c);
		return NULL;
	}
	c->linktype = -1;
	return c;
}

UG_EXPORT void ug_capture_free(ug_capture *c)
{
	if (!c)
		return;
	if (c->p)
		pcap_close(c->p);
	ug_tcp_reasm_free(c->r);
	free(c);
}

UG_EXPORT const char *ug_capture_errmsg(const ug_capture *c)
{
	return c->err;
}

UG_EXPORT int ug_capture_set_limits(ug_capture *c, const struct ug_capture_limits *limits)
{
	int ret = ug_tcp_reasm_set_limits(c->r, limits);

	if (ret < 0)
		ug_errmsg_set(c->err, ret, "%s", ug_tcp_reasm_errmsg(c->r));
	return ret;
}

static int linktype_supported(int dlt)
{
	switch (dlt) {
	case DLT_EN10MB:
	case DLT_LINUX_SLL:
	case DLT_LINUX_SLL2:
	case DLT_NULL:
	case DLT_LOOP:
	case DLT_RAW:
	case DLT_IPV4:
	case DLT_IPV6:
		return 1;
	default:
		return 0;
	}
}

/* Takes p (closed on failure) as the capture's handle after checking its link type. */
static int adopt(ug_capture *c, pcap_t *p, const char *what)
{
	int dlt = pcap_datalink(p);

	if (!linktype_supported(dlt)) {
		const char *name = pcap_datalink_val_to_name(dlt);

		pcap_close(p);
		return ug_errmsg_set(c->err, UG_E_UNSUPPORTED,
		                     "%s: link type %d (%s) is not supported; supported are "
		                     "Ethernet, Linux cooked v1 and v2, BSD loopback and raw IP",
		                     what, dlt, name ? name : "unknown");
	}
	c->p = p;
	c->linktype = dlt;
	c->nano = pcap_get_tstamp_precision(p) == PCAP_TSTAMP_PRECISION_NANO;
	return 0;
}

static int check_unopened(ug_capture *c)
{
	if (c->p || c->ended)
		return ug_errmsg_set(c->err, UG_E_STATE, "the capture is already open");
	return 0;
}

UG_EXPORT int ug_capture_open_file(ug_capture *c, const char *path)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	struct stat stb;
	pcap_t *p;
	int ret;

	if ((ret = check_unopened(c)) < 0)
		return ret;
	if (!path)
		return ug_errmsg_set(c->err, UG_E_INVAL, "no file name");
	if (strcmp(path, "-") == 0) {
		p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO,
		                                            errbuf);
		if (!p)
			return ug_errmsg_set(c->err, UG_E_IO, "standard input: %s", errbuf);
	} else {
		/* Opened here, not by libpcap, whose message for a file it cannot
		 * open already carries the path: each message names it once. */
		FILE *fp = fopen(path, "rb");

		if (!fp)
			return ug_errmsg_set(c->err, UG_E_IO, "%s: %s", path, strerror(errno));
		p = pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO,
		                                             errbuf);
		if (!p) {
			/* On failure libpcap leaves fp to the caller. */
			fclose(fp);
			return ug_errmsg_set(c->err, UG_E_IO, "%s: %s", path, errbuf);
		}
	}
	if (fstat(fileno(pcap_file(p)), &stb) == 0 && S_ISREG(stb.st_mode))
		c->file_size = (uint64_t)stb.st_size;
	return adopt(c, p, path);
}

UG_EXPORT int ug_capture_open_memory(ug_capture *c, const void *buf, size_t len)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	pcap_t *p;
	FILE *fp;
	int ret;

	if ((ret = check_unopened(c)) < 0)
		return ret;
	if (!buf || len == 0)
		return ug_errmsg_set(c->err, UG_E_IO, "capture image: empty");
	/* Opened read-only: the buffer is never written through fp. */
	fp = fmemopen((void *)(uintptr_t)buf, len, "rb");
	if (!fp)
		return ug_errmsg_set(c->err, UG_E_NOMEM, "capture image: fmemopen: %s",
		                     strerror(errno));
	p = pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, errbuf);
	if (!p) {
		/* On failure libpcap leaves fp to the caller. */
		fclose(fp);
		return ug_errmsg_set(c->err, UG_E_IO, "capture image: %s", errbuf);
	}
	c->file_size = len;
	return adopt(c, p, "capture image");
}

UG_EXPORT int ug_capture_open_live(ug_capture *c, const char *iface, const char *filter)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	struct bpf_program prog;
	pcap_t *p;
	int ret;

	if ((ret = check_unopened(c)) < 0)
		return ret;
	if (!iface)
		return ug_errmsg_set(c->err, UG_E_INVAL, "no interface name");
	if (!filter || !*filter)
		filter = "tcp";
	p = pcap_create(iface, errbuf);
	if (!p)
		return ug_errmsg_set(c->err, UG_E_IO, "%s: %s", iface, errbuf);
	pcap_set_snaplen(p, LIVE_SNAPLEN);
	pcap_set_promisc(p, 0);
	/*
	 * Not immediate mode: on Linux that makes libpcap use fixed ring slots
	 * of the whole snapshot length, so the default 2 MiB ring holds only
	 * 8 frames and a short stall of the reader drops frames (seen on
	 * loopback). Packed blocks with a short timeout keep every frame and
	 * still deliver within LIVE_TIMEOUT_MS.
	 */
	pcap_set_timeout(p, LIVE_TIMEOUT_MS);
	pcap_set_buffer_size(p, LIVE_BUFFER);
	/* Nanoseconds where the platform has them; microseconds otherwise. */
	pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO);
	ret = pcap_activate(p);
	if (ret < 0) {
		const char *detail = ret == PCAP_ERROR ? pcap_geterr(p) : "";

		ug_errmsg_set(c->err, UG_E_IO, "%s: %s%s%s", iface, pcap_statustostr(ret),
		              *detail ? ": " : "", detail);
		pcap_close(p);
		return UG_E_IO;
	}
	if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		ug_errmsg_set(c->err, UG_E_INVAL, "%s: filter \"%s\": %s", iface, filter,
		              pcap_geterr(p));
		pcap_close(p);
		return UG_E_INVAL;
	}
	ret = pcap_setfilter(p, &prog);
	pcap_freecode(&prog);
	if (ret < 0) {
		ug_errmsg_set(c->err, UG_E_IO, "%s: setting the filter: %s", iface, pcap_geterr(p));
		pcap_close(p);
		return UG_E_IO;
	}
	if (pcap_setnonblock(p, 1, errbuf) < 0) {
		ug_errmsg_set(c->err, UG_E_IO, "%s: non-blocking mode: %s", iface, errbuf);
		pcap_close(p);
		return UG_E_IO;
	}
	c->live = 1;
	return adopt(c, p, iface);
}

UG_EXPORT int ug_capture_fd(const ug_capture *c)
{
	if (!c->p || !c->live)
		return -1;
	return pcap_get_selectable_fd(c->p);
}

UG_EXPORT int ug_capture_linktype(const ug_capture *c)
{
	return c->p ? c->linktype : -1;
}

UG_EXPORT int ug_capture_progress(const ug_capture *c, uint64_t *ret_done, uint64_t *ret_total)
{
	long pos;

	if (!c->p || c->live)
		return UG_E_STATE;
	pos = ftell(pcap_file(c->p));
	if (pos < 0)
		pos = 0;
	if (ret_done)
		*ret_done = (uint64_t)pos;
	if (ret_total)
		*ret_total = c->file_size;
	return 0;
}

UG_EXPORT void ug_capture_get_stats(const ug_capture *c, struct ug_capture_stats *ret_stats)
{
	struct pcap_stat ps;

	*ret_stats = c->st;
	if (c->p && c->live && pcap_stats(c->p, &ps) == 0)
		ret_stats->frames_dropped = (uint64_t)ps.ps_drop + ps.ps_ifdrop;
	ug_tcp_reasm_add_stats(c->r, ret_stats);
}

/*
 * A live capture's frames reach us in blocks the kernel hands over when full
 * or LIVE_TIMEOUT_MS after their first frame: at a stop, the frames of the
 * last moments are still in the kernel. They are read first (next() waits
 * for them, two block timeouts in all), so that a stop loses nothing that
 * was captured before it.
 */
UG_EXPORT void ug_capture_stop(ug_capture *c)
{
	if (c->stopped)
		return;
	c->stopped = 1;
	if (c->live && c->p)
		c->drain_until = g_get_monotonic_time() + 2 * LIVE_TIMEOUT_MS * 1000;
}

/* After a stop: 1 with a frame the kernel still held, 0 when there is no more. */
static int drain_next(ug_capture *c, struct pcap_pkthdr **hdr, const u_char **data)
{
	struct pollfd pfd = { .fd = pcap_get_selectable_fd(c->p), .events = POLLIN };

	for (;;) {
		/* Bounded in time, not by frames: the traffic may go on. A file
		 * capture (drain_until 0) has nothing to drain. */
		gint64 left_ms = (c->drain_until - g_get_monotonic_time()) / 1000;
		int rc;

		if (left_ms <= 0)
			return 0;
		rc = pcap_next_ex(c->p, hdr, data);
		if (rc != 0)
			return rc == 1;
		if (pfd.fd < 0 || (poll(&pfd, 1, (int)left_ms) < 0 && errno != EINTR))
			return 0;
	}
}

UG_EXPORT int ug_capture_at_end(const ug_capture *c)
{
	return c->ended;
}

UG_EXPORT char *ug_capture_endpoint_format(const struct ug_capture_endpoint *e, char *buf,
                                           size_t size)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (!buf || size == 0)
		return buf;
	inet_ntop(e->family == 6 ? AF_INET6 : AF_INET, e->addr, a, sizeof(a));
	snprintf(buf, size, e->family == 6 ? "[%s]:%u" : "%s:%u", a, e->port);
	return buf;
}

/* ---- frames down to TCP ---- */

/* The frame being decoded: captured bytes and the length it had on the wire. */
struct frame {
	const uint8_t *p;
	uint32_t caplen;
	uint32_t len;
	uint64_t no;
	uint64_t ts;
};

static int frame_notice(ug_capture *c, const struct frame *f, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Reports a frame that cannot be used; the frame is skipped, reading goes on. */
static int frame_notice(ug_capture *c, const struct frame *f, int code, const char *fmt, ...)
{
	char m[UG_ERRMSG_SIZE];
	va_list ap;

	c->st.frames_skipped++;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	return ug_tcp_reasm_notice(c->r, f->no, f->ts, code, "frame %llu: %s",
	                           (unsigned long long)f->no, m);
}

/* A frame that carries no IP at all (ARP, LLDP, ...): skipped silently. */
static int skip_quietly(ug_capture *c)
{
	c->st.frames_skipped++;
	return 0;
}

static int tcp_segment(ug_capture *c, const struct frame *f, uint8_t family,
                       const uint8_t *src, const uint8_t *dst, uint32_t off,
                       uint32_t l4len, uint32_t l4cap)
{
	const uint8_t *t = f->p + off;
	struct ug_tcp_segment seg;
	uint32_t doff;
	int ret;

	if (l4len < 20)
		return frame_notice(c, f, UG_E_PROTO, "TCP segment of %u bytes is shorter than "
		                   "its 20-byte header", l4len);
	if (l4cap < 20)
		return frame_notice(c, f, UG_E_TRUNCATED, "TCP header truncated: captured %u of "
		                   "at least 20 bytes", l4cap);
	doff = (uint32_t)(t[12] >> 4) * 4;
	if (doff < 20 || doff > l4len)
		return frame_notice(c, f, UG_E_PROTO, "TCP header length %u outside 20..%u", doff,
		                   l4len);
	if (doff > l4cap)
		return frame_notice(c, f, UG_E_TRUNCATED, "TCP header truncated: captured %u of "
		                   "%u bytes", l4cap, doff);
	memset(&seg, 0, sizeof(seg));
	seg.family = family;
	memcpy(seg.src, src, family == 4 ? 4 : 16);
	memcpy(seg.dst, dst, family == 4 ? 4 : 16);
	seg.sport = ug_get_be16(t);
	seg.dport = ug_get_be16(t + 2);
	seg.seq = ug_get_be32(t + 4);
	seg.ack = ug_get_be32(t + 8);
	seg.flags = t[13] & (UG_TCP_FIN | UG_TCP_SYN | UG_TCP_RST | UG_TCP_ACK);
	seg.len = l4len - doff;
	seg.caplen = l4cap - doff;
	seg.data = seg.caplen ? t + doff : NULL;
	seg.ts_ns = f->ts;
	seg.frame = f->no;
	ret = ug_tcp_reasm_segment(c->r, &seg);
	if (ret < 0)
		ug_errmsg_set(c->err, ret, "%s", ug_tcp_reasm_errmsg(c->r));
	return ret;
}

static int ipv4(ug_capture *c, const struct frame *f, uint32_t off)
{
	const uint8_t *h = f->p + off;
	uint32_t cap = f->caplen - off, wire = f->len - off;
	uint32_t ihl, total, frag;

	if (wire < 20)
		return frame_notice(c, f, UG_E_PROTO, "IPv4 packet of %u bytes is shorter than its "
		                   "20-byte header", wire);
	if (cap < 20)
		return frame_notice(c, f, UG_E_TRUNCATED, "IPv4 header truncated: captured %u of "
		                   "at least 20 bytes", cap);
	if (h[0] >> 4 != 4)
		return frame_notice(c, f, UG_E_PROTO, "IPv4 header has version %u", h[0] >> 4);
	ihl = (uint32_t)(h[0] & 0x0f) * 4;
	total = ug_get_be16(h + 2);
	/* Segmentation offload can hand the capture a packet too large for
	 * the 16-bit field, which then reads 0: the frame tells the length. */
	if (total == 0 && wire > 0xffff)
		total = wire;
	if (ihl < 20 || ihl > total)
		return frame_notice(c, f, UG_E_PROTO, "IPv4 header length %u outside 20..%u", ihl,
		                   total);
	if (total > wire)
		return frame_notice(c, f, UG_E_PROTO, "IPv4 total length %u exceeds the %u bytes "
		                   "of the frame after the link header", total, wire);
	if (ihl > cap)
		return frame_notice(c, f, UG_E_TRUNCATED, "IPv4 header truncated: captured %u of "
		                   "%u bytes", cap, ihl);
	frag = ug_get_be16(h + 6);
	if (frag & 0x3fff)
		return frame_notice(c, f, UG_E_UNSUPPORTED, "IPv4 fragment (id %u, offset %u%s) "
		                   "not supported: skipped", ug_get_be16(h + 4),
		                   (frag & 0x1fff) * 8, frag & 0x2000 ? ", more follow" : "");
	if (h[9] != 6)
		return skip_quietly(c);
	/* Ethernet pads short frames: only the total length counts. */
	if (cap > total)
		cap = total;
	return tcp_segment(c, f, 4, h + 12, h + 16, off + ihl, total - ihl, cap - ihl);
}

static int ipv6(ug_capture *c, const struct frame *f, uint32_t off)
{
	const uint8_t *h = f->p + off;
	uint32_t cap = f->caplen - off, wire = f->len - off;
	uint32_t plen, pos = 40, total;
	uint8_t nh;

	if (wire < 40)
		return frame_notice(c, f, UG_E_PROTO, "IPv6 packet of %u bytes is shorter than its "
		                   "40-byte header", wire);
	if (cap < 40)
		return frame_notice(c, f, UG_E_TRUNCATED, "IPv6 header truncated: captured %u of "
		                   "40 bytes", cap);
	if (h[0] >> 4 != 6)
		return frame_notice(c, f, UG_E_PROTO, "IPv6 header has version %u", h[0] >> 4);
	plen = ug_get_be16(h + 4);
	nh = h[6];
	if (plen == 0 && nh != 59)
		return frame_notice(c, f, UG_E_UNSUPPORTED, "IPv6 payload length 0 (jumbogram) "
		                   "not supported: skipped");
	total = 40 + plen;
	if (total > wire)
		return frame_notice(c, f, UG_E_PROTO, "IPv6 payload length %u exceeds the %u bytes "
		                   "of the frame after the header", plen, wire - 40);
	if (cap > total)
		cap = total;
	for (int i = 0; nh != 6; i++) {
		const uint8_t *e = h + pos;
		uint32_t elen;

		if (i == MAX_IPV6_EXT)
			return frame_notice(c, f, UG_E_UNSUPPORTED, "more than %d IPv6 extension "
			                   "headers: skipped", MAX_IPV6_EXT);
		switch (nh) {
		case 0:     /* hop-by-hop options */
		case 43:    /* routing */
		case 44:    /* fragment */
		case 51:    /* authentication header */
		case 60:    /* destination options */
		case 135:   /* mobility */
		case 139:   /* HIP */
		case 140:   /* shim6 */
			break;
		default:    /* no TCP in this packet (UDP, ESP, no next header, ...) */
			return skip_quietly(c);
		}
		if (pos + 8 > total)
			return frame_notice(c, f, UG_E_PROTO, "IPv6 extension header %u at offset %u "
			                   "runs past the payload length %u", nh, pos, plen);
		if (pos + 8 > cap)
			return frame_notice(c, f, UG_E_TRUNCATED, "IPv6 extension header %u "
			                   "truncated: captured %u bytes", nh, cap);
		if (nh == 44) {
			uint32_t fo = ug_get_be16(e + 2);

			/* An atomic fragment (offset 0, no more) is a whole packet. */
			if ((fo & 0xfff8) || (fo & 1))
				return frame_notice(c, f, UG_E_UNSUPPORTED, "IPv6 fragment (id %u, "
				                   "offset %u%s) not supported: skipped",
				                   ug_get_be32(e + 4), fo & 0xfff8,
				                   fo & 1 ? ", more follow" : "");
			elen = 8;
		} else if (nh == 51) {
			elen = ((uint32_t)e[1] + 2) * 4;
		} else {
			elen = ((uint32_t)e[1] + 1) * 8;
		}
		if (pos + elen > total)
			return frame_notice(c, f, UG_E_PROTO, "IPv6 extension header %u of %u bytes "
			                   "runs past the payload length %u", nh, elen, plen);
		nh = e[0];
		pos += elen;
	}
	if (pos > cap)
		return frame_notice(c, f, UG_E_TRUNCATED, "IPv6 headers truncated: captured %u of "
		                   "%u bytes", cap, pos);
	return tcp_segment(c, f, 6, h + 8, h + 24, off + pos, total - pos, cap - pos);
}

/* Dispatches on an EtherType found at some offset of the link header. */
static int ethertype(ug_capture *c, const struct frame *f, uint16_t type, uint32_t off)
{
	switch (type) {
	case 0x0800:
		return ipv4(c, f, off);
	case 0x86dd:
		return ipv6(c, f, off);
	default:
		return skip_quietly(c);
	}
}

static int need_link(ug_capture *c, const struct frame *f, const char *what, uint32_t n)
{
	if (f->len < n)
		return frame_notice(c, f, UG_E_PROTO, "%s needs %u bytes, the frame has %u", what,
		                   n, f->len);
	return frame_notice(c, f, UG_E_TRUNCATED, "%s needs %u bytes, captured %u", what, n,
	                   f->caplen);
}

/* An IP packet at off whose version nibble says which one. */
static int raw_ip(ug_capture *c, const struct frame *f, uint32_t off)
{
	if (f->caplen <= off)
		return need_link(c, f, "raw IP packet", off + 1);
	switch (f->p[off] >> 4) {
	case 4:
		return ipv4(c, f, off);
	case 6:
		return ipv6(c, f, off);
	default:
		return frame_notice(c, f, UG_E_PROTO, "raw IP packet has version %u",
		                   f->p[off] >> 4);
	}
}

/* BSD loopback: a 4-byte address family (host order for NULL, network for LOOP). */
static int bsd_loopback(ug_capture *c, const struct frame *f, int big_endian)
{
	uint32_t af;

	if (f->caplen < 4)
		return need_link(c, f, "loopback header", 4);
	af = big_endian ? ug_get_be32(f->p) : ug_get_le32(f->p);
	/* DLT_NULL is in the byte order of the machine that captured. */
	if (!big_endian && af > 0xffff)
		af = ug_get_be32(f->p);
	switch (af) {
	case 2:     /* AF_INET everywhere */
		return ipv4(c, f, 4);
	case 10:    /* AF_INET6: Linux */
	case 24:    /* NetBSD, OpenBSD */
	case 28:    /* FreeBSD */
	case 30:    /* macOS */
		return ipv6(c, f, 4);
	default:
		return skip_quietly(c);
	}
}

static int frame(ug_capture *c, const struct frame *f)
{
	uint32_t off;
	uint16_t type;

	switch (c->linktype) {
	case DLT_EN10MB:
		if (f->caplen < 14)
			return need_link(c, f, "Ethernet header", 14);
		type = ug_get_be16(f->p + 12);
		off = 14;
		for (int i = 0; type == 0x8100 || type == 0x88a8 || type == 0x9100; i++) {
			if (i == MAX_VLAN_TAGS)
				return frame_notice(c, f, UG_E_UNSUPPORTED, "more than %d VLAN tags",
				                   MAX_VLAN_TAGS);
			if (f->caplen < off + 4)
				return need_link(c, f, "VLAN tag", off + 4);
			type = ug_get_be16(f->p + off + 2);
			off += 4;
		}
		return ethertype(c, f, type, off);
	case DLT_LINUX_SLL:
		if (f->caplen < 16)
			return need_link(c, f, "Linux cooked header", 16);
		return ethertype(c, f, ug_get_be16(f->p + 14), 16);
	case DLT_LINUX_SLL2:
		if (f->caplen < 20)
			return need_link(c, f, "Linux cooked v2 header", 20);
		return ethertype(c, f, ug_get_be16(f->p), 20);
	case DLT_NULL:
		return bsd_loopback(c, f, 0);
	case DLT_LOOP:
		return bsd_loopback(c, f, 1);
	default:    /* DLT_RAW, DLT_IPV4, DLT_IPV6 */
		return raw_ip(c, f, 0);
	}
}

/* No more frames: every connection is flushed and closed. */
static int finish(ug_capture *c)
{
	int ret;

	c->finished = 1;
	ret = ug_tcp_reasm_finish(c->r, c->last_ts, c->frame);
	if (ret < 0)
		ug_errmsg_set(c->err, ret, "%s", ug_tcp_reasm_errmsg(c->r));
	return ret;
}

UG_EXPORT int ug_capture_next(ug_capture *c, struct ug_capture_event *ret_ev)
{
	struct pcap_pkthdr *hdr;
	const u_char *data;
	struct frame f;
	int rc, ret;

	for (;;) {
		if (ug_tcp_reasm_next(c->r, ret_ev) == 1)
			return 1;
		if (c->ended)
			return 0;
		if (c->finished) {
			c->ended = 1;
			return 0;
		}
		if (!c->p)
			return ug_errmsg_set(c->err, UG_E_STATE, "no capture is open");
		rc = c->stopped ? drain_next(c, &hdr, &data) : pcap_next_ex(c->p, &hdr, &data);
		if (c->stopped && rc != 1) {
			if ((ret = finish(c)) < 0)
				return ret;
			continue;
		}
		if (rc == 0)
			return 0;       /* live: nothing yet */
		if (rc == PCAP_ERROR_BREAK) {
			if ((ret = finish(c)) < 0)
				return ret;
			continue;
		}
		if (rc < 0) {
			/* A damaged file or a failing interface: say so, then
			 * close what was open as at the end of the capture. */
			const char *why = pcap_geterr(c->p);

			ret = ug_tcp_reasm_notice(c->r, c->frame + 1, c->last_ts,
			                          strstr(why, "truncated") ? UG_E_TRUNCATED : UG_E_IO,
			                          "frame %llu: %s; reading stops here",
			                          (unsigned long long)c->frame + 1, why);
			if (ret == 0)
				ret = finish(c);
			if (ret < 0)
				return ret;
			continue;
		}
		c->frame++;
		c->st.frames++;
		f.p = data;
		f.caplen = hdr->caplen;
		f.len = hdr->len;
		f.no = c->frame;
		f.ts = (uint64_t)hdr->ts.tv_sec * 1000000000u +
		       (uint64_t)hdr->ts.tv_usec * (c->nano ? 1u : 1000u);
		c->last_ts = f.ts;
		if (f.caplen > f.len) {
			ret = frame_notice(c, &f, UG_E_PROTO, "captured length %u exceeds the "
			                  "length on the wire %u", f.caplen, f.len);
		} else {
			ret = frame(c, &f);
		}
		if (ret < 0)
			return ret;
	}
}
