/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-stream-tool.c: decodes SPICE sessions from a capture (ug_capture) or live (ug_spice_proxy) for spice-stream-qemu.sh. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib-unix.h>

#include "usbgate.h"

/*
 * usage:
 *   spice-stream-tool capture FILE OUTDIR
 *   spice-stream-tool proxy LISTEN SERVER OUTDIR [TLS-LISTEN TLS-SERVER CERT KEY CA]
 *                                                  (until SIGTERM or SIGINT)
 *   spice-stream-tool wire C2S-FILE S2C-FILE OUTDIR (one connection's bytes, as recorded)
 *   spice-stream-tool decode H2G-FILE G2H-FILE     (usbredir packets, one line each)
 * capture and proxy write the usbredir byte stream of each usbredir channel
 * and direction to OUTDIR/usbredir-ID-h2g.bin and -g2h.bin, and print one
 * line per decoder event on stdout; exit 0, 1 on failure, 2 on usage.
 */

#define MAX_CONN 4096

struct conn {
	ug_spice_stream *s;
	int decided;
	GByteArray *held[2];
	unsigned lz4[2];
};

static const char *outdir;
static struct conn *conns[MAX_CONN];
static FILE *files[257][2];

static FILE *stream_file(unsigned id, enum ug_dir dir)
{
	if (id > 256)
		id = 256;
	if (!files[id][dir]) {
		char path[4096];

		if (id == 256)
			snprintf(path, sizeof(path), "%s/usbredir-unknown-%s.bin", outdir,
			         dir == UG_DIR_H2G ? "h2g" : "g2h");
		else
			snprintf(path, sizeof(path), "%s/usbredir-%u-%s.bin", outdir, id,
			         dir == UG_DIR_H2G ? "h2g" : "g2h");
		files[id][dir] = fopen(path, "wb");
		if (!files[id][dir]) {
			fprintf(stderr, "spice-stream-tool: %s: %s\n", path, strerror(errno));
			exit(1);
		}
	}
	return files[id][dir];
}

static void print_event(unsigned conn, const char *label, const struct ug_spice_stream_event *ev)
{
	switch (ev->type) {
	case UG_SPICE_STREAM_LINK:
		printf("LINK conn=%u type=%u id=%u session=0x%08x mini=%d error=%u label=%s\n", conn,
		       ev->channel_type, ev->channel_id, ev->session_id, ev->mini, ev->link_error,
		       label);
		break;
	case UG_SPICE_STREAM_MAIN_INIT:
		printf("MAIN_INIT conn=%u session=0x%08x\n", conn, ev->session_id);
		break;
	case UG_SPICE_STREAM_CHANNELS:
		printf("CHANNELS conn=%u n=%zu", conn, ev->n_channels);
		for (size_t i = 0; i < ev->n_channels; i++)
			printf(" %u:%u", ev->channels[i].type, ev->channels[i].id);
		printf("\n");
		break;
	case UG_SPICE_STREAM_USBREDIR_DATA:
		if (ev->channel_type == 9) {
			FILE *f = stream_file(ev->channel_id, ev->dir);

			if (fwrite(ev->data, 1, ev->len, f) != ev->len) {
				fprintf(stderr, "spice-stream-tool: write failed\n");
				exit(1);
			}
		}
		if (ev->compressed)
			printf("LZ4 conn=%u id=%u dir=%s len=%zu\n", conn, ev->channel_id,
			       ev->dir == UG_DIR_H2G ? "h2g" : "g2h", ev->len);
		break;
	case UG_SPICE_STREAM_USBREDIR_GAP:
		printf("GAP conn=%u id=%u dir=%s len=%llu: %s\n", conn, ev->channel_id,
		       ev->dir == UG_DIR_H2G ? "h2g" : "g2h", (unsigned long long)ev->gap_len,
		       ev->message);
		break;
	case UG_SPICE_STREAM_NOTICE:
		printf("NOTICE conn=%u code=%d: %s\n", conn, ev->code, ev->message);
		break;
	case UG_SPICE_STREAM_ERROR:
		printf("ERROR conn=%u code=%d: %s\n", conn, ev->code, ev->message);
		break;
	}
}

static void drain(unsigned id, ug_spice_stream *s)
{
	struct ug_spice_stream_event ev;

	while (ug_spice_stream_next(s, &ev) > 0)
		print_event(id, "capture", &ev);
}

