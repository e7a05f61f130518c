/*
 * test_store.c - listener/store.c: the key schema, batches, counters,
 * watermarks, snapshots and iterators, and the data-dir errors, on a real
 * LevelDB in a temporary directory.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "logscan.h"
#include "readers.h"
#include "store.h"
#include "testutil.h"

static char dir[64];
static const codec_limits_t lim = CODEC_LIMITS_DEFAULT;

static void
setup(void)
{
    strcpy(dir, "/tmp/fonte-test-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
    tu_rmtree(dir);
}

TestSuite(store, .init = setup, .fini = teardown);

static store_t *
open_at(const char *path)
{
    store_opts_t o;
    store_t *s = NULL;
    char err[512];
    store_opts_init(&o);
    o.dir = path;
    o.sync = false;
    fonte_err rc = store_open(&o, &s, err, sizeof err);
    cr_assert_eq(rc, FONTE_OK, "store_open: %s", err);
    return s;
}

static char *
sub(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* An encoded event, kept with its view. */
typedef struct enc {
    codec_buf_t topic, body;
    codec_view_t view;
} enc_t;

/* Encodes ev (and frees it) with its view. */
static enc_t
enc_event(Fonte__Event *ev)
{
    enc_t e;
    cr_assert_eq(codec_event_encode(ev, &lim, &e.topic, &e.body), FONTE_OK);
    codec_event_free(&ev);
    cr_assert_eq(codec_event_scan(e.body.data, e.body.len, &lim, &e.view),
                 FONTE_OK);
    return e;
}

static enc_t
encode(const char *type, const char *object, const char *producer,
       uint64_t session, uint64_t pseq, const char *dep1, const char *dep2)
{
    Fonte__Event *ev = tu_event(type, object, producer, session, pseq);
    if (dep1)
        tu_event_add_dep(ev, dep1);
    if (dep2)
        tu_event_add_dep(ev, dep2);
    return enc_event(ev);
}

static void
enc_free(enc_t *e)
{
    codec_buf_free(&e->topic);
    codec_buf_free(&e->body);
}

/* Encodes and puts one event; returns its seq. */
static uint64_t
put(store_batch_t *b, const char *type, const char *object,
    const char *producer, uint64_t session, uint64_t pseq, const char *dep1,
    const char *dep2)
{
    enc_t e = encode(type, object, producer, session, pseq, dep1, dep2);
    uint64_t seq = 0;
    cr_assert_eq(store_batch_put(b, &e.view, e.body.data, e.body.len, &seq),
                 FONTE_OK);
    enc_free(&e);
    return seq;
}

/* Collects the seqs (or names) of an iterator into out, "1,2,3" form. */
static void
collect(store_iter_t *it, char *out, size_t cap)
{
    store_item_t item;
    size_t n = 0;
    out[0] = '\0';
    while (store_iter_next(it, &item)) {
        if (item.name.len)
            n += (size_t) snprintf(out + n, cap - n, "%s%.*s", n ? "," : "",
                                   (int) item.name.len, item.name.ptr);
        else
            n += (size_t) snprintf(out + n, cap - n, "%s%llu", n ? "," : "",
                                   (unsigned long long) item.seq);
    }
    cr_assert_eq(store_iter_error(it), FONTE_OK);
    store_iter_destroy(&it);
    cr_assert_null(it);
}

Test(store, empty_store_has_zero_counters)
{
    store_t *s = open_at(sub("db"));
    store_counts_t c;
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, 0);
    cr_assert_eq(c.events, 0);
    cr_assert_eq(c.objects, 0);
    cr_assert_eq(c.sessions, 0);
    cr_assert_str_eq(store_dir(s), sub("db"));
    cr_assert_gt(store_disk_bytes(s), 0);
    store_close(&s);
    cr_assert_null(s);
    store_close(&s); /* NULL-safe */
}

