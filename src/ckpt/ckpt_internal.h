/* src/ckpt/ckpt_internal.h — pieces shared by the checkpoint sources (not a public API). */
#ifndef PT_CKPT_INTERNAL_H
#define PT_CKPT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/ckpt.h"

/* Shard file header: magic, then little-endian u32 format version and u32 rank. The shard layout
 * has not changed since format 1; format 3 (pieces) changed only the manifest, so shards are still
 * written as version PT_CKPT_SHARD_VERSION (2: checkpoints of whole tensors stay readable by
 * builds of format 2), and readers accept 1 .. PT_CKPT_SHARD_VERSION. */
#define PT_CKPT_SHARD_MAGIC "PTCKSHRD"
#define PT_CKPT_SHARD_VERSION 2
#define PT_CKPT_SHARD_HEADER_BYTES 16
#define PT_CKPT_DEFAULT_BLOCK_ELEMS ((uint64_t)1 << 20)
/* Largest value a manifest integer may hold (exact in a JSON double). */
#define PT_CKPT_JSON_INT_MAX ((int64_t)1 << 53)

/* One job of a parallel loop: item `item` on worker `worker` (0 <= worker < n_threads). */
typedef pt_status (*pt_ckpt_job_fn)(void *ctx, int64_t item, int worker);

/* Runs fn for items 0..n_items-1 on n_threads threads (the caller is worker 0). Stops handing
 * out items after the first failure and returns it, with its message re-recorded on the
 * calling thread. Blocks until every started job has returned. */
pt_status pt_ckpt_parallel_for(int n_threads, int64_t n_items, pt_ckpt_job_fn fn, void *ctx);

/* pt_ckpt_decode that also tells which tensor failed (*failed: index into e, or -1). */
pt_status pt_ckpt_decode_at(pt_ckpt_codec *c, int n, const pt_ckpt_entry *const *e, const uint8_t *const *src,
                            const size_t *src_len, void *const *dst, int *failed);

/* Values per block of a codec (its options' block_elems, after defaults). */
uint64_t pt_ckpt_codec_block_elems(const pt_ckpt_codec *c);

/* Number of planes and values of block b of an entry. */
int pt_ckpt_entry_planes(pt_ckpt_transform t, pt_ckpt_dtype d);
uint64_t pt_ckpt_block_values(const pt_ckpt_entry *e, int64_t b);
/* Raw bytes of plane p of a block of nb values. */
uint64_t pt_ckpt_plane_raw_bytes(pt_ckpt_transform t, pt_ckpt_dtype d, uint64_t nb);


/* Encodes src[0..n) on the codec's threads and writes the stored bytes to `fd` with pwritev at
 * file offsets *offset, *offset + ... in order (the tensors back to back), each block as soon as
 * every block before it is encoded, straight from the codec's write buffers (made on the first
 * call and kept: 2 * n_threads + 1 blocks of planes and frames). Fills e[i] like pt_ckpt_encode,
 * offset included; *offset advances past the last byte. encode_s / write_s: thread-seconds spent
 * encoding and in pwritev. On failure the e[i].blocks are freed. `path` names the file in errors. */
pt_status pt_ckpt_encode_write(pt_ckpt_codec *c, int fd, const char *path, int n, const pt_ckpt_src *src,
                               pt_ckpt_entry *e, uint64_t *offset, double *encode_s, double *write_s);

/* pt_ckpt_encode_write for a shard of rank `rank`: also sets e[i].rank, and adds the thread-seconds
 * to this thread's counters (pt_ckpt_shard_times). */
pt_status pt_ckpt_shard_append(pt_ckpt_codec *c, int fd, const char *path, int rank, int n, const pt_ckpt_src *src,
                               pt_ckpt_entry *e, uint64_t *offset);
/* Thread-seconds spent encoding and in pwritev by pt_ckpt_shard_append calls of this thread since
 * the last call (then reset). */
void pt_ckpt_shard_times(double *encode_s, double *write_s);
/* Where pruning keeps the shards of the newest checkpoint it removes: root/recycle/shard-<rank>.ptz. */
#define PT_CKPT_RECYCLE_DIR "recycle"

/* Creates `path` with the shard header (returns the fd, offset = header bytes). With root != NULL
 * and a shard of rank `rank` in root/recycle/ (left by pruning), that file is renamed to `path`
 * and overwritten instead of creating a new one: its pages (tmpfs) or blocks (disk) are already
 * allocated, and allocating fresh ones is most of the cost of a write here (docs/checkpoints.md).
 * pt_ckpt_shard_finish then cuts it to its new size. */
pt_status pt_ckpt_shard_create(const char *root, const char *path, int rank, int *fd);
/* Cuts the shard to `size` bytes (a recycled file may be longer), fsyncs and closes it. */
pt_status pt_ckpt_shard_finish(int fd, const char *path, uint64_t size);
/* fsyncs and closes fd. */
pt_status pt_ckpt_file_finish(int fd, const char *path);
/* fsyncs a directory. */
pt_status pt_ckpt_fsync_dir(const char *dir);


