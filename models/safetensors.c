/* models/safetensors.c - safetensors checkpoints: a strict, memory-mapped
 * reader, an atomic writer whose output matches the reference
 * implementation's, and the float16/bfloat16/float8 conversions they need.
 * The header JSON is parsed and written with jansson. See rl_safetensors.h.
 */
#include "rl_safetensors.h"
#include "rl_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian and is used in place: port the loads before using a big-endian host"
#endif

/* The reference implementation refuses headers above 100 MB; a real header
 * (gpt2: ~15 KB, the largest models: a few MB) never comes close, so a bigger
 * length means a corrupt or hostile file. */
#define ST_MAX_HEADER 100000000ull
#define ST_ERR_LEN 1024

/* ---- dtypes ------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} st_dtypes[RL_ST_DTYPE_COUNT] = {
    [RL_ST_BOOL] = {"BOOL", 1},       [RL_ST_U8] = {"U8", 1},     [RL_ST_I8] = {"I8", 1},
    [RL_ST_F8_E5M2] = {"F8_E5M2", 1}, [RL_ST_F8_E4M3] = {"F8_E4M3", 1},
    [RL_ST_I16] = {"I16", 2},         [RL_ST_U16] = {"U16", 2},   [RL_ST_F16] = {"F16", 2},
    [RL_ST_BF16] = {"BF16", 2},       [RL_ST_I32] = {"I32", 4},   [RL_ST_U32] = {"U32", 4},
    [RL_ST_F32] = {"F32", 4},         [RL_ST_F64] = {"F64", 8},   [RL_ST_I64] = {"I64", 8},
    [RL_ST_U64] = {"U64", 8},
};

const char *rl_st_dtype_name(rl_st_dtype dt) {
    return (unsigned)dt < RL_ST_DTYPE_COUNT ? st_dtypes[dt].name : "?";
}

size_t rl_st_dtype_size(rl_st_dtype dt) {
    return (unsigned)dt < RL_ST_DTYPE_COUNT ? st_dtypes[dt].size : 0;
}

int rl_st_dtype_parse(const char *name, rl_st_dtype *out) {
    if (!name) return 0;
    for (int i = 0; i < RL_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, st_dtypes[i].name) == 0) {
            if (out) *out = (rl_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

/* ---- 16-bit and 8-bit floats -------------------------------------------- */

static uint32_t st_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float st_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float rl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return st_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, nan (payload kept) */
    if (exp != 0) return st_bits_f32(sign | ((exp + 112u) << 23) | (man << 13)); /* rebias 15 -> 127 */
    /* zero and subnormals: man * 2^-24 is exact in float (a normal float) */
    return st_bits_f32(st_f32_bits((float)man * 0x1p-24f) | sign);
}

uint16_t rl_f32_to_f16(float f) {
    uint32_t x = st_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* nan: keep it quiet and keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (and inf) rounds to inf */
    if (ax >= 0x38800000u) { /* >= 2^-14: normal in f16 */
        uint32_t r = ax - (112u << 23);
        r += 0xfffu + ((r >> 13) & 1u); /* round to nearest even on the 13 dropped bits */
        return (uint16_t)(sign | (r >> 13));
    }
    /* f16 subnormal (or zero): the result is round(|f| / 2^-24) = m >> shift */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* >= 14 here */
    if (shift > 24u) return sign; /* below 2^-25: rounds to zero */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++; /* q may reach 0x400: the smallest normal */
    return (uint16_t)(sign | q);
}

float rl_bf16_to_f32(uint16_t b) {
    return st_bits_f32((uint32_t)b << 16);
}

uint16_t rl_f32_to_bf16(float f) {
    uint32_t x = st_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1u); /* ties to even; overflow carries into inf */
    return (uint16_t)(x >> 16);
}

void rl_f16_to_f32_array(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = rl_f16_to_f32(src[i]);
}

void rl_f32_to_f16_array(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = rl_f32_to_f16(src[i]);
}

void rl_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = rl_bf16_to_f32(src[i]);
}

void rl_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = rl_f32_to_bf16(src[i]);
}

/* E5M2 is the top byte of an IEEE half, so it widens through it exactly. */
static float st_f8_e5m2_to_f32(uint8_t b) {
    return rl_f16_to_f32((uint16_t)(b << 8));
}

/* OCP E4M3FN: bias 7, subnormals m * 2^-9, no infinities, S.1111.111 is nan. */
static float st_f8_e4m3_to_f32(uint8_t b) {
    int e = (b >> 3) & 0xf, m = b & 7;
    float v;
    if (e == 0xf && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m, -9);
    else v = ldexpf((float)(8 + m), e - 10);
    return (b & 0x80) ? -v : v;
}

