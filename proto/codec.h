/*
 * codec.h - fonte's wire format: building and checking the messages of
 * docs/protocol.md.
 *
 * Everything that reads bytes from a socket goes through here, so this is
 * where hostile input is met. Two ways in:
 *
 *  - codec_check() validates a whole ZeroMQ message (its frames) by the
 *    rule of its topic class without allocating: for events it walks the
 *    protobuf wire format in place (codec_event_scan) and returns a
 *    zero-copy view of the fields. The broker's hot path and the
 *    listener's ingest use this.
 *  - codec_*_decode() unpack into protobuf-c structs (for code that wants
 *    the fields as C strings: libfonte, the CLI, the query server), after
 *    the same checks. protobuf-c never allocates more than a budget
 *    proportional to the input, so a small hostile message cannot make it
 *    allocate a lot.
 *
 * The rules themselves (allowed characters, lengths, the id's form) exist
 * once, as codec_check_*() on byte slices, and serve both the wire
 * scanner and the struct validator that runs before anything is encoded:
 * what fonte sends always passes what fonte accepts.
 *
 * Every failure is a distinct fonte_err (fonte/errors.h); nothing here
 * asserts on input. All functions are thread-safe (no shared state).
 */
#ifndef FONTE_CODEC_H
#define FONTE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fonte.pb-c.h"
#include "fonte/errors.h"

/* Limits that are not configurable: they are part of the protocol. */
#define CODEC_PRODUCER_MAX 64         /* producer, target, $sys source */
#define CODEC_ID_MAX 103              /* 64 + '/' + 16 hex + '/' + 20 digits + NUL */
#define CODEC_NAME_MAX 256            /* payload_type, replay_id */
#define CODEC_META_MAX 64             /* meta entries */
#define CODEC_FIELDS_MAX 512          /* fields of an event on the wire,
                                         nested, repeated and unknown
                                         ones too (a real one has < 150) */
#define CODEC_META_KEY_MAX 128
#define CODEC_META_VALUE_MAX 4096
#define CODEC_TEXT_MAX 1024           /* reason, error text */
#define CODEC_CURSOR_MAX 1024
#define CODEC_TYPES_MAX 256           /* ReplayRequest.types */
#define CODEC_TOPIC_PREFIX_MAX 80     /* "$replay." + target + "." */

/* Topic prefixes of the reserved classes. */
#define CODEC_TOPIC_REPLAY "$replay."
#define CODEC_TOPIC_ACK "$ack."
#define CODEC_TOPIC_SYS "$sys."
#define CODEC_TOPIC_AUDIT "$sys.replay"

/* Configurable limits (flags and FONTE_* variables). */
typedef struct codec_limits {
    size_t max_msg;    /* largest frame on a network socket, bytes */
    size_t max_reply;  /* largest Reply frame (a page of events), bytes */
    size_t max_object; /* object and dependency names, bytes */
    size_t max_type;   /* event type, bytes */
    size_t max_deps;   /* depends_on entries */
} codec_limits_t;

#define CODEC_LIMITS_DEFAULT \
    { (size_t) 1 << 20, (size_t) 8 << 20, 256, 128, 64 }
extern const codec_limits_t codec_limits_default;

/* A borrowed run of bytes; not NUL-terminated. */
typedef struct codec_slice {
    const char *ptr;
    size_t len;
} codec_slice_t;

/* One frame of a ZeroMQ message, borrowed. */
typedef struct codec_frame {
    const void *data;
    size_t size;
} codec_frame_t;

/* An owned buffer; release with codec_buf_free(). */
typedef struct codec_buf {
    uint8_t *data;
    size_t len;
    void *base; /* what to free when data is not the allocation's start
                   (a reply built with headroom), else NULL */
} codec_buf_t;

void codec_buf_free(codec_buf_t *buf);

