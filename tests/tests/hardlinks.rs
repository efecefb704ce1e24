//! Hardlinks of a context reach the image as one inode with several names, as Docker builds
//! them: the same tree built by `docker build` of a directory, by the Engine's own BuildKit from
//! a tar (`POST /build?version=2`), and by the builder on every daemon of the bed, compared by
//! link counts, shared inodes, modes, mtimes and contents of every file.

use std::collections::HashMap;

use function_builder_tests::api::servers;
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{full, read_body, send_unix};
use function_builder_tests::fixtures::{hardlink_tree, headers_tar, lay_out, T0, T3};

/// Every file under /ctx, one a line: path, inode, link count, mode, mtime, size, owner, content.
const LISTING: &str = "cd /ctx && for f in $(find . -type f | sort); do \
     echo \"$f $(stat -c '%i %h %a %Y %s %u:%g' \"$f\") $(tr '\\n' '|' < \"$f\")\"; done";

/// A listing with each inode number replaced by the first path listed with it (numbers differ
/// between images; which names share one must not).
fn shared_inodes(listing: &str) -> String {
    let mut first: HashMap<String, String> = HashMap::new();
    let mut out = String::new();
    for line in listing.lines() {
        let mut fields: Vec<&str> = line.splitn(3, ' ').collect();
        assert_eq!(fields.len(), 3, "{line:?} in {listing}");
        let inode = fields[1].to_owned();
        let name = first.entry(inode).or_insert_with(|| fields[0].to_owned());
        let name = format!("={name}");
        fields[1] = &name;
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    out
}

/// What every build of the tree shows, given the Dockerfile's content, `a`'s and the
/// `.dockerignore`'s; `kept` when `0ign` is in the image (a build that reads no `.dockerignore`,
/// or one that names nothing): then it is its group's third name, and the first listed.
fn expected(dockerfile: &str, a: &str, dockerignore: &str, kept: bool) -> String {
    let line = |path: &str, first: &str, links: u32, mode: &str, mtime: u64, data: &str| {
        let size = data.len();
        let data = data.replace('\n', "|");
        format!("{path} ={first} {links} {mode} {mtime} {size} 0:0 {data}\n")
    };
    let ign = if kept { "./0ign" } else { "./sub/x" };
    let ign_links = if kept { 3 } else { 2 };
    let mut out = line(
        "./.dockerignore",
        "./.dockerignore",
        1,
        "644",
        T0,
        dockerignore,
    );
    if kept {
        out += &line("./0ign", ign, 3, "644", T0, "ignored-first\n");
    }
    out += &line("./Dockerfile", "./Dockerfile", 1, "644", T0, dockerfile);
    // `a`'s last header (z/c: 0600 at T3) decides for all three names.
    out += &line("./a", "./a", 3, "600", T3, a);
    out += &line("./sub/b", "./a", 3, "600", T3, a);
    out += &line("./sub/e", "./sub/e", 2, "644", T0, "data-d\n");
    out += &line("./sub/x", ign, ign_links, "644", T0, "ignored-first\n");
    out += &line("./y", ign, ign_links, "644", T0, "ignored-first\n");
    out += &line("./z/c", "./a", 3, "600", T3, a);
    out += &line("./z/d", "./sub/e", 2, "644", T0, "data-d\n");
    out
}

/// The listing of a local image of the bed's Engine.
fn listing_of_local(bed: &Bed, tag: &str) -> String {
    let (ok, stdout, stderr) =
        bed.docker(&["run", "--rm", "--network", "none", tag, "sh", "-c", LISTING]);
    assert!(ok, "docker run {tag}: {stderr}");
    shared_inodes(&stdout)
}

#[tokio::test]
async fn hardlinks_reach_the_image_as_docker_builds_them() {
    let bed = Bed::get();
    let dockerfile = format!("FROM {}\nCOPY . /ctx/\n", bed.base_image);
    let (a, ignore) = ("data-a\n", "0ign\n");
    let tree = hardlink_tree(&bed.base_image, a, ignore);

    // The Docker CLI, from the tree as a directory (the bed's CLI has no buildx: its classic
    // builder, which packs the directory with its hardlinks and leaves out what .dockerignore
    // names).
    let dir = tempfile::tempdir().unwrap();
    lay_out(&tree, dir.path());
    let tag = "hardlinks/docker-cli:1";
    let (ok, _, stderr) = bed.docker(&["build", "-q", "-t", tag, dir.path().to_str().unwrap()]);
    assert!(ok, "docker build: {stderr}");
    let cli = listing_of_local(&bed, tag);
    assert_eq!(cli, expected(&dockerfile, a, ignore, false), "docker build");

    // The Engine's BuildKit, from the tree as a tar, as a client uploading a tar context: the
    // header mode rule comes from here (it reads no .dockerignore of a tar context).
    let tag = "hardlinks/docker-tar:1";
    let req = http::Request::post(format!("/v1.41/build?version=2&t={tag}"))
        .header("host", "docker")
        .header("content-type", "application/x-tar")
        .body(full(headers_tar(&tree, "", None)))
        .unwrap();
    let resp = send_unix(&bed.docker_socket, req).await;
    let status = resp.status();
    let body = String::from_utf8_lossy(&read_body(resp).await).into_owned();
    assert!(
        status == 200 && !body.contains("errorDetail"),
        "{status}: {body}"
    );
    let engine = listing_of_local(&bed, tag);
    assert_eq!(
        engine,
        expected(&dockerfile, a, ignore, true),
        "POST /build?version=2"
    );

    // The builder, from the request tar, on every daemon; then twice more, each a change to the
    // context the daemon kept from the build before: `a` edited (its three names relinked to a
    // new inode), then `0ign` no longer ignored (it carries its group's data; `sub/x` becomes a
    // link to it).
    let rounds = [
        ("data-a\n", "0ign\n"),
        ("data-a, edited\n", "0ign\n"),
        ("data-a, edited\n", "# nothing\n"),
    ];
    for (n, (daemon, server)) in servers(&bed, |_| {}).await.into_iter().enumerate() {
        for (round, (a, ignore)) in rounds.into_iter().enumerate() {
            let image = format!("{}/hardlinks/builder-{n}:{round}", bed.registry);
            let config = format!(r#"{{"image":"{image}"}}"#);
            let tree = hardlink_tree(&bed.base_image, a, ignore);
            let tar = headers_tar(&tree, "context/", Some(&config));
            let (status, json) = server.post_signed(tar).await;
            assert_eq!(status, 200, "{daemon}: {json:#}");
            assert_eq!(json["status"], "success", "{daemon}: {json:#}");
            let built = shared_inodes(&bed.run_in_image(&image, LISTING));
            let kept = ignore != "0ign\n";
            assert_eq!(
                built,
                expected(&dockerfile, a, ignore, kept),
                "the builder on {daemon}, round {round}"
            );
        }
    }
}
