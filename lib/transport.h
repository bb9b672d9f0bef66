/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* transport.h: the internal side of ug_transport, for the modules that implement one. */
#ifndef UG_TRANSPORT_H
#define UG_TRANSPORT_H

#include "usbgate.h"

/*
 * An implementation embeds struct ug_transport as its first member, fills a
 * static vtable and calls ug_transport_init(). It reports the peer's bytes
 * with ug_transport_deliver() and the end of the stream with
 * ug_transport_report_closed(), both from its main-context callbacks only.
 *
 * send() queues (never blocks) and respects t->max_pending; close() stops all
 * I/O; destroy() frees the implementation (the generic layer calls close()
 * first when needed).
 */
struct ug_transport_vtable {
	int (*send)(ug_transport *t, const void *data, size_t len);
	size_t (*pending)(const ug_transport *t);
	void (*pause)(ug_transport *t, int paused);
	void (*close)(ug_transport *t);
	void (*destroy)(ug_transport *t);
};

struct ug_transport {
	const struct ug_transport_vtable *vt;
	ug_transport_data_fn on_data;
	ug_transport_closed_fn on_closed;
	void *user_data;
	size_t max_pending;
	int paused;
	int closed;
	char desc[160];
};

void ug_transport_init(ug_transport *t, const struct ug_transport_vtable *vt,
                       const char *desc);
void ug_transport_deliver(ug_transport *t, const uint8_t *data, size_t len);
void ug_transport_report_closed(ug_transport *t, int error, const char *message);

#endif /* UG_TRANSPORT_H */
