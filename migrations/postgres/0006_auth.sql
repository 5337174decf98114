-- The embedded authorization server's signing keys. The newest key that is not retired signs;
-- every key not retired verifies, so tokens signed before a rotation stay valid until they
-- expire. The private key is stored as PKCS#8 DER: the database is already the server's most
-- sensitive store.
CREATE TABLE auth_key (
    kid          TEXT    PRIMARY KEY,
    alg          TEXT    NOT NULL,
    private_der  BYTEA   NOT NULL,
    public_jwk   TEXT    NOT NULL,
    created      BIGINT  NOT NULL, -- ms since the Unix epoch
    retired      BIGINT
);

-- Registered clients (SMART apps and backend services).
CREATE TABLE auth_client (
    client_id      TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL, -- 'public' | 'secret' (client_secret_basic) | 'jwks' (private_key_jwt)
    secret_hash    TEXT,             -- Argon2id PHC string, for 'secret'
    jwks           TEXT,             -- the client's public keys, for 'jwks'
    redirect_uris  TEXT    NOT NULL, -- JSON array, matched exactly
    scopes         TEXT    NOT NULL, -- the scopes the client may be granted, space-separated
    created        BIGINT  NOT NULL
);

-- Users who log in at /auth/authorize.
CREATE TABLE auth_user (
    username       TEXT    PRIMARY KEY,
    password_hash  TEXT    NOT NULL, -- Argon2id PHC string
    totp_secret    TEXT,             -- base32, when a second factor is required
    fhir_user      TEXT,             -- e.g. Practitioner/123
    role           TEXT    NOT NULL, -- coordinator | provider | admin | …
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   BIGINT,
    created        BIGINT  NOT NULL
);

-- Client assertion ids seen (private_key_jwt): a `jti` is accepted once until its `exp`.
CREATE TABLE auth_jti (
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    exp        BIGINT  NOT NULL, -- seconds since the Unix epoch
    PRIMARY KEY (client_id, jti)
);
