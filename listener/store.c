/*
 * store.c - the listener's LevelDB store (see store.h). The only file in
 * fonte that includes leveldb/c.h.
 *
 * Key encoding (design.md §5; docs/protocol.md copies this table). Every
 * key starts with one ASCII letter naming its family; "BE64" is an
 * unsigned 64-bit integer in 8 bytes, big-endian, so that bytewise key
 * order is numeric order. Objects, types and producers never contain
 * NUL (codec rules), so NUL ends a name unambiguously and a prefix scan
 * of "o" object NUL never matches a longer object name.
 *
 *   'e' BE64(seq)                       -> the Event bytes as received
 *   'o' object 0x00 BE64(seq)           -> "" (events of one object)
 *   't' type 0x00 BE64(seq)             -> "" (events of one type)
 *   'd' object 0x00 dep                 -> "" (object depends on dep)
 *   'r' dep 0x00 object                 -> "" (reverse edge)
 *   'p' producer 0x00 BE64(session)     -> BE64(last producer_seq)
 *                                          BE64(time_us of that event,
 *                                          two's complement)
 *   'm' "last_seq"                      -> BE64(last assigned seq)
 *   'm' "events"                        -> BE64(events stored)
 *   'm' "objects"                       -> BE64(distinct objects)
 *   'm' "sessions"                      -> BE64(distinct `p` keys)
 *   'm' "id"                            -> 16 lowercase hex digits: the
 *                                          store's id, random, written
 *                                          once when first opened (an
 *                                          addition to design.md §5: a
 *                                          listener signs its Acks with
 *                                          it, docs/protocol.md §4); a
 *                                          backup copy gets its own
 *   'm' "format"                        -> BE64(STORE_FORMAT): this
 *                                          schema's number (another
 *                                          addition). A store of a higher
 *                                          number is refused at open
 *                                          before anything else of it is
 *                                          read; one without the key
 *                                          (fonte before 0.2.1 wrote
 *                                          none, in this same schema) is
 *                                          format 1 and gets the key
 *
 * seq starts at 1 and is contiguous: the `e` keys are exactly 1..last_seq.
 * A batch (store_batch_commit) is one LevelDB WriteBatch holding its
 * events, their index keys, the new `p` watermark of each session it
 * advanced and the four `m` keys, so after a crash the store holds whole
 * batches only.
 *
 * Counting objects for StatusReply without scanning: an object is new
 * when no `o` key with its prefix exists. The writer asks, per event, a
 * bounded direct-mapped cache of objects known to exist (65536 slots);
 * on a miss it seeks one LevelDB iterator (created once per batch) to
 * "o" object NUL and checks the prefix. A new object is counted once
 * per batch (a small set in the batch) and the count is persisted in
 * m"objects" in the same WriteBatch. Chosen over an extra per-object key
 * so that the schema stays exactly §5, and over an in-memory set of all
 * objects so that memory stays bounded whatever the store's size.
 *
 * Watermarks work the same way: a direct-mapped cache of sessions
 * (4096 slots) in front of the `p` keys (a LevelDB get, cheap with the
 * bloom filter), with the open batch's sessions in a hash table of their
 * own that is authoritative until commit. Caches only ever hold
 * committed state, so a failed write needs no undo.
 *
 * Threads: one writer (batches, store_write_raw); any number of readers
 * (snapshots, counters, store_disk_bytes).
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <leveldb/c.h>

#include "hash.h"

#ifndef FONTE_TABLE_PREAD
#define FONTE_TABLE_PREAD 0
#endif

#define STORE_FORMAT 1 /* the schema above; see m"format" */
#define OBJ_CACHE_SLOTS 65536u
#define SES_CACHE_SLOTS 4096u
#define KEY_MAX (1 + 1024 + 1 + 1024) /* longest key: d/r with two names */

typedef struct obj_slot {
    char *name; /* malloc'd, or NULL */
    size_t len;
} obj_slot_t;

typedef struct ses_slot {
    bool used;
    uint8_t plen;
    char producer[CODEC_PRODUCER_MAX];
    uint64_t session;
    uint64_t last;
    int64_t time_us;
} ses_slot_t;

struct store {
    char *dir;
    store_opts_t opts; /* as opened (dir points into the caller's) */
    leveldb_t *db;
    leveldb_options_t *options;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts;
    _Atomic uint64_t last_seq, events, objects, sessions;
    char id[CODEC_LISTENER_ID_LEN + 1]; /* m"id", set by store_open */
    char *open_notes; /* what LevelDB dropped at open (open_notes) */
    /* The first failed write's cause, then write_failed (release): no
     * write is tried again through this handle (store_write_error). */
    char write_error[256];
    atomic_bool write_failed;
    obj_slot_t *obj_cache; /* writer thread only */
    ses_slot_t *ses_cache; /* writer thread only */
};

/* One session advanced by the open batch. */
typedef struct batch_ses {
    store_session_t pub;
    char producer[CODEC_PRODUCER_MAX];
} batch_ses_t;

struct store_batch {
    store_t *store;
    leveldb_writebatch_t *wb;
    leveldb_iterator_t *probe; /* object existence seeks, per batch */
    size_t count;
    batch_ses_t *ses;
    size_t n_ses, cap_ses;
    uint32_t *ses_tab; /* open addressing: index + 1, 0 = empty */
    size_t ses_tab_cap;
    char **new_objs; /* objects first stored by this batch (malloc'd) */
    size_t *new_lens;
    size_t n_new, cap_new;
    uint32_t *obj_tab; /* open addressing over new_objs */
    size_t obj_tab_cap;
    bool done; /* committed: the next put or lookup starts a new batch */
};

struct store_snap {
    store_t *store;
    const leveldb_snapshot_t *snapshot;
    leveldb_readoptions_t *ropts;
    uint64_t last_seq;
};

typedef enum iter_kind {
    IT_EVENTS,
    IT_SEQ, /* o, t: prefix then BE64 seq */
    IT_NAME, /* d, r: prefix then a name */
    IT_SESSIONS,
} iter_kind_t;

struct store_iter {
    leveldb_iterator_t *it;
    iter_kind_t kind;
    char *prefix;
    size_t prefix_len;
    bool started;
    fonte_err err;
};

/* ------------------------------------------------------------------ */
/* encoding */

static void
put_be64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (char) (v & 0xff);
        v >>= 8;
    }
}

static uint64_t
get_be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | (uint8_t) p[i];
    return v;
}

/* fam name 0x00 [tail] into buf; returns the length. */
static size_t
name_key(char *buf, char fam, const char *name, size_t len,
         const char *tail, size_t tail_len)
{
    buf[0] = fam;
    memcpy(buf + 1, name, len);
    buf[1 + len] = '\0';
    if (tail_len)
        memcpy(buf + 2 + len, tail, tail_len);
    return 2 + len + tail_len;
}

