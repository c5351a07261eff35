/* The fuzz target of the schedule readers: any bytes go through the text reader and the CSV
 * reader; whatever they accept must print, parse back equal, and pass through the validator
 * and (when valid) the simulator without crashing. libFuzzer calls LLVMFuzzerTestOneInput
 * (fuzz_schedule_libfuzzer, clang only); schedule_fuzz_replay (every compiler) runs a corpus through it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_accepted(pt_schedule *s)
{
    char *text = NULL;
    pt_schedule *back = NULL;
    if (pt_sched_format(s, &text) != PT_OK)
        abort();
    if (pt_sched_parse(text, &back) != PT_OK || !pt_sched_equal(s, back)) {
        fprintf(stderr, "round trip failed: %s\n%s", pt_last_error(), text);
        abort();
    }
    if (pt_sched_validate(s) == PT_OK) {
        pt_sim_result r;
        if (pt_sched_simulate(s, NULL, &r) != PT_OK) {
            fprintf(stderr, "valid schedule failed to simulate: %s\n", pt_last_error());
            abort();
        }
        pt_sim_result_free(&r);
    }
    char *csv = NULL;
    if (pt_sched_to_csv(s, &csv) != PT_OK)
        abort();
    free(csv);
    pt_sched_destroy(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pt_schedule *s = NULL;
    if (pt_sched_parse(text, &s) == PT_OK)
        check_accepted(s);
    pt_sched_destroy(s);
    s = NULL;
    if (pt_sched_from_csv(text, "fuzz", &s) == PT_OK)
        check_accepted(s);
    pt_sched_destroy(s);
    free(text);
    return 0;
}
