/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* main.c: usbreplay wires the capture loader to the emulated device or the replayed guest over a transport. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib-unix.h>

#include "options.h"
#include "usbgate.h"

struct app {
	struct options o;
	GMainLoop *loop;
	ug_recording *rec;
	ug_replay_rules *rules;
	ug_emulated_device *dev;
	ug_replay_guest *guest;
	ug_listener *listener;
	ug_connector *connector;
	ug_spice_client *spice;
	int attached;
	int runtime_error;
	char runtime_msg[512];
};

static void log_cb(int level, const char *message, void *user_data)
{
	struct app *a = user_data;
	int min = a->o.verbose >= 2 ? UG_LOG_DEBUG : a->o.verbose ? UG_LOG_INFO : UG_LOG_WARNING;

	if (level <= min)
		fprintf(stderr, "usbreplay: %s\n", message);
}

static void fail_runtime(struct app *a, const char *what, const char *message)
{
	a->runtime_error = 1;
	snprintf(a->runtime_msg, sizeof(a->runtime_msg), "%s: %s", what, message);
	g_main_loop_quit(a->loop);
}

static void done_cb(void *owner, int error, const char *message, void *user_data)
{
	struct app *a = user_data;

	(void)owner;
	if (a->o.verbose)
		fprintf(stderr, "usbreplay: session ended: %s\n",
			message && *message ? message : error ? ug_strerror(error) : "closed");
	g_main_loop_quit(a->loop);
}

/* Hands a connected transport to the endpoint of the chosen mode. */
static void attach(struct app *a, ug_transport *t)
{
	int rc;

	if (a->attached) {
		ug_transport_free(t);
		return;
	}
	a->attached = 1;
	if (a->o.verbose)
		fprintf(stderr, "usbreplay: connected: %s\n", ug_transport_describe(t));
	rc = a->guest ? ug_replay_guest_attach(a->guest, t) : ug_emulated_device_attach(a->dev, t);
	if (rc < 0)
		fail_runtime(a, "cannot start the session", ug_strerror(rc));
}

static void accept_cb(ug_listener *l, ug_transport *t, void *user_data)
{
	struct app *a = user_data;

	/* One session per run: later connections wait in the backlog. */
	ug_listener_pause(l, 1);
	attach(a, t);
}

static void connect_cb(ug_connector *c, ug_transport *t, int error, const char *message,
		       void *user_data)
{
	struct app *a = user_data;

	(void)c;
	if (!t) {
		fail_runtime(a, a->o.connect, message ? message : ug_strerror(error));
		return;
	}
	attach(a, t);
}

static void spice_channel_added(ug_spice_client *c, unsigned id, void *user_data)
{
	struct app *a = user_data;
	ug_transport *t = NULL;
	int rc;

	if (a->attached || (a->o.channel >= 0 && (unsigned)a->o.channel != id))
		return;
	rc = ug_spice_client_open_usbredir(c, id, &t);
	if (rc < 0) {
		fail_runtime(a, "cannot open the usbredir channel", ug_spice_client_errmsg(c));
		return;
	}
	attach(a, t);
}

static void spice_disconnected(ug_spice_client *c, int error, const char *message,
			       void *user_data)
{
	struct app *a = user_data;

	(void)c;
	if (!a->attached || error)
		fail_runtime(a, a->o.spice, message ? message : ug_strerror(error));
	else
		g_main_loop_quit(a->loop);
}

static gboolean on_signal(gpointer user_data)
{
	struct app *a = user_data;

	if (a->o.verbose)
		fprintf(stderr, "usbreplay: stopping on a signal\n");
	g_main_loop_quit(a->loop);
	return G_SOURCE_CONTINUE;
}

