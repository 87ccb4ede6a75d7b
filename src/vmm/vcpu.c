/* vCPU threads: each runs KVM_RUN in a loop and dispatches exits. Pause protocol: set the
 * flag, set immediate_exit and signal each thread; a thread parks only after KVM_RUN returned
 * EINTR, so any I/O exit has been completed by the kernel before state is read. */
#include "ferry/vmm/vcpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct FerryVcpu {
    FerryVcpus *set;
    uint32_t id;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    bool thread_started;
    /* Under set->lock: */
    bool started; /* ferry_vcpu_start called and no stopping event since */
    bool parked;  /* in the park loop (not in and not about to enter KVM_RUN) */
    bool quit;
    uint64_t exits;
};

struct FerryVcpus {
    FerryVm *vm;
    FerryVcpuEventFn event;
    void *opaque;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* any change of paused/started/parked/quit */
    bool paused;
    FerryVcpu **vcpus;
    unsigned count;
    struct kvm_cpuid2 *cpuid; /* host-supported CPUID, patched per vCPU */
};

static void kick_handler(int sig)
{
    (void)sig;
}

static int install_kick_handler(FerryError *err)
{
    struct sigaction sa = {.sa_handler = kick_handler}; /* no SA_RESTART: KVM_RUN must EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(FERRY_VCPU_KICK_SIGNAL, &sa, NULL) < 0)
        return ferry_error_set(err, -errno, "vCPUs: installing the kick signal handler: %s",
                               strerror(errno));
    return 0;
}

static struct kvm_cpuid2 *supported_cpuid(int kvm_fd, FerryError *err)
{
    for (unsigned n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
        if (!c) {
            ferry_error_set(err, -ENOMEM, "vCPUs: out of memory for CPUID");
            return NULL;
        }
        c->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        int e = errno;
        free(c);
        if (e != E2BIG) {
            ferry_error_set(err, -e, "vCPUs: KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
            return NULL;
        }
    }
    ferry_error_set(err, -E2BIG, "vCPUs: KVM_GET_SUPPORTED_CPUID: too many entries");
    return NULL;
}

FerryVcpus *ferry_vcpus_create(FerryVm *vm, FerryVcpuEventFn event, void *opaque, FerryError *err)
{
    if (install_kick_handler(err) < 0)
        return NULL;
    FerryVcpus *set = calloc(1, sizeof(*set));
    if (!set) {
        ferry_error_set(err, -ENOMEM, "vCPUs: out of memory");
        return NULL;
    }
    set->cpuid = supported_cpuid(ferry_vm_kvm_fd(vm), err);
    if (!set->cpuid) {
        free(set);
        return NULL;
    }
    set->vm = vm;
    set->event = event;
    set->opaque = opaque;
    set->paused = true;
    pthread_mutex_init(&set->lock, NULL);
    pthread_cond_init(&set->cond, NULL);
    return set;
}

/* Caller holds set->lock. */
static void kick(FerryVcpu *v)
{
    v->run->immediate_exit = 1;
    if (v->thread_started && !v->parked)
        pthread_kill(v->thread, FERRY_VCPU_KICK_SIGNAL);
}

/* Stop the vCPU after an event and tell the machine. Called on the vCPU thread, unlocked. */
static void stop_self(FerryVcpu *v, FerryVcpuEvent ev, const char *msg)
{
    FerryVcpus *set = v->set;
    pthread_mutex_lock(&set->lock);
    v->started = false;
    /* Out of KVM_RUN with nothing to complete: count as parked so the callback may pause. */
    v->parked = true;
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
    if (set->event)
        set->event(set->opaque, v, ev, msg);
}

static void handle_io(FerryVcpu *v)
{
    struct kvm_run *run = v->run;
    FerryPioBus *bus = ferry_vm_pio_bus(v->set->vm);
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    unsigned size = run->io.size;
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        uint32_t val = 0;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            memcpy(&val, data, size);
            ferry_pio_bus_write(bus, run->io.port, size, val);
        } else {
            ferry_pio_bus_read(bus, run->io.port, size, &val);
            memcpy(data, &val, size);
        }
    }
}

