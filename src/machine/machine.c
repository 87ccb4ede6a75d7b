/* The machine: devices on connectors, device_add/device_del semantics (DESIGN §4 table), reset,
 * run states and the notification line. Pure logic; the VMM and migration drive it. */
#include "ferry/machine/hotplug.h"
#include "machine-int.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SLOTS    4
#define MEM_HOTPLUG_BASE (4ull << 30)

/* How device_add/device_del act in each run state: a table, like the run states. */
typedef enum PlugMode { PLUG_COLD, PLUG_HOT } PlugMode;
static const PlugMode plug_mode[FERRY_RUN__COUNT] = {
    [FERRY_RUN_PRELAUNCH] = PLUG_COLD, /* S1: identical to -device */
    [FERRY_RUN_INMIGRATE] = PLUG_COLD, /* S2: the stream brings the state (QEMU 94fd9cbaa3) */
    [FERRY_RUN_RUNNING] = PLUG_HOT,
    [FERRY_RUN_PAUSED] = PLUG_HOT,
    [FERRY_RUN_POSTMIGRATE] = PLUG_HOT,
    [FERRY_RUN_SHUTDOWN] = PLUG_COLD, /* powered off: the next boot sees it as present */
};

static const char *const kind_parent[4] = {
    [FERRY_CONN_MEM] = "/machine/memory",
    [FERRY_CONN_SLOT] = "/machine/slots",
};

const char *ferry_connector_state_name(uint32_t state)
{
    switch (state) {
    case FERRY_CONN_UNUSABLE:
        return "unusable";
    case FERRY_CONN_AVAILABLE:
        return "available";
    case FERRY_CONN_UNISOLATE:
        return "unisolate";
    case FERRY_CONN_CONFIGURED:
        return "configured";
    default:
        return "invalid";
    }
}

const char *ferry_connector_kind_name(uint32_t kind)
{
    switch (kind) {
    case FERRY_CONN_CPU:
        return "cpu";
    case FERRY_CONN_MEM:
        return "mem";
    case FERRY_CONN_SLOT:
        return "slot";
    default:
        return "invalid";
    }
}

FerryMachine *ferry_machine_new(const FerryMachineConfig *cfg, FerryError *err)
{
    FerryMachineConfig c = cfg ? *cfg : (FerryMachineConfig){0};
    const FerryMachineType *t =
        c.type ? ferry_machine_type_find(c.type) : ferry_machine_type_default();
    if (!t) {
        ferry_error_set(err, -EINVAL, "unknown machine type '%s'", c.type);
        return NULL;
    }
    uint32_t n[4] = {0, c.cpu_slots ? c.cpu_slots : DEFAULT_SLOTS,
                     c.mem_slots ? c.mem_slots : DEFAULT_SLOTS,
                     c.card_slots ? c.card_slots : DEFAULT_SLOTS};
    for (int k = 1; k < 4; k++)
        if (n[k] > FERRY_MACHINE_MAX_SLOTS) {
            ferry_error_set(err, -EINVAL, "%u %s slots requested, at most %u", n[k],
                            ferry_connector_kind_name(k), FERRY_MACHINE_MAX_SLOTS);
            return NULL;
        }
    if (c.boot_cpus > n[FERRY_CONN_CPU]) {
        ferry_error_set(err, -EINVAL, "%u boot vCPUs do not fit in %u cpu slots", c.boot_cpus,
                        n[FERRY_CONN_CPU]);
        return NULL;
    }
    FerryMachine *m = calloc(1, sizeof(*m));
    if (!m)
        goto err_nomem;
    m->type = t;
    m->run = c.incoming ? FERRY_RUN_INMIGRATE : FERRY_RUN_PRELAUNCH;
    memcpy(m->nslots, n, sizeof(n));
    m->nconn = n[1] + n[2] + n[3];
    m->conn = calloc(m->nconn, sizeof(*m->conn));
    if (!m->conn)
        goto err_free_machine;
    uint32_t i = 0;
    for (uint32_t k = 1; k < 4; k++)
        for (uint32_t s = 0; s < n[k]; s++, i++) {
            m->conn[i].kind = k;
            m->conn[i].slot = s;
            m->conn[i].index = FERRY_CONN_INDEX(k, s);
            m->conn[i].state = FERRY_CONN_UNUSABLE;
        }
    ferry_list_init(&m->hp.events);
    ferry_list_init(&m->stash);
    /* Boot vCPUs are command-line devices: coldplugged whatever the start state. */
    for (uint32_t b = 0; b < c.boot_cpus; b++) {
        char id[16], slot[16];
        snprintf(id, sizeof(id), "cpu%u", b);
        snprintf(slot, sizeof(slot), "%u", b);
        FerryParam p = {"slot", slot};
        FerryRunState run = m->run;
        m->run = FERRY_RUN_PRELAUNCH;
        int rc = ferry_machine_device_add(m, "cpu", id, &p, 1, err);
        m->run = run;
        if (rc < 0) {
            ferry_machine_free(m);
            return NULL;
        }
    }
    for (size_t d = 0; d < c.ndevices; d++) {
        FerryRunState run = m->run;
        m->run = FERRY_RUN_PRELAUNCH;
        int rc = ferry_machine_device_add_opts(m, c.devices[d], err);
        m->run = run;
        if (rc < 0) {
            ferry_machine_free(m);
            return NULL;
        }
    }
    return m;

err_free_machine:
    free(m);
err_nomem:
    ferry_error_set(err, -ENOMEM, "out of memory creating the machine");
    return NULL;
}