static int start_transport(struct app *a)
{
	struct ug_address addr;
	char err[256], text[UG_ADDRESS_TEXT_MAX];

	if (a->o.listen || a->o.connect) {
		const char *s = a->o.listen ? a->o.listen : a->o.connect;

		if (ug_address_parse(s, &addr, err, sizeof(err)) < 0) {
			fprintf(stderr, "usbreplay: %s\n", err);
			return EXIT_USAGE;
		}
	}
	if (a->o.listen) {
		a->listener = ug_listener_new();
		if (!a->listener || ug_listener_open(a->listener, &addr, accept_cb, a) < 0) {
			fprintf(stderr, "usbreplay: %s\n",
				a->listener ? ug_listener_errmsg(a->listener) : "out of memory");
			return EXIT_RUNTIME;
		}
		/* The chosen port, for scripts that asked for port 0. */
		fprintf(stderr, "usbreplay: listening on %s\n",
			ug_address_format(ug_listener_address(a->listener), text, sizeof(text)));
		return 0;
	}
	if (a->o.connect) {
		a->connector = ug_connector_new(&addr);
		if (!a->connector)
			return EXIT_RUNTIME;
		ug_connector_set_backoff(a->connector, 100, 1000, 10);
		ug_connector_set_log(a->connector, log_cb, a);
		if (ug_connector_start(a->connector, connect_cb, a) < 0)
			return EXIT_RUNTIME;
		return 0;
	}
	{
		static const struct ug_spice_client_callbacks cb = {
			.channel_added = spice_channel_added,
			.disconnected = spice_disconnected,
		};
		const char *env = a->o.password_env;
		int rc = 0;

		if (!env && getenv("USBREPLAY_SPICE_PASSWORD"))
			env = "USBREPLAY_SPICE_PASSWORD";
		a->spice = ug_spice_client_new();
		if (!a->spice)
			return EXIT_RUNTIME;
		ug_spice_client_set_log(a->spice, log_cb, a);
		ug_spice_client_set_callbacks(a->spice, &cb, a);
		if ((rc = ug_spice_client_set_uri(a->spice, a->o.spice)) < 0 ||
		    (a->o.ca_file && (rc = ug_spice_client_set_ca_file(a->spice, a->o.ca_file)) < 0)) {
			fprintf(stderr, "usbreplay: %s\n", ug_spice_client_errmsg(a->spice));
			return rc == UG_E_INVAL ? EXIT_USAGE : EXIT_RUNTIME;
		}
		/* A password file that cannot be read or a variable that is not
		 * set is a bad argument, found before anything is connected. */
		if (a->o.password_file &&
		    ug_spice_client_set_password_file(a->spice, a->o.password_file) < 0) {
			fprintf(stderr, "usbreplay: --password-file: %s\n",
				ug_spice_client_errmsg(a->spice));
			return EXIT_USAGE;
		}
		if (env && ug_spice_client_set_password_env(a->spice, env) < 0) {
			fprintf(stderr, "usbreplay: %s%s: %s\n", a->o.password_env ? "--password-env " : "",
				env, ug_spice_client_errmsg(a->spice));
			return EXIT_USAGE;
		}
		if (a->o.no_verify)
			ug_spice_client_set_verify(a->spice, 0);
		if (ug_spice_client_connect(a->spice) < 0) {
			fprintf(stderr, "usbreplay: %s\n", ug_spice_client_errmsg(a->spice));
			return EXIT_RUNTIME;
		}
		return 0;
	}
}

