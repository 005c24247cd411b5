/* nexus_guest.h - freestanding helpers for Nexus plugins written in C (plugin ABI v1).
 *
 * No libc: built with `zig cc -target wasm32-wasi -nostdlib` (see ../build.py). Include this
 * header from exactly one .c file per plugin: it defines the two exports every plugin needs,
 * `nexus_input` and `nexus_alloc`, on top of a bump arena: the input area at its start
 * (kept across calls), scratch after it, reset by `nx_begin()`, which every hook calls first.
 *
 * What is here:
 *   - the host imports (module "nexus"); only those a plugin calls end up imported;
 *   - the arena (nx_alloc), growing linear memory with memory.grow when needed;
 *   - nx_buf, a growable byte buffer in the arena, with JSON writers (nx_put_jstr escapes);
 *   - a small JSON reader: spans of raw values, object lookup and iteration, array iteration,
 *     string decoding (all escapes, \uXXXX with surrogate pairs; a lone surrogate becomes
 *     U+FFFD) and integers.
 *
 * State that must survive between hook calls goes in static variables, never in the arena.
 */
#ifndef NEXUS_GUEST_H
#define NEXUS_GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned long usize;

#define NX_EXPORT(name) __attribute__((export_name(name)))
#define NX_IMPORT(name) __attribute__((import_module("nexus"), import_name(name)))
#define NX_FN static __attribute__((unused))

/* ---- host functions (each needs its manifest capability) -------------------------------- */

NX_IMPORT("log") void nx_host_log(i32 level, const u8 *p, u32 n);
NX_IMPORT("post") i32 nx_host_post(const u8 *p, u32 n);
NX_IMPORT("history") i64 nx_host_history(const u8 *p, u32 n);
NX_IMPORT("kv_get") i64 nx_host_kv_get(const u8 *k, u32 kn);
NX_IMPORT("kv_set") i32 nx_host_kv_set(const u8 *k, u32 kn, const u8 *v, u32 vn);
NX_IMPORT("kv_delete") i32 nx_host_kv_delete(const u8 *k, u32 kn);

enum { NX_DEBUG = 0, NX_INFO = 1, NX_WARNING = 2, NX_ERROR = 3 };

/* ---- bytes ------------------------------------------------------------------------------ */

/* __builtin_memcpy/memset become memory.copy/memory.fill (bulk memory): no libc needed. */
NX_FN void nx_copy(void *d, const void *s, u32 n) { __builtin_memcpy(d, s, n); }
NX_FN void nx_zero(void *d, u32 n) { __builtin_memset(d, 0, n); }

NX_FN u32 nx_strlen(const char *s) {
    u32 n = 0;
    while (s[n]) n++;
    return n;
}

