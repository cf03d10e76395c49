/* The compiled fold's reader of v2 records (ingest/record_v2.py is the layout and its
 * Python twin; tests/test_record_v2.py holds the two together).
 *
 *   0xC1, msgpack [log_time, source, signatures, event]
 *   source      nil | [topic, partition, offset]
 *   signatures  [[keyid (bin 32 = lowercase hex | str), sig (bin)], ...]
 *   event       [repo, version, issued_at, role (nil = "targets" | str), tag,
 *                digest (bin 32 = "sha256:" + lowercase hex | str), size, expires]
 *
 * tl_parse_v2_image_signed fills a tl_rec exactly as tl_parse_image_signed does for the
 * v1 record that the v2 one re-derives: the payload (the canonical MessagePack of the
 * ImageSigned, as msgspec writes it), the key ids and the digest are re-derived into
 * r->v2 and the tl_sv fields point there. Like the v1 reader it answers -1 ("not the fast
 * layout": the caller hands the record to the Python decoder, which then decides) for
 * anything it is unsure of: an event stored as a verbatim payload (any other kind), a
 * raw key id or digest that is not 32 bytes, an integer outside int64, a wrong type, a
 * wrong array length, trailing bytes, a payload over TL_V2_PAYLOAD_MAX. Like the trusted
 * Python decoder (record_v2.decode_v2_trusted) it does not insist on the canonical form:
 * the bytes are covered by the Merkle tree, and `trustlog log verify` checks the form.
 */
#ifndef TRUSTLOG_RECORD_V2_H
#define TRUSTLOG_RECORD_V2_H

#include "_fastfold.h"

#define TL_V2_MARKER 0xC1

/* ---- a canonical MessagePack writer (msgspec's choices: the shortest header) ---- */

typedef struct {
    unsigned char *p, *end;
} tl_w;

static inline int tl_w_raw(tl_w *w, const void *s, size_t n) {
    if ((size_t)(w->end - w->p) < n) return -1;
    memcpy(w->p, s, n);
    w->p += n;
    return 0;
}

static inline int tl_w_byte(tl_w *w, unsigned char b) { return tl_w_raw(w, &b, 1); }

static inline int tl_w_be(tl_w *w, unsigned char head, uint64_t v, int n) {
    if ((size_t)(w->end - w->p) < 1 + (size_t)n) return -1;
    unsigned char *p = w->p;
    p[0] = head;
    switch (n) {  /* constant sizes: the compiler writes them without a loop */
    case 1: p[1] = (unsigned char)v; break;
    case 2: p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)v; break;
    case 4: for (int i = 0; i < 4; i++) p[1 + i] = (unsigned char)(v >> (8 * (3 - i))); break;
    default: for (int i = 0; i < n; i++) p[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i))); break;
    }
    w->p += 1 + (size_t)n;
    return 0;
}

static inline int tl_w_str(tl_w *w, const char *s, uint32_t n) {
    int rc;
    if (n < 32) rc = tl_w_byte(w, (unsigned char)(0xa0 | n));
    else if (n < 256) rc = tl_w_be(w, 0xd9, n, 1);
    else if (n < 65536) rc = tl_w_be(w, 0xda, n, 2);
    else rc = tl_w_be(w, 0xdb, n, 4);
    return rc ? rc : tl_w_raw(w, s, n);
}

/* A str literal of under 32 bytes (a fixstr), its length known when compiled. */
static inline int tl_w_fix(tl_w *w, const char *s, size_t n) {
    if (n >= 32 || (size_t)(w->end - w->p) < n + 1) return -1;
    *w->p++ = (unsigned char)(0xa0 | n);
    memcpy(w->p, s, n);
    w->p += n;
    return 0;
}
#define tl_w_lit(w, lit) tl_w_fix((w), "" lit, sizeof(lit) - 1)

