/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* options.c: usbredirsrv's command line (GOptionContext) and key-file configuration (GKeyFile). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usbgate.h"
#include "usbredirsrv.h"

void srv_export_spec_free(gpointer p)
{
	struct srv_export_spec *s = p;

	if (!s)
		return;
	g_free(s->name);
	g_free(s->device);
	g_free(s->address);
	g_free(s->filter);
	g_free(s);
}

int srv_export_spec_equal(const struct srv_export_spec *a, const struct srv_export_spec *b)
{
	return g_strcmp0(a->name, b->name) == 0 && g_strcmp0(a->device, b->device) == 0 &&
	       g_strcmp0(a->address, b->address) == 0 && a->connect == b->connect &&
	       g_strcmp0(a->filter, b->filter) == 0;
}

static int check_device(const char *text, char **ret_error)
{
	ug_usb_selector *sel;
	char err[256];

	if (ug_usb_selector_parse(text, &sel, err, sizeof(err)) < 0) {
		*ret_error = g_strdup(err);
		return -1;
	}
	ug_usb_selector_free(sel);
	return 0;
}

static int check_address(const char *text, char **ret_error)
{
	struct ug_address a;
	char err[256];

	if (ug_address_parse(text, &a, err, sizeof(err)) < 0) {
		*ret_error = g_strdup(err);
		return -1;
	}
	return 0;
}

static int check_filter(const char *text, char **ret_error)
{
	ug_usb_filter *f;
	char err[256];

	if (ug_usb_filter_parse(text, &f, err, sizeof(err)) < 0) {
		*ret_error = g_strdup(err);
		return -1;
	}
	ug_usb_filter_free(f);
	return 0;
}

/* The split point is the last '@' that leaves a valid selector on the left
 * and a valid address on the right, so serial numbers and unix paths may
 * contain '@' as long as the whole stays unambiguous. */
int srv_split_mapping(const char *text, char **ret_device, char **ret_address, char **ret_error)
{
	const char *at;
	char *first_error = NULL;

	at = strrchr(text, '@');
	while (at) {
		const char *p = at;
		char *dev = g_strndup(text, (size_t)(at - text));
		char *err = NULL;

		if (check_address(at + 1, &err) == 0 && check_device(dev, &err) == 0) {
			*ret_device = dev;
			*ret_address = g_strdup(at + 1);
			g_free(first_error);
			return 0;
		}
		if (!first_error)
			first_error = err;
		else
			g_free(err);
		g_free(dev);
		/* Look further left. */
		at = NULL;
		while (p > text) {
			if (*--p == '@') {
				at = p;
				break;
			}
		}
	}
	if (first_error) {
		*ret_error = g_strdup_printf("\"%s\": %s", text, first_error);
		g_free(first_error);
	} else {
		*ret_error = g_strdup_printf("\"%s\": expected DEVICE@ADDRESS, e.g. "
		                             "46f4:0001@127.0.0.1:4000", text);
	}
	return -1;
}

static gboolean on_verbose(const gchar *name, const gchar *value, gpointer data, GError **error)
{
	struct srv_options *o = data;

	o->verbosity++;
	return TRUE;
}

static int add_mappings(struct srv_options *o, char **list, int connect)
{
	for (char **p = list; p && *p; p++) {
		struct srv_export_spec *s;
		char *dev, *addr, *err;

		if (srv_split_mapping(*p, &dev, &addr, &err) < 0) {
			fprintf(stderr, "usbredirsrv: --%s %s\n", connect ? "connect" : "export", err);
			g_free(err);
			return -1;
		}
		s = g_new0(struct srv_export_spec, 1);
		s->name = g_strdup(*p);
		s->device = dev;
		s->address = addr;
		s->connect = connect;
		g_ptr_array_add(o->exports, s);
	}
	return 0;
}