/* ---- reader ------------------------------------------------------------- */

typedef struct {
    const char *key, *value;
} st_meta;

struct rl_st_file {
    char *path;
    const uint8_t *base; /* the whole file */
    size_t size;
    int mapped;          /* base is an mmap (else malloc'ed) */
    const uint8_t *data; /* the data section */
    uint64_t data_len;
    json_t *root;        /* owns the names and metadata strings */
    rl_st_tensor *tensors;
    size_t count;
    int64_t *dims;       /* every tensor's shape, back to back */
    st_meta *meta;
    size_t meta_count;
    int has_err;
    char err[ST_ERR_LEN];
};

/* Records "PATH: message" in f and returns status. */
__attribute__((format(printf, 3, 4)))
static rl_status st_fail(rl_st_file *f, rl_status status, const char *fmt, ...) {
    int k = snprintf(f->err, sizeof f->err, "%s: ", f->path);
    if (k < 0 || (size_t)k >= sizeof f->err) k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->err + k, sizeof f->err - (size_t)k, fmt, ap);
    va_end(ap);
    f->has_err = 1;
    return status;
}

static const char *st_json_type(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* A JSON value as compact text for a message (truncated to fit buf). */
static const char *st_json_text(const json_t *j, char *buf, size_t n) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, n, "%s", s ? s : "?");
    free(s);
    return buf;
}

/* "[2, 3]" (truncated to fit buf). */
static const char *st_shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* numel and bytes of a shape; 0 when they do not fit in int64. */
static int st_shape_size(int ndim, const int64_t *shape, size_t elsize, int64_t *numel, int64_t *nbytes) {
    int64_t p = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) p = 0;
    if (p) {
        for (int i = 0; i < ndim; i++) {
            if (p > INT64_MAX / shape[i]) return 0;
            p *= shape[i];
        }
    }
    if (p > INT64_MAX / (int64_t)elsize) return 0;
    *numel = p;
    *nbytes = p * (int64_t)elsize;
    return 1;
}

static uint64_t st_le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

/* Reads exactly n bytes at off; -1 with errno (EIO for a file that shrank). */
static int st_pread_full(int fd, void *buf, size_t n, off_t off) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        p += r;
        off += r;
        n -= (size_t)r;
    }
    return 0;
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const rl_st_tensor *)a)->name, ((const rl_st_tensor *)b)->name);
}

