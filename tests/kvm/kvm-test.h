/* Shared helpers of the KVM tests: skip loudly without /dev/kvm, build a VM with one vCPU and a
 * serial port whose output lands in a memfd, and wait (bounded) for guest output. */
#ifndef FERRY_TESTS_KVM_TEST_H
#define FERRY_TESTS_KVM_TEST_H

#include "ferry/vmm/boot.h"
#include "ferry/vmm/serial.h"
#include "ferry/vmm/vcpu.h"
#include "ferry/vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KT_SKIP 77

static inline void kt_require_kvm(const char *test)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        fprintf(stderr,
                "\n*** SKIPPED %s: /dev/kvm is not usable (%s); KVM tests did NOT run "
                "***\n\n",
                test, strerror(errno));
        printf("SKIPPED: /dev/kvm not usable: %s\n", strerror(errno));
        exit(KT_SKIP);
    }
}

static inline void kt_die(const char *what, const FerryError *err)
{
    fprintf(stderr, "FATAL %s: %s\n", what, err ? err->msg : "");
    abort();
}

typedef struct KtGuest {
    FerryVm *vm;
    FerryVcpus *vcpus;
    FerryVcpu *bsp;
    FerrySerial *serial;
    int out_fd; /* memfd collecting serial output */
    int events; /* shutdown/error events seen */
    char last_event[256];
} KtGuest;

static inline void kt_on_event(void *opaque, FerryVcpu *v, FerryVcpuEvent ev, const char *msg)
{
    (void)v;
    KtGuest *g = opaque;
    snprintf(g->last_event, sizeof(g->last_event), "%d: %s", (int)ev, msg);
    __atomic_add_fetch(&g->events, 1, __ATOMIC_SEQ_CST);
}

/* Create VM + vCPU 0 + COM1; serial output goes to a fresh memfd unless out_fd >= 0. */
static inline void kt_guest_init(KtGuest *g, uint64_t ram, int out_fd)
{
    FerryError err = {0};
    memset(g, 0, sizeof(*g));
    FerryVmConfig cfg = {.ram_size = ram, .pit = true};
    g->vm = ferry_vm_create(&cfg, &err);
    if (!g->vm)
        kt_die("ferry_vm_create", &err);
    g->vcpus = ferry_vcpus_create(g->vm, kt_on_event, g, &err);
    if (!g->vcpus)
        kt_die("ferry_vcpus_create", &err);
    g->bsp = ferry_vcpus_add(g->vcpus, 0, &err);
    if (!g->bsp)
        kt_die("ferry_vcpus_add", &err);
    g->out_fd = out_fd >= 0 ? out_fd : memfd_create("serial", MFD_CLOEXEC);
    if (g->out_fd < 0)
        kt_die("memfd_create", NULL);
    g->serial =
        ferry_serial_create(g->vm, FERRY_SERIAL_COM1_BASE, FERRY_SERIAL_COM1_IRQ, g->out_fd, &err);
    if (!g->serial)
        kt_die("ferry_serial_create", &err);
}

/* Tear down everything but the output memfd (returned so output can be checked later). */
static inline int kt_guest_destroy_keep_output(KtGuest *g)
{
    ferry_vcpus_destroy(g->vcpus);
    ferry_serial_destroy(g->serial);
    ferry_vm_destroy(g->vm);
    int fd = g->out_fd;
    memset(g, 0, sizeof(*g));
    g->out_fd = -1;
    return fd;
}

static inline void kt_guest_destroy(KtGuest *g)
{
    int fd = kt_guest_destroy_keep_output(g);
    if (fd >= 0)
        close(fd);
}

/* Whole serial output so far, NUL-terminated (caller frees). */
static inline char *kt_output(KtGuest *g)
{
    ferry_serial_flush(g->serial, NULL);
    struct stat st;
    fstat(g->out_fd, &st);
    char *buf = calloc(1, (size_t)st.st_size + 1);
    if (pread(g->out_fd, buf, (size_t)st.st_size, 0) < 0)
        buf[0] = 0;
    return buf;
}

static inline size_t kt_count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static inline double kt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until the output holds at least `n` characters `c` (after the first `skip` bytes).
 * Returns the count reached; gives up after `timeout` seconds (the guest is slow here). */
static inline size_t kt_wait_chars(KtGuest *g, size_t skip, char c, size_t n, double timeout)
{
    double end = kt_now() + timeout;
    size_t got = 0;
    for (;;) {
        char *out = kt_output(g);
        got = strlen(out) > skip ? kt_count_char(out + skip, c) : 0;
        free(out);
        if (got >= n || kt_now() > end)
            return got;
        usleep(5000);
    }
}

static inline size_t kt_output_len(KtGuest *g)
{
    char *out = kt_output(g);
    size_t n = strlen(out);
    free(out);
    return n;
}

#endif
