/* tests/test_safetensors.c - the safetensors reader and writer: bit-exact
 * round trips, the writer's bytes against the reference implementation's,
 * every kind of malformed file refused with a message naming the file and
 * the tensor, the float16/bfloat16/float8 conversions on known values, and
 * the atomic write (a failed write never touches the existing checkpoint and
 * leaves no temporary file behind).
 */
#include "rl_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rl_safetensors.h"

/* Every file of this suite lives here (the build tree, never the sources). */
#define ST_DIR RLHF_TEST_TMP "/st_tmp"

static const char *path_of(char *buf, const char *name) {
    snprintf(buf, 512, "%s/%s", ST_DIR, name);
    return buf;
}

/* Bits of a float / double, to compare NaNs and signed zeros exactly. */
static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void write_bytes(const char *path, const void *buf, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* The whole file (caller frees), or NULL when it does not exist. */
static uint8_t *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

static void le64(uint8_t *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

/* A file with the given header (its real length) and data_len bytes 0,1,2... */
static void craft(const char *path, const char *header, size_t data_len) {
    size_t h = strlen(header), n = 8 + h + data_len;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    le64(buf, h);
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_len; i++) buf[8 + h + i] = (uint8_t)i;
    write_bytes(path, buf, n);
    free(buf);
}

/* Opens path, which must be refused with RL_ERR_IO and a message that names
 * the file and contains `needle`. */
static void assert_refused(const char *path, const char *needle) {
    char err[1024];
    rl_st_file *f = (rl_st_file *)0x1;
    rl_status st = rl_st_open(path, &f, err, sizeof err);
    if (st != RL_ERR_IO) fail_msg("%s: expected RL_ERR_IO, got %d (%s)", path, (int)st, err);
    assert_null(f);
    assert_contains(err, path);
    assert_contains(err, needle);
}

/* No "<base>.tmp.*" left in ST_DIR. */
static void assert_no_tmp(const char *base) {
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    DIR *d = opendir(ST_DIR);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) fail_msg("temporary file %s was left behind", e->d_name);
    closedir(d);
}

/* Makes ST_DIR and clears temporary files a crashed earlier run may have
 * left, so assert_no_tmp sees only what this run did. */
static int group_setup(void **state) {
    (void)state;
    if (mkdir(ST_DIR, 0777) != 0 && errno != EEXIST) return -1;
    DIR *d = opendir(ST_DIR);
    if (!d) return -1;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".tmp.")) continue;
        snprintf(p, sizeof p, "%s/%s", ST_DIR, e->d_name);
        unlink(p);
    }
    closedir(d);
    return 0;
}

/* ---- 16-bit floats ------------------------------------------------------ */

