#include "pipetrain/timeutil.h"

#include <time.h>

int64_t pt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t pt_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t pt_deadline_after_ms(int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return INT64_MAX;
    return pt_now_ns() + timeout_ms * 1000000LL;
}

int pt_deadline_passed(int64_t deadline_ns)
{
    return deadline_ns != INT64_MAX && pt_now_ns() >= deadline_ns;
}

double pt_seconds_between(int64_t start_ns, int64_t end_ns) { return (double)(end_ns - start_ns) * 1e-9; }
