/* api/errors.c: how each domain error (an errno, and the reason the domain gave) becomes a reply's
 * status and error code. The domain's reason wins over the status's generic code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <errno.h>

#include "api/errors.h"

static void test_status_and_code(void **state)
{
    static const struct {
        int code;
        unsigned status;
        const char *generic;
    } cases[] = {
        {EINVAL, 400, "bad_request"},
        {EBADMSG, 400, "bad_request"},
        {ENAMETOOLONG, 400, "bad_request"},
        {EACCES, 403, "forbidden"},
        {EPERM, 403, "forbidden"},
        {ENOENT, 404, "not_found"},
        {EEXIST, 409, "conflict"},
        {EBUSY, 409, "conflict"},
        {ENOTEMPTY, 409, "conflict"},
        {EFBIG, 413, "payload_too_large"},
        {EMSGSIZE, 413, "payload_too_large"},
        {EMEDIUMTYPE, 415, "unsupported_media_type"},
        {ENOBUFS, 429, "too_many_requests"},
        {ECANCELED, 499, "client_closed"},
        {EINPROGRESS, 503, "unavailable"},
        {EAGAIN, 503, "unavailable"},
        /* The store's server away (records/db.h): its own code, whatever the status's. */
        {ENOTCONN, 503, "store_unavailable"},
        {ESHUTDOWN, 503, "unavailable"},
        {EMFILE, 503, "unavailable"},
        {ENFILE, 503, "unavailable"},
        {ETIMEDOUT, 504, "timeout"},
        {ENOSPC, 507, "insufficient_storage"},
        {EDQUOT, 507, "insufficient_storage"},
        {EIO, 500, "internal"},
        {ENOMEM, 500, "internal"},
        {0, 500, "internal"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ig_error err = {};
        ig_error_set(&err, cases[i].code, "case %zu", i);
        /* ig_error_set makes 0 an EIO: the mapping still sees a failure. */
        assert_int_equal(api_status_for(err.code), cases[i].status);
        assert_string_equal(api_code_for(&err), cases[i].generic);

        struct ig_error named = {};
        ig_error_set_reason(&named, cases[i].code, "why_it_failed", "case %zu", i);
        assert_int_equal(api_status_for(named.code), cases[i].status);
        assert_string_equal(api_code_for(&named), "why_it_failed");
    }
}

static void test_first_error_wins(void **state)
{
    struct ig_error err = {};
    ig_error_set_reason(&err, EEXIST, "name_mismatch", "first");
    ig_error_set_reason(&err, ENOENT, "later", "second");
    assert_int_equal(err.code, EEXIST);
    assert_string_equal(api_code_for(&err), "name_mismatch");
    assert_string_equal(err.message, "first");
    ig_error_clear(&err);
    assert_null(err.reason);
    assert_int_equal(ig_error_set(&err, -ENOENT, "again"), -ENOENT);
    assert_string_equal(api_code_for(&err), "not_found");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_code),
        cmocka_unit_test(test_first_error_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
