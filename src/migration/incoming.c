/* Destination side of a migration (and snapshot restore): handshake check, RAM records from the
 * main and RAM channels applied to guest memory, vCPU/VM/device state held until the whole
 * stream verified, then applied, acknowledged, and released to run only on the source's GO. */
#include "ferry/machine/inventory.h"
#include "ferry/migration/vmstate.h"
#include "ferry/vmm/cpu-state.h"
#include "migration-int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HANDSHAKE_MAX (1u << 20)
#define REPORT_MAX    4096

typedef struct Dest Dest;

typedef struct Receiver {
    Dest *d;
    unsigned index;
    int fd;
    FerryIO *io;
    FerryStreamReader *r;
    uint8_t *buf; /* one delta */
    pthread_t thread;
    bool started;
    int rc;
    FerryError err;
} Receiver;

struct Dest {
    FerryMigration *m;
    FerryRamBlock *blocks;
    uint64_t **nz; /* per block: pages that may be non-zero (present at start, or written) */
    size_t nblocks;
    /* The blocks when the incoming side started (prefaulted, with their zero tracking); the
     * block list itself is taken again at the handshake: management adds memory blocks in
     * inmigrate (device_add), as libvirt does, possibly after the listener started. */
    FerryRamBlock *pf_blocks;
    uint64_t **pf_nz;
    size_t pf_nblocks;
    pthread_t prefault;
    bool prefault_started;
    atomic_bool prefault_stop;
    Receiver main;
    Receiver *ch;
    unsigned nch;
    char session[40];
    bool return_path;
    FerryCpuState **cpus;
    unsigned ncpus;
    FerryVmState vms;
    bool have_vms;
    FerryRegistry *reg;
    FerryDesc *old_descs; /* x-ferry-test-no-subsections: the stripped copies reg points to */
    atomic_bool abort;
};

/* ---- RAM ---------------------------------------------------------------------------------- */

/* Pages this destination never held data in are still zero: skip them (an idle guest's RAM is
 * mostly such pages); clear the others only if they are not zero already. */
static void zero_pages(uint64_t *nz, uint8_t *host, uint64_t first, uint64_t count)
{
    for (uint64_t p = first; p < first + count;) {
        uint64_t w = nz[p / 64] >> (p % 64);
        if (!w) {
            p = (p / 64 + 1) * 64;
            continue;
        }
        p += (uint64_t)__builtin_ctzll(w);
        if (p >= first + count)
            break;
        uint8_t *pg = host + (p - first) * FERRY_RAM_PAGE_SIZE;
        if (!ferry_ram_page_is_zero(pg))
            memset(pg, 0, FERRY_RAM_PAGE_SIZE);
        nz[p / 64] &= ~(1ull << (p % 64));
        p++;
    }
}

static void mark_written(uint64_t *nz, uint64_t first, uint64_t count)
{
    for (uint64_t p = first; p < first + count; p++)
        nz[p / 64] |= 1ull << (p % 64);
}

/* Fault the guest RAM in while waiting for the stream: a first touch costs ~2 us per page
 * here (more in nested VMs), which would otherwise land inside the migration. Populating does
 * not change contents, so it may race with the stream's writes. */
static void *prefault_main(void *arg)
{
    Dest *d = arg;
    for (size_t i = 0; i < d->pf_nblocks; i++) {
        FerryRamBlock *b = &d->pf_blocks[i];
        for (uint64_t off = 0; off < b->size; off += 2u << 20) {
            if (atomic_load(&d->prefault_stop))
                return NULL;
            uint64_t len = b->size - off < (2u << 20) ? b->size - off : (2u << 20);
            if (madvise(b->host + off, len, MADV_POPULATE_WRITE) < 0)
                return NULL; /* older kernel: the stream faults pages in as it goes */
        }
    }
    pthread_mutex_lock(&d->m->lock);
    d->m->info.prefault_done = true;
    pthread_mutex_unlock(&d->m->lock);
    return NULL;
}

/* Per block, the pages that may hold data: present or swapped in the pagemap (never-touched
 * anonymous memory is zero). A block already tracked in `old` keeps its bitmap. */
