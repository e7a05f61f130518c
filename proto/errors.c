/*
 * errors.c - messages and names for fonte_err, from the one X-macro table
 * in fonte/errors.h.
 */
#include "fonte/errors.h"

static const char *const messages[] = {
#define FONTE_ERR_MSG_(sym, name, msg) msg,
    FONTE_ERRORS(FONTE_ERR_MSG_)
#undef FONTE_ERR_MSG_
};

static const char *const names[] = {
#define FONTE_ERR_NAME_(sym, name, msg) name,
    FONTE_ERRORS(FONTE_ERR_NAME_)
#undef FONTE_ERR_NAME_
};

const char *
fonte_strerror(fonte_err err)
{
    if ((unsigned) err >= FONTE_ERR_COUNT_)
        return "unknown error";
    return messages[err];
}

const char *
fonte_errname(fonte_err err)
{
    if ((unsigned) err >= FONTE_ERR_COUNT_)
        return "unknown";
    return names[err];
}
