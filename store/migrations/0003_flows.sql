-- Flows: an ordered list of actions, stored as JSON because the flow package
-- validates them (store does not know the action vocabulary).
CREATE TABLE flows (
    id                  TEXT    PRIMARY KEY NOT NULL,
    name                TEXT    NOT NULL DEFAULT '',
    detail              TEXT    NOT NULL DEFAULT '',
    actions             TEXT    NOT NULL,
    on_complete_flow_id TEXT    NOT NULL DEFAULT '',
    -- "" for flows made over the API; "file:<path>" for ones loaded from
    -- --flows-dir, which a reload may replace or remove.
    source              TEXT    NOT NULL DEFAULT '',
    tm_create           INTEGER NOT NULL,
    tm_update           INTEGER NOT NULL
) STRICT;

-- What a call's flows executed, in order.
CREATE TABLE call_actions (
    call_id   TEXT    NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    flow_id   TEXT    NOT NULL,
    action_id TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    tm_start  INTEGER NOT NULL,
    tm_end    INTEGER NOT NULL,
    result    TEXT    NOT NULL,
    error     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (call_id, seq)
) STRICT;

ALTER TABLE calls ADD COLUMN flow_id   TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN variables TEXT NOT NULL DEFAULT '{}';
ALTER TABLE calls ADD COLUMN warnings  TEXT NOT NULL DEFAULT '[]';
