/* pipetrain/timeutil.h — monotonic clock and deadlines, shared by every module.
 * Every wait in pipetrain has a deadline expressed as an absolute monotonic time in ns. */
#ifndef PIPETRAIN_TIMEUTIL_H
#define PIPETRAIN_TIMEUTIL_H

#include <stdint.h>

/* Monotonic clock (CLOCK_MONOTONIC) in nanoseconds. Thread-safe. */
int64_t pt_now_ns(void);

/* Wall clock (CLOCK_REALTIME) in nanoseconds: comparable between processes of one host (a
 * launcher and the ranks it restarts), not monotonic. Thread-safe. */
int64_t pt_wall_ns(void);

/* Deadline `timeout_ms` from now, in pt_now_ns() units. A negative timeout means "never". */
int64_t pt_deadline_after_ms(int64_t timeout_ms);

/* 1 when `deadline_ns` has passed (never for INT64_MAX). */
int pt_deadline_passed(int64_t deadline_ns);

/* Seconds between two pt_now_ns() values. */
double pt_seconds_between(int64_t start_ns, int64_t end_ns);

#endif