static int st_cmp_meta(const void *a, const void *b) {
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

static int st_cmp_offset(const void *a, const void *b) {
    const rl_st_tensor *x = *(const rl_st_tensor *const *)a, *y = *(const rl_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Maps (or reads) the file and checks the header length. */
static rl_status st_load_file(rl_st_file *f, uint64_t *hlen) {
    /* O_NONBLOCK: a FIFO must not hang the open (it is refused just below) */
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return st_fail(f, RL_ERR_IO, "cannot open: %s", strerror(errno));
    rl_status st = RL_OK;
    struct stat sb;
    uint8_t lenb[8];
    if (fstat(fd, &sb) != 0) {
        st = st_fail(f, RL_ERR_IO, "cannot stat: %s", strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = st_fail(f, RL_ERR_IO, "not a regular file");
        goto done;
    }
    if (sb.st_size < 8) {
        st = st_fail(f, RL_ERR_IO, "file is %lld bytes, shorter than the 8-byte header length (not a safetensors file?)",
                     (long long)sb.st_size);
        goto done;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = st_fail(f, RL_ERR_IO, "file of %lld bytes is too big for this machine's address space", (long long)sb.st_size);
        goto done;
    }
    if (st_pread_full(fd, lenb, 8, 0) != 0) {
        st = st_fail(f, RL_ERR_IO, "cannot read: %s", strerror(errno));
        goto done;
    }
    *hlen = st_le64(lenb);
    uint64_t after = (uint64_t)sb.st_size - 8;
    if (*hlen > after) {
        st = st_fail(f, RL_ERR_IO,
                     "header length %" PRIu64 " exceeds the file size (%" PRIu64 " bytes after the 8-byte length): truncated or not a safetensors file",
                     *hlen, after);
        goto done;
    }
    if (*hlen > ST_MAX_HEADER) {
        st = st_fail(f, RL_ERR_IO, "header length %" PRIu64 " is absurdly large (the limit is %llu bytes)", *hlen,
                     ST_MAX_HEADER);
        goto done;
    }
    f->size = (size_t)sb.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
        f->base = m;
        f->mapped = 1;
    } else { /* e.g. a file system without mmap: read it instead */
        uint8_t *buf = malloc(f->size);
        if (!buf) {
            st = st_fail(f, RL_ERR_MEMORY, "out of memory reading %zu bytes", f->size);
            goto done;
        }
        if (st_pread_full(fd, buf, f->size, 0) != 0) {
            free(buf);
            st = st_fail(f, RL_ERR_IO, "cannot read: %s", strerror(errno));
            goto done;
        }
        f->base = buf;
    }
done:
    close(fd);
    return st;
}

/* Validates one tensor entry into *t (its shape goes to dims). */
static rl_status st_parse_entry(rl_st_file *f, const char *name, json_t *val, rl_st_tensor *t, int64_t *dims) {
    char b1[160], b2[160];
    if (!json_is_object(val))
        return st_fail(f, RL_ERR_IO, "tensor '%s': entry is a JSON %s, not an object", name, st_json_type(val));
    const char *k;
    json_t *v;
    json_object_foreach(val, k, v) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return st_fail(f, RL_ERR_IO, "tensor '%s': unknown field \"%s\" (expected dtype, shape, data_offsets)", name, k);
    }
    json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
           *jo = json_object_get(val, "data_offsets");
    if (!jd) return st_fail(f, RL_ERR_IO, "tensor '%s': missing \"dtype\"", name);
    if (!js) return st_fail(f, RL_ERR_IO, "tensor '%s': missing \"shape\"", name);
    if (!jo) return st_fail(f, RL_ERR_IO, "tensor '%s': missing \"data_offsets\"", name);

    if (!json_is_string(jd))
        return st_fail(f, RL_ERR_IO, "tensor '%s': dtype is a JSON %s, not a string", name, st_json_type(jd));
    if (!rl_st_dtype_parse(json_string_value(jd), &t->dtype))
        return st_fail(f, RL_ERR_IO, "tensor '%s': unknown dtype \"%s\"", name, json_string_value(jd));

    if (!json_is_array(js))
        return st_fail(f, RL_ERR_IO, "tensor '%s': shape %s is not an array", name, st_json_text(js, b1, sizeof b1));
    t->ndim = (int)json_array_size(js);
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return st_fail(f, RL_ERR_IO, "tensor '%s': shape[%d] is %s, not a non-negative integer", name, i,
                           st_json_text(d, b1, sizeof b1));
        dims[i] = json_integer_value(d);
    }
    t->shape = dims;
    int64_t numel, nbytes;
    if (!st_shape_size(t->ndim, dims, rl_st_dtype_size(t->dtype), &numel, &nbytes))
        return st_fail(f, RL_ERR_IO, "tensor '%s': shape %s of %s overflows a 64-bit byte count", name,
                       st_shape_text(t->ndim, dims, b1, sizeof b1), rl_st_dtype_name(t->dtype));
    t->numel = numel;
    t->nbytes = (size_t)nbytes;

    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return st_fail(f, RL_ERR_IO, "tensor '%s': data_offsets %s is not an array of two integers", name,
                       st_json_text(jo, b1, sizeof b1));
    json_int_t begin = json_integer_value(json_array_get(jo, 0)), end = json_integer_value(json_array_get(jo, 1));
    if (begin < 0 || end < 0)
        return st_fail(f, RL_ERR_IO, "tensor '%s': data_offsets [%lld, %lld] are negative", name, (long long)begin,
                       (long long)end);
    if (begin > end)
        return st_fail(f, RL_ERR_IO, "tensor '%s': data_offsets [%lld, %lld] have begin > end", name,
                       (long long)begin, (long long)end);
    if ((int64_t)(end - begin) != nbytes)
        return st_fail(f, RL_ERR_IO,
                       "tensor '%s': shape %s of %s is %lld bytes, but data_offsets [%lld, %lld] hold %lld", name,
                       st_shape_text(t->ndim, dims, b2, sizeof b2), rl_st_dtype_name(t->dtype), (long long)nbytes,
                       (long long)begin, (long long)end, (long long)(end - begin));
    if ((uint64_t)end > f->data_len)
        return st_fail(f, RL_ERR_IO, "tensor '%s': data_offsets [%lld, %lld] exceed the data section (%" PRIu64 " bytes)",
                       name, (long long)begin, (long long)end, f->data_len);
    t->name = name;
    t->offset = (uint64_t)begin;
    t->data = f->data + begin;
    return RL_OK;
}

/* The tensors must tile the data section exactly: no overlaps (two tensors
 * would alias), and no holes or trailing bytes - the spec forbids them and
 * the reference refuses them, and they are where a truncated or spliced file
 * would hide. */
static rl_status st_check_layout(rl_st_file *f) {
    if (f->count == 0) {
        if (f->data_len)
            return st_fail(f, RL_ERR_IO, "%" PRIu64 " bytes of data but no tensors (the format forbids unused data)",
                           f->data_len);
        return RL_OK;
    }
    const rl_st_tensor **by = malloc(f->count * sizeof *by);
    if (!by) return st_fail(f, RL_ERR_MEMORY, "out of memory");
    for (size_t i = 0; i < f->count; i++) by[i] = &f->tensors[i];
    qsort(by, f->count, sizeof *by, st_cmp_offset);
    rl_status st = RL_OK;
    uint64_t pos = 0;
    const rl_st_tensor *prev = NULL;
    for (size_t i = 0; i < f->count && st == RL_OK; i++) {
        const rl_st_tensor *t = by[i];
        uint64_t end = t->offset + t->nbytes;
        if (t->offset < pos)
            st = st_fail(f, RL_ERR_IO, "tensors '%s' (data_offsets [%" PRIu64 ", %" PRIu64 "]) and '%s' (data_offsets [%" PRIu64
                         ", %" PRIu64 "]) overlap", prev->name, prev->offset, pos, t->name, t->offset, end);
        else if (t->offset > pos && prev)
            st = st_fail(f, RL_ERR_IO, "bytes [%" PRIu64 ", %" PRIu64 ") of the data section, between tensors '%s' and '%s', "
                         "belong to no tensor (the format forbids holes)", pos, t->offset, prev->name, t->name);
        else if (t->offset > pos)
            st = st_fail(f, RL_ERR_IO, "bytes [0, %" PRIu64 ") of the data section, before tensor '%s', belong to no tensor "
                         "(the format forbids holes)", t->offset, t->name);
        pos = end;
        prev = t;
    }
    if (st == RL_OK && pos != f->data_len)
        st = st_fail(f, RL_ERR_IO, "%" PRIu64 " trailing bytes after the last tensor '%s' belong to no tensor (data section "
                     "is %" PRIu64 " bytes, tensors end at %" PRIu64 "; the format forbids this)",
                     f->data_len - pos, prev->name, f->data_len, pos);
    free(by);
    return st;
}

static rl_status st_parse(rl_st_file *f, uint64_t hlen) {
    const char *hdr = (const char *)f->base + 8;
    f->data = f->base + 8 + hlen;
    f->data_len = f->size - 8 - hlen;
    json_error_t je;
    /* duplicate names would make two tensors answer to one name */
    f->root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!f->root && json_error_code(&je) == json_error_duplicate_key)
        return st_fail(f, RL_ERR_IO, "header has a key twice (line %d, column %d): %s", je.line, je.column, je.text);
    if (!f->root)
        return st_fail(f, RL_ERR_IO, "header is not valid JSON (line %d, column %d): %s", je.line, je.column, je.text);
    if (!json_is_object(f->root))
        return st_fail(f, RL_ERR_IO, "header is a JSON %s, not an object", st_json_type(f->root));
    if (hdr[0] != '{') /* the spec's rule; jansson skips leading whitespace */
        return st_fail(f, RL_ERR_IO, "header must start with '{' (it starts with byte 0x%02x)", (unsigned char)hdr[0]);

    /* metadata: an object of strings (null, which the reference accepts as
     * "no metadata", is accepted too) */
    json_t *meta = json_object_get(f->root, "__metadata__");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta))
            return st_fail(f, RL_ERR_IO, "__metadata__ is a JSON %s, not an object of strings", st_json_type(meta));
        f->meta = calloc(json_object_size(meta) + 1, sizeof *f->meta);
        if (!f->meta) return st_fail(f, RL_ERR_MEMORY, "out of memory");
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v))
                return st_fail(f, RL_ERR_IO, "__metadata__ value for key '%s' is a JSON %s, not a string", k,
                               st_json_type(v));
            f->meta[f->meta_count].key = k;
            f->meta[f->meta_count].value = json_string_value(v);
            f->meta_count++;
        }
        qsort(f->meta, f->meta_count, sizeof *f->meta, st_cmp_meta);
    }

    /* tensors: room for every shape first, so shape pointers stay put */
    size_t ndims = 0, nt = 0;
    const char *name;
    json_t *val;
    json_object_foreach(f->root, name, val) {
        if (strcmp(name, "__metadata__") == 0) continue;
        nt++;
        json_t *js = json_is_object(val) ? json_object_get(val, "shape") : NULL;
        if (json_is_array(js)) ndims += json_array_size(js);
    }
    f->tensors = calloc(nt + 1, sizeof *f->tensors);
    f->dims = calloc(ndims + 1, sizeof *f->dims);
    if (!f->tensors || !f->dims) return st_fail(f, RL_ERR_MEMORY, "out of memory");
    size_t d = 0;
    json_object_foreach(f->root, name, val) {
        if (strcmp(name, "__metadata__") == 0) continue;
        rl_st_tensor *t = &f->tensors[f->count];
        rl_status st = st_parse_entry(f, name, val, t, f->dims + d);
        if (st != RL_OK) return st;
        d += (size_t)t->ndim;
        f->count++;
    }
    rl_status st = st_check_layout(f);
    if (st != RL_OK) return st;
    qsort(f->tensors, f->count, sizeof *f->tensors, st_cmp_name);
    return RL_OK;
}