void ferry_machine_free(FerryMachine *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->nconn; i++)
        free(m->conn[i].dev);
    ferry_machine_purge_events(m, UINT32_MAX);
    FerryLink *l;
    while ((l = ferry_list_pop_head(&m->stash)))
        free(ferry_container_of(l, FerryHotplugEvent, link));
    free(m->conn);
    free(m);
}

const FerryMachineType *ferry_machine_type(const FerryMachine *m)
{
    return m->type;
}
FerryRunState ferry_machine_runstate(const FerryMachine *m)
{
    return m->run;
}
void ferry_machine_set_migration_active(FerryMachine *m, bool active)
{
    m->migration_active = active;
}
bool ferry_machine_migration_active(const FerryMachine *m)
{
    return m->migration_active;
}
bool ferry_machine_guest_ready(const FerryMachine *m)
{
    return m->hp.ready;
}

void ferry_machine_set_irq(FerryMachine *m, FerryIrqFn fn, void *opaque)
{
    m->irq = fn;
    m->irq_opaque = opaque;
}

void ferry_machine_set_device_deleted(FerryMachine *m, FerryDeviceDeletedFn fn, void *opaque)
{
    m->deleted = fn;
    m->deleted_opaque = opaque;
}

void ferry_machine_set_policy(FerryMachine *m, const FerryMachinePolicy *p)
{
    m->policy = p ? *p : (FerryMachinePolicy){0};
    ferry_machine_update_line(m);
}

FerryMachinePolicy ferry_machine_policy(const FerryMachine *m)
{
    return m->policy;
}

bool ferry_machine_irq_level(const FerryMachine *m)
{
    if (m->policy.edge_notify)
        return m->edge_latch; /* seeded bad policy: a pulse, not a level */
    return m->hp.ready && m->hp.events.len > 0;
}

/* Level-triggered: recomputed after every change of the queue or readiness, so a missed pulse,
 * a reset or a migration can never lose an event (S4, S7, S8). */
void ferry_machine_update_line(FerryMachine *m)
{
    if (m->hp.events.len == 0)
        m->edge_latch = false; /* edge_notify: the guest's handler drained the queue */
    bool level = ferry_machine_irq_level(m);
    if (level != m->line) {
        m->line = level;
        if (m->irq)
            m->irq(m->irq_opaque, level);
    }
}

FerryConnector *ferry_machine_conn_by_index(FerryMachine *m, uint32_t index)
{
    uint32_t kind = FERRY_CONN_INDEX_KIND(index), slot = FERRY_CONN_INDEX_SLOT(index);
    if (kind < 1 || kind > 3 || slot >= m->nslots[kind])
        return NULL;
    uint32_t pos = slot;
    for (uint32_t k = 1; k < kind; k++)
        pos += m->nslots[k];
    assert(m->conn[pos].index == index);
    return &m->conn[pos];
}

void ferry_machine_device_path(const FerryDevice *d, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", d->parent, d->id);
}

