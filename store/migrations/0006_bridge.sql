-- Bridged calls: the outgoing leg a call placed (connect) points at the
-- call it was placed for, so both records can be shown together.
ALTER TABLE calls ADD COLUMN master_call_id TEXT NOT NULL DEFAULT '';

-- Finding the legs a call placed.
CREATE INDEX calls_master_call_id ON calls (master_call_id) WHERE master_call_id <> '';