rl_status rl_st_open(const char *path, rl_st_file **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (out) *out = NULL;
    if (!path || !out) {
        if (err && errlen) snprintf(err, errlen, "rl_st_open: path and out must not be NULL");
        return RL_ERR_ARG;
    }
    rl_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
        return RL_ERR_MEMORY;
    }
    uint64_t hlen = 0;
    rl_status st = st_load_file(f, &hlen);
    if (st == RL_OK) st = st_parse(f, hlen);
    if (st != RL_OK) {
        if (err && errlen) snprintf(err, errlen, "%s", f->err);
        rl_st_close(f);
        return st;
    }
    *out = f;
    return RL_OK;
}

void rl_st_close(rl_st_file *f) {
    if (!f) return;
    if (f->base) {
        if (f->mapped) munmap((void *)f->base, f->size);
        else free((void *)f->base);
    }
    if (f->root) json_decref(f->root);
    free(f->tensors);
    free(f->dims);
    free(f->meta);
    free(f->path);
    free(f);
}

const char *rl_st_path(const rl_st_file *f) { return f ? f->path : NULL; }
const char *rl_st_error(const rl_st_file *f) { return f && f->has_err ? f->err : NULL; }
size_t rl_st_count(const rl_st_file *f) { return f ? f->count : 0; }