void ferry_machine_purge_events(FerryMachine *m, uint32_t index)
{
    FerryLink *l = m->hp.events.head;
    while (l) {
        FerryLink *next = l->next;
        FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        if (index == UINT32_MAX || e->index == index) {
            ferry_list_remove(&m->hp.events, l);
            free(e);
        }
        l = next;
    }
}

static int queue_event(FerryMachine *m, uint32_t action, const FerryConnector *c)
{
    FerryHotplugEvent *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->action = action;
    e->kind = c->kind;
    e->index = c->index;
    ferry_list_push_tail(&m->hp.events, &e->link);
    if (m->policy.edge_notify && m->hp.ready)
        m->edge_latch = true; /* the pulse reaches only a ready guest */
    ferry_machine_update_line(m);
    return 0;
}

void ferry_machine_conn_reset(FerryMachine *m, FerryConnector *c)
{
    (void)m;
    c->state = c->dev ? FERRY_CONN_CONFIGURED : FERRY_CONN_UNUSABLE;
    c->unplug_requested = false;
    c->cc_pos = 0;
}

void ferry_machine_finalize_unplug(FerryMachine *m, FerryConnector *c)
{
    assert(c->dev);
    char id[FERRY_DEVICE_ID_MAX], path[FERRY_PATH_MAX + FERRY_DEVICE_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", c->dev->id);
    ferry_machine_device_path(c->dev, path, sizeof(path));
    free(c->dev);
    c->dev = NULL;
    c->state = FERRY_CONN_UNUSABLE;
    c->unplug_requested = false;
    c->cc_pos = 0;
    /* Events still queued for the slot describe a device that no longer exists. */
    ferry_machine_purge_events(m, c->index);
    ferry_machine_update_line(m);
    if (m->deleted)
        m->deleted(m->deleted_opaque, id, path);
}

void ferry_machine_reset(FerryMachine *m)
{
    for (uint32_t i = 0; i < m->nconn; i++) {
        FerryConnector *c = &m->conn[i];
        if (c->dev && c->unplug_requested)
            ferry_machine_finalize_unplug(m, c); /* the unplug completes now (DESIGN §4) */
        ferry_machine_conn_reset(m, c);
    }
    ferry_machine_purge_events(m, UINT32_MAX);
    FerryList events = m->hp.events;
    memset(&m->hp, 0, sizeof(m->hp));
    m->hp.events = events;
    ferry_machine_update_line(m);
}

void ferry_machine_incoming_prepare(FerryMachine *m)
{
    /* No unplug can be pending here: device_del in inmigrate removes at once. */
    if (!m->policy.keep_dest_connectors)
        for (uint32_t i = 0; i < m->nconn; i++)
            ferry_machine_conn_reset(m, &m->conn[i]);
    if (!m->policy.keep_dest_events && !m->policy.events_load_append)
        ferry_machine_purge_events(m, UINT32_MAX);
    FerryList events = m->hp.events;
    memset(&m->hp, 0, sizeof(m->hp));
    m->hp.events = events;
    ferry_machine_update_line(m);
}

int ferry_machine_run_event(FerryMachine *m, FerryRunEvent ev, FerryError *err)
{
    FerryRunState next;
    if (!ferry_runstate_next(m->run, ev, &next))
        return ferry_error_set(err, -EINVAL, "cannot %s in run state '%s'", ferry_runevent_name(ev),
                               ferry_runstate_name(m->run));
    if (ev == FERRY_RUN_EV_RESET)
        ferry_machine_reset(m);
    m->run = next;
    return 0;
}

/* ---- devices ---- */

static FerryDevice *find_device(const FerryMachine *m, const char *id, FerryConnector **conn)
{
    for (uint32_t i = 0; i < m->nconn; i++)
        if (m->conn[i].dev && !strcmp(m->conn[i].dev->id, id)) {
            if (conn)
                *conn = &m->conn[i];
            return m->conn[i].dev;
        }
    return NULL;
}

bool ferry_machine_has_device(const FerryMachine *m, const char *id)
{
    return find_device(m, id, NULL) != NULL;
}

static int check_id(const char *id, FerryError *err)
{
    if (!id || !*id)
        return ferry_error_set(err, -EINVAL, "device_add: parameter 'id' is required");
    size_t len = strlen(id);
    if (len >= FERRY_DEVICE_ID_MAX)
        return ferry_error_set(err, -EINVAL, "device id '%.16s...' is longer than %d bytes", id,
                               FERRY_DEVICE_ID_MAX - 1);
    if (!isalpha((unsigned char)id[0]))
        return ferry_error_set(err, -EINVAL, "device id '%s' must start with a letter", id);
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '_' && id[i] != '.')
            return ferry_error_set(
                err, -EINVAL, "device id '%s': only letters, digits, '-', '_' and '.' allowed", id);
    return 0;
}

