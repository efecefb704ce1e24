//! Hardlinks as one inode with several names: grouped, given the stat Docker's own extraction
//! leaves on the inode, and served as one link group.

use buildkit::{Entry, SourceTree};
use tar::{EntryType, Header};

use super::{index_bytes, read, Archive};

/// One header of a test tar: kind, path, link target, mode, mtime (seconds) and bytes.
type H<'a> = (EntryType, &'a str, &'a str, u32, u64, &'a str);

fn file<'a>(path: &'a str, mode: u32, mtime: u64, data: &'static str) -> H<'a> {
    (EntryType::Regular, path, "", mode, mtime, data)
}

fn hard<'a>(path: &'a str, target: &'a str, mode: u32, mtime: u64) -> H<'a> {
    (EntryType::Link, path, target, mode, mtime, "")
}

fn archive(headers: &[H<'_>]) -> Archive {
    let mut builder = tar::Builder::new(Vec::new());
    let config = br#"{"image":"a/b"}"#;
    let all = [
        &[
            (
                EntryType::Regular,
                "com.openfaas.docker.config",
                "",
                0o644,
                1,
                std::str::from_utf8(config).unwrap(),
            ),
            file("context/Dockerfile", 0o644, 1, "FROM scratch\n"),
        ][..],
        headers,
    ]
    .concat();
    for (kind, path, target, mode, mtime, data) in all {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_size(data.len() as u64);
        if kind == EntryType::Link {
            builder.append_link(&mut header, path, target).unwrap();
        } else {
            builder
                .append_data(&mut header, path, data.as_bytes())
                .unwrap();
        }
    }
    index_bytes(&builder.into_inner().unwrap()).unwrap()
}

fn served(archive: &Archive, path: &str) -> Entry {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    archive
        .read_dir(dir)
        .unwrap()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap()
}

#[test]
fn names_of_one_inode_share_a_link_group_and_lone_files_have_none() {
    let archive = archive(&[
        file("context/a", 0o640, 1_600_000_000, "data-a\n"),
        hard("context/sub/b", "context/a", 0o640, 1_600_000_000),
        hard("context/z/c", "./context/sub/b", 0o640, 1_600_000_000),
        file("context/other", 0o644, 1_600_000_000, "other\n"),
        hard("context/other2", "context/other", 0o644, 1_600_000_000),
    ]);
    let group = |path| served(&archive, path).link_group;
    assert!(group("a").is_some());
    assert_eq!(group("sub/b"), group("a"));
    assert_eq!(
        group("z/c"),
        group("a"),
        "a link to a link is one more name"
    );
    assert!(group("other").is_some());
    assert_ne!(group("other"), group("a"));
    assert_eq!(group("other2"), group("other"));
    assert_eq!(group("Dockerfile"), None);
    assert_eq!(read(&archive, "z/c"), "data-a\n");
}

/// What Docker's tar build showed on the bed (dockerd 20.10 with `POST /build?version=2`, and
/// buildkitd v0.24 with an HTTP tar context): one inode, whose mode and mtime are the last
/// header's that names it, on every name.
#[test]
fn the_last_header_naming_an_inode_sets_its_mode_and_mtime_on_every_name() {
    let archive = archive(&[
        file("context/a", 0o640, 1_600_000_000, "data-a\n"),
        hard("context/sub/b", "context/a", 0o755, 1_700_000_000),
        hard("context/z/c", "context/a", 0o4600, 1_650_000_000),
    ]);
    let a = served(&archive, "a");
    assert_eq!(a.permissions, 0o4600);
    assert_eq!(a.mtime_ns.div_euclid(1_000_000_000), 1_650_000_000);
    for path in ["sub/b", "z/c"] {
        let link = served(&archive, path);
        assert_eq!(
            (link.permissions, link.mtime_ns, link.size, link.link_group),
            (a.permissions, a.mtime_ns, a.size, a.link_group),
            "{path}"
        );
    }
    // The nanoseconds still come from the content, so an edit with the same size and mtimes
    // still shows.
    let edited = archive_with_content("data-b\n");
    assert_ne!(served(&edited, "z/c").mtime_ns, a.mtime_ns);
}

fn archive_with_content(data: &'static str) -> Archive {
    archive(&[
        file("context/a", 0o640, 1_600_000_000, data),
        hard("context/sub/b", "context/a", 0o755, 1_700_000_000),
        hard("context/z/c", "context/a", 0o4600, 1_650_000_000),
    ])
}

#[test]
fn a_name_replaced_by_a_later_file_leaves_the_inode_and_its_stat() {
    let archive = archive(&[
        file("context/a", 0o640, 1_600_000_000, "old\n"),
        hard("context/b", "context/a", 0o600, 1_600_000_000),
        // `a` is a new inode now; `b` alone keeps the old one, and the old one's mode.
        file("context/a", 0o644, 1_600_000_000, "new\n"),
        hard("context/c", "context/a", 0o644, 1_600_000_000),
    ]);
    let (a, b, c) = (
        served(&archive, "a"),
        served(&archive, "b"),
        served(&archive, "c"),
    );
    assert_eq!(b.link_group, None, "the old inode has one name left");
    assert_eq!(b.permissions, 0o600);
    assert_eq!(read(&archive, "b"), "old\n");
    assert!(a.link_group.is_some());
    assert_eq!(c.link_group, a.link_group);
    assert_eq!(read(&archive, "c"), "new\n");
    assert_eq!(a.permissions, 0o644);
}