int srv_parse_options(int *argc, char ***argv, struct srv_options *o)
{
	char **exports = NULL, **connects = NULL;
	gboolean list = FALSE, version = FALSE;
	GError *gerr = NULL;
	GOptionContext *ctx;
	GOptionGroup *group;
	int ret = SRV_EXIT_USAGE;
	const GOptionEntry entries[] = {
		{ "export", 'e', 0, G_OPTION_ARG_STRING_ARRAY, &exports,
		  "Listen on ADDRESS for the device DEVICE selects (QEMU's chardev connects); "
		  "repeat for more devices", "DEVICE@ADDRESS" },
		{ "connect", 'c', 0, G_OPTION_ARG_STRING_ARRAY, &connects,
		  "Connect to ADDRESS for the device DEVICE selects (QEMU's chardev listens), "
		  "retrying with backoff", "DEVICE@ADDRESS" },
		{ "filter", 'f', 0, G_OPTION_ARG_STRING, &o->filter,
		  "usbredirfilter rules every exported device must pass", "RULES" },
		{ "config", 'C', 0, G_OPTION_ARG_FILENAME, &o->config,
		  "Read exports from a key file (re-read on SIGHUP)", "FILE" },
		{ "pcap", 0, 0, G_OPTION_ARG_FILENAME, &o->pcap,
		  "Write a usbmon pcap of every session forwarded (finished at exit)", "FILE" },
		{ "spice", 0, 0, G_OPTION_ARG_STRING, &o->spice,
		  "Attach devices to the VM behind this SPICE server (spice://HOST:PORT, "
		  "spice+tls://HOST:PORT, spice+unix:///PATH)", "URI" },
		{ "spice-password-file", 0, 0, G_OPTION_ARG_FILENAME, &o->spice_password_file,
		  "SPICE password: first line of FILE (else $USBREDIRSRV_SPICE_PASSWORD)", "FILE" },
		{ "spice-ca-file", 0, 0, G_OPTION_ARG_FILENAME, &o->spice_ca_file,
		  "CA certificates (PEM) to verify the SPICE server's TLS certificate", "FILE" },
		{ "spice-host-subject", 0, 0, G_OPTION_ARG_STRING, &o->spice_host_subject,
		  "Expected certificate subject (\"C=XX,O=Org,CN=name\") instead of the host name",
		  "SUBJECT" },
		{ "from", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->from,
		  "With --spice: bridge the usbredir export at ADDRESS (usbredirect --as, "
		  "another usbredirsrv) into the VM instead of local devices; repeat for "
		  "more, one usbredir channel each", "ADDRESS" },
		{ "auto-connect-filter", 0, 0, G_OPTION_ARG_STRING, &o->auto_connect,
		  "With --spice: rules for hot-plugged devices (default "
		  "0x03,-1,-1,-1,0|-1,-1,-1,-1,1)", "RULES" },
		{ "redirect-on-connect", 0, 0, G_OPTION_ARG_STRING, &o->redirect_on_connect,
		  "With --spice: rules for devices present at start (default: none)", "RULES" },
		{ "no-reconnect", 0, 0, G_OPTION_ARG_NONE, &o->no_reconnect,
		  "With --spice: exit when the SPICE session ends instead of reconnecting", NULL },
		{ "user", 'u', 0, G_OPTION_ARG_STRING, &o->user,
		  "Once the devices, sockets and --pcap are open, run as USER (and GROUP) "
		  "instead of root", "USER[:GROUP]" },
		{ "list", 'l', 0, G_OPTION_ARG_NONE, &list,
		  "List USB devices and which export would take each, then exit", NULL },
		{ "verbose", 'v', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, (void *)on_verbose,
		  "More log output (repeat: -v info, -vv debug, -vvv usbredir packets)", NULL },
		{ "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version and exit",
		  NULL },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};

	memset(o, 0, sizeof(*o));
	o->exports = g_ptr_array_new_with_free_func(srv_export_spec_free);
	ctx = g_option_context_new("- export USB devices to QEMU over usbredir");
	g_option_context_set_summary(ctx,
		"DEVICE is VID:PID, BUS-ADDR, port=B-P[.P], serial=TEXT, filter=RULES or *\n"
		"(terms joined by ','). ADDRESS is HOST:PORT, PORT (127.0.0.1) or unix:PATH.");
	g_option_context_set_description(ctx,
		"Example: usbredirsrv --export 46f4:0001@127.0.0.1:4000\n"
		"         usbredirsrv --spice spice://127.0.0.1:5900 --from tcp:127.0.0.1:4000\n"
		"The SPICE password is never taken from the command line.\n"
		"Exit status: 0 ok, 1 failure, 2 usage error, 3 SPICE password refused,\n"
		"4 SPICE link failed (TLS, unreachable). See usbredirsrv(8).");
	group = g_option_group_new("usbredirsrv", "usbredirsrv options", "usbredirsrv options",
	                           o, NULL);
	g_option_group_add_entries(group, entries);
	g_option_context_set_main_group(ctx, group);
	if (!g_option_context_parse(ctx, argc, argv, &gerr)) {
		fprintf(stderr, "usbredirsrv: %s (see --help)\n", gerr->message);
		g_clear_error(&gerr);
		goto out;
	}
	if (version) {
		printf("usbredirsrv %s (libusbgate %s)\n", PACKAGE_VERSION, ug_version());
		ret = -1;
		goto out;
	}
	if (*argc > 1) {
		fprintf(stderr, "usbredirsrv: unexpected argument \"%s\" (see --help)\n",
		        (*argv)[1]);
		goto out;
	}
	o->list = list;
	if (add_mappings(o, exports, 0) < 0 || add_mappings(o, connects, 1) < 0)
		goto out;
	if (o->filter) {
		char *err;

		if (check_filter(o->filter, &err) < 0) {
			fprintf(stderr, "usbredirsrv: --filter: %s\n", err);
			g_free(err);
			goto out;
		}
	}
	{
		const char *rules[] = { o->auto_connect, o->redirect_on_connect };
		const char *names[] = { "--auto-connect-filter", "--redirect-on-connect" };

		for (size_t i = 0; i < G_N_ELEMENTS(rules); i++) {
			char *err;

			if (rules[i] && check_filter(rules[i], &err) < 0) {
				fprintf(stderr, "usbredirsrv: %s: %s\n", names[i], err);
				g_free(err);
				goto out;
			}
		}
	}
	if (!o->spice && (o->from || o->spice_password_file || o->spice_ca_file ||
	                  o->spice_host_subject || o->auto_connect || o->redirect_on_connect ||
	                  o->no_reconnect)) {
		fprintf(stderr, "usbredirsrv: --from and the --spice-* options need --spice URI "
		        "(see --help)\n");
		goto out;
	}
	for (char **f = o->from; f && *f; f++) {
		char *err;

		if (check_address(*f, &err) < 0) {
			fprintf(stderr, "usbredirsrv: --from: %s\n", err);
			g_free(err);
			goto out;
		}
	}
	if (!o->list && !o->config && o->exports->len == 0 && !o->spice) {
		fprintf(stderr, "usbredirsrv: nothing to do: give --export, --connect, --config "
		        "or --list (see --help)\n");
		goto out;
	}
	ret = 0;
out:
	g_strfreev(exports);
	g_strfreev(connects);
	g_option_context_free(ctx);
	return ret;
}

