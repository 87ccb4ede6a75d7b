/* A model of the guest's hotplug driver. It touches the machine only through the register block
 * (ferry_hotplug_io_*), exactly as the firmware does, and logs what it saw in order. */
#include "ferry/machine/guest.h"

#include "ferry/machine/hotplug.h"
#include "model-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define GUEST_MAX_HAVE (3 * FERRY_MACHINE_MAX_SLOTS)

typedef enum Phase { PH_BOOT, PH_ENUM, PH_IDLE, PH_ADD, PH_REMOVE } Phase;
typedef enum JobStep {
    ADD_ALLOCATE,
    ADD_UNISOLATE,
    ADD_CONFIGURE,
    RM_QUERY,
    RM_ISOLATE,
    RM_RELEASE,
} JobStep;

struct FerryGuest {
    FerryMachine *m; /* borrowed */
    Phase phase;
    uint32_t enum_pos;
    uint32_t job_index;
    JobStep job_step;
    char node[FERRY_HP_NAME_MAX];
    uint32_t have[GUEST_MAX_HAVE]; /* connector indices the guest uses, sorted */
    size_t nhave;
    FerryGuestObs *log;
    size_t nlog, caplog;
};

FerryGuest *ferry_guest_new(FerryMachine *m)
{
    FerryGuest *g = calloc(1, sizeof(*g));
    if (g)
        g->m = m;
    return g;
}

void ferry_guest_free(FerryGuest *g)
{
    if (!g)
        return;
    free(g->log);
    free(g);
}

void ferry_guest_attach(FerryGuest *g, FerryMachine *m)
{
    g->m = m;
}

static void obs(FerryGuest *g, FerryGuestObsKind kind, uint32_t index, uint32_t a, uint32_t b,
                const char *text)
{
    if (g->nlog == g->caplog) {
        size_t cap = g->caplog ? g->caplog * 2 : 32;
        FerryGuestObs *n = realloc(g->log, cap * sizeof(*n));
        if (!n)
            return; /* the log is an observation aid; losing an entry under OOM is acceptable */
        g->log = n;
        g->caplog = cap;
    }
    FerryGuestObs *o = &g->log[g->nlog++];
    memset(o, 0, sizeof(*o));
    o->kind = kind;
    o->index = index;
    o->a = a;
    o->b = b;
    if (text)
        snprintf(o->text, sizeof(o->text), "%s", text);
}

void ferry_guest_reboot(FerryGuest *g)
{
    g->phase = PH_BOOT;
    g->enum_pos = 0;
    g->nhave = 0;
    g->node[0] = '\0';
    obs(g, FERRY_GUEST_OBS_REBOOT, 0, 0, 0, NULL);
}

/* ---- registers ---- */

static uint32_t rd(FerryGuest *g, uint16_t off)
{
    return ferry_hotplug_io_read(g->m, off, 4);
}
static void wr(FerryGuest *g, uint16_t off, uint32_t v)
{
    ferry_hotplug_io_write(g->m, off, 4, v);
}

static uint32_t command(FerryGuest *g, uint32_t cmd, uint32_t selector, uint32_t arg)
{
    wr(g, FERRY_HP_REG_SELECTOR, selector);
    wr(g, FERRY_HP_REG_ARG, arg);
    wr(g, FERRY_HP_REG_CMD, cmd);
    return rd(g, FERRY_HP_REG_STATUS);
}

static void read_name(FerryGuest *g, char *out, size_t len)
{
    uint8_t b[FERRY_HP_NAME_MAX];
    for (unsigned i = 0; i < sizeof(b); i += 4) {
        uint32_t v = rd(g, FERRY_HP_WINDOW + FERRY_HP_WINDOW_NAME + i);
        for (unsigned k = 0; k < 4; k++)
            b[i + k] = (uint8_t)(v >> (8 * k));
    }
    b[sizeof(b) - 1] = 0;
    snprintf(out, len, "%s", (char *)b);
}

static bool has(const FerryGuest *g, uint32_t index)
{
    for (size_t i = 0; i < g->nhave; i++)
        if (g->have[i] == index)
            return true;
    return false;
}

static void have_add(FerryGuest *g, uint32_t index)
{
    if (has(g, index) || g->nhave == GUEST_MAX_HAVE)
        return;
    size_t i = g->nhave++;
    while (i > 0 && g->have[i - 1] > index) {
        g->have[i] = g->have[i - 1];
        i--;
    }
    g->have[i] = index;
}

static void have_del(FerryGuest *g, uint32_t index)
{
    for (size_t i = 0; i < g->nhave; i++)
        if (g->have[i] == index) {
            memmove(&g->have[i], &g->have[i + 1], (g->nhave - i - 1) * sizeof(g->have[0]));
            g->nhave--;
            return;
        }
}

