/* Strict UTF-8 (RFC 3629, Unicode table 3-7): decoding one character, and a stream that turns
 * bytes arriving in arbitrary pieces into whole, valid UTF-8.
 *
 * Invalid input is replaced by U+FFFD, one per "maximal subpart" (Unicode 15, section 3.9, the
 * practice WHATWG and most decoders follow): a lead byte and the continuation bytes that could
 * still have led to a valid character count as one subpart; any other bad byte is one. */
#ifndef BATON_UTF8_STREAM_H
#define BATON_UTF8_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Looks at the character that starts s[0..n), n >= 1. Returns:
 *   k > 0  a valid character of k bytes (1..4), its code point in *cp;
 *   0      s[0..n) is a proper prefix of a valid character (more bytes could complete it);
 *   -k < 0 invalid: the maximal subpart is the first k bytes (1..3); *cp is not set. */
int baton_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);

/* True when s[0..n) is whole, valid UTF-8 (no invalid or unfinished character). */
bool baton_utf8_valid(const char *s, size_t n);

/* Writes the UTF-8 of cp (<= 0x10FFFF, not a surrogate) to out (room for 4); returns its length. */
int baton_utf8_put(uint32_t cp, uint8_t *out);

/* Holds the bytes of an unfinished character between calls. Zero-initialize to start. */
typedef struct {
    uint8_t held[4];
    int n_held; /* 0..3 */
} baton_utf8_stream;

/* Most bytes feed writes for n input bytes: every subpart, held ones included, may become a
 * 3-byte U+FFFD. */
#define BATON_UTF8_STREAM_OUT_MAX(n) (3 * ((size_t)(n) + 3))

/* Appends in[0..n) to the stream and writes to out every character now complete, valid ones as
 * they are and invalid subparts as U+FFFD; returns the bytes written. out needs room for
 * BATON_UTF8_STREAM_OUT_MAX(n). */
size_t baton_utf8_stream_feed(baton_utf8_stream *s, const uint8_t *in, size_t n, uint8_t *out);

/* Ends the input: an unfinished character becomes one U+FFFD in out (room for 3). Returns the
 * bytes written (0 or 3); the stream is empty afterwards. */
size_t baton_utf8_stream_flush(baton_utf8_stream *s, uint8_t *out);

#endif
