//! SMART on FHIR authorization (issue 6, being built): so far the scope model, the server's
//! signing keys, access tokens, and clients and users with the CLI that manages them
//! (`hearth client|user|token`). Nothing here is wired into request handling yet:
//! `--auth none` is still the only mode.

pub mod accounts;
pub mod client_auth;
pub mod external;
pub mod flow;
pub mod keys;
pub mod scope;
pub mod secrets;
pub mod token;

pub use scope::{Context, Grant, Interaction, Perms, Rule};
