/* ferry-mig-host: a minimal VMM process for migration tests and the benchmark until `ferry run`
 * carries QMP: boot-sector guest, serial to a file, QMP socket with the migration commands,
 * query-status/stop/cont/quit, x-ram-digest (XXH3 of guest RAM), and --incoming URI.
 * A failed incoming migration exits 1 with the reason; the VM never runs. */
#include "ferry/control/qmp-migration.h"
#include "ferry/control/qmp.h"
#include "ferry/migration/migration.h"
#include "ferry/vmm/boot.h"
#include "ferry/vmm/serial.h"
#include "ferry/vmm/vcpu.h"
#include "ferry/vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xxhash.h>

typedef struct Host {
    FerryVm *vm;
    FerryVcpus *vcpus;
    FerryMigration *mig;
    FerryQmpServer *srv;
    int evfd;
    const char *state; /* query-status */
    bool incoming;
    atomic_int quit; /* 1 quit, 2 incoming failed */
} Host;

static void wake(Host *h)
{
    uint64_t one = 1;
    if (write(h->evfd, &one, 8) < 0) {
    }
}

static void on_status(void *opaque, FerryMigStatus st)
{
    Host *h = opaque;
    ferry_qmp_migration_emit_status(h->srv, st);
    if (h->incoming) {
        if (st == FERRY_MIG_COMPLETED) {
            h->state = "running";
            ferry_vcpus_resume(h->vcpus);
        } else if (st == FERRY_MIG_FAILED) {
            h->quit = 2;
            wake(h);
        }
    } else if (st == FERRY_MIG_COMPLETED) {
        h->state = "postmigrate";
    } else if (st == FERRY_MIG_DEVICE) {
        h->state = "finish-migrate";
    } else if (st == FERRY_MIG_FAILED || st == FERRY_MIG_CANCELLED) {
        h->state = ferry_vcpus_paused(h->vcpus) ? "paused" : "running";
    }
}

static void on_pass(void *opaque, uint64_t pass)
{
    Host *h = opaque;
    ferry_qmp_migration_emit_pass(h->srv, pass);
}

static int q_status(void *ctx, json_t *a, json_t **ret, FerryQmpError *e)
{
    (void)a, (void)e;
    Host *h = ctx;
    *ret = json_pack("{s:s, s:b, s:b}", "status", h->state, "running", !strcmp(h->state, "running"),
                     "singlestep", 0);
    return 0;
}

static int q_stop(void *ctx, json_t *a, json_t **ret, FerryQmpError *e)
{
    (void)a, (void)ret, (void)e;
    Host *h = ctx;
    ferry_vcpus_pause(h->vcpus);
    h->state = "paused";
    return 0;
}

static int q_cont(void *ctx, json_t *a, json_t **ret, FerryQmpError *e)
{
    (void)a, (void)ret;
    Host *h = ctx;
    if (!strcmp(h->state, "inmigrate"))
        return ferry_qmp_error_set(e, FERRY_QMP_ERROR_GENERIC, "cannot cont in inmigrate");
    ferry_vcpus_resume(h->vcpus);
    h->state = "running";
    return 0;
}

static int q_quit(void *ctx, json_t *a, json_t **ret, FerryQmpError *e)
{
    (void)a, (void)ret, (void)e;
    Host *h = ctx;
    h->quit = 1;
    wake(h);
    return 0;
}

static int q_digest(void *ctx, json_t *a, json_t **ret, FerryQmpError *e)
{
    (void)a, (void)e;
    Host *h = ctx;
    bool was = ferry_vcpus_paused(h->vcpus);
    ferry_vcpus_pause(h->vcpus);
    XXH3_state_t *x = XXH3_createState();
    XXH3_64bits_reset(x);
    for (size_t i = 0; i < ferry_vm_ram_count(h->vm); i++) {
        FerryRamBlock b;
        ferry_vm_ram_block(h->vm, i, &b, NULL);
        XXH3_64bits_update(x, b.host, b.size);
    }
    char hex[17];
    snprintf(hex, sizeof(hex), "%016" PRIx64, (uint64_t)XXH3_64bits_digest(x));
    XXH3_freeState(x);
    if (!was)
        ferry_vcpus_resume(h->vcpus);
    *ret = json_pack("{s:s}", "digest", hex);
    return 0;
}

static void on_vcpu_event(void *opaque, FerryVcpu *v, FerryVcpuEvent ev, const char *msg)
{
    (void)v, (void)ev;
    fprintf(stderr, "ferry-mig-host: %s\n", msg);
    ((Host *)opaque)->quit = 1;
    wake(opaque);
}

