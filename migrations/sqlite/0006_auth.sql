-- The embedded authorization server's signing keys. The newest key that is not retired signs;
-- every key not retired verifies, so tokens signed before a rotation stay valid until they
-- expire. The private key is stored as PKCS#8 DER: the database is already the server's most
-- sensitive store.
CREATE TABLE auth_key (
    kid          TEXT    PRIMARY KEY,
    alg          TEXT    NOT NULL,
    private_der  BLOB   NOT NULL,
    public_jwk   TEXT    NOT NULL,
    created      BIGINT  NOT NULL, -- ms since the Unix epoch
    retired      BIGINT
);