static const char *exit_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_FAIL_ENTRY:
        return "FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR:
        return "INTERNAL_ERROR";
    case KVM_EXIT_MMIO:
        return "MMIO";
    case KVM_EXIT_EXCEPTION:
        return "EXCEPTION";
    case KVM_EXIT_DEBUG:
        return "DEBUG";
    default:
        return "unknown";
    }
}

/* Returns true when the loop must re-enter KVM_RUN before parking (I/O completion). */
static bool handle_exit(FerryVcpu *v)
{
    struct kvm_run *run = v->run;
    char msg[256];
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        return true;
    case KVM_EXIT_INTR:
        return false;
    case KVM_EXIT_HLT:
        stop_self(v, FERRY_VCPU_EVENT_HALT, "guest halted");
        return false;
    case KVM_EXIT_SHUTDOWN:
        stop_self(v, FERRY_VCPU_EVENT_SHUTDOWN, "guest shutdown (triple fault)");
        return false;
    case KVM_EXIT_MMIO:
        snprintf(msg, sizeof(msg),
                 "vCPU %u: MMIO %s of %u bytes at 0x%llx: no device there (MMIO is not "
                 "supported)",
                 v->id, run->mmio.is_write ? "write" : "read", run->mmio.len,
                 (unsigned long long)run->mmio.phys_addr);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(msg, sizeof(msg),
                 "vCPU %u: KVM_RUN entry failed, hardware_entry_failure_reason 0x%llx on "
                 "host cpu %u (invalid guest state)",
                 v->id, (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
                 run->fail_entry.cpu);
        break;
    case KVM_EXIT_INTERNAL_ERROR: {
        int n = snprintf(msg, sizeof(msg), "vCPU %u: KVM internal error, suberror %u%s", v->id,
                         run->internal.suberror,
                         run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                             ? " (instruction emulation failed)"
                             : "");
        if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && run->internal.ndata >= 2 &&
            (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
            /* The bytes at RIP the emulator choked on: names the guest instruction. */
            unsigned len = run->emulation_failure.insn_size;
            n += snprintf(msg + n, sizeof(msg) - n, " at instruction bytes");
            for (unsigned i = 0; i < len && i < 15 && n < (int)sizeof(msg); i++)
                n += snprintf(msg + n, sizeof(msg) - n, " %02x",
                              run->emulation_failure.insn_bytes[i]);
        } else {
            for (uint32_t i = 0; i < run->internal.ndata && i < 4 && n < (int)sizeof(msg); i++)
                n += snprintf(msg + n, sizeof(msg) - n, " data[%u]=0x%llx", i,
                              (unsigned long long)run->internal.data[i]);
        }
        break;
    }
    default:
        snprintf(msg, sizeof(msg), "vCPU %u: unhandled KVM exit %u (%s)", v->id, run->exit_reason,
                 exit_name(run->exit_reason));
        break;
    }
    stop_self(v, FERRY_VCPU_EVENT_ERROR, msg);
    return false;
}

static void *vcpu_thread(void *arg)
{
    FerryVcpu *v = arg;
    FerryVcpus *set = v->set;
    bool complete = false; /* last exit needs KVM_RUN to complete it before parking */
    for (;;) {
        if (!complete) {
            pthread_mutex_lock(&set->lock);
            while (!v->quit && (set->paused || !v->started)) {
                if (!v->parked) {
                    v->parked = true;
                    pthread_cond_broadcast(&set->cond);
                }
                pthread_cond_wait(&set->cond, &set->lock);
            }
            if (v->quit) {
                v->parked = true;
                pthread_cond_broadcast(&set->cond);
                pthread_mutex_unlock(&set->lock);
                break;
            }
            /* Clearing under the lock: a pause after this sets it again before its kick. */
            v->parked = false;
            v->run->immediate_exit = 0;
            pthread_mutex_unlock(&set->lock);
        }
        int r = ioctl(v->fd, KVM_RUN, 0);
        int e = errno;
        __atomic_add_fetch(&v->exits, 1, __ATOMIC_RELAXED);
        complete = false;
        if (r < 0) {
            if (e == EINTR || e == EAGAIN)
                continue;
            char msg[128];
            snprintf(msg, sizeof(msg), "vCPU %u: KVM_RUN: %s", v->id, strerror(e));
            stop_self(v, FERRY_VCPU_EVENT_ERROR, msg);
            continue;
        }
        complete = handle_exit(v);
    }
    return NULL;
}

