/*
 * bench_msg.c - what mstore-bench delivers: Maildir file names and
 * RFC 5322 messages of an exact size, different every time (fresh
 * Message-ID, sender, subject and text), so no layer can deduplicate or
 * compress them away. Pure functions of a per-thread random state; no
 * I/O but getrandom for the seed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "bench.h"

#define LINE_MAX_LEN	76	/* text line length, newline excluded */

static const char *const words[] = {
	"the", "mail", "store", "server", "message", "delivery", "queue",
	"report", "meeting", "agenda", "budget", "review", "please", "find",
	"attached", "regards", "thanks", "schedule", "project", "update",
	"customer", "invoice", "order", "shipping", "tomorrow", "morning",
	"afternoon", "question", "answer", "about", "with", "from", "into",
	"for", "and", "or", "not", "we", "you", "they", "will", "can",
	"should", "would", "next", "week", "team", "office", "minutes",
	"draft", "final", "version", "change", "request", "approved",
	"pending", "status", "network", "backup", "disk", "latency",
	"throughput", "a", "an", "is", "are", "was", "to", "of", "in", "on",
	"at", "by", "this", "that", "these", "those", "it", "its",
};
#define NWORDS (sizeof words / sizeof words[0])

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t
bench_rng_next(struct bench_rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

int
bench_rng_seed(struct bench_rng *r)
{
	ssize_t n = getrandom(r->s, sizeof r->s, 0);

	if (n != (ssize_t)sizeof r->s)
		return n < 0 ? -errno : -EIO;
	if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
		r->s[0] = 1;	/* the one state xoshiro cannot leave */
	return 0;
}

size_t
bench_msg_name(const struct bench_opts *o, unsigned writer, uint64_t seq,
    char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%lld.%d_%u_%llu.%s", (long long)time(NULL),
	    (int)o->pid, writer, (unsigned long long)seq, o->host);

	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

static const char *
word(struct bench_rng *r)
{
	return words[bench_rng_next(r) % NWORDS];
}

/* Append up to |cap| bytes of |s| at |p|; returns bytes written. */
static size_t
put(uint8_t *p, size_t cap, const char *s, size_t n)
{
	if (n > cap)
		n = cap;
	memcpy(p, s, n);
	return n;
}

static size_t
headers(struct bench_rng *r, const struct bench_opts *o, unsigned mbox,
    const char *name, char *h, size_t cap)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	unsigned sender = (unsigned)(bench_rng_next(r) % 100000);
	int n;

	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	n = snprintf(h, cap,
	    "Return-Path: <sender%u@example.net>\n"
	    "Delivered-To: user%u@example.com\n"
	    "Received: from mx%u.example.net (mx%u.example.net "
	    "[192.0.2.%u])\n"
	    "\tby %s (mstore-bench) with ESMTPS id %016llX\n"
	    "\tfor <user%u@example.com>; %s\n"
	    "Message-ID: <%s@example.net>\n"
	    "Date: %s\n"
	    "From: \"Sender %u\" <sender%u@example.net>\n"
	    "To: <user%u@example.com>\n"
	    "Subject: %s %s %s %s\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=us-ascii\n"
	    "Content-Transfer-Encoding: 7bit\n"
	    "\n",
	    sender, mbox, sender % 8, sender % 8, 1 + sender % 254, o->host,
	    (unsigned long long)bench_rng_next(r), mbox, date, name, date,
	    sender, sender, mbox, word(r), word(r), word(r), word(r));
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* One text line of exactly |len| bytes, the last a newline: whole words,
 * then random letters for the columns no word fits into. */
static void
text_line(struct bench_rng *r, uint8_t *p, size_t len)
{
	size_t used = 0, room, wl, sep;
	const char *w;

	while (used + 1 < len) {
		room = len - 1 - used;
		w = word(r);
		wl = strlen(w);
		sep = used > 0;
		if (sep + wl <= room) {
			if (sep)
				p[used++] = ' ';
			memcpy(p + used, w, wl);
			used += wl;
			continue;
		}
		if (sep && room >= 2) {
			p[used++] = ' ';
			room--;
		}
		while (room-- > 0)
			p[used++] = (uint8_t)('a' + bench_rng_next(r) % 26);
	}
	p[len - 1] = '\n';
}

struct bench_text *
bench_text_new(void)
{
	struct bench_text *t = calloc(1, sizeof *t);
	struct bench_rng r;
	uint32_t i, len, used = 0;

	if (t == NULL || bench_rng_seed(&r) < 0 ||
	    (t->p = malloc(BENCH_TEXT_LINES * (LINE_MAX_LEN + 1))) == NULL) {
		free(t);
		return NULL;
	}
	for (i = 0; i < BENCH_TEXT_LINES; i++) {
		len = 41 + (uint32_t)(bench_rng_next(&r) %
		    (LINE_MAX_LEN - 40 + 1));
		text_line(&r, t->p + used, len);
		t->off[i] = used;
		used += len;
	}
	t->off[i] = used;
	return t;
}

void
bench_text_free(struct bench_text *t)
{
	if (t == NULL)
		return;
	free(t->p);
	free(t);
}

void
bench_msg_body(struct bench_rng *r, const struct bench_text *t,
    const struct bench_opts *o, unsigned mbox, const char *name,
    uint8_t *buf, size_t size)
{
	char h[2048];
	size_t off = put(buf, size, h, headers(r, o, mbox, name, h, sizeof h));
	size_t left, len, i;

	while (off < size) {
		left = size - off;
		i = bench_rng_next(r) % BENCH_TEXT_LINES;
		len = t->off[i + 1] - t->off[i];
		if (left == len || left >= len + 20) {
			memcpy(buf + off, t->p + t->off[i], len);
			off += len;
			continue;
		}
		/* The tail: one or two made-up lines that fit exactly. */
		len = left <= LINE_MAX_LEN + 1 ? left : left / 2;
		text_line(r, buf + off, len);
		off += len;
	}
}

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void
bench_rng_derive(struct bench_rng *r, uint64_t seed, uint64_t stream,
    uint64_t n)
{
	uint64_t x = seed ^ splitmix64(&stream) ^ (n * 0xd1b54a32d192ed03ull);
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
		r->s[0] = 1;
}

/*
 * Sizes of mail as a mailbox holds it: mostly short text, a tail of
 * attachments. Within a bucket every power-of-two octave is equally
 * likely and sizes are uniform inside it, close to log-uniform without
 * libm. Mean about 39 KiB, median about 6 KiB.
 */
static const struct {
	unsigned percent;
	uint32_t lo_kib;
	unsigned octaves;		/* hi = lo << octaves */
} size_buckets[] = {
	{ 40, 2, 1 },			/* 2-4 KiB */
	{ 35, 4, 2 },			/* 4-16 KiB */
	{ 15, 16, 2 },			/* 16-64 KiB */
	{ 8, 64, 2 },			/* 64-256 KiB */
	{ 2, 256, 3 },			/* 256 KiB-2 MiB */
};

uint64_t
bench_msg_size(const struct bench_opts *o, struct bench_rng *r)
{
	unsigned p = (unsigned)(bench_rng_next(r) % 100), i = 0;
	uint64_t lo;

	if (!o->size_dist)
		return o->size;
	while (p >= size_buckets[i].percent) {
		p -= size_buckets[i].percent;
		i++;
	}
	lo = (uint64_t)size_buckets[i].lo_kib << 10;
	lo <<= bench_rng_next(r) % size_buckets[i].octaves;
	return lo + bench_rng_next(r) % lo;	/* [lo, 2 lo) */
}
