/* Source side of a live migration: handshake, pre-copy passes over RAM driven by KVM dirty
 * logging (zero pages as markers, re-sent pages XOR+RLE delta-encoded against the copy the
 * destination holds), switchover with vCPU/VM/device state, and the destination's ack. */
#include "ferry/machine/inventory.h"
#include "ferry/migration/vmstate.h"
#include "ferry/vmm/cpu-state.h"
#include "migration-int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)

typedef struct Source Source;

typedef struct Sender {
    Source *src;
    unsigned index, nshards;
    int fd;
    FerryIO *io;
    FerryStreamWriter *w;
    uint8_t *rec;
    size_t rec_len;
    bool rec_open;
    uint32_t rec_block;
    uint64_t rec_first, rec_last; /* pages of the open record, for error messages */
    bool run_open;
    size_t run_hdr;
    uint64_t run_first;
    uint32_t run_count;
    uint8_t run_enc;
    uint8_t *tmp;  /* one page */
    uint8_t *dbuf; /* one delta */
    uint64_t *pm;  /* pagemap entries of one chunk */
    /* Counters of the current pass. */
    uint64_t pages, zero, raw, delta, bytes;
    uint64_t pages_reported; /* of `pages`, already taken off info.ram_remaining */
    /* Bandwidth cap. */
    uint64_t cap_start_ns, cap_bytes;
    int rc;
    FerryError err;
    pthread_t thread;
    bool thread_started;
    uint64_t seen_gen;
} Sender;

struct Source {
    FerryMigration *m;
    FerryMigParams p;
    MigBlock *blocks;
    size_t nblocks;
    Sender main;
    Sender *ch;
    unsigned nch;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t gen;
    unsigned done;
    bool quit, final, first;
    atomic_bool abort;
    atomic_bool switchover;
    int pagemap_fd;
    bool paused;
    bool return_path;
    /* Throttle (non-convergence policy "throttle"). */
    pthread_t throttle_thread;
    bool throttle_running;
    atomic_uint throttle_pct;
    atomic_bool throttle_stop;
};

static bool stopping(Source *s)
{
    return atomic_load(&s->abort) || atomic_load(&s->m->cancel);
}

/* ---- record building --------------------------------------------------------------------- */

static void run_close(Sender *s)
{
    if (!s->run_open)
        return;
    uint32_t c = htole32(s->run_count);
    memcpy(s->rec + s->run_hdr + 8, &c, 4);
    s->run_open = false;
}

static uint64_t bandwidth_cap(Source *src)
{
    pthread_mutex_lock(&src->m->lock);
    uint64_t cap = src->m->params.max_bandwidth;
    pthread_mutex_unlock(&src->m->lock);
    return cap;
}

static void throttle_bandwidth(Sender *s, size_t n)
{
    /* The stop-and-copy phase is never rate limited (as QEMU): the cap shares the link while
     * the guest runs, but every millisecond now is downtime. */
    if (atomic_load(&s->src->switchover))
        return;
    uint64_t cap = bandwidth_cap(s->src);
    if (!cap) {
        s->cap_start_ns = 0;
        return;
    }
    uint64_t now = mig_now_ns();
    if (!s->cap_start_ns) {
        s->cap_start_ns = now;
        s->cap_bytes = 0;
    }
    s->cap_bytes += n;
    unsigned senders = s->src->nch ? s->src->nch : 1;
    double share = (double)cap / senders;
    uint64_t due = s->cap_start_ns + (uint64_t)((double)s->cap_bytes * 1e9 / share);
    while (due > now && !stopping(s->src)) {
        uint64_t d = due - now;
        if (d > 50000000)
            d = 50000000;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)d};
        nanosleep(&ts, NULL);
        now = mig_now_ns();
    }
}

static int rec_flush(Sender *s)
{
    if (!s->rec_open)
        return 0;
    run_close(s);
    struct iovec iov = {s->rec, s->rec_len};
    s->rec_open = false;
    int r = ferry_stream_write_record(s->w, FERRY_REC_RAM_PAGES, 0, "", s->rec_block, 1, &iov, 1,
                                      &s->err);
    if (r < 0) {
        const FerryRamBlock *b = &s->src->blocks[s->rec_block].b;
        return ferry_error_prefix(&s->err,
                                  "sending RAM block %u (guest-physical 0x%" PRIx64 ", %" PRIu64
                                  " MiB), pages %" PRIu64 "-%" PRIu64 ": ",
                                  s->rec_block, b->gpa, b->size >> 20, s->rec_first, s->rec_last);
    }
    s->bytes += s->rec_len + 40;
    FerryMigration *m = s->src->m;
    pthread_mutex_lock(&m->lock);
    m->info.ram_transferred += s->rec_len + 40; /* live, for query-migrate */
    uint64_t npages = s->pages - s->pages_reported;
    uint64_t done = npages * FERRY_RAM_PAGE_SIZE;
    s->pages_reported = s->pages;
    m->info.ram_remaining = m->info.ram_remaining > done ? m->info.ram_remaining - done : 0;
    mig_rate_account(m, npages, false);
    pthread_mutex_unlock(&m->lock);
    throttle_bandwidth(s, s->rec_len);
    return 0;
}