/* What a message is, by its topic (docs/protocol.md, "Topics"). */
typedef enum codec_class {
    CODEC_EVENT = 0, /* "<type>": an Event whose type is the topic */
    CODEC_REPLAY,    /* "$replay.<target>.<type>": a replayed Event */
    CODEC_ACK,       /* "$ack.<producer>": an Ack */
    CODEC_STATS,     /* "$sys.<source>" (not replay): a Stats */
    CODEC_AUDIT,     /* "$sys.replay": a ReplayAudit */
} codec_class_t;

/* Zero-copy view of an Event, pointing into the bytes it was scanned from:
 * valid only as long as those bytes are. Absent strings are empty slices. */
typedef struct codec_view {
    codec_slice_t id, type, object, producer, payload_type, payload;
    uint64_t session, producer_seq, seq;
    int64_t time_us;
    size_t n_deps, n_meta;
    bool has_replay;
    codec_slice_t replay_target, replay_root;
    const uint8_t *body; /* the scanned bytes, for codec_view_next_dep */
    size_t body_len;
    size_t deps_at; /* where the first depends_on begins in body (or 0) */
    size_t deps_end; /* where the last one ends (0: not known, body_len) */
} codec_view_t;

/* --- rules on byte slices (each returns its own error code) --- */

/* [a-z0-9_.-], 1..max bytes. FONTE_ETYPE. */
fonte_err codec_check_type(const char *s, size_t len, size_t max);
/* 1..max bytes of UTF-8 without NUL. FONTE_EOBJECT. */
fonte_err codec_check_object(const char *s, size_t len, size_t max);
/* [a-z0-9_-], 1..64 bytes. FONTE_EPRODUCER. */
fonte_err codec_check_producer(const char *s, size_t len);
/* Well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool codec_utf8_valid(const char *s, size_t len);

/* Writes "<producer>/<session as 16 lowercase hex>/<producer_seq>" into
 * buf (at least CODEC_ID_MAX bytes) and returns its length. */
size_t codec_format_id(char *buf, const char *producer, size_t producer_len,
                       uint64_t session, uint64_t producer_seq);

/* --- events, zero-copy --- */

/* Walks the protobuf encoding of an Event in body[0..len) and checks every
 * rule of docs/protocol.md ("Event") except the topic's. Unknown fields
 * are skipped (forward compatibility). On FONTE_OK *view describes the
 * event; on error *view is unspecified. Allocates nothing. */
fonte_err codec_event_scan(const void *body, size_t len,
                           const codec_limits_t *lim, codec_view_t *view);

/* The walk of codec_event_scan without any of its rules: fills *view from
 * bytes known to be a valid event (one the listener stored), checking only
 * that the wire format is well formed (FONTE_EDECODE) so that nothing is
 * read out of bounds. For readers of the store, where the rules were
 * applied at ingest and re-applying them is wasted work. */
fonte_err codec_event_fields(const void *body, size_t len, codec_view_t *view);

/* What ordering a stored event needs, and nothing else, in one walk:
 * its object, and its depends_on entries in order (the first cap of them
 * into deps; *n_deps is their count, which may be larger). The same
 * structure checks as codec_event_fields (FONTE_EDECODE), and on
 * FONTE_OK the same object and dependencies; about twice as fast, for
 * the whole-store replay that walks every event. */
fonte_err codec_event_graph(const void *body, size_t len,
                            codec_slice_t *object, codec_slice_t *deps,
                            size_t cap, size_t *n_deps);

/* Iterates the depends_on entries of a scanned event: start with
 * *pos = 0; returns false when there are no more. */
bool codec_view_next_dep(const codec_view_t *view, size_t *pos,
                         codec_slice_t *dep);

/* Classifies a topic frame. FONTE_ETOPIC if empty or over the longest
 * legal topic, FONTE_ERESERVED for an unknown "$" class. */
fonte_err codec_topic_class(const void *topic, size_t len,
                            const codec_limits_t *lim, codec_class_t *cls);

