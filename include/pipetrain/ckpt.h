/* pipetrain/ckpt.h — checkpoints: sharded, compressed, checksummed, atomic, asynchronous,
 * loadable into any partition of the same model.
 *
 * On disk (docs/checkpoints.md has the full format):
 *     DIR/latest                       text: "step_000100\n", replaced atomically
 *     DIR/step_000100/manifest.json    version, step, run JSON, data position, seed, tensor index
 *     DIR/step_000100/shard-<rank>.ptz each rank's tensors, each compressed on its own
 * A checkpoint is written into step_000100.tmp/, every file and the directory are fsynced, the
 * directory is renamed, and only then is `latest` replaced, so a crash never leaves a half
 * checkpoint that looks whole. The last `keep_last` complete checkpoints are kept; the shards of
 * the newest one pruned wait in DIR/recycle/ and the next save overwrites them (allocating a new
 * file's pages is most of what writing costs on tmpfs and in VMs).
 *
 * Training loop use (one process or every rank of a pipeline):
 *
 *     pt_ckpt_saver *sv;
 *     PT_CHECK(pt_ckpt_saver_create("ckpt", 3, 1, 2, &sv));
 *     pt_ckpt_saver_set_device(sv, be, stream);   // optional: default is each model's own
 *     ...
 *     pt_train_state ts = { .step = step, .data_step = step, .seed = seed, .run_json = run_json };
 *     PT_CHECK(pt_ckpt_save(sv, comm, models, optims, n_chunks, &ts));  // returns after the copy
 *     pt_ckpt_save_info info;
 *     pt_ckpt_saver_info(sv, &info);
 *     if (info.waited_for_step >= 0) printf("checkpoint: waited for the previous save (step %lld)\n", ...);
 *     ...
 *     PT_CHECK(pt_ckpt_saver_wait(sv));  // before exit: the last save is durable
 *     pt_ckpt_saver_destroy(sv);
 *
 * Resume:
 *     pt_train_state ts;
 *     pt_ckpt_load_info li;
 *     PT_CHECK(pt_ckpt_load_ex("ckpt", models, optims, n_chunks, &ts, NULL, NULL, &li));
 *     if (li.note[0]) printf("%s\n", li.note);   // e.g. "latest (step_000200) is damaged: ...; resumed from step_000100"
 *     free((char *)ts.run_json);
 *
 * Tensors are stored by global name (pt_param.name) and kind (param, adam_m, adam_v); loading
 * looks each tensor of each chunk up by name, so a run saved with 4 stages resumes with 2 or 1.
 * The tied `wte.weight` is saved once, from the chunk holding the embedding; every chunk that
 * lists `wte.weight` (the embedding and the head) gets it on load.
 *
 * ZeRO-1 slices: an optimizer made by pt_optim_create_range holds the moments of elements [lo, hi)
 * of its model's flat parameters only. Its moments are saved as PIECES: for each tensor that
 * intersects [lo, hi), the part inside, with its element range in the tensor's flattened values
 * (manifest "range", format 3). Every data-parallel replica saves its own slices (replicas other
 * than 0 with pt_ckpt_save_opts.optim_only: no weights). Loading fills whatever range each
 * optimizer covers from whatever pieces the checkpoint holds (any D, any P, --zero 0 or 1), and
 * fails naming the tensor, the kind and the missing element range when they do not cover it.
 *
 * Tensor parallelism (pt_model_opts.tp): a rank's tensor is a slice of the whole one (pt_param
 * gshape, tp_dim, tp_lo/tp_hi). Every piece is stored against the WHOLE tensor: its rows x columns
 * BOX of the tensor's 2-D view (pt_ckpt_box; "box" in the manifest, format 4) and the element range
 * of the box's row-major values it holds. A row slice, and any part of one, is a flat range of the
 * whole tensor (format 3, no box); a column slice is one box per tensor (a ZeRO-1 part of it: the
 * same box, a range of its values). Each TP rank saves its segments; elements replicated over TP
 * ranks (pt_param rep_*) only from the group rank rep_first. Loading assembles each rank's slice
 * (weights) or optimizer range (moments) from whatever boxes, flat pieces and whole tensors the
 * checkpoint holds: a checkpoint saved with any T, P and D loads with any other, bit for bit.
 *
 * Codec: each tensor is cut into blocks of `block_elems` values; each block's values are
 * transformed (byte planes, or exponent / sign+mantissa planes, chosen per tensor on a sample) and
 * every plane is stored zstd-compressed (content checksum on), or raw when zstd does not shrink it
 * by more than 1%. Every block
 * also carries a checksum (XXH3-64; XXH64 in format 1) of its stored bytes (so any damaged byte of
 * a shard is caught, even one zstd would ignore) and one of its raw values (checked after decoding).
 * Saving encodes and writes at the same time: each block is written (pwritev, straight from the
 * encoder's buffers) as soon as every block before it is encoded.
 */
