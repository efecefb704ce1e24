//! `.dockerignore` parsing and the include/exclude filter of a FileSync walk, with Docker's
//! semantics (moby/patternmatcher, tonistiigi/fsutil `filter.go`), which are not gitignore's: a
//! pattern matches the whole relative path, `foo` is only the top-level `foo`, and a path is also
//! matched when one of its parent directories is.
//!
//! Docker turns each pattern into a Go regexp; here a pattern is a token list run as a small NFA,
//! which also answers the question the walk needs and a regexp cannot: could the pattern match
//! anything *beneath* a directory (so an excluded `node_modules` need not be walked).
//!
//! Four parts: [`parse_dockerignore`] reads a file into patterns (`dockerignore`), each pattern
//! is checked and compiled into tokens (`syntax`), run as an NFA (`matching`), and a list of them
//! decides an entry's [`Verdict`] (`filter`).

mod dockerignore;
mod filter;
mod matching;
mod syntax;

/// For the property tests in `internals`, which check `clean` against a model of Go's
/// `filepath.Clean`.
#[cfg(test)]
pub(crate) use dockerignore::clean;
pub use dockerignore::parse_dockerignore;
pub use filter::{Filter, Verdict};
pub use syntax::PatternError;

#[cfg(test)]
mod testing {
    /// A deterministic generator (an LCG), so failures reproduce without a property-test crate.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(self.0 >> 33).expect("31 bits fit") % n
        }

        pub(super) fn string(&mut self, pieces: &[&str], max: usize) -> String {
            (0..self.below(max + 1))
                .map(|_| pieces[self.below(pieces.len())])
                .collect()
        }
    }
}
