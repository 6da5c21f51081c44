#include "pgserver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "harness.h"

/* The database every test's database is copied from: made from template0, so nothing in it. */
#define TEMPLATE_DB "ignis_tmpl"

/* How long the server may take to start (crash recovery included) or to stop: a bound on a
 * loaded 2-core machine, not a measurement. */
#define BOUND_USEC (30 * 1000000ULL)

static void print_log(const struct pgserver *srv)
{
    char *text = NULL;
    if (read_file(srv->log_path, 1 << 20, &text, NULL) == 0) {
        fprintf(stderr, "---- postgres log (%s) ----\n%s---- end of log ----\n", srv->log_path,
                text);
        free(text);
    }
}

/* Whether BINDIR holds PostgreSQL 15's server ("postgres (PostgreSQL) 15.18 (Debian ...)"). */
static bool is_postgresql_15(const char *bindir)
{
    char path[300];
    _cleanup_free_ char *out = NULL;
    snprintf(path, sizeof(path), "%s/postgres", bindir);
    char *argv[] = {path, "--version", NULL};
    return access(path, X_OK) == 0 && harness_run(argv, &out, NULL) == 0 && out &&
           strstr(out, "(PostgreSQL) 15.");
}

/* pg_config's bindir when it is PostgreSQL 15's (another major version's client may own
 * pg_config), else Debian's fixed place; skips the test when neither has a server. */
static void find_bindir(char ret[256])
{
    _cleanup_free_ char *out = NULL;
    char *argv[] = {"/usr/bin/env", "pg_config", "--bindir", NULL};
    if (harness_run(argv, &out, NULL) == 0 && out) {
        out[strcspn(out, "\r\n")] = '\0';
        if (is_postgresql_15(out)) {
            snprintf(ret, 256, "%s", out);
            return;
        }
    }
    if (is_postgresql_15("/usr/lib/postgresql/15/bin")) {
        snprintf(ret, 256, "/usr/lib/postgresql/15/bin");
        return;
    }
    harness_skip("PostgreSQL 15 is not installed (no postgres 15 in pg_config --bindir or "
                 "/usr/lib/postgresql/15/bin; scripts/deps installs postgresql-15)");
}

/* Waits up to `usec` for the child pid to exit; 0 and its wait status, or -ETIMEDOUT. */
static int wait_exit(pid_t pid, uint64_t usec, int *ret_status)
{
    uint64_t deadline = now_usec() + usec;
    int wstatus;
    do {
        pid_t r = waitpid(pid, &wstatus, WNOHANG);
        if (r == pid) {
            *ret_status = wstatus;
            return 0;
        }
        if (r < 0)
            return -errno;
        usleep(10000);
    } while (now_usec() < deadline);
    return -ETIMEDOUT;
}

/* Starts the postmaster as the postgres user, its output appended to the log. It is the test's
 * child, so that its pid is the server's own (runuser would stand between them). */
