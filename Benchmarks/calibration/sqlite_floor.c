/*
 * What SQLite alone costs for the spool's record path on this machine: the spool's schema (v6),
 * WAL, synchronous=NORMAL, its cache and checkpoint settings, and for each event the same two
 * inserts `Spool.record` makes (events, deliveries), PER events per transaction, with ids from
 * WRITERS separate ranges (as concurrent writers with ids in no particular order give). No Swift,
 * no threads, no waiting: the floor under `usage-billing-bench --spool`'s record rows.
 *
 *   cc -O2 Benchmarks/calibration/sqlite_floor.c -o /tmp/sqlite_floor -lsqlite3
 *   /tmp/sqlite_floor /tmp/floor.db 16 16     # 16 events per transaction, 16 id ranges
 *
 * The file must not exist (it is created, filled with 100,000 events, and left for inspection).
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int check(sqlite3 *db, int code, const char *what) {
    if (code != SQLITE_OK && code != SQLITE_DONE && code != SQLITE_ROW) {
        fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
    return code;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s NEW_FILE EVENTS_PER_TRANSACTION WRITERS\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int per = atoi(argv[2]), writers = atoi(argv[3]);
    if (per < 1 || writers < 1 || writers > 1024) {
        fprintf(stderr, "EVENTS_PER_TRANSACTION must be at least 1 and WRITERS 1 to 1024\n");
        return 2;
    }
    const int total = 100000, perWriter = total / writers;
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "open %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
        return 1;
    }
    check(db, sqlite3_exec(db,
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=4000;"
        "CREATE TABLE events (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload BLOB NOT NULL, recorded_at REAL NOT NULL);"
        "CREATE TABLE deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT, event INTEGER NOT NULL REFERENCES events(key), lane TEXT NOT NULL,"
        " state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,"
        " first_attempt_at REAL, reason_code TEXT, reason_message TEXT, recorded_at REAL NOT NULL, updated_at REAL NOT NULL,"
        " window_record INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX deliveries_queued ON deliveries (lane, seq) WHERE state = 0;", 0, 0, 0), "schema");
    sqlite3_stmt *event, *lane, *begin, *commit;
    check(db, sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO events (id, payload, recorded_at) VALUES (?, ?, ?)", -1, &event, 0), "prepare");
    check(db, sqlite3_prepare_v2(db, "INSERT INTO deliveries (event, lane, state, recorded_at, updated_at, reason_code, reason_message)"
                                     " VALUES (?, ?, 0, ?, ?, NULL, NULL)", -1, &lane, 0), "prepare");
    check(db, sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, 0), "prepare");
    check(db, sqlite3_prepare_v2(db, "COMMIT", -1, &commit, 0), "prepare");
    char payload[120];  /* about the size of a PayloadCodec-encoded event */
    memset(payload, 7, sizeof payload);
    int next[1024] = {0};
    char id[64];
    double started = now();
    int n = 0;
    while (n < total) {
        check(db, sqlite3_step(begin), "begin");
        sqlite3_reset(begin);
        for (int k = 0; k < per && n < total; k++, n++) {
            int w = n % writers;
            int len = snprintf(id, sizeof id, "normal-16-1-0-%d", w * perWriter + next[w]++);
            sqlite3_bind_text(event, 1, id, len, SQLITE_TRANSIENT);
            sqlite3_bind_blob(event, 2, payload, sizeof payload, SQLITE_STATIC);
            sqlite3_bind_double(event, 3, 1.0);
            check(db, sqlite3_step(event), "insert event");
            sqlite3_reset(event);
            sqlite3_bind_int64(lane, 1, sqlite3_last_insert_rowid(db));
            sqlite3_bind_text(lane, 2, "openmeter#0", -1, SQLITE_STATIC);
            sqlite3_bind_double(lane, 3, 1.0);
            sqlite3_bind_double(lane, 4, 1.0);
            check(db, sqlite3_step(lane), "insert lane");
            sqlite3_reset(lane);
        }
        check(db, sqlite3_step(commit), "commit");
        sqlite3_reset(commit);
    }
    double seconds = now() - started;
    printf("%s: %d events, %d per transaction, %d id ranges: %.0f events/s, %.1f us per transaction\n",
           path, total, per, writers, total / seconds, seconds / ((double)total / per) * 1e6);
    sqlite3_close(db);
    return 0;
}
