/* build/baton: one executable, one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"eval", cmd_eval, "write the logits (and state) after a list of tokens"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
    {"synth", cmd_synth, "write a random RWKV-4 model of any shape"},
    {"inspect", cmd_inspect, "print a model file's hyperparameters and sizes"},
    {"devices", cmd_devices, "list the Vulkan compute devices"},
    {"bench", cmd_bench, "measure decode and prefill speed"},
    {"serve", cmd_serve, "serve a model over gRPC (baton.v1.Inference)"},
    {"generate", cmd_generate, "stream a completion from a baton server"},
    {"node", cmd_node, "serve pipeline stages for a coordinator (baton.v1.Stage)"},
    {"bench-pipeline", cmd_bench_pipeline, "time a step through nodes on loopback vs one process"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: baton COMMAND [options]   (baton COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return BATON_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return BATON_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "baton: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return BATON_EXIT_USAGE;
}
