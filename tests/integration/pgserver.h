/* A private PostgreSQL 15 for the tests (issue #16): a cluster initdb'd into a fresh temp dir as
 * the postgres user (the server refuses to run as root), served on a free loopback port and on a
 * Unix socket in that same dir, with an empty template database from which each test makes a
 * database of its own. Nothing of the machine's own clusters is used or touched. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

struct pgserver {
    pid_t pid;          /* the postmaster (a child of the test), 0 while stopped */
    uint16_t port;      /* kept across pgserver_stop_immediate and pgserver_start */
    char dir[64];       /* the data dir, also the socket dir (-k): owned by postgres */
    char log_path[80];  /* the server's stdout and stderr, beside dir */
    char bindir[256];   /* where initdb, postgres and pg_isready are */
    unsigned databases; /* made by pgserver_new_database */
    /* pgserver_new_in's: the network namespace (its name under /run/netns) the server runs in,
     * and the address it listens on there; empty: this process's, 127.0.0.1. */
    char netns[32];
    char listen[48];
};

/* Makes and starts a server and its template database. Skips the test (harness_skip: exit 77, or
 * a failure under IGNIS_MUST_WORK=1) without root or without PostgreSQL 15's binaries. Returns 0
 * and the server in *ret_srv, or -1 after saying why (its log included). */
int pgserver_new(struct pgserver **ret_srv);

/* pgserver_new with the server in the network namespace NETNS (made by `ip netns add NETNS`),
 * listening there on ADDR instead of 127.0.0.1 (its socket dir, which namespaces do not hide,
 * serves the test's own connections as before): a test can then cut the network between the
 * server and its clients without the server knowing. */
int pgserver_new_in(const char *netns, const char *addr, struct pgserver **ret_srv);

/* CREATE DATABASE NAME from the empty template. Returns 0 and, in *ret_conninfo (free it), the
 * libpq connection string for it ("host=DIR port=PORT dbname=NAME user=postgres"); -1 after
 * saying why (an existing NAME, a stopped server). */
int pgserver_database(struct pgserver *srv, const char *name, char **ret_conninfo);

/* pgserver_database with a name never used before on srv ("t_1", "t_2", ...): a test's fresh
 * database. */
int pgserver_new_database(struct pgserver *srv, char **ret_conninfo);

/* Stops the server as `pg_ctl stop -m immediate` does (SIGQUIT: no checkpoint, crash recovery at
 * the next start), what a crash of the database looks like to its clients. 0, or -1 if it did
 * not exit within 30 s (it is then killed). */
int pgserver_stop_immediate(struct pgserver *srv);

/* Starts the stopped server again, on the same dir and port, and waits until it accepts
 * connections. 0, or -1 after printing its log. */
int pgserver_start(struct pgserver *srv);

/* Sends sig to the postmaster and every process it started (its backends, its workers):
 * SIGSTOP makes a server that answers nothing while its sockets stay open (hung), SIGCONT
 * brings it back. The number of processes signalled, or -1. */
int pgserver_signal_all(struct pgserver *srv, int sig);

/* The first integer of sql's first row on the database at conninfo (one connection, made and
 * closed), or -1 after printing why: a test's count of rows. */
long long pgserver_query_int(const char *conninfo, const char *sql);

/* How many (invocation, attempt) pairs the usage ledger of the database at conninfo bills more
 * than once (-1 after printing why it could not tell). */
long long pgserver_double_billed(const char *conninfo);

/* For a test program that needs its own server whatever IGNIS_TEST_STORE says: a cmocka group
 * setup that makes pgserver_shared (root required: harness_require_root) and its teardown. */
extern struct pgserver *pgserver_shared;
int pgserver_group_setup(void **state);
int pgserver_group_teardown(void **state);

/* Stops the server by its pid (SIGCONT first, should a test have stopped it; then SIGINT, a
 * fast shutdown; SIGKILL if it has not exited within 30 s), then removes its dir and log and
 * frees it. Returns 0, or -1 (after printing its log)
 * when it had to be killed or the dir could not be removed. Accepts NULL. */
int pgserver_free(struct pgserver *srv);
