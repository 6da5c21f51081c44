/* Who may do what, through a real ignisd: every role against every route of the route table
 * (allowed and denied), bad, expired and revoked tokens, an invoker's own invocations, the rate
 * limit, the concurrency limit, the audit log, secrets seen only by their function, and a
 * function's isolation from the API and from other functions' files (docs/security.md). */
#include "harness.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "api/api.h"
#include "api/auth.h"
#include "functions/secrets.h"

static struct ignisd_proc daemon_proc;
/* One client per role (index enum auth_role), each with a token of that role. */
static struct client *as[AUTH_NROLES];
static char token_ids[AUTH_NROLES][AUTH_TOKEN_ID_LEN + 1];
static struct client *anonymous;

/* Makes a token of role with the admin's client; returns its text (malloc'd), its id in ret_id. */
static char *make_token(const char *role, const char *extra_json, char ret_id[17])
{
    char body[256];
    snprintf(body, sizeof(body), "{\"role\": \"%s\"%s}", role, extra_json ? extra_json : "");
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "POST", "/v1/tokens", NULL, body, strlen(body), &r), 0);
    if (r.status != 201)
        fprintf(stderr, "POST /v1/tokens: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 201);
    cJSON *j = cJSON_Parse(r.body);
    client_response_clear(&r);
    const cJSON *t = cJSON_GetObjectItem(j, "token"), *id = cJSON_GetObjectItem(j, "id");
    assert_true(cJSON_IsString(t) && cJSON_IsString(id));
    char *text = strdup(t->valuestring);
    if (ret_id)
        snprintf(ret_id, 17, "%s", id->valuestring);
    cJSON_Delete(j);
    return text;
}

static int setup(void **state)
{
    harness_require_root();
    if (harness_start(&daemon_proc, NULL) < 0)
        return -1;
    for (int r = 0; r < AUTH_NROLES; r++) {
        char *token = r == AUTH_ROLE_ADMIN
                          ? strdup(daemon_proc.token)
                          : make_token(auth_role_name((enum auth_role)r), NULL, token_ids[r]);
        if (client_new(daemon_proc.url, &as[r]) < 0 || client_set_token(as[r], token) < 0)
            return -1;
        free(token);
    }
    if (client_new(daemon_proc.url, &anonymous) < 0)
        return -1;
    return client_set_token(anonymous, NULL);
}

static int teardown(void **state)
{
    for (int r = 0; r < AUTH_NROLES; r++)
        client_free(as[r]);
    client_free(anonymous);
    return harness_finish(&daemon_proc);
}

static long request(struct client *c, const char *method, const char *path, const char *body,
                    struct client_response *ret)
{
    struct client_response r;
    struct ig_error err = {};
    const char *const headers[] = {"Content-Type: application/json", NULL};
    if (client_request(c, method, path, headers, body, body ? strlen(body) : 0, &r, &err) < 0)
        fail_msg("%s %s: %s", method, path, err.message);
    long status = r.status;
    if (ret)
        *ret = r;
    else
        client_response_clear(&r);
    return status;
}

/* The route's pattern with each {} replaced by "x": a name no function, token or secret has, so
 * an allowed request is answered by its handler (400, 404, 200) without changing anything. */
static void concrete_path(const char *pattern, char *buf, size_t size)
{
    size_t n = 0;
    for (const char *p = pattern; *p && n + 2 < size; p++) {
        if (p[0] == '{' && p[1] == '}') {
            buf[n++] = 'x';
            p++;
        } else
            buf[n++] = *p;
    }
    buf[n] = '\0';
}

/* Every role, and no token, against every entry of the route table: the entry's roles are the
 * whole rule, so a new route is covered here by being added to api.c. */
static void test_every_role_against_every_route(void **state)
{
    for (size_t i = 0; i < api_nroutes; i++) {
        const struct http_route *rt = &api_routes[i];
        char path[512];
        concrete_path(rt->pattern, path, sizeof(path));
        struct client_response r;
        long status = request(anonymous, rt->method, path, NULL, &r);
        if (rt->roles & AUTH_PUBLIC) {
            assert_true(status != 401 && status != 403);
        } else {
            if (status != 401)
                fprintf(stderr, "%s %s without a token: %ld\n", rt->method, path, status);
            assert_int_equal(status, 401);
            char h[128];
            assert_non_null(client_response_header(&r, "WWW-Authenticate", h, sizeof(h)));
            assert_true(startswith(h, "Bearer"));
        }
        client_response_clear(&r);
        unsigned allowed = rt->roles & AUTH_ANY_ROLE;
        if (!allowed)
            allowed = AUTH_ADMIN;
        for (int role = 0; role < AUTH_NROLES; role++) {
            status = request(as[role], rt->method, path, NULL, NULL);
            bool ok = (rt->roles & AUTH_PUBLIC) || (allowed & (1u << role));
            if (ok ? (status == 401 || status == 403 || status == 429) : status != 403)
                fprintf(stderr, "%s %s as %s: %ld, expected %s\n", rt->method, path,
                        auth_role_name((enum auth_role)role), status, ok ? "allowed" : "403");
            if (ok)
                assert_true(status != 401 && status != 403 && status != 429);
            else
                assert_int_equal(status, 403);
        }
    }
}

