/* FerryVm: opens /dev/kvm, probes capabilities, creates the VM with its in-kernel irqchip and
 * boot RAM, and manages memslots and their dirty logs for the migration engine. */
#include "ferry/vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct VmSlot {
    bool used;
    bool boot; /* part of the boot RAM (not removable) */
    uint64_t gpa, size;
    uint8_t *host;
} VmSlot;

struct FerryVm {
    int kvm_fd;
    int vm_fd;
    FerryVmCaps caps;
    FerryPioBus *pio;
    uint64_t ram_size;
    bool dirty_logging;
    VmSlot *slots; /* indexed by KVM slot id */
    size_t nslots;
};

static int check_ext(int fd, long cap)
{
    int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

static int open_kvm(const char *path, FerryError *err)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return ferry_error_set(err, -e,
                                   "%s: no such device: KVM is not available (kvm module not "
                                   "loaded, or no hardware/nested virtualisation)",
                                   path);
        if (e == EACCES || e == EPERM)
            return ferry_error_set(err, -e,
                                   "%s: permission denied: add the user to the 'kvm' group or "
                                   "run with access to the device",
                                   path);
        return ferry_error_set(err, -e, "%s: cannot open: %s", path, strerror(e));
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version < 0) {
        int e = errno;
        close(fd);
        return ferry_error_set(err, -ENODEV, "%s: not a KVM device (KVM_GET_API_VERSION: %s)", path,
                               strerror(e));
    }
    if (version != KVM_API_VERSION) {
        close(fd);
        return ferry_error_set(err, -EPROTO, "%s: KVM API version %d, Ferry needs %d", path,
                               version, KVM_API_VERSION);
    }
    return fd;
}

