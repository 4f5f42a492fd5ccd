/* engine/rl_file.h - the helpers every writer of messages and files uses:
 * rl_errf fills a caller's error buffer, rl_now times work, and rl_atomic_* write a file
 * whole or not at all (a temporary file next to it, fsync, rename, fsync of
 * the directory), so that a crash or a full disk never leaves half a
 * checkpoint, JSON summary, table or picture behind.
 *
 *   rl_atomic_file a;
 *   FILE *f = rl_atomic_open(&a, "runs/x/eval.json", err, sizeof err);
 *   if (!f) return RL_ERR_IO;              // err says why
 *   fprintf(f, ...);                        // or json_dumpf, fwrite, ...
 *   return rl_atomic_commit(&a, err, sizeof err);
 */
#ifndef RL_FILE_H
#define RL_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the message into err (when err is not NULL and n > 0); returns st,
 * so that `return rl_errf(err, n, RL_ERR_IO, "...", ...)` reports and fails
 * in one line. */
rl_status rl_errf(char *err, size_t n, rl_status st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Seconds on the monotonic clock (for durations only). */
double rl_now(void);

/* mkdir -p: makes path and its missing parents; 1 on success (errno set
 * otherwise). */
int rl_path_mkdirs(const char *path);

/* Makes the directory that the file at path goes in (nothing when path has
 * no directory part); RL_ERR_IO with the directory's name in err. */
rl_status rl_path_make_parent(const char *path, char *err, size_t n);

typedef struct rl_atomic_file {
    FILE *f;            /* the temporary file, open for writing; NULL once closed */
    char path[4096];    /* where the file goes */
    char tmp[4200];     /* the temporary next to it (same directory: rename stays on one file system) */
} rl_atomic_file;

/* Opens a fresh temporary file next to path (mode 0644; path's directory
 * must exist: rl_path_mkdirs makes it). Returns a->f, or NULL with the
 * reason in err. */
FILE *rl_atomic_open(rl_atomic_file *a, const char *path, char *err, size_t n);
/* Flushes and fsyncs the temporary, closes it, renames it onto path and
 * fsyncs the directory. The temporary may have been written by another
 * process after rl_atomic_close (a->tmp is its name). On failure the
 * temporary is removed and path keeps its old contents. */
rl_status rl_atomic_commit(rl_atomic_file *a, char *err, size_t n);
/* Closes the temporary without committing (another process then writes
 * a->tmp); returns 0 on success. */
int rl_atomic_close(rl_atomic_file *a);
/* Closes and removes the temporary: the writer failed; path is untouched. */
void rl_atomic_abort(rl_atomic_file *a);

#ifdef __cplusplus
}
#endif
#endif