#ifndef PIPETRAIN_CKPT_H
#define PIPETRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/model.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Newest manifest format version this build reads and writes; newer ones are refused on load.
 * Versions 1 (XXH64 block checksums), 2 and 3 are still read. A checkpoint is written as the
 * oldest version that holds it, so older builds keep reading what they can: one with a piece that
 * is a box of the tensor (a column slice of tensor parallelism, "box") as version 4; else one with
 * a flat piece (ZeRO-1 optimizer slices, row slices: "range") as version 3
 * (PT_CKPT_FORMAT_PIECES); one of whole tensors only as version 2 (PT_CKPT_FORMAT_WHOLE). */
#define PT_CKPT_FORMAT_VERSION 4
#define PT_CKPT_FORMAT_PIECES 3
#define PT_CKPT_FORMAT_WHOLE 2

typedef struct pt_optim pt_optim; /* pipetrain/optim.h */
struct pt_comm;                   /* pipetrain/comm.h */
struct cJSON;                     /* cjson/cJSON.h */

/* ======================================================================================
 * Training-loop API
 * ====================================================================================== */

typedef struct pt_train_state {
    int64_t step;         /* optimizer steps done */
    int64_t data_step;    /* the data loader's next step */
    uint64_t seed;
    const char *run_json; /* model config, plan, schedule, hyper-parameters as JSON text (borrowed on
                             save, malloc'd on load: the caller frees it); NULL on save: "{}" */
} pt_train_state;

typedef struct pt_ckpt_saver pt_ckpt_saver; /* background writer thread */

/* Creates a saver writing checkpoints under `dir` (created if missing), keeping the last
 * `keep_last` complete ones (<= 0: keep all), compressing with zstd level `zstd_level` (1..19;
 * 1 is as small as higher levels on weights and much faster; 0: no compression, every value
 * stored raw and checksummed, as the in-memory snapshots are) on `n_threads` threads (<= 0: 1).
 * Starts the background thread. Memory, kept between saves: a staging buffer as large as the
 * tensors saved, and 2 * n_threads + 1 write buffers of about 8 MB each (made by the first save).
 * Returns PT_EINVAL (bad argument), PT_EIO (cannot create dir). */
pt_status pt_ckpt_saver_create(const char *dir, int keep_last, int zstd_level, int n_threads, pt_ckpt_saver **out);

/* Waits for a save in progress (its error, if any, is dropped: call pt_ckpt_saver_wait first to
 * see it), stops the thread and frees the staging buffers. Accepts NULL. */
void pt_ckpt_saver_destroy(pt_ckpt_saver *s);

/* Where the models' tensors live: `be` (borrowed, a static table) and `stream` (borrowed; must
 * outlive the saver's use of it). NULL be (the default): each model's pt_model_backend and
 * pt_model_stream. Call between saves, not concurrently with pt_ckpt_save. */
void pt_ckpt_saver_set_device(pt_ckpt_saver *s, const pt_backend *be, pt_stream *stream);

/* How pt_ckpt_save_ex saves. Zero-initialised: as pt_ckpt_save. */
typedef struct pt_ckpt_save_opts {
    int optim_only; /* save only the optimizers' moments (optims required), no weights: the data-parallel
                       replicas other than 0 under ZeRO-1, whose slices of the moments no other rank holds */
    int with_copies; /* also save the tied wte copy and LM-head copies whose original none of these chunks
                        holds (each name once), and the elements replicated over the tensor-parallel
                        group that another rank of it writes (pt_param rep_*): a checkpoint that one
                        rank's chunks load from by themselves, as the in-memory snapshots are
                        (pipetrain/snapshot.h) */
} pt_ckpt_save_opts;

/* Allocates the host staging buffer that saves of these models (and optimizers, may be NULL) need
 * and writes every page of it, so that the first pt_ckpt_save stalls training no longer than the
 * later ones (a fresh buffer's page faults made the first save's copy about 5x slower here). Waits for
 * a save being written. Optional; call from the thread that saves. PT_ENOMEM naming the size. */
