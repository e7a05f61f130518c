/*
 * orders.c - shop-orders, the orders service: it takes orders and tells
 * the world about them. It reads commands on stdin (written by the shop's
 * front end, here shop-driver) and publishes, as producer "orders":
 *
 *     place <id> <user>                     -> order.placed on order:<id>,
 *                                              depending on user:<user>
 *     line <id> <product> <qty> <cents>     -> order.line_added
 *     cancel <id> <reason...>               -> order.cancelled
 *     ship <id>                             -> order.shipped
 *     flush                                 -> wait until durable
 *
 * The order's rules (docs/shop.md): lines are added after it is placed;
 * it ends either cancelled or shipped, never both; a shipped order is
 * final. At end of input it flushes and exits 0 once every event is
 * durable, 1 otherwise.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shop.h"
#include "shop.pb-c.h"

static const char usage[] =
    "usage: shop-orders [flags] < commands\n"
    "\n"
    "The shop's orders service (producer \"orders\"). Commands on stdin:\n"
    "  place <id> <user>                  order.placed (depends on user:<user>)\n"
    "  line <id> <product> <qty> <cents>  order.line_added\n"
    "  cancel <id> <reason...>            order.cancelled\n"
    "  ship <id>                          order.shipped\n"
    "  flush                              wait until durable\n"
    "Endpoints from FONTE_INGRESS, FONTE_EGRESS, FONTE_QUERY.\n";

/* The next space-separated word of *s (NUL-terminated in place), or
 * NULL; *s then points past it. */
static char *
word(char **s)
{
    char *w = *s + strspn(*s, " ");
    if (*w == '\0')
        return NULL;
    *s = w + strcspn(w, " ");
    if (**s != '\0')
        *(*s)++ = '\0';
    return w;
}

static bool
number(const char *w, uint64_t *out)
{
    char *end;
    if (w == NULL || *w < '0' || *w > '9')
        return false;
    *out = strtoull(w, &end, 10);
    return *end == '\0';
}

static fonte_err
apply(fonte_client_t *c, char *line)
{
    char object[64], dep[64];
    char *rest = line, *cmd = word(&rest);
    uint64_t id, user, qty, cents;

    if (cmd == NULL || !number(word(&rest), &id))
        return FONTE_EINVAL;
    snprintf(object, sizeof object, "order:%" PRIu64, id);
    if (strcmp(cmd, "place") == 0 && number(word(&rest), &user) &&
        word(&rest) == NULL) {
        Shop__OrderPlaced m = SHOP__ORDER_PLACED__INIT;
        m.order_id = id;
        m.user_id = user;
        snprintf(dep, sizeof dep, "user:%" PRIu64, user);
        return shop_publish(c, "order.placed", object, dep, &m.base);
    }
    if (strcmp(cmd, "line") == 0) {
        char *product = word(&rest);
        if (product == NULL || !number(word(&rest), &qty) ||
            qty > UINT32_MAX || !number(word(&rest), &cents) ||
            word(&rest) != NULL)
            return FONTE_EINVAL;
        Shop__OrderLineAdded m = SHOP__ORDER_LINE_ADDED__INIT;
        m.order_id = id;
        m.product = product;
        m.quantity = (uint32_t) qty;
        m.unit_price_cents = cents;
        return shop_publish(c, "order.line_added", object, NULL, &m.base);
    }
    if (strcmp(cmd, "cancel") == 0) {
        Shop__OrderCancelled m = SHOP__ORDER_CANCELLED__INIT;
        m.order_id = id;
        m.reason = rest + strspn(rest, " ");
        return shop_publish(c, "order.cancelled", object, NULL, &m.base);
    }
    if (strcmp(cmd, "ship") == 0 && word(&rest) == NULL) {
        Shop__OrderShipped m = SHOP__ORDER_SHIPPED__INIT;
        m.order_id = id;
        return shop_publish(c, "order.shipped", object, NULL, &m.base);
    }
    return FONTE_EINVAL;
}

int
main(int argc, char **argv)
{
    return shop_producer_main(argc, argv, "orders", "shop-orders", usage, apply);
}
