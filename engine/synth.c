#include "synth.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "progress.h"
#include "tensor_set.h"

/* ---- The tensors: names, shapes and how their values are drawn. ---- */

typedef enum { INIT_EMB, INIT_LN_W, INIT_LN_B, INIT_DECAY, INIT_FIRST, INIT_MIX, INIT_MATRIX } synth_init;
typedef enum { DIM_1, DIM_C, DIM_F, DIM_V } synth_dim;

typedef struct {
    const char *official, *hf; /* after "blocks.N." / "rwkv.blocks.N." inside a layer */
    synth_init init;
    int ndim;
    synth_dim dims[3];
    float gain; /* matrices: the standard deviation times sqrt(fan_in) */
} synth_template;

/* In the order the official checkpoints (and the synth fixture) list them. */
static const synth_template head_templates[] = {
    {"emb.weight", "rwkv.embeddings.weight", INIT_EMB, 2, {DIM_V, DIM_C}, 0},
    {"blocks.0.ln0.weight", "rwkv.blocks.0.pre_ln.weight", INIT_LN_W, 1, {DIM_C}, 0},
    {"blocks.0.ln0.bias", "rwkv.blocks.0.pre_ln.bias", INIT_LN_B, 1, {DIM_C}, 0},
};
static const synth_template layer_templates[] = {
    {"ln1.weight", "ln1.weight", INIT_LN_W, 1, {DIM_C}, 0},
    {"ln1.bias", "ln1.bias", INIT_LN_B, 1, {DIM_C}, 0},
    {"ln2.weight", "ln2.weight", INIT_LN_W, 1, {DIM_C}, 0},
    {"ln2.bias", "ln2.bias", INIT_LN_B, 1, {DIM_C}, 0},
    {"att.time_decay", "attention.time_decay", INIT_DECAY, 1, {DIM_C}, 0},
    {"att.time_first", "attention.time_first", INIT_FIRST, 1, {DIM_C}, 0},
    {"att.time_mix_k", "attention.time_mix_key", INIT_MIX, 3, {DIM_1, DIM_1, DIM_C}, 0},
    {"att.time_mix_v", "attention.time_mix_value", INIT_MIX, 3, {DIM_1, DIM_1, DIM_C}, 0},
    {"att.time_mix_r", "attention.time_mix_receptance", INIT_MIX, 3, {DIM_1, DIM_1, DIM_C}, 0},
    {"att.key.weight", "attention.key.weight", INIT_MATRIX, 2, {DIM_C, DIM_C}, 3.0f},
    {"att.value.weight", "attention.value.weight", INIT_MATRIX, 2, {DIM_C, DIM_C}, 1.0f},
    {"att.receptance.weight", "attention.receptance.weight", INIT_MATRIX, 2, {DIM_C, DIM_C}, 1.0f},
    {"att.output.weight", "attention.output.weight", INIT_MATRIX, 2, {DIM_C, DIM_C}, 0.5f},
    {"ffn.time_mix_k", "feed_forward.time_mix_key", INIT_MIX, 3, {DIM_1, DIM_1, DIM_C}, 0},
    {"ffn.time_mix_r", "feed_forward.time_mix_receptance", INIT_MIX, 3, {DIM_1, DIM_1, DIM_C}, 0},
    {"ffn.key.weight", "feed_forward.key.weight", INIT_MATRIX, 2, {DIM_F, DIM_C}, 1.0f},
    {"ffn.receptance.weight", "feed_forward.receptance.weight", INIT_MATRIX, 2, {DIM_C, DIM_C}, 1.0f},
    {"ffn.value.weight", "feed_forward.value.weight", INIT_MATRIX, 2, {DIM_C, DIM_F}, 0.5f},
};
static const synth_template tail_templates[] = {
    {"ln_out.weight", "rwkv.ln_out.weight", INIT_LN_W, 1, {DIM_C}, 0},
    {"ln_out.bias", "rwkv.ln_out.bias", INIT_LN_B, 1, {DIM_C}, 0},
    {"head.weight", "head.weight", INIT_MATRIX, 2, {DIM_V, DIM_C}, 1.0f},
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    char name[BATON_TENSOR_NAME_MAX];
    const synth_template *tmpl;
    int ndim;
    int64_t shape[3];
    uint64_t n_elements;
    uint64_t bytes;
    /* .pth: where its storage entry went */
    uint32_t crc;
    uint64_t header_offset;
} synth_tensor;

