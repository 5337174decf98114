//! Hearth: a FHIR R4 (4.0.1) server. See ARCHITECTURE.md for the map.

pub mod api;
pub mod auth;
pub mod bench;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod fhirpath;
pub mod hl7v2;
pub mod import;
pub mod resource;
pub mod search;
pub mod server;
pub mod store;

pub use error::{Error, Result};