static inline int tl_w_int(tl_w *w, int64_t v) {
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 128) return tl_w_byte(w, (unsigned char)u);
        if (u < 256) return tl_w_be(w, 0xcc, u, 1);
        if (u < 65536) return tl_w_be(w, 0xcd, u, 2);
        if (u <= 0xffffffffu) return tl_w_be(w, 0xce, u, 4);
        return tl_w_be(w, 0xcf, u, 8);
    }
    if (v >= -32) return tl_w_byte(w, (unsigned char)(int8_t)v);
    if (v >= -128) return tl_w_be(w, 0xd0, (uint64_t)v & 0xff, 1);
    if (v >= -32768) return tl_w_be(w, 0xd1, (uint64_t)v & 0xffff, 2);
    if (v >= -2147483648LL) return tl_w_be(w, 0xd2, (uint64_t)v & 0xffffffffu, 4);
    return tl_w_be(w, 0xd3, (uint64_t)v, 8);
}

/* ---- the v2 layout --------------------------------------------------------------- */

static const char tl_hexdig[] = "0123456789abcdef";

static void tl_hex32(const unsigned char *raw, char *out) {
    for (int i = 0; i < 32; i++) {
        out[2 * i] = tl_hexdig[raw[i] >> 4];
        out[2 * i + 1] = tl_hexdig[raw[i] & 15];
    }
}

static inline int tl_is_nil(tl_mp *m) {
    if (m->p < m->end && *m->p == 0xc0) { m->p++; return 1; }
    return 0;
}

static inline int tl_peek_bin(tl_mp *m) {
    return m->p < m->end && (*m->p == 0xc4 || *m->p == 0xc5 || *m->p == 0xc6);
}

/* A bin of exactly 32 bytes, as lowercase hex into out[64]; or a str; -1 otherwise. */
static int tl_hex32_or_str(tl_mp *m, char *out, tl_sv *v) {
    if (tl_peek_bin(m)) {
        const unsigned char *b;
        uint32_t n;
        if (tl_bin(m, &b, &n) || n != 32) return -1;
        tl_hex32(b, out);
        v->s = out;
        v->n = 64;
        return 0;
    }
    return tl_str(m, &v->s, &v->n);
}

/* The canonical payload of the ImageSigned in *r into r->v2.payload (msgspec's encoding of
 * core.events.ImageSigned: a 9-entry map in field order, "kind" first). */
static int tl_v2_payload(tl_rec *r) {
    tl_w w = {r->v2.payload, r->v2.payload + TL_V2_PAYLOAD_MAX};
    if (tl_w_byte(&w, 0x89) || tl_w_lit(&w, "kind") || tl_w_lit(&w, "ImageSigned")) return -1;
    if (tl_w_lit(&w, "repo") || tl_w_str(&w, r->repo.s, r->repo.n)) return -1;
    if (tl_w_lit(&w, "version") || tl_w_int(&w, r->version)) return -1;
    if (tl_w_lit(&w, "issued_at") || tl_w_int(&w, r->issued_at)) return -1;
    if (tl_w_lit(&w, "role") || tl_w_str(&w, r->role.s, r->role.n)) return -1;
    if (tl_w_lit(&w, "tag") || tl_w_str(&w, r->tag.s, r->tag.n)) return -1;
    if (tl_w_lit(&w, "digest") || tl_w_str(&w, r->digest.s, r->digest.n)) return -1;
    if (tl_w_lit(&w, "size") || tl_w_int(&w, r->size)) return -1;
    if (tl_w_lit(&w, "expires") || tl_w_int(&w, r->expires)) return -1;
    r->payload = r->v2.payload;
    r->payload_len = (uint32_t)(w.p - r->v2.payload);
    return 0;
}

/* 0: `body` is a v2 record of an ImageSigned stored as fields, parsed into *r (with the
 * payload re-derived); -1: anything else (the caller decodes it in Python). */