Test(store, batch_assigns_contiguous_seqs_and_writes_every_index)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    char got[256];
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    cr_assert_eq(put(b, "user.created", "user:7", "shop", 9, 1, NULL, NULL), 1);
    cr_assert_eq(put(b, "order.placed", "order:1", "shop", 9, 2, "user:7",
                     "sku:3"), 2);
    cr_assert_eq(put(b, "order.paid", "order:1", "pay", 4, 1, "user:7", NULL),
                 3);
    cr_assert_eq(store_batch_count(b), 3);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    cr_assert_eq(store_batch_count(b), 0);

    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    cr_assert_eq(store_snap_last_seq(snap), 3);
    cr_assert_eq(store_iter_events(snap, 0, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "1,2,3");
    cr_assert_eq(store_iter_object(snap, "order:1", 7, 0, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "2,3");
    cr_assert_eq(store_iter_object(snap, "order:", 6, 0, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "", "a prefix of an object name matches nothing");
    cr_assert_eq(store_iter_type(snap, "user.created", 12, 0, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "1");
    cr_assert_eq(store_iter_deps(snap, "order:1", 7, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "sku:3,user:7");
    cr_assert_eq(store_iter_dependents(snap, "user:7", 6, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "order:1");
    cr_assert_eq(store_iter_deps(snap, "user:7", 6, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "");

    void *data = NULL;
    size_t len = 0;
    enc_t e = encode("order.placed", "order:1", "shop", 9, 2, "user:7",
                     "sku:3");
    cr_assert_eq(store_get_event(snap, 2, &data, &len), FONTE_OK);
    cr_assert_eq(len, e.body.len);
    cr_assert_eq(memcmp(data, e.body.data, len), 0, "stored as received");
    store_free(data);
    enc_free(&e);
    cr_assert_eq(store_get_event(snap, 4, &data, &len), FONTE_ENOTFOUND);
    cr_assert_null(data);

    store_snap_destroy(&snap);
    cr_assert_null(snap);
    store_batch_destroy(&b);
    store_close(&s);
}

Test(store, iterators_start_after_seq)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    char got[256];
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (uint64_t i = 1; i <= 5; i++)
        put(b, "a.b", i % 2 ? "x:1" : "x:2", "p", 1, i, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    cr_assert_eq(store_iter_events(snap, 3, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "4,5");
    cr_assert_eq(store_iter_object(snap, "x:1", 3, 1, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "3,5");
    cr_assert_eq(store_iter_type(snap, "a.b", 3, 4, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "5");
    cr_assert_eq(store_iter_events(snap, UINT64_MAX, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "");
    store_snap_destroy(&snap);
    store_batch_destroy(&b);
    store_close(&s);
}

Test(store, reader_finds_an_objects_first_seq_and_still_gets_events)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    /* x:1 at 2 and 4; x:10 (x:1 is its prefix) at 1 and 3 */
    put(b, "a.b", "x:10", "p", 1, 1, NULL, NULL);
    put(b, "a.b", "x:1", "p", 1, 2, NULL, NULL);
    put(b, "a.b", "x:10", "p", 1, 3, NULL, NULL);
    put(b, "a.b", "x:1", "p", 1, 4, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_snap_t *snap = NULL;
    store_reader_t *r = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    cr_assert_eq(store_reader_new(snap, &r), FONTE_OK);
    uint64_t first = 99;
    const void *data;
    size_t len;
    cr_assert_eq(store_reader_first(r, "x:1", 3, 0, &first), FONTE_OK);
    cr_assert_eq(first, 2);
    cr_assert_eq(store_reader_first(r, "x:1", 3, 2, &first), FONTE_OK);
    cr_assert_eq(first, 4);
    cr_assert_eq(store_reader_first(r, "x:1", 3, 4, &first), FONTE_OK);
    cr_assert_eq(first, 0, "nothing after the last one");
    cr_assert_eq(store_reader_first(r, "x:10", 4, 0, &first), FONTE_OK);
    cr_assert_eq(first, 1);
    cr_assert_eq(store_reader_first(r, "x:", 2, 0, &first), FONTE_OK);
    cr_assert_eq(first, 0, "a prefix of names is not an object");
    cr_assert_eq(store_reader_first(r, "zz", 2, 0, &first), FONTE_OK);
    cr_assert_eq(first, 0, "past the last key");
    static char huge[1100];
    memset(huge, 'x', sizeof huge);
    cr_assert_eq(store_reader_first(r, huge, sizeof huge, 0, &first),
                 FONTE_ELIMIT);
    /* the reader still reads events after a lookup */
    cr_assert_eq(store_reader_get(r, 3, &data, &len), FONTE_OK);
    cr_assert_gt(len, 0);
    cr_assert_eq(store_reader_first(r, "x:1", 3, 0, &first), FONTE_OK);
    cr_assert_eq(store_reader_get(r, 4, &data, &len), FONTE_OK);
    cr_assert_eq(store_reader_get(r, 5, &data, &len), FONTE_ENOTFOUND);
    store_reader_destroy(&r);
    /* a reader from a bulk snapshot (read options of its own) reads the
     * same snapshot: an event written after it is not seen */
    store_snap_bulk(snap);
    put(b, "a.b", "x:1", "p", 1, 5, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    cr_assert_eq(store_reader_new(snap, &r), FONTE_OK);
    cr_assert_eq(store_reader_first(r, "x:1", 3, 2, &first), FONTE_OK);
    cr_assert_eq(first, 4);
    cr_assert_eq(store_reader_first(r, "x:1", 3, 4, &first), FONTE_OK);
    cr_assert_eq(first, 0, "event 5 came after the snapshot");
    cr_assert_eq(store_reader_get(r, 4, &data, &len), FONTE_OK);
    cr_assert_eq(store_reader_get(r, 5, &data, &len), FONTE_ENOTFOUND);
    store_reader_destroy(&r);
    store_snap_destroy(&snap);
    store_batch_destroy(&b);
    store_close(&s);
}

Test(store, counters_count_objects_and_sessions_once_and_survive_reopen)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    store_counts_t c;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    put(b, "t", "o:1", "p", 1, 1, NULL, NULL);
    put(b, "t", "o:1", "p", 1, 2, NULL, NULL); /* same object, same batch */
    put(b, "t", "o:2", "q", 2, 1, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, 3);
    cr_assert_eq(c.events, 3);
    cr_assert_eq(c.objects, 2);
    cr_assert_eq(c.sessions, 2);

    put(b, "t", "o:2", "p", 1, 3, NULL, NULL); /* known object, session */
    put(b, "t", "o:3", "p", 3, 1, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    store_close(&s);

    s = open_at(sub("db"));
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, 5);
    cr_assert_eq(c.events, 5);
    cr_assert_eq(c.objects, 3);
    cr_assert_eq(c.sessions, 3);
    /* A fresh process does not know o:1 from its cache: the seek must. */
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    put(b, "t", "o:1", "p", 1, 4, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_counts(s, &c);
    cr_assert_eq(c.objects, 3);
    cr_assert_eq(c.last_seq, 6);
    store_batch_destroy(&b);
    store_close(&s);
}


/* Asserts that s holds exactly one producer session, name/session with
 * watermark last; returns its item (its name's bytes are gone). */
static store_item_t
only_session(store_t *s, const char *name, uint64_t session, uint64_t last)
{
    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    store_item_t item, none;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    cr_assert_eq(store_iter_sessions(snap, &it), FONTE_OK);
    cr_assert(store_iter_next(it, &item));
    cr_assert_eq(item.name.len, strlen(name));
    cr_assert_eq(memcmp(item.name.ptr, name, item.name.len), 0);
    cr_assert_eq(item.session, session);
    cr_assert_eq(item.last, last);
    cr_assert_not(store_iter_next(it, &none), "another session");
    store_iter_destroy(&it);
    store_snap_destroy(&snap);
    item.name.ptr = NULL;
    return item;
}

Test(store, watermarks_include_the_open_batch_and_persist)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    uint64_t last = 99;
    codec_slice_t shop = { "shop", 4 };
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    cr_assert_eq(store_batch_watermark(b, shop, 7, &last), FONTE_OK);
    cr_assert_eq(last, 0);
    put(b, "t", "o:1", "shop", 7, 1, NULL, NULL);
    put(b, "t", "o:1", "shop", 7, 2, NULL, NULL);
    cr_assert_eq(store_batch_watermark(b, shop, 7, &last), FONTE_OK);
    cr_assert_eq(last, 2);
    cr_assert_eq(store_batch_sessions(b), 1);
    const store_session_t *ss = store_batch_session(b, 0);
    cr_assert_eq(ss->session, 7);
    cr_assert_eq(ss->last, 2);
    cr_assert_eq(ss->committed, 0);
    cr_assert_eq(ss->producer.len, 4);
    cr_assert_eq(memcmp(ss->producer.ptr, "shop", 4), 0);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    cr_assert_eq(store_batch_sessions(b), 1, "kept for the acks");

    /* An out-of-order put is the caller's bug: refused, nothing added. */
    enc_t e = encode("t", "o:1", "shop", 7, 5, NULL, NULL);
    cr_assert_eq(store_batch_put(b, &e.view, e.body.data, e.body.len, NULL),
                 FONTE_EINVAL);
    enc_free(&e);
    cr_assert_eq(store_batch_count(b), 0);
    store_batch_destroy(&b);
    store_close(&s);

    s = open_at(sub("db"));
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    cr_assert_eq(store_batch_watermark(b, shop, 7, &last), FONTE_OK);
    cr_assert_eq(last, 2);
    store_item_t item = only_session(s, "shop", 7, 2);
    cr_assert_eq(item.time_us, 1700000000000000);
    store_batch_destroy(&b);
    store_close(&s);
}

/* A put refused after its session was looked up (here the sequence rule
 * skipped by the caller: FONTE_EINVAL; in the store, an object lookup
 * that fails) leaves that session in the batch with nothing of it: the
 * commit writes no `p` key for it and does not count it as a session. */
Test(store, a_session_whose_put_failed_gets_no_watermark)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    enc_t e = encode("t", "o:1", "ghost", 9, 5, NULL, NULL);
    cr_assert_eq(store_batch_put(b, &e.view, e.body.data, e.body.len, NULL),
                 FONTE_EINVAL, "producer_seq 5 of a new session");
    enc_free(&e);
    put(b, "t", "o:1", "real", 7, 1, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);

    store_counts_t c;
    store_counts(s, &c);
    cr_assert_eq(c.sessions, 1);
    cr_assert_eq(c.events, 1);
    only_session(s, "real", 7, 1); /* and no p key for the ghost */
    uint64_t last = 99;
    codec_slice_t ghost = { "ghost", 5 };
    cr_assert_eq(store_batch_watermark(b, ghost, 9, &last), FONTE_OK);
    cr_assert_eq(last, 0);
    store_batch_destroy(&b);
    store_close(&s);
}

Test(store, cleared_batch_writes_nothing)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    store_counts_t c;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    put(b, "t", "o:1", "p", 1, 1, NULL, NULL);
    store_batch_clear(b);
    cr_assert_eq(store_batch_commit(b), FONTE_OK); /* empty: a no-op */
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, 0);
    cr_assert_eq(c.objects, 0);
    /* The same session starts again at 1. */
    cr_assert_eq(put(b, "t", "o:1", "p", 1, 1, NULL, NULL), 1);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_counts(s, &c);
    cr_assert_eq(c.objects, 1);
    store_batch_destroy(&b);
    store_close(&s);
}

Test(store, snapshot_does_not_see_later_commits)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    store_snap_t *snap = NULL;
    store_iter_t *it = NULL;
    char got[64];
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    put(b, "t", "o:1", "p", 1, 1, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    put(b, "t", "o:1", "p", 1, 2, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    cr_assert_eq(store_snap_last_seq(snap), 1);
    cr_assert_eq(store_iter_object(snap, "o:1", 3, 0, &it), FONTE_OK);
    collect(it, got, sizeof got);
    cr_assert_str_eq(got, "1");
    store_snap_destroy(&snap);
    store_batch_destroy(&b);
    store_close(&s);
}

Test(store, event_keys_match_what_a_batch_writes)
{
    store_kv_t kvs[8];
    char keys[512];
    enc_t e = encode("order.placed", "order:1", "shop", 9, 2, "user:7", NULL);
    size_t n = store_event_keys(42, &e.view, e.body.data, e.body.len, kvs, 8,
                                keys, sizeof keys);
    cr_assert_eq(n, 5);
    cr_assert_eq(kvs[0].key_len, 9);
    cr_assert_eq(memcmp(kvs[0].key, "e\0\0\0\0\0\0\0\x2a", 9), 0);
    cr_assert_eq(kvs[0].value_len, e.body.len);
    cr_assert_eq(kvs[1].key_len, 17);
    cr_assert_eq(memcmp(kvs[1].key, "oorder:1\0\0\0\0\0\0\0\0\x2a", 17), 0);
    cr_assert_eq(memcmp(kvs[2].key, "torder.placed\0", 14), 0);
    cr_assert_eq(kvs[3].key_len, 15);
    cr_assert_eq(memcmp(kvs[3].key, "dorder:1\0user:7", 15), 0);
    cr_assert_eq(memcmp(kvs[4].key, "ruser:7\0order:1", 15), 0);
    cr_assert_eq(store_event_keys(42, &e.view, e.body.data, e.body.len, kvs,
                                  2, keys, sizeof keys), 0, "too small");

    /* Raw writes land as given (the benchmark's baseline). */
    store_t *s = open_at(sub("db"));
    cr_assert_eq(store_write_raw(s, kvs, n), FONTE_OK);
    store_snap_t *snap = NULL;
    void *data;
    size_t len;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    cr_assert_eq(store_get_event(snap, 42, &data, &len), FONTE_OK);
    cr_assert_eq(len, e.body.len);
    store_free(data);
    store_snap_destroy(&snap);
    store_close(&s);
    enc_free(&e);
}

Test(store, second_open_of_a_dir_is_locked)
{
    store_t *s = open_at(sub("db")), *s2 = NULL;
    store_opts_t o;
    char err[512];
    store_opts_init(&o);
    o.dir = sub("db");
    cr_assert_eq(store_open(&o, &s2, err, sizeof err), FONTE_ESTORE);
    cr_assert_null(s2);
    cr_assert_not_null(strstr(err, "locked"), "%s", err);
    cr_assert_not_null(strstr(err, sub("db")), "%s", err);
    cr_assert_null(strchr(err, '\n'), "one line");
    store_close(&s);
}

Test(store, corrupt_dir_is_a_store_error)
{
    store_t *s = open_at(sub("db"));
    store_close(&s);
    FILE *f = fopen(sub("db/CURRENT"), "w");
    cr_assert_not_null(f);
    fputs("MANIFEST-999999\n", f);
    fclose(f);
    store_opts_t o;
    char err[512];
    store_opts_init(&o);
    o.dir = sub("db");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, sub("db")), "%s", err);
    cr_assert_not_null(strstr(err, "corrupt"), "%s", err);
}

Test(store, unwritable_dir_is_a_store_error)
{
    /* The parent is a regular file: nothing can be created (this works
     * as root too, where permission bits do not stop anything). */
    int fd = open(sub("file"), O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    store_opts_t o;
    store_t *s = NULL;
    char err[512];
    store_opts_init(&o);
    o.dir = sub("file/db");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, sub("file/db")), "%s", err);
    cr_assert_not_null(strstr(err, "Not a directory"), "%s", err);
    if (geteuid() != 0) {
        cr_assert_eq(mkdir(sub("ro"), 0500), 0);
        o.dir = sub("ro");
        cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
        cr_assert_not_null(strstr(err, "not writable"), "%s", err);
    }
}

Test(store, repair_rebuilds_a_lost_manifest)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (uint64_t i = 1; i <= 100; i++)
        put(b, "t", "o:1", "p", 1, i, NULL, NULL);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    store_close(&s);
    cr_assert_eq(unlink(sub("db/CURRENT")), 0);

    char msg[512];
    cr_assert_eq(store_repair(sub("db"), msg, sizeof msg), FONTE_OK, "%s",
                 msg);
    cr_assert_not_null(strstr(msg, "last_seq=100"), "%s", msg);
    s = open_at(sub("db"));
    store_counts_t c;
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, 100);
    cr_assert_eq(c.objects, 1);
    store_close(&s);

    cr_assert_eq(store_repair(sub("nothing"), msg, sizeof msg), FONTE_ESTORE);
    cr_assert_not_null(strstr(msg, sub("nothing")), "%s", msg);
}

/* Entries in dir other than . and .., -1 if it cannot be read. */
static int
dir_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* --repair (and any open without create: --verify, the bench) on a path
 * that holds no store makes nothing there: LevelDB would make the
 * directory, LOCK and LOG before finding no store, and a repair would
 * then "succeed" on them with an empty store. */
Test(store, nothing_is_made_where_there_is_no_store)
{
    store_opts_t o;
    store_t *s = NULL;
    char err[512], msg[512];
    struct stat st;

    store_opts_init(&o);
    o.create = false;
    o.dir = sub("absent");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "not a fonte store (No such file or "
                                   "directory)"), "%s", err);
    cr_assert_eq(stat(sub("absent"), &st), -1, "the directory was made");

    int fd = open(sub("plain"), O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    o.dir = sub("plain");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_not_null(strstr(err, "not usable as a data directory (not a "
                                   "directory)"), "%s", err);

    cr_assert_eq(mkdir(sub("empty"), 0755), 0);
    o.dir = sub("empty");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_not_null(strstr(err, "not a fonte store (no LevelDB database "
                                   "in it"), "%s", err);
    cr_assert_eq(dir_entries(sub("empty")), 0);

    cr_assert_eq(store_repair(sub("empty"), msg, sizeof msg), FONTE_ESTORE);
    cr_assert_not_null(strstr(msg, "not a fonte store (no LevelDB table, "
                                   "log or CURRENT file in it): nothing to "
                                   "repair"), "%s", msg);
    cr_assert_eq(dir_entries(sub("empty")), 0);
}

/* LevelDB's RepairDB takes no lock. A repair of the directory of a store
 * that another process has open (a live listener) is refused, and
 * changes nothing: it would move the log that process appends to, and
 * what it acknowledged after would be lost. Once the other process has
 * closed it, the same repair runs. */
Test(store, repair_is_refused_while_another_process_has_the_store_open)
{
    int ready[2], done[2];
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(done), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* the live listener: opens, says so, waits */
        store_opts_t o;
        store_t *s = NULL;
        char err[512], c = 0;
        close(ready[0]);
        close(done[1]); /* so that the test's end is an EOF here */
        store_opts_init(&o);
        o.dir = sub("db");
        if (store_open(&o, &s, err, sizeof err) != FONTE_OK ||
            write(ready[1], "r", 1) != 1)
            _exit(1);
        if (read(done[0], &c, 1) < 0) /* EOF or a byte: the test is done */
            _exit(1);
        store_close(&s);
        _exit(0);
    }
    close(ready[1]);
    close(done[0]);
    struct pollfd pfd = { .fd = ready[0], .events = POLLIN };
    cr_assert_eq(poll(&pfd, 1, 10000), 1, "the child did not open the store");
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    int before = dir_entries(sub("db"));

    char msg[512];
    cr_assert_eq(store_repair(sub("db"), msg, sizeof msg), FONTE_ESTORE);
    cr_assert_not_null(strstr(msg, "locked by another process (is a listener "
                                   "running on it? stop it first): nothing "
                                   "was changed"), "%s", msg);
    cr_assert_eq(dir_entries(sub("db")), before, "files moved or made");
    struct stat st;
    cr_assert_eq(stat(sub("db/lost"), &st), -1, "RepairDB ran");

    close(done[1]); /* the child closes the store and exits */
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 1000 && (w = waitpid(pid, &status, WNOHANG)) == 0;
         i++)
        poll(NULL, 0, 10); /* a child's exit has no fd to wait on */
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    cr_assert_eq(w, pid, "the child did not exit within 10 s");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    cr_assert_eq(store_repair(sub("db"), msg, sizeof msg), FONTE_OK, "%s",
                 msg);
}

