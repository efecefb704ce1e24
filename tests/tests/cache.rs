//! The registry layer cache: a build exports its cache, the daemon's own cache is wiped, and the
//! rebuild takes its steps from the registry (`CACHED`, and `steps.cached` in the answer). On the
//! bed's dockerd the cache is inline in the pushed image; on a standalone buildkitd it is a
//! `type=registry` cache with `mode=max`, so even a stage left out of the image comes from it.

use std::process::Command;
use std::time::Instant;

use buildkit::Address;
use function_builder_tests::api::{request_tar, servers, Server, Shape};
use function_builder_tests::bed::Bed;
use serde_json::Value;

async fn build(server: &Server, image: &str, dockerfile: &str) -> (u16, Value, f64) {
    let tar = request_tar(
        Shape::Go,
        &format!(r#"{{"image":"{image}"}}"#),
        &[("Dockerfile", dockerfile.as_bytes(), 0o644)],
    );
    let started = Instant::now();
    let (status, json) = server.post_signed(tar).await;
    (status, json, started.elapsed().as_secs_f64())
}

/// Empties the daemon's local build cache.
fn wipe(bed: &Bed, address: &str) {
    if address.starts_with("docker://") {
        let (ok, _, stderr) = bed.docker(&["builder", "prune", "-af"]);
        assert!(ok, "docker builder prune: {stderr}");
    } else {
        let buildctl = std::env::var("BUILDCTL")
            .expect("BUILDCTL (the buildctl of TEST_BUILDKITD_ADDR's daemon) wipes its cache");
        let out = Command::new(buildctl)
            .args(["--addr", address, "prune", "--all"])
            .output()
            .unwrap();
        assert!(out.status.success(), "buildctl prune: {out:?}");
    }
}

#[tokio::test]
async fn a_rebuild_on_a_wiped_daemon_takes_its_steps_from_the_registry_cache() {
    let bed = Bed::get();
    let nonce = std::process::id();
    let template = format!("{}/cache/{{repository}}", bed.registry);
    for (n, (daemon, server)) in servers(&bed, |s| s.cache_repository = Some(template.clone()))
        .await
        .into_iter()
        .enumerate()
    {
        let docker = daemon
            .parse::<Address>()
            .is_ok_and(|a| matches!(a, Address::Docker(_)));
        // buildkitd exports mode=max: the `slow` stage is not in the image, yet is cached.
        let df = if docker {
            format!(
                "FROM {}\nRUN sleep 5 && echo {nonce}-{n} > /slow\n",
                bed.base_image
            )
        } else {
            format!(
                "FROM {base} AS slow\nRUN sleep 5 && echo {nonce}-{n} > /slow\nFROM {base}\nCOPY --from=slow /slow /slow\n",
                base = bed.base_image
            )
        };
        let image = format!("{}/cached/app:{n}", bed.registry);
        let (status, first, cold) = build(&server, &image, &df).await;
        assert_eq!(status, 200, "{daemon}: {first:#}");
        let steps = |json: &Value| {
            let s = &json["steps"];
            (s["total"].as_u64().unwrap(), s["cached"].as_u64().unwrap())
        };
        let run_cached = |json: &Value| {
            json["log"].as_array().unwrap().iter().any(|l| {
                let l = l.as_str().unwrap();
                l.contains("CACHED") && l.contains("RUN sleep 5")
            })
        };
        let (total, cached) = steps(&first);
        assert!(total >= 2 && cached < total, "{daemon}: {first:#}");
        assert!(!run_cached(&first), "{daemon}: {first:#}");

        wipe(&bed, &daemon);
        let (status, second, warm) = build(&server, &image, &df).await;
        assert_eq!(status, 200, "{daemon}: {second:#}");
        let run_cached = second["log"].as_array().unwrap().iter().any(|l| {
            let l = l.as_str().unwrap();
            l.contains("CACHED") && l.contains("RUN sleep 5")
        });
        assert!(
            run_cached,
            "{daemon}: the RUN step was not cached: {second:#}"
        );
        // Every step but the base image's `FROM` (pulled, never cached) came from the cache.
        let (total, cached) = steps(&second);
        assert!(cached >= 1 && cached + 1 >= total, "{daemon}: {second:#}");
        assert_eq!(
            bed.run_in_image(&image, "cat /slow"),
            format!("{nonce}-{n}\n"),
            "{daemon}"
        );
        eprintln!(
            "cache on {daemon}: cold {cold:.1} s, after wiping the daemon's cache {warm:.1} s, steps {}",
            second["steps"]
        );
    }
}

#[tokio::test]
async fn a_cache_export_that_fails_never_fails_the_build() {
    let bed = Bed::get();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let df = format!("FROM {}\nRUN echo exported-or-not > /x\n", bed.base_image);
    for (n, (daemon, server)) in servers(&bed, |_| {}).await.into_iter().enumerate() {
        // A cache ref must name the image's repository: both on a port nothing listens on, and
        // the image only tagged, so the cache is the one thing that cannot reach its registry.
        let image = format!("127.0.0.1:{dead}/cached/dead-cache:{n}");
        let cache = format!("127.0.0.1:{dead}/cached/dead-cache:cache");
        let config = format!(
            r#"{{"image":"{image}","skipPush":true,"cache":{{"from":["{cache}"],"to":"{cache}"}}}}"#
        );
        let tar = request_tar(Shape::Go, &config, &[("Dockerfile", df.as_bytes(), 0o644)]);
        let (status, json) = server.post_signed(tar).await;
        assert_eq!(status, 200, "{daemon}: {json:#}");
        assert_eq!(json["status"], "success", "{daemon}: {json:#}");
    }
}