static int set_slot(FerryVm *vm, uint32_t id, const VmSlot *s, bool log, FerryError *err)
{
    struct kvm_userspace_memory_region r = {
        .slot = id,
        .flags = log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = s->gpa,
        .memory_size = s->used ? s->size : 0,
        .userspace_addr = (uintptr_t)s->host,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return ferry_error_set(
            err, -errno, "memslot %u [0x%llx, 0x%llx): KVM_SET_USER_MEMORY_REGION: %s", id,
            (unsigned long long)s->gpa, (unsigned long long)(s->gpa + s->size), strerror(errno));
    return 0;
}

static bool overlaps(const FerryVm *vm, uint64_t gpa, uint64_t size)
{
    for (size_t i = 0; i < vm->nslots; i++) {
        const VmSlot *s = &vm->slots[i];
        if (s->used && gpa < s->gpa + s->size && s->gpa < gpa + size)
            return true;
    }
    return false;
}

static int slot_add(FerryVm *vm, uint64_t gpa, uint64_t size, bool boot, uint32_t *out,
                    FerryError *err)
{
    if (!size || size % FERRY_VM_PAGE_SIZE || gpa % FERRY_VM_PAGE_SIZE)
        return ferry_error_set(err, -EINVAL,
                               "RAM block at 0x%llx size 0x%llx: must be non-empty and 4 KiB "
                               "aligned",
                               (unsigned long long)gpa, (unsigned long long)size);
    if (gpa + size < gpa || overlaps(vm, gpa, size))
        return ferry_error_set(err, -EEXIST,
                               "RAM block [0x%llx, 0x%llx): overlaps an existing block",
                               (unsigned long long)gpa, (unsigned long long)(gpa + size));
    size_t id = 0;
    while (id < vm->nslots && vm->slots[id].used)
        id++;
    if (id >= (size_t)vm->caps.nr_memslots)
        return ferry_error_set(err, -ENOSPC, "RAM block at 0x%llx: all %d KVM memslots in use",
                               (unsigned long long)gpa, vm->caps.nr_memslots);
    if (id == vm->nslots) {
        VmSlot *n = realloc(vm->slots, (vm->nslots + 1) * sizeof(*n));
        if (!n)
            return ferry_error_set(err, -ENOMEM, "RAM block: out of memory");
        vm->slots = n;
        memset(&vm->slots[vm->nslots++], 0, sizeof(*n));
    }
    void *host = mmap(NULL, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED)
        return ferry_error_set(err, -errno, "RAM block at 0x%llx: cannot map %llu MiB: %s",
                               (unsigned long long)gpa, (unsigned long long)(size >> 20),
                               strerror(errno));
    /* Transparent huge pages cut TLB and fault costs; KVM still logs dirt at 4 KiB. Failure
     * (THP disabled) is harmless. */
    (void)madvise(host, size, MADV_HUGEPAGE);
    VmSlot *s = &vm->slots[id];
    *s = (VmSlot){.used = true, .boot = boot, .gpa = gpa, .size = size, .host = host};
    int r = set_slot(vm, (uint32_t)id, s, vm->dirty_logging, err);
    if (r < 0) {
        munmap(host, size);
        memset(s, 0, sizeof(*s));
        return r;
    }
    if (out)
        *out = (uint32_t)id;
    return 0;
}

static void probe_caps(FerryVm *vm)
{
    FerryVmCaps *c = &vm->caps;
    int k = vm->kvm_fd;
    c->api_version = KVM_API_VERSION;
    c->nr_vcpus = check_ext(k, KVM_CAP_NR_VCPUS);
    c->max_vcpus = check_ext(k, KVM_CAP_MAX_VCPUS);
    if (!c->max_vcpus)
        c->max_vcpus = c->nr_vcpus ? c->nr_vcpus : 4;
    c->nr_memslots = check_ext(k, KVM_CAP_NR_MEMSLOTS);
    if (!c->nr_memslots)
        c->nr_memslots = 32;
    c->xsave = check_ext(k, KVM_CAP_XSAVE);
    c->xcrs = check_ext(k, KVM_CAP_XCRS);
    c->vcpu_events = check_ext(k, KVM_CAP_VCPU_EVENTS);
    c->debugregs = check_ext(k, KVM_CAP_DEBUGREGS);
    c->pit2 = check_ext(k, KVM_CAP_PIT2) && check_ext(k, KVM_CAP_PIT_STATE2);
    c->adjust_clock = check_ext(k, KVM_CAP_ADJUST_CLOCK);
    c->immediate_exit = check_ext(k, KVM_CAP_IMMEDIATE_EXIT);
    /* The XSAVE2 size is a property of the VM (it depends on enabled features). */
    c->xsave2_size = check_ext(vm->vm_fd, KVM_CAP_XSAVE2);
}

FerryVm *ferry_vm_create(const FerryVmConfig *cfg, FerryError *err)
{
    const char *path = cfg->kvm_path ? cfg->kvm_path : "/dev/kvm";
    if (!cfg->ram_size || cfg->ram_size % FERRY_VM_PAGE_SIZE) {
        ferry_error_set(err, -EINVAL, "VM: RAM size %llu is not a positive multiple of 4 KiB",
                        (unsigned long long)cfg->ram_size);
        return NULL;
    }
    FerryVm *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        ferry_error_set(err, -ENOMEM, "VM: out of memory");
        return NULL;
    }
    vm->vm_fd = -1;
    vm->ram_size = cfg->ram_size;
    vm->kvm_fd = open_kvm(path, err);
    if (vm->kvm_fd < 0)
        goto err_free_vm;
    if (!check_ext(vm->kvm_fd, KVM_CAP_IRQCHIP) || !check_ext(vm->kvm_fd, KVM_CAP_USER_MEMORY) ||
        !check_ext(vm->kvm_fd, KVM_CAP_IMMEDIATE_EXIT)) {
        ferry_error_set(err, -ENOTSUP,
                        "%s: KVM lacks a required capability (IRQCHIP, USER_MEMORY, "
                        "IMMEDIATE_EXIT)",
                        path);
        goto err_close_kvm;
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        ferry_error_set(err, -errno, "%s: KVM_CREATE_VM: %s", path, strerror(errno));
        goto err_close_kvm;
    }
    probe_caps(vm);
    /* The TSS and identity map live in the hole below 4 GiB where no RAM is placed. Needed by
     * VMX without unrestricted guest; harmless elsewhere. */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)FERRY_VM_TSS_ADDR) < 0) {
        ferry_error_set(err, -errno, "VM: KVM_SET_TSS_ADDR 0x%llx: %s", FERRY_VM_TSS_ADDR,
                        strerror(errno));
        goto err_close_vm;
    }
    if (check_ext(vm->kvm_fd, KVM_CAP_SET_IDENTITY_MAP_ADDR)) {
        uint64_t addr = FERRY_VM_IDENTITY_MAP_ADDR;
        if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
            ferry_error_set(err, -errno, "VM: KVM_SET_IDENTITY_MAP_ADDR 0x%llx: %s",
                            (unsigned long long)addr, strerror(errno));
            goto err_close_vm;
        }
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        ferry_error_set(err, -errno, "VM: KVM_CREATE_IRQCHIP: %s", strerror(errno));
        goto err_close_vm;
    }
    if (cfg->pit) {
        if (!vm->caps.pit2) {
            ferry_error_set(err, -ENOTSUP, "VM: PIT requested but KVM lacks KVM_CAP_PIT2");
            goto err_close_vm;
        }
        struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
        if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
            ferry_error_set(err, -errno, "VM: KVM_CREATE_PIT2: %s", strerror(errno));
            goto err_close_vm;
        }
    }
    if (check_ext(vm->kvm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)) {
        struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                                     .args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE};
        vm->caps.manual_dirty_log = ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) == 0;
    }
    vm->pio = ferry_pio_bus_create(err);
    if (!vm->pio)
        goto err_close_vm;
    uint64_t low = cfg->ram_size < FERRY_VM_LOW_RAM_MAX ? cfg->ram_size : FERRY_VM_LOW_RAM_MAX;
    if (slot_add(vm, 0, low, true, NULL, err) < 0)
        goto err_free_ram;
    if (cfg->ram_size > low &&
        slot_add(vm, FERRY_VM_HIGH_RAM_BASE, cfg->ram_size - low, true, NULL, err) < 0)
        goto err_free_ram;
    return vm;

