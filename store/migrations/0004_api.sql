-- API access and outbound notifications: API keys, webhook targets and the
-- log of their deliveries. Times are unix milliseconds, UTC; enumerated
-- columns are checked in Go, as in 0001.

-- Keys are never stored: only the hex SHA-256 of the whole key (a key is
-- 32 random bytes, so a fast hash is enough; there is nothing to brute
-- force). prefix is the key's first characters, to tell keys apart in lists.
-- A revoked key keeps its row (tm_revoke set) so lists show what it was.
CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY NOT NULL,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    role         TEXT    NOT NULL,
    tm_create    INTEGER NOT NULL,
    tm_last_used INTEGER,
    tm_revoke    INTEGER
) STRICT;

-- The secret is kept in clear: signing each delivery needs it.
CREATE TABLE webhooks (
    id          TEXT    PRIMARY KEY NOT NULL,
    url         TEXT    NOT NULL,
    event_types TEXT    NOT NULL DEFAULT '[]', -- JSON array; empty: every event
    description TEXT    NOT NULL DEFAULT '',
    secret      TEXT    NOT NULL,
    tm_create   INTEGER NOT NULL
) STRICT;

-- One row per (event, target): its outcome after every attempt.
CREATE TABLE webhook_deliveries (
    id              TEXT    PRIMARY KEY NOT NULL,
    webhook_id      TEXT    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    call_id         TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    response_code   INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    tm_create       INTEGER NOT NULL,
    tm_update       INTEGER NOT NULL,
    tm_next_attempt INTEGER
) STRICT;

-- Serves a target's delivery log, newest first, keyset on (tm_create, id).
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, tm_create DESC, id DESC);

-- Pruning old rows.
CREATE INDEX webhook_deliveries_tm_create ON webhook_deliveries (tm_create);
