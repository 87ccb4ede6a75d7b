/* The explorer's engine: actions on a source machine and its guest model, the switchover into a
 * destination built three ways, the invariants, and BFS/DFS over states deduplicated by hash. */
#include "ferry/machine/guest.h"
#include "ferry/machine/hotplug.h"
#include "ferry/machine/inventory.h"
#include "ferry/stream/stream.h"
#include "ferry/tools/explore.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SLOTS      8
#define MAX_KIND_SLOTS 4 /* vCPU and memory-block slots explored */
#define MAX_TARGETS    (MAX_SLOTS + 2 * MAX_KIND_SLOTS)
#define QUIESCE_STEPS  400 /* a guest that takes more is livelocked (a violation) */

/* ---- actions ---- */

typedef enum ActKind {
    ACT_CONT,       /* start the source (created with -S) or resume it */
    ACT_STOP,       /* pause the source: the guest does not run, plugs are still hotplugs */
    ACT_ADD,        /* device_add card c<slot> */
    ACT_DEL,        /* device_del c<slot> */
    ACT_GUEST,      /* the source guest performs its next protocol step */
    ACT_RESET,      /* system_reset (the guest reboots) */
    ACT_MIGRATE,    /* outgoing migration starts (setup/active: device_add/del refused) */
    ACT_CANCEL,     /* migrate_cancel: the source keeps running, unchanged */
    ACT_CUT,        /* the connection is cut mid-stream: the destination fails, the source runs */
    ACT_SWITCHOVER, /* stop, stream device state, destination loads and runs */
    ACT__COUNT
} ActKind;

typedef struct Action {
    ActKind kind;
    uint32_t arg; /* target (kind << 8 | slot) for add/del, FERRY_EXPLORE_DST_* for a switchover */
} Action;

/* A device the explorer plugs: cards c<slot>, vCPUs cpu<slot> (slot 0 is the boot vCPU, never
 * explored), memory blocks mem<slot>. */
#define TARGET(kind, slot) ((uint32_t)(kind) << 8 | (uint32_t)(slot))
#define TARGET_KIND(t)     ((t) >> 8)
#define TARGET_SLOT(t)     ((t)&0xffu)

static const char *target_prefix(uint32_t t)
{
    switch (TARGET_KIND(t)) {
    case FERRY_CONN_CPU:
        return "cpu";
    case FERRY_CONN_MEM:
        return "mem";
    default:
        return "c";
    }
}

static void target_id(uint32_t t, char *buf, size_t len)
{
    snprintf(buf, len, "%s%u", target_prefix(t), TARGET_SLOT(t));
}

static void target_opts(uint32_t t, char *buf, size_t len)
{
    static const char *const driver[4] = {NULL, "cpu", "mem-block", "card"};
    snprintf(buf, len, "%s,id=%s%u,slot=%u", driver[TARGET_KIND(t)], target_prefix(t),
             TARGET_SLOT(t), TARGET_SLOT(t));
}

static const char *const act_names[ACT__COUNT] = {
    [ACT_CONT] = "cont",       [ACT_STOP] = "stop",
    [ACT_ADD] = "add",         [ACT_DEL] = "del",
    [ACT_GUEST] = "guest",     [ACT_RESET] = "reset",
    [ACT_MIGRATE] = "migrate", [ACT_CANCEL] = "cancel",
    [ACT_CUT] = "cut",         [ACT_SWITCHOVER] = "switchover",
};

static const char *dst_name(uint32_t v)
{
    switch (v) {
    case FERRY_EXPLORE_DST_CMDLINE:
        return "cmdline";
    case FERRY_EXPLORE_DST_ADD:
        return "add";
    case FERRY_EXPLORE_DST_STALE:
        return "stale";
    default:
        return "?";
    }
}

static void act_format(Action a, char *buf, size_t len)
{
    if ((a.kind == ACT_ADD || a.kind == ACT_DEL) && TARGET_KIND(a.arg) != FERRY_CONN_SLOT)
        snprintf(buf, len, "%s %s %u", act_names[a.kind],
                 TARGET_KIND(a.arg) == FERRY_CONN_CPU ? "cpu" : "mem", TARGET_SLOT(a.arg));
    else if (a.kind == ACT_ADD || a.kind == ACT_DEL)
        snprintf(buf, len, "%s %u", act_names[a.kind], TARGET_SLOT(a.arg));
    else if (a.kind == ACT_SWITCHOVER)
        snprintf(buf, len, "switchover %s", dst_name(a.arg));
    else
        snprintf(buf, len, "%s", act_names[a.kind]);
}

/* ---- the explored world: a source machine and its guest ---- */

typedef struct World {
    FerryMachine *m;
    FerryGuest *g;
} World;

typedef struct Ctx {
    FerryExploreConfig cfg;
    FerryExploreResult *res;
    FILE *log;                     /* replay narration */
    char msg[FERRY_ERROR_MSG_MAX]; /* the violation of the action being checked */
    bool violated;
    uint32_t targets[MAX_TARGETS]; /* explored devices: cards, then vCPUs, then memory blocks */
    uint32_t ntargets;
} Ctx;

static void world_free(World *w)
{
    ferry_guest_free(w->g);
    ferry_machine_free(w->m);
    w->g = NULL;
    w->m = NULL;
}

