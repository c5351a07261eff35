/* pipetrain/snapshot.h — in-memory snapshots of a training job's state, with a buddy copy on
 * another node, so that an automatic restart reloads from memory instead of the disk checkpoint
 * (`train --snapshot-every K`, docs/fault-tolerance.md).
 *
 * A snapshot is this rank's whole state after a step: its chunks' weights and AdamW moments (its
 * slice of them with --zero 1), the step, the data position and the seed — a one-shard checkpoint
 * of the rank (pipetrain/ckpt.h), stored raw (no compression) and checksummed, in a directory of a
 * memory file system that outlives the process (/dev/shm by default):
 *     DIR/rank-R/step_N/          this rank's own snapshot (a checkpoint root of one rank)
 *     DIR/buddy-Q/step_N/         the copy this rank holds for rank Q, its buddy on another node
 * Ranks are numbered node by node (L = ranks per node): rank R sends its copy to rank (R + L) % W
 * and holds the one of rank (R - L) % W, so a copy is always on another node. With one node there
 * is no buddy (a node lost is then recovered from the disk checkpoint).
 *
 * Taking one (every rank, after the same step): the training thread copies the state into a host
 * staging buffer and returns; the snapshot's saver thread writes DIR/rank-R/step_N (tmp dir,
 * rename, `latest`, as a checkpoint), and then a second thread sends the committed files to the
 * buddy over a communicator of its own (pt_comm_dup) and receives its source's, committed the
 * same way under DIR/buddy-Q; then, on that communicator, the ranks agree (one small all-reduce)
 * that every rank has the new one, and only then is anything older removed: a failure at any
 * moment leaves every rank a step that all of them hold — in its own memory or at its buddy. The
 * next snapshot waits for all of that. A half-written snapshot is a `*.tmp` directory, never used.
 *
 * Memory per rank (S = the bytes of its state: 4 per weight + 8 per moment pair in its range):
 * the staging buffer S, its own snapshot S and its source's copy S, plus, while a snapshot is
 * written, the new one's S of each: 3 S steady, 5 S at the peak. The memory file system's pages
 * are host memory; the snapshots of a run that finished are removed (pt_snapshot_remove).
 *
 * Restoring (collective, before training): pt_snapshot_restore. The ranks say which snapshot
 * steps they hold (their own and the copy they keep); the newest step every rank can get, from its
 * own memory or from its buddy, is taken when it is newer than the disk checkpoint. Ranks whose own
 * copy is missing (their node was replaced) or fails its checksums receive it from their buddy.
 * When some rank can get it from neither, nothing is loaded and the caller uses the disk. */
#ifndef PIPETRAIN_SNAPSHOT_H
#define PIPETRAIN_SNAPSHOT_H

#include <stdint.h>

#include "pipetrain/ckpt.h"
#include "pipetrain/comm.h"
#include "pipetrain/model.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_snapshot pt_snapshot;

typedef struct pt_snapshot_opts {
    const char *dir;      /* the node's store: DIR/rank-R and DIR/buddy-Q are made under it */
    int rank, world;      /* this rank, the job's ranks (world 1: one process, no comm) */
    int ranks_per_node;   /* L: ranks R*L .. R*L+L-1 share a node; L >= world: one node, no buddy */
} pt_snapshot_opts;

/* Opens the store (creates DIR/rank-R; removes nothing in it) and, with world > 1, makes the
 * background thread's communicator: pt_comm_dup of comm, collective over comm's world (every rank
 * calls pt_snapshot_open at the same point). comm may be NULL with world 1. PT_EINVAL for bad options,
 * PT_EIO when DIR cannot be made (naming it), the dup's errors. */
pt_status pt_snapshot_open(const pt_snapshot_opts *o, pt_comm *comm, pt_snapshot **out);

/* Waits for the background work in progress (its error is dropped: pt_snapshot_wait first) and
 * frees everything. The stored snapshots stay. Accepts NULL. */
void pt_snapshot_close(pt_snapshot *s);

/* Allocates the staging buffer of these chunks' snapshots now and touches its pages, so the first
 * snapshot stalls training no longer than the later ones. Optional. */
