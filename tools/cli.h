/* tools/cli.h - the subcommands of the `rlhf` command line and the helpers
 * they share (BLAS introspection, timing).
 */
#ifndef RL_CLI_H
#define RL_CLI_H

#include "rl_ops.h"
#include "rl_file.h"

#include <stdio.h>

int rl_cmd_info(int argc, char **argv);
int rl_cmd_gradcheck(int argc, char **argv);
int rl_cmd_bench(int argc, char **argv);
int rl_cmd_logits(int argc, char **argv);
int rl_cmd_init_model(int argc, char **argv);
int rl_cmd_data(int argc, char **argv);
int rl_cmd_eval(int argc, char **argv);
int rl_cmd_train(int argc, char **argv);
int rl_cmd_plot(int argc, char **argv);
int rl_cmd_graph(int argc, char **argv);
int rl_cmd_pipeline(int argc, char **argv);
int rl_cmd_tokenize(int argc, char **argv);
int rl_cmd_generate(int argc, char **argv);

/* OpenBLAS's kernel core ("Haswell", "Prescott", ...) and thread count. */
const char *rl_blas_corename(void);
int rl_blas_threads(void);
/* Prints a warning with the fix when OpenBLAS runs kernels older than the
 * CPU (generic/SSE3 on AVX2, or AVX2 on AVX-512); returns 1 when it warned. */
int rl_blas_warn_generic_core(FILE *f);

#endif