/* ---- single actions ---- */

uint32_t ferry_guest_declare_ready(FerryGuest *g)
{
    uint32_t st = command(g, FERRY_HP_CMD_READY, 0, 0);
    obs(g, st == FERRY_HP_ST_OK ? FERRY_GUEST_OBS_READY : FERRY_GUEST_OBS_ERROR, 0,
        FERRY_HP_CMD_READY, st, NULL);
    return st;
}

uint32_t ferry_guest_fetch_event(FerryGuest *g, uint32_t *action, uint32_t *kind, uint32_t *index)
{
    uint32_t st = command(g, FERRY_HP_CMD_FETCH_EVENT, 0, 0);
    if (st != FERRY_HP_ST_OK)
        return st;
    uint32_t a = rd(g, FERRY_HP_REG_RESULT0), k = rd(g, FERRY_HP_REG_RESULT1),
             i = rd(g, FERRY_HP_REG_RESULT2);
    obs(g, FERRY_GUEST_OBS_EVENT, i, a, k, NULL);
    if (action)
        *action = a;
    if (kind)
        *kind = k;
    if (index)
        *index = i;
    return st;
}

uint32_t ferry_guest_set_state(FerryGuest *g, uint32_t index, uint32_t state)
{
    uint32_t st = command(g, FERRY_HP_CMD_SET_STATE, index, state);
    if (st != FERRY_HP_ST_OK)
        obs(g, FERRY_GUEST_OBS_ERROR, index, FERRY_HP_CMD_SET_STATE, st, NULL);
    return st;
}

uint32_t ferry_guest_cc_step(FerryGuest *g, uint32_t index, uint32_t *token)
{
    uint32_t st = command(g, FERRY_HP_CMD_CC_STEP, index, 0);
    if (st != FERRY_HP_ST_OK) {
        obs(g, FERRY_GUEST_OBS_ERROR, index, FERRY_HP_CMD_CC_STEP, st, NULL);
        return st;
    }
    uint32_t tok = rd(g, FERRY_HP_REG_RESULT0);
    if (token)
        *token = tok;
    char name[FERRY_HP_NAME_MAX];
    if (tok == FERRY_HP_TOK_DONE) {
        obs(g, FERRY_GUEST_OBS_CONFIGURED, index, 0, 0, g->node);
        have_add(g, index);
        return st;
    }
    read_name(g, name, sizeof(name));
    if (tok == FERRY_HP_TOK_NODE_START)
        snprintf(g->node, sizeof(g->node), "%s", name);
    obs(g, FERRY_GUEST_OBS_TOKEN, index, tok, rd(g, FERRY_HP_REG_RESULT2), name);
    return st;
}

/* ---- the driver program ---- */

static void start_job(FerryGuest *g, uint32_t action, uint32_t index)
{
    g->job_index = index;
    g->node[0] = '\0';
    if (action == FERRY_HP_ACTION_ADD) {
        if (has(g, index)) {
            obs(g, FERRY_GUEST_OBS_DUPLICATE, index, action, 0, NULL);
            g->phase = PH_IDLE;
            return;
        }
        g->phase = PH_ADD;
        g->job_step = ADD_ALLOCATE;
    } else {
        g->phase = PH_REMOVE;
        g->job_step = RM_QUERY;
    }
}

static void job_done(FerryGuest *g)
{
    g->phase = PH_IDLE;
}

static void step_add(FerryGuest *g)
{
    uint32_t idx = g->job_index, st;
    switch (g->job_step) {
    case ADD_ALLOCATE:
        st = command(g, FERRY_HP_CMD_SET_STATE, idx, FERRY_CONN_AVAILABLE);
        if (st == FERRY_HP_ST_OK) {
            g->job_step = ADD_UNISOLATE;
        } else if (st == FERRY_HP_ST_NO_DEVICE || st == FERRY_HP_ST_UNPLUG_PENDING) {
            obs(g, FERRY_GUEST_OBS_STALE, idx, FERRY_HP_ACTION_ADD, st, NULL);
            job_done(g);
        } else {
            obs(g, FERRY_GUEST_OBS_ERROR, idx, FERRY_HP_CMD_SET_STATE, st, NULL);
            job_done(g);
        }
        break;
    case ADD_UNISOLATE:
        st = command(g, FERRY_HP_CMD_SET_STATE, idx, FERRY_CONN_UNISOLATE);
        if (st == FERRY_HP_ST_OK) {
            g->job_step = ADD_CONFIGURE;
        } else {
            obs(g, st == FERRY_HP_ST_UNPLUG_PENDING ? FERRY_GUEST_OBS_STALE : FERRY_GUEST_OBS_ERROR,
                idx, FERRY_HP_CMD_SET_STATE, st, NULL);
            job_done(g);
        }
        break;
    case ADD_CONFIGURE: {
        uint32_t tok = 0;
        st = ferry_guest_cc_step(g, idx, &tok);
        if (st != FERRY_HP_ST_OK || tok == FERRY_HP_TOK_DONE)
            job_done(g);
        break;
    }
    default:
        job_done(g);
    }
}

