/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* replay-report.c: replay rules (masks) and the divergence report as text, JSON and JUnit XML. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "common.h"
#include "replay.h"

#define MAX_RULES 64

struct range_rule {
	int setup;              /* 1: masks the setup packet */
	int any_ep;
	uint8_t ep;
	unsigned long lo, hi;
};

struct ug_replay_rules {
	unsigned fields;
	int no_bot_tags;
	struct range_rule r[MAX_RULES];
	unsigned n;
};

UG_EXPORT ug_replay_rules *ug_replay_rules_new(void)
{
	return calloc(1, sizeof(ug_replay_rules));
}

UG_EXPORT void ug_replay_rules_free(ug_replay_rules *r)
{
	free(r);
}

UG_EXPORT void ug_replay_rules_set_bot_tags(ug_replay_rules *r, int on)
{
	if (r)
		r->no_bot_tags = !on;
}

int ug_replay_rules_bot_tags(const ug_replay_rules *rules)
{
	return !rules || !rules->no_bot_tags;
}

int ug_replay_rules_ignores(const ug_replay_rules *rules, enum ug_replay_field field)
{
	return rules && (rules->fields & field);
}

static int parse_num(const char *s, char **end, unsigned long max, unsigned long *ret)
{
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, end, 0);
	if (errno || v > max)
		return -1;
	*ret = v;
	return 0;
}

UG_EXPORT int ug_replay_rules_add(ug_replay_rules *r, const char *rule, char *errbuf,
				  size_t errbuf_size)
{
	struct range_rule rr;
	const char *colon;
	char *end;
	unsigned long v;

	if (!r || !rule)
		return UG_E_INVAL;
	if (!strcmp(rule, "status") || !strcmp(rule, "length") || !strcmp(rule, "data")) {
		r->fields |= rule[0] == 's' ? UG_REPLAY_FIELD_STATUS :
			     rule[0] == 'l' ? UG_REPLAY_FIELD_LENGTH : UG_REPLAY_FIELD_DATA;
		return 0;
	}
	if (r->n >= MAX_RULES) {
		if (errbuf_size)
			snprintf(errbuf, errbuf_size, "more than %d ignore rules", MAX_RULES);
		return UG_E_INVAL;
	}
	memset(&rr, 0, sizeof(rr));
	colon = strchr(rule, ':');
	if (!colon)
		goto bad;
	if (!strncmp(rule, "setup:", 6)) {
		rr.setup = 1;
	} else if (!strncmp(rule, "*:", 2)) {
		rr.any_ep = 1;
	} else {
		if (parse_num(rule, &end, 0xff, &v) < 0 || end != colon)
			goto bad;
		rr.ep = (uint8_t)v;
	}
	if (parse_num(colon + 1, &end, 0x7fffffff, &rr.lo) < 0)
		goto bad;
	if (*end == '-') {
		if (parse_num(end + 1, &end, 0x7fffffff, &rr.hi) < 0)
			goto bad;
	} else {
		rr.hi = rr.lo;
	}
	if (*end || rr.hi < rr.lo || (rr.setup && rr.hi > 7))
		goto bad;
	r->r[r->n++] = rr;
	return 0;
bad:
	if (errbuf_size)
		snprintf(errbuf, errbuf_size,
			 "ignore rule \"%s\": expected status, length, data, EP:FROM-TO or setup:FROM-TO (0-7)",
			 rule);
	return UG_E_INVAL;
}

static int masked(const ug_replay_rules *rules, int setup, uint8_t ep, size_t off)
{
	if (!rules)
		return 0;
	for (unsigned i = 0; i < rules->n; i++) {
		const struct range_rule *rr = &rules->r[i];

		if (rr->setup != setup)
			continue;
		if (!setup && !rr->any_ep && rr->ep != ep)
			continue;
		if (off >= rr->lo && off <= rr->hi)
			return 1;
	}
	return 0;
}

