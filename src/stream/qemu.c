/* QEMU migration stream reader (format version 3, QEMU 7.2): header, configuration, sections,
 * footers, commands, RAM, spapr/htab, and device sections decoded through the vmdesc trailer. */
#include "ferry/stream/qemu.h"

#include "qemu-json-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define BUF_CAP      (256u << 10) /* fd read buffer; also the largest zero-copy take */
#define PEEK_MAX     300u         /* lookahead used by footer resync (a full section header) */
#define MAX_DEPTH    32           /* nesting of vmdesc structs/subsections */
#define MAX_CAPS     256u
#define PATH_MAX_LEN 480

/* RAM_SAVE_FLAG_* (migration/ram.c, 7.2) plus 8.0's MULTIFD_FLUSH. */
enum {
    RAM_FULL = 0x01,
    RAM_ZERO = 0x02,
    RAM_MEM_SIZE = 0x04,
    RAM_PAGE = 0x08,
    RAM_EOS = 0x10,
    RAM_CONTINUE = 0x20,
    RAM_XBZRLE = 0x40,
    RAM_HOOK = 0x80,
    RAM_COMPRESS_PAGE = 0x100,
    RAM_MULTIFD_FLUSH = 0x200,
};

/* MIG_CMD_* with their fixed lengths (-1 = variable), savevm.c mig_cmd_args. */
static const struct {
    const char *name;
    int len;
} mig_cmds[] = {
    [1] = {"OPEN_RETURN_PATH", 0}, [2] = {"PING", 4},         [3] = {"POSTCOPY_ADVISE", -1},
    [4] = {"POSTCOPY_LISTEN", 0},  [5] = {"POSTCOPY_RUN", 0}, [6] = {"POSTCOPY_RAM_DISCARD", -1},
    [7] = {"PACKAGED", 4},         [8] = {"ENABLE_COLO", 0},  [9] = {"POSTCOPY_RESUME", 0},
    [10] = {"RECV_BITMAP", -1},
};
#define N_MIG_CMDS (sizeof(mig_cmds) / sizeof(mig_cmds[0]))

typedef struct Block {
    FerryQemuRamBlock pub;
    char name[256];
} Block;

/* An iterative section opened by START; PART/END refer to it by id. */
typedef struct Iter {
    uint32_t id;
    uint32_t instance_id;
    uint32_t version_id;
    FerryQemuKind kind;
    char idstr[256];
} Iter;

struct FerryQemuReader {
    /* input: either memory or an fd read through buf */
    int fd;
    const uint8_t *mem;
    uint64_t mem_len;
    uint8_t *buf;
    const uint8_t *p; /* next unread byte */
    size_t avail;     /* bytes readable at p (before the limit cut) */
    uint64_t off;     /* absolute offset of p */
    uint64_t limit;   /* no read beyond this absolute offset */
    const char *limit_why;
    bool src_eof;
    uint64_t size; /* total stream size, UINT64_MAX when unknown (pipe) */
    unsigned flags;

    /* vmdesc */
    QjDoc vj;    /* parsed vmdesc */
    struct Dev { /* devices[] sorted by (instance_id, name) for lookup */
        uint32_t instance;
        const char *name;
        uint32_t node;
        uint32_t order;
    } * devs;
    size_t n_devs;

    /* configuration */
    char *machine;
    char **caps;
    size_t n_caps;
    bool ignore_shared;
    bool postcopy_advised;
    uint64_t pagesize_summary;

    /* RAM */
    Block *blocks;
    size_t n_blocks;
    Block *last_block; /* CONTINUE refers to it; persists across sections */

    /* sections */
    Iter *iters;
    size_t n_iters;
    int footers; /* -1 unknown, 0 no, 1 yes */
    uint32_t htab_shift;
    int package_depth;

    /* error context */
    const char *sec_name;
    uint32_t sec_id;
    struct {
        const char *name;
        int64_t index;
    } pstack[MAX_DEPTH * 2 + 4];
    size_t path_len;
    char path[PATH_MAX_LEN];
    int depth;

    uint8_t *scratch;
    size_t scratch_cap;

    const FerryQemuVisitor *v;
    void *ctx;
    FerryError *err;
    FerryQemuInfo info;
};

/* ---- errors ---------------------------------------------------------------------------- */

/* "section 'x' (id n) at 0xOFF: " + message; by convention the message starts with what was
 * being read ("reading footer: ..."). */
static int __attribute__((format(printf, 4, 5)))
fail(FerryQemuReader *r, uint64_t off, int code, const char *fmt, ...)
{
    char msg[FERRY_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->sec_name)
        return ferry_error_set(r->err, code, "section '%s' (id %" PRIu32 ") at 0x%" PRIx64 ": %s",
                               r->sec_name, r->sec_id, off, msg);
    return ferry_error_set(r->err, code, "at 0x%" PRIx64 ": %s", off, msg);
}

/* A visitor callback failed: keep its message, add where the reader was. */
static int cb_fail(FerryQemuReader *r, int rc)
{
    if (r->err && r->err->code == 0)
        ferry_error_set(r->err, rc < 0 ? rc : -EIO, "callback failed");
    if (r->sec_name)
        ferry_error_prefix(r->err, "section '%s' (id %" PRIu32 ") at 0x%" PRIx64 ": ", r->sec_name,
                           r->sec_id, r->off);
    else
        ferry_error_prefix(r->err, "at 0x%" PRIx64 ": ", r->off);
    return rc < 0 ? rc : -EIO;
}

/* ---- input ----------------------------------------------------------------------------- */

/* Make up to `want` bytes readable at r->p (want <= BUF_CAP). Returns how many are readable,
 * which is less than `want` only at the end of the stream or at the current limit. */
static size_t in_ensure(FerryQemuReader *r, size_t want)
{
    if (r->fd >= 0 && r->avail < want && !r->src_eof) {
        if (r->p != r->buf) {
            memmove(r->buf, r->p, r->avail);
            r->p = r->buf;
        }
        while (r->avail < want && !r->src_eof) {
            ssize_t n = read(r->fd, r->buf + r->avail, BUF_CAP - r->avail);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                r->src_eof = true; /* reported as a short stream; errno kept in info */
                break;
            }
            if (n == 0)
                r->src_eof = true;
            r->avail += (size_t)n;
        }
    }
    uint64_t room = r->limit > r->off ? r->limit - r->off : 0;
    size_t have = r->avail < room ? r->avail : (size_t)room;
    return have < want ? have : want;
}

static void in_advance(FerryQemuReader *r, size_t n)
{
    r->p += n;
    r->avail -= n;
    r->off += n;
}

/* `need` bytes of `what` starting at `at` are wanted but only `have` remain. */
static const char *path_str(FerryQemuReader *r);

static int short_read(FerryQemuReader *r, uint64_t at, const char *what, uint64_t need,
                      uint64_t have)
{
    char fw[PATH_MAX_LEN + 16];
    if (!what) { /* a device field: name it by its path */
        snprintf(fw, sizeof(fw), "field '%s'", path_str(r));
        what = fw;
    }
    if (r->off + have >= r->limit && r->limit_why)
        return fail(r, at, -ENODATA, "reading %s: %" PRIu64 " bytes needed but %s at 0x%" PRIx64,
                    what, need, r->limit_why, r->limit);
    return fail(r, at, -ENODATA, "reading %s: stream ended %" PRIu64 " bytes early", what,
                need - have);
}

/* Borrow the next n (<= BUF_CAP) bytes and consume them. */
static int in_take(FerryQemuReader *r, size_t n, const uint8_t **out, const char *what)
{
    *out = NULL;
    size_t have = in_ensure(r, n);
    if (have < n)
        return short_read(r, r->off, what, n, have);
    *out = r->p;
    in_advance(r, n);
    return 0;
}