/* A LOCK that cannot be opened (here a directory, which even root
 * cannot open for writing) refuses the repair with the path and the
 * system's reason, and nothing in the store changes. */
Test(store, repair_is_refused_when_its_lock_cannot_be_opened)
{
    store_t *s = open_at(sub("db"));
    store_close(&s);
    cr_assert_eq(unlink(sub("db/LOCK")), 0);
    cr_assert_eq(mkdir(sub("db/LOCK"), 0755), 0);
    int before = dir_entries(sub("db"));

    char msg[512], want[512];
    cr_assert_eq(store_repair(sub("db"), msg, sizeof msg), FONTE_ESTORE);
    snprintf(want, sizeof want, "data dir %s: cannot lock %s/LOCK (%s): "
             "nothing was changed", sub("db"), sub("db"), strerror(EISDIR));
    cr_assert_str_eq(msg, want);
    cr_assert_eq(dir_entries(sub("db")), before, "files moved or made");
    struct stat st;
    cr_assert_eq(stat(sub("db/lost"), &st), -1, "RepairDB ran");
}

/* Scans every `e` key of snap: the events read (each non-empty), the
 * iterator's error at the end into *rc. */
static size_t
scan_events(store_snap_t *snap, fonte_err *rc)
{
    store_iter_t *it = NULL;
    store_item_t item;
    size_t n = 0;

    cr_assert_eq(store_iter_events(snap, 0, &it), FONTE_OK);
    while (store_iter_next(it, &item))
        n += item.value.len > 0;
    *rc = store_iter_error(it);
    store_iter_destroy(&it);
    return n;
}

/* Mappings of the store's table files in this process (/proc/self/maps). */
static int
table_mappings(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    int n = 0;
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, path) != NULL && strstr(line, ".ldb") != NULL)
            n++;
    fclose(f);
    return n;
}

static int
table_files(const char *path)
{
    char cmd[256], out[32] = "";
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.ldb$'", path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(out, sizeof out, p));
    pclose(p);
    return atoi(out);
}

