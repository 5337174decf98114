//! The authorization-code flow's tables (`0007_oauth.sql`): pending requests, codes, refresh
//! tokens, EHR launches, revoked access tokens, and login throttling on `auth_user`. Secrets
//! (codes, refresh tokens) arrive here already hashed.

use super::{Store, on_backend, on_writer};
use crate::error::Result;

/// What an authorization code stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub username: String,
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    /// ms since the Unix epoch.
    pub expires: i64,
}

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    /// The hash of the code that started the grant: what a replay revokes.
    pub family: String,
    pub client_id: String,
    pub username: String,
    pub fhir_user: Option<String>,
    pub scope: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// ms.
    pub expires: i64,
}

/// The outcome of using a single-use secret (a code, a refresh token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Used<T> {
    /// First use: here is what it stands for.
    Fresh(T),
    /// It was used (or revoked) before: a replay.
    Again(T),
    Unknown,
}

/// How long used codes are kept, so that a late replay is still recognized as one.
const KEEP_USED_CODES_MS: i64 = 24 * 3600 * 1000;

const CODE_COLUMNS: &str = "client_id, redirect_uri, scope, username, fhir_user, patient, encounter, \
                            code_challenge, nonce, expires";
type CodeRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

fn code(
    (client_id, redirect_uri, scope, username, fhir_user, patient, encounter, code_challenge, nonce, expires): CodeRow,
) -> AuthCode {
    AuthCode {
        client_id,
        redirect_uri,
        scope,
        username,
        fhir_user,
        patient,
        encounter,
        code_challenge,
        nonce,
        expires,
    }
}

const REFRESH_COLUMNS: &str = "family, client_id, username, fhir_user, scope, patient, encounter, expires";
type RefreshRow = (String, String, String, Option<String>, String, Option<String>, Option<String>, i64);

fn refresh(
    (family, client_id, username, fhir_user, scope, patient, encounter, expires): RefreshRow,
) -> RefreshGrant {
    RefreshGrant { family, client_id, username, fhir_user, scope, patient, encounter, expires }
}

