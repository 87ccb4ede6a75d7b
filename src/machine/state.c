/* Migration descriptions of the machine's state and the registry a migration moves (DESIGN §5).
 * ferry-2.0 sends every connector's state; ferry-1.0 only when it differs from presence. */
#include "ferry/state/schema.h"
#include "machine-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void ferry_hotplug_event_release(void *elem)
{
    free(elem);
}

/* ---- hotplug controller ---- */

static int event_post_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    const FerryHotplugEvent *e = opaque;
    if (e->action != FERRY_HP_ACTION_ADD && e->action != FERRY_HP_ACTION_REMOVE)
        return ferry_error_set(err, -EINVAL, "event action %u is not add (1) or remove (2)",
                               e->action);
    if (e->kind < FERRY_CONN_CPU || e->kind > FERRY_CONN_SLOT ||
        FERRY_CONN_INDEX_KIND(e->index) != e->kind)
        return ferry_error_set(err, -EINVAL, "event kind %u does not match connector 0x%08x",
                               e->kind, e->index);
    return 0;
}

static const FerryField event_fields[] = {
    FERRY_FIELD(FerryHotplugEvent, action),
    FERRY_FIELD(FerryHotplugEvent, kind),
    FERRY_FIELD(FerryHotplugEvent, index),
    FERRY_END,
};

static const FerryDesc desc_event = {
    .name = "hotplug-event",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryHotplugEvent),
    .fields = event_fields,
    .post_load = event_post_load,
};

static const FerryField events_fields[] = {
    FERRY_LIST(FerryHotplugState, events, FerryHotplugEvent, link, &desc_event,
               .release = ferry_hotplug_event_release, .max = 1024),
    FERRY_END,
};

static const FerryDesc desc_events = {
    .name = "hotplug/events",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryHotplugState),
    .fields = events_fields,
};

static bool events_needed(const void *opaque)
{
    return ((const FerryHotplugState *)opaque)->events.len > 0;
}

static const FerrySubsection hotplug_subs[] = {
    /* Required: an old destination that cannot take queued events must fail, not drop them. */
    {.desc = &desc_events, .needed = events_needed},
    {NULL},
};

/* The queue is replaced by the loader; clearing it here also covers a stream without the
 * subsection (empty queue on the source): no stale destination event survives (S12). */
static int hotplug_pre_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    (void)err;
    FerryHotplugState *hp = opaque;
    FerryLink *l;
    while ((l = ferry_list_pop_head(&hp->events)))
        free(ferry_container_of(l, FerryHotplugEvent, link));
    return 0;
}

static const FerryField hotplug_fields[] = {
    FERRY_FIELD(FerryHotplugState, ready),
    FERRY_FIELD(FerryHotplugState, selector),
    FERRY_FIELD(FerryHotplugState, arg),
    FERRY_FIELD(FerryHotplugState, status),
    FERRY_ARRAY(FerryHotplugState, result),
    FERRY_BUFFER(FerryHotplugState, window),
    FERRY_END,
};

const FerryDesc ferry_desc_hotplug = {
    .name = "hotplug",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryHotplugState),
    .fields = hotplug_fields,
    .subsections = hotplug_subs,
    .pre_load = hotplug_pre_load,
};

/* ---- seeded bad policies (FerryMachinePolicy, explorer): same wire format as above ---- */

/* keep_dest_events: the destination's queue survives unless the stream carries one. */
const FerryDesc ferry_desc_hotplug_keep = {
    .name = "hotplug",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryHotplugState),
    .fields = hotplug_fields,
    .subsections = hotplug_subs,
};

/* events_load_append: QEMU's QTAILQ loader. The destination's events are held aside while the
 * loader fills the queue, then put back in front: the stream's events end up appended. */
