/*
 * curve.c - certificates, CURVE socket options and a ZAP handler
 * (curve.h).
 *
 * The handler is one thread with a REP socket on the context's ZAP
 * endpoint. It owns the key list: only it reads the directory, so the
 * list needs no lock; the counters are atomics. It polls its socket
 * (100 ms) so that destroy, which sets `stop`, is seen.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "curve.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "zmqx.h"

#define CERT_FILE_MAX 65536 /* bytes of a certificate file read */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 8 /* a CURVE request has 7 */

bool
fcurve_find_key(const char *text, const char *key, uint8_t out[FCURVE_KEY])
{
    size_t klen = strlen(key);
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *p = line + strspn(line, " \t");
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
        if (strncmp(p, key, klen) != 0)
            continue;
        p += klen;
        p += strspn(p, " \t");
        if (*p++ != '=')
            continue;
        p += strspn(p, " \t");
        if (*p++ != '"')
            continue;
        const char *end = strchr(p, '"');
        if (end == NULL || end - p != FCURVE_Z85 - 1 ||
            (nl != NULL && end > nl))
            continue;
        char z85[FCURVE_Z85];
        memcpy(z85, p, FCURVE_Z85 - 1);
        z85[FCURVE_Z85 - 1] = '\0';
        return zmq_z85_decode(out, z85) != NULL;
    }
    return false;
}

/* The first CERT_FILE_MAX bytes of path, NUL-terminated; NULL with
 * errno set. */
static char *
read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = malloc(CERT_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    size_t n = fread(buf, 1, CERT_FILE_MAX, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

fonte_err
fcurve_cert_load(const char *path, bool need_secret, fcurve_cert_t *cert,
                 char *errbuf, size_t errlen)
{
    char secret_path[4096];
    memset(cert, 0, sizeof *cert);

    char *text = read_text(path);
    if (text == NULL) {
        snprintf(errbuf, errlen, "cannot read certificate %s: %s", path,
                 strerror(errno));
        return FONTE_EINVAL;
    }
    bool ok = fcurve_find_key(text, "public-key", cert->public_key);
    free(text);
    if (!ok) {
        snprintf(errbuf, errlen, "%s is not a certificate: no public-key "
                 "line of 40 Z85 characters", path);
        return FONTE_EINVAL;
    }
    if (snprintf(secret_path, sizeof secret_path, "%s_secret", path) >=
        (int) sizeof secret_path) {
        snprintf(errbuf, errlen, "certificate path too long: %s", path);
        return FONTE_EINVAL;
    }
    if ((text = read_text(secret_path)) == NULL) {
        size_t pl = strlen(path);
        if (!need_secret && errno == ENOENT)
            return FONTE_OK;
        if (pl > 7 && strcmp(path + pl - 7, "_secret") == 0) {
            snprintf(errbuf, errlen, "%s is a secret certificate: name the "
                     "public one, %.*s (its secret half is read from beside "
                     "it)", path, (int) (pl - 7), path);
            return FONTE_EINVAL;
        }
        snprintf(errbuf, errlen, "cannot read secret certificate %s: %s",
                 secret_path, strerror(errno));
        return FONTE_EINVAL;
    }
    uint8_t pub[FCURVE_KEY];
    ok = fcurve_find_key(text, "secret-key", cert->secret_key) &&
         fcurve_find_key(text, "public-key", pub) &&
         memcmp(pub, cert->public_key, FCURVE_KEY) == 0;
    free(text);
    if (!ok) {
        snprintf(errbuf, errlen, "%s is not the secret certificate of %s "
                 "(no secret-key, or another public-key)", secret_path,
                 path);
        return FONTE_EINVAL;
    }
    cert->has_secret = true;
    return FONTE_OK;
}

fonte_err
fcurve_keygen(const char *path, const char *name, char *errbuf,
              size_t errlen)
{
    char secret_path[4096];
    struct stat st;

    if (snprintf(secret_path, sizeof secret_path, "%s_secret", path) >=
        (int) sizeof secret_path) {
        snprintf(errbuf, errlen, "path too long: %s", path);
        return FONTE_EINVAL;
    }
    if (stat(path, &st) == 0 || stat(secret_path, &st) == 0) {
        snprintf(errbuf, errlen, "%s or %s exists already: not overwritten",
                 path, secret_path);
        return FONTE_EINVAL;
    }
    zcert_t *cert = zcert_new();
    if (cert == NULL) {
        snprintf(errbuf, errlen, "cannot make a key pair");
        return FONTE_ENOMEM;
    }
    zcert_set_meta(cert, "name", "%s", name);
    zcert_set_meta(cert, "made-by", "fonte keygen");
    /* the public file, then the secret (0600); never one without the
     * other, which would also stop a second try ("exists already") */
    const char *failed = path;
    int rc = zcert_save_public(cert, path);
    if (rc == 0 && (rc = zcert_save_secret(cert, secret_path)) != 0) {
        int e = errno;
        failed = secret_path;
        unlink(path);
        errno = e;
    }
    zcert_destroy(&cert);
    if (rc != 0) {
        snprintf(errbuf, errlen, "cannot write %s: %s", failed,
                 strerror(errno));
        return FONTE_EIO;
    }
    /* CZMQ does not check its writes (a full disk leaves empty files and
     * says nothing): the pair must read back, or neither file stays */
    fcurve_cert_t back;
    char why[512];
    fonte_err lrc = fcurve_cert_load(path, true, &back, why, sizeof why);
    explicit_bzero(&back, sizeof back);
    if (lrc != FONTE_OK) {
        unlink(secret_path);
        unlink(path);
        snprintf(errbuf, errlen, "cannot write %s: what was written does "
                 "not read back (a full disk?)", path);
        return FONTE_EIO;
    }
    return FONTE_OK;
}

int
fcurve_server(void *sock, const fcurve_cert_t *cert)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, cert->secret_key,
                       FCURVE_KEY) != 0)
        return -1;
    return zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, FCURVE_DOMAIN,
                          strlen(FCURVE_DOMAIN));
}

