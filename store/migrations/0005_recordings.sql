-- Recordings: one row per recording of a call, written as it goes.
CREATE TABLE recordings (
    id          TEXT    PRIMARY KEY NOT NULL,
    call_id     TEXT    NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    path        TEXT    NOT NULL,
    format      TEXT    NOT NULL,          -- e.g. wav/pcm16/8000/stereo
    channels    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL,          -- recording, completed, failed
    error       TEXT    NOT NULL DEFAULT '',
    tm_start    INTEGER NOT NULL,
    tm_end      INTEGER
) STRICT;

CREATE INDEX recordings_call ON recordings (call_id, tm_start);
