//! A build's progress: BuildKit's status messages merged into typed events, by the rules of
//! BuildKit's own printer (`util/progress/progressui`): vertices keyed by digest, statuses by
//! (vertex, ID), logs appended per (vertex, stream) and split into lines.
//!
//! `model` holds what goes in (status messages, converted from protobuf by `status`) and what
//! comes out ([`Event`]); [`Tracker`] does the merging.

mod model;
#[cfg(test)]
mod tests;
mod tracker;

pub use model::Event;
pub(crate) use model::{LogChunk, StatusUpdate, VertexStatusUpdate, VertexUpdate, WarningUpdate};
pub(crate) use tracker::Tracker;
