#include "api/errors.h"

#include <errno.h>

#include "base/util.h"
#include "records/db.h"

unsigned api_status_for(int code)
{
    switch (code) {
    case EINVAL:
    case EBADMSG:
    case EILSEQ:
    case ENAMETOOLONG:
    case EPROTO:
        return 400;
    case EACCES:
    case EPERM:
        return 403;
    case ENOENT:
        return 404;
    case EEXIST:
    case EBUSY:
    case ENOTEMPTY:
        return 409;
    case EFBIG:
    case EMSGSIZE:
    case E2BIG:
        return 413;
    case EMEDIUMTYPE:
        return 415;
    case ENOBUFS:
        return 429;
    case ECANCELED:
        return 499;
    case EINPROGRESS:
    case EAGAIN:
    case ENOTCONN: /* the store's server is away; its connections come back by themselves */
    case ESHUTDOWN:
    case EMFILE: /* out of file descriptors: the daemon's reserve holds, new work waits */
    case ENFILE:
        return 503;
    case ETIMEDOUT:
        return 504;
    case ENOSPC:
    case EDQUOT:
        return 507;
    default:
        return 500;
    }
}

static const char *code_for_status(unsigned status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 409:
        return "conflict";
    case 413:
        return "payload_too_large";
    case 415:
        return "unsupported_media_type";
    case 429:
        return "too_many_requests";
    case 499:
        return "client_closed";
    case 503:
        return "unavailable";
    case 504:
        return "timeout";
    case 507:
        return "insufficient_storage";
    default:
        return "internal";
    }
}

const char *api_code_for(const struct ig_error *err)
{
    if (err->reason)
        return err->reason;
    return err->code == ENOTCONN ? "store_unavailable" : code_for_status(api_status_for(err->code));
}

/* When a refused client should come back, in seconds; NULL: nothing to say. */
static const char *retry_after_for(const struct ig_error *err)
{
    if (streq(api_code_for(err), "store_unavailable"))
        return API_STORE_RETRY_AFTER;
    switch (err->code) {
    case ENOBUFS:     /* a full queue */
    case EINPROGRESS: /* the same event still being stored */
    case EMFILE:      /* no fds for a container */
    case ENFILE:
        return "1";
    default:
        return NULL;
    }
}

int api_reply_error(struct http_request *req, const struct ig_error *err)
{
    const char *retry = retry_after_for(err);
    if (retry)
        http_set_header(req, "Retry-After", retry);
    return http_reply_error(req, api_status_for(err->code), api_code_for(err), "%s", err->message);
}

bool api_store_reachable(struct ig_error *ret_why)
{
    struct db_reachability r;
    db_get_reachability(&r);
    if (r.up)
        return true;
    ig_error_set_reason(ret_why, ENOTCONN, "store_unavailable",
                        "the store is unreachable since %.0f s: %s",
                        (double)((int64_t)wall_usec() - r.since_us) / 1e6, r.reason);
    return false;
}

int api_check_fields(const cJSON *root, const char *const *allowed, struct ig_error *err)
{
    for (const cJSON *f = root->child; f; f = f->next) {
        const char *const *a = allowed;
        while (*a && !streq(*a, f->string))
            a++;
        if (!*a)
            return ig_error_set_reason(err, EINVAL, "bad_request", "%.80s: unknown field",
                                       f->string);
    }
    return 0;
}
