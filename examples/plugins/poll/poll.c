/* poll - the /poll command, with its state in the plugin's key-value store.
 *
 *   /poll new <question> | <option 1> | <option 2> ...   (2 to 10 options)
 *   /poll vote <id> <n>      one vote per sender; voting again changes the vote
 *   /poll show <id>
 *   /poll close <id>         the creator only
 *   /poll [help]
 *
 * kv keys: "poll:next" -> the last id handed out (decimal text);
 *          "poll:<id>" -> {"question":..,"options":[..],"creator":..,"room":..,"open":true,
 *                          "votes":{"<sender>":<n>,...}}
 * A poll belongs to the room it was made in: from any other room it does not exist.
 */
#include "nexus_guest.h"

#define MAX_OPTIONS 10
#define MAX_QUESTION 300
#define MAX_OPTION 100
#define MAX_VALUE 65536 /* the host's limit for one kv value */

typedef struct {
    nx_span sender;
    u32 choice; /* 1-based */
} vote_t;

typedef struct {
    nx_span question, options[MAX_OPTIONS], creator, room;
    u32 n_options, n_votes;
    int open;
    vote_t *votes;
} poll_t;

/* The call's context: who and where. */
static nx_span sender, room;

/* ---- small text helpers ----------------------------------------------------------------- */

static nx_span trim(nx_span s) {
    while (s.n && nx_is_space(s.p[0])) s.p++, s.n--;
    while (s.n && nx_is_space(s.p[s.n - 1])) s.n--;
    return s;
}

static int same(nx_span a, nx_span b) { return a.n == b.n && nx_mem_eq(a.p, b.p, a.n); }

/* The next whitespace-separated word of *s (consumed). */
static nx_span word(nx_span *s) {
    *s = trim(*s);
    nx_span w = {s->p, 0};
    while (w.n < s->n && !nx_is_space(s->p[w.n])) w.n++;
    s->p += w.n;
    s->n -= w.n;
    return w;
}

/* A positive decimal number, "#12" accepted; 0 = not one. */
static u64 number(nx_span w) {
    u64 v = 0;
    u32 i = (w.n && w.p[0] == '#') ? 1 : 0;
    if (i == w.n || w.n - i > 9) return 0;
    for (; i < w.n; i++) {
        if (!nx_is_digit(w.p[i])) return 0;
        v = v * 10 + (u64)(w.p[i] - '0');
    }
    return v;
}

static void put_span(nx_buf *b, nx_span s) { nx_put(b, s.p, s.n); }

/* ---- kv --------------------------------------------------------------------------------- */

static nx_span poll_key(u64 id) {
    nx_buf k;
    nx_buf_init(&k, 32);
    nx_puts(&k, "poll:");
    nx_put_u64(&k, id);
    nx_span s = {k.p, k.oom ? 0 : k.n};
    return s;
}

/* 1 found (*out), 0 absent, -1 failed. Errors are small negatives; anything else is
 * (ptr << 32) | len, whatever its sign. */
static int kv_get(nx_span key, nx_span *out) {
    i64 r = nx_host_kv_get(key.p, key.n);
    if (r == -1) return 0;
    if (r < 0 && r >= -255) return -1;
    out->p = (const u8 *)(usize)(u32)((u64)r >> 32);
    out->n = (u32)((u64)r & 0xFFFFFFFFu);
    return 1;
}

/* 1 found, 0 not in this room (or absent), -1 failed */
static int load(u64 id, poll_t *p) {
    nx_span raw, doc, v, s;
    nx_iter it;
    int got = kv_get(poll_key(id), &raw);
    if (got <= 0) return got;
    doc = nx_doc(raw.p, raw.n);
    if (!nx_get(doc, "question", &v) || !nx_str(v, &p->question)) return -1;
    if (!nx_get(doc, "creator", &v) || !nx_str(v, &p->creator)) return -1;
    if (!nx_get(doc, "room", &v) || !nx_str(v, &p->room)) return -1;
    if (!same(p->room, room)) return 0;
    p->open = nx_get(doc, "open", &v) && nx_eq(v.p, v.n, "true");
    p->n_options = 0;
    if (!nx_get(doc, "options", &v) || !nx_iter_begin(&it, v, '[')) return -1;
    while (p->n_options < MAX_OPTIONS && nx_iter_next(&it, 0, &v))
        if (!nx_str(v, &p->options[p->n_options++])) return -1;
    if (p->n_options < 2) return -1;
    p->n_votes = 0;
    p->votes = 0;
    if (!nx_get(doc, "votes", &v)) return 1;
    u32 cap = 0;
    nx_span k;
    if (nx_iter_begin(&it, v, '{'))
        while (nx_iter_next(&it, &k, &s)) cap++;
    if (!cap) return 1;
    p->votes = (vote_t *)nx_alloc(cap * (u32)sizeof(vote_t));
    if (!p->votes) return -1;
    nx_iter_begin(&it, v, '{');
    while (nx_iter_next(&it, &k, &s)) {
        i64 choice;
        vote_t *vt = &p->votes[p->n_votes];
        if (!nx_str(k, &vt->sender) || !nx_int(s, &choice)) return -1;
        if (choice < 1 || choice > p->n_options) continue;
        vt->choice = (u32)choice;
        p->n_votes++;
    }
    return 1;
}

