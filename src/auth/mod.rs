//! SMART on FHIR authorization (issue 6, being built): so far the scope model, the server's
//! signing keys and access tokens. Nothing here is wired into request handling yet:
//! `--auth none` is still the only mode.

pub mod keys;
pub mod scope;
pub mod token;

pub use scope::{Context, Grant, Interaction, Perms, Rule};
