-- composite parameters with a token first component (search.html#composite): one row per
-- combination of values taken from the same element. The second component's columns carry the
-- names the other index tables use, so the same conditions apply: system/code (token, or the
-- unit of a quantity), value (number, quantity), lo/hi (date), norm (string).
CREATE TABLE idx_composite (
    rkey     BIGINT  NOT NULL,
    pid      INTEGER NOT NULL,
    c_system TEXT,
    c_code   TEXT    NOT NULL,
    system   TEXT,
    code     TEXT,
    value    DOUBLE PRECISION,
    lo       BIGINT,
    hi       BIGINT,
    norm     TEXT COLLATE "C"
);
CREATE INDEX idx_composite_code ON idx_composite (pid, c_code, rkey);
CREATE INDEX idx_composite_rkey ON idx_composite (rkey);
