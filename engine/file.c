/* engine/file.c - error buffers, the clock and files written whole or not at all
 * (rl_file.h). */
#include "rl_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

rl_status rl_errf(char *err, size_t n, rl_status st, const char *fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return st;
}

double rl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int rl_path_mkdirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return 0;
    }
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return 0;
        *s = '/';
    }
    return mkdir(buf, 0777) == 0 || errno == EEXIST;
}

/* path's directory into dir ("." for a bare name, "/" for a file in /). */
static void dir_of(const char *path, char *dir, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, n, ".");
    else if (slash == path) snprintf(dir, n, "/");
    else snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

rl_status rl_path_make_parent(const char *path, char *err, size_t n) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return rl_errf(err, n, RL_ERR_ARG, "%.200s...: the path is longer than %zu bytes", path, sizeof dir - 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return RL_OK;
    *slash = 0;
    if (!rl_path_mkdirs(dir)) return rl_errf(err, n, RL_ERR_IO, "cannot create the directory %s: %s", dir, strerror(errno));
    return RL_OK;
}

FILE *rl_atomic_open(rl_atomic_file *a, const char *path, char *err, size_t n) {
    memset(a, 0, sizeof *a);
    if (!path || !path[0]) {
        rl_errf(err, n, RL_ERR_ARG, "the path to write is empty");
        return NULL;
    }
    if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path) {
        rl_errf(err, n, RL_ERR_ARG, "%.200s...: the path is too long", path);
        return NULL;
    }
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        rl_errf(err, n, RL_ERR_IO, "%s: cannot create the temporary file '%s': %s", path, a->tmp, strerror(errno));
        a->tmp[0] = 0;
        return NULL;
    }
    (void)fchmod(fd, 0644); /* mkstemp makes it 0600; these files are not secrets */
    a->f = fdopen(fd, "w");
    if (!a->f) {
        rl_errf(err, n, RL_ERR_IO, "%s: cannot open '%s': %s", path, a->tmp, strerror(errno));
        close(fd);
        unlink(a->tmp);
        a->tmp[0] = 0;
    }
    return a->f;
}

int rl_atomic_close(rl_atomic_file *a) {
    if (!a->f) return 0;
    int bad = fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    bad |= fclose(a->f) != 0;
    a->f = NULL;
    return bad ? -1 : 0;
}

void rl_atomic_abort(rl_atomic_file *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0]) unlink(a->tmp);
    a->tmp[0] = 0;
}

rl_status rl_atomic_commit(rl_atomic_file *a, char *err, size_t n) {
    if (!a->tmp[0]) return rl_errf(err, n, RL_ERR_STATE, "%s: no temporary file to commit", a->path);
    int was_open = a->f != NULL;
    if (rl_atomic_close(a) != 0) {
        rl_status st = rl_errf(err, n, RL_ERR_IO, "%s: writing '%s' failed: %s", a->path, a->tmp, strerror(errno));
        rl_atomic_abort(a);
        return st;
    }
    if (!was_open) {
        /* another process wrote it: make its data durable before the rename */
        int fd = open(a->tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rl_status st = rl_errf(err, n, RL_ERR_IO, "%s: '%s' was not written: %s", a->path, a->tmp, strerror(errno));
            rl_atomic_abort(a);
            return st;
        }
        (void)fsync(fd);
        close(fd);
    }
    if (rename(a->tmp, a->path) != 0) {
        rl_status st = rl_errf(err, n, RL_ERR_IO, "%s: cannot rename '%s' onto it: %s", a->path, a->tmp, strerror(errno));
        rl_atomic_abort(a);
        return st;
    }
    a->tmp[0] = 0;
    /* the rename itself becomes durable with the directory; best effort
     * (some file systems cannot fsync a directory, and the file is whole
     * either way) */
    char dir[4096];
    dir_of(a->path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    return RL_OK;
}