static void step_remove(FerryGuest *g)
{
    uint32_t idx = g->job_index, st;
    switch (g->job_step) {
    case RM_QUERY: {
        st = command(g, FERRY_HP_CMD_GET_STATE, idx, 0);
        uint32_t state = rd(g, FERRY_HP_REG_RESULT0), flags = rd(g, FERRY_HP_REG_RESULT1);
        if (st != FERRY_HP_ST_OK || !(flags & FERRY_HP_FLAG_UNPLUG_REQUESTED) ||
            state == FERRY_CONN_UNUSABLE) {
            obs(g, FERRY_GUEST_OBS_STALE, idx, FERRY_HP_ACTION_REMOVE, st, NULL);
            job_done(g);
        } else {
            g->job_step = state == FERRY_CONN_AVAILABLE ? RM_RELEASE : RM_ISOLATE;
        }
        break;
    }
    case RM_ISOLATE:
        st = command(g, FERRY_HP_CMD_SET_STATE, idx, FERRY_CONN_AVAILABLE);
        if (st == FERRY_HP_ST_OK) {
            have_del(g, idx); /* offlined: the guest no longer uses it */
            g->job_step = RM_RELEASE;
        } else {
            obs(g, FERRY_GUEST_OBS_ERROR, idx, FERRY_HP_CMD_SET_STATE, st, NULL);
            job_done(g);
        }
        break;
    case RM_RELEASE:
        st = command(g, FERRY_HP_CMD_SET_STATE, idx, FERRY_CONN_UNUSABLE);
        if (st == FERRY_HP_ST_OK) {
            have_del(g, idx);
            obs(g, FERRY_GUEST_OBS_RELEASED, idx, 0, 0, NULL);
        } else {
            obs(g, FERRY_GUEST_OBS_ERROR, idx, FERRY_HP_CMD_SET_STATE, st, NULL);
        }
        job_done(g);
        break;
    default:
        job_done(g);
    }
}

bool ferry_guest_step(FerryGuest *g)
{
    switch (g->phase) {
    case PH_BOOT:
        if (ferry_guest_declare_ready(g) == FERRY_HP_ST_OK) {
            g->phase = PH_ENUM;
            g->enum_pos = 0;
        }
        return true;
    case PH_ENUM: {
        uint32_t st = command(g, FERRY_HP_CMD_ENUM, g->enum_pos, 0);
        if (st == FERRY_HP_ST_OK) {
            uint32_t idx = rd(g, FERRY_HP_REG_RESULT0);
            obs(g, FERRY_GUEST_OBS_BOOT, idx, rd(g, FERRY_HP_REG_RESULT1), 0, NULL);
            have_add(g, idx);
            g->enum_pos++;
        } else {
            g->phase = PH_IDLE;
        }
        return true;
    }
    case PH_IDLE: {
        if (!(rd(g, FERRY_HP_REG_PENDING) & FERRY_HP_PENDING_LINE))
            return false;
        uint32_t action, index;
        if (ferry_guest_fetch_event(g, &action, NULL, &index) == FERRY_HP_ST_OK)
            start_job(g, action, index);
        return true;
    }
    case PH_ADD:
        step_add(g);
        return true;
    case PH_REMOVE:
        step_remove(g);
        return true;
    }
    return false;
}

size_t ferry_guest_run(FerryGuest *g, size_t max)
{
    size_t n = 0;
    while (n < max && ferry_guest_step(g))
        n++;
    return n;
}

/* ---- observations ---- */

size_t ferry_guest_log_count(const FerryGuest *g)
{
    return g->nlog;
}

const FerryGuestObs *ferry_guest_log_at(const FerryGuest *g, size_t i)
{
    return i < g->nlog ? &g->log[i] : NULL;
}

void ferry_guest_log_clear(FerryGuest *g)
{
    g->nlog = 0;
}

size_t ferry_guest_log_find(const FerryGuest *g, FerryGuestObsKind kind, uint32_t index)
{
    size_t n = 0;
    for (size_t i = 0; i < g->nlog; i++)
        n += g->log[i].kind == kind && (index == UINT32_MAX || g->log[i].index == index);
    return n;
}

bool ferry_guest_has(const FerryGuest *g, uint32_t index)
{
    return has(g, index);
}
bool ferry_guest_busy(const FerryGuest *g)
{
    return g->phase == PH_ADD || g->phase == PH_REMOVE;
}

