/* tm: monotonic and wall-clock time in milliseconds. */
#ifndef LEGATE_TM_H
#define LEGATE_TM_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock; never goes backwards. */
static inline uint64_t tm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Microseconds on the monotonic clock (vDSO: no system call). */
static inline uint64_t tm_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Seconds since the Unix epoch, for logs and stats. */
static inline int64_t tm_wall_s(void)
{
    return (int64_t)time(NULL);
}

#endif
