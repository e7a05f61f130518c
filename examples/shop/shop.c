/*
 * shop.c - the shop example's shared helpers (shop.h): connection,
 * publishing a protobuf payload, object names, money, a uint64 hash map
 * and the revenue artifact's reader and atomic writer.
 */
#include "shop.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flags.h"

fonte_err
shop_connect(const char *service, fonte_client_t **client_p)
{
    fonte_client_opts_t o;
    fonte_err rc;

    fonte_client_opts_init(&o);
    o.service = service;
    if ((rc = fonte_client_new(&o, client_p)) != FONTE_OK)
        fprintf(stderr, "%s: cannot start the fonte client: %s\n", service,
                fonte_strerror(rc));
    return rc;
}

fonte_err
shop_publish(fonte_client_t *c, const char *type, const char *object,
             const char *dep, const ProtobufCMessage *msg)
{
    uint8_t stack[512];
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = len <= sizeof stack ? stack : malloc(len);
    fonte_err rc;

    if (buf == NULL)
        return FONTE_ENOMEM;
    protobuf_c_message_pack(msg, buf);
    fonte_event_spec_t ev = {
        .type = type,
        .object = object,
        .depends_on = dep != NULL ? &dep : NULL,
        .n_depends_on = dep != NULL ? 1 : 0,
        .payload = buf,
        .payload_len = len,
        .payload_type = msg->descriptor->name,
    };
    rc = fonte_publish(c, &ev);
    if (buf != stack)
        free(buf);
    return rc;
}

int
shop_command_loop(fonte_client_t *c, const char *prog, shop_command_fn apply,
                  int flush_ms)
{
    char *line = NULL;
    size_t len = 0;
    uint64_t published = 0, bad = 0;
    fonte_err rc = FONTE_OK;

    while (getline(&line, &len, stdin) >= 0) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "flush") == 0) {
            if ((rc = fonte_flush(c, flush_ms)) != FONTE_OK)
                break;
            printf("%s: flushed %" PRIu64 "\n", prog, published);
            fflush(stdout);
            continue;
        }
        rc = apply(c, line);
        if (rc == FONTE_EINVAL) {
            fprintf(stderr, "%s: ignored: %s\n", prog, line);
            bad++;
            rc = FONTE_OK;
        } else if (rc != FONTE_OK) {
            fprintf(stderr, "%s: publish failed: %s\n", prog,
                    fonte_strerror(rc));
            break;
        } else {
            published++;
        }
    }
    free(line);
    if (rc == FONTE_OK)
        rc = fonte_flush(c, flush_ms);
    if (rc != FONTE_OK) {
        fprintf(stderr, "%s: not durable: %s\n", prog, fonte_strerror(rc));
        return 1;
    }
    fonte_client_stats_t st;
    fonte_client_stats(c, &st);
    fprintf(stderr,
            "%s: %" PRIu64 " events published and durable (%" PRIu64
            " resent, %" PRIu64 " gap acks, %" PRIu64 " resend timeouts)\n",
            prog, published, st.resent, st.gap_acks, st.resend_timeouts);
    return bad == 0 ? 0 : 1;
}

bool
shop_object_id(const char *object, const char *kind, uint64_t *id)
{
    size_t k = strlen(kind);
    char *end;

    if (strncmp(object, kind, k) != 0 || object[k] != ':' ||
        object[k + 1] < '0' || object[k + 1] > '9')
        return false;
    errno = 0;
    *id = strtoull(object + k + 1, &end, 10);
    return errno == 0 && *end == '\0';
}

char *
shop_money(char *buf, size_t len, int64_t cents)
{
    uint64_t a = cents < 0 ? (uint64_t) 0 - (uint64_t) cents
                           : (uint64_t) cents;
    snprintf(buf, len, "%s%" PRIu64 ".%02" PRIu64, cents < 0 ? "-" : "",
             a / 100, a % 100);
    return buf;
}

/* ------------------------------------------------------------------ */
/* map */

struct shop_map {
    size_t value_size;
    size_t cap; /* slots, a power of two */
    size_t count;
    uint64_t *keys;
    bool *used;
    unsigned char *values;
};

static size_t
slot_of(const shop_map_t *m, uint64_t key)
{
    key ^= key >> 33; /* murmur3's finaliser: ids are sequential */
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t) key & (m->cap - 1);
}

static bool
map_alloc(shop_map_t *m, size_t cap)
{
    m->keys = calloc(cap, sizeof *m->keys);
    m->used = calloc(cap, sizeof *m->used);
    m->values = calloc(cap, m->value_size);
    m->cap = cap;
    return m->keys != NULL && m->used != NULL && m->values != NULL;
}

static void
map_free_slots(shop_map_t *m)
{
    free(m->keys);
    free(m->used);
    free(m->values);
}