err_free_ram:
    for (size_t i = 0; i < vm->nslots; i++)
        if (vm->slots[i].used)
            munmap(vm->slots[i].host, vm->slots[i].size);
    free(vm->slots);
    ferry_pio_bus_destroy(vm->pio);
err_close_vm:
    close(vm->vm_fd);
err_close_kvm:
    close(vm->kvm_fd);
err_free_vm:
    free(vm);
    return NULL;
}

void ferry_vm_destroy(FerryVm *vm)
{
    if (!vm)
        return;
    close(vm->vm_fd); /* drops KVM's references to the memory before we unmap it */
    for (size_t i = 0; i < vm->nslots; i++)
        if (vm->slots[i].used)
            munmap(vm->slots[i].host, vm->slots[i].size);
    free(vm->slots);
    ferry_pio_bus_destroy(vm->pio);
    close(vm->kvm_fd);
    free(vm);
}

const FerryVmCaps *ferry_vm_caps(const FerryVm *vm)
{
    return &vm->caps;
}
int ferry_vm_fd(const FerryVm *vm)
{
    return vm->vm_fd;
}
int ferry_vm_kvm_fd(const FerryVm *vm)
{
    return vm->kvm_fd;
}
FerryPioBus *ferry_vm_pio_bus(FerryVm *vm)
{
    return vm->pio;
}
uint64_t ferry_vm_ram_size(const FerryVm *vm)
{
    return vm->ram_size;
}

size_t ferry_vm_ram_count(const FerryVm *vm)
{
    size_t n = 0;
    for (size_t i = 0; i < vm->nslots; i++)
        n += vm->slots[i].used;
    return n;
}

int ferry_vm_ram_block(const FerryVm *vm, size_t index, FerryRamBlock *out, FerryError *err)
{
    for (size_t i = 0; i < vm->nslots; i++) {
        const VmSlot *s = &vm->slots[i];
        if (!s->used)
            continue;
        if (index-- == 0) {
            *out = (FerryRamBlock){
                .slot = (uint32_t)i, .gpa = s->gpa, .size = s->size, .host = s->host};
            return 0;
        }
    }
    return ferry_error_set(err, -ENOENT, "RAM block index out of range");
}

void *ferry_vm_gpa_to_host(const FerryVm *vm, uint64_t gpa, uint64_t len)
{
    for (size_t i = 0; i < vm->nslots; i++) {
        const VmSlot *s = &vm->slots[i];
        if (s->used && gpa >= s->gpa && len <= s->size && gpa - s->gpa <= s->size - len)
            return s->host + (gpa - s->gpa);
    }
    return NULL;
}

int ferry_vm_ram_add(FerryVm *vm, uint64_t gpa, uint64_t size, uint32_t *slot, FerryError *err)
{
    return slot_add(vm, gpa, size, false, slot, err);
}

