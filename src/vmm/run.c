/* ferry run: start a VM on KVM from the command line and run it until the guest powers off
 * or a SIGINT/SIGTERM arrives. Options live in one table so later ones (QMP, incoming) slot in. */
#include "commands.h"
#include "ferry/vmm/boot.h"
#include "ferry/vmm/serial.h"
#include "ferry/vmm/vcpu.h"
#include "ferry/vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define DEBUG_EXIT_PORT 0xf4 /* isa-debug-exit compatible: any write powers the VM off */

typedef struct RunOptions {
    uint64_t memory;
    unsigned smp, maxcpus;
    const char *serial;
    const char *boot_sector;
    const char *firmware;
} RunOptions;

typedef struct RunOption {
    const char *name; /* without the leading "--" */
    const char *arg;  /* metavariable for --help; NULL for a flag */
    const char *help;
    int (*parse)(RunOptions *o, const char *value, FerryError *err);
} RunOption;

/* SIZE with an optional K/M/G suffix (powers of 1024); a bare number means MiB, as in QEMU. */
static int parse_memory(RunOptions *o, const char *v, FerryError *err)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || v[0] == '-')
        return ferry_error_set(err, -EINVAL, "--memory '%s': not a size (e.g. 512M, 2G)", v);
    unsigned shift = 20;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case '\0':
        break;
    default:
        return ferry_error_set(err, -EINVAL, "--memory '%s': unknown suffix '%s' (use K, M, G)", v,
                               end);
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end)
        return ferry_error_set(err, -EINVAL, "--memory '%s': trailing '%s'", v, end);
    if (!n || n > (UINT64_MAX >> shift))
        return ferry_error_set(err, -EINVAL, "--memory '%s': must be positive and fit 64 bits", v);
    o->memory = (uint64_t)n << shift;
    if (o->memory % FERRY_VM_PAGE_SIZE || o->memory < (1 << 20))
        return ferry_error_set(err, -EINVAL,
                               "--memory '%s': must be a multiple of 4 KiB and at least 1M", v);
    return 0;
}

static int parse_uint(const char *s, const char *what, unsigned *out, FerryError *err)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || n == 0 || n > 4096)
        return ferry_error_set(err, -EINVAL, "--smp: %s '%s' is not a number in 1..4096", what, s);
    *out = (unsigned)n;
    return 0;
}

/* N[,maxcpus=M] */
static int parse_smp(RunOptions *o, const char *v, FerryError *err)
{
    char buf[64];
    if (strlen(v) >= sizeof(buf))
        return ferry_error_set(err, -EINVAL, "--smp '%s': too long", v);
    strcpy(buf, v);
    char *comma = strchr(buf, ',');
    if (comma)
        *comma++ = '\0';
    int r = parse_uint(buf, "vCPU count", &o->smp, err);
    if (r < 0)
        return r;
    o->maxcpus = o->smp;
    if (comma) {
        if (strncmp(comma, "maxcpus=", 8))
            return ferry_error_set(err, -EINVAL,
                                   "--smp '%s': unknown parameter '%s' (only "
                                   "maxcpus=M)",
                                   v, comma);
        if ((r = parse_uint(comma + 8, "maxcpus", &o->maxcpus, err)) < 0)
            return r;
    }
    if (o->smp > o->maxcpus)
        return ferry_error_set(err, -EINVAL, "--smp '%s': %u vCPUs exceed maxcpus=%u", v, o->smp,
                               o->maxcpus);
    return 0;
}

static int parse_serial(RunOptions *o, const char *v, FerryError *err)
{
    if (!*v)
        return ferry_error_set(err, -EINVAL, "--serial: empty (use stdio, none or a PATH)");
    o->serial = v;
    return 0;
}

static int parse_boot_sector(RunOptions *o, const char *v, FerryError *err)
{
    (void)err;
    o->boot_sector = v;
    return 0;
}

static int parse_firmware(RunOptions *o, const char *v, FerryError *err)
{
    (void)err;
    o->firmware = v;
    return 0;
}

