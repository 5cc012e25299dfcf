#include "format_pickle.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Opcodes of pickle protocols 2..5 that a dict of tensors uses; every other one is refused. */
enum {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_BINPERSID = 'Q',
    OP_REDUCE = 'R',
    OP_BINUNICODE = 'X',
    OP_APPEND = 'a',
    OP_GLOBAL = 'c',
    OP_APPENDS = 'e',
    OP_BINGET = 'h',
    OP_LONG_BINGET = 'j',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_SETITEMS = 'u',
    OP_EMPTY_DICT = '}',
    OP_EMPTY_LIST = ']',
    OP_EMPTY_TUPLE = ')',
    OP_PROTO = 0x80,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_SHORT_BINUNICODE = 0x8c,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
};

enum { GLOBAL_NAME_MAX = 128, ARENA_BLOCK_MIN = 64 << 10 };

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} arena_block;

struct baton_pickle {
    arena_block *blocks;
    size_t arena_bytes;
    const baton_pickle_value *root;
};

/* The machine's working state while loading. */
typedef struct {
    baton_pickle *result;
    const unsigned char *data;
    size_t size, pos, op_pos; /* op_pos: where the current opcode began, for messages */
    baton_pickle_value **stack;
    size_t depth, stack_cap;
    size_t marks[BATON_PICKLE_MARK_MAX];
    size_t n_marks;
    baton_pickle_value **memo;
    size_t memo_cap, memo_count;
    baton_status failed; /* the status of the first failure */
    baton_error *err;
} unpickler;

static const struct {
    const char *module, *name;
    baton_pickle_global global;
} allowed_globals[] = {
    {"collections", "OrderedDict", BATON_PICKLE_ORDERED_DICT},
    {"torch._utils", "_rebuild_tensor_v2", BATON_PICKLE_REBUILD_TENSOR},
    {"torch", "FloatStorage", BATON_PICKLE_FLOAT_STORAGE},
    {"torch", "HalfStorage", BATON_PICKLE_HALF_STORAGE},
    {"torch", "BFloat16Storage", BATON_PICKLE_BFLOAT16_STORAGE},
};

static baton_status fail(unpickler *u, baton_status status, const char *what) {
    u->failed = status;
    return baton_fail(u->err, status, "pickle: byte %zu: %s", u->op_pos, what);
}

