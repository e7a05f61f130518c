/*
 * revenue.c - shop-revenue, the revenue service: it consumes the users'
 * and the orders' events (producer "revenue") and keeps one artifact,
 * revenue per user, in a store of its own (shop.h: a text file rewritten
 * atomically).
 *
 * What it keeps, and what it forgets (as real services do):
 *  - per user: id, name, revenue in cents (the lines of its orders,
 *    minus the orders cancelled), and the number of orders not cancelled;
 *  - per OPEN order only: its user and its running total. A line is
 *    folded into that total and into the user's revenue when it arrives,
 *    and the line itself is forgotten at once. The order's record is
 *    deleted when the order ends: order.cancelled subtracts its total
 *    from the user first; order.shipped (final: a shipped order cannot be
 *    cancelled) just forgets it.
 * So revenue cannot recompute anything from its own state: only the
 * events kept by fonte can check it (shop-verify) or rebuild it.
 *
 * The seed's trap, handled:
 *  - an order for a user it has never seen (order.placed can overtake
 *    user.created: they come from two producers) -> fonte_fetch of that
 *    user's history, applied before the order;
 *  - user.created for a user it already has (live after such a fetch, or
 *    replayed: every order's replay carries its user's history first) ->
 *    upsert: the name is updated, no second user is ever made.
 *
 * --rebuild starts from an empty artifact and asks fonte for a targeted
 * replay (to "revenue" only) of every user and every order, each with its
 * dependencies in causal order. It knows the rebuild is over when it has
 * received as many replayed events as the listener announced in the
 * replays' tickets (with a timeout), then writes the artifact and says so.
 *
 * Readiness: after subscribing it publishes revenue.started and waits to
 * hear it back through the broker; only then are its subscriptions
 * certainly in place, and it prints "shop-revenue: ready".
 *
 * --drop TYPE is a deliberately injected bug for the tests: events of
 * that type are counted as seen but not applied.
 *
 * Threads: one. Handlers run inside fonte_dispatch in main's loop.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "log.h"
#include "shop.h"
#include "shop.pb-c.h"

#define SAVE_EVERY_US 200000 /* artifact rewrite at most this often while busy */

typedef struct revenue {
    fonte_client_t *c;
    const char *artifact;
    const char *drop; /* the injected bug: this type is ignored */
    shop_map_t *users;  /* user id -> shop_user_t */
    shop_map_t *orders; /* open order id -> shop_order_t */
    shop_map_t *marks;  /* producer session -> shop_mark_t */
    uint64_t events;    /* order events seen (applied or not) */
    uint64_t user_events; /* user events received or fetched */
    uint64_t replayed;  /* replayed events received */
    uint64_t fetches, upserts, orphans, dropped, bad, duplicates, ahead;
    bool dirty;
    bool ready; /* our own revenue.started came back */
} revenue_t;

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
    (void) sig;
    stop = 1;
}

static bool
save(revenue_t *r)
{
    fonte_err rc = shop_artifact_write(r->artifact, r->events,
                                       r->user_events, r->users, r->orders,
                                       r->marks);
    if (rc != FONTE_OK) {
        flog(FLOG_ERROR, "revenue", "cannot write %s: %s", r->artifact,
             fonte_strerror(rc));
        return false;
    }
    r->dirty = false;
    return true;
}

/* user.created / user.renamed, live, replayed or fetched: an upsert. */
static void
apply_user(revenue_t *r, const fonte_event_t *e)
{
    const char *type = fonte_event_type(e);
    size_t len;
    const uint8_t *data = fonte_event_payload(e, &len);
    const char *name = NULL;
    uint64_t id;
    bool created;
    Shop__UserCreated *uc = NULL;
    Shop__UserRenamed *ur = NULL;

    if (!shop_object_id(fonte_event_object(e), "user", &id)) {
        r->bad++;
        return;
    }
    if (strcmp(type, "user.created") == 0 &&
        (uc = shop__user_created__unpack(NULL, len, data)) != NULL)
        name = uc->name;
    else if (strcmp(type, "user.renamed") == 0 &&
             (ur = shop__user_renamed__unpack(NULL, len, data)) != NULL)
        name = ur->name;
    if (name != NULL) {
        shop_user_t *u = shop_map_put(r->users, id, &created);
        if (u == NULL) {
            flog(FLOG_ERROR, "revenue", "out of memory");
            stop = 1;
        } else {
            if (!created && uc != NULL)
                r->upserts++; /* a user.created for a user we have */
            u->id = id;
            snprintf(u->name, sizeof u->name, "%s", name);
            r->dirty = true;
        }
    } else {
        r->bad++;
    }
    shop__user_created__free_unpacked(uc, NULL);
    shop__user_renamed__free_unpacked(ur, NULL);
}

