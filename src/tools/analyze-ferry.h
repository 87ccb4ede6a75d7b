/* ferry analyze for Ferry streams (the QEMU side lives in analyze.c). */
#ifndef FERRY_TOOLS_ANALYZE_FERRY_H
#define FERRY_TOOLS_ANALYZE_FERRY_H

#include <stdbool.h>
#include <stdio.h>

typedef struct FerryAnalyzeOpts {
    bool summary;        /* human summary instead of JSON */
    const char *section; /* only device records with this section name, or NULL */
    const char *extract; /* directory for RAM block contents, or NULL */
    FILE *out;
} FerryAnalyzeOpts;

/* Decode the Ferry stream on `fd` (read sequentially, constant memory). Returns the exit status:
 * 0 valid, 1 invalid (message on stderr names the record and offset). */
int ferry_analyze_ferry_fd(const char *name, int fd, const FerryAnalyzeOpts *o);

#endif
