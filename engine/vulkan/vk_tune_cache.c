/* The tuning cache: what a backend's tuning chose, kept between runs.
 *
 * Tuning times every matmul configuration on the stage's own device each time a backend starts
 * (12 to 20 s for the 14B shape on an H100) and, where the device has tensor cores, chooses the
 * path every matmul runs on, which changes the last bits of the logits. Kept in a file, the same
 * device started again skips the timing and, more to the point for a server, chooses the same:
 * a restart does not change anyone's output.
 *
 * The file is made for one key, which names everything the choices depend on: the device (its
 * UUID) and the driver build that compiles for it, this build's kernels (a hash of every SPIR-V
 * module and configuration name), the stage's shape and the settings tuning does not choose.
 * Any change there makes another file, so a stale choice is never read; a file that is not
 * whole, or names a configuration this build does not have, is ignored and tuning runs again
 * (and rewrites it). Its format is lines of text, so that an operator can read what was chosen. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vk_backend_impl.h"
#include "vk_kernels.h"

/* Bumped whenever what tuning chooses, or how a choice is kept, changes meaning. */
enum { CACHE_VERSION = 1, CACHE_BYTES_MAX = 64 * 1024 };

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fnv1a_str(uint64_t h, const char *s) { return fnv1a(h, s, strlen(s) + 1); }

/* This build's kernels: every SPIR-V module and every configuration's name. */
static uint64_t kernels_hash(void) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < BATON_SHADER_COUNT; i++) {
        h = fnv1a_str(h, baton_spirv_table[i].name);
        h = fnv1a(h, baton_spirv_table[i].code, baton_spirv_table[i].size);
    }
    for (int kind = 0; kind < VK_KINDS; kind++)
        for (int i = 0; i < vk_kind_size(kind); i++) h = fnv1a_str(h, vk_kind_config_name(kind, i));
    return h;
}

