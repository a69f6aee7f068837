/* Threads for the CPU backend's parallel launches, used by fastcall.c (included there).  A
 * launch of `total` programs is cut into `parts` contiguous ranges, run at once.
 *
 * Where the process has an OpenMP runtime loaded (torch's), the ranges run on its thread
 * team (GOMP_parallel, looked up in it by pool_use_openmp), at most omp_get_max_threads()
 * of them (torch.set_num_threads sets it): the threads torch's own operators use, so
 * fusec's launches and torch's take turns on the cores instead of competing with each
 * other's spinning workers (on 2 cores that made a small fusec launch followed by a torch
 * add 3-10x slower).  Otherwise the calling thread runs the first range
 * and this file's workers the others; they take no GIL (Python's thread pool cost tens of
 * microseconds a launch here: a wake-up and two GIL hand-offs per worker), look for the
 * next job for POOL_SPIN_NS after each one and then sleep on a condition variable.
 *
 * One launch at a time on the workers (run_mu).  A forked child starts without workers
 * (pthread_atfork). */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef void (*program_fn)(long long *args, long long begin, long long end, char *scratch);

#define POOL_MAX_WORKERS 255
#define POOL_SPIN_NS 20000LL           /* a worker's wait for the next job before it sleeps */

typedef struct {
    program_fn fn;
    long long *args;
    long long total;
    int parts;
    char **scratch;                    /* per range */
} Job;

static struct {
    pthread_mutex_t run_mu;            /* held for a whole launch */
    pthread_mutex_t mu;                /* guards sleepers and the sleeping workers' waits */
    pthread_cond_t wake;
    int nworkers, sleepers, atfork;
    atomic_ulong gen;                  /* incremented per job */
    atomic_int pending;                /* workers yet to finish the current job */
    Job job;                           /* the current job, written before gen is incremented */
} pool = {.run_mu = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

/* the OpenMP runtime's entry points (NULL: none loaded) */
static void (*p_gomp_parallel)(void (*)(void *), void *, unsigned, unsigned);
static int (*p_omp_get_thread_num)(void);
static int (*p_omp_get_num_threads)(void);
static int (*p_omp_get_max_threads)(void);    /* torch.set_num_threads sets it */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long part_bound(long long total, int parts, int i) {
    return (long long)((__int128)total * i / parts);
}

static void pool_register_atfork(void);

static void run_part(const Job *job, int part) {
    long long begin = part_bound(job->total, job->parts, part);
    long long end = part_bound(job->total, job->parts, part + 1);
    if (begin < end) job->fn(job->args, begin, end, job->scratch[part]);
}

/* 1 when launches will run on the thread team of the OpenMP runtime loaded from `path`
 * (already loaded: it is not loaded again) */
static int pool_use_openmp(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) return 0;
    void *parallel = dlsym(lib, "GOMP_parallel");
    void *thread_num = dlsym(lib, "omp_get_thread_num");
    void *num_threads = dlsym(lib, "omp_get_num_threads");
    void *max_threads = dlsym(lib, "omp_get_max_threads");
    if (!parallel || !thread_num || !num_threads || !max_threads) return 0;
    p_omp_get_thread_num = (int (*)(void))thread_num;
    p_omp_get_num_threads = (int (*)(void))num_threads;
    p_omp_get_max_threads = (int (*)(void))max_threads;
    p_gomp_parallel = (void (*)(void (*)(void *), void *, unsigned, unsigned))parallel;
    pool_register_atfork();
    return 1;
}

/* one thread of the team: its ranges (a team may have fewer threads than asked for) */
static void openmp_member(void *data) {
    const Job *job = data;
    int n = p_omp_get_num_threads();
    for (int part = p_omp_get_thread_num(); part < job->parts; part += n) run_part(job, part);
}

/* the generation after `seen`: spins a while, then sleeps */
static unsigned long next_job(unsigned long seen) {
    unsigned long g;
    long long start = now_ns();
    for (unsigned n = 1;; n++) {
        g = atomic_load_explicit(&pool.gen, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
        if (n % 64 == 0 && now_ns() - start > POOL_SPIN_NS) break;
    }
    pthread_mutex_lock(&pool.mu);
    pool.sleepers++;
    while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen)
        pthread_cond_wait(&pool.wake, &pool.mu);
    pool.sleepers--;
    pthread_mutex_unlock(&pool.mu);
    return g;
}

typedef struct { int index; unsigned long seen; } WorkerStart;

static void *worker_main(void *arg) {
    WorkerStart start = *(WorkerStart *)arg;
    PyMem_RawFree(arg);
    unsigned long seen = start.seen;
    for (;;) {
        seen = next_job(seen);
        if (start.index + 1 < pool.job.parts) run_part(&pool.job, start.index + 1);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

/* a forked child has the parent's memory but none of its workers; nor does it use the
 * OpenMP team (GNU's runtime may hang in a child of a parent that used it) */
static void pool_after_fork_child(void) {
    p_gomp_parallel = NULL;
    pthread_mutex_init(&pool.run_mu, NULL);
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.nworkers = 0;
    pool.sleepers = 0;
    atomic_store(&pool.pending, 0);
}

static void pool_register_atfork(void) {
    if (!pool.atfork) {
        pthread_atfork(NULL, NULL, pool_after_fork_child);
        pool.atfork = 1;
    }
}

/* at least `want` workers (fewer if threads cannot be made); run_mu held, no job running */
static void pool_grow(int want) {
    if (want > POOL_MAX_WORKERS) want = POOL_MAX_WORKERS;
    pool_register_atfork();
    while (pool.nworkers < want) {
        WorkerStart *s = PyMem_RawMalloc(sizeof *s);
        if (!s) return;
        s->index = pool.nworkers;
        s->seen = atomic_load(&pool.gen);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&t, &attr, worker_main, s);
        pthread_attr_destroy(&attr);
        if (err) { PyMem_RawFree(s); return; }
        pool.nworkers++;
    }
}

/* Runs programs [0, total) of fn in `parts` ranges, scratch[i] the arena of range i; call
 * without the GIL.  Returns when every range is done. */
static void pool_run(program_fn fn, long long *args, long long total, int parts, char **scratch) {
    if (total <= 0) return;
    Job job = {fn, args, total, parts, scratch};
    if (parts > 1 && p_gomp_parallel) {
        int limit = p_omp_get_max_threads();      /* no more threads than torch uses */
        if (limit < parts) job.parts = parts = limit < 1 ? 1 : limit;
        if (parts > 1) {
            p_gomp_parallel(openmp_member, &job, (unsigned)parts, 0);
            return;
        }
        run_part(&job, 0);
        return;
    }
    pthread_mutex_lock(&pool.run_mu);
    if (parts > 1) pool_grow(parts - 1);
    if (parts > pool.nworkers + 1)      /* threads could not be made: fewer, longer ranges */
        job.parts = parts = pool.nworkers + 1;
    pool.job = job;
    if (parts > 1) {
        atomic_store_explicit(&pool.pending, pool.nworkers, memory_order_relaxed);
        pthread_mutex_lock(&pool.mu);
        atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
        if (pool.sleepers) pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.mu);
    }
    run_part(&job, 0);
    if (parts > 1) {
        for (unsigned n = 1; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; n++) {
            if (n < 4096) cpu_relax();
            else sched_yield();        /* a worker that slept, or a machine with too few cores */
        }
    }
    pthread_mutex_unlock(&pool.run_mu);
}