static int track_init(const FerryRamBlock *blocks, size_t n, uint64_t ***out,
                      const FerryRamBlock *old, uint64_t **old_nz, size_t nold, FerryError *err)
{
    uint64_t **nz = calloc(n ? n : 1, sizeof(*nz));
    if (!nz)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    *out = nz;
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    uint64_t *ent = malloc(8 * 4096);
    for (size_t i = 0; i < n; i++) {
        uint64_t pages = blocks[i].size / FERRY_RAM_PAGE_SIZE;
        nz[i] = calloc((pages + 63) / 64, 8);
        if (!nz[i]) {
            free(ent);
            if (pm >= 0)
                close(pm);
            return ferry_error_set(err, -ENOMEM, "out of memory");
        }
        bool known = false;
        for (size_t k = 0; k < nold && !known; k++) {
            if (old[k].host == blocks[i].host && old[k].size == blocks[i].size) {
                memcpy(nz[i], old_nz[k], (pages + 63) / 64 * 8);
                known = true;
            }
        }
        for (uint64_t p = 0; !known && p < pages; p += 4096) {
            uint64_t cnt = pages - p < 4096 ? pages - p : 4096;
            uintptr_t va = (uintptr_t)blocks[i].host + p * FERRY_RAM_PAGE_SIZE;
            bool ok = pm >= 0 && ent &&
                      pread(pm, ent, cnt * 8, (off_t)(va / FERRY_RAM_PAGE_SIZE * 8)) ==
                          (ssize_t)(cnt * 8);
            for (uint64_t k = 0; k < cnt; k++)
                /* Unknown (no pagemap): assume data. Present or swapped: may hold data. */
                if (!ok || (ent[k] & (3ull << 62)))
                    nz[i][(p + k) / 64] |= 1ull << ((p + k) % 64);
        }
    }
    free(ent);
    if (pm >= 0)
        close(pm);
    return 0;
}

static int apply_pages(Receiver *rc, const FerryRecord *rec, FerryError *err)
{
    Dest *d = rc->d;
    if (rec->version != 1)
        return ferry_error_set(err, -EPROTONOSUPPORT,
                               "ram-pages record version %u (this build "
                               "reads 1) at offset 0x%" PRIx64,
                               rec->version, rec->offset);
    if (rec->instance >= d->nblocks)
        return ferry_error_set(err, -EBADMSG,
                               "ram-pages record at offset 0x%" PRIx64 " names RAM block %u of %zu",
                               rec->offset, rec->instance, d->nblocks);
    FerryRamBlock *b = &d->blocks[rec->instance];
    uint64_t pages = b->size / FERRY_RAM_PAGE_SIZE, left = rec->length;
    while (left) {
        uint8_t h[FERRY_RAM_RUN_HEADER];
        if (left < FERRY_RAM_RUN_HEADER)
            return ferry_error_set(err, -EBADMSG,
                                   "ram-pages record at offset 0x%" PRIx64
                                   ": run header cut (%" PRIu64 " bytes left)",
                                   rec->offset, left);
        int r = ferry_stream_read_payload(rc->r, h, sizeof(h), err);
        if (r < 0)
            return r;
        left -= FERRY_RAM_RUN_HEADER;
        uint64_t first;
        uint32_t count;
        memcpy(&first, h, 8);
        memcpy(&count, h + 8, 4);
        first = le64toh(first);
        count = le32toh(count);
        uint8_t enc = h[12];
        if (!count || first >= pages || count > pages - first)
            return ferry_error_set(err, -EBADMSG,
                                   "ram-pages record at offset 0x%" PRIx64
                                   ": run of %u pages at page %" PRIu64 " is outside block %u "
                                   "(%" PRIu64 " pages)",
                                   rec->offset, count, first, rec->instance, pages);
        uint8_t *host = b->host + first * FERRY_RAM_PAGE_SIZE;
        switch (enc) {
        case FERRY_RAM_ENC_ZERO:
            zero_pages(d->nz[rec->instance], host, first, count);
            break;
        case FERRY_RAM_ENC_RAW:
            if ((uint64_t)count * FERRY_RAM_PAGE_SIZE > left)
                return ferry_error_set(err, -EBADMSG,
                                       "ram-pages record at offset 0x%" PRIx64
                                       ": %u raw pages exceed the record",
                                       rec->offset, count);
            mark_written(d->nz[rec->instance], first, count);
            r = ferry_stream_read_payload(rc->r, host, (size_t)count * FERRY_RAM_PAGE_SIZE, err);
            if (r < 0)
                return r;
            left -= (uint64_t)count * FERRY_RAM_PAGE_SIZE;
            break;
        case FERRY_RAM_ENC_DELTA:
            mark_written(d->nz[rec->instance], first, count);
            for (uint32_t i = 0; i < count; i++) {
                uint8_t l2[2];
                if (left < 2)
                    return ferry_error_set(err, -EBADMSG,
                                           "delta page cut in record at offset "
                                           "0x%" PRIx64,
                                           rec->offset);
                if ((r = ferry_stream_read_payload(rc->r, l2, 2, err)) < 0)
                    return r;
                left -= 2;
                size_t len = l2[0] | (size_t)l2[1] << 8;
                if (len > FERRY_RAM_DELTA_MAX || len > left)
                    return ferry_error_set(err, -EBADMSG,
                                           "delta of %zu bytes too long in "
                                           "record at offset 0x%" PRIx64,
                                           len, rec->offset);
                if ((r = ferry_stream_read_payload(rc->r, rc->buf, len, err)) < 0)
                    return r;
                left -= len;
                r = ferry_ram_delta_apply(host + (uint64_t)i * FERRY_RAM_PAGE_SIZE, rc->buf, len,
                                          err);
                if (r < 0)
                    return ferry_error_prefix(err,
                                              "record at offset 0x%" PRIx64 ", page %" PRIu64 ": ",
                                              rec->offset, first + i);
            }
            break;
        default:
            return ferry_error_set(
                err, -EBADMSG, "ram-pages record at offset 0x%" PRIx64 ": unknown page encoding %u",
                rec->offset, enc);
        }
    }
    return ferry_stream_end_payload(rc->r, err);
}