static int spawn_postgres(struct pgserver *srv)
{
    struct passwd *pw = getpwnam("postgres");
    if (!pw) {
        fprintf(stderr, "pgserver: no postgres user\n");
        return -1;
    }
    char path[300], port[8], listen[80], netns[64];
    snprintf(path, sizeof(path), "%s/postgres", srv->bindir);
    snprintf(port, sizeof(port), "%u", srv->port);
    snprintf(listen, sizeof(listen), "listen_addresses=%s",
             *srv->listen ? srv->listen : "127.0.0.1");
    snprintf(netns, sizeof(netns), "/run/netns/%s", srv->netns);
    /* fsync=off: a test's data need not survive the machine, only the server (a stop -m
     * immediate leaves the WAL in the page cache, where the restart finds it). */
    char *argv[] = {path, "-D", srv->dir, "-k", srv->dir,    "-p",
                    port, "-c", listen,   "-c", "fsync=off", NULL};

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(srv->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(127);
        int ns = *srv->netns ? open(netns, O_RDONLY | O_CLOEXEC) : -1;
        if (*srv->netns && (ns < 0 || setns(ns, CLONE_NEWNET) < 0))
            _exit(127);
        if (chdir(srv->dir) < 0 || setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
            setuid(pw->pw_uid) < 0)
            _exit(127);
        /* After setuid, which clears it: a test that dies (a failed assertion) takes its
         * server with it; SIGQUIT is the postmaster's immediate shutdown, children included. */
        if (prctl(PR_SET_PDEATHSIG, SIGQUIT) < 0 || getppid() == 1)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    srv->pid = pid;
    return 0;
}

/* Waits until pg_isready answers on the socket. 0; -ECHILD when the postmaster exited (it is
 * reaped); -ETIMEDOUT when it never got ready. */
static int wait_ready(struct pgserver *srv)
{
    char path[300], port[8];
    snprintf(path, sizeof(path), "%s/pg_isready", srv->bindir);
    snprintf(port, sizeof(port), "%u", srv->port);
    char *argv[] = {path, "-q", "-h", srv->dir, "-p", port, NULL};
    uint64_t deadline = now_usec() + BOUND_USEC;
    int wstatus;

    do {
        if (waitpid(srv->pid, &wstatus, WNOHANG) == srv->pid) {
            srv->pid = 0;
            return -ECHILD;
        }
        if (harness_run(argv, NULL, NULL) == 0)
            return 0;
        usleep(20000);
    } while (now_usec() < deadline);
    return -ETIMEDOUT;
}

/* Stops the postmaster with SIGNAL, then SIGKILL after the bound. 0 when it exited of the
 * first, -1 when it had to be killed. */
static int stop_with(struct pgserver *srv, int sig)
{
    int wstatus, r = 0;
    if (srv->pid <= 0)
        return 0;
    kill(srv->pid, sig);
    if (wait_exit(srv->pid, BOUND_USEC, &wstatus) < 0) {
        fprintf(stderr, "pgserver: postgres %d did not exit within 30 s of signal %d\n",
                (int)srv->pid, sig);
        kill(srv->pid, SIGKILL);
        waitpid(srv->pid, NULL, 0);
        print_log(srv);
        r = -1;
    }
    srv->pid = 0;
    return r;
}

/* Runs one statement on the postgres database. 0, or -1 after saying why. */
static int exec_admin(struct pgserver *srv, const char *sql)
{
    char conninfo[160];
    snprintf(conninfo, sizeof(conninfo), "host=%s port=%u dbname=postgres user=postgres", srv->dir,
             srv->port);
    PGconn *c = PQconnectdb(conninfo);
    PGresult *res = NULL;
    int r = -1;
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "pgserver: %s: %s", conninfo, PQerrorMessage(c));
    else if (PQresultStatus(res = PQexec(c, sql)) != PGRES_COMMAND_OK)
        fprintf(stderr, "pgserver: %s: %s", sql, PQerrorMessage(c));
    else
        r = 0;
    PQclear(res);
    PQfinish(c);
    return r;
}

static int make_cluster(struct pgserver *srv)
{
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
        harness_skip("no postgres user (the postgresql-15 package makes it)");
    snprintf(srv->dir, sizeof(srv->dir), "/tmp/ignis-pg.XXXXXX");
    if (!mkdtemp(srv->dir)) {
        perror("pgserver: mkdtemp");
        return -1;
    }
    snprintf(srv->log_path, sizeof(srv->log_path), "%s.log", srv->dir);
    /* The server refuses to run as root and wants its data dir to be its own. */
    if (chown(srv->dir, pw->pw_uid, pw->pw_gid) < 0) {
        perror("pgserver: chown");
        return -1;
    }

    char initdb[300];
    _cleanup_free_ char *out = NULL, *err = NULL;
    snprintf(initdb, sizeof(initdb), "%s/initdb", srv->bindir);
    /* UTF-8 and the C locale whatever the environment says: the store keeps UTF-8 text, and
     * without a locale in the environment the cluster would be SQL_ASCII. */
    char *argv[] = {
        "/usr/sbin/runuser", "-u", "postgres", "--", initdb, "-D",         srv->dir, "-A", "trust",
        "--no-sync",         "-U", "postgres", "-E", "UTF8", "--locale=C", NULL};
    if (harness_run(argv, &out, &err) != 0) {
        fprintf(stderr, "pgserver: initdb failed:\n%s%s", out ? out : "", err ? err : "");
        return -1;
    }
    return 0;
}

/* initdb -A trust trusts the loopback addresses only: a server listening elsewhere trusts the
 * subnets it is on too (the test's link). */
static int trust_samenet(struct pgserver *srv)
{
    char path[96];
    snprintf(path, sizeof(path), "%s/pg_hba.conf", srv->dir);
    FILE *f = fopen(path, "a");
    int r = f && fputs("host all all samenet trust\n", f) >= 0 ? 0 : -1;
    if ((f && fclose(f) != 0) || r < 0) {
        perror("pgserver: pg_hba.conf");
        return -1;
    }
    return 0;
}

int pgserver_new(struct pgserver **ret_srv)
{
    return pgserver_new_in(NULL, NULL, ret_srv);
}

