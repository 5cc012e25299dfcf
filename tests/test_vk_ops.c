/* Each Vulkan kernel against a small CPU computation in double precision: matmul (every variant,
 * every epilogue, weights split into row chunks, bitwise agreement across batch sizes and across
 * the bench's one-token matvec configurations),
 * layernorm (with a row map), layernorm fused with the token shift, state save, and the WKV
 * recurrence. */
#include <math.h>

#include "test_vk_common.h"
#include "vk_context.h"
#include "vk_kernels.h"
#include "vk_upload.h"

static vk_context ctx;

static vk_buffer host_buffer(size_t bytes) {
    vk_buffer b;
    baton_error err = {0};
    baton_status s = vk_buffer_create(&ctx, bytes, true, &b, &err);
    if (s != BATON_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(s == BATON_OK);
    memset(b.mapped, 0, b.size);
    return b;
}

static void run(void) {
    baton_error err = {0};
    baton_status s = vk_submit_wait(&ctx, &err);
    if (s != BATON_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(s == BATON_OK);
}

static void begin(void) {
    baton_error err = {0};
    REQUIRE(vk_begin(&ctx, &err) == BATON_OK);
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Uploads the fp16 (N, K) matrix w16 in row chunks of at most chunk_bytes (forced through
 * BATON_VK_CHUNK_BYTES, as a device with a small binding limit would cut it). */
static void upload_f16(const uint16_t *w16, int N, int K, uint64_t chunk_bytes, vk_matrix *wm) {
    char chunk[32];
    snprintf(chunk, sizeof chunk, "%llu", (unsigned long long)chunk_bytes);
    setenv("BATON_VK_CHUNK_BYTES", chunk, 1);
    vk_uploader up;
    baton_matrix bm = {.data = w16, .dtype = BATON_F16, .rows = N, .cols = K};
    baton_error err = {0};
    REQUIRE(vk_uploader_init(&ctx, &up, (uint64_t)N * K * 2, &err) == BATON_OK);
    baton_status st = vk_matrix_upload(&ctx, &up, &bm, "test", wm, &err);
    vk_uploader_free(&ctx, &up);
    unsetenv("BATON_VK_CHUNK_BYTES");
    if (st != BATON_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(st == BATON_OK);
}

/* fp32 and bf16 weights are converted to fp16 at upload (baton_convert_to_f16, bitwise checked
 * in test_dtype): a matrix with values past fp16's range is refused, naming how many and the
 * largest, whichever of its rows and threads they fall in; one within range goes up. */
static void test_upload_range(void) {
    enum { N = 70, K = 48 };
    static float w32[N * K];
    static uint16_t w16[N * K];
    for (int i = 0; i < N * K; i++) w32[i] = (float)((i * 37) % 101 - 50) * 0.01f;
    w32[5] = 70000.0f;        /* row 0 */
    w32[40 * K + 7] = -1e6f;  /* row 40: another block */
    w32[N * K - 1] = 65520.0f; /* the last: rounds past 65504 */
    w32[3] = 65280.0f;        /* fits (bf16 too: 65504, the largest fp16, is 65536 in bf16) */
    for (int dt = 0; dt < 2; dt++) {
        baton_dtype dtype = dt == 0 ? BATON_F32 : BATON_BF16;
        for (int i = 0; i < N * K; i++) w16[i] = baton_f32_to_bf16(w32[i]);
        baton_matrix bm = {.data = dt == 0 ? (const void *)w32 : (const void *)w16, .dtype = dtype,
                           .rows = N, .cols = K};
        vk_uploader up;
        vk_matrix wm;
        baton_error err = {0};
        REQUIRE(vk_uploader_init(&ctx, &up, 1, &err) == BATON_OK);
        baton_status st = vk_matrix_upload(&ctx, &up, &bm, "w", &wm, &err);
        CHECK_MSG(st == BATON_ERR_RANGE && strstr(err.msg, "w: 3 values beyond fp16's range") != NULL &&
                      strstr(err.msg, dt == 0 ? "largest |x| 1e+06" : "largest |x| 999424") != NULL,
                  "%s: %d, %s", baton_dtype_name(dtype), (int)st, err.msg);
        w32[5] = w32[40 * K + 7] = w32[N * K - 1] = 1.0f;
        for (int i = 0; i < N * K; i++) w16[i] = baton_f32_to_bf16(w32[i]);
        st = vk_matrix_upload(&ctx, &up, &bm, "w", &wm, &err);
        CHECK_MSG(st == BATON_OK, "%s within range: %s", baton_dtype_name(dtype), err.msg);
        if (st == BATON_OK) vk_matrix_free(&ctx, &wm);
        vk_uploader_free(&ctx, &up);
        w32[5] = 70000.0f;
        w32[40 * K + 7] = -1e6f;
        w32[N * K - 1] = 65520.0f;
    }
    printf("upload: fp32 and bf16 past fp16's range refused, within it taken\n");
}

/* W (N, K) random (fp16-exact values), x [T][K]; checks every epilogue and every variant. */
static void test_matmul(int N, int K, uint64_t chunk_bytes) {
    enum { TMAX = 41 };
    uint64_t seed = (uint64_t)N * 131 + (uint64_t)K;
    uint16_t *w16 = malloc((size_t)N * K * 2);
    float *x = malloc((size_t)TMAX * K * 4);
    REQUIRE(w16 && x);
    for (int i = 0; i < N * K; i++) w16[i] = baton_f32_to_f16(vk_test_rand(&seed));
    for (int i = 0; i < TMAX * K; i++) x[i] = vk_test_rand(&seed) * 3.0f;
    w16[0] = baton_f32_to_f16(1000.0f); /* a large weight keeps the test honest about rounding */

    vk_matrix wm;
    upload_f16(w16, N, K, chunk_bytes, &wm);
    printf("matmul %dx%d: %d chunk(s)\n", N, K, wm.n_chunks);

    vk_buffer xb = host_buffer((size_t)TMAX * K * 4), yb = host_buffer((size_t)TMAX * N * 4);
    vk_buffer mb = host_buffer((size_t)TMAX * N * 4), y1 = host_buffer((size_t)N * 4);
    memcpy(xb.mapped, x, (size_t)TMAX * K * 4);
    float *m = mb.mapped;
    for (int i = 0; i < TMAX * N; i++) m[i] = vk_test_rand(&seed);

    double *ref = malloc((size_t)TMAX * N * sizeof *ref), *mag = malloc((size_t)TMAX * N * sizeof *mag);
    REQUIRE(ref && mag);
    for (int t = 0; t < TMAX; t++) {
        for (int n = 0; n < N; n++) {
            double acc = 0, a = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)baton_f16_to_f32(w16[(size_t)n * K + k]) * x[(size_t)t * K + k];
                acc += p;
                a += fabs(p);
            }
            ref[t * N + n] = acc;
            mag[t * N + n] = a;
        }
    }
    const int Ts[] = {1, 3, 8, 9, 32, TMAX};
    float *y = yb.mapped;
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        uint32_t T = (uint32_t)Ts[ti];
        for (uint32_t epi = EPI_NONE; epi <= EPI_ADD_MUL; epi++) {
            float *init = malloc((size_t)T * N * 4);
            REQUIRE(init);
            for (size_t i = 0; i < (size_t)T * N; i++) init[i] = vk_test_rand(&seed);
            memcpy(y, init, (size_t)T * N * 4);
            begin();
            vk_record_matmul(&ctx, &wm, &xb, &yb, &mb, T, (uint32_t)N, epi);
            run();
            double worst = 0;
            for (size_t i = 0; i < (size_t)T * N; i++) {
                double r = ref[i], want;
                switch (epi) {
                case EPI_SIGMOID: want = sigmoid(r); break;
                case EPI_RELU_SQ: want = r > 0 ? r * r : 0; break;
                case EPI_ADD: want = init[i] + r; break;
                case EPI_ADD_MUL: want = init[i] + m[i] * r; break;
                default: want = r;
                }
                double scale = epi == EPI_RELU_SQ ? 2 * fabs(r) * mag[i] + 1e-3 : mag[i] + 1e-3;
                double d = fabs(y[i] - want) / scale;
                if (!(d <= worst)) worst = d;
            }
            /* The tensor-core variants split x into fp16 hi + lo (about 22 bits): held to the
             * same bound as the fp32 kernels. */
            CHECK_MSG(worst < 1e-5, "matmul %dx%d T %u epilogue %u: normalized error %g", N, K, T,
                      epi, worst);
            free(init);
        }
        /* Batch invariance: each token's outputs equal, bitwise, its outputs computed alone. */
        begin();
        vk_record_matmul(&ctx, &wm, &xb, &yb, NULL, T, (uint32_t)N, EPI_NONE);
        run();
        for (uint32_t t = 0; t < T; t++) {
            vk_buffer xt = host_buffer((size_t)K * 4);
            memcpy(xt.mapped, x + (size_t)t * K, (size_t)K * 4);
            begin();
            vk_record_matmul(&ctx, &wm, &xt, &y1, NULL, 1, (uint32_t)N, EPI_NONE);
            run();
            CHECK_MSG(memcmp(y1.mapped, y + (size_t)t * N, (size_t)N * 4) == 0,
                      "matmul %dx%d: token %u of %u differs from its solo run", N, K, t, T);
            vk_buffer_destroy(&ctx, &xt);
        }
    }
    free(ref);
    free(mag);
    vk_buffer_destroy(&ctx, &y1);
    vk_buffer_destroy(&ctx, &mb);
    vk_buffer_destroy(&ctx, &yb);
    vk_buffer_destroy(&ctx, &xb);
    vk_matrix_free(&ctx, &wm);
    free(w16);
    free(x);
}

/* One matrix and its inputs for the configuration tests: a random fp16 (N, K) W uploaded in row
 * chunks of at most chunk_bytes (0: whole), x [T][K], an EPI_ADD_MUL gate m and a starting y. */
typedef struct {
    int N, K, T;
    uint16_t *w16;
    vk_matrix wm;
    vk_buffer xb, yb, mb;
    float *init, *want;
} mm_case;

static void mm_case_init(mm_case *c, int N, int K, int T, uint64_t chunk_bytes, uint64_t seed) {
    *c = (mm_case){.N = N, .K = K, .T = T};
    c->w16 = malloc((size_t)N * K * 2);
    c->init = malloc((size_t)T * N * 4);
    c->want = malloc((size_t)T * N * 4);
    REQUIRE(c->w16 && c->init && c->want);
    for (int i = 0; i < N * K; i++) c->w16[i] = baton_f32_to_f16(vk_test_rand(&seed));
    upload_f16(c->w16, N, K, chunk_bytes, &c->wm);
    c->xb = host_buffer((size_t)T * K * 4);
    c->yb = host_buffer((size_t)T * N * 4);
    c->mb = host_buffer((size_t)T * N * 4);
    float *x = c->xb.mapped, *m = c->mb.mapped;
    for (int i = 0; i < T * K; i++) x[i] = vk_test_rand(&seed) * 3.0f;
    for (int i = 0; i < T * N; i++) m[i] = vk_test_rand(&seed);
    for (int i = 0; i < T * N; i++) c->init[i] = vk_test_rand(&seed);
}

static void mm_case_free(mm_case *c) {
    vk_buffer_destroy(&ctx, &c->mb);
    vk_buffer_destroy(&ctx, &c->yb);
    vk_buffer_destroy(&ctx, &c->xb);
    vk_matrix_free(&ctx, &c->wm);
    free(c->w16);
    free(c->init);
    free(c->want);
}

/* y = init, then y (+)= W x for the first T tokens, epilogue epi, under the context's
 * configurations; returns y. */
static const float *mm_case_run(mm_case *c, uint32_t T, uint32_t epi) {
    memcpy(c->yb.mapped, c->init, (size_t)T * c->N * 4);
    begin();
    vk_record_matmul(&ctx, &c->wm, &c->xb, &c->yb, &c->mb, T, (uint32_t)c->N, epi);
    run();
    return c->yb.mapped;
}

/* The largest normalized error of y's first T rows (epilogue EPI_NONE) against W x in double. */
static double mm_case_error(const mm_case *c, const float *y, int T) {
    const float *x = c->xb.mapped;
    double worst = 0;
    for (int t = 0; t < T; t++) {
        for (int n = 0; n < c->N; n++) {
            double acc = 0, mag = 1e-3;
            for (int k = 0; k < c->K; k++) {
                double w = baton_f16_to_f32(c->w16[(size_t)n * c->K + k]);
                double p = w * x[(size_t)t * c->K + k];
                acc += p;
                mag += fabs(p);
            }
            double d = fabs(y[(size_t)t * c->N + n] - acc) / mag;
            if (!(d <= worst)) worst = d;
        }
    }
    return worst;
}

/* The bench's matvec configurations: every epilogue, each bitwise what configuration 0 gives,
 * which is checked against double precision. */
static void test_matvec_configs(int N, int K, uint64_t chunk_bytes) {
    mm_case c;
    mm_case_init(&c, N, K, 1, chunk_bytes, (uint64_t)N * 977 + (uint64_t)K);
    baton_error err = {0};
    int checked = 0, skipped = 0;
    for (uint32_t epi = EPI_NONE; epi <= EPI_ADD_MUL; epi++) {
        REQUIRE(vk_matvec_select(&ctx, 0, &err) == BATON_OK);
        memcpy(c.want, mm_case_run(&c, 1, epi), (size_t)N * 4);
        if (epi == EPI_NONE) {
            double worst = mm_case_error(&c, c.want, 1);
            CHECK_MSG(worst < 1e-5, "matvec %dx%d: normalized error %g", N, K, worst);
        }
        for (int i = 1; i < VK_MATVEC_CONFIGS; i++) {
            if (vk_matvec_select(&ctx, i, &err) != BATON_OK) {
                if (epi == EPI_NONE)
                    printf("matvec %s: skipped (%s)\n", vk_matvec_configs[i].name, err.msg);
                skipped += epi == EPI_NONE;
                continue;
            }
            CHECK_MSG(memcmp(mm_case_run(&c, 1, epi), c.want, (size_t)N * 4) == 0,
                      "matvec %dx%d, %s, epilogue %u: differs from configuration 0", N, K,
                      vk_matvec_configs[i].name, epi);
            checked++;
        }
    }
    REQUIRE(vk_matvec_select(&ctx, 0, &err) == BATON_OK);
    printf("matvec %dx%d (%d chunk(s)): %d configuration runs bitwise equal to configuration 0, %d "
           "configuration(s) skipped\n", N, K, c.wm.n_chunks, checked, skipped);
    mm_case_free(&c);
}

/* The shader of configuration i of a kind (the tensor cores' emulated). */
static baton_shader_id kind_shader(int kind, int i) {
    return kind == VK_KIND_MATVEC ? vk_matvec_configs[i].shader
         : kind <= VK_KIND_B64    ? vk_batched_configs[i].shader
                                  : vk_coop_configs[i].emulated;
}

/* A matrix of a role runs that role's configuration of a kind where one is set (tuning's choice
 * per product): for the matvec, two batched tiers and the tensor cores' many-token and large
 * kinds, the profile sees that configuration's shader and not the kind's own, with bitwise the
 * same y. vk_kind_clear_roles and vk_kernels_reset put back the kind's own and the start's. */
static void test_roles(void) {
    enum { T_MAX = 72 };
    mm_case c;
    mm_case_init(&c, 100, 72, T_MAX, 0, 7);
    baton_error err = {0};
    const struct { int kind, T; } cases[] = {
        {VK_KIND_MATVEC, 1}, {VK_KIND_B8, 5}, {VK_KIND_B32, 20}, {VK_KIND_COOP_MANY, 20},
        {VK_KIND_COOP_LARGE, T_MAX},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int kind = cases[k].kind, T = cases[k].T;
        ctx.coopmat = ctx.coopmat_emulated = kind >= VK_KIND_COOP_FEW;
        int n = kind == VK_KIND_MATVEC ? VK_MATVEC_CONFIGS
              : kind <= VK_KIND_B64    ? VK_BATCHED_CONFIGS
                                       : VK_COOP_CONFIGS;
        vk_kind_clear_roles(&ctx, kind);
        c.wm.role = VK_ROLE_NONE;
        int own = vk_kind_config(&ctx, kind, VK_ROLE_ATT_OUTPUT), other = -1;
        memcpy(c.want, mm_case_run(&c, (uint32_t)T, EPI_NONE), (size_t)T * c.N * 4);
        for (int i = 0; i < n && other < 0; i++)
            if (i != own && kind_shader(kind, i) != kind_shader(kind, own) &&
                vk_kind_select_role(&ctx, kind, VK_ROLE_ATT_OUTPUT, i, &err) == BATON_OK)
                other = i;
        REQUIRE(other >= 0);
        CHECK(vk_kind_config(&ctx, kind, VK_ROLE_ATT_OUTPUT) == other &&
              vk_kind_config(&ctx, kind, VK_ROLE_FFN_KR) == own && vk_kind_config(&ctx, kind, VK_ROLE_NONE) == own);
        c.wm.role = VK_ROLE_ATT_OUTPUT;
        if (ctx.queries != VK_NULL_HANDLE) {
            memset(ctx.prof.groups, 0, sizeof ctx.prof.groups);
            ctx.prof.on = true;
            const float *y = mm_case_run(&c, (uint32_t)T, EPI_NONE);
            ctx.prof.on = false;
            uint32_t got_other = ctx.prof.groups[kind_shader(kind, other)];
            uint32_t got_own = ctx.prof.groups[kind_shader(kind, own)];
            CHECK_MSG(got_other == 1 && got_own == 0, "kind %d at %d tokens: the role's matrix ran "
                      "%u groups of its configuration, %u of the kind's", kind, T, got_other, got_own);
            CHECK_MSG(memcmp(y, c.want, (size_t)T * c.N * 4) == 0, "kind %d: y differs", kind);
        }
        vk_kind_clear_roles(&ctx, kind);
        CHECK(vk_kind_config(&ctx, kind, VK_ROLE_ATT_OUTPUT) == own);
    }
    ctx.coopmat = ctx.coopmat_emulated = false;
    CHECK(vk_kind_select_role(&ctx, VK_KIND_B8, VK_ROLE_FFN_KR, VK_BATCHED_32_DEFAULT, &err) == BATON_ERR_ARG);
    int saved = ctx.start.role_config[VK_KIND_MATVEC][VK_ROLE_FFN_VALUE];
    ctx.start.role_config[VK_KIND_MATVEC][VK_ROLE_FFN_VALUE] = 2;
    REQUIRE(vk_kernels_reset(&ctx, &err) == BATON_OK);
    CHECK(ctx.matvec == ctx.start.matvec && vk_kind_config(&ctx, VK_KIND_MATVEC, VK_ROLE_FFN_VALUE) == 2 &&
          vk_kind_config(&ctx, VK_KIND_MATVEC, VK_ROLE_ATT_OUTPUT) == ctx.matvec);
    ctx.start.role_config[VK_KIND_MATVEC][VK_ROLE_FFN_VALUE] = saved;
    REQUIRE(vk_kernels_reset(&ctx, &err) == BATON_OK);
    CHECK(vk_kind_config(&ctx, VK_KIND_MATVEC, VK_ROLE_FFN_VALUE) == ctx.matvec);
    printf("configurations per role: the role's runs, the reset restores the start's\n");
    mm_case_free(&c);
}

/* The 8- and 32-token configurations (rows per thread): T = 5 and 41 tokens, every epilogue,
 * bitwise equal to the first of their kind. */
static void test_batched_configs(int N, int K, uint64_t chunk_bytes) {
    enum { TMAX = 41 };
    mm_case c;
    mm_case_init(&c, N, K, TMAX, chunk_bytes, (uint64_t)N * 733 + (uint64_t)K);
    baton_error err = {0};
    int checked = 0;
    for (int i = 0; i < VK_BATCHED_CONFIGS; i++) {
        const vk_batched_config *bc = &vk_batched_configs[i];
        uint32_t T = bc->cb == 8 ? 5 : TMAX;
        int first = bc->cb == 8 ? 0 : VK_BATCHED_32_DEFAULT;
        for (uint32_t epi = EPI_NONE; epi <= EPI_ADD_MUL; epi++) {
            REQUIRE(vk_batched_select(&ctx, first, &err) == BATON_OK);
            memcpy(c.want, mm_case_run(&c, T, epi), (size_t)T * N * 4);
            REQUIRE(vk_batched_select(&ctx, i, &err) == BATON_OK);
            CHECK_MSG(memcmp(mm_case_run(&c, T, epi), c.want, (size_t)T * N * 4) == 0, "matmul "
                      "%dx%d, %s, epilogue %u: differs from %s", N, K, bc->name, epi,
                      vk_batched_configs[first].name);
            checked++;
        }
    }
    REQUIRE(vk_kernels_reset(&ctx, &err) == BATON_OK);
    printf("batched %dx%d (%d chunk(s)): %d configuration runs bitwise equal\n", N, K,
           c.wm.n_chunks, checked);
    mm_case_free(&c);
}

/* matmul_coop.comp's configurations (emulated, or on the tensor cores where the device has them):
 * T = 72 tokens (the large tier) and 20 (the many-token one) under every many-token configuration
 * in each tier, and token 0 alone under every few-token one, each bitwise equal to the default
 * triple's results at 72 tokens, which are checked against a double reference. */
static void test_coop_configs(int N, int K, uint64_t chunk_bytes) {
    enum { T = 72, T_MANY = 20 };
    _Static_assert((int)T > (int)VK_COOP_MANY_TOKENS && (int)T_MANY > (int)VK_COOP_FEW_TOKENS &&
                   (int)T_MANY <= (int)VK_COOP_MANY_TOKENS, "one step in each tier");
    mm_case c;
    mm_case_init(&c, N, K, T, chunk_bytes, (uint64_t)N * 313 + (uint64_t)K);
    float *x = c.xb.mapped;
    x[1] = 23333.3f; /* fp16 keeps it to a step of 16: lo carries the rest */
    x[2] = 1e-7f;    /* hi and lo subnormal */
    baton_error err = {0};
    const int def = VK_COOP_MANY_DEFAULT;
    REQUIRE(vk_coop_select(&ctx, 0, def, def, &err) == BATON_OK);
    memcpy(c.want, mm_case_run(&c, T, EPI_NONE), (size_t)T * N * 4);
    double worst = mm_case_error(&c, c.want, T);
    CHECK_MSG(worst < 1e-5, "coop %dx%d: normalized error %g", N, K, worst);
    int checked = 0;
    for (int i = 0; i < VK_COOP_CONFIGS; i++)
        for (int tier = 0; tier < (vk_coop_few(i) ? 1 : 2); tier++) {
            bool few = vk_coop_few(i), large = tier == 1;
            REQUIRE(vk_coop_select(&ctx, few ? i : 0, few || large ? def : i, large ? i : def, &err) == BATON_OK);
            uint32_t n_tok = few ? 1 : large ? T : T_MANY;
            CHECK_MSG(memcmp(mm_case_run(&c, n_tok, EPI_NONE), c.want, (size_t)n_tok * N * 4) == 0,
                      "coop %dx%d, %s (%u token(s)): differs from the default triple", N, K,
                      vk_coop_configs[i].name, n_tok);
            checked++;
        }
    REQUIRE(vk_coop_select(&ctx, 0, def, def, &err) == BATON_OK);
    printf("coop %dx%d (%d chunk(s)%s): normalized error %.2g, %d configuration runs bitwise equal\n",
           N, K, c.wm.n_chunks, ctx.coopmat_emulated ? ", emulated" : ", tensor cores", worst,
           checked);
    mm_case_free(&c);
}



/* Three matrices stacked (rows not multiples of the row block, optionally in row chunks), each
 * part with its own input region, output region and epilogue: bitwise what each gives alone. */
static void test_matmul_stack(const int *N, int K, uint64_t chunk_bytes) {
    enum { TMAX = 33 };
    uint64_t seed = (uint64_t)K * 7 + (uint64_t)N[0];
    const uint32_t epis[3] = {EPI_RELU_SQ, EPI_SIGMOID, EPI_NONE};
    uint16_t *w16[3];
    baton_matrix bm[3];
    const baton_matrix *stack[3];
    vk_matrix single[3], stacked;
    vk_uploader up;
    baton_error err = {0};
    REQUIRE(vk_uploader_init(&ctx, &up, 1, &err) == BATON_OK);
    for (int p = 0; p < 3; p++) {
        w16[p] = malloc((size_t)N[p] * K * 2);
        REQUIRE(w16[p]);
        for (int i = 0; i < N[p] * K; i++) w16[p][i] = baton_f32_to_f16(vk_test_rand(&seed));
        bm[p] = (baton_matrix){.data = w16[p], .dtype = BATON_F16, .rows = N[p], .cols = K};
        stack[p] = &bm[p];
        REQUIRE(vk_matrix_upload(&ctx, &up, &bm[p], "single", &single[p], &err) == BATON_OK);
    }
    char chunk[32];
    snprintf(chunk, sizeof chunk, "%llu", (unsigned long long)chunk_bytes);
    setenv("BATON_VK_CHUNK_BYTES", chunk, 1);
    baton_status st = vk_matrix_upload_stack(&ctx, &up, stack, 3, "stack", &stacked, &err);
    unsetenv("BATON_VK_CHUNK_BYTES");
    vk_uploader_free(&ctx, &up);
    if (st != BATON_OK) fprintf(stderr, "%s\n", err.msg);
    REQUIRE(st == BATON_OK);
    printf("matmul stack %d+%d+%d x %d: %d chunk(s)\n", N[0], N[1], N[2], K, stacked.n_chunks);

    uint32_t R = (uint32_t)TMAX * (uint32_t)K, Y = 0; /* x region, y region sizes (floats) */
    for (int p = 0; p < 3; p++) Y = Y > (uint32_t)(TMAX * N[p]) ? Y : (uint32_t)(TMAX * N[p]);
    vk_buffer xb = host_buffer((size_t)3 * R * 4), yb = host_buffer((size_t)3 * Y * 4);
    vk_buffer y1 = host_buffer((size_t)Y * 4), x1 = host_buffer((size_t)R * 4);
    float *x = xb.mapped;
    for (uint32_t i = 0; i < 3 * R; i++) x[i] = vk_test_rand(&seed) * 3.0f;
    const uint32_t Ts[] = {1, 5, TMAX};
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        uint32_t T = Ts[ti];
        vk_matmul_part parts[3];
        for (int p = 0; p < 3; p++)
            parts[p] = (vk_matmul_part){.x_off = (uint32_t)p * R, .y_off = (uint32_t)p * Y,
                                        .y_stride = (uint32_t)N[p], .epilogue = epis[p]};
        memset(yb.mapped, 0, yb.size);
        begin();
        vk_record_matmul_parts(&ctx, &stacked, parts, &xb, &yb, NULL, 0, T);
        run();
        /* One token: every matvec configuration gives bitwise the default's parts. */
        for (int i = 1; T == 1 && i < VK_MATVEC_CONFIGS; i++) {
            if (vk_matvec_select(&ctx, i, &err) != BATON_OK) continue;
            vk_buffer yc = host_buffer((size_t)3 * Y * 4);
            begin();
            vk_record_matmul_parts(&ctx, &stacked, parts, &xb, &yc, NULL, 0, T);
            run();
            REQUIRE(vk_matvec_select(&ctx, 0, &err) == BATON_OK);
            for (int p = 0; p < 3; p++)
                CHECK_MSG(memcmp((float *)yc.mapped + (size_t)p * Y, (float *)yb.mapped + (size_t)p * Y,
                                 (size_t)N[p] * 4) == 0,
                          "matmul stack: part %d, matvec %s differs from the default", p,
                          vk_matvec_configs[i].name);
            vk_buffer_destroy(&ctx, &yc);
        }
        for (int p = 0; p < 3; p++) {
            memcpy(x1.mapped, x + (size_t)p * R, (size_t)R * 4);
            memset(y1.mapped, 0, y1.size);
            begin();
            vk_record_matmul(&ctx, &single[p], &x1, &y1, NULL, T, (uint32_t)N[p], epis[p]);
            run();
            CHECK_MSG(memcmp(y1.mapped, (float *)yb.mapped + (size_t)p * Y, (size_t)T * N[p] * 4) == 0,
                      "matmul stack: part %d, T %u differs from the part alone", p, T);
        }
    }
    vk_buffer_destroy(&ctx, &x1);
    vk_buffer_destroy(&ctx, &y1);
    vk_buffer_destroy(&ctx, &yb);
    vk_buffer_destroy(&ctx, &xb);
    vk_matrix_free(&ctx, &stacked);
    for (int p = 2; p >= 0; p--) {
        vk_matrix_free(&ctx, &single[p]);
        free(w16[p]);
    }
}