pt_status pt_ckpt_saver_reserve(pt_ckpt_saver *s, pt_model *const *models, pt_optim *const *optims, int n);
/* The same for saves made with options o (NULL: pt_ckpt_saver_reserve): the moments counted are
 * those of each optimizer's range (pt_optim_range), the weights not at all with o->optim_only. */
pt_status pt_ckpt_saver_reserve_ex(pt_ckpt_saver *s, pt_model *const *models, pt_optim *const *optims, int n,
                                   const pt_ckpt_save_opts *o);

/* Copies this rank's models' weights and AdamW moments (optims[i] belongs to models[i]; optims
 * may be NULL to save weights only; the moments of an optimizer over a range of its model as
 * pieces, pt_ckpt_save_ex) into a host staging buffer (allocated once, grown only when
 * needed) through the backend (pt_ckpt_saver_set_device), then returns; a background thread
 * compresses and writes them. If the previous save is still being written this first waits for
 * it (recorded in pt_ckpt_saver_info). If the previous save failed, returns its error once (and
 * does not start a new one).
 * With comm != NULL this is collective: every rank calls it with the same st->step, from the
 * thread that owns comm. The ranks first agree on the previous save's result (all fail when one
 * rank's part failed), then rank 0 prepares DIR/step_N.tmp/ and all ranks meet at a barrier (comm
 * is used only here and in pt_ckpt_saver_wait: the background thread never touches it). Each rank's thread then writes
 * shard-<rank>.ptz and its index shard-<rank>.json, fsyncs them and creates shard-<rank>.done;
 * rank 0's thread waits for every rank's marker (up to an hour, then an error naming the missing
 * rank), merges the indexes
 * into manifest.json and commits. DIR must be on a file system every rank sees.
 * Blocks only for the copy, the barrier and any wait for the previous save. Not thread-safe with
 * other calls on the same saver. */
pt_status pt_ckpt_save(pt_ckpt_saver *s, struct pt_comm *comm, pt_model *const *models, pt_optim *const *optims,
                       int n, const pt_train_state *st);

/* pt_ckpt_save with options (o NULL: the same as pt_ckpt_save). Moments of an optimizer whose range
 * (pt_optim_range) is not its whole model are saved as pieces: for every saved tensor that
 * intersects the range, the part inside (a whole entry when the range covers the tensor). With
 * o->optim_only, weights are not saved (optims must be non-NULL; PT_EINVAL otherwise). A
 * tensor-parallel chunk (pt_model_tp_size > 1) saves each tensor as its segments' pieces of the
 * whole tensor (row segments as flat ranges, a column segment as a box), without the elements
 * replicated over the group unless pt_model_tp_rank is the tensor's rep_first; one call may hold
 * several TP ranks' chunks (each is saved as its own rank's). A split that checkpoints cannot map
 * (pt_param fields: more than one column segment, a split 3-D tensor) is PT_EINVAL naming the
 * tensor. Collective as pt_ckpt_save: every rank calls pt_ckpt_save or pt_ckpt_save_ex for the
 * same step. When ranks store the same piece (data-parallel replicas without ZeRO), the lowest
 * rank's is kept (also a piece held within another rank's); pieces of one tensor from two ranks
 * that overlap otherwise fail the save when rank 0 merges the indexes (PT_EINVAL naming the
 * tensor, both ranks and both pieces, from pt_ckpt_saver_wait or the next save; nothing is
 * committed). */
pt_status pt_ckpt_save_ex(pt_ckpt_saver *s, struct pt_comm *comm, pt_model *const *models, pt_optim *const *optims,
                          int n, const pt_train_state *st, const pt_ckpt_save_opts *o);

/* Waits until this rank's part of the last save is done (rank 0: committed) or failed. With the
 * last save's comm (collective then: every rank calls it), the ranks then agree on the result:
 * every rank returns an error when any rank's part failed. Returns PT_ETIMEDOUT after an hour. */
pt_status pt_ckpt_saver_wait(pt_ckpt_saver *s);

typedef struct pt_ckpt_save_info {
    int64_t step;            /* step of the last pt_ckpt_save (-1: none yet) */
    int64_t waited_for_step; /* that save first waited for the save of this step (-1: no wait) */
    double wait_s;           /* seconds it waited for the previous save */
    double stage_s;          /* seconds spent copying tensors to the staging buffer (the stall) */
    int done;                /* 1 once the background write finished (ok or not) */
    pt_status status;        /* its result once done */
    double write_s;          /* seconds the background compression + write + commit took */
    double encode_s;         /* thread-seconds compressing and checksumming, summed over the saver's threads */
    double io_s;             /* thread-seconds in pwritev() of the shard, summed over the threads, plus its
                                fsync (encoding and writing overlap: encode_s + io_s may exceed write_s) */
    uint64_t raw_bytes;      /* tensor bytes of this rank's shard */
    uint64_t stored_bytes;   /* bytes of this rank's shard on disk */
    char step_dir[512];      /* the committed directory (DIR/step_NNNNNN) */
} pt_ckpt_save_info;