/* The table says what the issue asks: spot checks of intent, not of the mechanism. */
static void test_roles_mean_what_the_issue_says(void **state)
{
    struct {
        enum auth_role role;
        const char *method, *path;
        bool allowed;
    } cases[] = {
        {AUTH_ROLE_INVOKER, "POST", "/v1/functions/x/invoke", true},
        {AUTH_ROLE_INVOKER, "PUT", "/v1/functions/x", false},
        {AUTH_ROLE_INVOKER, "GET", "/v1/functions", false},
        {AUTH_ROLE_INVOKER, "GET", "/metrics", false},
        {AUTH_ROLE_OPERATOR, "GET", "/metrics", true},
        {AUTH_ROLE_OPERATOR, "GET", "/v1/usage", true},
        {AUTH_ROLE_OPERATOR, "GET", "/v1/functions/x", true},
        {AUTH_ROLE_OPERATOR, "POST", "/v1/functions/x/invoke", false},
        {AUTH_ROLE_OPERATOR, "DELETE", "/v1/functions/x", false},
        {AUTH_ROLE_DEVELOPER, "PUT", "/v1/functions/x", true},
        {AUTH_ROLE_DEVELOPER, "GET", "/v1/functions/x/logs", true},
        {AUTH_ROLE_DEVELOPER, "GET", "/v1/tokens", false},
        {AUTH_ROLE_DEVELOPER, "GET", "/v1/audit", false},
        {AUTH_ROLE_ADMIN, "GET", "/v1/audit", true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        long s = request(as[cases[i].role], cases[i].method, cases[i].path, NULL, NULL);
        if (cases[i].allowed)
            assert_true(s != 401 && s != 403);
        else
            assert_int_equal(s, 403);
    }
    assert_int_equal(request(anonymous, "GET", "/healthz", NULL, NULL), 200);
}

static long with_header(const char *header)
{
    struct client_response r;
    struct ig_error err = {};
    const char *const headers[] = {header, NULL};
    assert_int_equal(client_request(anonymous, "GET", "/v1/version", headers, NULL, 0, &r, &err),
                     0);
    long s = r.status;
    if (s == 401) {
        char h[128];
        assert_non_null(client_response_header(&r, "WWW-Authenticate", h, sizeof(h)));
    }
    client_response_clear(&r);
    return s;
}

static void test_bad_expired_and_revoked_tokens(void **state)
{
    char good[256], wrong_secret[256];
    snprintf(good, sizeof(good), "Authorization: Bearer %s", daemon_proc.token);
    assert_int_equal(with_header(good), 200);
    /* The admin's id with another secret; a garbage token; another scheme; an empty one. */
    snprintf(wrong_secret, sizeof(wrong_secret), "%s", good);
    char *last = wrong_secret + strlen(wrong_secret) - 1;
    *last = *last == '0' ? '1' : '0';
    assert_int_equal(with_header(wrong_secret), 401);
    assert_int_equal(with_header("Authorization: Bearer nonsense"), 401);
    assert_int_equal(with_header("Authorization: Basic YWRtaW46YWRtaW4="), 401);
    assert_int_equal(with_header("Authorization: Bearer "), 401);

    /* Expired: a token of one second, used after it passed. */
    char *expiring = make_token("operator", ", \"expires_in\": \"1s\"", NULL);
    char header[256];
    snprintf(header, sizeof(header), "Authorization: Bearer %s", expiring);
    sleep(2);
    struct client_response r;
    struct ig_error err = {};
    const char *const hs[] = {header, NULL};
    assert_int_equal(client_request(anonymous, "GET", "/v1/version", hs, NULL, 0, &r, &err), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "expired"));
    client_response_clear(&r);
    free(expiring);

    /* Revoked: works, is revoked, then 401; the listing says so. */
    char id[17];
    char *doomed = make_token("developer", ", \"name\": \"doomed\"", id);
    snprintf(header, sizeof(header), "Authorization: Bearer %s", doomed);
    assert_int_equal(with_header(header), 200);
    char path[64];
    snprintf(path, sizeof(path), "/v1/tokens/%s", id);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "DELETE", path, NULL, NULL), 200);
    assert_int_equal(client_request(anonymous, "GET", "/v1/version", hs, NULL, 0, &r, &err), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "revoked"));
    client_response_clear(&r);
    free(doomed);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "GET", "/v1/tokens", NULL, &r), 200);
    assert_non_null(strstr(r.body, "\"revoked\""));
    /* Only hashes are stored: no listing shows a token's secret part. */
    assert_null(strstr(r.body, daemon_proc.token));
    client_response_clear(&r);

    /* Bad requests to the token routes. */
    assert_int_equal(
        request(as[AUTH_ROLE_ADMIN], "POST", "/v1/tokens", "{\"role\": \"root\"}", NULL), 400);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "POST", "/v1/tokens",
                             "{\"role\": \"admin\", \"expires_in\": \"soon\"}", NULL),
                     400);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "POST", "/v1/tokens",
                             "{\"role\": \"admin\", \"colour\": \"red\"}", NULL),
                     400);
    assert_int_equal(
        request(as[AUTH_ROLE_ADMIN], "DELETE", "/v1/tokens/0123456789abcdef", NULL, NULL), 404);
}