/* Append one page to the open record: `data` is 4096 bytes (raw) or `dlen` delta bytes. */
static int page_add(Sender *s, uint32_t block, uint64_t page, uint8_t enc, const void *data,
                    size_t dlen)
{
    if (s->rec_open && s->rec_block != block) {
        int r = rec_flush(s);
        if (r < 0)
            return r;
    }
    if (!s->rec_open) {
        s->rec_open = true;
        s->rec_block = block;
        s->rec_first = page;
        s->rec_len = 0;
        s->run_open = false;
    }
    if (s->run_open && (enc != s->run_enc || page != s->run_first + s->run_count))
        run_close(s);
    if (!s->run_open) {
        s->run_hdr = s->rec_len;
        uint64_t first = htole64(page);
        memcpy(s->rec + s->rec_len, &first, 8);
        memset(s->rec + s->rec_len + 8, 0, 4);
        s->rec[s->rec_len + 12] = enc;
        s->rec_len += FERRY_RAM_RUN_HEADER;
        s->run_open = true;
        s->run_first = page;
        s->run_count = 0;
        s->run_enc = enc;
    }
    if (enc == FERRY_RAM_ENC_RAW) {
        memcpy(s->rec + s->rec_len, data, FERRY_RAM_PAGE_SIZE);
        s->rec_len += FERRY_RAM_PAGE_SIZE;
        s->raw++;
    } else if (enc == FERRY_RAM_ENC_DELTA) {
        s->rec[s->rec_len] = (uint8_t)dlen;
        s->rec[s->rec_len + 1] = (uint8_t)(dlen >> 8);
        memcpy(s->rec + s->rec_len + 2, data, dlen);
        s->rec_len += 2 + dlen;
        s->delta++;
    } else {
        s->zero++;
    }
    s->run_count++;
    s->pages++;
    s->rec_last = page;
    /* Zero runs cost 13 bytes however long; still close records now and then so a huge idle
     * block does not become one record the destination cannot verify before applying. */
    if (s->rec_len >= MIG_RECORD_TARGET || s->run_count >= (1u << 20))
        return rec_flush(s);
    return 0;
}

/* ---- one pass over this sender's shard of RAM --------------------------------------------- */

static int send_page_first(Sender *s, MigBlock *mb, uint32_t bi, uint64_t p, bool absent)
{
    uint8_t *hva = mb->b.host + p * FERRY_RAM_PAGE_SIZE;
    if (absent || ferry_ram_page_is_zero(hva))
        return page_add(s, bi, p, FERRY_RAM_ENC_ZERO, NULL, 0);
    /* Copy once into the record; the shadow takes the very bytes that were sent (the last
     * FERRY_RAM_PAGE_SIZE bytes appended, still in rec even when page_add just flushed it), so it
     * stays equal to the destination even while the guest writes the page. */
    int r = page_add(s, bi, p, FERRY_RAM_ENC_RAW, hva, 0);
    if (r < 0)
        return r;
    if (mb->shadow)
        memcpy(mb->shadow + p * FERRY_RAM_PAGE_SIZE, s->rec + s->rec_len - FERRY_RAM_PAGE_SIZE,
               FERRY_RAM_PAGE_SIZE);
    return 0;
}

static int send_page_dirty(Sender *s, MigBlock *mb, uint32_t bi, uint64_t p)
{
    uint8_t *hva = mb->b.host + p * FERRY_RAM_PAGE_SIZE;
    memcpy(s->tmp, hva, FERRY_RAM_PAGE_SIZE);
    uint8_t *sh = mb->shadow ? mb->shadow + p * FERRY_RAM_PAGE_SIZE : NULL;
    if (ferry_ram_page_is_zero(s->tmp)) {
        if (sh && !ferry_ram_page_is_zero(sh))
            memset(sh, 0, FERRY_RAM_PAGE_SIZE);
        return page_add(s, bi, p, FERRY_RAM_ENC_ZERO, NULL, 0);
    }
    if (sh) {
        size_t n = ferry_ram_delta_encode(sh, s->tmp, s->dbuf, FERRY_RAM_DELTA_MAX);
        if (n == 0) /* written, but back to what the destination already has */
            return 0;
        memcpy(sh, s->tmp, FERRY_RAM_PAGE_SIZE);
        if (n != SIZE_MAX)
            return page_add(s, bi, p, FERRY_RAM_ENC_DELTA, s->dbuf, n);
    }
    return page_add(s, bi, p, FERRY_RAM_ENC_RAW, s->tmp, 0);
}

static int sender_pass(Sender *s, bool first)
{
    Source *src = s->src;
    s->pages = s->zero = s->raw = s->delta = s->bytes = s->pages_reported = 0;
    for (uint32_t bi = 0; bi < src->nblocks; bi++) {
        MigBlock *mb = &src->blocks[bi];
        uint64_t chunks = (mb->pages + (1u << MIG_CHUNK_SHIFT) - 1) >> MIG_CHUNK_SHIFT;
        for (uint64_t c = s->index; c < chunks; c += s->nshards) {
            if (stopping(src))
                return ferry_error_set(&s->err, -ECANCELED, "migration cancelled");
            uint64_t base = c << MIG_CHUNK_SHIFT, end = base + (1u << MIG_CHUNK_SHIFT);
            if (end > mb->pages)
                end = mb->pages;
            if (!first) {
                /* Skip clean 64-page words quickly. */
                for (uint64_t p = base; p < end;) {
                    uint64_t word = mb->send[p / 64] >> (p % 64);
                    if (!word) {
                        p = (p / 64 + 1) * 64;
                        continue;
                    }
                    p += (uint64_t)__builtin_ctzll(word);
                    if (p >= end)
                        break;
                    int r = send_page_dirty(s, mb, bi, p);
                    if (r < 0)
                        return r;
                    p++;
                }
                continue;
            }
            bool have_pm = false;
            if (src->pagemap_fd >= 0) {
                /* Pages the process never touched (neither present nor swapped) are zero
                 * without reading them: an idle guest's RAM is mostly such pages. */
                uintptr_t va = (uintptr_t)mb->b.host + base * FERRY_RAM_PAGE_SIZE;
                size_t n = (size_t)(end - base) * 8;
                have_pm = pread(src->pagemap_fd, s->pm, n, (off_t)(va / FERRY_RAM_PAGE_SIZE * 8)) ==
                          (ssize_t)n;
            }
            for (uint64_t p = base; p < end; p++) {
                bool absent = have_pm && !(s->pm[p - base] & (PM_PRESENT | PM_SWAPPED));
                int r = send_page_first(s, mb, bi, p, absent);
                if (r < 0)
                    return r;
            }
        }
    }
    return rec_flush(s);
}