/* The user, fetched from fonte first if we have never seen it. NULL only
 * when out of memory. */
static shop_user_t *
ensure_user(revenue_t *r, uint64_t id)
{
    shop_user_t *u = shop_map_get(r->users, id);
    char object[64];
    fonte_fetch_opts_t fo;
    fonte_event_list_t *history = NULL;
    bool created;
    fonte_err rc;

    if (u != NULL)
        return u;
    snprintf(object, sizeof object, "user:%" PRIu64, id);
    fonte_fetch_opts_init(&fo);
    fo.skip_dependencies = true;
    r->fetches++;
    rc = fonte_fetch(r->c, object, &fo, &history);
    if (rc == FONTE_OK) {
        for (size_t i = 0; i < fonte_event_list_count(history); i++)
            apply_user(r, fonte_event_list_get(history, i));
        /* learnt from the source of truth: seen, as far as verify's wait
         * for revenue to catch up is concerned (a live copy arriving later
         * counts again, which only makes that wait end sooner) */
        r->user_events += fonte_event_list_count(history);
        fonte_event_list_destroy(&history);
    } else if (rc != FONTE_ENOTFOUND) {
        flog(FLOG_WARN, "revenue", "fetch %s: %s", object,
             fonte_strerror(rc));
    }
    /* Not stored yet (its user.created is still on its way): a record
     * without a name, which that user.created will fill in. */
    if ((u = shop_map_put(r->users, id, &created)) != NULL && created)
        u->id = id;
    return u;
}

/* Whether to apply a live event now. A producer's events must be applied
 * in its order (a line before its order.placed would be an orphan), and
 * a subscriber may hear one twice or miss one: libfonte resends, go-back-N,
 * whatever the listener has not acknowledged (after a broker restart, a
 * drop at a high-water mark, a lost Ack). So, per producer session:
 *  - producer_seq == last + 1: apply;
 *  - <= last: a duplicate, skip;
 *  - > last + 1: missed some; skip and wait for the resend, which comes
 *    in order. A session whose first event heard is not seq 1 and which
 *    no resend completes within JOIN_GRACE_US started before this
 *    service did: join it there (what came before is a rebuild's job).
 * Replays are not filtered: they are deliberate (a rebuild starts from an
 * empty artifact). */
#define JOIN_GRACE_US 3000000
static bool
apply_now(revenue_t *r, const fonte_event_t *e)
{
    uint64_t seq = fonte_event_producer_seq(e);
    int64_t now = fonte_mono_us();
    bool created;
    shop_mark_t *k;

    if (fonte_event_is_replay(e))
        return true;
    k = shop_map_put(r->marks, fonte_event_session(e), &created);
    if (k == NULL)
        return true;
    if (created) {
        k->session = fonte_event_session(e);
        k->first_heard_us = now;
    }
    if (seq <= k->last_seq) {
        r->duplicates++;
        return false;
    }
    if (seq > k->last_seq + 1) {
        if (k->last_seq > 0 || now - k->first_heard_us < JOIN_GRACE_US) {
            r->ahead++;
            return false;
        }
        flog(FLOG_WARN, "revenue", "joined %s's session %016" PRIx64
             " at seq %" PRIu64 ": its earlier events are not counted",
             fonte_event_producer(e), k->session, seq);
    }
    k->last_seq = seq;
    return true;
}

static void
on_user(const fonte_event_t *e, void *arg)
{
    revenue_t *r = arg;

    if (!apply_now(r, e))
        return;
    r->user_events++;
    r->dirty = true;
    if (fonte_event_is_replay(e))
        r->replayed++;
    if (r->drop != NULL && strcmp(fonte_event_type(e), r->drop) == 0) {
        r->dropped++;
        return;
    }
    apply_user(r, e);
}

