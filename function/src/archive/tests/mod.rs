//! The index against hostile archives, and the property that whatever it accepts, the kernel
//! itself would resolve inside the context.

use std::io::{Read, Write};
use std::path::Path;

use buildkit::{EntryKind, SourceTree};
use proptest::prelude::*;
use tar::{EntryType, Header};

use super::{Archive, Kind, Limits};

const LIMITS: Limits = Limits {
    entries: 1000,
    bytes: 1 << 20,
};

/// One entry of a test tar.
#[derive(Debug, Clone)]
enum E {
    File(String, Vec<u8>),
    Dir(String),
    Link(String, String),
    Hard(String, String),
    Fifo(String),
}

fn file(path: &str, data: &str) -> E {
    E::File(path.to_owned(), data.as_bytes().to_vec())
}

fn link(path: &str, target: &str) -> E {
    E::Link(path.to_owned(), target.to_owned())
}

fn hard(path: &str, target: &str) -> E {
    E::Hard(path.to_owned(), target.to_owned())
}

/// A GNU tar of `entries` (long names become GNU long-name records).
fn tar(entries: &[E]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = Header::new_gnu();
        header.set_mtime(1_700_000_000);
        let (path, kind, data, target): (&str, EntryType, &[u8], Option<&str>) = match entry {
            E::File(p, d) => (p, EntryType::Regular, d, None),
            E::Dir(p) => (p, EntryType::Directory, &[], None),
            E::Link(p, t) => (p, EntryType::Symlink, &[], Some(t)),
            E::Hard(p, t) => (p, EntryType::Link, &[], Some(t)),
            E::Fifo(p) => (p, EntryType::Fifo, &[], None),
        };
        header.set_entry_type(kind);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        match target {
            // The crate refuses to write an empty target; a header without one is that.
            Some("") => builder.append_data(&mut header, path, data).unwrap(),
            Some(target) => builder.append_link(&mut header, path, target).unwrap(),
            None => builder.append_data(&mut header, path, data).unwrap(),
        }
    }
    builder.into_inner().unwrap()
}