/* Snapshot of the last save's progress and numbers. Thread-safe. */
void pt_ckpt_saver_info(pt_ckpt_saver *s, pt_ckpt_save_info *out);

typedef struct pt_ckpt_load_info {
    char step_dir[512]; /* the step directory loaded */
    char note[1024];    /* "" or a sentence for the user, e.g. why `latest` was not used */
    int n_loaded;       /* (tensor, kind) pairs copied into the models (tied copies counted each time; a
                           moment when part of it is in the optimizer's range, however many pieces) */
} pt_ckpt_load_info;

/* Loads weights, and AdamW moments and step counts when optims != NULL, into whatever chunks the
 * caller holds, by tensor name, through `be`/`stream` (NULL be: each model's pt_model_backend and
 * pt_model_stream). `dir` is the checkpoint root (uses
 * `latest`, falling back to the newest complete checkpoint when `latest` is missing or damaged:
 * info->note says so) or one step directory. Every tensor of every chunk must be in the
 * checkpoint with the same dtype and whole shape (pt_param gshape for a tensor-parallel slice).
 * Weights are filled over the chunk's slice of each tensor, an optimizer's moments over its range
 * (pt_optim_range) only, assembled from the checkpoint's whole tensors, flat pieces and boxes by
 * tensor name and element (any T, D, P and ZeRO setting); pieces that do not cover the elements
 * needed, or overlap, are PT_EFORMAT naming the tensor, the kind and the elements (a flat range, or
 * rows x columns when a box is involved). st->run_json is
 * malloc'd (caller frees). info may be
 * NULL. Returns PT_EFORMAT / PT_EIO / PT_EINVAL naming the file and tensor; on error the models
 * may be partly loaded. Blocks; decodes on 2 threads. */
pt_status pt_ckpt_load_ex(const char *dir, pt_model *const *models, pt_optim *const *optims, int n,
                          pt_train_state *st, const pt_backend *be, pt_stream *stream, pt_ckpt_load_info *info);

/* pt_ckpt_load_ex with each model's own backend and no info (APIS.md). */
pt_status pt_ckpt_load(const char *dir, pt_model *const *models, pt_optim *const *optims, int n, pt_train_state *st);

/* ======================================================================================
 * Files: directories, manifests, shards (used by `pipetrain ckpt` and the tests)
 * ====================================================================================== */

typedef enum pt_ckpt_kind { PT_CKPT_PARAM, PT_CKPT_ADAM_M, PT_CKPT_ADAM_V, PT_CKPT_KIND_COUNT } pt_ckpt_kind;
typedef enum pt_ckpt_dtype { PT_CKPT_F32, PT_CKPT_BF16, PT_CKPT_DTYPE_COUNT } pt_ckpt_dtype;
/* How a block's values are split into planes before compression. */
typedef enum pt_ckpt_transform {
    PT_CKPT_XFORM_NONE,     /* one plane: the bytes as they are (plain zstd) */
    PT_CKPT_XFORM_BYTES,    /* byte plane k of every value stored together (elem_size planes) */
    PT_CKPT_XFORM_EXPSPLIT, /* value rotated left by 1 bit, then byte planes: the exponent gets a plane
                               of its own; sign + mantissa fill the others */
    PT_CKPT_XFORM_COUNT
} pt_ckpt_transform;
typedef enum pt_ckpt_plane_codec { PT_CKPT_PLANE_RAW, PT_CKPT_PLANE_ZSTD, PT_CKPT_PLANE_CODEC_COUNT } pt_ckpt_plane_codec;
/* The block checksum function: XXH64 (format 1) or XXH3-64 (format 2, ~2-4x faster), seed 0. */
typedef enum pt_ckpt_hash { PT_CKPT_HASH_XXH64, PT_CKPT_HASH_XXH3, PT_CKPT_HASH_COUNT } pt_ckpt_hash;

#define PT_CKPT_MAX_PLANES 4
#define PT_CKPT_MAX_DIMS 4

