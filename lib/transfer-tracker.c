/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* transfer-tracker.c: pairs usbredir requests with answers and turns a session into USB transfers. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* A request that waits for its answer. */
struct pending {
	struct ug_transfer x;
	int cancel_requested;
};

/* A queued event; small answers (one configuration or alt byte) are kept
 * here because the packet they came from has no data bytes to point at. */
struct queued {
	struct ug_transfer_event ev;
	uint8_t small[4];
	int use_small;
};

struct ug_tracker {
	struct pending *pend;
	uint32_t npend;
	uint32_t pend_alloc;
	uint32_t max_outstanding;

	struct queued *q;
	uint32_t qhead;
	uint32_t qlen;
	uint32_t q_alloc;

	uint64_t next_serial;
	uint32_t connection;
	int connected;
	struct usb_redir_device_connect_header dev;
	uint8_t ep_type[32];
	uint8_t ep_interval[32];
	uint8_t stream_on[32];  /* the guest started a stream on this endpoint */
	uint16_t ep_mps[32];    /* max packet size from ep_info (0 if not sent) */
	uint32_t bulk_bpt[32];  /* bytes_per_transfer of bulk receiving */

	uint64_t notices;
	uint64_t abandoned;
	int oom;
};

/* usbredir indexes its per-endpoint arrays by direction bit and number. */
static unsigned ep_index(uint8_t ep)
{
	return ((ep & 0x80u) >> 3) | (ep & 0x0fu);
}

static void reset_endpoints(ug_tracker *t)
{
	memset(t->ep_type, usb_redir_type_invalid, sizeof(t->ep_type));
	memset(t->ep_interval, 0, sizeof(t->ep_interval));
	memset(t->stream_on, 0, sizeof(t->stream_on));
	memset(t->ep_mps, 0, sizeof(t->ep_mps));
	memset(t->bulk_bpt, 0, sizeof(t->bulk_bpt));
	/* Endpoint 0 is a control endpoint before any ep_info says so. */
	t->ep_type[0] = usb_redir_type_control;
	t->ep_type[16] = usb_redir_type_control;
}

UG_EXPORT ug_tracker *ug_tracker_new(void)
{
	ug_tracker *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->max_outstanding = UG_TRACKER_DEFAULT_MAX_OUTSTANDING;
	t->next_serial = 1;
	reset_endpoints(t);
	return t;
}

UG_EXPORT void ug_tracker_free(ug_tracker *t)
{
	if (!t)
		return;
	free(t->pend);
	free(t->q);
	free(t);
}

UG_EXPORT int ug_tracker_set_max_outstanding(ug_tracker *t, uint32_t max)
{
	if (!t || max < 1 || max > (1u << 24))
		return UG_E_INVAL;
	/* Shrinking below what is outstanding takes effect as requests end. */
	t->max_outstanding = max;
	return 0;
}

/* Appends an event; the queue grows up to max_outstanding + 8, which one
 * push can never exceed (a disconnect abandons at most every request). */
static struct queued *emit(ug_tracker *t, enum ug_transfer_event_kind kind,
                           const struct ug_transfer *x, uint64_t ts_ns)
{
	struct queued *e;

	if (t->qlen == t->q_alloc) {
		uint32_t limit = t->max_outstanding + 8;
		uint32_t n = t->q_alloc ? t->q_alloc * 2 : 16;
		struct queued *nq;

		if (t->npend + 8 > limit)
			limit = t->npend + 8;
		if (n > limit)
			n = limit;
		if (n <= t->q_alloc) {
			t->oom = 1;
			return NULL;
		}
		nq = realloc(t->q, (size_t)n * sizeof(*nq));
		if (!nq) {
			t->oom = 1;
			return NULL;
		}
		t->q = nq;
		t->q_alloc = n;
	}
	e = &t->q[t->qlen++];
	memset(e, 0, sizeof(*e));
	e->ev.kind = kind;
	if (x)
		e->ev.xfer = *x;
	e->ev.ts_ns = ts_ns;
	if (kind == UG_TRANSFER_NOTICE)
		t->notices++;
	else if (kind == UG_TRANSFER_ABANDON)
		t->abandoned++;
	return e;
}