static int tl_parse_v2_image_signed(const unsigned char *body, size_t len, tl_rec *r) {
    if (len < 1 || body[0] != TL_V2_MARKER) return -1;
    tl_mp m = {body + 1, body + len};
    uint32_t n;
    if (tl_array(&m, &n) || n != 4) return -1;
    if (tl_int(&m, &r->log_time) || r->log_time < 0) return -1;
    if (tl_is_nil(&m)) {
        r->has_source = 0;
    } else {
        if (tl_array(&m, &n) || n != 3) return -1;
        if (tl_str(&m, &r->topic.s, &r->topic.n)) return -1;
        if (tl_int(&m, &r->partition) || r->partition < 0) return -1;
        if (tl_int(&m, &r->src_offset) || r->src_offset < 0) return -1;
        r->has_source = 1;
    }
    if (tl_array(&m, &r->nsigs) || r->nsigs > TL_MAX_SIGS) return -1;
    for (uint32_t i = 0; i < r->nsigs; i++) {
        if (tl_array(&m, &n) || n != 2) return -1;
        if (tl_hex32_or_str(&m, r->v2.keyid[i], &r->keyid[i])) return -1;
        if (tl_bin(&m, &r->sig[i], &r->sig_len[i])) return -1;
    }
    if (tl_array(&m, &n) || n != 8) return -1;  /* a bin here: a verbatim payload, not for the fast path */
    if (tl_str(&m, &r->repo.s, &r->repo.n)) return -1;
    if (tl_int(&m, &r->version) || tl_int(&m, &r->issued_at)) return -1;
    if (tl_is_nil(&m)) {
        r->role.s = "targets";
        r->role.n = 7;
    } else if (tl_str(&m, &r->role.s, &r->role.n)) {
        return -1;
    }
    if (tl_str(&m, &r->tag.s, &r->tag.n)) return -1;
    if (tl_peek_bin(&m)) {
        const unsigned char *b;
        if (tl_bin(&m, &b, &n) || n != 32) return -1;
        memcpy(r->v2.digest, "sha256:", 7);
        tl_hex32(b, r->v2.digest + 7);
        r->digest.s = r->v2.digest;
        r->digest.n = 71;
    } else if (tl_str(&m, &r->digest.s, &r->digest.n)) {
        return -1;
    }
    if (tl_int(&m, &r->size) || tl_int(&m, &r->expires)) return -1;
    if (m.p != m.end) return -1;
    return tl_v2_payload(r);
}

/* Well-formed UTF-8 as Python's strict decoder takes it (no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
static int tl_utf8_ok(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* Either format: 0 if `body` is an ImageSigned record the fast path can read. The topic
 * of its source is checked here (the fast path records the position after applying the
 * event; every other text field it matches against names it holds, or checks itself). */
static int tl_parse_record(const unsigned char *body, size_t len, tl_rec *r) {
    int rc = (len >= 1 && body[0] == TL_V2_MARKER) ? tl_parse_v2_image_signed(body, len, r)
                                                   : tl_parse_image_signed(body, len, r);
    if (rc == 0 && r->has_source && !tl_utf8_ok((const unsigned char *)r->topic.s, r->topic.n)) return -1;
    return rc;
}


/* ---- the writer: v1 bytes to v2 bytes (record_v2.encode_v2's choice, in C) ---------- */

static inline int tl_w_bin(tl_w *w, const unsigned char *s, uint32_t n) {
    int rc;
    if (n < 256) rc = tl_w_be(w, 0xc4, n, 1);
    else if (n < 65536) rc = tl_w_be(w, 0xc5, n, 2);
    else rc = tl_w_be(w, 0xc6, n, 4);
    return rc ? rc : tl_w_raw(w, s, n);
}

static inline int tl_w_array(tl_w *w, uint32_t n) {
    if (n < 16) return tl_w_byte(w, (unsigned char)(0x90 | n));
    if (n < 65536) return tl_w_be(w, 0xdc, n, 2);
    return tl_w_be(w, 0xdd, n, 4);
}

static inline int tl_sv_eq(tl_sv a, tl_sv b) { return a.n == b.n && (a.n == 0 || !memcmp(a.s, b.s, a.n)); }

/* A lowercase hex digit's value + 1 (0: not one); a table, as tl_hex_lower, since the
 * digits are random and a branch per digit would mispredict about every other one. */
