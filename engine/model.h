/* An RWKV-4 model in memory: hyperparameters and weights, as the engines read them.
 *
 * Matrices keep the dtype they have in the file (fp32, fp16 or bf16) and point into the file's
 * read-only mapping when they are aligned there, so loading a 28 GB bf16 model costs its file pages
 * and nothing more; a misaligned matrix is copied once into an aligned buffer. The small vectors
 * (LayerNorm parameters, time_mix, time_first, time_decay) are converted to float32 at load, and
 * time_decay is stored already as -exp(time_decay) as the reference does. Row-major throughout:
 * a matrix of shape (rows, cols) maps a cols-vector to a rows-vector, y = W x. */
#ifndef BATON_MODEL_H
#define BATON_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

typedef struct {
    const void *data; /* rows * cols elements of dtype, aligned to the element size */
    baton_dtype dtype;
    int64_t rows, cols;
} baton_matrix;

typedef struct {
    float *ln1_w, *ln1_b;       /* (C) */
    float *att_time_mix_k;      /* (C) */
    float *att_time_mix_v;      /* (C) */
    float *att_time_mix_r;      /* (C) */
    float *att_time_first;      /* (C) u */
    float *att_time_decay;      /* (C) w = -exp(time_decay as stored) */
    baton_matrix att_key;       /* (C, C) */
    baton_matrix att_value;     /* (C, C) */
    baton_matrix att_receptance;/* (C, C) */
    baton_matrix att_output;    /* (C, C) */
    float *ln2_w, *ln2_b;       /* (C) */
    float *ffn_time_mix_k;      /* (C) */
    float *ffn_time_mix_r;      /* (C) */
    baton_matrix ffn_key;       /* (F, C) */
    baton_matrix ffn_receptance;/* (C, C) */
    baton_matrix ffn_value;     /* (C, F) */
} baton_layer;

typedef struct baton_model {
    int n_layer; /* layers in the file */
    int n_embd;  /* C */
    int n_vocab; /* V */
    int n_ffn;   /* F, usually 4 C */
    baton_dtype dtype; /* dtype of the big matrices in the file */

    /* The layers loaded: [layer_begin, layer_end). Only those entries of layers[] are filled. */
    int layer_begin, layer_end;
    bool has_embedding; /* emb and ln0 loaded (layer_begin == 0 and asked for) */
    bool has_head;      /* ln_out and head loaded (layer_end == n_layer and asked for) */

    baton_matrix emb;          /* (V, C) */
    float *ln0_w, *ln0_b;      /* (C) blocks.0.ln0, applied to the embedding */
    baton_layer *layers;       /* [n_layer] */
    float *ln_out_w, *ln_out_b;/* (C) */
    baton_matrix head;         /* (V, C) */

    struct baton_model_private *priv; /* the mapping and owned buffers */
} baton_model;

typedef struct {
    int layer_begin, layer_end; /* both 0: all layers */
    bool skip_embedding;        /* do not load emb/ln0 even when layer_begin == 0 */
    bool skip_head;             /* do not load ln_out/head even when layer_end == n_layer */
    bool prefetch;              /* read every loaded page now, with progress on a terminal */
} baton_model_options;

/* Loads the model at path (.pth or .safetensors; official or Hugging Face tensor names).
 * options may be NULL (everything, no prefetch). On error returns non-OK, *out is NULL and
 * err names the file and what is wrong. */
baton_status baton_model_load(const char *path, const baton_model_options *options,
                              baton_model **out, baton_error *err);

/* Frees everything the model owns and unmaps the file; NULL is a no-op. */
void baton_model_free(baton_model *model);

/* Bytes of the big matrices of the loaded layers in their file dtype (what an engine uploads),
 * the embedding and the head included when they are loaded. */
uint64_t baton_model_weight_bytes(const baton_model *model);

#endif
