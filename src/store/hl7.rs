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

pub(super) const RECORD: &str = "INSERT INTO hl7_message (sender, control_id, message_type, received, status, ack, raw) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sender, control_id) DO NOTHING";

impl Store {
    /// The ACK a message from `sender` with `control_id` got before, if any.
    pub async fn hl7_ack(&self, sender: &str, control_id: &str) -> Result<Option<String>> {
        let sql = "SELECT ack FROM hl7_message WHERE sender = $1 AND control_id = $2";
        let row: Option<(String,)> = on_backend!(self, pool =>
            sqlx::query_as(sql).bind(sender).bind(control_id).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }

    /// Records a message; one received twice at once keeps the first record.
    pub async fn hl7_record(&self, m: &Received) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.hl7_record(m).await?;
        tx.commit().await
    }
}
