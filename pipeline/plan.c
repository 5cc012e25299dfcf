#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "procfs.h"

baton_plan_costs baton_plan_costs_of(const baton_model *m, int n_slots, int max_seqs,
                                     int max_tokens) {
    uint64_t c = (uint64_t)m->n_embd, f = (uint64_t)m->n_ffn, v = (uint64_t)m->n_vocab;
    uint64_t dsize = baton_dtype_size(m->dtype);
    baton_plan_costs k = {.n_layer = m->n_layer};
    /* Per layer: 5 C x C and 2 C x F matrices, and 13 vectors of C floats. */
    k.layer_bytes = (5 * c * c + 2 * c * f) * dsize + 13 * c * 4;
    k.slot_layer_bytes = (uint64_t)n_slots * 5 * c * 4;
    k.embedding_bytes = v * c * dsize + 2 * c * 4;
    k.head_bytes = v * c * dsize + 2 * c * 4 + (uint64_t)max_seqs * v * 4;
    /* x, its normed copy, k, v, r, the attention output and the FFN's F-wide hidden. */
    k.workspace_bytes = (uint64_t)max_tokens * (8 * c + f) * 4;
    return k;
}

static uint64_t fixed_bytes(const baton_plan_costs *k, int i, int n) {
    return k->workspace_bytes + (i == 0 ? k->embedding_bytes : 0) +
           (i == n - 1 ? k->head_bytes : 0);
}

static double mib(uint64_t bytes) {
    return (double)bytes / (1024.0 * 1024.0);
}

static void fill(baton_plan *p, const baton_plan_costs *k, const baton_plan_device *d, int n,
                 const int *layers) {
    p->n_stages = n;
    int at = 0;
    uint64_t per_layer = k->layer_bytes + k->slot_layer_bytes;
    for (int i = 0; i < n; i++) {
        baton_plan_stage *s = &p->stages[i];
        s->layer_begin = at;
        s->layer_end = at + layers[i];
        at = s->layer_end;
        s->with_embedding = i == 0;
        s->with_head = i == n - 1;
        s->need_bytes = fixed_bytes(k, i, n) + (uint64_t)layers[i] * per_layer;
        s->device = d[i];
    }
}

baton_status baton_plan_make(const baton_plan_costs *k, const baton_plan_device *d, int n,
                             const int *split, baton_plan *out, baton_error *err) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > BATON_PLAN_STAGES_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d stages, expected 1 to %d", n,
                          BATON_PLAN_STAGES_MAX);
    if (n > k->n_layer)
        return baton_fail(err, BATON_ERR_ARG, "%d stages for %d layers: each stage needs a layer",
                          n, k->n_layer);
    uint64_t per_layer = k->layer_bytes + k->slot_layer_bytes;
    int layers[BATON_PLAN_STAGES_MAX];
    if (split != NULL) {
        int sum = 0;
        for (int i = 0; i < n; i++) {
            if (split[i] < 1)
                return baton_fail(err, BATON_ERR_ARG, "--split: stage %d has %d layers", i,
                                  split[i]);
            sum += split[i];
            layers[i] = split[i];
        }
        if (sum != k->n_layer)
            return baton_fail(err, BATON_ERR_ARG, "--split sums to %d layers, the model has %d",
                              sum, k->n_layer);
        fill(out, k, d, n, layers);
        for (int i = 0; i < n; i++) {
            const baton_plan_stage *s = &out->stages[i];
            if (s->need_bytes > s->device.free_bytes)
                return baton_fail(err, BATON_ERR_NOMEM,
                                  "the plan does not fit: stage %d (layers [%d, %d) on %s%s%s) "
                                  "needs %.1f MiB, the device has %.1f MiB free: %.1f MiB short",
                                  i, s->layer_begin, s->layer_end, s->device.device,
                                  s->device.host[0] ? " at " : "", s->device.host,
                                  mib(s->need_bytes), mib(s->device.free_bytes),
                                  mib(s->need_bytes - s->device.free_bytes));
        }
        return BATON_OK;
    }
    /* Auto: how many layers each stage holds beside its fixed parts, then a share of the
     * layers in proportion to that, never past it. */
    int cap[BATON_PLAN_STAGES_MAX];
    uint64_t room[BATON_PLAN_STAGES_MAX], total_room = 0;
    int64_t total_cap = 0;
    uint64_t need_total = (uint64_t)k->n_layer * per_layer, free_total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t fixed = fixed_bytes(k, i, n), free_b = d[i].free_bytes;
        need_total += fixed;
        free_total += free_b;
        room[i] = free_b > fixed ? (free_b - fixed) / per_layer : 0;
        if (room[i] > 1u << 30) room[i] = 1u << 30;
        total_room += room[i];
        cap[i] = room[i] > (uint64_t)k->n_layer ? k->n_layer : (int)room[i];
        if (cap[i] < 1)
            return baton_fail(err, BATON_ERR_NOMEM,
                              "the plan does not fit: stage %d on %s%s%s needs %.1f MiB for its "
                              "fixed parts and one layer, the device has %.1f MiB free: "
                              "%.1f MiB short",
                              i, d[i].device, d[i].host[0] ? " at " : "", d[i].host,
                              mib(fixed + per_layer), mib(free_b), mib(fixed + per_layer - free_b));
        total_cap += cap[i];
    }
    if (total_cap < k->n_layer)
        return baton_fail(err, BATON_ERR_NOMEM,
                          "the plan does not fit: %d layers need %.1f MiB over %d stages, the "
                          "devices have %.1f MiB free: %.1f MiB short",
                          k->n_layer, mib(need_total), n, mib(free_total),
                          mib(need_total > free_total ? need_total - free_total : per_layer));
    int assigned = 0;
    for (int i = 0; i < n; i++) {
        layers[i] = (int)((uint64_t)k->n_layer * room[i] / total_room);
        if (layers[i] < 1) layers[i] = 1;
        if (layers[i] > cap[i]) layers[i] = cap[i];
        assigned += layers[i];
    }
    /* Rounding: hand out what is left to the stages with the most room, or take back from the
     * largest shares (never below one layer). */
    while (assigned < k->n_layer) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (layers[i] < cap[i] && (best < 0 || cap[i] - layers[i] > cap[best] - layers[best]))
                best = i;
        layers[best]++; /* total_cap >= n_layer guarantees one */
        assigned++;
    }
    while (assigned > k->n_layer) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (layers[i] > layers[best]) best = i;
        layers[best]--;
        assigned--;
    }
    fill(out, k, d, n, layers);
    return BATON_OK;
}

