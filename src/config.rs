//! One `Config` from `hearth.toml`, then `HEARTH_*` environment variables, then flags (later
//! sources win). The file is optional; every setting has a default that works out of the box.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authorization: every request is allowed. For local development and tests.
    None,
    /// SMART on FHIR with this server's own tokens (or an external issuer's): scopes enforced
    /// per type and interaction, `patient/` scopes confined to the patient's compartment, v2
    /// query restrictions applied.
    Smart,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, `HOST:PORT`.
    pub listen: String,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    pub database: String,
    /// Absolute base URL of the FHIR endpoint as clients see it (behind a proxy), e.g.
    /// `https://fhir.example.org/fhir`. Derived from the Host header when unset.
    pub base_url: Option<String>,
    pub auth: AuthMode,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Page size of search and history when `_count` is not given.
    pub default_count: usize,
    /// Largest `_count` honoured; larger requests are capped.
    pub max_count: usize,
    /// Size at which a bulk export output file is closed and the next one begun.
    pub bulk_max_file_bytes: u64,
    /// Whether this node runs bulk jobs (`$export`, `$import`); with several nodes on one
    /// PostgreSQL, any node that runs them may take a job.
    pub bulk_jobs: bool,
    /// Largest `$import` upload accepted, in bytes.
    pub bulk_max_upload_bytes: u64,
    /// With `auth = "smart"`: accept access tokens of this external issuer (its `iss`) instead
    /// of issuing our own; the embedded authorization endpoints then answer 404.
    pub auth_issuer: Option<String>,
    /// The external issuer's JWKS: a file path or an `http://` URL, read at start.
    pub auth_jwks: Option<String>,
    /// The `aud` external tokens must carry; default: the FHIR base URL.
    pub auth_audience: Option<String>,
    /// Where the HL7 v2 MLLP listener listens (`HOST:PORT`); off when unset.
    pub mllp: Option<String>,
    /// Largest MLLP frame accepted, in bytes; a larger one closes its connection.
    pub mllp_max_frame_bytes: usize,
    /// MLLP connections served at once; more senders wait to be accepted.
    pub mllp_max_connections: usize,
    /// MLLP over TLS: the certificate chain and private key (PEM files); both or neither.
    pub mllp_tls_cert: Option<String>,
    pub mllp_tls_key: Option<String>,
    /// With `auth = "smart"`: record an AuditEvent for every request touching patient data.
    /// Off only where another component keeps the audit trail (logged as a warning).
    pub audit: bool,
    /// Access policy beyond scopes (`[access]`).
    pub access: Access,
    /// HL7 v2 assigning authorities (namespace id or OID) → identifier system URI
    /// (`[hl7_authorities]`, e.g. `GH = "http://goodhealth.example.org/mrn"`).
    pub hl7_authorities: std::collections::HashMap<String, String>,
}

/// `[access]`: policy applied on top of what a token's scopes say.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Access {
    /// Confine the `user/` scopes of users whose role is `coordinator` or `provider` to their
    /// care-team panel: patients whose `generalPractitioner` is the user's Practitioner, or who
    /// have an active CareTeam with it as participant. `admin` and other roles are not confined.
    pub care_team_only: bool,
}

impl Default for Access {
    fn default() -> Self {
        Access { care_team_only: true }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database: "sqlite://hearth.db".into(),
            base_url: None,
            auth: AuthMode::Smart,
            max_body_bytes: 16 * 1024 * 1024,
            default_count: 20,
            max_count: 1000,
            bulk_max_file_bytes: 64 * 1024 * 1024,
            bulk_jobs: true,
            bulk_max_upload_bytes: 4 * 1024 * 1024 * 1024,
            mllp: None,
            mllp_max_frame_bytes: 1024 * 1024,
            mllp_max_connections: 256,
            mllp_tls_cert: None,
            mllp_tls_key: None,
            audit: true,
            access: Access::default(),
            hl7_authorities: Default::default(),
            auth_issuer: None,
            auth_jwks: None,
            auth_audience: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
}

impl Config {
    /// Reads `path` if it exists (a missing default file is fine; a missing named file is not).
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|source| ConfigError::Parse { path: display, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path: display, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults() {
        let c: Config = toml::from_str("listen = \"0.0.0.0:9000\"\nmax_count = 50").unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.max_count, 50);
        assert_eq!(c.database, "sqlite://hearth.db");
        assert!(toml::from_str::<Config>("lisen = 1").is_err());
        assert!(c.access.care_team_only);
        let c: Config = toml::from_str("[access]\ncare_team_only = false").unwrap();
        assert!(!c.access.care_team_only);
    }
}
