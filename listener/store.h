/*
 * store.h - the listener's LevelDB store: fonte's source of truth.
 *
 * One database per data directory, with the key schema of design.md §5
 * (written out byte by byte at the top of store.c). store.c is the only
 * file in fonte that includes leveldb/c.h; everything else reads and
 * writes through this header.
 *
 * Writing: exactly one thread (the listener's writer) builds a
 * store_batch_t - events, every index key, the per-session watermarks,
 * the counters and last_seq - and commits it as ONE LevelDB WriteBatch
 * (synced when the store was opened with sync). Either all of a batch is
 * in the store after a crash, or none of it.
 *
 * Reading: any thread takes a snapshot (store_snap_new) and walks it with
 * bounded-memory iterators, one key at a time: an object's events in seq
 * order (`o` keys), a type's events (`t`), an object's dependencies (`d`)
 * and dependents (`r`), the whole log (`e`), the producer sessions (`p`).
 * Reads never block the writer (LevelDB snapshots are MVCC).
 *
 * Counters for StatusReply (last_seq, events, objects, sessions) are kept
 * in memory, persisted as `m` keys in every batch, and readable from any
 * thread in O(1) (store_counts).
 */
#ifndef FONTE_STORE_H
#define FONTE_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "fonte/errors.h"

typedef struct store store_t;

typedef struct store_opts {
    const char *dir;     /* data directory; created (one level) if absent */
    size_t cache_bytes;  /* LevelDB block cache; default 8 MiB */
    size_t write_buffer; /* LevelDB memtable size; default 4 MiB */
    bool sync;           /* fsync every committed batch; default true */
    bool create;         /* create the database if missing; default true */
    int max_open_files;  /* LevelDB table cache: bounds the memory of open
                            tables' index and bloom blocks (and of their
                            mmaps where tables are mmapped); default 74,
                            LevelDB's minimum */
    size_t block_size;   /* LevelDB block size (uncompressed); default
                            16 KiB: a whole-store scan reads a quarter of
                            the blocks 4 KiB would need, each one pread() */
} store_opts_t;

/* Defaults as above, dir "./fonte-data". */
void store_opts_init(store_opts_t *o);

/* How this build's LevelDB reads table files: "pread" (the default: the
 * listener's RSS does not grow with the tables it reads) or "mmap" (a
 * build without Debian's static libleveldb.a, or FONTE_TABLE_READS=mmap).
 * See cmake/FonteDeps.cmake and docs/architecture.md. */
const char *store_table_reads(void);

/* Opens (creating dir and database if allowed) and loads the counters.
 * Errors: FONTE_ESTORE for a locked, corrupt, unreadable or unwritable
 * data directory, with ONE line in errbuf naming the directory and the
 * cause ("data dir /x: locked by another process (IO error: ...)");
 * FONTE_ENOMEM. On error *store_p is NULL. The returned store is closed
 * with store_close(). */
fonte_err store_open(const store_opts_t *o, store_t **store_p, char *errbuf,
                     size_t errlen);

/* The store's id: 16 lowercase hex digits, random, made when the store
 * was first opened and kept in it (m"id"), so a restart keeps it; a
 * backup copy (store_backup leaves it out) makes its own when first
 * opened, since a listener on a copy is another listener. The listener
 * signs its Acks with it. */
const char *store_id(const store_t *s);

/* What LevelDB said it dropped while opening the store - a torn or
 * corrupt part of its log, one line each ("(ignoring error) .../000003.log:
 * dropping 32768 bytes; Corruption: checksum mismatch") - or NULL. A torn
 * end after a crash held only unacknowledged writes (the Ack follows the
 * synced write); anything else is worth --verify. */
const char *store_open_notes(const store_t *s);

/* Closes the database; NULL-safe, nulls *store_p. Every snapshot and
 * batch must have been destroyed first. */
void store_close(store_t **store_p);

/* What store_backup copied. */
typedef struct store_backup_info {
    uint64_t keys, bytes; /* LevelDB keys, and their keys' + values' bytes */
    uint64_t last_seq;    /* the last event in the copy */
} store_backup_info_t;

/* Copies the whole store, as of now (a snapshot: writes go on), into a
 * new LevelDB database in dir, which must not exist: every key, synced
 * before it returns, so that `fonte-listener --data dir` opens it as a
 * store of its own. On any error, or when *stop is set (checked every
 * batch), what was written is removed again. FONTE_OK; FONTE_EINVAL if
 * dir exists; FONTE_ECLOSED when stopped; FONTE_ESTORE (errbuf says
 * why). Thread-safe beside the writer and readers. */