const rl_st_tensor *rl_st_at(const rl_st_file *f, size_t i) {
    return f && i < f->count ? &f->tensors[i] : NULL;
}

const rl_st_tensor *rl_st_find(const rl_st_file *f, const char *name) {
    if (!f || !name || !f->count) return NULL;
    rl_st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, f->count, sizeof *f->tensors, st_cmp_name);
}

size_t rl_st_meta_count(const rl_st_file *f) { return f ? f->meta_count : 0; }

int rl_st_meta_at(const rl_st_file *f, size_t i, const char **key, const char **value) {
    if (!f || i >= f->meta_count) return 0;
    if (key) *key = f->meta[i].key;
    if (value) *value = f->meta[i].value;
    return 1;
}

const char *rl_st_meta_get(const rl_st_file *f, const char *key) {
    if (!f || !key || !f->meta_count) return NULL;
    st_meta k = {.key = key};
    const st_meta *m = bsearch(&k, f->meta, f->meta_count, sizeof *f->meta, st_cmp_meta);
    return m ? m->value : NULL;
}

/* Loads of element i; through memcpy because data need not be aligned. */
#define ST_LOADER(nm, type)                                   \
    static inline type nm(const uint8_t *p, size_t i) {       \
        type v;                                               \
        memcpy(&v, p + i * sizeof v, sizeof v);               \
        return v;                                             \
    }
ST_LOADER(st_ld_i16, int16_t)
ST_LOADER(st_ld_u16, uint16_t)
ST_LOADER(st_ld_i32, int32_t)
ST_LOADER(st_ld_u32, uint32_t)
ST_LOADER(st_ld_f32, float)
ST_LOADER(st_ld_f64, double)
ST_LOADER(st_ld_i64, int64_t)
ST_LOADER(st_ld_u64, uint64_t)

/* Element-wise conversion to T. Integers convert straight to T (no double
 * rounding through double on the way to float). */
#define ST_CONVERT(T, t, out)                                                                       \
    do {                                                                                            \
        const uint8_t *p_ = (t)->data;                                                              \
        size_t n_ = (size_t)(t)->numel;                                                             \
        switch ((t)->dtype) {                                                                       \
        case RL_ST_BOOL: for (size_t i = 0; i < n_; i++) out[i] = (T)(p_[i] != 0); break;           \
        case RL_ST_U8: for (size_t i = 0; i < n_; i++) out[i] = (T)p_[i]; break;                    \
        case RL_ST_I8: for (size_t i = 0; i < n_; i++) out[i] = (T)(int8_t)p_[i]; break;            \
        case RL_ST_F8_E5M2: for (size_t i = 0; i < n_; i++) out[i] = (T)st_f8_e5m2_to_f32(p_[i]); break; \
        case RL_ST_F8_E4M3: for (size_t i = 0; i < n_; i++) out[i] = (T)st_f8_e4m3_to_f32(p_[i]); break; \
        case RL_ST_I16: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_i16(p_, i); break; \
        case RL_ST_U16: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_u16(p_, i); break; \
        case RL_ST_F16: for (size_t i = 0; i < n_; i++) out[i] = (T)rl_f16_to_f32(st_ld_u16(p_, i)); break; \
        case RL_ST_BF16: for (size_t i = 0; i < n_; i++) out[i] = (T)rl_bf16_to_f32(st_ld_u16(p_, i)); break; \
        case RL_ST_I32: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_i32(p_, i); break; \
        case RL_ST_U32: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_u32(p_, i); break; \
        case RL_ST_F32: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_f32(p_, i); break;   \
        case RL_ST_F64: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_f64(p_, i); break;  \
        case RL_ST_I64: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_i64(p_, i); break; \
        case RL_ST_U64: for (size_t i = 0; i < n_; i++) out[i] = (T)st_ld_u64(p_, i); break; \
        case RL_ST_DTYPE_COUNT: break;                                                              \
        }                                                                                           \
    } while (0)