static int run_capture(const char *path)
{
	ug_capture *c = ug_capture_new();
	struct ug_capture_event ev;
	int r;

	if (ug_capture_open_file(c, path) < 0) {
		fprintf(stderr, "spice-stream-tool: %s\n", ug_capture_errmsg(c));
		return 1;
	}
	while ((r = ug_capture_next(c, &ev)) > 0) {
		unsigned id = ev.conn ? ev.conn->id : 0;
		struct conn *k = id < MAX_CONN ? conns[id] : NULL;
		int side = ev.side == UG_CAPTURE_S2C;

		switch (ev.type) {
		case UG_CAPTURE_OPEN:
			if (id >= MAX_CONN)
				break;
			k = conns[id] = calloc(1, sizeof(*k));
			k->s = ug_spice_stream_new();
			k->held[0] = g_byte_array_new();
			k->held[1] = g_byte_array_new();
			break;
		case UG_CAPTURE_DATA:
			if (!k)
				break;
			if (!k->decided) {
				g_byte_array_append(k->held[side], ev.data, (guint)ev.len);
				if (ev.conn->proto == UG_CAPTURE_PROTO_NEED_MORE)
					break;
				k->decided = ev.conn->proto == UG_CAPTURE_PROTO_SPICE ||
				                     ev.conn->proto == UG_CAPTURE_PROTO_TLS ||
				                     ev.conn->proto == UG_CAPTURE_PROTO_UNKNOWN
				             ? 1 : -1;
				if (k->decided < 0)
					break;
				for (int i = 0; i < 2; i++) {
					ug_spice_stream_feed(k->s, i, k->held[i]->data, k->held[i]->len);
					drain(id, k->s);
				}
				break;
			}
			if (k->decided < 0)
				break;
			ug_spice_stream_feed(k->s, side, ev.data, ev.len);
			drain(id, k->s);
			break;
		case UG_CAPTURE_GAP:
			printf("CAPTURE_GAP conn=%u side=%d offset=%llu len=%llu\n", id, side,
			       (unsigned long long)ev.offset, (unsigned long long)ev.len);
			if (k && k->decided > 0) {
				ug_spice_stream_gap(k->s, side, ev.len);
				drain(id, k->s);
			}
			break;
		case UG_CAPTURE_END:
			if (k && k->decided > 0) {
				ug_spice_stream_end(k->s, side);
				drain(id, k->s);
			}
			break;
		case UG_CAPTURE_CLOSE:
			if (!k)
				break;
			if (!k->decided && (k->held[0]->len || k->held[1]->len)) {
				for (int i = 0; i < 2; i++) {
					ug_spice_stream_feed(k->s, i, k->held[i]->data, k->held[i]->len);
					drain(id, k->s);
				}
			}
			for (int i = 0; i < 2; i++) {
				ug_spice_stream_end(k->s, i);
				drain(id, k->s);
			}
			{
				struct ug_spice_stream_stats st;
				unsigned type = 0, cid = 0;

				ug_spice_stream_get_stats(k->s, &st);
				ug_spice_stream_channel(k->s, &type, &cid);
				printf("CONN conn=%u type=%u id=%u bytes=%llu/%llu usbredir_h2g=%llu "
				       "usbredir_g2h=%llu lz4_h2g=%llu lz4_g2h=%llu encrypted=%d\n",
				       id, type, cid, (unsigned long long)st.bytes[0],
				       (unsigned long long)st.bytes[1],
				       (unsigned long long)st.usbredir_bytes[UG_DIR_H2G],
				       (unsigned long long)st.usbredir_bytes[UG_DIR_G2H],
				       (unsigned long long)st.lz4_messages[UG_DIR_H2G],
				       (unsigned long long)st.lz4_messages[UG_DIR_G2H], st.encrypted);
			}
			ug_spice_stream_free(k->s);
			g_byte_array_unref(k->held[0]);
			g_byte_array_unref(k->held[1]);
			free(k);
			conns[id] = NULL;
			break;
		case UG_CAPTURE_NOTICE:
			printf("CAPTURE_NOTICE %s\n", ev.message ? ev.message : "");
			break;
		}
	}
	if (r < 0) {
		fprintf(stderr, "spice-stream-tool: %s\n", ug_capture_errmsg(c));
		ug_capture_free(c);
		return 1;
	}
	ug_capture_free(c);
	return 0;
}