static int read_blob(Receiver *rc, const FerryRecord *rec, size_t max, char **out, FerryError *err)
{
    if (rec->length > max)
        return ferry_error_set(err, -EBADMSG, "%s record of %" PRIu64 " bytes (at most %zu)",
                               ferry_record_kind_name(rec->kind), rec->length, max);
    char *buf = malloc(rec->length + 1);
    if (!buf)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    int r = ferry_stream_read_payload(rc->r, buf, rec->length, err);
    if (!r)
        r = ferry_stream_end_payload(rc->r, err);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[rec->length] = 0;
    *out = buf;
    return 0;
}

static int check_ram_blocks(Receiver *rc, const FerryRecord *rec, FerryError *err)
{
    char *buf;
    int r = read_blob(rc, rec, 1u << 20, &buf, err);
    if (r < 0)
        return r;
    Dest *d = rc->d;
    size_t len = rec->length, pos = 4;
    uint32_t n = 0;
    if (len >= 4)
        memcpy(&n, buf, 4);
    n = le32toh(n);
    if (len < 4 || n != d->nblocks)
        r = ferry_error_set(err, -EPROTO,
                            "ram-blocks: the stream has %u RAM blocks, this VM "
                            "has %zu",
                            n, d->nblocks);
    for (uint32_t i = 0; !r && i < n; i++) {
        if (pos >= len || pos + 1 + buf[pos] + 20 > len) {
            r = ferry_error_set(err, -EBADMSG, "ram-blocks: entry %u cut", i);
            break;
        }
        pos += 1 + (uint8_t)buf[pos];
        uint64_t gpa, size;
        memcpy(&gpa, buf + pos, 8);
        memcpy(&size, buf + pos + 8, 8);
        pos += 20;
        if (le64toh(gpa) != d->blocks[i].gpa || le64toh(size) != d->blocks[i].size)
            r = ferry_error_set(err, -EPROTO,
                                "ram-blocks: block %u is %" PRIu64 " bytes at 0x%" PRIx64
                                " in the stream, %" PRIu64 " bytes at 0x%" PRIx64 " here",
                                i, le64toh(size), le64toh(gpa), d->blocks[i].size,
                                d->blocks[i].gpa);
    }
    free(buf);
    return r;
}

static void *channel_main(void *arg)
{
    Receiver *rc = arg;
    mig_block_sigpipe();
    FerryRecord rec;
    for (;;) {
        if (atomic_load(&rc->d->abort)) {
            rc->rc = ferry_error_set(&rc->err, -ECANCELED, "aborted");
            break;
        }
        int r = ferry_stream_next(rc->r, &rec, &rc->err);
        if (!r) {
            if (rec.kind == FERRY_REC_END) {
                /* The end record has a checksum too: a stream cut inside it is truncated. */
                r = ferry_stream_end_payload(rc->r, &rc->err);
                if (!r)
                    break;
            } else if (rec.kind == FERRY_REC_RAM_PAGES)
                r = apply_pages(rc, &rec, &rc->err);
            else if (rec.kind == FERRY_REC_RAM_PASS && rec.instance == MIG_SYNC_PASS) {
                r = ferry_stream_skip_payload(rc->r, &rc->err);
                if (!r)
                    r = mig_write_all(rc->fd, MIG_SYNCED "\n", strlen(MIG_SYNCED) + 1, &rc->err);
            } else if (rec.flags & FERRY_REC_OPTIONAL || rec.kind == FERRY_REC_RAM_PASS)
                r = ferry_stream_skip_payload(rc->r, &rc->err);
            else
                r = ferry_error_set(&rc->err, -EBADMSG,
                                    "unexpected %s record on a RAM channel "
                                    "at offset 0x%" PRIx64,
                                    ferry_record_kind_name(rec.kind), rec.offset);
        }
        if (r < 0) {
            ferry_error_prefix(&rc->err, "RAM channel %u: ", rc->index);
            rc->rc = r;
            atomic_store(&rc->d->abort, true);
            mig_shutdown_fds(rc->d->m); /* the main reader must not wait for more */
            break;
        }
    }
    return NULL;
}

/* ---- handshake ---------------------------------------------------------------------------- */