typedef struct {
    const baton_synth_options *opt;
    const char *path;
    int n_ffn;
    size_t n_tensors;
    synth_tensor *tensors;
    uint64_t data_bytes;
    baton_error *err;
} synth_plan;

static int64_t dim_value(const synth_plan *p, synth_dim d) {
    switch (d) {
    case DIM_1: return 1;
    case DIM_C: return p->opt->n_embd;
    case DIM_F: return p->n_ffn;
    case DIM_V: return p->opt->n_vocab;
    }
    return 0;
}

static void plan_add(synth_plan *p, const synth_template *t, int layer) {
    synth_tensor *s = &p->tensors[p->n_tensors++];
    const char *suffix = p->opt->hf_names ? t->hf : t->official;
    if (layer < 0) snprintf(s->name, sizeof s->name, "%s", suffix);
    else if (p->opt->hf_names) snprintf(s->name, sizeof s->name, "rwkv.blocks.%d.%s", layer, suffix);
    else snprintf(s->name, sizeof s->name, "blocks.%d.%s", layer, suffix);
    s->tmpl = t;
    s->ndim = t->ndim;
    s->n_elements = 1;
    for (int d = 0; d < t->ndim; d++) {
        s->shape[d] = dim_value(p, t->dims[d]);
        s->n_elements *= (uint64_t)s->shape[d];
    }
    s->bytes = s->n_elements * baton_dtype_size(p->opt->dtype);
    p->data_bytes += s->bytes;
}

static baton_status plan_build(synth_plan *p) {
    const baton_synth_options *o = p->opt;
    if (o->n_layer < 1 || o->n_layer > BATON_SYNTH_LAYER_MAX || o->n_embd < 1 ||
        o->n_embd > BATON_SYNTH_EMBD_MAX || o->n_vocab < 1 || o->n_vocab > BATON_SYNTH_VOCAB_MAX ||
        o->n_ffn < 0 || o->n_ffn > BATON_SYNTH_FFN_MAX || o->dtype > BATON_BF16) {
        return baton_fail(p->err, BATON_ERR_ARG, "%s: synth shape out of range", p->path);
    }
    p->n_ffn = o->n_ffn ? o->n_ffn : 4 * o->n_embd;
    if (p->n_ffn > BATON_SYNTH_FFN_MAX) {
        return baton_fail(p->err, BATON_ERR_ARG, "%s: n_ffn %d is over %d", p->path, p->n_ffn,
                          BATON_SYNTH_FFN_MAX);
    }
    size_t n = COUNT(head_templates) + (size_t)o->n_layer * COUNT(layer_templates) + COUNT(tail_templates);
    p->tensors = calloc(n, sizeof *p->tensors);
    if (p->tensors == NULL) return baton_fail(p->err, BATON_ERR_NOMEM, "%s: out of memory", p->path);
    for (size_t i = 0; i < COUNT(head_templates); i++) plan_add(p, &head_templates[i], -1);
    for (int l = 0; l < o->n_layer; l++) {
        for (size_t i = 0; i < COUNT(layer_templates); i++) plan_add(p, &layer_templates[i], l);
    }
    for (size_t i = 0; i < COUNT(tail_templates); i++) plan_add(p, &tail_templates[i], -1);
    return BATON_OK;
}

/* ---- Values: one splitmix64 stream per tensor. ---- */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *state, float lo, float hi) {
    float u = (float)(splitmix64(state) >> 40) * 0x1p-24f; /* [0, 1) */
    return lo + (hi - lo) * u;
}

