//! The one integration-test binary: black-box tests over HTTP against the real server, each
//! storage test on SQLite and on PostgreSQL.

mod support;

mod audit;
mod authz;
mod authz_patient;
mod care_team;
mod cli;
mod cli_auth;
mod common_params;
mod composite;
mod concurrency;
mod conditional;
mod crash;
mod crud;
mod custom_params;
mod differential;
mod errors;
mod export;
mod formats;
mod history;
mod hl7;
mod hl7_corpus;
mod migrations;
mod oauth_flow;
mod oauth_setups;
mod paging;
mod scopes;
mod search;
mod transaction;