static void hex(char *out, const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* The directory (buf when made up; "" when its name would not fit), NULL for none. */
static const char *cache_dir(char *buf, size_t n) {
    const char *env = getenv("BATON_VK_TUNE_CACHE");
    if (env != NULL && env[0] != '\0') return env;
    const char *systemd = getenv("CACHE_DIRECTORY"); /* CacheDirectory= in a unit */
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int len;
    if (systemd != NULL && systemd[0] == '/') /* (several are colon-separated: the first) */
        len = snprintf(buf, n, "%.*s", (int)strcspn(systemd, ":"), systemd);
    else if (xdg != NULL && xdg[0] == '/')
        len = snprintf(buf, n, "%s/baton", xdg);
    else if (home != NULL && home[0] == '/')
        len = snprintf(buf, n, "%s/.cache/baton", home);
    else
        return NULL;
    return len >= 0 && (size_t)len < n ? buf : "";
}

bool vk_tune_cache_env_ok(const char *env) {
    return env == NULL || env[0] == '\0' || strcmp(env, "off") == 0 ||
           (env[0] == '/' && strlen(env) <= VK_TUNE_CACHE_DIR_MAX);
}

void vk_tune_cache_locate(const vk_backend *b, vk_tune_cache *c) {
    memset(c, 0, sizeof *c);
    char buf[VK_TUNE_CACHE_DIR_MAX + 1];
    const char *dir = cache_dir(buf, sizeof buf);
    if (dir == NULL || strcmp(dir, "off") == 0 || dir[0] == '\0') {
        c->off = dir != NULL && strcmp(dir, "off") == 0;
        snprintf(c->why, sizeof c->why, "%s", dir == NULL ? "no cache directory (HOME unset)"
                 : c->off ? "BATON_VK_TUNE_CACHE=off" : "its directory's name is too long");
        return;
    }
    const baton_vk_device_info *d = &b->ctx.info;
    const vk_context *ctx = &b->ctx;
    char uuid[33], pipe[33];
    hex(uuid, d->device_uuid, sizeof d->device_uuid);
    hex(pipe, d->pipeline_uuid, sizeof d->pipeline_uuid);
    char fuse[16] = "auto", pf[16] = "auto";
    if (b->fuse_pinned) snprintf(fuse, sizeof fuse, "%u", b->fuse);
    if (b->prefetch_pinned) snprintf(pf, sizeof pf, "%u", b->prefetch_mib);
    snprintf(c->key, sizeof c->key,
             "v%d kernels %016llx; device %.200s [%04x:%04x] uuid %s; driver %.300s version 0x%08x "
             "pipelines %s; stage C %d F %d head %d max_tokens %d; tensor cores %d%s; fused %s; "
             "read ahead %s",
             CACHE_VERSION, (unsigned long long)kernels_hash(), d->name, d->vendor_id, d->device_id,
             uuid, d->driver, d->driver_version, pipe, b->C, b->F,
             b->base.config.with_head ? b->V : 0, b->max_tokens, (int)ctx->coop_mode,
             ctx->coopmat_emulated ? " emulated" : "", fuse, pf);
    for (char *p = c->key; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?'; /* one line, whatever a driver calls itself */
    uint64_t h = fnv1a_str(0xcbf29ce484222325ull, c->key);
    snprintf(c->path, sizeof c->path, "%s/vulkan-tuning-%016llx.txt", dir, (unsigned long long)h);
}

/* What a file holds, parsed and checked, before any of it is applied. */
typedef struct {
    int start[VK_KINDS];
    int role_config[VK_KINDS][VK_ROLES];
    bool coop;
    unsigned fuse, prefetch_mib;
    double seconds;
    char made[64];
    const char *choices; /* within the file's text */
    unsigned seen;       /* which of the lines below were there */
} kept;

enum { SEEN_KEY = 1, SEEN_PATH = 2, SEEN_FUSE = 4, SEEN_PF = 8, SEEN_TUNED = 16, SEEN_CHOICES = 32,
       SEEN_MADE = 64, SEEN_ALL = 127 };

static const char *const start_names[VK_KINDS] = {"matvec", "mm8", "mm32", "mm64",
                                                  "coop_few", "coop_many", "coop_large"};

static int kind_by_name(const char *s) {
    for (int k = 0; k < VK_KINDS; k++)
        if (strcmp(s, start_names[k]) == 0) return k;
    return -1;
}

/* Whether configuration `i` named `name` is one of the kind's in this build. */
static bool config_ok(int kind, int i, const char *name) {
    return i >= 0 && i < vk_kind_size(kind) && vk_kind_has(kind, i) &&
           strcmp(vk_kind_config_name(kind, i), name) == 0;
}

/* Parses the file's text (modified: lines cut) into k; false with why. */
static bool parse(char *text, const char *key, kept *k, char *why, size_t n) {
    memset(k, 0, sizeof *k);
    for (int kind = 0; kind < VK_KINDS; kind++) {
        k->start[kind] = -1;
        for (int r = 0; r < VK_ROLES; r++) k->role_config[kind][r] = -1;
    }
    int line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char word[32] = "";
        int a = 0, b = 0, i = 0, used = 0;
        if (line_no == 1) {
            if (sscanf(line, "baton vulkan tuning %d%n", &a, &used) != 1 || line[used] != '\0' ||
                a != CACHE_VERSION) {
                snprintf(why, n, "not a tuning file of this version");
                return false;
            }
        } else if (strncmp(line, "key ", 4) == 0) {
            if (strcmp(line + 4, key) != 0) {
                snprintf(why, n, "made for another device, driver, build or stage");
                return false;
            }
            k->seen |= SEEN_KEY;
        } else if (strncmp(line, "made ", 5) == 0) {
            snprintf(k->made, sizeof k->made, "%.60s", line + 5);
            k->seen |= SEEN_MADE;
        } else if (strncmp(line, "choices ", 8) == 0) {
            k->choices = line + 8;
            k->seen |= SEEN_CHOICES;
        } else if (sscanf(line, "tuned in %lf s%n", &k->seconds, &used) == 1 &&
                   line[used] == '\0' && k->seconds >= 0.0) {
            k->seen |= SEEN_TUNED;
        } else if (sscanf(line, "start %31s %d %n", word, &i, &used) == 2 && used > 0) {
            /* (a configuration's name, which has spaces, is the rest of the line) */
            int kind = kind_by_name(word);
            if (kind < 0 || !config_ok(kind, i, line + used)) {
                snprintf(why, n, "line %d: %.40s is no %s configuration of this build", line_no,
                         line + used, word);
                return false;
            }
            k->start[kind] = i;
        } else if (sscanf(line, "role %31s %d %d %n", word, &a, &i, &used) == 3 && used > 0) {
            int kind = kind_by_name(word);
            if (kind < 0 || a <= VK_ROLE_NONE || a >= VK_ROLES ||
                !config_ok(kind, i, line + used)) {
                snprintf(why, n, "line %d: no such role or configuration", line_no);
                return false;
            }
            k->role_config[kind][a] = i;
        } else if (strcmp(line, "path fp32") == 0 || strcmp(line, "path tensor-cores") == 0) {
            k->coop = line[5] == 't';
            k->seen |= SEEN_PATH;
        } else if (sscanf(line, "fused %d%n", &b, &used) == 1 && line[used] == '\0' && b >= 0 &&
                   b <= (int)(BATON_VK_FUSE_LN | BATON_VK_FUSE_WKV)) {
            k->fuse = (unsigned)b;
            k->seen |= SEEN_FUSE;
        } else if (sscanf(line, "read-ahead %d%n", &b, &used) == 1 && line[used] == '\0' &&
                   b >= 0 && b <= VK_PREFETCH_MAX_MIB) {
            k->prefetch_mib = (unsigned)b;
            k->seen |= SEEN_PF;
        } else {
            snprintf(why, n, "line %d is not one of a tuning file", line_no);
            return false;
        }
    }
    for (int kind = 0; kind < VK_KINDS; kind++)
        if (k->start[kind] < 0) {
            snprintf(why, n, "not whole (no %s configuration)", start_names[kind]);
            return false;
        }
    if (k->seen != SEEN_ALL) {
        snprintf(why, n, "not whole");
        return false;
    }
    return true;
}

static bool read_file(const char *path, char **text, char *why, size_t n) {
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno != ENOENT) snprintf(why, n, "cannot read it: %s", strerror(errno));
        return false;
    }
    char *buf = malloc(CACHE_BYTES_MAX + 1);
    size_t got = buf != NULL ? fread(buf, 1, CACHE_BYTES_MAX + 1, f) : 0;
    bool failed = buf == NULL || ferror(f);
    fclose(f);
    if (failed || got > CACHE_BYTES_MAX || memchr(buf, '\0', got) != NULL) {
        snprintf(why, n, "%s", buf == NULL ? "out of memory" : failed ? "cannot read it"
                               : got > CACHE_BYTES_MAX ? "too large" : "not text");
        free(buf);
        return false;
    }
    buf[got] = '\0';
    *text = buf;
    return true;
}