/* ---- channel threads ---------------------------------------------------------------------- */

static void *channel_main(void *arg)
{
    Sender *s = arg;
    Source *src = s->src;
    mig_block_sigpipe();
    for (;;) {
        pthread_mutex_lock(&src->lock);
        while (src->gen == s->seen_gen && !src->quit)
            pthread_cond_wait(&src->cond, &src->lock);
        if (src->quit) {
            pthread_mutex_unlock(&src->lock);
            return NULL;
        }
        s->seen_gen = src->gen;
        bool first = src->first, final = src->final;
        pthread_mutex_unlock(&src->lock);
        int r = s->rc ? s->rc : sender_pass(s, first);
        if (!r && final) {
            r = ferry_stream_write_end(s->w, &s->err);
        }
        if (r < 0) {
            s->rc = r;
            atomic_store(&src->abort, true);
        }
        pthread_mutex_lock(&src->lock);
        src->done++;
        pthread_cond_broadcast(&src->cond);
        pthread_mutex_unlock(&src->lock);
    }
}

/* Run one pass on every sender; returns the first error. */
static int run_pass(Source *src, bool first, bool final, FerryError *err)
{
    if (!src->nch) {
        int r = sender_pass(&src->main, first);
        if (r < 0) {
            *err = src->main.err;
            return r;
        }
        return 0;
    }
    pthread_mutex_lock(&src->lock);
    src->first = first;
    src->final = final;
    src->done = 0;
    src->gen++;
    pthread_cond_broadcast(&src->cond);
    while (src->done < src->nch)
        pthread_cond_wait(&src->cond, &src->lock);
    pthread_mutex_unlock(&src->lock);
    /* A channel that failed makes the others stop with -ECANCELED ("migration cancelled"):
     * report the failure itself (a cut link is not a cancel). */
    int bad = -1;
    for (unsigned i = 0; i < src->nch; i++)
        if (src->ch[i].rc < 0 &&
            (bad < 0 || (src->ch[bad].rc == -ECANCELED && src->ch[i].rc != -ECANCELED)))
            bad = (int)i;
    if (bad >= 0) {
        *err = src->ch[bad].err;
        return ferry_error_prefix(err, "RAM channel %d: ", bad + 1);
    }
    return 0;
}

/* Before stopping the guest, let the destination apply what is still in flight: with large
 * socket buffers several MiB per connection sit between the passes and the destination's
 * memory, and draining them after the stop was most of the downtime (measured: 25-50 ms of
 * 30-50). One round trip per connection while the guest still runs. */
static int drain(Source *src, FerryError *err)
{
    if (!src->return_path)
        return 0;
    Sender *all = src->nch ? src->ch : &src->main;
    unsigned n = src->nch ? src->nch : 1;
    uint64_t zero[2] = {0, 0};
    struct iovec iov = {zero, sizeof(zero)};
    for (unsigned i = 0; i < n; i++) {
        int r = ferry_stream_write_record(all[i].w, FERRY_REC_RAM_PASS, 0, "", MIG_SYNC_PASS, 1,
                                          &iov, 1, err);
        if (!r)
            r = ferry_io_flush(all[i].io, err);
        if (r < 0)
            return r;
    }
    for (unsigned i = 0; i < n; i++) {
        char line[FERRY_ERROR_MSG_MAX + 32];
        int r = mig_read_line(all[i].fd, line, sizeof(line), MIG_ACK_TIMEOUT_MS, err);
        if (r < 0)
            return ferry_error_prefix(err, "draining RAM channel %u: ", i);
        if (!strncmp(line, MIG_REPLY_ERR, strlen(MIG_REPLY_ERR)))
            return ferry_error_set(err, -EPROTO, "destination failed: %s",
                                   line + strlen(MIG_REPLY_ERR));
        if (strcmp(line, MIG_SYNCED))
            return ferry_error_set(err, -EPROTO, "unexpected answer '%.64s' while draining", line);
    }
    return 0;
}

/* ---- throttle ----------------------------------------------------------------------------- */

static void *throttle_main(void *arg)
{
    Source *src = arg;
    FerryMigHost *h = &src->m->host;
    while (!atomic_load(&src->throttle_stop)) {
        unsigned pct = atomic_load(&src->throttle_pct);
        if (pct) {
            if (h->stop)
                h->stop(h->opaque);
            else
                ferry_vcpus_pause(h->vcpus);
            struct timespec off = {0, (long)pct * 100000}; /* of a 10 ms period */
            nanosleep(&off, NULL);
            if (h->resume)
                h->resume(h->opaque);
            else
                ferry_vcpus_resume(h->vcpus);
        }
        struct timespec on = {0, (long)(100 - pct) * 100000};
        nanosleep(&on, NULL);
    }
    return NULL;
}

static void throttle_end(Source *src)
{
    if (!src->throttle_running)
        return;
    atomic_store(&src->throttle_stop, true);
    pthread_join(src->throttle_thread, NULL);
    src->throttle_running = false;
    pthread_mutex_lock(&src->m->lock);
    src->m->info.throttle_active = false; /* throttle_pct keeps the last value applied */
    pthread_mutex_unlock(&src->m->lock);
}

/* ---- setup -------------------------------------------------------------------------------- */