static uint64_t
hash_session(codec_slice_t producer, uint64_t session)
{
    uint64_t h = fonte_fnv1a(producer.ptr, producer.len, FONTE_FNV_BASIS);
    h ^= session;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* The keys of one event, in the order store_event_keys documents, handed
 * to put(arg, key, klen, value, vlen). One function serves the batch and
 * the benchmark's baseline, so both write exactly the same keys. */
typedef void (*put_fn)(void *arg, const char *k, size_t kl, const char *v,
                       size_t vl);

static void
event_keys(uint64_t seq, const codec_view_t *v, const void *body, size_t len,
           put_fn put, void *arg)
{
    char key[KEY_MAX + 16], be[8];
    size_t n;

    put_be64(be, seq);
    key[0] = 'e';
    memcpy(key + 1, be, 8);
    put(arg, key, 9, body, len);
    n = name_key(key, 'o', v->object.ptr, v->object.len, be, 8);
    put(arg, key, n, "", 0);
    n = name_key(key, 't', v->type.ptr, v->type.len, be, 8);
    put(arg, key, n, "", 0);
    size_t pos = 0;
    codec_slice_t dep;
    while (codec_view_next_dep(v, &pos, &dep)) {
        n = name_key(key, 'd', v->object.ptr, v->object.len, dep.ptr, dep.len);
        put(arg, key, n, "", 0);
        n = name_key(key, 'r', dep.ptr, dep.len, v->object.ptr, v->object.len);
        put(arg, key, n, "", 0);
    }
}

/* ------------------------------------------------------------------ */
/* table reads */

/*
 * LevelDB 1.23 reads table files through mmap() (up to 1000 of them on a
 * 64-bit machine). Every page a read or a compaction touches then stays
 * in the listener's RSS until the table is closed: a 2M-event ingest
 * peaked at 40-50 MiB of them, in compactions of 20 and more tables
 * (docs/performance.md). With pread(), what RocksDB does by default, the
 * table bytes stay in the kernel's page cache and the listener's memory
 * is its own: the block cache, the memtables, the ingest queue.
 *
 * LevelDB's only switch for it is EnvPosixTestHelper::SetReadOnlyMMapLimit,
 * a static C++ member taking an int, exported by Debian's libleveldb.a
 * (not by the shared library). It must run before LevelDB creates its
 * default Env, which the first leveldb_options_create() does: every path
 * here to LevelDB goes through table_reads_init() first. CMake defines
 * FONTE_TABLE_PREAD when the symbol links (cmake/FonteDeps.cmake).
 */
#if FONTE_TABLE_PREAD
void fonte_leveldb_mmap_limit(int limit) __asm__(
    "_ZN7leveldb18EnvPosixTestHelper20SetReadOnlyMMapLimitEi");

static void
table_reads_once(void)
{
    fonte_leveldb_mmap_limit(0);
}
#else
static void
table_reads_once(void)
{
}
#endif

static pthread_once_t table_reads_done = PTHREAD_ONCE_INIT;

static void
table_reads_init(void)
{
    pthread_once(&table_reads_done, table_reads_once);
}

const char *
store_table_reads(void)
{
    return FONTE_TABLE_PREAD ? "pread" : "mmap";
}

/* ------------------------------------------------------------------ */
/* open, close, repair */

void
store_opts_init(store_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->dir = "./fonte-data";
    o->cache_bytes = (size_t) 8 << 20;
    o->write_buffer = (size_t) 4 << 20;
    o->block_size = (size_t) 16 << 10;
    o->sync = true;
    o->create = true;
    /* LevelDB's floor (64 tables + 10). Each open table holds a file
     * descriptor and its index and bloom blocks in memory (or, where
     * tables are mmapped, every page of it that was touched): 74 instead
     * of 100 took the mmapped part of a 2M-event ingest from ~65 to ~46
     * MiB. */
    o->max_open_files = 74;
}

/* One line for a LevelDB open error: what it means, then its text. */
static void
explain_open_error(const char *dir, const char *err, char *buf, size_t cap)
{
    const char *what = "cannot open the store";
    if (strstr(err, "lock") != NULL &&
        (strstr(err, "unavailable") != NULL || strstr(err, "held") != NULL))
        what = "locked by another process (is a listener running on it?)";
    else if (strncmp(err, "Corruption", 10) == 0)
        what = "corrupt (fonte-listener --repair may recover it)";
    else if (strstr(err, "Permission denied") != NULL ||
             strstr(err, "Read-only") != NULL)
        what = "not writable";
    else if (strstr(err, "does not exist") != NULL)
        what = "not a fonte store";
    else if (strstr(err, "Not a directory") != NULL ||
             strstr(err, "Is a directory") != NULL)
        what = "not usable as a data directory";
    snprintf(buf, cap, "data dir %s: %s (%s)", dir, what, err);
}

/* True if dir holds a LevelDB database (its CURRENT file); else false
 * with why in buf, in explain_open_error's words. */
static bool
looks_like_store(const char *dir, char *buf, size_t cap)
{
    char path[4096];
    struct stat st;

    if (stat(dir, &st) != 0) {
        snprintf(buf, cap, "data dir %s: not a fonte store (%s)", dir,
                 strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(buf, cap, "data dir %s: not usable as a data directory "
                 "(not a directory)", dir);
        return false;
    }
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    if (stat(path, &st) != 0) {
        snprintf(buf, cap, "data dir %s: not a fonte store (no LevelDB "
                 "database in it: %s/CURRENT: %s)", dir, dir,
                 strerror(errno));
        return false;
    }
    return true;
}

static bool
read_u64(store_t *s, const char *key, uint64_t *out, char **err)
{
    size_t vlen = 0;
    char *v = leveldb_get(s->db, s->ropts, key, strlen(key), &vlen, err);
    *out = 0;
    if (*err != NULL)
        return false;
    if (v != NULL && vlen == 8)
        *out = get_be64(v);
    leveldb_free(v);
    return true;
}

/* The seq of the last `e` key, 0 if none. */
static fonte_err
last_event_key(store_t *s, uint64_t *seq)
{
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
    fonte_err rc = FONTE_OK;
    *seq = 0;
    leveldb_iter_seek(it, "f", 1);
    if (leveldb_iter_valid(it))
        leveldb_iter_prev(it);
    else
        leveldb_iter_seek_to_last(it);
    if (leveldb_iter_valid(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == 9 && k[0] == 'e')
            *seq = get_be64(k + 1);
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err != NULL) {
        leveldb_free(err);
        rc = FONTE_ESTORE;
    }
    leveldb_iter_destroy(it);
    return rc;
}

static fonte_err
load_counters(store_t *s, char *errbuf, size_t errlen)
{
    static const char *const keys[] = { "mlast_seq", "mevents", "mobjects",
                                        "msessions" };
    _Atomic uint64_t *dst[] = { &s->last_seq, &s->events, &s->objects,
                                &s->sessions };
    for (size_t i = 0; i < 4; i++) {
        char *err = NULL;
        uint64_t v;
        if (!read_u64(s, keys[i], &v, &err)) {
            snprintf(errbuf, errlen, "data dir %s: corrupt (%s)", s->dir, err);
            leveldb_free(err);
            return FONTE_ESTORE;
        }
        atomic_store(dst[i], v);
    }
    uint64_t last_e;
    if (last_event_key(s, &last_e) != FONTE_OK ||
        last_e != atomic_load(&s->last_seq)) {
        snprintf(errbuf, errlen,
                 "data dir %s: corrupt (last event key is seq %llu but "
                 "last_seq is %llu)", s->dir, (unsigned long long) last_e,
                 (unsigned long long) atomic_load(&s->last_seq));
        return FONTE_ESTORE;
    }
    return FONTE_OK;
}

/* Reads m"format": refuses a store of a format newer than this code
 * knows, or with a format key that is not one. *missing when it has none
 * (a new store, or one from before the key): load_id writes it. */
static fonte_err
load_format(store_t *s, bool *missing, char *errbuf, size_t errlen)
{
    size_t vlen = 0;
    char *err = NULL;
    char *v = leveldb_get(s->db, s->ropts, "mformat", 7, &vlen, &err);

    *missing = false;
    if (err != NULL) {
        snprintf(errbuf, errlen, "data dir %s: cannot read its format (%s)",
                 s->dir, err);
        leveldb_free(err);
        return FONTE_ESTORE;
    }
    if (v == NULL) {
        *missing = true;
        return FONTE_OK;
    }
    uint64_t f = vlen == 8 ? get_be64(v) : 0;
    leveldb_free(v);
    if (f == 0) {
        snprintf(errbuf, errlen, "data dir %s: corrupt (its format key is "
                 "not a format number)", s->dir);
        return FONTE_ESTORE;
    }
    if (f > STORE_FORMAT) {
        snprintf(errbuf, errlen, "data dir %s: store format %llu, written "
                 "by a newer fonte; this fonte-listener %s reads format %d "
                 "only. Run the newer one on it (no data was changed)",
                 s->dir, (unsigned long long) f, FONTE_VERSION, STORE_FORMAT);
        return FONTE_ESTORE;
    }
    return FONTE_OK;
}

/* Reads m"id", or makes and writes (synced) one for a store that has
 * none: a new store, or one from before ids. With format_missing, writes
 * m"format" in the same synced batch. */
static fonte_err
load_id(store_t *s, bool format_missing, char *errbuf, size_t errlen)
{
    size_t vlen = 0;
    char *err = NULL;
    char *v = leveldb_get(s->db, s->ropts, "mid", 3, &vlen, &err);
    bool present = v != NULL;
    if (err == NULL && present && vlen == CODEC_LISTENER_ID_LEN) {
        memcpy(s->id, v, vlen);
        s->id[vlen] = '\0';
    }
    leveldb_free(v);
    bool id_ok = err == NULL && codec_listener_id_valid(s->id);
    if (id_ok && !format_missing)
        return FONTE_OK;
    if (err == NULL && present && !id_ok) {
        snprintf(errbuf, errlen, "data dir %s: corrupt (its id is not 16 "
                 "hex digits)", s->dir);
        return FONTE_ESTORE;
    }
    uint8_t r[CODEC_LISTENER_ID_LEN / 2];
    if (err == NULL && !id_ok &&
        getrandom(r, sizeof r, 0) != (ssize_t) sizeof r) {
        snprintf(errbuf, errlen, "data dir %s: no random bytes for its id "
                 "(%s)", s->dir, strerror(errno));
        return FONTE_ESTORE;
    }
    for (size_t i = 0; err == NULL && !id_ok && i < sizeof r; i++)
        snprintf(s->id + 2 * i, 3, "%02x", r[i]);
    if (err == NULL) {
        leveldb_writebatch_t *wb = leveldb_writebatch_create();
        leveldb_writeoptions_t *w = leveldb_writeoptions_create();
        char f[8];
        if (!id_ok)
            leveldb_writebatch_put(wb, "mid", 3, s->id,
                                   CODEC_LISTENER_ID_LEN);
        if (format_missing) {
            put_be64(f, STORE_FORMAT);
            leveldb_writebatch_put(wb, "mformat", 7, f, sizeof f);
        }
        leveldb_writeoptions_set_sync(w, 1);
        leveldb_write(s->db, w, wb, &err);
        leveldb_writeoptions_destroy(w);
        leveldb_writebatch_destroy(wb);
    }
    if (err != NULL) {
        snprintf(errbuf, errlen, "data dir %s: cannot read or write its id "
                 "and format (%s)", s->dir, err);
        leveldb_free(err);
        return FONTE_ESTORE;
    }
    return FONTE_OK;
}

const char *
store_id(const store_t *s)
{
    return s->id;
}

/* LevelDB tells what it dropped while recovering its log only in its own
 * info log, DIR/LOG, which it starts afresh at each open ("(ignoring
 * error) .../000003.log: dropping 32768 bytes; Corruption: checksum
 * mismatch"). Those lines, up to OPEN_NOTES_MAX of them, joined by
 * newlines; NULL if there are none (or no LOG). */
#define OPEN_NOTES_MAX 8
static char *
open_notes(const char *dir)
{
    char path[4096], line[1024];
    size_t n = 0, used = 0, cap = OPEN_NOTES_MAX * sizeof line;
    char *notes = NULL;

    snprintf(path, sizeof path, "%s/LOG", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    while (n < OPEN_NOTES_MAX && fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, "dropping") == NULL &&
            strstr(line, "Corruption") == NULL)
            continue;
        if (notes == NULL && (notes = malloc(cap)) == NULL)
            break;
        line[strcspn(line, "\n")] = '\0';
        /* after LevelDB's timestamp and thread id */
        const char *text = line;
        for (int spaces = 0; spaces < 2 && strchr(text, ' ') != NULL;
             spaces++)
            text = strchr(text, ' ') + 1;
        used += (size_t) snprintf(notes + used, cap - used, "%s%s",
                                  n ? "\n" : "", text);
        n++;
    }
    fclose(f);
    return notes;
}

const char *
store_open_notes(const store_t *s)
{
    return s->open_notes;
}

static void
free_handles(store_t *s)
{
    if (s->db)
        leveldb_close(s->db);
    if (s->options)
        leveldb_options_destroy(s->options);
    if (s->cache)
        leveldb_cache_destroy(s->cache);
    if (s->filter)
        leveldb_filterpolicy_destroy(s->filter);
    if (s->ropts)
        leveldb_readoptions_destroy(s->ropts);
    if (s->wopts)
        leveldb_writeoptions_destroy(s->wopts);
}

fonte_err
store_open(const store_opts_t *o, store_t **store_p, char *errbuf,
           size_t errlen)
{
    fonte_err rc = FONTE_ENOMEM;
    char *err = NULL;
    store_t *s;

    *store_p = NULL;
    if (errlen)
        errbuf[0] = '\0';
    if ((s = calloc(1, sizeof *s)) == NULL)
        return FONTE_ENOMEM;
    s->obj_cache = calloc(OBJ_CACHE_SLOTS, sizeof *s->obj_cache);
    s->ses_cache = calloc(SES_CACHE_SLOTS, sizeof *s->ses_cache);
    s->dir = strdup(o->dir);
    if (!s->obj_cache || !s->ses_cache || !s->dir)
        goto fail;
    s->opts = *o;

    if (o->create && mkdir(o->dir, 0755) != 0 && errno != EEXIST) {
        snprintf(errbuf, errlen, "data dir %s: cannot create (%s)", o->dir,
                 strerror(errno));
        rc = FONTE_ESTORE;
        goto fail;
    }
    table_reads_init();
    s->options = leveldb_options_create();
    s->cache = leveldb_cache_create_lru(o->cache_bytes ? o->cache_bytes : 1);
    s->filter = leveldb_filterpolicy_create_bloom(10);
    s->ropts = leveldb_readoptions_create();
    /* every read checks LevelDB's block checksums (hardware CRC32C: a
     * full scan took 3-5% longer): a damaged block is an error, never
     * events served as if whole to a service rebuilding from them */
    leveldb_readoptions_set_verify_checksums(s->ropts, 1);
    s->wopts = leveldb_writeoptions_create();
    leveldb_options_set_create_if_missing(s->options, o->create);
    leveldb_options_set_cache(s->options, s->cache);
    leveldb_options_set_filter_policy(s->options, s->filter);
    leveldb_options_set_compression(s->options, leveldb_snappy_compression);
    if (o->write_buffer)
        leveldb_options_set_write_buffer_size(s->options, o->write_buffer);
    if (o->max_open_files > 0)
        leveldb_options_set_max_open_files(s->options, o->max_open_files);
    if (o->block_size)
        leveldb_options_set_block_size(s->options, o->block_size);
    leveldb_writeoptions_set_sync(s->wopts, o->sync);

    /* LevelDB makes the directory, LOCK and LOG before it finds out
     * that there is no store there: without create, nothing is made */
    if (!o->create && !looks_like_store(o->dir, errbuf, errlen)) {
        rc = FONTE_ESTORE;
        goto fail;
    }
    s->db = leveldb_open(s->options, o->dir, &err);
    if (err != NULL) {
        explain_open_error(o->dir, err, errbuf, errlen);
        leveldb_free(err);
        s->db = NULL;
        rc = FONTE_ESTORE;
        goto fail;
    }
    s->open_notes = open_notes(o->dir); /* now: the next open rotates LOG */
    bool format_missing = false;
    if ((rc = load_format(s, &format_missing, errbuf, errlen)) != FONTE_OK ||
        (rc = load_counters(s, errbuf, errlen)) != FONTE_OK ||
        (rc = load_id(s, format_missing, errbuf, errlen)) != FONTE_OK) {
        size_t used = strlen(errbuf);
        if (s->open_notes != NULL && used + 1 < errlen)
            snprintf(errbuf + used, errlen - used, "; LevelDB at open: %.*s",
                     (int) strcspn(s->open_notes, "\n"), s->open_notes);
        goto fail;
    }
    *store_p = s;
    return FONTE_OK;

fail:
    if (rc == FONTE_ENOMEM && errlen)
        snprintf(errbuf, errlen, "data dir %s: out of memory", o->dir);
    store_close(&s);
    return rc;
}

void
store_close(store_t **store_p)
{
    store_t *s = *store_p;
    if (s == NULL)
        return;
    *store_p = NULL;
    free_handles(s);
    if (s->obj_cache)
        for (size_t i = 0; i < OBJ_CACHE_SLOTS; i++)
            free(s->obj_cache[i].name);
    free(s->obj_cache);
    free(s->ses_cache);
    free(s->open_notes);
    free(s->dir);
    free(s);
}

const char *
store_dir(const store_t *s)
{
    return s->dir;
}

static bool
has_file(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* Counts the table (.ldb/.sst) and log (.log) files in dir. */
static void
count_files(const char *dir, int *tables, int *logs)
{
    *tables = *logs = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');
        if (dot && (!strcmp(dot, ".ldb") || !strcmp(dot, ".sst")))
            (*tables)++;
        else if (dot && !strcmp(dot, ".log"))
            (*logs)++;
    }
    closedir(d);
}

#define BACKUP_BATCH_BYTES ((size_t) 1 << 20)

/* fsyncs the directory that holds path (a rename in it is then durable).
 * 0 or -1 (errno). */
static int
sync_parent(const char *path)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    if (slash == NULL)
        snprintf(d, sizeof d, ".");
    else if (slash == d)
        d[1] = '\0';
    else
        *slash = '\0';
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

fonte_err
store_backup(store_t *s, const char *dir, const atomic_bool *stop,
             store_backup_info_t *out, char *errbuf, size_t errlen)
{
    struct stat st;
    char *err = NULL;
    fonte_err rc = FONTE_OK;

    memset(out, 0, sizeof *out);
    if (stat(dir, &st) == 0 || errno != ENOENT) {
        snprintf(errbuf, errlen, "backup %s: %s", dir,
                 stat(dir, &st) == 0 ? "exists already" : strerror(errno));
        return FONTE_EINVAL;
    }
    /* The copy is made in DIR.partial and renamed to DIR once whole and
     * synced: a backup cut short (kill -9, a power loss) leaves no DIR
     * that opens as a store with keys missing. (Backup names have no
     * dot, so DIR.partial is never another backup.) One left by a crash
     * is removed here. */
    char part[4096];
    if (snprintf(part, sizeof part, "%s.partial", dir) >= (int) sizeof part) {
        snprintf(errbuf, errlen, "backup %s: path too long", dir);
        return FONTE_EINVAL;
    }
    if (stat(part, &st) == 0)
        store_remove_new(part);
    /* the store's own table options (block size, open tables, memtable,
     * bloom filters, compression): the copy is as compact, and costs the
     * listener as little memory, as the store */
    leveldb_options_t *opt = leveldb_options_create();
    leveldb_options_set_create_if_missing(opt, 1);
    leveldb_options_set_error_if_exists(opt, 1);
    leveldb_options_set_filter_policy(opt, s->filter);
    leveldb_options_set_compression(opt, leveldb_snappy_compression);
    if (s->opts.write_buffer)
        leveldb_options_set_write_buffer_size(opt, s->opts.write_buffer);
    if (s->opts.max_open_files > 0)
        leveldb_options_set_max_open_files(opt, s->opts.max_open_files);
    if (s->opts.block_size)
        leveldb_options_set_block_size(opt, s->opts.block_size);
    leveldb_t *db = leveldb_open(opt, part, &err);
    if (err != NULL) {
        snprintf(errbuf, errlen, "backup %s: cannot create (%s)", part, err);
        leveldb_free(err);
        leveldb_options_destroy(opt);
        return FONTE_ESTORE;
    }
    const leveldb_snapshot_t *snap = leveldb_create_snapshot(s->db);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(ro, snap);
    leveldb_readoptions_set_fill_cache(ro, 0);
    /* a block that fails its checksum fails the backup: never a copy of
     * damage that looks whole */
    leveldb_readoptions_set_verify_checksums(ro, 1);
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, ro);
    size_t pending = 0;

    for (leveldb_iter_seek_to_first(it); rc == FONTE_OK;) {
        bool more = leveldb_iter_valid(it);
        if (more) {
            size_t kl, vl;
            const char *k = leveldb_iter_key(it, &kl);
            const char *v = leveldb_iter_value(it, &vl);
            if (kl == 3 && memcmp(k, "mid", 3) == 0) {
                /* not the id: a listener on the copy is another one
                 * (it makes its own at the first open) */
                leveldb_iter_next(it);
                continue;
            }
            leveldb_writebatch_put(wb, k, kl, v, vl);
            if (kl == 9 && k[0] == 'm' && memcmp(k, "mlast_seq", 9) == 0 &&
                vl == 8)
                out->last_seq = get_be64(v);
            out->keys++;
            out->bytes += kl + vl;
            pending += kl + vl;
            leveldb_iter_next(it);
        }
        if (more && pending < BACKUP_BATCH_BYTES)
            continue;
        if (stop != NULL && atomic_load(stop)) {
            rc = FONTE_ECLOSED;
            snprintf(errbuf, errlen, "backup %s: stopped", dir);
            break;
        }
        /* every batch synced: LevelDB may close a log it has not synced
         * when it switches memtables (and drop the flush under way when
         * it is closed), so syncing only the last one left megabytes of
         * the copy in a log no fsync had covered */
        leveldb_writeoptions_set_sync(wo, 1);
        leveldb_write(db, wo, wb, &err);
        leveldb_writebatch_clear(wb);
        pending = 0;
        if (err != NULL) {
            snprintf(errbuf, errlen, "backup %s: write failed (%s)", dir,
                     err);
            leveldb_free(err);
            err = NULL;
            rc = FONTE_ESTORE;
        }
        if (!more)
            break;
    }
    leveldb_iter_get_error(it, &err);
    if (err != NULL && rc == FONTE_OK) {
        snprintf(errbuf, errlen, "backup: reading the store failed (%s)",
                 err);
        rc = FONTE_ESTORE;
    }
    leveldb_free(err);
    leveldb_iter_destroy(it);
    leveldb_writebatch_destroy(wb);
    leveldb_writeoptions_destroy(wo);
    leveldb_readoptions_destroy(ro);
    leveldb_release_snapshot(s->db, snap);
    leveldb_close(db);
    leveldb_options_destroy(opt);
    bool renamed = false;
    if (rc == FONTE_OK && !(renamed = rename(part, dir) == 0)) {
        snprintf(errbuf, errlen, "backup %s: cannot rename %s to it (%s)",
                 dir, part, strerror(errno));
        rc = FONTE_ESTORE;
    }
    if (rc == FONTE_OK && sync_parent(dir) != 0) {
        snprintf(errbuf, errlen, "backup %s: cannot sync its directory (%s)",
                 dir, strerror(errno));
        rc = FONTE_ESTORE;
    }
    if (rc != FONTE_OK) /* ours only: a DIR made meanwhile is not */
        store_remove_new(renamed ? dir : part);
    return rc;
}

