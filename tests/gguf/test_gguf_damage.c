/* A mapped file damaged while open: gguf_check_intact notices, reads do not kill. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "gguf/gguf.h"
#include "test.h"

static char tmp_dir[] = "/tmp/elliott-gguf-damage-XXXXXX";

/* A file with one tensor of n floats, each i + 1, so that its data spans pages. */
static int fill_counting(void *ctx, uint64_t index, const char *name, void *buf, uint64_t nbytes, el_err *err)
{
    float *x = buf;
    for (uint64_t i = 0; i < nbytes / sizeof *x; i++)
        x[i] = (float)(i + 1);
    return 0;
}

static gguf_file *write_and_open(const char *path, int64_t n)
{
    el_err err = {{0}};
    gguf_writer *w = gguf_writer_create(&err);
    CHECK(w != NULL);
    if (!w)
        return NULL;
    CHECK(gguf_writer_set_str(w, "general.architecture", "llama", &err) == 0);
    CHECK(gguf_writer_add_tensor(w, "t", GGUF_TYPE_F32, 1, &n, &err) == 0);
    CHECKF(gguf_writer_write(w, path, fill_counting, NULL, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    gguf_file *f = gguf_open(path, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f)
        CHECKF(gguf_check_intact(f, &err) == 0, "%s", err.msg);
    return f;
}

static void test_truncated_while_open(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/cut.gguf", tmp_dir);
    enum { N = 64 * 1024 };
    gguf_file *f = write_and_open(path, N);
    if (!f)
        return;
    const gguf_tensor *t = gguf_find_tensor(f, "t");
    CHECK(t != NULL);
    if (!t) {
        gguf_close(f);
        return;
    }
    const volatile float *x = t->data;
    CHECK(x[N - 1] == (float)N);
    CHECK(truncate(path, (off_t)gguf_data_offset(f) + 4096) == 0);
    el_err err = {{0}};
    /* Only the size has changed so far: nothing was read past the end. */
    CHECK(gguf_check_intact(f, &err) == -1);
    CHECKF(strstr(err.msg, "changed size") != NULL, "%s", err.msg);
    CHECK(x[N - 1] == 0.0f); /* no SIGBUS: zeros */
    CHECK(x[0] == 1.0f);
    CHECK(gguf_check_intact(f, &err) == -1);
    CHECKF(strstr(err.msg, "cut short") != NULL && strstr(err.msg, "cut.gguf") != NULL, "%s", err.msg);
    gguf_close(f);
    unlink(path);
}

static void test_written_in_place(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/overwritten.gguf", tmp_dir);
    gguf_file *f = write_and_open(path, 1024);
    if (!f)
        return;
    el_err err = {{0}};
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    /* The same size, other bytes (a copy over the file rather than a rename onto it). */
    struct timespec later[2] = {{0, UTIME_OMIT}, {0, 0}};
    clock_gettime(CLOCK_REALTIME, &later[1]);
    later[1].tv_sec += 5;
    float zero = 0;
    CHECK(pwrite(fd, &zero, sizeof zero, (off_t)gguf_data_offset(f)) == (ssize_t)sizeof zero);
    CHECK(futimens(fd, later) == 0); /* the write's own time stamp may fall in the same tick */
    close(fd);
    CHECK(gguf_check_intact(f, &err) == -1);
    CHECKF(strstr(err.msg, "written to") != NULL, "%s", err.msg);
    gguf_close(f);
    unlink(path);
}

static void test_renamed_over_is_fine(void)
{
    char path[128], other[140];
    snprintf(path, sizeof path, "%s/replaced.gguf", tmp_dir);
    snprintf(other, sizeof other, "%s/new.gguf", tmp_dir);
    gguf_file *f = write_and_open(path, 1024);
    gguf_file *g = write_and_open(other, 2048);
    if (!f || !g) {
        gguf_close(f);
        gguf_close(g);
        return;
    }
    gguf_close(g);
    /* An atomic replacement leaves the open file's inode as it was. */
    CHECK(rename(other, path) == 0);
    el_err err = {{0}};
    CHECKF(gguf_check_intact(f, &err) == 0, "%s", err.msg);
    gguf_close(f);
    unlink(path);
}

static void test_memory_image_is_intact(void)
{
    static const unsigned char header[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           0, 0, 0, 0, 0, 0, 0, 0};
    el_err err = {{0}};
    gguf_file *f = gguf_open_memory(header, sizeof header, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f)
        CHECK(gguf_check_intact(f, &err) == 0);
    gguf_close(f);
}

int main(void)
{
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_truncated_while_open);
    RUN(test_written_in_place);
    RUN(test_renamed_over_is_fine);
    RUN(test_memory_image_is_intact);
    rmdir(tmp_dir);
    return test_summary();
}