static int find_slot(FerryVm *vm, uint32_t slot, VmSlot **out, FerryError *err)
{
    if (slot >= vm->nslots || !vm->slots[slot].used)
        return ferry_error_set(err, -ENOENT, "memslot %u: no such RAM block", slot);
    *out = &vm->slots[slot];
    return 0;
}

int ferry_vm_ram_remove(FerryVm *vm, uint32_t slot, FerryError *err)
{
    VmSlot *s = NULL;
    int r = find_slot(vm, slot, &s, err);
    if (r < 0)
        return r;
    if (s->boot)
        return ferry_error_set(err, -EPERM, "memslot %u: boot RAM cannot be removed", slot);
    VmSlot gone = *s;
    gone.used = false;
    r = set_slot(vm, slot, &gone, false, err);
    if (r < 0)
        return r;
    munmap(s->host, s->size);
    memset(s, 0, sizeof(*s));
    return 0;
}

static int dirty_log_set(FerryVm *vm, bool on, FerryError *err)
{
    for (size_t i = 0; i < vm->nslots; i++) {
        if (!vm->slots[i].used)
            continue;
        int r = set_slot(vm, (uint32_t)i, &vm->slots[i], on, err);
        if (r < 0) {
            ferry_error_prefix(err, "dirty log %s: ", on ? "start" : "stop");
            for (size_t j = 0; j < i; j++) /* roll back so all slots agree */
                if (vm->slots[j].used)
                    set_slot(vm, (uint32_t)j, &vm->slots[j], !on, NULL);
            return r;
        }
    }
    vm->dirty_logging = on;
    return 0;
}

int ferry_vm_dirty_log_start(FerryVm *vm, FerryError *err)
{
    return vm->dirty_logging ? 0 : dirty_log_set(vm, true, err);
}

int ferry_vm_dirty_log_stop(FerryVm *vm, FerryError *err)
{
    return vm->dirty_logging ? dirty_log_set(vm, false, err) : 0;
}

bool ferry_vm_dirty_log_active(const FerryVm *vm)
{
    return vm->dirty_logging;
}

size_t ferry_vm_dirty_bitmap_size(uint64_t block_size)
{
    uint64_t pages = (block_size + FERRY_VM_PAGE_SIZE - 1) / FERRY_VM_PAGE_SIZE;
    return (size_t)((pages + 63) / 64 * 8);
}

int ferry_vm_dirty_log_fetch(FerryVm *vm, uint32_t slot, uint64_t *bitmap, size_t bitmap_size,
                             FerryError *err)
{
    VmSlot *s = NULL;
    int r = find_slot(vm, slot, &s, err);
    if (r < 0)
        return r;
    if (!vm->dirty_logging)
        return ferry_error_set(err, -EINVAL, "memslot %u: dirty logging is not active", slot);
    size_t need = ferry_vm_dirty_bitmap_size(s->size);
    if (bitmap_size < need)
        return ferry_error_set(err, -EINVAL, "memslot %u: dirty bitmap of %zu bytes, need %zu",
                               slot, bitmap_size, need);
    memset(bitmap, 0, need);
    struct kvm_dirty_log log = {.slot = slot, .dirty_bitmap = bitmap};
    if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
        return ferry_error_set(err, -errno, "memslot %u: KVM_GET_DIRTY_LOG: %s", slot,
                               strerror(errno));
    if (!vm->caps.manual_dirty_log)
        return 0; /* KVM_GET_DIRTY_LOG already reset and re-protected the pages */
    /* Manual protection: re-protect exactly the reported pages, before the caller copies
     * them, so a write racing with the copy is reported by the next fetch. */
    uint64_t pages = s->size / FERRY_VM_PAGE_SIZE;
    struct kvm_clear_dirty_log clear = {
        .slot = slot, .first_page = 0, .num_pages = (uint32_t)pages, .dirty_bitmap = bitmap};
    if (pages > UINT32_MAX)
        return ferry_error_set(err, -E2BIG, "memslot %u: too many pages to clear", slot);
    if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0)
        return ferry_error_set(err, -errno, "memslot %u: KVM_CLEAR_DIRTY_LOG: %s", slot,
                               strerror(errno));
    return 0;
}

int ferry_vm_set_irq(FerryVm *vm, uint32_t gsi, bool level, FerryError *err)
{
    struct kvm_irq_level irq = {.irq = gsi, .level = level};
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        return ferry_error_set(err, -errno, "IRQ line %u: KVM_IRQ_LINE: %s", gsi, strerror(errno));
    return 0;
}