void
store_remove_new(const char *dir)
{
    char *err = NULL;
    leveldb_options_t *opt = leveldb_options_create();
    leveldb_destroy_db(opt, dir, &err);
    leveldb_options_destroy(opt);
    if (err != NULL) { /* best effort: what is left stays */
        leveldb_free(err);
        return;
    }
    rmdir(dir);
}

fonte_err
store_repair(const char *dir, char *msg, size_t msglen)
{
    struct stat st;
    char *err = NULL;
    int t0, l0, t1, l1;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(msg, msglen, "data dir %s: cannot repair (%s)", dir,
                 stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
        return FONTE_ESTORE;
    }
    count_files(dir, &t0, &l0);
    if (t0 == 0 && l0 == 0 && !has_file(dir, "CURRENT")) {
        snprintf(msg, msglen, "data dir %s: not a fonte store (no LevelDB "
                 "table, log or CURRENT file in it): nothing to repair, "
                 "nothing was changed", dir);
        return FONTE_ESTORE;
    }
    /* LevelDB's RepairDB takes no lock: run on the directory of a live
     * listener it would move the log that listener is appending to, and
     * what it acknowledged after would be gone at its next open. So the
     * lock LevelDB itself takes at open (fcntl on DIR/LOCK), held until
     * the repair is done. */
    char lockpath[4096];
    snprintf(lockpath, sizeof lockpath, "%s/LOCK", dir);
    int lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (lockfd < 0 || fcntl(lockfd, F_SETLK, &fl) != 0) {
        int e = errno;
        if (lockfd >= 0)
            close(lockfd);
        if (e == EAGAIN || e == EACCES)
            snprintf(msg, msglen, "data dir %s: locked by another process "
                     "(is a listener running on it? stop it first): nothing "
                     "was changed", dir);
        else
            snprintf(msg, msglen, "data dir %s: cannot lock %s (%s): "
                     "nothing was changed", dir, lockpath, strerror(e));
        return FONTE_ESTORE;
    }
    table_reads_init();
    /* The logs first, replayed with their checksums: RepairDB reads them
     * without (LevelDB 1.23's repair.cc: "do not checksum"), so a record
     * with a flipped bit would come out of it as a valid event. A normal
     * open checks every record it replays, turns the logs into tables
     * and drops what fails (kept for the message). It takes the lock
     * itself, in this process: ours is let go first (closing any of the
     * process's descriptors of LOCK would drop it anyway), and taken
     * again for RepairDB. */
    close(lockfd);
    char *notes = NULL;
    leveldb_options_t *opt = leveldb_options_create();
    leveldb_t *db = leveldb_open(opt, dir, &err);
    if (db != NULL) {
        leveldb_close(db);
        notes = open_notes(dir);
    } else if (err != NULL && strstr(err, "lock") != NULL) {
        snprintf(msg, msglen, "data dir %s: locked by another process (is a "
                 "listener running on it? stop it first): nothing was "
                 "changed", dir);
        leveldb_free(err);
        leveldb_options_destroy(opt);
        return FONTE_ESTORE;
    }
    leveldb_free(err); /* it did not open: RepairDB is what it needs */
    err = NULL;
    lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lockfd < 0 || fcntl(lockfd, F_SETLK, &fl) != 0) {
        if (lockfd >= 0)
            close(lockfd);
        snprintf(msg, msglen, "data dir %s: locked by another process "
                 "before the repair (is a listener starting on it? stop it "
                 "first); its logs were replayed into tables, nothing else "
                 "was changed", dir);
        free(notes);
        leveldb_options_destroy(opt);
        return FONTE_ESTORE;
    }
    /* tables read with their checksums checked (repair.cc: verify_checksums
     * = paranoid_checks): a damaged block is not copied as if whole */
    leveldb_options_set_paranoid_checks(opt, 1);
    leveldb_repair_db(opt, dir, &err);
    leveldb_options_destroy(opt);
    close(lockfd); /* drops the lock: the reopen below takes its own */
    if (err != NULL) {
        snprintf(msg, msglen, "data dir %s: repair failed (%s)", dir, err);
        leveldb_free(err);
        free(notes);
        return FONTE_ESTORE;
    }
    count_files(dir, &t1, &l1);

    /* Reopen to say what the store now holds. */
    store_opts_t o;
    store_t *s = NULL;
    char why[512];
    store_opts_init(&o);
    o.dir = dir;
    o.create = false;
    o.cache_bytes = 1 << 20;
    fonte_err rc = store_open(&o, &s, why, sizeof why);
    if (rc != FONTE_OK) {
        snprintf(msg, msglen,
                 "data dir %s: repaired (%d tables and %d logs before, %d "
                 "tables after) but it still does not open: %s",
                 dir, t0, l0, t1, why);
        free(notes);
        return FONTE_ESTORE;
    }
    /* then what it holds, checked: the counters are only what the m keys
     * say, and a repair that dropped a block leaves them above the data */
    store_counts_t c;
    store_counts(s, &c);
    store_verify_report_t *r = malloc(sizeof *r);
    if (r == NULL || store_verify(s, r, why, sizeof why) != FONTE_OK) {
        snprintf(msg, msglen, "data dir %s: repaired (%d tables and %d logs "
                 "before, %d tables after), but checking it failed: %s", dir,
                 t0, l0, t1, r == NULL ? "out of memory" : why);
        free(r);
        free(notes);
        store_close(&s);
        return FONTE_ESTORE;
    }
    store_close(&s);
    int n = snprintf(msg, msglen,
                     "data dir %s: repaired: rebuilt the manifest from %d "
                     "table file(s) and %d log file(s) into %d table "
                     "file(s); last_seq=%llu objects=%llu sessions=%llu",
                     dir, t0, l0, t1, (unsigned long long) c.last_seq,
                     (unsigned long long) c.objects,
                     (unsigned long long) c.sessions);
    size_t used = n > 0 && (size_t) n < msglen ? (size_t) n : msglen;
    if (notes != NULL && used < msglen)
        used += (size_t) snprintf(msg + used, msglen - used,
                                  "; LevelDB dropped part of the log: %.*s",
                                  (int) strcspn(notes, "\n"), notes);
    if (r->problems > 0 && used < msglen)
        snprintf(msg + used, msglen - used,
                 "; but it is INCONSISTENT (%llu problem%s, first: %s): "
                 "events were lost (damaged blocks are in %s/lost); "
                 "restore from a backup, or run fonte-listener --verify for "
                 "the first %d", (unsigned long long) r->problems,
                 r->problems == 1 ? "" : "s", r->shown[0], dir,
                 STORE_VERIFY_SHOWN);
    rc = r->problems > 0 || notes != NULL ? FONTE_ELIMIT : FONTE_OK;
    free(r);
    free(notes);
    return rc;
}

