/* Direct boot without a BIOS: a raw 512-byte boot sector started in real mode at 0x7c00, or a
 * flat 64-bit binary started in long mode on page tables and a GDT built by the VMM. */
#ifndef FERRY_VMM_BOOT_H
#define FERRY_VMM_BOOT_H

#include "ferry/error.h"
#include "ferry/vmm/vcpu.h"
#include "ferry/vmm/vm.h"

#include <stdint.h>

#define FERRY_BOOT_SECTOR_ADDR 0x7c00
#define FERRY_BOOT_SECTOR_SIZE 512

/* Flat 64-bit image layout: loaded at 1 MiB, entered at its first byte; boot structures below
 * 1 MiB (GDT at 0x1000, PML4 0x2000, PDPT 0x3000, four page directories 0x4000-0x7fff mapping
 * the first 4 GiB with 2 MiB pages), stack top at 0x80000 growing down. */
#define FERRY_BOOT_FLAT_LOAD_ADDR 0x100000ULL
#define FERRY_BOOT_FLAT_STACK_TOP 0x80000ULL
#define FERRY_BOOT_GDT_ADDR       0x1000ULL
#define FERRY_BOOT_PML4_ADDR      0x2000ULL
#define FERRY_BOOT_CODE64_SEL     0x08
#define FERRY_BOOT_DATA64_SEL     0x10

/* Copy the boot sector at `path` to 0x7c00 and set `bsp` to real mode there (CS base/selector
 * 0, RIP 0x7c00, RFLAGS 0x2). The file must be exactly 512 bytes; errors name the file. The
 * vCPU must not be running. */
int ferry_boot_sector(FerryVm *vm, FerryVcpu *bsp, const char *path, FerryError *err);
/* Same from memory (`len` must be 512). */
int ferry_boot_sector_mem(FerryVm *vm, FerryVcpu *bsp, const void *image, size_t len,
                          FerryError *err);

/* Load the flat binary at `path` to FERRY_BOOT_FLAT_LOAD_ADDR, build the page tables and GDT,
 * and set `bsp` to 64-bit long mode (CR0.PE|PG, CR4.PAE, EFER.LME|LMA) with RIP at the load
 * address and RSP at FERRY_BOOT_FLAT_STACK_TOP. Fails if the image does not fit in RAM. */
int ferry_boot_flat64(FerryVm *vm, FerryVcpu *bsp, const char *path, FerryError *err);
/* Same from memory (`image` borrowed, copied into guest RAM). */
int ferry_boot_flat64_mem(FerryVm *vm, FerryVcpu *bsp, const void *image, size_t len,
                          FerryError *err);
/* Start a vCPU other than the BSP directly in long mode on the tables ferry_boot_flat64 built:
 * RIP, RSP and RDI as given, runnable (not waiting for SIPI). This is how the built-in
 * firmware's application processors start (docs/firmware.md). The vCPU must not be running. */
int ferry_boot_ap64(FerryVcpu *vcpu, uint64_t rip, uint64_t rsp, uint64_t rdi, FerryError *err);

/* Set a vCPU to real mode at `cs_base` + `ip` (used for APs started by the VMM, e.g. a vCPU
 * hotplugged by a test) and mark it runnable. */
int ferry_boot_real_mode(FerryVcpu *vcpu, uint32_t cs_base, uint16_t ip, FerryError *err);

#endif
