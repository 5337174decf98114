//! Received HL7 v2 messages (`hl7_message`): idempotency by sender and control id.

use super::{Store, on_backend};
use crate::error::Result;

/// A message as received, with the ACK it got.
pub struct Received {
    pub sender: String,
    pub control_id: String,
    pub message_type: String,
    /// `AA`, `AE` or `AR`.
    pub status: &'static str,
    pub ack: String,
    pub raw: String,
    pub received: i64,
}

/// A message that was accepted keeps its first record; one that was refused or failed (and
/// stored nothing) is recorded again when it is sent again. A new message — nearly every one —
/// takes the plain INSERT; an upsert with RETURNING cost SQLite about three times as much.
pub(super) const INSERT: &str = "INSERT INTO hl7_message (sender, control_id, message_type, received, status, ack, raw) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sender, control_id) DO NOTHING";
pub(super) const REPLACE: &str = "UPDATE hl7_message SET message_type = $3, received = $4, status = $5, ack = $6, \
     raw = $7 WHERE sender = $1 AND control_id = $2 AND status <> 'AA'";

impl Store {
    /// The ACK a message from `sender` with `control_id` got when it was accepted, if it was.
    /// (A message refused or failed before stored nothing: it is processed again.)
    pub async fn hl7_ack(&self, sender: &str, control_id: &str) -> Result<Option<String>> {
        let sql = "SELECT ack FROM hl7_message WHERE sender = $1 AND control_id = $2 AND status = 'AA'";
        let row: Option<(String,)> = on_backend!(self, pool =>
            sqlx::query_as(sql).bind(sender).bind(control_id).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }

    /// The stored messages with `control_id` (from `sender` when given): sender, status, raw.
    pub async fn hl7_messages(
        &self,
        control_id: &str,
        sender: Option<&str>,
    ) -> Result<Vec<(String, String, String)>> {
        let sql = "SELECT sender, status, raw FROM hl7_message WHERE control_id = $1 AND ($2 IS NULL OR sender = $2) \
                   ORDER BY received";
        let rows: Vec<(String, String, String)> = on_backend!(self, pool =>
            sqlx::query_as(sql).bind(control_id).bind(sender).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Records a message that stored nothing (refused, or failed); an accepted message's record
    /// is never replaced.
    pub async fn hl7_record(&self, m: &Received) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.hl7_record(m).await?;
        tx.commit().await
    }
}