/* ------------------------------------------------------------------ */
/* verification (store_verify) */

/* A session seen in the `e` keys: its last producer_seq. */
typedef struct vses {
    char producer[CODEC_PRODUCER_MAX];
    size_t len;
    uint64_t session, last;
    bool has_p;
} vses_t;

typedef struct verify {
    store_t *s;
    leveldb_readoptions_t *ro;
    store_verify_report_t *out;
    vses_t *ses;     /* open addressing, cap a power of two */
    size_t n_ses, cap_ses;
    uint64_t seq; /* the event whose keys verify_key checks; 0: none */
    /* The o and t keys are checked as multisets: the sum of a hash of
     * each key the events imply against the sum over the keys there
     * (one sequential pass each, no get). Only if they differ does a
     * second pass get each event's key, to name what is missing. */
    uint64_t sum_want[2], sum_have[2]; /* [0] o, [1] t */
    bool get_ot;  /* that second pass: get the o and t keys */
    bool mute;    /* in it, every other problem (counted in the first) */
    bool nomem;
    /* the default rules, at any size: the listener may store events over
     * the default limit (--max-msg); verify judges shape, not size */
    codec_limits_t lim;
} verify_t;

static uint64_t
key_hash(const char *k, size_t kl)
{
    uint64_t h = fonte_fnv1a(k, kl, FONTE_FNV_BASIS);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static void
problem(verify_t *v, const char *fmt, ...)
{
    char text[sizeof v->out->shown[0]];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (v->mute && strncmp(text, "no o key", 8) != 0 &&
        strncmp(text, "no t key", 8) != 0)
        return;
    if (v->out->problems < STORE_VERIFY_SHOWN)
        memcpy(v->out->shown[v->out->problems], text, sizeof text);
    v->out->problems++;
}


static vses_t *
vses_find(verify_t *v, codec_slice_t producer, uint64_t session, bool add)
{
    if (add && 2 * (v->n_ses + 1) > v->cap_ses) {
        size_t cap = v->cap_ses ? 2 * v->cap_ses : 1024;
        vses_t *t = calloc(cap, sizeof *t);
        if (t == NULL) {
            v->nomem = true;
            return NULL;
        }
        for (size_t i = 0; i < v->cap_ses; i++) {
            if (v->ses[i].len == 0)
                continue;
            codec_slice_t p = { v->ses[i].producer, v->ses[i].len };
            size_t j = hash_session(p, v->ses[i].session) & (cap - 1);
            while (t[j].len != 0)
                j = (j + 1) & (cap - 1);
            t[j] = v->ses[i];
        }
        free(v->ses);
        v->ses = t;
        v->cap_ses = cap;
    }
    if (v->cap_ses == 0 || producer.len == 0 ||
        producer.len > CODEC_PRODUCER_MAX)
        return NULL;
    size_t j = hash_session(producer, session) & (v->cap_ses - 1);
    for (;; j = (j + 1) & (v->cap_ses - 1)) {
        vses_t *e = &v->ses[j];
        if (e->len == 0) {
            if (!add)
                return NULL;
            memcpy(e->producer, producer.ptr, producer.len);
            e->len = producer.len;
            e->session = session;
            v->n_ses++;
            return e;
        }
        if (e->len == producer.len && e->session == session &&
            memcmp(e->producer, producer.ptr, producer.len) == 0)
            return e;
    }
}

/* put_fn for event_keys: every key but `e` must be there. */
static void
verify_key(void *arg, const char *k, size_t kl, const char *val, size_t vl)
{
    verify_t *v = arg;
    (void) val;
    (void) vl;
    if (k[0] == 'e')
        return;
    if ((k[0] == 'o' || k[0] == 't') && v->seq != 0) {
        v->sum_want[k[0] == 't'] += key_hash(k, kl);
        if (!v->get_ot)
            return;
    }
    char *err = NULL;
    size_t got = 0;
    char *x = leveldb_get(v->s->db, v->ro, k, kl, &got, &err);
    if (err != NULL) {
        problem(v, "cannot read a %c key (%s)", k[0], err);
        leveldb_free(err);
    } else if (x == NULL && v->seq != 0) {
        problem(v, "no %c key for %s of event %llu", k[0], k + 1,
                (unsigned long long) v->seq);
    } else if (x == NULL) {
        problem(v, "no %c key for %s (the reverse of a d key)", k[0], k + 1);
    }
    leveldb_free(x);
}

/* The events: contiguous seqs, valid, indexed; the sessions they make. */
static void
verify_events(verify_t *v, leveldb_iterator_t *it, uint64_t *last)
{
    uint64_t expect = 1;
    for (leveldb_iter_seek(it, "e", 1); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (k[0] != 'e')
            break;
        const char *val = leveldb_iter_value(it, &vl);
        v->out->keys++;
        if (kl != 9) {
            problem(v, "an e key of %zu bytes, not 9", kl);
            continue;
        }
        uint64_t seq = get_be64(k + 1);
        if (seq != expect)
            problem(v, "event %llu follows %llu: seqs are not contiguous",
                    (unsigned long long) seq,
                    (unsigned long long) (expect - 1));
        expect = seq + 1;
        *last = seq;
        v->out->events++;
        codec_view_t ev;
        fonte_err rc = codec_event_scan(val, vl, &v->lim, &ev);
        if (rc != FONTE_OK) {
            problem(v, "event %llu does not decode: %s",
                    (unsigned long long) seq, fonte_strerror(rc));
            continue;
        }
        if (ev.has_replay)
            problem(v, "event %llu is a replay", (unsigned long long) seq);
        v->seq = seq;
        event_keys(seq, &ev, val, vl, verify_key, v);
        v->seq = 0;
        vses_t *ses = vses_find(v, ev.producer, ev.session, true);
        if (ses == NULL)
            continue; /* out of memory: said at the end */
        if (ev.producer_seq != ses->last + 1)
            problem(v, "event %llu is producer_seq %llu of %.*s/%016llx, "
                    "after %llu", (unsigned long long) seq,
                    (unsigned long long) ev.producer_seq,
                    (int) ev.producer.len, ev.producer.ptr,
                    (unsigned long long) ev.session,
                    (unsigned long long) ses->last);
        ses->last = ev.producer_seq;
    }
}

/* One index family: its keys well formed; the distinct names in *names
 * (o, t), the reverse key of each (d). Returns how many keys. */
static uint64_t
verify_family(verify_t *v, leveldb_iterator_t *it, char fam, uint64_t *names)
{
    char prefix[1] = { fam }, prev[KEY_MAX];
    size_t prev_len = 0;
    uint64_t n = 0;
    for (leveldb_iter_seek(it, prefix, 1); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (k[0] != fam)
            break;
        n++;
        v->out->keys++;
        const char *nul = memchr(k + 1, '\0', kl - 1);
        size_t name_len = nul != NULL ? (size_t) (nul - k - 1) : 0;
        if (nul == NULL || name_len == 0 || name_len > KEY_MAX / 2 ||
            ((fam == 'o' || fam == 't') && kl != 2 + name_len + 8) ||
            ((fam == 'd' || fam == 'r') && kl == 2 + name_len)) {
            problem(v, "a malformed %c key of %zu bytes", fam, kl);
            continue;
        }
        if (fam == 'o' || fam == 't')
            v->sum_have[fam == 't'] += key_hash(k, kl);
        if (names != NULL && (name_len != prev_len ||
                              memcmp(prev, k + 1, name_len) != 0)) {
            (*names)++;
            memcpy(prev, k + 1, name_len);
            prev_len = name_len;
        }
        if (fam == 'd') { /* its reverse: r dep NUL object */
            char rk[KEY_MAX];
            size_t dl = kl - 2 - name_len;
            if (dl > KEY_MAX / 2) {
                problem(v, "a malformed d key of %zu bytes", kl);
                continue;
            }
            size_t rl = name_key(rk, 'r', nul + 1, dl, k + 1, name_len);
            verify_key(v, rk, rl, "", 0);
        }
    }
    return n;
}

/* a count of keys against what it must be */
static void
verify_count(verify_t *v, uint64_t n, char fam, uint64_t want,
             const char *what)
{
    if (n != want)
        problem(v, "%llu %c keys for %llu %s", (unsigned long long) n, fam,
                (unsigned long long) want, what);
}

/* The watermarks: one per session seen, equal to its last producer_seq. */
static void
verify_watermarks(verify_t *v, leveldb_iterator_t *it, uint64_t *n_p)
{
    for (leveldb_iter_seek(it, "p", 1); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (k[0] != 'p')
            break;
        const char *val = leveldb_iter_value(it, &vl);
        v->out->keys++;
        (*n_p)++;
        const char *nul = memchr(k + 1, '\0', kl - 1);
        if (nul == NULL || kl != (size_t) (nul - k) + 1 + 8 || vl != 16) {
            problem(v, "a malformed p key or value (%zu, %zu bytes)", kl, vl);
            continue;
        }
        codec_slice_t producer = { k + 1, (size_t) (nul - k - 1) };
        uint64_t session = get_be64(nul + 1), wm = get_be64(val);
        vses_t *ses = vses_find(v, producer, session, false);
        if (ses == NULL)
            problem(v, "watermark %llu of %.*s/%016llx, a session with no "
                    "event", (unsigned long long) wm, (int) producer.len,
                    producer.ptr, (unsigned long long) session);
        else if (ses->last != wm)
            problem(v, "watermark %llu of %.*s/%016llx, whose last stored "
                    "producer_seq is %llu", (unsigned long long) wm,
                    (int) producer.len, producer.ptr,
                    (unsigned long long) session,
                    (unsigned long long) ses->last);
        else
            ses->has_p = true;
    }
    for (size_t i = 0; i < v->cap_ses; i++)
        if (v->ses[i].len != 0 && !v->ses[i].has_p)
            problem(v, "session %.*s/%016llx has events and no watermark",
                    (int) v->ses[i].len, v->ses[i].producer,
                    (unsigned long long) v->ses[i].session);
}

/* The m keys against what was counted, and any key of no family. */
static void
verify_rest(verify_t *v, leveldb_iterator_t *it, uint64_t last,
            uint64_t n_p)
{
    static const char fams[] = "deoprtm";
    const struct { const char *key; uint64_t want; } m[] = {
        { "mlast_seq", last }, { "mevents", v->out->events },
        { "mobjects", v->out->objects }, { "msessions", n_p },
    };
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        uint64_t got = 0;
        char *err = NULL;
        size_t vlen = 0;
        char *val = leveldb_get(v->s->db, v->ro, m[i].key, strlen(m[i].key),
                                &vlen, &err);
        if (val != NULL && vlen == 8)
            got = get_be64(val);
        leveldb_free(val);
        if (err != NULL) {
            problem(v, "cannot read %s (%s)", m[i].key + 1, err);
            leveldb_free(err);
        } else if (got != m[i].want) {
            problem(v, "counter %s is %llu, the store holds %llu",
                    m[i].key + 1, (unsigned long long) got,
                    (unsigned long long) m[i].want);
        }
    }
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl > 0 && k[0] == 'm') {
            v->out->keys++;
        } else if (kl == 0 || memchr(fams, k[0], sizeof fams - 1) == NULL) {
            v->out->keys++;
            problem(v, "a key of no family (first byte 0x%02x)",
                    kl ? (unsigned) (uint8_t) k[0] : 0u);
        }
    }
}