fonte_err store_backup(store_t *s, const char *dir, const atomic_bool *stop,
                       store_backup_info_t *out, char *errbuf,
                       size_t errlen);

/* Removes a database made moments ago in dir, and dir itself: LevelDB's
 * DestroyDB (its files only), then rmdir, which fails (and is ignored) if
 * anything else is in it. For a start that failed after creating its
 * data directory. dir must not be open. */
void store_remove_new(const char *dir);

/* What store_verify found. */
#define STORE_VERIFY_SHOWN 8
typedef struct store_verify_report {
    uint64_t keys, events, objects, sessions; /* as found */
    uint64_t deps; /* d keys: distinct (object, dependency) pairs */
    uint64_t problems;
    char shown[STORE_VERIFY_SHOWN][256]; /* the first problems, in words */
} store_verify_report_t;

/* Checks the whole store against its invariants (store.c's key table),
 * in two passes (the events, then the other keys): seqs
 * contiguous from 1 and each `e` value a valid live event; each event's
 * `o`, `t`, `d` and `r` keys present, as many `o` and as many `t` keys
 * as events; each `d` key with its `r` key and as many of each (a `d`
 * key no event names is not found); per producer
 * session, producer_seqs 1, 2, ... in store order and its `p` watermark
 * the last of them, and no `p` key without events; the `m` counters equal
 * to what is there; no key of an unknown family. Reads verify LevelDB's
 * checksums; a block that fails is a problem, and ends that pass (blocks
 * already in the block cache are not read again: fonte-listener --verify
 * opens the store with none). FONTE_OK (out->problems says whether the
 * store is consistent); FONTE_ENOMEM. It reads one snapshot (the counters
 * too), so a running writer is not a problem, but what it adds meanwhile
 * is not seen. */
fonte_err store_verify(store_t *s, store_verify_report_t *out,
                       char *errbuf, size_t errlen);

/* Repairs dir (which must not be open anywhere): its logs replayed by a
 * normal open (their checksums checked), then LevelDB's RepairDB with
 * table checksums checked, then the result verified (store_verify).
 * Writes one line saying what it did into msg (the number of tables and
 * the state before and after, what LevelDB dropped, the first problem).
 * FONTE_OK: repaired and consistent; FONTE_ELIMIT: repaired, but events
 * were lost on the way (dropped log records, damaged blocks: msg says);
 * FONTE_ESTORE with the reason in msg if the repair failed, dir is not a
 * database or is locked. */
fonte_err store_repair(const char *dir, char *msg, size_t msglen);

/* The directory given at open. Never NULL; valid until store_close. */
const char *store_dir(const store_t *s);

/* --- counters, any thread --- */

typedef struct store_counts {
    uint64_t last_seq; /* last assigned seq; events are 1..last_seq */
    uint64_t events;   /* events stored (== last_seq: nothing is deleted) */
    uint64_t objects;  /* distinct objects */
    uint64_t sessions; /* distinct producer sessions (`p` keys) */
} store_counts_t;

/* The counters as of the last committed batch. O(1), lock-free. */
void store_counts(const store_t *s, store_counts_t *c);

/* Bytes of the data directory's files on disk (a readdir + stat of each
 * file: tables, logs, manifest). Any thread; -1 on error. */
int64_t store_disk_bytes(const store_t *s);

/* --- writing: one thread (the writer) --- */

typedef struct store_batch store_batch_t;

/* A producer session touched by the open batch (store_batch_session). */
typedef struct store_session {
    codec_slice_t producer; /* borrowed from the batch */
    uint64_t session;
    uint64_t last;      /* producer_seq watermark including this batch */
    uint64_t committed; /* watermark before this batch */
    int64_t time_us;    /* time_us of the last event put */
} store_session_t;

/* A new, empty batch for s. FONTE_ENOMEM. Destroy before store_close. */
fonte_err store_batch_new(store_t *s, store_batch_t **batch_p);
void store_batch_destroy(store_batch_t **batch_p);

/* The watermark (highest stored producer_seq) of a session, counting the
 * events already put in this open batch; 0 for an unknown session.
 * Served from a bounded cache, else from the session's `p` key.
 * FONTE_ESTORE on a read error. */
