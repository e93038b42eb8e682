/* Preloaded ahead of libfaketime for a process whose wall clock the tests step.
 *
 * libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 still rewrites an absolute
 * CLOCK_MONOTONIC deadline given to clock_nanosleep() as if it were faked, and hands the
 * kernel a negative time: every time.sleep() of Python 3.11 then fails with EINVAL.
 * Sleeps on a clock that is not faked go straight to the kernel here; the rest goes on
 * to libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem)
{
    if (clock == CLOCK_MONOTONIC || clock == CLOCK_BOOTTIME) {
        /* clock_nanosleep() returns the error number instead of setting errno. */
        return syscall(SYS_clock_nanosleep, clock, flags, req, rem) == 0 ? 0 : errno;
    }
    static clock_nanosleep_fn next;
    if (next == NULL) {
        next = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock, flags, req, rem);
}

