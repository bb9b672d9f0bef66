/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* replay.h: internals shared by the emulated device, the replayed guest and their report. */
#ifndef UG_REPLAY_H
#define UG_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "usbgate.h"

/* Fields a rule can switch off. */
enum ug_replay_field {
	UG_REPLAY_FIELD_STATUS = 1,
	UG_REPLAY_FIELD_LENGTH = 2,
	UG_REPLAY_FIELD_DATA = 4,
};

/* 1 if rules (may be NULL) say field is not compared. */
int ug_replay_rules_ignores(const ug_replay_rules *rules, enum ug_replay_field field);
/* 1 if BOT tag handling is on (the default, also for NULL rules). */
int ug_replay_rules_bot_tags(const ug_replay_rules *rules);

/*
 * Compares data of endpoint ep under the masks. Returns -1 when equal, else
 * the first differing byte offset (the shorter length when only the lengths
 * differ). extra_lo..extra_hi (inclusive) is masked too when extra_hi >=
 * extra_lo (the caller's own rule, e.g. a BOT tag).
 */
long ug_replay_data_diff(const ug_replay_rules *rules, uint8_t ep, const uint8_t *a,
			 size_t alen, const uint8_t *b, size_t blen, long extra_lo, long extra_hi);
/* 1 if two setup packets are equal under the setup masks. */
int ug_replay_setup_equal(const ug_replay_rules *rules, const uint8_t a[8], const uint8_t b[8]);

/* The setup packet of a control_packet header, as on the USB wire. */
void ug_replay_setup_bytes(const struct usb_redir_control_packet_header *c, uint8_t ret[8]);
/* Describes a request for messages: type, endpoint, setup, length, id. */
void ug_replay_describe(const struct ug_usbredir_packet *p, char *buf, size_t size);
/* Status and length field of an answer packet (-1 status when it has none). */
int ug_replay_status(const struct ug_usbredir_packet *p);
uint32_t ug_replay_length(const struct ug_usbredir_packet *p);
/* The endpoint a packet is about (0 for packets without one). */
uint8_t ug_replay_endpoint(const struct ug_usbredir_packet *p);

/* The answer type of a guest request type, or -1 for packets without one. */
int ug_replay_answer_type(uint32_t type);
/* Pairs each guest request of rec with the host's answer (same id, the
 * answer type, the same endpoint): reply_of[i] gets the answer's index for
 * request i, else -1. reply_of has ug_recording_count(rec) slots. */
void ug_replay_pair(const ug_recording *rec, int64_t *reply_of);

/* Adds a divergence (copies everything); counted even when not kept. The
 * data kept starts a little before diff_at (-1: from the start). */
void ug_replay_report_add(ug_replay_report *r, uint64_t record, uint64_t seq,
			  const char *transfer, const char *reason, long diff_at, int exp_status,
			  uint32_t exp_length, const uint8_t *exp_data, uint32_t exp_data_len,
			  int got_status, uint32_t got_length, const uint8_t *got_data,
			  uint32_t got_data_len);
/* Counters the endpoints update. */
struct ug_replay_summary *ug_replay_report_counters(ug_replay_report *r);

#endif /* UG_REPLAY_H */
