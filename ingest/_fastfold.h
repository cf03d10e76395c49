/* C helpers of trustlog.ingest._fastfold (the compiled trusted fold).
 *
 * - CRC-32C (Castagnoli) as the `crc32c` package computes it: SSE4.2 instructions when
 *   the CPU has them (checked once at run time), a table otherwise.
 * - The RFC 9162 leaf hash SHA-256(0x00 || body), with OpenSSL's one-shot SHA-256.
 * - A reader of the v1 record layout (the v2 one is in _record_v2.h, on the same helpers): msgpack(LogRecord{log_time, envelope=msgpack(
 *   Envelope{payload=msgpack(Event), signatures}), source}) as the canonical encoder
 *   writes it (struct fields in declaration order). It recognises exactly that layout,
 *   with every ImageSigned field; anything else (another kind, another key order, a
 *   missing or extra field, an integer outside int64, a wrong type, trailing bytes)
 *   makes it answer "not the fast layout", and the caller hands the record to the
 *   Python decoder, which then decides (accepts it or raises as TrustedFold does).
 *   The reader never accepts a body that msgspec would decode to different values.
 */
#ifndef TRUSTLOG_FASTFOLD_H
#define TRUSTLOG_FASTFOLD_H

#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>

/* ---- CRC-32C ------------------------------------------------------------------- */

static uint32_t tl_crc_table[8][256];
static int tl_crc_hw = 0;