static int hotplug_append_pre_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    (void)err;
    FerryMachine *m = ferry_container_of((FerryHotplugState *)opaque, FerryMachine, hp);
    FerryLink *l;
    while ((l = ferry_list_pop_head(&m->hp.events)))
        ferry_list_push_tail(&m->stash, l);
    return 0;
}

static int hotplug_append_post_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    (void)err;
    FerryMachine *m = ferry_container_of((FerryHotplugState *)opaque, FerryMachine, hp);
    FerryLink *l;
    while ((l = ferry_list_pop_head(&m->hp.events)))
        ferry_list_push_tail(&m->stash, l);
    m->hp.events = m->stash;
    ferry_list_init(&m->stash);
    return 0;
}

const FerryDesc ferry_desc_hotplug_append = {
    .name = "hotplug",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryHotplugState),
    .fields = hotplug_fields,
    .subsections = hotplug_subs,
    .pre_load = hotplug_append_pre_load,
    .post_load = hotplug_append_post_load,
};

/* ---- connectors ---- */

static bool conn_is_default(const FerryConnector *c)
{
    uint32_t def = c->dev ? FERRY_CONN_CONFIGURED : FERRY_CONN_UNUSABLE;
    return c->state == def && !c->unplug_requested && c->cc_pos == 0;
}

static bool conn_state_needed(const void *opaque)
{
    return !conn_is_default(opaque);
}

static int conn_pre_save(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    (void)err;
    FerryConnector *c = opaque;
    c->wire_index = c->index;
    return 0;
}

/* DESIGN §5: before the stream overwrites transitional state, the connector holds the state its
 * presence implies (a device added in inmigrate is configured, as if coldplugged). */
static int conn_pre_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    (void)err;
    FerryConnector *c = opaque;
    c->state = c->dev ? FERRY_CONN_CONFIGURED : FERRY_CONN_UNUSABLE;
    c->unplug_requested = false;
    c->cc_pos = 0;
    c->wire_index = c->index;
    return 0;
}

/* Loaded values are outside input: check them before any guest command can act on them
 * (QEMU's spapr_drc has no such check and asserts on bad states). */
static int conn_validate(const FerryConnector *c, FerryError *err)
{
    if (c->wire_index != c->index)
        return ferry_error_set(err, -EINVAL, "connector 0x%08x: stream carries index 0x%08x",
                               c->index, c->wire_index);
    if (c->state < FERRY_CONN_UNUSABLE || c->state > FERRY_CONN_CONFIGURED)
        return ferry_error_set(err, -EINVAL, "connector 0x%08x: invalid state %u", c->index,
                               c->state);
    if (!c->dev) {
        if (c->state != FERRY_CONN_UNUSABLE || c->unplug_requested || c->cc_pos)
            return ferry_error_set(err, -EINVAL,
                                   "connector 0x%08x: state %s%s on the source but no device "
                                   "on the destination",
                                   c->index, ferry_connector_state_name(c->state),
                                   c->unplug_requested ? " with unplug requested" : "");
        return 0;
    }
    if (c->cc_pos && c->state != FERRY_CONN_UNISOLATE && c->state != FERRY_CONN_CONFIGURED)
        return ferry_error_set(err, -EINVAL, "connector 0x%08x: configure session in state %s",
                               c->index, ferry_connector_state_name(c->state));
    if (c->cc_pos > ferry_device_token_count(c->dev))
        return ferry_error_set(err, -EINVAL,
                               "connector 0x%08x: configure cursor %u beyond the %u tokens of "
                               "device '%s'",
                               c->index, c->cc_pos, ferry_device_token_count(c->dev), c->dev->id);
    return 0;
}

/* keep_dest_connectors: only the wire index is prepared; what the stream omits stays as built. */
static int conn_keep_pre_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    (void)err;
    FerryConnector *c = opaque;
    c->wire_index = c->index;
    return 0;
}

static int conn_post_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    return conn_validate(opaque, err);
}

