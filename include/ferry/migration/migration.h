/* Live migration of a KVM VM (DESIGN §5): a pre-copy engine for the source, the incoming side
 * for the destination, and snapshot/restore through file: URIs. One FerryMigration object per
 * VM holds the parameters and the state of the current or last migration; the engine runs on
 * its own threads and is controlled through this API (QMP wiring lives in ferry/control). */
#ifndef FERRY_MIGRATION_MIGRATION_H
#define FERRY_MIGRATION_MIGRATION_H

#include "ferry/error.h"
#include "ferry/machine/machine.h"
#include "ferry/vmm/vcpu.h"
#include "ferry/vmm/vm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FerryMigration FerryMigration;

/* QEMU's MigrationStatus spelling. */
typedef enum FerryMigStatus {
    FERRY_MIG_NONE,
    FERRY_MIG_SETUP,
    FERRY_MIG_ACTIVE,
    FERRY_MIG_DEVICE, /* vCPUs stopped: final pass and device state */
    FERRY_MIG_COMPLETED,
    FERRY_MIG_FAILED,
    FERRY_MIG_CANCELLING,
    FERRY_MIG_CANCELLED,
} FerryMigStatus;
const char *ferry_mig_status_name(FerryMigStatus s);
bool ferry_mig_status_active(FerryMigStatus s); /* setup, active, device, cancelling */

/* What to do when the dirty set does not shrink below the downtime limit (docs/migration.md,
 * QMP x-ferry-converge). Passes are counted with the final stop-and-copy one included, so with
 * "switchover" a migration that never converges ends with dirty-sync-count == max_passes. */
typedef enum FerryMigConverge {
    FERRY_MIG_CONVERGE_SWITCHOVER = 0, /* the max_passes-th pass is the final one (default) */
    FERRY_MIG_CONVERGE_THROTTLE = 1,   /* from there, throttle vCPUs 20 % more per pass (up to
                                          90 %); the 3*max_passes-th pass is the final one */
} FerryMigConverge;
/* Bounds of FerryMigParams.max_passes (x-ferry-max-passes): one live pass at least. */
#define FERRY_MIG_MAX_PASSES_MIN 2
#define FERRY_MIG_MAX_PASSES_MAX 255

/* Test only (x-ferry-test-subsection, docs/migration.md): the source adds one subsection that
 * no destination knows, "<section>/x-ferry-test", to its first device record (S14). */
typedef enum FerryMigTestSub {
    FERRY_MIG_TEST_SUB_NONE = 0,      /* default */
    FERRY_MIG_TEST_SUB_OPTIONAL = 1,  /* marked optional: a destination skips it with a warning */
    FERRY_MIG_TEST_SUB_MANDATORY = 2, /* required: every destination refuses the stream */
} FerryMigTestSub;

typedef struct FerryMigParams {
    uint64_t downtime_limit_ms; /* default 300 (QEMU's) */
    uint64_t max_bandwidth;     /* bytes/s; 0 = unlimited (default) */
    uint32_t multifd_channels;  /* dedicated RAM channels (tcp/unix; default 2); 0 = RAM on the
                                   main channel, as always for fd: and file: */
    uint32_t max_passes;        /* passes (final included) before the non-convergence policy
                                   applies; FERRY_MIG_MAX_PASSES_MIN..MAX, default 30 */
    uint32_t converge;          /* FerryMigConverge */
    bool delta;                 /* XOR+RLE delta of re-sent pages (default true) */
    bool prefault;              /* destination: fault RAM in while waiting (default true) */
    uint32_t x_test_subsection; /* FerryMigTestSub; test only, default none */
    /* Test only (x-ferry-test-no-subsections, S13): this destination loads device records as a
     * build that knows no subsection would (every section's base fields only). */
    bool x_test_no_subsections;
} FerryMigParams;
void ferry_mig_params_default(FerryMigParams *p);

/* One pass over RAM (for query-migrate and the timeline plot). */
typedef struct FerryMigPass {
    uint64_t pages_sent;    /* pages sent in this pass (zero pages included) */
    uint64_t bytes_sent;    /* wire bytes of the pass */
    uint64_t pages_dirtied; /* dirty pages found at the end of the pass (next pass's work) */
    uint64_t duration_us;
    bool final; /* sent with vCPUs stopped */
} FerryMigPass;

#define FERRY_MIG_PASSES_MAX 256