static void notice(ug_tracker *t, const struct ug_transfer *x, uint64_t ts_ns,
                   const char *note)
{
	struct queued *e = emit(t, UG_TRANSFER_NOTICE, x, ts_ns);

	if (e)
		e->ev.note = note;
}

static void abandon(ug_tracker *t, const struct ug_transfer *x, uint64_t ts_ns,
                    enum ug_abandon_reason reason)
{
	static const char *const notes[] = {
		[UG_ABANDON_NONE] = "",
		[UG_ABANDON_DISCONNECT] = "request abandoned: the device went away",
		[UG_ABANDON_LIMIT] = "request dropped: too many outstanding requests",
		[UG_ABANDON_ID_REUSED] = "request abandoned: its id was reused while outstanding",
	};
	struct queued *e = emit(t, UG_TRANSFER_ABANDON, x, ts_ns);

	if (e) {
		e->ev.reason = reason;
		e->ev.note = notes[reason];
	}
}

static struct pending *find_pending(ug_tracker *t, uint64_t id)
{
	for (uint32_t i = 0; i < t->npend; i++)
		if (t->pend[i].x.id == id)
			return &t->pend[i];
	return NULL;
}

static void remove_pending(ug_tracker *t, struct pending *p)
{
	uint32_t i = (uint32_t)(p - t->pend);

	t->pend[i] = t->pend[--t->npend];
}

static int cmp_serial(const void *a, const void *b)
{
	const struct pending *pa = a, *pb = b;

	return pa->x.serial < pb->x.serial ? -1 : pa->x.serial > pb->x.serial;
}

static void abandon_all(ug_tracker *t, uint64_t ts_ns)
{
	/* Oldest first, so that output is in the order requests were made. */
	if (t->npend > 1)
		qsort(t->pend, t->npend, sizeof(*t->pend), cmp_serial);
	for (uint32_t i = 0; i < t->npend; i++)
		abandon(t, &t->pend[i].x, ts_ns, UG_ABANDON_DISCONNECT);
	t->npend = 0;
}

static int add_pending(ug_tracker *t, const struct ug_transfer *x, uint64_t ts_ns)
{
	struct pending *old = find_pending(t, x->id);

	if (old) {
		abandon(t, &old->x, ts_ns, UG_ABANDON_ID_REUSED);
		remove_pending(t, old);
	}
	/* A lowered limit can leave more than one to drop. */
	while (t->npend >= t->max_outstanding) {
		uint32_t oldest = 0;

		for (uint32_t i = 1; i < t->npend; i++)
			if (t->pend[i].x.serial < t->pend[oldest].x.serial)
				oldest = i;
		abandon(t, &t->pend[oldest].x, ts_ns, UG_ABANDON_LIMIT);
		remove_pending(t, &t->pend[oldest]);
	}
	if (t->npend == t->pend_alloc) {
		uint32_t n = t->pend_alloc ? t->pend_alloc * 2 : 32;
		struct pending *np;

		if (n > t->max_outstanding)
			n = t->max_outstanding;
		np = realloc(t->pend, (size_t)n * sizeof(*np));
		if (!np) {
			t->oom = 1;
			return UG_E_NOMEM;
		}
		t->pend = np;
		t->pend_alloc = n;
	}
	t->pend[t->npend].x = *x;
	t->pend[t->npend].cancel_requested = 0;
	t->npend++;
	return 0;
}

static void set_setup(struct ug_transfer *x, uint8_t type, uint8_t req, uint16_t value,
                      uint16_t index, uint16_t length)
{
	x->has_setup = 1;
	x->setup[0] = type;
	x->setup[1] = req;
	ug_put_le16(x->setup + 2, value);
	ug_put_le16(x->setup + 4, index);
	ug_put_le16(x->setup + 6, length);
}