baton_status baton_plan_parse_split(const char *text, int *split, int max, int *n,
                                    baton_error *err) {
    *n = 0;
    const char *p = text;
    for (;;) {
        char *end = NULL;
        if (*p < '0' || *p > '9')
            return baton_fail(err, BATON_ERR_ARG, "--split '%s': expected N,N,...", text);
        long v = strtol(p, &end, 10);
        if (v < 1 || v > 1 << 20)
            return baton_fail(err, BATON_ERR_ARG, "--split '%s': %ld layers", text, v);
        if (*n == max)
            return baton_fail(err, BATON_ERR_ARG, "--split '%s': more than %d stages", text, max);
        split[(*n)++] = (int)v;
        if (*end == '\0') return BATON_OK;
        if (*end != ',') return baton_fail(err, BATON_ERR_ARG, "--split '%s': expected N,N,...", text);
        p = end + 1;
    }
}

/* True when stages a and b run on the same GPU: the same device spec on the same host. */
static bool plan_same_gpu(const baton_plan_device *a, const baton_plan_device *b) {
    if (strncmp(a->device, "vulkan", 6) != 0 || strcmp(a->device, b->device) != 0) return false;
    const char *ca = strrchr(a->host, ':'), *cb = strrchr(b->host, ':');
    size_t la = ca ? (size_t)(ca - a->host) : strlen(a->host);
    size_t lb = cb ? (size_t)(cb - b->host) : strlen(b->host);
    return la == lb && strncmp(a->host, b->host, la) == 0;
}

int baton_plan_parallel_stages(const baton_plan *p) {
    int n = 0;
    for (int i = 0; i < p->n_stages; i++) {
        bool shared = false;
        for (int j = 0; j < i && !shared; j++)
            shared = plan_same_gpu(&p->stages[i].device, &p->stages[j].device);
        n += !shared;
    }
    return n;
}

void baton_plan_print(const baton_plan *p, const char *prefix, FILE *out) {
    int n_layer = p->n_stages > 0 ? p->stages[p->n_stages - 1].layer_end : 0;
    fprintf(out, "%splan: %d stage%s for %d layers\n", prefix, p->n_stages,
            p->n_stages == 1 ? "" : "s", n_layer);
    for (int i = 0; i < p->n_stages; i++) {
        const baton_plan_stage *s = &p->stages[i];
        fprintf(out, "%s  stage %d: layers [%d, %d)%s%s on %s", prefix, i, s->layer_begin,
                s->layer_end, s->with_embedding ? " +embedding" : "",
                s->with_head ? " +head" : "", s->device.device);
        if (s->device.host[0] != '\0')
            fprintf(out, " (stage %d of node %s)", s->device.node_stage, s->device.host);
        fprintf(out, ", needs %.1f MiB of %.1f MiB free\n", mib(s->need_bytes),
                mib(s->device.free_bytes));
    }
}

uint64_t baton_plan_ram_available(void) { return baton_proc_kb("/proc/meminfo", "MemAvailable"); }