/* 0 saved, else the kv_set error (-1 bad input, -3 over quota), or -4 out of memory here,
 * or -5 the poll does not fit in one value (too many voters) */
static i32 save(u64 id, const poll_t *p) {
    nx_buf b;
    nx_buf_init(&b, 256 + p->n_votes * 24);
    nx_puts(&b, "{\"question\":");
    nx_put_jstr(&b, p->question.p, p->question.n);
    nx_puts(&b, ",\"options\":[");
    for (u32 i = 0; i < p->n_options; i++) {
        if (i) nx_putc(&b, ',');
        nx_put_jstr(&b, p->options[i].p, p->options[i].n);
    }
    nx_puts(&b, "],\"creator\":");
    nx_put_jstr(&b, p->creator.p, p->creator.n);
    nx_puts(&b, ",\"room\":");
    nx_put_jstr(&b, p->room.p, p->room.n);
    nx_puts(&b, p->open ? ",\"open\":true,\"votes\":{" : ",\"open\":false,\"votes\":{");
    for (u32 i = 0; i < p->n_votes; i++) {
        if (i) nx_putc(&b, ',');
        nx_put_jstr(&b, p->votes[i].sender.p, p->votes[i].sender.n);
        nx_putc(&b, ':');
        nx_put_u64(&b, p->votes[i].choice);
    }
    nx_puts(&b, "}}");
    nx_span key = poll_key(id);
    if (b.oom || !key.n) return -4;
    if (b.n > MAX_VALUE) return -5;
    return nx_host_kv_set(key.p, key.n, b.p, b.n);
}

/* ---- replies ---------------------------------------------------------------------------- */

static const char USAGE[] =
    "Usage:\n"
    "/poll new <question> | <option 1> | <option 2> ... (2 to 10 options)\n"
    "/poll vote <id> <option number>\n"
    "/poll show <id>\n"
    "/poll close <id> (creator only)";

static void put_results(nx_buf *b, u64 id, const poll_t *p) {
    u32 tally[MAX_OPTIONS] = {0};
    for (u32 i = 0; i < p->n_votes; i++) tally[p->votes[i].choice - 1]++;
    nx_puts(b, "Poll #");
    nx_put_u64(b, id);
    nx_puts(b, ": ");
    put_span(b, p->question);
    nx_puts(b, p->open ? " (open, " : " (closed, ");
    nx_put_u64(b, p->n_votes);
    nx_puts(b, p->n_votes == 1 ? " vote)" : " votes)");
    for (u32 i = 0; i < p->n_options; i++) {
        nx_putc(b, '\n');
        nx_put_u64(b, i + 1);
        nx_puts(b, ". ");
        put_span(b, p->options[i]);
        nx_puts(b, ": ");
        nx_put_u64(b, tally[i]);
    }
    if (p->open) {
        nx_puts(b, "\nVote with /poll vote ");
        nx_put_u64(b, id);
        nx_puts(b, " <number>");
    }
}

static void put_missing(nx_buf *b, u64 id) {
    nx_puts(b, "There is no poll #");
    nx_put_u64(b, id);
    nx_puts(b, " in this room.");
}

static void put_failed(nx_buf *b, const char *what, i32 rc) {
    nx_puts(b, "Sorry, ");
    nx_puts(b, what);
    if (rc == -3) {
        nx_puts(b, " (the plugin's storage quota is full).");
    } else if (rc == -5) {
        nx_puts(b, " (the poll has as many voters as it can store).");
    } else {
        nx_puts(b, " (storage error ");
        nx_put_i64(b, rc);
        nx_puts(b, ").");
    }
}

/* Poll `id` into *p; 0 (and a reply saying why) when it cannot be read or does not exist. */
static int load_or_say(nx_buf *b, u64 id, poll_t *p) {
    int got = load(id, p);
    if (got < 0) {
        put_failed(b, "the poll could not be read", -1);
        return 0;
    }
    if (!got) {
        put_missing(b, id);
        return 0;
    }
    return 1;
}

