-- The authorization-code flow of the embedded authorization server (SMART App Launch). Nothing
-- here lives on one node: several nodes share one PostgreSQL, and a browser's next request may
-- reach another node.

-- An authorization request between its pages (login, patient picker, consent). The id is a
-- random secret carried by the forms; the request and what the user chose so far are JSON.
CREATE TABLE auth_pending (
    id       TEXT    PRIMARY KEY,
    request  TEXT    NOT NULL,
    expires  BIGINT  NOT NULL  -- ms since the Unix epoch
);

-- Authorization codes, by the SHA-256 of the code (hex): a stolen table lists no usable code.
-- A code is used once; `used` marks it so that a second use can be told from an unknown code
-- and revoke what the first use issued (RFC 6749 §4.1.2).
CREATE TABLE auth_code (
    code_hash       TEXT    PRIMARY KEY,
    client_id       TEXT    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    username        TEXT    NOT NULL,
    fhir_user       TEXT,
    patient         TEXT,
    encounter       TEXT,
    code_challenge  TEXT,             -- PKCE S256 challenge
    nonce           TEXT,             -- OpenID Connect, echoed in the id_token
    expires         BIGINT  NOT NULL, -- ms
    used            BIGINT            -- ms, once exchanged
);
CREATE INDEX auth_code_expires ON auth_code (expires);

-- Refresh tokens, by SHA-256 (hex). Each use rotates: the old row is marked revoked and a new
-- one is added to the same family (the code that started the grant), so that a replayed code
-- or refresh token can revoke the whole family.
CREATE TABLE auth_refresh (
    token_hash  TEXT    PRIMARY KEY,
    family      TEXT    NOT NULL,
    client_id   TEXT    NOT NULL,
    username    TEXT    NOT NULL,
    fhir_user   TEXT,
    scope       TEXT    NOT NULL,
    patient     TEXT,
    encounter   TEXT,
    expires     BIGINT  NOT NULL, -- ms
    revoked     BIGINT            -- ms
);
CREATE INDEX auth_refresh_family ON auth_refresh (family);
-- Expired rows are purged as new ones are added.
CREATE INDEX auth_refresh_expires ON auth_refresh (expires);

-- EHR launch contexts (`hearth launch`): a launch id names the patient (and encounter) an
-- app is launched for, for a few minutes.
CREATE TABLE auth_launch (
    id         TEXT    PRIMARY KEY,
    patient    TEXT,
    encounter  TEXT,
    expires    BIGINT  NOT NULL  -- ms
);

-- Revoked access tokens, by `jti`, kept until they would have expired. Every node polls the
-- rows added since it last looked (`revoked`, ms) and drops those tokens from its cache.
CREATE TABLE auth_revoked (
    jti      TEXT    PRIMARY KEY,
    exp      BIGINT  NOT NULL, -- s, the token's exp
    revoked  BIGINT  NOT NULL  -- ms
);
CREATE INDEX auth_revoked_at ON auth_revoked (revoked);
CREATE INDEX auth_revoked_exp ON auth_revoked (exp);

-- The last TOTP time step accepted per user: a one-time code is accepted once (RFC 6238 §5.2).
ALTER TABLE auth_user ADD COLUMN totp_last_step BIGINT;
