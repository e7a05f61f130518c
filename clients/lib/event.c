/*
 * event.c - accessors of received and fetched events, and the owned list
 * fonte_fetch returns (see fonte.h for the contract of each accessor).
 *
 * An event is a thin wrapper around the decoded protobuf struct, so an
 * accessor is a field read: strings are protobuf-c's, never NULL after
 * a decode (proto3 strings default to ""), guarded anyway.
 */
#include "event.h"

#include <stdlib.h>
#include <string.h>

struct fonte_event_list {
    fonte_event_t *items;
    size_t n, cap;
    char **cycles;
    size_t n_cycles;
    uint64_t cycles_omitted;
};

static const char *
str(const char *s)
{
    return s != NULL ? s : "";
}

fonte_event_t *
event_new(Fonte__Event *pb)
{
    fonte_event_t *e = malloc(sizeof *e);

    if (e == NULL) {
        codec_event_free(&pb);
        return NULL;
    }
    e->pb = pb;
    return e;
}

/* A heap block's cost beyond what it holds: glibc's header and rounding
 * (a 1-byte string takes a 32-byte chunk), about. */
#define BLOCK_OVERHEAD 32

size_t
event_mem_estimate(const Fonte__Event *pb, size_t encoded)
{
    /* protobuf-c gives each string, each meta entry and each repeated
     * field's array a block of its own: 64 dependencies and 64 meta
     * entries of a few bytes each, 600 bytes on the wire, hold ~13 KB */
    size_t blocks = 7 + pb->n_depends_on + (pb->n_depends_on > 0) +
                    3 * pb->n_meta + (pb->n_meta > 0) +
                    (pb->replay != NULL ? 5 : 0);
    return encoded + sizeof(fonte_event_t) + sizeof *pb +
           pb->n_depends_on * sizeof(char *) +
           pb->n_meta * (sizeof(Fonte__Event__MetaEntry) + sizeof(void *)) +
           blocks * BLOCK_OVERHEAD;
}

void
event_destroy(fonte_event_t **e_p)
{
    if (e_p == NULL || *e_p == NULL)
        return;
    codec_event_free(&(*e_p)->pb);
    free(*e_p);
    *e_p = NULL;
}

FONTE_EXPORT const char *
fonte_event_id(const fonte_event_t *e)
{
    return str(e->pb->id);
}

FONTE_EXPORT const char *
fonte_event_type(const fonte_event_t *e)
{
    return str(e->pb->type);
}

FONTE_EXPORT const char *
fonte_event_object(const fonte_event_t *e)
{
    return str(e->pb->object);
}

FONTE_EXPORT size_t
fonte_event_deps_count(const fonte_event_t *e)
{
    return e->pb->n_depends_on;
}

FONTE_EXPORT const char *
fonte_event_dep(const fonte_event_t *e, size_t i)
{
    return i < e->pb->n_depends_on ? str(e->pb->depends_on[i]) : NULL;
}

FONTE_EXPORT const void *
fonte_event_payload(const fonte_event_t *e, size_t *len_out)
{
    if (len_out != NULL)
        *len_out = e->pb->payload.len;
    return e->pb->payload.len > 0 ? e->pb->payload.data : NULL;
}

FONTE_EXPORT const char *
fonte_event_payload_type(const fonte_event_t *e)
{
    return str(e->pb->payload_type);
}

FONTE_EXPORT const char *
fonte_event_meta(const fonte_event_t *e, const char *key)
{
    if (key == NULL)
        return NULL;
    for (size_t i = 0; i < e->pb->n_meta; i++)
        if (strcmp(str(e->pb->meta[i]->key), key) == 0)
            return str(e->pb->meta[i]->value);
    return NULL;
}

FONTE_EXPORT size_t
fonte_event_meta_count(const fonte_event_t *e)
{
    return e->pb->n_meta;
}

FONTE_EXPORT bool
fonte_event_meta_at(const fonte_event_t *e, size_t i, const char **key,
                    const char **value)
{
    if (i >= e->pb->n_meta)
        return false;
    if (key != NULL)
        *key = str(e->pb->meta[i]->key);
    if (value != NULL)
        *value = str(e->pb->meta[i]->value);
    return true;
}

FONTE_EXPORT const char *
fonte_event_producer(const fonte_event_t *e)
{
    return str(e->pb->producer);
}

