/* comm/link_internal.h — shared by the link files of comm/ only (link.c and the kinds'
 * link_*.c). Nothing here is public API; the kinds' operations are reached through the table of
 * pipetrain/link.h. */
#ifndef PT_COMM_LINK_INTERNAL_H
#define PT_COMM_LINK_INTERNAL_H

#include <stdlib.h>

#include "pipetrain/link.h"

/* The kinds' operations (link_host.c, link_staged.c with CUDA, nccl/link_nccl.c with NCCL).
 * link.c's registration point is the only user. */
extern const pt_link_ops pt_link_host_ops;
extern const pt_link_ops pt_link_staged_ops;
extern const pt_link_ops pt_link_nccl_ops;

/* This rank's pt_comm group of each of o's groups (NULL where it is not a member), as a malloc'd
 * array of o->n_groups entries (at least one, so the caller may free it); NULL when out of
 * memory. Inline so that the kinds' files do not call back into link.c, which calls them. */
static inline pt_comm_group **pt_link_groups_copy(const pt_link_opts *o)
{
    pt_comm_group **g = (pt_comm_group **)calloc((size_t)(o->n_groups > 0 ? o->n_groups : 1), sizeof *g);
    for (int i = 0; g != NULL && i < o->n_groups; i++)
        g[i] = o->groups[i].g;
    return g;
}

#endif
