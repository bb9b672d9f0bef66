/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbmon.c: maps tracked usbredir transfers to Linux usbmon records (pcap link type 220). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/*
 * Field offsets of the 64-byte mmapped usbmon header (struct usbmon_packet
 * in the kernel's Documentation/usb/usbmon.rst). Multi-byte fields are in
 * host byte order, as the kernel hands them to libpcap.
 */
enum {
	OFF_ID = 0,
	OFF_TYPE = 8,
	OFF_XFER = 9,
	OFF_EPNUM = 10,
	OFF_DEVNUM = 11,
	OFF_BUSNUM = 12,
	OFF_FLAG_SETUP = 14,
	OFF_FLAG_DATA = 15,
	OFF_TS_SEC = 16,
	OFF_TS_USEC = 24,
	OFF_STATUS = 28,
	OFF_LENGTH = 32,
	OFF_LEN_CAP = 36,
	OFF_SETUP = 40,         /* or iso error_count (s32) + numdesc (s32) */
	OFF_INTERVAL = 48,
	OFF_START_FRAME = 52,
	OFF_XFER_FLAGS = 56,
	OFF_NDESC = 60,
};

/* The kernel's URB transfer flags that usb_submit_urb() leaves visible. */
#define URB_ISO_ASAP 0x0002u
#define URB_DIR_IN 0x0200u

struct ug_usbmon {
	uint16_t bus;
	uint8_t dev;
	uint8_t *buf;
	size_t buf_alloc;
};

static void put_h16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put_h32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put_h64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

UG_EXPORT ug_usbmon *ug_usbmon_new(void)
{
	ug_usbmon *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->bus = 1;
	m->dev = 1;
	return m;
}

UG_EXPORT void ug_usbmon_free(ug_usbmon *m)
{
	if (!m)
		return;
	free(m->buf);
	free(m);
}

UG_EXPORT int ug_usbmon_set_address(ug_usbmon *m, uint16_t bus, uint8_t device)
{
	/* USB addresses are 7 bits; 0 is the default address before SET_ADDRESS. */
	if (!m || device == 0 || device > 127)
		return UG_E_INVAL;
	m->bus = bus;
	m->dev = device;
	return 0;
}

/*
 * URB ids only need to be unique while a transfer is outstanding; deriving
 * them from the tracker's serial (never reused) makes them unique for 2^30
 * transfers per device, and kernel-pointer-like for readers used to those.
 */
UG_EXPORT uint64_t ug_usbmon_urb_id(const ug_usbmon *m, uint64_t serial)
{
	uint64_t dev = m ? m->dev : 0;

	return 0xffff888000000000ull + (dev << 36) + ((serial & 0x3fffffffull) << 6);
}

UG_EXPORT int ug_usbmon_status(uint8_t usbredir_status)
{
	switch (usbredir_status) {
	case usb_redir_success:
		return 0;
	case usb_redir_cancelled:
		return -ENOENT;
	case usb_redir_inval:
		return -EINVAL;
	case usb_redir_ioerror:
		return -EPROTO;
	case usb_redir_stall:
		return -EPIPE;
	case usb_redir_timeout:
		return -ETIMEDOUT;
	case usb_redir_babble:
		return -EOVERFLOW;
	default:
		/* The protocol calls any other value an error of no particular kind. */
		return -EPROTO;
	}
}

static int reserve(ug_usbmon *m, size_t n)
{
	uint8_t *nb;

	if (n <= m->buf_alloc)
		return 0;
	nb = realloc(m->buf, n);
	if (!nb)
		return UG_E_NOMEM;
	m->buf = nb;
	m->buf_alloc = n;
	return 0;
}

UG_EXPORT int ug_usbmon_map(ug_usbmon *m, const struct ug_transfer_event *ev,
                            struct ug_usbmon_record *ret_rec)
{
	const struct ug_transfer *x;
	int in, is_submit, iso, status;
	uint32_t ndesc, urb_len, data_len, data_cap, desc_len, room;
	const uint8_t *data;
	uint8_t flag_data;
	uint8_t *r;
	int err;

	if (!m || !ev || !ret_rec)
		return UG_E_INVAL;
	x = &ev->xfer;
	switch (ev->kind) {
	case UG_TRANSFER_SUBMIT:
		is_submit = 1;
		break;
	case UG_TRANSFER_COMPLETE:
		is_submit = 0;
		break;
	case UG_TRANSFER_ABANDON:
		/* The kernel completes the URBs of a vanished device with
		 * -ESHUTDOWN; a request we dropped for our own limit has no
		 * honest completion to show. */
		if (ev->reason != UG_ABANDON_DISCONNECT)
			return 0;
		is_submit = 0;
		break;
	default:
		return 0;
	}