static void test_last_admin_cannot_be_revoked(void **state)
{
    struct client_response r;
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "GET", "/v1/tokens", NULL, &r), 200);
    cJSON *j = cJSON_Parse(r.body);
    client_response_clear(&r);
    const cJSON *t;
    char admin_id[17] = "";
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "tokens"))
    {
        if (streq(cJSON_GetObjectItem(t, "role")->valuestring, "admin"))
            snprintf(admin_id, sizeof(admin_id), "%s", cJSON_GetObjectItem(t, "id")->valuestring);
    }
    cJSON_Delete(j);
    assert_true(admin_id[0]);
    char path[64];
    snprintf(path, sizeof(path), "/v1/tokens/%s", admin_id);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "DELETE", path, NULL, &r), 409);
    assert_non_null(strstr(r.body, "last_admin"));
    client_response_clear(&r);
}

/* The CLI's verbs and its token search order: --token, then $IGNIS_TOKEN, then a file. */
static void test_cli_token_verbs_and_search_order(void **state)
{
    char *out = NULL, *err = NULL;
    char *create[] = {(char *)harness_cli(),
                      "--server",
                      daemon_proc.url,
                      "token",
                      "create",
                      "--role",
                      "operator",
                      "--name",
                      "cli-made",
                      "--expires",
                      "30d",
                      NULL};
    assert_int_equal(harness_run(create, &out, &err), 0);
    assert_true(startswith(out, "ignis_"));
    char token[128];
    snprintf(token, sizeof(token), "%.*s", (int)strcspn(out, "\n"), out);
    assert_non_null(strstr(err, "shown only now"));
    free(out);
    free(err);

    char *ls[] = {(char *)harness_cli(), "--server", daemon_proc.url, "token", "ls", NULL};
    assert_int_equal(harness_run(ls, &out, &err), 0);
    assert_non_null(strstr(out, "cli-made"));
    assert_null(strstr(out, token));
    free(out);
    free(err);

    /* --token wins over $IGNIS_TOKEN: an operator may not list tokens. */
    char *as_op[] = {
        (char *)harness_cli(), "--server", daemon_proc.url, "--token", token, "token", "ls", NULL};
    assert_int_equal(harness_run(as_op, &out, &err), 1);
    assert_non_null(strstr(err, "HTTP 403"));
    free(out);
    free(err);

    /* Without $IGNIS_TOKEN, the file $IGNIS_TOKEN_FILE names. */
    char file[400];
    snprintf(file, sizeof(file), "%s/cli.token", harness_fixtures(&daemon_proc));
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", token);
    fclose(f);
    char *saved = strdup(getenv("IGNIS_TOKEN"));
    unsetenv("IGNIS_TOKEN");
    setenv("IGNIS_TOKEN_FILE", file, 1);
    char *version[] = {(char *)harness_cli(), "--server", daemon_proc.url, "version", NULL};
    assert_int_equal(harness_run(version, &out, &err), 0);
    free(out);
    free(err);
    assert_int_equal(harness_run(ls, &out, &err), 1); /* the file's operator token */
    assert_non_null(strstr(err, "HTTP 403"));
    free(out);
    free(err);
    /* No token anywhere: 401, and the message says where one goes. */
    unsetenv("IGNIS_TOKEN_FILE");
    setenv("HOME", "/nonexistent", 1);
    unsetenv("XDG_CONFIG_HOME");
    assert_int_equal(harness_run(version, &out, &err), 1);
    assert_non_null(strstr(err, "HTTP 401"));
    assert_non_null(strstr(err, "--token"));
    free(out);
    free(err);
    setenv("IGNIS_TOKEN", saved, 1);
    free(saved);

    char *bad[] = {(char *)harness_cli(), "--server", daemon_proc.url, "token", "create", NULL};
    assert_int_equal(harness_run(bad, &out, &err), 2);
    free(out);
    free(err);
}

static char *invocation_id(const struct client_response *r)
{
    char id[64];
    assert_non_null(client_response_header(r, "Ignis-Invocation-Id", id, sizeof(id)));
    return strdup(id);
}

static void test_invoker_sees_only_its_own(void **state)
{
    harness_push(&daemon_proc, "hello-exec", "own", NULL);
    char other_id[17];
    char *other = make_token("invoker", ", \"name\": \"other\"", other_id);
    struct client *other_c;
    assert_int_equal(client_new(daemon_proc.url, &other_c), 0);
    assert_int_equal(client_set_token(other_c, other), 0);
    free(other);

    struct client_response r;
    assert_int_equal(request(as[AUTH_ROLE_INVOKER], "POST", "/v1/functions/own/invoke",
                             "{\"name\": \"mine\"}", &r),
                     200);
    char *id = invocation_id(&r);
    client_response_clear(&r);
    char path[128];
    snprintf(path, sizeof(path), "/v1/invocations/%s", id);
    /* The record is written after the reply (a crash-safe write off the loop): wait for it. */
    long s = 404;
    for (int i = 0; i < 500 && s == 404; i++) {
        s = request(as[AUTH_ROLE_INVOKER], "GET", path, NULL, NULL);
        if (s == 404)
            usleep(20000);
    }
    assert_int_equal(s, 200);
    assert_int_equal(request(other_c, "GET", path, NULL, NULL), 404);
    assert_int_equal(request(as[AUTH_ROLE_DEVELOPER], "GET", path, NULL, NULL), 200);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "GET", path, NULL, NULL), 200);
    free(id);
    client_free(other_c);
}