/* The manifest version a checkpoint of these entries is written as: PT_CKPT_FORMAT_VERSION (4) when
 * one is a box (pt_ckpt_entry_is_box), else PT_CKPT_FORMAT_PIECES (3) when one is a flat piece, else
 * PT_CKPT_FORMAT_WHOLE (2). pt_ckpt_manifest_to_json writes the larger of this and the manifest's
 * own version. */
int pt_ckpt_format_for(const pt_ckpt_entry *e, int n);

/* Entries array (as the manifest's "tensors") to JSON / from JSON; used to gather ranks' indexes. */
pt_status pt_ckpt_entries_to_json(const pt_ckpt_entry *e, int n, struct cJSON **out);
pt_status pt_ckpt_entries_from_json(const struct cJSON *arr, const char *what, int n_ranks, pt_ckpt_entry **out,
                                    int *n_out);
void pt_ckpt_entries_free(pt_ckpt_entry *e, int n);

/* ---- geometry (boxes.c) ---- */

/* A set of elements of a whole tensor: values [lo, hi) of `box` of its 2-D view, row-major. */
typedef struct pt_ckpt_part {
    pt_ckpt_box box;
    uint64_t lo, hi;
} pt_ckpt_part;

/* The whole view of a shape as a box. */
pt_ckpt_box pt_ckpt_view_box(int ndim, const int64_t *shape);
/* The elements an entry holds. */
pt_ckpt_part pt_ckpt_entry_part(const pt_ckpt_entry *e);
/* How many elements two parts of one tensor share. */
uint64_t pt_ckpt_parts_shared(const pt_ckpt_part *a, const pt_ckpt_part *b);
/* The one spelling of a part (the same elements in the same order): rows before the first value are
 * cut from the box, the rows after the last one too, and a part whose values are consecutive in the
 * whole tensor (a box of whole rows, or values within one row) becomes a flat range of the whole
 * view (rows x cols). Flat parts stay as they are. */
void pt_ckpt_box_canon(uint64_t rows, uint64_t cols, pt_ckpt_box *b, uint64_t *lo, uint64_t *hi);
/* "[lo, hi)" for a flat part of a rows x cols view, "rows [..) x columns [..)" (+ " values [lo, hi)")
 * for a box: the spelling of error messages. */
void pt_ckpt_part_text(const pt_ckpt_box *b, uint64_t lo, uint64_t hi, uint64_t rows, uint64_t cols, char *buf,
                       size_t cap);

/* Part of a rank's tensor: the whole tensor's elements `part`, which are the rank's local elements
 * [local, local + part.hi - part.lo) of the tensor (pt_param offset 0), in that order. */
typedef struct pt_ckpt_tp_piece {
    pt_ckpt_part part;
    size_t local;
} pt_ckpt_tp_piece;
#define PT_CKPT_TP_MAX_PIECES 3

/* The whole tensor's shape of p (gshape when tensor-parallel, else shape) into shape; returns ndim. */
int pt_ckpt_param_whole_shape(const pt_param *p, int64_t shape[PT_CKPT_MAX_DIMS]);
/* Whether checkpoints can map p's slice: at most 4 dimensions; without tensor parallelism anything;
 * else 1 to 3 row segments of a 1-D or 2-D tensor, or one column segment of a 2-D one, within the
 * whole shape and making the local one; the replicated range within the tensor. PT_EINVAL naming it. */
pt_status pt_ckpt_param_check(const pt_param *p);
/* Local elements [a, b) of p (a checked tensor) as parts of the whole tensor, one per segment they
 * touch (at most 3), each in its one spelling (pt_ckpt_box_canon): row segments and whole tensors
 * are flat ranges, a column segment a box. Returns how many. */
int pt_ckpt_param_pieces(const pt_param *p, size_t a, size_t b, pt_ckpt_tp_piece out[PT_CKPT_TP_MAX_PIECES]);

/* Checks that entries v[0..n) (one tensor's, one kind's, of view rows x cols) hold every element of
 * need[0..n_need) exactly once: no two of them overlap anywhere, and they cover the needed
 * elements. Messages of formats 1-3 (element ranges) when no box is involved, else rows x columns.
 * PT_EFORMAT naming the tensor, the kind, the elements and the pieces there are; PT_ENOMEM. */
pt_status pt_ckpt_cover_check(const pt_ckpt_entry *const *v, int n, const char *name, pt_ckpt_kind kind, uint64_t rows,
                              uint64_t cols, const pt_ckpt_part *need, int n_need, const char *what);

/* Copies the elements entry e holds (its decoded values at src) that are also in dst_part into dst,
 * where dst holds dst_part's values (dst[i] is its value lo + i). Same tensor; any dtype. */
void pt_ckpt_copy_part(const pt_ckpt_entry *e, const void *src, const pt_ckpt_part *dst_part, void *dst);

#endif
