//! The demo data set (`examples/demo/demo.json`), loaded through the ordinary write path.

use serde_json::Value;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::Filter;

const DEMO: &str = include_str!("../examples/demo/demo.json");

/// Loads the demo resources when the database has no Patient yet; returns how many were written.
pub async fn load_if_empty(engine: &Engine) -> Result<usize> {
    if engine.store.count(&Filter { sql: "r.rtype = 'Patient'".into(), binds: vec![] }).await? > 0 {
        return Ok(0);
    }
    let bundle: Value = serde_json::from_str(DEMO).map_err(|e| Error::Internal(format!("demo data: {e}")))?;
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut n = 0;
    for entry in entries {
        let resource = entry["resource"].clone();
        let rtype = resource["resourceType"].as_str().unwrap_or_default().to_string();
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        engine.update(&rtype, &id, resource, None).await?;
        n += 1;
    }
    Ok(n)
}