long ug_replay_data_diff(const ug_replay_rules *rules, uint8_t ep, const uint8_t *a,
			 size_t alen, const uint8_t *b, size_t blen, long extra_lo, long extra_hi)
{
	size_t n = alen < blen ? alen : blen;

	if (ug_replay_rules_ignores(rules, UG_REPLAY_FIELD_DATA))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (a[i] == b[i])
			continue;
		if ((long)i >= extra_lo && (long)i <= extra_hi)
			continue;
		if (masked(rules, 0, ep, i))
			continue;
		return (long)i;
	}
	return alen == blen ? -1 : (long)n;
}

int ug_replay_setup_equal(const ug_replay_rules *rules, const uint8_t a[8], const uint8_t b[8])
{
	for (size_t i = 0; i < 8; i++)
		if (a[i] != b[i] && !masked(rules, 1, 0, i))
			return 0;
	return 1;
}

void ug_replay_setup_bytes(const struct usb_redir_control_packet_header *c, uint8_t ret[8])
{
	ret[0] = c->requesttype;
	ret[1] = c->request;
	ug_put_le16(ret + 2, c->value);
	ug_put_le16(ret + 4, c->index);
	ug_put_le16(ret + 6, c->length);
}

uint8_t ug_replay_endpoint(const struct ug_usbredir_packet *p)
{
	switch (p->type) {
	case usb_redir_control_packet: return p->h.control_packet.endpoint;
	case usb_redir_bulk_packet: return p->h.bulk_packet.endpoint;
	case usb_redir_iso_packet: return p->h.iso_packet.endpoint;
	case usb_redir_interrupt_packet: return p->h.interrupt_packet.endpoint;
	case usb_redir_buffered_bulk_packet: return p->h.buffered_bulk_packet.endpoint;
	case usb_redir_start_iso_stream: return p->h.start_iso_stream.endpoint;
	case usb_redir_stop_iso_stream: return p->h.stop_iso_stream.endpoint;
	case usb_redir_iso_stream_status: return p->h.iso_stream_status.endpoint;
	case usb_redir_start_interrupt_receiving: return p->h.start_interrupt_receiving.endpoint;
	case usb_redir_stop_interrupt_receiving: return p->h.stop_interrupt_receiving.endpoint;
	case usb_redir_interrupt_receiving_status: return p->h.interrupt_receiving_status.endpoint;
	case usb_redir_start_bulk_receiving: return p->h.start_bulk_receiving.endpoint;
	case usb_redir_stop_bulk_receiving: return p->h.stop_bulk_receiving.endpoint;
	case usb_redir_bulk_receiving_status: return p->h.bulk_receiving_status.endpoint;
	default: return 0;
	}
}

int ug_replay_status(const struct ug_usbredir_packet *p)
{
	switch (p->type) {
	case usb_redir_control_packet: return p->h.control_packet.status;
	case usb_redir_bulk_packet: return p->h.bulk_packet.status;
	case usb_redir_iso_packet: return p->h.iso_packet.status;
	case usb_redir_interrupt_packet: return p->h.interrupt_packet.status;
	case usb_redir_buffered_bulk_packet: return p->h.buffered_bulk_packet.status;
	case usb_redir_configuration_status: return p->h.configuration_status.status;
	case usb_redir_alt_setting_status: return p->h.alt_setting_status.status;
	case usb_redir_iso_stream_status: return p->h.iso_stream_status.status;
	case usb_redir_interrupt_receiving_status: return p->h.interrupt_receiving_status.status;
	case usb_redir_bulk_streams_status: return p->h.bulk_streams_status.status;
	case usb_redir_bulk_receiving_status: return p->h.bulk_receiving_status.status;
	default: return -1;
	}
}

uint32_t ug_replay_length(const struct ug_usbredir_packet *p)
{
	switch (p->type) {
	case usb_redir_control_packet: return p->h.control_packet.length;
	case usb_redir_bulk_packet:
		return p->h.bulk_packet.length | ((uint32_t)p->h.bulk_packet.length_high << 16);
	case usb_redir_iso_packet: return p->h.iso_packet.length;
	case usb_redir_interrupt_packet: return p->h.interrupt_packet.length;
	case usb_redir_buffered_bulk_packet: return p->h.buffered_bulk_packet.length;
	case usb_redir_configuration_status: return p->h.configuration_status.configuration;
	case usb_redir_alt_setting_status: return p->h.alt_setting_status.alt;
	default: return p->data_len;
	}
}