static const FerryField conn_state_fields[] = {
    FERRY_FIELD(FerryConnector, state),
    FERRY_FIELD(FerryConnector, unplug_requested),
    FERRY_FIELD(FerryConnector, cc_pos),
    FERRY_END,
};

static const FerryDesc desc_conn_state = {
    .name = "connector/state",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryConnector),
    .fields = conn_state_fields,
};

static const FerrySubsection conn_v1_subs[] = {
    {.desc = &desc_conn_state, .needed = conn_state_needed},
    {NULL},
};

static const FerryField conn_v1_fields[] = {
    FERRY_FIELD(FerryConnector, wire_index, .name = "index"),
    FERRY_END,
};

/* ferry-1.0: transitional state only in a subsection, so an older destination still accepts
 * the stream whenever no hotplug is in flight (S13). */
const FerryDesc ferry_desc_connector_v1 = {
    .name = "connector",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryConnector),
    .fields = conn_v1_fields,
    .subsections = conn_v1_subs,
    .pre_save = conn_pre_save,
    .pre_load = conn_pre_load,
    .post_load = conn_post_load,
};

static const FerryField conn_v2_fields[] = {
    FERRY_FIELD(FerryConnector, wire_index, .name = "index"),
    FERRY_FIELD(FerryConnector, state),
    FERRY_FIELD(FerryConnector, unplug_requested),
    FERRY_FIELD(FerryConnector, cc_pos),
    FERRY_END,
};

/* ferry-2.0: every connector's state, always. */
const FerryDesc ferry_desc_connector_v2 = {
    .name = "connector",
    .version = 2,
    .min_version = 2,
    .size = sizeof(FerryConnector),
    .fields = conn_v2_fields,
    .pre_save = conn_pre_save,
    .pre_load = conn_pre_load,
    .post_load = conn_post_load,
};

const FerryDesc ferry_desc_connector_v1_keep = {
    .name = "connector",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryConnector),
    .fields = conn_v1_fields,
    .subsections = conn_v1_subs,
    .pre_save = conn_pre_save,
    .pre_load = conn_keep_pre_load,
    .post_load = conn_post_load,
};

const FerryDesc ferry_desc_connector_v2_keep = {
    .name = "connector",
    .version = 2,
    .min_version = 2,
    .size = sizeof(FerryConnector),
    .fields = conn_v2_fields,
    .pre_save = conn_pre_save,
    .pre_load = conn_keep_pre_load,
    .post_load = conn_post_load,
};

/* ---- devices ----
 * Opaque is the FerryDevice; config-derived fields are checked against the destination's own
 * configuration after load (the handshake compared parameters; this catches a forged stream). */

static int device_post_load(void *opaque, uint32_t version, FerryError *err)
{
    (void)version;
    const FerryDevice *d = opaque;
    uint32_t slot = (uint32_t)d->params[0];
    switch (d->type->kind) {
    case FERRY_CONN_CPU:
        if (d->st.cpu.core_id != slot || d->st.cpu.pmu != (d->params[1] != 0))
            return ferry_error_set(err, -EINVAL,
                                   "device '%s': stream has core_id %u pmu %d, configuration "
                                   "says %u %d",
                                   d->id, d->st.cpu.core_id, d->st.cpu.pmu, slot,
                                   d->params[1] != 0);
        break;
    case FERRY_CONN_MEM:
        if (d->st.mem.size != d->params[1] || d->st.mem.node != d->params[2] ||
            d->st.mem.base != (4ull << 30) + (uint64_t)slot * FERRY_MEM_BLOCK_SIZE)
            return ferry_error_set(err, -EINVAL,
                                   "device '%s': stream memory block does not match the "
                                   "configuration",
                                   d->id);
        break;
    case FERRY_CONN_SLOT:
        if (d->st.card.slot != slot)
            return ferry_error_set(err, -EINVAL, "device '%s': stream has slot %u, not %u", d->id,
                                   d->st.card.slot, slot);
        break;
    }
    return 0;
}

