-- Call records. Enumerated columns (direction, status, hangup_*) are checked
-- in Go, not with CHECK constraints: SQLite cannot alter a CHECK without
-- rebuilding the table, and the sets will grow.
-- Times are unix milliseconds, UTC; NULL means "not yet".
CREATE TABLE calls (
    id               TEXT    PRIMARY KEY NOT NULL,
    sip_call_id      TEXT    NOT NULL DEFAULT '',
    direction        TEXT    NOT NULL,
    source           TEXT    NOT NULL DEFAULT '',
    destination      TEXT    NOT NULL DEFAULT '',
    source_addr      TEXT    NOT NULL DEFAULT '',
    status           TEXT    NOT NULL,
    hangup_by        TEXT    NOT NULL DEFAULT '',
    hangup_reason    TEXT    NOT NULL DEFAULT '',
    sip_code         INTEGER NOT NULL DEFAULT 0,
    codec            TEXT    NOT NULL DEFAULT '',
    dtmf             TEXT    NOT NULL DEFAULT '',
    rtp_packets_in   INTEGER NOT NULL DEFAULT 0,
    rtp_packets_out  INTEGER NOT NULL DEFAULT 0,
    rtp_packets_lost INTEGER NOT NULL DEFAULT 0,
    tm_create        INTEGER NOT NULL,
    tm_ringing       INTEGER,
    tm_progressing   INTEGER,
    tm_hangup        INTEGER
) STRICT;

-- Serves ListCalls: newest first, keyset on (tm_create, id).
CREATE INDEX calls_tm_create_id ON calls (tm_create DESC, id DESC);

-- Looking a call up from a SIP message.
CREATE INDEX calls_sip_call_id ON calls (sip_call_id);

-- Keeps CloseUnfinishedCalls at startup from scanning the whole history.
CREATE INDEX calls_unfinished ON calls (status) WHERE status <> 'hangup';
