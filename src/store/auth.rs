//! The authorization server's tables (`auth_key`).

use super::{Backend, Store, on_backend};
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
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlx::query(sql)
                    .bind(&key.kid)
                    .bind(&key.alg)
                    .bind(&key.private_der)
                    .bind(&key.public_jwk)
                    .bind(key.created)
                    .execute(writer)
                    .await?;
            }
            Backend::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(&key.kid)
                    .bind(&key.alg)
                    .bind(&key.private_der)
                    .bind(&key.public_jwk)
                    .bind(key.created)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Retires every key created before `before`: they neither sign nor verify any more.
    pub async fn retire_keys(&self, before: i64, now: i64) -> Result<u64> {
        let sql = "UPDATE auth_key SET retired = $1 WHERE retired IS NULL AND created < $2";
        let n = match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlx::query(sql).bind(now).bind(before).execute(writer).await?.rows_affected()
            }
            Backend::Postgres(pool) => {
                sqlx::query(sql).bind(now).bind(before).execute(pool).await?.rows_affected()
            }
        };
        Ok(n)
    }
}