bool vk_tune_cache_load(vk_backend *b, vk_tune_cache *c, baton_status *st, baton_error *err) {
    *st = BATON_OK;
    if (c->path[0] == '\0') return false;
    char *text = NULL;
    if (!read_file(c->path, &text, c->why, sizeof c->why)) return false;
    kept k;
    vk_context *ctx = &b->ctx;
    bool ok = parse(text, c->key, &k, c->why, sizeof c->why);
    if (ok && k.coop && !ctx->coopmat && !(ctx->coopmat_ready && ctx->coop_mode == VK_COOP_AUTO)) {
        snprintf(c->why, sizeof c->why, "it runs the tensor cores, which this backend cannot");
        ok = false;
    }
    if (ok && !k.coop && ctx->coop_mode == VK_COOP_ON) {
        snprintf(c->why, sizeof c->why,
                 "it runs the fp32 path, where BATON_VK_COOPMAT=1 asks for the tensor cores");
        ok = false;
    }
    if (!ok) {
        free(text);
        return false;
    }
    /* Apply, keeping what was there for a failure (neither step below changes the path when it
     * fails, and the only switch is onto the tensor cores: a file of the fp32 path is refused
     * above where they are on from the start). */
    vk_kernel_choice before = ctx->start;
    for (int kind = 0; kind < VK_KINDS; kind++) {
        *vk_kind_start(ctx, kind) = k.start[kind];
        for (int r = 0; r < VK_ROLES; r++) ctx->start.role_config[kind][r] = k.role_config[kind][r];
    }
    baton_error why = {0};
    baton_status s = vk_kernels_reset(ctx, &why);
    if (s == BATON_OK && k.coop != ctx->coopmat && !vk_coopmat_use(ctx, k.coop, &why))
        s = BATON_ERR_UNSUPPORTED;
    if (s != BATON_OK) {
        snprintf(c->why, sizeof c->why, "its kernels do not run here: %.200s", why.msg);
        ctx->start = before;
        s = vk_kernels_reset(ctx, err); /* what worked before works again, but for a lost device */
        *st = s;
        free(text);
        return false;
    }
    if (!b->fuse_pinned) b->fuse = k.fuse;
    if (!b->prefetch_pinned) b->prefetch_mib = k.prefetch_mib;
    vk_replays_invalidate(ctx);
    snprintf(b->tuning, sizeof b->tuning, "tuned in %.2f s on %s, kept in %s: %s", k.seconds,
             k.made, c->path, k.choices);
    free(text);
    return true;
}

