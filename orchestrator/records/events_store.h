/* The events' tables (store.c, migration "events"): the (source, id) pairs accepted within the
 * de-duplication window, each schedule's last run, and the dead letters. Writes go through the
 * journal, each at the durability the events need (named below); reads run on the loop thread's
 * connection. The functions name what events/ asks for, so a second backend is a new file behind
 * them. */
#pragma once

#include "records/journal.h"
#include "records/store.h"

/* Remembers that (source, id) was accepted at accepted_us. Durable (journal_submit: its batch is
 * fsynced), since a 202 waits for it. Returns journal_submit's result; done runs only on 0. */
int events_store_remember_id(struct journal *j, const char *source, const char *id,
                             int64_t accepted_us, journal_done_fn done, void *userdata);
/* Forgets (source, id), queued after the events_store_remember_id it takes back. Lazy
 * (journal_submit_lazy): a crash that loses it makes a retry a duplicate, as before the change. */
int events_store_forget_id(struct journal *j, const char *source, const char *id,
                           journal_done_fn done, void *userdata);
/* Calls each for the newest `max` pairs accepted at or after since_us, oldest first (the order
 * they were accepted in). Returns 0, or -EIO with err. */
int events_store_load_ids(struct store *s, int64_t since_us, size_t max,
                          void (*each)(void *userdata, const char *source, const char *id,
                                       int64_t accepted_us),
                          void *userdata, struct ig_error *err);

/* Records a function's schedule and its last run (unix seconds: the slot that ran). Lazy. */
int events_store_save_schedule(struct journal *j, const char *function, const char *schedule,
                               int64_t last_run, journal_done_fn done, void *userdata);
/* Forgets a function's schedule (it lost it, or was deleted). Lazy. */
int events_store_delete_schedule(struct journal *j, const char *function, journal_done_fn done,
                                 void *userdata);
/* Calls each for every schedule recorded. Returns 0, or -EIO with err. */
int events_store_load_schedules(struct store *s,
                                void (*each)(void *userdata, const char *function,
                                             const char *schedule, int64_t last_run),
                                void *userdata, struct ig_error *err);

/* A row of event_dead_letters. */
struct events_dead_letter {
    int64_t seq; /* given by the store (ignored when appending) */
    int64_t at_us;
    const char *function, *invocation; /* NULL when there is none */
    const char *type, *source, *event_id;
    const char *reason;
    const char *event; /* the event in the JSON event format */
};

/* Appends a dead letter. Lazy. */
int events_store_append_dead_letter(struct journal *j, const struct events_dead_letter *dl,
                                    journal_done_fn done, void *userdata);
/* Calls each for the newest `limit` dead letters, newest first; the row's strings last until each
 * returns. Returns 0, or -EIO with err (the store's message). */
int events_store_list_dead_letters(struct store *s, size_t limit,
                                   void (*each)(void *userdata,
                                                const struct events_dead_letter *dl),
                                   void *userdata, struct ig_error *err);

/* Deletes the ids accepted before ids_before_us and the dead letters from before
 * dead_letters_before_us. Lazy; a failure is logged, naming the table (retention_done). */
void events_store_purge(struct journal *j, int64_t ids_before_us, int64_t dead_letters_before_us);
