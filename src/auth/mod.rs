//! SMART on FHIR authorization (issue 6): the scope model, the server's signing keys, access
//! tokens, clients and users (`hearth client|user|token|launch`), the authorization-code flow
//! (`flow`), and tokens of an external issuer (`external`). The HTTP side is in `api::authn`,
//! `api::auth`, `api::oauth`, `api::authorize` and `api::smart`.

pub mod accounts;
pub mod client_auth;
pub mod external;
pub mod flow;
pub mod keys;
pub mod reach;
pub mod scope;
pub mod secrets;
pub mod token;

pub use reach::{Confine, Reach};
pub use scope::{Context, Grant, Interaction, Perms, Rule};