static const RunOption run_options[] = {
    {"memory", "SIZE", "guest RAM, suffix K/M/G (bare number: MiB; default 128M)", parse_memory},
    {"smp", "N[,maxcpus=M]", "vCPUs at start, and the most hotplug may reach (default 1)",
     parse_smp},
    {"serial", "stdio|none|PATH", "where COM1 output goes (default stdio)", parse_serial},
    {"boot-sector", "FILE", "512-byte raw boot sector, started in real mode at 0x7c00",
     parse_boot_sector},
    {"firmware", "FILE", "flat 64-bit binary, loaded at 1 MiB and started in long mode",
     parse_firmware},
};
#define N_OPTIONS (sizeof(run_options) / sizeof(run_options[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry run [options] (--boot-sector FILE | --firmware FILE)\n\n"
                 "Run a VM on KVM until the guest powers off (triple fault, or a write to port "
                 "0xf4)\nor SIGINT/SIGTERM.\n\noptions:\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", run_options[i].name,
                 run_options[i].arg ? run_options[i].arg : "");
        fprintf(out, "  %-32s %s\n", left, run_options[i].help);
    }
    fprintf(out, "  %-32s %s\n", "--help", "show this help");
}

/* Returns 0, 1 for --help, or a negative errno with err set. */
static int parse_args(int argc, char **argv, RunOptions *o, FerryError *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        if (strncmp(a, "--", 2))
            return ferry_error_set(err, -EINVAL, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const RunOption *opt = NULL;
        for (size_t k = 0; k < N_OPTIONS; k++)
            if (strlen(run_options[k].name) == len && !strncmp(run_options[k].name, name, len))
                opt = &run_options[k];
        if (!opt)
            return ferry_error_set(err, -EINVAL, "unknown option '%.*s'", (int)len + 2, a);
        const char *value = NULL;
        if (opt->arg) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return ferry_error_set(err, -EINVAL, "--%s needs a value (%s)", opt->name,
                                       opt->arg);
        } else if (eq) {
            return ferry_error_set(err, -EINVAL, "--%s takes no value", opt->name);
        }
        int r = opt->parse(o, value, err);
        if (r < 0)
            return r;
    }
    if (!!o->boot_sector == !!o->firmware)
        return ferry_error_set(err, -EINVAL, "give exactly one of --boot-sector and --firmware");
    return 0;
}

typedef struct RunCtx {
    int event_fd;
    pthread_mutex_t lock;
    char msg[256];
    int failed;
} RunCtx;

static void notify(RunCtx *c, const char *msg, int failed)
{
    pthread_mutex_lock(&c->lock);
    if (!c->msg[0]) { /* keep the first reason */
        snprintf(c->msg, sizeof(c->msg), "%s", msg);
        c->failed = failed;
    }
    pthread_mutex_unlock(&c->lock);
    uint64_t one = 1;
    if (write(c->event_fd, &one, sizeof(one)) < 0) {
        /* eventfd counter overflow is impossible here; nothing better to do */
    }
}

static void on_vcpu_event(void *opaque, FerryVcpu *v, FerryVcpuEvent ev, const char *msg)
{
    (void)v;
    notify(opaque, msg, ev == FERRY_VCPU_EVENT_ERROR);
}

static void on_debug_exit(void *opaque, uint16_t off, unsigned size, uint32_t value)
{
    (void)off;
    (void)size;
    char msg[64];
    snprintf(msg, sizeof(msg), "guest powered off (port 0x%x value 0x%x)", DEBUG_EXIT_PORT, value);
    notify(opaque, msg, 0);
}

static int host_ram_check(uint64_t want, FerryError *err)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0 && want > (uint64_t)pages * (uint64_t)psize)
        return ferry_error_set(err, -ENOMEM,
                               "--memory %llu MiB: more than the host's %llu MiB "
                               "of RAM",
                               (unsigned long long)(want >> 20),
                               (unsigned long long)((uint64_t)pages * psize >> 20));
    return 0;
}

static int open_serial(const char *spec, int *close_me, FerryError *err)
{
    *close_me = -1;
    if (!strcmp(spec, "stdio"))
        return STDOUT_FILENO;
    const char *path = !strcmp(spec, "none") ? "/dev/null" : spec;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ferry_error_set(err, -errno, "--serial %s: cannot open: %s", spec, strerror(errno));
    *close_me = fd;
    return fd;
}