static void on_proxy_event(ug_spice_proxy *p, unsigned conn, const char *label,
                           const struct ug_spice_stream_event *ev, uint64_t ts_ns,
                           void *user_data)
{
	(void)p;
	(void)ts_ns;
	(void)user_data;
	print_event(conn, label, ev);
	fflush(stdout);
	if (ev->type == UG_SPICE_STREAM_USBREDIR_DATA && ev->channel_type == 9)
		fflush(stream_file(ev->channel_id, ev->dir));
}

static void on_proxy_closed(ug_spice_proxy *p, unsigned conn, const char *label, int error,
                            const char *message, void *user_data)
{
	(void)p;
	(void)user_data;
	printf("CLOSED conn=%u label=%s error=%d %s\n", conn, label, error, message);
	fflush(stdout);
}

static void on_log(int level, const char *message, void *user_data)
{
	(void)user_data;
	fprintf(stderr, "spice-stream-tool: [%d] %s\n", level, message);
}

static gboolean on_signal(gpointer user_data)
{
	g_main_loop_quit(user_data);
	return G_SOURCE_REMOVE;
}

static int run_proxy(const char *listen, const char *server, char **tls)
{
	struct ug_address la, sa;
	char err[256], text[UG_ADDRESS_TEXT_MAX];
	ug_spice_proxy *p = ug_spice_proxy_new();
	GMainLoop *loop = g_main_loop_new(NULL, FALSE);
	struct ug_spice_proxy_stats st;

	if (ug_address_parse(listen, &la, err, sizeof(err)) < 0 ||
	    ug_address_parse(server, &sa, err, sizeof(err)) < 0) {
		fprintf(stderr, "spice-stream-tool: %s\n", err);
		return 2;
	}
	ug_spice_proxy_set_callbacks(p, on_proxy_event, on_proxy_closed, NULL);
	ug_spice_proxy_set_log(p, on_log, NULL);
	if (ug_spice_proxy_start(p, &la, &sa) < 0) {
		fprintf(stderr, "spice-stream-tool: %s\n", ug_spice_proxy_errmsg(p));
		return 1;
	}
	if (tls) {
		if (ug_address_parse(tls[0], &la, err, sizeof(err)) < 0 ||
		    ug_address_parse(tls[1], &sa, err, sizeof(err)) < 0) {
			fprintf(stderr, "spice-stream-tool: %s\n", err);
			return 2;
		}
		if (ug_spice_proxy_set_tls(p, tls[2], tls[3], tls[4]) < 0 ||
		    ug_spice_proxy_start_tls(p, &la, &sa) < 0) {
			fprintf(stderr, "spice-stream-tool: %s\n", ug_spice_proxy_errmsg(p));
			return 1;
		}
		printf("LISTENING_TLS %s\n",
		       ug_address_format(ug_spice_proxy_tls_address(p), text, sizeof(text)));
	}
	printf("LISTENING %s\n", ug_address_format(ug_spice_proxy_address(p), text, sizeof(text)));
	fflush(stdout);
	g_unix_signal_add(SIGTERM, on_signal, loop);
	g_unix_signal_add(SIGINT, on_signal, loop);
	g_main_loop_run(loop);
	ug_spice_proxy_get_stats(p, &st);
	printf("PROXY connections=%u failures=%u bytes=%llu/%llu\n", st.connections,
	       st.connect_failures, (unsigned long long)st.bytes[0],
	       (unsigned long long)st.bytes[1]);
	ug_spice_proxy_free(p);
	g_main_loop_unref(loop);
	return 0;
}

static int read_file(const char *path, GByteArray *out)
{
	gchar *data;
	gsize len;

	if (!g_file_get_contents(path, &data, &len, NULL))
		return -1;
	g_byte_array_append(out, (const guint8 *)data, (guint)len);
	g_free(data);
	return 0;
}

