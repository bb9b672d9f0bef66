/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* usbmon-session.h: a realistic multi-device usbredir session, written through the whole output path. */
#ifndef UG_TEST_USBMON_SESSION_H
#define UG_TEST_USBMON_SESSION_H

#include <stdio.h>

/* What the session produced, for the checks that read the files back. */
struct session_stats {
	unsigned packets;          /* usbredir packets, both directions */
	unsigned data_requests;    /* guest data packets answered by the host */
	unsigned stream_packets;   /* host-pushed data packets */
	unsigned synthesized;      /* set/get configuration and alt setting */
	unsigned submits;          /* usbmon 'S' records */
	unsigned completions;      /* usbmon 'C' records */
	unsigned capped;           /* usbmon records cut to 262144 bytes */
	unsigned raw_records;      /* records in the raw file */
	unsigned notices;          /* tracker notices (0 for a clean session) */
};

/*
 * Four devices, each in its own usbredir session encoded by
 * libusbredirparser in both roles (so the raw bytes are what real peers
 * send): a USB flash drive (enumeration, SET_CONFIGURATION, GET_MAX_LUN,
 * INQUIRY, TEST UNIT READY, READ CAPACITY(10), READ(10) of 4 KiB and of
 * 512 KiB, a cancelled read), a keyboard (enumeration, HID report
 * descriptor, SET_IDLE, SET_INTERFACE, interrupt receiving with key
 * reports, SET_REPORT for the LEDs, disconnect), a vendor iso device
 * (SET_INTERFACE to alt 1, an iso IN stream, iso OUT packets), and the
 * flash drive again behind a usb-host without 64-bit ids or 32-bit bulk
 * lengths (enumeration, SET_CONFIGURATION, INQUIRY).
 * usbmon_path and raw_path may be NULL; text and json may be NULL.
 * Returns 0, or -1 with a message on stderr.
 */
int usbmon_session_write(const char *usbmon_path, const char *raw_path, FILE *text,
                         FILE *json, struct session_stats *ret_stats);

#endif /* UG_TEST_USBMON_SESSION_H */