static void *arena_alloc(unpickler *u, size_t bytes) {
    bytes = (bytes + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    arena_block *b = u->result->blocks;
    if (b == NULL || b->cap - b->used < bytes) {
        size_t cap = bytes > ARENA_BLOCK_MIN ? bytes : ARENA_BLOCK_MIN;
        if (u->result->arena_bytes + cap > BATON_PICKLE_VALUE_BYTES_MAX) {
            fail(u, BATON_ERR_NOMEM, "values exceed the 256 MiB a checkpoint's pickle may build");
            return NULL;
        }
        b = malloc(sizeof *b + cap);
        if (b == NULL) {
            fail(u, BATON_ERR_NOMEM, "out of memory");
            return NULL;
        }
        b->next = u->result->blocks;
        b->used = 0;
        b->cap = cap;
        u->result->blocks = b;
        u->result->arena_bytes += cap;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    return p;
}

static baton_pickle_value *value_new(unpickler *u, baton_pickle_kind kind) {
    baton_pickle_value *v = arena_alloc(u, sizeof *v);
    if (v == NULL) return NULL;
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->depth = 1;
    return v;
}

/* Appends item to a tuple, list or dict, keeping the container within the depth bound. */
static baton_status seq_push(unpickler *u, baton_pickle_value *seq, baton_pickle_value *item) {
    if (item->depth + 1 > BATON_PICKLE_DEPTH_MAX) return fail(u, BATON_ERR_FORMAT, "values nest too deep");
    if (seq->seq.n == seq->seq.cap) {
        size_t cap = seq->seq.cap ? 2 * seq->seq.cap : 4;
        baton_pickle_value **items = arena_alloc(u, cap * sizeof *items);
        if (items == NULL) return u->failed;
        if (seq->seq.n) memcpy(items, seq->seq.items, seq->seq.n * sizeof *items);
        seq->seq.items = items;
        seq->seq.cap = cap;
    }
    seq->seq.items[seq->seq.n++] = item;
    if (item->depth + 1 > seq->depth) seq->depth = item->depth + 1;
    return BATON_OK;
}

static baton_status push(unpickler *u, baton_pickle_value *v) {
    if (v == NULL) return u->failed;
    if (u->depth == u->stack_cap) {
        if (u->stack_cap == BATON_PICKLE_STACK_MAX) return fail(u, BATON_ERR_FORMAT, "stack overflow");
        size_t cap = u->stack_cap ? 2 * u->stack_cap : 64;
        baton_pickle_value **stack = realloc(u->stack, cap * sizeof *stack);
        if (stack == NULL) return fail(u, BATON_ERR_NOMEM, "out of memory");
        u->stack = stack;
        u->stack_cap = cap;
    }
    u->stack[u->depth++] = v;
    return BATON_OK;
}

/* The stack must hold n values above the last mark (or above the bottom when there is none). */
static baton_status need(unpickler *u, size_t n) {
    size_t floor = u->n_marks ? u->marks[u->n_marks - 1] : 0;
    if (u->depth - floor < n) return fail(u, BATON_ERR_FORMAT, "stack underflow");
    return BATON_OK;
}

static baton_pickle_value *pop(unpickler *u) { return u->stack[--u->depth]; }

static baton_status pop_mark(unpickler *u, size_t *mark) {
    if (u->n_marks == 0) return fail(u, BATON_ERR_FORMAT, "no MARK before this opcode");
    *mark = u->marks[--u->n_marks];
    return BATON_OK;
}

static baton_status read_bytes(unpickler *u, size_t n, const unsigned char **out) {
    if (n > u->size - u->pos) return fail(u, BATON_ERR_FORMAT, "truncated");
    *out = u->data + u->pos;
    u->pos += n;
    return BATON_OK;
}

static baton_status read_uint(unpickler *u, size_t n, uint64_t *out) {
    const unsigned char *p = NULL;
    baton_status st = read_bytes(u, n, &p);
    if (st != BATON_OK) return st;
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    *out = v;
    return BATON_OK;
}

static baton_status op_int(unpickler *u, int64_t value) {
    baton_pickle_value *v = value_new(u, BATON_PICKLE_INT);
    if (v != NULL) v->integer = value;
    return push(u, v);
}

/* LONG1: a little-endian two's complement integer of up to 8 bytes. */
static baton_status op_long1(unpickler *u) {
    uint64_t n = 0, raw = 0;
    const unsigned char *p = NULL;
    baton_status st = read_uint(u, 1, &n);
    if (st == BATON_OK && n > 8) return fail(u, BATON_ERR_UNSUPPORTED, "integer wider than 64 bits");
    if (st == BATON_OK) st = read_bytes(u, (size_t)n, &p);
    if (st != BATON_OK) return st;
    for (size_t i = (size_t)n; i-- > 0;) raw = (raw << 8) | p[i];
    if (n > 0 && n < 8 && (p[n - 1] & 0x80u)) raw |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    int64_t value;
    memcpy(&value, &raw, sizeof value);
    return op_int(u, value);
}

static baton_status op_str(unpickler *u, size_t len_bytes) {
    uint64_t len = 0;
    const unsigned char *p = NULL;
    baton_status st = read_uint(u, len_bytes, &len);
    if (st == BATON_OK && len > u->size - u->pos) return fail(u, BATON_ERR_FORMAT, "string runs past the end");
    if (st == BATON_OK) st = read_bytes(u, (size_t)len, &p);
    if (st != BATON_OK) return st;
    baton_pickle_value *v = value_new(u, BATON_PICKLE_STR);
    if (v != NULL) v->str = (baton_pickle_str){(const char *)p, (size_t)len};
    return push(u, v);
}

/* Copies text for a message, replacing what a terminal should not print. */
static void printable(char *dst, size_t cap, const char *src, size_t len) {
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[n] = '\0';
}

static baton_status resolve_global(unpickler *u, baton_pickle_str module, baton_pickle_str name) {
    for (size_t i = 0; i < sizeof allowed_globals / sizeof allowed_globals[0]; i++) {
        if (baton_pickle_str_eq(module, allowed_globals[i].module) &&
            baton_pickle_str_eq(name, allowed_globals[i].name)) {
            baton_pickle_value *v = value_new(u, BATON_PICKLE_GLOBAL);
            if (v != NULL) v->global = allowed_globals[i].global;
            return push(u, v);
        }
    }
    char m[GLOBAL_NAME_MAX], n[GLOBAL_NAME_MAX], what[2 * GLOBAL_NAME_MAX + 128];
    printable(m, sizeof m, module.bytes, module.len);
    printable(n, sizeof n, name.bytes, name.len);
    snprintf(what, sizeof what,
             "GLOBAL %s.%s is not allowed (only OrderedDict, _rebuild_tensor_v2 and torch "
             "Float/Half/BFloat16 storages)",
             m, n);
    return fail(u, BATON_ERR_UNSUPPORTED, what);
}

/* GLOBAL: "module\nname\n" */
static baton_status op_global(unpickler *u) {
    baton_pickle_str parts[2];
    for (int i = 0; i < 2; i++) {
        size_t left = u->size - u->pos;
        if (left > GLOBAL_NAME_MAX) left = GLOBAL_NAME_MAX;
        const unsigned char *nl = memchr(u->data + u->pos, '\n', left);
        if (nl == NULL) return fail(u, BATON_ERR_FORMAT, "GLOBAL name not terminated");
        parts[i].bytes = (const char *)u->data + u->pos;
        parts[i].len = (size_t)(nl - (u->data + u->pos));
        u->pos += parts[i].len + 1;
    }
    return resolve_global(u, parts[0], parts[1]);
}

static baton_status op_stack_global(unpickler *u) {
    baton_status st = need(u, 2);
    if (st != BATON_OK) return st;
    baton_pickle_value *name = pop(u), *module = pop(u);
    if (module->kind != BATON_PICKLE_STR || name->kind != BATON_PICKLE_STR) {
        return fail(u, BATON_ERR_FORMAT, "STACK_GLOBAL needs two strings");
    }
    return resolve_global(u, module->str, name->str);
}

static baton_status op_put(unpickler *u, uint64_t index) {
    baton_status st = need(u, 1);
    if (st != BATON_OK) return st;
    if (index >= BATON_PICKLE_MEMO_MAX) return fail(u, BATON_ERR_UNSUPPORTED, "memo index too large");
    if (index >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap : 256;
        while (cap <= index) cap *= 2;
        baton_pickle_value **memo = realloc(u->memo, cap * sizeof *memo);
        if (memo == NULL) return fail(u, BATON_ERR_NOMEM, "out of memory");
        memset(memo + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *memo);
        u->memo = memo;
        u->memo_cap = cap;
    }
    if (u->memo[index] == NULL) u->memo_count++;
    u->memo[index] = u->stack[u->depth - 1];
    return BATON_OK;
}

static baton_status op_get(unpickler *u, uint64_t index) {
    if (index >= u->memo_cap || u->memo[index] == NULL) {
        return fail(u, BATON_ERR_FORMAT, "memo fetch of an index never stored");
    }
    return push(u, u->memo[index]);
}

/* Builds a tuple of the top n values (n == SIZE_MAX: everything above the last mark). */
static baton_status op_tuple(unpickler *u, size_t n) {
    size_t begin = 0;
    baton_status st = BATON_OK;
    if (n == SIZE_MAX) {
        st = pop_mark(u, &begin);
    } else {
        st = need(u, n);
        begin = u->depth - n;
    }
    if (st != BATON_OK) return st;
    baton_pickle_value *t = value_new(u, BATON_PICKLE_TUPLE);
    if (t == NULL) return u->failed;
    for (size_t i = begin; i < u->depth && st == BATON_OK; i++) st = seq_push(u, t, u->stack[i]);
    if (st != BATON_OK) return st;
    u->depth = begin;
    return push(u, t);
}

/* APPEND(S), SETITEM(S): moves the values above begin into the container just below them. */
static baton_status op_fill(unpickler *u, size_t begin, baton_pickle_kind kind) {
    if (begin == 0 || u->stack[begin - 1]->kind != kind) {
        return fail(u, BATON_ERR_FORMAT, kind == BATON_PICKLE_DICT ? "SETITEM(S) needs a dict"
                                                                    : "APPEND(S) needs a list");
    }
    if (kind == BATON_PICKLE_DICT && (u->depth - begin) % 2 != 0) {
        return fail(u, BATON_ERR_FORMAT, "SETITEMS with an odd number of values");
    }
    baton_pickle_value *c = u->stack[begin - 1];
    for (size_t i = begin; i < u->depth; i++) {
        baton_status st = seq_push(u, c, u->stack[i]);
        if (st != BATON_OK) return st;
    }
    u->depth = begin;
    return BATON_OK;
}

static baton_status op_fill_one(unpickler *u, size_t n, baton_pickle_kind kind) {
    baton_status st = need(u, n + 1);
    return st != BATON_OK ? st : op_fill(u, u->depth - n, kind);
}

static baton_status op_fill_marked(unpickler *u, baton_pickle_kind kind) {
    size_t begin = 0;
    baton_status st = pop_mark(u, &begin);
    return st != BATON_OK ? st : op_fill(u, begin, kind);
}

/* BINPERSID: ('storage', StorageType, key, location, numel) names a storage in the archive. */
static baton_status op_persid(unpickler *u) {
    baton_status st = need(u, 1);
    if (st != BATON_OK) return st;
    const baton_pickle_value *pid = pop(u);
    if (pid->kind != BATON_PICKLE_TUPLE || pid->seq.n != 5) {
        return fail(u, BATON_ERR_FORMAT, "persistent id is not a 5-tuple");
    }
    baton_pickle_value *const *f = pid->seq.items;
    if (f[0]->kind != BATON_PICKLE_STR || !baton_pickle_str_eq(f[0]->str, "storage")) {
        return fail(u, BATON_ERR_UNSUPPORTED, "persistent id is not a storage");
    }
    if (f[1]->kind != BATON_PICKLE_GLOBAL || f[1]->global < BATON_PICKLE_FLOAT_STORAGE) {
        return fail(u, BATON_ERR_FORMAT, "storage type is not a storage class");
    }
    if (f[2]->kind != BATON_PICKLE_STR || f[3]->kind != BATON_PICKLE_STR ||
        f[4]->kind != BATON_PICKLE_INT || f[4]->integer < 0) {
        return fail(u, BATON_ERR_FORMAT, "storage id needs (str key, str location, int numel >= 0)");
    }
    baton_pickle_value *s = value_new(u, BATON_PICKLE_STORAGE);
    if (s != NULL) {
        s->storage.dtype = f[1]->global == BATON_PICKLE_FLOAT_STORAGE  ? BATON_F32
                           : f[1]->global == BATON_PICKLE_HALF_STORAGE ? BATON_F16
                                                                       : BATON_BF16;
        s->storage.key = f[2]->str;
        s->storage.numel = f[4]->integer;
    }
    return push(u, s);
}

static baton_status read_int_tuple(unpickler *u, const baton_pickle_value *t, int64_t *out, int *n,
                                   const char *what) {
    char msg[96];
    if (t->kind != BATON_PICKLE_TUPLE || t->seq.n > BATON_TENSOR_NDIM_MAX) {
        snprintf(msg, sizeof msg, "tensor %s is not a tuple of at most %d integers", what,
                 BATON_TENSOR_NDIM_MAX);
        return fail(u, t->kind == BATON_PICKLE_TUPLE ? BATON_ERR_UNSUPPORTED : BATON_ERR_FORMAT, msg);
    }
    for (size_t i = 0; i < t->seq.n; i++) {
        if (t->seq.items[i]->kind != BATON_PICKLE_INT) {
            snprintf(msg, sizeof msg, "tensor %s holds a non-integer", what);
            return fail(u, BATON_ERR_FORMAT, msg);
        }
        out[i] = t->seq.items[i]->integer;
    }
    *n = (int)t->seq.n;
    return BATON_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
 * metadata]): records the arguments; the caller checks them against the storage. */
static baton_status reduce_tensor(unpickler *u, const baton_pickle_value *args) {
    if (args->seq.n != 6 && args->seq.n != 7) {
        return fail(u, BATON_ERR_FORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments");
    }
    baton_pickle_value *const *a = args->seq.items;
    if (a[0]->kind != BATON_PICKLE_STORAGE || a[1]->kind != BATON_PICKLE_INT || a[1]->integer < 0 ||
        a[4]->kind != BATON_PICKLE_BOOL || a[5]->kind != BATON_PICKLE_DICT) {
        return fail(u, BATON_ERR_FORMAT,
                    "_rebuild_tensor_v2 needs (storage, offset >= 0, size, stride, bool, dict)");
    }
    if (args->seq.n == 7 && !(a[6]->kind == BATON_PICKLE_NONE ||
                              (a[6]->kind == BATON_PICKLE_DICT && a[6]->seq.n == 0))) {
        return fail(u, BATON_ERR_UNSUPPORTED, "tensor metadata (e.g. conjugate or negative bits)");
    }
    baton_pickle_value *t = value_new(u, BATON_PICKLE_TENSOR);
    if (t == NULL) return u->failed;
    t->tensor.storage = a[0];
    t->tensor.offset = a[1]->integer;
    int n_stride;
    baton_status st = read_int_tuple(u, a[2], t->tensor.shape, &t->tensor.ndim, "size");
    if (st == BATON_OK) st = read_int_tuple(u, a[3], t->tensor.stride, &n_stride, "stride");
    if (st != BATON_OK) return st;
    if (n_stride != t->tensor.ndim) return fail(u, BATON_ERR_FORMAT, "tensor size and stride differ in length");
    return push(u, t);
}

static baton_status op_reduce(unpickler *u) {
    baton_status st = need(u, 2);
    if (st != BATON_OK) return st;
    const baton_pickle_value *args = pop(u), *callable = pop(u);
    if (callable->kind != BATON_PICKLE_GLOBAL || args->kind != BATON_PICKLE_TUPLE) {
        return fail(u, BATON_ERR_FORMAT, "REDUCE needs an allowed callable and a tuple");
    }
    switch (callable->global) {
    case BATON_PICKLE_ORDERED_DICT:
        if (args->seq.n != 0) return fail(u, BATON_ERR_UNSUPPORTED, "OrderedDict with arguments");
        return push(u, value_new(u, BATON_PICKLE_DICT));
    case BATON_PICKLE_REBUILD_TENSOR:
        return reduce_tensor(u, args);
    default:
        return fail(u, BATON_ERR_UNSUPPORTED, "REDUCE calls a storage class");
    }
}

/* Runs one opcode; *stop is set by STOP. */
static baton_status step(unpickler *u, bool *stop) {
    u->op_pos = u->pos;
    uint64_t n;
    baton_status st;
    if (u->pos >= u->size) return fail(u, BATON_ERR_FORMAT, "truncated before STOP");
    unsigned op = u->data[u->pos++];
    switch (op) {
    case OP_PROTO:
        st = read_uint(u, 1, &n);
        if (st == BATON_OK && (n < 2 || n > 5)) return fail(u, BATON_ERR_UNSUPPORTED, "protocol outside 2..5");
        return st;
    case OP_FRAME: /* framing is only a read-ahead hint; the frame must still lie in the data */
        st = read_uint(u, 8, &n);
        if (st == BATON_OK && n > u->size - u->pos) return fail(u, BATON_ERR_FORMAT, "frame runs past the end");
        return st;
    case OP_GLOBAL: return op_global(u);
    case OP_STACK_GLOBAL: return op_stack_global(u);
    case OP_BINPUT:
    case OP_LONG_BINPUT:
        st = read_uint(u, op == OP_BINPUT ? 1 : 4, &n);
        return st != BATON_OK ? st : op_put(u, n);
    case OP_MEMOIZE: return op_put(u, u->memo_count); /* memo[len(memo)] = top */
    case OP_BINGET:
    case OP_LONG_BINGET:
        st = read_uint(u, op == OP_BINGET ? 1 : 4, &n);
        return st != BATON_OK ? st : op_get(u, n);
    case OP_MARK:
        if (u->n_marks == BATON_PICKLE_MARK_MAX) return fail(u, BATON_ERR_FORMAT, "too many nested MARKs");
        u->marks[u->n_marks++] = u->depth;
        return BATON_OK;
    case OP_TUPLE: return op_tuple(u, SIZE_MAX);
    case OP_EMPTY_TUPLE: return op_tuple(u, 0);
    case OP_TUPLE1: return op_tuple(u, 1);
    case OP_TUPLE2: return op_tuple(u, 2);
    case OP_TUPLE3: return op_tuple(u, 3);
    case OP_EMPTY_DICT: return push(u, value_new(u, BATON_PICKLE_DICT));
    case OP_EMPTY_LIST: return push(u, value_new(u, BATON_PICKLE_LIST));
    case OP_SETITEM: return op_fill_one(u, 2, BATON_PICKLE_DICT);
    case OP_SETITEMS: return op_fill_marked(u, BATON_PICKLE_DICT);
    case OP_APPEND: return op_fill_one(u, 1, BATON_PICKLE_LIST);
    case OP_APPENDS: return op_fill_marked(u, BATON_PICKLE_LIST);
    case OP_BINUNICODE: return op_str(u, 4);
    case OP_SHORT_BINUNICODE: return op_str(u, 1);
    case OP_BININT:
        st = read_uint(u, 4, &n);
        if (st != BATON_OK) return st;
        return op_int(u, n >= 0x80000000u ? (int64_t)n - 0x100000000 : (int64_t)n);
    case OP_BININT1:
    case OP_BININT2:
        st = read_uint(u, op == OP_BININT1 ? 1 : 2, &n);
        return st != BATON_OK ? st : op_int(u, (int64_t)n);
    case OP_LONG1: return op_long1(u);
    case OP_NEWTRUE:
    case OP_NEWFALSE: {
        baton_pickle_value *v = value_new(u, BATON_PICKLE_BOOL);
        if (v != NULL) v->boolean = op == OP_NEWTRUE;
        return push(u, v);
    }
    case OP_NONE: return push(u, value_new(u, BATON_PICKLE_NONE));
    case OP_BINPERSID: return op_persid(u);
    case OP_REDUCE: return op_reduce(u);
    case OP_STOP:
        if (u->n_marks != 0 || u->depth != 1) return fail(u, BATON_ERR_FORMAT, "STOP with an unbalanced stack");
        *stop = true;
        return BATON_OK;
    default: {
        char what[64];
        snprintf(what, sizeof what, "opcode 0x%02x is not supported", op);
        return fail(u, BATON_ERR_UNSUPPORTED, what);
    }
    }
}

baton_status baton_pickle_load(const unsigned char *data, size_t size, baton_pickle **out,
                               baton_error *err) {
    *out = NULL;
    unpickler u = {.data = data, .size = size, .err = err};
    u.result = calloc(1, sizeof *u.result);
    if (u.result == NULL) return baton_fail(err, BATON_ERR_NOMEM, "pickle: out of memory");
    baton_status st = BATON_OK;
    /* Every step consumes at least one byte, so this ends within size steps. */
    for (bool stop = false; !stop && st == BATON_OK;) st = step(&u, &stop);
    if (st == BATON_OK) u.result->root = u.stack[0];
    free(u.stack);
    free(u.memo);
    if (st != BATON_OK) {
        baton_pickle_free(u.result);
        return st;
    }
    *out = u.result;
    return BATON_OK;
}

const baton_pickle_value *baton_pickle_root(const baton_pickle *pickle) { return pickle->root; }

void baton_pickle_free(baton_pickle *pickle) {
    if (pickle == NULL) return;
    for (arena_block *b = pickle->blocks, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(pickle);
}

bool baton_pickle_str_eq(baton_pickle_str s, const char *text) {
    size_t n = strlen(text);
    return s.len == n && memcmp(s.bytes, text, n) == 0;
}