static void
order_placed(revenue_t *r, uint64_t id, const uint8_t *data, size_t len)
{
    Shop__OrderPlaced *m = shop__order_placed__unpack(NULL, len, data);
    shop_user_t *u;
    shop_order_t *o;
    bool created;

    if (m == NULL) {
        r->bad++;
        return;
    }
    if ((u = ensure_user(r, m->user_id)) == NULL ||
        (o = shop_map_put(r->orders, id, &created)) == NULL) {
        flog(FLOG_ERROR, "revenue", "out of memory");
        stop = 1;
    } else if (created) {
        u->orders++;
        o->id = id;
        o->user_id = m->user_id;
    } else {
        r->bad++; /* placed twice: keep the first */
    }
    shop__order_placed__free_unpacked(m, NULL);
}

static void
order_line(revenue_t *r, shop_order_t *o, const uint8_t *data, size_t len)
{
    Shop__OrderLineAdded *m = shop__order_line_added__unpack(NULL, len, data);
    shop_user_t *u = shop_map_get(r->users, o->user_id);

    if (m == NULL || u == NULL) {
        r->bad++;
    } else {
        int64_t amount = (int64_t) m->quantity * (int64_t) m->unit_price_cents;
        o->total_cents += amount;
        u->revenue_cents += amount;
    }
    shop__order_line_added__free_unpacked(m, NULL);
}

static void
on_order(const fonte_event_t *e, void *arg)
{
    revenue_t *r = arg;
    const char *type = fonte_event_type(e);
    size_t len;
    const uint8_t *data = fonte_event_payload(e, &len);
    uint64_t id;
    shop_order_t *o;

    if (!apply_now(r, e))
        return;
    r->events++;
    r->dirty = true;
    if (fonte_event_is_replay(e))
        r->replayed++;
    if (r->drop != NULL && strcmp(type, r->drop) == 0) {
        r->dropped++;
        return;
    }
    if (!shop_object_id(fonte_event_object(e), "order", &id)) {
        r->bad++;
        return;
    }
    if (strcmp(type, "order.placed") == 0) {
        order_placed(r, id, data, len);
        return;
    }
    if ((o = shop_map_get(r->orders, id)) == NULL) {
        r->orphans++; /* an order we never saw placed, or already ended */
        return;
    }
    if (strcmp(type, "order.line_added") == 0) {
        order_line(r, o, data, len);
    } else if (strcmp(type, "order.cancelled") == 0) {
        shop_user_t *u = shop_map_get(r->users, o->user_id);
        if (u != NULL) {
            u->revenue_cents -= o->total_cents;
            u->orders--;
        }
        shop_map_del(r->orders, id);
    } else if (strcmp(type, "order.shipped") == 0) {
        shop_map_del(r->orders, id); /* final: its detail is not needed */
    }
}

static void
on_started(const fonte_event_t *e, void *arg)
{
    revenue_t *r = arg;

    if (strcmp(fonte_event_producer(e), "revenue") == 0 &&
        fonte_event_session(e) == fonte_client_session(r->c))
        r->ready = true;
}

/* Publishes revenue.started and dispatches until it comes back. */
static bool
wait_ready(revenue_t *r, int64_t timeout_us)
{
    fonte_event_spec_t ev = { .type = "revenue.started",
                              .object = "service:revenue" };
    int64_t deadline = fonte_mono_us() + timeout_us, next = 0;

    while (!r->ready && !stop) {
        int64_t now = fonte_mono_us();
        if (now > deadline)
            return false;
        /* Our SUB may not be connected yet when the first one passes:
         * say it again every half second until one comes back. */
        if (now >= next) {
            if (fonte_publish(r->c, &ev) != FONTE_OK)
                return false;
            next = now + 500000;
        }
        fonte_dispatch(r->c, 50, NULL);
    }
    return r->ready;
}

/* Asks for one targeted replay, retrying while the listener is busy
 * (FONTE_EUNAVAILABLE: its republish queue is full), and keeps
 * dispatching meanwhile. */
static fonte_err
request_one(revenue_t *r, const char *object, const fonte_replay_opts_t *ro,
            uint64_t *expected, int64_t deadline)
{
    fonte_replay_ticket_t t;
    fonte_err rc;

    while ((rc = fonte_request_replay(r->c, object, ro, &t)) ==
               FONTE_EUNAVAILABLE &&
           fonte_mono_us() < deadline && !stop)
        fonte_dispatch(r->c, 20, NULL);
    if (rc == FONTE_OK)
        *expected += t.total;
    fonte_dispatch(r->c, 0, NULL);
    return rc;
}