int
fcurve_client(void *sock, const fcurve_cert_t *cert,
              const fcurve_cert_t *server)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server->public_key,
                       FCURVE_KEY) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, cert->public_key,
                       FCURVE_KEY) != 0)
        return -1;
    return zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, cert->secret_key,
                          FCURVE_KEY);
}

/* ------------------------------------------------------------------ */
/* the ZAP handler                                                     */

struct fcurve_auth {
    void *rep;
    char *dir;
    bool has_also;
    uint8_t also[FCURVE_KEY];
    uint8_t (*keys)[FCURVE_KEY]; /* the directory's, handler thread only */
    size_t n_keys;
    struct timespec dir_mtime; /* the directory's when keys were read */
    bool racy; /* it changed within a second of being read: read again */
    atomic_bool stop;
    _Atomic uint64_t allowed, denied;
    flog_limiter_t deny_log; /* a refused client retries every 100 ms */
    flog_limiter_t dir_log;  /* and so would a missing directory's line */
    pthread_t thread;
};

/* Reads the public keys of dir's certificates again if dir changed. */
static void
load_dir(fcurve_auth_t *a)
{
    struct stat st;
    if (stat(a->dir, &st) != 0) {
        flog_limited(&a->dir_log, FLOG_WARN, "curve",
                     "cannot read the clients' directory %s: %s; admitting "
                     "no one", a->dir, strerror(errno));
        a->n_keys = 0;
        a->dir_mtime = (struct timespec) { 0, 0 };
        return;
    }
    if (!a->racy && st.st_mtim.tv_sec == a->dir_mtime.tv_sec &&
        st.st_mtim.tv_nsec == a->dir_mtime.tv_nsec)
        return;
    /* read again only for being racy: what it skips was said already */
    bool quiet = st.st_mtim.tv_sec == a->dir_mtime.tv_sec &&
                 st.st_mtim.tv_nsec == a->dir_mtime.tv_nsec;
    DIR *d = opendir(a->dir);
    if (d == NULL)
        return;
    /* A change in the same clock tick as the one read now would leave
     * the mtime as it is: until the mtime is a second old, read the
     * directory at every request (as git does with racy index entries). */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    a->racy = now.tv_sec <= st.st_mtim.tv_sec + 1;
    a->dir_mtime = st.st_mtim;
    a->n_keys = 0;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' ||
            (len >= 7 && strcmp(e->d_name + len - 7, "_secret") == 0))
            continue; /* hidden, or a key pair: its public file counts */
        char path[4096], err[256];
        fcurve_cert_t c;
        if (snprintf(path, sizeof path, "%s/%s", a->dir, e->d_name) >=
                (int) sizeof path ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (fcurve_cert_load(path, false, &c, err, sizeof err) !=
            FONTE_OK) {
            flog(quiet ? FLOG_DEBUG : FLOG_WARN, "curve", "skipped: %s",
                 err);
            continue;
        }
        if (a->n_keys == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            void *k = realloc(a->keys, ncap * sizeof *a->keys);
            if (k == NULL)
                break;
            a->keys = k;
            cap = ncap;
        }
        memcpy(a->keys[a->n_keys++], c.public_key, FCURVE_KEY);
    }
    closedir(d);
    flog(FLOG_DEBUG, "curve", "%zu client keys admitted from %s", a->n_keys,
         a->dir);
}