/* Device state derived from the configuration (what a fresh device holds). */
static void device_init_state(FerryDevice *d)
{
    const FerryDeviceType *t = d->type;
    uint32_t slot = (uint32_t)d->params[0];
    switch (t->kind) {
    case FERRY_CONN_CPU:
        d->st.cpu.core_id = slot;
        d->st.cpu.pmu = d->params[1] != 0;
        break;
    case FERRY_CONN_MEM:
        d->st.mem.base = MEM_HOTPLUG_BASE + (uint64_t)slot * FERRY_MEM_BLOCK_SIZE;
        d->st.mem.size = d->params[1];
        d->st.mem.node = (uint32_t)d->params[2];
        break;
    case FERRY_CONN_SLOT:
        d->st.card.slot = slot;
        d->st.card.status = 1; /* enabled */
        d->st.card.ext = d->params[1] != 0;
        d->st.card.ext_status = d->st.card.ext ? 0xe0 : 0;
        break;
    }
}

int ferry_machine_device_add(FerryMachine *m, const char *driver, const char *id,
                             const FerryParam *params, size_t nparams, FerryError *err)
{
    if (m->migration_active)
        return ferry_error_set(err, -EBUSY, "device_add is blocked while migration is active");
    const FerryDeviceType *t = ferry_device_type_find(driver);
    if (!t)
        return ferry_error_set(err, -EINVAL, "device_add: unknown driver '%s'",
                               driver ? driver : "(none)");
    int rc = check_id(id, err);
    if (rc < 0)
        return rc;
    if (find_device(m, id, NULL))
        return ferry_error_set(err, -EEXIST, "duplicate device id '%s'", id);

    FerryDevice d = {.type = t};
    snprintf(d.id, sizeof(d.id), "%s", id);
    snprintf(d.parent, sizeof(d.parent), "%s",
             t->kind == FERRY_CONN_CPU ? m->type->cpu_parent : kind_parent[t->kind]);
    bool given[FERRY_DEVICE_PARAM_MAX] = {false};
    for (int i = 0; t->params[i].name; i++)
        d.params[i] = t->params[i].def;
    for (const FerryCompatProp *cp = m->type->compat; cp->driver; cp++) {
        if (strcmp(cp->driver, t->driver))
            continue;
        int i = ferry_device_type_param_index(t, cp->param);
        assert(i >= 0);
        rc = ferry_param_parse(&t->params[i], id, cp->value, &d.params[i], err);
        assert(rc == 0);
    }
    for (size_t p = 0; p < nparams; p++) {
        int i = ferry_device_type_param_index(t, params[p].name);
        if (i < 0)
            return ferry_error_set(err, -EINVAL, "device '%s': unknown parameter '%s'", id,
                                   params[p].name);
        if (given[i])
            return ferry_error_set(err, -EINVAL, "device '%s': parameter '%s' given twice", id,
                                   params[p].name);
        given[i] = true;
        rc = ferry_param_parse(&t->params[i], id, params[p].value ? params[p].value : "",
                               &d.params[i], err);
        if (rc < 0)
            return rc;
    }
    for (int i = 0; t->params[i].name; i++)
        if (t->params[i].required && !given[i])
            return ferry_error_set(err, -EINVAL, "device '%s': parameter '%s' is required", id,
                                   t->params[i].name);
    uint64_t slot = d.params[0];
    if (slot >= m->nslots[t->kind])
        return ferry_error_set(err, -EINVAL, "device '%s': slot %llu out of range (%u %s slots)",
                               id, (unsigned long long)slot, m->nslots[t->kind], t->driver);
    if (t->kind == FERRY_CONN_MEM && d.params[1] != FERRY_MEM_BLOCK_SIZE)
        return ferry_error_set(err, -EINVAL, "device '%s': memory block size must be 128M", id);
    FerryConnector *c = ferry_machine_conn_by_index(m, FERRY_CONN_INDEX(t->kind, slot));
    if (c->dev)
        return ferry_error_set(err, -EBUSY, "device '%s': %s slot %llu is already used by '%s'", id,
                               ferry_connector_kind_name(t->kind), (unsigned long long)slot,
                               c->dev->id);
    FerryDevice *dev = malloc(sizeof(*dev));
    if (!dev)
        return ferry_error_set(err, -ENOMEM, "device '%s': out of memory", id);
    *dev = d;
    dev->conn = (uint32_t)(c - m->conn);
    device_init_state(dev);
    c->dev = dev;
    c->cc_pos = 0;
    c->unplug_requested = false;
    PlugMode mode = plug_mode[m->run];
    if (m->policy.inmigrate_hotplug && m->run == FERRY_RUN_INMIGRATE)
        mode = PLUG_HOT; /* seeded bad policy (QEMU before 94fd9cbaa3) */
    if (mode == PLUG_COLD) {
        c->state = FERRY_CONN_CONFIGURED; /* as if given on the command line: no event */
        return 0;
    }
    /* Hotplug: attached but unusable until the guest allocates it after the event. */
    c->state = FERRY_CONN_UNUSABLE;
    /* A stale event for this slot (impossible: purged on release) would present it twice. */
    ferry_machine_purge_events(m, c->index);
    rc = queue_event(m, FERRY_HP_ACTION_ADD, c);
    if (rc < 0) {
        c->dev = NULL;
        free(dev);
        return ferry_error_set(err, rc, "device '%s': out of memory", id);
    }
    return 0;
}