fn with_config(mut entries: Vec<E>) -> Vec<E> {
    entries.insert(0, file("com.openfaas.docker.config", r#"{"image":"a/b"}"#));
    entries
}

fn index_bytes(bytes: &[u8]) -> Result<Archive, String> {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("request.tar");
    std::fs::write(&spool, bytes).unwrap();
    Archive::index(&spool, "Dockerfile", LIMITS).map_err(|e| e.to_string())
}

fn index(entries: Vec<E>) -> Result<Archive, String> {
    index_bytes(&tar(&with_config(entries)))
}

fn read(archive: &Archive, path: &str) -> String {
    let mut out = String::new();
    archive
        .open(path)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn dockerfile() -> E {
    file("context/Dockerfile", "FROM scratch\n")
}

#[test]
fn serves_files_dirs_and_links_from_the_spool() {
    let archive = index(vec![
        dockerfile(),
        file("./context/src/main.rs", "fn main() {}\n"),
        link("context/current", "src/main.rs"),
        hard("context/copy", "./context/src/main.rs"),
    ])
    .unwrap();
    let mut root: Vec<_> = archive
        .read_dir("")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    root.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        root,
        [
            ("Dockerfile".to_owned(), EntryKind::File),
            ("copy".to_owned(), EntryKind::File),
            (
                "current".to_owned(),
                EntryKind::Symlink {
                    target: "src/main.rs".to_owned()
                }
            ),
            ("src".to_owned(), EntryKind::Dir),
        ]
    );
    assert_eq!(read(&archive, "src/main.rs"), "fn main() {}\n");
    assert_eq!(
        read(&archive, "copy"),
        "fn main() {}\n",
        "a hardlink serves the file it aliases"
    );
    assert!(
        archive.open("current").is_err(),
        "symlinks are never followed by us"
    );
    assert!(archive.open("../request.tar").is_err());
}

#[test]
fn same_size_same_mtime_different_bytes_get_different_mtimes() {
    let a = index(vec![dockerfile(), file("context/f", "aaaa")]).unwrap();
    let b = index(vec![dockerfile(), file("context/f", "bbbb")]).unwrap();
    let mtime = |x: &Archive| x.nodes()["f"].mtime_ns;
    assert_ne!(mtime(&a), mtime(&b));
    assert_eq!(mtime(&a) / 1_000_000_000, 1_700_000_000);
}

/// `l0 -> .`, `l1 -> l0/..`, … : each link alone looks inside, together they climb out.
fn climbing_chain(n: usize) -> Vec<E> {
    let mut entries = vec![dockerfile(), link("context/l0", ".")];
    for i in 1..n {
        entries.push(link(&format!("context/l{i}"), &format!("l{}/..", i - 1)));
    }
    entries
}

#[test]
fn hostile_archives_are_refused_naming_the_entry() {
    let long_component = "x".repeat(300);
    let cases: Vec<(&str, Vec<E>, &str)> = vec![
        (
            "a chain of links that climbs out together",
            climbing_chain(15),
            "entry \"context/l1\": symlink target \"l0/..\" escapes the context",
        ),
        (
            "a hardlink through the chain",
            {
                let mut e = climbing_chain(3);
                e.retain(|e| !matches!(e, E::Link(p, _) if p != "context/l0"));
                e.push(hard("context/loot", "context/l0/../../../etc/passwd"));
                e
            },
            "`..` is not allowed",
        ),
        (
            "a hardlink whose target passes through a symlink",
            vec![
                dockerfile(),
                link("context/d", "."),
                file("context/real", "x"),
                hard("context/loot", "context/d/real"),
            ],
            "entry \"context/loot\": hardlink target \"context/d/real\" is not an earlier file in context/",
        ),
        (
            "a hardlink to a later file",
            vec![dockerfile(), hard("context/a", "context/b"), file("context/b", "x")],
            "hardlink target \"context/b\" is not an earlier file in context/",
        ),
        (
            "a hardlink to a directory",
            vec![dockerfile(), E::Dir("context/d".into()), hard("context/a", "context/d")],
            "hardlink target \"context/d\" is not an earlier file in context/",
        ),
        (
            "a hardlink to the config",
            vec![dockerfile(), hard("context/a", "com.openfaas.docker.config")],
            "is not an earlier file in context/",
        ),
        (
            "a link through a link to a parent",
            vec![
                dockerfile(),
                E::Dir("context/a/b".into()),
                link("context/a/b/up", "../.."),
                link("context/x", "a/b/up/.."),
            ],
            "entry \"context/x\": symlink target \"a/b/up/..\" escapes the context",
        ),
        (
            "a link that escapes only through a later link",
            vec![dockerfile(), link("context/y", "later/../.."), link("context/later", "sub")],
            "entry \"context/y\": symlink target \"later/../..\" escapes the context",
        ),
        (
            "a link cycle",
            vec![dockerfile(), link("context/a", "b"), link("context/b", "a")],
            "entry \"context/a\": symlink target \"b\" passes through more than 40 symlinks",
        ),
        (
            "an absolute link",
            vec![dockerfile(), link("context/a", "/etc/passwd")],
            "entry \"context/a\": symlink target \"/etc/passwd\" escapes the context",
        ),
        (
            "a Dockerfile that links outside",
            vec![link("context/Dockerfile", "../../etc/passwd")],
            "entry \"context/Dockerfile\": symlink target \"../../etc/passwd\" escapes the context",
        ),
        (
            "a Dockerfile that is a directory",
            vec![E::Dir("context/Dockerfile".into()), file("context/Dockerfile/x", "y")],
            "context/Dockerfile is not a regular file",
        ),
        (
            "a Dockerfile link that dangles",
            vec![link("context/Dockerfile", "nothing")],
            "context/Dockerfile not found",
        ),
        (
            "a directory symlink as the parent of a later entry",
            vec![dockerfile(), E::Dir("context/sub".into()), link("context/d", "sub"), file("context/d/f", "x")],
            "entry \"context/d/f\": parent context/d is a symlink",
        ),
        (
            "a file as the parent of a later entry",
            vec![dockerfile(), file("context/f", "x"), file("context/f/g", "y")],
            "entry \"context/f/g\": parent context/f is not a directory",
        ),
        (
            "a file replacing a directory",
            vec![dockerfile(), file("context/d/x", "x"), file("context/d", "y")],
            "entry \"context/d\": replaces a directory",
        ),
        (
            "a directory replacing a file",
            vec![dockerfile(), file("context/d", "y"), E::Dir("context/d".into())],
            "entry \"context/d\": a directory replaces a file or link",
        ),
        ("a fifo", vec![dockerfile(), E::Fifo("context/p".into())], "entry \"context/p\": only files, directories and links are allowed, not Fifo"),
        (
            "a name component too long for any filesystem",
            vec![dockerfile(), file(&format!("context/{long_component}"), "x")],
            "a name component is longer than 255 bytes",
        ),
        (
            "an entry outside context/",
            vec![dockerfile(), file("etc/passwd", "x")],
            "entry \"etc/passwd\" is outside context/",
        ),
        (
            "context itself a symlink",
            vec![link("context", "/"), dockerfile()],
            "entry \"context\": must be a directory",
        ),
        (
            "an empty symlink target",
            vec![dockerfile(), link("context/e", "")],
            "entry \"context/e\": symlink has an empty target",
        ),
    ];
    for (name, entries, want) in cases {
        match index(entries) {
            Ok(_) => panic!("{name}: accepted"),
            Err(got) => assert!(got.contains(want), "{name}: {got:?} lacks {want:?}"),
        }
    }
}

#[test]
fn links_that_stay_inside_are_kept_as_links() {
    let archive = index(vec![
        file("context/real/Dockerfile", "FROM scratch\n"),
        link("context/Dockerfile", "real/Dockerfile"),
        link("context/a", "b/../real"),
        link("context/b", "real"),
        link("context/dangling", "nowhere"),
    ])
    .unwrap();
    assert_eq!(
        archive.nodes()["Dockerfile"].kind,
        Kind::Symlink {
            target: "real/Dockerfile".into()
        }
    );
}

#[test]
fn later_entries_replace_earlier_ones_of_the_same_kind() {
    let archive = index(vec![
        dockerfile(),
        file("context/f", "first"),
        file("context/f", "second"),
        link("context/l", "f"),
        link("context/l", "Dockerfile"),
    ])
    .unwrap();
    assert_eq!(read(&archive, "f"), "second");
    assert_eq!(
        archive.nodes()["l"].kind,
        Kind::Symlink {
            target: "Dockerfile".into()
        }
    );
}

/// A tar whose one entry is the Dockerfile, with `edit` applied to its header.
fn tar_with_header(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let config = br#"{"image":"a/b"}"#;
    let mut header = Header::new_gnu();
    header.set_size(config.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "com.openfaas.docker.config", &config[..])
        .unwrap();
    let mut header = Header::new_gnu();
    header.set_path("context/Dockerfile").unwrap();
    header.set_size(5);
    header.set_mode(0o644);
    edit(&mut header);
    header.set_cksum();
    builder.append(&header, &b"FROM "[..]).unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn header_fields_that_do_not_fit_are_refused() {
    // A base-256 mtime far beyond what a timestamp holds.
    let huge = tar_with_header(|h| {
        let mtime = &mut h.as_gnu_mut().unwrap().mtime;
        mtime.fill(0xff);
        mtime[0] = 0x80;
    });
    let err = index_bytes(&huge).err().unwrap();
    assert!(
        err.contains("entry \"context/Dockerfile\": mtime out of range"),
        "{err}"
    );

    // A negative base-256 mtime.
    let negative = tar_with_header(|h| h.as_gnu_mut().unwrap().mtime.fill(0xff));
    assert!(index_bytes(&negative).err().unwrap().contains("mtime"));
}

#[test]
fn long_names_and_pax_records_are_bounded_before_they_are_read() {
    // A GNU long name of 8 KiB: refused from its header, before its data is read.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::GNULongName);
    header.set_path("././@LongLink").unwrap();
    header.set_size(8192);
    header.set_cksum();
    builder.append(&header, &vec![b'a'; 8192][..]).unwrap();
    let err = index_bytes(&builder.into_inner().unwrap()).err().unwrap();
    assert!(
        err.contains("GNULongName record of 8192 bytes is larger than 4097 bytes"),
        "{err}"
    );

    // A PAX header of 1 MiB.
    let mut builder = tar::Builder::new(Vec::new());
    let value = "v".repeat(1 << 20);
    builder
        .append_pax_extensions([("comment", value.as_bytes())])
        .unwrap();
    let err = index_bytes(&builder.into_inner().unwrap()).err().unwrap();
    assert!(err.contains("larger than 65536 bytes"), "{err}");

    // A PAX path within bounds names the entry.
    let mut builder = tar::Builder::new(Vec::new());
    let config = br#"{"image":"a/b"}"#;
    let mut header = Header::new_ustar();
    header.set_size(config.len() as u64);
    builder
        .append_data(&mut header, "com.openfaas.docker.config", &config[..])
        .unwrap();
    let long = format!("context/{}/Dockerfile", "d".repeat(200));
    builder
        .append_pax_extensions([("path", long.as_bytes())])
        .unwrap();
    let mut header = Header::new_ustar();
    header.set_path("short").unwrap();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, &b"FROM "[..]).unwrap();
    let archive = index_bytes(&builder.into_inner().unwrap());
    let err = archive.err().unwrap();
    assert!(
        err.contains("context/Dockerfile not found"),
        "the PAX path was used: {err}"
    );
}

#[test]
fn a_pax_size_that_disagrees_with_the_header_is_refused() {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("size", &b"99"[..])])
        .unwrap();
    let mut header = Header::new_ustar();
    header.set_path("context/Dockerfile").unwrap();
    header.set_size(5);
    header.set_cksum();
    builder.append(&header, &b"FROM "[..]).unwrap();
    let err = index_bytes(&builder.into_inner().unwrap()).err().unwrap();
    assert!(
        err.contains("PAX size disagrees with the header size"),
        "{err}"
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn gzip_bodies_are_decompressed_once_within_the_limits() {
    let plain = tar(&with_config(vec![dockerfile(), file("context/a", "hello")]));
    let archive = index_bytes(&gzip(&plain)).unwrap();
    assert_eq!(read(&archive, "a"), "hello");

    // Cut short: the tar inside may look complete, the gzip stream is not.
    let whole = gzip(&plain);
    let err = index_bytes(&whole[..whole.len() - 6]).err().unwrap();
    assert!(err.contains("truncated gzip body"), "{err}");

    // A bomb: 64 MiB of zeros decompress past the 1 MiB + 1000 KiB allowance.
    let bomb = gzip(&vec![0; 64 << 20]);
    let err = index_bytes(&bomb).err().unwrap();
    assert!(
        err.contains("the gzip body decompresses to more than 2072576 bytes"),
        "{err}"
    );
}

#[test]
fn limits_count_every_entry_and_byte() {
    let many: Vec<E> = (0..1001)
        .map(|i| file(&format!("context/f{i}"), ""))
        .collect();
    assert!(index(many)
        .err()
        .unwrap()
        .contains("the tar has more than 1000 entries"));
    let big = vec![
        dockerfile(),
        E::File("context/big".into(), vec![0; (1 << 20) + 1]),
    ];
    assert!(index(big)
        .err()
        .unwrap()
        .contains("the context unpacks to more than 1048576 bytes"));
}

// -- property: whatever is accepted stays inside, as the kernel resolves it ------------------

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("l")].prop_map(str::to_owned)
}

