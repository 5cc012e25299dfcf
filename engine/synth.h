/* Random RWKV-4 models of any shape, written as torch.save or safetensors would write them.
 *
 * The values come from a seeded generator, one stream per tensor, so the same options give the
 * same bytes, and the .pth and .safetensors files of one seed hold the same values. They make a
 * well-behaved model: matrices uniform with the variance of 1/fan_in (att.key three times wider,
 * as in the synth fixture, so that |k| reaches tens), LayerNorm weights near 1, time_decay raw in
 * [-5, 3], time_first in [-1, 1], time_mix in (0, 1). Writing streams: memory stays at a few MiB
 * whatever the shape, so a 14B-shaped file can be written. */
#ifndef BATON_SYNTH_H
#define BATON_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

enum {
    BATON_SYNTH_LAYER_MAX = 1024, /* keeps 18 L + 6 tensors under BATON_TENSOR_COUNT_MAX */
    BATON_SYNTH_EMBD_MAX = 1 << 16,
    BATON_SYNTH_VOCAB_MAX = 1 << 24,
    BATON_SYNTH_FFN_MAX = 1 << 18,
};

typedef struct {
    int n_layer;       /* 1..BATON_SYNTH_LAYER_MAX */
    int n_embd;        /* C, 1..BATON_SYNTH_EMBD_MAX */
    int n_vocab;       /* V, 1..BATON_SYNTH_VOCAB_MAX */
    int n_ffn;         /* F, 1..BATON_SYNTH_FFN_MAX; 0 means 4 C */
    baton_dtype dtype; /* of every tensor, vectors included, as in the official checkpoints */
    uint64_t seed;
    bool zero_matrices; /* every matrix all zeros, left as holes: a sparse file written at once */
    bool hf_names;      /* Hugging Face transformers names instead of the official ones */
    bool progress;      /* show progress on a terminal */
} baton_synth_options;

/* Writes the model to path, whose extension picks the format: ".pth" (a torch.save zip, official
 * layout: time_mix of shape (1, 1, C), storages 64-byte aligned, ZIP64 records where anything
 * passes 4 GiB) or ".safetensors". On error the partial file is removed and err names path. */
baton_status baton_synth_write(const baton_synth_options *options, const char *path,
                               baton_error *err);

#endif
