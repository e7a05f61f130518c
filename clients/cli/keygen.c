/*
 * keygen.c - `fonte keygen NAME`: a CURVE key pair in CZMQ's certificate
 * files (proto/curve.h), DIR/NAME.key to hand out and DIR/NAME.key_secret
 * (mode 0600) to keep. Never overwrites: an existing file is exit 1.
 */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"

static const char usage[] =
    "usage: fonte keygen NAME [--dir DIR]\n"
    "\n"
    "Writes a new CURVE key pair: DIR/NAME.key, the public certificate,\n"
    "to copy into the --curve-clients directory of the servers a client\n"
    "connects to (or to give clients as --curve-broker/--curve-listener\n"
    "for a server's); and DIR/NAME.key_secret, the key pair, readable by\n"
    "its owner only. The owner passes --curve-cert DIR/NAME.key: the\n"
    "secret file is found beside it. An existing file is not\n"
    "overwritten. NAME: letters, digits, '.', '_', '-'.\n";

static bool
name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._-") == n;
}

int
cmd_keygen(int argc, char **argv)
{
    const char *dir = ".";
    const char *name = NULL;
    char path[4096], err[1024];

    const flag_spec_t specs[] = {
        { "dir", NULL, FLAG_STR, &dir,
          "directory to write the two files into (.)", NULL },
        CLI_FLAGS_END,
    };
    int rc = cli_flags(specs, NULL, argc, argv, usage, 1, 1, &name, NULL);
    if (rc != CLI_CONTINUE)
        return rc;
    if (!name_ok(name)) {
        cli_error(argv[0], "'%s' is not a key name: use 1..64 letters, "
                  "digits, '.', '_', '-', not starting with '.' or '-'",
                  name);
        return CLI_EXIT_USAGE;
    }
    if (dir[0] == '\0') {
        cli_error(argv[0], "--dir must name a directory (. for this one)");
        return CLI_EXIT_USAGE;
    }
    if (snprintf(path, sizeof path, "%s/%s.key", dir, name) >=
        (int) sizeof path - 8) {
        cli_error(argv[0], "--dir is too long");
        return CLI_EXIT_USAGE;
    }
    fonte_err frc = fcurve_keygen(path, name, err, sizeof err);
    if (frc != FONTE_OK) {
        cli_error(argv[0], "%s", err);
        return CLI_EXIT_REFUSED;
    }
    fcurve_cert_t c;
    char z85[FCURVE_Z85];
    if (fcurve_cert_load(path, true, &c, err, sizeof err) != FONTE_OK) {
        cli_error(argv[0], "wrote %s but cannot read it back: %s", path,
                  err);
        return CLI_EXIT_REFUSED;
    }
    zmq_z85_encode(z85, c.public_key, FCURVE_KEY);
    explicit_bzero(&c, sizeof c);
    printf("public  %s\nsecret  %s_secret\nkey     %s\n", path, path, z85);
    return CLI_EXIT_OK;
}