	in = (x->endpoint & 0x80) != 0;
	iso = x->xfer_type == UG_XFER_ISO;
	ndesc = iso ? 1 : 0;
	desc_len = ndesc * UG_USBMON_ISODESC_SIZE;

	/* Data travels on OUT submits and IN completions, as in the kernel. */
	if (is_submit) {
		status = -EINPROGRESS;
		urb_len = x->req_length;
		data = in ? NULL : ev->data;
		data_len = in ? 0 : ev->data_len;
		flag_data = in ? '<' : 0;
	} else if (ev->kind == UG_TRANSFER_ABANDON) {
		status = -ESHUTDOWN;
		urb_len = 0;
		data = NULL;
		data_len = 0;
		flag_data = in ? 0 : '>';
	} else {
		status = ug_usbmon_status(ev->status);
		urb_len = ev->actual_length;
		data = in ? ev->data : NULL;
		data_len = in ? ev->data_len : 0;
		flag_data = in ? 0 : '>';
	}
	if (!data)
		data_len = 0;

	room = UG_USBMON_MAX_RECORD - UG_USBMON_HEADER_SIZE - desc_len;
	data_cap = data_len < room ? data_len : room;
	err = reserve(m, UG_USBMON_HEADER_SIZE + desc_len + data_cap);
	if (err)
		return err;

	r = m->buf;
	memset(r, 0, UG_USBMON_HEADER_SIZE + desc_len);
	put_h64(r + OFF_ID, ug_usbmon_urb_id(m, x->serial));
	r[OFF_TYPE] = is_submit ? 'S' : 'C';
	r[OFF_XFER] = x->xfer_type;
	r[OFF_EPNUM] = x->endpoint;
	r[OFF_DEVNUM] = m->dev;
	put_h16(r + OFF_BUSNUM, m->bus);
	r[OFF_FLAG_SETUP] = (is_submit && x->has_setup) ? 0 : '-';
	r[OFF_FLAG_DATA] = flag_data;
	put_h64(r + OFF_TS_SEC, ev->ts_ns / 1000000000u);
	put_h32(r + OFF_TS_USEC, (uint32_t)((ev->ts_ns % 1000000000u) / 1000u));
	put_h32(r + OFF_LENGTH, urb_len);
	/* The kernel counts the iso descriptors into len_cap. */
	put_h32(r + OFF_LEN_CAP, data_cap + desc_len);
	if (is_submit && x->has_setup)
		memcpy(r + OFF_SETUP, x->setup, 8);
	if (x->xfer_type == UG_XFER_INTERRUPT || iso)
		put_h32(r + OFF_INTERVAL, x->interval);
	put_h32(r + OFF_XFER_FLAGS, (in ? URB_DIR_IN : 0) | (iso ? URB_ISO_ASAP : 0));
	put_h32(r + OFF_NDESC, ndesc);

	if (iso) {
		/* One usbredir iso packet is one frame: an URB of one
		 * descriptor. The kernel marks frames -EXDEV until they are
		 * done; the frame carries the packet's own status. */
		uint8_t *d = r + UG_USBMON_HEADER_SIZE;
		int32_t fstatus = is_submit ? -EXDEV : status;
		int32_t errors = (!is_submit && status != 0) ? 1 : 0;
		int32_t numdesc = 1;

		if (!is_submit && ev->kind == UG_TRANSFER_COMPLETE && ev->status != usb_redir_cancelled)
			status = 0; /* the URB succeeds; the frame says how it went */
		memcpy(r + OFF_SETUP, &errors, 4);
		memcpy(r + OFF_SETUP + 4, &numdesc, 4);
		memcpy(d, &fstatus, 4);
		put_h32(d + 4, 0);
		put_h32(d + 8, urb_len);
	}
	put_h32(r + OFF_STATUS, (uint32_t)status);

	if (data_cap)
		memcpy(r + UG_USBMON_HEADER_SIZE + desc_len, data, data_cap);

	ret_rec->bytes = r;
	ret_rec->caplen = UG_USBMON_HEADER_SIZE + desc_len + data_cap;
	if (__builtin_add_overflow(UG_USBMON_HEADER_SIZE + desc_len, data_len, &ret_rec->origlen))
		ret_rec->origlen = UINT32_MAX;
	ret_rec->ts_ns = ev->ts_ns;
	return 1;
}