/* A function that reports what it can read, list and connect to (python3). */
static void push_probe(const char *name, const char *overrides)
{
    char dir[600], path[700];
    snprintf(dir, sizeof(dir), "%s/src-%s", harness_fixtures(&daemon_proc), name);
    assert_int_equal(mkdir_p(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/function.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"name\": \"%s\", \"runtime\": \"python3\", \"handler\": \"app.handler\"}\n",
            name);
    fclose(f);
    snprintf(path, sizeof(path), "%s/app.py", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("import errno, os, socket\n"
          "def err(e):\n"
          "    return 'error:' + errno.errorcode.get(e.errno, str(e.errno))\n"
          "def handler(event, context):\n"
          "    out = {}\n"
          "    for p in event.get('read', []):\n"
          "        try:\n"
          "            with open(p, 'rb') as f:\n"
          "                out[p] = 'read:' + f.read().decode('utf-8', 'replace')\n"
          "            st = os.stat(p)\n"
          "            out['mode:' + p] = '%o %d' % (st.st_mode & 0o7777, st.st_uid)\n"
          "        except OSError as e:\n"
          "            out[p] = err(e)\n"
          "    for p in event.get('list', []):\n"
          "        try:\n"
          "            out['ls:' + p] = ' '.join(sorted(os.listdir(p)))\n"
          "        except OSError as e:\n"
          "            out['ls:' + p] = err(e)\n"
          "    for p in event.get('write', []):\n"
          "        try:\n"
          "            with open(p, 'w') as f:\n"
          "                f.write('x')\n"
          "            out['write:' + p] = 'written'\n"
          "        except OSError as e:\n"
          "            out['write:' + p] = err(e)\n"
          "    for hp in event.get('connect', []):\n"
          "        host, port = hp.rsplit(':', 1)\n"
          "        s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)\n"
          "        s.settimeout(3)\n"
          "        try:\n"
          "            s.connect((host.strip('[]'), int(port)))\n"
          "            out[hp] = 'connected'\n"
          "        except socket.timeout:\n"
          "            out[hp] = 'error:timeout'\n"
          "        except OSError as e:\n"
          "            out[hp] = err(e)\n"
          "        finally:\n"
          "            s.close()\n"
          "    return out\n",
          f);
    fclose(f);
    harness_push(&daemon_proc, dir, name, overrides);
}

/* Invokes a probe as the admin; the result as JSON. */
static cJSON *probe(const char *name, const char *event)
{
    char path[128];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", name);
    long s = request(as[AUTH_ROLE_ADMIN], "POST", path, event, &r);
    if (s != 200)
        fprintf(stderr, "probe %s: %ld %s\n", name, s, r.body);
    assert_int_equal(s, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    client_response_clear(&r);
    return j;
}

static const char *result(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(j, key);
    if (!cJSON_IsString(v))
        fail_msg("no '%s' in the probe's result", key);
    return v->valuestring;
}

static int set_secret_cli(const char *fn, const char *name, const char *value)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "printf %%s '%s' | '%s' --server %s secret set %s %s >/dev/null",
             value, harness_cli(), daemon_proc.url, fn, name);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static void test_secrets_only_for_their_function(void **state)
{
    static const char value_a[] = "s3cr3t-of-alpha-7f1c";
    static const char value_b[] = "s3cr3t-of-bravo-9e2d";
    static const char unlisted[] = "s3cr3t-unlisted-4b8a";
    assert_int_equal(set_secret_cli("alpha", "API_KEY", value_a), 0);
    assert_int_equal(set_secret_cli("alpha", "NOT_LISTED", unlisted), 0);
    assert_int_equal(set_secret_cli("bravo", "API_KEY", value_b), 0);
    /* alpha lists API_KEY and MISSING (never set), not NOT_LISTED. */
    push_probe("alpha", "{\"secrets\": [\"API_KEY\", \"MISSING\"]}");
    push_probe("bravo", "{\"secrets\": [\"API_KEY\"]}");

    cJSON *a = probe("alpha", "{\"read\": [\"/run/secrets/API_KEY\", \"/run/secrets/MISSING\","
                              " \"/run/secrets/NOT_LISTED\"], \"list\": [\"/run/secrets\"],"
                              " \"write\": [\"/run/secrets/API_KEY\", \"/run/secrets/NEW\"]}");
    char want[128];
    snprintf(want, sizeof(want), "read:%s", value_a);
    assert_string_equal(result(a, "/run/secrets/API_KEY"), want);
    assert_string_equal(result(a, "/run/secrets/MISSING"), "error:ENOENT");
    assert_string_equal(result(a, "/run/secrets/NOT_LISTED"), "error:ENOENT");
    assert_string_equal(result(a, "ls:/run/secrets"), "API_KEY");
    /* Read-only to the function, 0400 and its own uid's. */
    assert_true(startswith(result(a, "write:/run/secrets/API_KEY"), "error:"));
    assert_true(startswith(result(a, "write:/run/secrets/NEW"), "error:"));
    assert_string_equal(result(a, "mode:/run/secrets/API_KEY"), "400 65534");
    cJSON_Delete(a);
    cJSON *b = probe("bravo", "{\"read\": [\"/run/secrets/API_KEY\"]}");
    snprintf(want, sizeof(want), "read:%s", value_b);
    assert_string_equal(result(b, "/run/secrets/API_KEY"), want);
    cJSON_Delete(b);

    /* On the host: 0600 files in 0700 directories. */
    char path[600];
    struct stat st;
    snprintf(path, sizeof(path), "%s/secrets/alpha/API_KEY", daemon_proc.state_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/secrets/alpha", daemon_proc.state_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* The value never comes back: listings, the function, metrics, audit, logs, the store. */
    const char *paths[] = {"/v1/functions/alpha/secrets", "/v1/functions/alpha", "/metrics",
                           "/v1/audit", "/v1/functions/alpha/logs"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        struct client_response r;
        assert_int_equal(request(as[AUTH_ROLE_ADMIN], "GET", paths[i], NULL, &r), 200);
        assert_null(strstr(r.body, value_a));
        assert_null(strstr(r.body, unlisted));
        if (i == 0)
            assert_non_null(strstr(r.body, "\"API_KEY\""));
        client_response_clear(&r);
    }
    char *out = NULL, *err = NULL;
    char *ls[] = {
        (char *)harness_cli(), "--server", daemon_proc.url, "secret", "ls", "alpha", NULL};
    assert_int_equal(harness_run(ls, &out, &err), 0);
    assert_non_null(strstr(out, "NOT_LISTED"));
    assert_null(strstr(out, value_a));
    free(out);
    free(err);
    char *ls_json[] = {(char *)harness_cli(),
                       "--server",
                       daemon_proc.url,
                       "secret",
                       "ls",
                       "alpha",
                       "--json",
                       NULL};
    assert_int_equal(harness_run(ls_json, &out, &err), 0);
    assert_non_null(strstr(out, "\"name\":\"NOT_LISTED\""));
    free(out);
    free(err);
    char *bad_name[] = {
        (char *)harness_cli(), "--server", daemon_proc.url, "secret", "set", "alpha", "../x", NULL};
    assert_int_equal(harness_run(bad_name, &out, &err), 1);
    assert_non_null(strstr(err, "not a secret name"));
    free(out);
    free(err);
    assert_false(harness_file_contains(daemon_proc.log_path, value_a));
    assert_false(harness_file_contains(daemon_proc.log_path, unlisted));
    /* The store's files hold no secret value. On PostgreSQL there are none under the state
     * dir (the server's files are its own): that check is SQLite's. */
    if (harness_on_postgresql())
        fprintf(stderr, "# the store's files unchecked for the secret: the store is PostgreSQL\n");
    else {
        char db[600];
        snprintf(db, sizeof(db), "%s/ignis.db", daemon_proc.state_dir);
        assert_false(harness_file_contains(db, value_a));
        snprintf(db, sizeof(db), "%s/ignis.db-wal", daemon_proc.state_dir);
        assert_false(harness_file_contains(db, value_a));
    }

    /* Removing: gone from the listing; a second removal is 404; bad names are 400. */
    char *rm[] = {(char *)harness_cli(), "--server", daemon_proc.url, "secret", "rm", "alpha",
                  "NOT_LISTED",          NULL};
    assert_int_equal(harness_run(rm, &out, &err), 0);
    free(out);
    free(err);
    assert_int_equal(harness_run(rm, &out, &err), 1);
    assert_non_null(strstr(err, "HTTP 404"));
    free(out);
    free(err);
    assert_int_equal(
        request(as[AUTH_ROLE_ADMIN], "PUT", "/v1/functions/alpha/secrets/.hidden", "v", NULL), 400);
    assert_int_equal(
        request(as[AUTH_ROLE_ADMIN], "PUT", "/v1/functions/Alpha/secrets/K", "v", NULL), 400);
    assert_int_equal(
        request(as[AUTH_ROLE_ADMIN], "PUT", "/v1/functions/alpha/secrets/K", NULL, NULL), 400);
    /* At most SECRETS_MAX_PER_FUNCTION per function; replacing one is still fine. */
    char p2[128];
    for (int k = 0; k < SECRETS_MAX_PER_FUNCTION; k++) {
        snprintf(p2, sizeof(p2), "/v1/functions/crowded/secrets/S%d", k);
        assert_int_equal(request(as[AUTH_ROLE_DEVELOPER], "PUT", p2, "v", NULL), 201);
    }
    struct client_response cr;
    assert_int_equal(
        request(as[AUTH_ROLE_DEVELOPER], "PUT", "/v1/functions/crowded/secrets/MORE", "v", &cr),
        409);
    assert_non_null(strstr(cr.body, "too_many_secrets"));
    client_response_clear(&cr);
    assert_int_equal(
        request(as[AUTH_ROLE_DEVELOPER], "PUT", "/v1/functions/crowded/secrets/S0", "w", NULL),
        200);
    /* Over 64 KiB: 413 before the body is read. */
    size_t n = 64 * 1024 + 1;
    char *big = malloc(n + 1);
    memset(big, 'v', n);
    big[n] = '\0';
    assert_int_equal(
        request(as[AUTH_ROLE_ADMIN], "PUT", "/v1/functions/alpha/secrets/K", big, NULL), 413);
    free(big);
}

/* A function cannot reach the API (nor anything on the host: its network namespace has only its
 * own loopback), nor read another function's bundle, logs, secrets or the store. */
static void test_function_cannot_reach_api_or_other_functions(void **state)
{
    /* A host listener on every address, so a refusal means "no route", not "nobody there". */
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int zero = 0;
    setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = in6addr_any};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    unsigned any_port = ntohs(sa.sin6_port);

    cJSON *ev = cJSON_CreateObject(), *conn = cJSON_AddArrayToObject(ev, "connect");
    char hp[128], api[64];
    snprintf(api, sizeof(api), "127.0.0.1:%u", daemon_proc.port); /* lo is among the addresses */
    struct ifaddrs *ifs = NULL, *i;
    assert_int_equal(getifaddrs(&ifs), 0);
    size_t naddrs = 0;
    for (i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr ||
            (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
            continue;
        char host[INET6_ADDRSTRLEN];
        const void *a = i->ifa_addr->sa_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
        inet_ntop(i->ifa_addr->sa_family, a, host, sizeof(host));
        if (i->ifa_addr->sa_family == AF_INET6 && startswith(host, "fe80"))
            continue; /* link-local needs a scope id */
        /* The host listener, and the API's port, on each of the host's addresses. */
        const unsigned ports[] = {any_port, daemon_proc.port};
        for (size_t k = 0; k < ARRAY_SIZE(ports); k++) {
            snprintf(hp, sizeof(hp), i->ifa_addr->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
                     ports[k]);
            cJSON_AddItemToArray(conn, cJSON_CreateString(hp));
        }
        naddrs++;
    }
    freeifaddrs(ifs);
    assert_true(naddrs >= 1);

    /* Another function's files, by their host paths and by guesses inside. */
    harness_push(&daemon_proc, "hello-exec", "victim", NULL);
    assert_int_equal(set_secret_cli("victim", "TOKEN", "victim-secret-31ab"), 0);
    cJSON *fn = harness_function(&daemon_proc, "victim");
    char bundle_file[700], paths[6][700];
    snprintf(bundle_file, sizeof(bundle_file), "%s/bundles/%s/function.json", daemon_proc.state_dir,
             cJSON_GetObjectItem(fn, "digest")->valuestring);
    cJSON_Delete(fn);
    struct stat st;
    assert_int_equal(stat(bundle_file, &st), 0); /* the path is right on the host */
    snprintf(paths[0], sizeof(paths[0]), "%s", bundle_file);
    snprintf(paths[1], sizeof(paths[1]), "%s/secrets/victim/TOKEN", daemon_proc.state_dir);
    snprintf(paths[2], sizeof(paths[2]), "%s/ignis.db", daemon_proc.state_dir);
    snprintf(paths[3], sizeof(paths[3]), "%s/admin.token", daemon_proc.state_dir);
    snprintf(paths[4], sizeof(paths[4]), "/run/secrets/TOKEN");
    snprintf(paths[5], sizeof(paths[5]), "/var/task/hello.sh");
    cJSON *rd = cJSON_AddArrayToObject(ev, "read");
    for (size_t k = 0; k < ARRAY_SIZE(paths); k++)
        cJSON_AddItemToArray(rd, cJSON_CreateString(paths[k]));
    cJSON *ls = cJSON_AddArrayToObject(ev, "list");
    char logs[600];
    snprintf(logs, sizeof(logs), "%s/logs", daemon_proc.state_dir);
    cJSON_AddItemToArray(ls, cJSON_CreateString(logs));
    cJSON_AddItemToArray(ls, cJSON_CreateString(daemon_proc.state_dir));
    char *event = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);

    push_probe("intruder", NULL);
    cJSON *r = probe("intruder", event);
    free(event);
    size_t connects = 0;
    for (const cJSON *e = r->child; e; e = e->next) {
        const char *v = e->valuestring;
        if (!cJSON_IsString(e))
            continue;
        if (strchr(e->string, ':') && !startswith(e->string, "ls:") &&
            !startswith(e->string, "mode:") && e->string[0] != '/') {
            /* A connection: refused inside its own loopback, or no route at all. */
            if (!startswith(v, "error:"))
                fail_msg("the function reached %s: %s", e->string, v);
            connects++;
        } else if (startswith(e->string, "ls:") || e->string[0] == '/') {
            if (!startswith(v, "error:ENOENT"))
                fail_msg("the function saw %s: %s", e->string, v);
        }
    }
    assert_int_equal(connects, 2 * naddrs);
    assert_true(startswith(result(r, api), "error:"));
    cJSON_Delete(r);
    close(lfd);
}

/* max_concurrency is a hard cap: with one invocation running, a second sync one is 429 at once
 * (Retry-After), while an async one is queued (202) and runs later. */
struct bg_invoke {
    long status;
};

static void *bg_sleep(void *arg)
{
    struct bg_invoke *b = arg;
    struct client *c;
    client_new(daemon_proc.url, &c);
    client_set_token(c, daemon_proc.token);
    b->status = request(c, "POST", "/v1/functions/capped/invoke", "{\"ms\": 3000}", NULL);
    client_free(c);
    return NULL;
}

static void test_max_concurrency_is_a_hard_cap(void **state)
{
    harness_push(&daemon_proc, "sleep", "capped", "{\"max_concurrency\": 1, \"max_scale\": 4}");
    struct bg_invoke b = {};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_sleep, &b), 0);
    /* Wait until it runs (or waits for its container): the cap counts both. */
    double held = 0;
    for (int i = 0; i < 1000 && held < 1; i++) {
        held = harness_live_number(&daemon_proc, "capped", "in_flight") +
               harness_live_number(&daemon_proc, "capped", "queue_depth");
        if (held < 1)
            usleep(10000);
    }
    assert_true(held >= 1);
    struct client_response r;
    assert_int_equal(
        request(as[AUTH_ROLE_DEVELOPER], "POST", "/v1/functions/capped/invoke", "{\"ms\": 1}", &r),
        429);
    char h[32];
    assert_non_null(client_response_header(&r, "Retry-After", h, sizeof(h)));
    assert_non_null(strstr(r.body, "max_concurrency"));
    client_response_clear(&r);
    const char *const async[] = {"Ignis-Invocation-Type: async", NULL};
    struct ig_error err = {};
    assert_int_equal(client_request(as[AUTH_ROLE_DEVELOPER], "POST", "/v1/functions/capped/invoke",
                                    async, "{\"ms\": 1}", 9, &r, &err),
                     0);
    assert_int_equal(r.status, 202);
    client_response_clear(&r);
    pthread_join(t, NULL);
    assert_int_equal(b.status, 200);
    assert_true(harness_live_number(&daemon_proc, "capped", "throttles") >= 1);
}

