/* tests/rl_test_dir.h - scratch directories for the suites that run whole
 * trainings and pipelines (test_train, test_train_resume, test_pipeline):
 * removing a tree and naming files inside one. Include it after defining
 * _XOPEN_SOURCE 700 (for nftw) and after rl_test.h.
 */
#ifndef RL_TEST_DIR_H
#define RL_TEST_DIR_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int rl_test_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

/* rm -rf path (errors ignored: a missing tree is fine). */
static inline void rl_test_rm_rf(const char *path) { nftw(path, rl_test_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* dir/name, in one of 8 rotating buffers (so a call may take a few paths). */
static inline const char *rl_test_path_in(const char *dir, const char *name) {
    static char buf[8][1200];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

#endif