/* Stable names used in manifests: "param", "f32", "expsplit", "zstd" ... (NULL when out of range). */
const char *pt_ckpt_kind_name(pt_ckpt_kind k);
const char *pt_ckpt_dtype_name(pt_ckpt_dtype d);
const char *pt_ckpt_transform_name(pt_ckpt_transform t);
size_t pt_ckpt_dtype_size(pt_ckpt_dtype d); /* bytes per value (0 when out of range) */

typedef struct pt_ckpt_block {
    uint64_t hash;                                 /* of the block's raw bytes (the values), the entry's hash */
    uint64_t stored_hash;                          /* of the block's stored bytes (all planes) */
    uint8_t codec[PT_CKPT_MAX_PLANES];             /* pt_ckpt_plane_codec per plane */
    uint64_t plane_bytes[PT_CKPT_MAX_PLANES];      /* stored bytes per plane */
} pt_ckpt_block;

/* A rectangle of a tensor's 2-D VIEW: rows [r0, r1) x columns [c0, c1). The view of a tensor of
 * shape (d0, d1, ..., dk) has d0 rows of d1 * ... * dk columns (its row-major values are the
 * tensor's flattened ones); a 1-D tensor (d0) is d0 rows of one column; a scalar 1 x 1. */
typedef struct pt_ckpt_box {
    uint64_t r0, r1, c0, c1;
} pt_ckpt_box;

/* One tensor of a checkpoint, or one piece of it: identity, and where and how it is stored. */
typedef struct pt_ckpt_entry {
    char *name; /* owned (manifest) */
    pt_ckpt_kind kind;
    pt_ckpt_dtype dtype;
    int ndim;
    int64_t shape[PT_CKPT_MAX_DIMS]; /* the whole tensor's shape, also for a piece */
    pt_ckpt_box box;             /* the part of the view the values come from: the whole view for whole
                                    tensors and flat pieces (formats 1-3), less for a box (manifest "box") */
    uint64_t elem_lo, elem_hi;   /* the elements [elem_lo, elem_hi) of the box's row-major values stored
                                    here: [0, numel) for a whole tensor, less for a flat piece (manifest
                                    "range"), [0, box rows x columns) for all of a box */
    int rank;                    /* shard-<rank>.ptz */
    uint64_t offset;             /* byte offset in the shard */
    uint64_t stored_bytes;       /* sum of every block's planes */
    uint64_t raw_bytes;          /* (elem_hi - elem_lo) * dtype size */
    pt_ckpt_transform transform;
    uint64_t block_elems;        /* values per block (the last one may be shorter) */
    int n_planes;                /* planes per block: 1 (NONE) or dtype size */
    int64_t n_blocks;
    pt_ckpt_block *blocks;       /* owned, [n_blocks] */
    pt_ckpt_hash hash;           /* how the blocks' checksums were computed */
} pt_ckpt_entry;

typedef struct pt_ckpt_manifest {
    int version;
    int64_t step, data_step;
    uint64_t seed;
    int n_ranks;           /* shards shard-0 .. shard-(n_ranks-1) */
    char *run_json;        /* owned; "{}" when none */
    int n_entries;
    pt_ckpt_entry *entries; /* owned */
} pt_ckpt_manifest;

/* Parses manifest JSON text and checks it completely (types, ranges, sizes adding up, each piece
 * within its tensor, (name, kind, box, range) unique), so that readers can trust every field; whether
 * a tensor's pieces cover it exactly once is pt_ckpt_manifest_cover's. `what` names it in errors.
 * PT_EFORMAT naming the field. *out owned by the caller. */
pt_status pt_ckpt_manifest_parse(const char *text, size_t len, const char *what, pt_ckpt_manifest **out);
/* Reads and parses STEP_DIR/manifest.json. */
pt_status pt_ckpt_manifest_read(const char *step_dir, pt_ckpt_manifest **out);
/* Builds the manifest's JSON (caller cJSON_Deletes *out). */
pt_status pt_ckpt_manifest_to_json(const pt_ckpt_manifest *m, struct cJSON **out);
void pt_ckpt_manifest_destroy(pt_ckpt_manifest *m); /* accepts NULL */
/* The entry of (name, kind), or NULL; for a tensor stored as pieces, its first piece in the
 * manifest (pt_ckpt_manifest_pieces lists them all). Linear in the number of entries. */
const pt_ckpt_entry *pt_ckpt_manifest_find(const pt_ckpt_manifest *m, const char *name, pt_ckpt_kind kind);