/* LayerNorm over rows picked by a row map, against double precision. */
static void test_layernorm(int C, int rows) {
    uint64_t seed = 77;
    vk_buffer xb = host_buffer((size_t)rows * C * 4), yb = host_buffer((size_t)rows * C * 4);
    vk_buffer pb = host_buffer((size_t)2 * C * 4), ib = host_buffer((size_t)rows * 4);
    float *x = xb.mapped, *p = pb.mapped, *y = yb.mapped;
    uint32_t *map = ib.mapped;
    for (int i = 0; i < rows * C; i++) x[i] = vk_test_rand(&seed) * 4.0f + 2.0f;
    for (int i = 0; i < 2 * C; i++) p[i] = vk_test_rand(&seed);
    for (int r = 0; r < rows; r++) map[r] = (uint32_t)(rows - 1 - r);
    pc_layernorm pc = {.C = (uint32_t)C, .w_off = 0, .b_off = (uint32_t)C, .row_map_off = 0,
                       .chans = (uint32_t)C};
    vk_bind binds[4] = {{.buf = &xb}, {.buf = &yb}, {.buf = &pb}, {.buf = &ib}};
    begin();
    vk_dispatch(&ctx, BATON_SHADER_layernorm_f32_f32, binds, 4, &pc, sizeof pc, (uint32_t)rows, 1, 1);
    run();
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)map[r] * C;
        double mean = 0, var = 0;
        for (int c = 0; c < C; c++) mean += xr[c];
        mean /= C;
        for (int c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
        var /= C;
        for (int c = 0; c < C; c++) {
            double want = (xr[c] - mean) / sqrt(var + 1e-5) * p[c] + p[C + c];
            double d = fabs(y[(size_t)r * C + c] - want);
            if (!(d <= worst)) worst = d;
        }
    }
    CHECK_MSG(worst < 1e-5, "layernorm C %d: max error %g", C, worst);
    /* Spread over workgroups of 32 channels: bitwise the same rows. */
    float *one = malloc((size_t)rows * C * 4);
    REQUIRE(one);
    memcpy(one, y, (size_t)rows * C * 4);
    memset(y, 0, (size_t)rows * C * 4);
    pc.chans = 32;
    begin();
    vk_dispatch(&ctx, BATON_SHADER_layernorm_f32_f32, binds, 4, &pc, sizeof pc, (uint32_t)rows,
                ((uint32_t)C + 31) / 32, 1);
    run();
    CHECK_MSG(memcmp(one, y, (size_t)rows * C * 4) == 0, "layernorm C %d in groups of 32 channels "
              "differs from one group", C);
    free(one);
    vk_buffer_destroy(&ctx, &ib);
    vk_buffer_destroy(&ctx, &pb);
    vk_buffer_destroy(&ctx, &yb);
    vk_buffer_destroy(&ctx, &xb);
}

