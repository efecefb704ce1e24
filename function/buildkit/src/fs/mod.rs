//! The files a session serves: a source-tree abstraction, its walk in fsutil order, and the
//! include/exclude patterns that filter it.

mod dir;
pub mod links;
mod mode;
pub(crate) mod patterns;
mod tree;
mod walk;

pub use dir::DirTree;
pub(crate) use links::follow;
pub(crate) use mode::go_mode;
pub use tree::{Entry, EntryKind, SourceTree};
pub(crate) use walk::{walk, Walked};