void srv_options_clear(struct srv_options *o)
{
	if (o->exports)
		g_ptr_array_unref(o->exports);
	g_free(o->filter);
	g_free(o->config);
	g_free(o->pcap);
	g_free(o->spice);
	g_free(o->spice_password_file);
	g_free(o->spice_ca_file);
	g_free(o->spice_host_subject);
	g_strfreev(o->from);
	g_free(o->auto_connect);
	g_free(o->redirect_on_connect);
	g_free(o->user);
	memset(o, 0, sizeof(*o));
}

static int read_export_group(GKeyFile *kf, const char *path, const char *group,
                             struct srv_export_spec **ret_spec, char **ret_error)
{
	static const char *const known[] = { "device", "listen", "connect", "filter" };
	struct srv_export_spec *s = g_new0(struct srv_export_spec, 1);
	char **keys = g_key_file_get_keys(kf, group, NULL, NULL);
	char *listen, *connect, *err = NULL;

	for (char **k = keys; k && *k; k++) {
		int ok = 0;

		for (size_t i = 0; i < G_N_ELEMENTS(known); i++)
			ok |= strcmp(*k, known[i]) == 0;
		if (!ok) {
			*ret_error = g_strdup_printf("%s: [%s]: unknown key \"%s\" (known: device, "
			                             "listen, connect, filter)", path, group, *k);
			goto fail;
		}
	}
	s->name = g_strdup(group + strlen("export "));
	g_strstrip(s->name);
	if (s->name[0] == '\0') {
		*ret_error = g_strdup_printf("%s: [%s]: an export group needs a name: "
		                             "[export NAME]", path, group);
		goto fail;
	}
	s->device = g_key_file_get_string(kf, group, "device", NULL);
	listen = g_key_file_get_string(kf, group, "listen", NULL);
	connect = g_key_file_get_string(kf, group, "connect", NULL);
	s->filter = g_key_file_get_string(kf, group, "filter", NULL);
	s->from_config = 1;
	if (!s->device) {
		*ret_error = g_strdup_printf("%s: [%s]: missing key device=", path, group);
		g_free(listen);
		g_free(connect);
		goto fail;
	}
	if (!!listen == !!connect) {
		*ret_error = g_strdup_printf("%s: [%s]: give exactly one of listen= and connect=",
		                             path, group);
		g_free(listen);
		g_free(connect);
		goto fail;
	}
	s->connect = connect != NULL;
	s->address = connect ? connect : listen;
	if (check_device(s->device, &err) < 0 || check_address(s->address, &err) < 0 ||
	    (s->filter && check_filter(s->filter, &err) < 0)) {
		*ret_error = g_strdup_printf("%s: [%s]: %s", path, group, err);
		g_free(err);
		goto fail;
	}
	g_strfreev(keys);
	*ret_spec = s;
	return 0;
fail:
	g_strfreev(keys);
	srv_export_spec_free(s);
	return -1;
}

