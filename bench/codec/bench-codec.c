/* Codec throughput: save+load of a bulk array next to memcpy of the same bytes, and save+load of
 * 10 000 connector-like structs. Prints figures and ratios; asserts nothing (benchmarks only). */
#include "ferry/state/state.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct Bulk {
    uint32_t n;
    uint64_t *words;
} Bulk;

static const FerryDesc bulk_desc = {
    .name = "bulk",
    .version = 1,
    .size = sizeof(Bulk),
    .fields = (const FerryField[]){FERRY_FIELD(Bulk, n), FERRY_ALLOC(Bulk, words, n, 1u << 30),
                                   FERRY_END},
};

typedef struct Conn {
    uint32_t index;
    uint8_t state;
    bool unplug_requested;
    uint64_t handle;
    uint16_t flags;
    int32_t depth;
} Conn;

typedef struct Conns {
    uint32_t n;
    Conn *v;
} Conns;

static const FerryDesc conn_desc = {
    .name = "conn",
    .version = 1,
    .size = sizeof(Conn),
    .fields = (const FerryField[]){FERRY_FIELD(Conn, index), FERRY_FIELD(Conn, state),
                                   FERRY_FIELD(Conn, unplug_requested), FERRY_FIELD(Conn, handle),
                                   FERRY_FIELD(Conn, flags), FERRY_FIELD(Conn, depth), FERRY_END},
};
static const FerryDesc conns_desc = {
    .name = "conns",
    .version = 1,
    .size = sizeof(Conns),
    .fields =
        (const FerryField[]){FERRY_FIELD(Conns, n),
                             FERRY_ALLOC(Conns, v, n, 1u << 20, .desc = &conn_desc), FERRY_END},
};

static double round_trip(const FerryDesc *d, void *src, void *dst, FerryIO *w, int reps,
                         size_t *bytes)
{
    FerryError err;
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        ferry_io_mem_reset(w);
        double t0 = now();
        if (ferry_state_save(d, src, w, &err)) {
            fprintf(stderr, "save: %s\n", err.msg);
            exit(1);
        }
        const uint8_t *data = ferry_io_mem_data(w, bytes);
        FerryIO *rd = ferry_io_mem_reader(data, *bytes);
        if (ferry_state_load(d, dst, rd, d->version, NULL, &err)) {
            fprintf(stderr, "load: %s\n", err.msg);
            exit(1);
        }
        double t = now() - t0;
        ferry_io_destroy(rd);
        if (t < best)
            best = t;
    }
    return best;
}

int main(void)
{
    const uint32_t words = 32u << 20; /* 256 MiB */
    size_t bytes = (size_t)words * 8;
    Bulk src = {words, malloc(bytes)}, dst = {words, NULL};
    for (uint32_t i = 0; i < words; i++)
        src.words[i] = i * 0x9e3779b97f4a7c15ull;
    FerryIO *w = ferry_io_mem_writer();
    size_t wire;
    double t_codec = round_trip(&bulk_desc, &src, &dst, w, 5, &wire);
    if (memcmp(src.words, dst.words, bytes)) {
        fprintf(stderr, "bulk round trip mismatch\n");
        return 1;
    }
    /* memcpy of the same bytes, twice (save copies once, load copies once). */
    uint8_t *a = malloc(bytes), *b = malloc(bytes);
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double t_memcpy = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        memcpy(a, src.words, bytes);
        memcpy(b, a, bytes);
        double t = now() - t0;
        if (t < t_memcpy)
            t_memcpy = t;
    }
    double mb = bytes / 1e6;
    printf("bulk array %zu MiB: codec save+load %.1f ms = %.0f MB/s; memcpy x2 %.1f ms = %.0f "
           "MB/s; ratio codec/memcpy = %.2f\n",
           bytes >> 20, t_codec * 1e3, mb / t_codec, t_memcpy * 1e3, mb / t_memcpy,
           t_memcpy / t_codec);

    const uint32_t nconn = 10000;
    Conns cs = {nconn, calloc(nconn, sizeof(Conn))}, cd = {nconn, NULL};
    for (uint32_t i = 0; i < nconn; i++)
        cs.v[i] = (Conn){i, (uint8_t)(i % 4), i % 7 == 0, 0x1000 + i, (uint16_t)i, -(int32_t)i};
    double t_conn = round_trip(&conns_desc, &cs, &cd, w, 20, &wire);
    if (memcmp(cs.v, cd.v, nconn * sizeof(Conn))) {
        fprintf(stderr, "struct round trip mismatch\n");
        return 1;
    }
    printf("10000 connector structs (6 fields): save+load %.3f ms (%zu wire bytes), %.0f ns per "
           "struct\n",
           t_conn * 1e3, wire, t_conn * 1e9 / nconn);
    ferry_io_destroy(w);
    free(src.words);
    free(dst.words);
    free(a);
    free(b);
    free(cs.v);
    free(cd.v);
    return 0;
}