fonte_err store_batch_watermark(store_batch_t *b, codec_slice_t producer,
                                uint64_t session, uint64_t *last);

/* Adds one event as seq = last_seq + 1 + (events already in the batch):
 * the `e` key with body[0..len) as is, its `o` and `t` keys, `d`/`r`
 * keys for each dependency, and moves the session's watermark to
 * view->producer_seq. The caller has checked the acceptance rule
 * (producer_seq == watermark + 1). view must describe body (from
 * codec_event_scan). Nothing is written until store_batch_commit.
 * *seq_out (may be NULL) gets the assigned seq. FONTE_ESTORE (read
 * error while looking the object up), FONTE_ENOMEM. */
fonte_err store_batch_put(store_batch_t *b, const codec_view_t *view,
                          const void *body, size_t len, uint64_t *seq_out);

/* Events in the open batch. */
size_t store_batch_count(const store_batch_t *b);

/* Sessions advanced by the open (or just committed) batch: i in
 * [0, store_batch_sessions(b)). Valid until the next put, watermark or
 * clear (after a commit, the next put or watermark starts a new batch).
 * A session whose only put in the batch failed is listed with last ==
 * committed: nothing of it was stored, and the commit writes no `p` key
 * for it and does not count it. */
size_t store_batch_sessions(const store_batch_t *b);
const store_session_t *store_batch_session(const store_batch_t *b, size_t i);

/* Writes the batch plus `p` watermarks, counters and `m` last_seq as ONE
 * WriteBatch (synced if the store syncs). On FONTE_OK the counters and
 * caches move forward and the session list stays readable until
 * store_batch_clear. On FONTE_ESTORE the batch is cleared, nothing of it
 * is visible through this handle and the in-memory state is as before
 * it (after a reopen, LevelDB may or may not recover it from its log:
 * either way it was not acknowledged), and the store takes no more
 * writes: see store_write_error. An empty batch is a no-op. */
fonte_err store_batch_commit(store_batch_t *b);

/* NULL while the store is writable; after a failed write, LevelDB's
 * reason ("IO error: .../000003.log: No space left on device"), and
 * every later store_batch_commit and store_write_raw is FONTE_ESTORE
 * without trying. Why: after a failed append to its log, LevelDB goes on
 * writing behind the torn record, and a later write it reported synced
 * can be dropped with that part of the log at the next open ("checksum
 * mismatch") - an acknowledged event lost. Closing and reopening the
 * store (the torn record then ends the log) makes it writable again.
 * Thread-safe. */
const char *store_write_error(const store_t *s);

/* Forgets the open batch's contents (nothing is written). */
void store_batch_clear(store_batch_t *b);

/* Writes raw key/value pairs in one synced (per opts) WriteBatch,
 * bypassing the schema and the counters; a NULL value deletes the key.
 * For the ingest benchmark's baseline ("raw LevelDB") and for tests that
 * damage a store or make an old one: never call it on a listener's
 * store. */
typedef struct store_kv {
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
} store_kv_t;
fonte_err store_write_raw(store_t *s, const store_kv_t *kvs, size_t n);

/* Builds the keys store_batch_put would write for one event (first the
 * `e` key, then `o`, `t`, `d`+`r` pairs) into buf (cap bytes) as
 * consecutive store_kv_t entries whose key bytes live in keybuf. Returns
 * the number of pairs, or 0 if a buffer is too small. For the benchmark
 * baseline, so that it writes exactly the listener's keys. */
size_t store_event_keys(uint64_t seq, const codec_view_t *view,
                        const void *body, size_t len, store_kv_t *kvs,
                        size_t kv_cap, char *keybuf, size_t keybuf_cap);

/* --- reading: any thread, through snapshots --- */

typedef struct store_snap store_snap_t;

/* A consistent, read-only view of the store as of now. FONTE_ENOMEM.
 * Destroy with store_snap_destroy() before store_close, and after every
 * iterator and reader made from it. Thread: one thread at a time makes
 * iterators and readers from a snapshot and calls its functions; each
 * iterator or reader may then be used by a thread of its own (LevelDB's
 * reads are thread-safe: the log scanner, logscan.h, reads with its
 * iterator while the stream's thread reads with its readers). */
fonte_err store_snap_new(store_t *s, store_snap_t **snap_p);
void store_snap_destroy(store_snap_t **snap_p);