/* Everything query-migrate reports. */
typedef struct FerryMigInfo {
    FerryMigStatus status;
    bool incoming;
    uint64_t total_time_ms, setup_time_ms, downtime_ms, expected_downtime_ms;
    uint64_t downtime_us; /* the same, finer: stops of well under 1 ms are common */
    uint64_t ram_total, ram_transferred, ram_remaining; /* bytes */
    uint64_t duplicate, normal, delta_pages;            /* pages: zero, raw, delta-encoded */
    uint64_t normal_bytes;
    /* Active: over the last ~100 ms (or the last pass when shorter); completed: the average
     * over the transfer time (total minus setup), as QEMU. */
    double mbps;               /* megabits/s (10^6) of wire bytes */
    uint64_t dirty_sync_count; /* dirty-log syncs = passes over RAM, the final one included */
    uint64_t pages_per_second; /* pages sent (zero pages included), same window as mbps */
    uint64_t dirty_pages_rate;
    uint32_t throttle_pct; /* vCPU throttle now (policy "throttle"); kept at its last
                              value after the migration ends */
    bool throttle_active;  /* the throttle runs (QMP cpu-throttle-percentage shown) */
    bool prefault_done;    /* destination: RAM faulted in (ready for a fast stream) */
    uint32_t npasses;
    FerryMigPass passes[FERRY_MIG_PASSES_MAX];
    char error[FERRY_ERROR_MSG_MAX]; /* when failed */
} FerryMigInfo;

/* The VM a migration moves, and the host's hooks. All pointers borrowed for the object's life.
 * Either `vcpus` or the vcpu_count/vcpu_at pair must be given. */
typedef struct FerryMigHost {
    FerryVm *vm;
    FerryVcpus *vcpus;
    FerryMachine *machine; /* may be NULL: no inventory handshake and no device sections */
    /* Held around every access to `machine` (NULL: none), e.g. ferry_instance_lock. */
    void (*lock)(void *opaque);
    void (*unlock)(void *opaque);
    /* Outgoing migration in setup/active (default: ferry_machine_set_migration_active). */
    void (*set_active)(void *opaque, bool active);
    /* vCPUs whose state migrates (default: every vCPU of `vcpus`). */
    unsigned (*vcpu_count)(void *opaque);
    FerryVcpu *(*vcpu_at)(void *opaque, unsigned index);
    /* Stop/resume the guest (default: ferry_vcpus_pause/resume), without run-state change or
     * event: throttling calls them every few milliseconds. Called from engine threads. */
    void (*stop)(void *opaque);
    void (*resume)(void *opaque);
    /* Source: the guest was stopped for switchover (true; before status `device`, as QEMU
     * emits STOP before MIGRATION device) or resumed after a failure or cancel (false).
     * Throttling's short pauses are not reported. NULL: nothing. Engine thread. */
    void (*on_switchover_stop)(void *opaque, bool stopped);
    /* Status changed (QMP MIGRATION) / a pass started (MIGRATION_PASS); engine threads. On
     * the destination, COMPLETED means loaded and verified (the host then runs the VM) and
     * FAILED means it must never run (the host shuts it down). */
    void (*on_status)(void *opaque, FerryMigStatus status);
    void (*on_pass)(void *opaque, uint64_t pass);
    /* Destination: a warning about the stream that does not fail the load (an optional
     * subsection this build does not know was skipped). NULL: dropped. Engine threads. */
    void (*on_warning)(void *opaque, const char *msg);
    /* Destination: a vCPU id in the stream that the VM lacks. Return it created (started or
     * not: the engine calls ferry_vcpu_start), NULL + err to refuse. NULL hook: the engine
     * creates it with ferry_vcpus_add. */
    FerryVcpu *(*vcpu_add)(void *opaque, uint32_t id, FerryError *err);
    void *opaque;
} FerryMigHost;

/* Caller frees with ferry_migration_free (which cancels and joins a running migration). */
FerryMigration *ferry_migration_new(const FerryMigHost *host, FerryError *err);
void ferry_migration_free(FerryMigration *m);

/* Parameters apply to the next migration (and the bandwidth cap to the running one). */
int ferry_migration_set_params(FerryMigration *m, const FerryMigParams *p, FerryError *err);
void ferry_migration_get_params(FerryMigration *m, FerryMigParams *out);

/* Source: start migrating to `uri` on engine threads and return. -EBUSY while one runs. The
 * machine's device_add/device_del are refused until it ends. On success the vCPUs stay stopped
 * and the machine goes to postmigrate; on failure or cancel the guest runs again. */
int ferry_migration_start(FerryMigration *m, const char *uri, FerryError *err);
/* Request cancellation (asynchronous; status goes cancelling -> cancelled). 0 if nothing runs. */
int ferry_migration_cancel(FerryMigration *m);
/* Block until the current migration (either direction) ends; returns its final status. */
FerryMigStatus ferry_migration_wait(FerryMigration *m);
void ferry_migration_info(FerryMigration *m, FerryMigInfo *out);

/* Destination: listen on `uri` (tcp/unix; fd:/file: read at once) and load a stream into the
 * VM on an engine thread; returns after the listener is set up (so tcp:HOST:0 has a port:
 * ferry_migration_incoming_port). On success (status completed) the vCPUs are loaded and
 * stopped; the host resumes them. On failure (status failed, info.error says why) the VM holds
 * partial state and must not run. */
int ferry_migration_incoming(FerryMigration *m, const char *uri, FerryError *err);
int ferry_migration_incoming_port(FerryMigration *m);

#endif