void ug_replay_describe(const struct ug_usbredir_packet *p, char *buf, size_t size)
{
	const char *name = ug_usbredir_type_name(p->type);
	char extra[100] = "";

	if (p->type == usb_redir_control_packet) {
		uint8_t setup[8];

		ug_replay_setup_bytes(&p->h.control_packet, setup);
		ug_render_setup(extra, sizeof(extra), setup);
	} else if (p->type == usb_redir_set_configuration) {
		snprintf(extra, sizeof(extra), "configuration %u", p->h.set_configuration.configuration);
	} else if (p->type == usb_redir_set_alt_setting) {
		snprintf(extra, sizeof(extra), "interface %u alt %u", p->h.set_alt_setting.interface,
			 p->h.set_alt_setting.alt);
	} else if (p->type == usb_redir_bulk_packet || p->type == usb_redir_interrupt_packet ||
		   p->type == usb_redir_iso_packet) {
		snprintf(extra, sizeof(extra), "len %u", ug_replay_length(p));
	}
	snprintf(buf, size, "%s ep 0x%02x%s%s id %llu", name ? name : "unknown",
		 ug_replay_endpoint(p), extra[0] ? " " : "", extra, (unsigned long long)p->id);
}

int ug_replay_answer_type(uint32_t type)
{
	switch (type) {
	case usb_redir_control_packet:
	case usb_redir_bulk_packet:
	case usb_redir_iso_packet:
	case usb_redir_interrupt_packet:
		return (int)type;
	case usb_redir_set_configuration:
	case usb_redir_get_configuration:
		return usb_redir_configuration_status;
	case usb_redir_set_alt_setting:
	case usb_redir_get_alt_setting:
		return usb_redir_alt_setting_status;
	case usb_redir_start_iso_stream:
	case usb_redir_stop_iso_stream:
		return usb_redir_iso_stream_status;
	case usb_redir_start_interrupt_receiving:
	case usb_redir_stop_interrupt_receiving:
		return usb_redir_interrupt_receiving_status;
	case usb_redir_alloc_bulk_streams:
	case usb_redir_free_bulk_streams:
		return usb_redir_bulk_streams_status;
	case usb_redir_start_bulk_receiving:
	case usb_redir_stop_bulk_receiving:
		return usb_redir_bulk_receiving_status;
	default:
		return -1;
	}
}

void ug_replay_pair(const ug_recording *rec, int64_t *reply_of)
{
	size_t n = ug_recording_count(rec);
	GHashTable *pending = g_hash_table_new(g_int64_hash, g_int64_equal);
	uint64_t *ids = g_new(uint64_t, n ? n : 1);
	struct ug_recorded_packet rp, req;

	for (size_t i = 0; i < n; i++) {
		gpointer v;

		reply_of[i] = -1;
		ug_recording_get(rec, i, &rp);
		ids[i] = rp.pkt.id;
		if (rp.pkt.dir == UG_DIR_G2H) {
			if (ug_replay_answer_type(rp.pkt.type) >= 0)
				g_hash_table_replace(pending, &ids[i], GSIZE_TO_POINTER(i + 1));
			continue;
		}
		v = g_hash_table_lookup(pending, &ids[i]);
		if (!v)
			continue;
		ug_recording_get(rec, GPOINTER_TO_SIZE(v) - 1, &req);
		if (ug_replay_answer_type(req.pkt.type) != (int)rp.pkt.type)
			continue;
		/* Stream data pushed with an id that happens to equal a pending
		 * request's is told apart by its endpoint. */
		if (ug_replay_endpoint(&req.pkt) != ug_replay_endpoint(&rp.pkt) &&
		    rp.pkt.type != usb_redir_configuration_status &&
		    rp.pkt.type != usb_redir_alt_setting_status &&
		    rp.pkt.type != usb_redir_bulk_streams_status)
			continue;
		reply_of[GPOINTER_TO_SIZE(v) - 1] = (int64_t)i;
		g_hash_table_remove(pending, &ids[i]);
	}
	g_hash_table_destroy(pending);
	g_free(ids);
}

