/*
 * shop.h - what the shop example's programs share (docs/shop.md): the
 * connection to fonte, publishing a protobuf payload, object names, a
 * small hash map, and the revenue artifact's file format.
 *
 * The programs (shop-users, shop-orders, shop-revenue, shop-driver,
 * shop-verify) are services and tools of a pretend e-commerce shop; they
 * use fonte only through <fonte/fonte.h>, as any service would.
 *
 * The artifact is revenue's own store: a text file, rewritten whole and
 * atomically (temporary file, fsync, rename) so a reader never sees half
 * of it. One line per record:
 *
 *     # comment
 *     events <order events revenue has seen>
 *     user_events <user events revenue has seen, replays included>
 *     user <id> <revenue cents> <orders> <name...>
 *     order <id> <user id> <total cents>       (open orders only)
 *     mark <producer session> <last producer_seq applied>
 *
 * Limits: names up to SHOP_NAME_MAX - 1 bytes; ids are 64-bit numbers.
 */
#ifndef SHOP_H
#define SHOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <fonte/fonte.h>
#include <protobuf-c/protobuf-c.h>

#define SHOP_NAME_MAX 96

/* Connects a client named service, endpoints from FONTE_INGRESS,
 * FONTE_EGRESS and FONTE_QUERY (else the defaults). Prints the reason on
 * stderr on failure. */
fonte_err shop_connect(const char *service, fonte_client_t **client_p);

/* Publishes one event whose payload is msg, packed; its payload_type is
 * msg's fully qualified protobuf name. dep may be NULL. */
fonte_err shop_publish(fonte_client_t *c, const char *type,
                       const char *object, const char *dep,
                       const ProtobufCMessage *msg);

/* The loop of a command-driven producer (shop-users, shop-orders): reads
 * stdin line by line and hands each line (newline removed) to apply,
 * which publishes and returns FONTE_OK, or FONTE_EINVAL for a line it
 * does not understand (reported on stderr, skipped). The line "flush"
 * waits until everything published is durable and prints
 * "<prog>: flushed <n>" on stdout. At end of input it flushes once more
 * (flush_ms at most) and returns the exit status: 0 if every command was
 * published and is durable, 1 otherwise. */
typedef fonte_err (*shop_command_fn)(fonte_client_t *c, char *line);
int shop_command_loop(fonte_client_t *c, const char *prog,
                      shop_command_fn apply, int flush_ms);

/* The whole main() of a command-driven producer: its one flag
 * (--flush-timeout), the client for service, then shop_command_loop.
 * prog is "shop-<service>". Returns the exit status. */
int shop_producer_main(int argc, char **argv, const char *service,
                       const char *prog, const char *usage,
                       shop_command_fn apply);

/* "<kind>:<id>" -> id. False if object is not of that kind or the id is
 * not a number. */
bool shop_object_id(const char *object, const char *kind, uint64_t *id);

/* cents -> "1234.56" (or "-0.50") into buf, which it returns. */
char *shop_money(char *buf, size_t len, int64_t cents);

/* ------------------------------------------------------------------ */
/* map: uint64 key -> fixed-size value, open addressing, linear probing,
 * deletion by backward shift (no tombstones). Not thread-safe. */

typedef struct shop_map shop_map_t;

shop_map_t *shop_map_new(size_t value_size);
void shop_map_destroy(shop_map_t **m_p);
size_t shop_map_count(const shop_map_t *m);
/* The value of key, or NULL. Valid until the next put or del. */
void *shop_map_get(const shop_map_t *m, uint64_t key);
/* The value of key, made (zeroed) if absent; *created says which. NULL
 * only when out of memory. Valid until the next put or del. */
void *shop_map_put(shop_map_t *m, uint64_t key, bool *created);
/* True if key was there. */
bool shop_map_del(shop_map_t *m, uint64_t key);
/* Iteration: start with *it = 0; returns the next value (and its key), or
 * NULL at the end. The map must not change meanwhile. */
void *shop_map_next(const shop_map_t *m, size_t *it, uint64_t *key);

/* ------------------------------------------------------------------ */
/* the revenue artifact */

typedef struct shop_user {
    uint64_t id;
    int64_t revenue_cents; /* lines of its orders, minus cancelled ones */
    uint64_t orders;       /* placed and not cancelled */
    char name[SHOP_NAME_MAX];
} shop_user_t;

typedef struct shop_order {
    uint64_t id;
    uint64_t user_id;
    int64_t total_cents; /* its lines so far */
} shop_order_t;

/* How far revenue has applied one producer session's live events (the
 * I/O of a producer resends after a lost Ack, and subscribers may then
 * hear an event twice). */
typedef struct shop_mark {
    uint64_t session;
    uint64_t last_seq;
    int64_t first_heard_us; /* not stored in the artifact */
} shop_mark_t;

/* The artifact as read back: every row, duplicates kept (a duplicate user
 * row is exactly what shop-verify looks for). */
typedef struct shop_artifact {
    uint64_t events;      /* order events seen */
    uint64_t user_events; /* user events seen (a replay may repeat them) */
    shop_user_t *users;
    size_t n_users;
    shop_order_t *orders;
    size_t n_orders;
    shop_mark_t *marks;
    size_t n_marks;
} shop_artifact_t;

/* Writes the artifact atomically: path.tmp, fsync, rename to path.
 * users and orders map ids to shop_user_t / shop_order_t, marks
 * sessions to shop_mark_t. FONTE_EIO (and
 * errno) on failure; the old file, if any, is then untouched. */
fonte_err shop_artifact_write(const char *path, uint64_t events,
                              uint64_t user_events, const shop_map_t *users,
                              const shop_map_t *orders,
                              const shop_map_t *marks);

/* Reads path into *a (free with shop_artifact_free). FONTE_ENOTFOUND if
 * there is no such file, FONTE_EDECODE for a malformed line (its number
 * in *bad_line when not NULL), FONTE_EIO, FONTE_ENOMEM. */
fonte_err shop_artifact_read(const char *path, shop_artifact_t *a,
                             size_t *bad_line);
void shop_artifact_free(shop_artifact_t *a);

#endif
