#include "utf8_stream.h"

#include <assert.h>
#include <string.h>

int baton_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    assert(n >= 1);
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    /* Table 3-7: the length of the sequence and the range of its second byte. */
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0; /* no overlongs */
        if (b0 == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90; /* no overlongs */
        if (b0 == 0xF4) hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return -1; /* a continuation byte, C0, C1 or F5..FF */
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t b = s[i];
        if (b < lo || b > hi) return -i;
        c = (c << 6) | (b & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = c;
    return len;
}

bool baton_utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = baton_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

int baton_utf8_put(uint32_t cp, uint8_t *out) {
    assert(cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF));
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static const uint8_t replacement[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

size_t baton_utf8_stream_feed(baton_utf8_stream *s, const uint8_t *in, size_t n, uint8_t *out) {
    size_t w = 0;
    /* First finish the held character, one input byte at a time (it needs at most 3). */
    while (s->n_held > 0 && n > 0) {
        s->held[s->n_held++] = *in++;
        n--;
        uint32_t cp;
        int r = baton_utf8_next(s->held, (size_t)s->n_held, &cp);
        if (r == 0) continue;
        if (r > 0) {
            memcpy(out + w, s->held, (size_t)r);
            w += (size_t)r;
            s->n_held = 0;
        } else {
            /* The held bytes are a bad subpart; the bytes after it start afresh. */
            memcpy(out + w, replacement, 3);
            w += 3;
            int rest = s->n_held + r;
            uint8_t again[4];
            memcpy(again, s->held - r, (size_t)rest);
            s->n_held = 0;
            w += baton_utf8_stream_feed(s, again, (size_t)rest, out + w);
        }
    }
    size_t i = 0;
    while (i < n) {
        if (in[i] < 0x80) {
            out[w++] = in[i++];
            continue;
        }
        uint32_t cp;
        int r = baton_utf8_next(in + i, n - i, &cp);
        if (r > 0) {
            memcpy(out + w, in + i, (size_t)r);
            w += (size_t)r;
            i += (size_t)r;
        } else if (r < 0) {
            memcpy(out + w, replacement, 3);
            w += 3;
            i += (size_t)-r;
        } else {
            s->n_held = (int)(n - i);
            memcpy(s->held, in + i, (size_t)s->n_held);
            i = n;
        }
    }
    return w;
}

size_t baton_utf8_stream_flush(baton_utf8_stream *s, uint8_t *out) {
    if (s->n_held == 0) return 0;
    s->n_held = 0;
    memcpy(out, replacement, 3);
    return 3;
}
