/* Private state of the migration engine shared by migration.c (object, parameters, statistics),
 * source.c (pre-copy) and incoming.c (destination). */
#ifndef FERRY_MIGRATION_INT_H
#define FERRY_MIGRATION_INT_H

#include "ferry/migration/migration.h"
#include "ferry/migration/transport.h"
#include "ferry/stream/ram.h"
#include "ferry/stream/stream.h"

#include <pthread.h>
#include <stdatomic.h>

/* Migration-only record kinds (docs/stream-format.md). */

#define MIG_RECORD_TARGET  (1u << 20) /* ram-pages payload size before a record is closed */
#define MIG_CHUNK_SHIFT    9          /* pages are sharded across channels in 2 MiB chunks */
#define MIG_ACK_TIMEOUT_MS 30000

/* Return-path lines (destination -> source on the main connection). */
#define MIG_REPLY_OK  "FERRY-OK"
#define MIG_REPLY_ERR "FERRY-ERR "
#define MIG_REPLY_ACK "FERRY-ACK"
#define MIG_GO        "FERRY-GO"
/* A ram-pass record with this pass number asks the receiver of that connection to answer
 * MIG_SYNCED on it once everything before it is applied (drain before the switchover). */
#define MIG_SYNC_PASS 0xfffffffeu
#define MIG_SYNCED    "FERRY-SYNCED"

typedef struct MigBlock {
    FerryRamBlock b;
    uint64_t pages;
    uint64_t *send;    /* pages to send in the current pass */
    uint64_t *fetched; /* scratch bitmap for a merged fetch */
    size_t bitmap_size;
    uint8_t *shadow; /* copy of what the destination holds (delta), MAP_NORESERVE */
} MigBlock;

struct FerryMigration {
    FerryMigHost host;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    FerryMigParams params;
    FerryMigInfo info; /* under lock */
    bool running;      /* an engine thread exists (joinable) */
    pthread_t thread;
    atomic_bool cancel;
    /* Source. */
    FerryUri uri;
    int fds[1 + 255]; /* main + channel sockets; -1 when closed */
    unsigned nfds;
    /* Destination. */
    int listen_fd;
    int listen_port;
    /* Timing. */
    uint64_t start_ns;
    /* Source rate window for query-migrate's mbps/pages-per-second while active (under lock):
     * where the current window started and the totals then; pages sent so far. */
    uint64_t rate_t0_ns, rate_bytes0, rate_pages0;
    uint64_t pages_sent;
};
/* Source: `pages` more pages went out, info.ram_transferred already counts their bytes (under
 * m->lock): refresh mbps and
 * pages-per-second over the recent window when it is 100 ms old, when nothing was reported yet,
 * or when `pass_end` (so a pass shorter than the window still updates them). */
void mig_rate_account(FerryMigration *m, uint64_t pages, bool pass_end);
/* Source, completed: mbps and pages-per-second become the averages over the transfer time
 * (total time minus setup time, as QEMU's migration_calculate_complete). Under m->lock. */
void mig_rate_complete(FerryMigration *m);

uint64_t mig_now_ns(void);
/* Host access through the hooks (FerryMigHost). */
void mig_lock(FerryMigration *m);
void mig_unlock(FerryMigration *m);
void mig_set_active(FerryMigration *m, bool active);
unsigned mig_vcpu_count(FerryMigration *m);
FerryVcpu *mig_vcpu_at(FerryMigration *m, unsigned i);
void mig_set_status(FerryMigration *m, FerryMigStatus st);
void mig_fail(FerryMigration *m, const FerryError *err);
void *mig_source_main(void *arg);
void *mig_incoming_main(void *arg);
/* Apply a RAM-only stream (header, ram-blocks/ram-pages/ram-pass records, end) read from `io`
 * to `blocks`, exactly as a destination channel does. For the unit test and the fuzz harness of
 * the RAM record parser (outside input). */
int mig_ram_stream_apply(const FerryRamBlock *blocks, size_t n, FerryIO *io, FerryError *err);
/* Shut down every socket so blocked reads/writes return (cancel, failure). */
void mig_shutdown_fds(FerryMigration *m);
void mig_block_sigpipe(void);
/* Read one '\n'-terminated line from fd into buf (NUL-terminated, newline removed). */
int mig_read_line(int fd, char *buf, size_t size, int timeout_ms, FerryError *err);
int mig_write_all(int fd, const void *data, size_t len, FerryError *err);

#endif