int ferry_device_opts_parse(const char *opts, FerryDeviceOpts *o, FerryError *err)
{
    *o = (FerryDeviceOpts){0};
    if (!opts || strlen(opts) >= sizeof(o->buf))
        return ferry_error_set(err, -EINVAL, "device: option string missing or longer than %zu",
                               sizeof(o->buf) - 1);
    strcpy(o->buf, opts);
    char *save = NULL;
    for (char *tok = strtok_r(o->buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!o->driver) {
            if (eq)
                return ferry_error_set(err, -EINVAL,
                                       "device '%s': must start with a driver name (cpu, "
                                       "mem-block, card)",
                                       opts);
            o->driver = tok;
            continue;
        }
        if (!eq)
            return ferry_error_set(err, -EINVAL, "device '%s': '%s' is not name=value", opts, tok);
        *eq = '\0';
        if (!strcmp(tok, "id")) {
            o->id = eq + 1;
            continue;
        }
        if (o->nparams == FERRY_DEVICE_OPTS_MAX)
            return ferry_error_set(err, -EINVAL, "device '%s': more than %d parameters", opts,
                                   FERRY_DEVICE_OPTS_MAX);
        o->params[o->nparams++] = (FerryParam){tok, eq + 1};
    }
    if (!o->driver)
        return ferry_error_set(err, -EINVAL, "device '%s': driver missing", opts);
    return 0;
}

int ferry_machine_device_add_opts(FerryMachine *m, const char *opts, FerryError *err)
{
    FerryDeviceOpts o;
    int r = ferry_device_opts_parse(opts, &o, err);
    return r < 0 ? r : ferry_machine_device_add(m, o.driver, o.id, o.params, o.nparams, err);
}

static bool add_event_queued(const FerryMachine *m, uint32_t index)
{
    FERRY_LIST_FOREACH(&m->hp.events, l)
    {
        const FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        if (e->index == index && e->action == FERRY_HP_ACTION_ADD)
            return true;
    }
    return false;
}