/* ---- report -------------------------------------------------------------- */

struct ug_replay_report {
	char name[64];
	struct ug_divergence *d;
	size_t n, alloc;
	struct ug_replay_summary sum;
};

UG_EXPORT ug_replay_report *ug_replay_report_new(const char *name)
{
	ug_replay_report *r = calloc(1, sizeof(*r));

	if (r)
		snprintf(r->name, sizeof(r->name), "%s", name ? name : "usbreplay");
	return r;
}

UG_EXPORT void ug_replay_report_free(ug_replay_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free((void *)r->d[i].exp_data);
		free((void *)r->d[i].got_data);
	}
	free(r->d);
	free(r);
}

struct ug_replay_summary *ug_replay_report_counters(ug_replay_report *r)
{
	return &r->sum;
}

static const uint8_t *keep(const uint8_t *p, uint32_t len, uint32_t from, uint32_t *ret_len)
{
	uint8_t *c;

	if (from >= len)
		len = 0;
	else
		len -= from;
	p = p ? p + from : NULL;
	if (len > UG_REPLAY_MAX_DIFF_DATA)
		len = UG_REPLAY_MAX_DIFF_DATA;
	*ret_len = 0;
	if (!p || !len || !(c = malloc(len)))
		return NULL;
	memcpy(c, p, len);
	*ret_len = len;
	return c;
}

void ug_replay_report_add(ug_replay_report *r, uint64_t record, uint64_t seq,
			  const char *transfer, const char *reason, long diff_at, int exp_status,
			  uint32_t exp_length, const uint8_t *exp_data, uint32_t exp_data_len,
			  int got_status, uint32_t got_length, const uint8_t *got_data,
			  uint32_t got_data_len)
{
	struct ug_divergence *d;

	r->sum.diverged++;
	if (r->n >= UG_REPLAY_MAX_DIVERGENCES)
		return;
	if (r->n == r->alloc) {
		size_t na = r->alloc ? r->alloc * 2 : 16;
		struct ug_divergence *nd = reallocarray(r->d, na, sizeof(*nd));

		if (!nd)
			return;
		r->d = nd;
		r->alloc = na;
	}
	d = &r->d[r->n++];
	memset(d, 0, sizeof(*d));
	d->record = record;
	d->seq = seq;
	snprintf(d->transfer, sizeof(d->transfer), "%s", transfer);
	snprintf(d->reason, sizeof(d->reason), "%s", reason);
	d->exp_status = exp_status;
	d->got_status = got_status;
	d->exp_length = exp_length;
	d->got_length = got_length;
	/* A window that starts on a 16-byte row, 4 rows before the first
	 * difference, so that a diff deep in a large transfer is shown. */
	if (diff_at > 64)
		d->data_offset = (uint32_t)((diff_at - 64) & ~15L);
	d->exp_data = keep(exp_data, exp_data_len, d->data_offset, &d->exp_data_len);
	d->got_data = keep(got_data, got_data_len, d->data_offset, &d->got_data_len);
}

UG_EXPORT size_t ug_replay_report_count(const ug_replay_report *r)
{
	return r ? r->n : 0;
}

UG_EXPORT const struct ug_divergence *ug_replay_report_get(const ug_replay_report *r, size_t i)
{
	return r && i < r->n ? &r->d[i] : NULL;
}

UG_EXPORT void ug_replay_report_summary(const ug_replay_report *r, struct ug_replay_summary *ret)
{
	if (r && ret)
		*ret = r->sum;
}

static const char *status_text(int st, char *buf, size_t size)
{
	if (st < 0)
		return "none";
	snprintf(buf, size, "%s", ug_render_status_name((uint32_t)st));
	return buf;
}