static void test_f16_known_values(void **state) {
    (void)state;
    assert_int_equal(rl_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(rl_f32_to_f16(-2.5f), 0xc100);
    assert_int_equal(rl_f32_to_f16(65504.0f), 0x7bff);      /* largest finite */
    assert_int_equal(rl_f32_to_f16(0x1p-24f), 0x0001);      /* smallest subnormal */
    assert_int_equal(rl_f32_to_f16(1023 * 0x1p-24f), 0x03ff); /* largest subnormal */
    assert_int_equal(rl_f32_to_f16(0x1p-14f), 0x0400);      /* smallest normal */
    assert_int_equal(rl_f32_to_f16(0.1f), 0x2e66);
    assert_int_equal(rl_f32_to_f16(1.0f / 3), 0x3555);
    assert_int_equal(rl_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(rl_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(rl_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(rl_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t n = rl_f32_to_f16(NAN);
    assert_int_equal(n & 0x7c00, 0x7c00);
    assert_true((n & 0x3ff) != 0);
    /* a signaling NaN whose payload sits only in the low bits must not become inf */
    assert_int_equal(rl_f32_to_f16(bits_f32(0x7f800001u)), 0x7e00);
    assert_int_equal(rl_f32_to_f16(bits_f32(0xff800001u)), 0xfe00);

    assert_true(rl_f16_to_f32(0x3c00) == 1.0f);
    assert_true(rl_f16_to_f32(0xc100) == -2.5f);
    assert_true(rl_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(rl_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(rl_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    assert_true(rl_f16_to_f32(0x8001) == -0x1p-24f);
    assert_true(rl_f16_to_f32(0x0400) == 0x1p-14f);
    assert_int_equal(f32_bits(rl_f16_to_f32(0x8000)), 0x80000000u); /* -0 keeps its sign */
    assert_true(isinf(rl_f16_to_f32(0x7c00)) && rl_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(rl_f16_to_f32(0xfc00)) && rl_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(rl_f16_to_f32(0x7e00)));
    assert_true(isnan(rl_f16_to_f32(0x7c01))); /* signaling: still NaN */
}

static void test_f16_rounding(void **state) {
    (void)state;
    assert_int_equal(rl_f32_to_f16(65519.0f), 0x7bff);       /* below the halfway point */
    assert_int_equal(rl_f32_to_f16(65520.0f), 0x7c00);       /* halfway to 2^16: ties to even = inf */
    assert_int_equal(rl_f32_to_f16(1e6f), 0x7c00);
    assert_int_equal(rl_f32_to_f16(-1e6f), 0xfc00);
    assert_int_equal(rl_f32_to_f16(0x1p-25f), 0x0000);       /* half the smallest subnormal: to even (0) */
    assert_int_equal(rl_f32_to_f16(nextafterf(0x1p-25f, 1)), 0x0001);
    assert_int_equal(rl_f32_to_f16(3 * 0x1p-25f), 0x0002);   /* 1.5 ulp: to even (2) */
    assert_int_equal(rl_f32_to_f16(5 * 0x1p-25f), 0x0002);   /* 2.5 ulp: to even (2) */
    assert_int_equal(rl_f32_to_f16(-0x1p-26f), 0x8000);      /* underflow keeps the sign */
    assert_int_equal(rl_f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400); /* 1023.5 ulp rounds up into the normals */
    assert_int_equal(rl_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie: to even */
    assert_int_equal(rl_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(rl_f32_to_f16(nextafterf(1.0f + 0x1p-11f, 2)), 0x3c01);
    assert_int_equal(rl_f32_to_f16(FLT_MIN), 0x0000);
    assert_int_equal(rl_f32_to_f16(FLT_MAX), 0x7c00);
}

/* Every half: widening matches the definition, and narrowing gives it back. */
static void test_f16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        float f = rl_f16_to_f32((uint16_t)h);
        if (e == 0x1f && m) {
            if (!isnan(f)) fail_msg("0x%04x should be NaN", h);
            assert_int_equal(rl_f32_to_f16(f), h | 0x200); /* quietened, payload kept */
            continue;
        }
        double ref = e == 0x1f ? INFINITY : e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
        if (h & 0x8000) ref = -ref;
        if ((double)f != ref) fail_msg("f16 0x%04x -> %.9g, expected %.9g", h, (double)f, ref);
        if (rl_f32_to_f16(f) != h) fail_msg("f16 0x%04x does not survive a round trip (0x%04x)", h, rl_f32_to_f16(f));
    }
}

#ifdef __FLT16_MAX__
/* Narrowing agrees with the compiler's own float -> _Float16 conversion on a
 * spread of bit patterns (every exponent, random mantissas) plus every float
 * within a few ulps of each half-way point between adjacent halves. */
static void test_f16_matches_compiler(void **state) {
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < (1 << 18); i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint32_t x = (uint32_t)s;
        float f = bits_f32(x);
        if (isnan(f)) continue;
        _Float16 r = (_Float16)f;
        uint16_t want;
        memcpy(&want, &r, 2);
        if (rl_f32_to_f16(f) != want) fail_msg("0x%08x: 0x%04x, compiler 0x%04x", x, rl_f32_to_f16(f), want);
    }
    for (uint32_t h = 0; h < 0x7c00u; h++) {
        float mid = (rl_f16_to_f32((uint16_t)h) + rl_f16_to_f32((uint16_t)(h + 1))) / 2; /* exact in float */
        for (int d = -2; d <= 2; d++) {
            float f = bits_f32(f32_bits(mid) + (uint32_t)d);
            _Float16 r = (_Float16)f;
            uint16_t want;
            memcpy(&want, &r, 2);
            if (rl_f32_to_f16(f) != want) fail_msg("%a: 0x%04x, compiler 0x%04x", (double)f, rl_f32_to_f16(f), want);
        }
    }
}
#endif

static void test_bf16_values(void **state) {
    (void)state;
    assert_int_equal(rl_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(rl_f32_to_bf16(-2.5f), 0xc020);
    assert_int_equal(rl_f32_to_bf16(3.140625f), 0x4049);    /* exact in bf16 */
    assert_int_equal(rl_f32_to_bf16(3.14159265f), 0x4049);  /* pi rounds to it */
    assert_int_equal(rl_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie: to even */
    assert_int_equal(rl_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(rl_f32_to_bf16(nextafterf(1.0f + 0x1p-8f, 2)), 0x3f81);
    assert_int_equal(rl_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(rl_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(rl_f32_to_bf16(FLT_MAX), 0x7f80);      /* overflows to inf */
    assert_int_equal(rl_f32_to_bf16(0x1p-133f), 0x0001);    /* smallest bf16 subnormal */
    assert_int_equal(rl_f32_to_bf16(0x1p-149f), 0x0000);
    assert_int_equal(rl_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(rl_f32_to_bf16(NAN) & 0x7fc0, 0x7fc0);
    assert_int_equal(rl_f32_to_bf16(bits_f32(0x7f800001u)), 0x7fc0); /* not inf */
    assert_true(rl_bf16_to_f32(0x4049) == 3.140625f);
    assert_true(rl_bf16_to_f32(0xc020) == -2.5f);
    assert_true(rl_bf16_to_f32(0x0001) == 0x1p-133f);
    assert_true(isinf(rl_bf16_to_f32(0x7f80)));
    assert_true(isnan(rl_bf16_to_f32(0x7fc0)));
    for (uint32_t b = 0; b < 0x10000u; b++) { /* every non-NaN bf16 survives a round trip */
        float f = rl_bf16_to_f32((uint16_t)b);
        if (!isnan(f) && rl_f32_to_bf16(f) != b) fail_msg("bf16 0x%04x -> 0x%04x", b, rl_f32_to_bf16(f));
    }
    float src[3] = {1.0f, -2.5f, 65504.0f}, back[3];
    uint16_t h[3];
    rl_f32_to_f16_array(src, h, 3);
    rl_f16_to_f32_array(h, back, 3);
    assert_memory_equal(src, back, sizeof src);
    rl_f32_to_bf16_array(src, h, 3);
    assert_int_equal(h[1], 0xc020);
    rl_bf16_to_f32_array(h, back, 3);
    assert_true(back[2] == 65536.0f); /* 65504 needs 11 significant bits; bf16 has 8 */
}

/* ---- writer output against the reference implementation ----------------- */

/* Bytes the reference implementation's own tests expect (safetensors
 * tensor.rs: test_serialization, test_empty). */
static void test_writer_matches_reference_bytes(void **state) {
    (void)state;
    char p[512];
    static const uint8_t attn[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
        58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
        101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
        0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    static const uint8_t empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const uint8_t empty_meta[] = {
        40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
        95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
        116, 34, 125, 125, 32, 32, 32, 32, 32};
    float data[6] = {0, 1, 2, 3, 4, 5};
    size_t n;
    uint8_t *got;

    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "attn.0", RL_ST_F32, 3, (int64_t[]){1, 2, 3}, data, sizeof data), RL_OK);
    assert_int_equal(rl_st_writer_write(w, path_of(p, "ref_attn.safetensors")), RL_OK);
    rl_st_writer_free(w);
    got = read_all(p, &n);
    assert_int_equal(n, sizeof attn);
    assert_memory_equal(got, attn, sizeof attn);
    free(got);

    w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_write(w, path_of(p, "ref_empty.safetensors")), RL_OK);
    got = read_all(p, &n);
    assert_int_equal(n, sizeof empty);
    assert_memory_equal(got, empty, sizeof empty);
    free(got);
    assert_int_equal(rl_st_writer_set_meta(w, "framework", "pt"), RL_OK);
    assert_int_equal(rl_st_writer_write(w, path_of(p, "ref_empty_meta.safetensors")), RL_OK);
    rl_st_writer_free(w);
    got = read_all(p, &n);
    assert_int_equal(n, sizeof empty_meta);
    assert_memory_equal(got, empty_meta, sizeof empty_meta);
    free(got);
}

/* "__metadata__" first with sorted keys, then tensors by dtype size (largest
 * first) and name; data in the same order; header padded with spaces to 8. */
static void test_header_sorted_and_padded(void **state) {
    (void)state;
    char p[512];
    float b[1] = {1}, a2[2] = {2, 3};
    double c[1] = {4};
    uint16_t a[1] = {0x3c00};
    int32_t i1[1] = {7};
    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "b", RL_ST_F32, 1, (int64_t[]){1}, b, 4), RL_OK);
    assert_int_equal(rl_st_writer_add(w, "a", RL_ST_F16, 1, (int64_t[]){1}, a, 2), RL_OK);
    assert_int_equal(rl_st_writer_add(w, "c", RL_ST_F64, 1, (int64_t[]){1}, c, 8), RL_OK);
    assert_int_equal(rl_st_writer_add(w, "i", RL_ST_I32, 1, (int64_t[]){1}, i1, 4), RL_OK);
    assert_int_equal(rl_st_writer_add(w, "a2", RL_ST_F32, 1, (int64_t[]){2}, a2, 8), RL_OK);
    assert_int_equal(rl_st_writer_set_meta(w, "z", "1"), RL_OK);
    assert_int_equal(rl_st_writer_set_meta(w, "a", "old"), RL_OK);
    assert_int_equal(rl_st_writer_set_meta(w, "a", "2"), RL_OK); /* replaces */
    assert_int_equal(rl_st_writer_write(w, path_of(p, "sorted.safetensors")), RL_OK);
    rl_st_writer_free(w);

    static const char want[] =
        "{\"__metadata__\":{\"a\":\"2\",\"z\":\"1\"},"
        "\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
        "\"a2\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[20,24]},"
        "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[24,26]}}";
    size_t n, wl = strlen(want);
    uint8_t *got = read_all(p, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | got[i];
    assert_int_equal(hl % 8, 0);
    assert_true(hl >= wl && hl < wl + 8);
    assert_memory_equal(got + 8, want, wl);
    for (size_t i = wl; i < hl; i++) assert_int_equal(got[8 + i], ' ');
    assert_int_equal(n, 8 + hl + 26);
    const uint8_t *d = got + 8 + hl;
    assert_memory_equal(d, c, 8);
    assert_memory_equal(d + 8, a2, 8);
    assert_memory_equal(d + 16, b, 4);
    assert_memory_equal(d + 20, i1, 4);
    assert_memory_equal(d + 24, a, 2);
    free(got);
}

/* ---- round trip ----------------------------------------------------------- */

static void test_roundtrip_bit_exact(void **state) {
    (void)state;
    char p1[512], p2[512], err[1024];
    float f32[6] = {1.5f, -0.0f, INFINITY, FLT_MIN / 4, 3.25f, 0};
    f32[5] = bits_f32(0x7fa00123u); /* a signaling NaN with a payload: must come back as is */
    double f64[4] = {M_PI, -1e-310, DBL_MAX, -0.0};
    int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
    uint16_t f16[3] = {0x3c00, 0xc100, 0x0001};  /* 1, -2.5, 2^-24 */
    uint16_t bf16[4] = {0x4049, 0x3f80, 0xff80, 0x0001}; /* 3.140625, 1, -inf, 2^-133 */
    int64_t i64[2] = {INT64_MIN, 1234567890123ll};
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    uint8_t bools[3] = {1, 0, 1};
    float scalar = 42.0f;
    static const struct {
        const char *name;
        rl_st_dtype dt;
        int ndim;
        int64_t shape[3];
    } spec[] = {
        {"layer.0.weight", RL_ST_F32, 2, {2, 3}}, {"layer.0.f64", RL_ST_F64, 1, {4}},
        {"ids", RL_ST_I32, 2, {2, 2}},            {"half", RL_ST_F16, 1, {3}},
        {"brain", RL_ST_BF16, 2, {2, 2}},         {"big", RL_ST_I64, 1, {2}},
        {"bytes", RL_ST_U8, 1, {5}},              {"mask", RL_ST_BOOL, 3, {1, 3, 1}},
        {"scalar", RL_ST_F32, 0, {0}},            {"empty", RL_ST_F32, 2, {0, 3}},
    };
    const void *data[] = {f32, f64, i32, f16, bf16, i64, u8, bools, &scalar, NULL};
    size_t bytes[] = {sizeof f32, sizeof f64, sizeof i32, sizeof f16, sizeof bf16, sizeof i64, sizeof u8,
                      sizeof bools, sizeof scalar, 0};
    const size_t nt = sizeof spec / sizeof spec[0];

    rl_st_writer *w = rl_st_writer_new();
    assert_non_null(w);
    for (size_t i = 0; i < nt; i++)
        assert_int_equal(rl_st_writer_add(w, spec[i].name, spec[i].dt, spec[i].ndim, spec[i].shape, data[i], bytes[i]),
                         RL_OK);
    assert_int_equal(rl_st_writer_set_meta(w, "format", "pt"), RL_OK);
    assert_int_equal(rl_st_writer_set_meta(w, "step", "42"), RL_OK);
    assert_int_equal(rl_st_writer_set_meta(w, "note", "gr\xc3\xbc\xc3\x9f \"quoted\"\n"), RL_OK);
    assert_int_equal(rl_st_writer_write(w, path_of(p1, "roundtrip.safetensors")), RL_OK);
    assert_null(rl_st_writer_error(w));
    rl_st_writer_free(w);
    assert_no_tmp("roundtrip.safetensors");

    rl_st_file *f = NULL;
    assert_int_equal(rl_st_open(p1, &f, err, sizeof err), RL_OK);
    assert_string_equal(err, "");
    assert_null(rl_st_error(f));
    assert_string_equal(rl_st_path(f), p1);
    assert_int_equal(rl_st_count(f), nt);
    for (size_t i = 1; i < nt; i++) /* iteration is sorted by name */
        assert_true(strcmp(rl_st_at(f, i - 1)->name, rl_st_at(f, i)->name) < 0);
    assert_null(rl_st_at(f, nt));
    for (size_t i = 0; i < nt; i++) {
        const rl_st_tensor *t = rl_st_find(f, spec[i].name);
        if (!t) fail_msg("tensor %s is missing", spec[i].name);
        assert_string_equal(t->name, spec[i].name);
        assert_int_equal(t->dtype, spec[i].dt);
        assert_int_equal(t->ndim, spec[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d], spec[i].shape[d]);
            numel *= spec[i].shape[d];
        }
        assert_int_equal(t->numel, numel);
        assert_int_equal(t->nbytes, bytes[i]);
        if (bytes[i]) assert_memory_equal(t->data, data[i], bytes[i]);
        /* our writer aligns every tensor to its element size in the file */
        size_t es = rl_st_dtype_size(t->dtype);
        assert_int_equal(t->offset % es, 0);
        assert_int_equal((uintptr_t)t->data % es, 0);
    }
    assert_null(rl_st_find(f, "nope"));
    assert_null(rl_st_find(f, "layer.0"));

    /* metadata, sorted by key */
    assert_int_equal(rl_st_meta_count(f), 3);
    const char *k, *v;
    assert_true(rl_st_meta_at(f, 0, &k, &v));
    assert_string_equal(k, "format");
    assert_string_equal(v, "pt");
    assert_true(rl_st_meta_at(f, 1, &k, &v));
    assert_string_equal(k, "note");
    assert_true(rl_st_meta_at(f, 2, &k, &v));
    assert_string_equal(k, "step");
    assert_false(rl_st_meta_at(f, 3, &k, &v));
    assert_string_equal(rl_st_meta_get(f, "step"), "42");
    assert_string_equal(rl_st_meta_get(f, "note"), "gr\xc3\xbc\xc3\x9f \"quoted\"\n");
    assert_null(rl_st_meta_get(f, "missing"));

    /* converted reads */
    float out32[6];
    double out64[6];
    assert_int_equal(rl_st_read_f32(f, "layer.0.weight", out32, 6), RL_OK);
    assert_memory_equal(out32, f32, sizeof f32); /* bit copy, NaN payload included */
    assert_int_equal(rl_st_read_f64(f, "layer.0.f64", out64, 4), RL_OK);
    assert_memory_equal(out64, f64, sizeof f64);
    assert_int_equal(rl_st_read_f32(f, "half", out32, 3), RL_OK);
    assert_true(out32[0] == 1.0f && out32[1] == -2.5f && out32[2] == 0x1p-24f);
    assert_int_equal(rl_st_read_f64(f, "half", out64, 3), RL_OK);
    assert_true(out64[2] == 0x1p-24);
    assert_int_equal(rl_st_read_f32(f, "brain", out32, 4), RL_OK);
    assert_true(out32[0] == 3.140625f && out32[1] == 1.0f && isinf(out32[2]) && out32[2] < 0 && out32[3] == 0x1p-133f);
    assert_int_equal(rl_st_read_f64(f, "ids", out64, 4), RL_OK);
    assert_true(out64[0] == (double)INT32_MIN && out64[1] == -1 && out64[3] == (double)INT32_MAX);
    assert_int_equal(rl_st_read_f32(f, "layer.0.f64", out32, 4), RL_OK);
    assert_true(out32[0] == (float)M_PI && out32[2] == INFINITY && f32_bits(out32[3]) == 0x80000000u);
    assert_int_equal(rl_st_read_f64(f, "big", out64, 2), RL_OK);
    assert_true(out64[0] == -0x1p63 && out64[1] == 1234567890123.0);
    assert_int_equal(rl_st_read_f32(f, "bytes", out32, 5), RL_OK);
    assert_true(out32[3] == 128.0f && out32[4] == 255.0f);
    assert_int_equal(rl_st_read_f32(f, "mask", out32, 3), RL_OK);
    assert_true(out32[0] == 1.0f && out32[1] == 0.0f);
    assert_int_equal(rl_st_read_f32(f, "scalar", out32, 1), RL_OK);
    assert_true(out32[0] == 42.0f);
    assert_int_equal(rl_st_read_f32(f, "empty", out32, 0), RL_OK);
    assert_null(rl_st_error(f));

    /* what the file holds, written again, is the same file byte for byte */
    w = rl_st_writer_new();
    for (size_t i = 0; i < rl_st_count(f); i++) {
        const rl_st_tensor *t = rl_st_at(f, i);
        assert_int_equal(rl_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes), RL_OK);
    }
    for (size_t i = 0; rl_st_meta_at(f, i, &k, &v); i++) assert_int_equal(rl_st_writer_set_meta(w, k, v), RL_OK);
    assert_int_equal(rl_st_writer_write(w, path_of(p2, "roundtrip2.safetensors")), RL_OK);
    rl_st_writer_free(w);
    rl_st_close(f);
    size_t n1, n2;
    uint8_t *b1 = read_all(p1, &n1), *b2 = read_all(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
}

/* The reader does not depend on our writer's order or alignment: a file
 * with tensors listed out of offset order, an odd header length (so the
 * data is unaligned), null metadata and a zero-size tensor reads fine. */
static void test_reads_foreign_layout(void **state) {
    (void)state;
    char p[512], err[1024];
    const char *hdr = "{\"e\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[10,10]},"
                      "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]},\"__metadata__\":null,"
                      "\"z\":{\"data_offsets\":[0,8],\"shape\":[2],\"dtype\":\"F32\"}}\n\t  ";
    assert_int_equal(strlen(hdr) % 2, 1);
    size_t h = strlen(hdr);
    uint8_t buf[512];
    le64(buf, h);
    memcpy(buf + 8, hdr, h);
    float z[2] = {-1.25f, 8.0f};
    uint16_t a = 0x3555;
    memcpy(buf + 8 + h, z, 8);
    memcpy(buf + 8 + h + 8, &a, 2);
    write_bytes(path_of(p, "foreign.safetensors"), buf, 8 + h + 10);
    rl_st_file *f;
    assert_int_equal(rl_st_open(p, &f, err, sizeof err), RL_OK);
    assert_int_equal(rl_st_count(f), 3);
    assert_int_equal(rl_st_meta_count(f), 0);
    assert_string_equal(rl_st_at(f, 0)->name, "a");
    assert_int_equal(rl_st_find(f, "z")->offset, 0);
    assert_true((uintptr_t)rl_st_find(f, "z")->data % 4 != 0); /* really unaligned */
    float out[2];
    assert_int_equal(rl_st_read_f32(f, "z", out, 2), RL_OK);
    assert_true(out[0] == -1.25f && out[1] == 8.0f);
    assert_int_equal(rl_st_read_f32(f, "a", out, 1), RL_OK);
    assert_true(out[0] == rl_f16_to_f32(0x3555));
    assert_int_equal(rl_st_find(f, "e")->numel, 0);
    rl_st_close(f);

    /* no tensors at all is a valid (empty) checkpoint */
    craft(path_of(p, "empty.safetensors"), "{}", 0);
    assert_int_equal(rl_st_open(p, &f, err, sizeof err), RL_OK);
    assert_int_equal(rl_st_count(f), 0);
    assert_null(rl_st_find(f, "x"));
    assert_null(rl_st_meta_get(f, "x"));
    rl_st_close(f);
}

/* F8 widening, checked through the reader (the only way in). */
static void test_f8_read(void **state) {
    (void)state;
    char p[512], err[1024];
    uint8_t e4m3[7] = {0x38, 0x01, 0x7e, 0x7f, 0xb8, 0x08, 0x00}; /* 1, 2^-9, 448, nan, -1, 2^-6, 0 */
    uint8_t e5m2[5] = {0x3c, 0x7c, 0x01, 0xc2, 0x7e};             /* 1, inf, 2^-16, -3, nan */
    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "e4m3", RL_ST_F8_E4M3, 1, (int64_t[]){7}, e4m3, 7), RL_OK);
    assert_int_equal(rl_st_writer_add(w, "e5m2", RL_ST_F8_E5M2, 1, (int64_t[]){5}, e5m2, 5), RL_OK);
    assert_int_equal(rl_st_writer_write(w, path_of(p, "f8.safetensors")), RL_OK);
    rl_st_writer_free(w);
    rl_st_file *f;
    assert_int_equal(rl_st_open(p, &f, err, sizeof err), RL_OK);
    float o[7];
    assert_int_equal(rl_st_read_f32(f, "e4m3", o, 7), RL_OK);
    assert_true(o[0] == 1.0f && o[1] == 0x1p-9f && o[2] == 448.0f && isnan(o[3]) && o[4] == -1.0f &&
                o[5] == 0x1p-6f && o[6] == 0.0f);
    assert_int_equal(rl_st_read_f32(f, "e5m2", o, 5), RL_OK);
    assert_true(o[0] == 1.0f && isinf(o[1]) && o[2] == 0x1p-16f && o[3] == -3.0f && isnan(o[4]));
    rl_st_close(f);
}

static void test_read_errors(void **state) {
    (void)state;
    char p[512], err[1024];
    float v[6] = {0};
    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "w", RL_ST_F32, 2, (int64_t[]){2, 3}, v, sizeof v), RL_OK);
    assert_int_equal(rl_st_writer_write(w, path_of(p, "readerr.safetensors")), RL_OK);
    rl_st_writer_free(w);
    rl_st_file *f;
    assert_int_equal(rl_st_open(p, &f, err, sizeof err), RL_OK);
    float out[8];
    assert_int_equal(rl_st_read_f32(f, "w", out, 5), RL_ERR_ARG);
    assert_contains(rl_st_error(f), "readerr.safetensors: rl_st_read_f32: tensor 'w' (F32 [2, 3]) has 6 elements, but room for 5 was given");
    assert_int_equal(rl_st_read_f64(f, "nope", (double *)out, 1), RL_ERR_ARG);
    assert_contains(rl_st_error(f), "rl_st_read_f64: no tensor named 'nope'");
    assert_int_equal(rl_st_read_f32(f, "w", NULL, 6), RL_ERR_ARG);
    rl_st_close(f);

    assert_int_equal(rl_st_open(NULL, &f, err, sizeof err), RL_ERR_ARG);
    assert_contains(err, "must not be NULL");
    assert_int_equal(rl_st_open(p, NULL, NULL, 0), RL_ERR_ARG);
}

/* ---- malformed files ------------------------------------------------------- */

static void test_refuses_bad_lengths(void **state) {
    (void)state;
    char p[512];
    write_bytes(path_of(p, "zero.safetensors"), "", 0);
    assert_refused(p, "file is 0 bytes, shorter than the 8-byte header length");
    write_bytes(path_of(p, "five.safetensors"), "\x02\0\0\0\0", 5);
    assert_refused(p, "file is 5 bytes, shorter than the 8-byte header length");

    uint8_t buf[18] = {0};
    le64(buf, 1000);
    memcpy(buf + 8, "{}        ", 10);
    write_bytes(path_of(p, "long_header.safetensors"), buf, sizeof buf);
    assert_refused(p, "header length 1000 exceeds the file size (10 bytes after the 8-byte length)");
    le64(buf, UINT64_MAX);
    write_bytes(path_of(p, "huge_header.safetensors"), buf, sizeof buf);
    assert_refused(p, "header length 18446744073709551615 exceeds the file size");
    le64(buf, 11);
    write_bytes(path_of(p, "off_by_one.safetensors"), buf, sizeof buf);
    assert_refused(p, "header length 11 exceeds the file size (10 bytes after the 8-byte length)");
    le64(buf, 0);
    write_bytes(path_of(p, "empty_header.safetensors"), buf, 8);
    assert_refused(p, "header is not valid JSON");

    /* a header length within the file but over the 100 MB sanity limit (sparse file) */
    int fd = open(path_of(p, "absurd.safetensors"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    le64(buf, 100000008);
    assert_int_equal(write(fd, buf, 8), 8);
    assert_int_equal(ftruncate(fd, 8 + 100000008 + 8), 0);
    close(fd);
    assert_refused(p, "header length 100000008 is absurdly large (the limit is 100000000 bytes)");
    unlink(p);

    assert_refused(path_of(p, "does_not_exist.safetensors"), "cannot open: No such file or directory");
    assert_refused(ST_DIR, "not a regular file");
}

typedef struct {
    const char *file, *header;
    size_t data_len;
    const char *needle;
} bad_case;

/* Each: a header, the data section's size, and what the message must say
 * (the file name is checked by assert_refused). */
static const bad_case bad_cases[] = {
    {"not_json", "{\"a\": ", 0, "header is not valid JSON (line 1, column 6)"},
    {"not_json_line2", "{\n  \"a\": ,\n}", 0, "header is not valid JSON (line 2, column 8)"},
    {"array", "[1, 2]", 0, "header is a JSON array, not an object"},
    {"leading_space", " {}", 0, "header must start with '{' (it starts with byte 0x20)"},
    {"bad_utf8", "{\"w\xff\":1}", 0, "header is not valid JSON"},
    {"duplicate", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                  "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "header has a key twice (line 1, column 56): duplicate object key near '\"a\"'"},
    {"entry_not_object", "{\"w\":5}", 0, "tensor 'w': entry is a JSON integer, not an object"},
    {"missing_dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"dtype\""},
    {"missing_shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"shape\""},
    {"missing_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': missing \"data_offsets\""},
    {"unknown_field", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"strides\":[1]}}", 4,
     "tensor 'w': unknown field \"strides\""},
    {"unknown_dtype", "{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16,
     "tensor 'w': unknown dtype \"F128\""},
    {"lowercase_dtype", "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'w': unknown dtype \"f32\""},
    {"dtype_not_string", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'w': dtype is a JSON integer, not a string"},
    {"shape_negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0,
     "tensor 'w': shape[1] is -1, not a non-negative integer"},
    {"shape_real", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
     "tensor 'w': shape[0] is 2.5, not a non-negative integer"},
    {"shape_string", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
     "tensor 'w': shape[0] is \"2\", not a non-negative integer"},
    {"shape_not_array", "{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
     "tensor 'w': shape 2 is not an array"},
    {"shape_overflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}", 0,
     "tensor 'w': shape [4294967296, 4294967296, 4] of F32 overflows a 64-bit byte count"},
    {"offsets_one", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
     "tensor 'w': data_offsets [0] is not an array of two integers"},
    {"offsets_three", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
     "tensor 'w': data_offsets [0,4,8] is not an array of two integers"},
    {"offsets_string", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4,
     "tensor 'w': data_offsets [0,\"4\"] is not an array of two integers"},
    {"offsets_real", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
     "is not an array of two integers"},
    {"offsets_negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
     "tensor 'w': data_offsets [-4, 0] are negative"},
    {"offsets_reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
     "tensor 'w': data_offsets [8, 4] have begin > end"},
    {"size_mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
     "tensor 'w': shape [2, 3] of F32 is 24 bytes, but data_offsets [0, 20] hold 20"},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24,
     "tensors 'a' (data_offsets [0, 16]) and 'b' (data_offsets [8, 24]) overlap"},
    {"overlap_same", "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [0, 8]) overlap"},
    {"hole", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24,
     "bytes [8, 16) of the data section, between tensors 'a' and 'b', belong to no tensor (the format forbids holes)"},
    {"hole_at_start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
     "bytes [0, 8) of the data section, before tensor 'a', belong to no tensor"},
    {"trailing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
     "4 trailing bytes after the last tensor 'a' belong to no tensor (data section is 12 bytes, tensors end at 8"},
    {"data_without_tensors", "{}", 8, "8 bytes of data but no tensors"},
    {"meta_not_object", "{\"__metadata__\":\"pt\"}", 0, "__metadata__ is a JSON string, not an object of strings"},
    {"meta_not_string", "{\"__metadata__\":{\"format\":\"pt\",\"step\":42}}", 0,
     "__metadata__ value for key 'step' is a JSON integer, not a string"},
};

static void test_refuses_malformed_headers(void **state) {
    (void)state;
    char p[512], name[128];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        snprintf(name, sizeof name, "bad_%s.safetensors", c->file);
        craft(path_of(p, name), c->header, c->data_len);
        assert_refused(p, c->needle);
        unlink(p);
    }
}

/* The brief's example, verbatim: truncated data names file, tensor, offsets
 * and the data section's real size. */
static void test_refuses_truncated_data(void **state) {
    (void)state;
    char p[512], want[700];
    mkdir(ST_DIR "/trunc", 0777);
    craft(path_of(p, "trunc/model.safetensors"),
          "{\"h.0.attn.c_attn.weight\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[10,20]}}", 16);
    snprintf(want, sizeof want, "%s: tensor 'h.0.attn.c_attn.weight': data_offsets [10, 20] exceed the data section (16 bytes)", p);
    char err[1024];
    rl_st_file *f;
    assert_int_equal(rl_st_open(p, &f, err, sizeof err), RL_ERR_IO);
    assert_string_equal(err, want);

    /* a valid file cut short by one byte */
    float v[4] = {1, 2, 3, 4};
    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "a", RL_ST_F32, 1, (int64_t[]){4}, v, 16), RL_OK);
    assert_int_equal(rl_st_writer_write(w, path_of(p, "cut.safetensors")), RL_OK);
    rl_st_writer_free(w);
    size_t n;
    uint8_t *b = read_all(p, &n);
    write_bytes(p, b, n - 1);
    free(b);
    assert_refused(p, "tensor 'a': data_offsets [0, 16] exceed the data section (15 bytes)");
}

/* ---- writer errors and atomicity --------------------------------------------- */

static const char old_content[] = "the previous checkpoint";

static void put_old(const char *path) { write_bytes(path, old_content, sizeof old_content); }

static void assert_old(const char *path) {
    size_t n;
    uint8_t *b = read_all(path, &n);
    assert_non_null(b);
    assert_int_equal(n, sizeof old_content);
    assert_memory_equal(b, old_content, n);
    free(b);
}

static void test_writer_add_errors(void **state) {
    (void)state;
    char p[512];
    float v[6] = {0};
    path_of(p, "keep.safetensors");
    put_old(p);

    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "ok", RL_ST_F32, 1, (int64_t[]){6}, v, sizeof v), RL_OK);
    assert_int_equal(rl_st_writer_add(w, "w", RL_ST_F32, 2, (int64_t[]){2, 3}, v, 20), RL_ERR_ARG);
    const char *first = "rl_st_writer_add: tensor 'w': shape [2, 3] of F32 is 24 bytes, but 20 were given";
    assert_contains(rl_st_writer_error(w), first);
    /* later adds do not replace the first message, and the writer refuses to write */
    assert_int_equal(rl_st_writer_add(w, "x", RL_ST_F32, 1, (int64_t[]){-1}, v, 0), RL_ERR_ARG);
    assert_contains(rl_st_writer_error(w), first);
    assert_int_equal(rl_st_writer_write(w, p), RL_ERR_ARG);
    assert_contains(rl_st_writer_error(w), first);
    rl_st_writer_free(w);
    assert_old(p);
    assert_no_tmp("keep.safetensors");

    const struct {
        const char *name;
        rl_st_dtype dt;
        int ndim;
        int64_t dim;
        const void *data;
        size_t nbytes;
        const char *needle;
    } cases[] = {
        {"n", RL_ST_F32, 1, -2, NULL, 0, "tensor 'n': shape[0] is -2 (must be >= 0)"},
        {"__metadata__", RL_ST_F32, 1, 1, v, 4, "'__metadata__' is reserved"},
        {"bad\xff", RL_ST_F32, 1, 1, v, 4, "tensor name is not valid UTF-8"},
        {"d", (rl_st_dtype)99, 1, 1, v, 4, "tensor 'd': dtype 99 is not an rl_st_dtype"},
        {"z", RL_ST_F32, 1, 1, NULL, 4, "tensor 'z': data is NULL"},
        {"m", RL_ST_F32, -1, 1, v, 4, "tensor 'm': -1 dims (must be >= 0)"},
        {"o", RL_ST_F64, 1, INT64_MAX / 4, v, 4, "tensor 'o': shape [2305843009213693951] of F64 overflows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        w = rl_st_writer_new();
        assert_int_equal(rl_st_writer_add(w, cases[i].name, cases[i].dt, cases[i].ndim, &cases[i].dim, cases[i].data,
                                          cases[i].nbytes),
                         RL_ERR_ARG);
        assert_contains(rl_st_writer_error(w), cases[i].needle);
        assert_int_equal(rl_st_writer_write(w, p), RL_ERR_ARG);
        rl_st_writer_free(w);
        assert_old(p);
    }
    w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_set_meta(w, "k", NULL), RL_ERR_ARG);
    assert_contains(rl_st_writer_error(w), "rl_st_writer_set_meta: key and value must not be NULL");
    rl_st_writer_free(w);

    /* a duplicate name is found at write time, before anything is created */
    w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "dup", RL_ST_F32, 1, (int64_t[]){1}, v, 4), RL_OK);
    assert_int_equal(rl_st_writer_add(w, "dup", RL_ST_I32, 1, (int64_t[]){1}, v, 4), RL_OK);
    assert_int_equal(rl_st_writer_write(w, p), RL_ERR_ARG);
    assert_contains(rl_st_writer_error(w), "keep.safetensors: tensor 'dup' was added twice");
    rl_st_writer_free(w);
    assert_old(p);
    assert_no_tmp("keep.safetensors");
}

static void test_write_to_missing_directory(void **state) {
    (void)state;
    char p[512];
    float v = 1;
    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "v", RL_ST_F32, 0, NULL, &v, 4), RL_OK);
    path_of(p, "no_such_dir/ckpt.safetensors");
    assert_int_equal(rl_st_writer_write(w, p), RL_ERR_IO);
    assert_contains(rl_st_writer_error(w), p);
    assert_contains(rl_st_writer_error(w), "cannot create the temporary file");
    assert_contains(rl_st_writer_error(w), "No such file or directory");
    struct stat sb;
    assert_int_equal(stat(ST_DIR "/no_such_dir", &sb), -1);
    /* a write error is not sticky: the same writer still writes elsewhere */
    assert_int_equal(rl_st_writer_write(w, path_of(p, "after_fail.safetensors")), RL_OK);
    rl_st_writer_free(w);
    rl_st_file *f;
    char err[1024];
    assert_int_equal(rl_st_open(p, &f, err, sizeof err), RL_OK);
    assert_int_equal(rl_st_count(f), 1);
    rl_st_close(f);
}