Test(store, tables_are_read_with_pread_not_mmapped)
{
    /* a 64 KiB memtable (LevelDB's least) makes tables of 4 000 events */
    store_opts_t o;
    store_t *s = NULL;
    char err[512];
    store_opts_init(&o);
    o.dir = sub("db");
    o.sync = false;
    o.write_buffer = 64 << 10;
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_OK, "%s", err);
    for (uint64_t k = 0; k < 8; k++) {
        store_batch_t *b = NULL;
        cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
        for (uint64_t i = 1; i <= 500; i++) {
            char obj[32];
            snprintf(obj, sizeof obj, "order:%llu",
                     (unsigned long long) (i % 37));
            put(b, "order.placed", obj, "p", 1, k * 500 + i, "user:1", NULL);
        }
        cr_assert_eq(store_batch_commit(b), FONTE_OK);
        store_batch_destroy(&b);
    }
    store_close(&s);
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_gt(table_files(o.dir), 0, "the events are in table files");

    /* read every event back, by a scan and by gets */
    store_snap_t *snap = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    fonte_err scan_rc;
    cr_assert_eq(scan_events(snap, &scan_rc), 4000);
    cr_assert_eq(scan_rc, FONTE_OK);
    for (uint64_t seq = 1; seq <= 4000; seq += 397) {
        void *data = NULL;
        size_t len = 0;
        cr_assert_eq(store_get_event(snap, seq, &data, &len), FONTE_OK);
        cr_assert_gt(len, 0);
        store_free(data);
    }

    if (strcmp(store_table_reads(), "pread") == 0)
        cr_assert_eq(table_mappings(o.dir), 0,
                     "no table file is mapped into the process");
    else
        cr_assert_gt(table_mappings(o.dir), 0,
                     "an mmap build maps the tables it read");
    store_snap_destroy(&snap);
    store_close(&s);
}

/* ------------------------------------------------------------------ */
/* logscan: the log read ahead on a thread of its own                  */

TestSuite(logscan, .init = setup, .fini = teardown);

/* A store of n events; every `big_every`-th (if not 0) has a payload of
 * big bytes, the others 40. */
static store_t *
scan_store(uint64_t n, uint64_t big_every, size_t big)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    char obj[32];
    uint8_t *pay = calloc(1, big > 40 ? big : 40);
    cr_assert_not_null(pay);
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (uint64_t i = 1; i <= n; i++) {
        snprintf(obj, sizeof obj, "o:%llu", (unsigned long long) (i % 7));
        Fonte__Event *ev = tu_event("a.b", obj, "p", 1, i);
        size_t plen = big_every && i % big_every == 0 ? big : 40;
        memset(pay, (int) (i & 0xff), plen);
        tu_event_set_payload(ev, pay, plen, "raw");
        enc_t e = enc_event(ev);
        uint64_t seq = 0;
        cr_assert_eq(store_batch_put(b, &e.view, e.body.data, e.body.len,
                                     &seq), FONTE_OK);
        cr_assert_eq(seq, i);
        enc_free(&e);
        if (i % 1000 == 0)
            cr_assert_eq(store_batch_commit(b), FONTE_OK);
    }
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    free(pay);
    return s;
}

/* Asserts that item is event seq, with the bytes a get of it gives. */
static void
check_item(store_snap_t *snap, const store_item_t *item, uint64_t seq)
{
    cr_assert_eq(item->seq, seq, "seq %llu at %llu",
                 (unsigned long long) item->seq, (unsigned long long) seq);
    void *data = NULL;
    size_t len = 0;
    cr_assert_eq(store_get_event(snap, item->seq, &data, &len), FONTE_OK);
    cr_assert_eq(item->value.len, len);
    cr_assert(memcmp(item->value.ptr, data, len) == 0, "event %llu",
              (unsigned long long) item->seq);
    store_free(data);
}

/* A bulk snapshot of s (as a replay of the log takes). */
static store_snap_t *
bulk_snapshot(store_t *s)
{
    store_snap_t *snap = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    store_snap_bulk(snap);
    return snap;
}

/* Scans (after, hi] and checks each event against a get of its seq:
 * returns how many came, and the code that ended the scan. */
static uint64_t
scan_check(store_snap_t *snap, uint64_t after, uint64_t hi, bool threaded,
           atomic_int *slots, fonte_err *end)
{
    logscan_t *sc = NULL;
    store_item_t item;
    uint64_t n = 0;
    cr_assert_eq(logscan_new(snap, after, hi, threaded, slots, NULL, &sc),
                 FONTE_OK);
    cr_assert_eq(logscan_threaded(sc), threaded && slots != NULL);
    while ((*end = logscan_next(sc, &item)) == FONTE_OK) {
        check_item(snap, &item, after + 1 + n);
        n++;
        if (item.seq == hi)
            break;
    }
    if (*end == FONTE_OK) /* stopped at hi: the next call says so */
        *end = logscan_next(sc, &item) == FONTE_ENOTFOUND ? FONTE_OK
                                                          : FONTE_EINTERNAL;
    logscan_destroy(&sc);
    cr_assert_null(sc);
    return n;
}

Test(logscan, reads_the_window_in_order_with_and_without_a_thread)
{
    /* 3000 events of ~100 bytes: a dozen batches; every 500th event is
     * 600 KiB, bigger than a whole batch */
    store_t *s = scan_store(3000, 500, (size_t) 600 << 10);
    store_snap_t *snap = bulk_snapshot(s);
    atomic_int slots = 1;
    fonte_err end;
    for (int threaded = 0; threaded < 2; threaded++) {
        cr_assert_eq(scan_check(snap, 0, 3000, threaded, &slots, &end), 3000);
        cr_assert_eq(end, FONTE_OK);
        cr_assert_eq(scan_check(snap, 1234, 2501, threaded, &slots, &end),
                     2501 - 1234);
        cr_assert_eq(end, FONTE_OK);
        cr_assert_eq(scan_check(snap, 2999, 3000, threaded, &slots, &end), 1);
        cr_assert_eq(end, FONTE_OK);
        cr_assert_eq(atomic_load(&slots), 1, "the slot is given back");
    }
    store_snap_destroy(&snap);
    store_close(&s);
}

/* Parked (the thread stopped, its slot given back) and resumed every
 * 97 events, some of them while the scanner is filling a batch, the
 * scan still gives every event once, in order, with its bytes; at its
 * end a scan takes no thread again. */
Test(logscan, parked_and_resumed_it_reads_every_event_once_in_order)
{
    store_t *s = scan_store(3000, 500, (size_t) 600 << 10);
    store_snap_t *snap = bulk_snapshot(s);
    atomic_int slots = 1;
    logscan_t *sc = NULL;
    store_item_t item;
    fonte_err rc;
    uint64_t n = 0;
    unsigned parks = 0;
    cr_assert_eq(logscan_new(snap, 0, 3000, true, &slots, NULL, &sc),
                 FONTE_OK);
    cr_assert(logscan_threaded(sc));
    while (n < 3000 && (rc = logscan_next(sc, &item)) == FONTE_OK) {
        check_item(snap, &item, ++n);
        if (n % 97 != 0)
            continue;
        if (logscan_threaded(sc)) {
            logscan_park(sc);
            parks++;
            cr_assert(!logscan_threaded(sc));
            cr_assert_eq(atomic_load(&slots), 1, "its slot is back");
        } else if (logscan_reading(sc)) {
            cr_assert(logscan_resume(sc, &slots));
            cr_assert_eq(atomic_load(&slots), 0);
        }
    }
    cr_assert_eq(n, 3000);
    cr_assert_geq(parks, 2);
    cr_assert_eq(logscan_next(sc, &item), FONTE_ENOTFOUND, "hi was read");
    logscan_park(sc);
    cr_assert(!logscan_reading(sc));
    cr_assert(!logscan_resume(sc, &slots), "nothing left to read ahead");
    cr_assert_eq(atomic_load(&slots), 1);
    logscan_destroy(&sc);
    cr_assert_eq(atomic_load(&slots), 1);
    store_snap_destroy(&snap);
    store_close(&s);
}

Test(logscan, a_log_that_ends_before_hi_is_enotfound_and_stays_so)
{
    store_t *s = scan_store(100, 0, 0);
    store_snap_t *snap = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    atomic_int slots = 1;
    for (int threaded = 0; threaded < 2; threaded++) {
        fonte_err end;
        cr_assert_eq(scan_check(snap, 90, 150, threaded, &slots, &end), 10);
        cr_assert_eq(end, FONTE_ENOTFOUND);
        logscan_t *sc = NULL;
        store_item_t item;
        cr_assert_eq(logscan_new(snap, 100, 101, threaded, &slots, NULL, &sc),
                     FONTE_OK);
        cr_assert_eq(logscan_next(sc, &item), FONTE_ENOTFOUND);
        cr_assert_eq(logscan_next(sc, &item), FONTE_ENOTFOUND, "sticky");
        cr_assert_null(item.value.ptr);
        logscan_destroy(&sc);
    }
    store_snap_destroy(&snap);
    store_close(&s);
}