static void hex_row(FILE *out, char sign, size_t base, size_t off, const uint8_t *p, size_t len,
		    const uint8_t *other, size_t olen)
{
	fprintf(out, "    %c%06zx ", sign, base + off);
	for (size_t i = off; i < off + 16; i++) {
		if (i < len) {
			int diff = i >= olen || other[i] != p[i];

			fprintf(out, diff ? "[%02x]" : " %02x ", p[i]);
		} else {
			fputs("    ", out);
		}
	}
	fputc('\n', out);
}

/* Rows where the two sides differ, each as an expected (-) and a got (+)
 * line; differing bytes are bracketed. At most 16 row pairs. */
static void hex_diff(FILE *out, const struct ug_divergence *d)
{
	size_t n = d->exp_data_len > d->got_data_len ? d->exp_data_len : d->got_data_len;
	unsigned rows = 0;

	for (size_t off = 0; off < n; off += 16) {
		size_t e = off + 16;
		int differ = 0;

		for (size_t i = off; i < e && i < n; i++)
			if (i >= d->exp_data_len || i >= d->got_data_len ||
			    d->exp_data[i] != d->got_data[i])
				differ = 1;
		if (!differ)
			continue;
		if (++rows > 16) {
			fputs("    ... (more rows differ)\n", out);
			break;
		}
		hex_row(out, '-', d->data_offset, off, d->exp_data, d->exp_data_len, d->got_data,
			d->got_data_len);
		hex_row(out, '+', d->data_offset, off, d->got_data, d->got_data_len, d->exp_data,
			d->exp_data_len);
	}
}

UG_EXPORT int ug_replay_report_write_text(const ug_replay_report *r, FILE *out, int verbose)
{
	char b1[32], b2[32];

	if (!r || !out)
		return UG_E_INVAL;
	for (size_t i = 0; i < r->n; i++) {
		const struct ug_divergence *d = &r->d[i];

		fprintf(out, "divergence %zu: record %llu, request %llu: %s\n", i + 1,
			(unsigned long long)d->record, (unsigned long long)d->seq, d->transfer);
		fprintf(out, "  %s\n", d->reason);
		fprintf(out, "  expected: status %s, length %u, %u data bytes\n",
			status_text(d->exp_status, b1, sizeof(b1)), d->exp_length, d->exp_data_len);
		fprintf(out, "  got:      status %s, length %u, %u data bytes\n",
			status_text(d->got_status, b2, sizeof(b2)), d->got_length, d->got_data_len);
		if (d->exp_data_len || d->got_data_len)
			fprintf(out, "  data from offset %u (- expected, + got, [differing bytes]):\n",
				d->data_offset);
		if (d->exp_data_len || d->got_data_len)
			hex_diff(out, d);
	}
	if (r->sum.diverged > r->n)
		fprintf(out, "(%llu more divergences not kept)\n",
			(unsigned long long)(r->sum.diverged - r->n));
	fprintf(out,
		"summary: %llu requests, %llu matched, %llu reused, %llu diverged, %llu skipped, "
		"%llu stream packets, %llu recorded requests unused, %.3f s: %s\n",
		(unsigned long long)r->sum.requests, (unsigned long long)r->sum.matched,
		(unsigned long long)r->sum.reused, (unsigned long long)r->sum.diverged,
		(unsigned long long)r->sum.skipped, (unsigned long long)r->sum.pushed,
		(unsigned long long)r->sum.unused, (double)r->sum.elapsed_ns / 1e9,
		r->sum.diverged ? "DIVERGED" : "MATCHED");
	(void)verbose;
	return ferror(out) ? UG_E_IO : 0;
}

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void json_hex(FILE *out, const uint8_t *p, uint32_t len)
{
	fputc('"', out);
	for (uint32_t i = 0; i < len; i++)
		fprintf(out, "%02x", p[i]);
	fputc('"', out);
}