int pgserver_new_in(const char *netns, const char *addr, struct pgserver **ret_srv)
{
    harness_require_root();
    struct pgserver *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -1;
    snprintf(srv->netns, sizeof(srv->netns), "%s", netns ? netns : "");
    snprintf(srv->listen, sizeof(srv->listen), "%s", addr ? addr : "");
    find_bindir(srv->bindir);
    if (make_cluster(srv) < 0 || (addr && trust_samenet(srv) < 0))
        goto fail;

    /* The free port can be taken between harness_free_port and the server's bind: then the
     * postmaster exits, and another port is tried. */
    int r = -ECHILD;
    for (int attempt = 0; attempt < 5 && r == -ECHILD; attempt++) {
        srv->port = harness_free_port();
        if (spawn_postgres(srv) < 0)
            goto fail;
        r = wait_ready(srv);
    }
    if (r < 0) {
        fprintf(stderr, "pgserver: postgres did not start: %s\n", strerror(-r));
        print_log(srv);
        goto fail;
    }
    if (exec_admin(srv, "CREATE DATABASE " TEMPLATE_DB " TEMPLATE template0 IS_TEMPLATE true") < 0)
        goto fail;
    *ret_srv = srv;
    return 0;
fail:
    pgserver_free(srv);
    return -1;
}

int pgserver_database(struct pgserver *srv, const char *name, char **ret_conninfo)
{
    char conninfo[160], sql[200];
    /* A plain lowercase name: no quoting needed here, nor in the conninfo handed out. */
    if (!*name || strlen(name) > 63 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name)) {
        fprintf(stderr, "pgserver: database name '%s' is not [a-z0-9_]{1,63}\n", name);
        return -1;
    }
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE " TEMPLATE_DB, name);
    if (exec_admin(srv, sql) < 0)
        return -1;
    snprintf(conninfo, sizeof(conninfo), "host=%s port=%u dbname=%s user=postgres", srv->dir,
             srv->port, name);
    char *copy = strdup(conninfo);
    if (!copy)
        return -1;
    *ret_conninfo = copy;
    return 0;
}

int pgserver_new_database(struct pgserver *srv, char **ret_conninfo)
{
    char name[32];
    snprintf(name, sizeof(name), "t_%u", ++srv->databases);
    return pgserver_database(srv, name, ret_conninfo);
}

int pgserver_stop_immediate(struct pgserver *srv)
{
    return stop_with(srv, SIGQUIT);
}

int pgserver_start(struct pgserver *srv)
{
    if (srv->pid > 0) {
        fprintf(stderr, "pgserver_start: postgres %d is still running\n", (int)srv->pid);
        return -1;
    }
    /* The same port: connection strings already handed out must reach it again. */
    int r = spawn_postgres(srv) < 0 ? -ECHILD : wait_ready(srv);
    if (r < 0) {
        fprintf(stderr, "pgserver: postgres did not start again: %s\n", strerror(-r));
        print_log(srv);
        stop_with(srv, SIGKILL);
        return -1;
    }
    return 0;
}

int pgserver_free(struct pgserver *srv)
{
    if (!srv)
        return 0;
    /* A test that failed with the server stopped (pgserver_signal_all) leaves it so. */
    pgserver_signal_all(srv, SIGCONT);
    int r = stop_with(srv, SIGINT);
    if (srv->dir[0] && rm_rf(srv->dir) < 0) {
        fprintf(stderr, "pgserver: could not remove %s\n", srv->dir);
        r = -1;
    }
    if (srv->log_path[0])
        unlink(srv->log_path);
    free(srv);
    return r;
}

int pgserver_signal_all(struct pgserver *srv, int sig)
{
    if (srv->pid <= 0 || kill(srv->pid, sig) < 0)
        return -1;
    int n = 1;
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));) {
        char path[300], *stat = NULL;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || read_file(path, 4096, &stat, NULL) < 0)
            continue;
        /* The parent's pid is the second field after the command's closing parenthesis. */
        const char *tail = strrchr(stat, ')');
        int ppid = 0;
        if (tail && sscanf(tail + 1, " %*c %d", &ppid) == 1 && ppid == srv->pid &&
            kill(atoi(e->d_name), sig) == 0)
            n++;
        free(stat);
    }
    closedir(d);
    return n;
}

long long pgserver_query_int(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *res = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    long long n = -1;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        fprintf(stderr, "pgserver_query_int: %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    return n;
}

struct pgserver *pgserver_shared;

long long pgserver_double_billed(const char *conninfo)
{
    return pgserver_query_int(conninfo, "SELECT count(*) FROM (SELECT id, attempt FROM usage "
                                        "GROUP BY id, attempt HAVING count(*) > 1) x");
}

int pgserver_group_setup(void **state)
{
    harness_require_root();
    return pgserver_new(&pgserver_shared);
}

int pgserver_group_teardown(void **state)
{
    return pgserver_free(TAKE_PTR(pgserver_shared));
}