/* Two sequences (11 tokens in slot 1, 1 token in slot 0): LayerNorm with the token shift, WKV
 * and state save. */
static void test_shift_wkv(int C) {
    /* 11 tokens: wkv.comp's loads 8 tokens ahead, then a tail of 3; and a sequence of one */
    enum { T = 12, S = 2, SLOTS = 2 };
    const uint32_t slot_of[S] = {1, 0}, first[S] = {0, 11}, len[S] = {11, 1};
    uint64_t seed = 5;
    size_t TC = (size_t)T * C;
    vk_buffer xin = host_buffer(TC * 4), xx = host_buffer(TC * 4), outs = host_buffer(3 * TC * 4),
              kb = host_buffer(TC * 4), vb = host_buffer(TC * 4),
              rb = host_buffer(TC * 4), ob = host_buffer(TC * 4),
              st = host_buffer((size_t)SLOTS * 5 * C * 4), pb = host_buffer((size_t)7 * C * 4),
              ib = host_buffer(64 * 4);
    float *xi = xin.mapped, *state = st.mapped, *p = pb.mapped, *k = kb.mapped, *v = vb.mapped,
          *r = rb.mapped;
    double *X = malloc(TC * sizeof *X); /* LN(x), the reference's xx */
    REQUIRE(X);
    uint32_t *info = ib.mapped;
    /* info: tok_seq at 0, seq_slot at 16, seq_first at 24, seq_len at 32 */
    for (int t = 0; t < T; t++) info[t] = t < 11 ? 0 : 1;
    for (int s = 0; s < S; s++) {
        info[16 + s] = slot_of[s];
        info[24 + s] = first[s];
        info[32 + s] = len[s];
    }
    for (size_t i = 0; i < TC; i++) {
        xi[i] = vk_test_rand(&seed) * 3.0f + 1.0f;
        k[i] = vk_test_rand(&seed) * (i % 7 == 0 ? 40.0f : 3.0f);
        v[i] = vk_test_rand(&seed) * 2.0f;
        r[i] = 0.5f + 0.5f * vk_test_rand(&seed);
    }
    for (int i = 0; i < 3 * C; i++) p[i] = 0.5f + 0.5f * vk_test_rand(&seed); /* mixes */
    for (int c = 0; c < C; c++) {
        p[3 * C + c] = vk_test_rand(&seed);                          /* u */
        p[4 * C + c] = -expf(vk_test_rand(&seed) * 2.0f);            /* w = -exp(decay) */
        p[5 * C + c] = 1.0f + 0.5f * vk_test_rand(&seed);            /* LayerNorm weight */
        p[6 * C + c] = vk_test_rand(&seed);                          /* and bias */
    }
    for (int t = 0; t < T; t++) {
        const float *row = xi + (size_t)t * C;
        double mean = 0, var = 0;
        for (int c = 0; c < C; c++) mean += row[c];
        mean /= C;
        for (int c = 0; c < C; c++) var += (row[c] - mean) * (row[c] - mean);
        var /= C;
        for (int c = 0; c < C; c++)
            X[(size_t)t * C + c] = (row[c] - mean) / sqrt(var + 1e-5) * p[5 * C + c] + p[6 * C + c];
    }
    baton_state_init(state, SLOTS, C); /* slot 0 fresh; slot 1 with history */
    for (int row = 0; row < 5; row++) {
        for (int c = 0; c < C; c++) {
            float val = vk_test_rand(&seed);
            if (row == 2) val = fabsf(val) + 0.1f;
            if (row == 3) val *= 5.0f;
            state[(5 + row) * C + c] = val;
        }
    }
    float *before = malloc((size_t)SLOTS * 5 * C * 4);
    REQUIRE(before);
    memcpy(before, state, (size_t)SLOTS * 5 * C * 4);

    pc_ln_shift ts = {.C = (uint32_t)C, .w_off = 5u * (uint32_t)C, .b_off = 6u * (uint32_t)C,
                      .state_row = 0, .n_out = 3, .mix0_off = 0, .mix1_off = (uint32_t)C,
                      .mix2_off = 2u * (uint32_t)C, .tok_seq_off = 0, .seq_slot_off = 16,
                      .seq_first_off = 24, .out_stride = (uint32_t)TC, .chans = (uint32_t)C};
    vk_bind tsb[6] = {{.buf = &xin}, {.buf = &xx}, {.buf = &st}, {.buf = &pb}, {.buf = &ib},
                      {.buf = &outs}};
    pc_wkv wk = {.C = (uint32_t)C, .u_off = 3u * (uint32_t)C, .w_off = 4u * (uint32_t)C,
                 .seq_slot_off = 16, .seq_first_off = 24, .seq_len_off = 32};
    vk_bind wb[8] = {{.buf = &kb}, {.buf = &vb}, {.buf = &rb}, {.buf = &ob},
                     {.buf = &st}, {.buf = &pb}, {.buf = &ib}, {.buf = &xx}};
    pc_state_save ss = {.C = (uint32_t)C, .state_row = 4, .seq_slot_off = 16, .seq_first_off = 24,
                        .seq_len_off = 32, .n_rows = 1, .src_stride = (uint32_t)C};
    vk_bind sb[4] = {{.buf = &xx}, {.buf = &st}, {.buf = &ctx.dummy}, {.buf = &ib}};
    uint32_t gc = (uint32_t)(C + 63) / 64;
    begin();
    vk_dispatch(&ctx, BATON_SHADER_ln_shift_f32_f32, tsb, 6, &ts, sizeof ts, T, 1, 1);
    vk_barrier(&ctx);
    vk_dispatch(&ctx, BATON_SHADER_wkv_f32_f32, wb, 8, &wk, sizeof wk, gc, S, 1);
    vk_dispatch(&ctx, BATON_SHADER_state_save_f32_f32, sb, 4, &ss, sizeof ss, gc, S, 1);
    run();

    double worst_shift = 0, worst_wkv = 0, worst_state = 0;
    const float *out_j[3] = {outs.mapped, (float *)outs.mapped + TC, (float *)outs.mapped + 2 * TC};
    const float *xx_got = xx.mapped;
    const float *o = ob.mapped;
    for (int s = 0; s < S; s++) {
        const float *sb0 = before + (size_t)slot_of[s] * 5 * C;
        for (int c = 0; c < C; c++) {
            double aa = sb0[C + c], bb = sb0[2 * C + c], pp = sb0[3 * C + c];
            double u = p[3 * C + c], w = p[4 * C + c];
            for (uint32_t t = first[s]; t < first[s] + len[s]; t++) {
                double dx = fabs(xx_got[t * C + c] - X[t * C + c]);
                if (!(dx <= worst_shift)) worst_shift = dx;
                double prev = t == first[s] ? sb0[c] : X[(t - 1) * C + c];
                for (int j = 0; j < 3; j++) {
                    double mix = p[j * C + c];
                    double want = X[t * C + c] * mix + prev * (1 - mix);
                    double d = fabs(out_j[j][t * C + c] - want);
                    if (!(d <= worst_shift)) worst_shift = d;
                }
                double kk = k[t * C + c], vv = v[t * C + c];
                double ww = u + kk, qq = fmax(pp, ww), e1 = exp(pp - qq), e2 = exp(ww - qq);
                double want = r[t * C + c] * (e1 * aa + e2 * vv) / (e1 * bb + e2);
                double d = fabs(o[t * C + c] - want) / (1 + fabs(want));
                if (!(d <= worst_wkv)) worst_wkv = d;
                ww = pp + w;
                qq = fmax(ww, kk);
                e1 = exp(ww - qq);
                e2 = exp(kk - qq);
                aa = e1 * aa + e2 * vv;
                bb = e1 * bb + e2;
                pp = qq;
            }
            const float *got = state + (size_t)slot_of[s] * 5 * C;
            uint32_t last = first[s] + len[s] - 1;
            double want[5] = {X[last * C + c], aa, bb, pp, X[last * C + c]};
            for (int row = 0; row < 5; row++) {
                double d = fabs(got[row * C + c] - want[row]) / (1 + fabs(want[row]));
                if (!(d <= worst_state)) worst_state = d;
            }
        }
    }
    CHECK_MSG(worst_shift < 1e-5, "layernorm + token shift: max error %g", worst_shift);
    CHECK_MSG(worst_wkv < 1e-5, "wkv output: max relative error %g", worst_wkv);
    CHECK_MSG(worst_state < 1e-5, "wkv/state save state: max relative error %g", worst_state);

    /* The LayerNorm and shift spread over workgroups of 16 channels: bitwise the same. */
    float *xx1 = malloc(TC * 4), *outs1 = malloc(3 * TC * 4), *st1 = malloc((size_t)SLOTS * 5 * C * 4);
    REQUIRE(xx1 && outs1 && st1);
    memcpy(xx1, xx.mapped, TC * 4);
    memcpy(outs1, outs.mapped, 3 * TC * 4);
    memcpy(state, before, (size_t)SLOTS * 5 * C * 4);
    ts.chans = 16;
    uint32_t groups = ((uint32_t)C + 15) / 16;
    begin();
    vk_dispatch(&ctx, BATON_SHADER_ln_shift_f32_f32, tsb, 6, &ts, sizeof ts, T, groups, 1);
    run();
    CHECK_MSG(memcmp(xx1, xx.mapped, TC * 4) == 0 && memcmp(outs1, outs.mapped, 3 * TC * 4) == 0,
              "layernorm + token shift in %u channel groups differs from one group", groups);
    /* A decode step (two sequences of one token, slots 1 and 0): save = 1 leaves the channel-mix
     * shift state as the state save after it does, and the rest as it was. */
    info[0] = 0;
    info[1] = 1;
    info[24] = 0;
    info[25] = 1;
    info[32] = info[33] = 1;
    ts.state_row = ss.state_row = 4;
    memcpy(state, before, (size_t)SLOTS * 5 * C * 4);
    ts.chans = (uint32_t)C;
    begin();
    vk_dispatch(&ctx, BATON_SHADER_ln_shift_f32_f32, tsb, 6, &ts, sizeof ts, 2, 1, 1);
    vk_barrier(&ctx);
    vk_dispatch(&ctx, BATON_SHADER_state_save_f32_f32, sb, 4, &ss, sizeof ss, gc, 2, 1);
    run();
    memcpy(st1, state, (size_t)SLOTS * 5 * C * 4);
    memcpy(outs1, outs.mapped, 3 * TC * 4);
    memcpy(state, before, (size_t)SLOTS * 5 * C * 4);
    ts.chans = 16;
    ts.save = 1;
    begin();
    vk_dispatch(&ctx, BATON_SHADER_ln_shift_f32_f32, tsb, 6, &ts, sizeof ts, 2, groups, 1);
    run();
    CHECK_MSG(memcmp(st1, state, (size_t)SLOTS * 5 * C * 4) == 0 &&
              memcmp(outs1, outs.mapped, 3 * TC * 4) == 0,
              "layernorm + token shift saving the shift state differs from the state save");
    CHECK_MSG(memcmp(st1, before, (size_t)SLOTS * 5 * C * 4) != 0, "the state save changed nothing");
    free(xx1);
    free(outs1);
    free(st1);
    free(before);
    free(X);
    vk_buffer *all[] = {&ib, &pb, &st, &ob, &rb, &vb, &kb, &outs, &xx, &xin};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) vk_buffer_destroy(&ctx, all[i]);
}

