-- Index tables for the other search parameter types (search.html). Each row carries the resource
-- key and the small parameter id; lookups go (pid, value, rkey), deletes go by rkey.

-- string: `norm` is case- and accent-folded for the default starts-with and :contains, `exact`
-- is the value as written for :exact. Token parameters put their :text values here too.
CREATE TABLE idx_string (
    rkey  BIGINT  NOT NULL,
    pid   INTEGER NOT NULL,
    norm  TEXT    NOT NULL,
    exact TEXT    NOT NULL
);
CREATE INDEX idx_string_norm ON idx_string (pid, norm, rkey);
CREATE INDEX idx_string_rkey ON idx_string (rkey);

CREATE TABLE idx_reference (
    rkey        BIGINT  NOT NULL,
    pid         INTEGER NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    url         TEXT    NOT NULL
);
CREATE INDEX idx_reference_id ON idx_reference (pid, target_id, target_type, rkey);
CREATE INDEX idx_reference_url ON idx_reference (pid, url, rkey);
CREATE INDEX idx_reference_rkey ON idx_reference (rkey);

-- date: the half-open instant range [lo, hi) in ms the value denotes at its precision.
CREATE TABLE idx_date (
    rkey BIGINT  NOT NULL,
    pid  INTEGER NOT NULL,
    lo   BIGINT  NOT NULL,
    hi   BIGINT  NOT NULL
);
-- One index serves every prefix: lo and hi are both in it, so `hi`-only conditions scan the
-- parameter's rows in the index without touching the table.
CREATE INDEX idx_date_lo ON idx_date (pid, lo, hi, rkey);
CREATE INDEX idx_date_rkey ON idx_date (rkey);

-- number and quantity (system/code empty for plain numbers).
CREATE TABLE idx_number (
    rkey   BIGINT  NOT NULL,
    pid    INTEGER NOT NULL,
    value  REAL    NOT NULL,
    system TEXT,
    code   TEXT
);
CREATE INDEX idx_number_value ON idx_number (pid, value, rkey);
CREATE INDEX idx_number_rkey ON idx_number (rkey);

CREATE TABLE idx_uri (
    rkey BIGINT  NOT NULL,
    pid  INTEGER NOT NULL,
    uri  TEXT    NOT NULL
);
CREATE INDEX idx_uri_value ON idx_uri (pid, uri, rkey);
CREATE INDEX idx_uri_rkey ON idx_uri (rkey);