Test(logscan, only_as_many_threads_as_slots_and_stopping_is_eclosed)
{
    store_t *s = scan_store(2000, 1, 1000); /* 2 MB: 8 batches */
    store_snap_t *snap = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    atomic_int slots = 1;
    atomic_bool stopping = false;
    logscan_t *a = NULL, *b = NULL, *c = NULL;
    store_item_t item;
    cr_assert_eq(logscan_new(snap, 0, 2000, true, &slots, &stopping, &a),
                 FONTE_OK);
    cr_assert_eq(logscan_new(snap, 0, 2000, true, &slots, &stopping, &b),
                 FONTE_OK);
    cr_assert(logscan_threaded(a));
    cr_assert(!logscan_threaded(b), "no slot left: b reads in its caller");
    cr_assert_eq(atomic_load(&slots), 0);
    cr_assert_eq(logscan_next(a, &item), FONTE_OK);
    cr_assert_eq(item.seq, 1);
    cr_assert_eq(logscan_next(b, &item), FONTE_OK);
    cr_assert_eq(item.seq, 1);
    /* a's thread has its queue full by now, or soon: destroy stops and
     * joins it all the same */
    logscan_destroy(&a);
    cr_assert_eq(atomic_load(&slots), 1);
    /* stopping: the batch being read is finished, then ECLOSED */
    atomic_store(&stopping, true);
    fonte_err rc;
    uint64_t n = 1;
    while ((rc = logscan_next(b, &item)) == FONTE_OK)
        n++;
    cr_assert_eq(rc, FONTE_ECLOSED);
    cr_assert_lt(n, 2000, "it stopped before the end");
    cr_assert_eq(logscan_next(b, &item), FONTE_ECLOSED);
    logscan_destroy(&b);
    cr_assert_eq(logscan_new(snap, 0, 2000, true, &slots, &stopping, &c),
                 FONTE_OK);
    cr_assert(logscan_threaded(c));
    cr_assert_eq(logscan_next(c, &item), FONTE_ECLOSED);
    logscan_destroy(&c);
    cr_assert_eq(atomic_load(&slots), 1);
    store_snap_destroy(&snap);
    store_close(&s);
}

/* store_backup's failures: a directory that exists (left as it was), and
 * a stop asked for (the listener shutting down), which removes the copy
 * begun; then the same directory again, copied whole. */
Test(store, a_backup_refuses_an_existing_dir_and_removes_a_stopped_one)
{
    store_t *s = scan_store(3000, 0, 0);
    store_backup_info_t info;
    char err[512] = "", copy[160];
    atomic_bool stop = false;
    struct stat st;

    snprintf(copy, sizeof copy, "%s", sub("copy"));
    cr_assert_eq(mkdir(copy, 0755), 0);
    cr_assert_eq(store_backup(s, copy, &stop, &info, err, sizeof err),
                 FONTE_EINVAL);
    cr_assert_not_null(strstr(err, "exists already"), "%s", err);
    cr_assert_eq(stat(copy, &st), 0, "left as it was");
    cr_assert_eq(rmdir(copy), 0);

    atomic_store(&stop, true);
    cr_assert_eq(store_backup(s, copy, &stop, &info, err, sizeof err),
                 FONTE_ECLOSED);
    cr_assert_not_null(strstr(err, "stopped"), "%s", err);
    cr_assert_neq(stat(copy, &st), 0, "the copy begun is removed");
    cr_assert_eq(errno, ENOENT);

    char part[200];
    snprintf(part, sizeof part, "%s.partial", copy);
    cr_assert_neq(stat(part, &st), 0, "nor its .partial");

    atomic_store(&stop, false);
    cr_assert_eq(store_backup(s, copy, &stop, &info, err, sizeof err),
                 FONTE_OK, "%s", err);
    cr_assert_eq(info.last_seq, 3000);
    cr_assert_gt(info.keys, 3000);
    cr_assert_neq(stat(part, &st), 0, "made in .partial, then renamed");

    /* a copy cut short by a crash is left as COPY.partial, never as a
     * COPY that would open as a store with keys missing; the next backup
     * of that name removes it and makes the copy whole */
    cr_assert_eq(rename(copy, part), 0); /* as a crash would leave it */
    cr_assert_eq(store_backup(s, copy, &stop, &info, err, sizeof err),
                 FONTE_OK, "%s", err);
    cr_assert_neq(stat(part, &st), 0, "the stale .partial is gone");
    cr_assert_eq(errno, ENOENT);
    store_opts_t o;
    store_opts_init(&o);
    o.dir = copy;
    o.create = false;
    store_t *c = NULL;
    cr_assert_eq(store_open(&o, &c, err, sizeof err), FONTE_OK, "%s", err);
    store_counts_t n;
    store_counts(c, &n);
    cr_assert_eq(n.last_seq, 3000);
    store_close(&c);
    store_close(&s);
}

/* A backup that cannot write (the files it may write are capped at 64
 * KiB, here by RLIMIT_FSIZE in this test's own process: a full disk, as
 * LevelDB sees it) fails with ESTORE naming the directory and the
 * cause, removes what it wrote, and leaves the store as it was. */
Test(store, a_backup_that_cannot_write_is_estore_and_removed)
{
    store_t *s = scan_store(3000, 0, 0);
    store_backup_info_t info;
    char err[512] = "", copy[160];
    atomic_bool stop = false;
    struct rlimit was;
    struct stat st;

    snprintf(copy, sizeof copy, "%s", sub("copy"));
    cr_assert_eq(tu_fsize_cap(64 << 10, &was), 0);
    fonte_err rc = store_backup(s, copy, &stop, &info, err, sizeof err);
    cr_assert_eq(tu_fsize_restore(&was), 0);

    cr_assert_eq(rc, FONTE_ESTORE, "%s", err);
    char want[256];
    snprintf(want, sizeof want, "backup %s: write failed (", copy);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
    cr_assert_not_null(strstr(err, "File too large"), "%s", err);
    cr_assert_neq(stat(copy, &st), 0, "what was written is removed");
    cr_assert_eq(errno, ENOENT);
    /* the store itself goes on, and a backup with room succeeds */
    cr_assert_eq(store_backup(s, copy, &stop, &info, err, sizeof err),
                 FONTE_OK, "%s", err);
    cr_assert_eq(info.last_seq, 3000);
    store_close(&s);
}

/* One batch of 10 events of 1 KiB, producer "p" session 1 from pseq. */
static fonte_err
commit_ten(store_batch_t *b, uint64_t pseq)
{
    uint8_t pay[1024];
    memset(pay, 'x', sizeof pay);
    for (uint64_t i = pseq; i < pseq + 10; i++) {
        Fonte__Event *ev = tu_event("a.b", "o:1", "p", 1, i);
        tu_event_set_payload(ev, pay, sizeof pay, "raw");
        enc_t e = enc_event(ev);
        cr_assert_eq(store_batch_put(b, &e.view, e.body.data, e.body.len,
                                     NULL), FONTE_OK);
        enc_free(&e);
    }
    return store_batch_commit(b);
}

/* The first failed write is the last one through the handle: LevelDB
 * would go on writing behind the torn record of its log, and drop what
 * it wrote there at the next open. Here the log cannot grow past 128
 * KiB (RLIMIT_FSIZE in this test's own process, as a full disk); once
 * there is room again, a commit is still refused, the store's state is
 * what was committed before, and a reopened store has every one of
 * those events and takes writes again. */