static void new_transfer(ug_tracker *t, struct ug_transfer *x, const struct ug_usbredir_packet *pkt,
                         uint64_t ts_ns)
{
	memset(x, 0, sizeof(*x));
	x->serial = t->next_serial++;
	x->id = pkt->id;
	x->packet_type = pkt->type;
	x->submit_ts_ns = ts_ns;
	x->connection = t->connection;
}

/* Endpoint, transfer type and length of a data packet's type header. */
static int data_packet_fields(const struct ug_usbredir_packet *pkt, uint8_t *ep, uint8_t *xt,
                              uint8_t *status, uint32_t *len, uint32_t *stream)
{
	*stream = 0;
	switch (pkt->type) {
	case usb_redir_control_packet:
		*ep = (uint8_t)((pkt->h.control_packet.endpoint & 0x0f) |
		                (pkt->h.control_packet.requesttype & 0x80));
		*xt = UG_XFER_CONTROL;
		*status = pkt->h.control_packet.status;
		*len = pkt->h.control_packet.length;
		return 1;
	case usb_redir_bulk_packet:
		*ep = pkt->h.bulk_packet.endpoint;
		*xt = UG_XFER_BULK;
		*status = pkt->h.bulk_packet.status;
		*len = pkt->h.bulk_packet.length | ((uint32_t)pkt->h.bulk_packet.length_high << 16);
		*stream = pkt->h.bulk_packet.stream_id;
		return 1;
	case usb_redir_iso_packet:
		*ep = pkt->h.iso_packet.endpoint;
		*xt = UG_XFER_ISO;
		*status = pkt->h.iso_packet.status;
		*len = pkt->h.iso_packet.length;
		return 1;
	case usb_redir_interrupt_packet:
		*ep = pkt->h.interrupt_packet.endpoint;
		*xt = UG_XFER_INTERRUPT;
		*status = pkt->h.interrupt_packet.status;
		*len = pkt->h.interrupt_packet.length;
		return 1;
	case usb_redir_buffered_bulk_packet:
		*ep = pkt->h.buffered_bulk_packet.endpoint;
		*xt = UG_XFER_BULK;
		*status = pkt->h.buffered_bulk_packet.status;
		*len = pkt->h.buffered_bulk_packet.length;
		*stream = pkt->h.buffered_bulk_packet.stream_id;
		return 1;
	default:
		return 0;
	}
}

static void submit(ug_tracker *t, const struct ug_transfer *x, uint64_t ts_ns,
                   const uint8_t *data, uint32_t data_len)
{
	struct queued *e = emit(t, UG_TRANSFER_SUBMIT, x, ts_ns);

	if (e && !(x->endpoint & 0x80) && data_len) {
		e->ev.data = data;
		e->ev.data_len = data_len;
	}
}

static struct queued *complete(ug_tracker *t, const struct ug_transfer *x, uint64_t ts_ns,
                               uint8_t status, uint32_t actual, const uint8_t *data,
                               uint32_t data_len)
{
	struct queued *e = emit(t, UG_TRANSFER_COMPLETE, x, ts_ns);

	if (!e)
		return NULL;
	e->ev.status = status;
	e->ev.actual_length = actual;
	if ((x->endpoint & 0x80) && data_len) {
		e->ev.data = data;
		e->ev.data_len = data_len;
	}
	return e;
}