/* Checks a whole message: frame count (FONTE_EFRAMES), frame sizes
 * (FONTE_ETOOBIG), then the rule of its topic's class. *cls is set
 * whenever the topic could be classified; *view (may be NULL) is filled
 * for CODEC_EVENT and CODEC_REPLAY. Allocates only to unpack the small
 * control messages (Ack, Stats, ReplayAudit), never for events. */
fonte_err codec_check(const codec_frame_t *frames, size_t nframes,
                      const codec_limits_t *lim, codec_class_t *cls,
                      codec_view_t *view);

/* --- events, as protobuf-c structs --- */

/* Checks an Event struct by the same rules as codec_event_scan (lengths
 * are strlen). Use before encoding anything built in memory. */
fonte_err codec_event_validate(const Fonte__Event *ev,
                               const codec_limits_t *lim);

/* Checks a two-frame event message (codec_check; class EVENT or REPLAY,
 * else FONTE_ETOPIC) and unpacks it. On FONTE_OK the caller owns *event_p
 * and frees it with codec_event_free(). */
fonte_err codec_event_decode(const codec_frame_t *frames, size_t nframes,
                             const codec_limits_t *lim,
                             Fonte__Event **event_p);

/* Unpacks one Event from bytes already known to be a single event (e.g. a
 * stored record), with the scan's checks. Caller frees with
 * codec_event_free(). */
fonte_err codec_event_unpack(const void *body, size_t len,
                             const codec_limits_t *lim,
                             Fonte__Event **event_p);

void codec_event_free(Fonte__Event **event_p);

/* The topic an event is published on: its type, or
 * "$replay.<target>.<type>" when it carries a replay with a target.
 * Writes a NUL-terminated string into buf; FONTE_ELIMIT if cap is too
 * small. */
fonte_err codec_event_topic(const Fonte__Event *ev, char *buf, size_t cap);

/* Validates ev and serialises it as the two frames of an event message.
 * On FONTE_OK the caller owns topic->data and body->data (free with
 * codec_buf_free); on error both are left empty. */
fonte_err codec_event_encode(const Fonte__Event *ev, const codec_limits_t *lim,
                             codec_buf_t *topic, codec_buf_t *body);

/* --- any message --- */

/* Serialises msg into a new buffer (caller frees with codec_buf_free). */
fonte_err codec_pack(const ProtobufCMessage *msg, codec_buf_t *out);

/* Unpacks len bytes as a message of desc. FONTE_ETOOBIG if len > max,
 * FONTE_EDECODE if malformed (checked by a walk of the wire format before
 * protobuf-c runs) or if unpacking would allocate more than a budget
 * proportional to len, FONTE_EUTF8 if a string field, at any depth, is
 * not UTF-8 or holds a NUL. Caller frees with
 * protobuf_c_message_free_unpacked(*msg_p, NULL). */
fonte_err codec_unpack(const ProtobufCMessageDescriptor *desc,
                       const void *data, size_t len, size_t max,
                       ProtobufCMessage **msg_p);

/* --- replies, zero-copy --- */

/* The parts of a Reply a client pages through, pointing into its bytes. */
typedef struct codec_reply_view {
    int status;             /* Reply.status */
    codec_slice_t error;
    bool has_replay;        /* body is a ReplayReply */
    codec_slice_t cursor;
    uint64_t total;
    size_t n_events;
    const uint8_t *replay;  /* the ReplayReply's bytes, for next_event */
    size_t replay_len;
} codec_reply_view_t;

/* Walks a Reply without unpacking it: structure checked (FONTE_EDECODE),
 * size bounded by lim->max_reply (FONTE_ETOOBIG), each event's bytes
 * left for codec_reply_next_event. Allocates nothing. */
fonte_err codec_reply_scan(const void *data, size_t len,
                           const codec_limits_t *lim, codec_reply_view_t *v);