/* rename() onto a directory fails after the whole temp file was written:
 * the temp file must go and the directory stay. */
static void test_write_rename_fails(void **state) {
    (void)state;
    char p[512], inner[512];
    float v[2] = {1, 2};
    mkdir(path_of(p, "is_a_dir"), 0777);
    write_bytes(path_of(inner, "is_a_dir/inside"), "x", 1);
    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "v", RL_ST_F32, 1, (int64_t[]){2}, v, 8), RL_OK);
    assert_int_equal(rl_st_writer_write(w, p), RL_ERR_IO);
    assert_contains(rl_st_writer_error(w), "cannot rename");
    rl_st_writer_free(w);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(stat(inner, &sb), 0);
    assert_no_tmp("is_a_dir");
}

/* A write that fails halfway through the data (the file size limit makes
 * write() fail with EFBIG once 64 KiB are out) leaves the old checkpoint as
 * it was and no temporary file; the same write then succeeds and replaces it. */
static void test_write_fails_midway(void **state) {
    (void)state;
    char p[512];
    path_of(p, "midway.safetensors");
    put_old(p);
    size_t n = 1 << 18;
    float *big = malloc(n * sizeof *big);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) big[i] = (float)i;
    rl_st_writer *w = rl_st_writer_new();
    assert_int_equal(rl_st_writer_add(w, "big", RL_ST_F32, 1, (int64_t[]){(int64_t)n}, big, n * sizeof *big), RL_OK);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    rl_status st = rl_st_writer_write(w, p);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    assert_int_equal(st, RL_ERR_IO);
    assert_contains(rl_st_writer_error(w), "midway.safetensors: writing '");
    assert_contains(rl_st_writer_error(w), "File too large");
    assert_old(p);
    assert_no_tmp("midway.safetensors");

    assert_int_equal(rl_st_writer_write(w, p), RL_OK);
    rl_st_writer_free(w);
    assert_no_tmp("midway.safetensors");
    rl_st_file *f;
    char err[1024];
    assert_int_equal(rl_st_open(p, &f, err, sizeof err), RL_OK);
    const rl_st_tensor *t = rl_st_find(f, "big");
    assert_non_null(t);
    assert_memory_equal(t->data, big, n * sizeof *big);
    rl_st_close(f);
    free(big);
}

