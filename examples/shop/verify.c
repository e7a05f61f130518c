/*
 * verify.c - shop-verify: checks revenue's artifact against the source of
 * truth, fonte's store.
 *
 * The truth is read with ONE fetch over the listener's query endpoint:
 * object "*" (the whole store) restricted to the shop's types, in store
 * order (fonte_fetch follows the reply's cursor page by page). One
 * request instead of one per order because verify needs every order
 * anyway, and store order is already an order in which each order's
 * events come in the sequence they were published (one producer
 * publishes all of an order's events, and fonte keeps each producer's
 * order). From it: revenue per user = sum of quantity x unit price over
 * the lines of every order not cancelled; orders per user = placed and
 * not cancelled; users = the objects of user.created.
 *
 * Revenue consumes live events asynchronously, so verify first waits (at
 * most --wait) until the artifact says it has seen as many order events
 * as the store holds; then it compares once, user by user:
 * revenue, order count, users missing or unknown, and users written
 * twice. Each mismatch is one line; exit 1 if there is any, else exit 0
 * with one summary line.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flags.h"
#include "log.h"
#include "shop.h"
#include "shop.pb-c.h"

#define MAX_PRINTED 20

typedef struct truth_order {
    uint64_t user_id;
    int64_t total_cents;
    bool cancelled;
} truth_order_t;

typedef struct truth {
    shop_map_t *users;  /* id -> shop_user_t (revenue filled at the end) */
    shop_map_t *orders; /* id -> truth_order_t */
    uint64_t order_events, user_events, problems;
} truth_t;

static size_t mismatches;

static void mismatch(const char *fmt, ...) FLOG_PRINTF_(1, 2);

