//! Foreign platforms through the builder's API, on every daemon of the bed: buildkitd pushes one
//! manifest list for several platforms, whose arm64 image ran its `RUN` under QEMU; a Docker
//! Engine 20.10 builds one foreign platform and refuses several with a 422 before building; a
//! platform that is not one is a 400 naming it. The tests that run arm64 binaries skip, saying
//! why, where the bed found no emulator (`FB_FOREIGN_PLATFORMS`).

use function_builder_tests::api::{request_tar, servers, Answered, Server, Shape};
use function_builder_tests::bed::Bed;
use function_builder_tests::registry::Image;
use serde_json::{json, Value};

/// What a Docker Engine with the classic image store answers for several platforms.
const MULTI_PLATFORM_REFUSED: &str = "this daemon cannot export a multi-platform image: a Docker Engine with its classic image store (such as Docker 20.10) keeps one platform per image; ask for one platform, or build on buildkitd or on a Docker Engine with the containerd image store";

/// A Dockerfile whose `RUN` records the machine it ran on, `FROM` the bed's amd64 + arm64 base.
fn uname_dockerfile(bed: &Bed) -> String {
    format!("FROM {}\nRUN uname -m > /arch\n", bed.base_image_multi)
}

async fn build(server: &Server, config: &Value, dockerfile: &str) -> Answered {
    let tar = request_tar(
        Shape::Python,
        &config.to_string(),
        &[("Dockerfile", dockerfile.as_bytes(), 0o644)],
    );
    server.post_signed_with(tar, &[]).await
}

/// Whether this machine runs arm64 binaries (the bed's foreign platform); says why not when not.
fn emulates_arm64(bed: &Bed, test: &str) -> bool {
    match &bed.foreign_platform {
        Ok(platform) => platform == "linux/arm64",
        Err(why) => {
            eprintln!("{test}: skipped, this machine cannot emulate a foreign platform ({why})");
            false
        }
    }
}

fn is_docker(daemon: &str) -> bool {
    daemon.starts_with("docker://")
}

/// The `os/arch[/variant]` of a manifest list entry.
fn platform_of(entry: &Value) -> String {
    let p = &entry["platform"];
    let parts = [&p["os"], &p["architecture"], &p["variant"]];
    let parts: Vec<&str> = parts.iter().filter_map(|part| part.as_str()).collect();
    parts.join("/")
}