UG_EXPORT int ug_replay_report_write_json(const ug_replay_report *r, FILE *out)
{
	if (!r || !out)
		return UG_E_INVAL;
	fprintf(out,
		"{\"summary\":{\"result\":\"%s\",\"requests\":%llu,\"matched\":%llu,\"reused\":%llu,"
		"\"diverged\":%llu,\"skipped\":%llu,\"pushed\":%llu,\"unused\":%llu,"
		"\"completed\":%s,\"elapsed_s\":%.6f},\"divergences\":[",
		r->sum.diverged ? "diverged" : "matched", (unsigned long long)r->sum.requests,
		(unsigned long long)r->sum.matched, (unsigned long long)r->sum.reused,
		(unsigned long long)r->sum.diverged, (unsigned long long)r->sum.skipped,
		(unsigned long long)r->sum.pushed, (unsigned long long)r->sum.unused,
		r->sum.completed ? "true" : "false", (double)r->sum.elapsed_ns / 1e9);
	for (size_t i = 0; i < r->n; i++) {
		const struct ug_divergence *d = &r->d[i];

		fprintf(out, "%s{\"record\":%llu,\"request\":%llu,\"transfer\":", i ? "," : "",
			(unsigned long long)d->record, (unsigned long long)d->seq);
		json_str(out, d->transfer);
		fputs(",\"reason\":", out);
		json_str(out, d->reason);
		fprintf(out, ",\"data_offset\":%u", d->data_offset);
		fprintf(out, ",\"expected\":{\"status\":%d,\"length\":%u,\"data\":", d->exp_status,
			d->exp_length);
		json_hex(out, d->exp_data, d->exp_data_len);
		fprintf(out, "},\"got\":{\"status\":%d,\"length\":%u,\"data\":", d->got_status,
			d->got_length);
		json_hex(out, d->got_data, d->got_data_len);
		fputs("}}", out);
	}
	fputs("]}\n", out);
	return ferror(out) ? UG_E_IO : 0;
}

/* XML text: the five predefined entities, and control characters (not
 * allowed in XML 1.0) as '?'. */
static void xml_str(FILE *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		switch (c) {
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '&': fputs("&amp;", out); break;
		case '"': fputs("&quot;", out); break;
		case '\'': fputs("&apos;", out); break;
		default:
			if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
				fputc('?', out);
			else
				fputc(c, out);
		}
	}
}

UG_EXPORT int ug_replay_report_write_junit(const ug_replay_report *r, FILE *out)
{
	size_t cases = r ? (r->n ? r->n : 1) : 0;
	char b1[32], b2[32];

	if (!r || !out)
		return UG_E_INVAL;
	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n", out);
	fputs("  <testsuite name=\"", out);
	xml_str(out, r->name);
	fprintf(out, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" time=\"%.3f\">\n", cases, r->n,
		(double)r->sum.elapsed_ns / 1e9);
	if (!r->n) {
		fprintf(out, "    <testcase classname=\"");
		xml_str(out, r->name);
		fprintf(out, "\" name=\"replay: %llu requests matched\"/>\n",
			(unsigned long long)r->sum.matched);
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct ug_divergence *d = &r->d[i];
		char name[64];

		snprintf(name, sizeof(name), "record %llu request %llu",
			 (unsigned long long)d->record, (unsigned long long)d->seq);
		fputs("    <testcase classname=\"", out);
		xml_str(out, r->name);
		fputs("\" name=\"", out);
		xml_str(out, name);
		fputs(": ", out);
		xml_str(out, d->transfer);
		fputs("\">\n      <failure message=\"", out);
		xml_str(out, d->reason);
		fputs("\">", out);
		{
			char body[256];

			snprintf(body, sizeof(body),
				 "expected status %s length %u; got status %s length %u",
				 status_text(d->exp_status, b1, sizeof(b1)), d->exp_length,
				 status_text(d->got_status, b2, sizeof(b2)), d->got_length);
			xml_str(out, body);
		}
		fputs("</failure>\n    </testcase>\n", out);
	}
	fputs("  </testsuite>\n</testsuites>\n", out);
	return ferror(out) ? UG_E_IO : 0;
}
