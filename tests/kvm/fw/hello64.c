/* Test firmware for the flat 64-bit boot path: checks it really runs in long mode (EFER.LMA,
 * 64-bit arithmetic), prints one line on COM1 and reports through the debug-exit port 0xf4. */
#include <stdint.h>

#define COM1       0x3f8
#define DEBUG_EXIT 0xf4

/* Entry at the load address (the linker script puts .text.entry first): the VMM set RSP. */
__asm__(".section .text.entry, \"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        "    call fw_main\n"
        "1:  cli\n"
        "    hlt\n"
        "    jmp 1b\n"
        ".previous\n");

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

static inline uint64_t rdmsr(uint32_t index)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(index));
    return (uint64_t)hi << 32 | lo;
}

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

static void puthex(uint64_t v)
{
    puts_serial("0x");
    for (int shift = 60; shift >= 0; shift -= 4)
        putc_serial("0123456789abcdef"[(v >> shift) & 0xf]);
}

void fw_main(void);
void fw_main(void)
{
    uint64_t efer = rdmsr(0xc0000080);
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    /* A value only a 64-bit register holds: the top bits survive the shift. */
    volatile uint64_t wide = 0x123456789abcdef0ULL;
    uint64_t check = wide >> 4;
    int ok = (efer & 0x400) && check == 0x0123456789abcdefULL;
    puts_serial(ok ? "ferry-fw: long mode ok efer=" : "ferry-fw: NOT in long mode efer=");
    puthex(efer);
    puts_serial(" cs=");
    puthex(cs);
    puts_serial("\n");
    outb(DEBUG_EXIT, ok ? 0x10 : 0x11);
}
