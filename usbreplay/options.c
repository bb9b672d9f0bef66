/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* options.c: usbreplay's command line parsing and help text. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

static void usage(FILE *out)
{
	fputs("Usage: usbreplay [OPTION]... --listen ADDR | --connect ADDR | --spice URI CAPTURE\n"
	      "       usbreplay --guest [OPTION]... --connect ADDR CAPTURE\n"
	      "Play a recorded USB device to a VM (device mode), or replay a recorded guest\n"
	      "against a live usbredir host and compare its answers (guest mode).\n"
	      "CAPTURE is usbdump's raw record or a usbmon pcap (usbdump, usbredirsrv --pcap).\n"
	      "\n"
	      "Where:\n"
	      "  -l, --listen ADDR         wait for QEMU's usb-redir chardev on ADDR (PORT, HOST:PORT,\n"
	      "                            unix:PATH; loopback unless a host is written out)\n"
	      "  -c, --connect ADDR        connect to ADDR (QEMU's chardev server, or a usb-host)\n"
	      "  -s, --spice URI           play through a SPICE server's usbredir channel\n"
	      "                            (spice://HOST:PORT, spice+tls://..., spice+unix://...)\n"
	      "      --channel N           the usbredir channel id (default: the first offered)\n"
	      "      --password-file FILE  SPICE password: the file's first line\n"
	      "      --password-env NAME   SPICE password from environment variable NAME\n"
	      "                            (default: USBREPLAY_SPICE_PASSWORD when set)\n"
	      "      --ca-file FILE        CA certificates for spice+tls\n"
	      "      --no-verify           do not verify the TLS certificate (not recommended)\n"
	      "  -g, --guest               guest mode: play the recorded guest against --connect\n"
	      "\n"
	      "Matching and comparing:\n"
	      "      --strict              require the exact recorded order, never reuse answers\n"
	      "  -i, --ignore RULE         status | length | data | EP:FROM-TO | setup:FROM-TO\n"
	      "                            (repeatable; bytes inclusive, EP like 0x81 or *)\n"
	      "      --no-bot-tags         do not treat mass storage CBW/CSW tags specially\n"
	      "      --unmatched STATUS    answer for unmatched requests: stall (default),\n"
	      "                            ioerror, inval, timeout, babble\n"
	      "      --pace MODE           pushed stream data: fast (default) or recorded\n"
	      "      --stream-delay MS     hold pushed stream data for MS after the guest\n"
	      "                            starts receiving (default 0)\n"
	      "      --speed SPEED         device speed: low, full, high, super (usbmon captures)\n"
	      "      --session N           the session of a raw record to play (default: first)\n"
	      "      --timeout MS          guest mode: wait at most MS per answer (default 10000)\n"
	      "      --max-memory BYTES    limit on the loaded capture (default 1 GiB)\n"
	      "\n"
	      "Output:\n"
	      "      --json                the report as JSON on stdout\n"
	      "      --junit FILE          also write the report as JUnit XML to FILE\n"
	      "  -v, --verbose             more messages on stderr (repeat for debug)\n"
	      "  -h, --help                this text\n"
	      "  -V, --version             the version\n"
	      "\n"
	      "Exit status: 0 matched, 1 diverged, 2 usage error, 3 capture unusable,\n"
	      "4 connection or runtime failure.\n", out);
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad(const char *fmt, ...)
{
	va_list ap;

	fputs("usbreplay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'usbreplay --help'.\n", stderr);
	return EXIT_USAGE;
}

static const struct {
	const char *name;
	int status;
} statuses[] = {
	{ "stall", usb_redir_stall },
	{ "ioerror", usb_redir_ioerror },
	{ "inval", usb_redir_inval },
	{ "timeout", usb_redir_timeout },
	{ "babble", usb_redir_babble },
};

int options_parse(int argc, char **argv, struct options *o)
{
	enum {
		OPT_CHANNEL = 256, OPT_PWFILE, OPT_PWENV, OPT_CA, OPT_NOVERIFY, OPT_STRICT,
		OPT_NOBOT, OPT_UNMATCHED, OPT_PACE, OPT_SPEED, OPT_SESSION, OPT_TIMEOUT,
		OPT_MAXMEM, OPT_JSON, OPT_JUNIT, OPT_DELAY,
	};
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "spice", required_argument, NULL, 's' },
		{ "channel", required_argument, NULL, OPT_CHANNEL },
		{ "password-file", required_argument, NULL, OPT_PWFILE },
		{ "password-env", required_argument, NULL, OPT_PWENV },
		{ "ca-file", required_argument, NULL, OPT_CA },
		{ "no-verify", no_argument, NULL, OPT_NOVERIFY },
		{ "guest", no_argument, NULL, 'g' },
		{ "strict", no_argument, NULL, OPT_STRICT },
		{ "ignore", required_argument, NULL, 'i' },
		{ "no-bot-tags", no_argument, NULL, OPT_NOBOT },
		{ "unmatched", required_argument, NULL, OPT_UNMATCHED },
		{ "pace", required_argument, NULL, OPT_PACE },
		{ "stream-delay", required_argument, NULL, OPT_DELAY },
		{ "speed", required_argument, NULL, OPT_SPEED },
		{ "session", required_argument, NULL, OPT_SESSION },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "max-memory", required_argument, NULL, OPT_MAXMEM },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "junit", required_argument, NULL, OPT_JUNIT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, modes;
	char *end;
	unsigned long long v;

	memset(o, 0, sizeof(*o));
	o->bot_tags = 1;
	o->unmatched_status = usb_redir_stall;
	o->pace = UG_PACE_FAST;
	o->speed = -1;
	o->channel = -1;
	o->timeout_ms = 10000;
	while ((c = getopt_long(argc, argv, "l:c:s:gi:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': o->listen = optarg; break;
		case 'c': o->connect = optarg; break;
		case 's': o->spice = optarg; break;
		case 'g': o->guest = 1; break;
		case 'i':
			if (o->n_ignores >= MAX_IGNORES)
				return bad("more than %d --ignore rules", MAX_IGNORES);
			o->ignores[o->n_ignores++] = optarg;
			break;
		case 'v': o->verbose++; break;
		case 'h': usage(stdout); return -1;
		case 'V': printf("usbreplay (usbgate) %s\n", ug_version()); return -1;
		case OPT_CHANNEL:
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || v > 255)
				return bad("--channel %s: expected 0..255", optarg);
			o->channel = (int)v;
			break;
		case OPT_PWFILE: o->password_file = optarg; break;
		case OPT_PWENV: o->password_env = optarg; break;
		case OPT_CA: o->ca_file = optarg; break;
		case OPT_NOVERIFY: o->no_verify = 1; break;
		case OPT_STRICT: o->strict = 1; break;
		case OPT_NOBOT: o->bot_tags = 0; break;
		case OPT_UNMATCHED: {
			size_t i;

			for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
				if (!strcmp(optarg, statuses[i].name))
					break;
			if (i == sizeof(statuses) / sizeof(statuses[0]))
				return bad("--unmatched %s: expected stall, ioerror, inval, timeout or babble",
					   optarg);
			o->unmatched_status = statuses[i].status;
			break;
		}
		case OPT_PACE:
			if (!strcmp(optarg, "fast"))
				o->pace = UG_PACE_FAST;
			else if (!strcmp(optarg, "recorded"))
				o->pace = UG_PACE_RECORDED;
			else
				return bad("--pace %s: expected fast or recorded", optarg);
			break;
		case OPT_DELAY:
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || v > 3600000)
				return bad("--stream-delay %s: expected 0..3600000 milliseconds", optarg);
			o->stream_delay_ms = (unsigned)v;
			break;
		case OPT_SPEED:
			if (ug_recording_parse_speed(optarg, &o->speed) < 0)
				return bad("--speed %s: expected low, full, high or super", optarg);
			break;
		case OPT_SESSION:
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || v == 0 || v > UINT32_MAX)
				return bad("--session %s: expected a session number from 1", optarg);
			o->session = (uint32_t)v;
			break;
		case OPT_TIMEOUT:
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || v == 0 || v > 3600000)
				return bad("--timeout %s: expected 1..3600000 milliseconds", optarg);
			o->timeout_ms = (unsigned)v;
			break;
		case OPT_MAXMEM:
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 4096)
				return bad("--max-memory %s: expected a number of bytes >= 4096", optarg);
			o->max_memory = v;
			break;
		case OPT_JSON: o->json = 1; break;
		case OPT_JUNIT: o->junit = optarg; break;
		default:
			fputs("Try 'usbreplay --help'.\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1)
		return bad("%s", optind >= argc ? "no capture file given" : "more than one capture file given");
	o->capture = argv[optind];
	modes = !!o->listen + !!o->connect + !!o->spice;
	if (modes != 1)
		return bad("%s", "give exactly one of --listen, --connect and --spice");
	if (o->guest && !o->connect)
		return bad("%s", "--guest plays against a usb-host: use it with --connect");
	if ((o->password_file || o->password_env || o->ca_file || o->no_verify ||
	     o->channel >= 0) && !o->spice)
		return bad("%s", "--channel, --password-*, --ca-file and --no-verify go with --spice");
	if (o->password_file && o->password_env)
		return bad("%s", "give either --password-file or --password-env");
	return 0;
}
