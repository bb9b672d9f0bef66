/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* buf.h: a growable byte buffer with a hard maximum, for every place that assembles peer data. */
#ifndef UG_BUF_H
#define UG_BUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * Invariants: data[start .. start+len) holds the bytes; start + len <= alloc;
 * len <= max, always. The buffer owns data. Every growth is checked against
 * max before anything is allocated, so a peer that announces a huge length
 * gets UG_E_TOOBIG, never an allocation of that size.
 *
 * Vocabulary as in git's strbuf: ug_buf_init() sets up an empty buffer (no
 * allocation), ug_buf_reset() empties it and keeps the memory,
 * ug_buf_release() frees the memory and leaves an empty, reusable buffer.
 */
struct ug_buf {
	uint8_t *data;
	size_t start;   /* bytes consumed at the front, not yet moved out */
	size_t len;     /* bytes held, from data + start */
	size_t alloc;   /* bytes allocated at data */
	size_t max;     /* hard limit on len */
};

void ug_buf_init(struct ug_buf *b, size_t max);
void ug_buf_release(struct ug_buf *b);
void ug_buf_reset(struct ug_buf *b);

/* The held bytes; valid until the next call that changes b. */
static inline const uint8_t *ug_buf_peek(const struct ug_buf *b)
{
	return b->data ? b->data + b->start : NULL;
}

/* Makes room for n more bytes: 0, UG_E_TOOBIG (len + n > max), UG_E_NOMEM. */
int ug_buf_reserve(struct ug_buf *b, size_t n);
/* Appends n bytes: 0, UG_E_TOOBIG, UG_E_NOMEM; on error b is unchanged. */
int ug_buf_append(struct ug_buf *b, const void *p, size_t n);
/* Drops n bytes (n <= len) from the front. */
void ug_buf_consume(struct ug_buf *b, size_t n);
/* Space for n bytes at the end, to fill and then commit with ug_buf_commit(). */
uint8_t *ug_buf_tail(struct ug_buf *b, size_t n);
void ug_buf_commit(struct ug_buf *b, size_t n);

#endif /* UG_BUF_H */
