/* Internal to pt_data (src/data): the token file formats' mapping and checks (shards.c), shared by
 * the data sets (dataset.c) and `prepare` (prepare.c), and the module's hashes (the tokenizer's
 * fingerprint uses FNV-1a too). Not installed. */
#ifndef PT_DATA_INTERNAL_H
#define PT_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/data.h"

/* The formats a token file may have. */
typedef enum {
    PT_TF_PTTOKENS = 0, /* pipetrain's older format (40-byte header, 1/2/4-byte tokens, checksum) */
    PT_TF_LLMC16 = 1,   /* llm.c: magic 20240520, version 1, uint16 tokens */
    PT_TF_LLMC32 = 2    /* llm.c: magic 20240801, version 7, uint32 tokens */
} pt_tf_kind;

/* A read-only mapping of one token file whose header and size were checked (not its tokens). */
typedef struct pt_token_map {
    void *map;
    size_t map_bytes;
    const unsigned char *tokens; /* the first token */
    int width;                   /* bytes per token: 1, 2 or 4 */
    int kind;                    /* pt_tf_kind */
    int vocab;                   /* PTTOKENS: the header's vocab size; llm.c: 0 (the header has none) */
    uint64_t checksum;           /* PTTOKENS: the header's FNV-1a-64 of the token bytes */
    uint64_t n;                  /* tokens */
} pt_token_map;

/* Maps `path` and checks its header against its size: PT_EFORMAT naming the file for a bad magic,
 * an unknown version, a truncated body or trailing bytes; PT_EIO when it cannot be opened. */
pt_status pt__token_map_open(const char *path, pt_token_map *tm);
/* Checks every token is < vocab (and a PTTOKENS checksum): PT_EFORMAT naming the file, the token,
 * its index and its byte offset in the file. */
pt_status pt__token_map_check(const pt_token_map *tm, const char *path, int vocab);
void pt__token_map_close(pt_token_map *tm);

static inline uint32_t pt__token_at(const unsigned char *p, int width, size_t i)
{
    switch (width) {
    case 1: return p[i];
    case 2: return (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8;
    default:
        return (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    }
}

/* The header bytes before the first token of a file of `kind`. */
static inline int pt__tf_header_bytes(int kind)
{
    return kind == PT_TF_PTTOKENS ? PT_TOKEN_FILE_HEADER_BYTES : PT_SHARD_HEADER_BYTES;
}

uint64_t pt__splitmix64(uint64_t x);

/* FNV-1a 64 over n bytes, continuing from h (start from PT_FNV_OFFSET): the PTTOKENS checksum, the
 * built-in task's eval split and the tokenizer fingerprint. */
#define PT_FNV_OFFSET 0xCBF29CE484222325ull
static inline uint64_t pt__fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

#endif