static bool
admitted(fcurve_auth_t *a, const uint8_t key[FCURVE_KEY])
{
    if (a->has_also && memcmp(key, a->also, FCURVE_KEY) == 0)
        return true;
    load_dir(a);
    for (size_t i = 0; i < a->n_keys; i++)
        if (memcmp(key, a->keys[i], FCURVE_KEY) == 0)
            return true;
    return false;
}

/* Answers one ZAP request (RFC 27): version, request id, domain,
 * address, routing id, mechanism, credentials. */
static void
answer(fcurve_auth_t *a)
{
    zmq_msg_t f[ZAP_FRAMES];
    size_t n = 0;
    int more = 1;

    while (more) {
        zmq_msg_t extra, *m = n < ZAP_FRAMES ? &f[n] : &extra;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, a->rep, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(m); /* too many frames: refused below */
        else
            n++;
    }
    if (n < 2) { /* nothing to answer to: REP must still reply */
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
        zmq_send(a->rep, "", 0, 0);
        return;
    }
    bool ok = n == 7 && !more && zmq_msg_size(&f[0]) == 3 &&
              memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0 &&
              zmq_msg_size(&f[5]) == 5 &&
              memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
              zmq_msg_size(&f[6]) == FCURVE_KEY &&
              admitted(a, zmq_msg_data(&f[6]));
    char user[FCURVE_Z85] = "";
    if (ok)
        zmq_z85_encode(user, zmq_msg_data(&f[6]), FCURVE_KEY);
    else if (n == 7 && zmq_msg_size(&f[6]) == FCURVE_KEY) {
        char who[FCURVE_Z85];
        zmq_z85_encode(who, zmq_msg_data(&f[6]), FCURVE_KEY);
        flog_limited(&a->deny_log, FLOG_WARN, "curve",
                     "refused a client with key %s (not in %s)", who,
                     a->dir);
    }
    atomic_fetch_add(ok ? &a->allowed : &a->denied, 1);
    zmq_send(a->rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(a->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    zmq_send(a->rep, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    zmq_send(a->rep, ok ? "OK" : "key not admitted", ok ? 2 : 16,
             ZMQ_SNDMORE);
    zmq_send(a->rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(a->rep, "", 0, 0);
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *
auth_main(void *arg)
{
    fcurve_auth_t *a = arg;

    pthread_setname_np(pthread_self(), "fonte-zap");
    while (!atomic_load(&a->stop)) {
        zmq_pollitem_t it = { a->rep, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 100) > 0)
            answer(a);
    }
    return NULL;
}

fonte_err
fcurve_auth_new(void *ctx, const char *dir, const fcurve_cert_t *also,
                fcurve_auth_t **auth_p, char *errbuf, size_t errlen)
{
    fcurve_auth_t *a = calloc(1, sizeof *a);
    struct stat st;
    int linger = 0;

    *auth_p = NULL;
    if (a == NULL || (a->dir = strdup(dir)) == NULL) {
        free(a);
        snprintf(errbuf, errlen, "out of memory");
        return FONTE_ENOMEM;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errlen, "the clients' key directory %s: %s", dir,
                 stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
        free(a->dir);
        free(a);
        return FONTE_EINVAL;
    }
    if (also != NULL) {
        a->has_also = true;
        memcpy(a->also, also->public_key, FCURVE_KEY);
    }
    load_dir(a);
    a->rep = zmq_socket(ctx, ZMQ_REP);
    if (a->rep == NULL ||
        zmq_setsockopt(a->rep, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmqx_bind(a->rep, ZAP_ENDPOINT) != 0) {
        snprintf(errbuf, errlen, "cannot start the ZAP handler: %s",
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (pthread_create(&a->thread, NULL, auth_main, a) != 0) {
        snprintf(errbuf, errlen, "cannot start the ZAP handler's thread");
        goto fail;
    }
    *auth_p = a;
    return FONTE_OK;

fail:
    if (a->rep != NULL)
        zmq_close(a->rep);
    free(a->keys);
    free(a->dir);
    free(a);
    return FONTE_EIO;
}

void
fcurve_auth_counts(fcurve_auth_t *a, uint64_t *allowed, uint64_t *denied)
{
    *allowed = atomic_load(&a->allowed);
    *denied = atomic_load(&a->denied);
}

void
fcurve_auth_destroy(fcurve_auth_t **auth_p)
{
    fcurve_auth_t *a = *auth_p;
    if (a == NULL)
        return;
    *auth_p = NULL;
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);
    zmq_close(a->rep);
    free(a->keys);
    free(a->dir);
    free(a);
}
