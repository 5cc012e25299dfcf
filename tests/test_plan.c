/* The pipeline plan and the model fingerprint:
 *   - auto plans split layers in proportion to free memory, never past what a device holds,
 *     with the embedding on the first stage and the head on the last;
 *   - a split is taken as given and checked; plans that do not fit are refused saying by how much;
 *   - XXH64 matches the reference values; the header fingerprint tells models apart by shape,
 *     the range checksum by data, and each range reads only its own tensors. */
#include "check.h"
#include "cli.h"
#include "fingerprint.h"
#include "plan.h"

static baton_plan_costs costs(int n_layer) {
    /* 1 MiB per layer with its state, 1 MiB embedding, 2 MiB head, no workspace. */
    return (baton_plan_costs){.n_layer = n_layer, .layer_bytes = 1 << 20,
                              .embedding_bytes = 1 << 20, .head_bytes = 2 << 20};
}

static baton_plan_device dev(const char *name, uint64_t mib) {
    baton_plan_device d = {.free_bytes = mib << 20};
    snprintf(d.device, sizeof d.device, "%s", name);
    return d;
}

static void check_auto(void) {
    baton_plan_costs k = costs(40);
    baton_plan_device d[3] = {dev("a", 100), dev("b", 100), dev("c", 100)};
    baton_plan p;
    baton_error err = {0};
    REQUIRE(baton_plan_make(&k, d, 3, NULL, &p, &err) == BATON_OK);
    CHECK(p.n_stages == 3 && p.stages[0].layer_begin == 0 && p.stages[2].layer_end == 40);
    CHECK(p.stages[0].with_embedding && !p.stages[1].with_embedding && p.stages[2].with_head);
    for (int i = 0; i < 3; i++) {
        int n = p.stages[i].layer_end - p.stages[i].layer_begin;
        CHECK_MSG(n >= 13 && n <= 14, "stage %d has %d layers", i, n);
        if (i > 0) CHECK(p.stages[i].layer_begin == p.stages[i - 1].layer_end);
    }
    /* Twice the memory, about twice the layers; a small device is filled but not overfilled. */
    baton_plan_device e[2] = {dev("small", 12), dev("big", 200)};
    REQUIRE(baton_plan_make(&k, e, 2, NULL, &p, &err) == BATON_OK);
    CHECK_MSG(p.stages[0].layer_end <= 11 && p.stages[0].need_bytes <= (12u << 20),
              "small device got layers [0, %d)", p.stages[0].layer_end);
    baton_plan_device f[2] = {dev("x", 60), dev("y", 120)};
    REQUIRE(baton_plan_make(&k, f, 2, NULL, &p, &err) == BATON_OK);
    int first = p.stages[0].layer_end;
    CHECK_MSG(first >= 12 && first <= 15, "60 vs 120 MiB: first stage has %d of 40 layers", first);
}

static void check_refusals(void) {
    baton_plan_costs k = costs(40);
    baton_plan p;
    baton_error err = {0};
    baton_plan_device d[2] = {dev("a", 20), dev("b", 20)}; /* 43 MiB needed, 40 free */
    CHECK(baton_plan_make(&k, d, 2, NULL, &p, &err) == BATON_ERR_NOMEM);
    CHECK_MSG(strstr(err.msg, "3.0 MiB short") != NULL, "message: %s", err.msg);
    baton_plan_device e[2] = {dev("a", 100), dev("b", 100)};
    baton_plan_device small_first[2] = {dev("a", 20), dev("b", 100)};
    int split[2] = {38, 2}; /* stage 0 needs 39 MiB */
    CHECK(baton_plan_make(&k, small_first, 2, split, &p, &err) == BATON_ERR_NOMEM);
    CHECK_MSG(strstr(err.msg, "stage 0") != NULL && strstr(err.msg, "19.0 MiB short") != NULL,
              "message: %s", err.msg);
    int ok_split[2] = {30, 10};
    CHECK(baton_plan_make(&k, e, 2, ok_split, &p, &err) == BATON_OK);
    CHECK(p.stages[0].layer_end == 30 && p.stages[1].layer_begin == 30);
    int bad_sum[2] = {30, 9};
    CHECK(baton_plan_make(&k, e, 2, bad_sum, &p, &err) == BATON_ERR_ARG);
    int parsed[8], n = 0;
    CHECK(baton_plan_parse_split("2,2,2", parsed, 8, &n, &err) == BATON_OK && n == 3);
    CHECK(baton_plan_parse_split("2,,2", parsed, 8, &n, &err) == BATON_ERR_ARG);
    CHECK(baton_plan_parse_split("0,6", parsed, 8, &n, &err) == BATON_ERR_ARG);
    CHECK(baton_plan_parse_split("auto", parsed, 8, &n, &err) == BATON_ERR_ARG);
    baton_plan_device many[7];
    for (int i = 0; i < 7; i++) many[i] = dev("d", 100);
    baton_plan_costs six = costs(6);
    CHECK(baton_plan_make(&six, many, 7, NULL, &p, &err) == BATON_ERR_ARG);
}

