/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* buf.c: the bounded growable byte buffer. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common.h"

void ug_buf_init(struct ug_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void ug_buf_release(struct ug_buf *b)
{
	size_t max = b->max;

	free(b->data);
	ug_buf_init(b, max);
}

void ug_buf_reset(struct ug_buf *b)
{
	b->start = 0;
	b->len = 0;
}

int ug_buf_reserve(struct ug_buf *b, size_t n)
{
	size_t need, alloc;
	uint8_t *p;

	if (__builtin_add_overflow(b->len, n, &need) || need > b->max)
		return UG_E_TOOBIG;
	if (b->start + need <= b->alloc)
		return 0;
	/* Slide the held bytes to the front before growing. */
	if (b->start > 0) {
		memmove(b->data, b->data + b->start, b->len);
		b->start = 0;
		if (need <= b->alloc)
			return 0;
	}
	alloc = b->alloc ? b->alloc : 256;
	while (alloc < need)
		alloc = alloc > b->max / 2 ? b->max : alloc * 2;
	p = realloc(b->data, alloc);
	if (!p)
		return UG_E_NOMEM;
	b->data = p;
	b->alloc = alloc;
	return 0;
}

int ug_buf_append(struct ug_buf *b, const void *p, size_t n)
{
	int r;

	if (n == 0)
		return 0;
	r = ug_buf_reserve(b, n);
	if (r < 0)
		return r;
	memcpy(b->data + b->start + b->len, p, n);
	b->len += n;
	return 0;
}

void ug_buf_consume(struct ug_buf *b, size_t n)
{
	if (n >= b->len) {
		b->start = 0;
		b->len = 0;
		return;
	}
	b->start += n;
	b->len -= n;
}

uint8_t *ug_buf_tail(struct ug_buf *b, size_t n)
{
	if (ug_buf_reserve(b, n) < 0)
		return NULL;
	return b->data + b->start + b->len;
}

void ug_buf_commit(struct ug_buf *b, size_t n)
{
	b->len += n;
}
