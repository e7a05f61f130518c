/*
 * curve.h - CURVE security for fonte's endpoints (docs/operations.md,
 * "Security"; design.md §8).
 *
 * Keys live in certificate files in CZMQ's format (zcert): `fonte keygen
 * NAME` writes NAME.key, the public certificate, to hand out, and
 * NAME.key_secret, the key pair, to keep (mode 0600). A server socket
 * (the broker's ingress and egress, the listener's query endpoint) is a
 * CURVE server with its certificate's secret key; a client socket names
 * the server's public key and its own pair.
 *
 * Who may connect is decided by a ZAP handler in the server's ZeroMQ
 * context (fcurve_auth): it admits a client whose public key is in one
 * of the public certificate files of a directory (or is the server's
 * own), and refuses every other. The directory is read again when it
 * changes, so adding or removing a file takes effect for the next
 * connection. CZMQ's zauth does this for sockets in CZMQ's own context
 * only; fonte's sockets live in contexts of their own (the listener's
 * query endpoint has one to itself), hence a handler per context here.
 *
 * Reading a certificate: the lines `public-key = "<40 Z85 chars>"` and,
 * in the secret file, `secret-key = "..."`, under `curve`; the rest of
 * the ZPL (metadata, comments) is not needed.
 */
#ifndef FONTE_CURVE_H
#define FONTE_CURVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fonte/errors.h"

#define FCURVE_KEY 32    /* bytes of a key */
#define FCURVE_Z85 41    /* a key in Z85, with its NUL */
#define FCURVE_DOMAIN "fonte"

typedef struct fcurve_cert {
    uint8_t public_key[FCURVE_KEY];
    uint8_t secret_key[FCURVE_KEY];
    bool has_secret;
} fcurve_cert_t;

/* Finds `<key> = "<40 Z85 characters>"` at the start of a line (after
 * blanks) of a certificate's text and decodes it into out: false if no
 * line holds one. What fcurve_cert_load reads a file with. */
bool fcurve_find_key(const char *text, const char *key,
                     uint8_t out[FCURVE_KEY]);

/* Reads the certificate at path (its public key) and, if path_secret
 * exists, its secret key. need_secret: without the secret file it is an
 * error. FONTE_OK; FONTE_EINVAL (errbuf says what and where) when a file
 * cannot be read or holds no key. */
fonte_err fcurve_cert_load(const char *path, bool need_secret,
                           fcurve_cert_t *cert, char *errbuf,
                           size_t errlen);

/* Writes a new key pair: path (public, 0644) and path_secret (0600),
 * with `name` in their metadata. Refuses to overwrite either file
 * (FONTE_EINVAL). */
fonte_err fcurve_keygen(const char *path, const char *name, char *errbuf,
                        size_t errlen);

/* Makes sock a CURVE server with cert's secret key, its ZAP domain
 * FCURVE_DOMAIN (so the context's handler is asked). Before bind. 0 or
 * -1 (zmq_errno). */
int fcurve_server(void *sock, const fcurve_cert_t *cert);

/* Makes sock a CURVE client of the server whose public key is in server,
 * with its own pair from cert. Before connect. 0 or -1. */
int fcurve_client(void *sock, const fcurve_cert_t *cert,
                  const fcurve_cert_t *server);

/* A ZAP handler in zmq context ctx admitting the keys of the public
 * certificates in dir, and also (if not NULL) the key of `also` (the
 * server's own, so that a process talking to itself needs no copy).
 * One per context, before its first CURVE server socket binds. */
typedef struct fcurve_auth fcurve_auth_t;

fonte_err fcurve_auth_new(void *ctx, const char *dir,
                          const fcurve_cert_t *also, fcurve_auth_t **auth_p,
                          char *errbuf, size_t errlen);

/* Connections admitted and refused so far. Thread-safe. */
void fcurve_auth_counts(fcurve_auth_t *auth, uint64_t *allowed,
                        uint64_t *denied);

/* Stops the handler (within 100 ms) and frees it. NULL-safe. Close the
 * context's sockets first, or they may wait for a handler that is gone
 * (their new connections are refused). */
void fcurve_auth_destroy(fcurve_auth_t **auth_p);

#endif
