/* Direct boot: real-mode boot sector at 0x7c00, or flat 64-bit image entered in long mode on
 * VMM-built identity page tables (2 MiB pages over the first 4 GiB) and a three-entry GDT. */
#include "ferry/vmm/boot.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define CR0_PE         0x1ULL
#define CR0_MP         0x2ULL
#define CR0_ET         0x10ULL
#define CR0_NE         0x20ULL
#define CR0_PG         0x80000000ULL
#define CR4_PAE        0x20ULL
#define CR4_OSFXSR     0x200ULL
#define CR4_OSXMMEXCPT 0x400ULL
#define EFER_LME       0x100ULL
#define EFER_LMA       0x400ULL
#define PDPT_ADDR      (FERRY_BOOT_PML4_ADDR + 0x1000)
#define PD_ADDR        (FERRY_BOOT_PML4_ADDR + 0x2000)
#define TSS_SEL        0x18

/* Read a whole regular file into a malloc'ed buffer (caller frees). */
static int read_file(const char *path, uint8_t **out, size_t *len, size_t max, FerryError *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ferry_error_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0) {
        r = ferry_error_set(err, -errno, "%s: stat: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        r = ferry_error_set(err, -EINVAL, "%s: not a regular file", path);
        goto out_close;
    }
    if ((uint64_t)st.st_size > max) {
        r = ferry_error_set(err, -EFBIG, "%s: %lld bytes, at most %zu fit", path,
                            (long long)st.st_size, max);
        goto out_close;
    }
    uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        r = ferry_error_set(err, -ENOMEM, "%s: out of memory", path);
        goto out_close;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            r = ferry_error_set(err, n < 0 ? -errno : -EIO, "%s: read failed at offset %zu%s%s",
                                path, got, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            free(buf);
            goto out_close;
        }
        got += (size_t)n;
    }
    *out = buf;
    *len = got;
out_close:
    close(fd);
    return r;
}

static int get_sregs(FerryVcpu *v, struct kvm_sregs *s, FerryError *err)
{
    if (ioctl(ferry_vcpu_fd(v), KVM_GET_SREGS, s) < 0)
        return ferry_error_set(err, -errno, "vCPU %u: KVM_GET_SREGS: %s", ferry_vcpu_id(v),
                               strerror(errno));
    return 0;
}

static int set_sregs_regs(FerryVcpu *v, struct kvm_sregs *s, struct kvm_regs *r, FerryError *err)
{
    if (ioctl(ferry_vcpu_fd(v), KVM_SET_SREGS, s) < 0)
        return ferry_error_set(err, -errno, "vCPU %u: KVM_SET_SREGS: %s", ferry_vcpu_id(v),
                               strerror(errno));
    if (ioctl(ferry_vcpu_fd(v), KVM_SET_REGS, r) < 0)
        return ferry_error_set(err, -errno, "vCPU %u: KVM_SET_REGS: %s", ferry_vcpu_id(v),
                               strerror(errno));
    return 0;
}

static void real_seg(struct kvm_segment *seg, uint16_t sel, uint32_t base)
{
    seg->selector = sel;
    seg->base = base;
    seg->limit = 0xffff;
}

static int real_mode(FerryVcpu *v, uint32_t cs_base, uint16_t ip, uint64_t rdx, FerryError *err)
{
    struct kvm_sregs s;
    int r = get_sregs(v, &s, err);
    if (r < 0)
        return r;
    /* Reset state already describes real mode; only CS (0xf000:fff0 at reset) and the data
     * segments' bases need pointing at the boot code. */
    real_seg(&s.cs, (uint16_t)(cs_base >> 4), cs_base);
    real_seg(&s.ds, 0, 0);
    real_seg(&s.es, 0, 0);
    real_seg(&s.fs, 0, 0);
    real_seg(&s.gs, 0, 0);
    real_seg(&s.ss, 0, 0);
    struct kvm_regs regs = {.rip = ip, .rflags = 0x2, .rdx = rdx};
    r = set_sregs_regs(v, &s, &regs, err);
    if (r < 0)
        return r;
    /* APs start in wait-for-SIPI; make the vCPU runnable at the given address. */
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    if (ioctl(ferry_vcpu_fd(v), KVM_SET_MP_STATE, &mp) < 0)
        return ferry_error_set(err, -errno, "vCPU %u: KVM_SET_MP_STATE: %s", ferry_vcpu_id(v),
                               strerror(errno));
    return 0;
}