static int set_cpuid(FerryVcpus *set, FerryVcpu *v, FerryError *err)
{
    struct kvm_cpuid2 *c = set->cpuid;
    size_t sz = sizeof(*c) + c->nent * sizeof(c->entries[0]);
    struct kvm_cpuid2 *mine = malloc(sz);
    if (!mine)
        return ferry_error_set(err, -ENOMEM, "vCPU %u: out of memory for CPUID", v->id);
    memcpy(mine, c, sz);
    for (uint32_t i = 0; i < mine->nent; i++) {
        struct kvm_cpuid_entry2 *e = &mine->entries[i];
        if (e->function == 1) /* initial APIC id */
            e->ebx = (e->ebx & 0x00ffffffu) | (v->id << 24);
        if (e->function == 0xb || e->function == 0x1f) /* x2APIC id */
            e->edx = v->id;
    }
    int r = 0;
    if (ioctl(v->fd, KVM_SET_CPUID2, mine) < 0)
        r = ferry_error_set(err, -errno, "vCPU %u: KVM_SET_CPUID2: %s", v->id, strerror(errno));
    free(mine);
    return r;
}

FerryVcpu *ferry_vcpus_add(FerryVcpus *set, uint32_t id, FerryError *err)
{
    const FerryVmCaps *caps = ferry_vm_caps(set->vm);
    if (id >= (uint32_t)caps->max_vcpus) {
        ferry_error_set(err, -EINVAL, "vCPU %u: id above KVM's maximum of %d vCPUs", id,
                        caps->max_vcpus);
        return NULL;
    }
    pthread_mutex_lock(&set->lock);
    for (unsigned i = 0; i < set->count; i++) {
        if (set->vcpus[i]->id == id) {
            pthread_mutex_unlock(&set->lock);
            ferry_error_set(err, -EEXIST, "vCPU %u: already exists", id);
            return NULL;
        }
    }
    pthread_mutex_unlock(&set->lock);

    FerryVcpu *v = calloc(1, sizeof(*v));
    if (!v) {
        ferry_error_set(err, -ENOMEM, "vCPU %u: out of memory", id);
        return NULL;
    }
    v->set = set;
    v->id = id;
    v->parked = true;
    v->fd = ioctl(ferry_vm_fd(set->vm), KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        ferry_error_set(err, -errno, "vCPU %u: KVM_CREATE_VCPU: %s", id, strerror(errno));
        goto err_free_vcpu;
    }
    int sz = ioctl(ferry_vm_kvm_fd(set->vm), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz < (int)sizeof(struct kvm_run)) {
        ferry_error_set(err, -EINVAL, "vCPU %u: KVM_GET_VCPU_MMAP_SIZE returned %d", id, sz);
        goto err_close_fd;
    }
    v->run_size = (size_t)sz;
    v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        ferry_error_set(err, -errno, "vCPU %u: mapping kvm_run: %s", id, strerror(errno));
        goto err_close_fd;
    }
    if (set_cpuid(set, v, err) < 0)
        goto err_unmap_run;

    pthread_mutex_lock(&set->lock);
    FerryVcpu **n = realloc(set->vcpus, (set->count + 1) * sizeof(*n));
    if (!n) {
        pthread_mutex_unlock(&set->lock);
        ferry_error_set(err, -ENOMEM, "vCPU %u: out of memory", id);
        goto err_unmap_run;
    }
    set->vcpus = n;
    int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (r) {
        pthread_mutex_unlock(&set->lock);
        ferry_error_set(err, -r, "vCPU %u: creating its thread: %s", id, strerror(r));
        goto err_unmap_run;
    }
    v->thread_started = true;
    char name[16];
    snprintf(name, sizeof(name), "ferry-vcpu%u", id);
    pthread_setname_np(v->thread, name);
    set->vcpus[set->count++] = v;
    pthread_mutex_unlock(&set->lock);
    return v;