static int guest_packet(ug_tracker *t, const struct ug_usbredir_packet *pkt, uint64_t ts_ns)
{
	struct ug_transfer x;
	uint8_t ep, xt, status;
	uint32_t len, stream;
	struct pending *p;
	int err;

	if (data_packet_fields(pkt, &ep, &xt, &status, &len, &stream)) {
		new_transfer(t, &x, pkt, ts_ns);
		x.origin = UG_ORIGIN_REQUEST;
		x.xfer_type = xt;
		x.endpoint = ep;
		x.stream_id = stream;
		x.interval = t->ep_interval[ep_index(ep)];
		x.req_length = (ep & 0x80) ? len : pkt->data_len;
		if (pkt->type == usb_redir_control_packet) {
			const struct usb_redir_control_packet_header *c = &pkt->h.control_packet;

			set_setup(&x, c->requesttype, c->request, c->value, c->index, c->length);
			x.req_length = c->length;
		}
		/* Iso OUT packets get no per-packet answer: the host only
		 * reports stream errors. They complete as they are sent. */
		if (pkt->type == usb_redir_iso_packet && !(ep & 0x80)) {
			submit(t, &x, ts_ns, pkt->data, pkt->data_len);
			complete(t, &x, ts_ns, status, pkt->data_len, NULL, 0);
			return 0;
		}
		/* Report what the new request pushes out before the request. */
		err = add_pending(t, &x, ts_ns);
		submit(t, &x, ts_ns, pkt->data, pkt->data_len);
		return err;
	}

	switch (pkt->type) {
	case usb_redir_set_configuration:
	case usb_redir_get_configuration:
	case usb_redir_set_alt_setting:
	case usb_redir_get_alt_setting:
		break;
	case usb_redir_cancel_data_packet:
		p = find_pending(t, pkt->id);
		if (p) {
			p->cancel_requested = 1;
		} else {
			memset(&x, 0, sizeof(x));
			x.id = pkt->id;
			x.packet_type = pkt->type;
			x.connection = t->connection;
			notice(t, &x, ts_ns, "cancel for an id that is not outstanding");
		}
		return 0;
	case usb_redir_start_iso_stream:
		t->stream_on[ep_index(pkt->h.start_iso_stream.endpoint)] = 1;
		return 0;
	case usb_redir_start_interrupt_receiving:
		t->stream_on[ep_index(pkt->h.start_interrupt_receiving.endpoint)] = 1;
		return 0;
	case usb_redir_start_bulk_receiving:
		t->stream_on[ep_index(pkt->h.start_bulk_receiving.endpoint)] = 1;
		t->bulk_bpt[ep_index(pkt->h.start_bulk_receiving.endpoint)] =
			pkt->h.start_bulk_receiving.bytes_per_transfer;
		return 0;
	case usb_redir_stop_iso_stream:
		t->stream_on[ep_index(pkt->h.stop_iso_stream.endpoint)] = 0;
		return 0;
	case usb_redir_stop_interrupt_receiving:
		t->stream_on[ep_index(pkt->h.stop_interrupt_receiving.endpoint)] = 0;
		return 0;
	case usb_redir_stop_bulk_receiving:
		t->stream_on[ep_index(pkt->h.stop_bulk_receiving.endpoint)] = 0;
		return 0;
	default:
		return 0;
	}

	/* The configuration and alt-setting packets stand for the control
	 * transfers QEMU turned into them; rebuild those. */
	new_transfer(t, &x, pkt, ts_ns);
	x.xfer_type = UG_XFER_CONTROL;
	switch (pkt->type) {
	case usb_redir_set_configuration:
		x.origin = UG_ORIGIN_SET_CONFIGURATION;
		set_setup(&x, 0x00, 0x09, pkt->h.set_configuration.configuration, 0, 0);
		break;
	case usb_redir_get_configuration:
		x.origin = UG_ORIGIN_GET_CONFIGURATION;
		x.endpoint = 0x80;
		x.req_length = 1;
		set_setup(&x, 0x80, 0x08, 0, 0, 1);
		break;
	case usb_redir_set_alt_setting:
		x.origin = UG_ORIGIN_SET_ALT_SETTING;
		set_setup(&x, 0x01, 0x0b, pkt->h.set_alt_setting.alt,
		          pkt->h.set_alt_setting.interface, 0);
		break;
	default: /* usb_redir_get_alt_setting */
		x.origin = UG_ORIGIN_GET_ALT_SETTING;
		x.endpoint = 0x80;
		x.req_length = 1;
		set_setup(&x, 0x81, 0x0a, 0, pkt->h.get_alt_setting.interface, 1);
		break;
	}
	err = add_pending(t, &x, ts_ns);
	submit(t, &x, ts_ns, NULL, 0);
	return err;
}