static int sender_init(Source *src, Sender *s, unsigned index, unsigned nshards, int fd,
                       FerryError *err)
{
    s->src = src;
    s->index = index;
    s->nshards = nshards;
    s->fd = fd;
    s->rec = malloc(MIG_RECORD_TARGET + FERRY_RAM_PAGE_SIZE + FERRY_RAM_DELTA_MAX + 64);
    s->tmp = aligned_alloc(64, FERRY_RAM_PAGE_SIZE);
    s->dbuf = malloc(FERRY_RAM_DELTA_MAX + 16);
    s->pm = malloc(8u << MIG_CHUNK_SHIFT);
    s->io = ferry_io_fd_writer(fd, false);
    if (!s->rec || !s->tmp || !s->dbuf || !s->pm || !s->io)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static void sender_fini(Sender *s)
{
    ferry_stream_writer_free(s->w);
    ferry_io_destroy(s->io);
    free(s->rec);
    free(s->tmp);
    free(s->dbuf);
    free(s->pm);
    memset(s, 0, sizeof(*s));
}

static json_t *handshake_json(Source *src, const uint8_t session[16])
{
    FerryMigration *m = src->m;
    json_t *j = json_object();
    FerryMachine *mach = m->host.machine;
    json_object_set_new(j, "machine", json_string(mach ? ferry_machine_type(mach)->name : "none"));
    if (mach) {
        mig_lock(m);
        FerryInventory *inv = ferry_machine_inventory(mach);
        mig_unlock(m);
        json_object_set_new(j, "inventory", inv ? ferry_inventory_to_json(inv) : json_null());
        ferry_inventory_free(inv);
    } else {
        json_object_set_new(j, "inventory", json_null());
    }
    json_t *ram = json_array();
    for (size_t i = 0; i < src->nblocks; i++) {
        json_t *b = json_object();
        json_object_set_new(b, "gpa", json_integer((json_int_t)src->blocks[i].b.gpa));
        json_object_set_new(b, "size", json_integer((json_int_t)src->blocks[i].b.size));
        json_array_append_new(ram, b);
    }
    json_object_set_new(j, "ram", ram);
    json_object_set_new(j, "channels", json_integer(src->nch));
    char hex[33];
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", session[i]);
    json_object_set_new(j, "session", json_string(hex));
    json_object_set_new(j, "vcpus", json_integer(mig_vcpu_count(m)));
    return j;
}

static int write_json_record(FerryStreamWriter *w, uint8_t kind, const char *name, json_t *j,
                             FerryError *err)
{
    char *text = json_dumps(j, JSON_COMPACT);
    if (!text)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    struct iovec iov = {text, strlen(text)};
    int r = ferry_stream_write_record(w, kind, 0, name, 0, 1, &iov, 1, err);
    free(text);
    return r;
}

static int write_ram_blocks(Source *src, FerryError *err)
{
    size_t cap = 4 + src->nblocks * (1 + 32 + 8 + 8 + 4), len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    uint32_t n = htole32((uint32_t)src->nblocks);
    memcpy(buf, &n, 4);
    len = 4;
    for (size_t i = 0; i < src->nblocks; i++) {
        char name[32];
        int nl = snprintf(name, sizeof(name), "ram@0x%" PRIx64, src->blocks[i].b.gpa);
        buf[len++] = (uint8_t)nl;
        memcpy(buf + len, name, (size_t)nl);
        len += (size_t)nl;
        uint64_t gpa = htole64(src->blocks[i].b.gpa), size = htole64(src->blocks[i].b.size);
        uint32_t ps = htole32(FERRY_RAM_PAGE_SIZE);
        memcpy(buf + len, &gpa, 8);
        memcpy(buf + len + 8, &size, 8);
        memcpy(buf + len + 16, &ps, 4);
        len += 20;
    }
    struct iovec iov = {buf, len};
    int r = ferry_stream_write_record(src->main.w, FERRY_REC_RAM_BLOCKS, 0, "", 0, 1, &iov, 1, err);
    free(buf);
    return r;
}

static int write_pass_record(Source *src, uint64_t pass, uint64_t sent, uint64_t dirty,
                             FerryError *err)
{
    uint64_t v[2] = {htole64(sent), htole64(dirty)};
    struct iovec iov = {v, sizeof(v)};
    return ferry_stream_write_record(src->main.w, FERRY_REC_RAM_PASS, 0, "", (uint32_t)pass, 1,
                                     &iov, 1, err);
}

/* The pages dirtied since the last fetch become the next pass's work. With `merge` they are
 * added to pages still pending (the switchover follows a live fetch whose pages were not sent
 * yet); otherwise the previous set was sent in full and is replaced. */
static int fetch_dirty(Source *src, bool merge, uint64_t *count, FerryError *err)
{
    uint64_t n = 0;
    for (size_t i = 0; i < src->nblocks; i++) {
        MigBlock *mb = &src->blocks[i];
        uint64_t *dst = merge ? mb->fetched : mb->send;
        int r = ferry_vm_dirty_log_fetch(src->m->host.vm, mb->b.slot, dst, mb->bitmap_size, err);
        if (r < 0)
            return r;
        for (size_t w = 0; w < mb->bitmap_size / 8; w++) {
            if (merge)
                mb->send[w] |= mb->fetched[w];
            n += (uint64_t)__builtin_popcountll(mb->send[w]);
        }
    }
    *count = n;
    return 0;
}

static void guest_stop(Source *src)
{
    FerryMigHost *h = &src->m->host;
    if (h->stop)
        h->stop(h->opaque);
    else
        ferry_vcpus_pause(h->vcpus);
    src->paused = true;
    if (h->on_switchover_stop)
        h->on_switchover_stop(h->opaque, true);
}

static void guest_resume(Source *src)
{
    FerryMigHost *h = &src->m->host;
    if (!src->paused)
        return;
    if (h->resume)
        h->resume(h->opaque);
    else
        ferry_vcpus_resume(h->vcpus);
    src->paused = false;
    if (h->on_switchover_stop)
        h->on_switchover_stop(h->opaque, false);
}

/* x-ferry-test-subsection (S14, test only): the registry's records, the first one with an extra
 * subsection "<section>/x-ferry-test" (one byte of its state) that no destination knows. */
static int write_registry_test_sub(FerryStreamWriter *w, const FerryRegistry *reg, uint32_t mode,
                                   FerryError *err)
{
    for (size_t i = 0; i < ferry_registry_count(reg); i++) {
        const char *section;
        uint32_t instance;
        void *opaque;
        const FerryDesc *d = ferry_registry_entry(reg, i, &section, &instance, &opaque);
        if (i > 0) {
            int rc = ferry_stream_write_state(w, section, instance, d, opaque, err);
            if (rc)
                return rc;
            continue;
        }
        char name[256 + 16]; /* a section name (FerryRecord.name) + suffix */
        snprintf(name, sizeof(name), "%s/x-ferry-test", section);
        const FerryField fields[] = {
            {.name = "marker", .type = FERRY_TYPE_U8, .size = 1}, /* byte 0 of the state */
            FERRY_END,
        };
        const FerryDesc extra = {
            .name = name, .version = 1, .min_version = 1, .size = d->size, .fields = fields};
        FerrySubsection subs[32];
        size_t n = 0;
        for (; d->subsections && d->subsections[n].desc && n < 30; n++)
            subs[n] = d->subsections[n];
        subs[n++] =
            (FerrySubsection){.desc = &extra, .optional = mode == FERRY_MIG_TEST_SUB_OPTIONAL};
        subs[n] = (FerrySubsection){NULL};
        FerryDesc with = *d;
        with.subsections = subs;
        int rc = ferry_stream_write_state(w, section, instance, &with, opaque, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int write_device_state(Source *src, FerryError *err)
{
    FerryMigHost *h = &src->m->host;
    static __thread FerryCpuState cpu; /* 24 KiB: not on the stack */
    FerryVmState vms;
    for (unsigned i = 0; i < mig_vcpu_count(src->m); i++) {
        FerryVcpu *v = mig_vcpu_at(src->m, i);
        int r = ferry_cpu_state_get(v, &cpu, err);
        if (r < 0)
            return ferry_error_prefix(err, "vCPU %u: ", ferry_vcpu_id(v));
        r = ferry_stream_write_state(src->main.w, FERRY_MIG_CPU_SECTION, ferry_vcpu_id(v),
                                     &ferry_cpu_state_desc, &cpu, err);
        if (r < 0)
            return r;
    }
    int r = ferry_vm_state_get(h->vm, &vms, err);
    if (!r)
        r = ferry_stream_write_state(src->main.w, FERRY_MIG_VM_SECTION, 0, &ferry_vm_state_desc,
                                     &vms, err);
    if (r < 0)
        return r;
    if (h->machine) {
        mig_lock(src->m);
        FerryRegistry *reg = ferry_machine_registry(h->machine, err);
        uint32_t test_sub = src->m->params.x_test_subsection;
        if (reg && test_sub)
            r = write_registry_test_sub(src->main.w, reg, test_sub, err);
        else if (reg)
            r = ferry_stream_write_registry(src->main.w, reg, err);
        else
            r = err->code ? err->code : -ENOMEM;
        ferry_registry_free(reg);
        mig_unlock(src->m);
    }
    return r;
}

static void stats_update(Source *src, const FerryMigPass *ps, uint64_t dirty, double exp_ms,
                         uint64_t total_bytes, uint64_t zero, uint64_t raw, uint64_t delta,
                         uint64_t normal_bytes)
{
    FerryMigration *m = src->m;
    pthread_mutex_lock(&m->lock);
    FerryMigInfo *in = &m->info;
    if (in->npasses < FERRY_MIG_PASSES_MAX)
        in->passes[in->npasses++] = *ps;
    (void)total_bytes;
    in->ram_remaining = dirty * FERRY_RAM_PAGE_SIZE;
    in->duplicate = zero;
    in->normal = raw;
    in->delta_pages = delta;
    in->normal_bytes = normal_bytes;
    in->dirty_sync_count++;
    double secs = ps->duration_us / 1e6;
    if (secs > 0)
        in->dirty_pages_rate = (uint64_t)((double)dirty / secs);
    mig_rate_account(m, 0, true); /* the pass's pages were counted as their records went */
    in->expected_downtime_ms = (uint64_t)exp_ms;
    in->throttle_pct = atomic_load(&src->throttle_pct);
    in->throttle_active = src->throttle_running && !ps->final;
    pthread_mutex_unlock(&m->lock);
}

static void source_cleanup(Source *src)
{
    throttle_end(src);
    pthread_mutex_lock(&src->lock);
    src->quit = true;
    pthread_cond_broadcast(&src->cond);
    pthread_mutex_unlock(&src->lock);
    for (unsigned i = 0; src->ch && i < src->nch; i++) {
        if (src->ch[i].thread_started)
            pthread_join(src->ch[i].thread, NULL);
        sender_fini(&src->ch[i]);
    }
    free(src->ch);
    sender_fini(&src->main);
    for (size_t i = 0; i < src->nblocks; i++) {
        free(src->blocks[i].send);
        free(src->blocks[i].fetched);
        if (src->blocks[i].shadow)
            munmap(src->blocks[i].shadow, src->blocks[i].b.size);
    }
    free(src->blocks);
    if (src->pagemap_fd >= 0)
        close(src->pagemap_fd);
    FerryMigration *m = src->m;
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < m->nfds; i++) {
        if (m->fds[i] >= 0 && !(i == 0 && m->uri.kind == FERRY_URI_FD))
            close(m->fds[i]);
        m->fds[i] = -1;
    }
    m->nfds = 0;
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_destroy(&src->lock);
    pthread_cond_destroy(&src->cond);
}

static int add_fd(FerryMigration *m, int fd)
{
    pthread_mutex_lock(&m->lock);
    m->fds[m->nfds++] = fd;
    bool cancelled = atomic_load(&m->cancel);
    pthread_mutex_unlock(&m->lock);
    return cancelled ? -ECANCELED : 0;
}

/* The whole outgoing migration; returns 0 when the destination acknowledged. */
static int source_run(Source *src, FerryError *err)
{
    FerryMigration *m = src->m;
    FerryMigHost *h = &m->host;
    uint8_t session[16];
    if (getrandom(session, sizeof(session), 0) != sizeof(session))
        memset(session, 0x5a, sizeof(session));

    /* RAM blocks: fixed for the migration (memory hotplug is refused while it runs). */
    src->nblocks = ferry_vm_ram_count(h->vm);
    src->blocks = calloc(src->nblocks ? src->nblocks : 1, sizeof(*src->blocks));
    if (!src->blocks)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    uint64_t ram_total = 0;
    for (size_t i = 0; i < src->nblocks; i++) {
        MigBlock *mb = &src->blocks[i];
        int r = ferry_vm_ram_block(h->vm, i, &mb->b, err);
        if (r < 0)
            return r;
        mb->pages = mb->b.size / FERRY_RAM_PAGE_SIZE;
        mb->bitmap_size = ferry_vm_dirty_bitmap_size(mb->b.size);
        mb->send = calloc(1, mb->bitmap_size);
        mb->fetched = calloc(1, mb->bitmap_size);
        if (!mb->send || !mb->fetched)
            return ferry_error_set(err, -ENOMEM, "out of memory");
        if (src->p.delta) {
            mb->shadow = mmap(NULL, mb->b.size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (mb->shadow == MAP_FAILED)
                mb->shadow = NULL; /* no delta for this block, still correct */
        }
        ram_total += mb->b.size;
    }
    pthread_mutex_lock(&m->lock);
    m->info.ram_total = ram_total;
    m->info.ram_remaining = ram_total;
    pthread_mutex_unlock(&m->lock);
    src->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

    /* Main connection. */
    int fd = ferry_uri_connect(&m->uri, err);
    if (fd < 0)
        return fd;
    if (add_fd(m, fd) < 0)
        return ferry_error_set(err, -ECANCELED, "migration cancelled");
    struct stat st;
    src->return_path = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    if (!ferry_uri_multichannel(&m->uri))
        src->nch = 0;
    int r = sender_init(src, &src->main, 0, 1, fd, err);
    if (r < 0)
        return r;
    const char *mtype = h->machine ? ferry_machine_type(h->machine)->name : "none";
    src->main.w = ferry_stream_writer_new(src->main.io, mtype, err);
    if (!src->main.w)
        return err->code;
    json_t *hs = handshake_json(src, session);
    r = write_json_record(src->main.w, FERRY_REC_HANDSHAKE, "handshake", hs, err);
    json_decref(hs);
    if (!r)
        r = ferry_io_flush(src->main.io, err);
    if (r < 0)
        return ferry_error_prefix(err, "sending the handshake: ");
    if (src->return_path) {
        char line[FERRY_ERROR_MSG_MAX + 32];
        r = mig_read_line(fd, line, sizeof(line), MIG_ACK_TIMEOUT_MS, err);
        if (r < 0)
            return ferry_error_prefix(err, "waiting for the destination's handshake answer: ");
        if (!strncmp(line, MIG_REPLY_ERR, strlen(MIG_REPLY_ERR)))
            return ferry_error_set(err, -EPROTO, "destination refused: %s",
                                   line + strlen(MIG_REPLY_ERR));
        if (strcmp(line, MIG_REPLY_OK))
            return ferry_error_set(err, -EPROTO, "unexpected handshake answer '%.64s'", line);
    }

    /* RAM channels. */
    if (src->nch) {
        src->ch = calloc(src->nch, sizeof(*src->ch));
        if (!src->ch)
            return ferry_error_set(err, -ENOMEM, "out of memory");
        for (unsigned i = 0; i < src->nch; i++) {
            Sender *s = &src->ch[i];
            int cfd = ferry_uri_connect(&m->uri, err);
            if (cfd < 0)
                return ferry_error_prefix(err, "RAM channel %u: ", i + 1);
            if (add_fd(m, cfd) < 0)
                return ferry_error_set(err, -ECANCELED, "migration cancelled");
            if ((r = sender_init(src, s, i, src->nch, cfd, err)) < 0)
                return r;
            s->w = ferry_stream_writer_new(s->io, mtype, err);
            if (!s->w)
                return err->code;
            uint8_t hello[24];
            uint32_t idx = htole32(i + 1), cnt = htole32(src->nch);
            memcpy(hello, &idx, 4);
            memcpy(hello + 4, &cnt, 4);
            memcpy(hello + 8, session, 16);
            struct iovec iov = {hello, sizeof(hello)};
            r = ferry_stream_write_record(s->w, FERRY_REC_CHANNEL, 0, "channel", i + 1, 1, &iov, 1,
                                          err);
            if (!r)
                r = ferry_io_flush(s->io, err);
            if (r < 0)
                return ferry_error_prefix(err, "RAM channel %u: ", i + 1);
            if (pthread_create(&s->thread, NULL, channel_main, s))
                return ferry_error_set(err, -EAGAIN, "cannot start RAM channel thread");
            s->thread_started = true;
        }
    }
    r = write_ram_blocks(src, err);
    if (!r) {
        /* The schema of every device record this stream will carry (machine sections, vCPUs,
         * VM), so `ferry analyze` decodes all of them by name without this binary. */
        FerryRegistry *reg = ferry_registry_new();
        if (!reg)
            r = ferry_error_set(err, -ENOMEM, "out of memory");
        /* vCPU accessors take the host's lock themselves: list them before taking it. */
        for (unsigned i = 0; !r && i < mig_vcpu_count(m); i++)
            r = ferry_registry_add(reg, FERRY_MIG_CPU_SECTION, ferry_vcpu_id(mig_vcpu_at(m, i)),
                                   &ferry_cpu_state_desc, NULL, err);
        mig_lock(m);
        FerryRegistry *mreg = !r && h->machine ? ferry_machine_registry(h->machine, err) : NULL;
        if (!r && h->machine && !mreg)
            r = err->code ? err->code : -ENOMEM;
        for (size_t i = 0; mreg && !r && i < ferry_registry_count(mreg); i++) {
            const char *sec;
            uint32_t inst;
            const FerryDesc *d = ferry_registry_entry(mreg, i, &sec, &inst, NULL);
            r = ferry_registry_add(reg, sec, inst, d, NULL, err);
        }
        ferry_registry_free(mreg);
        if (!r)
            r = ferry_registry_add(reg, FERRY_MIG_VM_SECTION, 0, &ferry_vm_state_desc, NULL, err);
        if (!r)
            r = ferry_stream_write_schema(src->main.w, reg, err);
        ferry_registry_free(reg);
        mig_unlock(m);
    }
    if (r < 0)
        return r;
    r = ferry_vm_dirty_log_start(h->vm, err);
    if (r < 0)
        return r;
    pthread_mutex_lock(&m->lock);
    m->info.setup_time_ms = (mig_now_ns() - m->start_ns) / 1000000;
    pthread_mutex_unlock(&m->lock);
    mig_set_status(m, FERRY_MIG_ACTIVE);

    /* Pre-copy passes. */
    uint64_t total_bytes = 0, zero = 0, raw = 0, delta = 0, normal_bytes = 0;
    uint64_t prev_dirty = UINT64_MAX, dirty = 0;
    for (uint64_t pass = 0;; pass++) {
        if (h->on_pass)
            h->on_pass(h->opaque, pass + 1);
        uint64_t t0 = mig_now_ns();
        r = run_pass(src, pass == 0, false, err);
        if (r < 0)
            return r;
        FerryMigPass ps = {0};
        Sender *all = src->nch ? src->ch : &src->main;
        unsigned n = src->nch ? src->nch : 1;
        for (unsigned i = 0; i < n; i++) {
            ps.pages_sent += all[i].pages;
            ps.bytes_sent += all[i].bytes;
            zero += all[i].zero;
            raw += all[i].raw;
            delta += all[i].delta;
        }
        total_bytes += ps.bytes_sent;
        r = fetch_dirty(src, false, &dirty, err);
        if (r < 0)
            return r;
        ps.pages_dirtied = dirty;
        ps.duration_us = (mig_now_ns() - t0) / 1000;
        r = write_pass_record(src, pass, ps.pages_sent, dirty, err);
        if (r < 0)
            return r;
        /* Expected stop time: the dirty pages at this pass's cost per page (a dirty pass is
         * made of the same kind of pages as the final one); after the first pass, at its
         * byte rate with raw pages. Both bounded below by the bandwidth cap. */
        double per_page_s;
        uint64_t cap = bandwidth_cap(src);
        if (pass == 0) {
            double bw = ps.duration_us ? ps.bytes_sent / (ps.duration_us / 1e6) : 1e9;
            if (bw < 100e6)
                bw = 100e6;
            per_page_s = FERRY_RAM_PAGE_SIZE / bw;
        } else {
            per_page_s = ps.pages_sent ? (ps.duration_us / 1e6) / ps.pages_sent : 1e-6;
            if (cap && ps.pages_sent) {
                double c = (double)ps.bytes_sent / ps.pages_sent / cap;
                per_page_s = per_page_s > c ? per_page_s : c;
            }
        }
        double exp_ms = dirty * per_page_s * 1e3 + 1.0;
        normal_bytes = raw * FERRY_RAM_PAGE_SIZE;
        stats_update(src, &ps, dirty, exp_ms, total_bytes, zero, raw, delta, normal_bytes);
        if (stopping(src))
            return ferry_error_set(err, -ECANCELED, "migration cancelled");
        /* Switch over when the rest fits the limit and another pass would not shrink it much
         * (passes are cheap next to a guest's dirtying rate, so iterating lowers downtime). */
        bool fits = exp_ms <= (double)src->p.downtime_limit_ms;
        bool shrinking = dirty * 4 < prev_dirty * 3 && exp_ms > 2.0;
        if (fits && (!shrinking || dirty == 0))
            break;
        /* Non-convergence policy. max_passes counts passes with the final one, which comes
         * next: pass + 2 passes in all if we stop now. */
        if (pass + 2 >= src->p.max_passes) {
            if (src->p.converge == FERRY_MIG_CONVERGE_SWITCHOVER)
                break;
            /* Throttle: 20 % more per pass, switch over regardless after 3x max_passes. */
            if (pass + 2 >= 3 * src->p.max_passes)
                break;
            unsigned pct = atomic_load(&src->throttle_pct);
            atomic_store(&src->throttle_pct, pct + 20 > 90 ? 90u : pct + 20);
            if (!src->throttle_running) {
                atomic_store(&src->throttle_stop, false);
                if (pthread_create(&src->throttle_thread, NULL, throttle_main, src) == 0)
                    src->throttle_running = true;
            }
            pthread_mutex_lock(&m->lock);
            m->info.throttle_pct = atomic_load(&src->throttle_pct);
            m->info.throttle_active = src->throttle_running;
            pthread_mutex_unlock(&m->lock);
        }
        prev_dirty = dirty;
    }

    /* Switchover. */
    throttle_end(src);
    if ((r = drain(src, err)) < 0)
        return r;
    uint64_t t_stop = mig_now_ns();
    atomic_store(&src->switchover, true);
    guest_stop(src);
    mig_set_status(m, FERRY_MIG_DEVICE);
    uint64_t t0 = mig_now_ns();
    r = fetch_dirty(src, true, &dirty, err);
    if (!r)
        r = run_pass(src, false, true, err);
    if (r < 0)
        return r;
    FerryMigPass ps = {.final = true};
    Sender *all = src->nch ? src->ch : &src->main;
    for (unsigned i = 0; i < (src->nch ? src->nch : 1); i++) {
        ps.pages_sent += all[i].pages;
        ps.bytes_sent += all[i].bytes;
        zero += all[i].zero;
        raw += all[i].raw;
        delta += all[i].delta;
    }
    total_bytes += ps.bytes_sent;
    r = write_pass_record(src, UINT32_MAX, ps.pages_sent, 0, err);
    if (!r)
        r = write_device_state(src, err);
    if (!r)
        r = ferry_stream_write_end(src->main.w, err);
    if (r < 0)
        return r;
    ps.duration_us = (mig_now_ns() - t0) / 1000;
    normal_bytes = raw * FERRY_RAM_PAGE_SIZE;
    stats_update(src, &ps, 0, 0, total_bytes, zero, raw, delta, normal_bytes);
    if (src->return_path) {
        char line[FERRY_ERROR_MSG_MAX + 32];
        r = mig_read_line(fd, line, sizeof(line), MIG_ACK_TIMEOUT_MS, err);
        if (r < 0)
            return ferry_error_prefix(err, "waiting for the destination's acknowledgement: ");
        if (!strncmp(line, MIG_REPLY_ERR, strlen(MIG_REPLY_ERR)))
            return ferry_error_set(err, -EPROTO, "destination failed: %s",
                                   line + strlen(MIG_REPLY_ERR));
        if (strcmp(line, MIG_REPLY_ACK))
            return ferry_error_set(err, -EPROTO, "unexpected acknowledgement '%.64s'", line);
        /* The destination runs on GO. If GO is lost it does not run either: the source stays
         * in postmigrate and management decides (never two running copies). */
        mig_write_all(fd, MIG_GO "\n", strlen(MIG_GO) + 1, NULL);
    } else if (m->uri.kind == FERRY_URI_FILE) {
        if (fdatasync(fd) < 0)
            return ferry_error_set(err, -errno, "file:%s: fdatasync: %s", m->uri.path,
                                   strerror(errno));
    }
    pthread_mutex_lock(&m->lock);
    m->info.downtime_us = (mig_now_ns() - t_stop) / 1000;
    m->info.downtime_ms = m->info.downtime_us / 1000;
    m->info.ram_remaining = 0;
    mig_rate_complete(m);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static bool guest_stopped(FerryMigration *m)
{
    FerryMigHost *h = &m->host;
    if (h->machine) {
        mig_lock(m);
        FerryRunState rs = ferry_machine_runstate(h->machine);
        mig_unlock(m);
        return rs != FERRY_RUN_RUNNING;
    }
    return h->vcpus && ferry_vcpus_paused(h->vcpus);
}

void *mig_source_main(void *arg)
{
    FerryMigration *m = arg;
    FerryMigHost *h = &m->host;
    mig_block_sigpipe();
    Source src = {.m = m, .pagemap_fd = -1};
    pthread_mutex_init(&src.lock, NULL);
    pthread_cond_init(&src.cond, NULL);
    ferry_migration_get_params(m, &src.p);
    /* A stopped guest dirties nothing: no page will be sent twice, so the shadow copy (memory
     * and a first-touch per page) would be pure cost. Decided once: delta needs the shadow to
     * match the destination for every page from the first pass on. */
    if (guest_stopped(m))
        src.p.delta = false;
    src.nch = src.p.multifd_channels;
    FerryError err = {0};
    int r = source_run(&src, &err);
    if (r < 0 && src.return_path && !atomic_load(&m->cancel) && !strstr(err.msg, "destination")) {
        /* A write that failed because the destination gave up: its reason is on the return
         * path ("FERRY-ERR checksum mismatch ..."), more useful than "Broken pipe". */
        char line[FERRY_ERROR_MSG_MAX + 32];
        FerryError e2 = {0};
        if (mig_read_line(m->fds[0], line, sizeof(line), 300, &e2) == 0 &&
            !strncmp(line, MIG_REPLY_ERR, strlen(MIG_REPLY_ERR))) {
            char was[FERRY_ERROR_MSG_MAX];
            snprintf(was, sizeof(was), "%s", err.msg);
            ferry_error_set(&err, r, "destination failed: %s (here: %s)",
                            line + strlen(MIG_REPLY_ERR), was);
        }
    }
    if (r < 0) {
        atomic_store(&src.abort, true);
        mig_shutdown_fds(m);
    }
    bool was_paused = src.paused;
    source_cleanup(&src);
    ferry_vm_dirty_log_stop(h->vm, NULL);
    if (r < 0) {
        /* Failure or cancel: the guest keeps running on the source with its memory untouched
         * (the engine only ever read it). */
        if (was_paused)
            guest_resume(&src);
        mig_set_active(m, false);
        mig_fail(m, &err);
        mig_set_status(m, atomic_load(&m->cancel) ? FERRY_MIG_CANCELLED : FERRY_MIG_FAILED);
        return NULL;
    }
    /* postmigrate before the migration stops being active: a host that holds control
     * commands back while migrating (ferry run) then never applies one to a source still
     * in its pre-migration run state. */
    if (h->machine) {
        mig_lock(m);
        ferry_machine_run_event(h->machine, FERRY_RUN_EV_OUTGOING_DONE, NULL);
        mig_unlock(m);
    }
    mig_set_active(m, false);
    mig_set_status(m, FERRY_MIG_COMPLETED);
    return NULL;
}