/* Changes are in the audit log with who, what, which function, when, from where. */
static void test_audit_log(void **state)
{
    /* A denied change is recorded too; one without a valid token is not (anyone can send those:
     * they are counted in ignis_auth_refused_total, and would let anyone grow the log). */
    assert_int_equal(request(anonymous, "DELETE", "/v1/functions/own", NULL, NULL), 401);
    assert_int_equal(request(as[AUTH_ROLE_INVOKER], "DELETE", "/v1/functions/own", NULL, NULL),
                     403);
    assert_int_equal(request(as[AUTH_ROLE_DEVELOPER], "DELETE", "/v1/functions/own", NULL, NULL),
                     200);
    /* Rows are written off the loop: wait for the last one. */
    cJSON *j = NULL;
    for (int i = 0; i < 500; i++) {
        struct client_response r;
        assert_int_equal(request(as[AUTH_ROLE_ADMIN], "GET", "/v1/audit?function=own", NULL, &r),
                         200);
        cJSON_Delete(j);
        j = cJSON_Parse(r.body);
        client_response_clear(&r);
        if (cJSON_GetArraySize(cJSON_GetObjectItem(j, "entries")) >= 3)
            break;
        usleep(20000);
    }
    const cJSON *e;
    bool push = false, denied = false, deleted = false;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "entries"))
    {
        const char *action = cJSON_GetObjectItem(e, "action")->valuestring;
        int status = cJSON_GetObjectItem(e, "status")->valueint;
        const cJSON *role = cJSON_GetObjectItem(e, "role");
        assert_string_equal(cJSON_GetObjectItem(e, "function")->valuestring, "own");
        assert_string_equal(cJSON_GetObjectItem(e, "peer")->valuestring, "127.0.0.1");
        assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "time")));
        assert_int_not_equal(status, 401);
        if (streq(action, "PUT /v1/functions/{}") && status == 201)
            push = streq(role->valuestring, "admin");
        if (streq(action, "DELETE /v1/functions/{}") && status == 403)
            denied = streq(role->valuestring, "invoker");
        if (streq(action, "DELETE /v1/functions/{}") && status == 200)
            deleted = streq(role->valuestring, "developer") &&
                      streq(cJSON_GetObjectItem(e, "token_id")->valuestring,
                            token_ids[AUTH_ROLE_DEVELOPER]);
    }
    cJSON_Delete(j);
    assert_true(push);
    assert_true(denied);
    assert_true(deleted);

    /* Token and secret changes, through the CLI's view. */
    char *out = NULL, *err = NULL;
    char *audit[] = {
        (char *)harness_cli(), "--server", daemon_proc.url, "audit", "--limit", "1000", NULL};
    assert_int_equal(harness_run(audit, &out, &err), 0);
    assert_non_null(strstr(out, "POST /v1/tokens"));
    assert_non_null(strstr(out, "secret=API_KEY"));
    assert_non_null(strstr(out, "role=operator"));
    free(out);
    free(err);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "GET", "/v1/audit?limit=0", NULL, NULL), 400);
    assert_int_equal(request(as[AUTH_ROLE_ADMIN], "GET", "/v1/audit?since=yesterday", NULL, NULL),
                     400);
}

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    /* Only so that a broken server cannot hang the test: nothing is timed. */
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* One GET /healthz on fd; what came back (NUL-terminated), 0 at EOF, -1 on an error. */
static ssize_t raw_get(int fd, char *buf, size_t size)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