static int run_vm(const RunOptions *o, FerryError *err)
{
    int r = host_ram_check(o->memory, err);
    if (r < 0)
        return r;
    RunCtx ctx = {.event_fd = -1};
    pthread_mutex_init(&ctx.lock, NULL);
    /* SIGINT/SIGTERM are taken through a signalfd; block them before any vCPU thread exists so
     * every thread inherits the mask and the signal reaches this loop. */
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, &old);
    int sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    ctx.event_fd = eventfd(0, EFD_CLOEXEC);
    if (sig_fd < 0 || ctx.event_fd < 0) {
        r = ferry_error_set(err, -errno, "run: signalfd/eventfd: %s", strerror(errno));
        goto out_fds;
    }
    int close_serial;
    int out_fd = open_serial(o->serial, &close_serial, err);
    if (out_fd < 0) {
        r = out_fd;
        goto out_fds;
    }
    FerryVmConfig cfg = {.ram_size = o->memory, .pit = true};
    FerryVm *vm = ferry_vm_create(&cfg, err);
    if (!vm) {
        r = err->code;
        goto out_serial_fd;
    }
    const FerryVmCaps *caps = ferry_vm_caps(vm);
    if (o->maxcpus > (unsigned)caps->max_vcpus) {
        r = ferry_error_set(err, -EINVAL, "--smp: maxcpus=%u exceeds KVM's limit of %d", o->maxcpus,
                            caps->max_vcpus);
        goto out_vm;
    }
    FerryVcpus *vcpus = ferry_vcpus_create(vm, on_vcpu_event, &ctx, err);
    if (!vcpus) {
        r = err->code;
        goto out_vm;
    }
    FerrySerial *serial =
        ferry_serial_create(vm, FERRY_SERIAL_COM1_BASE, FERRY_SERIAL_COM1_IRQ, out_fd, err);
    if (!serial) {
        r = err->code;
        goto out_vcpus;
    }
    r = ferry_pio_bus_register(ferry_vm_pio_bus(vm), DEBUG_EXIT_PORT, 1, "debug-exit", NULL,
                               on_debug_exit, &ctx, err);
    if (r < 0)
        goto out_serial;
    for (unsigned i = 0; i < o->smp; i++) {
        /* APs (i > 0) wait for INIT/SIPI from the guest in the in-kernel LAPIC. */
        FerryVcpu *v = ferry_vcpus_add(vcpus, i, err);
        if (!v) {
            r = err->code;
            goto out_serial;
        }
        if (i == 0) {
            r = o->boot_sector ? ferry_boot_sector(vm, v, o->boot_sector, err)
                               : ferry_boot_flat64(vm, v, o->firmware, err);
            if (r < 0)
                goto out_serial;
        }
        ferry_vcpu_start(v);
    }
    ferry_vcpus_resume(vcpus);
    for (;;) {
        struct pollfd p[2] = {{.fd = sig_fd, .events = POLLIN},
                              {.fd = ctx.event_fd, .events = POLLIN}};
        int n = poll(p, 2, 100);
        ferry_serial_flush(serial, NULL); /* show output that has no newline yet */
        if (n < 0 && errno != EINTR) {
            r = ferry_error_set(err, -errno, "run: poll: %s", strerror(errno));
            break;
        }
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
                fprintf(stderr, "ferry run: terminating on signal %s\n",
                        sigabbrev_np((int)si.ssi_signo));
            break;
        }
        if (p[1].revents & POLLIN) {
            pthread_mutex_lock(&ctx.lock);
            if (ctx.failed)
                r = ferry_error_set(err, -EIO, "%s", ctx.msg);
            else
                fprintf(stderr, "ferry run: %s\n", ctx.msg);
            pthread_mutex_unlock(&ctx.lock);
            break;
        }
    }
    ferry_vcpus_pause(vcpus);
out_serial:
    ferry_vcpus_destroy(vcpus); /* before the serial: no vCPU may still touch it */
    vcpus = NULL;
    ferry_serial_destroy(serial);
out_vcpus:
    ferry_vcpus_destroy(vcpus);
out_vm:
    ferry_vm_destroy(vm);
out_serial_fd:
    if (close_serial >= 0)
        close(close_serial);
out_fds:
    if (sig_fd >= 0)
        close(sig_fd);
    if (ctx.event_fd >= 0)
        close(ctx.event_fd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_destroy(&ctx.lock);
    return r;
}

static int run_run(int argc, char **argv)
{
    RunOptions o = {.memory = 128ULL << 20, .smp = 1, .maxcpus = 1, .serial = "stdio"};
    FerryError err = {0};
    int r = parse_args(argc, argv, &o, &err);
    if (r == 1) {
        usage(stdout);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "ferry run: %s\n", err.msg);
        fprintf(stderr, "'ferry run --help' lists the options.\n");
        return 2;
    }
    if (run_vm(&o, &err) < 0) {
        fprintf(stderr, "ferry run: %s\n", err.msg);
        return 1;
    }
    return 0;
}

const FerryCommand ferry_cmd_run = {"run", "run a VM on KVM (boot sector or flat firmware)",
                                    run_run};
