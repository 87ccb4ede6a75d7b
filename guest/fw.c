/* Ferry's built-in firmware: the guest side of the hotplug interface (docs/guest-interface.md,
 * hotplug-regs.h) plus a self-verifying memory workload. One serial line per event. */
#include "ferry/machine/connector.h"
#include "ferry/machine/hotplug-regs.h"
#include "ferry/vmm/fw-config.h"

#include <stdint.h>

#define COM1            0x3f8
#define LAPIC_BASE      0xfee00000ULL
#define IOAPIC_BASE     0xfec00000ULL
#define HP_VECTOR       0x30
#define SPURIOUS_VECTOR 0xff
#define MAX_SLOTS       64
#define AP_STACK_SIZE   16384
#define PAGE            4096ULL
#define PDPT_ADDR       0x3000ULL /* the VMM's boot PDPT (ferry/vmm/boot.h layout) */
/* KVM's APIC bus runs at 1 GHz; with divide-by-128 the timer counts 7812.5 ticks per ms. */
#define TICKS_PER_MS 7812ULL
#define AP_WAIT_MS   3000
/* The dirty workload re-checks every online memory block in MEM_SWEEP_STEPS passes: in step k
 * the pages k, k + MEM_SWEEP_STEPS, ... (a lost block or range shows in the first step), spread
 * over the pass's dirty pages so that the workload never stops writing for long. */
#define MEM_SWEEP_STEPS 8
/* Called from interrupt handlers: such callees must preserve every register (clang checks). */
#define ISR_CALLEE __attribute__((no_caller_saved_registers))

typedef struct IntFrame {
    uint64_t rip, cs, rflags, rsp, ss;
} IntFrame;

typedef struct __attribute__((packed)) IdtGate {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, zero;
} IdtGate;

typedef struct __attribute__((packed)) Dtr {
    uint16_t limit;
    uint64_t base;
} Dtr;

static IdtGate idt[256] __attribute__((aligned(16)));
static Dtr idtr;
static uint64_t hp_pd[8][512] __attribute__((aligned(4096))); /* maps 4 GiB .. 12 GiB */
static uint8_t ap_stacks[MAX_SLOTS][AP_STACK_SIZE] __attribute__((aligned(4096)));

static volatile FerryFwConfig *const cfg = (volatile FerryFwConfig *)FERRY_FW_CONFIG_ADDR;
static volatile int hp_pending;                  /* set by the interrupt handler */
static volatile uint64_t cpu_alive[MAX_SLOTS];   /* an AP counts while it runs */
static volatile uint32_t cpu_stop[MAX_SLOTS];    /* BSP asks an AP to stop */
static volatile uint32_t cpu_stopped[MAX_SLOTS]; /* the AP acknowledged and halted */
static uint8_t mem_online[MAX_SLOTS];
/* Periodic re-check of online memory blocks (dirty workload): the sweep step within the current
 * sweep, pages of the step checked, completed sweeps, and whether the block already failed
 * (reported once). */
static uint32_t mem_step[MAX_SLOTS];
static uint64_t mem_pos[MAX_SLOTS];
static uint64_t mem_sweeps[MAX_SLOTS];
static uint8_t mem_failed[MAX_SLOTS];
static uint8_t in_use[4][MAX_SLOTS]; /* by kind, slot: configured and used by us (§8 step 5) */
static uint16_t hp_io;
static uint32_t hp_gsi;

/* Entry points at the start of .text: the BSP from the VMM's flat boot (RSP set), an AP from
 * the VMM's AP start (RSP = its stack, RDI = its APIC id). */
__asm__(".section .text.entry, \"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        "    call fw_main\n"
        "1:  cli\n"
        "    hlt\n"
        "    jmp 1b\n"
        ".globl ap_start\n"
        "ap_start:\n"
        "    call ap_main\n"
        "2:  cli\n"
        "    hlt\n"
        "    jmp 2b\n"
        ".previous\n");
void fw_main(void);
void ap_main(uint64_t id);
void ap_start(void);