FONTE_EXPORT uint64_t
fonte_event_session(const fonte_event_t *e)
{
    return e->pb->session;
}

FONTE_EXPORT uint64_t
fonte_event_producer_seq(const fonte_event_t *e)
{
    return e->pb->producer_seq;
}

FONTE_EXPORT uint64_t
fonte_event_seq(const fonte_event_t *e)
{
    return e->pb->seq;
}

FONTE_EXPORT int64_t
fonte_event_time_us(const fonte_event_t *e)
{
    return e->pb->time_us;
}

FONTE_EXPORT bool
fonte_event_is_replay(const fonte_event_t *e)
{
    return e->pb->replay != NULL;
}

FONTE_EXPORT const char *
fonte_event_replay_id(const fonte_event_t *e)
{
    return e->pb->replay ? str(e->pb->replay->replay_id) : "";
}

FONTE_EXPORT const char *
fonte_event_replay_root(const fonte_event_t *e)
{
    return e->pb->replay ? str(e->pb->replay->root) : "";
}

FONTE_EXPORT const char *
fonte_event_replay_target(const fonte_event_t *e)
{
    return e->pb->replay ? str(e->pb->replay->target) : "";
}

FONTE_EXPORT const char *
fonte_event_replay_reason(const fonte_event_t *e)
{
    return e->pb->replay ? str(e->pb->replay->reason) : "";
}

FONTE_EXPORT uint64_t
fonte_event_replay_index(const fonte_event_t *e)
{
    return e->pb->replay ? e->pb->replay->index : 0;
}

FONTE_EXPORT uint64_t
fonte_event_replay_total(const fonte_event_t *e)
{
    return e->pb->replay ? e->pb->replay->total : 0;
}

/* ------------------------------------------------------------------ */
/* lists                                                               */

fonte_event_list_t *
event_list_new(void)
{
    return calloc(1, sizeof(fonte_event_list_t));
}

fonte_err
event_list_take(fonte_event_list_t *l, Fonte__Event *pb)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        fonte_event_t *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) {
            codec_event_free(&pb);
            return FONTE_ENOMEM;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++].pb = pb;
    return FONTE_OK;
}

fonte_err
event_list_add_cycle(fonte_event_list_t *l, const char *cycle)
{
    char **cycles = realloc(l->cycles, (l->n_cycles + 1) * sizeof *cycles);
    if (cycles == NULL)
        return FONTE_ENOMEM;
    l->cycles = cycles;
    if ((cycles[l->n_cycles] = strdup(str(cycle))) == NULL)
        return FONTE_ENOMEM;
    l->n_cycles++;
    return FONTE_OK;
}

void
event_list_add_cycles_omitted(fonte_event_list_t *l, uint64_t n)
{
    l->cycles_omitted = n > UINT64_MAX - l->cycles_omitted
                            ? UINT64_MAX
                            : l->cycles_omitted + n;
}

FONTE_EXPORT size_t
fonte_event_list_count(const fonte_event_list_t *l)
{
    return l != NULL ? l->n : 0;
}

FONTE_EXPORT const fonte_event_t *
fonte_event_list_get(const fonte_event_list_t *l, size_t i)
{
    return l != NULL && i < l->n ? &l->items[i] : NULL;
}

FONTE_EXPORT size_t
fonte_event_list_cycles_count(const fonte_event_list_t *l)
{
    return l != NULL ? l->n_cycles : 0;
}

FONTE_EXPORT const char *
fonte_event_list_cycle(const fonte_event_list_t *l, size_t i)
{
    return l != NULL && i < l->n_cycles ? l->cycles[i] : NULL;
}

FONTE_EXPORT uint64_t
fonte_event_list_cycles_omitted(const fonte_event_list_t *l)
{
    return l != NULL ? l->cycles_omitted : 0;
}

FONTE_EXPORT void
fonte_event_list_destroy(fonte_event_list_t **list_p)
{
    fonte_event_list_t *l = list_p ? *list_p : NULL;

    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        codec_event_free(&l->items[i].pb);
    for (size_t i = 0; i < l->n_cycles; i++)
        free(l->cycles[i]);
    free(l->cycles);
    free(l->items);
    free(l);
    *list_p = NULL;
}
