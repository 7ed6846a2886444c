/* sem_clockwait for processes under libfaketime, which does not wrap it (0.9.10).
 *
 * CPython >= 3.11 on glibc >= 2.34 waits on every timed lock (Event, Condition, Queue) with
 * sem_clockwait(CLOCK_MONOTONIC, deadline). Under libfaketime the deadline is in fake time and
 * the kernel compares it with the real clock, so the wait hangs. This turns the fake deadline
 * into a real one: (deadline - fake now) / speed from now on the real clock. Speed is the
 * "xN" of FAKETIME. Load it after libfaketime:
 *   LD_PRELOAD=.../libfaketimeMT.so.1:.../faketime_semwait.so
 * Build: cc -O2 -shared -fPIC -o faketime_semwait.so faketime_semwait.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*clockwait_fn)(sem_t *, clockid_t, const struct timespec *);

static double speed(void) {
    const char *ft = getenv("FAKETIME");
    const char *x = ft ? strchr(ft, 'x') : NULL;
    double s = x ? strtod(x + 1, NULL) : 1.0;
    return s > 0 ? s : 1.0;
}

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *abstime) {
    static clockwait_fn real_wait;
    struct timespec fake_now, real_now, deadline;
    if (!real_wait) real_wait = (clockwait_fn)dlsym(RTLD_NEXT, "sem_clockwait");
    clock_gettime(clock, &fake_now); /* libfaketime's: the caller's clock */
    syscall(SYS_clock_gettime, clock, &real_now);
    double left = (double)(abstime->tv_sec - fake_now.tv_sec) +
                  (double)(abstime->tv_nsec - fake_now.tv_nsec) / 1e9;
    if (left < 0) left = 0;
    left /= speed();
    double ns = (double)real_now.tv_nsec + (left - (double)(time_t)left) * 1e9;
    deadline.tv_sec = real_now.tv_sec + (time_t)left + (time_t)(ns / 1e9);
    deadline.tv_nsec = (long)ns % 1000000000L;
    return real_wait(sem, clock, &deadline);
}