static void report_add(char *rep, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_add(char *rep, size_t *n, const char *fmt, ...)
{
    if (*n >= REPORT_MAX - 1)
        return;
    if (*n)
        *n += (size_t)snprintf(rep + *n, REPORT_MAX - *n, "; ");
    va_list ap;
    va_start(ap, fmt);
    *n += (size_t)vsnprintf(rep + *n, *n < REPORT_MAX ? REPORT_MAX - *n : 0, fmt, ap);
    va_end(ap);
    if (*n > REPORT_MAX - 1)
        *n = REPORT_MAX - 1;
}

static int check_handshake(Dest *d, json_t *hs, FerryError *err)
{
    FerryMigration *m = d->m;
    char rep[REPORT_MAX] = "";
    size_t n = 0;
    unsigned count = 0;
    if (!json_is_object(hs))
        return ferry_error_set(err, -EBADMSG, "handshake is not a JSON object");
    FerryMachine *mach = m->host.machine;
    json_t *inv = json_object_get(hs, "inventory");
    if (mach) {
        if (!json_is_object(inv)) {
            report_add(rep, &n,
                       "the source has no machine model (boot-sector VM), this "
                       "destination runs machine type %s",
                       ferry_machine_type(mach)->name);
            count++;
        } else {
            FerryError e2 = {0};
            FerryInventory *src = ferry_inventory_from_json(inv, &e2);
            if (!src) {
                *err = e2;
                return ferry_error_prefix(err, "handshake inventory: ");
            }
            mig_lock(m);
            FerryInventory *dst = ferry_machine_inventory(mach);
            mig_unlock(m);
            char *r = NULL;
            int c = ferry_inventory_compare(src, dst, &r);
            if (c > 0) {
                /* One line per mismatch in the report: one item each. */
                for (char *line = r, *next; line && *line; line = next) {
                    next = strchr(line, '\n');
                    if (next)
                        *next++ = '\0';
                    else
                        next = line + strlen(line);
                    if (*line)
                        report_add(rep, &n, "%s", line);
                }
                if (!r)
                    report_add(rep, &n, "inventory differs");
                count += (unsigned)c;
            }
            free(r);
            ferry_inventory_free(src);
            ferry_inventory_free(dst);
        }
    } else if (json_is_object(inv)) {
        report_add(rep, &n,
                   "the source runs machine type %s with devices, this destination "
                   "has no machine model",
                   json_string_value(json_object_get(hs, "machine")));
        count++;
    }
    json_t *ram = json_object_get(hs, "ram");
    if (!json_is_array(ram))
        return ferry_error_set(err, -EBADMSG, "handshake: 'ram' is not an array");
    if (json_array_size(ram) != d->nblocks) {
        report_add(rep, &n, "RAM: the source has %zu block(s), this destination %zu",
                   json_array_size(ram), d->nblocks);
        count++;
    }
    for (size_t i = 0; i < json_array_size(ram) && i < d->nblocks; i++) {
        json_t *b = json_array_get(ram, i);
        uint64_t gpa = (uint64_t)json_integer_value(json_object_get(b, "gpa"));
        uint64_t size = (uint64_t)json_integer_value(json_object_get(b, "size"));
        if (gpa != d->blocks[i].gpa || size != d->blocks[i].size) {
            report_add(rep, &n,
                       "RAM block %zu: source %" PRIu64 " MiB at 0x%" PRIx64
                       ", destination %" PRIu64 " MiB at 0x%" PRIx64,
                       i, size >> 20, gpa, d->blocks[i].size >> 20, d->blocks[i].gpa);
            count++;
        }
    }
    json_int_t ch = json_integer_value(json_object_get(hs, "channels"));
    const char *sess = json_string_value(json_object_get(hs, "session"));
    if (ch < 0 || ch > 255 || !sess || strlen(sess) != 32)
        return ferry_error_set(err, -EBADMSG, "handshake: bad 'channels' or 'session'");
    d->nch = (unsigned)ch;
    snprintf(d->session, sizeof(d->session), "%s", sess);
    if (count)
        return ferry_error_set(err, -EPROTO, "handshake refused: %u mismatch(es): %s", count, rep);
    return 0;
}

/* ---- device state ------------------------------------------------------------------------- */

/* x-ferry-test-no-subsections (S13, test only): `reg` again with every description stripped of
 * its subsections, as a build from before they existed would load. Frees `reg`. */
static FerryRegistry *registry_without_subsections(Dest *d, FerryRegistry *reg, FerryError *err)
{
    size_t n = ferry_registry_count(reg);
    FerryRegistry *out = ferry_registry_new();
    d->old_descs = calloc(n ? n : 1, sizeof(FerryDesc));
    if (!out || !d->old_descs) {
        ferry_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const char *section;
        uint32_t instance;
        void *opaque;
        d->old_descs[i] = *ferry_registry_entry(reg, i, &section, &instance, &opaque);
        d->old_descs[i].subsections = NULL;
        if (ferry_registry_add(out, section, instance, &d->old_descs[i], opaque, err) < 0)
            goto fail;
    }
    ferry_registry_free(reg);
    return out;
fail:
    if (out)
        ferry_registry_free(out);
    ferry_registry_free(reg);
    return NULL;
}

/* A skipped optional subsection (S14) is reported to the host, which logs it. */
static void load_warn(void *ctx, const char *msg)
{
    FerryMigration *m = ctx;
    if (m->host.on_warning)
        m->host.on_warning(m->host.opaque, msg);
}

static int load_device(Dest *d, const FerryRecord *rec, FerryError *err)
{
    FerryMigration *m = d->m;
    if (!strcmp(rec->name, FERRY_MIG_CPU_SECTION)) {
        FerryCpuState **nc = realloc(d->cpus, (d->ncpus + 1) * sizeof(*nc));
        if (!nc)
            return ferry_error_set(err, -ENOMEM, "out of memory");
        d->cpus = nc;
        FerryCpuState *st = calloc(1, sizeof(*st));
        if (!st)
            return ferry_error_set(err, -ENOMEM, "out of memory");
        d->cpus[d->ncpus++] = st;
        int r = ferry_stream_load_state(d->main.r, &ferry_cpu_state_desc, st, NULL, err);
        if (!r && st->id != rec->instance)
            r = ferry_error_set(err, -EBADMSG, "kvm-cpu instance %u holds vCPU id %u",
                                rec->instance, st->id);
        return r;
    }
    if (!strcmp(rec->name, FERRY_MIG_VM_SECTION)) {
        d->have_vms = true;
        return ferry_stream_load_state(d->main.r, &ferry_vm_state_desc, &d->vms, NULL, err);
    }
    if (!m->host.machine)
        return ferry_error_set(err, -EPROTO,
                               "device record '%s' instance %u: this destination "
                               "has no machine model",
                               rec->name, rec->instance);
    mig_lock(m);
    if (!d->reg) {
        ferry_machine_incoming_prepare(m->host.machine);
        d->reg = ferry_machine_registry(m->host.machine, err);
        if (d->reg && m->params.x_test_no_subsections)
            d->reg = registry_without_subsections(d, d->reg, err);
        if (!d->reg) {
            mig_unlock(m);
            return err->code ? err->code : -ENOMEM;
        }
    }
    void *opaque;
    int r;
    const FerryDesc *desc = ferry_registry_find(d->reg, rec->name, rec->instance, &opaque);
    if (!desc)
        r = ferry_error_set(err, -ENOENT,
                            "device record '%s' instance %u (offset 0x%" PRIx64
                            "): no such section on this destination",
                            rec->name, rec->instance, rec->offset);
    else
        r = ferry_stream_load_state(d->main.r, desc, opaque, &(FerryLoadOpts){load_warn, m}, err);
    mig_unlock(m);
    return r;
}

static FerryVcpu *find_vcpu(FerryMigration *m, uint32_t id)
{
    for (unsigned i = 0; i < mig_vcpu_count(m); i++) {
        FerryVcpu *v = mig_vcpu_at(m, i);
        if (ferry_vcpu_id(v) == id)
            return v;
    }
    return NULL;
}

static int apply_state(Dest *d, FerryError *err)
{
    FerryMigHost *h = &d->m->host;
    if (!d->have_vms || !d->ncpus)
        return ferry_error_set(err, -EBADMSG, "the stream carries no %s state",
                               d->have_vms ? "vCPU" : "VM");
    int r = ferry_vm_state_set(h->vm, &d->vms, err);
    if (r < 0)
        return ferry_error_prefix(err, "VM state: ");
    for (unsigned i = 0; i < d->ncpus; i++) {
        uint32_t id = d->cpus[i]->id;
        FerryVcpu *v = find_vcpu(d->m, id);
        if (!v)
            v = h->vcpu_add ? h->vcpu_add(h->opaque, id, err)
                : h->vcpus  ? ferry_vcpus_add(h->vcpus, id, err)
                            : (ferry_error_set(err, -ENOENT, "no such vCPU here"), NULL);
        if (!v)
            return ferry_error_prefix(err, "vCPU %u: ", id);
        FerryMsrSkips skipped;
        r = ferry_cpu_state_set(v, d->cpus[i], &skipped, err);
        if (r < 0)
            return ferry_error_prefix(err, "vCPU %u: ", id);
        ferry_vcpu_start(v);
    }
    if (h->machine) {
        mig_lock(d->m);
        if (!d->reg)
            ferry_machine_incoming_prepare(h->machine);
        r = ferry_machine_incoming_finish(h->machine, err);
        mig_unlock(d->m);
    }
    return r;
}

/* ---- main --------------------------------------------------------------------------------- */

static int accept_one(Dest *d, FerryError *err)
{
    FerryMigration *m = d->m;
    for (;;) {
        if (atomic_load(&m->cancel))
            return ferry_error_set(err, -ECANCELED, "incoming migration cancelled");
        FerryError e = {0};
        int fd = ferry_uri_accept(m->listen_fd, 200, &e);
        if (fd >= 0)
            return fd;
        if (e.code != -ETIMEDOUT) {
            *err = e;
            return fd;
        }
    }
}

static int list_blocks(FerryVm *vm, FerryRamBlock **out, size_t *n, FerryError *err)
{
    *n = ferry_vm_ram_count(vm);
    *out = calloc(*n ? *n : 1, sizeof(**out));
    if (!*out)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < *n; i++)
        if (ferry_vm_ram_block(vm, i, &(*out)[i], err) < 0)
            return err->code;
    return 0;
}

