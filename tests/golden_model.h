/* The golden models of tests/data/golden-models.txt, regenerated at test time by
 * `elliott make-model` (through tests/golden/golden-model.sh, which checks that each
 * is byte for byte the file its goldens were computed on). */
#ifndef ELLIOTT_GOLDEN_MODEL_H
#define ELLIOTT_GOLDEN_MODEL_H

#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test.h"

extern char **environ;

/* The build directory of a test binary: argv0 is BUILD/tests/LAYER/test_NAME. */
static inline const char *golden_build_dir(const char *argv0)
{
    static char dir[1024];
    snprintf(dir, sizeof dir, "%s", argv0);
    char *cut = NULL;
    for (char *p = strstr(dir, "/tests/"); p; p = strstr(p + 1, "/tests/"))
        cut = p;
    if (cut)
        *cut = '\0';
    else
        snprintf(dir, sizeof dir, "build");
    return dir;
}

/* Writes golden model NAME as BUILD/golden-models/NAME.gguf with BUILD/elliott;
 * returns that path in a static buffer, or NULL after a failed check. */
static inline const char *golden_model_make(const char *argv0, const char *name)
{
    static char path[1300];
    char elliott[1100], dir[1100];
    const char *build = golden_build_dir(argv0);
    snprintf(elliott, sizeof elliott, "%s/elliott", build);
    snprintf(dir, sizeof dir, "%s/golden-models", build);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%.128s.gguf", dir, name);
    char *args[] = {"bash", "tests/golden/golden-model.sh", elliott, (char *)name, path, NULL};
    pid_t pid;
    int status = -1;
    int rc = posix_spawnp(&pid, "bash", NULL, NULL, args, environ);
    if (rc == 0 && waitpid(pid, &status, 0) < 0)
        status = -1;
    CHECKF(rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: make-model did not regenerate it", name);
    return rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? path : NULL;
}

#endif
