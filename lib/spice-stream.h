/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spice-stream.h: internals of the passive SPICE connection decoder that the unit tests reach. */
#ifndef UG_SPICE_STREAM_H
#define UG_SPICE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "usbgate.h"

/* Data headers in a row that must parse, chain and look plausible before a
 * resync point is believed (fewer only when the side has ended). */
#define UG_SPICE_STREAM_RESYNC_CHAIN 3u

/*
 * Judges whether a resync point lies at p[0]: headers of the given kind
 * (mini: 1, full: 0) must chain through p for chain headers, each with a
 * message type that channel_type's from_server direction may send and a
 * size within max_message (full headers also need sub_list 0 and serials
 * counting up by one). Returns 1 (a resync point), 0 (not one), or -1 (the
 * bytes end first: wait for more, or decide with at_end).
 */
int ug_spice_stream_resync_check(const uint8_t *p, size_t len, int mini, unsigned channel_type,
                                 int from_server, uint32_t max_message, unsigned chain,
                                 int at_end);

/* 1 if a channel_type channel's from_server side may send message type. */
int ug_spice_stream_type_plausible(unsigned channel_type, int from_server, unsigned type,
                                   uint32_t size);

#endif /* UG_SPICE_STREAM_H */