/* ---- port and memory I/O ---- */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void mmio_wr(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)addr = v;
}
static inline uint32_t mmio_rd(uint64_t addr)
{
    return *(volatile uint32_t *)addr;
}
static inline void cpu_relax(void)
{
    __asm__ volatile("pause" ::: "memory");
}

/* ---- serial ---- */

static void putc_serial(char c)
{
    while (!(inb(COM1 + 5) & 0x20)) /* LSR.THRE */
        ;
    outb(COM1, (uint8_t)c);
}

static void puts_serial(const char *s)
{
    while (*s)
        putc_serial(*s++);
}

static void putdec(uint64_t v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        putc_serial(buf[--n]);
}

static void puthex(uint64_t v)
{
    puts_serial("0x");
    int started = 0;
    for (int i = 60; i >= 0; i -= 4) {
        unsigned d = (v >> i) & 0xf;
        if (d || started || i == 0) {
            putc_serial("0123456789abcdef"[d]);
            started = 1;
        }
    }
}

static const char *kind_name(uint32_t kind)
{
    return kind == FERRY_CONN_CPU ? "cpu" : kind == FERRY_CONN_MEM ? "mem" : "card";
}

/* "WORD kind slot\n" */
static void report(const char *word, uint32_t kind, uint32_t slot)
{
    puts_serial(word);
    putc_serial(' ');
    puts_serial(kind_name(kind));
    putc_serial(' ');
    putdec(slot);
    putc_serial('\n');
}

static void report_error(const char *what, uint32_t kind, uint32_t slot, uint32_t status)
{
    puts_serial("ERROR ");
    puts_serial(what);
    putc_serial(' ');
    puts_serial(kind_name(kind));
    putc_serial(' ');
    putdec(slot);
    puts_serial(" status=");
    putdec(status);
    putc_serial('\n');
}

/* ---- LAPIC timer as a clock ---- */

static uint32_t last_count;
static uint64_t elapsed_ticks;

ISR_CALLEE static void lapic_wr(uint32_t reg, uint32_t v)
{
    mmio_wr(LAPIC_BASE + reg, v);
}
static uint32_t lapic_rd(uint32_t reg)
{
    return mmio_rd(LAPIC_BASE + reg);
}

static uint64_t now_ms(void)
{
    uint32_t cur = lapic_rd(0x390); /* current count: periodic, counts down from 0xffffffff */
    elapsed_ticks += (uint32_t)(last_count - cur);
    last_count = cur;
    return elapsed_ticks / TICKS_PER_MS;
}

static void lapic_init(void)
{
    lapic_wr(0xf0, 0x100 | SPURIOUS_VECTOR);  /* software enable */
    lapic_wr(0x80, 0);                        /* TPR: accept everything */
    lapic_wr(0x350, 1u << 16);                /* LINT0 (ExtINT from the PIC) masked */
    lapic_wr(0x360, 1u << 16);                /* LINT1 masked */
    lapic_wr(0x3e0, 0xa);                     /* timer divide by 128 */
    lapic_wr(0x320, (1u << 17) | (1u << 16)); /* timer periodic, masked: a clock only */
    lapic_wr(0x380, 0xffffffffu);
    last_count = lapic_rd(0x390);
}

/* ---- IOAPIC ---- */

static void ioapic_wr(uint32_t reg, uint32_t v)
{
    mmio_wr(IOAPIC_BASE, reg);
    mmio_wr(IOAPIC_BASE + 0x10, v);
}

/* The hotplug line is level-triggered, active high, to the BSP (APIC id 0). Masked while the
 * BSP drains the queue; unmasked after, so a line still high interrupts again at once. */
ISR_CALLEE static void hp_line_mask(int masked)
{
    ioapic_wr(0x11 + 2 * hp_gsi, 0);
    ioapic_wr(0x10 + 2 * hp_gsi, HP_VECTOR | (1u << 15) | (masked ? 1u << 16 : 0));
}

/* ---- interrupts ---- */

static void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

