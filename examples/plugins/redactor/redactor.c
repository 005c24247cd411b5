/* redactor - an on_message interceptor that masks profanity and personal data.
 *
 * config (given to on_load):
 *   "words":           ["idiot", ...]  masked as one '*' per character, whole words/phrases,
 *                                      ASCII case-insensitive (max 256 words, 8 KiB in all)
 *   "pii_replacement": "[redacted]"    optional: e-mail addresses and long numbers become this
 *                                      text; without it they are masked '*' per character
 *                                      like the words (the body then never grows)
 * Personal data: e-mail addresses (local@domain.tld) and numbers of 9 or more digits, where
 * groups of 3+ digits may be joined by one space or '-' (555-123-4567, 4111 1111 1111 1111;
 * see mark_numbers).
 *
 * on_message: no output (allow, no JSON built) when nothing matched; otherwise
 * {"action":"replace","body":"..."} (meta untouched).
 */
#include "nexus_guest.h"

#define MAX_WORDS 256
#define WORDS_BYTES 8192
#define MAX_REPLACEMENT 64

/* State kept between calls (static memory: the arena is reset at every call). */
static u8 words[WORDS_BYTES]; /* the words, ASCII-lowercased, back to back */
static u32 word_off[MAX_WORDS], word_len[MAX_WORDS];
static u32 n_words;
/* Single words are found by hashing each word of the body: slot -> word index + 1 (0 = empty).
 * Phrases (entries with a space or other non-word byte) are chained by their first byte. */
#define SLOTS 1024 /* a power of two, >= 2 * MAX_WORDS */
static u32 word_hash[MAX_WORDS];
static u16 slots[SLOTS];
static i32 first_phrase[256]; /* first byte -> first phrase starting with it, or -1 */
static i32 next_phrase[MAX_WORDS];
static u8 replacement[MAX_REPLACEMENT];
static u32 replacement_len; /* 0 = mask with '*' */

/* Bytes that make up a word: ASCII letters and digits, '_', and any non-ASCII byte (so a
 * word is never matched inside a longer word, accented letters included). */
static int is_word(u8 c) { return nx_is_alnum(c) || c == '_' || c >= 0x80; }

static void reset_config(void) {
    n_words = 0;
    replacement_len = 0;
    nx_zero(slots, sizeof slots);
    for (int i = 0; i < 256; i++) first_phrase[i] = -1;
}

/* FNV-1a of the ASCII-lowercased bytes */
static u32 hash_lower(const u8 *p, u32 n) {
    u32 h = 2166136261u;
    for (u32 i = 0; i < n; i++) h = (h ^ nx_lower(p[i])) * 16777619u;
    return h;
}

static const char *load_words(nx_span list) {
    nx_iter it;
    nx_span v, w;
    u32 used = 0;
    if (!nx_iter_begin(&it, list, '[')) return "redactor: config.words must be an array of strings";
    while (nx_iter_next(&it, 0, &v)) {
        if (!nx_str(v, &w)) return "redactor: config.words must be an array of strings";
        while (w.n && nx_is_space(w.p[0])) w.p++, w.n--;
        while (w.n && nx_is_space(w.p[w.n - 1])) w.n--;
        if (!w.n) continue;
        if (n_words == MAX_WORDS || w.n > WORDS_BYTES - used)
            return "redactor: config.words is too large (at most 256 words, 8 KiB in all)";
        for (u32 i = 0; i < w.n; i++) words[used + i] = nx_lower(w.p[i]);
        word_off[n_words] = used;
        word_len[n_words] = w.n;
        used += w.n;
        n_words++;
    }
    if (it.bad) return "redactor: config.words must be an array of strings";
    for (i32 i = (i32)n_words - 1; i >= 0; i--) {
        const u8 *w = words + word_off[i];
        u32 wl = word_len[i], plain = 1;
        for (u32 k = 0; k < wl; k++) plain &= (u32)is_word(w[k]);
        if (plain) { /* a word: into the hash table */
            u32 h = word_hash[i] = hash_lower(w, wl), at = h & (SLOTS - 1);
            while (slots[at]) at = (at + 1) & (SLOTS - 1);
            slots[at] = (u16)(i + 1);
        } else { /* a phrase: chained by first byte */
            next_phrase[i] = first_phrase[w[0]];
            first_phrase[w[0]] = i;
        }
    }
    return 0;
}