fonte_err
store_verify(store_t *s, store_verify_report_t *out, char *errbuf,
             size_t errlen)
{
    verify_t v = { .s = s, .out = out, .lim = codec_limits_default };
    uint64_t last = 0, n_p = 0, types = 0;
    leveldb_iterator_t *it = NULL;

    memset(out, 0, sizeof *out);
    v.lim.max_msg = SIZE_MAX;
    const leveldb_snapshot_t *snap = leveldb_create_snapshot(s->db);
    v.ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(v.ro, snap);
    leveldb_readoptions_set_fill_cache(v.ro, 0);
    leveldb_readoptions_set_verify_checksums(v.ro, 1);

    /* each pass on an iterator of its own: a read error (a checksum that
     * does not match) ends that pass only, and is a problem */
#define VERIFY_PASS(what, call)                                           \
    do {                                                                  \
        it = leveldb_create_iterator(s->db, v.ro);                        \
        call;                                                             \
        char *err_ = NULL;                                                \
        leveldb_iter_get_error(it, &err_);                                \
        if (err_ != NULL) {                                               \
            problem(&v, "LevelDB cannot read the %s (%s): their check "   \
                    "stopped there", what, err_);                         \
            leveldb_free(err_);                                           \
        }                                                                 \
        leveldb_iter_destroy(it);                                         \
    } while (0)

    VERIFY_PASS("events", verify_events(&v, it, &last));
    uint64_t n_o = 0, n_t = 0;
    VERIFY_PASS("o keys", n_o = verify_family(&v, it, 'o', &out->objects));
    verify_count(&v, n_o, 'o', out->events, "events");
    VERIFY_PASS("t keys", n_t = verify_family(&v, it, 't', &types));
    verify_count(&v, n_t, 't', out->events, "events");
    if (v.sum_want[0] != v.sum_have[0] || v.sum_want[1] != v.sum_have[1]) {
        /* name the events whose keys are missing: the events again, with
         * a get of each o and t key, every other problem muted (counted
         * once already), on a session table of its own */
        problem(&v, "the o or t keys are not exactly the events' own");
        store_verify_report_t misses = { 0 };
        verify_t w = v;
        w.out = &misses; /* its counts are the first pass's again */
        w.ses = NULL;
        w.n_ses = w.cap_ses = 0;
        w.get_ot = true;
        w.mute = true;
        uint64_t ignored;
        VERIFY_PASS("events", verify_events(&w, it, &ignored));
        free(w.ses);
        v.nomem |= w.nomem;
        for (uint64_t i = 0; i < misses.problems; i++)
            if (i < STORE_VERIFY_SHOWN)
                problem(&v, "%s", misses.shown[i]);
            else
                out->problems++;
    }
    VERIFY_PASS("d keys", out->deps = verify_family(&v, it, 'd', NULL));
    uint64_t n_r = 0;
    VERIFY_PASS("r keys", n_r = verify_family(&v, it, 'r', NULL));
    verify_count(&v, n_r, 'r', out->deps, "d keys");
    VERIFY_PASS("watermarks", verify_watermarks(&v, it, &n_p));
    out->sessions = v.n_ses;
    VERIFY_PASS("counters and keys", verify_rest(&v, it, last, n_p));
#undef VERIFY_PASS

    leveldb_readoptions_destroy(v.ro);
    leveldb_release_snapshot(s->db, snap);
    free(v.ses);
    if (v.nomem) {
        snprintf(errbuf, errlen, "data dir %s: out of memory", s->dir);
        return FONTE_ENOMEM;
    }
    return FONTE_OK;
}

void
store_counts(const store_t *s, store_counts_t *c)
{
    c->last_seq = atomic_load(&s->last_seq);
    c->events = atomic_load(&s->events);
    c->objects = atomic_load(&s->objects);
    c->sessions = atomic_load(&s->sessions);
}

int64_t
store_disk_bytes(const store_t *s)
{
    char path[4096];
    struct stat st;
    int64_t total = 0;
    DIR *d = opendir(s->dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", s->dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            total += (int64_t) st.st_size;
    }
    closedir(d);
    return total;
}