static void draw(const synth_tensor *t, uint64_t *state, float *out, size_t n) {
    float a = 0;
    switch (t->tmpl->init) {
    case INIT_EMB: a = sqrtf(3.0f); break; /* unit variance: ln0 sees what it expects */
    case INIT_MATRIX: a = t->tmpl->gain * sqrtf(3.0f / (float)t->shape[1]); break;
    default: break;
    }
    for (size_t i = 0; i < n; i++) {
        switch (t->tmpl->init) {
        case INIT_EMB:
        case INIT_MATRIX: out[i] = uniform(state, -a, a); break;
        case INIT_LN_W: out[i] = uniform(state, 0.7f, 1.3f); break;
        case INIT_LN_B: out[i] = uniform(state, -0.2f, 0.2f); break;
        case INIT_DECAY: out[i] = uniform(state, -5.0f, 3.0f); break;
        case INIT_FIRST: out[i] = uniform(state, -1.0f, 1.0f); break;
        case INIT_MIX: out[i] = uniform(state, 0.01f, 0.99f); break;
        }
    }
}

static void encode(const float *src, size_t n, baton_dtype dtype, unsigned char *dst) {
    for (size_t i = 0; i < n; i++) {
        if (dtype == BATON_F32) {
            memcpy(dst + 4 * i, &src[i], 4);
            continue;
        }
        uint16_t h = dtype == BATON_F16 ? baton_f32_to_f16(src[i]) : baton_f32_to_bf16(src[i]);
        dst[2 * i] = (unsigned char)h;
        dst[2 * i + 1] = (unsigned char)(h >> 8);
    }
}

/* ---- CRC-32 (zip's), by eight bytes at a time; runs of zeros in O(log n). ---- */

#define CRC_POLY 0xedb88320u

typedef struct {
    uint32_t table[8][256];
} crc_tables;

static void crc_init(crc_tables *c) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i;
        for (int k = 0; k < 8; k++) r = r & 1 ? (r >> 1) ^ CRC_POLY : r >> 1;
        c->table[0][i] = r;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            uint32_t prev = c->table[t - 1][i];
            c->table[t][i] = (prev >> 8) ^ c->table[0][prev & 0xff];
        }
    }
}

static uint32_t crc_update(const crc_tables *c, uint32_t crc, const unsigned char *p, size_t n) {
    uint32_t r = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = r ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        r = c->table[7][lo & 0xff] ^ c->table[6][(lo >> 8) & 0xff] ^ c->table[5][(lo >> 16) & 0xff] ^
            c->table[4][lo >> 24] ^ c->table[3][p[4]] ^ c->table[2][p[5]] ^ c->table[1][p[6]] ^
            c->table[0][p[7]];
    }
    for (; n > 0; n--, p++) r = (r >> 8) ^ c->table[0][(r ^ *p) & 0xff];
    return ~r;
}

/* a * b modulo the CRC polynomial, bit-reflected as the CRC register is (as zlib does). */
static uint32_t crc_multiply(uint32_t a, uint32_t b) {
    uint32_t p = 0;
    for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
        if (a & m) p ^= b;
        b = b & 1 ? (b >> 1) ^ CRC_POLY : b >> 1;
    }
    return p;
}

/* The CRC after n more zero bytes: the register times x^(8 n). */
static uint32_t crc_zeros(uint32_t crc, uint64_t n) {
    uint32_t power = 1u << 23; /* x^8: one byte */
    uint32_t factor = 1u << 31; /* x^0 */
    for (; n != 0; n >>= 1) {
        if (n & 1) factor = crc_multiply(power, factor);
        power = crc_multiply(power, power);
    }
    return ~crc_multiply(factor, ~crc);
}

/* ---- Output: a buffered file with holes. ---- */

enum { OUT_BUFFER_BYTES = 1 << 20, CHUNK_ELEMENTS = 1 << 16 };

typedef struct {
    int fd;
    const char *path;
    unsigned char *buf;
    size_t used;
    uint64_t pos;   /* bytes written or skipped so far */
    uint32_t crc;   /* of the bytes since out_crc_reset */
    crc_tables crc_tables;
    baton_progress progress;
    baton_status status;
    baton_error *err;
} synth_out;

static void out_flush(synth_out *o) {
    size_t done = 0;
    while (o->status == BATON_OK && done < o->used) {
        ssize_t n = write(o->fd, o->buf + done, o->used - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            o->status = baton_fail(o->err, BATON_ERR_IO, "%s: write failed: %s", o->path,
                                   n < 0 ? strerror(errno) : "no progress");
            break;
        }
        done += (size_t)n;
    }
    o->used = 0;
}

