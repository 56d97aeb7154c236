#include "base/mapguard.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The handler reads this table without locks (it may run on any thread, at any
 * moment), so every field is a lock-free atomic and a watch becomes visible
 * only when its start is stored, after everything else. */
typedef struct watch {
    atomic_bool used;
    _Atomic uintptr_t start; /* 0: not (yet, or any longer) watched */
    _Atomic size_t len;      /* whole pages */
    atomic_int fd;
    atomic_bool damaged;
} watch;

static watch watches[MAPGUARD_MAX];
static struct sigaction previous;
static uintptr_t page_size;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_errno;

/* Maps zeros over what the fault says is gone: from the file's current end to the
 * mapping's end when the file is now shorter than the fault's page, else (an I/O
 * error on a page the file still has) that page alone. Only system calls: this
 * runs in the signal handler. */
static int patch(watch *w, uintptr_t start, size_t len, uintptr_t addr)
{
    uintptr_t from = addr & ~(page_size - 1), to = from + page_size;
    struct stat st;
    if (fstat(atomic_load(&w->fd), &st) == 0 && st.st_size >= 0 && (uintmax_t)st.st_size < len) {
        uintptr_t file_end = start + (((uintptr_t)st.st_size + page_size - 1) & ~(page_size - 1));
        if (file_end <= from) {
            from = file_end;
            to = start + len;
        }
    }
    void *p = mmap((void *)from, to - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    atomic_store(&w->damaged, true);
    return 0;
}

/* Not a watched mapping's fault: the handler that was there before decides. */
static void pass_on(int sig, siginfo_t *si, void *uctx)
{
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, si, uctx);
        return;
    }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    /* A fault repeats when the instruction restarts; a sent signal must be sent again. */
    if (si->si_code <= 0)
        raise(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
    int saved_errno = errno;
    uintptr_t addr = (uintptr_t)si->si_addr;
    if (si->si_code > 0) {
        for (int i = 0; i < MAPGUARD_MAX; i++) {
            uintptr_t start = atomic_load(&watches[i].start);
            size_t len = atomic_load(&watches[i].len);
            if (start && addr >= start && addr - start < len) {
                if (patch(&watches[i], start, len, addr) == 0) {
                    errno = saved_errno;
                    return;
                }
                break;
            }
        }
    }
    pass_on(sig, si, uctx);
    errno = saved_errno;
}

static void install(void)
{
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous) < 0)
        install_errno = errno ? errno : EINVAL;
}

int mapguard_watch(const void *addr, size_t len, int fd, el_err *err)
{
    pthread_once(&install_once, install);
    if (install_errno)
        return el_fail(err, "cannot install the SIGBUS handler: %s", strerror(install_errno));
    if (!addr || len == 0 || fd < 0 || ((uintptr_t)addr & (page_size - 1)))
        return el_fail(err, "mapguard: not a page-aligned file mapping");
    size_t pages = (len + page_size - 1) & ~(size_t)(page_size - 1);
    for (int i = 0; i < MAPGUARD_MAX; i++) {
        bool expected = false;
        if (!atomic_compare_exchange_strong(&watches[i].used, &expected, true))
            continue;
        atomic_store(&watches[i].len, pages);
        atomic_store(&watches[i].fd, fd);
        atomic_store(&watches[i].damaged, false);
        atomic_store(&watches[i].start, (uintptr_t)addr);
        return i;
    }
    return el_fail(err, "more than %d mapped files at once", MAPGUARD_MAX);
}

void mapguard_unwatch(int id)
{
    if (id < 0 || id >= MAPGUARD_MAX)
        return;
    atomic_store(&watches[id].start, 0);
    atomic_store(&watches[id].used, false);
}

bool mapguard_damaged(int id)
{
    return id >= 0 && id < MAPGUARD_MAX && atomic_load(&watches[id].damaged);
}