static const FerryField cpu_fields[] = {
    FERRY_FIELD(FerryDevice, st.cpu.core_id, .name = "core_id"),
    FERRY_FIELD(FerryDevice, st.cpu.pmu, .name = "pmu"),
    FERRY_END,
};

const FerryDesc ferry_desc_cpu = {
    .name = "cpu",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryDevice),
    .fields = cpu_fields,
    .post_load = device_post_load,
};

static const FerryField mem_fields[] = {
    FERRY_FIELD(FerryDevice, st.mem.base, .name = "base"),
    FERRY_FIELD(FerryDevice, st.mem.size, .name = "size"),
    FERRY_FIELD(FerryDevice, st.mem.node, .name = "node"),
    FERRY_END,
};

const FerryDesc ferry_desc_mem = {
    .name = "mem-block",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryDevice),
    .fields = mem_fields,
    .post_load = device_post_load,
};

static const FerryField card_ext_fields[] = {
    FERRY_FIELD(FerryDevice, st.card.ext_status, .name = "ext_status"),
    FERRY_END,
};

static const FerryDesc desc_card_ext = {
    .name = "card/ext",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryDevice),
    .fields = card_ext_fields,
};

/* Tied to the ext-status parameter, whose default is off and which only ferry-2.0 turns on:
 * ferry-1.0 streams never carry it (the compat-property rule of DESIGN §4). */
static bool card_ext_needed(const void *opaque)
{
    return ((const FerryDevice *)opaque)->st.card.ext;
}

static const FerrySubsection card_subs[] = {
    {.desc = &desc_card_ext, .needed = card_ext_needed},
    {NULL},
};

static const FerryField card_fields[] = {
    FERRY_FIELD(FerryDevice, st.card.slot, .name = "slot"),
    FERRY_FIELD(FerryDevice, st.card.status, .name = "status"),
    FERRY_END,
};

const FerryDesc ferry_desc_card = {
    .name = "card",
    .version = 1,
    .min_version = 1,
    .size = sizeof(FerryDevice),
    .fields = card_fields,
    .subsections = card_subs,
    .post_load = device_post_load,
};

const FerryDesc *ferry_device_desc(const FerryDeviceType *t)
{
    switch (t->kind) {
    case FERRY_CONN_CPU:
        return &ferry_desc_cpu;
    case FERRY_CONN_MEM:
        return &ferry_desc_mem;
    case FERRY_CONN_SLOT:
        return &ferry_desc_card;
    }
    return NULL;
}

static const FerryDesc *conn_desc(const FerryMachineType *t)
{
    return t->connector_state_always ? &ferry_desc_connector_v2 : &ferry_desc_connector_v1;
}

/* The descriptions a machine migrates with: its type's, unless a seeded bad policy is on. */
static const FerryDesc *machine_conn_desc(const FerryMachine *m)
{
    const FerryMachinePolicy *p = &m->policy;
    bool v2 = m->type->connector_state_always && !p->conn_state_subsection;
    if (p->keep_dest_connectors)
        return v2 ? &ferry_desc_connector_v2_keep : &ferry_desc_connector_v1_keep;
    return v2 ? &ferry_desc_connector_v2 : &ferry_desc_connector_v1;
}

static const FerryDesc *machine_hotplug_desc(const FerryMachine *m)
{
    if (m->policy.events_load_append)
        return &ferry_desc_hotplug_append;
    if (m->policy.keep_dest_events)
        return &ferry_desc_hotplug_keep;
    return &ferry_desc_hotplug;
}

/* ---- registries ---- */