int main(int argc, char **argv)
{
    uint64_t mem = 128ULL << 20;
    const char *boot = NULL, *qmp = NULL, *incoming = NULL, *serial = "/dev/null";
    bool delta = true;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--memory"))
            mem = strtoull(argv[i + 1], NULL, 10) << 20;
        else if (!strcmp(argv[i], "--boot-sector"))
            boot = argv[i + 1];
        else if (!strcmp(argv[i], "--qmp"))
            qmp = argv[i + 1];
        else if (!strcmp(argv[i], "--incoming"))
            incoming = argv[i + 1];
        else if (!strcmp(argv[i], "--serial"))
            serial = argv[i + 1];
        else if (!strcmp(argv[i], "--delta")) /* on|off: XOR+RLE delta of re-sent pages */
            delta = strcmp(argv[i + 1], "off") != 0;
        else {
            fprintf(stderr,
                    "usage: %s --memory MiB (--boot-sector FILE | --incoming URI) --qmp "
                    "SOCKET [--serial FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!qmp || (!boot && !incoming)) {
        fprintf(stderr, "%s: --qmp and one of --boot-sector/--incoming are required\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    FerryError err = {0};
    Host h = {.state = incoming ? "inmigrate" : "running", .incoming = incoming != NULL};
    h.evfd = eventfd(0, EFD_CLOEXEC);
    FerryVmConfig cfg = {.ram_size = mem, .pit = true};
    if (!(h.vm = ferry_vm_create(&cfg, &err)) ||
        !(h.vcpus = ferry_vcpus_create(h.vm, on_vcpu_event, &h, &err))) {
        fprintf(stderr, "ferry-mig-host: %s\n", err.msg);
        return 1;
    }
    FerryVcpu *bsp = ferry_vcpus_add(h.vcpus, 0, &err);
    int sfd = open(serial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FerrySerial *ser =
        ferry_serial_create(h.vm, FERRY_SERIAL_COM1_BASE, FERRY_SERIAL_COM1_IRQ, sfd, &err);
    if (!bsp || !ser) {
        fprintf(stderr, "ferry-mig-host: %s\n", err.msg);
        return 1;
    }
    FerryMigHost mh = {
        .vm = h.vm, .vcpus = h.vcpus, .on_status = on_status, .on_pass = on_pass, .opaque = &h};
    h.mig = ferry_migration_new(&mh, &err);
    FerryMigParams prm;
    ferry_migration_get_params(h.mig, &prm);
    prm.delta = delta;
    ferry_migration_set_params(h.mig, &prm, NULL);
    FerryQmpCommands *cmds = ferry_qmp_commands_create();
    FerryQmpMigration *qm = ferry_qmp_migration_register(cmds, h.mig, NULL, NULL, &err);
    static const FerryQmpCommandSpec digest = {.name = "x-ram-digest"};
    if (!qm || ferry_qmp_commands_implement(cmds, "query-status", q_status, &h, &err) ||
        ferry_qmp_commands_implement(cmds, "stop", q_stop, &h, &err) ||
        ferry_qmp_commands_implement(cmds, "cont", q_cont, &h, &err) ||
        ferry_qmp_commands_implement(cmds, "quit", q_quit, &h, &err) ||
        ferry_qmp_commands_add(cmds, &digest, q_digest, &h, &err)) {
        fprintf(stderr, "ferry-mig-host: %s\n", err.msg);
        return 1;
    }
    if (!(h.srv = ferry_qmp_server_create(qmp, cmds, NULL, &err)) ||
        ferry_qmp_server_start(h.srv, &err) < 0) {
        fprintf(stderr, "ferry-mig-host: %s\n", err.msg);
        return 1;
    }
    if (boot) {
        if (ferry_boot_sector(h.vm, bsp, boot, &err) < 0) {
            fprintf(stderr, "ferry-mig-host: %s\n", err.msg);
            return 1;
        }
        ferry_vcpu_start(bsp);
        ferry_vcpus_resume(h.vcpus);
    } else if (ferry_migration_incoming(h.mig, incoming, &err) < 0) {
        fprintf(stderr, "ferry-mig-host: --incoming %s: %s\n", incoming, err.msg);
        return 1;
    }
    while (!h.quit) {
        struct pollfd p = {.fd = h.evfd, .events = POLLIN};
        poll(&p, 1, 200);
        ferry_serial_flush(ser, NULL);
    }
    int rc = 0;
    if (h.quit == 2) {
        FerryMigInfo *in = malloc(sizeof(*in));
        ferry_migration_info(h.mig, in);
        fprintf(stderr, "ferry-mig-host: incoming migration failed, the VM did not start: %s\n",
                in->error);
        free(in);
        rc = 1;
    }
    ferry_vcpus_pause(h.vcpus);
    ferry_qmp_server_destroy(h.srv);
    ferry_migration_free(h.mig);
    ferry_qmp_commands_destroy(cmds);
    ferry_qmp_migration_free(qm);
    ferry_vcpus_destroy(h.vcpus);
    ferry_serial_destroy(ser);
    ferry_vm_destroy(h.vm);
    return rc;
}