static int receiver_init(Dest *d, Receiver *rc, unsigned index, int fd, FerryError *err)
{
    rc->d = d;
    rc->index = index;
    rc->fd = fd;
    rc->buf = malloc(FERRY_RAM_DELTA_MAX + 16);
    rc->io = ferry_io_fd_reader(fd, false);
    if (!rc->buf || !rc->io)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    rc->r = ferry_stream_reader_new(rc->io, err);
    return rc->r ? 0 : err->code;
}

static void receiver_fini(Receiver *rc)
{
    ferry_stream_reader_free(rc->r);
    ferry_io_destroy(rc->io);
    free(rc->buf);
}

static int add_fd(FerryMigration *m, int fd)
{
    pthread_mutex_lock(&m->lock);
    m->fds[m->nfds++] = fd;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int incoming_run(Dest *d, FerryError *err)
{
    FerryMigration *m = d->m;
    FerryMigHost *h = &m->host;
    int r = list_blocks(h->vm, &d->pf_blocks, &d->pf_nblocks, err);
    if (r < 0)
        return r;
    r = track_init(d->pf_blocks, d->pf_nblocks, &d->pf_nz, NULL, NULL, 0, err);
    if (r < 0)
        return r;
    FerryMigParams prm;
    ferry_migration_get_params(m, &prm);
    if (prm.prefault && m->uri.kind != FERRY_URI_FILE)
        d->prefault_started = pthread_create(&d->prefault, NULL, prefault_main, d) == 0;

    int fd;
    if (m->uri.kind == FERRY_URI_FD) {
        fd = m->uri.fd;
    } else if (m->uri.kind == FERRY_URI_FILE) {
        fd = open(m->uri.path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return ferry_error_set(err, -errno, "file:%s: %s", m->uri.path, strerror(errno));
    } else {
        fd = accept_one(d, err);
        if (fd < 0)
            return fd;
    }
    add_fd(m, fd);
    struct stat st;
    d->return_path = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    r = receiver_init(d, &d->main, 0, fd, err);
    if (r < 0)
        return r;
    pthread_mutex_lock(&m->lock);
    m->start_ns = mig_now_ns(); /* time from the first byte, not from the listen */
    pthread_mutex_unlock(&m->lock);
    mig_set_status(m, FERRY_MIG_ACTIVE);

    FerryRecord rec;
    if ((r = ferry_stream_next(d->main.r, &rec, err)) < 0)
        return r;
    if (rec.kind != FERRY_REC_HANDSHAKE)
        return ferry_error_set(err, -EBADMSG,
                               "the stream does not start with a handshake record "
                               "(found %s at offset 0x%" PRIx64 ")",
                               ferry_record_kind_name(rec.kind), rec.offset);
    char *text;
    if ((r = read_blob(&d->main, &rec, HANDSHAKE_MAX, &text, err)) < 0)
        return r;
    json_error_t je;
    json_t *hs = json_loads(text, 0, &je);
    free(text);
    if (!hs)
        return ferry_error_set(err, -EBADMSG, "handshake: bad JSON: %s", je.text);
    mig_lock(m); /* no device_add/del while the block list is taken */
    r = list_blocks(h->vm, &d->blocks, &d->nblocks, err);
    mig_unlock(m);
    if (!r)
        r = track_init(d->blocks, d->nblocks, &d->nz, d->pf_blocks, d->pf_nz, d->pf_nblocks, err);
    if (r < 0) {
        json_decref(hs);
        return r;
    }
    r = check_handshake(d, hs, err);
    json_decref(hs);
    if (r < 0)
        return r; /* the caller sends the refusal with the list */
    if (d->return_path && mig_write_all(fd, MIG_REPLY_OK "\n", strlen(MIG_REPLY_OK) + 1, err) < 0)
        return err->code;

    if (d->nch) {
        if (m->listen_fd < 0)
            return ferry_error_set(err, -EPROTO,
                                   "the source wants %u RAM channels but this "
                                   "transport has one connection",
                                   d->nch);
        d->ch = calloc(d->nch, sizeof(*d->ch));
        if (!d->ch)
            return ferry_error_set(err, -ENOMEM, "out of memory");
        for (unsigned i = 0; i < d->nch; i++) {
            Receiver *rc = &d->ch[i];
            int cfd = accept_one(d, err);
            if (cfd < 0)
                return ferry_error_prefix(err, "RAM channel: ");
            add_fd(m, cfd);
            if ((r = receiver_init(d, rc, 0, cfd, err)) < 0)
                return ferry_error_prefix(err, "RAM channel: ");
            uint8_t hello[24];
            r = ferry_stream_next(rc->r, &rec, err);
            if (!r && (rec.kind != FERRY_REC_CHANNEL || rec.length != sizeof(hello)))
                r = ferry_error_set(err, -EBADMSG,
                                    "RAM channel does not start with a channel "
                                    "record");
            if (!r)
                r = ferry_stream_read_payload(rc->r, hello, sizeof(hello), err);
            if (!r)
                r = ferry_stream_end_payload(rc->r, err);
            if (r < 0)
                return ferry_error_prefix(err, "RAM channel: ");
            char hex[33];
            for (int k = 0; k < 16; k++)
                sprintf(hex + 2 * k, "%02x", hello[8 + k]);
            uint32_t idx;
            memcpy(&idx, hello, 4);
            rc->index = le32toh(idx);
            if (strcmp(hex, d->session))
                return ferry_error_set(err, -EPROTO,
                                       "RAM channel %u belongs to another "
                                       "migration session",
                                       rc->index);
            if (pthread_create(&rc->thread, NULL, channel_main, rc))
                return ferry_error_set(err, -EAGAIN, "cannot start a RAM channel thread");
            rc->started = true;
        }
    }

    for (;;) {
        if ((r = ferry_stream_next(d->main.r, &rec, err)) < 0)
            break;
        switch (rec.kind) {
        case FERRY_REC_END:
            r = ferry_stream_end_payload(d->main.r, err);
            break;
        case FERRY_REC_RAM_BLOCKS:
            r = check_ram_blocks(&d->main, &rec, err);
            break;
        case FERRY_REC_RAM_PAGES:
            r = apply_pages(&d->main, &rec, err);
            break;
        case FERRY_REC_RAM_PASS:
            if (rec.instance == MIG_SYNC_PASS) {
                r = ferry_stream_skip_payload(d->main.r, err);
                if (!r && d->return_path)
                    r = mig_write_all(fd, MIG_SYNCED "\n", strlen(MIG_SYNCED) + 1, err);
                break;
            }
            if (h->on_pass && rec.instance != UINT32_MAX)
                h->on_pass(h->opaque, (uint64_t)rec.instance + 1);
            pthread_mutex_lock(&m->lock);
            m->info.dirty_sync_count++;
            pthread_mutex_unlock(&m->lock);
            r = ferry_stream_skip_payload(d->main.r, err);
            break;
        case FERRY_REC_DEVICE:
            r = load_device(d, &rec, err);
            break;
        default:
            if (rec.flags & FERRY_REC_OPTIONAL)
                r = ferry_stream_skip_payload(d->main.r, err);
            else
                r = ferry_error_set(err, -EBADMSG,
                                    "unexpected %s record (kind 0x%02x) at offset "
                                    "0x%" PRIx64,
                                    ferry_record_kind_name(rec.kind), rec.kind, rec.offset);
        }
        if (r < 0 || rec.kind == FERRY_REC_END)
            break;
        pthread_mutex_lock(&m->lock);
        m->info.ram_transferred = ferry_io_offset(d->main.io);
        pthread_mutex_unlock(&m->lock);
    }
    /* A channel that failed cut the main connection: its message is the useful one. */
    for (unsigned i = 0; i < d->nch; i++) {
        if (!d->ch[i].started)
            continue;
        if (r < 0) {
            atomic_store(&d->abort, true);
            shutdown(d->ch[i].fd, SHUT_RDWR);
        }
        pthread_join(d->ch[i].thread, NULL);
        d->ch[i].started = false;
    }
    for (unsigned i = 0; i < d->nch; i++) {
        if (d->ch[i].rc < 0 && d->ch[i].err.code != -ECANCELED) {
            *err = d->ch[i].err;
            r = d->ch[i].rc;
            break;
        }
    }
    if (r < 0)
        return r;
    /* Everything verified: apply vCPU, VM and machine state. */
    if ((r = apply_state(d, err)) < 0)
        return r;
    if (d->return_path) {
        if (mig_write_all(fd, MIG_REPLY_ACK "\n", strlen(MIG_REPLY_ACK) + 1, err) < 0)
            return ferry_error_prefix(err, "sending the acknowledgement: ");
        char line[64];
        r = mig_read_line(fd, line, sizeof(line), MIG_ACK_TIMEOUT_MS, err);
        if (r < 0)
            return ferry_error_prefix(err, "the source did not confirm the switchover (it keeps "
                                           "the VM): ");
        if (strcmp(line, MIG_GO))
            return ferry_error_set(err, -EPROTO, "unexpected confirmation '%.32s'", line);
    }
    return 0;
}

void *mig_incoming_main(void *arg)
{
    FerryMigration *m = arg;
    mig_block_sigpipe();
    Dest d = {.m = m};
    FerryError err = {0};
    int r = incoming_run(&d, &err);
    if (r < 0) {
        atomic_store(&d.abort, true);
        /* Tell the source why (best effort): its own message then names the cause. */
        if (d.return_path && d.main.fd >= 0) {
            char line[FERRY_ERROR_MSG_MAX + 16];
            snprintf(line, sizeof(line), MIG_REPLY_ERR "%s", err.msg);
            for (char *p = line; *p; p++)
                if (*p == '\n')
                    *p = ' ';
            strcat(line, "\n");
            mig_write_all(d.main.fd, line, strlen(line), NULL);
        }
        mig_shutdown_fds(m);
    }
    for (unsigned i = 0; i < d.nch && d.ch; i++) {
        if (d.ch[i].started)
            pthread_join(d.ch[i].thread, NULL);
        receiver_fini(&d.ch[i]);
    }
    free(d.ch);
    receiver_fini(&d.main);
    if (d.prefault_started) {
        atomic_store(&d.prefault_stop, true);
        pthread_join(d.prefault, NULL);
    }
    for (size_t i = 0; d.nz && i < d.nblocks; i++)
        free(d.nz[i]);
    free(d.nz);
    for (size_t i = 0; d.pf_nz && i < d.pf_nblocks; i++)
        free(d.pf_nz[i]);
    free(d.pf_nz);
    free(d.pf_blocks);
    for (unsigned i = 0; i < d.ncpus; i++)
        free(d.cpus[i]);
    free(d.cpus);
    if (d.reg)
        ferry_registry_free(d.reg);
    free(d.old_descs);
    free(d.blocks);
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < m->nfds; i++) {
        if (m->fds[i] >= 0 && !(i == 0 && m->uri.kind == FERRY_URI_FD))
            close(m->fds[i]);
        m->fds[i] = -1;
    }
    m->nfds = 0;
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        m->listen_fd = -1;
    }
    pthread_mutex_unlock(&m->lock);
    if (r < 0) {
        mig_fail(m, &err);
        mig_set_status(m, FERRY_MIG_FAILED); /* the host shuts the VM down */
        return NULL;
    }
    mig_set_status(m, FERRY_MIG_COMPLETED);
    return NULL;
}