static void out_write(synth_out *o, const void *data, size_t n) {
    const unsigned char *p = data;
    o->crc = crc_update(&o->crc_tables, o->crc, p, n);
    o->pos += n;
    while (n > 0 && o->status == BATON_OK) {
        size_t room = OUT_BUFFER_BYTES - o->used, k = n < room ? n : room;
        memcpy(o->buf + o->used, p, k);
        o->used += k;
        p += k;
        n -= k;
        if (o->used == OUT_BUFFER_BYTES) out_flush(o);
    }
}

/* n zero bytes left as a hole. */
static void out_skip_zeros(synth_out *o, uint64_t n) {
    out_flush(o);
    o->crc = crc_zeros(o->crc, n);
    o->pos += n;
    if (o->status == BATON_OK && lseek(o->fd, (off_t)o->pos, SEEK_SET) < 0) {
        o->status = baton_fail(o->err, BATON_ERR_IO, "%s: seek failed: %s", o->path, strerror(errno));
    }
}

static void out_u16(synth_out *o, uint32_t v) {
    unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    out_write(o, b, 2);
}
static void out_u32(synth_out *o, uint32_t v) {
    out_u16(o, v & 0xffff);
    out_u16(o, v >> 16);
}
static void out_u64(synth_out *o, uint64_t v) {
    out_u32(o, (uint32_t)v);
    out_u32(o, (uint32_t)(v >> 32));
}

/* Streams one tensor's values (or its hole) and returns their CRC. */
static uint32_t out_tensor(synth_out *o, const synth_plan *p, size_t index, float *scratch,
                           unsigned char *bytes) {
    const synth_tensor *t = &p->tensors[index];
    o->crc = 0;
    if (p->opt->zero_matrices && t->ndim == 2) {
        out_skip_zeros(o, t->bytes);
        baton_progress_add(&o->progress, t->bytes);
        return o->crc;
    }
    uint64_t state = p->opt->seed ^ (0xd1b54a32d192ed03u * (index + 1));
    splitmix64(&state);
    size_t elem = baton_dtype_size(p->opt->dtype);
    for (uint64_t done = 0; done < t->n_elements && o->status == BATON_OK;) {
        size_t n = t->n_elements - done < CHUNK_ELEMENTS ? (size_t)(t->n_elements - done) : CHUNK_ELEMENTS;
        draw(t, &state, scratch, n);
        encode(scratch, n, p->opt->dtype, bytes);
        out_write(o, bytes, n * elem);
        baton_progress_add(&o->progress, n * elem);
        done += n;
    }
    return o->crc;
}

/* A growable buffer: the pickle, or the safetensors header. */
typedef struct {
    unsigned char *bytes;
    size_t len, cap;
    uint32_t memo; /* pickle: the next memo index, as Python's pickler counts */
    int failed;
} byte_buf;

static void pk_bytes(byte_buf *b, const void *data, size_t n) {
    if (b->failed) return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) cap *= 2;
        unsigned char *bytes = realloc(b->bytes, cap);
        if (bytes == NULL) {
            b->failed = 1;
            return;
        }
        b->bytes = bytes;
        b->cap = cap;
    }
    memcpy(b->bytes + b->len, data, n);
    b->len += n;
}

/* ---- data.pkl: the pickle torch.save writes for an OrderedDict of tensors (protocol 2). ---- */

static void pk_op(byte_buf *b, unsigned op) {
    unsigned char c = (unsigned char)op;
    pk_bytes(b, &c, 1);
}

static void pk_le(byte_buf *b, uint64_t v, int n) {
    unsigned char le[8];
    for (int i = 0; i < n; i++) le[i] = (unsigned char)(v >> (8 * i));
    pk_bytes(b, le, (size_t)n);
}

/* Memoizes the value just written: BINPUT or LONG_BINPUT; returns its index. */
static uint32_t pk_put(byte_buf *b) {
    uint32_t index = b->memo++;
    if (index < 256) {
        pk_op(b, 'q');
        pk_le(b, index, 1);
    } else {
        pk_op(b, 'r');
        pk_le(b, index, 4);
    }
    return index;
}

static void pk_get(byte_buf *b, uint32_t index) {
    if (index < 256) {
        pk_op(b, 'h');
        pk_le(b, index, 1);
    } else {
        pk_op(b, 'j');
        pk_le(b, index, 4);
    }
}