/* Values of the whole tensor an entry belongs to (the product of its shape). */
uint64_t pt_ckpt_entry_numel(const pt_ckpt_entry *e);
/* 1 when the entry is a piece of its tensor (not all of it: a flat range or a box). */
int pt_ckpt_entry_is_piece(const pt_ckpt_entry *e);
/* 1 when the entry's box is not the whole view (a format-4 box piece). */
int pt_ckpt_entry_is_box(const pt_ckpt_entry *e);

/* The 2-D view of a shape (pt_ckpt_box): *rows = d0 (1 for a scalar), *cols = d1 * ... (1 for ndim <= 1). */
void pt_ckpt_view(int ndim, const int64_t *shape, uint64_t *rows, uint64_t *cols);
/* The elements of values [lo, hi) of box b (row-major; lo < hi <= its rows x columns) as at most 3
 * disjoint rectangles of the view (a partial first row, whole rows, a partial last row) into out;
 * returns how many. */
int pt_ckpt_box_rects(pt_ckpt_box b, uint64_t lo, uint64_t hi, pt_ckpt_box out[3]);
/* The entry's elements as at most 3 rectangles of its tensor's view (pt_ckpt_box_rects). */
int pt_ckpt_entry_rects(const pt_ckpt_entry *e, pt_ckpt_box out[3]);
/* Which elements an entry holds, for people: "all", "LO:HI" (a flat piece: elements [LO, HI) of the
 * flattened values), "rows R0:R1 cols C0:C1" (a box), with " values LO:HI" for part of a box. */
void pt_ckpt_entry_where(const pt_ckpt_entry *e, char *buf, size_t cap);

/* Every entry of (name, kind) — one whole tensor, or its pieces — sorted by box (r0, c0, r1, c1),
 * then elem_lo, elem_hi and rank, into *out (malloc'd, caller frees; NULL when *n == 0): the flat
 * pieces of formats 1-3 by elem_lo. PT_ENOMEM only. */
pt_status pt_ckpt_manifest_pieces(const pt_ckpt_manifest *m, const char *name, pt_ckpt_kind kind,
                                  const pt_ckpt_entry ***out, int *n);

/* Checks that the entries of (name, kind) hold elements [lo, hi) of the tensor's flattened values
 * exactly once: no two of the tensor's entries overlap (anywhere), and their union covers [lo, hi).
 * `what` names the checkpoint in errors (its manifest path). PT_EFORMAT naming the tensor, the kind,
 * the missing (or doubly stored) elements (a flat range when no box is involved, else rows x
 * columns), the pieces there are, and what to do; PT_ENOMEM. */
pt_status pt_ckpt_manifest_cover(const pt_ckpt_manifest *m, const char *name, pt_ckpt_kind kind, uint64_t lo,
                                 uint64_t hi, const char *what);

/* Resolves `dir` to one step directory: a step directory itself, or a root whose `latest` names
 * one; when `latest` is missing or names a missing/damaged checkpoint, the newest complete one
 * (by step number, manifest parses) is used and `note` explains. `*.tmp` directories are never
 * used. PT_EIO/PT_EFORMAT when none is usable. note may be NULL. */
pt_status pt_ckpt_resolve(const char *dir, char *step_dir, size_t step_dir_cap, char *note, size_t note_cap);

/* The step of the checkpoint a resume from `dir` would take (pt_ckpt_resolve: `latest`, or the
 * newest complete one), or -1 when there is none (no error is left set). */
int64_t pt_ckpt_resume_step(const char *dir);

/* Takes the checkpoint root's lock for one training job (its rank 0), so two jobs never write one
 * root at once (they would race on `latest.tmp`): creates root (and parents) if needed, opens
 * root/.lock and takes an exclusive flock on it, without waiting, then writes "pid P on HOST" into
 * it. The lock is held until pt_ckpt_unlock or this process ends (a crash releases it); the file
 * descriptor is close-on-exec. *fd receives the open descriptor. PT_EINVAL when another process
 * holds it, naming the holder ("pid 4242 on node7") and the fix; PT_EIO for file system errors. */
pt_status pt_ckpt_lock(const char *root, int *fd);
/* Releases a lock from pt_ckpt_lock (fd < 0: nothing). */
void pt_ckpt_unlock(int fd);

/* Whether one step directory is usable as pt_ckpt_resolve judges it (cheap, reads no tensor): its
 * manifest parses and every shard it names exists with at least the bytes the manifest needs.
 * PT_EFORMAT / PT_EIO naming the file otherwise. */
pt_status pt_ckpt_check_step(const char *step_dir);