static rl_status st_read_check(rl_st_file *f, const char *name, const void *out, size_t n, const char *fn,
                               const rl_st_tensor **tp) {
    if (!f) return RL_ERR_ARG;
    if (!name || !out) return st_fail(f, RL_ERR_ARG, "%s: name and out must not be NULL", fn);
    const rl_st_tensor *t = rl_st_find(f, name);
    if (!t) return st_fail(f, RL_ERR_ARG, "%s: no tensor named '%s' (the file has %zu tensors)", fn, name, f->count);
    if ((uint64_t)n != (uint64_t)t->numel) {
        char b[160];
        return st_fail(f, RL_ERR_ARG, "%s: tensor '%s' (%s %s) has %" PRId64 " elements, but room for %zu was given",
                       fn, name, rl_st_dtype_name(t->dtype), st_shape_text(t->ndim, t->shape, b, sizeof b), t->numel, n);
    }
    *tp = t;
    return RL_OK;
}

rl_status rl_st_read_f32(rl_st_file *f, const char *name, float *out, size_t n) {
    const rl_st_tensor *t = NULL;
    rl_status st = st_read_check(f, name, out, n, "rl_st_read_f32", &t);
    if (st != RL_OK) return st;
    if (t->dtype == RL_ST_F32) memcpy(out, t->data, t->nbytes); /* bit-exact, NaN payloads included */
    else ST_CONVERT(float, t, out);
    return RL_OK;
}

rl_status rl_st_read_f64(rl_st_file *f, const char *name, double *out, size_t n) {
    const rl_st_tensor *t = NULL;
    rl_status st = st_read_check(f, name, out, n, "rl_st_read_f64", &t);
    if (st != RL_OK) return st;
    if (t->dtype == RL_ST_F64) memcpy(out, t->data, t->nbytes);
    else ST_CONVERT(double, t, out);
    return RL_OK;
}

/* ---- writer ------------------------------------------------------------- */

typedef struct {
    char *name;
    rl_st_dtype dtype;
    int ndim;
    int64_t *shape;
    const void *data; /* borrowed until the write */
    size_t nbytes;
} st_wtensor;

typedef struct {
    char *key, *value;
} st_wmeta;

struct rl_st_writer {
    st_wtensor *t;
    size_t n, cap;
    st_wmeta *meta;
    size_t nmeta, capmeta;
    rl_status add_status; /* first failed add: sticky, the checkpoint would be incomplete */
    int has_err;
    char err[ST_ERR_LEN];
};

__attribute__((format(printf, 3, 4)))
static rl_status st_wfail(rl_st_writer *w, rl_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    w->has_err = 1;
    return status;
}

/* A failed add: the first one is kept and blocks writing. */
__attribute__((format(printf, 3, 4)))
static rl_status st_wfail_add(rl_st_writer *w, rl_status status, const char *fmt, ...) {
    if (w->add_status == RL_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err, sizeof w->err, fmt, ap);
        va_end(ap);
        w->has_err = 1;
        w->add_status = status;
    }
    return status;
}

/* jansson refuses invalid UTF-8 keys and strings; check before we rely on it. */
static int st_utf8_ok(const char *s) {
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

rl_st_writer *rl_st_writer_new(void) { return calloc(1, sizeof(rl_st_writer)); }

void rl_st_writer_free(rl_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].shape);
    }
    for (size_t i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->t);
    free(w->meta);
    free(w);
}

const char *rl_st_writer_error(const rl_st_writer *w) { return w && w->has_err ? w->err : NULL; }

