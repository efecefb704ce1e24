//! Each request's temp dir under `work_dir`, named so that a later process can tell its
//! predecessors' leftovers from another live builder's dirs.

use std::path::Path;

/// Names of request temp dirs: `fb-build-<pid>-<random>`, so that a later process can tell its
/// predecessors' leftovers from another live builder's dirs.
const TEMP_PREFIX: &str = "fb-build-";

/// The spooled body's name in a request's temp dir.
pub(crate) const SPOOL_NAME: &str = "request.tar";

/// A new request temp dir in `work_dir`.
pub(crate) fn create(work_dir: &Path) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .tempdir_in(work_dir)
}

/// Removes the request temp dirs that an earlier builder process left in `work_dir` (after a
/// kill or an OOM): ours by name, whose process is gone or is this one (a restarted container
/// gets its old pid back). Returns how many it removed.
pub(crate) fn remove_leftovers(work_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid != me && Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_gone_processes_and_of_this_pid_are_removed_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        for name in [
            format!("{TEMP_PREFIX}{me}-abc"),
            format!("{TEMP_PREFIX}4000000-abc"),
            format!("{TEMP_PREFIX}{parent}-live"),
            "unrelated".to_owned(),
        ] {
            std::fs::create_dir(dir.path().join(&name)).unwrap();
            std::fs::write(dir.path().join(name).join("request.tar"), "x").unwrap();
        }
        assert_eq!(remove_leftovers(dir.path()), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!("{TEMP_PREFIX}{parent}-live"),
                "unrelated".to_owned()
            ]
        );
    }
}