static int host_packet(ug_tracker *t, const struct ug_usbredir_packet *pkt, uint64_t ts_ns)
{
	uint8_t ep, xt, status;
	uint32_t len, stream;
	struct pending *p;
	struct queued *e;

	if (data_packet_fields(pkt, &ep, &xt, &status, &len, &stream)) {
		struct ug_transfer x;

		p = find_pending(t, pkt->id);
		if (p && p->x.packet_type == pkt->type && p->x.origin == UG_ORIGIN_REQUEST) {
			x = p->x;
			remove_pending(t, p);
			if (x.endpoint != ep)
				notice(t, &x, ts_ns, "answer names another endpoint than its request");
			complete(t, &x, ts_ns, status, len, pkt->data, pkt->data_len);
			return 0;
		}
		new_transfer(t, &x, pkt, ts_ns);
		x.xfer_type = xt;
		x.endpoint = ep;
		x.stream_id = stream;
		x.interval = t->ep_interval[ep_index(ep)];
		if ((ep & 0x80) && pkt->type != usb_redir_control_packet &&
		    pkt->type != usb_redir_bulk_packet) {
			/* Stream data: the host picked the id and no request
			 * preceded it, so the transfer begins and ends here. */
			x.origin = UG_ORIGIN_STREAM;
			/* The guest's URB asked for what the host receives per
			 * transfer: a max packet, or bytes_per_transfer. */
			x.req_length = pkt->type == usb_redir_buffered_bulk_packet
			                       ? t->bulk_bpt[ep_index(ep)]
			                       : t->ep_mps[ep_index(ep)];
			if (x.req_length < pkt->data_len)
				x.req_length = pkt->data_len;
			if (!t->stream_on[ep_index(ep)])
				notice(t, &x, ts_ns, "stream data on an endpoint with no stream started");
			submit(t, &x, ts_ns, NULL, 0);
			complete(t, &x, ts_ns, status, pkt->data_len, pkt->data, pkt->data_len);
			return 0;
		}
		x.serial = 0;
		t->next_serial--; /* not a transfer after all: keep serials dense */
		notice(t, &x, ts_ns, "answer without a request");
		return 0;
	}

	switch (pkt->type) {
	case usb_redir_configuration_status:
	case usb_redir_alt_setting_status: {
		int is_cfg = pkt->type == usb_redir_configuration_status;
		struct ug_transfer x;

		p = find_pending(t, pkt->id);
		if (!p || (is_cfg && p->x.origin != UG_ORIGIN_SET_CONFIGURATION &&
		           p->x.origin != UG_ORIGIN_GET_CONFIGURATION) ||
		    (!is_cfg && p->x.origin != UG_ORIGIN_SET_ALT_SETTING &&
		     p->x.origin != UG_ORIGIN_GET_ALT_SETTING)) {
			memset(&x, 0, sizeof(x));
			x.id = pkt->id;
			x.packet_type = pkt->type;
			x.connection = t->connection;
			notice(t, &x, ts_ns, "status without a request");
			return 0;
		}
		x = p->x;
		remove_pending(t, p);
		status = is_cfg ? pkt->h.configuration_status.status : pkt->h.alt_setting_status.status;
		e = complete(t, &x, ts_ns, status, 0, NULL, 0);
		if (e && (x.endpoint & 0x80) && status == usb_redir_success) {
			/* A GET answers with one byte, as the device would. */
			e->small[0] = is_cfg ? pkt->h.configuration_status.configuration
			                     : pkt->h.alt_setting_status.alt;
			e->use_small = 1;
			e->ev.actual_length = 1;
			e->ev.data_len = 1;
		}
		return 0;
	}
	case usb_redir_device_connect:
		if (t->connected)
			abandon_all(t, ts_ns);
		t->connection++;
		t->connected = 1;
		t->dev = pkt->h.device_connect;
		return 0;
	case usb_redir_device_disconnect:
		abandon_all(t, ts_ns);
		t->connected = 0;
		memset(&t->dev, 0, sizeof(t->dev));
		reset_endpoints(t);
		return 0;
	case usb_redir_iso_stream_status:
		if (pkt->h.iso_stream_status.status != usb_redir_success)
			t->stream_on[ep_index(pkt->h.iso_stream_status.endpoint)] = 0;
		return 0;
	case usb_redir_interrupt_receiving_status:
		if (pkt->h.interrupt_receiving_status.status != usb_redir_success)
			t->stream_on[ep_index(pkt->h.interrupt_receiving_status.endpoint)] = 0;
		return 0;
	case usb_redir_bulk_receiving_status:
		if (pkt->h.bulk_receiving_status.status != usb_redir_success)
			t->stream_on[ep_index(pkt->h.bulk_receiving_status.endpoint)] = 0;
		return 0;
	case usb_redir_ep_info:
		memcpy(t->ep_type, pkt->h.ep_info.type, sizeof(t->ep_type));
		memcpy(t->ep_interval, pkt->h.ep_info.interval, sizeof(t->ep_interval));
		for (unsigned i = 0; i < 32; i++)
			t->ep_mps[i] = pkt->h.ep_info.max_packet_size[i];
		return 0;
	default:
		return 0;
	}
}

