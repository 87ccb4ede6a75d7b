/* 16550 UART model: transmit is instantaneous (THR always empty), receive has a 16-byte FIFO.
 * Interrupt logic follows the 8250 priority order: line status, RX data, THR empty, modem. */
#include "ferry/vmm/serial.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    REG_RBR_THR = 0,
    REG_IER = 1,
    REG_IIR_FCR = 2,
    REG_LCR = 3,
    REG_MCR = 4,
    REG_LSR = 5,
    REG_MSR = 6,
    REG_SCR = 7,
};
#define LCR_DLAB   0x80
#define IER_RDI    0x01
#define IER_THRI   0x02
#define IIR_NO_INT 0x01
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_FIFO   0xc0
#define LSR_DR     0x01
#define LSR_THRE   0x20
#define LSR_TEMT   0x40
#define MCR_LOOP   0x10
#define RX_FIFO    16
#define OUT_BUF    4096

struct FerrySerial {
    FerryVm *vm;
    uint16_t base;
    uint32_t irq;
    int out_fd;
    pthread_mutex_t lock;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thr_ipending;
    bool irq_level;
    uint8_t rx[RX_FIFO];
    unsigned rx_head, rx_count;
    uint8_t out[OUT_BUF];
    size_t out_len;
    uint64_t tx_count;
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) /* a vCPU kick may land here */
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Caller holds the lock. Output errors are dropped: a guest must not stop because the console
 * went away (the run loop's own flush reports them). */
static int flush_locked(FerrySerial *s)
{
    int r = write_all(s->out_fd, s->out, s->out_len);
    s->out_len = 0;
    return r;
}

static uint8_t iir_locked(const FerrySerial *s)
{
    uint8_t fifo = (s->fcr & 1) ? IIR_FIFO : 0;
    if ((s->ier & IER_RDI) && s->rx_count)
        return IIR_RDI | fifo;
    if ((s->ier & IER_THRI) && s->thr_ipending)
        return IIR_THRI | fifo;
    return IIR_NO_INT | fifo;
}

static void update_irq_locked(FerrySerial *s)
{
    bool level = !(iir_locked(s) & IIR_NO_INT);
    if (level != s->irq_level) {
        s->irq_level = level;
        ferry_vm_set_irq(s->vm, s->irq, level, NULL);
    }
}

static void tx_locked(FerrySerial *s, uint8_t c)
{
    s->tx_count++;
    if (s->mcr & MCR_LOOP) { /* loopback: the byte comes back as input */
        if (s->rx_count < RX_FIFO)
            s->rx[(s->rx_head + s->rx_count++) % RX_FIFO] = c;
        return;
    }
    s->out[s->out_len++] = c;
    if (c == '\n' || s->out_len == OUT_BUF)
        flush_locked(s);
}

static uint32_t serial_read(void *opaque, uint16_t off, unsigned size)
{
    (void)size;
    FerrySerial *s = opaque;
    uint8_t v = 0xff;
    pthread_mutex_lock(&s->lock);
    switch (off) {
    case REG_RBR_THR:
        if (s->lcr & LCR_DLAB) {
            v = s->dll;
        } else {
            v = 0;
            if (s->rx_count) {
                v = s->rx[s->rx_head];
                s->rx_head = (s->rx_head + 1) % RX_FIFO;
                s->rx_count--;
            }
        }
        break;
    case REG_IER:
        v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
        break;
    case REG_IIR_FCR:
        v = iir_locked(s);
        if ((v & 0x0f) == IIR_THRI) /* reading IIR acknowledges THR empty */
            s->thr_ipending = false;
        break;
    case REG_LCR:
        v = s->lcr;
        break;
    case REG_MCR:
        v = s->mcr;
        break;
    case REG_LSR:
        v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
        break;
    case REG_MSR:
        /* Loopback maps MCR outputs to inputs; otherwise report carrier, DSR and CTS up so
         * polling drivers transmit. */
        v = (s->mcr & MCR_LOOP)
                ? (uint8_t)((s->mcr & 0x0c) << 4 | (s->mcr & 0x01) << 5 | (s->mcr & 0x02) << 3)
                : 0xb0;
        break;
    case REG_SCR:
        v = s->scr;
        break;
    }
    update_irq_locked(s);
    pthread_mutex_unlock(&s->lock);
    return v;
}

static void serial_write(void *opaque, uint16_t off, unsigned size, uint32_t val)
{
    (void)size;
    FerrySerial *s = opaque;
    uint8_t v = (uint8_t)val;
    pthread_mutex_lock(&s->lock);
    switch (off) {
    case REG_RBR_THR:
        if (s->lcr & LCR_DLAB) {
            s->dll = v;
        } else {
            tx_locked(s, v);
            s->thr_ipending = true; /* transmitted at once: THR empty again */
        }
        break;
    case REG_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
        } else {
            /* Enabling THRI while THR is empty raises the interrupt (8250 behaviour). */
            if (!(s->ier & IER_THRI) && (v & IER_THRI))
                s->thr_ipending = true;
            s->ier = v & 0x0f;
        }
        break;
    case REG_IIR_FCR:
        s->fcr = v & 0xc9;
        if (v & 0x02) { /* clear RX FIFO */
            s->rx_head = 0;
            s->rx_count = 0;
        }
        break;
    case REG_LCR:
        s->lcr = v;
        break;
    case REG_MCR:
        s->mcr = v & 0x1f;
        break;
    case REG_SCR:
        s->scr = v;
        break;
    default:
        break; /* LSR and MSR are read-only */
    }
    update_irq_locked(s);
    pthread_mutex_unlock(&s->lock);
}

FerrySerial *ferry_serial_create(FerryVm *vm, uint16_t base, uint32_t irq, int out_fd,
                                 FerryError *err)
{
    FerrySerial *s = calloc(1, sizeof(*s));
    if (!s) {
        ferry_error_set(err, -ENOMEM, "serial 0x%x: out of memory", base);
        return NULL;
    }
    s->vm = vm;
    s->base = base;
    s->irq = irq;
    s->out_fd = out_fd;
    s->dll = 0x0c; /* 9600 baud, as firmware leaves it */
    s->lcr = 0x03; /* 8N1 */
    pthread_mutex_init(&s->lock, NULL);
    if (ferry_pio_bus_register(ferry_vm_pio_bus(vm), base, 8, "serial", serial_read, serial_write,
                               s, err) < 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    return s;
}

void ferry_serial_destroy(FerrySerial *s)
{
    if (!s)
        return;
    ferry_pio_bus_unregister(ferry_vm_pio_bus(s->vm), s->base, NULL);
    pthread_mutex_lock(&s->lock);
    flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int ferry_serial_flush(FerrySerial *s, FerryError *err)
{
    pthread_mutex_lock(&s->lock);
    int r = flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return ferry_error_set(err, r, "serial 0x%x: writing output: %s", s->base, strerror(-r));
    return 0;
}

size_t ferry_serial_input(FerrySerial *s, const uint8_t *data, size_t len)
{
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    while (n < len && s->rx_count < RX_FIFO) {
        s->rx[(s->rx_head + s->rx_count++) % RX_FIFO] = data[n++];
    }
    update_irq_locked(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t ferry_serial_tx_count(FerrySerial *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->tx_count;
    pthread_mutex_unlock(&s->lock);
    return n;
}
