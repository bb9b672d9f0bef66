/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* transport.c: the generic layer of ug_transport (callbacks, limits, close-once). */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "transport.h"

void ug_transport_init(ug_transport *t, const struct ug_transport_vtable *vt,
                       const char *desc)
{
	t->vt = vt;
	t->on_data = NULL;
	t->on_closed = NULL;
	t->user_data = NULL;
	t->max_pending = UG_TRANSPORT_DEFAULT_MAX_PENDING;
	t->paused = 0;
	t->closed = 0;
	snprintf(t->desc, sizeof(t->desc), "%s", desc ? desc : "transport");
}

void ug_transport_deliver(ug_transport *t, const uint8_t *data, size_t len)
{
	if (!t->closed && t->on_data && len > 0)
		t->on_data(t, data, len, t->user_data);
}

void ug_transport_report_closed(ug_transport *t, int error, const char *message)
{
	if (t->closed)
		return;
	t->closed = 1;
	if (t->on_closed)
		t->on_closed(t, error, message ? message : "", t->user_data);
}

UG_EXPORT void ug_transport_set_callbacks(ug_transport *t, ug_transport_data_fn on_data,
                                          ug_transport_closed_fn on_closed, void *user_data)
{
	t->on_data = on_data;
	t->on_closed = on_closed;
	t->user_data = user_data;
}

UG_EXPORT int ug_transport_send(ug_transport *t, const void *data, size_t len)
{
	if (t->closed)
		return UG_E_CLOSED;
	if (len == 0)
		return 0;
	return t->vt->send(t, data, len);
}

UG_EXPORT size_t ug_transport_pending(const ug_transport *t)
{
	return t->vt->pending(t);
}

UG_EXPORT void ug_transport_set_max_pending(ug_transport *t, size_t max)
{
	t->max_pending = max;
}

UG_EXPORT void ug_transport_pause(ug_transport *t, int paused)
{
	t->paused = !!paused;
	if (t->vt->pause)
		t->vt->pause(t, t->paused);
}

UG_EXPORT const char *ug_transport_describe(const ug_transport *t)
{
	return t->desc;
}

UG_EXPORT void ug_transport_close(ug_transport *t)
{
	if (t->closed)
		return;
	t->closed = 1;
	t->vt->close(t);
}

UG_EXPORT void ug_transport_free(ug_transport *t)
{
	if (!t)
		return;
	ug_transport_close(t);
	t->vt->destroy(t);
}
