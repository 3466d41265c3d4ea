/* budget: retry budget arithmetic (see budget.h). */
#include "budget.h"

#include <math.h>

/* Fade what is there and add the floor for the time since the last call. */
static void budget_age(struct budget *b, const struct conf_pool *cp, uint64_t now_ms)
{
    if (b->at_ms == 0) { /* a new budget starts with one second of the floor */
        b->at_ms = now_ms;
        b->tokens = (double)cp->retry_min_per_second;
        return;
    }
    if (now_ms <= b->at_ms) {
        return;
    }
    double dt = (double)(now_ms - b->at_ms);
    double keep = exp(-dt / BUDGET_TAU_MS);
    /* the floor, integrated over dt while fading: rate * tau * (1 - keep) */
    double floor = (double)cp->retry_min_per_second * (BUDGET_TAU_MS / 1000.0) * (1.0 - keep);
    b->tokens = b->tokens * keep + floor;
    b->at_ms = now_ms;
}

void budget_deposit(struct budget *b, const struct conf_pool *cp, uint64_t now_ms)
{
    if (!cp->retry_budget) {
        return;
    }
    budget_age(b, cp, now_ms);
    b->tokens += (double)cp->retry_percent / 100.0;
}

bool budget_withdraw(struct budget *b, const struct conf_pool *cp, uint64_t now_ms)
{
    if (!cp->retry_budget) {
        return true;
    }
    budget_age(b, cp, now_ms);
    if (b->tokens < 1.0) {
        return false;
    }
    b->tokens -= 1.0;
    return true;
}
