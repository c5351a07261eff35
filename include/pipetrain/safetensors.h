/* pipetrain/safetensors.h — read and write safetensors files (the Hugging Face tensor format):
 * an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
 * byte range, then the raw little-endian data. Used to import GPT-2 weights, to check ourselves
 * against PyTorch (tests/models/test_reference.c), and by `pipetrain ckpt export|import`.
 *
 * Reading keeps the file open and reads tensors on demand, so a 6 GB file costs only its header
 * in memory:
 *
 *     pt_safetensors *f;
 *     PT_CHECK(pt_safetensors_open("gpt2.safetensors", &f));
 *     const pt_safetensors_tensor *t = pt_safetensors_find(f, "wte.weight");
 *     float *w = malloc(t->numel * sizeof(float));
 *     pt_status st = pt_safetensors_read_f32(f, t, w, t->numel);   // F32/F16/BF16 -> float
 *     pt_safetensors_close(f);
 *
 * Writing declares every tensor first (so the header can be written up front), then streams the
 * data in declaration order; the file appears under its name only when finished (temporary
 * file, fsync, rename):
 *
 *     pt_safetensors_writer *w;
 *     PT_CHECK(pt_safetensors_writer_create("out.safetensors", &w));
 *     pt_safetensors_writer_set_metadata(w, "format", "pt");
 *     int64_t shape[2] = { 256, 64 };
 *     pt_safetensors_writer_declare(w, "wte.weight", PT_ST_F32, 2, shape);
 *     pt_safetensors_writer_write(w, data, 256 * 64 * 4);
 *     st = pt_safetensors_writer_finish(w);
 *     pt_safetensors_writer_destroy(w);
 *
 * Thread-safety: one reader or writer object is used by one thread at a time.
 */
#ifndef PIPETRAIN_SAFETENSORS_H
#define PIPETRAIN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pt_st_dtype {
    PT_ST_F32,
    PT_ST_F16,
    PT_ST_BF16,
    PT_ST_F64,
    PT_ST_I64,
    PT_ST_I32,
    PT_ST_I16,
    PT_ST_I8,
    PT_ST_U8,
    PT_ST_BOOL,
    PT_ST_DTYPE_COUNT
} pt_st_dtype;

#define PT_ST_MAX_DIMS 8

/* Bytes per element of a dtype. */
size_t pt_st_dtype_size(pt_st_dtype d);
/* The dtype's name in safetensors headers ("F32", "BF16", ...). Never NULL. */
const char *pt_st_dtype_name(pt_st_dtype d);

typedef struct pt_safetensors_tensor {
    const char *name; /* owned by the file object */
    pt_st_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[PT_ST_MAX_DIMS];
    size_t numel;                   /* product of shape (1 for a scalar) */
    uint64_t offset;                /* byte offset of the data from the start of the file */
    uint64_t nbytes;                /* numel * dtype size */
} pt_safetensors_tensor;

typedef struct pt_safetensors pt_safetensors;

/* Opens `path` and parses its header. Every tensor's dtype, shape and byte range are checked
 * (range inside the file, size == numel * dtype size, no overlaps): a corrupt or truncated file
 * is PT_EFORMAT naming the file and the tensor; a file that cannot be opened is PT_EIO.
 * *out is owned by the caller (pt_safetensors_close). Reads only the header; does not block
 * beyond file I/O. */
pt_status pt_safetensors_open(const char *path, pt_safetensors **out);
void pt_safetensors_close(pt_safetensors *f); /* accepts NULL */

/* Tensors in header order (borrowed; valid until close). */
int pt_safetensors_n_tensors(const pt_safetensors *f);
const pt_safetensors_tensor *pt_safetensors_tensor_at(const pt_safetensors *f, int i);
/* NULL when the file has no tensor of that name. */
const pt_safetensors_tensor *pt_safetensors_find(const pt_safetensors *f, const char *name);
/* A string value of the header's "__metadata__" object; NULL when absent. Borrowed. */
const char *pt_safetensors_metadata(const pt_safetensors *f, const char *key);

/* Copies the tensor's raw bytes (t->nbytes <= cap_bytes, else PT_EINVAL) into dst. PT_EIO on a
 * short read. */
pt_status pt_safetensors_read(pt_safetensors *f, const pt_safetensors_tensor *t, void *dst, size_t cap_bytes);
/* Reads a floating tensor (F32, F16, BF16, F64) converted to float into dst (t->numel <= n, else
 * PT_EINVAL). Other dtypes are PT_EFORMAT naming the tensor. */
pt_status pt_safetensors_read_f32(pt_safetensors *f, const pt_safetensors_tensor *t, float *dst, size_t n);
/* Reads an integer tensor (I32, I64, I16, I8, U8) converted to int32 into dst (values must fit). */
pt_status pt_safetensors_read_i32(pt_safetensors *f, const pt_safetensors_tensor *t, int32_t *dst, size_t n);

typedef struct pt_safetensors_writer pt_safetensors_writer;

/* Starts writing `path` (through `path`.tmp). PT_EIO when the file cannot be created. */
pt_status pt_safetensors_writer_create(const char *path, pt_safetensors_writer **out);
/* Adds a string to "__metadata__" (before the first write). Copies key and value. */
pt_status pt_safetensors_writer_set_metadata(pt_safetensors_writer *w, const char *key, const char *value);
/* Declares the next tensor (before the first write); names must be unique. Copies name and shape. */
pt_status pt_safetensors_writer_declare(pt_safetensors_writer *w, const char *name, pt_st_dtype dtype, int ndim,
                                        const int64_t *shape);
/* Appends data to the file: tensors' bytes in declaration order, in one or more calls of any size
 * (a tensor may be written in pieces). Writing past the declared total is PT_EINVAL. */
pt_status pt_safetensors_writer_write(pt_safetensors_writer *w, const void *data, size_t bytes);
/* Checks that every declared byte was written, fsyncs and renames to the final path. */
pt_status pt_safetensors_writer_finish(pt_safetensors_writer *w);
/* Frees the writer; an unfinished file is removed. Accepts NULL. */
void pt_safetensors_writer_destroy(pt_safetensors_writer *w);

/* IEEE half / bfloat16 conversions (round to nearest even). */
float pt_f16_to_f32(uint16_t h);
float pt_bf16_to_f32(uint16_t h);
uint16_t pt_f32_to_bf16(float f);

#ifdef __cplusplus
}
#endif
#endif