/* Iterators made from snap from now on read around the block cache
 * instead of filling it (LevelDB's fill_cache = false): for a scan of
 * the whole log, which would otherwise evict what point reads need and
 * pay for the insertions. Readers (store_reader_new) still fill it:
 * theirs are point reads. */
void store_snap_bulk(store_snap_t *snap);

/* last_seq as of the snapshot (its `m` key; 0 for an empty store). */
uint64_t store_snap_last_seq(const store_snap_t *snap);

/* The stored bytes of event seq. On FONTE_OK the caller owns *data and
 * frees it with store_free(). FONTE_ENOTFOUND if there is no such event,
 * FONTE_ESTORE on a read error. */
fonte_err store_get_event(store_snap_t *snap, uint64_t seq, void **data,
                          size_t *len);
void store_free(void *p);

/* A reader of events by seq for sequences that are mostly ascending (a
 * page of a replay): one LevelDB iterator that steps over short gaps
 * forward and seeks otherwise, so reading a page in store order costs
 * about a scan, and an out-of-order event one seek, like a get. Bytes
 * are borrowed, without a copy. One thread at a time; destroy before
 * the snapshot. */
typedef struct store_reader store_reader_t;

fonte_err store_reader_new(store_snap_t *snap, store_reader_t **reader_p);
void store_reader_destroy(store_reader_t **reader_p);

/* The stored bytes of event seq in *data (borrowed: valid until the next
 * store_reader_get or destroy). FONTE_ENOTFOUND, FONTE_ESTORE. */
fonte_err store_reader_get(store_reader_t *r, uint64_t seq, const void **data,
                           size_t *len);

/* The first seq of object's events after after_seq (its first `o` key
 * past it), 0 if none: one seek of the reader's iterator, which then
 * seeks again for its next get. FONTE_ESTORE, FONTE_ELIMIT (a name over
 * 1024 bytes). */
fonte_err store_reader_first(store_reader_t *r, const char *object,
                             size_t len, uint64_t after_seq, uint64_t *seq);

/* One position of an iterator. Slices are borrowed until the next
 * store_iter_next or store_iter_destroy. */
typedef struct store_item {
    uint64_t seq;        /* e, o, t: the event's seq */
    codec_slice_t name;  /* d: the dependency; r: the dependent object;
                            p: the producer */
    codec_slice_t value; /* e: the event bytes */
    uint64_t session;    /* p */
    uint64_t last;       /* p: watermark */
    int64_t time_us;     /* p: time of the last stored event */
} store_item_t;

typedef struct store_iter store_iter_t;

/* Iterators over a snapshot, in key order, bounded memory (one LevelDB
 * iterator and the current key). All return FONTE_ENOMEM or FONTE_OK.
 *  - events:      `e` keys with seq > after_seq: seq, value
 *  - object:      `o` object keys with seq > after_seq: seq
 *  - type:        `t` type keys with seq > after_seq: seq
 *  - deps:        `d` object keys: name = a dependency of object
 *  - dependents:  `r` object keys: name = an object depending on object
 *  - sessions:    `p` keys: name = producer, session, last, time_us
 * The iterator must be destroyed before its snapshot. */
fonte_err store_iter_events(store_snap_t *snap, uint64_t after_seq,
                            store_iter_t **it_p);
fonte_err store_iter_object(store_snap_t *snap, const char *object,
                            size_t len, uint64_t after_seq,
                            store_iter_t **it_p);
fonte_err store_iter_type(store_snap_t *snap, const char *type, size_t len,
                          uint64_t after_seq, store_iter_t **it_p);
fonte_err store_iter_deps(store_snap_t *snap, const char *object, size_t len,
                          store_iter_t **it_p);
fonte_err store_iter_dependents(store_snap_t *snap, const char *object,
                                size_t len, store_iter_t **it_p);
fonte_err store_iter_sessions(store_snap_t *snap, store_iter_t **it_p);

/* Moves to the next item: true and *item filled, or false at the end or
 * on error (then store_iter_error says which). Malformed keys (not
 * written by fonte) are skipped. */
bool store_iter_next(store_iter_t *it, store_item_t *item);
/* FONTE_OK, or FONTE_ESTORE if the iteration stopped on a read error. */
fonte_err store_iter_error(const store_iter_t *it);
void store_iter_destroy(store_iter_t **it_p);

#endif
