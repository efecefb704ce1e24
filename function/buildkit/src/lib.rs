//! A BuildKit client: connect to a daemon over unix, TCP (optionally mutual TLS) or a Docker
//! Engine's socket, run a session that serves the build context (FileSync), registry credentials
//! (Auth), secrets and health checks, and solve Dockerfile builds with live progress.
//!
//! ```no_run
//! # async fn run() -> Result<(), buildkit::BuildkitError> {
//! use std::sync::Arc;
//! use buildkit::{Address, BuildRequest, Client, DirTree, Output};
//!
//! let address: Address = "docker://".parse().expect("valid address");
//! let client = Client::connect(&address, None).await?;
//! let image = "127.0.0.1:5000/app:1".parse().expect("valid reference");
//! let req = BuildRequest::new(Arc::new(DirTree::new("./app")), Output::Push(image));
//! let (events, mut progress) = tokio::sync::mpsc::channel(256);
//! tokio::spawn(async move {
//!     while let Some(event) = progress.recv().await {
//!         if let Some(line) = buildkit::render(&event) {
//!             println!("{line}");
//!         }
//!     }
//! });
//! let built = client.build(req, events).await.result?;
//! println!("pushed {:?}", built.digest);
//! # Ok(())
//! # }
//! ```

mod access;
mod address;
mod client;
mod connect;
mod dockerconfig;
mod error;
mod failure;
mod fs;
mod id;
#[cfg(any(test, feature = "internals"))]
#[doc(hidden)]
pub mod internals;
mod progress;
mod proto;
mod push;
mod reference;
mod render;
mod request;
mod session;
mod solve;
mod sourcepolicy;
mod status;
mod steps;
mod token;

pub use access::ReadPolicy;
pub use address::{Address, AddressError, DEFAULT_DOCKER_SOCKET};
pub use client::{Client, Worker};
pub use connect::TlsFiles;
pub use dockerconfig::{Credentials, DockerConfig, DockerConfigError};
pub use error::{BuildkitError, RegistryFault};
pub use fs::links;
pub use fs::patterns::{parse_dockerignore, Filter, PatternError, Verdict};
pub use fs::{DirTree, Entry, EntryKind, SourceTree};
pub use progress::Event;
pub use reference::{ImageRef, ReferenceError, RepoPrefix};
pub use render::{log_line, render};
pub use request::{Attestations, BuildRequest, Cache, NetworkMode, Output, Provenance};
pub use solve::{BuildOutcome, Built};
pub use sourcepolicy::RemoteSources;
pub use steps::Steps;