/* The rebuild: a targeted replay of every user and every order. */
static bool
rebuild(revenue_t *r, int64_t timeout_us)
{
    static const char *const roots[] = { "user.created", "order.placed" };
    fonte_fetch_opts_t fo;
    fonte_replay_opts_t ro;
    fonte_event_list_t *list = NULL;
    uint64_t expected = 0;
    size_t n;
    int64_t t0 = fonte_mono_us(), deadline = t0 + timeout_us;
    fonte_err rc;

    /* Which objects exist: the first event of each user and each order,
     * read from the store over the query endpoint. */
    fonte_fetch_opts_init(&fo);
    fo.types = roots;
    fo.n_types = 2;
    fo.order = FONTE_ORDER_SEQUENCE;
    if ((rc = fonte_fetch(r->c, "*", &fo, &list)) != FONTE_OK) {
        flog(FLOG_ERROR, "revenue", "rebuild: cannot list objects: %s",
             fonte_strerror(rc));
        return false;
    }
    n = fonte_event_list_count(list);
    fonte_replay_opts_init(&ro);
    ro.target = "revenue";
    ro.reason = "rebuild revenue";
    for (size_t i = 0; i < n && !stop; i++) {
        const char *object = fonte_event_object(fonte_event_list_get(list, i));
        if ((rc = request_one(r, object, &ro, &expected, deadline)) !=
            FONTE_OK) {
            flog(FLOG_ERROR, "revenue", "rebuild: replay of %s: %s", object,
                 fonte_strerror(rc));
            fonte_event_list_destroy(&list);
            return false;
        }
    }
    fonte_event_list_destroy(&list);
    while (r->replayed < expected && !stop && fonte_mono_us() < deadline)
        fonte_dispatch(r->c, 100, NULL);
    if (r->replayed < expected) {
        flog(FLOG_ERROR, "revenue",
             "rebuild: %" PRIu64 " of %" PRIu64 " replayed events arrived",
             r->replayed, expected);
        return false;
    }
    if (!save(r))
        return false;
    printf("shop-revenue: rebuilt from %" PRIu64 " replayed events of %zu "
           "objects in %.1f s: %zu users (%" PRIu64 " replayed user.created "
           "upserted)\n",
           r->replayed, n, (double) (fonte_mono_us() - t0) / 1e6,
           shop_map_count(r->users), r->upserts);
    fflush(stdout);
    return true;
}

/* Loads the artifact left by a previous run, if any. */
static bool
load(revenue_t *r)
{
    shop_artifact_t a;
    size_t bad_line = 0;
    bool created;
    fonte_err rc = shop_artifact_read(r->artifact, &a, &bad_line);

    if (rc == FONTE_ENOTFOUND)
        return true;
    if (rc != FONTE_OK) {
        flog(FLOG_ERROR, "revenue", "cannot read %s (line %zu): %s",
             r->artifact, bad_line, fonte_strerror(rc));
        return false;
    }
    r->events = a.events;
    r->user_events = a.user_events;
    for (size_t i = 0; i < a.n_users; i++) {
        shop_user_t *u = shop_map_put(r->users, a.users[i].id, &created);
        if (u != NULL)
            *u = a.users[i];
    }
    for (size_t i = 0; i < a.n_orders; i++) {
        shop_order_t *o = shop_map_put(r->orders, a.orders[i].id, &created);
        if (o != NULL)
            *o = a.orders[i];
    }
    for (size_t i = 0; i < a.n_marks; i++) {
        shop_mark_t *k = shop_map_put(r->marks, a.marks[i].session, &created);
        if (k != NULL)
            *k = a.marks[i];
    }
    shop_artifact_free(&a);
    return true;
}

static const char usage[] =
    "usage: shop-revenue [flags]\n"
    "\n"
    "The shop's revenue service (producer \"revenue\"): consumes user.* and\n"
    "order.* events and keeps revenue per user in --artifact. Prints\n"
    "\"shop-revenue: ready\" once subscribed; SIGINT or SIGTERM writes the\n"
    "artifact and stops it. --rebuild starts empty and rebuilds the\n"
    "artifact from a targeted replay of every user and order.\n"
    "Endpoints from FONTE_INGRESS, FONTE_EGRESS, FONTE_QUERY.\n";