static int world_clone(const World *w, World *out)
{
    out->m = ferry_machine_clone(w->m);
    out->g = out->m ? ferry_guest_clone(w->g, out->m) : NULL;
    if (!out->g) {
        ferry_machine_free(out->m);
        out->m = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* The guest's log is consumed after every action, so states that differ only by history
 * merge; what the invariants need from history is checked as it happens. */
static uint64_t world_hash(const World *w)
{
    uint64_t h = ferry_machine_hash(w->m);
    h ^= ferry_guest_hash(w->g) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h ? h : 1;
}

static bool violate(Ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool violate(Ctx *c, const char *fmt, ...)
{
    if (c->violated)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    c->violated = true;
    return false;
}

static FerryMachine *machine_new(const Ctx *c, bool incoming, FerryError *err)
{
    FerryMachineConfig mc = {.type = c->cfg.machine_type,
                             .cpu_slots = 1 + c->cfg.cpu_slots,
                             .boot_cpus = 1,
                             .mem_slots = c->cfg.mem_slots ? c->cfg.mem_slots : 1,
                             .card_slots = c->cfg.slots,
                             .incoming = incoming};
    FerryMachine *m = ferry_machine_new(&mc, err);
    if (m)
        ferry_machine_set_policy(m, &c->cfg.policy);
    return m;
}

/* ---- guest steps and their per-step invariants ---- */

/* Which connectors the guest believes it holds, as a bit set over connector positions. */
static uint64_t guest_have_mask(const FerryMachine *m, const FerryGuest *g)
{
    uint64_t mask = 0;
    size_t n = ferry_machine_connector_count(m);
    for (size_t i = 0; i < n && i < 64; i++) {
        FerryConnectorInfo ci;
        ferry_machine_connector_info(m, i, &ci);
        if (ferry_guest_has(g, ci.index))
            mask |= 1ull << i;
    }
    return mask;
}

static int conn_pos(const FerryMachine *m, uint32_t index)
{
    size_t n = ferry_machine_connector_count(m);
    for (size_t i = 0; i < n; i++) {
        FerryConnectorInfo ci;
        ferry_machine_connector_info(m, i, &ci);
        if (ci.index == index)
            return (int)i;
    }
    return -1;
}

/* "Never doubled": a resource the guest already holds must not be listed at boot or configured
 * again, and an add event for it is a duplicate. A failed command is a protocol violation. */
static bool check_guest_log(Ctx *c, const char *side, const FerryMachine *m, const FerryGuest *g,
                            uint64_t had)
{
    for (size_t i = 0; i < ferry_guest_log_count(g); i++) {
        const FerryGuestObs *o = ferry_guest_log_at(g, i);
        int pos = conn_pos(m, o->index);
        bool held = pos >= 0 && (had >> pos & 1);
        switch (o->kind) {
        case FERRY_GUEST_OBS_DUPLICATE:
            return violate(c,
                           "%s guest: add event for connector 0x%08x, which it already holds "
                           "(doubled)",
                           side, o->index);
        case FERRY_GUEST_OBS_ERROR:
            return violate(c, "%s guest: command %u on connector 0x%08x failed with status %u",
                           side, o->a, o->index, o->b);
        case FERRY_GUEST_OBS_BOOT:
        case FERRY_GUEST_OBS_CONFIGURED:
            if (held)
                return violate(c,
                               "%s guest: connector 0x%08x %s although the guest already "
                               "holds it (doubled)",
                               side, o->index,
                               o->kind == FERRY_GUEST_OBS_BOOT ? "listed at boot"
                                                               : "configured again");
            if (pos >= 0)
                had |= 1ull << pos;
            break;
        case FERRY_GUEST_OBS_RELEASED:
        case FERRY_GUEST_OBS_REBOOT:
            /* legitimately forgotten: a later configure is a new incarnation */
            if (o->kind == FERRY_GUEST_OBS_REBOOT)
                had = 0;
            else if (pos >= 0)
                had &= ~(1ull << pos);
            break;
        default:
            break;
        }
    }
    return true;
}

/* Explored devices present, one bit per target. */
static uint32_t targets_present(const Ctx *c, const FerryMachine *m)
{
    uint32_t mask = 0;
    for (uint32_t i = 0; i < c->ntargets; i++) {
        uint32_t t = c->targets[i];
        FerryConnectorInfo ci;
        if (ferry_machine_connector_find(m, FERRY_CONN_INDEX(TARGET_KIND(t), TARGET_SLOT(t)),
                                         &ci) == 0 &&
            ci.device_id)
            mask |= 1u << i;
    }
    return mask;
}

/* "After unplug completes the id is reusable": a device that disappeared can be added again with
 * the same id and slot (checked on a copy, outside any migration). */
static bool check_reusable(Ctx *c, const char *side, const FerryMachine *m, uint32_t before)
{
    uint32_t gone = before & ~targets_present(c, m);
    for (uint32_t i = 0; i < c->ntargets; i++) {
        if (!(gone >> i & 1))
            continue;
        FerryMachine *copy = ferry_machine_clone(m);
        if (!copy)
            return violate(c, "out of memory");
        ferry_machine_set_migration_active(copy, false);
        char id[16], opts[64];
        target_id(c->targets[i], id, sizeof(id));
        target_opts(c->targets[i], opts, sizeof(opts));
        FerryError err = {0};
        int rc = ferry_machine_device_add_opts(copy, opts, &err);
        ferry_machine_free(copy);
        if (rc < 0)
            return violate(c, "%s: '%s' was unplugged but cannot be added again: %s", side, id,
                           err.msg);
    }
    return true;
}

/* One guest step with its checks; *did says whether the guest did anything. */
static bool guest_step(Ctx *c, const char *side, World *w, bool *did)
{
    uint64_t had = guest_have_mask(w->m, w->g);
    uint32_t before = targets_present(c, w->m);
    ferry_guest_log_clear(w->g);
    *did = ferry_guest_step(w->g);
    if (c->log && ferry_guest_log_count(w->g)) {
        char *text = ferry_guest_log_text(w->g);
        for (char *line = text, *nl; line && *line; line = nl + 1) {
            nl = strchr(line, '\n');
            if (!nl)
                break;
            fprintf(c->log, "    %s guest: %.*s\n", side, (int)(nl - line), line);
        }
        free(text);
    }
    bool ok = check_guest_log(c, side, w->m, w->g, had) && check_reusable(c, side, w->m, before);
    ferry_guest_log_clear(w->g);
    return ok;
}

/* "Guest and host agree at quiescence": every present device is configured and held by the
 * guest (no event lost), nothing is held that the host lacks, no unplug is left pending, no
 * event is left queued. */
static bool check_quiescent(Ctx *c, const char *side, const World *w)
{
    const FerryMachine *m = w->m;
    for (size_t i = 0; i < ferry_machine_connector_count(m); i++) {
        FerryConnectorInfo ci;
        ferry_machine_connector_info(m, i, &ci);
        bool held = ferry_guest_has(w->g, ci.index);
        if (ci.device_id) {
            if (ci.unplug_requested)
                return violate(c,
                               "%s at quiescence: unplug of '%s' (connector 0x%08x) never "
                               "completed (remove event lost)",
                               side, ci.device_id, ci.index);
            if (ci.state != FERRY_CONN_CONFIGURED)
                return violate(c,
                               "%s at quiescence: '%s' (connector 0x%08x) is plugged but "
                               "%s, never configured by the guest (event lost)",
                               side, ci.device_id, ci.index, ferry_connector_state_name(ci.state));
            if (!held)
                return violate(c,
                               "%s at quiescence: '%s' (connector 0x%08x) is configured on "
                               "the host but unknown to the guest",
                               side, ci.device_id, ci.index);
        } else {
            if (held)
                return violate(c,
                               "%s at quiescence: the guest still uses connector 0x%08x, "
                               "which has no device",
                               side, ci.index);
            if (ci.state != FERRY_CONN_UNUSABLE)
                return violate(c, "%s at quiescence: empty connector 0x%08x is %s", side, ci.index,
                               ferry_connector_state_name(ci.state));
        }
    }
    if (ferry_machine_event_count(m))
        return violate(c,
                       "%s at quiescence: %zu event(s) still queued (the guest was never "
                       "notified)",
                       side, ferry_machine_event_count(m));
    if (ferry_guest_busy(w->g))
        return violate(c, "%s at quiescence: the guest is stuck mid-job", side);
    return true;
}

/* Runs the guest of `w` (modified) until it has nothing to do, checking every step. */
static bool run_to_quiescence(Ctx *c, const char *side, World *w)
{
    for (int n = 0; n < QUIESCE_STEPS; n++) {
        bool did;
        if (!guest_step(c, side, w, &did))
            return false;
        if (!did)
            return check_quiescent(c, side, w);
    }
    return violate(c, "%s guest: no quiescence after %d steps (livelock)", side, QUIESCE_STEPS);
}

/* "No event lost": from this state, a guest that runs to quiescence ends up agreeing with the
 * host. Checked on a copy (a prelaunch source is started first). */
static bool check_eventually(Ctx *c, const World *w)
{
    World copy;
    if (world_clone(w, &copy) < 0)
        return violate(c, "out of memory");
    bool ok = true;
    FILE *log = c->log;
    c->log = NULL; /* a hypothetical future: not narrated */
    FerryRunState run = ferry_machine_runstate(copy.m);
    if (run == FERRY_RUN_PRELAUNCH || run == FERRY_RUN_PAUSED)
        ferry_machine_run_event(copy.m, FERRY_RUN_EV_CONT, NULL);
    if (ferry_machine_runstate(copy.m) == FERRY_RUN_RUNNING)
        ok = run_to_quiescence(c, "source", &copy);
    c->log = log;
    if (!ok && log)
        fprintf(log, "    letting the source guest run to quiescence from here breaks an "
                     "invariant\n");
    world_free(&copy);
    return ok;
}

/* ---- switchover ---- */

/* Host-visible state of both sides: connectors (state, unplug, session cursor, device),
 * devices (model and parameters), events in order, readiness. */
static bool check_same(Ctx *c, const FerryMachine *a, const FerryMachine *b)
{
    for (size_t i = 0; i < ferry_machine_connector_count(a); i++) {
        FerryConnectorInfo x, y;
        ferry_machine_connector_info(a, i, &x);
        if (ferry_machine_connector_info(b, i, &y) < 0)
            return violate(c, "after switchover: destination lacks connector 0x%08x", x.index);
        if (x.state != y.state || x.unplug_requested != y.unplug_requested ||
            x.session_pos != y.session_pos || !x.device_id != !y.device_id ||
            (x.device_id && strcmp(x.device_id, y.device_id)))
            return violate(c,
                           "after switchover: connector 0x%08x differs: source %s%s session "
                           "%u device %s, destination %s%s session %u device %s",
                           x.index, ferry_connector_state_name(x.state),
                           x.unplug_requested ? " unplug-requested" : "", x.session_pos,
                           x.device_id ? x.device_id : "-", ferry_connector_state_name(y.state),
                           y.unplug_requested ? " unplug-requested" : "", y.session_pos,
                           y.device_id ? y.device_id : "-");
    }
    FerryInventory *ia = ferry_machine_inventory(a), *ib = ferry_machine_inventory(b);
    char *report = NULL;
    int mismatches = ia && ib ? ferry_inventory_compare(ia, ib, &report) : -1;
    ferry_inventory_free(ia);
    ferry_inventory_free(ib);
    if (mismatches) {
        violate(c, "after switchover: devices differ: %s", report ? report : "out of memory");
        free(report);
        return false;
    }
    size_t na = ferry_machine_event_count(a), nb = ferry_machine_event_count(b);
    for (size_t i = 0; i < na || i < nb; i++) {
        FerryEventInfo x = {0}, y = {0};
        bool hx = i < na && ferry_machine_event_at(a, i, &x) == 0;
        bool hy = i < nb && ferry_machine_event_at(b, i, &y) == 0;
        if (hx != hy || x.action != y.action || x.index != y.index) {
            char ex[48] = "nothing", ey[48] = "nothing";
            if (hx)
                snprintf(ex, sizeof(ex), "%s 0x%08x",
                         x.action == FERRY_HP_ACTION_REMOVE ? "remove" : "add", x.index);
            if (hy)
                snprintf(ey, sizeof(ey), "%s 0x%08x",
                         y.action == FERRY_HP_ACTION_REMOVE ? "remove" : "add", y.index);
            return violate(c,
                           "after switchover: event queues differ at position %zu: source "
                           "%s, destination %s (source %zu event(s), destination %zu)",
                           i, ex, ey, na, nb);
        }
    }
    if (ferry_machine_guest_ready(a) != ferry_machine_guest_ready(b))
        return violate(c, "after switchover: guest readiness differs");
    return true;
}

/* The source's devices other than the boot vCPU as -device option strings (what management
 * replays on the destination). Returns the count. */
static size_t device_options(const FerryMachine *src, char opts[][128], size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < ferry_machine_device_count(src) && n < max; i++) {
        FerryDeviceInfo di;
        ferry_machine_device_info(src, i, &di);
        if (di.connector == FERRY_CONN_INDEX(FERRY_CONN_CPU, 0))
            continue; /* boot vCPU: part of both machines' configuration */
        int len = snprintf(opts[n], sizeof(opts[n]), "%s,id=%s", di.type->driver, di.id);
        for (size_t p = 0; di.type->params[p].name; p++) {
            char v[32];
            ferry_machine_device_param(src, di.id, di.type->params[p].name, v, sizeof(v), NULL);
            len += snprintf(opts[n] + len, sizeof(opts[n]) - (size_t)len, ",%s=%s",
                            di.type->params[p].name, v);
        }
        n++;
    }
    return n;
}

/* What differs between two machines whose connectors, devices, events and readiness agree. */
static void describe_difference(FerryMachine *a, FerryMachine *b, char *why, size_t len)
{
    if (ferry_machine_irq_level(a) != ferry_machine_irq_level(b)) {
        snprintf(why, len, "the notification line is %s on the source, %s on the destination",
                 ferry_machine_irq_level(a) ? "asserted" : "low",
                 ferry_machine_irq_level(b) ? "asserted" : "low");
        return;
    }
    if (ferry_machine_runstate(a) != ferry_machine_runstate(b)) {
        snprintf(why, len, "run state %s on the source, %s on the destination",
                 ferry_runstate_name(ferry_machine_runstate(a)),
                 ferry_runstate_name(ferry_machine_runstate(b)));
        return;
    }
    /* register reads have no side effect */
    for (uint16_t off = FERRY_HP_REG_STATUS; off < FERRY_HP_WINDOW + FERRY_HP_WINDOW_SIZE;
         off += 4) {
        uint32_t x = ferry_hotplug_io_read(a, off, 4), y = ferry_hotplug_io_read(b, off, 4);
        if (x != y) {
            snprintf(why, len,
                     "hotplug register 0x%02x is 0x%08x on the source, 0x%08x on the "
                     "destination",
                     off, x, y);
            return;
        }
    }
    for (size_t i = 0; i < ferry_machine_device_count(a); i++) {
        FerryDeviceInfo x, y;
        ferry_machine_device_info(a, i, &x);
        if (ferry_machine_device_info(b, i, &y) == 0 && strcmp(x.parent, y.parent)) {
            snprintf(why, len, "device '%s' sits under %s on the source, %s on the destination",
                     x.id, x.parent, y.parent);
            return;
        }
    }
    snprintf(why, len, "the machines differ (ferry_machine_equal) in a way the host views miss");
}

/* Builds the destination as `variant` says, from the source's device list. */
static FerryMachine *build_destination(Ctx *c, const FerryMachine *src, uint32_t variant,
                                       FerryError *err)
{
    char opts[MAX_SLOTS][128];
    const char *argv[MAX_SLOTS];
    size_t n = device_options(src, opts, MAX_SLOTS);
    for (size_t i = 0; i < n; i++)
        argv[i] = opts[i];
    if (variant == FERRY_EXPLORE_DST_CMDLINE) {
        FerryMachineConfig mc = {.type = c->cfg.machine_type,
                                 .cpu_slots = 1 + c->cfg.cpu_slots,
                                 .boot_cpus = 1,
                                 .mem_slots = c->cfg.mem_slots ? c->cfg.mem_slots : 1,
                                 .card_slots = c->cfg.slots,
                                 .incoming = true,
                                 .devices = argv,
                                 .ndevices = n};
        FerryMachine *d = ferry_machine_new(&mc, err);
        if (d)
            ferry_machine_set_policy(d, &c->cfg.policy);
        return d;
    }
    FerryMachine *d = machine_new(c, true, err);
    if (!d)
        return NULL;
    FerryMachinePolicy plug = c->cfg.policy;
    if (variant == FERRY_EXPLORE_DST_STALE)
        plug.inmigrate_hotplug = true; /* leftovers of a hotplug-path plug (S12) */
    ferry_machine_set_policy(d, &plug);
    for (size_t i = 0; i < n; i++)
        if (ferry_machine_device_add_opts(d, argv[i], err) < 0) {
            ferry_machine_free(d);
            return NULL;
        }
    ferry_machine_set_policy(d, &c->cfg.policy);
    return d;
}

/* Stream the source's device state into the destination as the migration layer does:
 * handshake, prepare, records, verify, finish. With `cut`, the destination receives only the
 * first half of the stream (the connection dropped). */
static int stream_state(FerryMachine *src, FerryMachine *dst, bool cut, FerryError *err)
{
    int rc = -ENOMEM;
    FerryInventory *is = ferry_machine_inventory(src), *id = ferry_machine_inventory(dst);
    FerryRegistry *rs = NULL, *rd = NULL;
    FerryIO *w = NULL, *r = NULL;
    FerryStreamWriter *sw = NULL;
    FerryStreamReader *sr = NULL;
    if (!is || !id)
        goto out;
    if ((rc = ferry_inventory_check(is, id, err)) < 0)
        goto out;
    rc = -ENOMEM;
    if (!(rs = ferry_machine_registry(src, err)) || !(w = ferry_io_mem_writer()))
        goto out;
    if (!(sw = ferry_stream_writer_new(w, ferry_machine_type(src)->name, err)) ||
        (rc = ferry_stream_write_registry(sw, rs, err)) < 0 ||
        (rc = ferry_stream_write_end(sw, err)) < 0)
        goto out;
    size_t len;
    const uint8_t *data = ferry_io_mem_data(w, &len);
    if (cut)
        len /= 2;
    ferry_machine_incoming_prepare(dst);
    rc = -ENOMEM;
    if (!(rd = ferry_machine_registry(dst, err)) || !(r = ferry_io_mem_reader(data, len)))
        goto out;
    if (!(sr = ferry_stream_reader_new(r, err)) ||
        (rc = ferry_stream_read_registry(sr, rd, NULL, err)) < 0)
        goto out;
    rc = ferry_machine_incoming_finish(dst, err);
out:
    if (rc == -ENOMEM && err && !err->msg[0])
        ferry_error_set(err, rc, "out of memory");
    ferry_stream_reader_free(sr);
    ferry_stream_writer_free(sw);
    ferry_io_destroy(r);
    ferry_io_destroy(w);
    ferry_registry_free(rs);
    ferry_registry_free(rd);
    ferry_inventory_free(is);
    ferry_inventory_free(id);
    return rc;
}

/* The switchover on a copy of `w`: the destination must equal the source, then its guest (the
 * source guest's memory, moved) runs to quiescence with every step checked. */
static bool switchover(Ctx *c, const World *w, uint32_t variant)
{
    c->res->switchovers++;
    World src;
    if (world_clone(w, &src) < 0)
        return violate(c, "out of memory");
    FerryError err = {0};
    World dst = {0};
    bool ok = false;
    dst.m = build_destination(c, src.m, variant, &err);
    if (!dst.m) {
        violate(c, "destination (%s) cannot be built: %s", dst_name(variant), err.msg);
        goto out;
    }
    if (stream_state(src.m, dst.m, false, &err) < 0) {
        violate(c, "switchover (%s destination) failed: %s", dst_name(variant), err.msg);
        goto out;
    }
    /* A stopped source (paused; or prelaunch after a reset of a paused VM during the
     * migration) yields a paused destination (-S semantics), which management resumes. The run
     * state itself is not carried (docs/explorer.md §5: prelaunch arrives as paused). */
    bool stopped = ferry_machine_runstate(src.m) != FERRY_RUN_RUNNING;
    ferry_machine_run_event(
        dst.m, stopped ? FERRY_RUN_EV_INCOMING_PAUSE : FERRY_RUN_EV_INCOMING_RUN, NULL);
    ferry_machine_set_migration_active(src.m, false);
    if (!check_same(c, src.m, dst.m))
        goto out;
    /* The whole model state (registers and device paths included) must equal the source's as it
     * would continue without the migration, both resumed: then everything the destination can do
     * next is what that source state can do, which the search explores (docs/explorer.md). */
    if (stopped && (ferry_machine_run_event(src.m, FERRY_RUN_EV_CONT, &err) < 0 ||
                    ferry_machine_run_event(dst.m, FERRY_RUN_EV_CONT, &err) < 0)) {
        violate(c, "the stopped source or its destination cannot be resumed: %s", err.msg);
        goto out;
    }
    if (!ferry_machine_equal(src.m, dst.m)) {
        char why[160];
        describe_difference(src.m, dst.m, why, sizeof(why));
        violate(c, "after switchover: %s", why);
        goto out;
    }
    ferry_machine_run_event(src.m, FERRY_RUN_EV_OUTGOING_DONE, NULL);
    dst.g = ferry_guest_clone(src.g, dst.m);
    if (!dst.g) {
        violate(c, "out of memory");
        goto out;
    }
    if (c->log)
        fprintf(c->log, "    destination (%s) loaded; equal to the source\n", dst_name(variant));
    ok = run_to_quiescence(c, "destination", &dst);
    if (ok && c->log)
        fprintf(c->log, "    destination guest quiescent; guest and host agree\n");
out:
    world_free(&dst);
    world_free(&src);
    return ok;
}

/* DESIGN §5: a migration that fails anywhere leaves the source running with its state untouched,
 * and the destination never runs. `w` becomes the source after the failure. */
static bool cut_stream(Ctx *c, World *w)
{
    c->res->switchovers++;
    FerryMachine *before = ferry_machine_clone(w->m);
    FerryError err = {0};
    FerryMachine *dst = before ? build_destination(c, w->m, FERRY_EXPLORE_DST_ADD, &err) : NULL;
    bool ok = false;
    if (!dst) {
        violate(c, "destination cannot be built: %s", before ? err.msg : "out of memory");
        goto out;
    }
    int rc = stream_state(w->m, dst, true, &err);
    if (rc >= 0) {
        violate(c, "a stream cut in half was accepted by the destination");
        goto out;
    }
    if (!err.msg[0]) {
        violate(c, "a cut stream failed (%d) without an error message", rc);
        goto out;
    }
    if (ferry_machine_run_event(dst, FERRY_RUN_EV_INCOMING_FAIL, &err) < 0 ||
        ferry_machine_runstate(dst) == FERRY_RUN_RUNNING) {
        violate(c, "the destination of a failed migration can run");
        goto out;
    }
    if (c->log)
        fprintf(c->log, "    destination refused the stream: %s\n", err.msg);
    ferry_machine_set_migration_active(w->m, false);
    ferry_machine_set_migration_active(before, false);
    if (!ferry_machine_equal(before, w->m)) {
        violate(c, "a failed migration changed the source");
        goto out;
    }
    ok = true;
out:
    ferry_machine_free(dst);
    ferry_machine_free(before);
    return ok;
}

/* ---- applying one action ---- */

typedef enum Outcome {
    OUT_NEW,      /* a new source state (in *w) */
    OUT_DISABLED, /* not applicable here (e.g. guest idle): no transition */
    OUT_REFUSED,  /* the model refused it with an error; the state is unchanged */
    OUT_TERMINAL, /* switchover done (checked); no successor */
    OUT_VIOLATION,
} Outcome;

static Outcome refused(Ctx *c, const World *before, const World *after, const char *what, int rc,
                       const FerryError *err)
{
    if (rc >= 0)
        return OUT_NEW;
    c->res->refused++;
    if (!err->msg[0]) {
        violate(c, "%s refused (%d) without an error message", what, rc);
        return OUT_VIOLATION;
    }
    if (!ferry_machine_equal(before->m, after->m)) {
        violate(c, "%s refused (%s) but the machine changed", what, err->msg);
        return OUT_VIOLATION;
    }
    if (c->log)
        fprintf(c->log, "    refused: %s\n", err->msg);
    return OUT_REFUSED;
}

/* Applies `a` to `w` in place (w is a private copy). */
static Outcome apply(Ctx *c, World *w, const World *orig, Action a)
{
    FerryError err = {0};
    FerryRunState run = ferry_machine_runstate(w->m);
    bool migrating = ferry_machine_migration_active(w->m);
    char what[64];
    act_format(a, what, sizeof(what));
    int rc;
    switch (a.kind) {
    case ACT_CONT:
        if (run != FERRY_RUN_PRELAUNCH && run != FERRY_RUN_PAUSED)
            return OUT_DISABLED;
        rc = ferry_machine_run_event(w->m, FERRY_RUN_EV_CONT, &err);
        if (rc < 0)
            return violate(c, "cont from %s failed: %s", ferry_runstate_name(run), err.msg),
                   OUT_VIOLATION;
        return OUT_NEW;
    case ACT_STOP:
        if (run != FERRY_RUN_RUNNING)
            return OUT_DISABLED;
        rc = ferry_machine_run_event(w->m, FERRY_RUN_EV_STOP, &err);
        if (rc < 0)
            return violate(c, "stop failed: %s", err.msg), OUT_VIOLATION;
        return OUT_NEW;
    case ACT_ADD: {
        char opts[64], id[16];
        target_id(a.arg, id, sizeof(id));
        target_opts(a.arg, opts, sizeof(opts));
        rc = ferry_machine_device_add_opts(w->m, opts, &err);
        if (rc == 0 && migrating)
            return violate(c, "device_add '%s' accepted during an outgoing migration (S10)", id),
                   OUT_VIOLATION;
        return refused(c, orig, w, what, rc, &err);
    }
    case ACT_DEL: {
        char id[16];
        target_id(a.arg, id, sizeof(id));
        uint32_t before = targets_present(c, w->m);
        rc = ferry_machine_device_del(w->m, id, &err);
        if (rc == 0 && migrating)
            return violate(c, "device_del '%s' accepted during an outgoing migration (S10)", id),
                   OUT_VIOLATION;
        Outcome o = refused(c, orig, w, what, rc, &err);
        if (o == OUT_NEW && !check_reusable(c, "source", w->m, before))
            return OUT_VIOLATION;
        return o;
    }
    case ACT_GUEST: {
        if (run != FERRY_RUN_RUNNING)
            return OUT_DISABLED;
        bool did;
        if (!guest_step(c, "source", w, &did))
            return OUT_VIOLATION;
        return did ? OUT_NEW : OUT_DISABLED;
    }
    case ACT_RESET:
        if (run != FERRY_RUN_RUNNING && run != FERRY_RUN_PAUSED)
            return OUT_DISABLED; /* a paused VM that is reset goes back to prelaunch */
        if (ferry_machine_run_event(w->m, FERRY_RUN_EV_RESET, &err) < 0)
            return violate(c, "system_reset failed: %s", err.msg), OUT_VIOLATION;
        ferry_guest_reboot(w->g);
        ferry_guest_log_clear(w->g);
        return OUT_NEW;
    case ACT_MIGRATE:
        if ((run != FERRY_RUN_RUNNING && run != FERRY_RUN_PAUSED) || migrating)
            return OUT_DISABLED;
        ferry_machine_set_migration_active(w->m, true);
        return OUT_NEW;
    case ACT_CANCEL:
        if (!migrating)
            return OUT_DISABLED;
        ferry_machine_set_migration_active(w->m, false);
        return OUT_NEW;
    case ACT_CUT:
        if (!migrating)
            return OUT_DISABLED;
        return cut_stream(c, w) ? OUT_NEW : OUT_VIOLATION;
    case ACT_SWITCHOVER:
        if (!migrating || !(c->cfg.destinations & a.arg))
            return OUT_DISABLED;
        return switchover(c, w, a.arg) ? OUT_TERMINAL : OUT_VIOLATION;
    default:
        return OUT_DISABLED;
    }
}

static size_t all_actions(const Ctx *c, Action *out)
{
    size_t n = 0;
    out[n++] = (Action){ACT_CONT, 0};
    out[n++] = (Action){ACT_STOP, 0};
    for (uint32_t i = 0; i < c->ntargets; i++)
        out[n++] = (Action){ACT_ADD, c->targets[i]};
    for (uint32_t i = 0; i < c->ntargets; i++)
        out[n++] = (Action){ACT_DEL, c->targets[i]};
    out[n++] = (Action){ACT_GUEST, 0};
    out[n++] = (Action){ACT_RESET, 0};
    out[n++] = (Action){ACT_MIGRATE, 0};
    out[n++] = (Action){ACT_CANCEL, 0};
    out[n++] = (Action){ACT_CUT, 0};
    for (uint32_t v = FERRY_EXPLORE_DST_CMDLINE; v <= FERRY_EXPLORE_DST_STALE; v <<= 1)
        out[n++] = (Action){ACT_SWITCHOVER, v};
    return n;
}
#define MAX_ACTIONS (9 + 2 * MAX_TARGETS + 3)

/* Depth cost of an action: guest steps are free by default, so a depth bounds what the
 * environment does while the guest may be anywhere in its protocol (the guest is finite). */
static uint32_t cost(const Ctx *c, Action a)
{
    return a.kind == ACT_GUEST && !c->cfg.count_guest ? 0 : 1;
}

/* One transition from `w`: copy, apply, and check the transition. The state's own invariant
 * ("eventually") is checked by the caller, once per distinct state. */
static Outcome step(Ctx *c, const World *w, Action a, World *next)
{
    c->res->transitions++;
    if (world_clone(w, next) < 0) {
        violate(c, "out of memory");
        return OUT_VIOLATION;
    }
    Outcome o = apply(c, next, w, a);
    if (o != OUT_NEW)
        world_free(next);
    return o;
}

/* ---- visited set: open addressing on 64-bit state hashes, with the depth first reached ---- */

typedef struct Visited {
    uint64_t *keys;
    uint8_t *depth;
    size_t cap, len;
} Visited;

static int visited_init(Visited *v)
{
    v->cap = 1 << 16;
    v->len = 0;
    v->keys = calloc(v->cap, sizeof(*v->keys));
    v->depth = calloc(v->cap, 1);
    return v->keys && v->depth ? 0 : -ENOMEM;
}

static void visited_fini(Visited *v)
{
    free(v->keys);
    free(v->depth);
}

static uint8_t *visited_slot(Visited *v, uint64_t key)
{
    size_t i = (size_t)(key * 0x9e3779b97f4a7c15ull) & (v->cap - 1);
    while (v->keys[i] && v->keys[i] != key)
        i = (i + 1) & (v->cap - 1);
    v->keys[i] = key; /* caller fills the depth when new */
    return &v->depth[i];
}

/* Returns 2 if `key` is new, 1 if now reached at a smaller depth (recorded), 0 if already seen
 * at that depth or less, negative on allocation failure. */
static int visited_add(Visited *v, uint64_t key, uint32_t depth)
{
    if ((v->len + 1) * 4 > v->cap * 3) {
        Visited n = {calloc(v->cap * 2, sizeof(uint64_t)), calloc(v->cap * 2, 1), v->cap * 2,
                     v->len};
        if (!n.keys || !n.depth) {
            visited_fini(&n);
            return -ENOMEM;
        }
        for (size_t i = 0; i < v->cap; i++)
            if (v->keys[i])
                *visited_slot(&n, v->keys[i]) = v->depth[i];
        visited_fini(v);
        *v = n;
    }
    size_t i = (size_t)(key * 0x9e3779b97f4a7c15ull) & (v->cap - 1);
    while (v->keys[i] && v->keys[i] != key)
        i = (i + 1) & (v->cap - 1);
    if (!v->keys[i]) {
        v->keys[i] = key;
        v->depth[i] = (uint8_t)depth;
        v->len++;
        return 2;
    }
    if (depth < v->depth[i]) {
        v->depth[i] = (uint8_t)depth;
        return 1;
    }
    return 0;
}

/* ---- traces ---- */

typedef struct Node {
    uint32_t parent; /* UINT32_MAX for the root */
    Action act;
} Node;

static void trace_append(FerryExploreResult *res, Action a)
{
    char buf[48];
    act_format(a, buf, sizeof(buf));
    size_t len = strlen(res->trace);
    snprintf(res->trace + len, sizeof(res->trace) - len, "%s%s", len ? "; " : "", buf);
    res->trace_len++;
}

static void record_violation(Ctx *c, const Action *path, uint32_t n)
{
    FerryExploreResult *res = c->res;
    res->violation = true;
    snprintf(res->message, sizeof(res->message), "%s", c->msg);
    res->trace[0] = '\0';
    res->trace_len = 0;
    for (uint32_t i = 0; i < n; i++)
        trace_append(res, path[i]);
}

static int ctx_init(Ctx *c, const FerryExploreConfig *cfg, FerryExploreResult *res, FILE *log,
                    FerryError *err)
{
    memset(c, 0, sizeof(*c));
    memset(res, 0, sizeof(*res));
    c->cfg = cfg ? *cfg : (FerryExploreConfig){0};
    c->res = res;
    c->log = log;
    if (!c->cfg.slots)
        c->cfg.slots = 2;
    if (!c->cfg.depth)
        c->cfg.depth = 8;
    if (!c->cfg.destinations)
        c->cfg.destinations = FERRY_EXPLORE_DST_ALL;
    if (c->cfg.slots > MAX_SLOTS)
        return ferry_error_set(err, -EINVAL, "--slots %u: at most %u card slots", c->cfg.slots,
                               MAX_SLOTS);
    if (c->cfg.cpu_slots > MAX_KIND_SLOTS || c->cfg.mem_slots > MAX_KIND_SLOTS)
        return ferry_error_set(err, -EINVAL, "--cpu-slots %u --mem-slots %u: at most %u each",
                               c->cfg.cpu_slots, c->cfg.mem_slots, MAX_KIND_SLOTS);
    for (uint32_t s = 0; s < c->cfg.slots; s++)
        c->targets[c->ntargets++] = TARGET(FERRY_CONN_SLOT, s);
    for (uint32_t s = 1; s <= c->cfg.cpu_slots; s++)
        c->targets[c->ntargets++] = TARGET(FERRY_CONN_CPU, s);
    for (uint32_t s = 0; s < c->cfg.mem_slots; s++)
        c->targets[c->ntargets++] = TARGET(FERRY_CONN_MEM, s);
    if (c->cfg.depth > 200)
        return ferry_error_set(err, -EINVAL, "--depth %u: at most 200", c->cfg.depth);
    if (c->cfg.destinations & ~FERRY_EXPLORE_DST_ALL)
        return ferry_error_set(err, -EINVAL, "unknown destination variant bits 0x%x",
                               c->cfg.destinations);
    return 0;
}

static int world_init(Ctx *c, World *w, FerryError *err)
{
    w->m = machine_new(c, false, err);
    if (!w->m)
        return err->code ? err->code : -ENOMEM;
    w->g = ferry_guest_new(w->m);
    if (!w->g) {
        ferry_machine_free(w->m);
        return ferry_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- BFS ---- */

typedef struct Entry {
    World w;
    uint32_t node;
    uint64_t key;
} Entry;

typedef struct Level {
    Entry *e;
    size_t n, cap;
} Level;

static int level_push(Level *l, Entry e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        Entry *ne = realloc(l->e, cap * sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        l->e = ne;
        l->cap = cap;
    }
    l->e[l->n++] = e;
    return 0;
}

static void level_free(Level *l, size_t from)
{
    for (size_t i = from; i < l->n; i++)
        world_free(&l->e[i].w);
    free(l->e);
    *l = (Level){0};
}

static uint32_t visited_depth(const Visited *v, uint64_t key)
{
    size_t i = (size_t)(key * 0x9e3779b97f4a7c15ull) & (v->cap - 1);
    while (v->keys[i] && v->keys[i] != key)
        i = (i + 1) & (v->cap - 1);
    return v->keys[i] ? v->depth[i] : UINT32_MAX;
}

/* Level-synchronous 0-1 BFS: a free action (guest step) appends to the level being expanded, a
 * costly one to the next, so the first violation found has the fewest costly actions. */
static int bfs(Ctx *c, const World *root, FerryError *err)
{
    Visited vis;
    Node *nodes = NULL;
    size_t nnodes = 0, capnodes = 1024;
    Level cur = {0}, nxt = {0};
    size_t i = 0;
    int rc = -ENOMEM;
    double t0 = now();
    if (visited_init(&vis) < 0 || !(nodes = malloc(capnodes * sizeof(*nodes))))
        goto out;
    Action acts[MAX_ACTIONS];
    size_t nacts = all_actions(c, acts);

    nodes[nnodes++] = (Node){UINT32_MAX, {0, 0}};
    Entry root_entry = {.node = 0, .key = world_hash(root)};
    if (world_clone(root, &root_entry.w) < 0)
        goto out;
    if (level_push(&cur, root_entry) < 0) {
        world_free(&root_entry.w);
        goto out;
    }
    visited_add(&vis, root_entry.key, 0);
    c->res->states = 1;
    if (!check_eventually(c, root)) {
        record_violation(c, NULL, 0);
        rc = 0;
        goto out;
    }

    for (uint32_t d = 0; d <= c->cfg.depth && cur.n; d++) {
        for (i = 0; i < cur.n && !c->violated; i++) {
            Entry e = cur.e[i]; /* cur may grow (and move) while e is expanded */
            cur.e[i].w = (World){0};
            if (visited_depth(&vis, e.key) < d) {
                world_free(&e.w); /* reached at a lower depth since it was queued */
                continue;
            }
            for (size_t k = 0; k < nacts && !c->violated; k++) {
                uint32_t nd = d + cost(c, acts[k]);
                if (nd > c->cfg.depth)
                    continue;
                World next;
                Outcome o = step(c, &e.w, acts[k], &next);
                uint64_t key = 0;
                int added = 0;
                if (o == OUT_NEW) {
                    key = world_hash(&next);
                    added = visited_add(&vis, key, nd);
                    if (added == 2 && !check_eventually(c, &next)) {
                        world_free(&next);
                        o = OUT_VIOLATION;
                    }
                }
                if (o == OUT_VIOLATION) {
                    Action path[512];
                    uint32_t n = 0;
                    path[n++] = acts[k];
                    for (uint32_t p = e.node; nodes[p].parent != UINT32_MAX && n < 512;
                         p = nodes[p].parent)
                        path[n++] = nodes[p].act;
                    for (uint32_t a = 0; a < n / 2; a++) {
                        Action t = path[a];
                        path[a] = path[n - 1 - a];
                        path[n - 1 - a] = t;
                    }
                    record_violation(c, path, n);
                    break;
                }
                if (o != OUT_NEW)
                    continue;
                if (added <= 0) {
                    world_free(&next);
                    if (added < 0) {
                        world_free(&e.w);
                        goto out;
                    }
                    continue;
                }
                c->res->states++;
                if (nnodes == capnodes) {
                    Node *nn = realloc(nodes, 2 * capnodes * sizeof(*nodes));
                    if (!nn) {
                        world_free(&next);
                        world_free(&e.w);
                        goto out;
                    }
                    nodes = nn;
                    capnodes *= 2;
                }
                nodes[nnodes] = (Node){e.node, acts[k]};
                Entry ne = {next, (uint32_t)nnodes++, key};
                if (level_push(nd == d ? &cur : &nxt, ne) < 0) {
                    world_free(&next);
                    world_free(&e.w);
                    goto out;
                }
            }
            world_free(&e.w);
        }
        level_free(&cur, 0);
        cur = nxt;
        nxt = (Level){0};
        if (c->violated)
            break;
        c->res->depth = d;
        if (c->cfg.progress)
            fprintf(c->cfg.progress, "depth %u: %llu states, next level %zu, %.2f s\n", d,
                    (unsigned long long)c->res->states, cur.n, now() - t0);
    }
    rc = 0;
out:
    c->res->states = vis.len; /* distinct states */
    if (rc == -ENOMEM)
        ferry_error_set(err, rc, "out of memory after %llu states",
                        (unsigned long long)c->res->states);
    level_free(&cur, 0);
    level_free(&nxt, 0);
    free(nodes);
    visited_fini(&vis);
    return rc;
}

/* ---- DFS ---- */

typedef struct Dfs {
    Ctx *c;
    Visited vis;
    Action acts[MAX_ACTIONS];
    size_t nacts;
    Action path[512];
    bool oom;
} Dfs;

/* `d` is the depth (costly actions) of `w`, `len` the length of the path to it. */
static void dfs_rec(Dfs *s, const World *w, uint32_t d, uint32_t len)
{
    Ctx *c = s->c;
    if (d > c->res->depth)
        c->res->depth = d;
    if (len == sizeof(s->path) / sizeof(s->path[0]))
        return;
    for (size_t k = 0; k < s->nacts && !c->violated && !s->oom; k++) {
        uint32_t nd = d + cost(c, s->acts[k]);
        if (nd > c->cfg.depth)
            continue;
        World next;
        s->path[len] = s->acts[k];
        Outcome o = step(c, w, s->acts[k], &next);
        int added = 0;
        if (o == OUT_NEW) {
            added = visited_add(&s->vis, world_hash(&next), nd);
            if (added == 2 && !check_eventually(c, &next)) {
                world_free(&next);
                o = OUT_VIOLATION;
            }
        }
        if (o == OUT_VIOLATION) {
            record_violation(c, s->path, len + 1);
            return;
        }
        if (o != OUT_NEW)
            continue;
        if (added < 0)
            s->oom = true;
        if (added > 0) {
            c->res->states++;
            dfs_rec(s, &next, nd, len + 1);
        }
        world_free(&next);
    }
}

static int dfs(Ctx *c, const World *root, FerryError *err)
{
    Dfs s = {.c = c};
    if (visited_init(&s.vis) < 0)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    s.nacts = all_actions(c, s.acts);
    visited_add(&s.vis, world_hash(root), 0);
    c->res->states = 1;
    if (!check_eventually(c, root))
        record_violation(c, NULL, 0);
    else
        dfs_rec(&s, root, 0, 0);
    c->res->states = s.vis.len; /* distinct states (DFS may reach one again, shallower) */
    visited_fini(&s.vis);
    if (s.oom)
        return ferry_error_set(err, -ENOMEM, "out of memory after %llu states",
                               (unsigned long long)c->res->states);
    return 0;
}

int ferry_explore_run(const FerryExploreConfig *cfg, FerryExploreResult *res, FerryError *err)
{
    Ctx c;
    int rc = ctx_init(&c, cfg, res, NULL, err);
    if (rc < 0)
        return rc;
    World root;
    if ((rc = world_init(&c, &root, err)) < 0)
        return rc;
    double t0 = now();
    rc = c.cfg.search == FERRY_EXPLORE_DFS ? dfs(&c, &root, err) : bfs(&c, &root, err);
    res->seconds = now() - t0;
    world_free(&root);
    return rc;
}

/* ---- replay ---- */

static int parse_action(const Ctx *c, const char *text, Action *a, FerryError *err)
{
    char name[32] = "", arg[32] = "", arg2[32] = "";
    int n = sscanf(text, "%31s %31s %31s", name, arg, arg2);
    if (n < 1)
        return ferry_error_set(err, -EINVAL, "empty action");
    for (int k = 0; k < ACT__COUNT; k++) {
        if (strcmp(name, act_names[k]))
            continue;
        a->kind = (ActKind)k;
        a->arg = 0;
        if (k == ACT_ADD || k == ACT_DEL) {
            /* "add 1" (card), "add card 1", "add cpu 1", "add mem 0" */
            uint32_t kind = FERRY_CONN_SLOT;
            const char *num = arg;
            if (n == 3) {
                kind = !strcmp(arg, "cpu")    ? FERRY_CONN_CPU
                       : !strcmp(arg, "mem")  ? FERRY_CONN_MEM
                       : !strcmp(arg, "card") ? FERRY_CONN_SLOT
                                              : 0;
                num = arg2;
            }
            char *end = NULL;
            unsigned long s = n >= 2 ? strtoul(num, &end, 10) : 0;
            bool known = false;
            for (uint32_t i = 0; n >= 2 && kind && end && !*end && i < c->ntargets; i++)
                known |= c->targets[i] == TARGET(kind, s);
            if (!known)
                return ferry_error_set(err, -EINVAL,
                                       "'%s': needs a slot below %u, 'cpu N' (1..%u) or 'mem N' "
                                       "(%u slots): see --slots, --cpu-slots, --mem-slots",
                                       text, c->cfg.slots, c->cfg.cpu_slots, c->cfg.mem_slots);
            a->arg = TARGET(kind, s);
        } else if (k == ACT_SWITCHOVER) {
            for (uint32_t v = FERRY_EXPLORE_DST_CMDLINE; v <= FERRY_EXPLORE_DST_STALE; v <<= 1)
                if (n == 2 && !strcmp(arg, dst_name(v)))
                    a->arg = v;
            if (!a->arg)
                return ferry_error_set(err, -EINVAL, "'%s': switchover needs cmdline, add or stale",
                                       text);
        } else if (n >= 2) {
            return ferry_error_set(err, -EINVAL, "'%s': %s takes no argument", text, name);
        }
        return 0;
    }
    return ferry_error_set(err, -EINVAL,
                           "unknown action '%s' (cont, stop, add N, del N, guest, reset, "
                           "migrate, cancel, cut, switchover cmdline|add|stale)",
                           name);
}

int ferry_explore_replay(const FerryExploreConfig *cfg, const char *trace, FILE *log,
                         FerryExploreResult *res, FerryError *err)
{
    Ctx c;
    int rc = ctx_init(&c, cfg, res, log, err);
    if (rc < 0)
        return rc;
    c.cfg.destinations = FERRY_EXPLORE_DST_ALL; /* the trace names its variant */
    char *copy = strdup(trace ? trace : "");
    if (!copy)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    World w;
    if ((rc = world_init(&c, &w, err)) < 0) {
        free(copy);
        return rc;
    }
    Action path[512];
    uint32_t n = 0;
    double t0 = now();
    if (!check_eventually(&c, &w))
        record_violation(&c, path, 0);
    bool comment = false; /* comments run to the end of the line */
    for (char *p = copy; *p; p++) {
        comment = *p == '#' || (comment && *p != '\n');
        if (comment)
            *p = ' ';
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ";\n", &save); tok && !c.violated;
         tok = strtok_r(NULL, ";\n", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t' || tok[len - 1] == '\r'))
            tok[--len] = '\0';
        if (!*tok)
            continue;
        Action a;
        if ((rc = parse_action(&c, tok, &a, err)) < 0)
            goto out;
        if (n == sizeof(path) / sizeof(path[0])) {
            rc = ferry_error_set(err, -E2BIG, "trace longer than %zu actions",
                                 sizeof(path) / sizeof(path[0]));
            goto out;
        }
        path[n++] = a;
        if (log)
            fprintf(log, "%2u. %s\n", n, tok);
        World next;
        Outcome o = step(&c, &w, a, &next);
        if (o == OUT_VIOLATION) {
            record_violation(&c, path, n);
            break;
        }
        if (o == OUT_DISABLED) {
            rc = ferry_error_set(err, -EINVAL, "action %u '%s' is not enabled in this state", n,
                                 tok);
            goto out;
        }
        if (o == OUT_NEW && !check_eventually(&c, &next)) {
            world_free(&next);
            record_violation(&c, path, n);
            break;
        }
        if (o == OUT_NEW) {
            world_free(&w);
            w = next;
            res->states++;
        } else if (o == OUT_TERMINAL) {
            trace_append(res, a);
            if (strtok_r(NULL, ";\n", &save)) {
                rc = ferry_error_set(err, -EINVAL, "actions after the switchover");
                goto out;
            }
            break;
        }
        if (o != OUT_TERMINAL)
            trace_append(res, a);
    }
    res->depth = n;
    rc = 0;
out:
    res->seconds = now() - t0;
    world_free(&w);
    free(copy);
    return rc;
}

/* ---- policies ---- */

typedef struct PolicyName {
    const char *name;
    FerryMachinePolicy p;
} PolicyName;

/* Presets first (the four seeded bad policies), then single switches. */
static const PolicyName policy_names[] = {
    {"list-append", {.events_load_append = true}},
    {"inmigrate-hotplug",
     {.inmigrate_hotplug = true, .keep_dest_connectors = true, .keep_dest_events = true}},
    {"edge", {.edge_notify = true}},
    {"conn-subsection", {.conn_state_subsection = true, .keep_dest_connectors = true}},
    {"inmigrate-hotplug-path", {.inmigrate_hotplug = true}},
    {"conn-subsection-only", {.conn_state_subsection = true}},
    {"keep-dest-connectors", {.keep_dest_connectors = true}},
    {"keep-dest-events", {.keep_dest_events = true}},
};

static void policy_or(FerryMachinePolicy *d, const FerryMachinePolicy *s)
{
    d->events_load_append |= s->events_load_append;
    d->inmigrate_hotplug |= s->inmigrate_hotplug;
    d->edge_notify |= s->edge_notify;
    d->conn_state_subsection |= s->conn_state_subsection;
    d->keep_dest_connectors |= s->keep_dest_connectors;
    d->keep_dest_events |= s->keep_dest_events;
}

int ferry_explore_policy_parse(const char *text, FerryMachinePolicy *p, FerryError *err)
{
    *p = (FerryMachinePolicy){0};
    if (!text || !strcmp(text, "real"))
        return 0;
    char buf[256];
    if (strlen(text) >= sizeof(buf))
        return ferry_error_set(err, -EINVAL, "--policy: too long");
    strcpy(buf, text);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t k = 0, n = sizeof(policy_names) / sizeof(policy_names[0]);
        while (k < n && strcmp(tok, policy_names[k].name))
            k++;
        if (k == n)
            return ferry_error_set(err, -EINVAL,
                                   "--policy: unknown '%s' (real, list-append, inmigrate-hotplug, "
                                   "edge, conn-subsection, inmigrate-hotplug-path, "
                                   "conn-subsection-only, keep-dest-connectors, keep-dest-events)",
                                   tok);
        policy_or(p, &policy_names[k].p);
    }
    return 0;
}

char *ferry_explore_policy_format(const FerryMachinePolicy *p, char *buf, size_t len)
{
    /* single switches only, so the text parses back to the same policy */
    const struct {
        bool on;
        const char *name;
    } sw[] = {
        {p->events_load_append, "list-append"},
        {p->inmigrate_hotplug, "inmigrate-hotplug-path"},
        {p->edge_notify, "edge"},
        {p->conn_state_subsection, "conn-subsection-only"},
        {p->keep_dest_connectors, "keep-dest-connectors"},
        {p->keep_dest_events, "keep-dest-events"},
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(sw) / sizeof(sw[0]); i++)
        if (sw[i].on)
            used += snprintf(buf + used, used < len ? len - used : 0, "%s%s", used ? "," : "",
                             sw[i].name);
    if (!used)
        snprintf(buf, len, "real");
    return buf;
}