/* Tuning's choice: the fastest, unless within the margin of the current one; unmeasured entries
 * (<= 0) never chosen. Its choice of path (vk_tune_coop_wins). And vk_kernels_reset goes back to
 * what ctx->start holds. */
static void test_tune_pick(void) {
    const double a[4] = {1.0, 0.98, 0.5, 0.0}, b[3] = {1.0, 0.98, -1.0}, c[3] = {0.0, 2.0, 3.0};
    const double none[2] = {0.0, -1.0};
    CHECK(vk_tune_pick(a, 4, 0, 0.97) == 2);
    CHECK(vk_tune_pick(a, 4, 2, 0.97) == 2);
    CHECK(vk_tune_pick(b, 3, 0, 0.97) == 0);  /* 2% faster: noise, the current one stays */
    CHECK(vk_tune_pick(b, 3, 0, 0.99) == 1);
    CHECK(vk_tune_pick(c, 3, 0, 0.97) == 1);  /* the current one not measured */
    CHECK(vk_tune_pick(none, 2, 1, 0.97) == 1);
    /* The tensor cores for every matmul: clearly faster at the most tokens (or at one where a
     * stage runs no more) and not much slower at one; never on a time that is missing. */
    CHECK(vk_tune_coop_wins(1.0, 1.05, 10.0, 4.0));
    CHECK(vk_tune_coop_wins(1.0, 0.5, 10.0, 8.0));
    CHECK(!vk_tune_coop_wins(1.0, 1.2, 10.0, 4.0));   /* one token 20% slower */
    CHECK(!vk_tune_coop_wins(1.0, 0.5, 10.0, 8.5));   /* 1.18x at many: not clear-cut */
    CHECK(!vk_tune_coop_wins(1.0, 1.0, 10.0, 0.0));   /* many not timed on the tensor cores */
    CHECK(!vk_tune_coop_wins(0.0, 1.0, 10.0, 4.0));   /* one not timed on fp32 */
    CHECK(vk_tune_coop_wins(1.0, 0.75, 0.0, 0.0));    /* at most 8 tokens: one decides */
    CHECK(!vk_tune_coop_wins(1.0, 0.9, 0.0, 0.0));
    baton_error err = {0};
    int mv = ctx.start.matvec, b8 = ctx.start.mm8, b32 = ctx.start.mm32, b64 = ctx.start.mm64;
    ctx.start.matvec = VK_MATVEC_FALLBACK;
    ctx.start.mm8 = 1;
    ctx.start.mm32 = 4;
    ctx.start.mm64 = 6;
    REQUIRE(vk_matvec_select(&ctx, 4, &err) == BATON_OK);
    REQUIRE(vk_kernels_reset(&ctx, &err) == BATON_OK);
    CHECK(ctx.matvec == VK_MATVEC_FALLBACK && ctx.mm8 == 1 && ctx.mm32 == 4 && ctx.mm64 == 6);
    /* A tier takes only configurations that fit it; selecting one sets every tier it fits. */
    CHECK(vk_batched_set(&ctx, VK_TIER_32, 6, &err) == BATON_ERR_ARG && ctx.mm32 == 4);
    CHECK(vk_batched_set(&ctx, VK_TIER_8, 3, &err) == BATON_ERR_ARG && ctx.mm8 == 1);
    REQUIRE(vk_batched_select(&ctx, 5, &err) == BATON_OK);
    CHECK(ctx.mm8 == 1 && ctx.mm32 == 5 && ctx.mm64 == 5);
    ctx.start.matvec = mv;
    ctx.start.mm8 = b8;
    ctx.start.mm32 = b32;
    ctx.start.mm64 = b64;
    REQUIRE(vk_kernels_reset(&ctx, &err) == BATON_OK);
    int d_mv, d_b8, d_b32, d_b64;
    vk_kernel_defaults(&ctx, &d_mv, &d_b8, &d_b32, &d_b64);
    CHECK(ctx.matvec == d_mv && ctx.mm8 == d_b8 && ctx.mm32 == d_b32 && ctx.mm64 == d_b64);
    printf("tuning's pick, the tiers, and the reset to the start configurations\n");
}

