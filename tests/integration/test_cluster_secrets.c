/* Secrets shared by the hosts of one PostgreSQL store (#16, functions/secrets.h), on a private
 * server of this test's own whatever IGNIS_TEST_STORE says: two hosts with the same
 * secrets_key. A secret set through A reaches a container of the function on B; replaced through
 * A, B's next container (a new version's) reads the new value; removed through A, it is gone on
 * B. The store holds it sealed: neither the table nor a dump of the whole database holds the
 * value. A third host started with another key logs that it cannot open the secret (function and
 * name, never the value), lists it as unusable, has no file of it, and keeps serving. Each
 * check polls, within a generous bound, for what must come: no timing is asserted. */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pgserver.h"
#include "records/db.h"

#define WAIT_S 20

static struct pgserver *srv;
static char *conninfo;
static struct ignisd_proc host[3]; /* A and B share the key; C has another */
static char keydir[] = "/tmp/ignis-secrets-key.XXXXXX", key[64], other_key[64];

static const char value1[] = "first-v4lue-of-the-token-5e1a";
static const char value2[] = "second-v4lue-of-the-token-77b0";

static void write_key(const char *path, unsigned char fill)
{
    unsigned char bytes[32];
    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (unsigned char)(fill + i * 13);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, sizeof(bytes)), (ssize_t)sizeof(bytes));
    close(fd);
}

static int setup(void **state)
{
    harness_require_root();
    if (!mkdtemp(keydir))
        return -1;
    snprintf(key, sizeof(key), "%s/key", keydir);
    snprintf(other_key, sizeof(other_key), "%s/other", keydir);
    write_key(key, 0x21);
    write_key(other_key, 0x5a);
    if (pgserver_new(&srv) < 0 || pgserver_new_database(srv, &conninfo) < 0)
        return -1;
    const char *args[] = {"--store", conninfo, "--secrets-key", key, NULL};
    for (int i = 0; i < 2; i++)
        if (harness_start(&host[i], args) < 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    int r = 0;
    for (int i = 0; i < 3; i++)
        if (host[i].pid)
            r |= harness_finish(&host[i]);
    free(conninfo);
    unlink(key);
    unlink(other_key);
    rmdir(keydir);
    return pgserver_free(srv) | r;
}

/* Polls until fn(arg), printing every host's log if it never comes. */
static void wait_for(bool (*fn)(void *arg), void *arg, const char *what)
{
    harness_wait_until(fn, arg, WAIT_S, what, host, ARRAY_SIZE(host));
}

/* Pushes `reader` (version tag) on p: it prints /run/secrets/TOKEN, or "absent". */
static void push_reader(struct ignisd_proc *p, const char *tag)
{
    char dir[400], path[500], *out = NULL, *err = NULL;
    snprintf(dir, sizeof(dir), "%s/reader", harness_fixtures(p));
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/function.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"name\":\"reader\",\"runtime\":\"exec\",\"handler\":\"run.sh\","
            "\"env\":{\"TAG\":\"%s\"},\"secrets\":[\"TOKEN\"]}",
            tag);
    fclose(f);
    snprintf(path, sizeof(path), "%s/run.sh", dir);
    assert_non_null(f = fopen(path, "w"));
    fputs("#!/bin/sh\ncat >/dev/null\ncat /run/secrets/TOKEN 2>/dev/null || printf absent\n", f);
    fclose(f);
    chmod(path, 0755);
    int rc = harness_ignis(p, &out, &err, "push", dir, NULL);
    if (rc != 0)
        fail_msg("push reader on %s: %s%s", p->url, out, err);
    free(out);
    free(err);
}

static void put_secret(struct ignisd_proc *p, const char *name, const char *value, long want)
{
    char path[128];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/reader/secrets/%s", name);
    assert_int_equal(harness_request(p, value ? "PUT" : "DELETE", path, NULL, value,
                                     value ? strlen(value) : 0, &r),
                     0);
    if (r.status != want)
        fail_msg("%s %s: %ld %s", value ? "PUT" : "DELETE", path, r.status, r.body);
    client_response_clear(&r);
}

struct file_check {
    struct ignisd_proc *p;
    const char *name;
    const char *value; /* NULL: no file */
};

/* p's file of reader's secret holds value (or is absent). */
static bool file_is(void *arg)
{
    struct file_check *c = arg;
    char path[400], *text = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/secrets/reader/%s", c->p->state_dir, c->name);
    int r = read_file(path, 4096, &text, &len);
    bool ok = c->value ? r == 0 && streq(text, c->value) : r == -ENOENT;
    free(text);
    return ok;
}

struct run_check {
    struct ignisd_proc *p;
    const char *version, *output;
};

/* reader answers on p from the version wanted, printing output. */
static bool reader_prints(void *arg)
{
    struct run_check *c = arg;
    char version[24] = "";
    struct client_response r;
    long status = harness_invoke(c->p, "reader", "{}", NULL, &r);
    client_response_header(&r, "Ignis-Version", version, sizeof(version));
    bool ok = status == 200 && streq(version, c->version) && r.body && streq(r.body, c->output);
    client_response_clear(&r);
    return ok;
}

