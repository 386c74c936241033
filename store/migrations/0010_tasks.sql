-- Tasks: outbound calls to place at a time, with retries. The call part is
-- the request as the API took it (JSON; store does not interpret it). A
-- task is claimed by moving it from pending to in_progress in one
-- conditional UPDATE, so the scheduler and an API cancel cannot both win.
CREATE TABLE tasks (
    id                 TEXT    PRIMARY KEY NOT NULL,
    status             TEXT    NOT NULL,
    call               TEXT    NOT NULL,
    scheduled_at       INTEGER NOT NULL,
    next_attempt_at    INTEGER,
    max_attempts       INTEGER NOT NULL,
    retry_interval_s   INTEGER NOT NULL,
    retry_on           TEXT    NOT NULL DEFAULT '[]',
    attempts           INTEGER NOT NULL DEFAULT 0,
    call_ids           TEXT    NOT NULL DEFAULT '[]',
    current_call_id    TEXT    NOT NULL DEFAULT '',
    last_hangup_reason TEXT    NOT NULL DEFAULT '',
    last_sip_code      INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT    NOT NULL DEFAULT '',
    tm_create          INTEGER NOT NULL,
    tm_update          INTEGER NOT NULL,
    tm_end             INTEGER
) STRICT;

-- The scheduler's question: which pending task is due next.
CREATE INDEX tasks_due ON tasks (status, next_attempt_at);
-- Lists, newest first.
CREATE INDEX tasks_created ON tasks (tm_create, id);