FerryRegistry *ferry_machine_registry(FerryMachine *m, FerryError *err)
{
    FerryRegistry *reg = ferry_registry_new();
    if (!reg) {
        ferry_error_set(err, -ENOMEM, "out of memory building the registry");
        return NULL;
    }
    if (ferry_registry_add(reg, "hotplug", 0, machine_hotplug_desc(m), &m->hp, err) < 0)
        goto err_free_reg;
    for (uint32_t i = 0; i < m->nconn; i++) {
        FerryConnector *c = &m->conn[i];
        if (ferry_registry_add(reg, "connector", c->index, machine_conn_desc(m), c, err) < 0)
            goto err_free_reg;
        if (c->dev && ferry_registry_add(reg, c->dev->type->section, c->slot,
                                         ferry_device_desc(c->dev->type), c->dev, err) < 0)
            goto err_free_reg;
    }
    return reg;

err_free_reg:
    ferry_registry_free(reg);
    return NULL;
}

FerryRegistry *ferry_machine_type_schema_registry(const FerryMachineType *t, FerryError *err)
{
    FerryRegistry *reg = ferry_registry_new();
    if (!reg) {
        ferry_error_set(err, -ENOMEM, "out of memory building the registry");
        return NULL;
    }
    if (ferry_registry_add(reg, "hotplug", 0, &ferry_desc_hotplug, NULL, err) < 0 ||
        ferry_registry_add(reg, "connector", 0, conn_desc(t), NULL, err) < 0)
        goto err_free_reg;
    for (size_t i = 0; ferry_device_type_at(i); i++) {
        const FerryDeviceType *dt = ferry_device_type_at(i);
        if (ferry_registry_add(reg, dt->section, 0, ferry_device_desc(dt), NULL, err) < 0)
            goto err_free_reg;
    }
    return reg;

err_free_reg:
    ferry_registry_free(reg);
    return NULL;
}

int ferry_machine_incoming_finish(FerryMachine *m, FerryError *err)
{
    for (uint32_t i = 0; i < m->nconn; i++) {
        int rc = conn_validate(&m->conn[i], err);
        if (rc < 0)
            return rc;
    }
    /* An unplug of a device the guest never allocated is pending only while the guest has its
     * remove event to fetch (the fetch completes it: hotplug.c); without one nothing would. */
    for (uint32_t i = 0; i < m->nconn; i++) {
        const FerryConnector *c = &m->conn[i];
        if (!c->dev || !c->unplug_requested || c->state != FERRY_CONN_UNUSABLE)
            continue;
        bool queued = false;
        FERRY_LIST_FOREACH(&m->hp.events, l)
        {
            const FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
            queued |= e->index == c->index && e->action == FERRY_HP_ACTION_REMOVE;
        }
        if (!queued)
            return ferry_error_set(err, -EINVAL,
                                   "connector 0x%08x: unplug requested in state unusable without "
                                   "a queued remove event",
                                   c->index);
    }
    FERRY_LIST_FOREACH(&m->hp.events, l)
    {
        const FerryHotplugEvent *e = ferry_container_of(l, FerryHotplugEvent, link);
        int rc = event_post_load((void *)e, 1, err);
        if (rc < 0)
            return rc;
        FerryConnector *c = ferry_machine_conn_by_index(m, e->index);
        if (!c)
            return ferry_error_set(err, -EINVAL,
                                   "queued event for connector 0x%08x, which this machine lacks",
                                   e->index);
        /* An add event must find a device to add; a remove event a device being removed. */
        if (e->action == FERRY_HP_ACTION_ADD && !c->dev)
            return ferry_error_set(err, -EINVAL,
                                   "queued add event for connector 0x%08x but no device there",
                                   e->index);
        if (e->action == FERRY_HP_ACTION_REMOVE && (!c->dev || !c->unplug_requested))
            return ferry_error_set(err, -EINVAL,
                                   "queued remove event for connector 0x%08x without a pending "
                                   "unplug",
                                   e->index);
    }
    m->line = !ferry_machine_irq_level(m); /* force the callback: the VMM's line starts low */
    ferry_machine_update_line(m);
    return 0;
}