static const char *action_name(uint32_t a)
{
    return a == FERRY_HP_ACTION_ADD ? "add" : a == FERRY_HP_ACTION_REMOVE ? "remove" : "?";
}

static const char *token_name(uint32_t t)
{
    switch (t) {
    case FERRY_HP_TOK_NODE_START:
        return "node-start";
    case FERRY_HP_TOK_PROP:
        return "prop";
    case FERRY_HP_TOK_NODE_END:
        return "node-end";
    case FERRY_HP_TOK_DONE:
        return "done";
    default:
        return "?";
    }
}

char *ferry_guest_log_text(const FerryGuest *g)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    for (size_t i = 0; i < g->nlog; i++) {
        const FerryGuestObs *o = &g->log[i];
        switch (o->kind) {
        case FERRY_GUEST_OBS_READY:
            fprintf(f, "ready\n");
            break;
        case FERRY_GUEST_OBS_REBOOT:
            fprintf(f, "reboot\n");
            break;
        case FERRY_GUEST_OBS_BOOT:
            fprintf(f, "boot %s 0x%08x\n", ferry_connector_kind_name(o->a), o->index);
            break;
        case FERRY_GUEST_OBS_EVENT:
            fprintf(f, "event %s %s 0x%08x\n", action_name(o->a), ferry_connector_kind_name(o->b),
                    o->index);
            break;
        case FERRY_GUEST_OBS_TOKEN:
            fprintf(f, "token 0x%08x %s%s%s\n", o->index, token_name(o->a), o->text[0] ? " " : "",
                    o->text);
            break;
        case FERRY_GUEST_OBS_CONFIGURED:
            fprintf(f, "configured 0x%08x %s\n", o->index, o->text);
            break;
        case FERRY_GUEST_OBS_RELEASED:
            fprintf(f, "released 0x%08x\n", o->index);
            break;
        case FERRY_GUEST_OBS_STALE:
            fprintf(f, "stale %s 0x%08x\n", action_name(o->a), o->index);
            break;
        case FERRY_GUEST_OBS_DUPLICATE:
            fprintf(f, "duplicate %s 0x%08x\n", action_name(o->a), o->index);
            break;
        case FERRY_GUEST_OBS_ERROR:
            fprintf(f, "error cmd %u status %u 0x%08x\n", o->a, o->b, o->index);
            break;
        }
    }
    fclose(f);
    return out;
}

/* ---- model properties ---- */

FerryGuest *ferry_guest_clone(const FerryGuest *g, FerryMachine *m)
{
    FerryGuest *n = malloc(sizeof(*n));
    if (!n)
        return NULL;
    *n = *g;
    n->m = m;
    n->log = NULL;
    n->caplog = 0;
    if (g->nlog) {
        n->log = malloc(g->nlog * sizeof(*n->log));
        if (!n->log) {
            free(n);
            return NULL;
        }
        memcpy(n->log, g->log, g->nlog * sizeof(*n->log));
        n->caplog = g->nlog;
    }
    return n;
}

static void canon_guest(FerryCanon *c, const FerryGuest *g)
{
    ferry_canon_u32(c, g->phase);
    ferry_canon_u32(c, g->enum_pos);
    ferry_canon_u32(c, g->job_index);
    ferry_canon_u32(c, g->job_step);
    ferry_canon_str(c, g->node);
    ferry_canon_u32(c, (uint32_t)g->nhave);
    for (size_t i = 0; i < g->nhave; i++)
        ferry_canon_u32(c, g->have[i]);
    ferry_canon_u32(c, (uint32_t)g->nlog);
    for (size_t i = 0; i < g->nlog; i++) {
        const FerryGuestObs *o = &g->log[i];
        ferry_canon_u32(c, o->kind);
        ferry_canon_u32(c, o->index);
        ferry_canon_u32(c, o->a);
        ferry_canon_u32(c, o->b);
        ferry_canon_str(c, o->text);
    }
}

bool ferry_guest_equal(const FerryGuest *a, const FerryGuest *b)
{
    FerryCanon ca, cb;
    ferry_canon_init(&ca);
    ferry_canon_init(&cb);
    canon_guest(&ca, a);
    canon_guest(&cb, b);
    bool eq = !ca.oom && !cb.oom && ca.len == cb.len && !memcmp(ca.buf, cb.buf, ca.len);
    ferry_canon_fini(&ca);
    ferry_canon_fini(&cb);
    return eq;
}

uint64_t ferry_guest_hash(const FerryGuest *g)
{
    FerryCanon c;
    ferry_canon_init(&c);
    canon_guest(&c, g);
    uint64_t h = XXH3_64bits(c.buf, c.len);
    ferry_canon_fini(&c);
    return h;
}
