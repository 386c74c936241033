-- SIP identities: extensions (phones that register and call), their
-- registration bindings, carrier trunks, and the numbers (DIDs) calls come in
-- on. Enumerated and list columns are checked in Go, as in 0001.
-- Times are unix milliseconds, UTC. Booleans are 0/1.

-- Passwords are never stored for extensions: only the digest HA1 hashes for
-- the realm they were made for (RFC 3261 MD5 and RFC 8760 SHA-256).
CREATE TABLE extensions (
    number       TEXT    PRIMARY KEY NOT NULL,
    username     TEXT    NOT NULL UNIQUE,
    display_name TEXT    NOT NULL DEFAULT '',
    realm        TEXT    NOT NULL,
    ha1_md5      TEXT    NOT NULL,
    ha1_sha256   TEXT    NOT NULL,
    call_out     INTEGER NOT NULL DEFAULT 0,
    enabled      INTEGER NOT NULL DEFAULT 1,
    tm_create    INTEGER NOT NULL,
    tm_update    INTEGER NOT NULL
) STRICT;

-- One row per (extension, contact) binding. Rows past expires_at are ignored
-- by reads and purged by the registrar.
CREATE TABLE registrations (
    id          INTEGER PRIMARY KEY,
    extension   TEXT    NOT NULL REFERENCES extensions (number) ON DELETE CASCADE,
    contact     TEXT    NOT NULL,
    source_addr TEXT    NOT NULL,
    transport   TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    call_id     TEXT    NOT NULL,
    cseq        INTEGER NOT NULL,
    user_agent  TEXT    NOT NULL DEFAULT '',
    tm_create   INTEGER NOT NULL,
    tm_update   INTEGER NOT NULL,
    UNIQUE (extension, contact)
) STRICT;

CREATE INDEX registrations_expires_at ON registrations (expires_at);

-- The outbound password is kept in clear: answering a carrier's digest
-- challenge needs it. Inbound credentials (a carrier authenticating to us)
-- are kept as HA1 hashes like extensions.
CREATE TABLE trunks (
    id                 TEXT    PRIMARY KEY NOT NULL,
    name               TEXT    NOT NULL UNIQUE,
    enabled            INTEGER NOT NULL DEFAULT 1,
    priority           INTEGER NOT NULL DEFAULT 0,
    inbound_addrs      TEXT    NOT NULL DEFAULT '[]', -- JSON array of IPs and CIDRs
    inbound_username   TEXT    NOT NULL DEFAULT '',
    inbound_realm      TEXT    NOT NULL DEFAULT '',
    inbound_ha1_md5    TEXT    NOT NULL DEFAULT '',
    inbound_ha1_sha256 TEXT    NOT NULL DEFAULT '',
    host               TEXT    NOT NULL DEFAULT '',
    port               INTEGER NOT NULL DEFAULT 0,
    transport          TEXT    NOT NULL DEFAULT 'udp',
    username           TEXT    NOT NULL DEFAULT '',
    password           TEXT    NOT NULL DEFAULT '',
    register           INTEGER NOT NULL DEFAULT 0,
    register_expires   INTEGER NOT NULL DEFAULT 0, -- seconds asked for; 0 means the default
    caller_id          TEXT    NOT NULL DEFAULT '',
    caller_name        TEXT    NOT NULL DEFAULT '',
    pai                TEXT    NOT NULL DEFAULT '',
    number_format      TEXT    NOT NULL DEFAULT 'e164',
    tech_prefix        TEXT    NOT NULL DEFAULT '',
    headers            TEXT    NOT NULL DEFAULT '[]', -- JSON array of {name, value}
    max_calls          INTEGER NOT NULL DEFAULT 0,    -- 0: no limit
    allowed_prefixes   TEXT    NOT NULL DEFAULT '[]', -- JSON array; empty: any destination
    tm_create          INTEGER NOT NULL,
    tm_update          INTEGER NOT NULL
) STRICT;

-- An inbound username is unique among trunks; uniqueness against extension
-- usernames is checked in Go.
CREATE UNIQUE INDEX trunks_inbound_username ON trunks (inbound_username) WHERE inbound_username <> '';

-- Numbers (DIDs): what a call to the number runs. trunk_id, when set, is the
-- trunk that delivers the number.
CREATE TABLE numbers (
    number    TEXT    PRIMARY KEY NOT NULL,
    kind      TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    trunk_id  TEXT    REFERENCES trunks (id) ON DELETE SET NULL,
    tm_create INTEGER NOT NULL,
    tm_update INTEGER NOT NULL
) STRICT;

CREATE INDEX numbers_trunk_id ON numbers (trunk_id);