static void test_dtype_names(void **state) {
    (void)state;
    rl_st_dtype dt;
    for (int i = 0; i < RL_ST_DTYPE_COUNT; i++) {
        assert_true(rl_st_dtype_parse(rl_st_dtype_name((rl_st_dtype)i), &dt));
        assert_int_equal(dt, i);
        assert_true(rl_st_dtype_size((rl_st_dtype)i) >= 1);
        if (i) assert_true(rl_st_dtype_size((rl_st_dtype)i) >= rl_st_dtype_size((rl_st_dtype)(i - 1)));
    }
    assert_int_equal(rl_st_dtype_size(RL_ST_BF16), 2);
    assert_int_equal(rl_st_dtype_size(RL_ST_U64), 8);
    assert_false(rl_st_dtype_parse("F128", &dt));
    assert_false(rl_st_dtype_parse("f32", &dt));
    assert_string_equal(rl_st_dtype_name((rl_st_dtype)99), "?");
    assert_int_equal(rl_st_dtype_size((rl_st_dtype)99), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_f16_exhaustive),
#ifdef __FLT16_MAX__
        cmocka_unit_test(test_f16_matches_compiler),
#endif
        cmocka_unit_test(test_bf16_values),
        cmocka_unit_test(test_dtype_names),
        cmocka_unit_test(test_writer_matches_reference_bytes),
        cmocka_unit_test(test_header_sorted_and_padded),
        cmocka_unit_test(test_roundtrip_bit_exact),
        cmocka_unit_test(test_reads_foreign_layout),
        cmocka_unit_test(test_f8_read),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_refuses_bad_lengths),
        cmocka_unit_test(test_refuses_malformed_headers),
        cmocka_unit_test(test_refuses_truncated_data),
        cmocka_unit_test(test_writer_add_errors),
        cmocka_unit_test(test_write_to_missing_directory),
        cmocka_unit_test(test_write_rename_fails),
        cmocka_unit_test(test_write_fails_midway),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
