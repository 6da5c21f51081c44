/* Which addresses a sink may connect to (sink_address_refused): the check libcurl's socket
 * callback makes for every address it tries, after DNS, so a name that resolves to loopback or
 * to a cloud's metadata address is refused like the literal. Deliveries themselves are tested
 * end to end in tests/integration/test_sinks.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <string.h>

#include "events/sink.h"

/* What sink_address_refused says of a literal IPv4 or IPv6 address ("" when it is allowed). */
static const char *judge(const char *text, bool allow_loopback)
{
    struct sockaddr_storage ss = {};
    if (strchr(text, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    const char *why = sink_address_refused((const struct sockaddr *)&ss, allow_loopback);
    return why ? why : "";
}

static void test_addresses(void **state)
{
    static const struct {
        const char *addr, *refused, *refused_with_loopback;
    } cases[] = {
        {"127.0.0.1", "loopback", ""},
        {"127.255.0.9", "loopback", ""},
        {"::1", "loopback", ""},
        {"::ffff:127.0.0.1", "loopback", ""},
        {"169.254.169.254", "link-local", "link-local"},
        {"::ffff:169.254.169.254", "link-local", "link-local"},
        {"fe80::1", "link-local", "link-local"},
        {"0.0.0.0", "unspecified", "unspecified"},
        {"::", "unspecified", "unspecified"},
        /* A webhook elsewhere, private networks included, is what sinks are for. */
        {"10.1.2.3", "", ""},
        {"192.168.1.20", "", ""},
        {"93.184.216.34", "", ""},
        {"128.0.0.1", "", ""},
        {"169.255.0.1", "", ""},
        {"2001:db8::1", "", ""},
        {"fd00::1", "", ""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        if (!streq(judge(cases[i].addr, false), cases[i].refused) ||
            !streq(judge(cases[i].addr, true), cases[i].refused_with_loopback))
            fail_msg("%s: \"%s\" and \"%s\", not \"%s\" and \"%s\"", cases[i].addr,
                     judge(cases[i].addr, false), judge(cases[i].addr, true), cases[i].refused,
                     cases[i].refused_with_loopback);
    }
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_non_null(sink_address_refused(&other, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
