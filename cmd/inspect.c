/* baton inspect: what a model file holds and what its weights need in memory. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "model.h"
#include "tensor_set.h"

static const char inspect_usage[] =
    "usage: baton inspect --model PATH\n\n"
    "  --model PATH  a .pth (torch.save) or .safetensors RWKV-4 checkpoint\n\n"
    "Prints the format, hyperparameters, tensors per dtype, the file size and the memory the\n"
    "weights need: as stored, with the matrices as fp16 on a GPU, and the vectors as fp32.\n";

static void print_bytes(const char *label, uint64_t bytes) {
    double mib = (double)bytes / (1 << 20);
    if (mib >= 1024.0) printf("%-24s %llu bytes (%.2f GiB)\n", label, (unsigned long long)bytes, mib / 1024.0);
    else printf("%-24s %llu bytes (%.2f MiB)\n", label, (unsigned long long)bytes, mib);
}

static void inspect_set(const baton_tensor_set *set) {
    size_t per_dtype[3] = {0};
    uint64_t stored = 0, matrices_f16 = 0, vectors_f32 = 0;
    for (size_t i = 0; i < set->n_tensors; i++) {
        const baton_tensor *t = &set->tensors[i];
        per_dtype[t->dtype]++;
        stored += t->n_elements * baton_dtype_size(t->dtype);
        if (t->ndim == 2) matrices_f16 += t->n_elements * 2;
        else vectors_f32 += t->n_elements * 4;
    }
    printf("%-24s %s\n", "file", set->path);
    printf("%-24s %s\n", "format", set->format == BATON_FORMAT_PTH ? "pth (torch.save zip)" : "safetensors");
    print_bytes("file size", set->size);
    printf("%-24s %zu (", "tensors", set->n_tensors);
    const char *sep = "";
    for (int d = 0; d < 3; d++) {
        if (per_dtype[d] == 0) continue;
        printf("%s%s %zu", sep, baton_dtype_name((baton_dtype)d), per_dtype[d]);
        sep = ", ";
    }
    printf(")\n");
    print_bytes("weights as stored", stored);
    print_bytes("matrices as fp16 (GPU)", matrices_f16);
    print_bytes("vectors as fp32", vectors_f32);
}

int cmd_inspect(int argc, char **argv) {
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *path = NULL;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'm': path = optarg; break;
        case 'h': fputs(inspect_usage, stdout); return BATON_EXIT_OK;
        default: return args_usage_error("inspect", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return args_usage_error("inspect", "unexpected argument '%s'", argv[optind]);
    if (path == NULL) return args_usage_error("inspect", "--model is required");

    baton_error err = {0};
    baton_tensor_set *set = NULL;
    if (baton_tensor_set_open(path, &set, &err) != BATON_OK) {
        fprintf(stderr, "baton inspect: %s\n", err.msg);
        return BATON_EXIT_FAIL;
    }
    inspect_set(set);
    baton_tensor_set_free(set);

    /* The model's checks run too: a file of tensors is not yet a loadable RWKV-4. */
    baton_model *m = NULL;
    if (baton_model_load(path, NULL, &m, &err) != BATON_OK) {
        fprintf(stderr, "baton inspect: %s\n", err.msg);
        return BATON_EXIT_FAIL;
    }
    printf("%-24s %d\n%-24s %d\n%-24s %d\n%-24s %d\n%-24s %s\n", "n_layer", m->n_layer, "n_embd",
           m->n_embd, "n_vocab", m->n_vocab, "n_ffn", m->n_ffn, "matrix dtype",
           baton_dtype_name(m->dtype));
    baton_model_free(m);
    return BATON_EXIT_OK;
}