static uint32_t pk_str(byte_buf *b, const char *s) {
    size_t n = strlen(s);
    pk_op(b, 'X');
    pk_le(b, n, 4);
    pk_bytes(b, s, n);
    return pk_put(b);
}

static uint32_t pk_global(byte_buf *b, const char *module_and_name) {
    pk_op(b, 'c');
    pk_bytes(b, module_and_name, strlen(module_and_name));
    return pk_put(b);
}

/* Python's save_long for protocol 2: BININT1, BININT2, BININT, else LONG1. */
static void pk_int(byte_buf *b, int64_t v) {
    if (v >= 0 && v <= 0xff) {
        pk_op(b, 'K');
        pk_le(b, (uint64_t)v, 1);
    } else if (v >= 0 && v <= 0xffff) {
        pk_op(b, 'M');
        pk_le(b, (uint64_t)v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        pk_op(b, 'J');
        pk_le(b, (uint64_t)v, 4);
    } else {
        int n = 1; /* (bit_length >> 3) + 1 bytes of two's complement */
        while (n < 8 && (v >> (8 * n - 1)) != 0 && (v >> (8 * n - 1)) != -1) n++;
        pk_op(b, 0x8a);
        pk_le(b, (uint64_t)n, 1);
        pk_le(b, (uint64_t)v, n);
    }
}

static void pk_int_tuple(byte_buf *b, const int64_t *v, int n) {
    if (n == 0) {
        pk_op(b, ')');
        return;
    }
    if (n > 3) pk_op(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    pk_op(b, n > 3 ? 't' : 0x84 + (unsigned)n); /* TUPLE1..3 are 0x85..0x87 */
    pk_put(b);
}

static baton_status pickle_build(const synth_plan *p, byte_buf *b) {
    const char *storage_type = p->opt->dtype == BATON_F32   ? "torch\nFloatStorage\n"
                               : p->opt->dtype == BATON_F16 ? "torch\nHalfStorage\n"
                                                            : "torch\nBFloat16Storage\n";
    pk_op(b, 0x80);
    pk_le(b, 2, 1);
    uint32_t ordered_dict = pk_global(b, "collections\nOrderedDict\n");
    pk_op(b, ')');
    pk_op(b, 'R');
    pk_put(b);
    uint32_t rebuild = 0, storage_str = 0, type = 0, cpu = 0;
    for (size_t i = 0; i < p->n_tensors; i++) {
        const synth_tensor *t = &p->tensors[i];
        /* Python's pickler sets items in batches of 1000, a batch of one by SETITEM. */
        size_t batch = p->n_tensors - i / 1000 * 1000 < 1000 ? p->n_tensors - i / 1000 * 1000 : 1000;
        if (i % 1000 == 0 && batch > 1) pk_op(b, '(');
        pk_str(b, t->name);
        if (i == 0) rebuild = pk_global(b, "torch._utils\n_rebuild_tensor_v2\n");
        else pk_get(b, rebuild);
        pk_op(b, '(');
        pk_op(b, '('); /* the persistent id ('storage', type, key, 'cpu', numel) */
        if (i == 0) {
            storage_str = pk_str(b, "storage");
            type = pk_global(b, storage_type);
        } else {
            pk_get(b, storage_str);
            pk_get(b, type);
        }
        char key[24];
        snprintf(key, sizeof key, "%zu", i);
        pk_str(b, key);
        if (i == 0) cpu = pk_str(b, "cpu");
        else pk_get(b, cpu);
        pk_int(b, (int64_t)t->n_elements);
        pk_op(b, 't');
        pk_put(b);
        pk_op(b, 'Q');
        pk_int(b, 0); /* storage_offset */
        int64_t stride[3], acc = 1; /* contiguous row-major */
        for (int d = t->ndim - 1; d >= 0; d--) {
            stride[d] = acc;
            acc *= t->shape[d];
        }
        pk_int_tuple(b, t->shape, t->ndim);
        pk_int_tuple(b, stride, t->ndim);
        pk_op(b, 0x89); /* requires_grad False */
        pk_get(b, ordered_dict); /* backward_hooks OrderedDict() */
        pk_op(b, ')');
        pk_op(b, 'R');
        pk_put(b);
        pk_op(b, 't');
        pk_put(b);
        pk_op(b, 'R');
        pk_put(b);
        if (i % 1000 == batch - 1) pk_op(b, batch > 1 ? 'u' : 's');
    }
    pk_op(b, '.');
    if (b->failed) return baton_fail(p->err, BATON_ERR_NOMEM, "%s: out of memory", p->path);
    return BATON_OK;
}

/* ---- .pth: the zip as PyTorch's writer (miniz) lays it out. ---- */

enum { ZIP_ALIGN = 64 };
#define ZIP_U32_MAX 0xffffffffu

/* Local header, name, extra fields: ZIP64 sizes/offset where they pass 32 bits, then torch's "FB"
 * field padded with 'Z' so that the data starts on 64 bytes. */
static void zip_local_header(synth_out *o, const char *name, uint64_t size, bool *zip64) {
    uint64_t offset = o->pos;
    bool big_size = size >= ZIP_U32_MAX, big_offset = offset >= ZIP_U32_MAX;
    uint32_t zip64_len = (big_size ? 16 : 0) + (big_offset ? 8 : 0);
    uint32_t zip64_field = (big_size || big_offset) ? 4 + zip64_len : 0;
    size_t name_len = strlen(name);
    uint64_t start = offset + 30 + name_len + zip64_field + 4;
    uint32_t pad = (uint32_t)((ZIP_ALIGN - start % ZIP_ALIGN) % ZIP_ALIGN);
    out_u32(o, 0x04034b50);
    out_u16(o, 0);      /* version needed */
    out_u16(o, 0x0808); /* sizes in a data descriptor; UTF-8 names */
    out_u16(o, 0);      /* stored */
    out_u32(o, 0);      /* time, date */
    out_u32(o, 0);      /* crc, sizes: in the descriptor */
    out_u32(o, 0);
    out_u32(o, 0);
    out_u16(o, (uint32_t)name_len);
    out_u16(o, zip64_field + 4 + pad);
    out_write(o, name, name_len);
    if (zip64_field) {
        out_u16(o, 0x0001);
        out_u16(o, zip64_len);
        if (big_size) {
            out_u64(o, size);
            out_u64(o, size);
        }
        if (big_offset) out_u64(o, offset);
    }
    char zs[ZIP_ALIGN];
    memset(zs, 'Z', sizeof zs);
    out_write(o, "FB", 2);
    out_u16(o, pad);
    out_write(o, zs, pad);
    *zip64 = zip64_field != 0;
}

static void zip_descriptor(synth_out *o, uint32_t crc, uint64_t size, bool zip64) {
    out_u32(o, 0x08074b50);
    out_u32(o, crc);
    if (zip64) {
        out_u64(o, size);
        out_u64(o, size);
    } else {
        out_u32(o, (uint32_t)size);
        out_u32(o, (uint32_t)size);
    }
}

typedef struct {
    char name[BATON_TENSOR_NAME_MAX + 64];
    uint32_t crc;
    uint64_t size, offset;
} zip_record;

static void zip_central_header(synth_out *o, const zip_record *r) {
    bool big_size = r->size >= ZIP_U32_MAX, big_offset = r->offset >= ZIP_U32_MAX;
    uint32_t zip64_len = (big_size ? 16 : 0) + (big_offset ? 8 : 0);
    size_t name_len = strlen(r->name);
    out_u32(o, 0x02014b50);
    out_u16(o, 0); /* version made by */
    out_u16(o, 0); /* version needed */
    out_u16(o, 0x0808);
    out_u16(o, 0);
    out_u32(o, 0); /* time, date */
    out_u32(o, r->crc);
    out_u32(o, big_size ? ZIP_U32_MAX : (uint32_t)r->size);
    out_u32(o, big_size ? ZIP_U32_MAX : (uint32_t)r->size);
    out_u16(o, (uint32_t)name_len);
    out_u16(o, zip64_len ? 4 + zip64_len : 0);
    out_u16(o, 0); /* comment */
    out_u16(o, 0); /* disk */
    out_u16(o, 0); /* internal attributes */
    out_u32(o, 0); /* external attributes */
    out_u32(o, big_offset ? ZIP_U32_MAX : (uint32_t)r->offset);
    out_write(o, r->name, name_len);
    if (zip64_len) {
        out_u16(o, 0x0001);
        out_u16(o, zip64_len);
        if (big_size) {
            out_u64(o, r->size);
            out_u64(o, r->size);
        }
        if (big_offset) out_u64(o, r->offset);
    }
}

/* PyTorch always ends with a ZIP64 end record and its locator, then the classic one. */
static void zip_end(synth_out *o, const zip_record *records, size_t n) {
    uint64_t cd_offset = o->pos;
    for (size_t i = 0; i < n; i++) zip_central_header(o, &records[i]);
    uint64_t cd_size = o->pos - cd_offset, end64 = o->pos;
    out_u32(o, 0x06064b50);
    out_u64(o, 44);     /* bytes after this field */
    out_u16(o, 0x031e); /* made by: unix, 3.0 */
    out_u16(o, 45);     /* needed: ZIP64 */
    out_u32(o, 0);
    out_u32(o, 0);
    out_u64(o, n);
    out_u64(o, n);
    out_u64(o, cd_size);
    out_u64(o, cd_offset);
    out_u32(o, 0x07064b50);
    out_u32(o, 0);
    out_u64(o, end64);
    out_u32(o, 1);
    out_u32(o, 0x06054b50);
    out_u32(o, 0); /* disks */
    out_u16(o, n < 0xffff ? (uint32_t)n : 0xffff);
    out_u16(o, n < 0xffff ? (uint32_t)n : 0xffff);
    out_u32(o, cd_size < ZIP_U32_MAX ? (uint32_t)cd_size : ZIP_U32_MAX);
    out_u32(o, cd_offset < ZIP_U32_MAX ? (uint32_t)cd_offset : ZIP_U32_MAX);
    out_u16(o, 0); /* comment */
}

/* Records from a small in-memory payload (data.pkl, version). */
static void zip_small_entry(synth_out *o, zip_record *r, const char *prefix, const char *name,
                            const void *data, size_t size) {
    bool zip64;
    snprintf(r->name, sizeof r->name, "%s/%s", prefix, name);
    r->offset = o->pos;
    r->size = size;
    zip_local_header(o, r->name, size, &zip64);
    o->crc = 0;
    out_write(o, data, size);
    r->crc = o->crc;
    zip_descriptor(o, r->crc, size, zip64);
}

/* torch.save names the archive's folder after the file: its name up to the last dot. */
static void pth_prefix(const char *path, char *prefix, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot ? (size_t)(dot - base) : strlen(base);
    if (n == 0) snprintf(prefix, cap, "archive");
    else snprintf(prefix, cap, "%.*s", (int)(n < 64 ? n : 64), base);
}

static int key_order(const void *a, const void *b) {
    char ka[24], kb[24];
    snprintf(ka, sizeof ka, "%zu", *(const size_t *)a);
    snprintf(kb, sizeof kb, "%zu", *(const size_t *)b);
    return strcmp(ka, kb);
}

static void write_pth(synth_out *o, synth_plan *p, const byte_buf *pickle, size_t *order,
                      zip_record *records, float *scratch, unsigned char *bytes) {
    char prefix[80];
    pth_prefix(p->path, prefix, sizeof prefix);
    size_t n = 0;
    zip_small_entry(o, &records[n++], prefix, "data.pkl", pickle->bytes, pickle->len);
    /* Storages follow in the order of their keys as strings: 0, 1, 10, 11, ... as torch sorts. */
    for (size_t i = 0; i < p->n_tensors; i++) order[i] = i;
    qsort(order, p->n_tensors, sizeof *order, key_order);
    for (size_t k = 0; k < p->n_tensors && o->status == BATON_OK; k++) {
        size_t i = order[k];
        zip_record *r = &records[n++];
        bool zip64;
        snprintf(r->name, sizeof r->name, "%s/data/%zu", prefix, i);
        r->offset = o->pos;
        r->size = p->tensors[i].bytes;
        zip_local_header(o, r->name, r->size, &zip64);
        r->crc = out_tensor(o, p, i, scratch, bytes);
        zip_descriptor(o, r->crc, r->size, zip64);
    }
    zip_small_entry(o, &records[n++], prefix, "version", "3\n", 2);
    zip_end(o, records, n);
}

/* ---- .safetensors ---- */

static void buf_text(byte_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_text(byte_buf *b, const char *fmt, ...) {
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof text) {
        b->failed = 1;
        return;
    }
    pk_bytes(b, text, (size_t)n);
}

static baton_status safetensors_header(const synth_plan *p, byte_buf *h) {
    static const char *const names[] = {"F32", "F16", "BF16"};
    buf_text(h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (size_t i = 0; i < p->n_tensors; i++) {
        const synth_tensor *t = &p->tensors[i];
        buf_text(h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, names[p->opt->dtype]);
        for (int d = 0; d < t->ndim; d++) buf_text(h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        buf_text(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                 (unsigned long long)(offset + t->bytes));
        offset += t->bytes;
    }
    buf_text(h, "}");
    while (h->len % 8 != 0) buf_text(h, " "); /* the data section starts 8-aligned */
    if (h->failed) return baton_fail(p->err, BATON_ERR_NOMEM, "%s: out of memory", p->path);
    return BATON_OK;
}

static void write_safetensors(synth_out *o, synth_plan *p, const byte_buf *header, float *scratch,
                              unsigned char *bytes) {
    out_u64(o, header->len);
    out_write(o, header->bytes, header->len);
    for (size_t i = 0; i < p->n_tensors && o->status == BATON_OK; i++) {
        out_tensor(o, p, i, scratch, bytes);
    }
}

/* ---- The entry point ---- */

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

baton_status baton_synth_write(const baton_synth_options *options, const char *path,
                               baton_error *err) {
    synth_plan plan = {.opt = options, .path = path, .err = err};
    bool pth = has_suffix(path, ".pth");
    if (!pth && !has_suffix(path, ".safetensors")) {
        return baton_fail(err, BATON_ERR_ARG, "%s: the name must end in .pth or .safetensors", path);
    }
    baton_status st = plan_build(&plan);
    byte_buf meta = {0};
    if (st == BATON_OK) st = pth ? pickle_build(&plan, &meta) : safetensors_header(&plan, &meta);
    synth_out *o = calloc(1, sizeof *o);
    float *scratch = malloc(CHUNK_ELEMENTS * sizeof *scratch);
    unsigned char *bytes = malloc(CHUNK_ELEMENTS * sizeof(float));
    size_t *order = pth ? calloc(plan.n_tensors + 1, sizeof *order) : NULL;
    zip_record *records = pth ? calloc(plan.n_tensors + 2, sizeof *records) : NULL;
    if (o != NULL) o->buf = malloc(OUT_BUFFER_BYTES);
    if (st == BATON_OK && (o == NULL || o->buf == NULL || scratch == NULL || bytes == NULL ||
                           (pth && (order == NULL || records == NULL)))) {
        st = baton_fail(err, BATON_ERR_NOMEM, "%s: out of memory", path);
    }
    int fd = -1;
    if (st == BATON_OK) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) st = baton_fail(err, BATON_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (st == BATON_OK) {
        o->fd = fd;
        o->path = path;
        o->err = err;
        crc_init(&o->crc_tables);
        baton_progress_begin(&o->progress, "synth", plan.data_bytes);
        if (!options->progress) o->progress.enabled = 0;
        if (pth) write_pth(o, &plan, &meta, order, records, scratch, bytes);
        else write_safetensors(o, &plan, &meta, scratch, bytes);
        out_flush(o);
        baton_progress_end(&o->progress);
        /* A file that ends in a hole needs its length set. */
        if (o->status == BATON_OK && ftruncate(fd, (off_t)o->pos) != 0) {
            o->status = baton_fail(err, BATON_ERR_IO, "%s: cannot set the size: %s", path, strerror(errno));
        }
        st = o->status;
    }
    if (fd >= 0 && close(fd) != 0 && st == BATON_OK) {
        st = baton_fail(err, BATON_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    }
    if (fd >= 0 && st != BATON_OK) unlink(path);
    if (o != NULL) free(o->buf);
    free(o);
    free(scratch);
    free(bytes);
    free(order);
    free(records);
    free(meta.bytes);
    free(plan.tensors);
    return st;
}