/* ------------------------------------------------------------------ */
/* caches (writer thread) */

/* The object cache is 4-way set associative: a name lives in one of the
 * 4 slots of its set. Direct-mapped, 10 000 objects in 65 536 slots left
 * ~14% of them sharing a slot with another; two such objects evicted
 * each other on every event, and each miss is a LevelDB seek of the "o"
 * keys. */
#define OBJ_WAYS 4u

/* The OBJ_WAYS slots name may live in; *victim: the one to evict. */
static obj_slot_t *
obj_set(store_t *s, const char *name, size_t len, unsigned *victim)
{
    uint64_t h = fonte_fnv1a(name, len, FONTE_FNV_BASIS);
    return &s->obj_cache[fonte_hash_set(h, OBJ_CACHE_SLOTS, OBJ_WAYS,
                                        victim)];
}

static bool
obj_cached(store_t *s, const char *name, size_t len)
{
    unsigned victim;
    obj_slot_t *set = obj_set(s, name, len, &victim);
    for (unsigned w = 0; w < OBJ_WAYS; w++)
        if (set[w].name && set[w].len == len &&
            memcmp(set[w].name, name, len) == 0)
            return true;
    return false;
}

static void
obj_cache_put(store_t *s, const char *name, size_t len)
{
    unsigned victim;
    obj_slot_t *set = obj_set(s, name, len, &victim);
    obj_slot_t *sl = &set[victim]; /* if the set is full */
    for (unsigned w = 0; w < OBJ_WAYS; w++)
        if (set[w].name == NULL) {
            sl = &set[w];
            break;
        }
    char *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return; /* a cache: forgetting is always safe */
    memcpy(copy, name, len);
    free(sl->name);
    sl->name = copy;
    sl->len = len;
}

static ses_slot_t *
ses_slot(store_t *s, codec_slice_t producer, uint64_t session)
{
    return &s->ses_cache[hash_session(producer, session) &
                         (SES_CACHE_SLOTS - 1)];
}

static bool
ses_match(const ses_slot_t *sl, codec_slice_t producer, uint64_t session)
{
    return sl->used && sl->session == session && sl->plen == producer.len &&
           memcmp(sl->producer, producer.ptr, producer.len) == 0;
}

static void
ses_cache_put(store_t *s, codec_slice_t producer, uint64_t session,
              uint64_t last, int64_t time_us)
{
    ses_slot_t *sl = ses_slot(s, producer, session);
    sl->used = true;
    sl->plen = (uint8_t) producer.len;
    memcpy(sl->producer, producer.ptr, producer.len);
    sl->session = session;
    sl->last = last;
    sl->time_us = time_us;
}

/* The committed watermark: cache, else the `p` key. */
static fonte_err
committed_watermark(store_t *s, codec_slice_t producer, uint64_t session,
                    uint64_t *last)
{
    ses_slot_t *sl = ses_slot(s, producer, session);
    if (ses_match(sl, producer, session)) {
        *last = sl->last;
        return FONTE_OK;
    }
    char key[2 + CODEC_PRODUCER_MAX + 8], be[8], *err = NULL;
    size_t vlen = 0;
    put_be64(be, session);
    size_t kl = name_key(key, 'p', producer.ptr, producer.len, be, 8);
    char *v = leveldb_get(s->db, s->ropts, key, kl, &vlen, &err);
    if (err != NULL) {
        leveldb_free(err);
        return FONTE_ESTORE;
    }
    *last = v != NULL && vlen >= 8 ? get_be64(v) : 0;
    int64_t t = v != NULL && vlen >= 16 ? (int64_t) get_be64(v + 8) : 0;
    leveldb_free(v);
    ses_cache_put(s, producer, session, *last, t);
    return FONTE_OK;
}

/* ------------------------------------------------------------------ */
/* batches (writer thread) */

fonte_err
store_batch_new(store_t *s, store_batch_t **batch_p)
{
    store_batch_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return FONTE_ENOMEM;
    b->store = s;
    b->wb = leveldb_writebatch_create();
    *batch_p = b;
    return FONTE_OK;
}

static void
drop_new_objects(store_batch_t *b)
{
    for (size_t i = 0; i < b->n_new; i++)
        free(b->new_objs[i]);
    b->n_new = 0;
    if (b->obj_tab)
        memset(b->obj_tab, 0, b->obj_tab_cap * sizeof *b->obj_tab);
}

void
store_batch_clear(store_batch_t *b)
{
    leveldb_writebatch_clear(b->wb);
    if (b->probe) {
        leveldb_iter_destroy(b->probe);
        b->probe = NULL;
    }
    b->count = 0;
    b->n_ses = 0;
    b->done = false;
    if (b->ses_tab)
        memset(b->ses_tab, 0, b->ses_tab_cap * sizeof *b->ses_tab);
    drop_new_objects(b);
}

void
store_batch_destroy(store_batch_t **batch_p)
{
    store_batch_t *b = *batch_p;
    if (b == NULL)
        return;
    *batch_p = NULL;
    store_batch_clear(b);
    leveldb_writebatch_destroy(b->wb);
    free(b->ses);
    free(b->ses_tab);
    free(b->new_objs);
    free(b->new_lens);
    free(b->obj_tab);
    free(b);
}

size_t
store_batch_count(const store_batch_t *b)
{
    return b->count;
}

size_t
store_batch_sessions(const store_batch_t *b)
{
    return b->n_ses;
}

const store_session_t *
store_batch_session(const store_batch_t *b, size_t i)
{
    batch_ses_t *e = &b->ses[i];
    e->pub.producer.ptr = e->producer; /* the array may have moved */
    return &e->pub;
}

/* Open-addressing lookup in tab (cap a power of two, entries index + 1).
 * eq(arg, index) says whether entry index is the one sought. Returns the
 * slot: either holding the entry or empty. */
static uint32_t *
tab_find(uint32_t *tab, size_t cap, uint64_t h,
         bool (*eq)(const void *arg, size_t i), const void *arg)
{
    size_t m = cap - 1;
    for (size_t i = (size_t) h & m;; i = (i + 1) & m)
        if (tab[i] == 0 || eq(arg, tab[i] - 1))
            return &tab[i];
}

/* Grows tab so that it holds n + 1 entries at most half full; rehashes
 * with hash(arg, index). */
static bool
tab_reserve(uint32_t **tab_p, size_t *cap_p, size_t n,
            uint64_t (*hash)(const void *arg, size_t i), const void *arg)
{
    if (*cap_p >= 2 * (n + 1))
        return true;
    size_t cap = *cap_p ? *cap_p : 64;
    while (cap < 2 * (n + 1))
        cap *= 2;
    uint32_t *tab = calloc(cap, sizeof *tab);
    if (tab == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t j = (size_t) hash(arg, i) & (cap - 1);
        while (tab[j])
            j = (j + 1) & (cap - 1);
        tab[j] = (uint32_t) i + 1;
    }
    free(*tab_p);
    *tab_p = tab;
    *cap_p = cap;
    return true;
}

typedef struct ses_key {
    const store_batch_t *b;
    codec_slice_t producer;
    uint64_t session;
} ses_key_t;

static bool
ses_eq(const void *arg, size_t i)
{
    const ses_key_t *k = arg;
    const batch_ses_t *e = &k->b->ses[i];
    return e->pub.session == k->session && e->pub.producer.len ==
               k->producer.len &&
           memcmp(e->producer, k->producer.ptr, k->producer.len) == 0;
}

static uint64_t
ses_hash(const void *arg, size_t i)
{
    const store_batch_t *b = arg;
    codec_slice_t p = { b->ses[i].producer, b->ses[i].pub.producer.len };
    return hash_session(p, b->ses[i].pub.session);
}

static batch_ses_t *
batch_ses_find(store_batch_t *b, codec_slice_t producer, uint64_t session)
{
    if (b->n_ses == 0)
        return NULL;
    ses_key_t k = { b, producer, session };
    uint32_t *slot = tab_find(b->ses_tab, b->ses_tab_cap,
                              hash_session(producer, session), ses_eq, &k);
    return *slot ? &b->ses[*slot - 1] : NULL;
}

fonte_err
store_batch_watermark(store_batch_t *b, codec_slice_t producer,
                      uint64_t session, uint64_t *last)
{
    if (b->done)
        store_batch_clear(b);
    batch_ses_t *e = batch_ses_find(b, producer, session);
    if (e != NULL) {
        *last = e->pub.last;
        return FONTE_OK;
    }
    return committed_watermark(b->store, producer, session, last);
}

/* The batch's entry for a session, created on first use. */
static fonte_err
batch_ses_get(store_batch_t *b, codec_slice_t producer, uint64_t session,
              batch_ses_t **out)
{
    fonte_err rc;
    if ((*out = batch_ses_find(b, producer, session)) != NULL)
        return FONTE_OK;
    if (producer.len > CODEC_PRODUCER_MAX)
        return FONTE_EPRODUCER;
    uint64_t committed;
    if ((rc = committed_watermark(b->store, producer, session, &committed)))
        return rc;
    if (b->n_ses == b->cap_ses) {
        size_t cap = b->cap_ses ? 2 * b->cap_ses : 16;
        batch_ses_t *n = realloc(b->ses, cap * sizeof *n);
        if (n == NULL)
            return FONTE_ENOMEM;
        b->ses = n;
        b->cap_ses = cap;
    }
    if (!tab_reserve(&b->ses_tab, &b->ses_tab_cap, b->n_ses, ses_hash, b))
        return FONTE_ENOMEM;
    batch_ses_t *e = &b->ses[b->n_ses];
    memcpy(e->producer, producer.ptr, producer.len);
    e->pub.producer.ptr = e->producer;
    e->pub.producer.len = producer.len;
    e->pub.session = session;
    e->pub.last = e->pub.committed = committed;
    e->pub.time_us = 0;
    ses_key_t k = { b, producer, session };
    *tab_find(b->ses_tab, b->ses_tab_cap, hash_session(producer, session),
              ses_eq, &k) = (uint32_t) ++b->n_ses;
    *out = e;
    return FONTE_OK;
}

typedef struct obj_key {
    const store_batch_t *b;
    codec_slice_t name;
} obj_key_t;

static bool
obj_eq(const void *arg, size_t i)
{
    const obj_key_t *k = arg;
    return k->b->new_lens[i] == k->name.len &&
           memcmp(k->b->new_objs[i], k->name.ptr, k->name.len) == 0;
}

static uint64_t
obj_hash(const void *arg, size_t i)
{
    const store_batch_t *b = arg;
    return fonte_fnv1a(b->new_objs[i], b->new_lens[i], FONTE_FNV_BASIS);
}

