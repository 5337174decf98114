//! The authorization server's tables (`auth_key`).

use super::{Store, on_backend, on_writer};
use crate::error::Result;

/// A stored signing key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub private_der: Vec<u8>,
    pub public_jwk: String,
    pub created: i64,
}

impl Store {
    /// Keys not retired, newest first.
    pub async fn active_keys(&self) -> Result<Vec<StoredKey>> {
        let sql = "SELECT kid, alg, private_der, public_jwk, created FROM auth_key \
                   WHERE retired IS NULL ORDER BY created DESC, kid";
        let rows: Vec<(String, String, Vec<u8>, String, i64)> =
            on_backend!(self, pool => sqlx::query_as(sql).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(kid, alg, private_der, public_jwk, created)| StoredKey {
                kid,
                alg,
                private_der,
                public_jwk,
                created,
            })
            .collect())
    }

    /// Adds a key; a key with the same id (another node's) is left as it is.
    pub async fn add_key(&self, key: &StoredKey) -> Result<()> {
        let sql = "INSERT INTO auth_key (kid, alg, private_der, public_jwk, created) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (kid) DO NOTHING";
        on_writer!(self, pool => {
            sqlx::query(sql)
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.private_der)
                .bind(&key.public_jwk)
                .bind(key.created)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Retires every key created before `before`: they neither sign nor verify any more.
    pub async fn retire_keys(&self, before: i64, now: i64) -> Result<u64> {
        let sql = "UPDATE auth_key SET retired = $1 WHERE retired IS NULL AND created < $2";
        let n = on_writer!(self, pool => {
            sqlx::query(sql).bind(now).bind(before).execute(pool).await?.rows_affected()
        });
        Ok(n)
    }
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub kind: String,
    pub secret_hash: Option<String>,
    pub jwks: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: String,
    pub created: i64,
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub fhir_user: Option<String>,
    pub role: String,
    pub created: i64,
}

type ClientRow = (String, String, Option<String>, Option<String>, String, String, i64);

fn client((client_id, kind, secret_hash, jwks, uris, scopes, created): ClientRow) -> Client {
    let redirect_uris = serde_json::from_str(&uris).unwrap_or_default();
    Client { client_id, kind, secret_hash, jwks, redirect_uris, scopes, created }
}

type UserRow = (String, String, Option<String>, Option<String>, String, i64);

const CLIENT_COLUMNS: &str = "client_id, kind, secret_hash, jwks, redirect_uris, scopes, created";

impl Store {
    /// Registers a client; false if the id is taken.
    pub async fn add_client(&self, c: &Client) -> Result<bool> {
        let sql = format!(
            "INSERT INTO auth_client ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (client_id) DO NOTHING"
        );
        let uris = serde_json::to_string(&c.redirect_uris).unwrap_or_else(|_| "[]".into());
        let n = on_writer!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&c.client_id)
                .bind(&c.kind)
                .bind(&c.secret_hash)
                .bind(&c.jwks)
                .bind(uris)
                .bind(&c.scopes)
                .bind(c.created)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(n == 1)
    }

    pub async fn client(&self, client_id: &str) -> Result<Option<Client>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM auth_client WHERE client_id = $1");
        let row: Option<ClientRow> = on_backend!(self, pool =>
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(client_id).fetch_optional(pool).await?);
        Ok(row.map(client))
    }

    pub async fn clients(&self) -> Result<Vec<Client>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM auth_client ORDER BY client_id");
        let rows: Vec<ClientRow> = on_backend!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(pool).await?);
        Ok(rows.into_iter().map(client).collect())
    }

    /// Adds a user; false if the name is taken.
    pub async fn add_user(&self, u: &User) -> Result<bool> {
        let sql = "INSERT INTO auth_user (username, password_hash, totp_secret, fhir_user, role, created) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING";
        let n = on_writer!(self, pool => sqlx::query(sql)
                .bind(&u.username)
                .bind(&u.password_hash)
                .bind(&u.totp_secret)
                .bind(&u.fhir_user)
                .bind(&u.role)
                .bind(u.created)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(n == 1)
    }

    pub async fn user(&self, username: &str) -> Result<Option<User>> {
        let sql = "SELECT username, password_hash, totp_secret, fhir_user, role, created FROM auth_user WHERE username = $1";
        let row: Option<UserRow> =
            on_backend!(self, pool => sqlx::query_as(sql).bind(username).fetch_optional(pool).await?);
        Ok(row.map(|(username, password_hash, totp_secret, fhir_user, role, created)| User {
            username,
            password_hash,
            totp_secret,
            fhir_user,
            role,
            created,
        }))
    }
}

impl Store {
    /// Records a client assertion's `jti`; false if it was seen before (a replay). Expired
    /// entries are removed on the way.
    pub async fn use_jti(&self, client_id: &str, jti: &str, exp: i64, now: i64) -> Result<bool> {
        let purge = "DELETE FROM auth_jti WHERE exp < $1";
        let insert = "INSERT INTO auth_jti (client_id, jti, exp) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let n = on_writer!(self, pool => {
            sqlx::query(purge).bind(now).execute(pool).await?;
            sqlx::query(insert).bind(client_id).bind(jti).bind(exp).execute(pool).await?.rows_affected()
        });
        Ok(n == 1)
    }
}