#[tokio::test]
async fn two_platforms_on_buildkitd_push_a_manifest_list_whose_arm64_run_said_aarch64() {
    let bed = Bed::get();
    if !emulates_arm64(&bed, "two platforms on buildkitd") {
        return;
    }
    let dockerfile = uname_dockerfile(&bed);
    let mut built = 0;
    for (daemon, server) in servers(&bed, |_| {}).await {
        if is_docker(&daemon) {
            continue;
        }
        let image = format!("{}/platforms/two:1", bed.registry);
        let config = json!({"image": image, "platforms": ["linux/amd64", "linux/arm64"]});
        let answer = build(&server, &config, &dockerfile).await;
        assert_eq!(answer.status, 200, "{daemon}: {:#}", answer.json);
        assert_eq!(answer.json["status"], "success", "{daemon}");
        let (pushed, tag) = Image::split(&image);
        let list = pushed.manifest(&tag).await;
        assert_eq!(
            list["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json",
            "{daemon}: {list:#}"
        );
        // The answer's digest is the list's.
        assert_eq!(
            pushed
                .manifest(answer.json["digest"].as_str().unwrap())
                .await,
            list,
            "{daemon}"
        );
        let entries = list["manifests"].as_array().unwrap();
        let platforms: Vec<String> = entries.iter().map(platform_of).collect();
        assert_eq!(
            platforms,
            ["linux/amd64", "linux/arm64"],
            "{daemon}: {list:#}"
        );
        for (entry, (arch, machine)) in entries
            .iter()
            .zip([("amd64", "x86_64"), ("arm64", "aarch64")])
        {
            let manifest = pushed.manifest(entry["digest"].as_str().unwrap()).await;
            assert_eq!(
                pushed.config(&manifest).await["architecture"],
                arch,
                "{daemon}"
            );
            // Each platform's manifest names the request it came from.
            assert_eq!(
                manifest["annotations"]["com.openfaas.build.request"], answer.json["requestDigest"],
                "{daemon}: {manifest:#}"
            );
            let recorded = pushed.file(&manifest, "arch").await;
            assert_eq!(
                recorded.as_deref(),
                Some(format!("{machine}\n").as_bytes()),
                "{daemon}: /arch of the {arch} image"
            );
        }
        built += 1;
    }
    if built == 0 {
        eprintln!("two platforms on buildkitd: skipped, the bed runs no buildkitd");
    }
}

#[tokio::test]
async fn one_foreign_platform_builds_on_every_daemon_and_its_run_says_aarch64() {
    let bed = Bed::get();
    if !emulates_arm64(&bed, "one foreign platform") {
        return;
    }
    let dockerfile = uname_dockerfile(&bed);
    for (n, (daemon, server)) in servers(&bed, |_| {}).await.into_iter().enumerate() {
        let image = format!("{}/platforms/arm64:{n}", bed.registry);
        // containerd's other name for it: the builder sends linux/arm64.
        let config = json!({"image": image, "platforms": ["Linux/AArch64"]});
        let answer = build(&server, &config, &dockerfile).await;
        assert_eq!(answer.status, 200, "{daemon}: {:#}", answer.json);
        let (pushed, tag) = Image::split(&image);
        let manifest = pushed.manifest(&tag).await;
        // One platform, one image: no list.
        assert_eq!(
            manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
            "{daemon}: {manifest:#}"
        );
        let config = pushed.config(&manifest).await;
        assert_eq!(
            (&config["os"], &config["architecture"]),
            (&json!("linux"), &json!("arm64")),
            "{daemon}"
        );
        assert_eq!(
            pushed.file(&manifest, "arch").await.as_deref(),
            Some(&b"aarch64\n"[..]),
            "{daemon}"
        );
    }
}

#[tokio::test]
async fn two_platforms_on_docker_20_10_are_422_before_the_build_starts() {
    let bed = Bed::get();
    let dockerfile = uname_dockerfile(&bed);
    for (daemon, server) in servers(&bed, |_| {}).await {
        if !is_docker(&daemon) {
            continue;
        }
        let image = format!("{}/platforms/refused:1", bed.registry);
        let config = json!({"image": image, "platforms": ["linux/amd64", "linux/arm64"]});
        let answer = build(&server, &config, &dockerfile).await;
        assert_eq!(answer.status, 422, "{daemon}: {:#}", answer.json);
        assert_eq!(answer.json["status"], "failed");
        assert_eq!(answer.json["error"], MULTI_PLATFORM_REFUSED);
        // Before the build: no step ran, and the context was never read.
        let log: Vec<&str> = answer.json["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| line.as_str().unwrap().split_once(' ').unwrap().1)
            .collect();
        assert_eq!(log, ["context: sent 0 files, 0 bytes"], "{daemon}");

        // Without an image to export, the same platforms build: nothing is stored.
        let config = json!({"skipPush": true, "platforms": ["linux/amd64", "linux/arm64"]});
        let copy_only = format!("FROM {}\nCOPY Dockerfile /\n", bed.base_image_multi);
        let answer = build(&server, &config, &copy_only).await;
        assert_eq!(answer.status, 200, "{daemon}: {:#}", answer.json);
    }
}

#[tokio::test]
async fn a_platform_that_is_not_one_is_400_naming_it_on_every_daemon() {
    let bed = Bed::get();
    let dockerfile = uname_dockerfile(&bed);
    let cases = [
        (
            json!(["linux/amd64", "linux/"]),
            r#"platforms[1]: invalid platform "linux/", expected os/arch[/variant] such as linux/arm64"#,
        ),
        (
            json!(["linux"]),
            r#"platforms[0]: invalid platform "linux", expected os/arch[/variant] such as linux/arm64"#,
        ),
        (
            json!(["linux/arm64/v8/x"]),
            r#"platforms[0]: invalid platform "linux/arm64/v8/x", expected os/arch[/variant] such as linux/arm64"#,
        ),
        (
            json!(["linux/arm64", "linux/aarch64"]),
            r#"platforms[1]: "linux/aarch64" is linux/arm64, which platforms[0] names already"#,
        ),
    ];
    for (daemon, server) in servers(&bed, |_| {}).await {
        for (platforms, error) in &cases {
            let config = json!({"image": format!("{}/platforms/bad:1", bed.registry), "platforms": platforms});
            let answer = build(&server, &config, &dockerfile).await;
            assert_eq!(
                answer.status, 400,
                "{daemon} {platforms}: {:#}",
                answer.json
            );
            assert_eq!(answer.json["error"], *error, "{daemon}");
        }
    }
}
