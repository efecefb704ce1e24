//! Shared pieces of the project's cross-crate tests: the test bed that `tests/run` starts, a
//! token-auth registry with an issuer of the test's own, rootless buildkitds of a test's own, and
//! a small HTTP/1.1 client over TCP or a unix socket, and a reader of what builds pushed.

pub mod api;
pub mod bed;
pub mod client;
pub mod daemons;
pub mod fixtures;
pub mod oci;
pub mod rootless;
pub mod token_registry;
