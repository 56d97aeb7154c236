/* How much memory this process may still take: what the system reports available
 * (MemAvailable) and what the process's cgroup limits leave (v2, every level up to
 * the root; or v1's memory controller), whichever is less. Page cache counts as
 * available, as MemAvailable counts it: a model's mapped weights are page cache, so
 * the caller subtracts them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

enum { PATH_CAP = 4096, LINE_CAP = 4096 };

/* root + a + b into path; false when it does not fit (then nothing is read). */
static bool make_path(char *path, size_t cap, const char *root, const char *a, const char *b)
{
    int n = snprintf(path, cap, "%s%s%s", root, a, b);
    return n >= 0 && (size_t)n < cap;
}

/* The first line of a file, without its newline; false if it cannot be read. */
static bool read_line(const char *path, char *line, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(line, (int)cap, f) != NULL;
    fclose(f);
    if (ok)
        line[strcspn(line, "\n")] = '\0';
    return ok;
}

/* A file holding one number (or "max": no limit, UINT64_MAX). */
static bool read_u64_file(const char *path, uint64_t *out)
{
    char line[128];
    if (!read_line(path, line, sizeof line))
        return false;
    if (!strcmp(line, "max")) {
        *out = UINT64_MAX;
        return true;
    }
    char *end;
    unsigned long long v = strtoull(line, &end, 10);
    if (end == line || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* The value of a "key value" line (memory.stat) or "Key: value kB" line (meminfo),
 * times unit. */
static bool read_keyed(const char *path, const char *key, uint64_t unit, uint64_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[256];
    size_t klen = strlen(key);
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0 || (line[klen] != ' ' && line[klen] != ':'))
            continue;
        char *p = line + klen + 1, *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end != p && v <= UINT64_MAX / unit) {
            *out = v * unit;
            found = true;
        }
    }
    fclose(f);
    return found;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* What a cgroup's limit leaves: limit - usage + its page cache. */
static uint64_t cgroup_room(uint64_t limit, uint64_t usage, uint64_t cache)
{
    if (limit == UINT64_MAX)
        return UINT64_MAX;
    uint64_t used = usage > cache ? usage - cache : 0;
    return limit > used ? limit - used : 0;
}

/* cgroup v2: the process's group ("0::/path" in /proc/self/cgroup) and each parent. */
static uint64_t cgroup2_room(const char *root)
{
    char path[PATH_CAP], line[LINE_CAP];
    if (!make_path(path, sizeof path, root, "/proc/self/cgroup", ""))
        return UINT64_MAX;
    FILE *f = fopen(path, "r");
    if (!f)
        return UINT64_MAX;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = !strncmp(line, "0::", 3);
    fclose(f);
    if (!found)
        return UINT64_MAX;
    char *group = line + 3;
    group[strcspn(group, "\n")] = '\0';
    uint64_t room = UINT64_MAX;
    char dir[PATH_CAP];
    for (;;) {
        uint64_t limit, usage, cache = 0;
        if (!make_path(dir, sizeof dir, root, "/sys/fs/cgroup", group))
            break;
        if (make_path(path, sizeof path, dir, "/memory.max", "") && read_u64_file(path, &limit)) {
            if (!make_path(path, sizeof path, dir, "/memory.current", "") || !read_u64_file(path, &usage))
                usage = 0;
            if (make_path(path, sizeof path, dir, "/memory.stat", ""))
                read_keyed(path, "file", 1, &cache);
            room = min_u64(room, cgroup_room(limit, usage, cache));
        }
        char *slash = strrchr(group, '/');
        if (!slash || slash == group)
            break;
        *slash = '\0';
    }
    return room;
}

/* cgroup v1's memory controller, as a container sees it (mounted at its root). */
static uint64_t cgroup1_room(const char *root)
{
    char path[PATH_CAP];
    uint64_t limit, usage, cache = 0;
    const char *dir = "/sys/fs/cgroup/memory/";
    if (!make_path(path, sizeof path, root, dir, "memory.limit_in_bytes") || !read_u64_file(path, &limit))
        return UINT64_MAX;
    if (!make_path(path, sizeof path, root, dir, "memory.usage_in_bytes") || !read_u64_file(path, &usage))
        usage = 0;
    if (make_path(path, sizeof path, root, dir, "memory.stat"))
        read_keyed(path, "total_cache", 1, &cache);
    /* "no limit" in v1 is a huge page-rounded number, not "max" */
    if (limit >= (UINT64_MAX >> 2))
        return UINT64_MAX;
    return cgroup_room(limit, usage, cache);
}

uint64_t engine_available_memory(const char *root)
{
    char path[PATH_CAP];
    uint64_t avail = UINT64_MAX;
    uint64_t mem;
    if (make_path(path, sizeof path, root, "/proc/meminfo", "") && read_keyed(path, "MemAvailable", 1024, &mem))
        avail = mem;
    avail = min_u64(avail, cgroup2_room(root));
    avail = min_u64(avail, cgroup1_room(root));
    return avail == UINT64_MAX ? 0 : avail;
}