Test(store, the_first_failed_write_is_the_last_until_reopened)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    struct rlimit was;
    uint64_t committed = 0;
    fonte_err rc = FONTE_OK;

    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    cr_assert_null(store_write_error(s));
    cr_assert_eq(tu_fsize_cap(128 << 10, &was), 0);
    for (int i = 0; i < 100 && rc == FONTE_OK; i++)
        if ((rc = commit_ten(b, committed + 1)) == FONTE_OK)
            committed += 10;
    cr_assert_eq(tu_fsize_restore(&was), 0);

    cr_assert_eq(rc, FONTE_ESTORE);
    cr_assert_gt(committed, 0);
    cr_assert_not_null(store_write_error(s));
    cr_assert_not_null(strstr(store_write_error(s), "File too large"), "%s",
                       store_write_error(s));
    store_counts_t c;
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, committed);
    /* room again: still refused, nothing moves */
    cr_assert_eq(commit_ten(b, committed + 1), FONTE_ESTORE);
    store_kv_t kv = { "zz", 2, "v", 1 };
    cr_assert_eq(store_write_raw(s, &kv, 1), FONTE_ESTORE);
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, committed);
    store_batch_destroy(&b);
    store_close(&s);

    /* reopened: what was committed, every event, and writable */
    s = open_at(sub("db"));
    cr_assert_null(store_write_error(s));
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, committed);
    cr_assert_eq(c.events, committed);
    store_snap_t *snap = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    for (uint64_t seq = 1; seq <= committed; seq++) {
        void *data = NULL;
        size_t len = 0;
        cr_assert_eq(store_get_event(snap, seq, &data, &len), FONTE_OK,
                     "seq %llu", (unsigned long long) seq);
        store_free(data);
    }
    store_snap_destroy(&snap);
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    uint64_t last = 0;
    cr_assert_eq(store_batch_watermark(b, (codec_slice_t) { "p", 1 }, 1,
                                       &last), FONTE_OK);
    cr_assert_eq(last, committed);
    cr_assert_eq(commit_ten(b, committed + 1), FONTE_OK);
    store_counts(s, &c);
    cr_assert_eq(c.last_seq, committed + 10);
    store_batch_destroy(&b);
    store_close(&s);
}

/* The store's id: 16 hex digits made at the first open, the same at the
 * next; a store whose id was damaged is refused as corrupt. */
Test(store, the_id_is_made_once_and_checked)
{
    store_t *s = open_at(sub("db"));
    char id[17];
    snprintf(id, sizeof id, "%s", store_id(s));
    cr_assert_eq(strlen(id), 16);
    cr_assert(codec_listener_id_valid(id), "%s", id);
    store_t *other = open_at(sub("db2"));
    cr_assert_str_neq(store_id(other), id);
    store_close(&other);
    store_close(&s);
    s = open_at(sub("db"));
    cr_assert_str_eq(store_id(s), id);
    store_kv_t kv = { "mid", 3, "not-an-id", 9 };
    cr_assert_eq(store_write_raw(s, &kv, 1), FONTE_OK);
    store_close(&s);

    store_opts_t o;
    char err[512] = "";
    store_opts_init(&o);
    o.dir = sub("db");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "corrupt (its id is not 16 hex digits)"),
                       "%s", err);
}

/* The store's format (m"format"): written at the first open; a store
 * from before the key (fonte 0.2.0) is format 1 and gets it at its next
 * open, its events and its id untouched; a newer format is refused
 * before anything else is read (ahead of damaged counters), naming both
 * numbers; a format key that is not a number is refused as corrupt. */
Test(store, the_format_is_written_checked_and_a_newer_one_refused)
{
    store_opts_t o;
    store_verify_report_t r;
    char err[512] = "";
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;

    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    cr_assert_eq(commit_ten(b, 1), FONTE_OK);
    store_batch_destroy(&b);
    cr_assert_eq(store_verify(s, &r, err, sizeof err), FONTE_OK, "%s", err);
    uint64_t keys = r.keys;
    char id[17];
    snprintf(id, sizeof id, "%s", store_id(s));
    /* the store as 0.2.0 left it: no format key */
    store_kv_t gone = { "mformat", 7, NULL, 0 };
    cr_assert_eq(store_write_raw(s, &gone, 1), FONTE_OK);
    cr_assert_eq(store_verify(s, &r, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_eq(r.keys, keys - 1);
    store_close(&s);
    s = open_at(sub("db"));
    cr_assert_eq(store_verify(s, &r, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_eq(r.keys, keys, "the key is back");
    cr_assert_eq(r.problems, 0);
    cr_assert_eq(r.events, 10);
    cr_assert_str_eq(store_id(s), id, "the id is kept");

    /* format 2, and a counter a format-1 reader would call corrupt: the
     * format is what is reported */
    static const char two[8] = { 0, 0, 0, 0, 0, 0, 0, 2 };
    store_kv_t newer[2] = { { "mformat", 7, two, sizeof two },
                            { "mlast_seq", 9, "x", 1 } };
    cr_assert_eq(store_write_raw(s, newer, 2), FONTE_OK);
    store_close(&s);
    store_opts_init(&o);
    o.dir = sub("db");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "store format 2, written by a newer "
                                   "fonte; this fonte-listener " FONTE_VERSION
                                   " reads format 1 only"), "%s", err);

    /* a format key of the wrong size: corrupt */
    s = open_at(sub("db2"));
    store_kv_t bad = { "mformat", 7, "1", 1 };
    cr_assert_eq(store_write_raw(s, &bad, 1), FONTE_OK);
    store_close(&s);
    o.dir = sub("db2");
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_ESTORE);
    cr_assert_not_null(strstr(err, "corrupt (its format key is not a "
                                   "format number)"), "%s", err);
}

/* A store of 20 events: producers a (session 1, 12 events) and b
 * (session 2, 8), objects o:0..o:4, every 5th event depending on u:1
 * and u:2 (events 5, 10, 15, 20: 2 deps each). */
static store_t *
verify_store_at(const char *name)
{
    store_t *s = open_at(sub(name));
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    uint64_t na = 0, nb = 0;
    for (int i = 1; i <= 20; i++) {
        char obj[16];
        snprintf(obj, sizeof obj, "o:%d", i % 5);
        bool a = i <= 12;
        put(b, "x.y", obj, a ? "a" : "b", a ? 1 : 2, a ? ++na : ++nb,
            i % 5 == 0 ? "u:1" : NULL, i % 5 == 0 ? "u:2" : NULL);
        if (i % 7 == 0)
            cr_assert_eq(store_batch_commit(b), FONTE_OK);
    }
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    return s;
}

static void
verify_ok(store_t *s, store_verify_report_t *r)
{
    char err[256] = "";
    cr_assert_eq(store_verify(s, r, err, sizeof err), FONTE_OK, "%s", err);
}

/* true if one of the problems shown contains text */
static bool
shown(const store_verify_report_t *r, const char *text)
{
    for (uint64_t i = 0; i < r->problems && i < STORE_VERIFY_SHOWN; i++)
        if (strstr(r->shown[i], text) != NULL)
            return true;
    return false;
}

Test(store, verify_finds_a_consistent_store_consistent)
{
    store_t *s = verify_store_at("v");
    store_verify_report_t r;
    verify_ok(s, &r);
    cr_assert_eq(r.problems, 0, "%s", r.shown[0]);
    cr_assert_eq(r.events, 20);
    cr_assert_eq(r.objects, 5);
    cr_assert_eq(r.sessions, 2);
    cr_assert_eq(r.deps, 2, "o:0 on u:1 and u:2, once each");
    /* e, o, t per event; d and r per edge; 2 p; 6 m (counters, id,
     * format) */
    cr_assert_eq(r.keys, 20 * 3 + 2 * 2 + 2 + 6);
    store_close(&s);
}

/* Each damage (written raw, past the schema) is found and named. */
Test(store, verify_names_what_is_wrong)
{
    static char long_d[4000] = "dA"; /* "dA" NUL "BBB..." */
    memset(long_d + 3, 'B', sizeof long_d - 3);
    static const struct {
        const char *what;
        store_kv_t kv;
        const char *says;
    } damage[] = {
        { "an index key of no event",
          { "o" "o:1\0\0\0\0\0\0\0\0\x63", 13, "", 0 },
          "21 o keys for 20 events" },
        { "a watermark ahead of the events",
          { "pa\0\0\0\0\0\0\0\0\x01", 11,
            "\0\0\0\0\0\0\0\x0d\0\0\0\0\0\0\0\0", 16 },
          "watermark 13 of a/0000000000000001, whose last stored "
          "producer_seq is 12" },
        { "a watermark of no session",
          { "pc\0\0\0\0\0\0\0\0\x03", 11,
            "\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0", 16 },
          "watermark 1 of c/0000000000000003, a session with no event" },
        { "a counter off", { "mevents", 7, "\0\0\0\0\0\0\0\x15", 8 },
          "counter events is 21, the store holds 20" },
        { "a key of no family", { "zz", 2, "", 0 },
          "a key of no family (first byte 0x7a)" },
        { "an event that does not decode",
          { "e\0\0\0\0\0\0\0\x07", 9, "\xff\xff", 2 },
          "event 7 does not decode" },
        { "a d key whose dependency is longer than any name",
          { long_d, sizeof long_d, "", 0 }, "a malformed d key of 4000 bytes" },
    };
    for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%zu", i);
        store_t *s = verify_store_at(name);
        cr_assert_eq(store_write_raw(s, &damage[i].kv, 1), FONTE_OK);
        store_verify_report_t r;
        verify_ok(s, &r);
        cr_assert_geq(r.problems, 1, "%s: not found", damage[i].what);
        cr_assert(shown(&r, damage[i].says), "%s: '%s' not in '%s'",
                  damage[i].what, damage[i].says, r.shown[0]);
        store_close(&s);
    }
}