int ferry_boot_real_mode(FerryVcpu *vcpu, uint32_t cs_base, uint16_t ip, FerryError *err)
{
    if (cs_base & 0xf || cs_base > 0xffff0)
        return ferry_error_set(err, -EINVAL, "vCPU %u: real-mode CS base 0x%x not a paragraph",
                               ferry_vcpu_id(vcpu), cs_base);
    return real_mode(vcpu, cs_base, ip, 0, err);
}

int ferry_boot_sector_mem(FerryVm *vm, FerryVcpu *bsp, const void *image, size_t len,
                          FerryError *err)
{
    if (len != FERRY_BOOT_SECTOR_SIZE)
        return ferry_error_set(err, -EINVAL, "boot sector: %zu bytes, must be exactly %d", len,
                               FERRY_BOOT_SECTOR_SIZE);
    void *dst = ferry_vm_gpa_to_host(vm, FERRY_BOOT_SECTOR_ADDR, len);
    if (!dst)
        return ferry_error_set(err, -ENOMEM, "boot sector: no RAM at 0x%x", FERRY_BOOT_SECTOR_ADDR);
    memcpy(dst, image, len);
    return real_mode(bsp, 0, FERRY_BOOT_SECTOR_ADDR, 0x80 /* DL: boot drive, as a BIOS */, err);
}

int ferry_boot_sector(FerryVm *vm, FerryVcpu *bsp, const char *path, FerryError *err)
{
    uint8_t *img;
    size_t len;
    /* Read one byte more than allowed so an oversized file is reported with its size. */
    int r = read_file(path, &img, &len, 1 << 20, err);
    if (r < 0)
        return ferry_error_prefix(err, "boot sector: ");
    r = ferry_boot_sector_mem(vm, bsp, img, len, err);
    free(img);
    if (r < 0)
        return ferry_error_prefix(err, "%s: ", path);
    return 0;
}

static void build_tables(uint8_t *low)
{
    uint64_t *gdt = (uint64_t *)(low + FERRY_BOOT_GDT_ADDR);
    gdt[0] = 0;
    gdt[1] = 0x00af9a000000ffffULL; /* 0x08: 64-bit code, DPL 0 */
    gdt[2] = 0x00cf92000000ffffULL; /* 0x10: data, 4 GiB */
    gdt[3] = 0x00008b0000000067ULL; /* 0x18: 64-bit busy TSS at 0, limit 0x67 (low half) */
    gdt[4] = 0;                     /* TSS high half: base[63:32] = 0 */
    uint64_t *pml4 = (uint64_t *)(low + FERRY_BOOT_PML4_ADDR);
    uint64_t *pdpt = (uint64_t *)(low + PDPT_ADDR);
    uint64_t *pd = (uint64_t *)(low + PD_ADDR);
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = PDPT_ADDR | 0x3; /* present, writable */
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (PD_ADDR + i * 4096) | 0x3;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
}

static void seg64(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
    *s = (struct kvm_segment){.base = 0,
                              .limit = 0xffffffff,
                              .selector = sel,
                              .type = type,
                              .present = 1,
                              .dpl = 0,
                              .db = code ? 0 : 1,
                              .s = 1,
                              .l = code ? 1 : 0,
                              .g = 1};
}

/* Long mode on the VMM's identity tables and GDT (they must already be in guest RAM). */
static int long_mode(FerryVcpu *v, uint64_t rip, uint64_t rsp, uint64_t rdi, FerryError *err)
{
    struct kvm_sregs s;
    int r = get_sregs(v, &s, err);
    if (r < 0)
        return r;
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    s.cr3 = FERRY_BOOT_PML4_ADDR;
    s.efer = EFER_LME | EFER_LMA;
    seg64(&s.cs, FERRY_BOOT_CODE64_SEL, 0xb, true);
    seg64(&s.ds, FERRY_BOOT_DATA64_SEL, 0x3, false);
    s.es = s.fs = s.gs = s.ss = s.ds;
    s.tr = (struct kvm_segment){
        .base = 0, .limit = 0x67, .selector = TSS_SEL, .type = 0xb, .present = 1};
    s.ldt = (struct kvm_segment){.type = 0x2, .present = 1, .unusable = 1};
    s.gdt.base = FERRY_BOOT_GDT_ADDR;
    s.gdt.limit = 5 * 8 - 1;
    s.idt.base = 0;
    s.idt.limit = 0;
    struct kvm_regs regs = {.rip = rip, .rsp = rsp, .rdi = rdi, .rflags = 0x2};
    return set_sregs_regs(v, &s, &regs, err);
}

