/* models/rl_safetensors.h - reading and writing checkpoints in the Hugging
 * Face safetensors format, in host memory, independent of the engine's
 * tensors (so a checkpoint can be inspected before a context exists).
 *
 * The format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {"key": "value", ...},              (optional)
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * then the raw little-endian, row-major data; offsets are relative to the
 * first byte after the header.
 *
 * Reading:
 *   char err[512];
 *   rl_st_file *f;
 *   if (rl_st_open("model.safetensors", &f, err, sizeof err) != RL_OK) { puts(err); ... }
 *   const rl_st_tensor *t = rl_st_find(f, "wte.weight");   // NULL when absent
 *   float *w = malloc(t->numel * sizeof *w);
 *   if (rl_st_read_f32(f, "wte.weight", w, t->numel) != RL_OK) puts(rl_st_error(f));
 *   rl_st_close(f);                                        // t and t->data die here
 *
 * The file is memory-mapped read-only (read into memory when it cannot be
 * mapped), so opening the 500 MB gpt2 checkpoint costs only its header; the
 * file must not be truncated while open (that would be SIGBUS, as for any
 * mapping). rl_st_open validates strictly and refuses, with a message that
 * names the file and the tensor, anything the reference implementation would
 * refuse and a little more: a data section with holes or trailing bytes
 * (the spec requires the tensors to cover it exactly), overlapping tensors,
 * a header not starting with '{', duplicate or unknown keys, non-string
 * metadata values. The tensor data is raw little-endian bytes (this code
 * assumes a little-endian host); t->data is not necessarily aligned in files
 * from other writers, so read it with memcpy or the rl_st_read_* functions.
 *
 * Writing:
 *   rl_st_writer *w = rl_st_writer_new();
 *   rl_st_writer_add(w, "wte.weight", RL_ST_F32, 2, (int64_t[]){50257, 768}, data, nbytes);
 *   rl_st_writer_set_meta(w, "format", "pt");
 *   if (rl_st_writer_write(w, "ckpt.safetensors") != RL_OK) puts(rl_st_writer_error(w));
 *   rl_st_writer_free(w);
 *
 * The writer copies names, shapes and metadata but keeps only a pointer to
 * each tensor's data (a checkpoint can be as big as memory): the data must
 * stay valid and unchanged until rl_st_writer_write returns. The output is
 * what the reference implementation writes: compact JSON with "__metadata__"
 * first (its keys sorted), then the tensors sorted by dtype size, largest
 * first, then by name (byte order) - the same order is used for the data, so
 * every tensor starts at a multiple of its element size - and the header
 * padded with spaces to a multiple of 8 bytes. It is written to
 * "PATH.tmp.<pid>", fsync'ed and renamed onto PATH, so PATH is either the
 * old file or the complete new one; on any error the temporary file is
 * removed and PATH is untouched.
 *
 * Errors: functions return an rl_status (RL_ERR_IO for files that cannot be
 * opened, read, written or that are malformed; RL_ERR_ARG for bad arguments;
 * RL_ERR_MEMORY). rl_st_open writes its message into the caller's buffer;
 * later calls on a file keep the message of the most recent failure in
 * rl_st_error(f). The writer keeps the first failed add (after which it
 * refuses to write, since the checkpoint would be incomplete) or else the
 * most recent failed write, in rl_st_writer_error(w).
 *
 * Neither object is safe to use from two threads at once.
 */
#ifndef RL_SAFETENSORS_H
#define RL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types, in the reference implementation's order (increasing size),
 * which the writer uses to sort: keep it. */
typedef enum {
    RL_ST_BOOL = 0,
    RL_ST_U8,
    RL_ST_I8,
    RL_ST_F8_E5M2,  /* 1 sign, 5 exponent, 2 mantissa bits; IEEE-like (inf, nan) */
    RL_ST_F8_E4M3,  /* OCP E4M3FN: bias 7, no inf, nan = S.1111.111, max 448 */
    RL_ST_I16,
    RL_ST_U16,
    RL_ST_F16,
    RL_ST_BF16,
    RL_ST_I32,
    RL_ST_U32,
    RL_ST_F32,
    RL_ST_F64,
    RL_ST_I64,
    RL_ST_U64,
    RL_ST_DTYPE_COUNT
} rl_st_dtype;

/* "F32" etc., or "?" for a value out of range. */
const char *rl_st_dtype_name(rl_st_dtype dt);
/* Bytes per element, or 0 for a value out of range. */
size_t rl_st_dtype_size(rl_st_dtype dt);
/* The dtype named `name` (exact, upper case as in files): 1, or 0 if unknown. */
int rl_st_dtype_parse(const char *name, rl_st_dtype *out);

