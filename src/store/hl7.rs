//! Received HL7 v2 messages (`hl7_message`): idempotency by sender and control id.

use super::{Store, on_backend};
use crate::error::Result;

/// A message as received, with the ACK it got.
pub struct Received<'a> {
    pub sender: &'a str,
    pub control_id: &'a str,
    pub message_type: &'a str,
    pub status: &'a str,
    pub ack: &'a str,
    pub raw: &'a str,
    pub received: i64,
}

pub(super) const RECORD: &str = "INSERT INTO hl7_message (sender, control_id, message_type, received, status, ack, raw) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sender, control_id) DO NOTHING";

/// A `Received` that owns its text (to be kept across an await).
pub struct OwnedReceived {
    pub sender: String,
    pub control_id: String,
    pub message_type: String,
    pub status: &'static str,
    pub ack: String,
    pub raw: String,
    pub received: i64,
}

impl Received<'_> {
    pub fn clone_owned(&self) -> OwnedReceived {
        OwnedReceived {
            sender: self.sender.into(),
            control_id: self.control_id.into(),
            message_type: self.message_type.into(),
            status: match self.status {
                "AA" => "AA",
                "AE" => "AE",
                _ => "AR",
            },
            ack: self.ack.into(),
            raw: self.raw.into(),
            received: self.received,
        }
    }
}

impl OwnedReceived {
    pub fn borrow(&self) -> Received<'_> {
        Received {
            sender: &self.sender,
            control_id: &self.control_id,
            message_type: &self.message_type,
            status: self.status,
            ack: &self.ack,
            raw: &self.raw,
            received: self.received,
        }
    }
}

impl Store {
    /// The ACK a message from `sender` with `control_id` got before, if any.
    pub async fn hl7_ack(&self, sender: &str, control_id: &str) -> Result<Option<String>> {
        let sql = "SELECT ack FROM hl7_message WHERE sender = $1 AND control_id = $2";
        let row: Option<(String,)> = on_backend!(self, pool =>
            sqlx::query_as(sql).bind(sender).bind(control_id).fetch_optional(pool).await?);
        Ok(row.map(|r| r.0))
    }

    /// Records a message; one received twice at once keeps the first record.
    pub async fn hl7_record(&self, m: &Received<'_>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.hl7_record(m).await?;
        tx.commit().await
    }
}