struct pt_model_config; /* pipetrain/model_config.h */
/* The model config a checkpoint's run description (pt_ckpt_manifest.run_json; NULL reads as "{}")
 * records: model_opt (the --model option) when given, else its "model" (a config object, as
 * training writes it, or a preset name / config file path). PT_EINVAL suggesting --model when it
 * records none; the config parser's errors otherwise. */
pt_status pt_ckpt_run_model_config(const char *run_json, const char *model_opt, struct pt_model_config *cfg);

struct pt_dataset; /* pipetrain/data.h */
/* Refuses resuming the checkpoint under `dir` (a root or a step directory) on data set `d` when the
 * checkpoint was trained on data of another tokenizer (pt_dataset_check_run, naming both), before
 * any weight is read. A checkpoint that cannot be resolved or read passes: the load that follows
 * reports what is wrong with it. */
pt_status pt_ckpt_check_data(const char *dir, const struct pt_dataset *d);

/* Steps of the complete checkpoints under root (directories step_NNNNNN holding a manifest.json),
 * ascending; *steps malloc'd (caller frees; NULL when *n == 0). */
pt_status pt_ckpt_list(const char *root, int64_t **steps, int *n);

/* A shard's file name in a step directory, "shard-<rank>.ptz", into buf. */
void pt_ckpt_shard_name(int rank, char *buf, size_t cap);
/* A step directory's name, "step_%06lld" (step_000100), into buf: the one spelling of it. */
void pt_ckpt_step_name(int64_t step, char *buf, size_t cap);

/* Removes a directory holding only plain files (a step directory). Missing is not an error. */
pt_status pt_ckpt_remove_dir(const char *dir);

/* Removes every step directory under root except the complete one of `step` (-1: every one):
 * complete ones (manifest first, so a half removed directory never looks complete) and `*.tmp`
 * ones (writes that never finished). `latest` is left as it is. PT_EIO naming the file. */
pt_status pt_ckpt_keep_only(const char *root, int64_t step);

/* Commits a written checkpoint: writes tmp_dir/manifest.json (fsynced), fsyncs tmp_dir, renames
 * it to root/step_NNNNNN (an existing one is moved aside first and removed after, unless
 * refuse_existing), fsyncs root, replaces root/latest atomically, then prunes to keep_last (<= 0:
 * keeps all). `final_dir` (may be NULL) receives the committed path. The savers' commit, and the
 * one of a step directory copied from another host (the snapshots' buddy copies). */
pt_status pt_ckpt_commit(const char *root, const char *tmp_dir, const pt_ckpt_manifest *m, int keep_last,
                         int refuse_existing, char *final_dir, size_t final_cap);

/* ---- reading tensors ---- */
typedef struct pt_ckpt_reader pt_ckpt_reader;

/* Opens a step directory (use pt_ckpt_resolve for a root): reads the manifest; shards are mapped
 * on first use. n_threads decoding threads (<= 0: 1). */
pt_status pt_ckpt_reader_open(const char *step_dir, int n_threads, pt_ckpt_reader **out);
void pt_ckpt_reader_close(pt_ckpt_reader *r); /* accepts NULL */
const pt_ckpt_manifest *pt_ckpt_reader_manifest(const pt_ckpt_reader *r);
/* Decodes entries e[i] into dst[i] (host, e[i]->raw_bytes each), checking every checksum and that
 * the shard holds the bytes. PT_EFORMAT / PT_EIO naming the shard file and tensor. Blocks. */
pt_status pt_ckpt_reader_read(pt_ckpt_reader *r, int n, const pt_ckpt_entry *const *e, void *const *dst);

/* ---- writing a checkpoint from host tensors (import, tests, tools) ---- */
typedef struct pt_ckpt_src {
    const char *name; /* borrowed */
    pt_ckpt_kind kind;
    pt_ckpt_dtype dtype;
    int ndim;
    int64_t shape[PT_CKPT_MAX_DIMS]; /* the whole tensor's */
    const void *data;                /* borrowed, host: the values stored (numel, or elem_hi - elem_lo) */
    uint64_t elem_lo, elem_hi;       /* both 0: the whole tensor (box); else a piece, elements [elem_lo, elem_hi)
                                        of the flattened shape, or of the box's row-major values (0 <= lo < hi
                                        <= their number); after data, so that positional initialisers of whole
                                        tensors stay valid */
    pt_ckpt_box box;                 /* all 0: the whole view; else a box of it (0 <= r0 < r1 <= rows, 0 <= c0
                                        < c1 <= columns: pt_ckpt_view), stored as given (format 4 when it is
                                        not the whole view) */
} pt_ckpt_src;

