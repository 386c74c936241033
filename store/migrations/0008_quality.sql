-- Media quality measured on a call, as JSON (read as a whole, never queried
-- field by field); "null" until the call has ended.
ALTER TABLE calls ADD COLUMN quality TEXT NOT NULL DEFAULT 'null';