static bool make_dirs(char *path, char *why, size_t n) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        bool ok = mkdir(path, 0777) == 0 || errno == EEXIST;
        if (!ok) snprintf(why, n, "cannot make %.200s: %s", path, strerror(errno));
        *p = '/';
        if (!ok) return false;
    }
    return true;
}

bool vk_tune_cache_store(const vk_backend *b, vk_tune_cache *c) {
    if (c->path[0] == '\0') return false;
    double seconds = 0.0;
    int used = 0;
    if (sscanf(b->tuning, "tuned in %lf s: %n", &seconds, &used) != 1 || used == 0) {
        snprintf(c->why, sizeof c->why, "nothing tuned to keep");
        return false;
    }
    char path[sizeof c->path];
    snprintf(path, sizeof path, "%s", c->path);
    if (!make_dirs(path, c->why, sizeof c->why)) return false;
    static atomic_uint writes; /* (two stages of one process may write at once) */
    char tmp[sizeof c->path + 48];
    snprintf(tmp, sizeof tmp, "%s.%ld.%u.tmp", c->path, (long)getpid(),
             atomic_fetch_add(&writes, 1));
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        snprintf(c->why, sizeof c->why, "cannot write %.200s: %s", tmp, strerror(errno));
        return false;
    }
    const vk_context *ctx = &b->ctx;
    char made[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(made, sizeof made, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tm));
    fprintf(f, "baton vulkan tuning %d\nkey %s\nmade %s\n", CACHE_VERSION, c->key, made);
    for (int kind = 0; kind < VK_KINDS; kind++) {
        int i = *vk_kind_start((vk_context *)ctx, kind);
        fprintf(f, "start %s %d %s\n", start_names[kind], i, vk_kind_config_name(kind, i));
    }
    for (int kind = 0; kind < VK_KINDS; kind++)
        for (int r = VK_ROLE_NONE + 1; r < VK_ROLES; r++) {
            int i = ctx->start.role_config[kind][r];
            if (i >= 0)
                fprintf(f, "role %s %d %d %s\n", start_names[kind], r, i,
                        vk_kind_config_name(kind, i));
        }
    fprintf(f, "path %s\nfused %u\nread-ahead %u\ntuned in %.3f s\nchoices %s\n",
            ctx->coopmat ? "tensor-cores" : "fp32", b->fuse, b->prefetch_mib, seconds,
            b->tuning + used);
    bool ok = fflush(f) == 0 && !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, c->path) != 0) ok = false;
    if (!ok) {
        snprintf(c->why, sizeof c->why, "cannot write %.200s: %s", c->path, strerror(errno));
        unlink(tmp);
    }
    return ok;
}
