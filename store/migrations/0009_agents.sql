-- Agents made over the API. The definition is the agent package's JSON,
-- kept as written (store does not know its fields); provider API keys are
-- in it in clear because calling the provider needs them, as a trunk's
-- outbound password does. Agents from --agents-dir are not stored here.
CREATE TABLE agents (
    id         TEXT    PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL DEFAULT '',
    definition TEXT    NOT NULL,
    tm_create  INTEGER NOT NULL,
    tm_update  INTEGER NOT NULL
) STRICT;