int ferry_machine_device_del(FerryMachine *m, const char *id, FerryError *err)
{
    if (m->migration_active)
        return ferry_error_set(err, -EBUSY, "device_del is blocked while migration is active");
    FerryConnector *c;
    if (!id || !find_device(m, id, &c))
        return ferry_error_set(err, -ENOENT, "device '%s' not found", id ? id : "(none)");
    if (c->unplug_requested)
        return ferry_error_set(err, -EBUSY, "device '%s': unplug already in progress", id);
    if (plug_mode[m->run] == PLUG_COLD ||
        (c->state == FERRY_CONN_UNUSABLE && add_event_queued(m, c->index))) {
        /* No guest to ask (not running), or the guest has not even fetched the add event (it is
         * purged with the device): release now. */
        ferry_machine_finalize_unplug(m, c);
        return 0;
    }
    /* Unusable but the add event was fetched: the guest may be about to allocate. Releasing now
     * would let that stale job allocate a re-added device whose own add event then arrives
     * twice (found by ferry explore). Ask instead: allocation is refused from now on, and the
     * release completes when the guest fetches the remove event (hotplug.c). */
    c->unplug_requested = true;
    int rc = queue_event(m, FERRY_HP_ACTION_REMOVE, c);
    if (rc < 0) {
        c->unplug_requested = false;
        return ferry_error_set(err, rc, "device '%s': out of memory", id);
    }
    return 0;
}

int ferry_machine_device_reparent(FerryMachine *m, const char *id, const char *parent,
                                  FerryError *err)
{
    FerryConnector *c;
    if (!id || !find_device(m, id, &c))
        return ferry_error_set(err, -ENOENT, "device '%s' not found", id ? id : "(none)");
    if (!parent || parent[0] != '/' || strlen(parent) >= FERRY_PATH_MAX)
        return ferry_error_set(err, -EINVAL, "device '%s': bad parent path '%s'", id,
                               parent ? parent : "(none)");
    snprintf(c->dev->parent, sizeof(c->dev->parent), "%s", parent);
    return 0;
}

size_t ferry_machine_device_count(const FerryMachine *m)
{
    size_t n = 0;
    for (uint32_t i = 0; i < m->nconn; i++)
        n += m->conn[i].dev != NULL;
    return n;
}

int ferry_machine_device_info(const FerryMachine *m, size_t i, FerryDeviceInfo *out)
{
    for (uint32_t c = 0; c < m->nconn; c++) {
        const FerryDevice *d = m->conn[c].dev;
        if (!d)
            continue;
        if (i--)
            continue;
        out->id = d->id;
        out->type = d->type;
        out->parent = d->parent;
        out->connector = m->conn[c].index;
        out->unplug_requested = m->conn[c].unplug_requested;
        return 0;
    }
    return -ENOENT;
}

int ferry_machine_device_param(const FerryMachine *m, const char *id, const char *param, char *buf,
                               size_t len, FerryError *err)
{
    const FerryDevice *d = find_device(m, id, NULL);
    if (!d)
        return ferry_error_set(err, -ENOENT, "device '%s' not found", id);
    int i = ferry_device_type_param_index(d->type, param);
    if (i < 0)
        return ferry_error_set(err, -EINVAL, "device '%s': unknown parameter '%s'", id, param);
    ferry_param_format(&d->type->params[i], d->params[i], buf, len);
    return 0;
}

/* ---- host views ---- */

static void conn_info(const FerryConnector *c, FerryConnectorInfo *out)
{
    out->index = c->index;
    out->kind = c->kind;
    out->slot = c->slot;
    out->state = c->state;
    out->unplug_requested = c->unplug_requested;
    out->session_active = c->cc_pos > 0;
    out->session_pos = c->cc_pos;
    out->device_id = c->dev ? c->dev->id : NULL;
}

size_t ferry_machine_connector_count(const FerryMachine *m)
{
    return m->nconn;
}

int ferry_machine_connector_info(const FerryMachine *m, size_t i, FerryConnectorInfo *out)
{
    if (i >= m->nconn)
        return -ENOENT;
    conn_info(&m->conn[i], out);
    return 0;
}

int ferry_machine_connector_find(const FerryMachine *m, uint32_t index, FerryConnectorInfo *out)
{
    FerryConnector *c = ferry_machine_conn_by_index((FerryMachine *)m, index);
    if (!c)
        return -ENOENT;
    conn_info(c, out);
    return 0;
}

size_t ferry_machine_event_count(const FerryMachine *m)
{
    return m->hp.events.len;
}

int ferry_machine_event_at(const FerryMachine *m, size_t i, FerryEventInfo *out)
{
    FERRY_LIST_FOREACH(&m->hp.events, l)
    {
        if (i--)
            continue;
        const FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        out->action = e->action;
        out->kind = e->kind;
        out->index = e->index;
        return 0;
    }
    return -ENOENT;
}
