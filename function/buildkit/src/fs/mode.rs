//! Go's `os.FileMode` bits, which fsutil sends instead of `st_mode`.

use super::EntryKind;

const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_SETUID: u32 = 1 << 23;
const MODE_SETGID: u32 = 1 << 22;
const MODE_STICKY: u32 = 1 << 20;

/// The `mode` of a STAT packet for an entry of `kind` with Unix `permissions` (`& 0o7777`).
/// A raw `st_mode` would make directories look like files to the daemon, whose validator then
/// rejects their children as "changes out of order".
pub(crate) fn go_mode(kind: &EntryKind, permissions: u32) -> u32 {
    let mut mode = permissions & 0o777;
    if permissions & 0o4000 != 0 {
        mode |= MODE_SETUID;
    }
    if permissions & 0o2000 != 0 {
        mode |= MODE_SETGID;
    }
    if permissions & 0o1000 != 0 {
        mode |= MODE_STICKY;
    }
    match kind {
        EntryKind::Dir => mode | MODE_DIR,
        EntryKind::Symlink { .. } => mode | MODE_SYMLINK,
        EntryKind::File | EntryKind::Other => mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_file_mode_values() {
        let link = EntryKind::Symlink { target: "x".into() };
        assert_eq!(go_mode(&EntryKind::File, 0o644), 420);
        assert_eq!(go_mode(&EntryKind::File, 0o755), 493);
        assert_eq!(go_mode(&EntryKind::Dir, 0o755), 2_147_484_141);
        assert_eq!(go_mode(&link, 0o777), 134_218_239);
        assert_eq!(go_mode(&EntryKind::File, 0o4755), MODE_SETUID | 0o755);
        assert_eq!(
            go_mode(&EntryKind::Dir, 0o1777),
            MODE_DIR | MODE_STICKY | 0o777
        );
        assert_eq!(go_mode(&EntryKind::File, 0o2750), MODE_SETGID | 0o750);
    }
}
