/* mention-guard - an on_message interceptor against mention spam.
 *
 * config (given to on_load), all optional:
 *   "max_mentions":         5   a message with more @mentions than this is denied (forbidden)
 *   "max_mention_messages": 3   a sender may post at most this many messages with mentions...
 *   "window_messages":      20  ...within any window of this many consecutive messages that
 *                               this plugin instance sees (all senders, all rooms it filters)
 * The rate window counts messages, not seconds: on_message carries no clock. The counts live
 * in this instance's memory (a table of 256 senders, least recent evicted first) and start
 * over when the instance is re-created.
 *
 * A mention is '@' followed by a name character (letter, digit, '_', '-', '.', non-ASCII),
 * not preceded by one (so "ana@example.com" is not a mention). Every occurrence counts.
 */
#include "nexus_guest.h"

#define SENDERS 256
#define MAX_STAMPS 16

static u32 max_mentions = 5, max_mention_messages = 3, window_messages = 20;

/* One sender's recent messages with mentions, as message numbers (a ring, oldest at head). */
typedef struct {
    u64 key; /* FNV-1a of tenant "\0" sender */
    u64 stamps[MAX_STAMPS];
    u32 head, count;
} sender_t;

static sender_t senders[SENDERS];
static u64 seen; /* messages seen by this instance; the current one's number */

static u64 fnv(u64 h, const u8 *p, u32 n) {
    for (u32 i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static const char *read_limit(nx_span config, const char *name, u32 lo, u32 hi, u32 *out) {
    nx_span v;
    i64 x;
    if (!nx_get(config, name, &v) || nx_is_null(v)) return 0;
    if (!nx_int(v, &x) || x < lo || x > hi) return name;
    *out = (u32)x;
    return 0;
}

NX_EXPORT("on_load") i64 on_load(const u8 *in, u32 len) {
    nx_begin();
    nx_span doc = nx_doc(in, len), config, v;
    u32 mm = 5, mmm = 3, wm = 20;
    if (nx_get(doc, "config", &config) && !nx_is_null(config)) {
        if (config.p[0] != '{') return nx_error("mention-guard: config must be an object");
        if (nx_get(config, "window_s", &v))
            return nx_error("mention-guard: window_s is not supported (on_message carries no "
                            "clock); use window_messages, a window of N consecutive messages");
        if (read_limit(config, "max_mentions", 0, 1000000, &mm))
            return nx_error("mention-guard: config.max_mentions must be an integer 0..1000000");
        if (read_limit(config, "max_mention_messages", 1, MAX_STAMPS, &mmm))
            return nx_error("mention-guard: config.max_mention_messages must be an integer 1..16");
        if (read_limit(config, "window_messages", 1, 1000000, &wm))
            return nx_error("mention-guard: config.window_messages must be an integer 1..1000000");
    }
    max_mentions = mm;
    max_mention_messages = mmm;
    window_messages = wm;
    nx_zero(senders, sizeof senders);
    seen = 0;
    return 0;
}

static int is_name(u8 c) { return nx_is_alnum(c) || c == '_' || c == '-' || c == '.' || c >= 0x80; }

static u32 count_mentions(const u8 *d, u32 n) {
    u32 count = 0;
    for (u32 i = 0; i + 1 < n; i++)
        if (d[i] == '@' && is_name(d[i + 1]) && (i == 0 || !is_name(d[i - 1]))) count++;
    return count;
}

/* Drop the stamps that fell out of the window ending at message `seen`. */
static void expire(sender_t *s) {
    while (s->count && seen - s->stamps[s->head] >= window_messages) {
        s->head = (s->head + 1) % MAX_STAMPS;
        s->count--;
    }
}

static u64 newest(const sender_t *s) {
    return s->count ? s->stamps[(s->head + s->count - 1) % MAX_STAMPS] : 0;
}

/* The sender's entry: theirs, else a free or expired one, else the least recently active. */
static sender_t *entry(u64 key) {
    sender_t *spare = 0;
    for (u32 i = 0; i < SENDERS; i++) {
        sender_t *s = &senders[i];
        if (s->count && s->key == key) return s;
        expire(s);
        if (!spare || (spare->count && (!s->count || newest(s) < newest(spare)))) spare = s;
    }
    spare->key = key;
    spare->head = 0;
    spare->count = 0;
    return spare;
}

static i64 deny(const char *code, u32 a, u32 b, int too_many) {
    nx_buf o;
    nx_buf_init(&o, 128);
    nx_puts(&o, "{\"action\":\"deny\",\"reason\":\"");
    if (too_many) {
        nx_puts(&o, "too many mentions (");
        nx_put_u64(&o, a);
        nx_puts(&o, " > ");
        nx_put_u64(&o, b);
        nx_puts(&o, ")");
    } else {
        nx_puts(&o, "too many messages with mentions (at most ");
        nx_put_u64(&o, a);
        nx_puts(&o, " in ");
        nx_put_u64(&o, b);
        nx_puts(&o, " messages)");
    }
    nx_puts(&o, "\",\"code\":\"");
    nx_puts(&o, code);
    nx_puts(&o, "\"}");
    return o.oom ? 0 : nx_out(o.p, o.n);
}

NX_EXPORT("on_message") i64 on_message(const u8 *in, u32 len) {
    nx_begin();
    nx_span doc = nx_doc(in, len), body, text, v, t;
    seen++;
    if (!nx_get(doc, "body", &body) || !nx_str(body, &text)) return 0;
    u32 mentions = count_mentions(text.p, text.n);
    if (!mentions) return 0;
    if (mentions > max_mentions) return deny("forbidden", mentions, max_mentions, 1);

    u64 key = 0xcbf29ce484222325ull;
    if (nx_get(doc, "tenant", &v) && nx_str(v, &t)) key = fnv(key, t.p, t.n);
    key = fnv(key, (const u8 *)"", 1); /* the NUL separator */
    if (nx_get(doc, "sender", &v) && nx_str(v, &t)) key = fnv(key, t.p, t.n);

    sender_t *s = entry(key);
    expire(s);
    if (s->count >= max_mention_messages)
        return deny("rate_limited", max_mention_messages, window_messages, 0);
    s->stamps[(s->head + s->count) % MAX_STAMPS] = seen; /* a denied message is not counted */
    s->count++;
    return 0;
}
