/*
 * testutil.h - building events and raw protobuf bytes in tests.
 *
 * Events are built on the heap with malloc/strdup so that
 * codec_event_free() (protobuf-c's free_unpacked with the system
 * allocator) releases them. Nothing here checks anything: tests do.
 */
#ifndef FONTE_TESTUTIL_H
#define FONTE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include "codec.h"

/* A valid live event: id derived from producer/session/seq. */
Fonte__Event *tu_event(const char *type, const char *object,
                       const char *producer, uint64_t session, uint64_t seq);
void tu_event_add_dep(Fonte__Event *ev, const char *dep);
void tu_event_add_meta(Fonte__Event *ev, const char *key, const char *value);
void tu_event_set_payload(Fonte__Event *ev, const void *data, size_t len,
                          const char *payload_type);
void tu_event_set_replay(Fonte__Event *ev, const char *replay_id,
                         const char *root, const char *target);
/* Replaces a string field (e.g. &ev->type) with a copy of value. */
void tu_set(char **field, const char *value);
/* Recomputes ev->id from producer/session/producer_seq. */
void tu_event_fix_id(Fonte__Event *ev);

/* Packs any message into a new buffer (free with codec_buf_free). */
codec_buf_t tu_pack(const ProtobufCMessage *msg);

/* A growable buffer of raw protobuf wire bytes, for malformed input. */
typedef struct tu_wire {
    uint8_t *data;
    size_t len, cap;
} tu_wire_t;

void tu_wire_varint(tu_wire_t *w, uint64_t v);
void tu_wire_tag(tu_wire_t *w, uint32_t field, int wire_type);
void tu_wire_bytes(tu_wire_t *w, uint32_t field, const void *p, size_t n);
void tu_wire_str(tu_wire_t *w, uint32_t field, const char *s);
void tu_wire_fixed64(tu_wire_t *w, uint32_t field, uint64_t v);
void tu_wire_uint(tu_wire_t *w, uint32_t field, uint64_t v);
void tu_wire_raw(tu_wire_t *w, const void *p, size_t n);
void tu_wire_free(tu_wire_t *w);

/* The fields of a valid event written by hand, in field order, except
 * those named in skip (a string of field numbers as chars, e.g. "\3").
 * Type "order.placed", object "order:1", producer "shop", session 0xabc,
 * seq 1. */
void tu_wire_event(tu_wire_t *w, const char *skip);

/* A TCP port on 127.0.0.1 that nobody listens on now (bind 0, read it,
 * close): for a child that must be told its ports, or an endpoint that
 * must refuse. Someone else may take it meanwhile; callers that start a
 * child retry. Aborts if there is no loopback. */
unsigned tu_free_port(void);

/* Removes dir and everything below it (a test's temporary directory);
 * errors are ignored. */
void tu_rmtree(const char *dir);

/* A full disk, as LevelDB sees it: no file this process writes may grow
 * past `bytes` (RLIMIT_FSIZE's soft limit; SIGXFSZ ignored, so a write
 * past it fails with EFBIG). The limit before goes into *was, for
 * tu_fsize_restore. 0, or -1 with errno. Criterion runs each test in a
 * process of its own; a child forked after the call inherits the cap. */
int tu_fsize_cap(unsigned long long bytes, struct rlimit *was);
int tu_fsize_restore(const struct rlimit *was);

/* How many of this process's threads are named comm (-1 if /proc cannot
 * be read) and, with cpus and on_cpus, how many of those may run on
 * exactly the CPUs cpus (a Cpus_allowed_list, e.g. "0-1"). */
int tu_threads_named(const char *comm, const char *cpus, int *on_cpus);

/* CPU time (user + system, ms) the one thread of this process named
 * comm has used; -1 if there is not exactly one or /proc cannot say. */
long tu_thread_cpu_ms(const char *comm);

/* ZeroMQ sockets a test opened, for its teardown to close:
 * zmq_ctx_term waits for every socket of its context, so a test that
 * fails (its assertion leaves the body) with one open would otherwise
 * hang until the suite's timeout. tu_sock_track: 0, or -1 when
 * TU_SOCKS_MAX are tracked. tu_sock_close: forgets and closes. */
#define TU_SOCKS_MAX 32
int tu_sock_track(void *s);
void tu_sock_forget(void *s);
void tu_sock_close(void *s);
void tu_socks_close_all(void);

/* Checks a two-frame message made of topic and body. */
fonte_err tu_check(const char *topic, const void *body, size_t len,
                   codec_class_t *cls);
#endif