UG_EXPORT int ug_tracker_push(ug_tracker *t, const struct ug_usbredir_packet *pkt, uint64_t ts_ns)
{
	if (!t || !pkt)
		return UG_E_INVAL;
	/* Events of the previous packet point into that packet: drop them. */
	t->qhead = 0;
	t->qlen = 0;
	t->oom = 0;
	if (!pkt->known)
		return 0;
	if (pkt->dir == UG_DIR_G2H)
		guest_packet(t, pkt, ts_ns);
	else
		host_packet(t, pkt, ts_ns);
	return t->oom ? UG_E_NOMEM : 0;
}

UG_EXPORT int ug_tracker_finish(ug_tracker *t, uint64_t ts_ns)
{
	if (!t)
		return UG_E_INVAL;
	t->qhead = 0;
	t->qlen = 0;
	t->oom = 0;
	abandon_all(t, ts_ns);
	return t->oom ? UG_E_NOMEM : 0;
}

UG_EXPORT int ug_tracker_next(ug_tracker *t, struct ug_transfer_event *ret_ev)
{
	struct queued *e;

	if (!t || !ret_ev || t->qhead >= t->qlen)
		return 0;
	e = &t->q[t->qhead++];
	*ret_ev = e->ev;
	if (e->use_small)
		ret_ev->data = e->small;
	return 1;
}

UG_EXPORT uint32_t ug_tracker_outstanding(const ug_tracker *t)
{
	return t ? t->npend : 0;
}

UG_EXPORT int ug_tracker_endpoint_type(const ug_tracker *t, uint8_t endpoint)
{
	return t ? t->ep_type[ep_index(endpoint)] : usb_redir_type_invalid;
}

UG_EXPORT int ug_tracker_connected(const ug_tracker *t)
{
	return t ? t->connected : 0;
}

UG_EXPORT const struct usb_redir_device_connect_header *ug_tracker_device(const ug_tracker *t)
{
	return t ? &t->dev : NULL;
}

UG_EXPORT uint64_t ug_tracker_notices(const ug_tracker *t)
{
	return t ? t->notices : 0;
}

UG_EXPORT uint64_t ug_tracker_abandoned(const ug_tracker *t)
{
	return t ? t->abandoned : 0;
}
