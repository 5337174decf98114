//! SMART on FHIR authorization (issue 6, being built): so far the scope model. Nothing here is
//! wired into request handling yet; `--auth none` is still the only mode.

pub mod scope;

pub use scope::{Context, Grant, Interaction, Perms, Rule};