shop_map_t *
shop_map_new(size_t value_size)
{
    shop_map_t *m = calloc(1, sizeof *m);

    if (m == NULL)
        return NULL;
    m->value_size = value_size;
    if (!map_alloc(m, 64)) {
        map_free_slots(m);
        free(m);
        return NULL;
    }
    return m;
}

void
shop_map_destroy(shop_map_t **m_p)
{
    if (m_p == NULL || *m_p == NULL)
        return;
    map_free_slots(*m_p);
    free(*m_p);
    *m_p = NULL;
}

size_t
shop_map_count(const shop_map_t *m)
{
    return m->count;
}

static bool
find(const shop_map_t *m, uint64_t key, size_t *slot)
{
    size_t i = slot_of(m, key);

    while (m->used[i]) {
        if (m->keys[i] == key) {
            *slot = i;
            return true;
        }
        i = (i + 1) & (m->cap - 1);
    }
    *slot = i;
    return false;
}

void *
shop_map_get(const shop_map_t *m, uint64_t key)
{
    size_t i;
    return find(m, key, &i) ? m->values + i * m->value_size : NULL;
}

static bool
grow(shop_map_t *m)
{
    shop_map_t old = *m;

    if (!map_alloc(m, old.cap * 2)) {
        map_free_slots(m);
        *m = old;
        return false;
    }
    for (size_t j = 0; j < old.cap; j++) {
        size_t i;
        if (!old.used[j])
            continue;
        find(m, old.keys[j], &i);
        m->used[i] = true;
        m->keys[i] = old.keys[j];
        memcpy(m->values + i * m->value_size,
               old.values + j * m->value_size, m->value_size);
    }
    map_free_slots(&old);
    return true;
}

void *
shop_map_put(shop_map_t *m, uint64_t key, bool *created)
{
    size_t i;

    if (find(m, key, &i)) {
        *created = false;
        return m->values + i * m->value_size;
    }
    if ((m->count + 1) * 4 > m->cap * 3) { /* load factor 3/4 */
        if (!grow(m))
            return NULL;
        find(m, key, &i);
    }
    m->used[i] = true;
    m->keys[i] = key;
    memset(m->values + i * m->value_size, 0, m->value_size);
    m->count++;
    *created = true;
    return m->values + i * m->value_size;
}

bool
shop_map_del(shop_map_t *m, uint64_t key)
{
    size_t i, j;

    if (!find(m, key, &i))
        return false;
    /* Backward shift: move later members of the run into the hole when
     * their home slot does not lie (cyclically) between the hole and
     * them, so every key stays reachable from its home without
     * tombstones. */
    m->used[i] = false;
    j = i;
    for (;;) {
        j = (j + 1) & (m->cap - 1);
        if (!m->used[j])
            break;
        size_t home = slot_of(m, m->keys[j]);
        bool stays = i <= j ? (i < home && home <= j)
                            : (i < home || home <= j);
        if (stays)
            continue;
        m->used[i] = true;
        m->keys[i] = m->keys[j];
        memcpy(m->values + i * m->value_size, m->values + j * m->value_size,
               m->value_size);
        m->used[j] = false;
        i = j;
    }
    m->count--;
    return true;
}