/* The next event's bytes of a scanned ReplayReply: start with *pos = 0;
 * false at the end. Check each with codec_event_scan before trusting it. */
bool codec_reply_next_event(const codec_reply_view_t *v, size_t *pos,
                            codec_slice_t *event);

/* --- writing protobuf by hand, for replies built from stored bytes --- */

/* A growable buffer of protobuf wire bytes. Zero-initialise; on an
 * allocation failure every later call is a no-op and failed is set. The
 * caller owns data (free with codec_writer_fini, or take it). */
typedef struct codec_writer {
    uint8_t *data;
    size_t len, cap;
    bool failed;
} codec_writer_t;

void codec_writer_fini(codec_writer_t *w);
void codec_writer_raw(codec_writer_t *w, const void *p, size_t n);
/* Room for n more bytes (len unchanged); false (and failed) when out of
 * memory. */
bool codec_writer_reserve(codec_writer_t *w, size_t n);
void codec_writer_varint(codec_writer_t *w, uint64_t v);
void codec_writer_tag(codec_writer_t *w, uint32_t field, int wire_type);
/* A length-delimited field (string, bytes, embedded message). */
void codec_writer_bytes(codec_writer_t *w, uint32_t field, const void *p,
                        size_t n);
/* A varint field; zero is written too (callers skip defaults). */
void codec_writer_uint(codec_writer_t *w, uint32_t field, uint64_t v);

/* Appends to w one stored event as it is sent back: the stored bytes
 * followed by `seq` (field 12) and, when replay is not NULL, the replay
 * submessage (field 13). Protobuf's last-one-wins rule makes the appended
 * seq override any seq in the stored bytes; stored events never carry a
 * replay. With as_field != 0 the event is wrapped as that field number of
 * the enclosing message (ReplayReply.events = 1); with 0 it is written
 * bare (a message body to publish). */
void codec_writer_event(codec_writer_t *w, uint32_t as_field,
                        const void *body, size_t len, uint64_t seq,
                        const Fonte__Replay *replay);

/* --- control and query messages: unpack plus their own rules --- */

/* A listener's id (its store's, store_id): 16 lowercase hex digits. */
#define CODEC_LISTENER_ID_LEN 16
bool codec_listener_id_valid(const char *id);

/* Ack: producer valid (FONTE_EPRODUCER), session != 0 (FONTE_ESESSION),
 * listener empty (an older listener) or a valid id (FONTE_EFIELD). */
fonte_err codec_ack_decode(const void *data, size_t len,
                           const codec_limits_t *lim, Fonte__Ack **ack_p);
/* Stats: source valid as a producer name (FONTE_EPRODUCER). */
fonte_err codec_stats_decode(const void *data, size_t len,
                             const codec_limits_t *lim,
                             Fonte__Stats **stats_p);
/* ReplayAudit: state in range, strings bounded (FONTE_EFIELD). */
fonte_err codec_audit_decode(const void *data, size_t len,
                             const codec_limits_t *lim,
                             Fonte__ReplayAudit **audit_p);

/* Request: exactly one body (FONTE_EREQUEST); for replay: object valid
 * (FONTE_EOBJECT), each type valid (FONTE_ETYPE), at most
 * CODEC_TYPES_MAX types (FONTE_ELIMIT), target empty or a valid name
 * (FONTE_EPRODUCER), order and mode known (FONTE_EREQUEST), reason and
 * cursor bounded (FONTE_EFIELD). Frame limit: lim->max_msg. */
fonte_err codec_request_decode(const void *data, size_t len,
                               const codec_limits_t *lim,
                               Fonte__Request **req_p);

/* Reply: status known (FONTE_EDECODE), every event valid
 * (codec_event_validate's codes). Frame limit: lim->max_reply. */
fonte_err codec_reply_decode(const void *data, size_t len,
                             const codec_limits_t *lim, Fonte__Reply **rep_p);

#endif
