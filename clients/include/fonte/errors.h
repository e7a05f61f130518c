/*
 * fonte/errors.h - the one error enum of fonte.
 *
 * Every function in fonte that can fail returns a fonte_err: FONTE_OK (0) on
 * success, one of the codes below otherwise, and passes results through
 * out-parameters. The table is an X-macro so that the enum, the short names
 * used as counter keys ("invalid.<name>" in Stats) and the messages can
 * never drift apart. Codes are stable: new ones are appended, never
 * renumbered.
 *
 * This header is public (included by fonte/fonte.h) and has no
 * dependencies.
 */
#ifndef FONTE_ERRORS_H
#define FONTE_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/*   X(SYMBOL,      short name,   message) */
#define FONTE_ERRORS(X)                                                       \
    X(OK,           "ok",          "success")                                 \
    X(EINVAL,       "inval",       "invalid argument")                        \
    X(ENOMEM,       "nomem",       "out of memory")                           \
    X(EIO,          "io",          "socket or system error")                  \
    X(ETIMEOUT,     "timeout",     "timed out")                               \
    X(EFULL,        "full",        "outbox full")                             \
    X(ECLOSED,      "closed",      "closed or shutting down")                 \
    X(ENOTFOUND,    "notfound",    "not found")                               \
    X(ELIMIT,       "limit",       "over a configured limit")                 \
    X(EUNAVAILABLE, "unavailable", "service unavailable")                     \
    X(ESTORE,       "store",       "storage error")                           \
    X(EINTERNAL,    "internal",    "internal error")                          \
    X(EFRAMES,      "frames",      "wrong number of frames")                  \
    X(ETOOBIG,      "toobig",      "message larger than the maximum size")    \
    X(EDECODE,      "decode",      "malformed protobuf")                      \
    X(EUTF8,        "utf8",        "string is not valid UTF-8")               \
    X(ETOPIC,       "topic",       "topic does not match the message")        \
    X(ERESERVED,    "reserved",    "unknown reserved ($) topic")              \
    X(ETYPE,        "type",        "invalid event type")                      \
    X(EOBJECT,      "object",      "invalid object")                          \
    X(EDEPS,        "deps",        "too many dependencies")                   \
    X(EDEP,         "dep",         "invalid dependency")                      \
    X(EPRODUCER,    "producer",    "invalid producer name")                   \
    X(ESESSION,     "session",     "invalid session (must not be 0)")         \
    X(ESEQ,         "seq",         "invalid producer_seq (must be >= 1)")     \
    X(EID,          "id",          "event id is not producer/session/seq")    \
    X(EREPLAY,      "replay",      "replay info does not match the topic")    \
    X(EMETA,        "meta",        "invalid meta entry")                      \
    X(EFIELD,       "field",       "field too long")                          \
    X(EREQUEST,     "request",     "malformed request")

typedef enum fonte_err {
#define FONTE_ERR_ENUM_(sym, name, msg) FONTE_##sym,
    FONTE_ERRORS(FONTE_ERR_ENUM_)
#undef FONTE_ERR_ENUM_
    FONTE_ERR_COUNT_
} fonte_err;

/* A sentence for a code, e.g. "outbox full". Never NULL: an unknown code
 * gives "unknown error". Static storage; thread-safe. */
const char *fonte_strerror(fonte_err err);

/* A short stable name for a code, e.g. "full", used as a counter key
 * ("invalid.topic") and in logs. Never NULL; thread-safe. */
const char *fonte_errname(fonte_err err);

#ifdef __cplusplus
}
#endif
#endif