static void check_fingerprint(void) {
    CHECK(baton_xxh64("", 0, 0) == 0xEF46DB3751D8E999ull);
    CHECK(baton_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    char a[512], b[512], c[512];
    cli_tmp(a, sizeof a, "fp-a.pth");
    cli_tmp(b, sizeof b, "fp-b.pth");
    cli_tmp(c, sizeof c, "fp-c.pth");
    REQUIRE(cli_run("synth --layers 4 --embd 64 --vocab 256 --dtype fp16 --seed 1 -o '%s' >/dev/null", a) == 0);
    REQUIRE(cli_run("synth --layers 4 --embd 64 --vocab 256 --dtype fp16 --seed 2 -o '%s' >/dev/null", b) == 0);
    REQUIRE(cli_run("synth --layers 5 --embd 64 --vocab 256 --dtype fp16 --seed 1 -o '%s' >/dev/null", c) == 0);
    baton_tensor_set *sa = NULL, *sb = NULL, *sc = NULL;
    REQUIRE(baton_tensor_set_open(a, &sa, NULL) == BATON_OK);
    REQUIRE(baton_tensor_set_open(b, &sb, NULL) == BATON_OK);
    REQUIRE(baton_tensor_set_open(c, &sc, NULL) == BATON_OK);
    /* Same shapes, other data: the header agrees, the checksums do not. */
    CHECK(baton_fingerprint_header(sa) == baton_fingerprint_header(sb));
    CHECK(baton_fingerprint_header(sa) != baton_fingerprint_header(sc));
    CHECK(baton_fingerprint_range(sa, 0, 4, true, true) != baton_fingerprint_range(sb, 0, 4, true, true));
    CHECK(baton_fingerprint_range(sa, 1, 2, false, false) != baton_fingerprint_range(sb, 1, 2, false, false));
    /* Ranges differ from each other and are stable. */
    uint64_t r01 = baton_fingerprint_range(sa, 0, 1, true, false);
    CHECK(r01 == baton_fingerprint_range(sa, 0, 1, true, false));
    CHECK(r01 != baton_fingerprint_range(sa, 0, 1, false, false));
    CHECK(baton_fingerprint_range(sa, 3, 4, false, true) != baton_fingerprint_range(sa, 3, 4, false, false));
    CHECK(baton_fingerprint_range(sa, 1, 2, false, false) != baton_fingerprint_range(sa, 2, 3, false, false));
    baton_tensor_set_free(sa);
    baton_tensor_set_free(sb);
    baton_tensor_set_free(sc);
}

/* Stages on one GPU of one host count once; CPU stages and other GPUs or hosts count each. */
static void check_parallel(void) {
    baton_plan p = {.n_stages = 3};
    const char *devs[3] = {"vulkan:0", "vulkan:0", "vulkan:0"};
    for (int i = 0; i < 3; i++) snprintf(p.stages[i].device.device, sizeof p.stages[i].device.device, "%s", devs[i]);
    CHECK(baton_plan_parallel_stages(&p) == 1);
    snprintf(p.stages[1].device.device, sizeof p.stages[1].device.device, "vulkan:1");
    CHECK(baton_plan_parallel_stages(&p) == 2);
    for (int i = 0; i < 3; i++) snprintf(p.stages[i].device.device, sizeof p.stages[i].device.device, "cpu");
    CHECK(baton_plan_parallel_stages(&p) == 3);
    /* Nodes: the same host on other ports shares its GPU; another host does not. */
    const char *hosts[3] = {"10.0.0.1:50061", "10.0.0.1:50062", "10.0.0.2:50061"};
    for (int i = 0; i < 3; i++) {
        snprintf(p.stages[i].device.device, sizeof p.stages[i].device.device, "vulkan:0");
        snprintf(p.stages[i].device.host, sizeof p.stages[i].device.host, "%s", hosts[i]);
    }
    CHECK(baton_plan_parallel_stages(&p) == 2);
}

int main(void) {
    check_parallel();
    check_auto();
    check_refusals();
    check_fingerprint();
    return test_result();
}