/* ---- subcommands (each writes its reply text into b) ------------------------------------ */

static void cmd_new(nx_buf *b, nx_span rest) {
    poll_t p;
    nx_span part;
    p.n_options = 0;
    p.n_votes = 0;
    p.votes = 0;
    p.open = 1;
    p.creator = sender;
    p.room = room;
    u32 parts = 0;
    while (1) {
        u32 i = 0;
        while (i < rest.n && rest.p[i] != '|') i++;
        part.p = rest.p;
        part.n = i;
        part = trim(part);
        if (parts == 0) {
            p.question = part;
        } else {
            if (p.n_options == MAX_OPTIONS) {
                nx_puts(b, "A poll has at most 10 options.");
                return;
            }
            p.options[p.n_options++] = part;
        }
        parts++;
        if (i == rest.n) break;
        rest.p += i + 1;
        rest.n -= i + 1;
    }
    if (!p.question.n || p.n_options < 2) {
        nx_puts(b, "A poll needs a question and at least 2 options:\n"
                   "/poll new <question> | <option 1> | <option 2> ...");
        return;
    }
    if (p.question.n > MAX_QUESTION) {
        nx_puts(b, "The question is too long (at most 300 bytes).");
        return;
    }
    for (u32 i = 0; i < p.n_options; i++) {
        if (!p.options[i].n) {
            nx_puts(b, "Option ");
            nx_put_u64(b, i + 1);
            nx_puts(b, " is empty.");
            return;
        }
        if (p.options[i].n > MAX_OPTION) {
            nx_puts(b, "Option ");
            nx_put_u64(b, i + 1);
            nx_puts(b, " is too long (at most 100 bytes).");
            return;
        }
    }

    nx_span next_key = {(const u8 *)"poll:next", 9}, raw;
    u64 last = 0;
    int got = kv_get(next_key, &raw);
    if (got < 0) {
        put_failed(b, "the poll could not be created", -4);
        return;
    }
    if (got) {
        i64 v;
        if (!nx_int(trim(raw), &v) || v < 0) {
            put_failed(b, "the poll counter is corrupt", -1);
            return;
        }
        last = (u64)v;
    }
    u64 id = last + 1;
    i32 rc = save(id, &p);
    if (rc) {
        put_failed(b, "the poll could not be created", rc);
        return;
    }
    nx_buf num;
    nx_buf_init(&num, 24);
    nx_put_u64(&num, id);
    rc = num.oom ? -4 : nx_host_kv_set(next_key.p, next_key.n, num.p, num.n);
    if (rc) {
        put_failed(b, "the poll counter could not be saved", rc);
        return;
    }

    nx_buf log;
    nx_buf_init(&log, 64);
    nx_puts(&log, "poll #");
    nx_put_u64(&log, id);
    nx_puts(&log, " created by ");
    put_span(&log, sender);
    nx_puts(&log, " in ");
    put_span(&log, room);
    if (!log.oom) nx_host_log(NX_INFO, log.p, log.n);

    nx_puts(b, "Poll #");
    nx_put_u64(b, id);
    nx_puts(b, " by ");
    put_span(b, sender);
    nx_puts(b, ": ");
    put_span(b, p.question);
    for (u32 i = 0; i < p.n_options; i++) {
        nx_putc(b, '\n');
        nx_put_u64(b, i + 1);
        nx_puts(b, ". ");
        put_span(b, p.options[i]);
    }
    nx_puts(b, "\nVote with /poll vote ");
    nx_put_u64(b, id);
    nx_puts(b, " <number>");
}

