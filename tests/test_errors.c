/*
 * test_errors.c - the fonte_err table: every code has a distinct name and
 * a message, and unknown codes are safe.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "fonte/errors.h"

Test(errors, ok_is_zero)
{
    cr_assert_eq(FONTE_OK, 0);
    cr_assert_str_eq(fonte_strerror(FONTE_OK), "success");
    cr_assert_str_eq(fonte_errname(FONTE_OK), "ok");
}

Test(errors, names_are_distinct_and_messages_present)
{
    for (int i = 0; i < FONTE_ERR_COUNT_; i++) {
        cr_assert_neq(strlen(fonte_strerror((fonte_err) i)), 0);
        cr_assert_str_neq(fonte_strerror((fonte_err) i), "unknown error");
        for (int j = i + 1; j < FONTE_ERR_COUNT_; j++)
            cr_assert_str_neq(fonte_errname((fonte_err) i),
                              fonte_errname((fonte_err) j), "%d vs %d", i, j);
    }
}

Test(errors, known_codes_keep_their_meaning)
{
    cr_assert_str_eq(fonte_strerror(FONTE_EFULL), "outbox full");
    cr_assert_str_eq(fonte_errname(FONTE_ETOPIC), "topic");
    cr_assert_str_eq(fonte_errname(FONTE_ETIMEOUT), "timeout");
}

Test(errors, unknown_code_is_safe)
{
    cr_assert_str_eq(fonte_strerror((fonte_err) FONTE_ERR_COUNT_), "unknown error");
    cr_assert_str_eq(fonte_strerror((fonte_err) -1), "unknown error");
    cr_assert_str_eq(fonte_errname((fonte_err) 9999), "unknown");
}
