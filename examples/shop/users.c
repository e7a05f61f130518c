/*
 * users.c - shop-users, the users service: it owns the users and tells
 * the world about them. It reads commands on stdin (the shop's front end,
 * here shop-driver, writes them) and publishes, as producer "users":
 *
 *     create <id> <email> <name...>  ->  user.created on user:<id>
 *     rename <id> <name...>          ->  user.renamed on user:<id>
 *     flush                          ->  wait until durable, say so
 *
 * At end of input it flushes (its commit point) and exits 0 once every
 * event is durable in fonte's store, 1 otherwise.
 *
 * It subscribes to nothing: a replay aimed at another service (a rebuild
 * of revenue) never reaches it, so a rebuild creates no user here.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shop.h"
#include "shop.pb-c.h"

static const char usage[] =
    "usage: shop-users [flags] < commands\n"
    "\n"
    "The shop's users service (producer \"users\"). Commands on stdin:\n"
    "  create <id> <email> <name...>   publish user.created on user:<id>\n"
    "  rename <id> <name...>           publish user.renamed on user:<id>\n"
    "  flush                           wait until durable\n"
    "Endpoints from FONTE_INGRESS, FONTE_EGRESS, FONTE_QUERY.\n";

static fonte_err
apply(fonte_client_t *c, char *line)
{
    char object[64], email[128];
    uint64_t id;
    int off = 0;

    if (sscanf(line, "create %" SCNu64 " %127s %n", &id, email, &off) == 2 &&
        off > 0 && line[off] != '\0') {
        Shop__UserCreated m = SHOP__USER_CREATED__INIT;
        m.user_id = id;
        m.email = email;
        m.name = line + off;
        snprintf(object, sizeof object, "user:%" PRIu64, id);
        return shop_publish(c, "user.created", object, NULL, &m.base);
    }
    if (sscanf(line, "rename %" SCNu64 " %n", &id, &off) == 1 && off > 0 &&
        line[off] != '\0') {
        Shop__UserRenamed m = SHOP__USER_RENAMED__INIT;
        m.user_id = id;
        m.name = line + off;
        snprintf(object, sizeof object, "user:%" PRIu64, id);
        return shop_publish(c, "user.renamed", object, NULL, &m.base);
    }
    return FONTE_EINVAL;
}

int
main(int argc, char **argv)
{
    return shop_producer_main(argc, argv, "users", "shop-users", usage, apply);
}
