/* baton bench --device cpu (cmd/bench_cpu.c). */
#ifndef BATON_CMD_BENCH_CPU_H
#define BATON_CMD_BENCH_CPU_H

#include <stdint.h>

/* Decode at each batch size and one prefill of the random model of the shape on the CPU engine,
 * on `threads` threads and on one, in the same run, beside memcpy's bandwidth; prints the
 * figures and returns an exit code. */
int bench_cpu_run(int threads, int L, int C, int V, const int32_t *batches, int n_batches,
                  int prefill, double seconds);

#endif