rl_status rl_st_writer_add(rl_st_writer *w, const char *name, rl_st_dtype dtype, int ndim, const int64_t *shape,
                           const void *data, size_t nbytes) {
    static const char fn[] = "rl_st_writer_add";
    char b[160];
    if (!w) return RL_ERR_ARG;
    if (!name) return st_wfail_add(w, RL_ERR_ARG, "%s: name must not be NULL", fn);
    if (strcmp(name, "__metadata__") == 0)
        return st_wfail_add(w, RL_ERR_ARG, "%s: '__metadata__' is reserved for the metadata, not a tensor name", fn);
    if (!st_utf8_ok(name)) return st_wfail_add(w, RL_ERR_ARG, "%s: tensor name is not valid UTF-8", fn);
    if ((unsigned)dtype >= RL_ST_DTYPE_COUNT)
        return st_wfail_add(w, RL_ERR_ARG, "%s: tensor '%s': dtype %d is not an rl_st_dtype", fn, name, (int)dtype);
    if (ndim < 0 || (ndim > 0 && !shape))
        return st_wfail_add(w, RL_ERR_ARG, "%s: tensor '%s': %d dims%s", fn, name, ndim,
                            ndim < 0 ? " (must be >= 0)" : " but shape is NULL");
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return st_wfail_add(w, RL_ERR_ARG, "%s: tensor '%s': shape[%d] is %" PRId64 " (must be >= 0)", fn, name, i,
                                shape[i]);
    int64_t numel, bytes;
    if (!st_shape_size(ndim, shape, st_dtypes[dtype].size, &numel, &bytes))
        return st_wfail_add(w, RL_ERR_ARG, "%s: tensor '%s': shape %s of %s overflows a 64-bit byte count", fn, name,
                            st_shape_text(ndim, shape, b, sizeof b), st_dtypes[dtype].name);
    if ((uint64_t)bytes != (uint64_t)nbytes)
        return st_wfail_add(w, RL_ERR_ARG, "%s: tensor '%s': shape %s of %s is %" PRId64 " bytes, but %zu were given", fn,
                            name, st_shape_text(ndim, shape, b, sizeof b), st_dtypes[dtype].name, bytes, nbytes);
    if (nbytes && !data) return st_wfail_add(w, RL_ERR_ARG, "%s: tensor '%s': data is NULL", fn, name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        st_wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return st_wfail_add(w, RL_ERR_MEMORY, "%s: out of memory", fn);
        w->t = t;
        w->cap = cap;
    }
    st_wtensor *t = &w->t[w->n];
    t->name = strdup(name);
    t->shape = malloc(((size_t)ndim + 1) * sizeof *t->shape);
    if (!t->name || !t->shape) {
        free(t->name);
        free(t->shape);
        return st_wfail_add(w, RL_ERR_MEMORY, "%s: out of memory", fn);
    }
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->dtype = dtype;
    t->ndim = ndim;
    t->data = data;
    t->nbytes = nbytes;
    w->n++;
    return RL_OK;
}

rl_status rl_st_writer_set_meta(rl_st_writer *w, const char *key, const char *value) {
    static const char fn[] = "rl_st_writer_set_meta";
    if (!w) return RL_ERR_ARG;
    if (!key || !value) return st_wfail_add(w, RL_ERR_ARG, "%s: key and value must not be NULL", fn);
    if (!st_utf8_ok(key) || !st_utf8_ok(value))
        return st_wfail_add(w, RL_ERR_ARG, "%s: key or value of metadata entry is not valid UTF-8", fn);
    char *v = strdup(value);
    if (!v) return st_wfail_add(w, RL_ERR_MEMORY, "%s: out of memory", fn);
    for (size_t i = 0; i < w->nmeta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return RL_OK;
        }
    }
    if (w->nmeta == w->capmeta) {
        size_t cap = w->capmeta ? 2 * w->capmeta : 8;
        st_wmeta *m = realloc(w->meta, cap * sizeof *m);
        if (!m) {
            free(v);
            return st_wfail_add(w, RL_ERR_MEMORY, "%s: out of memory", fn);
        }
        w->meta = m;
        w->capmeta = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return st_wfail_add(w, RL_ERR_MEMORY, "%s: out of memory", fn);
    }
    w->meta[w->nmeta].key = k;
    w->meta[w->nmeta].value = v;
    w->nmeta++;
    return RL_OK;
}

/* The reference's order: larger elements first (so each tensor starts at a
 * multiple of its element size once the header is padded to 8), then name. */
