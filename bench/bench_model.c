/* Random fp16 weights for the bench, written straight as fp16 bits by a xorshift generator per
 * thread: a 28 GB 14B-shaped model fills in seconds on a many-core host. */
#include "bench_model.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { FILL_THREADS_MAX = 64 };

typedef struct {
    uint16_t *data;
    size_t begin, end;
    uint64_t seed;
    float scale;
} fill_job;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform values in [-scale, scale), as fp16 built from a small table of the 256 magnitudes. */
static void *fill_run(void *arg) {
    fill_job *job = arg;
    uint16_t table[256];
    for (int i = 0; i < 256; i++) table[i] = baton_f32_to_f16(job->scale * ((float)i + 0.5f) / 256.0f);
    uint64_t x = mix64(job->seed + job->begin) | 1;
    size_t i = job->begin;
    while (i < job->end) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t r = x;
        for (int k = 0; k < 4 && i < job->end; k++, i++, r >>= 16)
            job->data[i] = (uint16_t)(table[r & 0xff] | ((r & 0x100) ? 0x8000u : 0u));
    }
    return NULL;
}

static void fill_f16(uint16_t *data, size_t n, uint64_t seed, float scale) {
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = nproc < 1 ? 1 : nproc > FILL_THREADS_MAX ? FILL_THREADS_MAX : (int)nproc;
    if (n < ((size_t)1 << 22)) nt = 1;
    fill_job jobs[FILL_THREADS_MAX];
    pthread_t threads[FILL_THREADS_MAX];
    bool started[FILL_THREADS_MAX] = {0};
    for (int t = 0; t < nt; t++) {
        jobs[t] = (fill_job){data, n * (size_t)t / (size_t)nt, n * (size_t)(t + 1) / (size_t)nt, seed, scale};
        if (t > 0) started[t] = pthread_create(&threads[t], NULL, fill_run, &jobs[t]) == 0;
    }
    fill_run(&jobs[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t]) pthread_join(threads[t], NULL);
        else fill_run(&jobs[t]);
    }
}

static bool matrix_new(baton_matrix *m, int64_t rows, int64_t cols, uint64_t seed) {
    m->rows = rows;
    m->cols = cols;
    m->dtype = BATON_F16;
    uint16_t *data = malloc((size_t)rows * (size_t)cols * 2);
    if (data == NULL) return false;
    /* Scale 1/sqrt(cols) keeps activations of order 1 through the layers. */
    fill_f16(data, (size_t)rows * (size_t)cols, seed, 1.7f / sqrtf((float)cols));
    m->data = data;
    return true;
}

static float *vector_new(int n, float lo, float hi, uint64_t seed) {
    float *v = malloc((size_t)n * sizeof *v);
    if (v == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        uint64_t r = mix64(seed * 1000003u + (uint64_t)i);
        v[i] = lo + (hi - lo) * (float)(r >> 40) * 0x1.0p-24f;
    }
    return v;
}

void bench_model_free(baton_model *m) {
    if (m == NULL) return;
    if (m->layers != NULL) {
        for (int l = 0; l < m->n_layer; l++) {
            baton_layer *ly = &m->layers[l];
            float *vecs[] = {ly->ln1_w, ly->ln1_b, ly->att_time_mix_k, ly->att_time_mix_v,
                             ly->att_time_mix_r, ly->att_time_first, ly->att_time_decay,
                             ly->ln2_w, ly->ln2_b, ly->ffn_time_mix_k, ly->ffn_time_mix_r};
            for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) free(vecs[i]);
            const baton_matrix *ms[] = {&ly->att_key, &ly->att_value, &ly->att_receptance,
                                        &ly->att_output, &ly->ffn_key, &ly->ffn_receptance,
                                        &ly->ffn_value};
            for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) free((void *)ms[i]->data);
        }
    }
    free(m->layers);
    free((void *)m->emb.data);
    free((void *)m->head.data);
    free(m->ln0_w);
    free(m->ln0_b);
    free(m->ln_out_w);
    free(m->ln_out_b);
    free(m);
}