NX_FN int nx_mem_eq(const u8 *a, const u8 *b, u32 n) {
    for (u32 i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* a == the C string b */
NX_FN int nx_eq(const u8 *a, u32 an, const char *b) {
    u32 bn = nx_strlen(b);
    return an == bn && nx_mem_eq(a, (const u8 *)b, an);
}

NX_FN u8 nx_lower(u8 c) { return (c >= 'A' && c <= 'Z') ? (u8)(c + 32) : c; }
NX_FN int nx_is_digit(u8 c) { return c >= '0' && c <= '9'; }
NX_FN int nx_is_alpha(u8 c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
NX_FN int nx_is_alnum(u8 c) { return nx_is_alpha(c) || nx_is_digit(c); }
NX_FN int nx_is_space(u8 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ---- arena ------------------------------------------------------------------------------ */

extern u8 __heap_base; /* set by the linker: first byte after the stack and static data */

static u32 nx_arena_top; /* 0 until first use */

NX_FN u32 nx_arena_start(void) { return ((u32)(usize)&__heap_base + 15u) & ~15u; }

/* Move the arena top to `end`, growing memory if needed. 0 = memory.grow refused. */
NX_FN int nx_arena_reach(u64 end) {
    u64 have = (u64)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        u64 pages = (end - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, (usize)pages) == (usize)-1) return 0;
    }
    nx_arena_top = (u32)end;
    return 1;
}

/* n bytes, 8-aligned, valid until the next hook call; 0 if memory cannot grow. */
NX_FN void *nx_alloc(u32 n) {
    if (!nx_arena_top) nx_arena_top = nx_arena_start();
    u32 p = (nx_arena_top + 7u) & ~7u;
    if (p < nx_arena_top || n > 0xFFFFFFFFu - p) return 0;
    if (!nx_arena_reach((u64)p + n)) return 0;
    return (void *)(usize)p;
}

static u32 nx_input_end; /* first byte after the input area: the scratch arena starts here */

/* The host asks for an input buffer when it needs a bigger one than it has, then keeps
 * writing every hook's input there: it sits at the arena's start, scratch after it. */
NX_EXPORT("nexus_input") u32 nexus_input(u32 len) {
    u32 start = nx_arena_start();
    if (!nx_arena_reach((u64)start + (len ? len : 1))) return 0;
    nx_input_end = (nx_arena_top + 15u) & ~15u;
    nx_arena_top = nx_input_end;
    return start;
}

/* Every hook starts with this: the previous call's scratch is free again. */
NX_FN void nx_begin(void) {
    if (!nx_input_end) nx_input_end = nx_arena_start();
    nx_arena_top = nx_input_end;
}

/* Memory for a host function's answer (kv_get, history) during the current call. */
NX_EXPORT("nexus_alloc") u32 nexus_alloc(u32 len) { return (u32)(usize)nx_alloc(len ? len : 1); }

/* A hook's result: (ptr << 32) | len. */
NX_FN i64 nx_out(const u8 *p, u32 n) { return (i64)(((u64)(usize)p << 32) | (u64)n); }

/* ---- growable buffer -------------------------------------------------------------------- */

typedef struct {
    u8 *p;
    u32 n, cap;
    int oom; /* set once an allocation failed; every later write is a no-op */
} nx_buf;

NX_FN void nx_buf_init(nx_buf *b, u32 cap) {
    b->n = 0;
    b->oom = 0;
    b->p = (u8 *)nx_alloc(cap);
    b->cap = b->p ? cap : 0;
    if (!b->p) b->oom = 1;
}

NX_FN int nx_buf_reserve(nx_buf *b, u32 extra) {
    if (b->oom) return 0;
    if (extra <= b->cap - b->n) return 1;
    if (extra > 0x7FFFFFFFu - b->n) return (b->oom = 1, 0);
    u32 need = b->n + extra;
    /* the last allocation in the arena grows in place */
    u32 end = (u32)(usize)b->p + b->cap;
    if (end == nx_arena_top && nx_arena_reach((u64)end + (need - b->cap))) {
        b->cap = need;
        return 1;
    }
    u32 cap = b->cap * 2 > need ? b->cap * 2 : need;
    u8 *q = (u8 *)nx_alloc(cap);
    if (!q) return (b->oom = 1, 0);
    nx_copy(q, b->p, b->n);
    b->p = q;
    b->cap = cap;
    return 1;
}

NX_FN void nx_put(nx_buf *b, const u8 *s, u32 n) {
    if (!nx_buf_reserve(b, n)) return;
    nx_copy(b->p + b->n, s, n);
    b->n += n;
}

NX_FN void nx_putc(nx_buf *b, u8 c) {
    if (!nx_buf_reserve(b, 1)) return;
    b->p[b->n++] = c;
}

NX_FN void nx_puts(nx_buf *b, const char *s) { nx_put(b, (const u8 *)s, nx_strlen(s)); }

NX_FN void nx_put_u64(nx_buf *b, u64 v) {
    u8 tmp[20];
    u32 i = sizeof tmp;
    do {
        tmp[--i] = (u8)('0' + v % 10);
        v /= 10;
    } while (v);
    nx_put(b, tmp + i, (u32)sizeof tmp - i);
}

NX_FN void nx_put_i64(nx_buf *b, i64 v) {
    if (v < 0) {
        nx_putc(b, '-');
        nx_put_u64(b, (u64)0 - (u64)v);
    } else {
        nx_put_u64(b, (u64)v);
    }
}

/* s (UTF-8) as a JSON string literal, quotes included. Non-ASCII passes through as UTF-8. */
NX_FN void nx_put_jstr(nx_buf *b, const u8 *s, u32 n) {
    static const char hex[] = "0123456789abcdef";
    nx_putc(b, '"');
    u32 run = 0; /* start of the pending run of bytes that need no escaping */
    for (u32 i = 0; i < n; i++) {
        u8 c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        nx_put(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': nx_puts(b, "\\\""); break;
        case '\\': nx_puts(b, "\\\\"); break;
        case '\n': nx_puts(b, "\\n"); break;
        case '\r': nx_puts(b, "\\r"); break;
        case '\t': nx_puts(b, "\\t"); break;
        case '\b': nx_puts(b, "\\b"); break;
        case '\f': nx_puts(b, "\\f"); break;
        default: {
            u8 u[6] = {'\\', 'u', '0', '0', (u8)hex[c >> 4], (u8)hex[c & 15]};
            nx_put(b, u, 6);
        }
        }
    }
    nx_put(b, s + run, n - run);
    nx_putc(b, '"');
}

/* ---- JSON reader ------------------------------------------------------------------------ */

/* A raw JSON value: its bytes in the input, e.g. `"a\"b"`, `12`, `{...}`, `null`. */
typedef struct {
    const u8 *p;
    u32 n;
} nx_span;

NX_FN const u8 *nx_ws(const u8 *p, const u8 *e) {
    while (p < e && nx_is_space(*p)) p++;
    return p;
}

/* p at '"': the byte after the closing quote, or 0 if unterminated. */
NX_FN const u8 *nx_skip_string(const u8 *p, const u8 *e) {
    for (p++; p < e; p++) {
        if (*p == '"') return p + 1;
        if (*p == '\\') p++;
    }
    return 0;
}

/* p at the first byte of a value: the byte after it, or 0 if malformed. Containers are
 * matched by depth only (the host writes valid JSON; this is a skipper, not a validator). */
NX_FN const u8 *nx_skip_value(const u8 *p, const u8 *e) {
    if (p >= e) return 0;
    if (*p == '"') return nx_skip_string(p, e);
    if (*p == '{' || *p == '[') {
        u32 depth = 0;
        while (p < e) {
            u8 c = *p;
            if (c == '"') {
                p = nx_skip_string(p, e);
                if (!p) return 0;
                continue;
            }
            if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return 0;
    }
    const u8 *s = p;
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ':' && !nx_is_space(*p)) p++;
    return p > s ? p : 0;
}

NX_FN int nx_is_string(nx_span v) { return v.n >= 2 && v.p[0] == '"'; }
NX_FN int nx_is_null(nx_span v) { return nx_eq(v.p, v.n, "null"); }

/* Iteration over an object's members or an array's elements. */
typedef struct {
    const u8 *p, *e;
    int first, bad;
} nx_iter;

/* v must be an object (open == '{') or an array (open == '['). */
NX_FN int nx_iter_begin(nx_iter *it, nx_span v, u8 open) {
    it->p = v.p;
    it->e = v.p + v.n;
    it->first = 1;
    it->bad = 0;
    if (v.n < 2 || v.p[0] != open) return (it->bad = 1, 0);
    it->p++;
    return 1;
}

/* Next element; `key` (may be 0) receives the raw key for objects. 0 = end (or malformed:
 * it->bad is then set). */
NX_FN int nx_iter_next(nx_iter *it, nx_span *key, nx_span *val) {
    if (it->bad) return 0;
    const u8 *p = nx_ws(it->p, it->e);
    if (p >= it->e) return (it->bad = 1, 0);
    if (*p == '}' || *p == ']') {
        it->p = it->e;
        it->bad = 0;
        return 0;
    }
    if (!it->first) {
        if (*p != ',') return (it->bad = 1, 0);
        p = nx_ws(p + 1, it->e);
    }
    it->first = 0;
    if (key) {
        const u8 *ke = (p < it->e && *p == '"') ? nx_skip_string(p, it->e) : 0;
        if (!ke) return (it->bad = 1, 0);
        key->p = p;
        key->n = (u32)(ke - p);
        p = nx_ws(ke, it->e);
        if (p >= it->e || *p != ':') return (it->bad = 1, 0);
        p = nx_ws(p + 1, it->e);
    }
    const u8 *ve = nx_skip_value(p, it->e);
    if (!ve) return (it->bad = 1, 0);
    val->p = p;
    val->n = (u32)(ve - p);
    it->p = ve;
    return 1;
}

NX_FN u32 nx_hex4(const u8 *p) {
    u32 v = 0;
    for (int i = 0; i < 4; i++) {
        u8 c = p[i];
        u32 d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0xFFFFFFFFu;
        v = v * 16 + d;
    }
    return v;
}

NX_FN u32 nx_utf8(u8 *o, u32 cp) {
    if (cp < 0x80) return (o[0] = (u8)cp, 1);
    if (cp < 0x800) {
        o[0] = (u8)(0xC0 | (cp >> 6));
        o[1] = (u8)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (u8)(0xE0 | (cp >> 12));
        o[1] = (u8)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (u8)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (u8)(0xF0 | (cp >> 18));
    o[1] = (u8)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (u8)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (u8)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode the JSON string literal v into UTF-8 (*out). Without escapes the result points into
 * the input (no copy); otherwise into the arena. Decoding never makes the text longer. 0 = not
 * a string, a bad escape, or out of memory. */
NX_FN int nx_str(nx_span v, nx_span *out) {
    if (!nx_is_string(v) || v.p[v.n - 1] != '"') return 0;
    const u8 *s = v.p + 1, *e = v.p + v.n - 1;
    const u8 *q = s;
    while (q < e && *q != '\\') q++;
    if (q == e) {
        out->p = s;
        out->n = (u32)(e - s);
        return 1;
    }
    u8 *o = (u8 *)nx_alloc((u32)(e - s));
    if (!o) return 0;
    u32 n = (u32)(q - s);
    nx_copy(o, s, n);
    while (q < e) {
        if (*q != '\\') {
            o[n++] = *q++;
            continue;
        }
        if (q + 1 >= e) return 0;
        u8 c = q[1];
        q += 2;
        switch (c) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            if (e - q < 4) return 0;
            u32 cp = nx_hex4(q);
            if (cp == 0xFFFFFFFFu) return 0;
            q += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                u32 lo = (e - q >= 6 && q[0] == '\\' && q[1] == 'u') ? nx_hex4(q + 2) : 0;
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    q += 6;
                } else {
                    cp = 0xFFFD; /* lone high surrogate */
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD; /* lone low surrogate */
            }
            n += nx_utf8(o + n, cp);
            break;
        }
        default: return 0;
        }
    }
    out->p = o;
    out->n = n;
    return 1;
}

/* Does the raw key (a JSON string literal) decode to the C string `name`? */
NX_FN int nx_key_is(nx_span key, const char *name) {
    u32 n = nx_strlen(name);
    if (key.n == n + 2 && nx_mem_eq(key.p + 1, (const u8 *)name, n)) return 1;
    for (u32 i = 1; i + 1 < key.n; i++) {
        if (key.p[i] == '\\') { /* rare: an escaped key; decode it to compare */
            nx_span d;
            return nx_str(key, &d) && d.n == n && nx_mem_eq(d.p, (const u8 *)name, n);
        }
    }
    return 0;
}

/* The value of member `name` in object `obj`: 1 found, 0 absent (or obj is not an object). */
NX_FN int nx_get(nx_span obj, const char *name, nx_span *val) {
    nx_iter it;
    nx_span k, v;
    if (!nx_iter_begin(&it, obj, '{')) return 0;
    while (nx_iter_next(&it, &k, &v)) {
        if (nx_key_is(k, name)) {
            *val = v;
            return 1;
        }
    }
    return 0;
}

/* The whole input as a span (after leading whitespace, before trailing whitespace). */
NX_FN nx_span nx_doc(const u8 *p, u32 n) {
    const u8 *e = p + n;
    p = nx_ws(p, e);
    while (e > p && nx_is_space(e[-1])) e--;
    nx_span s = {p, (u32)(e - p)};
    return s;
}

/* A JSON integer (no fraction or exponent; "-0" is 0). 0 = not one, or out of i64 range. */
NX_FN int nx_int(nx_span v, i64 *out) {
    u32 i = 0;
    int neg = 0;
    if (v.n && v.p[0] == '-') neg = 1, i = 1;
    if (i >= v.n) return 0;
    u64 acc = 0;
    for (; i < v.n; i++) {
        if (!nx_is_digit(v.p[i])) return 0;
        if (acc > (0x7FFFFFFFFFFFFFFFull - 9) / 10) return 0;
        acc = acc * 10 + (u64)(v.p[i] - '0');
    }
    *out = neg ? -(i64)acc : (i64)acc;
    return 1;
}

/* Log a C string (needs capability "log"). */
NX_FN void nx_log(i32 level, const char *msg) {
    nx_host_log(level, (const u8 *)msg, nx_strlen(msg));
}

/* {"error": msg} as a hook result, for on_load / on_event. */
NX_FN i64 nx_error(const char *msg) {
    nx_buf b;
    nx_buf_init(&b, 32 + nx_strlen(msg));
    nx_puts(&b, "{\"error\":");
    nx_put_jstr(&b, (const u8 *)msg, nx_strlen(msg));
    nx_putc(&b, '}');
    return b.oom ? 0 : nx_out(b.p, b.n);
}

#endif
