//! Shared pieces of the project's cross-crate tests: the test bed that `tests/run` starts, images
//! read back from its registry, a token-auth registry with an issuer of the test's own, rootless
//! buildkitds of a test's own, and a small HTTP/1.1 client over TCP or a unix socket.

pub mod api;
pub mod bed;
pub mod client;
pub mod daemons;
pub mod fixtures;
pub mod registry;
pub mod rootless;
pub mod token_registry;