fn rel_path() -> impl Strategy<Value = String> {
    prop::collection::vec(name(), 1..4).prop_map(|p| p.join("/"))
}

fn target() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just("..".to_owned()), Just(".".to_owned()), name()],
        1..6,
    )
    .prop_map(|p| p.join("/"))
}

fn entry() -> impl Strategy<Value = E> {
    prop_oneof![
        rel_path().prop_map(|p| E::File(format!("context/{p}"), b"x".to_vec())),
        rel_path().prop_map(|p| E::Dir(format!("context/{p}"))),
        (rel_path(), target()).prop_map(|(p, t)| E::Link(format!("context/{p}"), t)),
        (rel_path(), rel_path())
            .prop_map(|(p, t)| E::Hard(format!("context/{p}"), format!("context/{t}"))),
    ]
}

/// Lays the accepted index out on disk, so that the kernel can judge where its paths lead.
fn materialise(archive: &Archive, root: &Path) {
    for (path, node) in archive.nodes() {
        let at = root.join(path);
        match &node.kind {
            Kind::Dir => std::fs::create_dir_all(&at).unwrap(),
            Kind::File { .. } => std::fs::write(&at, "x").unwrap(),
            Kind::Symlink { target } => std::os::unix::fs::symlink(target, &at).unwrap(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_path_an_accepted_archive_serves_resolves_inside(entries in prop::collection::vec(entry(), 0..12)) {
        let mut entries = entries;
        entries.insert(0, dockerfile());
        let Ok(archive) = index(entries) else { return Ok(()) };
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("context");
        std::fs::create_dir(&root).unwrap();
        materialise(&archive, &root);
        let root = root.canonicalize().unwrap();
        for path in archive.nodes().keys() {
            if let Ok(real) = root.join(path).canonicalize() {
                prop_assert!(real.starts_with(&root), "{path} -> {}", real.display());
            }
        }
    }
}

#[test]
fn links_crafted_to_be_slow_to_resolve_are_refused_within_a_bound() {
    // A dir 1,000 deep and 200 links into its bottom: each resolution looks up 1,000 ever
    // longer paths (~1 MB of path bytes), together far past the budget.
    let deep = vec!["a"; 1000].join("/");
    let mut entries = vec![dockerfile(), E::Dir(format!("context/{deep}"))];
    entries.extend((0..200).map(|i| link(&format!("context/l{i}"), &deep)));
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("request.tar");
    std::fs::write(&spool, tar(&with_config(entries))).unwrap();
    let limits = Limits {
        entries: 10_000,
        bytes: 64 << 20,
    };
    let started = std::time::Instant::now();
    let err = Archive::index(&spool, "Dockerfile", limits)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.ends_with("takes too long to resolve through the archive's links"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any bytes: a clean error or an index, never a panic (the index runs on the blocking pool
    /// beside other builds).
    #[test]
    fn corrupted_archives_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
        gzipped in any::<bool>(),
    ) {
        let mut bytes = tar(&with_config(vec![
            dockerfile(),
            file("context/a/b", "data"),
            link("context/l", "a/b"),
            hard("context/h", "context/a/b"),
            E::Dir("context/d".into()),
            file(&format!("context/{}", "long/".repeat(30)), "x"),
        ]));
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(1));
        if gzipped {
            bytes = gzip(&bytes);
        }
        let _ = index_bytes(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// A tar name is cleaned to its components as written, without `.` and empty ones; anything
    /// that could name a place outside (absolute, `..`), a NUL or an over-long name is refused.
    #[test]
    fn tar_names_clean_to_their_components_or_are_refused(pieces in prop::collection::vec(
        prop_oneof![
            Just("a".to_owned()), Just("b.c".to_owned()), Just("/".to_owned()), Just(".".to_owned()),
            Just("..".to_owned()), Just("...".to_owned()), Just("\0".to_owned()), Just("x".repeat(256)),
        ],
        0..8,
    )) {
        let raw = pieces.concat();
        let components: Vec<&str> = raw.split('/').filter(|p| !matches!(*p, "" | ".")).collect();
        let hostile = raw.starts_with('/')
            || components.iter().any(|p| *p == ".." || p.contains('\0') || p.len() > 255)
            || raw.len() > 4096;
        match super::tree::clean(&raw) {
            Ok(parts) => {
                prop_assert!(!hostile, "{:?} accepted as {:?}", raw, parts);
                prop_assert_eq!(parts, components);
            }
            Err(err) => prop_assert!(hostile, "{:?} refused: {}", raw, err),
        }
    }
}

mod hardlinks;
