/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* options.h: usbreplay's command line. */
#ifndef USBREPLAY_OPTIONS_H
#define USBREPLAY_OPTIONS_H

#include <stdint.h>

#include "usbgate.h"

/* Exit codes, as man/usbreplay.1 documents them. */
enum {
	EXIT_MATCHED = 0,
	EXIT_DIVERGED = 1,
	EXIT_USAGE = 2,
	EXIT_CAPTURE = 3,
	EXIT_RUNTIME = 4,
};

#define MAX_IGNORES 64

struct options {
	const char *capture;
	const char *listen, *connect, *spice;
	int guest;
	int strict;
	const char *ignores[MAX_IGNORES];
	int n_ignores;
	int bot_tags;
	int unmatched_status;
	int pace;                       /* enum ug_replay_pace */
	unsigned stream_delay_ms;
	int speed;                      /* -1: from the capture */
	uint32_t session;
	int channel;                    /* SPICE usbredir channel id, -1: the first */
	const char *password_file, *password_env, *ca_file;
	int no_verify;
	unsigned timeout_ms;
	uint64_t max_memory;
	int json;
	const char *junit;
	int verbose;
};

/* Parses argv into *o; returns -1 after printing --help/--version (exit 0),
 * EXIT_USAGE after printing the problem, 0 to go on. */
int options_parse(int argc, char **argv, struct options *o);

#endif /* USBREPLAY_OPTIONS_H */
