/* tools/rlhf.c - the rlhf command line (placeholder until subcommands land). */
#include <stdio.h>
int main(void) { puts("rlhf"); return 0; }