ISR_CALLEE static void fault(uint64_t vec, uint64_t rip, uint64_t code)
{
    puts_serial("FAULT vec=");
    putdec(vec);
    puts_serial(" rip=");
    puthex(rip);
    puts_serial(" code=");
    puthex(code);
    putc_serial('\n');
    halt_forever();
}

#define EXC(v)                                                                                     \
    __attribute__((interrupt)) static void exc_##v(IntFrame *f)                                    \
    {                                                                                              \
        fault(v, f->rip, 0);                                                                       \
    }
#define EXC_CODE(v)                                                                                \
    __attribute__((interrupt)) static void exc_##v(IntFrame *f, uint64_t code)                     \
    {                                                                                              \
        fault(v, f->rip, code);                                                                    \
    }
// clang-format off
EXC(0) EXC(1) EXC(2) EXC(3) EXC(4) EXC(5) EXC(6) EXC(7) EXC_CODE(8) EXC(9) EXC_CODE(10)
EXC_CODE(11) EXC_CODE(12) EXC_CODE(13) EXC_CODE(14) EXC(15) EXC(16) EXC_CODE(17) EXC(18) EXC(19)
typedef int exc_handlers_end; /* ends the macro run for clang-format */
// clang-format on

__attribute__((interrupt)) static void hp_irq(IntFrame *f)
{
    (void)f;
    hp_line_mask(1);
    hp_pending = 1;
    lapic_wr(0xb0, 0); /* EOI; the IOAPIC clears remote IRR */
}

__attribute__((interrupt)) static void spurious(IntFrame *f)
{
    (void)f;
}

static void set_gate(unsigned vec, void *fn)
{
    uint64_t a = (uint64_t)fn;
    idt[vec] = (IdtGate){.off0 = (uint16_t)a,
                         .sel = 0x08,
                         .ist = 0,
                         .type = 0x8e,
                         .off1 = (uint16_t)(a >> 16),
                         .off2 = (uint32_t)(a >> 32)};
}