pt_status pt_snapshot_reserve(pt_snapshot *s, pt_model *const *models, pt_optim *const *optims, int n);

/* Takes the snapshot of step ts->step (every rank after the same step, from the training thread).
 * First waits for the previous snapshot's background work and returns its error if it failed on
 * any rank (each rank's thread learns that in the agreement, which names the rank); then copies
 * this rank's state into the staging buffer and returns: that copy is the training's stall.
 * PT_EIO from a write (naming the file), PT_ETIMEDOUT / PT_ECOMM from the copy or the agreement. */
pt_status pt_snapshot_take(pt_snapshot *s, pt_model *const *models, pt_optim *const *optims, int n,
                           const pt_train_state *ts);

/* Waits until the last snapshot is written and copied to the buddy; its result. */
pt_status pt_snapshot_wait(pt_snapshot *s);

typedef enum pt_snapshot_source {
    PT_SNAPSHOT_NONE,   /* nothing loaded: use the disk checkpoint */
    PT_SNAPSHOT_MEMORY, /* every rank from its own memory */
    PT_SNAPSHOT_BUDDY,  /* some ranks from their buddy's copy (the others from their own) */
} pt_snapshot_source;

typedef struct pt_snapshot_restore_info {
    pt_snapshot_source source;
    int64_t step;      /* the step restored, or -1 */
    int from_buddy;    /* ranks that received their copy from their buddy */
    int damaged;       /* ranks whose own copy failed its checksums (then taken from the buddy) */
    double fetch_s;    /* seconds receiving buddy copies */
    int touched;       /* this rank's models were (partly) loaded, though the restore failed: whoever
                          goes on must load or initialise every tensor again */
    char note[512];    /* "" or a sentence for the user: which ranks came from where, why not memory */
} pt_snapshot_restore_info;

/* Restores the newest snapshot step every rank can get, when it is newer than disk_step (the step
 * of the disk checkpoint a resume would take; -1: none), into the models and optimizers (as
 * pt_ckpt_load_ex: by tensor name and range) and *ts (run_json malloc'd; the caller frees it).
 * Collective over comm (NULL with world 1). PT_OK with info->source PT_SNAPSHOT_NONE when no such
 * step exists or some rank could not load it (info->note says which and why; the models may then
 * be partly loaded: the caller loads the disk checkpoint over them). Errors only from the
 * communication (PT_ETIMEDOUT / PT_ECOMM naming the rank). */
pt_status pt_snapshot_restore(pt_snapshot *s, pt_comm *comm, int64_t disk_step, pt_model *const *models,
                              pt_optim *const *optims, int n, pt_train_state *ts, pt_snapshot_restore_info *info);

/* Removes every snapshot in this rank's store (its own and the copy it holds), for a run that starts
 * from the beginning or from the disk checkpoint: a later restart must never find snapshots of a
 * past this run does not have. Waits for background work first. */
pt_status pt_snapshot_discard(pt_snapshot *s);

/* Removes this rank's stored snapshots (its own and the copy it holds), once the run has finished
 * and its last checkpoint is durable: the memory is given back. Waits for background work first. */
pt_status pt_snapshot_remove(pt_snapshot *s);

/* Removes the stores of other layouts beside `dir` (the layout-* directories of its parent but
 * dir's own): snapshots of a job before an elastic shrink, which no rank of this layout can load.
 * One process per node calls it (the first local rank), before the job's first snapshot. */
pt_status pt_snapshot_remove_others(const char *dir);

/* The last snapshot's numbers (thread-safe). */
typedef struct pt_snapshot_info {
    int64_t step;      /* of the last pt_snapshot_take (-1: none) */
    double stage_s;    /* the training thread's stall: the copy into the staging buffer */
    double waited_s;   /* of which, waiting for the previous snapshot's background work (> 0: the interval
                          is shorter than writing and copying one takes) */
    double write_s;    /* the background write into the store (of the last finished snapshot) */
    double buddy_s;    /* the background copy to the buddy, from its source, and the agreement (idem) */
    uint64_t bytes;    /* this rank's snapshot bytes */
} pt_snapshot_info;
void pt_snapshot_get_info(pt_snapshot *s, pt_snapshot_info *out);

#ifdef __cplusplus
}
#endif
#endif
