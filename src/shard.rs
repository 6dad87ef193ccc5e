//! Fleets: `--shard K/N` takes a deterministic 1/N of the selected runtimes, so N machines
//! or pods split a prewarm with no coordinator. A runtime belongs to the shard with the
//! highest blake3 weight of (its name, the shard number) (rendezvous hashing): the answer
//! depends on the name and N only, so adding or removing a runtime moves no other one, and
//! changing N moves only the runtimes the new or removed shards win or lose.
//!
//! `K` counts from 1 (`1/3`, `2/3`, `3/3`). `auto/N` takes K from `JOB_COMPLETION_INDEX`,
//! which a Kubernetes Indexed Job sets from 0: shard `JOB_COMPLETION_INDEX + 1`.

use std::fmt;

/// The variable `auto/N` reads (0-based, as Kubernetes Indexed Jobs set it).
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// More shards than this is a typo, not a fleet.
pub const MAX_SHARDS: u32 = 4096;

const HELP: &str = "pass --shard K/N with 1 <= K <= N (e.g. --shard 2/3), or --shard auto/N in a Kubernetes Indexed Job (K = JOB_COMPLETION_INDEX + 1)";

/// One shard of a fleet: number `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Parses `K/N` or `auto/N` (`index` answers the env variable [`INDEX_ENV`]).
    pub fn parse(text: &str, index: Option<&str>) -> Result<Shard, String> {
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not K/N\n  help: {HELP}"))?;
        let count = match n.trim().parse::<u32>() {
            Ok(n @ 1..=MAX_SHARDS) => n,
            _ => {
                return Err(format!(
                    "N in {text:?} must be a whole number from 1 to {MAX_SHARDS}\n  help: {HELP}"
                ));
            }
        };
        let index = match k.trim() {
            "auto" => from_env(index, count)?,
            k => k.parse::<u32>().map_err(|_| {
                format!("K in {text:?} must be a whole number or auto\n  help: {HELP}")
            })?,
        };
        if !(1..=count).contains(&index) {
            return Err(format!(
                "shard {index} of {count} does not exist: K counts from 1 to N\n  help: {HELP}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether the runtime `name` belongs to this shard.
    pub fn holds(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }
}

/// K from `JOB_COMPLETION_INDEX` (0-based): its value + 1.
fn from_env(value: Option<&str>, count: u32) -> Result<u32, String> {
    let value = value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        format!(
            "--shard auto/{count} takes K from {INDEX_ENV}, which is unset\n  help: run it in a Kubernetes Indexed Job (completionMode: Indexed), set {INDEX_ENV}=0..{}, or pass K/N",
            count - 1
        )
    })?;
    match value.trim().parse::<u32>() {
        Ok(i) if i < count => Ok(i + 1),
        _ => Err(format!(
            "{INDEX_ENV}={value:?} is not an index from 0 to {} for --shard auto/{count}\n  help: give the Job as many completions as shards (completions: {count}), or pass K/N",
            count - 1
        )),
    }
}

/// The shard (from 1) of `count` that the runtime `name` belongs to.
pub fn owner(name: &str, count: u32) -> u32 {
    (1..=count)
        .max_by_key(|&k| (weight(name, k), std::cmp::Reverse(k)))
        .unwrap_or(1)
}

/// The rendezvous weight of `name` on shard `k`.
fn weight(name: &str, k: u32) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&k.to_le_bytes());
    hasher.update(name.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("runtime-{i}")).collect()
    }

    #[test]
    fn every_runtime_is_in_exactly_one_shard() {
        let all = names(500);
        for count in [1, 2, 3, 7, 16] {
            let mut seen = vec![0usize; all.len()];
            for index in 1..=count {
                let shard = Shard { index, count };
                for (i, name) in all.iter().enumerate() {
                    if shard.holds(name) {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "N={count}: {seen:?}");
        }
    }

    #[test]
    fn shards_are_balanced_roughly() {
        let all = names(3000);
        for index in 1..=3 {
            let shard = Shard { index, count: 3 };
            let held = all.iter().filter(|n| shard.holds(n)).count();
            assert!((800..1200).contains(&held), "shard {index}: {held}");
        }
    }

    #[test]
    fn adding_a_runtime_moves_no_other_and_changing_n_moves_few() {
        let all = names(1000);
        let before: Vec<u32> = all.iter().map(|n| owner(n, 4)).collect();
        let mut more = all.clone();
        more.push("newcomer".into());
        let after: Vec<u32> = more.iter().map(|n| owner(n, 4)).collect();
        assert_eq!(before[..], after[..1000]);
        // 4 -> 5 shards: only what shard 5 wins moves (about a fifth).
        let moved = all
            .iter()
            .filter(|n| owner(n, 4) != owner(n, 5))
            .inspect(|n| assert_eq!(owner(n, 5), 5, "{n} moved between old shards"))
            .count();
        assert!((100..300).contains(&moved), "{moved}");
    }

    #[test]
    fn parsing_and_its_errors() {
        assert_eq!(Shard::parse("2/3", None), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(
            Shard::parse("auto/3", Some("0")),
            Ok(Shard { index: 1, count: 3 })
        );
        assert_eq!(
            Shard::parse("auto/3", Some("2")),
            Ok(Shard { index: 3, count: 3 })
        );
        for (bad, env, want) in [
            ("3", None, "is not K/N"),
            ("0/3", None, "counts from 1"),
            ("4/3", None, "counts from 1"),
            ("1/0", None, "from 1 to 4096"),
            ("x/3", None, "whole number or auto"),
            ("auto/3", None, "which is unset"),
            ("auto/3", Some("3"), "not an index from 0 to 2"),
            ("auto/3", Some("-1"), "not an index"),
        ] {
            let err = Shard::parse(bad, env).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
            assert!(err.contains("help: "), "{bad}: {err}");
        }
    }
}
