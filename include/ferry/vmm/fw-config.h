/* The configuration block the VMM writes into guest RAM for the built-in firmware, and the
 * fields the firmware writes back (AP entry). Only fixed-size types: guest/ includes it too. */
#ifndef FERRY_VMM_FW_CONFIG_H
#define FERRY_VMM_FW_CONFIG_H

#include <stdint.h>

/* Guest-physical address: below 1 MiB, above the VMM's boot page tables (0x1000-0x7fff) and far
 * below the boot stack (top 0x80000). docs/firmware.md describes every field. */
#define FERRY_FW_CONFIG_ADDR    0x9000ULL
#define FERRY_FW_CONFIG_MAGIC   0x43574646u /* "FFWC" little-endian */
#define FERRY_FW_CONFIG_VERSION 1u

#define FERRY_FW_WORKLOAD_IDLE  0u /* sti; hlt until an event */
#define FERRY_FW_WORKLOAD_DIRTY 1u /* dirty every page of a region, verify sequence numbers */

#define FERRY_FW_DIRTY_BASE      (16ULL << 20) /* guest-physical start of the dirtied region */
#define FERRY_FW_HOTPLUG_GSI     16u           /* IOAPIC pin of the hotplug notification line */
#define FERRY_FW_DEBUG_EXIT_PORT 0xf4          /* a write powers the VM off */

typedef struct FerryFwConfig {
    /* Written by the VMM before the firmware starts (and again at every reset). */
    uint32_t magic;        /* FERRY_FW_CONFIG_MAGIC */
    uint32_t version;      /* FERRY_FW_CONFIG_VERSION */
    uint64_t ram_size;     /* boot RAM in bytes, at guest-physical 0 (up to 3 GiB) */
    uint64_t hp_mem_base;  /* guest-physical address of memory block slot 0 */
    uint64_t hp_mem_block; /* bytes per memory block (128 MiB) */
    uint32_t hp_mem_slots; /* memory block slots (slot s at hp_mem_base + s * hp_mem_block) */
    uint32_t cpu_slots;    /* vCPU slots (maxcpus); slot = APIC id */
    uint32_t boot_cpus;
    uint32_t hotplug_gsi; /* IOAPIC pin of the hotplug line (level, active high) */
    uint32_t hotplug_io;  /* port base of the hotplug register block */
    uint32_t workload;    /* FERRY_FW_WORKLOAD_* */
    uint64_t dirty_base;  /* dirty workload region: [dirty_base, dirty_base + dirty_mb MiB) */
    uint32_t dirty_mb;
    uint32_t report_every;     /* print "VERIFY ok pass=N" every N passes (>= 1) */
    uint32_t ready_delay_ms;   /* wait this long after "BOOT" before declaring readiness (S7) */
    uint32_t hp_step_delay_ms; /* test pacing: wait between hotplug protocol steps (S5/S6) */
    /* Written by the firmware before it declares readiness; 0 until then. */
    uint64_t ap_entry;      /* 64-bit entry of application processors (RDI = APIC id) */
    uint64_t ap_stack_base; /* AP with id n gets RSP = ap_stack_base + (n + 1) * ap_stack_size */
    uint64_t ap_stack_size;
} FerryFwConfig;

#endif
