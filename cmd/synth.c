/* baton synth: a random RWKV-4 of any shape, as .pth (torch.save) or .safetensors. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "synth.h"

static const char synth_usage[] =
    "usage: baton synth --layers L --embd C --vocab V [--ffn F] [--dtype fp16|bf16|fp32]\n"
    "                   [--seed S] [--zero-matrices] [--hf-names] -o FILE.pth|FILE.safetensors\n\n"
    "  --layers L       number of blocks\n"
    "  --embd C         embedding width\n"
    "  --vocab V        vocabulary size\n"
    "  --ffn F          feed-forward width (default 4 C)\n"
    "  --dtype D        dtype of every tensor (default bf16)\n"
    "  --seed S         seed of the values; the same seed writes the same file (default 1)\n"
    "  --zero-matrices  every matrix zero, left as holes: a sparse file, written at once\n"
    "  --hf-names       Hugging Face transformers tensor names instead of the official ones\n"
    "  -o FILE          output; the extension picks the format\n";

static bool synth_dtype(const char *text, baton_dtype *out) {
    static const struct {
        const char *name;
        baton_dtype dtype;
    } names[] = {{"fp32", BATON_F32}, {"fp16", BATON_F16}, {"bf16", BATON_BF16}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(text, names[i].name) == 0) {
            *out = names[i].dtype;
            return true;
        }
    }
    fprintf(stderr, "baton synth: --dtype: '%s' is not fp16, bf16 or fp32\n", text);
    return false;
}

/* Returns -1 when the options are complete, else the exit code. */
static int synth_parse(int argc, char **argv, baton_synth_options *o, const char **out) {
    static const struct option options[] = {
        {"layers", required_argument, 0, 'L'}, {"embd", required_argument, 0, 'C'},
        {"vocab", required_argument, 0, 'V'},  {"ffn", required_argument, 0, 'F'},
        {"dtype", required_argument, 0, 'd'},  {"seed", required_argument, 0, 's'},
        {"zero-matrices", no_argument, 0, 'z'}, {"hf-names", no_argument, 0, 'n'},
        {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->dtype = BATON_BF16;
    o->seed = 1;
    o->progress = true;
    *out = NULL;
    opterr = 0;
    optind = 1;
    int c;
    long long v;
    while ((c = getopt_long(argc, argv, "o:", options, NULL)) != -1) {
        switch (c) {
        case 'L':
            if (!args_int("synth", "--layers", optarg, 1, BATON_SYNTH_LAYER_MAX, &v)) return BATON_EXIT_USAGE;
            o->n_layer = (int)v;
            break;
        case 'C':
            if (!args_int("synth", "--embd", optarg, 1, BATON_SYNTH_EMBD_MAX, &v)) return BATON_EXIT_USAGE;
            o->n_embd = (int)v;
            break;
        case 'V':
            if (!args_int("synth", "--vocab", optarg, 1, BATON_SYNTH_VOCAB_MAX, &v)) return BATON_EXIT_USAGE;
            o->n_vocab = (int)v;
            break;
        case 'F':
            if (!args_int("synth", "--ffn", optarg, 1, BATON_SYNTH_FFN_MAX, &v)) return BATON_EXIT_USAGE;
            o->n_ffn = (int)v;
            break;
        case 'd':
            if (!synth_dtype(optarg, &o->dtype)) return BATON_EXIT_USAGE;
            break;
        case 's':
            if (!args_int("synth", "--seed", optarg, 0, INT64_MAX, &v)) return BATON_EXIT_USAGE;
            o->seed = (uint64_t)v;
            break;
        case 'z': o->zero_matrices = true; break;
        case 'n': o->hf_names = true; break;
        case 'o': *out = optarg; break;
        case 'h': fputs(synth_usage, stdout); return BATON_EXIT_OK;
        default: return args_usage_error("synth", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return args_usage_error("synth", "unexpected argument '%s'", argv[optind]);
    if (o->n_layer == 0 || o->n_embd == 0 || o->n_vocab == 0 || *out == NULL) {
        return args_usage_error("synth", "--layers, --embd, --vocab and -o are required");
    }
    size_t n = strlen(*out);
    if (!(n > 4 && strcmp(*out + n - 4, ".pth") == 0) &&
        !(n > 12 && strcmp(*out + n - 12, ".safetensors") == 0)) {
        return args_usage_error("synth", "-o: '%s' must end in .pth or .safetensors", *out);
    }
    if (o->n_ffn == 0 && 4LL * o->n_embd > BATON_SYNTH_FFN_MAX) {
        return args_usage_error("synth", "4 x --embd is over %d: give --ffn", BATON_SYNTH_FFN_MAX);
    }
    return -1;
}

int cmd_synth(int argc, char **argv) {
    baton_synth_options o;
    const char *path;
    int code = synth_parse(argc, argv, &o, &path);
    if (code >= 0) return code;
    baton_error err = {0};
    if (baton_synth_write(&o, path, &err) != BATON_OK) {
        fprintf(stderr, "baton synth: %s\n", err.msg);
        return BATON_EXIT_FAIL;
    }
    return BATON_EXIT_OK;
}
