/* The subcommands of build/baton. Each takes the arguments after its name (argv[0] is the
 * subcommand's name) and returns the process exit code: 0 success, 1 failure, 2 usage error. */
#ifndef BATON_COMMANDS_H
#define BATON_COMMANDS_H

int cmd_synth(int argc, char **argv);      /* cmd/synth.c */
int cmd_inspect(int argc, char **argv);    /* cmd/inspect.c */
int cmd_eval(int argc, char **argv);       /* cmd/eval.c */
int cmd_run(int argc, char **argv);        /* cmd/run.c */
int cmd_tokenize(int argc, char **argv);   /* cmd/tokenize.c */
int cmd_detokenize(int argc, char **argv); /* cmd/tokenize.c */
int cmd_devices(int argc, char **argv);    /* cmd/devices.c */
int cmd_bench(int argc, char **argv);      /* cmd/bench.c */
int cmd_serve(int argc, char **argv);      /* cmd/serve.c */
int cmd_generate(int argc, char **argv);   /* cmd/generate.c */
int cmd_node(int argc, char **argv);       /* cmd/node.c */
int cmd_bench_pipeline(int argc, char **argv); /* cmd/bench_pipeline.c */

#endif