/* An event written without its index keys (seq 21, counters moved):
 * the multiset check fails and the second pass names the missing keys. */
Test(store, verify_names_the_index_keys_an_event_lacks)
{
    store_t *s = verify_store_at("v");
    enc_t e = encode("x.y", "o:9", "a", 1, 13, NULL, NULL);
    store_kv_t kv[] = {
        { "e\0\0\0\0\0\0\0\x15", 9, e.body.data, e.body.len },
        { "mlast_seq", 9, "\0\0\0\0\0\0\0\x15", 8 },
        { "mevents", 7, "\0\0\0\0\0\0\0\x15", 8 },
        { "pa\0\0\0\0\0\0\0\0\x01", 11,
          "\0\0\0\0\0\0\0\x0d\0\0\0\0\0\0\0\0", 16 },
    };
    cr_assert_eq(store_write_raw(s, kv, 4), FONTE_OK);
    enc_free(&e);
    store_verify_report_t r;
    verify_ok(s, &r);
    cr_assert(shown(&r, "20 o keys for 21 events"), "%s", r.shown[0]);
    cr_assert(shown(&r, "not exactly the events' own"), "%s", r.shown[0]);
    cr_assert(shown(&r, "no o key for o:9 of event 21"), "%s", r.shown[0]);
    cr_assert(shown(&r, "no t key for x.y of event 21"), "%s", r.shown[0]);
    /* and nothing else, nothing twice: two counts, the multiset, the two
     * keys named */
    cr_assert_eq(r.problems, 5, "%s", r.shown[5]);
    store_close(&s);
}

/* An event over the default 1 MiB (the listener takes them with
 * --max-msg) is a valid event to verify. */
Test(store, verify_takes_events_of_any_size)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    codec_limits_t big = codec_limits_default;
    big.max_msg = 4 << 20;
    size_t n = 2 << 20;
    uint8_t *pay = calloc(1, n);
    cr_assert_not_null(pay);
    Fonte__Event *ev = tu_event("a.b", "o:1", "p", 1, 1);
    tu_event_set_payload(ev, pay, n, "raw");
    enc_t e;
    cr_assert_eq(codec_event_encode(ev, &big, &e.topic, &e.body), FONTE_OK);
    codec_event_free(&ev);
    cr_assert_eq(codec_event_scan(e.body.data, e.body.len, &big, &e.view),
                 FONTE_OK);
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    cr_assert_eq(store_batch_put(b, &e.view, e.body.data, e.body.len, NULL),
                 FONTE_OK);
    cr_assert_eq(store_batch_commit(b), FONTE_OK);
    store_batch_destroy(&b);
    enc_free(&e);
    free(pay);
    store_verify_report_t r;
    verify_ok(s, &r);
    cr_assert_eq(r.problems, 0, "%s", r.shown[0]);
    cr_assert_eq(r.events, 1);
    store_close(&s);
}

/* Flips the byte at `at` of the file of sub("db") whose name ends in
 * suffix (".log", ".ldb"): what a bad disk does. */
static void
flip_byte(const char *suffix, off_t at)
{
    char path[512] = "";
    DIR *d = opendir(sub("db"));
    struct dirent *e;
    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, suffix) != NULL)
            snprintf(path, sizeof path, "%s/%s", sub("db"), e->d_name);
    closedir(d);
    cr_assert_neq(path[0], '\0', "no %s file", suffix);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    char c;
    cr_assert_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    cr_assert_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

/* sub("db") opened as it is, with no block cache: every block is read
 * from the disk. */
static store_t *
open_uncached(void)
{
    store_opts_t o;
    store_t *s = NULL;
    char err[512] = "";
    store_opts_init(&o);
    o.dir = sub("db");
    o.create = false;
    o.cache_bytes = 0;
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_OK, "%s", err);
    return s;
}

/* 2000 events in a table of sub("db"), its byte at `at` flipped (bit
 * rot), opened with no block cache: every block is read from the disk. */
static store_t *
rotten_store(off_t at)
{
    store_t *s = open_at(sub("db"));
    store_batch_t *b = NULL;
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (uint64_t i = 1; i <= 2000; i += 10)
        cr_assert_eq(commit_ten(b, i), FONTE_OK);
    store_batch_destroy(&b);
    store_close(&s);
    s = open_at(sub("db")); /* the log goes into a table */
    store_close(&s);

    flip_byte(".ldb", at);
    return open_uncached();
}

/* Bit rot: LevelDB's block checksum, which verify asks for, catches it. */
Test(store, verify_checks_the_tables_checksums)
{
    store_t *s = rotten_store(100000);
    store_verify_report_t r;
    verify_ok(s, &r);
    cr_assert_gt(r.problems, 0);
    cr_assert(shown(&r, "checksum mismatch"), "%s", r.shown[0]);
    store_close(&s);
}

/* A flipped byte in the middle of LevelDB's log (a bad disk): LevelDB
 * drops that block at open and says so only in its own LOG; the store
 * hands that line on (store_open_notes), and store_verify finds the
 * hole it left. */