static const unsigned char tl_unhex_tab[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
    ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* The 32 bytes whose lowercase hex the 64 bytes of v are (record_v2._raw_hex32); -1 if
 * they are not exactly that (capitals, other characters, another length). */
static int tl_unhex32(tl_sv v, unsigned char *raw) {
    if (v.n != 64) return -1;
    unsigned ok = 1;
    for (int i = 0; i < 32; i++) {
        unsigned hi = tl_unhex_tab[(unsigned char)v.s[2 * i]], lo = tl_unhex_tab[(unsigned char)v.s[2 * i + 1]];
        ok &= (hi != 0) & (lo != 0);
        raw[i] = (unsigned char)((hi - 1) << 4 | ((lo - 1) & 15));
    }
    return ok ? 0 : -1;
}

/* UTF-8 (tl_utf8_ok), with ASCII text (most names) checked 8 bytes at a time. */
static inline int tl_sv_utf8(tl_sv v) {
    const unsigned char *p = (const unsigned char *)v.s;
    size_t i = 0;
    uint64_t hi = 0;
    for (; i + 8 <= v.n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        hi |= x;
    }
    for (; i < v.n; i++) hi |= p[i];
    return (hi & 0x8080808080808080ull) == 0 || tl_utf8_ok(p, v.n);
}

/* The canonical v1 bytes (msgspec's encoding of LogRecord{log_time, envelope=Envelope{
 * payload, signatures}, source}) of the fields in *r, into buf (cap bytes): the envelope
 * first, then the record after it. Its length, or -1 if it does not fit. */
static long tl_v1_bytes(const tl_rec *r, unsigned char *buf, size_t cap, const unsigned char **rec) {
    tl_w w = {buf, buf + cap};
    if (tl_w_byte(&w, 0x82) || tl_w_lit(&w, "payload") || tl_w_bin(&w, r->payload, r->payload_len)) return -1;
    if (tl_w_lit(&w, "signatures") || tl_w_array(&w, r->nsigs)) return -1;
    for (uint32_t i = 0; i < r->nsigs; i++) {
        if (tl_w_byte(&w, 0x82) || tl_w_lit(&w, "keyid") || tl_w_str(&w, r->keyid[i].s, r->keyid[i].n)) return -1;
        if (tl_w_lit(&w, "sig") || tl_w_bin(&w, r->sig[i], r->sig_len[i])) return -1;
    }
    const unsigned char *env = buf;
    uint32_t env_len = (uint32_t)(w.p - buf);
    *rec = w.p;
    if (tl_w_byte(&w, 0x83) || tl_w_lit(&w, "log_time") || tl_w_int(&w, r->log_time)) return -1;
    if (tl_w_lit(&w, "envelope") || tl_w_bin(&w, env, env_len) || tl_w_lit(&w, "source")) return -1;
    if (!r->has_source) {
        if (tl_w_byte(&w, 0xc0)) return -1;
    } else {
        if (tl_w_byte(&w, 0x83) || tl_w_lit(&w, "topic") || tl_w_str(&w, r->topic.s, r->topic.n)) return -1;
        if (tl_w_lit(&w, "partition") || tl_w_int(&w, r->partition)) return -1;
        if (tl_w_lit(&w, "offset") || tl_w_int(&w, r->src_offset)) return -1;
    }
    return (long)(w.p - *rec);
}

/* The v2 bytes record_v2.encode_v2 writes for the v1 record `v1` when it is an
 * ImageSigned (the event stored as fields), into out (cap bytes); tmp (tmp_cap bytes)
 * and *a, *b are scratch. Its length, or -1: "not sure" (any other kind, a layout the
 * v1 reader does not take, text that is not UTF-8, anything that does not fit): the
 * caller then asks the Python encoder, which decides (v2 or v1).
 *
 * It answers a length only when both hold: (1) the v2 reader (tl_parse_record) reads
 * from the output exactly the fields the v1 reader read from the input (log time,
 * source, key ids, signatures, payload bytes), and (2) those fields re-encode
 * canonically to exactly the input, byte for byte: so the v1 bytes are the one canonical
 * form of the fields (no longer integer, header or map form the v1 reader tolerates),
 * which is what the Python encoder's re-derivation check insists on. With the UTF-8
 * checks (msgspec decodes the envelope and the event only when every str is UTF-8) the
 * Python encoder then takes the same ImageSigned form and writes these same bytes. */
static long tl_encode_v2(const unsigned char *v1, size_t len, tl_rec *a, tl_rec *b, unsigned char *out, size_t cap,
                         unsigned char *tmp, size_t tmp_cap) {
    if (tl_parse_image_signed(v1, len, a)) return -1;
    if (a->has_source && !tl_sv_utf8(a->topic)) return -1;
    if (!tl_sv_utf8(a->repo) || !tl_sv_utf8(a->role) || !tl_sv_utf8(a->tag) || !tl_sv_utf8(a->digest)) return -1;
    for (uint32_t i = 0; i < a->nsigs; i++)
        if (!tl_sv_utf8(a->keyid[i])) return -1;

    unsigned char raw[32];
    tl_w w = {out, out + cap};
    if (tl_w_byte(&w, TL_V2_MARKER) || tl_w_byte(&w, 0x94) || tl_w_int(&w, a->log_time)) return -1;
    if (!a->has_source) {
        if (tl_w_byte(&w, 0xc0)) return -1;
    } else if (tl_w_byte(&w, 0x93) || tl_w_str(&w, a->topic.s, a->topic.n) || tl_w_int(&w, a->partition)
               || tl_w_int(&w, a->src_offset)) {
        return -1;
    }
    if (tl_w_array(&w, a->nsigs)) return -1;
    for (uint32_t i = 0; i < a->nsigs; i++) {
        if (tl_w_byte(&w, 0x92)) return -1;
        if (tl_unhex32(a->keyid[i], raw) == 0 ? tl_w_bin(&w, raw, 32) : tl_w_str(&w, a->keyid[i].s, a->keyid[i].n))
            return -1;
        if (tl_w_bin(&w, a->sig[i], a->sig_len[i])) return -1;
    }
    if (tl_w_byte(&w, 0x98) || tl_w_str(&w, a->repo.s, a->repo.n) || tl_w_int(&w, a->version)
        || tl_w_int(&w, a->issued_at)) return -1;
    if (a->role.n == 7 && !memcmp(a->role.s, "targets", 7) ? tl_w_byte(&w, 0xc0) : tl_w_str(&w, a->role.s, a->role.n))
        return -1;
    if (tl_w_str(&w, a->tag.s, a->tag.n)) return -1;
    if (tl_is_digest(a->digest)) {
        tl_sv hex = {a->digest.s + 7, 64};
        if (tl_unhex32(hex, raw) || tl_w_bin(&w, raw, 32)) return -1;
    } else if (tl_w_str(&w, a->digest.s, a->digest.n)) {
        return -1;
    }
    if (tl_w_int(&w, a->size) || tl_w_int(&w, a->expires)) return -1;
    long n = (long)(w.p - out);

    /* (1) the v2 reader gives back the same fields */
    if (tl_parse_record(out, (size_t)n, b)) return -1;
    if (b->log_time != a->log_time || b->has_source != a->has_source) return -1;
    if (a->has_source && (!tl_sv_eq(b->topic, a->topic) || b->partition != a->partition
                          || b->src_offset != a->src_offset)) return -1;
    if (b->nsigs != a->nsigs) return -1;
    for (uint32_t i = 0; i < a->nsigs; i++) {
        if (!tl_sv_eq(b->keyid[i], a->keyid[i]) || b->sig_len[i] != a->sig_len[i]
            || (a->sig_len[i] && memcmp(b->sig[i], a->sig[i], a->sig_len[i])))
            return -1;
    }
    if (b->payload_len != a->payload_len || memcmp(b->payload, a->payload, a->payload_len)) return -1;

    /* (2) the fields determine the v1 bytes: their canonical encoding is the input */
    const unsigned char *rec;
    long m = tl_v1_bytes(b, tmp, tmp_cap, &rec);
    if (m < 0 || (size_t)m != len || memcmp(rec, v1, len)) return -1;
    return n;
}

#endif