static void cmd_vote(nx_buf *b, nx_span rest) {
    poll_t p;
    u64 id = number(word(&rest)), choice = number(word(&rest));
    if (!id || !choice || trim(rest).n) {
        nx_puts(b, "Usage: /poll vote <id> <option number>");
        return;
    }
    if (!load_or_say(b, id, &p)) return;
    if (!p.open) {
        nx_puts(b, "Poll #");
        nx_put_u64(b, id);
        nx_puts(b, " is closed.\n");
        put_results(b, id, &p);
        return;
    }
    if (choice > p.n_options) {
        nx_puts(b, "Poll #");
        nx_put_u64(b, id);
        nx_puts(b, " has options 1 to ");
        nx_put_u64(b, p.n_options);
        nx_puts(b, ".");
        return;
    }
    u32 i = 0;
    while (i < p.n_votes && !same(p.votes[i].sender, sender)) i++;
    const char *verb = " voted for ";
    if (i < p.n_votes) {
        verb = p.votes[i].choice == choice ? " already voted for " : " changed their vote to ";
    } else {
        vote_t *grown = (vote_t *)nx_alloc((p.n_votes + 1) * (u32)sizeof(vote_t));
        if (!grown) {
            put_failed(b, "the vote could not be recorded", -4);
            return;
        }
        if (p.n_votes) nx_copy(grown, p.votes, p.n_votes * (u32)sizeof(vote_t));
        p.votes = grown;
        p.votes[p.n_votes].sender = sender;
        p.votes[p.n_votes++].choice = 0; /* set below */
    }
    if (p.votes[i].choice != choice) { /* nothing to write when the vote is the same */
        p.votes[i].choice = (u32)choice;
        i32 rc = save(id, &p);
        if (rc) {
            put_failed(b, "the vote could not be recorded", rc);
            return;
        }
    }
    put_span(b, sender);
    nx_puts(b, verb);
    nx_put_u64(b, choice);
    nx_puts(b, " (");
    put_span(b, p.options[choice - 1]);
    nx_puts(b, ").\n");
    put_results(b, id, &p);
}

static void cmd_show_or_close(nx_buf *b, nx_span rest, int close) {
    poll_t p;
    u64 id = number(word(&rest));
    if (!id || trim(rest).n) {
        nx_puts(b, close ? "Usage: /poll close <id>" : "Usage: /poll show <id>");
        return;
    }
    if (!load_or_say(b, id, &p)) return;
    if (close) {
        if (!p.open) {
            nx_puts(b, "Poll #");
            nx_put_u64(b, id);
            nx_puts(b, " is already closed.\n");
        } else if (!same(p.creator, sender)) {
            nx_puts(b, "Only ");
            put_span(b, p.creator);
            nx_puts(b, " can close poll #");
            nx_put_u64(b, id);
            nx_puts(b, ".");
            return;
        } else {
            p.open = 0;
            i32 rc = save(id, &p);
            if (rc) {
                put_failed(b, "the poll could not be closed", rc);
                return;
            }
            nx_puts(b, "Poll #");
            nx_put_u64(b, id);
            nx_puts(b, " is closed. Final results:\n");
        }
    }
    put_results(b, id, &p);
}

/* The text after "/poll": a string, or an array of strings joined by spaces. */
static nx_span read_args(nx_span doc) {
    nx_span v, s, none = {(const u8 *)"", 0};
    if (!nx_get(doc, "args", &v)) return none;
    if (nx_str(v, &s)) return s;
    nx_iter it;
    nx_buf b;
    if (!nx_iter_begin(&it, v, '[')) return none;
    nx_buf_init(&b, v.n);
    while (nx_iter_next(&it, 0, &s)) {
        nx_span t;
        if (!nx_str(s, &t)) continue;
        if (b.n) nx_putc(&b, ' ');
        put_span(&b, t);
    }
    nx_span out = {b.p, b.oom ? 0 : b.n};
    return out;
}

NX_EXPORT("on_command") i64 on_command(const u8 *in, u32 len) {
    nx_begin();
    nx_span doc = nx_doc(in, len), v, empty = {(const u8 *)"", 0};
    if (!nx_get(doc, "command", &v) || !nx_str(v, &v) || !nx_eq(v.p, v.n, "poll")) return 0;
    sender = (nx_get(doc, "sender", &v) && nx_str(v, &v)) ? v : empty;
    room = (nx_get(doc, "room", &v) && nx_str(v, &v)) ? v : empty;

    nx_span rest = read_args(doc);
    nx_span sub = word(&rest);
    nx_buf text;
    nx_buf_init(&text, 256);
    if (nx_eq(sub.p, sub.n, "new")) cmd_new(&text, rest);
    else if (nx_eq(sub.p, sub.n, "vote")) cmd_vote(&text, rest);
    else if (nx_eq(sub.p, sub.n, "show")) cmd_show_or_close(&text, rest, 0);
    else if (nx_eq(sub.p, sub.n, "close")) cmd_show_or_close(&text, rest, 1);
    else {
        if (sub.n && !nx_eq(sub.p, sub.n, "help")) {
            nx_puts(&text, "Unknown /poll command \"");
            put_span(&text, sub);
            nx_puts(&text, "\".\n");
        }
        nx_puts(&text, USAGE);
    }

    nx_buf out;
    nx_buf_init(&out, text.n + text.n / 8 + 16);
    nx_puts(&out, "{\"reply\":");
    nx_put_jstr(&out, text.p, text.n);
    nx_putc(&out, '}');
    return (text.oom || out.oom) ? 0 : nx_out(out.p, out.n);
}