static void tl_crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        tl_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            tl_crc_table[t][i] = (tl_crc_table[t - 1][i] >> 8) ^ tl_crc_table[0][tl_crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    tl_crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t tl_crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = tl_crc_table[7][lo & 0xff] ^ tl_crc_table[6][(lo >> 8) & 0xff] ^ tl_crc_table[5][(lo >> 16) & 0xff]
            ^ tl_crc_table[4][lo >> 24] ^ tl_crc_table[3][p[4]] ^ tl_crc_table[2][p[5]] ^ tl_crc_table[1][p[6]]
            ^ tl_crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ tl_crc_table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t tl_crc_hw_run(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = (uint32_t)~crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

/* crc32c.crc32c(data, crc): the CRC-32C of data, continuing from crc. */
static uint32_t tl_crc32c(uint32_t crc, const unsigned char *p, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (tl_crc_hw) return tl_crc_hw_run(crc, p, n);
#endif
    return tl_crc_sw(crc, p, n);
}

/* ---- the leaf hash ------------------------------------------------------------- */

static void tl_leaf_hash(const unsigned char *p, size_t n, unsigned char out[32]) {
    static const unsigned char zero = 0;
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &zero, 1);
    SHA256_Update(&ctx, p, n);
    SHA256_Final(out, &ctx);
}

/* ---- MessagePack, the few types the record layout uses ------------------------ */

typedef struct {
    const unsigned char *p, *end;
} tl_mp;

static inline int tl_need(tl_mp *m, size_t n) { return (size_t)(m->end - m->p) >= n; }

static inline uint32_t tl_be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t tl_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A map header; 0 on success. */
static int tl_map(tl_mp *m, uint32_t *n) {
    if (!tl_need(m, 1)) return -1;
    unsigned char b = *m->p;
    if ((b & 0xf0) == 0x80) { *n = b & 0x0f; m->p += 1; return 0; }
    if (b == 0xde && tl_need(m, 3)) { *n = tl_be16(m->p + 1); m->p += 3; return 0; }
    if (b == 0xdf && tl_need(m, 5)) { *n = tl_be32(m->p + 1); m->p += 5; return 0; }
    return -1;
}

static int tl_array(tl_mp *m, uint32_t *n) {
    if (!tl_need(m, 1)) return -1;
    unsigned char b = *m->p;
    if ((b & 0xf0) == 0x90) { *n = b & 0x0f; m->p += 1; return 0; }
    if (b == 0xdc && tl_need(m, 3)) { *n = tl_be16(m->p + 1); m->p += 3; return 0; }
    if (b == 0xdd && tl_need(m, 5)) { *n = tl_be32(m->p + 1); m->p += 5; return 0; }
    return -1;
}

/* The body of a str or bin whose header (h bytes) said len: *s, *n and past it. */
static inline int tl_take(tl_mp *m, size_t h, uint32_t len, const unsigned char **s, uint32_t *n) {
    if (!tl_need(m, h + (size_t)len)) return -1;
    *s = m->p + h;
    *n = len;
    m->p += h + len;
    return 0;
}

/* A str (raw bytes, not yet checked as UTF-8). */
static int tl_str(tl_mp *m, const char **s, uint32_t *n) {
    if (!tl_need(m, 1)) return -1;
    unsigned char b = *m->p;
    size_t h;
    uint32_t len;
    if ((b & 0xe0) == 0xa0) { len = b & 0x1f; h = 1; }
    else if (b == 0xd9 && tl_need(m, 2)) { len = m->p[1]; h = 2; }
    else if (b == 0xda && tl_need(m, 3)) { len = tl_be16(m->p + 1); h = 3; }
    else if (b == 0xdb && tl_need(m, 5)) { len = tl_be32(m->p + 1); h = 5; }
    else return -1;
    return tl_take(m, h, len, (const unsigned char **)s, n);
}

static int tl_bin(tl_mp *m, const unsigned char **s, uint32_t *n) {
    if (!tl_need(m, 1)) return -1;
    unsigned char b = *m->p;
    size_t h;
    uint32_t len;
    if (b == 0xc4 && tl_need(m, 2)) { len = m->p[1]; h = 2; }
    else if (b == 0xc5 && tl_need(m, 3)) { len = tl_be16(m->p + 1); h = 3; }
    else if (b == 0xc6 && tl_need(m, 5)) { len = tl_be32(m->p + 1); h = 5; }
    else return -1;
    return tl_take(m, h, len, s, n);
}

/* An integer that fits in int64 (a uint64 above INT64_MAX answers -1: the caller falls
 * back to Python, which has arbitrary-size ints). */
static int tl_int(tl_mp *m, int64_t *v) {
    if (!tl_need(m, 1)) return -1;
    const unsigned char *p = m->p;
    unsigned char b = p[0];
    if (b <= 0x7f) { *v = b; m->p += 1; return 0; }
    if (b >= 0xe0) { *v = (int8_t)b; m->p += 1; return 0; }
    switch (b) {
    case 0xcc: if (!tl_need(m, 2)) return -1; *v = p[1]; m->p += 2; return 0;
    case 0xcd: if (!tl_need(m, 3)) return -1; *v = tl_be16(p + 1); m->p += 3; return 0;
    case 0xce: if (!tl_need(m, 5)) return -1; *v = tl_be32(p + 1); m->p += 5; return 0;
    case 0xcf: {
        if (!tl_need(m, 9)) return -1;
        uint64_t u = (uint64_t)tl_be32(p + 1) << 32 | tl_be32(p + 5);
        if (u > (uint64_t)INT64_MAX) return -1;
        *v = (int64_t)u; m->p += 9; return 0;
    }
    case 0xd0: if (!tl_need(m, 2)) return -1; *v = (int8_t)p[1]; m->p += 2; return 0;
    case 0xd1: if (!tl_need(m, 3)) return -1; *v = (int16_t)tl_be16(p + 1); m->p += 3; return 0;
    case 0xd2: if (!tl_need(m, 5)) return -1; *v = (int32_t)tl_be32(p + 1); m->p += 5; return 0;
    case 0xd3: {
        if (!tl_need(m, 9)) return -1;
        uint64_t u = (uint64_t)tl_be32(p + 1) << 32 | tl_be32(p + 5);
        *v = (int64_t)u; m->p += 9; return 0;
    }
    }
    return -1;
}

/* The next item is the str `lit`. */
static int tl_key(tl_mp *m, const char *lit) {
    const char *s;
    uint32_t n;
    size_t want = strlen(lit);
    if (tl_str(m, &s, &n) || n != want || memcmp(s, lit, want)) return -1;
    return 0;
}

/* ---- the record layout ---------------------------------------------------------- */

#define TL_MAX_SIGS 128  /* core.bounds.MAX_SIGNATURES_PER_ENVELOPE, checked at import */

typedef struct { const char *s; uint32_t n; } tl_sv;

/* A v2 record (_record_v2.h) stores no payload, key ids as raw bytes and the digest as raw
 * bytes: its reader re-derives them into this scratch space, and the tl_rec fields point
 * here. A payload that does not fit makes the reader answer "not the fast layout". */
#define TL_V2_PAYLOAD_MAX 2048
typedef struct {
    unsigned char payload[TL_V2_PAYLOAD_MAX];
    char keyid[TL_MAX_SIGS][64];
    char digest[71];
} tl_v2_scratch;

typedef struct {
    int64_t log_time;
    int has_source;
    tl_sv topic;
    int64_t partition, src_offset;
    const unsigned char *payload;
    uint32_t payload_len;
    uint32_t nsigs;
    tl_sv keyid[TL_MAX_SIGS];
    const unsigned char *sig[TL_MAX_SIGS];
    uint32_t sig_len[TL_MAX_SIGS];
    tl_sv repo, role, tag, digest;
    int64_t version, issued_at, size, expires;
    tl_v2_scratch v2;
} tl_rec;

/* 0: `body` is a v1 record of an ImageSigned event in the canonical layout, parsed into
 * *r; -1: anything else (the caller decodes it in Python). */
static int tl_parse_image_signed(const unsigned char *body, size_t len, tl_rec *r) {
    tl_mp m = {body, body + len};
    uint32_t n;
    const unsigned char *env;
    uint32_t env_len;
    if (tl_map(&m, &n) || n != 3) return -1;
    if (tl_key(&m, "log_time") || tl_int(&m, &r->log_time) || r->log_time < 0) return -1;
    if (tl_key(&m, "envelope") || tl_bin(&m, &env, &env_len)) return -1;
    if (tl_key(&m, "source")) return -1;
    if (m.p < m.end && *m.p == 0xc0) {
        r->has_source = 0;
        m.p++;
    } else {
        if (tl_map(&m, &n) || n != 3) return -1;
        if (tl_key(&m, "topic") || tl_str(&m, &r->topic.s, &r->topic.n)) return -1;
        if (tl_key(&m, "partition") || tl_int(&m, &r->partition) || r->partition < 0) return -1;
        if (tl_key(&m, "offset") || tl_int(&m, &r->src_offset) || r->src_offset < 0) return -1;
        r->has_source = 1;
    }
    if (m.p != m.end) return -1;

    tl_mp e = {env, env + env_len};
    if (tl_map(&e, &n) || n != 2) return -1;
    if (tl_key(&e, "payload") || tl_bin(&e, &r->payload, &r->payload_len)) return -1;
    if (tl_key(&e, "signatures") || tl_array(&e, &r->nsigs) || r->nsigs > TL_MAX_SIGS) return -1;
    for (uint32_t i = 0; i < r->nsigs; i++) {
        if (tl_map(&e, &n) || n != 2) return -1;
        if (tl_key(&e, "keyid") || tl_str(&e, &r->keyid[i].s, &r->keyid[i].n)) return -1;
        if (tl_key(&e, "sig") || tl_bin(&e, &r->sig[i], &r->sig_len[i])) return -1;
    }
    if (e.p != e.end) return -1;

    tl_mp v = {r->payload, r->payload + r->payload_len};
    if (tl_map(&v, &n) || n != 9) return -1;
    if (tl_key(&v, "kind") || tl_key(&v, "ImageSigned")) return -1;
    if (tl_key(&v, "repo") || tl_str(&v, &r->repo.s, &r->repo.n)) return -1;
    if (tl_key(&v, "version") || tl_int(&v, &r->version)) return -1;
    if (tl_key(&v, "issued_at") || tl_int(&v, &r->issued_at)) return -1;
    if (tl_key(&v, "role") || tl_str(&v, &r->role.s, &r->role.n)) return -1;
    if (tl_key(&v, "tag") || tl_str(&v, &r->tag.s, &r->tag.n)) return -1;
    if (tl_key(&v, "digest") || tl_str(&v, &r->digest.s, &r->digest.n)) return -1;
    if (tl_key(&v, "size") || tl_int(&v, &r->size)) return -1;
    if (tl_key(&v, "expires") || tl_int(&v, &r->expires)) return -1;
    if (v.p != v.end) return -1;
    return 0;
}

/* ---- names (core.names TAG_RE and DIGEST_RE, full match over ASCII) ------------- */

static inline int tl_tag_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,MAX_TAG_LEN-1} */
static int tl_is_tag(tl_sv t, uint32_t max_len) {
    if (t.n < 1 || t.n > max_len || !tl_tag_char((unsigned char)t.s[0])) return 0;
    for (uint32_t i = 1; i < t.n; i++) {
        unsigned char c = (unsigned char)t.s[i];
        if (!(tl_tag_char(c) || c == '.' || c == '-')) return 0;
    }
    return 1;
}

/* sha256:[0-9a-f]{64}: a table, no branch per character (hex digits are random: a
 * branch per character would mispredict on about every other one) */
static const unsigned char tl_hex_lower[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
};

static int tl_is_digest(tl_sv d) {
    if (d.n != 71 || memcmp(d.s, "sha256:", 7)) return 0;
    unsigned ok = 1;
    for (uint32_t i = 7; i < 71; i++) ok &= tl_hex_lower[(unsigned char)d.s[i]];
    return (int)ok;
}

#endif
