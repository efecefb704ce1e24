//! Archives written by an attacker who holds a valid signature, through the template server,
//! against the bed's real dockerd: every one is refused with the exact status and message, no
//! file outside the request's temp dir is created or read (watched with inotify), nothing is left
//! behind, and a good build running beside them succeeds. A Dockerfile that is a link inside the
//! context builds.

use std::io::Write;
use std::path::Path;

use function_builder_tests::api::Server;
use function_builder_tests::bed::Bed;
use inotify::{Inotify, WatchMask};
use serde_json::Value;
use tar::{EntryType, Header};

/// One entry of a hostile tar.
enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Device(&'a str),
    /// A header exactly as `edit` leaves it, with `data`.
    Raw(&'a str, &'a [u8], fn(&mut Header)),
}

/// A GNU tar of the config, then `entries` (long names become GNU long-name records).
fn tar(config: &str, entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut all = vec![E::File("com.openfaas.docker.config", config.as_bytes())];
    all.extend(entries.iter().map(|e| match e {
        E::File(p, d) => E::File(p, d),
        E::Dir(p) => E::Dir(p),
        E::Link(p, t) => E::Link(p, t),
        E::Hard(p, t) => E::Hard(p, t),
        E::Device(p) => E::Device(p),
        E::Raw(p, d, f) => E::Raw(p, d, *f),
    }));
    for e in &all {
        let mut h = Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_mode(0o644);
        h.set_size(0);
        match e {
            E::File(p, d) => {
                h.set_size(d.len() as u64);
                b.append_data(&mut h, p, *d).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Link(p, t) | E::Hard(p, t) => {
                let kind = if matches!(e, E::Link(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                h.set_entry_type(kind);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Device(p) => {
                h.set_entry_type(EntryType::Char);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Raw(p, d, edit) => {
                h.set_path(p).unwrap();
                h.set_size(d.len() as u64);
                edit(&mut h);
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

async fn post(server: &Server, tar: Vec<u8>) -> (u16, Value) {
    server.post_signed(tar).await
}

/// `context/l0 -> .`, `context/l1 -> l0/..`, …: each alone inside, together `n - 1` levels up.
fn chain(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let target = if i == 0 {
                ".".to_owned()
            } else {
                format!("l{}/..", i - 1)
            };
            (format!("context/l{i}"), target)
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.display().to_string());
        if path.is_dir() && !path.is_symlink() {
            out.extend(files_under(&path));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn hostile_archives_are_refused_and_touch_nothing_outside_their_temp_dir() {
    let bed = Bed::get();
    // <outer>/canary.txt is what the escapes aim at: from <outer>/work/build-*/context, three
    // levels up. The old unpacker let `context/l3/canary.txt` reach it.
    let outer = tempfile::tempdir().unwrap();
    let canary = outer.path().join("canary.txt");
    std::fs::write(&canary, "host secret\n").unwrap();
    let work_dir = outer.path().join("work");
    std::fs::create_dir(&work_dir).unwrap();
    let server = Server::start(&bed, |s| {
        s.work_dir = work_dir.clone();
        s.max_entries = 200;
        s.max_unpacked_bytes = 1 << 20;
    })
    .await;
    let before = files_under(outer.path());
    let mut inotify = Inotify::init().unwrap();
    inotify
        .watches()
        .add(
            outer.path(),
            WatchMask::OPEN | WatchMask::ACCESS | WatchMask::CREATE | WatchMask::MODIFY,
        )
        .unwrap();

    let df = format!("FROM {}\nCOPY . /ctx/\n", bed.base_image);
    let config = r#"{"image":"127.0.0.1:1/hostile/x:1"}"#;
    let chain4 = chain(4);
    let with = |extra: Vec<E<'static>>| -> Vec<u8> {
        let mut entries = vec![E::File("context/Dockerfile", df.as_bytes())];
        entries.extend(extra);
        tar(config, &entries)
    };
    let with_chain = |extra: Vec<E<'static>>| -> Vec<u8> {
        let mut entries = vec![E::File("context/Dockerfile", df.as_bytes())];
        entries.extend(chain4.iter().map(|(p, t)| E::Link(p, t)));
        entries.extend(extra);
        tar(config, &entries)
    };
    let long_component = format!("context/{}", "n".repeat(256));
    let long_component: &'static str = Box::leak(long_component.into_boxed_str());
    let deep_name = format!("context/{}/f", ["d"; 2100].join("/"));
    let deep_name: &'static str = Box::leak(deep_name.into_boxed_str());
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "a chain of links that climbs out only when combined",
            with_chain(vec![]),
            "entry \"context/l1\": symlink target \"l0/..\" escapes the context".into(),
        ),
        (
            "a hardlink through the chain to a host file",
            with_chain(vec![E::Hard("context/loot", "context/l3/canary.txt")]),
            "entry \"context/loot\": hardlink target \"context/l3/canary.txt\" is not an earlier file in context/".into(),
        ),
        (
            "the Dockerfile as a hardlink through the chain",
            {
                let mut entries: Vec<E<'_>> = chain4.iter().map(|(p, t)| E::Link(p, t)).collect();
                entries.push(E::Hard("context/Dockerfile", "context/l3/canary.txt"));
                tar(config, &entries)
            },
            "entry \"context/Dockerfile\": hardlink target \"context/l3/canary.txt\" is not an earlier file in context/".into(),
        ),
        (
            "a link up through a link's parent",
            with(vec![
                E::Dir("context/a/b"),
                E::Link("context/a/b/up", "../.."),
                E::Link("context/x", "a/b/up/.."),
            ]),
            "entry \"context/x\": symlink target \"a/b/up/..\" escapes the context".into(),
        ),
        (
            "a link that climbs out through a link defined after it",
            with(vec![
                E::Link("context/y", "later/../.."),
                E::Link("context/later", "sub"),
                E::Dir("context/sub"),
            ]),
            "entry \"context/y\": symlink target \"later/../..\" escapes the context".into(),
        ),
        (
            "links into a deep dir, then up from it",
            with(vec![
                E::Dir("context/d1/d2/d3"),
                E::Link("context/d1/d2/d3/top", "../../.."),
                E::Link("context/m", "d1/d2/d3/top/../canary.txt"),
            ]),
            "entry \"context/m\": symlink target \"d1/d2/d3/top/../canary.txt\" escapes the context".into(),
        ),
        (
            "a link cycle",
            with(vec![E::Link("context/p", "q"), E::Link("context/q", "p")]),
            "entry \"context/p\": symlink target \"q\" passes through more than 40 symlinks".into(),
        ),
        (
            "an absolute symlink",
            with(vec![E::Link("context/abs", "/etc/passwd")]),
            "entry \"context/abs\": symlink target \"/etc/passwd\" escapes the context".into(),
        ),
        (
            "a Dockerfile that links outside",
            tar(config, &[E::Link("context/Dockerfile", "../../../canary.txt")]),
            "entry \"context/Dockerfile\": symlink target \"../../../canary.txt\" escapes the context".into(),
        ),
        (
            "a Dockerfile link that leads nowhere",
            tar(config, &[E::Link("context/Dockerfile", "missing")]),
            "context/Dockerfile not found".into(),
        ),
        (
            "a directory symlink as the parent of a later entry",
            with(vec![
                E::Link("context/up", "l0"),
                E::Link("context/l0", "."),
                E::File("context/up/planted", b"x"),
            ]),
            "entry \"context/up/planted\": parent context/up is a symlink".into(),
        ),
        (
            "a hardlink to an entry that comes later",
            with(vec![E::Hard("context/a", "context/b"), E::File("context/b", b"x")]),
            "entry \"context/a\": hardlink target \"context/b\" is not an earlier file in context/".into(),
        ),
        (
            "a hardlink with an absolute target",
            with(vec![E::Hard("context/a", "/etc/passwd")]),
            "entry \"context/a\": hardlink target \"/etc/passwd\": absolute paths are not allowed".into(),
        ),
        (
            "a file replacing a directory",
            with(vec![E::File("context/d/x", b"x"), E::File("context/d", b"y")]),
            "entry \"context/d\": replaces a directory".into(),
        ),
        (
            "a device",
            with(vec![E::Device("context/tty")]),
            "entry \"context/tty\": only files, directories and links are allowed, not Char".into(),
        ),
        (
            "a name component longer than 255 bytes",
            with(vec![E::File(long_component, b"x")]),
            format!("entry {long_component:?}: a name component is longer than 255 bytes"),
        ),
        (
            "a GNU long name longer than 4096 bytes",
            with(vec![E::File(deep_name, b"x")]),
            format!(
                "entry \"././@LongLink\": GNULongName record of {} bytes is larger than 4097 bytes",
                deep_name.len() + 1
            ),
        ),
        (
            "more entries than max_entries",
            {
                let names: Vec<String> = (0..250).map(|i| format!("context/f{i}")).collect();
                let mut entries = vec![E::File("context/Dockerfile", df.as_bytes())];
                entries.extend(names.iter().map(|n| E::File(n, b"")));
                tar(config, &entries)
            },
            "the tar has more than 200 entries".into(),
        ),
        (
            "more bytes than max_unpacked_bytes",
            with(vec![E::File("context/big", Box::leak(vec![0u8; (1 << 20) + 1].into_boxed_slice()))]),
            "the context unpacks to more than 1048576 bytes".into(),
        ),
        (
            "a gzip bomb",
            gzip(&vec![0; 8 << 20]),
            "the gzip body decompresses to more than 1253376 bytes".into(),
        ),
        (
            "a gzip stream that ends early around a complete tar",
            {
                let whole = gzip(&with(vec![]));
                whole[..whole.len() - 8].to_vec()
            },
            "truncated gzip body: the gzip stream ends early".into(),
        ),
        (
            "a base-256 mtime beyond any timestamp",
            with(vec![E::Raw("context/old", b"x", |h| {
                let mtime = &mut h.as_gnu_mut().unwrap().mtime;
                mtime.fill(0xff);
                mtime[0] = 0x80;
            })]),
            "entry \"context/old\": mtime out of range".into(),
        ),
    ];

    let good_image = format!("{}/hostile/beside:1", bed.registry);
    let good_df = format!(
        "FROM {}\nCOPY . /ctx/\nRUN echo good > /marker\n",
        bed.base_image
    );
    let good = tar(
        &format!(r#"{{"image":"{good_image}"}}"#),
        &[E::File("context/Dockerfile", good_df.as_bytes())],
    );
    let good_build = post(&server, good);
    let hostile = async {
        for (name, tar, want) in cases {
            let (status, json) = post(&server, tar).await;
            assert_eq!(status, 400, "{name}: {json}");
            assert_eq!(json["status"], "failed", "{name}");
            let error = json["error"].as_str().unwrap_or_default();
            assert_eq!(error, want.as_str(), "{name}");
        }
    };
    let ((status, json), ()) = tokio::join!(good_build, hostile);
    assert_eq!(
        status, 200,
        "the good build beside the hostile ones: {json:#}"
    );
    assert_eq!(bed.run_in_image(&good_image, "cat /marker"), "good\n");

    // Nothing outside the work dir was opened, read, created or changed ...
    assert_eq!(
        touched(&mut inotify),
        Vec::<String>::new(),
        "host files touched"
    );
    // ... and every request's temp dir is gone (the answer is sent after it is removed).
    assert_eq!(files_under(outer.path()), before);
    // The watch sees a read of the canary: the silence above means something.
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host secret\n");
    assert!(touched(&mut inotify)
        .iter()
        .any(|e| e.contains("canary.txt")));
}

/// The events on the watched dir's entries since the last call, but for the work dir itself.
fn touched(inotify: &mut Inotify) -> Vec<String> {
    let mut buffer = [0; 4096];
    match inotify.read_events(&mut buffer) {
        Ok(events) => events
            .filter(|e| e.name.is_some_and(|n| n != "work"))
            .map(|e| format!("{:?} {:?}", e.mask, e.name))
            .collect(),
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Vec::new(),
        Err(err) => panic!("inotify: {err}"),
    }
}

#[tokio::test]
async fn a_dockerfile_that_is_a_link_inside_the_context_builds() {
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let image = format!("{}/hostile/linked-dockerfile:1", bed.registry);
    let df = format!(
        "FROM {}\nCOPY . /ctx/\nRUN echo linked > /marker\n",
        bed.base_image
    );
    let (status, json) = post(
        &server,
        tar(
            &format!(r#"{{"image":"{image}"}}"#),
            &[
                E::File("context/build/Dockerfile.real", df.as_bytes()),
                E::Link("context/build/Dockerfile", "Dockerfile.real"),
                E::Link("context/Dockerfile", "build/Dockerfile"),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200, "{json:#}");
    assert_eq!(
        bed.run_in_image(
            &image,
            "cat /marker && readlink /ctx/Dockerfile && readlink /ctx/build/Dockerfile"
        ),
        "linked\nbuild/Dockerfile\nDockerfile.real\n"
    );
}