static void decode_dir(ug_usbredir_session *u, enum ug_dir d)
{
	struct ug_usbredir_packet pkt;
	int r;

	while ((r = ug_usbredir_session_next(u, d, &pkt)) != 0) {
		if (r < 0) {
			printf("DECODE_ERROR %s %d\n", d == UG_DIR_H2G ? "h2g" : "g2h", r);
			if (r == UG_E_STATE)
				break;
			continue;
		}
		printf("PKT %s type=%u id=%llu len=%u data=%u", d == UG_DIR_H2G ? "h2g" : "g2h",
		       pkt.type, (unsigned long long)pkt.id, pkt.length, pkt.data_len);
		if (pkt.type == usb_redir_hello)
			printf(" version=%s", pkt.h.hello.version);
		if (pkt.type == usb_redir_set_configuration)
			printf(" configuration=%u", pkt.h.set_configuration.configuration);
		printf("\n");
	}
}

/* The usbredir packets of one session, one line each. */
static int run_decode(const char *h2g_path, const char *g2h_path)
{
	GByteArray *b[2] = { g_byte_array_new(), g_byte_array_new() };
	ug_usbredir_session *u = ug_usbredir_session_new();
	size_t off[2] = { 0, 0 };
	int progress = 1;

	if (read_file(g2h_path, b[UG_DIR_G2H]) < 0 || read_file(h2g_path, b[UG_DIR_H2G]) < 0) {
		fprintf(stderr, "spice-stream-tool: cannot read the streams\n");
		return 1;
	}
	/* Small slices alternate the directions, so that each waits for the
	 * other's hello; both directions are polled after every slice. */
	while (progress) {
		progress = 0;
		for (int d = 0; d < 2; d++) {
			size_t n = b[d]->len - off[d] < 4096 ? b[d]->len - off[d] : 4096;

			if (n == 0)
				continue;
			progress = 1;
			ug_usbredir_session_feed(u, (enum ug_dir)d, b[d]->data + off[d], n);
			off[d] += n;
			for (int e = 0; e < 2; e++)
				decode_dir(u, (enum ug_dir)e);
		}
	}
	for (int e = 0; e < 2; e++)
		decode_dir(u, (enum ug_dir)e);
	ug_usbredir_session_free(u);
	return 0;
}

/* One connection recorded as two files (the probe's --record): fed in
 * alternating 4 KiB pieces, with a hold large enough for any recording. */
static int run_wire(const char *c2s_path, const char *s2c_path)
{
	GByteArray *b[2] = { g_byte_array_new(), g_byte_array_new() };
	ug_spice_stream *s = ug_spice_stream_new();
	size_t off[2] = { 0, 0 };
	int progress = 1;

	if (read_file(c2s_path, b[0]) < 0 || read_file(s2c_path, b[1]) < 0) {
		fprintf(stderr, "spice-stream-tool: cannot read the recording\n");
		return 1;
	}
	ug_spice_stream_set_limits(s, 0, 256u << 20);
	while (progress) {
		progress = 0;
		for (int d = 0; d < 2; d++) {
			size_t n = b[d]->len - off[d] < 4096 ? b[d]->len - off[d] : 4096;

			if (n == 0)
				continue;
			progress = 1;
			ug_spice_stream_feed(s, d, b[d]->data + off[d], n);
			off[d] += n;
			drain(1, s);
		}
	}
	for (int d = 0; d < 2; d++) {
		ug_spice_stream_end(s, d);
		drain(1, s);
	}
	ug_spice_stream_free(s);
	g_byte_array_unref(b[0]);
	g_byte_array_unref(b[1]);
	return 0;
}

int main(int argc, char **argv)
{
	int r = 2;

	if (argc == 4 && strcmp(argv[1], "capture") == 0) {
		outdir = argv[3];
		r = run_capture(argv[2]);
	} else if ((argc == 5 || argc == 10) && strcmp(argv[1], "proxy") == 0) {
		outdir = argv[4];
		r = run_proxy(argv[2], argv[3], argc == 10 ? argv + 5 : NULL);
	} else if (argc == 5 && strcmp(argv[1], "wire") == 0) {
		outdir = argv[4];
		r = run_wire(argv[2], argv[3]);
	} else if (argc == 4 && strcmp(argv[1], "decode") == 0) {
		return run_decode(argv[2], argv[3]);
	} else {
		fprintf(stderr, "usage: spice-stream-tool capture FILE OUTDIR | proxy LISTEN SERVER "
		                "OUTDIR | decode H2G G2H\n");
		return 2;
	}
	for (int i = 0; i < 257; i++)
		for (int d = 0; d < 2; d++)
			if (files[i][d])
				fclose(files[i][d]);
	return r;
}