static void idt_init(void)
{
    void *exc[20] = {exc_0,  exc_1,  exc_2,  exc_3,  exc_4,  exc_5,  exc_6,
                     exc_7,  exc_8,  exc_9,  exc_10, exc_11, exc_12, exc_13,
                     exc_14, exc_15, exc_16, exc_17, exc_18, exc_19};
    for (unsigned v = 0; v < 20; v++)
        set_gate(v, exc[v]);
    set_gate(HP_VECTOR, hp_irq);
    set_gate(SPURIOUS_VECTOR, spurious);
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (uint64_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

/* ---- page tables: the VMM maps the first 4 GiB; add the memory hotplug region ---- */

static void map_hotplug_region(void)
{
    volatile uint64_t *pdpt = (volatile uint64_t *)PDPT_ADDR;
    uint64_t end = cfg->hp_mem_base + (uint64_t)cfg->hp_mem_slots * cfg->hp_mem_block;
    for (uint64_t g = 0; g < 8; g++) {
        uint64_t gib = cfg->hp_mem_base + (g << 30);
        if (gib >= end || (gib >> 30) >= 512)
            break;
        for (uint64_t i = 0; i < 512; i++)
            hp_pd[g][i] = (gib + (i << 21)) | 0x83; /* present, writable, 2 MiB */
        pdpt[gib >> 30] = (uint64_t)hp_pd[g] | 0x3;
    }
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
}

/* ---- hotplug registers ---- */

static uint32_t hp_rd(uint16_t off)
{
    return inl(hp_io + off);
}
static void hp_wr(uint16_t off, uint32_t v)
{
    outl(hp_io + off, v);
}

static uint32_t hp_cmd(uint32_t cmd, uint32_t selector, uint32_t arg)
{
    hp_wr(FERRY_HP_REG_SELECTOR, selector);
    hp_wr(FERRY_HP_REG_ARG, arg);
    hp_wr(FERRY_HP_REG_CMD, cmd);
    return hp_rd(FERRY_HP_REG_STATUS);
}

static uint64_t window_u64(uint16_t off)
{
    uint64_t lo = hp_rd(FERRY_HP_WINDOW + off), hi = hp_rd(FERRY_HP_WINDOW + off + 4);
    return lo | hi << 32;
}

static int window_name_is(const char *s)
{
    for (uint16_t i = 0; i < FERRY_HP_NAME_MAX; i++) {
        uint8_t c =
            (uint8_t)(hp_rd(FERRY_HP_WINDOW + FERRY_HP_WINDOW_NAME + (i & ~3)) >> (8 * (i & 3)));
        if (c != (uint8_t)s[i])
            return 0;
        if (!c)
            return 1;
    }
    return 0;
}

/* ---- resources ---- */

static uint64_t mem_base(uint32_t slot)
{
    return cfg->hp_mem_base + slot * cfg->hp_mem_block;
}
static uint64_t mem_tag(uint64_t addr)
{
    return addr ^ 0x5a5a5a5a00000000ULL;
}

/* Write one tagged word per page of the block, then read them all back. */
static int mem_check(uint32_t slot, int write)
{
    uint64_t base = mem_base(slot);
    for (uint64_t a = base; a < base + cfg->hp_mem_block; a += PAGE) {
        volatile uint64_t *p = (volatile uint64_t *)a;
        if (write)
            *p = mem_tag(a);
        else if (*p != mem_tag(a))
            return 0;
    }
    return 1;
}

static void mem_online_slot(uint32_t slot)
{
    if (!mem_check(slot, 1) || !mem_check(slot, 0)) {
        report_error("pattern", FERRY_CONN_MEM, slot, 0);
        return;
    }
    mem_online[slot] = 1;
    mem_step[slot] = 0;
    mem_pos[slot] = 0;
    mem_sweeps[slot] = 0;
    mem_failed[slot] = 0;
    report("ONLINE", FERRY_CONN_MEM, slot);
}

/* The VMM starts an AP when its connector becomes configured (docs/firmware.md); wait for it
 * to count. */
static void cpu_online_slot(uint32_t slot)
{
    uint64_t start = now_ms();
    while (cpu_alive[slot] < 2) {
        if (now_ms() - start > AP_WAIT_MS) {
            report_error("online", FERRY_CONN_CPU, slot, 0);
            return;
        }
        cpu_relax();
    }
    report("ONLINE", FERRY_CONN_CPU, slot);
}

static int cpu_offline_slot(uint32_t slot)
{
    cpu_stop[slot] = 1;
    uint64_t start = now_ms();
    while (!cpu_stopped[slot]) {
        if (now_ms() - start > AP_WAIT_MS)
            return 0;
        cpu_relax();
    }
    return 1;
}

void ap_main(uint64_t id)
{
    __asm__ volatile("lidt %0" : : "m"(idtr));
    if (id >= MAX_SLOTS)
        halt_forever();
    while (!cpu_stop[id]) {
        cpu_alive[id]++;
        cpu_relax();
    }
    cpu_stopped[id] = 1;
    halt_forever();
}

/* ---- event handling (docs/guest-interface.md) ---- */

/* Test pacing (hp-step-delay, docs/firmware.md): announce a hotplug protocol step on the serial
 * line and wait, so a test can migrate at a known point of a session (S5, S6). Off when 0. */
static void step_pause(const char *word, uint32_t kind, uint32_t slot, uint32_t step)
{
    if (!cfg->hp_step_delay_ms)
        return;
    puts_serial(word);
    putc_serial(' ');
    puts_serial(kind_name(kind));
    putc_serial(' ');
    putdec(slot);
    puts_serial(" step ");
    putdec(step);
    putc_serial('\n');
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < cfg->hp_step_delay_ms)
        cpu_relax();
}

static void handle_add(uint32_t index)
{
    uint32_t kind = FERRY_CONN_INDEX_KIND(index), slot = FERRY_CONN_INDEX_SLOT(index);
    if (slot >= MAX_SLOTS || kind > 3)
        return;
    if (in_use[kind][slot]) {
        report("DUPLICATE", kind, slot); /* presented twice: a host bug, ignored */
        return;
    }
    uint32_t st = hp_cmd(FERRY_HP_CMD_SET_STATE, index, FERRY_CONN_AVAILABLE);
    if (st == FERRY_HP_ST_NO_DEVICE || st == FERRY_HP_ST_UNPLUG_PENDING) {
        report("STALE", kind, slot); /* removed again before we got to it */
        return;
    }
    if (st != FERRY_HP_ST_OK) {
        report_error("allocate", kind, slot, st);
        return;
    }
    st = hp_cmd(FERRY_HP_CMD_SET_STATE, index, FERRY_CONN_UNISOLATE);
    if (st != FERRY_HP_ST_OK) {
        report_error("unisolate", kind, slot, st);
        return;
    }
    if (kind == FERRY_CONN_CPU) { /* fresh AP bookkeeping before the VMM starts it */
        cpu_alive[slot] = 0;
        cpu_stop[slot] = 0;
        cpu_stopped[slot] = 0;
    }
    for (unsigned steps = 0;; steps++) {
        st = hp_cmd(FERRY_HP_CMD_CC_STEP, index, 0);
        if (st != FERRY_HP_ST_OK || steps > 64) {
            report_error("configure", kind, slot, st);
            return;
        }
        uint32_t tok = hp_rd(FERRY_HP_REG_RESULT0);
        if (tok == FERRY_HP_TOK_DONE)
            break;
        step_pause("CC", kind, slot, steps);
        if (tok == FERRY_HP_TOK_PROP && kind == FERRY_CONN_MEM && window_name_is("reg")) {
            uint64_t base = window_u64(FERRY_HP_WINDOW_VALUE);
            uint64_t size = window_u64(FERRY_HP_WINDOW_VALUE + 8);
            if (base != mem_base(slot) || size != cfg->hp_mem_block) {
                report_error("reg", kind, slot, 0);
                return;
            }
        }
    }
    in_use[kind][slot] = 1;
    report("PLUGGED", kind, slot);
    if (kind == FERRY_CONN_CPU)
        cpu_online_slot(slot);
    else if (kind == FERRY_CONN_MEM)
        mem_online_slot(slot);
    else
        report("ONLINE", kind, slot);
}

static void handle_remove(uint32_t index)
{
    uint32_t kind = FERRY_CONN_INDEX_KIND(index), slot = FERRY_CONN_INDEX_SLOT(index);
    if (slot >= MAX_SLOTS || kind > 3)
        return;
    uint32_t st = hp_cmd(FERRY_HP_CMD_GET_STATE, index, 0);
    uint32_t state = hp_rd(FERRY_HP_REG_RESULT0), flags = hp_rd(FERRY_HP_REG_RESULT1);
    if (st != FERRY_HP_ST_OK || !(flags & FERRY_HP_FLAG_UNPLUG_REQUESTED) ||
        state == FERRY_CONN_UNUSABLE) {
        report("STALE", kind, slot);
        return;
    }
    if (kind == FERRY_CONN_CPU && slot == 0) {
        report_error("boot-cpu", kind, slot, 0);
        return;
    }
    step_pause("UNPLUG-WAIT", kind, slot, 0); /* requested, not yet acted on (S6) */
    /* Stop using the resource first, then isolate, then release. */
    if (kind == FERRY_CONN_CPU && state == FERRY_CONN_CONFIGURED && !cpu_offline_slot(slot)) {
        report_error("offline", kind, slot, 0);
        return;
    }
    if (kind == FERRY_CONN_MEM && mem_online[slot]) {
        if (!mem_check(slot, 0))
            report_error("pattern", kind, slot, 0);
        mem_online[slot] = 0;
    }
    if (state != FERRY_CONN_AVAILABLE) {
        st = hp_cmd(FERRY_HP_CMD_SET_STATE, index, FERRY_CONN_AVAILABLE);
        if (st != FERRY_HP_ST_OK) {
            report_error("isolate", kind, slot, st);
            return;
        }
    }
    st = hp_cmd(FERRY_HP_CMD_SET_STATE, index, FERRY_CONN_UNUSABLE);
    if (st != FERRY_HP_ST_OK) {
        report_error("release", kind, slot, st);
        return;
    }
    in_use[kind][slot] = 0;
    report("UNPLUGGED", kind, slot);
}

static void handle_events(void)
{
    hp_pending = 0;
    for (;;) {
        uint32_t st = hp_cmd(FERRY_HP_CMD_FETCH_EVENT, 0, 0);
        if (st != FERRY_HP_ST_OK)
            break;
        uint32_t action = hp_rd(FERRY_HP_REG_RESULT0), index = hp_rd(FERRY_HP_REG_RESULT2);
        if (action == FERRY_HP_ACTION_ADD)
            handle_add(index);
        else if (action == FERRY_HP_ACTION_REMOVE)
            handle_remove(index);
    }
    hp_line_mask(0);
}

/* Devices present at readiness are configured already: bring them into use (no event). */
static void enumerate_boot_devices(void)
{
    for (uint32_t n = 0;; n++) {
        if (hp_cmd(FERRY_HP_CMD_ENUM, n, 0) != FERRY_HP_ST_OK)
            break;
        uint32_t index = hp_rd(FERRY_HP_REG_RESULT0), kind = hp_rd(FERRY_HP_REG_RESULT1);
        uint32_t slot = FERRY_CONN_INDEX_SLOT(index);
        if (slot >= MAX_SLOTS || kind > 3)
            continue;
        in_use[kind][slot] = 1;
        if (kind == FERRY_CONN_CPU) {
            if (slot != 0)
                cpu_online_slot(slot);
        } else if (kind == FERRY_CONN_MEM) {
            mem_online_slot(slot);
        } else {
            report("ONLINE", kind, slot);
        }
    }
}

/* ---- workload: dirty pages carrying sequence numbers ---- */

/* Each page holds its pass number in its first and last word and a tag binding the number to
 * the page in the second, so a page lost or left stale by a migration fails the next pass. */
static uint64_t page_tag(uint64_t seq, uint64_t page)
{
    return ~seq ^ (page * 0x9e3779b97f4a7c15ULL);
}

/* Pages of a block checked per sweep step. */
static uint64_t mem_step_pages(void)
{
    return cfg->hp_mem_block / PAGE / MEM_SWEEP_STEPS;
}

/* Continue the current step of each online block's re-check up to `upto` of its pages: the
 * tagged word of every MEM_SWEEP_STEPS-th page. The first mismatch of a block prints
 * "VERIFY FAIL mem N page=..." and stops checking that block. */
static void mem_verify(uint64_t upto)
{
    for (uint32_t slot = 0; slot < MAX_SLOTS; slot++) {
        if (!mem_online[slot] || mem_failed[slot])
            continue;
        uint64_t base = mem_base(slot);
        for (; mem_pos[slot] < upto; mem_pos[slot]++) {
            uint64_t a = base + (mem_step[slot] + mem_pos[slot] * MEM_SWEEP_STEPS) * PAGE;
            uint64_t got = *(volatile uint64_t *)a;
            if (got != mem_tag(a)) {
                puts_serial("VERIFY FAIL mem ");
                putdec(slot);
                puts_serial(" page=");
                puthex(a);
                puts_serial(" want=");
                puthex(mem_tag(a));
                puts_serial(" got=");
                puthex(got);
                putc_serial('\n');
                mem_failed[slot] = 1;
                break;
            }
        }
    }
}

/* End of a pass: finish each block's step; "VERIFY ok mem N sweep=S" when the steps of a sweep
 * covered the whole block. */
static void mem_verify_pass_end(void)
{
    mem_verify(mem_step_pages());
    for (uint32_t slot = 0; slot < MAX_SLOTS; slot++) {
        if (!mem_online[slot] || mem_failed[slot])
            continue;
        mem_pos[slot] = 0;
        if (++mem_step[slot] < MEM_SWEEP_STEPS)
            continue;
        mem_step[slot] = 0;
        puts_serial("VERIFY ok mem ");
        putdec(slot);
        puts_serial(" sweep=");
        putdec(++mem_sweeps[slot]);
        putc_serial('\n');
    }
}

static void dirty_loop(void)
{
    uint64_t base = cfg->dirty_base, pages = (uint64_t)cfg->dirty_mb << 8;
    uint32_t every = cfg->report_every ? cfg->report_every : 10;
    int failed = 0;
    for (uint64_t pass = 1;; pass++) {
        for (uint64_t i = 0; i < pages; i++) {
            if (!(i & 63)) {
                if (hp_pending)
                    handle_events();
                mem_verify(i * mem_step_pages() / pages);
            }
            volatile uint64_t *pg = (volatile uint64_t *)(base + i * PAGE);
            if (pass > 1 && !failed) {
                uint64_t want = pass - 1;
                if (pg[0] != want || pg[1] != page_tag(want, i) || pg[511] != want) {
                    puts_serial("VERIFY FAIL page=");
                    puthex(base + i * PAGE);
                    puts_serial(" pass=");
                    putdec(pass);
                    puts_serial(" want=");
                    putdec(want);
                    puts_serial(" got=");
                    putdec(pg[0]);
                    putc_serial('\n');
                    failed = 1;
                }
            }
            pg[0] = pass;
            pg[1] = page_tag(pass, i);
            pg[511] = pass;
        }
        mem_verify_pass_end();
        if (!failed && pass % every == 0) {
            puts_serial("VERIFY ok pass=");
            putdec(pass);
            putc_serial('\n');
        }
    }
}

static void idle_loop(void)
{
    for (;;) {
        __asm__ volatile("cli");
        if (hp_pending) {
            __asm__ volatile("sti");
            handle_events();
            continue;
        }
        __asm__ volatile("sti; hlt"); /* sti's shadow covers hlt: no lost wake-up */
    }
}

extern char __bss_start[], __bss_end[];

void fw_main(void)
{
    /* RAM is zero at power-on, but not after a reset: .bss is not part of the image. */
    uint64_t qwords = (uint64_t)(__bss_end - __bss_start + 7) / 8;
    void *dst = __bss_start;
    __asm__ volatile("rep stosq" : "+D"(dst), "+c"(qwords) : "a"(0ULL) : "memory");
    if (cfg->magic != FERRY_FW_CONFIG_MAGIC || cfg->version != FERRY_FW_CONFIG_VERSION) {
        puts_serial("ERROR config block missing\n");
        halt_forever();
    }
    hp_io = (uint16_t)cfg->hotplug_io;
    hp_gsi = cfg->hotplug_gsi;
    outb(0x21, 0xff); /* both PICs masked: everything goes through the IOAPIC */
    outb(0xa1, 0xff);
    idt_init();
    lapic_init();
    hp_line_mask(1);
    map_hotplug_region();
    puts_serial("BOOT ferry-fw cpus=");
    putdec(cfg->boot_cpus);
    putc_serial('/');
    putdec(cfg->cpu_slots);
    puts_serial(" mem=");
    putdec(cfg->ram_size >> 20);
    puts_serial("M\n");
    if (hp_rd(FERRY_HP_REG_MAGIC) != FERRY_HP_MAGIC_VALUE ||
        hp_rd(FERRY_HP_REG_VERSION) != FERRY_HP_IFACE_VERSION) {
        puts_serial("ERROR no hotplug controller\n");
        halt_forever();
    }
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < cfg->ready_delay_ms)
        cpu_relax();
    /* Publish the AP entry before readiness: the VMM starts configured APs from then on. */
    cfg->ap_stack_base = (uint64_t)ap_stacks;
    cfg->ap_stack_size = AP_STACK_SIZE;
    cfg->ap_entry = (uint64_t)ap_start;
    uint32_t st = hp_cmd(FERRY_HP_CMD_READY, 0, 0);
    if (st != FERRY_HP_ST_OK) {
        report_error("ready", FERRY_CONN_CPU, 0, st);
        halt_forever();
    }
    enumerate_boot_devices();
    puts_serial("READY\n");
    hp_line_mask(0);
    __asm__ volatile("sti");
    if (cfg->workload == FERRY_FW_WORKLOAD_DIRTY && cfg->dirty_mb)
        dirty_loop();
    idle_loop();
}