impl Store {
    /// Stores (or replaces) a pending authorization request; expired ones go on the way.
    pub async fn put_pending(&self, id: &str, request: &str, expires: i64, now: i64) -> Result<()> {
        let purge = "DELETE FROM auth_pending WHERE expires < $1";
        let upsert = "INSERT INTO auth_pending (id, request, expires) VALUES ($1, $2, $3) \
                      ON CONFLICT (id) DO UPDATE SET request = excluded.request, expires = excluded.expires";
        on_writer!(self, pool => {
            sqlx::query(purge).bind(now).execute(pool).await?;
            sqlx::query(upsert).bind(id).bind(request).bind(expires).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn pending(&self, id: &str, now: i64) -> Result<Option<String>> {
        let sql = "SELECT request FROM auth_pending WHERE id = $1 AND expires >= $2";
        let row: Option<(String,)> =
            on_backend!(self, pool => sqlx::query_as(sql).bind(id).bind(now).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }

    pub async fn delete_pending(&self, id: &str) -> Result<()> {
        on_writer!(self, pool => {
            sqlx::query("DELETE FROM auth_pending WHERE id = $1").bind(id).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn add_code(&self, code_hash: &str, c: &AuthCode, now: i64) -> Result<()> {
        let purge = "DELETE FROM auth_code WHERE expires < $1";
        let insert = format!(
            "INSERT INTO auth_code (code_hash, {CODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        on_writer!(self, pool => {
            sqlx::query(purge).bind(now - KEEP_USED_CODES_MS).execute(pool).await?;
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(code_hash)
                .bind(&c.client_id)
                .bind(&c.redirect_uri)
                .bind(&c.scope)
                .bind(&c.username)
                .bind(&c.fhir_user)
                .bind(&c.patient)
                .bind(&c.encounter)
                .bind(&c.code_challenge)
                .bind(&c.nonce)
                .bind(c.expires)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Marks a code used. The conditional UPDATE makes two concurrent exchanges of one code
    /// see one `Fresh` and one `Again`, on either backend.
    pub async fn use_code(&self, code_hash: &str, now: i64) -> Result<Used<AuthCode>> {
        let update = format!(
            "UPDATE auth_code SET used = $2 WHERE code_hash = $1 AND used IS NULL RETURNING {CODE_COLUMNS}"
        );
        let fresh: Option<CodeRow> = on_writer!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(update))
            .bind(code_hash).bind(now).fetch_optional(pool).await?);
        if let Some(row) = fresh {
            return Ok(Used::Fresh(code(row)));
        }
        let select = format!("SELECT {CODE_COLUMNS} FROM auth_code WHERE code_hash = $1");
        let old: Option<CodeRow> = on_writer!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(code_hash).fetch_optional(pool).await?);
        Ok(old.map_or(Used::Unknown, |r| Used::Again(code(r))))
    }

    pub async fn add_refresh(&self, token_hash: &str, r: &RefreshGrant, now: i64) -> Result<()> {
        let purge = "DELETE FROM auth_refresh WHERE expires < $1";
        let insert = format!(
            "INSERT INTO auth_refresh (token_hash, {REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        on_writer!(self, pool => {
            sqlx::query(purge).bind(now).execute(pool).await?;
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(token_hash)
                .bind(&r.family)
                .bind(&r.client_id)
                .bind(&r.username)
                .bind(&r.fhir_user)
                .bind(&r.scope)
                .bind(&r.patient)
                .bind(&r.encounter)
                .bind(r.expires)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Uses up a refresh token (rotation): `Fresh` once, `Again` after it was used or revoked.
    pub async fn use_refresh(&self, token_hash: &str, now: i64) -> Result<Used<RefreshGrant>> {
        let update = format!(
            "UPDATE auth_refresh SET revoked = $2 WHERE token_hash = $1 AND revoked IS NULL RETURNING {REFRESH_COLUMNS}"
        );
        let fresh: Option<RefreshRow> = on_writer!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(update))
            .bind(token_hash).bind(now).fetch_optional(pool).await?);
        if let Some(row) = fresh {
            return Ok(Used::Fresh(refresh(row)));
        }
        Ok(match self.refresh_token(token_hash).await? {
            Some((r, _)) => Used::Again(r),
            None => Used::Unknown,
        })
    }

    /// A refresh token and whether it is revoked.
    pub async fn refresh_token(&self, token_hash: &str) -> Result<Option<(RefreshGrant, bool)>> {
        let select = format!("SELECT {REFRESH_COLUMNS}, revoked FROM auth_refresh WHERE token_hash = $1");
        type Row = (
            String,
            String,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            i64,
            Option<i64>,
        );
        let row: Option<Row> = on_writer!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(token_hash).fetch_optional(pool).await?);
        Ok(row.map(|(f, c, u, fu, s, p, e, x, revoked)| {
            (refresh((f, c, u, fu, s, p, e, x)), revoked.is_some())
        }))
    }

    /// Revokes every refresh token of a family; returns how many were still live.
    pub async fn revoke_family(&self, family: &str, now: i64) -> Result<u64> {
        let sql = "UPDATE auth_refresh SET revoked = $2 WHERE family = $1 AND revoked IS NULL";
        let n = on_writer!(self, pool => sqlx::query(sql).bind(family).bind(now).execute(pool).await?.rows_affected());
        Ok(n)
    }

    pub async fn revoke_refresh(&self, token_hash: &str, now: i64) -> Result<()> {
        let sql = "UPDATE auth_refresh SET revoked = $2 WHERE token_hash = $1 AND revoked IS NULL";
        on_writer!(self, pool => {
            sqlx::query(sql).bind(token_hash).bind(now).execute(pool).await?;
        });
        Ok(())
    }
}

impl Store {
    pub async fn add_launch(
        &self,
        id: &str,
        patient: Option<&str>,
        encounter: Option<&str>,
        expires: i64,
        now: i64,
    ) -> Result<()> {
        let purge = "DELETE FROM auth_launch WHERE expires < $1";
        let insert = "INSERT INTO auth_launch (id, patient, encounter, expires) VALUES ($1, $2, $3, $4)";
        on_writer!(self, pool => {
            sqlx::query(purge).bind(now).execute(pool).await?;
            sqlx::query(insert).bind(id).bind(patient).bind(encounter).bind(expires).execute(pool).await?;
        });
        Ok(())
    }

    /// The (patient, encounter) of a launch that has not expired.
    pub async fn launch(&self, id: &str, now: i64) -> Result<Option<(Option<String>, Option<String>)>> {
        let sql = "SELECT patient, encounter FROM auth_launch WHERE id = $1 AND expires >= $2";
        let row =
            on_backend!(self, pool => sqlx::query_as(sql).bind(id).bind(now).fetch_optional(pool).await?);
        Ok(row)
    }

    /// Records a revoked access token until its `exp` (seconds).
    pub async fn revoke_jti(&self, jti: &str, exp: i64, now: i64) -> Result<()> {
        let purge = "DELETE FROM auth_revoked WHERE exp < $1";
        let insert =
            "INSERT INTO auth_revoked (jti, exp, revoked) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING";
        on_writer!(self, pool => {
            sqlx::query(purge).bind(now / 1000 - 60).execute(pool).await?;
            sqlx::query(insert).bind(jti).bind(exp).bind(now).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn is_revoked(&self, jti: &str) -> Result<bool> {
        let sql = "SELECT 1 FROM auth_revoked WHERE jti = $1";
        let row: Option<(i32,)> =
            on_backend!(self, pool => sqlx::query_as(sql).bind(jti).fetch_optional(pool).await?);
        Ok(row.is_some())
    }

    /// The jtis revoked at or after `since` (ms).
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<String>> {
        let sql = "SELECT jti FROM auth_revoked WHERE revoked >= $1";
        let rows: Vec<(String,)> =
            on_backend!(self, pool => sqlx::query_as(sql).bind(since).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// (consecutive failed logins, locked until ms) of a user.
    pub async fn login_state(&self, username: &str) -> Result<Option<(i64, Option<i64>)>> {
        let sql = "SELECT CAST(failed_logins AS BIGINT), locked_until FROM auth_user WHERE username = $1";
        let row = on_writer!(self, pool => sqlx::query_as(sql).bind(username).fetch_optional(pool).await?);
        Ok(row)
    }

    /// Counts a failed login; the `limit`th in a row locks the account until `lock_until` and
    /// starts the count again.
    pub async fn login_failed(&self, username: &str, limit: i64, lock_until: i64) -> Result<()> {
        let sql = "UPDATE auth_user SET \
                   locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END, \
                   failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END \
                   WHERE username = $1";
        on_writer!(self, pool => {
            sqlx::query(sql).bind(username).bind(limit).bind(lock_until).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn login_succeeded(&self, username: &str) -> Result<()> {
        let sql = "UPDATE auth_user SET failed_logins = 0, locked_until = NULL WHERE username = $1";
        on_writer!(self, pool => {
            sqlx::query(sql).bind(username).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn set_totp(&self, username: &str, secret: Option<&str>) -> Result<bool> {
        let sql = "UPDATE auth_user SET totp_secret = $2 WHERE username = $1";
        let n = on_writer!(self, pool => sqlx::query(sql).bind(username).bind(secret).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn set_password(&self, username: &str, hash: &str) -> Result<bool> {
        let sql = "UPDATE auth_user SET password_hash = $2, failed_logins = 0, locked_until = NULL WHERE username = $1";
        let n = on_writer!(self, pool => sqlx::query(sql).bind(username).bind(hash).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Records the TOTP time step of an accepted code; false if that step or a later one was
    /// used already (a replayed code).
    pub async fn use_totp_step(&self, username: &str, step: i64) -> Result<bool> {
        let sql = "UPDATE auth_user SET totp_last_step = $2 \
                   WHERE username = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)";
        let n = on_writer!(self, pool => sqlx::query(sql).bind(username).bind(step).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }
}
