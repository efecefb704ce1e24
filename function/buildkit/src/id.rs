//! Random ids for sessions and builds: 25 base-36 characters like BuildKit's, never with `:`
//! (the daemon cuts a session id at the first `:`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new id; unique within the process and unpredictable across processes.
pub(crate) fn new() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS per instance: enough for ids that are not secrets.
    let random = |salt: u64| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(count);
        hasher.write_u64(salt);
        hasher.finish()
    };
    let mut value = u128::from(random(1)) << 64 | u128::from(random(2));
    (0..25)
        .map(|_| {
            let digit = (value % 36) as usize;
            value /= 36;
            ALPHABET[digit] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_25_base36_chars_and_differ() {
        let a = super::new();
        let b = super::new();
        assert_eq!(a.len(), 25);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
            "{a}"
        );
        assert_ne!(a, b);
    }
}