int main(void) {
    vk_test_require_device();
    baton_error err = {0};
    if (vk_context_init(&ctx, vk_test_device(), &err) != BATON_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("device: %s\n", ctx.info.name);
    test_tune_pick();
    test_upload_range();
    /* Uneven K segments, rows not a multiple of the row block, and forced row chunks. */
    test_matmul(100, 72, 2 * 32 * 72 * 2);
    test_matmul(37, 16, 0);
    const int stack_a[3] = {40, 37, 64}, stack_b[3] = {96, 5, 33};
    test_matmul_stack(stack_a, 72, 0);
    test_matmul_stack(stack_b, 24, 2 * 32 * 24 * 2); /* chunks of 2 blocks: parts cross them */
    if (!vk_test_small()) test_matmul(300, 520, 3 * 32 * 520 * 2);
    /* The sweep's matvec configurations: uneven and empty segments, row chunks, several tiles
     * of x (K 5336 and 10248: 2 and 3 tiles, the last partial). */
    /* matmul_coop.comp with its products emulated: staging, rounds, segments, groups,
     * epilogues, chunks, batch invariance across its few- and many-token configurations (the
     * cooperative-matrix calls themselves need a device that has them: test_coop_configs runs
     * every configuration there too). */
    bool tensor_cores = ctx.coopmat_ready && !ctx.coopmat_emulated; /* the device's own */
    ctx.coopmat = ctx.coopmat_emulated = true;
    REQUIRE(vk_coop_xsplit_reserve(&ctx, 8u << 20, &err) == BATON_OK); /* the XG ones' split x */
    printf("matmul_coop.comp, emulated:\n");
    /* Every one at least once (few-token ones 0 to 6, many-token ones 7 to 15); the defaults,
     * the 64-row ones (3, 9), the gp ones (10, 11) and the f ones (12 to 15, whose workgroups
     * span several blocks and stacked parts) also on stacks whose parts end mid-tile, on chunks
     * of one block and on an odd number of blocks. */
    const int pairs[][3] = {{0, VK_COOP_MANY_DEFAULT, 1}, {1, 8, 0}, {2, 9, 1}, {3, 10, 1},
                            {4, 11, 1}, {5, 12, 1}, {6, 13, 1}, {0, 14, 1}, {1, 15, 1}};
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        REQUIRE(vk_coop_select(&ctx, pairs[p][0], pairs[p][1], pairs[p][1], &err) == BATON_OK);
        printf("configurations %s + %s\n", vk_coop_configs[pairs[p][0]].name,
               vk_coop_configs[pairs[p][1]].name);
        test_matmul(100, 72, 2 * 32 * 72 * 2);
        if (!pairs[p][2]) continue;
        test_matmul(100, 72, 3 * 32 * 72 * 2); /* chunks of 2 blocks (3 rounds down to a tile) */
        test_matmul(100, 72, 32 * 72 * 2);     /* chunks of 1 block: a tile's second is missing */
        test_matmul(37, 16, 0);
        test_matmul(70, 200, 0); /* K past one round */
        test_matmul_stack(stack_a, 72, 0);
        test_matmul_stack(stack_b, 24, 2 * 32 * 24 * 2);
    }
    test_coop_configs(100, 72, 2 * 32 * 72 * 2);
    test_coop_configs(70, 1096, 0); /* cps 18: rounds of 8 end mid-segment */
    test_coop_configs(40, 1024, 0); /* cps 16: whole rounds only, in even counts */
    if (tensor_cores) { /* the same on the real thing */
        ctx.coopmat_emulated = false;
        test_coop_configs(100, 72, 2 * 32 * 72 * 2);
        test_coop_configs(70, 1096, 0);
        test_coop_configs(40, 1024, 0);
    }
    ctx.coopmat = ctx.coopmat_emulated = false;
    test_batched_configs(100, 72, 2 * 32 * 72 * 2);
    test_batched_configs(37, 1096, 0);
    test_matvec_configs(100, 72, 2 * 32 * 72 * 2);
    test_roles();
    test_matvec_configs(37, 16, 0);
    test_matvec_configs(70, 5336, 32 * 5336 * 2);
    if (!vk_test_small()) test_matvec_configs(64, 10248, 0);
    test_layernorm(200, 5);
    test_layernorm(96, 3);
    test_shift_wkv(70);
    vk_context_free(&ctx);
    return vk_test_result();
}