/* ---- reading ------------------------------------------------------------ */

typedef struct rl_st_file rl_st_file;

/* One tensor of an open file; valid until rl_st_close. */
typedef struct rl_st_tensor {
    const char *name;
    rl_st_dtype dtype;
    int ndim;                 /* 0 is a scalar */
    const int64_t *shape;     /* ndim entries */
    int64_t numel;            /* product of shape (1 for a scalar) */
    size_t nbytes;            /* numel * dtype size = end - begin */
    uint64_t offset;          /* begin, relative to the data section */
    const void *data;         /* nbytes raw little-endian bytes; maybe unaligned */
} rl_st_tensor;

/* Opens and validates path. On success *out is the file; otherwise *out is
 * NULL and err (when not NULL) receives "PATH: what is wrong". */
rl_status rl_st_open(const char *path, rl_st_file **out, char *err, size_t errlen);
void rl_st_close(rl_st_file *f);
/* The path as given to rl_st_open. */
const char *rl_st_path(const rl_st_file *f);
/* Message of the most recent failed call on f, or NULL. */
const char *rl_st_error(const rl_st_file *f);

/* Tensors, sorted by name (byte order); i in [0, rl_st_count). */
size_t rl_st_count(const rl_st_file *f);
const rl_st_tensor *rl_st_at(const rl_st_file *f, size_t i);
/* The tensor called name, or NULL (not an error: nothing is recorded). */
const rl_st_tensor *rl_st_find(const rl_st_file *f, const char *name);

/* Copies tensor `name` into out converted to float / double; n is the number
 * of elements of out and must equal the tensor's numel. F32->f32 and
 * F64->f64 are bit copies; F16, BF16 and F8 are converted exactly (every
 * value, subnormals, infinities and NaNs included); F64->f32 and 64-bit
 * integers round to nearest; BOOL gives 0/1. */
rl_status rl_st_read_f32(rl_st_file *f, const char *name, float *out, size_t n);
rl_status rl_st_read_f64(rl_st_file *f, const char *name, double *out, size_t n);

/* Metadata ("__metadata__"), sorted by key; i in [0, rl_st_meta_count). */
size_t rl_st_meta_count(const rl_st_file *f);
/* Entry i: 1 with *key and *value set, or 0 when i is out of range. */
int rl_st_meta_at(const rl_st_file *f, size_t i, const char **key, const char **value);
/* The value for key, or NULL. */
const char *rl_st_meta_get(const rl_st_file *f, const char *key);

/* ---- writing ------------------------------------------------------------ */

typedef struct rl_st_writer rl_st_writer;

/* NULL only when out of memory. */
rl_st_writer *rl_st_writer_new(void);
void rl_st_writer_free(rl_st_writer *w);
/* Adds a tensor: nbytes must equal product(shape) * dtype size, data may be
 * NULL only when nbytes is 0; data is not copied (see above). Names must be
 * valid UTF-8, unique and not "__metadata__" (duplicates are reported by
 * rl_st_writer_write). A failed add is kept and makes every write fail. */
rl_status rl_st_writer_add(rl_st_writer *w, const char *name, rl_st_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, size_t nbytes);
/* Sets a metadata entry (copied); a key already set gets the new value. */
rl_status rl_st_writer_set_meta(rl_st_writer *w, const char *key, const char *value);
/* Writes everything atomically to path (see above). May be called again. */
rl_status rl_st_writer_write(rl_st_writer *w, const char *path);
/* First failed add, else most recent failed write, or NULL. */
const char *rl_st_writer_error(const rl_st_writer *w);

/* ---- 16-bit floats ------------------------------------------------------ */

/* IEEE binary16 and bfloat16 <-> float. Widening is exact; narrowing rounds
 * to nearest, ties to even, overflows to infinity, and keeps NaNs NaN
 * (quiet, sign and top payload bits kept). */
float rl_f16_to_f32(uint16_t h);
uint16_t rl_f32_to_f16(float f);
float rl_bf16_to_f32(uint16_t b);
uint16_t rl_f32_to_bf16(float f);
/* The same over arrays (dst and src must not overlap). */
void rl_f16_to_f32_array(const uint16_t *src, float *dst, size_t n);
void rl_f32_to_f16_array(const float *src, uint16_t *dst, size_t n);
void rl_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n);
void rl_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n);

#ifdef __cplusplus
}
#endif
#endif
