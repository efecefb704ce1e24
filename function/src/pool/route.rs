//! Which daemon runs a build: rendezvous (highest-random-weight) hashing of the build's routing
//! key over the daemons that are up, with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
//! "Consistent Hashing with Bounded Loads", 2016). Pure functions of names, loads and the key.

use xxhash_rust::xxh3::xxh3_64;

/// A daemon as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate<'a> {
    /// Its stable name.
    pub(crate) name: &'a str,
    /// This builder's builds running on it.
    pub(crate) load: usize,
}

/// `key`'s weight on the daemon `name`: each key ranks the daemons in an order of its own, and
/// removing a daemon moves only the keys it ranked first.
fn weight(name: &str, key: &str) -> u64 {
    let mut bytes = Vec::with_capacity(name.len() + key.len() + 1);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.as_bytes());
    xxh3_64(&bytes)
}

/// The daemons in `key`'s order, heaviest weight first (ties by name, so every replica of the
/// builder agrees).
pub(crate) fn order<'a>(key: &str, candidates: &[Candidate<'a>]) -> Vec<Candidate<'a>> {
    let mut ranked = candidates.to_vec();
    ranked.sort_by(|a, b| {
        weight(b.name, key)
            .cmp(&weight(a.name, key))
            .then_with(|| a.name.cmp(b.name))
    });
    ranked
}

/// The daemon for a new build of `key`: the first in its order not already running more than
/// ⌈`factor` × mean⌉ of this builder's builds. Some daemon always qualifies (not every daemon
/// can be above the mean); `None` only without candidates.
pub(crate) fn pick<'a>(
    key: &str,
    candidates: &[Candidate<'a>],
    factor: f64,
) -> Option<Candidate<'a>> {
    let total: usize = candidates.iter().map(|c| c.load).sum();
    #[allow(clippy::cast_precision_loss)]
    let mean = total as f64 / candidates.len().max(1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bound = (factor * mean).ceil() as usize;
    let ranked = order(key, candidates);
    ranked
        .iter()
        .find(|c| c.load <= bound)
        .or(ranked.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemons(names: &[&'static str]) -> Vec<Candidate<'static>> {
        names
            .iter()
            .map(|name| Candidate { name, load: 0 })
            .collect()
    }

    fn first(key: &str, candidates: &[Candidate<'static>]) -> &'static str {
        pick(key, candidates, 1.25).unwrap().name
    }

    #[test]
    fn a_key_lands_on_the_same_daemon_and_removing_one_moves_only_its_keys() {
        let three = daemons(&["buildkitd-0", "buildkitd-1", "buildkitd-2"]);
        let two = daemons(&["buildkitd-0", "buildkitd-2"]);
        let keys: Vec<String> = (0..1000).map(|i| format!("tenant/fn-{i}")).collect();
        for key in &keys {
            assert_eq!(first(key, &three), first(key, &three));
            let before = first(key, &three);
            if before != "buildkitd-1" {
                assert_eq!(first(key, &two), before, "{key} moved");
            }
        }
        let four = daemons(&["buildkitd-0", "buildkitd-1", "buildkitd-2", "buildkitd-3"]);
        let moved = keys
            .iter()
            .filter(|k| first(k, &three) != first(k, &four))
            .count();
        // About a quarter move, all of them to the new daemon.
        assert!((180..320).contains(&moved), "{moved} of 1000 moved");
        for key in &keys {
            if first(key, &three) != first(key, &four) {
                assert_eq!(first(key, &four), "buildkitd-3");
            }
        }
    }

    #[test]
    fn keys_spread_evenly() {
        let three = daemons(&["a", "b", "c"]);
        for name in ["a", "b", "c"] {
            let n = (0..3000)
                .filter(|i| first(&format!("k{i}"), &three) == name)
                .count();
            assert!((850..1150).contains(&n), "{name}: {n}");
        }
    }

    #[test]
    fn a_daemon_above_the_bound_passes_the_build_to_the_next_in_the_keys_order() {
        let mut three = daemons(&["a", "b", "c"]);
        let key = "tenant/fn";
        let ranked: Vec<&str> = order(key, &three).iter().map(|c| c.name).collect();
        let load = |cs: &mut Vec<Candidate<'static>>, name: &str, n: usize| {
            cs.iter_mut().find(|c| c.name == name).unwrap().load = n;
        };
        // 2 builds on its first daemon, none elsewhere: more than ⌈1.25 × 2/3⌉ = 1, so the next.
        load(&mut three, ranked[0], 2);
        assert_eq!(first(key, &three), ranked[1]);
        // 1 build there: not more than ⌈1.25 × 1/3⌉ = 1, so it stays.
        load(&mut three, ranked[0], 1);
        assert_eq!(first(key, &three), ranked[0]);
        // Everyone busy alike: the key's own daemon again.
        for name in ["a", "b", "c"] {
            load(&mut three, name, 4);
        }
        assert_eq!(first(key, &three), ranked[0]);
        assert_eq!(pick(key, &[], 1.25), None);
    }

    #[test]
    fn a_burst_of_one_key_spills_in_its_order_and_stays_bounded() {
        let mut cs = daemons(&["a", "b", "c"]);
        let ranked: Vec<&str> = order("one/fn", &cs).iter().map(|c| c.name).collect();
        let mut landed = Vec::new();
        for _ in 0..30 {
            let name = first("one/fn", &cs);
            landed.push(name);
            cs.iter_mut().find(|c| c.name == name).unwrap().load += 1;
            let total: usize = cs.iter().map(|c| c.load).sum();
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let bound = (1.25 * total as f64 / 3.0).ceil() as usize;
            assert!(cs.iter().all(|c| c.load <= bound + 1), "{cs:?}");
        }
        // The first two stay on the key's own daemon; the burst then spills in the key's order.
        assert_eq!(&landed[..3], &[ranked[0], ranked[0], ranked[1]]);
    }
}