typedef struct pt_ckpt_codec_opts {
    pt_ckpt_transform transform; /* how blocks are split into planes (the tie-break with choose_transform) */
    int zstd_level;              /* 1..19 */
    int raw_if_no_gain;          /* store a plane raw when zstd does not shrink it by more than 1% */
    int choose_transform;        /* per tensor, try BYTES and EXPSPLIT on a 16 Ki-value sample and keep the
                                    smaller (`transform` is then only the tie-break) */
    uint64_t block_elems;        /* values per block; 0: 1 Mi */
    int n_threads;               /* <= 0: 1 */
    int fast_planes;             /* at zstd levels 1..3, byte planes (not NONE) are compressed with the level's
                                    parameters but a match search that finds almost nothing: they are coded by
                                    zstd's Huffman stage, 2.5x faster, and as small within 1%
                                    (docs/checkpoints.md). Decoding is unaffected */
    int store_raw;               /* every plane stored raw, no zstd (zstd_level is then ignored): the
                                    in-memory snapshots, where the copy's speed matters and not its size.
                                    Blocks keep both checksums */
} pt_ckpt_codec_opts;

/* The codec pipetrain writes checkpoints with: EXPSPLIT or BYTES per tensor (choose_transform),
 * raw_if_no_gain, fast_planes, 1 Mi blocks. */
pt_ckpt_codec_opts pt_ckpt_codec_default(int zstd_level, int n_threads);

/* Writes a complete single-shard checkpoint ROOT/step_NNNNNN (tmp dir, fsync, rename, `latest`,
 * then deletes all but the newest keep_last when keep_last > 0). Refuses to replace an existing
 * step directory (PT_EINVAL). Blocks. */
pt_status pt_ckpt_write(const char *root, const pt_ckpt_src *t, int n, const pt_train_state *st,
                        const pt_ckpt_codec_opts *o, int keep_last);

/* ---- the codec alone (benchmarks, tests) ---- */
typedef struct pt_ckpt_codec pt_ckpt_codec;

/* Per-thread zstd contexts and scratch for o->n_threads threads. */
pt_status pt_ckpt_codec_create(const pt_ckpt_codec_opts *o, pt_ckpt_codec **out);
void pt_ckpt_codec_destroy(pt_ckpt_codec *c); /* accepts NULL */
/* Worst-case encoded size of n values of dtype dt with blocks of block_elems (0: 1 Mi). */
size_t pt_ckpt_encode_bound(pt_ckpt_dtype dt, uint64_t n, uint64_t block_elems);
/* Encodes tensors src[i] (ndim/shape give the value count) into dst[i] (dst_cap[i] >= the
 * bound), filling e[i]'s stored fields (dtype, shape, transform, blocks; name and kind copied
 * by pointer — e[i].name is borrowed from src; offset and rank are left 0). Blocks of all
 * tensors are spread over the codec's threads. e[i].blocks is malloc'd (free it, or use
 * pt_ckpt_entry_clear). Not thread-safe per codec. */
pt_status pt_ckpt_encode(pt_ckpt_codec *c, int n, const pt_ckpt_src *src, uint8_t *const *dst,
                         const size_t *dst_cap, pt_ckpt_entry *e);
/* Decodes e[i] from src[i] (src_len[i] bytes available) into dst[i] (e[i]->raw_bytes). Checks
 * zstd's checksums, every block's XXH64 and every size. PT_EFORMAT naming the tensor and block. */
pt_status pt_ckpt_decode(pt_ckpt_codec *c, int n, const pt_ckpt_entry *const *e, const uint8_t *const *src,
                         const size_t *src_len, void *const *dst);
/* Frees e->blocks (not e->name) and zeroes the pointer. */
void pt_ckpt_entry_clear(pt_ckpt_entry *e);

/* XXH64 (seed `seed`) of n bytes: the block checksum of format 1. */
uint64_t pt_ckpt_xxh64(const void *data, size_t n, uint64_t seed);
/* Checksum h (seed 0) of n bytes, as blocks record it. Thread-safe. */
uint64_t pt_ckpt_hash_bytes(pt_ckpt_hash h, const void *data, size_t n);
/* Stable names used in manifests: "xxh64", "xxh3" (NULL when out of range). */
const char *pt_ckpt_hash_name(pt_ckpt_hash h);

#ifdef __cplusplus
}
#endif
#endif
