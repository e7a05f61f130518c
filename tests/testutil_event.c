/*
 * testutil_event.c - see testutil.h.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL)
        abort();
    return q;
}

static char *
xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

void
tu_set(char **field, const char *value)
{
    if (*field != NULL && *field != protobuf_c_empty_string)
        free(*field);
    *field = xstrdup(value);
}

void
tu_event_fix_id(Fonte__Event *ev)
{
    char id[CODEC_ID_MAX];
    codec_format_id(id, ev->producer, strlen(ev->producer), ev->session,
                    ev->producer_seq);
    tu_set(&ev->id, id);
}

Fonte__Event *
tu_event(const char *type, const char *object, const char *producer,
         uint64_t session, uint64_t seq)
{
    Fonte__Event *ev = xrealloc(NULL, sizeof *ev);
    fonte__event__init(ev);
    tu_set(&ev->type, type);
    tu_set(&ev->object, object);
    tu_set(&ev->producer, producer);
    ev->session = session;
    ev->producer_seq = seq;
    ev->time_us = 1700000000000000;
    tu_event_fix_id(ev);
    return ev;
}

void
tu_event_add_dep(Fonte__Event *ev, const char *dep)
{
    ev->depends_on = xrealloc(ev->depends_on,
                              (ev->n_depends_on + 1) * sizeof(char *));
    ev->depends_on[ev->n_depends_on++] = xstrdup(dep);
}

void
tu_event_add_meta(Fonte__Event *ev, const char *key, const char *value)
{
    Fonte__Event__MetaEntry *m = xrealloc(NULL, sizeof *m);
    fonte__event__meta_entry__init(m);
    tu_set(&m->key, key);
    tu_set(&m->value, value);
    ev->meta = xrealloc(ev->meta, (ev->n_meta + 1) * sizeof *ev->meta);
    ev->meta[ev->n_meta++] = m;
}

void
tu_event_set_payload(Fonte__Event *ev, const void *data, size_t len,
                     const char *payload_type)
{
    free(ev->payload.data);
    ev->payload.data = xrealloc(NULL, len > 0 ? len : 1);
    memcpy(ev->payload.data, data, len);
    ev->payload.len = len;
    tu_set(&ev->payload_type, payload_type);
}

void
tu_event_set_replay(Fonte__Event *ev, const char *replay_id,
                    const char *root, const char *target)
{
    if (ev->replay == NULL) {
        ev->replay = xrealloc(NULL, sizeof *ev->replay);
        fonte__replay__init(ev->replay);
    }
    tu_set(&ev->replay->replay_id, replay_id);
    tu_set(&ev->replay->root, root);
    tu_set(&ev->replay->target, target);
    ev->replay->index = 1;
    ev->replay->total = 1;
}

codec_buf_t
tu_pack(const ProtobufCMessage *msg)
{
    codec_buf_t b;
    if (codec_pack(msg, &b) != FONTE_OK)
        abort();
    return b;
}

void
tu_wire_raw(tu_wire_t *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 16;
        w->data = xrealloc(w->data, w->cap);
    }
    if (n > 0)
        memcpy(w->data + w->len, p, n);
    w->len += n;
}

void
tu_wire_varint(tu_wire_t *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t) (v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    tu_wire_raw(w, b, n);
}

void
tu_wire_tag(tu_wire_t *w, uint32_t field, int wire_type)
{
    tu_wire_varint(w, ((uint64_t) field << 3) | (uint64_t) wire_type);
}

void
tu_wire_bytes(tu_wire_t *w, uint32_t field, const void *p, size_t n)
{
    tu_wire_tag(w, field, 2);
    tu_wire_varint(w, n);
    tu_wire_raw(w, p, n);
}

void
tu_wire_str(tu_wire_t *w, uint32_t field, const char *s)
{
    tu_wire_bytes(w, field, s, strlen(s));
}

void
tu_wire_fixed64(tu_wire_t *w, uint32_t field, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t) (v >> (8 * i));
    tu_wire_tag(w, field, 1);
    tu_wire_raw(w, b, 8);
}

void
tu_wire_uint(tu_wire_t *w, uint32_t field, uint64_t v)
{
    tu_wire_tag(w, field, 0);
    tu_wire_varint(w, v);
}

void
tu_wire_free(tu_wire_t *w)
{
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
}

void
tu_wire_event(tu_wire_t *w, const char *skip)
{
    char id[CODEC_ID_MAX];
    codec_format_id(id, "shop", 4, 0xabc, 1);
    if (!strchr(skip, 1))
        tu_wire_str(w, 1, id);
    if (!strchr(skip, 2))
        tu_wire_str(w, 2, "order.placed");
    if (!strchr(skip, 3))
        tu_wire_str(w, 3, "order:1");
    if (!strchr(skip, 5))
        tu_wire_str(w, 5, "shop");
    if (!strchr(skip, 6))
        tu_wire_fixed64(w, 6, 0xabc);
    if (!strchr(skip, 7))
        tu_wire_uint(w, 7, 1);
}

fonte_err
tu_check(const char *topic, const void *body, size_t len, codec_class_t *cls)
{
    codec_frame_t f[2] = { { topic, strlen(topic) }, { body, len } };
    codec_class_t c;
    return codec_check(f, 2, &codec_limits_default, cls ? cls : &c, NULL);
}