/* A second daemon with a small rate, few connections per address, and /metrics open to
 * scrapers. */
static void test_rate_limit_and_public_metrics(void **state)
{
    struct ignisd_proc p;
    const char *args[] = {"--rate-limit",
                          "1",
                          "--rate-burst",
                          "3",
                          "--metrics-public",
                          "true",
                          "--max-connections-per-ip",
                          "2",
                          NULL};
    assert_int_equal(harness_start(&p, args), 0);
    /* The harness gave it this process's token. */
    assert_string_equal(p.token, daemon_proc.token);
    long statuses[24];
    struct client_response r;
    for (size_t i = 0; i < ARRAY_SIZE(statuses); i++) {
        assert_int_equal(harness_request(&p, "GET", "/v1/version", NULL, NULL, 0, &r), 0);
        statuses[i] = r.status;
        if (r.status == 429) {
            char h[32];
            assert_non_null(client_response_header(&r, "Retry-After", h, sizeof(h)));
            assert_true(atoi(h) >= 1);
        }
        client_response_clear(&r);
    }
    /* The burst goes through; the rest, faster than one a second, do not all. */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(statuses[i], 200);
    size_t limited = 0;
    for (size_t i = 3; i < ARRAY_SIZE(statuses); i++)
        limited += statuses[i] == 429;
    assert_true(limited >= 1);

    struct client *anon;
    assert_int_equal(client_new(p.url, &anon), 0);
    client_set_token(anon, NULL);
    assert_int_equal(request(anon, "GET", "/metrics", NULL, NULL), 200);
    assert_int_equal(request(anon, "GET", "/v1/usage", NULL, NULL), 401);
    client_free(anon);
    assert_int_equal(request(anonymous, "GET", "/metrics", NULL, NULL), 401);

    /* Two connections from one address at most: a third raw one is closed unanswered, while the
     * first (at most the second, counting the harness's client) is served. */
    int fds[3];
    char buf[256];
    for (int k = 0; k < 3; k++)
        fds[k] = raw_connect(p.port);
    ssize_t n = raw_get(fds[0], buf, sizeof(buf));
    assert_true(n > 0 && startswith(buf, "HTTP/1.1 200"));
    assert_true(raw_get(fds[2], buf, sizeof(buf)) <= 0);
    for (int k = 0; k < 3; k++)
        close(fds[k]);
    assert_int_equal(harness_finish(&p), 0);
}