int mig_ram_stream_apply(const FerryRamBlock *blocks, size_t n, FerryIO *io, FerryError *err)
{
    Dest d = {.blocks = (FerryRamBlock *)blocks, .nblocks = n};
    Receiver rc = {.d = &d};
    int r = 0;
    d.nz = calloc(n ? n : 1, sizeof(*d.nz));
    rc.buf = malloc(FERRY_RAM_DELTA_MAX + 16);
    if (!d.nz || !rc.buf) {
        r = ferry_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t words = (blocks[i].size / FERRY_RAM_PAGE_SIZE + 63) / 64;
        d.nz[i] = malloc(words * 8 + 8);
        if (!d.nz[i]) {
            r = ferry_error_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        memset(d.nz[i], 0xff, words * 8); /* unknown contents: clear zero pages for real */
    }
    rc.r = ferry_stream_reader_new(io, err);
    if (!rc.r) {
        r = err->code ? err->code : -EBADMSG;
        goto out;
    }
    for (;;) {
        FerryRecord rec;
        if ((r = ferry_stream_next(rc.r, &rec, err)) < 0)
            break;
        if (rec.kind == FERRY_REC_END) {
            r = ferry_stream_end_payload(rc.r, err);
            break;
        }
        if (rec.kind == FERRY_REC_RAM_PAGES)
            r = apply_pages(&rc, &rec, err);
        else if (rec.kind == FERRY_REC_RAM_PASS || rec.kind == FERRY_REC_RAM_BLOCKS ||
                 (rec.flags & FERRY_REC_OPTIONAL))
            r = ferry_stream_skip_payload(rc.r, err);
        else
            r = ferry_error_set(err, -EBADMSG, "unexpected %s record at offset 0x%" PRIx64,
                                ferry_record_kind_name(rec.kind), rec.offset);
        if (r < 0)
            break;
    }
out:
    ferry_stream_reader_free(rc.r);
    free(rc.buf);
    for (size_t i = 0; d.nz && i < n; i++)
        free(d.nz[i]);
    free(d.nz);
    return r;
}