/* Consume n bytes of any size; *out points to them (in the buffer or in r->scratch). */
static int in_take_big(FerryQemuReader *r, uint64_t n, const uint8_t **out, const char *what)
{
    *out = NULL;
    if (n <= BUF_CAP)
        return in_take(r, (size_t)n, out, what);
    uint64_t left = r->limit - r->off;
    if (r->size != UINT64_MAX && r->size - r->off < left)
        left = r->size - r->off;
    if (n > left)
        return short_read(r, r->off, what, n, left);
    if (n > FERRY_QEMU_MAX_FIELD)
        return fail(r, r->off, -EFBIG, "reading %s: %" PRIu64 " bytes exceeds the %u limit",
                    what ? what : path_str(r), n, FERRY_QEMU_MAX_FIELD);
    if (r->scratch_cap < n) {
        uint8_t *s = realloc(r->scratch, (size_t)n);
        if (!s)
            return fail(r, r->off, -ENOMEM, "reading %s: out of memory", what);
        r->scratch = s;
        r->scratch_cap = (size_t)n;
    }
    uint64_t start = r->off;
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done > BUF_CAP ? BUF_CAP : (size_t)(n - done);
        size_t have = in_ensure(r, chunk);
        if (have == 0)
            return short_read(r, start, what, n, done);
        memcpy(r->scratch + done, r->p, have);
        in_advance(r, have);
        done += have;
    }
    *out = r->scratch;
    return 0;
}