static int st_cmp_wtensor(const void *a, const void *b) {
    const st_wtensor *x = *(const st_wtensor *const *)a, *y = *(const st_wtensor *const *)b;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int st_cmp_wname(const void *a, const void *b) {
    return strcmp((*(const st_wtensor *const *)a)->name, (*(const st_wtensor *const *)b)->name);
}

static int st_cmp_wmeta(const void *a, const void *b) {
    return strcmp((*(const st_wmeta *const *)a)->key, (*(const st_wmeta *const *)b)->key);
}

/* The header JSON in the reference's layout (compact, "__metadata__" first,
 * dtype/shape/data_offsets in that order), or NULL when out of memory. */
static char *st_header_json(rl_st_writer *w, st_wtensor **order) {
    json_t *root = json_object();
    if (!root) return NULL;
    int bad = 0;
    if (w->nmeta) {
        st_wmeta **m = malloc(w->nmeta * sizeof *m);
        json_t *jm = json_object();
        if (!m || !jm) bad = 1;
        for (size_t i = 0; !bad && i < w->nmeta; i++) m[i] = &w->meta[i];
        if (!bad) qsort(m, w->nmeta, sizeof *m, st_cmp_wmeta);
        for (size_t i = 0; !bad && i < w->nmeta; i++)
            bad |= json_object_set_new(jm, m[i]->key, json_string(m[i]->value)) != 0;
        free(m);
        if (!bad) bad |= json_object_set_new(root, "__metadata__", jm) != 0;
        else json_decref(jm);
    }
    uint64_t off = 0;
    for (size_t i = 0; !bad && i < w->n; i++) {
        const st_wtensor *t = order[i];
        json_t *e = json_object(), *shape = json_array(),
               *offs = json_pack("[II]", (json_int_t)off, (json_int_t)(off + t->nbytes));
        bad = !e || !shape || !offs;
        for (int d = 0; !bad && d < t->ndim; d++) bad |= json_array_append_new(shape, json_integer(t->shape[d])) != 0;
        if (!bad) bad |= json_object_set_new(e, "dtype", json_string(st_dtypes[t->dtype].name)) != 0;
        if (!bad) {
            bad |= json_object_set_new(e, "shape", shape) != 0;
            shape = NULL;
        }
        if (!bad) {
            bad |= json_object_set_new(e, "data_offsets", offs) != 0;
            offs = NULL;
        }
        if (!bad) {
            bad |= json_object_set_new(root, t->name, e) != 0;
            e = NULL;
        }
        json_decref(e);
        json_decref(shape);
        json_decref(offs);
        off += t->nbytes;
    }
    char *s = bad ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return s;
}

/* Writes all of buf; -1 on error. */
static int st_write_all(FILE *f, const void *buf, size_t n) { return n && fwrite(buf, 1, n, f) != n ? -1 : 0; }

rl_status rl_st_writer_write(rl_st_writer *w, const char *path) {
    if (!w) return RL_ERR_ARG;
    if (w->add_status != RL_OK) return w->add_status; /* its message stays in w->err */
    if (!path) return st_wfail(w, RL_ERR_ARG, "rl_st_writer_write: path must not be NULL");

    rl_status st = RL_OK;
    st_wtensor **order = malloc((w->n + 1) * sizeof *order);
    char *json = NULL;
    if (!order) return st_wfail(w, RL_ERR_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < w->n; i++) order[i] = &w->t[i];
    qsort(order, w->n, sizeof *order, st_cmp_wname);
    for (size_t i = 1; i < w->n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            st = st_wfail(w, RL_ERR_ARG, "%s: tensor '%s' was added twice", path, order[i]->name);
            goto out;
        }
    }
    qsort(order, w->n, sizeof *order, st_cmp_wtensor);
    json = st_header_json(w, order);
    if (!json) {
        st = st_wfail(w, RL_ERR_MEMORY, "%s: out of memory building the header", path);
        goto out;
    }
    size_t jlen = strlen(json), pad = (8 - jlen % 8) % 8;
    uint64_t hlen = jlen + pad;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(hlen >> (8 * i));

    /* whole or not at all: a temporary next to path, fsync, rename */
    char aerr[600];
    rl_atomic_file af;
    FILE *f = rl_atomic_open(&af, path, aerr, sizeof aerr);
    if (!f) {
        st = st_wfail(w, RL_ERR_IO, "%s", aerr);
        goto out;
    }
    int bad = st_write_all(f, lenb, 8) || st_write_all(f, json, jlen) || st_write_all(f, "        ", pad);
    for (size_t i = 0; !bad && i < w->n; i++) bad = st_write_all(f, order[i]->data, order[i]->nbytes);
    if (bad) {
        st = st_wfail(w, RL_ERR_IO, "%s: writing '%s' failed: %s", path, af.tmp, strerror(errno));
        rl_atomic_abort(&af);
        goto out;
    }
    if (rl_atomic_commit(&af, aerr, sizeof aerr) != RL_OK) st = st_wfail(w, RL_ERR_IO, "%s", aerr);
out:
    free(json);
    free(order);
    return st;
}