/* Neither the secrets table nor a dump of the whole database holds value in the clear. */
static void assert_store_sealed(const char *value)
{
    struct db *db;
    struct db_rows *rows;
    struct ig_error err = {};
    assert_int_equal(db_open(conninfo, 0, &db, &err), 0);
    assert_int_equal(
        db_query(db, "SELECT function, name, nonce, ciphertext FROM secrets", NULL, 0, &rows, &err),
        0);
    int n = 0;
    while (db_next(rows) > 0) {
        size_t len;
        const void *ct = db_blob(rows, 3, &len);
        assert_null(memmem(ct, len, value, strlen(value)));
        assert_int_equal(len, strlen(value) + 16); /* the value's size shows, not the value */
        n++;
    }
    assert_int_equal(n, 1);
    db_rows_free(rows);
    db_close(db);

    char pg_dump[300], dump[128], *out = NULL, *errs = NULL;
    snprintf(pg_dump, sizeof(pg_dump), "%s/pg_dump", srv->bindir);
    snprintf(dump, sizeof(dump), "%s/dump.sql", keydir);
    char *argv[] = {pg_dump, "--data-only", "-f", dump, "-d", conninfo, NULL};
    if (harness_run(argv, &out, &errs) != 0)
        fail_msg("pg_dump: %s", errs);
    free(out);
    free(errs);
    assert_true(harness_file_contains(dump, "COPY public.secrets"));
    assert_false(harness_file_contains(dump, value));
    unlink(dump);
}

static void test_set_replace_remove_reach_the_other_host(void **state)
{
    push_reader(&host[0], "one");
    wait_for(reader_prints, &(struct run_check){&host[1], "1", "absent"},
             "reader running on B, without the secret");

    /* Set through A: B writes it out, and B's next container reads it (the warm one of the
     * version before has its copy from its start: a new version makes a new one). */
    put_secret(&host[0], "TOKEN", value1, 201);
    wait_for(file_is, &(struct file_check){&host[1], "TOKEN", value1}, "the secret on B");
    struct stat st;
    char path[400];
    snprintf(path, sizeof(path), "%s/secrets/reader/TOKEN", host[1].state_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    push_reader(&host[0], "two");
    wait_for(reader_prints, &(struct run_check){&host[1], "2", value1},
             "a container on B reading the secret set through A");
    assert_store_sealed(value1);

    /* Replaced through A. */
    put_secret(&host[0], "TOKEN", value2, 200);
    wait_for(file_is, &(struct file_check){&host[1], "TOKEN", value2}, "the new value on B");
    push_reader(&host[0], "three");
    wait_for(reader_prints, &(struct run_check){&host[1], "3", value2},
             "B's next container reading the value replaced through A");
    assert_store_sealed(value2);

    /* Listed on B as the store has it. */
    struct client_response r;
    assert_int_equal(
        harness_request(&host[1], "GET", "/v1/functions/reader/secrets", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"name\":\"TOKEN\""));
    assert_non_null(strstr(r.body, "\"usable\":true"));
    assert_null(strstr(r.body, value2));
    client_response_clear(&r);

    /* Removed through A: gone on B. */
    put_secret(&host[0], "TOKEN", NULL, 200);
    wait_for(file_is, &(struct file_check){&host[1], "TOKEN", NULL}, "the secret gone on B");
    put_secret(&host[1], "TOKEN", NULL, 404);
    push_reader(&host[0], "four");
    wait_for(reader_prints, &(struct run_check){&host[1], "4", "absent"},
             "B's next container without the secret removed through A");
    for (int i = 0; i < 2; i++) {
        assert_false(harness_file_contains(host[i].log_path, value1));
        assert_false(harness_file_contains(host[i].log_path, value2));
    }
}

static bool logged_unopened(void *arg)
{
    struct ignisd_proc *p = arg;
    return harness_file_contains(p->log_path, "does not open with this host's secrets_key") &&
           harness_file_contains(p->log_path, "secret=LATE");
}

static bool logged_twice(void *arg)
{
    return harness_log_count(arg, "secret=LATE") == 2;
}

static bool logged_other(void *arg)
{
    return harness_log_count(arg, "secret=OTHER") == 1;
}

static void test_another_key_cannot_open(void **state)
{
    put_secret(&host[1], "LATE", value1, 201);
    wait_for(file_is, &(struct file_check){&host[0], "LATE", value1}, "a secret set on B on A");
    const char *args[] = {"--store", conninfo, "--secrets-key", other_key, NULL};
    assert_int_equal(harness_start(&host[2], args), 0);
    wait_for(logged_unopened, &host[2], "C logging the secret it cannot open");
    assert_true(file_is(&(struct file_check){&host[2], "LATE", NULL}));
    assert_false(harness_file_contains(host[2].log_path, value1));
    /* Still serving, and saying which secret it cannot use. */
    struct client_response r;
    assert_int_equal(
        harness_request(&host[2], "GET", "/v1/functions/reader/secrets", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"usable\":false"));
    client_response_clear(&r);
    /* A change heard later is refused the same way, without a crash. */
    put_secret(&host[0], "LATE", value2, 200);
    wait_for(file_is, &(struct file_check){&host[1], "LATE", value2}, "the new value on B");
    assert_true(file_is(&(struct file_check){&host[2], "LATE", NULL}));
    assert_int_equal(harness_request(&host[2], "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);
    /* Each value it cannot open is logged once: the function's secrets read again (for another
     * one set) log the new one, not LATE's again. */
    wait_for(logged_twice, &host[2], "C logging LATE's new value");
    put_secret(&host[0], "OTHER", value1, 201);
    wait_for(logged_other, &host[2], "C logging OTHER");
    assert_int_equal(harness_log_count(&host[2], "secret=LATE"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_replace_remove_reach_the_other_host),
        cmocka_unit_test(test_another_key_cannot_open),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
