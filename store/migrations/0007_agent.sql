-- What the agent and the caller said, one row per turn, and the latency
-- breakdown of each agent turn. Stored as the turns become final.
CREATE TABLE transcript_turns (
    call_id     TEXT    NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    role        TEXT    NOT NULL,            -- user, assistant
    kind        TEXT    NOT NULL,            -- speech, dtmf, greeting, reply, ...
    text        TEXT    NOT NULL,
    tm_start    INTEGER,
    tm_end      INTEGER,
    interrupted INTEGER NOT NULL DEFAULT 0,
    tool_calls  TEXT    NOT NULL DEFAULT '[]', -- JSON
    PRIMARY KEY (call_id, idx)
) STRICT;

CREATE TABLE turn_latency (
    call_id TEXT    NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    turn    INTEGER NOT NULL,
    data    TEXT    NOT NULL,                -- JSON of the latency row
    PRIMARY KEY (call_id, turn)
) STRICT;