int srv_read_config(const char *path, GPtrArray **ret_exports, char **ret_filter,
                    int *ret_verbosity, char **ret_user, char **ret_error)
{
	GKeyFile *kf = g_key_file_new();
	GError *gerr = NULL;
	GPtrArray *exports = g_ptr_array_new_with_free_func(srv_export_spec_free);
	char **groups = NULL;
	char *filter = NULL, *user = NULL;
	int verbosity = -1;

	if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &gerr)) {
		*ret_error = g_strdup_printf("%s: %s", path, gerr->message);
		g_clear_error(&gerr);
		goto fail;
	}
	groups = g_key_file_get_groups(kf, NULL);
	for (char **g = groups; *g; g++) {
		if (strcmp(*g, "usbredirsrv") == 0) {
			char **keys = g_key_file_get_keys(kf, *g, NULL, NULL);

			for (char **k = keys; k && *k; k++) {
				if (strcmp(*k, "filter") == 0) {
					char *err;

					g_free(filter);
					filter = g_key_file_get_string(kf, *g, "filter", NULL);
					if (check_filter(filter, &err) < 0) {
						*ret_error = g_strdup_printf("%s: [usbredirsrv]: %s", path,
						                             err);
						g_free(err);
						g_strfreev(keys);
						goto fail;
					}
				} else if (strcmp(*k, "verbose") == 0) {
					verbosity = g_key_file_get_integer(kf, *g, "verbose", &gerr);
					if (gerr || verbosity < 0 || verbosity > 3) {
						*ret_error = g_strdup_printf(
							"%s: [usbredirsrv]: verbose must be 0 to 3", path);
						g_clear_error(&gerr);
						g_strfreev(keys);
						goto fail;
					}
				} else if (strcmp(*k, "user") == 0) {
					/* Looked up by main() with the command line's. */
					g_free(user);
					user = g_key_file_get_string(kf, *g, "user", NULL);
					if (!user || user[0] == '\0' ||
					    strlen(user) > UG_PRIVILEGES_SPEC_MAX) {
						*ret_error = g_strdup_printf(
							"%s: [usbredirsrv]: user must be USER or USER:GROUP, "
							"at most %u bytes", path, UG_PRIVILEGES_SPEC_MAX);
						g_strfreev(keys);
						goto fail;
					}
				} else {
					*ret_error = g_strdup_printf("%s: [usbredirsrv]: unknown key \"%s\" "
					                             "(known: filter, verbose, user)", path,
					                             *k);
					g_strfreev(keys);
					goto fail;
				}
			}
			g_strfreev(keys);
		} else if (strncmp(*g, "export ", 7) == 0) {
			struct srv_export_spec *s;

			if (read_export_group(kf, path, *g, &s, ret_error) < 0)
				goto fail;
			for (guint i = 0; i < exports->len; i++) {
				if (strcmp(((struct srv_export_spec *)exports->pdata[i])->name,
				           s->name) == 0) {
					*ret_error = g_strdup_printf("%s: export \"%s\" is defined twice",
					                             path, s->name);
					srv_export_spec_free(s);
					goto fail;
				}
			}
			g_ptr_array_add(exports, s);
		} else {
			*ret_error = g_strdup_printf("%s: unknown group [%s] (expected [usbredirsrv] "
			                             "or [export NAME])", path, *g);
			goto fail;
		}
	}
	g_strfreev(groups);
	g_key_file_free(kf);
	*ret_exports = exports;
	if (filter) {
		g_free(*ret_filter);
		*ret_filter = filter;
	}
	if (verbosity >= 0)
		*ret_verbosity = verbosity;
	if (user && ret_user) {
		g_free(*ret_user);
		*ret_user = user;
	} else {
		g_free(user);
	}
	return 0;
fail:
	g_strfreev(groups);
	g_key_file_free(kf);
	g_ptr_array_unref(exports);
	g_free(filter);
	g_free(user);
	return -1;
}