static int load(struct app *a)
{
	struct ug_recording_limits lim = { 0 };
	char err[256];
	int rc;

	a->rec = ug_recording_new();
	a->rules = ug_replay_rules_new();
	if (!a->rec || !a->rules)
		return EXIT_RUNTIME;
	lim.max_bytes = a->o.max_memory;
	ug_recording_set_limits(a->rec, &lim);
	if (a->o.speed >= 0)
		ug_recording_set_speed(a->rec, a->o.speed);
	if (a->o.session)
		ug_recording_set_session(a->rec, a->o.session);
	for (int i = 0; i < a->o.n_ignores; i++)
		if (ug_replay_rules_add(a->rules, a->o.ignores[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "usbreplay: %s\n", err);
			return EXIT_USAGE;
		}
	ug_replay_rules_set_bot_tags(a->rules, a->o.bot_tags);
	if ((rc = ug_recording_load(a->rec, a->o.capture)) < 0) {
		fprintf(stderr, "usbreplay: capture unusable: %s\n", ug_recording_errmsg(a->rec));
		return rc == UG_E_INVAL ? EXIT_USAGE : EXIT_CAPTURE;
	}
	if (a->o.verbose) {
		struct usb_redir_device_connect_header d;

		ug_recording_device(a->rec, &d);
		fprintf(stderr, "usbreplay: %s: %zu packets, device %04x:%04x class 0x%02x, %s\n",
			a->o.capture, ug_recording_count(a->rec), d.vendor_id, d.product_id,
			d.device_class, ug_recording_speed_name(d.speed));
	}
	if (a->o.guest) {
		a->guest = ug_replay_guest_new(a->rec, a->rules);
		if (!a->guest)
			return EXIT_RUNTIME;
		ug_replay_guest_set_timeout(a->guest, a->o.timeout_ms);
		ug_replay_guest_set_log(a->guest, log_cb, a);
		ug_replay_guest_set_done(a->guest, done_cb, a);
	} else {
		a->dev = ug_emulated_device_new(a->rec, a->rules);
		if (!a->dev)
			return EXIT_RUNTIME;
		ug_emulated_device_set_strict(a->dev, a->o.strict);
		ug_emulated_device_set_pace(a->dev, a->o.pace);
		ug_emulated_device_set_stream_delay(a->dev, a->o.stream_delay_ms);
		ug_emulated_device_set_unmatched_status(a->dev, (uint8_t)a->o.unmatched_status);
		ug_emulated_device_set_log(a->dev, log_cb, a);
		ug_emulated_device_set_done(a->dev, done_cb, a);
	}
	return 0;
}

static int report(struct app *a)
{
	const ug_replay_report *r = a->guest ? ug_replay_guest_report(a->guest)
					     : ug_emulated_device_report(a->dev);
	struct ug_replay_summary sum;
	int rc = 0;

	ug_replay_report_summary(r, &sum);
	if (!a->attached && sum.requests == 0) {
		/* Nothing was replayed: a summary would read as a match. */
		fprintf(stderr, "usbreplay: %s\n",
			a->runtime_error ? a->runtime_msg : "no session took place");
		return EXIT_RUNTIME;
	}
	if (a->o.json)
		rc = ug_replay_report_write_json(r, stdout);
	else
		rc = ug_replay_report_write_text(r, stdout, a->o.verbose);
	if (a->o.junit) {
		FILE *f = fopen(a->o.junit, "w");

		if (!f || ug_replay_report_write_junit(r, f) < 0 || fclose(f) != 0) {
			fprintf(stderr, "usbreplay: cannot write %s\n", a->o.junit);
			return EXIT_RUNTIME;
		}
	}
	if (fflush(stdout) != 0 || rc < 0)
		return EXIT_RUNTIME;
	if (sum.diverged)
		return EXIT_DIVERGED;
	if (a->runtime_error) {
		fprintf(stderr, "usbreplay: %s\n", a->runtime_msg);
		return EXIT_RUNTIME;
	}
	if (!a->attached) {
		fprintf(stderr, "usbreplay: no session took place\n");
		return EXIT_RUNTIME;
	}
	return EXIT_MATCHED;
}

int main(int argc, char **argv)
{
	struct app a;
	int rc;

	memset(&a, 0, sizeof(a));
	rc = options_parse(argc, argv, &a.o);
	if (rc < 0)
		return 0;
	if (rc)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	a.loop = g_main_loop_new(NULL, FALSE);
	if ((rc = load(&a)) != 0)
		goto out;
	if ((rc = start_transport(&a)) != 0)
		goto out;
	g_unix_signal_add(SIGINT, on_signal, &a);
	g_unix_signal_add(SIGTERM, on_signal, &a);
	g_main_loop_run(a.loop);
	rc = report(&a);
out:
	ug_emulated_device_free(a.dev);
	ug_replay_guest_free(a.guest);
	ug_listener_free(a.listener);
	ug_connector_free(a.connector);
	ug_spice_client_free(a.spice);
	ug_replay_rules_free(a.rules);
	ug_recording_free(a.rec);
	g_main_loop_unref(a.loop);
	return rc;
}