void *
shop_map_next(const shop_map_t *m, size_t *it, uint64_t *key)
{
    for (; *it < m->cap; (*it)++) {
        if (m->used[*it]) {
            size_t i = (*it)++;
            if (key != NULL)
                *key = m->keys[i];
            return m->values + i * m->value_size;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* the artifact */

fonte_err
shop_artifact_write(const char *path, uint64_t events, uint64_t user_events,
                    const shop_map_t *users, const shop_map_t *orders,
                    const shop_map_t *marks)
{
    char tmp[4096];
    FILE *f;
    size_t it = 0;
    const shop_user_t *u;
    const shop_order_t *o;
    const shop_mark_t *k;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
        return FONTE_EINVAL;
    if ((f = fopen(tmp, "w")) == NULL)
        return FONTE_EIO;
    fprintf(f, "# shop revenue artifact: written by shop-revenue\n"
               "events %" PRIu64 "\n"
               "user_events %" PRIu64 "\n",
            events, user_events);
    while ((u = shop_map_next(users, &it, NULL)) != NULL)
        fprintf(f, "user %" PRIu64 " %" PRId64 " %" PRIu64 " %s\n", u->id,
                u->revenue_cents, u->orders, u->name);
    it = 0;
    while ((o = shop_map_next(orders, &it, NULL)) != NULL)
        fprintf(f, "order %" PRIu64 " %" PRIu64 " %" PRId64 "\n", o->id,
                o->user_id, o->total_cents);
    it = 0;
    while ((k = shop_map_next(marks, &it, NULL)) != NULL)
        fprintf(f, "mark %" PRIu64 " %" PRIu64 "\n", k->session, k->last_seq);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        unlink(tmp);
        return FONTE_EIO;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return FONTE_EIO;
    }
    return FONTE_OK;
}

/* Appends one element of size sz to *arr (length *n), growing it. */
static void *
push(void *arr_p, size_t *n, size_t *cap, size_t sz)
{
    void **arr = arr_p;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void *p = realloc(*arr, nc * sz);
        if (p == NULL)
            return NULL;
        *arr = p;
        *cap = nc;
    }
    return (unsigned char *) *arr + (*n)++ * sz;
}

static bool
parse_line(char *line, shop_artifact_t *a, size_t *cap_u, size_t *cap_o,
           size_t *cap_m, fonte_err *rc)
{
    int off = 0;

    *rc = FONTE_OK;
    line[strcspn(line, "\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0')
        return true;
    if (sscanf(line, "events %" SCNu64 "%n", &a->events, &off) == 1 &&
        line[off] == '\0')
        return true;
    if (sscanf(line, "user_events %" SCNu64 "%n", &a->user_events, &off) ==
            1 &&
        line[off] == '\0')
        return true;
    if (strncmp(line, "user ", 5) == 0) {
        shop_user_t u = { 0 };
        if (sscanf(line, "user %" SCNu64 " %" SCNd64 " %" SCNu64 " %n", &u.id,
                   &u.revenue_cents, &u.orders, &off) != 3 || off == 0)
            return false;
        snprintf(u.name, sizeof u.name, "%s", line + off);
        shop_user_t *slot = push(&a->users, &a->n_users, cap_u, sizeof u);
        if (slot == NULL) {
            *rc = FONTE_ENOMEM;
            return false;
        }
        *slot = u;
        return true;
    }
    if (strncmp(line, "order ", 6) == 0) {
        shop_order_t o = { 0 };
        if (sscanf(line, "order %" SCNu64 " %" SCNu64 " %" SCNd64 "%n", &o.id,
                   &o.user_id, &o.total_cents, &off) != 3 ||
            line[off] != '\0')
            return false;
        shop_order_t *slot = push(&a->orders, &a->n_orders, cap_o, sizeof o);
        if (slot == NULL) {
            *rc = FONTE_ENOMEM;
            return false;
        }
        *slot = o;
        return true;
    }
    if (strncmp(line, "mark ", 5) == 0) {
        shop_mark_t k = { 0 };
        if (sscanf(line, "mark %" SCNu64 " %" SCNu64 "%n", &k.session,
                   &k.last_seq, &off) != 2 ||
            line[off] != '\0')
            return false;
        shop_mark_t *slot = push(&a->marks, &a->n_marks, cap_m, sizeof k);
        if (slot == NULL) {
            *rc = FONTE_ENOMEM;
            return false;
        }
        *slot = k;
        return true;
    }
    return false;
}

fonte_err
shop_artifact_read(const char *path, shop_artifact_t *a, size_t *bad_line)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t len = 0, cap_u = 0, cap_o = 0, cap_m = 0, lineno = 0;
    fonte_err rc = FONTE_OK;

    memset(a, 0, sizeof *a);
    if (f == NULL)
        return errno == ENOENT ? FONTE_ENOTFOUND : FONTE_EIO;
    while (getline(&line, &len, f) >= 0) {
        lineno++;
        if (!parse_line(line, a, &cap_u, &cap_o, &cap_m, &rc)) {
            if (rc == FONTE_OK)
                rc = FONTE_EDECODE;
            if (bad_line != NULL)
                *bad_line = lineno;
            break;
        }
    }
    if (rc == FONTE_OK && ferror(f))
        rc = FONTE_EIO;
    free(line);
    fclose(f);
    if (rc != FONTE_OK)
        shop_artifact_free(a);
    return rc;
}

void
shop_artifact_free(shop_artifact_t *a)
{
    free(a->users);
    free(a->orders);
    free(a->marks);
    memset(a, 0, sizeof *a);
}

int
shop_producer_main(int argc, char **argv, const char *service,
                   const char *prog, const char *usage, shop_command_fn apply)
{
    int64_t flush_us = 30000000;
    const flag_spec_t specs[] = {
        { "flush-timeout", "SHOP_FLUSH_TIMEOUT", FLAG_DURATION, &flush_us,
          "how long the final flush may wait (30s)", NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
    };
    fonte_client_t *c = NULL;

    int exit_code = flags_exit_code(
        flags_parse(specs, argc, argv, prog, usage, NULL, stdout, stderr));
    if (exit_code >= 0)
        return exit_code;
    if (shop_connect(service, &c) != FONTE_OK)
        return 1;
    int status = shop_command_loop(c, prog, apply, (int) (flush_us / 1000));
    fonte_client_destroy(&c);
    return status;
}