err_unmap_run:
    munmap(v->run, v->run_size);
err_close_fd:
    close(v->fd);
err_free_vcpu:
    free(v);
    return NULL;
}

void ferry_vcpu_start(FerryVcpu *v)
{
    FerryVcpus *set = v->set;
    pthread_mutex_lock(&set->lock);
    v->started = true;
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
}

void ferry_vcpu_stop(FerryVcpu *v)
{
    FerryVcpus *set = v->set;
    pthread_mutex_lock(&set->lock);
    v->started = false;
    kick(v);
    while (!v->parked)
        pthread_cond_wait(&set->cond, &set->lock);
    pthread_mutex_unlock(&set->lock);
}

bool ferry_vcpu_started(const FerryVcpu *v)
{
    FerryVcpus *set = v->set;
    pthread_mutex_lock(&set->lock);
    bool s = v->started;
    pthread_mutex_unlock(&set->lock);
    return s;
}

static bool all_parked(const FerryVcpus *set)
{
    for (unsigned i = 0; i < set->count; i++)
        if (!set->vcpus[i]->parked)
            return false;
    return true;
}

void ferry_vcpus_pause(FerryVcpus *set)
{
    pthread_mutex_lock(&set->lock);
    set->paused = true;
    for (unsigned i = 0; i < set->count; i++)
        kick(set->vcpus[i]);
    while (!all_parked(set))
        pthread_cond_wait(&set->cond, &set->lock);
    pthread_mutex_unlock(&set->lock);
}

void ferry_vcpus_resume(FerryVcpus *set)
{
    pthread_mutex_lock(&set->lock);
    set->paused = false;
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
}

bool ferry_vcpus_paused(const FerryVcpus *set)
{
    FerryVcpus *s = (FerryVcpus *)set;
    pthread_mutex_lock(&s->lock);
    bool p = s->paused;
    pthread_mutex_unlock(&s->lock);
    return p;
}

void ferry_vcpus_destroy(FerryVcpus *set)
{
    if (!set)
        return;
    pthread_mutex_lock(&set->lock);
    for (unsigned i = 0; i < set->count; i++) {
        set->vcpus[i]->quit = true;
        kick(set->vcpus[i]);
    }
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
    for (unsigned i = 0; i < set->count; i++) {
        FerryVcpu *v = set->vcpus[i];
        pthread_join(v->thread, NULL);
        munmap(v->run, v->run_size);
        close(v->fd);
        free(v);
    }
    free(set->vcpus);
    free(set->cpuid);
    pthread_cond_destroy(&set->cond);
    pthread_mutex_destroy(&set->lock);
    free(set);
}

unsigned ferry_vcpus_count(const FerryVcpus *set)
{
    FerryVcpus *s = (FerryVcpus *)set;
    pthread_mutex_lock(&s->lock);
    unsigned n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

FerryVcpu *ferry_vcpus_get(FerryVcpus *set, unsigned index)
{
    pthread_mutex_lock(&set->lock);
    FerryVcpu *v = index < set->count ? set->vcpus[index] : NULL;
    pthread_mutex_unlock(&set->lock);
    return v;
}

uint32_t ferry_vcpu_id(const FerryVcpu *vcpu)
{
    return vcpu->id;
}
int ferry_vcpu_fd(const FerryVcpu *vcpu)
{
    return vcpu->fd;
}
FerryVm *ferry_vcpu_vm(const FerryVcpu *vcpu)
{
    return vcpu->set->vm;
}
uint64_t ferry_vcpu_exit_count(const FerryVcpu *vcpu)
{
    return __atomic_load_n(&vcpu->exits, __ATOMIC_RELAXED);
}