NX_EXPORT("on_load") i64 on_load(const u8 *in, u32 len) {
    nx_begin();
    nx_span doc = nx_doc(in, len), config, v, s;
    reset_config();
    if (!nx_get(doc, "config", &config) || nx_is_null(config)) return 0;
    if (config.p[0] != '{') return nx_error("redactor: config must be an object");
    if (nx_get(config, "words", &v) && !nx_is_null(v)) {
        const char *err = load_words(v);
        if (err) {
            reset_config();
            return nx_error(err);
        }
    }
    if (nx_get(config, "pii_replacement", &v) && !nx_is_null(v)) {
        if (!nx_str(v, &s) || s.n > MAX_REPLACEMENT) {
            reset_config();
            return nx_error("redactor: config.pii_replacement must be a string of at most "
                            "64 bytes");
        }
        nx_copy(replacement, s.p, s.n);
        replacement_len = s.n;
    }
    return 0;
}

/* ---- detection: mark[i] = 1 (word: stars) or 2 (personal data) ------------------------- */

static int is_local(u8 c) {
    return nx_is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static int is_domain(u8 c) { return nx_is_alnum(c) || c == '.' || c == '-'; }

/* local@domain.tld with an alphabetic TLD of 2+ letters. Returns the number of bytes marked. */
static u32 mark_emails(const u8 *d, u32 n, u8 *mark) {
    u32 marked = 0;
    for (u32 at = 0; at < n; at++) {
        if (d[at] != '@' || mark[at]) continue;
        u32 j = at;
        while (j > 0 && is_local(d[j - 1])) j--;
        while (j < at && d[j] == '.') j++;
        if (j == at) continue;
        u32 k = at + 1;
        while (k < n && is_domain(d[k])) k++;
        while (k > at + 1 && (d[k - 1] == '.' || d[k - 1] == '-')) k--;
        /* the TLD: letters after the last dot, at least 2, with a label before the dot */
        u32 dot = k;
        while (dot > at + 1 && d[dot - 1] != '.') dot--;
        if (dot <= at + 2 || k - dot < 2) continue;
        int alpha = 1;
        for (u32 t = dot; t < k; t++) alpha &= nx_is_alpha(d[t]);
        if (!alpha) continue;
        for (u32 t = j; t < k; t++) mark[t] = 2;
        marked += k - j;
        at = k - 1;
    }
    return marked;
}

static u32 digits_at(const u8 *d, u32 n, u32 i) {
    u32 s = i;
    while (i < n && nx_is_digit(d[i])) i++;
    return i - s;
}

/* 9+ digits in a row, or groups of 3+ digits joined by one separator, the same one throughout
 * (' ' or '-'), 9 to 19 digits in all: 555-123-4567, 4111 1111 1111 1111. The 19-digit cap
 * keeps a number from swallowing the next one ("4111 1111 1111 1111 2024-01-15"). */
static u32 mark_numbers(const u8 *d, u32 n, u8 *mark) {
    u32 marked = 0, i = 0;
    while (i < n) {
        if (!nx_is_digit(d[i]) || mark[i]) {
            i++;
            continue;
        }
        u32 g = digits_at(d, n, i), total = g, end = i + g;
        u8 sep = 0;
        if (g >= 3) {
            while (end + 1 < n && (d[end] == ' ' || d[end] == '-') && nx_is_digit(d[end + 1])) {
                if (sep && d[end] != sep) break;
                u32 g2 = digits_at(d, n, end + 1);
                if (g2 < 3 || total + g2 > 19) break;
                sep = d[end];
                total += g2;
                end += 1 + g2;
            }
        }
        if (total >= 9) {
            for (u32 t = i; t < end; t++) mark[t] = 2;
            marked += end - i;
        }
        i = end;
    }
    return marked;
}

/* entry w matches the body at i (case-insensitively) and ends at a word boundary */
static int matches(const u8 *d, u32 n, u32 i, i32 w) {
    u32 wl = word_len[w];
    const u8 *ws = words + word_off[w];
    if (wl > n - i || (i + wl < n && is_word(d[i + wl]))) return 0;
    for (u32 k = 0; k < wl; k++)
        if (nx_lower(d[i + k]) != ws[k]) return 0;
    return 1;
}

static u32 mark_span(u8 *mark, u32 from, u32 to) {
    u32 marked = 0;
    for (u32 t = from; t < to; t++)
        if (!mark[t]) mark[t] = 1, marked++;
    return marked;
}

/* At each word of the body: one hash lookup for the single words, then the phrases that start
 * with its first byte. Linear in the body, whatever the word list. */
static u32 mark_words(const u8 *d, u32 n, u8 *mark) {
    u32 marked = 0, i = 0;
    if (!n_words) return 0;
    while (i < n) {
        if (!is_word(d[i])) {
            i++;
            continue;
        }
        u32 j = i + 1;
        while (j < n && is_word(d[j])) j++;
        u32 h = hash_lower(d + i, j - i);
        for (u32 at = h & (SLOTS - 1); slots[at]; at = (at + 1) & (SLOTS - 1)) {
            i32 w = slots[at] - 1;
            if (word_hash[w] == h && word_len[w] == j - i && matches(d, n, i, w)) {
                marked += mark_span(mark, i, j);
                break;
            }
        }
        for (i32 w = first_phrase[nx_lower(d[i])]; w >= 0; w = next_phrase[w])
            if (matches(d, n, i, w)) marked += mark_span(mark, i, i + word_len[w]);
        i = j;
    }
    return marked;
}

/* ---- output ----------------------------------------------------------------------------- */

/* one '*' per character: count the bytes that start a UTF-8 sequence */
static u32 put_stars(u8 *o, const u8 *d, u32 from, u32 to) {
    u32 k = 0;
    for (u32 t = from; t < to; t++)
        if ((d[t] & 0xC0) != 0x80) o[k++] = '*';
    return k;
}

NX_EXPORT("on_message") i64 on_message(const u8 *in, u32 len) {
    nx_begin();
    nx_span doc = nx_doc(in, len), body, text;
    if (!nx_get(doc, "body", &body) || !nx_str(body, &text) || !text.n) return 0;
    const u8 *d = text.p;
    u32 n = text.n;

    u8 *mark = (u8 *)nx_alloc(n);
    if (!mark) return 0; /* out of memory: let the message through unchanged */
    nx_zero(mark, n);
    u32 marked = mark_emails(d, n, mark);
    marked += mark_numbers(d, n, mark);
    marked += mark_words(d, n, mark);
    if (!marked) return 0; /* the fast path: nothing to hide, no JSON built */

    /* the new body (stars never take more bytes than what they hide) */
    u64 cap = (u64)n + (replacement_len ? (u64)(n / 2 + 1) * replacement_len : 0);
    u8 *o = (u8 *)nx_alloc(cap > 0xFFFFFFFFull ? 0xFFFFFFFFu : (u32)cap);
    if (!o) return 0;
    u32 on = 0, i = 0;
    while (i < n) {
        if (!mark[i]) {
            o[on++] = d[i++];
            continue;
        }
        u8 kind = mark[i];
        u32 j = i;
        while (j < n && mark[j] == kind) j++;
        if (kind == 2 && replacement_len) {
            nx_copy(o + on, replacement, replacement_len);
            on += replacement_len;
        } else {
            on += put_stars(o + on, d, i, j);
        }
        i = j;
    }

    nx_buf b;
    nx_buf_init(&b, on + on / 8 + 40);
    nx_puts(&b, "{\"action\":\"replace\",\"body\":");
    nx_put_jstr(&b, o, on);
    nx_putc(&b, '}');
    return b.oom ? 0 : nx_out(b.p, b.n);
}