baton_model *bench_model_new(int n_layer, int n_embd, int n_vocab, uint64_t seed) {
    baton_model *m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    int C = n_embd, F = 4 * n_embd;
    m->n_layer = n_layer;
    m->n_embd = C;
    m->n_vocab = n_vocab;
    m->n_ffn = F;
    m->dtype = BATON_F16;
    m->layer_begin = 0;
    m->layer_end = n_layer;
    m->has_embedding = true;
    m->has_head = true;
    m->layers = calloc((size_t)(n_layer > 0 ? n_layer : 1), sizeof *m->layers);
    bool ok = m->layers != NULL;
    uint64_t s = seed * 7919u;
    ok = ok && matrix_new(&m->emb, n_vocab, C, ++s) && matrix_new(&m->head, n_vocab, C, ++s);
    ok = ok && (m->ln0_w = vector_new(C, 0.8f, 1.2f, ++s)) && (m->ln0_b = vector_new(C, -0.1f, 0.1f, ++s));
    ok = ok && (m->ln_out_w = vector_new(C, 0.8f, 1.2f, ++s)) && (m->ln_out_b = vector_new(C, -0.1f, 0.1f, ++s));
    for (int l = 0; ok && l < n_layer; l++) {
        baton_layer *ly = &m->layers[l];
        ok = (ly->ln1_w = vector_new(C, 0.8f, 1.2f, ++s)) && (ly->ln1_b = vector_new(C, -0.1f, 0.1f, ++s)) &&
             (ly->att_time_mix_k = vector_new(C, 0.0f, 1.0f, ++s)) &&
             (ly->att_time_mix_v = vector_new(C, 0.0f, 1.0f, ++s)) &&
             (ly->att_time_mix_r = vector_new(C, 0.0f, 1.0f, ++s)) &&
             (ly->att_time_first = vector_new(C, -1.0f, 1.0f, ++s)) &&
             (ly->att_time_decay = vector_new(C, -3.0f, -0.01f, ++s)) &&
             (ly->ln2_w = vector_new(C, 0.8f, 1.2f, ++s)) && (ly->ln2_b = vector_new(C, -0.1f, 0.1f, ++s)) &&
             (ly->ffn_time_mix_k = vector_new(C, 0.0f, 1.0f, ++s)) &&
             (ly->ffn_time_mix_r = vector_new(C, 0.0f, 1.0f, ++s)) &&
             matrix_new(&ly->att_key, C, C, ++s) && matrix_new(&ly->att_value, C, C, ++s) &&
             matrix_new(&ly->att_receptance, C, C, ++s) && matrix_new(&ly->att_output, C, C, ++s) &&
             matrix_new(&ly->ffn_key, F, C, ++s) && matrix_new(&ly->ffn_receptance, C, C, ++s) &&
             matrix_new(&ly->ffn_value, C, F, ++s);
    }
    if (!ok) {
        bench_model_free(m);
        return NULL;
    }
    return m;
}

double bench_model_weight_bytes(int n_layer, int n_embd, int n_vocab) {
    double C = n_embd;
    return (double)n_layer * (5.0 * C * C + 2.0 * 4 * C * C) * 2 + (double)n_vocab * C * 2;
}

bool bench_shape_parse(const char *text, int *L, int *C, int *V) {
    struct { const char *name; int L, C; } named[] = {
        {"14b", 40, 5120}, {"7b", 32, 4096}, {"3b", 32, 2560}, {"1b5", 24, 2048},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        if (strcmp(text, named[i].name) == 0) {
            *L = named[i].L;
            *C = named[i].C;
            *V = 50277;
            return true;
        }
    }
    char tail;
    return sscanf(text, "%d,%d,%d%c", L, C, V, &tail) == 3 && *L >= 1 && *L <= 256 && *C >= 8 &&
           *C <= 16384 && *C % 8 == 0 && *V >= 2 && *V <= 1000000;
}

double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

baton_model *bench_model_announce(int n_layer, int n_embd, int n_vocab) {
    double t0 = bench_now_s();
    baton_model *model = bench_model_new(n_layer, n_embd, n_vocab, 1);
    if (model == NULL) {
        fprintf(stderr, "baton bench: out of memory building the model\n");
        return NULL;
    }
    printf("model: %.2f GB of fp16 weights (head included) built in %.1f s\n",
           bench_model_weight_bytes(n_layer, n_embd, n_vocab) * 1e-9, bench_now_s() - t0);
    return model;
}

baton_stage_config bench_stage_config(int n_layer, int max_batch, int max_tokens) {
    return (baton_stage_config){
        .layer_begin = 0, .layer_end = n_layer, .with_embedding = true, .with_head = true,
        .n_slots = max_batch, .max_seqs = max_batch, .max_tokens = max_tokens,
    };
}

bool bench_buffers_new(bench_buffers *b, int max_batch, int max_tokens, int n_vocab) {
    b->tokens = calloc((size_t)max_tokens, sizeof *b->tokens);
    b->out = calloc((size_t)max_batch, sizeof *b->out);
    b->seqs = calloc((size_t)max_batch, sizeof *b->seqs);
    b->sampling = calloc((size_t)max_batch, sizeof *b->sampling);
    if (!b->tokens || !b->out || !b->seqs || !b->sampling) {
        fprintf(stderr, "baton bench: out of memory\n");
        return false;
    }
    for (int i = 0; i < max_tokens; i++) b->tokens[i] = (int32_t)((i * 7919u + 13u) % (unsigned)n_vocab);
    return true;
}

void bench_buffers_free(bench_buffers *b) {
    free(b->tokens);
    free(b->out);
    free(b->seqs);
    free(b->sampling);
}

baton_status bench_step_fresh(baton_backend *be, const bench_buffers *b, int n_seqs, int n_tokens,
                              const baton_sampling *how, baton_step *step, baton_error *err) {
    for (int i = 0; i < n_seqs; i++) {
        baton_status st = be->ops->slot_reset(be, i, err);
        if (st != BATON_OK) return st;
        b->seqs[i] = (baton_seq){.slot = i, .n_tokens = n_tokens};
        b->sampling[i] = how != NULL ? *how : (baton_sampling){.temperature = 0.0f, .top_p = 1.0f};
        b->sampling[i].uniform = (float)(i * 7 % 10) / 10.0f + 0.05f;
    }
    *step = (baton_step){
        .n_seqs = n_seqs, .seqs = b->seqs, .tokens = b->tokens, .sampling = b->sampling,
        .tokens_out = b->out,
    };
    return BATON_OK;
}
