#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "base/mapguard.h"
#include "test.h"

enum { PAGES = 8 };

static long page;

/* A temporary file of PAGES pages, page i filled with the byte i + 1, already unlinked. */
static int make_file(void)
{
    char path[] = "/tmp/elliott-mapguard-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    char *buf = malloc((size_t)page);
    for (int i = 0; i < PAGES && buf; i++) {
        memset(buf, i + 1, (size_t)page);
        if (write(fd, buf, (size_t)page) != page) {
            free(buf);
            close(fd);
            return -1;
        }
    }
    free(buf);
    return fd;
}

static const volatile unsigned char *map_file(int fd)
{
    void *p = mmap(NULL, (size_t)page * PAGES, PROT_READ, MAP_PRIVATE, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void test_truncated_file_reads_zeros(void)
{
    int fd = make_file();
    CHECK(fd >= 0);
    const volatile unsigned char *m = map_file(fd);
    CHECK(m != NULL);
    if (fd < 0 || !m)
        return;
    el_err err = {{0}};
    int id = mapguard_watch((const void *)m, (size_t)page * PAGES, fd, &err);
    CHECKF(id >= 0, "%s", err.msg);
    CHECK(!mapguard_damaged(id));
    CHECK_EQ_INT(m[(size_t)page * 5], 6); /* resident before the cut */
    CHECK_EQ_INT(ftruncate(fd, page * 3 + 10), 0);
    /* Past the end: zeros, not SIGBUS; the whole tail goes at once. */
    CHECK_EQ_INT(m[(size_t)page * 6 + 1], 0);
    CHECK(mapguard_damaged(id));
    CHECK_EQ_INT(m[(size_t)page * 5], 0);
    CHECK_EQ_INT(m[(size_t)page * 7 + page - 1], 0);
    /* What the file still has is read as before; the last page's cut part reads 0. */
    CHECK_EQ_INT(m[0], 1);
    CHECK_EQ_INT(m[(size_t)page * 2 + 7], 3);
    CHECK_EQ_INT(m[(size_t)page * 3 + 9], 4);
    CHECK_EQ_INT(m[(size_t)page * 3 + 10], 0);
    mapguard_unwatch(id);
    munmap((void *)m, (size_t)page * PAGES);
    close(fd);
}

static void test_ids_are_reused(void)
{
    int fd = make_file();
    const volatile unsigned char *m = map_file(fd);
    CHECK(fd >= 0 && m);
    if (fd < 0 || !m)
        return;
    el_err err = {{0}};
    int ids[MAPGUARD_MAX];
    int n = 0;
    while (n < MAPGUARD_MAX && (ids[n] = mapguard_watch((const void *)m, (size_t)page, fd, &err)) >= 0)
        n++;
    CHECK_EQ_INT(n, MAPGUARD_MAX);
    CHECK_EQ_INT(mapguard_watch((const void *)m, (size_t)page, fd, &err), -1);
    CHECK(strstr(err.msg, "mapped files") != NULL);
    mapguard_unwatch(ids[7]);
    int again = mapguard_watch((const void *)m, (size_t)page, fd, &err);
    CHECK_EQ_INT(again, ids[7]);
    for (int i = 0; i < n; i++)
        mapguard_unwatch(ids[i]);
    CHECK_EQ_INT(mapguard_watch((const void *)(m + 1), (size_t)page, fd, &err), -1);
    munmap((void *)m, (size_t)page * PAGES);
    close(fd);
}

/* A SIGBUS that is not a watched mapping's still ends the process. */
static void test_other_faults_still_kill(void)
{
    int fd = make_file();
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    el_err err = {{0}};
    const volatile unsigned char *watched = map_file(fd);
    int id = mapguard_watch((const void *)watched, (size_t)page * PAGES, fd, &err); /* installs the handler */
    CHECK(id >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        const volatile unsigned char *m = map_file(fd);
        if (!m || ftruncate(fd, page) < 0)
            _exit(3);
        unsigned char c = m[(size_t)page * 4];
        _exit(c == 0 ? 4 : 5);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    /* killed by it, or (a sanitizer's handler was there before) reported and ended */
    bool passed_on = WIFSIGNALED(status) ? WTERMSIG(status) == SIGBUS
                                         : WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                                               WEXITSTATUS(status) < 3;
    CHECKF(passed_on, "status %#x", status);
    mapguard_unwatch(id);
    munmap((void *)watched, (size_t)page * PAGES);
    close(fd);
}

int main(void)
{
    page = sysconf(_SC_PAGESIZE);
    RUN(test_truncated_file_reads_zeros);
    RUN(test_ids_are_reused);
    RUN(test_other_faults_still_kill);
    return test_summary();
}
