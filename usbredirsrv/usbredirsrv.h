/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbredirsrv.h: what the tool's option and config parsing hands to its main loop. */
#ifndef USBREDIRSRV_H
#define USBREDIRSRV_H

#include <glib.h>

/* Exit codes, documented in usbredirsrv(8) EXIT STATUS. */
enum {
	SRV_EXIT_OK = 0,      /* clean shutdown (SIGTERM/SIGINT), or --list done */
	SRV_EXIT_FAILURE = 1, /* could not start: listen, libusb, thread */
	SRV_EXIT_USAGE = 2,   /* bad option, device selector, address or config file */
	SRV_EXIT_SPICE_AUTH = 3, /* --spice: the server refused the password (wrong, expired) */
	SRV_EXIT_SPICE_LINK = 4, /* --spice: TLS failure, refused link, server unreachable */
};

/* One export as written: a device selector and where its usbredir goes. */
struct srv_export_spec {
	char *name;       /* config group name, or the option text */
	char *device;     /* ug_usb_selector text */
	char *address;    /* ug_address text */
	int connect;      /* 1: connect to address (QEMU listens); 0: listen on it */
	char *filter;     /* usbredirfilter rules for this export, or NULL for the global ones */
	int from_config;  /* 1: from --config (replaced on SIGHUP) */
};

struct srv_options {
	GPtrArray *exports;  /* struct srv_export_spec *, from the command line */
	char *filter;        /* global usbredirfilter rules, or NULL */
	char *config;        /* --config FILE, or NULL */
	char *pcap;          /* --pcap FILE: usbmon pcap of every session, or NULL */
	char *spice;         /* --spice URI, or NULL */
	char *spice_password_file;
	char *spice_ca_file;
	char *spice_host_subject;
	char **from;         /* --from ADDRESS... (with --spice), or NULL */
	char *auto_connect;  /* --auto-connect-filter RULES, or NULL for spice-gtk's default */
	char *redirect_on_connect; /* --redirect-on-connect RULES, or NULL */
	char *user;          /* --user USER[:GROUP] (or user= from the file), or NULL */
	int no_reconnect;
	int list;
	int verbosity;
};

/* Parses argv; on error prints the reason and returns SRV_EXIT_USAGE. */
int srv_parse_options(int *argc, char ***argv, struct srv_options *ret_opts);
void srv_options_clear(struct srv_options *opts);

/*
 * Reads the key file: the optional [usbredirsrv] group (filter, verbose,
 * user) and one [export NAME] group per export (device, listen or connect,
 * filter). Fills *ret_exports (a new array of struct srv_export_spec *) and,
 * if the file sets them, *ret_filter, *ret_verbosity and *ret_user (left
 * alone otherwise; ret_user may be NULL: the user is read at start only).
 * Returns 0, or -1 with the reason (naming the file and group) in *ret_error.
 */
int srv_read_config(const char *path, GPtrArray **ret_exports, char **ret_filter,
                    int *ret_verbosity, char **ret_user, char **ret_error);

/* Splits "SELECTOR@ADDRESS" (checking both parts); 0 or -1 with *ret_error. */
int srv_split_mapping(const char *text, char **ret_device, char **ret_address,
                      char **ret_error);

void srv_export_spec_free(gpointer spec);
int srv_export_spec_equal(const struct srv_export_spec *a, const struct srv_export_spec *b);

#endif /* USBREDIRSRV_H */
