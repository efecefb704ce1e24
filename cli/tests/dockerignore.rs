//! `.dockerignore` as the Docker CLI applies it: the same folder built by `docker build`
//! (BuildKit) and by `function-builder build`, on the bed's Engine, gives images with the same
//! files. Allowlist ignore files exclude the Dockerfile itself, which is still sent.

use std::path::Path;
use std::process::Command;

use function_builder_tests::api::SECRET;
use function_builder_tests::bed::Bed;

mod common;
use common::{build_args, cli, strings, tar_listing, write, Serve};

/// A context with a bit of everything, its `.dockerignore` being `ignore`.
fn context(root: &Path, base_image: &str, ignore: &str) {
    // Every path in the image with `/` after folders, so an empty folder counts too.
    let dockerfile = format!(
        "FROM {base_image}\nCOPY . /ctx\nRUN (find /ctx -type d | sed 's|$|/|'; find /ctx ! -type d) | sort > /files.txt\n"
    );
    write(root, "Dockerfile", &dockerfile);
    write(root, ".dockerignore", ignore);
    write(root, "app/main.sh", "echo app\n");
    write(root, "app/sub/data.txt", "data\n");
    write(root, "src/lib.rs", "// lib\n");
    write(root, "node_modules/pkg/index.js", "// js\n");
    write(root, "README.md", "readme\n");
    std::fs::create_dir_all(root.join("empty")).unwrap();
}

/// `/files.txt` of the image `docker build` makes of `dir`.
fn files_by_docker(bed: &Bed, dir: &Path, tag: &str) -> String {
    let out = Command::new("/usr/bin/docker")
        .env(
            "DOCKER_HOST",
            format!("unix://{}", bed.docker_socket.display()),
        )
        .env("DOCKER_BUILDKIT", "1")
        .args([
            "build",
            "--network",
            "none",
            "--progress",
            "plain",
            "-t",
            tag,
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, files, stderr) =
        bed.docker(&["run", "--rm", "--network", "none", tag, "cat", "/files.txt"]);
    assert!(ok, "docker run {tag}: {stderr}");
    files
}

#[tokio::test]
async fn allowlist_ignore_files_give_the_files_docker_build_gives() {
    let bed = Bed::get();
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("payload.txt");
    std::fs::write(&secret, SECRET).unwrap();
    let serve = Serve::on_bed(&bed, &secret);
    let cases = [
        ("allowlist", "*\n!app/\n", "/ctx/\n/ctx/app/\n/ctx/app/main.sh\n/ctx/app/sub/\n/ctx/app/sub/data.txt\n"),
        ("everything", "**\n", "/ctx/\n"),
        (
            "some",
            "src\n*.md\n!README.md\nDockerfile\n",
            "/ctx/\n/ctx/.dockerignore\n/ctx/README.md\n/ctx/app/\n/ctx/app/main.sh\n/ctx/app/sub/\n\
             /ctx/app/sub/data.txt\n/ctx/empty/\n/ctx/node_modules/\n/ctx/node_modules/pkg/\n\
             /ctx/node_modules/pkg/index.js\n",
        ),
    ];
    for (name, ignore, want) in cases {
        let dir = tmp.path().join(name);
        context(&dir, &bed.base_image, ignore);
        let docker = files_by_docker(&bed, &dir, &format!("fb-dockerignore-{name}:docker"));
        let image = format!("{}/cli/dockerignore-{name}:1", bed.registry);
        let (ok, stdout, stderr) = cli(build_args(&dir, &image, &serve.url, &secret)).await;
        assert!(ok, "{name}: {stdout}\n{stderr}");
        let ours = bed.run_in_image(&image, "cat /files.txt");
        assert_eq!(ours, docker, "{name}: ours, then docker build's");
        assert_eq!(ours, want, "{name}");
    }
}

/// What the tar holds, before the builder applies the same patterns again.
#[tokio::test]
async fn pack_always_sends_the_dockerfile_and_folders_with_exceptions_below() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    write(
        dir.path(),
        ".dockerignore",
        "*\n!app/\nnode_modules\n!node_modules/keep\n",
    );
    write(dir.path(), "app/a", "a");
    write(dir.path(), "node_modules/x", "x");
    write(dir.path(), "other", "o");
    let out = dir.path().join("req.tar");
    let (ok, _, stderr) = cli(strings(&[
        "pack",
        dir.path().to_str().unwrap(),
        "--skip-push",
        "-o",
        out.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{stderr}");
    let listing = tar_listing(&std::fs::read(&out).unwrap());
    assert_eq!(
        listing,
        [
            "com.openfaas.docker.config (644) = {\"buildArgs\":{},\"skipPush\":true}",
            "context/",
            "context/.dockerignore (644) = *\n!app/\nnode_modules\n!node_modules/keep\n",
            "context/Dockerfile (644) = FROM scratch\n",
            "context/app/",
            "context/app/a (644) = a",
            "context/node_modules/",
        ]
    );
}