int ferry_boot_flat64_mem(FerryVm *vm, FerryVcpu *bsp, const void *image, size_t len,
                          FerryError *err)
{
    uint64_t end_tables = PD_ADDR + 4 * 4096;
    uint8_t *low = ferry_vm_gpa_to_host(vm, 0, end_tables);
    uint64_t ram = ferry_vm_ram_size(vm);
    if (ram > FERRY_VM_LOW_RAM_MAX)
        ram = FERRY_VM_LOW_RAM_MAX;
    if (!low || ram <= FERRY_BOOT_FLAT_LOAD_ADDR || len > ram - FERRY_BOOT_FLAT_LOAD_ADDR)
        return ferry_error_set(err, -ENOMEM,
                               "flat 64-bit image of %zu bytes does not fit in "
                               "%llu bytes of RAM above 1 MiB",
                               len, (unsigned long long)ferry_vm_ram_size(vm));
    if (!len)
        return ferry_error_set(err, -EINVAL, "flat 64-bit image: empty");
    memcpy(ferry_vm_gpa_to_host(vm, FERRY_BOOT_FLAT_LOAD_ADDR, len), image, len);
    build_tables(low);
    int r = long_mode(bsp, FERRY_BOOT_FLAT_LOAD_ADDR, FERRY_BOOT_FLAT_STACK_TOP, 0, err);
    if (r < 0)
        return ferry_error_prefix(err, "entering long mode: ");
    return 0;
}

int ferry_boot_ap64(FerryVcpu *vcpu, uint64_t rip, uint64_t rsp, uint64_t rdi, FerryError *err)
{
    int r = long_mode(vcpu, rip, rsp, rdi, err);
    if (r < 0)
        return r;
    /* A vCPU other than the BSP starts in wait-for-SIPI in the in-kernel LAPIC. */
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    if (ioctl(ferry_vcpu_fd(vcpu), KVM_SET_MP_STATE, &mp) < 0)
        return ferry_error_set(err, -errno, "vCPU %u: KVM_SET_MP_STATE: %s", ferry_vcpu_id(vcpu),
                               strerror(errno));
    return 0;
}

int ferry_boot_flat64(FerryVm *vm, FerryVcpu *bsp, const char *path, FerryError *err)
{
    uint64_t room = ferry_vm_ram_size(vm) > FERRY_BOOT_FLAT_LOAD_ADDR
                        ? ferry_vm_ram_size(vm) - FERRY_BOOT_FLAT_LOAD_ADDR
                        : 0;
    if (room > FERRY_VM_LOW_RAM_MAX - FERRY_BOOT_FLAT_LOAD_ADDR)
        room = FERRY_VM_LOW_RAM_MAX - FERRY_BOOT_FLAT_LOAD_ADDR;
    if (!room)
        return ferry_error_set(err, -ENOMEM,
                               "firmware: %s: RAM of %llu bytes is too small for "
                               "a flat 64-bit image loaded at 1 MiB",
                               path, (unsigned long long)ferry_vm_ram_size(vm));
    uint8_t *img;
    size_t len;
    int r = read_file(path, &img, &len, (size_t)room, err);
    if (r < 0)
        return ferry_error_prefix(err, "firmware: ");
    if (!len) {
        free(img);
        return ferry_error_set(err, -EINVAL, "firmware: %s: empty file", path);
    }
    r = ferry_boot_flat64_mem(vm, bsp, img, len, err);
    free(img);
    if (r < 0)
        return ferry_error_prefix(err, "firmware %s: ", path);
    return 0;
}