/* Is object already in the store (committed)? Seeks the per-batch probe
 * iterator to "o" object NUL. */
static fonte_err
object_stored(store_batch_t *b, codec_slice_t obj, bool *stored)
{
    store_t *s = b->store;
    char key[KEY_MAX];
    if (obj_cached(s, obj.ptr, obj.len)) {
        *stored = true;
        return FONTE_OK;
    }
    if (b->probe == NULL)
        b->probe = leveldb_create_iterator(s->db, s->ropts);
    size_t kl = name_key(key, 'o', obj.ptr, obj.len, NULL, 0);
    leveldb_iter_seek(b->probe, key, kl);
    *stored = false;
    if (leveldb_iter_valid(b->probe)) {
        size_t l;
        const char *k = leveldb_iter_key(b->probe, &l);
        *stored = l >= kl && memcmp(k, key, kl) == 0;
    } else {
        char *err = NULL;
        leveldb_iter_get_error(b->probe, &err);
        if (err != NULL) {
            leveldb_free(err);
            return FONTE_ESTORE;
        }
    }
    if (*stored)
        obj_cache_put(s, obj.ptr, obj.len);
    return FONTE_OK;
}

/* Remembers obj as first stored by this batch; *added false if it was
 * already. */
static fonte_err
note_new_object(store_batch_t *b, codec_slice_t obj, bool *is_new)
{
    obj_key_t k = { b, obj };
    uint64_t h = fonte_fnv1a(obj.ptr, obj.len, FONTE_FNV_BASIS);
    *is_new = false;
    if (b->n_new && *tab_find(b->obj_tab, b->obj_tab_cap, h, obj_eq, &k))
        return FONTE_OK;
    bool stored;
    fonte_err rc = object_stored(b, obj, &stored);
    if (rc != FONTE_OK || stored)
        return rc;
    if (b->n_new == b->cap_new) {
        size_t cap = b->cap_new ? 2 * b->cap_new : 16;
        char **o = realloc(b->new_objs, cap * sizeof *o);
        if (o == NULL)
            return FONTE_ENOMEM;
        b->new_objs = o;
        size_t *l = realloc(b->new_lens, cap * sizeof *l);
        if (l == NULL)
            return FONTE_ENOMEM;
        b->new_lens = l;
        b->cap_new = cap;
    }
    if (!tab_reserve(&b->obj_tab, &b->obj_tab_cap, b->n_new, obj_hash, b))
        return FONTE_ENOMEM;
    char *copy = malloc(obj.len ? obj.len : 1);
    if (copy == NULL)
        return FONTE_ENOMEM;
    memcpy(copy, obj.ptr, obj.len);
    b->new_objs[b->n_new] = copy;
    b->new_lens[b->n_new] = obj.len;
    *tab_find(b->obj_tab, b->obj_tab_cap, h, obj_eq, &k) =
        (uint32_t) ++b->n_new;
    *is_new = true;
    return FONTE_OK;
}

static void
put_wb(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    leveldb_writebatch_put(arg, k, kl, v, vl);
}

fonte_err
store_batch_put(store_batch_t *b, const codec_view_t *view, const void *body,
                size_t len, uint64_t *seq_out)
{
    fonte_err rc;
    batch_ses_t *e;
    bool is_new;

    if (view->object.len > 1024 || view->type.len > 1024)
        return FONTE_ELIMIT; /* keys are built on the stack */
    if (b->done)
        store_batch_clear(b);
    if ((rc = batch_ses_get(b, view->producer, view->session, &e)))
        return rc;
    if (view->producer_seq != e->pub.last + 1)
        return FONTE_EINVAL; /* the caller's acceptance rule was skipped */
    if ((rc = note_new_object(b, view->object, &is_new)))
        return rc;
    uint64_t seq = atomic_load(&b->store->last_seq) + b->count + 1;
    event_keys(seq, view, body, len, put_wb, b->wb);
    e->pub.last = view->producer_seq;
    e->pub.time_us = view->time_us;
    b->count++;
    if (seq_out)
        *seq_out = seq;
    return FONTE_OK;
}

static void
put_m(leveldb_writebatch_t *wb, const char *name, uint64_t v)
{
    char be[8];
    put_be64(be, v);
    leveldb_writebatch_put(wb, name, strlen(name), be, 8);
}

/* Records the first failed write and refuses every later one. LevelDB
 * goes on writing after a failed append to its log, behind the torn
 * record; a later write it reports as synced can then be dropped with
 * that part of the log when the store is next opened ("checksum
 * mismatch"). So the first failure is the last write through this
 * handle: reopening the store (the torn record is then the log's end)
 * is the only way to write again. */
static void
write_failed(store_t *s, const char *why)
{
    if (atomic_load_explicit(&s->write_failed, memory_order_acquire))
        return;
    snprintf(s->write_error, sizeof s->write_error, "%s", why);
    atomic_store_explicit(&s->write_failed, true, memory_order_release);
}

const char *
store_write_error(const store_t *s)
{
    return atomic_load_explicit(&s->write_failed, memory_order_acquire)
               ? s->write_error
               : NULL;
}

fonte_err
store_batch_commit(store_batch_t *b)
{
    store_t *s = b->store;
    char key[2 + CODEC_PRODUCER_MAX + 8], be[8], val[16];
    uint64_t new_sessions = 0;

    if (atomic_load_explicit(&s->write_failed, memory_order_acquire)) {
        store_batch_clear(b);
        return FONTE_ESTORE;
    }
    if (b->count == 0)
        return FONTE_OK;
    for (size_t i = 0; i < b->n_ses; i++) {
        const store_session_t *p = store_batch_session(b, i);
        if (p->last == p->committed)
            continue; /* a put of it failed: nothing of it in this batch */
        put_be64(be, p->session);
        size_t kl = name_key(key, 'p', p->producer.ptr, p->producer.len, be, 8);
        put_be64(val, p->last);
        put_be64(val + 8, (uint64_t) p->time_us);
        leveldb_writebatch_put(b->wb, key, kl, val, 16);
        new_sessions += p->committed == 0;
    }
    uint64_t last = atomic_load(&s->last_seq) + b->count;
    uint64_t events = atomic_load(&s->events) + b->count;
    uint64_t objects = atomic_load(&s->objects) + b->n_new;
    uint64_t sessions = atomic_load(&s->sessions) + new_sessions;
    put_m(b->wb, "mlast_seq", last);
    put_m(b->wb, "mevents", events);
    put_m(b->wb, "mobjects", objects);
    put_m(b->wb, "msessions", sessions);

    if (b->probe) { /* release the pinned version before writing */
        leveldb_iter_destroy(b->probe);
        b->probe = NULL;
    }
    char *err = NULL;
    leveldb_write(s->db, s->wopts, b->wb, &err);
    if (err != NULL) {
        write_failed(s, err);
        leveldb_free(err);
        store_batch_clear(b);
        return FONTE_ESTORE;
    }
    atomic_store(&s->last_seq, last);
    atomic_store(&s->events, events);
    atomic_store(&s->objects, objects);
    atomic_store(&s->sessions, sessions);
    for (size_t i = 0; i < b->n_ses; i++) {
        const store_session_t *p = store_batch_session(b, i);
        if (p->last != p->committed)
            ses_cache_put(s, p->producer, p->session, p->last, p->time_us);
    }
    for (size_t i = 0; i < b->n_new; i++)
        obj_cache_put(s, b->new_objs[i], b->new_lens[i]);
    /* The session list stays for the caller's acks; the rest goes. */
    leveldb_writebatch_clear(b->wb);
    b->count = 0;
    b->done = true;
    drop_new_objects(b);
    return FONTE_OK;
}

fonte_err
store_write_raw(store_t *s, const store_kv_t *kvs, size_t n)
{
    if (store_write_error(s) != NULL)
        return FONTE_ESTORE;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    char *err = NULL;
    for (size_t i = 0; i < n; i++) {
        if (kvs[i].value == NULL)
            leveldb_writebatch_delete(wb, kvs[i].key, kvs[i].key_len);
        else
            leveldb_writebatch_put(wb, kvs[i].key, kvs[i].key_len,
                                   kvs[i].value, kvs[i].value_len);
    }
    leveldb_write(s->db, s->wopts, wb, &err);
    leveldb_writebatch_destroy(wb);
    if (err != NULL) {
        write_failed(s, err);
        leveldb_free(err);
        return FONTE_ESTORE;
    }
    return FONTE_OK;
}

typedef struct kv_sink {
    store_kv_t *kvs;
    size_t n, cap;
    char *buf;
    size_t used, buf_cap;
    bool overflow;
} kv_sink_t;

static void
put_kv(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    kv_sink_t *s = arg;
    if (s->n == s->cap || s->buf_cap - s->used < kl) {
        s->overflow = true;
        return;
    }
    memcpy(s->buf + s->used, k, kl);
    s->kvs[s->n++] = (store_kv_t) { s->buf + s->used, kl, v, vl };
    s->used += kl;
}

size_t
store_event_keys(uint64_t seq, const codec_view_t *view, const void *body,
                 size_t len, store_kv_t *kvs, size_t kv_cap, char *keybuf,
                 size_t keybuf_cap)
{
    kv_sink_t sink = { kvs, 0, kv_cap, keybuf, 0, keybuf_cap, false };
    if (view->object.len > 1024 || view->type.len > 1024)
        return 0;
    event_keys(seq, view, body, len, put_kv, &sink);
    return sink.overflow ? 0 : sink.n;
}

/* ------------------------------------------------------------------ */
/* reading */

fonte_err
store_snap_new(store_t *s, store_snap_t **snap_p)
{
    store_snap_t *snap = calloc(1, sizeof *snap);
    if (snap == NULL)
        return FONTE_ENOMEM;
    snap->store = s;
    snap->snapshot = leveldb_create_snapshot(s->db);
    snap->ropts = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(snap->ropts, snap->snapshot);
    leveldb_readoptions_set_verify_checksums(snap->ropts, 1);
    size_t vlen = 0;
    char *err = NULL;
    char *v = leveldb_get(s->db, snap->ropts, "mlast_seq", 9, &vlen, &err);
    if (err != NULL)
        leveldb_free(err);
    snap->last_seq = v != NULL && vlen == 8 ? get_be64(v) : 0;
    leveldb_free(v);
    *snap_p = snap;
    return FONTE_OK;
}

void
store_snap_bulk(store_snap_t *snap)
{
    leveldb_readoptions_set_fill_cache(snap->ropts, 0);
}