static void
mismatch(const char *fmt, ...)
{
    va_list ap;
    if (++mismatches > MAX_PRINTED)
        return;
    va_start(ap, fmt);
    fputs("verify: MISMATCH ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

/* One stored event into the truth. */
static void
learn(truth_t *t, const fonte_event_t *e)
{
    const char *type = fonte_event_type(e), *object = fonte_event_object(e);
    size_t len;
    const uint8_t *data = fonte_event_payload(e, &len);
    uint64_t id;
    bool created;

    if (strcmp(type, "user.renamed") == 0) {
        Shop__UserRenamed *m = shop__user_renamed__unpack(NULL, len, data);
        shop_user_t *u;
        t->user_events++;
        if (m == NULL || !shop_object_id(object, "user", &id) ||
            (u = shop_map_get(t->users, id)) == NULL)
            t->problems++;
        else
            snprintf(u->name, sizeof u->name, "%s", m->name);
        shop__user_renamed__free_unpacked(m, NULL);
        return;
    }
    if (strcmp(type, "user.created") == 0) {
        Shop__UserCreated *m = shop__user_created__unpack(NULL, len, data);
        shop_user_t *u;
        t->user_events++;
        if (m == NULL || !shop_object_id(object, "user", &id) ||
            (u = shop_map_put(t->users, id, &created)) == NULL) {
            t->problems++;
        } else {
            if (!created)
                mismatch("%s: created twice in the store", object);
            u->id = id;
            snprintf(u->name, sizeof u->name, "%s", m->name);
        }
        shop__user_created__free_unpacked(m, NULL);
        return;
    }
    if (!shop_object_id(object, "order", &id)) {
        t->problems++;
        return;
    }
    t->order_events++;
    if (strcmp(type, "order.placed") == 0) {
        Shop__OrderPlaced *m = shop__order_placed__unpack(NULL, len, data);
        truth_order_t *o;
        if (m == NULL || (o = shop_map_put(t->orders, id, &created)) == NULL)
            t->problems++;
        else
            o->user_id = m->user_id;
        shop__order_placed__free_unpacked(m, NULL);
        return;
    }
    truth_order_t *o = shop_map_get(t->orders, id);
    if (o == NULL) {
        t->problems++;
        return;
    }
    if (strcmp(type, "order.line_added") == 0) {
        Shop__OrderLineAdded *m =
            shop__order_line_added__unpack(NULL, len, data);
        if (m == NULL)
            t->problems++;
        else
            o->total_cents +=
                (int64_t) m->quantity * (int64_t) m->unit_price_cents;
        shop__order_line_added__free_unpacked(m, NULL);
    } else if (strcmp(type, "order.cancelled") == 0) {
        o->cancelled = true;
    }
}

/* Reads the truth from the store. */
static fonte_err
read_truth(fonte_client_t *c, truth_t *t)
{
    static const char *const types[] = {
        "user.created", "user.renamed", "order.placed", "order.line_added",
        "order.cancelled", "order.shipped",
    };
    fonte_fetch_opts_t fo;
    fonte_event_list_t *list = NULL;
    fonte_err rc;
    size_t it = 0;
    truth_order_t *o;
    uint64_t id;
    bool created;

    fonte_fetch_opts_init(&fo);
    fo.types = types;
    fo.n_types = sizeof types / sizeof types[0];
    fo.order = FONTE_ORDER_SEQUENCE;
    if ((rc = fonte_fetch(c, "*", &fo, &list)) != FONTE_OK)
        return rc;
    for (size_t i = 0; i < fonte_event_list_count(list); i++)
        learn(t, fonte_event_list_get(list, i));
    fonte_event_list_destroy(&list);

    while ((o = shop_map_next(t->orders, &it, &id)) != NULL) {
        shop_user_t *u = shop_map_put(t->users, o->user_id, &created);
        if (u == NULL)
            return FONTE_ENOMEM;
        if (created) {
            u->id = o->user_id;
            mismatch("order:%" PRIu64 " belongs to user:%" PRIu64
                     ", who was never created",
                     id, o->user_id);
        }
        if (!o->cancelled) {
            u->revenue_cents += o->total_cents;
            u->orders++;
        }
    }
    return FONTE_OK;
}

/* Waits until the artifact has seen as many order and user events as the
 * store holds (or the deadline); leaves the last read in *a. */
static fonte_err
read_artifact(const char *path, const truth_t *t, int64_t wait_us,
              shop_artifact_t *a)
{
    int64_t deadline = fonte_mono_us() + wait_us;
    size_t bad_line = 0;
    fonte_err rc;

    for (;;) {
        rc = shop_artifact_read(path, a, &bad_line);
        if (rc == FONTE_EDECODE) {
            fprintf(stderr, "verify: %s: line %zu is malformed\n", path,
                    bad_line);
            return rc;
        }
        if (rc == FONTE_OK && a->events >= t->order_events &&
            a->user_events >= t->user_events)
            return FONTE_OK;
        if (fonte_mono_us() >= deadline)
            return rc;
        if (rc == FONTE_OK)
            shop_artifact_free(a);
        struct timespec ts = { 0, 50 * 1000000L }; /* re-read: it is a file */
        nanosleep(&ts, NULL);
    }
}

static int
by_id(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *) x, b = *(const uint64_t *) y;
    return (a > b) - (a < b);
}

/* Compares user by user, in id order (shop_user_t and the ids sort by
 * their first member). */
static void
compare(truth_t *t, shop_artifact_t *a)
{
    char m1[32], m2[32];
    shop_map_t *seen = shop_map_new(sizeof(int));
    bool created;

    if (seen == NULL) {
        mismatch("out of memory");
        return;
    }
    qsort(a->users, a->n_users, sizeof *a->users, by_id);
    if (a->events != t->order_events)
        mismatch("the artifact has seen %" PRIu64 " order events, the store "
                 "holds %" PRIu64,
                 a->events, t->order_events);
    for (size_t i = 0; i < a->n_users; i++) {
        const shop_user_t *au = &a->users[i];
        const shop_user_t *tu = shop_map_get(t->users, au->id);
        int *times = shop_map_put(seen, au->id, &created);
        if (times != NULL && ++*times == 2)
            mismatch("user:%" PRIu64 " appears more than once in the "
                     "artifact",
                     au->id);
        if (tu == NULL) {
            mismatch("user:%" PRIu64 " is in the artifact but not in the "
                     "store",
                     au->id);
            continue;
        }
        if (au->revenue_cents != tu->revenue_cents ||
            au->orders != tu->orders)
            mismatch("user:%" PRIu64 " (%s): artifact %s in %" PRIu64
                     " orders, store %s in %" PRIu64 " orders",
                     au->id, tu->name,
                     shop_money(m1, sizeof m1, au->revenue_cents), au->orders,
                     shop_money(m2, sizeof m2, tu->revenue_cents),
                     tu->orders);
    }
    size_t it = 0, n_missing = 0;
    uint64_t id, *missing = calloc(shop_map_count(t->users) + 1, sizeof id);
    if (missing == NULL) {
        mismatch("out of memory");
        shop_map_destroy(&seen);
        return;
    }
    while (shop_map_next(t->users, &it, &id) != NULL)
        if (shop_map_get(seen, id) == NULL)
            missing[n_missing++] = id;
    qsort(missing, n_missing, sizeof id, by_id);
    for (size_t i = 0; i < n_missing; i++) {
        const shop_user_t *tu = shop_map_get(t->users, missing[i]);
        mismatch("user:%" PRIu64 " (%s) is missing from the artifact "
                 "(store: %s)",
                 missing[i], tu->name,
                 shop_money(m1, sizeof m1, tu->revenue_cents));
    }
    free(missing);
    shop_map_destroy(&seen);
}

static const char usage[] =
    "usage: shop-verify [flags]\n"
    "\n"
    "Recomputes revenue per user from fonte's store (the source of truth)\n"
    "and compares it with shop-revenue's artifact. Prints each mismatch\n"
    "and exits 1 if there is any; exits 0 with a summary otherwise.\n"
    "The listener's endpoint from FONTE_QUERY.\n";

int
main(int argc, char **argv)
{
    const char *artifact = "revenue.artifact";
    int64_t wait_us = 30000000;
    const flag_spec_t specs[] = {
        { "artifact", "SHOP_REVENUE_ARTIFACT", FLAG_STR, &artifact,
          "revenue's artifact (revenue.artifact)", NULL },
        { "wait", "SHOP_VERIFY_WAIT", FLAG_DURATION, &wait_us,
          "wait this long for revenue to catch up (30s)", NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
    };
    fonte_client_t *c = NULL;
    truth_t t = { 0 };
    shop_artifact_t a = { 0 };
    int status = 1;
    char money[32];
    fonte_err rc;

    int exit_code = flags_exit_code(
        flags_parse(specs, argc, argv, "shop-verify", usage, NULL, stdout,
                    stderr));
    if (exit_code >= 0)
        return exit_code;
    t.users = shop_map_new(sizeof(shop_user_t));
    t.orders = shop_map_new(sizeof(truth_order_t));
    if (t.users == NULL || t.orders == NULL)
        goto fail;
    if (shop_connect("shop-verify", &c) != FONTE_OK)
        goto fail;
    if ((rc = read_truth(c, &t)) != FONTE_OK) {
        fprintf(stderr, "verify: cannot read the store: %s\n",
                fonte_strerror(rc));
        goto fail;
    }
    rc = read_artifact(artifact, &t, wait_us, &a);
    if (rc == FONTE_ENOTFOUND) {
        mismatch("%s does not exist", artifact);
    } else if (rc != FONTE_OK) {
        fprintf(stderr, "verify: cannot read %s: %s\n", artifact,
                fonte_strerror(rc));
        goto fail;
    } else {
        compare(&t, &a);
    }
    if (t.problems > 0)
        mismatch("%" PRIu64 " stored events could not be understood",
                 t.problems);

    int64_t total = 0;
    size_t it = 0;
    const shop_user_t *u;
    while ((u = shop_map_next(t.users, &it, NULL)) != NULL)
        total += u->revenue_cents;
    if (mismatches > MAX_PRINTED)
        printf("verify: ... and %zu more mismatches\n",
               mismatches - MAX_PRINTED);
    if (mismatches > 0) {
        printf("verify: FAILED: %zu mismatches (%zu users, %zu orders in the "
               "store, total %s)\n",
               mismatches, shop_map_count(t.users), shop_map_count(t.orders),
               shop_money(money, sizeof money, total));
    } else {
        printf("verify: %zu users, %zu orders, revenue matches (total %s)\n",
               shop_map_count(t.users), shop_map_count(t.orders),
               shop_money(money, sizeof money, total));
        status = 0;
    }
fail:
    shop_artifact_free(&a);
    fonte_client_destroy(&c);
    shop_map_destroy(&t.users);
    shop_map_destroy(&t.orders);
    return status;
}
