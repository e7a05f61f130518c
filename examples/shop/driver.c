/*
 * driver.c - shop-driver, the shop's front end under load: from a seed it
 * makes a realistic workload (N users, some renamed later; M orders from
 * those users with 1-4 lines each of a product catalogue; some orders
 * cancelled, the rest shipped) and feeds it, as commands on their stdin,
 * to the two producing services it starts: shop-users and shop-orders.
 * Both run at once, so an order may reach a consumer before its user.
 *
 * It waits for both to exit (each flushes at the end of its input: their
 * events are then durable in fonte's store) and prints what it asked for,
 * including the revenue it expects, for the reader to compare with
 * shop-verify's figure. The same seed gives the same workload.
 *
 * Exit 0 if both services exited 0, 1 otherwise.
 */
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flags.h"
#include "shop.h"

static const char *const first_names[] = {
    "Ana", "Bruno", "Carla", "Diego", "Elisa", "Fabio", "Gabriela", "Heitor",
    "Iara", "Joao", "Larissa", "Marcos", "Natalia", "Otavio", "Paula",
    "Rafael", "Sofia", "Tiago", "Vitoria", "Yuri",
};
static const char *const last_names[] = {
    "Almeida", "Barbosa", "Costa", "Dias", "Ferreira", "Gomes", "Lima",
    "Moreira", "Nunes", "Oliveira", "Pereira", "Ribeiro", "Santos", "Souza",
};
static const struct product {
    const char *name;
    uint64_t cents;
} catalogue[] = {
    { "coffee-beans-1kg", 8990 }, { "espresso-cup", 2450 },
    { "moka-pot", 15900 },        { "milk-frother", 12990 },
    { "grinder", 45900 },         { "filter-papers", 1290 },
    { "kettle", 19900 },          { "scale", 9990 },
    { "tamper", 6990 },           { "descaler", 3490 },
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* splitmix64: small, seedable, good enough for a workload. */
static uint64_t
rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
below(uint64_t *s, uint64_t n)
{
    return rnd(s) % n;
}

static const char *
pick_name(uint64_t *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s", first_names[below(s, COUNT(first_names))],
             last_names[below(s, COUNT(last_names))]);
    return buf;
}

static FILE *
start(const char *bin, const char *prog)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "exec '%s/%s'", bin, prog);
    FILE *f = popen(cmd, "w");
    if (f == NULL)
        perror(prog);
    return f;
}

static bool
finish(FILE *f, const char *prog)
{
    int st = pclose(f);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "shop-driver: %s failed (status %d)\n", prog, st);
        return false;
    }
    return true;
}

/* The directory of this program: the services live beside it. */
static const char *
own_dir(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return ".";
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    return buf;
}

static const char usage[] =
    "usage: shop-driver [flags]\n"
    "\n"
    "Starts shop-users and shop-orders (from --bin) and feeds them a\n"
    "seeded workload; exits 0 once both have made every event durable.\n"
    "Endpoints for the services from FONTE_INGRESS, FONTE_EGRESS,\n"
    "FONTE_QUERY.\n";

int
main(int argc, char **argv)
{
    uint64_t n_users = 200, n_orders = 1000, seed = 42, cancel_pct = 10,
             rename_pct = 5;
    char dirbuf[PATH_MAX], name[SHOP_NAME_MAX], money[32];
    const char *bin = NULL;
    const flag_spec_t specs[] = {
        { "users", "SHOP_USERS", FLAG_UINT, &n_users, "users (200)", NULL },
        { "orders", "SHOP_ORDERS", FLAG_UINT, &n_orders, "orders (1000)",
          NULL },
        { "seed", "SHOP_SEED", FLAG_UINT, &seed, "workload seed (42)", NULL },
        { "cancel-pct", "SHOP_CANCEL_PCT", FLAG_UINT, &cancel_pct,
          "percent of orders cancelled (10)", NULL },
        { "rename-pct", "SHOP_RENAME_PCT", FLAG_UINT, &rename_pct,
          "chance per order, in percent, that some user is renamed (5)",
          NULL },
        { "bin", "SHOP_BIN", FLAG_STR, &bin,
          "where shop-users and shop-orders are (this program's directory)",
          NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
    };
    uint64_t s, lines = 0, cancelled = 0, renamed = 0;
    int64_t expected = 0;
    FILE *users, *orders;
    bool ok;

    int exit_code = flags_exit_code(
        flags_parse(specs, argc, argv, "shop-driver", usage, NULL, stdout,
                    stderr));
    if (exit_code >= 0)
        return exit_code;
    if (n_users == 0 || cancel_pct > 100 || rename_pct > 100) {
        fprintf(stderr, "shop-driver: need --users >= 1 and percentages "
                        "up to 100\n");
        return 2;
    }
    if (bin == NULL)
        bin = own_dir(dirbuf, sizeof dirbuf);
    signal(SIGPIPE, SIG_IGN); /* a dead service shows as a failed write */
    if ((users = start(bin, "shop-users")) == NULL)
        return 1;
    if ((orders = start(bin, "shop-orders")) == NULL) {
        pclose(users);
        return 1;
    }

    s = seed;
    for (uint64_t u = 1; u <= n_users; u++) {
        char email[64];
        pick_name(&s, name, sizeof name);
        snprintf(email, sizeof email, "user%" PRIu64 "@shop.example", u);
        fprintf(users, "create %" PRIu64 " %s %s\n", u, email, name);
    }
    for (uint64_t o = 1; o <= n_orders; o++) {
        /* Some customers buy more: a square biases towards low ids. */
        uint64_t r = below(&s, n_users);
        uint64_t user = 1 + (r * r) / n_users;
        uint64_t n_lines = 1 + below(&s, 4);
        int64_t total = 0;

        fprintf(orders, "place %" PRIu64 " %" PRIu64 "\n", o, user);
        for (uint64_t l = 0; l < n_lines; l++) {
            const struct product *p = &catalogue[below(&s, COUNT(catalogue))];
            uint64_t qty = 1 + below(&s, 3);
            fprintf(orders, "line %" PRIu64 " %s %" PRIu64 " %" PRIu64 "\n",
                    o, p->name, qty, p->cents);
            total += (int64_t) (qty * p->cents);
            lines++;
        }
        if (below(&s, 100) < cancel_pct) {
            fprintf(orders, "cancel %" PRIu64 " changed my mind\n", o);
            cancelled++;
        } else {
            fprintf(orders, "ship %" PRIu64 "\n", o);
            expected += total;
        }
        if (below(&s, 100) < rename_pct) {
            fprintf(users, "rename %" PRIu64 " %s\n", 1 + below(&s, n_users),
                    pick_name(&s, name, sizeof name));
            renamed++;
        }
    }
    ok = fflush(users) == 0 && fflush(orders) == 0;
    ok = finish(users, "shop-users") && ok;
    ok = finish(orders, "shop-orders") && ok;
    if (!ok)
        return 1;
    printf("shop-driver: %" PRIu64 " users (%" PRIu64 " renames), %" PRIu64
           " orders (%" PRIu64 " cancelled) with %" PRIu64
           " lines, all durable; expected revenue %s\n",
           n_users, renamed, n_orders, cancelled, lines,
           shop_money(money, sizeof money, expected));
    return 0;
}