void
store_snap_destroy(store_snap_t **snap_p)
{
    store_snap_t *snap = *snap_p;
    if (snap == NULL)
        return;
    *snap_p = NULL;
    leveldb_readoptions_destroy(snap->ropts);
    leveldb_release_snapshot(snap->store->db, snap->snapshot);
    free(snap);
}

uint64_t
store_snap_last_seq(const store_snap_t *snap)
{
    return snap->last_seq;
}

fonte_err
store_get_event(store_snap_t *snap, uint64_t seq, void **data, size_t *len)
{
    char key[9], *err = NULL;
    key[0] = 'e';
    put_be64(key + 1, seq);
    *data = NULL;
    *len = 0;
    char *v = leveldb_get(snap->store->db, snap->ropts, key, 9, len, &err);
    if (err != NULL) {
        leveldb_free(err);
        return FONTE_ESTORE;
    }
    if (v == NULL)
        return FONTE_ENOTFOUND;
    *data = v;
    return FONTE_OK;
}

void
store_free(void *p)
{
    leveldb_free(p);
}

static size_t after_tail(char *be, uint64_t after_seq);

struct store_reader {
    leveldb_readoptions_t *ropts; /* the snapshot's, filling the cache */
    leveldb_iterator_t *it;
    uint64_t at; /* seq under the iterator; 0 = none */
};

fonte_err
store_reader_new(store_snap_t *snap, store_reader_t **reader_p)
{
    store_reader_t *r = calloc(1, sizeof *r);
    *reader_p = NULL;
    if (r == NULL)
        return FONTE_ENOMEM;
    /* Its own read options: point reads fill the block cache even from
     * a bulk snapshot (a first-seq probe read around the cache took
     * 24 us, the same blocks read and decompressed again each time). */
    r->ropts = leveldb_readoptions_create();
    if (r->ropts == NULL) {
        free(r);
        return FONTE_ENOMEM;
    }
    leveldb_readoptions_set_snapshot(r->ropts, snap->snapshot);
    r->it = leveldb_create_iterator(snap->store->db, r->ropts);
    if (r->it == NULL) {
        leveldb_readoptions_destroy(r->ropts);
        free(r);
        return FONTE_ENOMEM;
    }
    *reader_p = r;
    return FONTE_OK;
}

void
store_reader_destroy(store_reader_t **reader_p)
{
    if (reader_p == NULL || *reader_p == NULL)
        return;
    leveldb_iter_destroy((*reader_p)->it);
    leveldb_readoptions_destroy((*reader_p)->ropts);
    free(*reader_p);
    *reader_p = NULL;
}

/* The seq of the `e` key under the iterator, or UINT64_MAX if none. */
static uint64_t
reader_here(store_reader_t *r)
{
    size_t kl;
    const char *k = leveldb_iter_valid(r->it) ? leveldb_iter_key(r->it, &kl)
                                              : NULL;
    return k && kl == 9 && k[0] == 'e' ? get_be64(k + 1) : UINT64_MAX;
}

fonte_err
store_reader_get(store_reader_t *r, uint64_t seq, const void **data,
                 size_t *len)
{
    *data = NULL;
    *len = 0;
    /* a little ahead: step (cheaper than a seek); anything else: seek */
    if (r->at != 0 && r->at != UINT64_MAX && seq > r->at && seq - r->at <= 16) {
        while (r->at < seq && leveldb_iter_valid(r->it)) {
            leveldb_iter_next(r->it);
            r->at = reader_here(r);
        }
    } else if (r->at != seq) {
        char key[9];
        key[0] = 'e';
        put_be64(key + 1, seq);
        leveldb_iter_seek(r->it, key, 9);
        r->at = reader_here(r);
    }
    if (r->at != seq) {
        char *err = NULL;
        leveldb_iter_get_error(r->it, &err);
        fonte_err rc = err ? FONTE_ESTORE : FONTE_ENOTFOUND;
        leveldb_free(err);
        r->at = 0;
        return rc;
    }
    *data = leveldb_iter_value(r->it, len);
    return FONTE_OK;
}

fonte_err
store_reader_first(store_reader_t *r, const char *object, size_t len,
                   uint64_t after_seq, uint64_t *seq)
{
    char key[KEY_MAX + 8], be[8];

    *seq = 0;
    if (len > 1024)
        return FONTE_ELIMIT;
    size_t kl = name_key(key, 'o', object, len, be, after_tail(be, after_seq));
    r->at = 0; /* the iterator leaves the `e` keys */
    leveldb_iter_seek(r->it, key, kl);
    if (leveldb_iter_valid(r->it)) {
        size_t l;
        const char *k = leveldb_iter_key(r->it, &l);
        if (l == kl && memcmp(k, key, kl - 8) == 0)
            *seq = get_be64(k + kl - 8);
        return FONTE_OK;
    }
    char *err = NULL;
    leveldb_iter_get_error(r->it, &err);
    bool failed = err != NULL;
    leveldb_free(err);
    return failed ? FONTE_ESTORE : FONTE_OK;
}

/* An iterator over keys starting with prefix, first seeking to
 * prefix + tail. */
static fonte_err
iter_new(store_snap_t *snap, iter_kind_t kind, const char *prefix,
         size_t plen, const char *tail, size_t tlen, store_iter_t **it_p)
{
    store_iter_t *it = calloc(1, sizeof *it);
    char *seek = malloc(plen + tlen + 1);
    if (it == NULL || seek == NULL) {
        free(it);
        free(seek);
        return FONTE_ENOMEM;
    }
    memcpy(seek, prefix, plen);
    if (tlen)
        memcpy(seek + plen, tail, tlen);
    it->kind = kind;
    it->prefix = seek;
    it->prefix_len = plen;
    it->it = leveldb_create_iterator(snap->store->db, snap->ropts);
    leveldb_iter_seek(it->it, seek, plen + tlen);
    *it_p = it;
    return FONTE_OK;
}

/* The seek tail for "seq > after_seq": BE64(after_seq + 1). */
static size_t
after_tail(char *be, uint64_t after_seq)
{
    put_be64(be, after_seq == UINT64_MAX ? UINT64_MAX : after_seq + 1);
    return 8;
}

fonte_err
store_iter_events(store_snap_t *snap, uint64_t after_seq, store_iter_t **it_p)
{
    char be[8];
    return iter_new(snap, IT_EVENTS, "e", 1, be, after_tail(be, after_seq),
                    it_p);
}

static fonte_err
named_iter(store_snap_t *snap, iter_kind_t kind, char fam, const char *name,
           size_t len, const char *tail, size_t tlen, store_iter_t **it_p)
{
    if (len > 1024)
        return FONTE_ELIMIT;
    char key[KEY_MAX];
    size_t kl = name_key(key, fam, name, len, NULL, 0);
    return iter_new(snap, kind, key, kl, tail, tlen, it_p);
}

fonte_err
store_iter_object(store_snap_t *snap, const char *object, size_t len,
                  uint64_t after_seq, store_iter_t **it_p)
{
    char be[8];
    return named_iter(snap, IT_SEQ, 'o', object, len, be,
                      after_tail(be, after_seq), it_p);
}

fonte_err
store_iter_type(store_snap_t *snap, const char *type, size_t len,
                uint64_t after_seq, store_iter_t **it_p)
{
    char be[8];
    return named_iter(snap, IT_SEQ, 't', type, len, be,
                      after_tail(be, after_seq), it_p);
}

fonte_err
store_iter_deps(store_snap_t *snap, const char *object, size_t len,
                store_iter_t **it_p)
{
    return named_iter(snap, IT_NAME, 'd', object, len, NULL, 0, it_p);
}

fonte_err
store_iter_dependents(store_snap_t *snap, const char *object, size_t len,
                      store_iter_t **it_p)
{
    return named_iter(snap, IT_NAME, 'r', object, len, NULL, 0, it_p);
}

fonte_err
store_iter_sessions(store_snap_t *snap, store_iter_t **it_p)
{
    return iter_new(snap, IT_SESSIONS, "p", 1, NULL, 0, it_p);
}

/* Parses the current key into item; false if it is not well-formed. */
static bool
iter_parse(store_iter_t *it, store_item_t *item)
{
    size_t kl, vl;
    const char *k = leveldb_iter_key(it->it, &kl);
    const char *rest = k + it->prefix_len;
    size_t rlen = kl - it->prefix_len;

    memset(item, 0, sizeof *item);
    switch (it->kind) {
    case IT_EVENTS:
        if (rlen != 8)
            return false;
        item->seq = get_be64(rest);
        item->value.ptr = leveldb_iter_value(it->it, &vl);
        item->value.len = vl;
        return true;
    case IT_SEQ:
        if (rlen != 8)
            return false;
        item->seq = get_be64(rest);
        return true;
    case IT_NAME:
        item->name.ptr = rest;
        item->name.len = rlen;
        return true;
    case IT_SESSIONS: {
        const char *nul = memchr(rest, '\0', rlen);
        if (nul == NULL || (size_t) (k + kl - nul) != 9)
            return false;
        const char *v = leveldb_iter_value(it->it, &vl);
        if (vl < 16)
            return false;
        item->name.ptr = rest;
        item->name.len = (size_t) (nul - rest);
        item->session = get_be64(nul + 1);
        item->last = get_be64(v);
        item->time_us = (int64_t) get_be64(v + 8);
        return true;
    }
    }
    return false;
}

bool
store_iter_next(store_iter_t *it, store_item_t *item)
{
    for (;;) {
        if (it->started)
            leveldb_iter_next(it->it);
        it->started = true;
        if (!leveldb_iter_valid(it->it)) {
            char *err = NULL;
            leveldb_iter_get_error(it->it, &err);
            if (err != NULL) {
                leveldb_free(err);
                it->err = FONTE_ESTORE;
            }
            return false;
        }
        size_t kl;
        const char *k = leveldb_iter_key(it->it, &kl);
        if (kl < it->prefix_len ||
            memcmp(k, it->prefix, it->prefix_len) != 0) {
            /* LevelDB steps over a block it cannot read (a checksum that
             * fails) and keeps the error for the end: ask for it here
             * too, or the events of that block just go missing */
            char *err = NULL;
            leveldb_iter_get_error(it->it, &err);
            if (err != NULL) {
                leveldb_free(err);
                it->err = FONTE_ESTORE;
            }
            return false;
        }
        if (iter_parse(it, item))
            return true;
    }
}

fonte_err
store_iter_error(const store_iter_t *it)
{
    return it->err;
}

void
store_iter_destroy(store_iter_t **it_p)
{
    store_iter_t *it = *it_p;
    if (it == NULL)
        return;
    *it_p = NULL;
    leveldb_iter_destroy(it->it);
    free(it->prefix);
    free(it);
}