/* The total connection limit (max_connections) holds whatever the addresses: with 3 open, a
 * fourth is not taken up (it waits in the kernel's backlog) until one of the three closes. */
static void test_total_connection_limit(void **state)
{
    struct ignisd_proc p;
    const char *args[] = {"--max-connections", "3", "--max-connections-per-ip", "0", NULL};
    assert_int_equal(harness_start(&p, args), 0);
    client_free(p.client); /* its keep-alive connection would count */
    p.client = NULL;
    int fds[4];
    char buf[256];
    for (int k = 0; k < 4; k++)
        fds[k] = raw_connect(p.port);
    ssize_t n = raw_get(fds[0], buf, sizeof(buf));
    assert_true(n > 0 && startswith(buf, "HTTP/1.1 200"));
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(fds[3], req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    /* No answer while three are open (a second is only how long we look, not a bound)... */
    struct pollfd pfd = {.fd = fds[3], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 1000), 0);
    /* ...and the answer once one closes. */
    close(fds[0]);
    n = read(fds[3], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_true(startswith(buf, "HTTP/1.1 200"));
    for (int k = 1; k < 4; k++)
        close(fds[k]);
    assert_int_equal(harness_wait_healthy(&p), 0);
    assert_int_equal(harness_finish(&p), 0);
}

/* Header sizes are limited per route: 431 past the limit. */
static void test_header_limit(void **state)
{
    size_t n = 10 * 1024;
    char *h = malloc(n + 16);
    memcpy(h, "X-Filler: ", 10);
    memset(h + 10, 'a', n);
    h[10 + n] = '\0';
    const char *const headers[] = {h, NULL};
    struct client_response r;
    struct ig_error err = {};
    assert_int_equal(
        client_request(as[AUTH_ROLE_ADMIN], "GET", "/v1/version", headers, NULL, 0, &r, &err), 0);
    assert_int_equal(r.status, 431);
    client_response_clear(&r);
    /* The invoke route takes more (32 KiB): its handler answers (404: no such function). */
    assert_int_equal(client_request(as[AUTH_ROLE_ADMIN], "POST", "/v1/functions/none/invoke",
                                    headers, "{}", 2, &r, &err),
                     0);
    assert_int_equal(r.status, 404);
    client_response_clear(&r);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_role_against_every_route),
        cmocka_unit_test(test_roles_mean_what_the_issue_says),
        cmocka_unit_test(test_bad_expired_and_revoked_tokens),
        cmocka_unit_test(test_last_admin_cannot_be_revoked),
        cmocka_unit_test(test_cli_token_verbs_and_search_order),
        cmocka_unit_test(test_invoker_sees_only_its_own),
        cmocka_unit_test(test_secrets_only_for_their_function),
        cmocka_unit_test(test_function_cannot_reach_api_or_other_functions),
        cmocka_unit_test(test_max_concurrency_is_a_hard_cap),
        cmocka_unit_test(test_audit_log),
        cmocka_unit_test(test_rate_limit_and_public_metrics),
        cmocka_unit_test(test_total_connection_limit),
        cmocka_unit_test(test_header_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