int
main(int argc, char **argv)
{
    revenue_t r = { .artifact = "revenue.artifact" };
    bool do_rebuild = false;
    int64_t ready_us = 15000000, rebuild_us = 60000000;
    const flag_spec_t specs[] = {
        { "artifact", "SHOP_REVENUE_ARTIFACT", FLAG_STR, &r.artifact,
          "the artifact file (revenue.artifact)", NULL },
        { "rebuild", "SHOP_REVENUE_REBUILD", FLAG_BOOL, &do_rebuild,
          "start empty and rebuild from a replay of every user and order",
          NULL },
        { "rebuild-timeout", "SHOP_REVENUE_REBUILD_TIMEOUT", FLAG_DURATION,
          &rebuild_us, "give up on a rebuild after (60s)", NULL },
        { "ready-timeout", "SHOP_REVENUE_READY_TIMEOUT", FLAG_DURATION,
          &ready_us, "give up if the broker does not answer in (15s)", NULL },
        { "drop", "SHOP_REVENUE_DROP", FLAG_STR, &r.drop,
          "INJECTED BUG for tests: ignore events of this type", NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
    };
    struct sigaction sa = { .sa_handler = on_signal };
    int status = 1;
    int64_t last_save = 0;

    int exit_code = flags_exit_code(
        flags_parse(specs, argc, argv, "shop-revenue", usage, NULL, stdout,
                    stderr));
    if (exit_code >= 0)
        return exit_code;
    if (r.drop != NULL && r.drop[0] == '\0')
        r.drop = NULL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    r.users = shop_map_new(sizeof(shop_user_t));
    r.orders = shop_map_new(sizeof(shop_order_t));
    r.marks = shop_map_new(sizeof(shop_mark_t));
    if (r.users == NULL || r.orders == NULL || r.marks == NULL)
        goto fail;
    if (!do_rebuild && !load(&r))
        goto fail;
    if (shop_connect("revenue", &r.c) != FONTE_OK)
        goto fail;
    if (fonte_subscribe(r.c, "user.", on_user, &r) != FONTE_OK ||
        fonte_subscribe(r.c, "order.", on_order, &r) != FONTE_OK ||
        fonte_subscribe(r.c, "revenue.started", on_started, &r) != FONTE_OK)
        goto fail;
    if (!wait_ready(&r, ready_us)) {
        flog(FLOG_ERROR, "revenue", "the broker did not answer in time");
        goto fail;
    }
    if (r.drop != NULL)
        flog(FLOG_WARN, "revenue", "INJECTED BUG: ignoring every %s", r.drop);
    printf("shop-revenue: ready (%zu users, %" PRIu64 " order events)\n",
           shop_map_count(r.users), r.events);
    fflush(stdout);
    if (do_rebuild && !rebuild(&r, rebuild_us))
        goto fail;

    while (!stop) {
        size_t n = 0;
        fonte_err rc = fonte_dispatch(r.c, 100, &n);
        int64_t now = fonte_mono_us();
        /* Write when idle, and at least every SAVE_EVERY_US while busy. */
        if (r.dirty && (rc == FONTE_ETIMEOUT || now - last_save >= SAVE_EVERY_US)) {
            if (!save(&r))
                goto fail;
            last_save = now;
        }
    }
    if (r.dirty && !save(&r))
        goto fail;
    status = 0;
fail:
    if (r.users != NULL)
        fprintf(stderr,
                "shop-revenue: %zu users, %zu open orders, %" PRIu64
                " order events, %" PRIu64 " replayed, %" PRIu64
                " fetches, %" PRIu64 " upserts, %" PRIu64 " orphans, %" PRIu64
                " dropped, %" PRIu64 " bad, %" PRIu64 " duplicates, %" PRIu64
                " ahead\n",
                shop_map_count(r.users), r.orders ? shop_map_count(r.orders) : 0,
                r.events, r.replayed, r.fetches, r.upserts, r.orphans,
                r.dropped, r.bad, r.duplicates, r.ahead);
    fonte_client_destroy(&r.c);
    shop_map_destroy(&r.users);
    shop_map_destroy(&r.orders);
    shop_map_destroy(&r.marks);
    return status;
}
