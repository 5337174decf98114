-- Current version of every resource. `body` holds the exact JSON bytes served on read.
CREATE TABLE resource (
    rkey         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL, -- milliseconds since the Unix epoch
    deleted      BOOLEAN NOT NULL,
    body         BYTEA   NOT NULL,
    UNIQUE (rtype, id)
);

-- Every version ever written, in write order (hkey), including deletions (empty body).
CREATE TABLE resource_history (
    hkey         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rkey         BIGINT  NOT NULL,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL,
    method       TEXT    NOT NULL,
    body         BYTEA   NOT NULL,
    UNIQUE (rkey, version)
);
CREATE INDEX resource_history_type ON resource_history (rtype, hkey);
CREATE INDEX resource_history_id ON resource_history (rtype, id, hkey);
CREATE INDEX resource_history_time ON resource_history (last_updated);

-- Small stable ids for search parameters, so index rows stay narrow.
CREATE TABLE search_param (
    pid   INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rtype TEXT NOT NULL,
    code  TEXT NOT NULL,
    UNIQUE (rtype, code)
);

CREATE TABLE idx_token (
    rkey   BIGINT  NOT NULL,
    pid    INTEGER NOT NULL,
    system TEXT,
    code   TEXT    NOT NULL
);
CREATE INDEX idx_token_value ON idx_token (pid, code, system, rkey);
CREATE INDEX idx_token_rkey ON idx_token (rkey);