static int rd_u8(FerryQemuReader *r, uint8_t *v, const char *what)
{
    *v = 0;
    const uint8_t *p;
    int rc = in_take(r, 1, &p, what);
    if (rc == 0)
        *v = p[0];
    return rc;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int rd_be16(FerryQemuReader *r, uint16_t *v, const char *what)
{
    *v = 0;
    const uint8_t *p;
    int rc = in_take(r, 2, &p, what);
    if (rc == 0)
        *v = be16(p);
    return rc;
}

static int rd_be32(FerryQemuReader *r, uint32_t *v, const char *what)
{
    *v = 0;
    const uint8_t *p;
    int rc = in_take(r, 4, &p, what);
    if (rc == 0)
        *v = be32(p);
    return rc;
}

static int rd_be64(FerryQemuReader *r, uint64_t *v, const char *what)
{
    *v = 0;
    const uint8_t *p;
    int rc = in_take(r, 8, &p, what);
    if (rc == 0)
        *v = be64(p);
    return rc;
}

/* Short string: u8 length + bytes, no NUL on the wire. `out` has room for 256 bytes. */
static int rd_str(FerryQemuReader *r, char *out, const char *what)
{
    uint8_t len;
    const uint8_t *p;
    int rc = rd_u8(r, &len, what);
    if (rc == 0)
        rc = in_take(r, len, &p, what);
    if (rc == 0) {
        memcpy(out, p, len);
        out[len] = '\0';
        if (memchr(out, '\0', len))
            return fail(r, r->off - len, -EINVAL, "reading %s: NUL byte inside the name", what);
    }
    return rc;
}

/* Random access for locating the trailer: pread on a file, memcpy on memory. */
static int read_at(FerryQemuReader *r, uint64_t off, void *dst, size_t n)
{
    if (off > r->size || r->size - off < n)
        return -ENODATA;
    if (r->fd < 0) {
        memcpy(dst, r->mem + off, n);
        return 0;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t k = pread(r->fd, (uint8_t *)dst + done, n - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -ENODATA;
        done += (size_t)k;
    }
    return 0;
}

/* ---- path (field names in errors) ------------------------------------------------------ */

/* The field path is kept as a stack of (name, index) and only spelled out for an error
 * message, so decoding a 262144-element array costs no formatting. */
static size_t path_push(FerryQemuReader *r, const char *name, int64_t index)
{
    size_t saved = r->path_len;
    if (r->path_len < MAX_DEPTH * 2 + 4) {
        r->pstack[r->path_len].name = name;
        r->pstack[r->path_len].index = index;
    }
    r->path_len++;
    return saved;
}

static void path_pop(FerryQemuReader *r, size_t saved)
{
    r->path_len = saved;
}

static const char *path_str(FerryQemuReader *r)
{
    size_t n = 0, depth = r->path_len < MAX_DEPTH * 2 + 4 ? r->path_len : MAX_DEPTH * 2 + 4;
    r->path[0] = '\0';
    for (size_t i = 0; i < depth && n < sizeof(r->path) - 1; i++) {
        int k = r->pstack[i].index >= 0
                    ? snprintf(r->path + n, sizeof(r->path) - n, "%s%s[%" PRId64 "]", i ? "." : "",
                               r->pstack[i].name, r->pstack[i].index)
                    : snprintf(r->path + n, sizeof(r->path) - n, "%s%s", i ? "." : "",
                               r->pstack[i].name);
        if (k < 0)
            break;
        n += (size_t)k;
    }
    return r->path;
}

/* ---- vmdesc trailer -------------------------------------------------------------------- */

/* The trailer is `00 (EOF) 06 be32 len json[len]` and ends the file. JSON text never contains
 * a raw byte below 0x20 other than \t \n \r (strings must escape them), so scanning backwards
 * from the end, the first such byte bounds where the 0x06 can be: at most 4 bytes earlier
 * (inside the be32 length). That stops the scan after len + 9 bytes for a real trailer and
 * after a few bytes for a stream without one, instead of guessing from the last NUL (which
 * QEMU's script does and which breaks when the JSON is preceded by RAM data). Candidates must
 * satisfy: byte 0x06, be32 == bytes left after it, then '{', and a 0x00 (EOF) before it. */
static int locate_trailer(FerryQemuReader *r, uint64_t *k_out, uint32_t *len_out)
{
    enum { CHUNK = 64 << 10 };
    uint8_t chunk[CHUNK];
    uint64_t end = r->size;
    if (end < 8 + 1 + 5 + 2)
        return -ENOENT;
    uint64_t floor =
        end > (uint64_t)FERRY_QEMU_MAX_VMDESC + 16 ? end - FERRY_QEMU_MAX_VMDESC - 16 : 8;
    uint64_t stop = floor; /* lowest candidate position still possible */
    uint64_t hi = end;
    while (hi > stop) {
        uint64_t lo = hi - stop > CHUNK ? hi - CHUNK : stop;
        if (read_at(r, lo, chunk, (size_t)(hi - lo)) < 0)
            return -EIO;
        for (uint64_t p = hi; p-- > lo;) {
            if (p < stop)
                return -ENOENT;
            uint8_t b = chunk[p - lo];
            if (b == 0x06 && p + 6 <= end && p >= 9) {
                uint8_t h[6], eof;
                if (read_at(r, p, h, 6) == 0 && read_at(r, p - 1, &eof, 1) == 0 &&
                    be32(h + 1) == end - p - 5 && h[5] == '{' && eof == 0x00) {
                    *k_out = p;
                    *len_out = be32(h + 1);
                    return 0;
                }
            }
            if (b < 0x20 && b != '\t' && b != '\n' && b != '\r' && p >= 4 && p - 4 > stop)
                stop = p - 4;
        }
        hi = lo;
    }
    return -ENOENT;
}

static int64_t jint(const FerryQemuReader *r, uint32_t o, const char *key, int64_t dflt)
{
    uint32_t v = qj_get(&r->vj, o, key);
    return v != QJ_NONE && r->vj.n[v].type == QJ_INT ? r->vj.n[v].num : dflt;
}

static bool jarr(const FerryQemuReader *r, uint32_t v)
{
    return v != QJ_NONE && r->vj.n[v].type == QJ_ARR;
}

static int dev_cmp(const void *a, const void *b)
{
    const struct Dev *x = a, *y = b;
    if (x->instance != y->instance)
        return x->instance < y->instance ? -1 : 1;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order; /* equal keys: vmdesc order */
}

static uint32_t find_dev(const FerryQemuReader *r, const char *name, uint32_t instance)
{
    size_t lo = 0, hi = r->n_devs;
    while (lo < hi) { /* last entry with this key: a repeated device, like a dict, keeps the last */
        size_t mid = lo + (hi - lo) / 2;
        const struct Dev *d = &r->devs[mid];
        int c = d->instance != instance ? (d->instance < instance ? -1 : 1) : strcmp(d->name, name);
        if (c <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo && r->devs[lo - 1].instance == instance && !strcmp(r->devs[lo - 1].name, name))
        return r->devs[lo - 1].node;
    return QJ_NONE;
}

static int load_vmdesc(FerryQemuReader *r, uint64_t k, uint32_t len)
{
    if (len > FERRY_QEMU_MAX_VMDESC)
        return fail(r, k, -EFBIG, "reading vmdesc trailer: %" PRIu32 " bytes exceeds the %u limit",
                    len, FERRY_QEMU_MAX_VMDESC);
    char *text = malloc(len ? len : 1);
    if (!text)
        return fail(r, k, -ENOMEM, "reading vmdesc trailer: out of memory");
    if (read_at(r, k + 5, text, len) < 0) {
        free(text);
        return fail(r, k, -EIO, "reading vmdesc trailer: read failed");
    }
    size_t pos;
    const char *msg;
    int rc = qj_parse(&r->vj, text, len, &pos, &msg);
    free(text);
    if (rc < 0)
        return fail(r, k + 5 + pos, rc, "reading vmdesc JSON: %s", msg);
    uint32_t ps = qj_get(&r->vj, 0, "page_size");
    uint32_t devs = qj_get(&r->vj, 0, "devices");
    if (ps == QJ_NONE || r->vj.n[ps].type != QJ_INT || !jarr(r, devs))
        return fail(r, k + 5, -EINVAL,
                    "reading vmdesc JSON: no integer \"page_size\" and array "
                    "\"devices\"");
    int64_t pgs = r->vj.n[ps].num;
    if (pgs < 512 || pgs > (int64_t)FERRY_QEMU_MAX_PAGE_SIZE || (pgs & (pgs - 1)))
        return fail(r, k + 5, -EINVAL,
                    "reading vmdesc JSON: page_size %" PRId64
                    " is not a power of two in [512, 1 MiB]",
                    pgs);
    r->info.page_size = (uint32_t)pgs;
    r->info.page_size_from_vmdesc = true;
    r->devs = calloc(r->vj.n[devs].count ? r->vj.n[devs].count : 1, sizeof(*r->devs));
    if (!r->devs)
        return fail(r, k, -ENOMEM, "reading vmdesc trailer: out of memory");
    size_t i = 0;
    for (uint32_t dev = r->vj.n[devs].first; dev != QJ_NONE; dev = r->vj.n[dev].next, i++) {
        const char *name = qj_str(&r->vj, qj_get(&r->vj, dev, "name"));
        uint32_t inst = qj_get(&r->vj, dev, "instance_id");
        if (!name || inst == QJ_NONE || r->vj.n[inst].type != QJ_INT ||
            !jarr(r, qj_get(&r->vj, dev, "fields")))
            return fail(r, k + 5, -EINVAL,
                        "reading vmdesc JSON: device %zu lacks \"name\", \"instance_id\" or "
                        "\"fields\"",
                        i);
        /* QEMU writes the id as an unsigned number; older writers as signed: both mean u32. */
        r->devs[r->n_devs++] = (struct Dev){(uint32_t)r->vj.n[inst].num, name, dev, (uint32_t)i};
    }
    qsort(r->devs, r->n_devs, sizeof(*r->devs), dev_cmp);
    r->info.has_vmdesc = true;
    r->info.vmdesc_offset = k;
    r->info.vmdesc_len = len;
    r->info.vmdesc_devices = r->n_devs;
    return 0;
}

/* Consume n bytes without keeping them. */
static int in_skip(FerryQemuReader *r, uint64_t n, const char *what)
{
    uint64_t start = r->off, done = 0;
    while (done < n) {
        size_t chunk = n - done > BUF_CAP ? BUF_CAP : (size_t)(n - done);
        size_t have = in_ensure(r, chunk);
        if (have == 0)
            return short_read(r, start, what, n, done);
        in_advance(r, have);
        done += have;
    }
    return 0;
}

/* ---- XBZRLE ---------------------------------------------------------------------------- */

/* QEMU's uleb128_decode_small: at most two bytes (values below 2^14). */
static int uleb_small(const uint8_t *in, size_t left, uint32_t *n)
{
    if (left < 1)
        return -1;
    if (!(in[0] & 0x80)) {
        *n = in[0];
        return 1;
    }
    if (left < 2 || (in[1] & 0x80))
        return -1;
    *n = (uint32_t)(in[0] & 0x7f) | (uint32_t)in[1] << 7;
    return 2;
}

/* xbzrle_decode_buffer with the same checks; dst NULL only validates. Returns 0 or the
 * (positive) index + 1 of the delta byte where decoding failed. */
static size_t xbzrle_decode(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
    size_t i = 0, d = 0;
    uint32_t count;
    while (i < slen) {
        if (slen - i < 2)
            return i + 1;
        int k = uleb_small(src + i, slen - i, &count);
        if (k < 0 || (i && !count))
            return i + 1;
        i += (size_t)k;
        d += count;
        if (d > dlen)
            return i + 1;
        if (slen - i < 2)
            return i + 1;
        k = uleb_small(src + i, slen - i, &count);
        if (k < 0 || !count)
            return i + 1;
        i += (size_t)k;
        if (d + count > dlen || i + count > slen)
            return i + 1;
        if (dst)
            memcpy(dst + d, src + i, count);
        d += count;
        i += count;
    }
    return 0;
}

int ferry_qemu_xbzrle_apply(uint8_t *page, size_t page_size, const uint8_t *delta, size_t len,
                            FerryError *err)
{
    size_t bad = xbzrle_decode(delta, len, NULL, page_size);
    if (bad)
        return ferry_error_set(err, -EINVAL, "XBZRLE delta malformed at byte %zu of %zu", bad - 1,
                               len);
    xbzrle_decode(delta, len, page, page_size);
    return 0;
}

int ferry_qemu_page_inflate(uint8_t *page, size_t page_size, const uint8_t *data, size_t len,
                            FerryError *err)
{
    uLongf n = (uLongf)page_size;
    int zrc = uncompress(page, &n, data, (uLong)len);
    if (zrc != Z_OK || n != page_size)
        return ferry_error_set(err, -EINVAL, "compressed page: %s",
                               zrc != Z_OK ? zError(zrc) : "inflates to the wrong size");
    return 0;
}

/* ---- configuration --------------------------------------------------------------------- */

static int parse_config(FerryQemuReader *r)
{
    uint64_t at = r->off;
    uint8_t t;
    uint32_t len;
    const uint8_t *p;
    int rc = rd_u8(r, &t, "configuration section type");
    if (rc == 0)
        rc = rd_be32(r, &len, "configuration machine name length");
    if (rc < 0)
        return rc;
    if (len > FERRY_QEMU_MAX_MACHINE_NAME)
        return fail(r, at + 1, -EINVAL,
                    "reading configuration machine name: length %" PRIu32 " exceeds %u", len,
                    FERRY_QEMU_MAX_MACHINE_NAME);
    if ((rc = in_take(r, len, &p, "configuration machine name")) < 0)
        return rc;
    if (memchr(p, '\0', len))
        return fail(r, at + 5, -EINVAL, "reading configuration machine name: NUL byte inside");
    r->machine = strndup((const char *)p, len);
    if (!r->machine)
        return fail(r, at, -ENOMEM, "reading configuration: out of memory");
    r->info.machine = r->machine;
    FerryQemuConfig c = {.machine = r->machine, .offset = at};

    static const char prefix[] = "configuration/";
    for (;;) {
        size_t have = in_ensure(r, 2);
        if (have < 2 || r->p[0] != FERRY_QEMU_SUBSECTION)
            break;
        size_t nl = r->p[1];
        have = in_ensure(r, 2 + nl);
        /* QEMU only consumes a subsection whose name starts with the parent's name. */
        if (have < 2 + nl || nl < sizeof(prefix) - 1 ||
            memcmp(r->p + 2, prefix, sizeof(prefix) - 1))
            break;
        uint64_t sat = r->off;
        char name[256];
        uint32_t version;
        in_advance(r, 1);
        if ((rc = rd_str(r, name, "configuration subsection name")) < 0 ||
            (rc = rd_be32(r, &version, "configuration subsection version")) < 0)
            return rc;
        if (version != 1)
            return fail(r, sat, -EINVAL,
                        "reading configuration subsection '%s': version %" PRIu32 ", only 1 exists",
                        name, version);
        if (!strcmp(name, "configuration/target-page-bits")) {
            uint32_t bits;
            if ((rc = rd_be32(r, &bits, "configuration/target-page-bits")) < 0)
                return rc;
            if (bits < 9 || bits > 20)
                return fail(r, r->off - 4, -EINVAL,
                            "reading configuration/target-page-bits: %" PRIu32 " is out of range",
                            bits);
            c.target_page_bits = bits;
        } else if (!strcmp(name, "configuration/capabilities")) {
            uint32_t n;
            if ((rc = rd_be32(r, &n, "configuration/capabilities count")) < 0)
                return rc;
            if (n > MAX_CAPS)
                return fail(r, r->off - 4, -EINVAL,
                            "reading configuration/capabilities: count %" PRIu32 " exceeds %u", n,
                            MAX_CAPS);
            for (uint32_t i = 0; i < n; i++) {
                char cap[256];
                if ((rc = rd_str(r, cap, "configuration/capabilities name")) < 0)
                    return rc;
                char **caps = realloc(r->caps, (r->n_caps + 1) * sizeof(*caps));
                if (!caps)
                    return fail(r, r->off, -ENOMEM, "reading configuration: out of memory");
                r->caps = caps;
                if (!(r->caps[r->n_caps] = strdup(cap)))
                    return fail(r, r->off, -ENOMEM, "reading configuration: out of memory");
                r->n_caps++;
                if (!strcmp(cap, "x-ignore-shared"))
                    r->ignore_shared = true;
            }
        } else if (!strcmp(name, "configuration/uuid")) {
            if ((rc = in_take(r, 16, &p, "configuration/uuid")) < 0)
                return rc;
            memcpy(c.uuid, p, 16);
            c.has_uuid = true;
        } else {
            return fail(r, sat, -ENOENT, "reading configuration: unknown subsection '%s'", name);
        }
    }
    c.n_caps = r->n_caps;
    c.caps = (const char *const *)r->caps;
    if (c.target_page_bits) {
        uint32_t ps = 1u << c.target_page_bits;
        if (r->info.page_size_from_vmdesc && r->info.page_size != ps)
            return fail(r, at, -EINVAL,
                        "reading configuration: target page size %" PRIu32
                        " differs from the vmdesc page_size %" PRIu32,
                        ps, r->info.page_size);
        r->info.page_size = ps;
    }
    if (r->v->config && (rc = r->v->config(r->ctx, &c, r->err)) < 0)
        return cb_fail(r, rc);
    return 0;
}

/* ---- RAM ------------------------------------------------------------------------------- */

static Block *find_block(FerryQemuReader *r, const char *name)
{
    for (size_t i = 0; i < r->n_blocks; i++)
        if (!strcmp(r->blocks[i].name, name))
            return &r->blocks[i];
    return NULL;
}

/* START's block list: entries until their lengths add up to the announced total (no
 * terminator). Optional be64s: the hugepage size (postcopy advised and block page size !=
 * host page size; recognised as a power of two whose first byte is 0, where a name length
 * would be >= 1 and EOS is 0x10) and the x-ignore-shared guest address. */
static int ram_block_list(FerryQemuReader *r, uint64_t total)
{
    int rc;
    uint64_t list_at = r->off;
    while (total) {
        uint64_t at = r->off;
        char name[256];
        uint64_t length;
        if ((rc = rd_str(r, name, "RAM block name")) < 0 ||
            (rc = rd_be64(r, &length, "RAM block length")) < 0)
            return rc;
        if (!name[0])
            return fail(r, at, -EINVAL, "reading RAM block list: empty block name");
        if (length > total)
            return fail(r, at, -EINVAL,
                        "reading RAM block list: block '%s' length 0x%" PRIx64
                        " exceeds the 0x%" PRIx64 " left of the announced total",
                        name, length, total);
        uint64_t page_size = 0, addr = UINT64_MAX;
        uint64_t sum = r->pagesize_summary;
        if (r->postcopy_advised && sum && (sum & (sum - 1))) {
            size_t have = in_ensure(r, 8);
            if (have == 8) {
                uint64_t v = be64(r->p);
                if (r->p[0] == 0 && v >= 1024 && !(v & (v - 1)) && (v & sum) && v != (sum & -sum)) {
                    page_size = v;
                    in_advance(r, 8);
                }
            }
        }
        if (r->ignore_shared && (rc = rd_be64(r, &addr, "RAM block address (x-ignore-shared)")) < 0)
            return rc;
        Block *b = find_block(r, name);
        if (!b) {
            if (r->n_blocks >= FERRY_QEMU_MAX_RAM_BLOCKS)
                return fail(r, at, -EINVAL, "reading RAM block list: more than %u blocks",
                            FERRY_QEMU_MAX_RAM_BLOCKS);
            if (!r->blocks) {
                /* Fixed array: callbacks and last_block keep pointers into it. */
                r->blocks = calloc(FERRY_QEMU_MAX_RAM_BLOCKS, sizeof(Block));
                if (!r->blocks)
                    return fail(r, at, -ENOMEM, "reading RAM block list: out of memory");
            }
            b = &r->blocks[r->n_blocks];
            b->pub.index = (uint32_t)r->n_blocks++;
            memcpy(b->name, name, sizeof(b->name));
            b->pub.name = b->name;
        }
        b->pub.length = length;
        b->pub.page_size = page_size;
        b->pub.addr = addr;
        if (r->v->ram_block && (rc = r->v->ram_block(r->ctx, &b->pub, r->err)) < 0)
            return cb_fail(r, rc);
        total -= length;
    }
    (void)list_at;
    return 0;
}

static uint64_t zlib_bound(uint64_t n)
{
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13; /* zlib's compressBound() */
}

static int ram_payload(FerryQemuReader *r)
{
    const uint64_t ps = r->info.page_size;
    int rc;
    for (;;) {
        uint64_t at = r->off, hdr;
        if ((rc = rd_be64(r, &hdr, "RAM record header")) < 0)
            return rc;
        uint64_t flags = hdr & (ps - 1), addr = hdr & ~(ps - 1);
        uint64_t kind = flags & ~(uint64_t)RAM_CONTINUE;
        Block *b = NULL;
        if (kind == RAM_ZERO || kind == RAM_PAGE || kind == RAM_COMPRESS_PAGE ||
            kind == RAM_XBZRLE) {
            if (flags & RAM_CONTINUE) {
                b = r->last_block;
                if (!b)
                    return fail(r, at, -EINVAL,
                                "reading RAM record: CONTINUE flag without a previous block");
            } else {
                char name[256];
                if ((rc = rd_str(r, name, "RAM record block name")) < 0)
                    return rc;
                if (!(b = find_block(r, name)))
                    return fail(r, at, -ENOENT, "reading RAM record: unknown RAM block '%s'", name);
                r->last_block = b;
            }
            if (addr > b->pub.length || b->pub.length - addr < ps)
                return fail(r, at, -EINVAL,
                            "reading RAM record: page at 0x%" PRIx64 " is beyond block '%s' "
                            "(length 0x%" PRIx64 ")",
                            addr, b->name, b->pub.length);
        }
        FerryQemuPage pg = {
            .block = b ? &b->pub : NULL, .addr = addr, .page_size = ps, .offset = at};
        const uint8_t *data;
        switch (kind) {
        case RAM_MEM_SIZE:
            if ((rc = ram_block_list(r, addr)) < 0)
                return rc;
            continue;
        case RAM_EOS:
            return 0;
        case RAM_MULTIFD_FLUSH: /* QEMU >= 8.0 marker, no payload */
            continue;
        case RAM_ZERO:
            pg.kind = FERRY_QEMU_PAGE_ZERO;
            if ((rc = rd_u8(r, &pg.fill, "RAM zero page fill byte")) < 0)
                return rc;
            break;
        case RAM_PAGE:
            pg.kind = FERRY_QEMU_PAGE_NORMAL;
            if ((rc = in_take(r, ps, &data, "RAM page data")) < 0)
                return rc;
            pg.data = data;
            pg.len = ps;
            break;
        case RAM_COMPRESS_PAGE: {
            uint32_t len;
            if ((rc = rd_be32(r, &len, "RAM compressed page length")) < 0)
                return rc;
            if (len == 0 || len > zlib_bound(ps))
                return fail(r, r->off - 4, -EINVAL,
                            "reading RAM compressed page length: %" PRIu32 " is not in [1, %" PRIu64
                            "]",
                            len, zlib_bound(ps));
            if ((rc = in_take(r, len, &data, "RAM compressed page data")) < 0)
                return rc;
            pg.kind = FERRY_QEMU_PAGE_COMPRESSED;
            pg.data = data;
            pg.len = len;
            break;
        }
        case RAM_XBZRLE: {
            uint8_t enc;
            uint16_t len;
            if ((rc = rd_u8(r, &enc, "XBZRLE encoding flag")) < 0)
                return rc;
            if (enc != 0x01)
                return fail(r, r->off - 1, -EINVAL,
                            "reading XBZRLE encoding flag: 0x%02x, expected 0x01", enc);
            if ((rc = rd_be16(r, &len, "XBZRLE length")) < 0)
                return rc;
            if (len > ps)
                return fail(r, r->off - 2, -EINVAL,
                            "reading XBZRLE length: %u exceeds the page size %" PRIu64, len, ps);
            uint64_t dat = r->off;
            if ((rc = in_take(r, len, &data, "XBZRLE data")) < 0)
                return rc;
            size_t bad = xbzrle_decode(data, len, NULL, ps);
            if (bad)
                return fail(r, dat + bad - 1, -EINVAL, "reading XBZRLE data: malformed run");
            pg.kind = FERRY_QEMU_PAGE_XBZRLE;
            pg.data = data;
            pg.len = len;
            break;
        }
        default:
            if (flags & RAM_HOOK)
                return fail(r, at, -EINVAL,
                            "reading RAM record: HOOK flag (RDMA) is invalid outside an RDMA "
                            "channel");
            return fail(r, at, -EINVAL,
                        "reading RAM record: unknown combination of flags 0x%" PRIx64, flags);
        }
        if (r->v->ram_page && (rc = r->v->ram_page(r->ctx, &pg, r->err)) < 0)
            return cb_fail(r, rc);
    }
}

/* ---- spapr/htab ------------------------------------------------------------------------ */

/* Like htab_load(): the be32 header decides, not the section type: -1 = no HPT, non-zero =
 * htab_shift (START), 0 = chunks (index, n_valid, n_invalid, n_valid HPTEs) up to a zero chunk. */
static int htab_payload(FerryQemuReader *r)
{
    uint32_t hdr;
    int rc;
    if ((rc = rd_be32(r, &hdr, "htab header")) < 0)
        return rc;
    if (hdr == 0xffffffffu)
        return 0;
    if (hdr) {
        if (hdr < 18 || hdr > 46)
            return fail(r, r->off - 4, -EINVAL,
                        "reading htab shift: %" PRIu32 " is not in [18, 46]", hdr);
        r->htab_shift = hdr;
        return 0;
    }
    for (;;) {
        uint64_t at = r->off;
        uint32_t index;
        uint16_t n_valid, n_invalid;
        if ((rc = rd_be32(r, &index, "htab chunk index")) < 0 ||
            (rc = rd_be16(r, &n_valid, "htab chunk n_valid")) < 0 ||
            (rc = rd_be16(r, &n_invalid, "htab chunk n_invalid")) < 0)
            return rc;
        if (!index && !n_valid && !n_invalid)
            return 0;
        if (r->htab_shift &&
            (uint64_t)index + n_valid + n_invalid > ((uint64_t)1 << r->htab_shift) / 16)
            return fail(r, at, -EINVAL,
                        "reading htab chunk: entries %" PRIu32 "+%u+%u exceed the %" PRIu64
                        "-entry table",
                        index, n_valid, n_invalid, ((uint64_t)1 << r->htab_shift) / 16);
        if ((rc = in_skip(r, (uint64_t)n_valid * 16, "htab entries")) < 0)
            return rc;
    }
}

/* ---- devices (vmdesc) ------------------------------------------------------------------ */

static int decode_struct(FerryQemuReader *r, uint32_t desc, uint64_t at);

static int decode_element(FerryQemuReader *r, uint32_t f, const char *name, const char *type,
                          uint64_t size, int64_t index)
{
    size_t saved = path_push(r, name, index);
    uint64_t start = r->off;
    int rc;
    if (!strcmp(type, "struct")) {
        uint32_t sd = qj_get(&r->vj, f, "struct");
        if (sd == QJ_NONE || r->vj.n[sd].type != QJ_OBJ)
            return fail(r, start, -EINVAL, "reading field '%s': vmdesc struct without \"struct\"",
                        path_str(r));
        FerryQemuNode n = {FERRY_QEMU_NODE_STRUCT, name, index, 0, start};
        if (r->v->node_begin && (rc = r->v->node_begin(r->ctx, &n, r->err)) < 0)
            return cb_fail(r, rc);
        if ((rc = decode_struct(r, sd, start)) < 0)
            return rc;
        if (r->v->node_end && (rc = r->v->node_end(r->ctx, &n, r->err)) < 0)
            return cb_fail(r, rc);
        /* vmdesc sizes are what the source wrote: a difference means desync or a bad vmdesc. */
        if (r->off - start != size)
            return fail(r, start, -EINVAL,
                        "reading field '%s': the vmdesc says %" PRIu64
                        " bytes, its fields took %" PRIu64,
                        path_str(r), size, r->off - start);
    } else {
        const uint8_t *data;
        if ((rc = in_take_big(r, size, &data, NULL)) < 0)
            return rc;
        FerryQemuField fl = {name, type, index, data, (size_t)size, start};
        if (r->v->field && (rc = r->v->field(r->ctx, &fl, r->err)) < 0)
            return cb_fail(r, rc);
    }
    path_pop(r, saved);
    return 0;
}

static int decode_struct(FerryQemuReader *r, uint32_t desc, uint64_t at)
{
    int rc;
    if (++r->depth > MAX_DEPTH)
        return fail(r, at, -EINVAL, "reading '%s': vmdesc nesting deeper than %d", path_str(r),
                    MAX_DEPTH);
    uint32_t fields = qj_get(&r->vj, desc, "fields");
    if (!jarr(r, fields))
        return fail(r, at, -EINVAL, "reading '%s': vmdesc entry without a \"fields\" array",
                    path_str(r));
    size_t i = 0;
    for (uint32_t f = r->vj.n[fields].first; f != QJ_NONE; f = r->vj.n[f].next, i++) {
        const char *name = qj_str(&r->vj, qj_get(&r->vj, f, "name"));
        const char *type = qj_str(&r->vj, qj_get(&r->vj, f, "type"));
        int64_t size = jint(r, f, "size", -1);
        if (!name || size < 0)
            return fail(r, r->off, -EINVAL,
                        "reading '%s': vmdesc field %zu lacks \"name\" or a \"size\" >= 0",
                        path_str(r), i);
        if (!type)
            type = "unknown"; /* like the script: read as opaque bytes */
        uint32_t al = qj_get(&r->vj, f, "array_len");
        if (al != QJ_NONE) {
            int64_t n = r->vj.n[al].type == QJ_INT ? r->vj.n[al].num : -1;
            uint64_t left = r->limit - r->off;
            if (n < 0 || (size > 0 && (uint64_t)n > left / (uint64_t)size) ||
                (size == 0 && n > 65536))
                return fail(r, r->off, -EINVAL,
                            "reading field '%s%s%s': vmdesc array_len %" PRId64 " × %" PRId64
                            " bytes does not fit the stream",
                            path_str(r), r->path_len ? "." : "", name, n, size);
            for (int64_t k = 0; k < n; k++)
                if ((rc = decode_element(r, f, name, type, (uint64_t)size, k)) < 0)
                    return rc;
        } else {
            int64_t index = jint(r, f, "index", -1);
            if ((rc = decode_element(r, f, name, type, (uint64_t)size, index < 0 ? -1 : index)) < 0)
                return rc;
        }
    }
    uint32_t subs = qj_get(&r->vj, desc, "subsections");
    for (uint32_t s = jarr(r, subs) ? r->vj.n[subs].first : QJ_NONE; s != QJ_NONE;
         s = r->vj.n[s].next) {
        uint64_t sat = r->off;
        const char *want = qj_str(&r->vj, qj_get(&r->vj, s, "vmsd_name"));
        char what[PATH_MAX_LEN + 64];
        snprintf(what, sizeof(what), "subsection '%s'", want ? want : "?");
        uint8_t mark;
        char name[256];
        uint32_t version;
        if ((rc = rd_u8(r, &mark, what)) < 0)
            return rc;
        if (mark != FERRY_QEMU_SUBSECTION)
            return fail(r, sat, -EINVAL, "reading %s: expected 0x05, found 0x%02x", what, mark);
        if ((rc = rd_str(r, name, what)) < 0 || (rc = rd_be32(r, &version, what)) < 0)
            return rc;
        if (want && strcmp(want, name))
            return fail(r, sat, -EINVAL, "reading %s: the stream has '%s'", what, name);
        int64_t dv = jint(r, s, "version", -1);
        if (dv >= 0 && (uint64_t)dv != version)
            return fail(r, sat, -EINVAL,
                        "reading %s: version %" PRIu32 " but the vmdesc says %" PRId64, what,
                        version, dv);
        FerryQemuNode n = {FERRY_QEMU_NODE_SUBSECTION, name, -1, version, sat};
        if (r->v->node_begin && (rc = r->v->node_begin(r->ctx, &n, r->err)) < 0)
            return cb_fail(r, rc);
        size_t saved = path_push(r, name, -1);
        if ((rc = decode_struct(r, s, sat)) < 0)
            return rc;
        path_pop(r, saved);
        if (r->v->node_end && (rc = r->v->node_end(r->ctx, &n, r->err)) < 0)
            return cb_fail(r, rc);
    }
    r->depth--;
    return 0;
}

/* ---- footer resync --------------------------------------------------------------------- */

static Iter *find_iter(FerryQemuReader *r, uint32_t id)
{
    for (size_t i = 0; i < r->n_iters; i++)
        if (r->iters[i].id == id)
            return &r->iters[i];
    return NULL;
}

/* q[0..have) starts with 7e; is it the footer of section `id`, followed by something that
 * parses as the next stream item? (qemu-reference.md §1.9 heuristic 3.) */
static bool footer_plausible(FerryQemuReader *r, const uint8_t *q, size_t have, uint32_t id,
                             bool at_end)
{
    if (have < 5 || be32(q + 1) != id)
        return false;
    if (have == 5)
        return at_end; /* the stream (or package) ends right after the footer */
    const uint8_t *n = q + 6;
    size_t rn = have - 6;
    switch (q[5]) {
    case FERRY_QEMU_EOF:
        return rn == 0 || n[0] == FERRY_QEMU_VMDESC;
    case FERRY_QEMU_START:
    case FERRY_QEMU_FULL: {
        if (rn < 5)
            return false;
        size_t len = n[4];
        if (len == 0 || rn < 5 + len + 8)
            return false;
        for (size_t i = 0; i < len; i++)
            if (n[5 + i] < 0x20 || n[5 + i] > 0x7e)
                return false;
        return be32(n + 5 + len + 4) < 0x10000; /* version_id */
    }
    case FERRY_QEMU_PART:
    case FERRY_QEMU_END:
        return rn >= 4 && find_iter(r, be32(n)) != NULL;
    case FERRY_QEMU_COMMAND: {
        if (rn < 4)
            return false;
        uint16_t cmd = be16(n), len = be16(n + 2);
        return cmd >= 1 && cmd < N_MIG_CMDS && (mig_cmds[cmd].len < 0 || mig_cmds[cmd].len == len);
    }
    default:
        return false;
    }
}

/* Skip an undescribed payload up to its footer (left unread for end_section). */
static int resync(FerryQemuReader *r, const FerryQemuSection *s)
{
    if (r->footers == 0)
        return fail(r, r->off, -ENOTSUP,
                    "reading payload: not described by a vmdesc and the stream has no section "
                    "footers to frame it");
    for (;;) {
        size_t have = in_ensure(r, PEEK_MAX);
        if (have < 5)
            return fail(r, s->payload, -ENODATA,
                        "reading undescribed payload: no footer 7e %08" PRIx32
                        " before the end of the stream at 0x%" PRIx64,
                        s->section_id, r->off + have);
        const uint8_t *hit = memchr(r->p, FERRY_QEMU_FOOTER, have - 4);
        if (!hit) {
            in_advance(r, have - 4);
            continue;
        }
        if (hit != r->p) {
            in_advance(r, (size_t)(hit - r->p));
            continue;
        }
        bool at_end = have < PEEK_MAX && (r->src_eof || r->fd < 0 || r->off + have >= r->limit);
        if (footer_plausible(r, r->p, have, s->section_id, at_end))
            return 0;
        in_advance(r, 1);
    }
}

/* ---- sections -------------------------------------------------------------------------- */

static int end_section(FerryQemuReader *r, FerryQemuSection *s)
{
    int rc;
    s->payload_end = r->off;
    if (r->footers != 0) {
        size_t have = in_ensure(r, 1);
        if (have == 1 && r->p[0] == FERRY_QEMU_FOOTER) {
            uint64_t at = r->off;
            uint32_t id;
            in_advance(r, 1);
            if ((rc = rd_be32(r, &id, "footer")) < 0)
                return rc;
            if (id != s->section_id)
                return fail(r, at, -EINVAL,
                            "reading footer: id %" PRIu32 " does not match %" PRIu32, id,
                            s->section_id);
            r->footers = 1;
            s->has_footer = true;
            r->info.n_footers++;
        } else if (r->footers == 1) {
            if (have == 0)
                return short_read(r, r->off, "footer", 5, 0);
            return fail(r, r->off, -EINVAL, "reading footer: expected 0x7e, found 0x%02x", r->p[0]);
        } else {
            r->footers = 0; /* machine types <= 2.3 send none; decided by the first section */
        }
    }
    s->end = r->off;
    if (r->v->section_end && (rc = r->v->section_end(r->ctx, s, r->err)) < 0)
        return cb_fail(r, rc);
    return 0;
}

static int section(FerryQemuReader *r, uint8_t type, uint64_t at)
{
    int rc;
    uint32_t id;
    FerryQemuSection s = {.type = type, .offset = at};
    char idstr[256];
    uint32_t dev = QJ_NONE;
    if ((rc = rd_be32(r, &id, "section id")) < 0)
        return rc;
    s.section_id = id;
    if (type == FERRY_QEMU_START || type == FERRY_QEMU_FULL) {
        if ((rc = rd_str(r, idstr, "section idstr")) < 0 ||
            (rc = rd_be32(r, &s.instance_id, "section instance id")) < 0 ||
            (rc = rd_be32(r, &s.version_id, "section version")) < 0)
            return rc;
        s.idstr = idstr;
        r->sec_name = idstr;
        r->sec_id = id;
        if (!strcmp(idstr, "ram") && s.instance_id == 0) {
            if (s.version_id != 4)
                return fail(r, at, -EINVAL,
                            "reading section header: RAM version %" PRIu32
                            ", QEMU 7.2 loads only 4",
                            s.version_id);
            s.kind = FERRY_QEMU_KIND_RAM;
        } else if (!strcmp(idstr, "spapr/htab") && s.instance_id == 0) {
            if (s.version_id != 1)
                return fail(r, at, -EINVAL,
                            "reading section header: spapr/htab version %" PRIu32 ", only 1 exists",
                            s.version_id);
            s.kind = FERRY_QEMU_KIND_HTAB;
        } else if (type == FERRY_QEMU_FULL && r->n_devs) {
            dev = find_dev(r, idstr, s.instance_id);
            s.kind = dev != QJ_NONE ? FERRY_QEMU_KIND_DEVICE : FERRY_QEMU_KIND_UNDECODED;
        } else {
            s.kind = FERRY_QEMU_KIND_UNDECODED;
        }
        if (dev != QJ_NONE) {
            int64_t dv = jint(r, dev, "version", -1);
            if (dv >= 0 && (uint64_t)dv != s.version_id)
                return fail(r, at, -EINVAL,
                            "reading section header: version %" PRIu32
                            " but the vmdesc says %" PRId64,
                            s.version_id, dv);
        }
        if (type == FERRY_QEMU_START) {
            Iter *it = find_iter(r, id);
            if (!it) {
                if (r->n_iters >= 4096)
                    return fail(r, at, -EINVAL, "reading section header: too many live sections");
                Iter *n = realloc(r->iters, (r->n_iters + 1) * sizeof(*n));
                if (!n)
                    return fail(r, at, -ENOMEM, "reading section header: out of memory");
                r->iters = n;
                it = &r->iters[r->n_iters++];
            }
            *it = (Iter){id, s.instance_id, s.version_id, s.kind, {0}};
            memcpy(it->idstr, idstr, sizeof(it->idstr));
        }
    } else {
        Iter *it = find_iter(r, id);
        if (!it)
            return fail(r, at, -ENOENT,
                        "reading section header: %s for section id %" PRIu32
                        " that no START opened",
                        type == FERRY_QEMU_PART ? "PART" : "END", id);
        memcpy(idstr, it->idstr, sizeof(idstr));
        s.idstr = idstr;
        s.instance_id = it->instance_id;
        s.version_id = it->version_id;
        s.kind = it->kind;
        r->sec_name = idstr;
        r->sec_id = id;
    }
    s.payload = r->off;
    r->info.n_sections++;
    if (r->v->section_begin && (rc = r->v->section_begin(r->ctx, &s, r->err)) < 0)
        return cb_fail(r, rc);
    switch (s.kind) {
    case FERRY_QEMU_KIND_RAM:
        rc = ram_payload(r);
        break;
    case FERRY_QEMU_KIND_HTAB:
        rc = htab_payload(r);
        break;
    case FERRY_QEMU_KIND_DEVICE:
        r->path_len = 0;
        r->depth = 0;
        rc = decode_struct(r, dev, s.payload);
        break;
    case FERRY_QEMU_KIND_UNDECODED:
        r->info.n_undecoded++;
        rc = resync(r, &s);
        break;
    }
    if (rc == 0)
        rc = end_section(r, &s);
    if (rc == 0)
        r->sec_name = NULL;
    return rc;
}

/* ---- commands -------------------------------------------------------------------------- */

static int run_items(FerryQemuReader *r, bool package);

static int command(FerryQemuReader *r, uint64_t at)
{
    uint16_t cmd, len;
    const uint8_t *d;
    int rc;
    if ((rc = rd_be16(r, &cmd, "command id")) < 0 || (rc = rd_be16(r, &len, "command length")) < 0)
        return rc;
    if (cmd == 0 || cmd >= N_MIG_CMDS)
        return fail(r, at, -EINVAL, "reading command: unknown command %u", cmd);
    const char *name = mig_cmds[cmd].name;
    if (mig_cmds[cmd].len >= 0 && len != mig_cmds[cmd].len)
        return fail(r, at, -ERANGE, "reading command %s: length %u, expected %d", name, len,
                    mig_cmds[cmd].len);
    char what[64];
    snprintf(what, sizeof(what), "command %s data", name);
    if ((rc = in_take(r, len, &d, what)) < 0)
        return rc;
    switch (cmd) {
    case 3: /* POSTCOPY_ADVISE: nothing, or be64 page-size summary + be64 target page size */
        if (len != 0 && len != 16)
            return fail(r, at, -EINVAL, "reading command %s: length %u, expected 0 or 16", name,
                        len);
        if (len == 16) {
            r->postcopy_advised = true;
            r->pagesize_summary = be64(d);
            if (be64(d + 8) != r->info.page_size)
                return fail(r, at, -EINVAL,
                            "reading command %s: target page size %" PRIu64
                            ", stream uses %" PRIu32,
                            name, be64(d + 8), r->info.page_size);
        }
        break;
    case 6: /* POSTCOPY_RAM_DISCARD: u8 version 0, u8 n, name[n], NUL, (be64 start, be64 len)* */
        if (len < 3 || d[0] != 0 || (size_t)3 + d[1] > len || d[2 + d[1]] != 0 ||
            (len - 3 - d[1]) % 16)
            return fail(r, at, -EINVAL,
                        "reading command %s: malformed (version 0, name, NUL, 16-byte ranges)",
                        name);
        break;
    case 10: /* RECV_BITMAP: u8 n, name[n] */
        if (len < 1 || (size_t)d[0] + 1 != len)
            return fail(r, at, -EINVAL, "reading command %s: name length %u in %u bytes", name,
                        len ? d[0] : 0, len);
        break;
    default:
        break;
    }
    r->info.n_commands++;
    FerryQemuCommand c = {cmd, len, d, at};
    if (r->v->command && (rc = r->v->command(r->ctx, &c, r->err)) < 0)
        return cb_fail(r, rc);
    if (cmd == 7) { /* PACKAGED: be32 size, then a nested run of sections and commands */
        uint32_t n = be32(d);
        if (r->package_depth)
            return fail(r, at, -EINVAL, "reading command %s: nested package", name);
        uint64_t left = r->limit - r->off;
        if (r->size != UINT64_MAX && r->size - r->off < left)
            left = r->size - r->off;
        if (n > left)
            return short_read(r, r->off, "PACKAGED data", n, left);
        uint64_t old = r->limit;
        const char *old_why = r->limit_why;
        r->limit = r->off + n;
        r->limit_why = "the PACKAGED command's data ends";
        r->package_depth++;
        rc = run_items(r, true);
        r->package_depth--;
        if (rc < 0)
            return rc;
        if (r->off != r->limit)
            return fail(r, r->off, -EINVAL,
                        "reading PACKAGED data: EOF inside the package with %" PRIu64 " bytes left",
                        r->limit - r->off);
        r->limit = old;
        r->limit_why = old_why;
    }
    return 0;
}

static int run_items(FerryQemuReader *r, bool package)
{
    int rc;
    for (;;) {
        uint64_t at = r->off;
        uint8_t t;
        if (package && r->off == r->limit)
            return 0;
        if ((rc = rd_u8(r, &t, "section type")) < 0)
            return rc;
        switch (t) {
        case FERRY_QEMU_EOF:
            if (!package)
                r->info.eof_offset = at;
            return 0;
        case FERRY_QEMU_START:
        case FERRY_QEMU_PART:
        case FERRY_QEMU_END:
        case FERRY_QEMU_FULL:
            rc = section(r, t, at);
            break;
        case FERRY_QEMU_COMMAND:
            rc = command(r, at);
            break;
        case FERRY_QEMU_CONFIGURATION:
            return fail(r, at, -EINVAL,
                        "reading section type: configuration section not right after the header");
        default:
            return fail(r, at, -EINVAL, "reading section type: unknown section type 0x%02x", t);
        }
        if (rc < 0)
            return rc;
    }
}

/* ---- reader ---------------------------------------------------------------------------- */

bool ferry_qemu_probe(const uint8_t *data, size_t len)
{
    return len >= 4 && be32(data) == FERRY_QEMU_MAGIC;
}

static FerryQemuReader *reader_new(unsigned flags)
{
    FerryQemuReader *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->fd = -1;
    r->flags = flags;
    r->limit = UINT64_MAX;
    r->footers = -1;
    r->size = UINT64_MAX;
    return r;
}

FerryQemuReader *ferry_qemu_reader_fd(int fd, unsigned flags, FerryError *err)
{
    FerryQemuReader *r = reader_new(flags);
    if (!r || !(r->buf = malloc(BUF_CAP))) {
        ferry_qemu_reader_destroy(r);
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    r->fd = fd;
    r->p = r->buf;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (pos == 0)
            r->size = (uint64_t)st.st_size;
    }
    return r;
}

FerryQemuReader *ferry_qemu_reader_mem(const uint8_t *data, size_t len, unsigned flags,
                                       FerryError *err)
{
    FerryQemuReader *r = reader_new(flags);
    if (!r) {
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    r->mem = data;
    r->mem_len = len;
    r->p = data;
    r->avail = len;
    r->src_eof = true;
    r->size = len;
    return r;
}

void ferry_qemu_reader_destroy(FerryQemuReader *r)
{
    if (!r)
        return;
    qj_free(&r->vj);
    free(r->devs);
    free(r->machine);
    for (size_t i = 0; i < r->n_caps; i++)
        free(r->caps[i]);
    free(r->caps);
    free(r->blocks);
    free(r->iters);
    free(r->scratch);
    free(r->buf);
    free(r);
}

const FerryQemuInfo *ferry_qemu_reader_info(const FerryQemuReader *r)
{
    return &r->info;
}

/* After EOF: nothing, or `06 be32 len json` ending the stream. */
static int trailer(FerryQemuReader *r)
{
    int rc;
    uint64_t at = r->off;
    r->limit = UINT64_MAX;
    r->limit_why = NULL;
    if (in_ensure(r, 1) == 0)
        return r->info.has_vmdesc ? fail(r, at, -EINVAL, "reading vmdesc trailer: missing") : 0;
    uint8_t t;
    uint32_t len;
    if ((rc = rd_u8(r, &t, "vmdesc trailer")) < 0)
        return rc;
    if (t != FERRY_QEMU_VMDESC)
        return fail(r, at, -EINVAL,
                    "reading after EOF: 0x%02x where only a vmdesc trailer (0x06) "
                    "may follow",
                    t);
    if ((rc = rd_be32(r, &len, "vmdesc trailer length")) < 0)
        return rc;
    if (len > FERRY_QEMU_MAX_VMDESC)
        return fail(r, at, -EFBIG, "reading vmdesc trailer: %" PRIu32 " bytes exceeds the %u limit",
                    len, FERRY_QEMU_MAX_VMDESC);
    if (r->info.has_vmdesc || (r->flags & FERRY_QEMU_NO_VMDESC)) {
        if (r->info.has_vmdesc && at != r->info.vmdesc_offset)
            return fail(r, at, -EINVAL,
                        "reading vmdesc trailer: found at 0x%" PRIx64 " but located at 0x%" PRIx64,
                        at, r->info.vmdesc_offset);
        if ((rc = in_skip(r, len, "vmdesc trailer JSON")) < 0)
            return rc;
    } else {
        /* A pipe: the trailer was not located in advance; check it parses. */
        const uint8_t *text;
        if ((rc = in_take_big(r, len, &text, "vmdesc trailer JSON")) < 0)
            return rc;
        size_t pos;
        const char *msg;
        QjDoc j = {0};
        if ((rc = qj_parse(&j, (const char *)text, len, &pos, &msg)) < 0) {
            qj_free(&j);
            return fail(r, at + 5 + pos, rc, "reading vmdesc JSON: %s", msg);
        }
        uint32_t devs = qj_get(&j, 0, "devices");
        r->info.vmdesc_devices = devs != QJ_NONE && j.n[devs].type == QJ_ARR ? j.n[devs].count : 0;
        qj_free(&j);
        r->info.vmdesc_offset = at;
        r->info.vmdesc_len = len;
    }
    if (in_ensure(r, 1) != 0)
        return fail(r, r->off, -EINVAL, "reading after the vmdesc trailer: trailing bytes");
    return 0;
}

int ferry_qemu_reader_run(FerryQemuReader *r, const FerryQemuVisitor *v, void *ctx, FerryError *err)
{
    static const FerryQemuVisitor none;
    int rc;
    uint32_t magic, version;
    r->v = v ? v : &none;
    r->ctx = ctx;
    r->err = err;
    ferry_error_clear(err);
    if ((rc = rd_be32(r, &magic, "magic")) < 0)
        return rc;
    if (magic != FERRY_QEMU_MAGIC)
        return fail(r, 0, -EINVAL, "reading magic: 0x%08" PRIx32 " is not \"QEVM\"", magic);
    if ((rc = rd_be32(r, &version, "format version")) < 0)
        return rc;
    if (version != FERRY_QEMU_VERSION)
        return fail(r, 4, -EINVAL, "reading format version: %" PRIu32 " (%s)", version,
                    version == 2 ? "SaveVM v2 format is obsolete" : "only version 3 is supported");
    if (r->size != UINT64_MAX && !(r->flags & FERRY_QEMU_NO_VMDESC)) {
        uint64_t k;
        uint32_t len;
        if (locate_trailer(r, &k, &len) == 0) {
            if ((rc = load_vmdesc(r, k, len)) < 0)
                return rc;
            r->limit = k; /* sections end before the trailer; EOF is at k - 1 */
            r->limit_why = "the vmdesc trailer starts";
        }
    }
    if (!r->info.page_size)
        r->info.page_size = 4096; /* x86, ppc64, s390x; variable-page targets send page bits */
    if (in_ensure(r, 1) == 1 && r->p[0] == FERRY_QEMU_CONFIGURATION && (rc = parse_config(r)) < 0)
        return rc;
    if ((rc = run_items(r, false)) < 0)
        return rc;
    if ((rc = trailer(r)) < 0)
        return rc;
    r->info.footers = r->footers == 1;
    r->info.size = r->off;
    return 0;
}