Test(store, what_leveldb_drops_at_open_is_told_and_verify_finds_it)
{
    store_opts_t o;
    store_t *s = NULL;
    store_batch_t *b = NULL;
    char err[512] = "";

    store_opts_init(&o);
    o.dir = sub("db");
    o.sync = false;
    o.write_buffer = 64 << 20; /* everything stays in the log */
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_null(store_open_notes(s));
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (uint64_t i = 1; i <= 60; i += 10)
        cr_assert_eq(commit_ten(b, i), FONTE_OK); /* 10 KiB a batch */
    store_batch_destroy(&b);
    store_close(&s);

    /* the log's first block: a byte of the first batch's payloads */
    flip_byte(".log", 5000);

    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_OK, "%s", err);
    const char *notes = store_open_notes(s);
    cr_assert_not_null(notes);
    cr_assert_not_null(strstr(notes, "checksum mismatch"), "%s", notes);
    store_verify_report_t r;
    cr_assert_eq(store_verify(s, &r, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_gt(r.problems, 0);
    cr_assert(shown(&r, "seqs are not contiguous"), "%s", r.shown[0]);
    store_close(&s);
}

/* A repair checks what it keeps (a review, 2026-11-29). A byte flipped in
 * the log: RepairDB reads logs without their checksums and stored the
 * damaged event as valid, "repaired", exit 0; now the log is replayed by
 * a normal open first, which drops the damaged batch and says so, and
 * the repair says what was lost (FONTE_ELIMIT: --repair's exit 1). A
 * byte flipped in a table: RepairDB read it without checksums and left
 * the damage in place; now (paranoid checks) the block goes to lost/,
 * and the verify after the repair names what is missing. */
Test(store, a_repair_checks_what_it_keeps_and_says_what_was_lost)
{
    store_opts_t o;
    store_t *s = NULL;
    store_batch_t *b = NULL;
    char err[512] = "", msg[1024];

    store_opts_init(&o);
    o.dir = sub("db");
    o.sync = false;
    o.write_buffer = 64 << 20; /* everything stays in the log */
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_eq(store_batch_new(s, &b), FONTE_OK);
    for (uint64_t i = 1; i <= 60; i += 10)
        cr_assert_eq(commit_ten(b, i), FONTE_OK); /* 10 KiB a batch */
    store_batch_destroy(&b);
    store_close(&s);
    flip_byte(".log", 5000); /* a payload byte of the first batch */

    cr_assert_eq(store_repair(sub("db"), msg, sizeof msg), FONTE_ELIMIT,
                 "%s", msg);
    cr_assert_not_null(strstr(msg, "LevelDB dropped part of the log"), "%s",
                       msg);
    cr_assert_not_null(strstr(msg, "checksum mismatch"), "%s", msg);
    cr_assert_not_null(strstr(msg, "but it is INCONSISTENT"), "%s", msg);
    cr_assert_not_null(strstr(msg, "seqs are not contiguous"), "%s", msg);
    /* and no damaged event is served: every one left reads back whole */
    o.create = false;
    cr_assert_eq(store_open(&o, &s, err, sizeof err), FONTE_OK, "%s", err);
    store_verify_report_t r;
    cr_assert_eq(store_verify(s, &r, err, sizeof err), FONTE_OK, "%s", err);
    /* LevelDB drops the rest of the log's 32 KiB block with the damaged
     * record: the first three batches of 10 KiB */
    cr_assert_eq(r.events, 30, "%llu left", (unsigned long long) r.events);
    cr_assert_not(shown(&r, "checksum mismatch"), "%s", r.shown[0]);
    store_close(&s);
}

Test(store, a_repair_of_a_damaged_table_moves_the_block_out_and_says_so)
{
    store_t *s = rotten_store(100000);
    store_close(&s);
    char msg[1024];
    cr_assert_eq(store_repair(sub("db"), msg, sizeof msg), FONTE_ELIMIT,
                 "%s", msg);
    cr_assert_not_null(strstr(msg, "but it is INCONSISTENT"), "%s", msg);
    /* what is left no longer holds the damaged block */
    char err[512] = "";
    s = open_uncached();
    store_verify_report_t r;
    cr_assert_eq(store_verify(s, &r, err, sizeof err), FONTE_OK, "%s", err);
    cr_assert_not(shown(&r, "checksum mismatch"), "%s", r.shown[0]);
    cr_assert_lt(r.events, 2000);
    store_close(&s);
}

/* A backup of a store with bit rot fails on the damaged block, naming
 * it, and leaves no copy: never a copy of damage that looks whole. */
Test(store, a_backup_of_a_damaged_store_fails)
{
    store_t *s = rotten_store(100000);
    store_backup_info_t info;
    char err[512] = "", copy[160];
    atomic_bool stop = false;
    struct stat st;

    snprintf(copy, sizeof copy, "%s", sub("copy"));
    cr_assert_eq(store_backup(s, copy, &stop, &info, err, sizeof err),
                 FONTE_ESTORE);
    cr_assert_not_null(strstr(err, "checksum mismatch"), "%s", err);
    cr_assert_neq(stat(copy, &st), 0, "no copy left");
    store_close(&s);
}

/* Reads check the checksums too: scanning a store with bit rot ends in
 * an error, not in events served as if whole. (LevelDB's iterator steps
 * over the block it cannot read and keeps the error: an iterator that
 * stops at its prefix's end must ask for it.) */
Test(store, reads_of_a_damaged_block_are_errors)
{
    store_t *s = rotten_store(2000); /* among the first e keys */
    store_snap_t *snap = NULL;
    fonte_err scan_rc;

    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    size_t n = scan_events(snap, &scan_rc);
    cr_assert_eq(scan_rc, FONTE_ESTORE);
    cr_assert_lt(n, 2000, "it stopped at the damaged block");
    store_snap_destroy(&snap);
    store_close(&s);
}

/* ------------------------------------------------------------------ */
/* readers: a batch of gets shared with helper threads                 */

TestSuite(readers, .init = setup, .fini = teardown);

#define RD_N 2000

/* seqs for a batch: a shuffle of 1..3000 (and past it: missing) */
static void
rd_seqs(uint64_t *seqs, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        seqs[i] = (uint64_t) ((i * 7919u + seed * 104729u) % 3020u) + 1;
}

/* Asserts that body/len/rc are what store_get_event gives one by one,
 * and frees the bodies. */
static void
rd_check(store_snap_t *snap, const uint64_t *seqs, size_t n, void **body,
         size_t *len, const fonte_err *rc)
{
    for (size_t i = 0; i < n; i++) {
        void *want = NULL;
        size_t want_len = 0;
        fonte_err want_rc = store_get_event(snap, seqs[i], &want, &want_len);
        cr_assert_eq(rc[i], want_rc, "index %zu (seq %llu): %d", i,
                     (unsigned long long) seqs[i], rc[i]);
        cr_assert_eq(want_rc, seqs[i] <= 3000 ? FONTE_OK : FONTE_ENOTFOUND);
        cr_assert_eq(len[i], want_len, "index %zu", i);
        if (want_rc == FONTE_OK)
            cr_assert(memcmp(body[i], want, want_len) == 0, "index %zu", i);
        else
            cr_assert_null(body[i]);
        store_free(want);
        store_free(body[i]);
    }
}

Test(readers, every_index_is_read_once_alone_or_shared)
{
    cr_assert_eq(readers_new(0, &(readers_t *) { NULL }), FONTE_EINVAL);
    cr_assert_eq(readers_new(READERS_MAX + 1, &(readers_t *) { NULL }),
                 FONTE_EINVAL);
    store_t *s = scan_store(3000, 0, 0);
    store_snap_t *snap = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    readers_t *r = NULL;
    cr_assert_eq(readers_new(3, &r), FONTE_OK);
    static uint64_t seqs[RD_N];
    static void *body[RD_N];
    static size_t len[RD_N];
    static fonte_err rc[RD_N];

    /* below READERS_MIN (16) the batch is read alone, without counting;
     * from 16 on it is shared (nothing else is reading) */
    const size_t sizes[] = { 0, 1, 15, 16, 17, 512, RD_N };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        rd_seqs(seqs, sizes[k], (unsigned) k);
        readers_get(r, snap, seqs, sizes[k], body, len, rc, 0);
        rd_check(snap, seqs, sizes[k], body, len, rc);
        rd_seqs(seqs, sizes[k], (unsigned) k + 100);
        readers_get(NULL, snap, seqs, sizes[k], body, len, rc, 0);
        rd_check(snap, seqs, sizes[k], body, len, rc);
    }
    readers_counters_t c;
    readers_counters(r, &c);
    cr_assert_eq(c.batches, 4);
    cr_assert_eq(c.alone, 0);
    cr_assert_leq(c.helped, 16 + 17 + 512 + RD_N);

    /* the helpers do read: within 200 batches of 2000, some index is
     * theirs (a helper wakes in microseconds; the batch takes ms) */
    for (int i = 0; i < 200 && c.helped == 0; i++) {
        rd_seqs(seqs, RD_N, 7);
        readers_get(r, snap, seqs, RD_N, body, len, rc, 0);
        rd_check(snap, seqs, RD_N, body, len, rc);
        readers_counters(r, &c);
    }
    cr_assert_gt(c.helped, 0, "no helper ever read");

    /* past its deadline nothing is read: every index FONTE_ETIMEOUT, no
     * bytes, shared or alone */
    for (int shared = 0; shared < 2; shared++) {
        rd_seqs(seqs, RD_N, 9);
        memset(rc, 0, sizeof rc);
        readers_get(shared ? r : NULL, snap, seqs, RD_N, body, len, rc,
                    fonte_mono_us() - 1);
        for (size_t i = 0; i < RD_N; i++) {
            cr_assert_eq(rc[i], FONTE_ETIMEOUT, "index %zu: %d", i, rc[i]);
            cr_assert_null(body[i]);
            cr_assert_eq(len[i], 0);
        }
    }
    readers_destroy(&r);
    cr_assert_null(r);
    readers_destroy(&r); /* NULL-safe */
    store_snap_destroy(&snap);
    store_close(&s);
}

typedef struct rd_caller {
    readers_t *r;
    store_snap_t *snap;
    unsigned seed;
    int rounds;
} rd_caller_t;

static void *
rd_caller_main(void *arg)
{
    rd_caller_t *a = arg;
    uint64_t *seqs = calloc(RD_N, sizeof *seqs);
    void **body = calloc(RD_N, sizeof *body);
    size_t *len = calloc(RD_N, sizeof *len);
    fonte_err *rc = calloc(RD_N, sizeof *rc);
    cr_assert(seqs && body && len && rc);
    for (int i = 0; i < a->rounds; i++) {
        size_t n = 16 + (size_t) ((a->seed * 31u + (unsigned) i * 17u) %
                                  (RD_N / 4));
        rd_seqs(seqs, n, a->seed + (unsigned) i);
        readers_get(a->r, a->snap, seqs, n, body, len, rc, 0);
        rd_check(a->snap, seqs, n, body, len, rc);
    }
    free(seqs);
    free(body);
    free(len);
    free(rc);
    return NULL;
}

/* Three callers at once: each gets exactly its own batch's events, one
 * at a time sharing the pool, the others reading alone; every batch is
 * counted once, shared or alone. */
Test(readers, callers_at_once_each_get_their_own_batch)
{
    store_t *s = scan_store(3000, 0, 0);
    store_snap_t *snap = NULL;
    cr_assert_eq(store_snap_new(s, &snap), FONTE_OK);
    readers_t *r = NULL;
    cr_assert_eq(readers_new(2, &r), FONTE_OK);
    pthread_t t[3];
    rd_caller_t a[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (rd_caller_t) { r, snap, (unsigned) i * 1000u, 150 };
        cr_assert_eq(pthread_create(&t[i], NULL, rd_caller_main, &a[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    readers_counters_t c;
    readers_counters(r, &c);
    cr_assert_eq(c.batches + c.alone, 3 * 150, "%llu + %llu",
                 (unsigned long long) c.batches,
                 (unsigned long long) c.alone);
    readers_destroy(&r);
    store_snap_destroy(&snap);
    store_close(&s);
}
