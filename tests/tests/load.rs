//! Load: 20 builds of distinct contexts at once through one builder, on the bed's dockerd and
//! registry. Nothing crosses between them: every pushed image holds exactly its own file and its
//! own `RUN` output, the registry's manifest is the digest its answer names, every answer's log
//! has its own `RUN` output and no other build's marker, and no temp dir is left behind.

use std::time::Instant;

use function_builder_tests::api::{request_tar, Server, Shape};
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{empty, send_tcp};

/// Sized for 2 cores: enough to queue on the daemon, few enough to finish in about a minute.
const BUILDS: usize = 20;

/// One build of the load: its image and the words only it may show.
struct Load {
    image: String,
    /// The content of its `id.txt`, copied into the image.
    id: String,
    /// The word its `RUN` step prints; every build's marker is distinct and none is a prefix of
    /// another.
    marker: String,
}

impl Load {
    fn new(bed: &Bed, nonce: &str, i: usize) -> Self {
        Self {
            image: format!("{}/load/app-{i:02}:{nonce}", bed.registry),
            id: format!("id {i:02} of load {nonce}\n"),
            marker: format!("load-{nonce}-{i:02}-marker"),
        }
    }

    /// The request: `id.txt` copied into the image, then a `RUN` printing `ran <marker>` (the
    /// step's command line holds `ran %s`, so only its output has `ran <marker>`) into the log
    /// and into `/ran.txt`.
    fn tar(&self, base_image: &str) -> Vec<u8> {
        let dockerfile = format!(
            "FROM {base_image}\nCOPY id.txt /id.txt\nRUN printf 'ran %s\\n' {} | tee /ran.txt\n",
            self.marker
        );
        request_tar(
            Shape::Python,
            &format!(r#"{{"image":"{}"}}"#, self.image),
            &[
                ("Dockerfile", dockerfile.as_bytes(), 0o644),
                ("id.txt", self.id.as_bytes(), 0o644),
            ],
        )
    }
}

/// The digest the registry serves for `image`'s manifest (`<registry>/<repo>:<tag>`).
async fn registry_digest(bed: &Bed, image: &str) -> String {
    let (repo, tag) = image
        .strip_prefix(&format!("{}/", bed.registry))
        .and_then(|rest| rest.rsplit_once(':'))
        .expect("an image of the bed's registry");
    let req = http::Request::get(format!("/v2/{repo}/manifests/{tag}"))
        .header("host", &bed.registry)
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.oci.image.manifest.v1+json",
        )
        .body(empty())
        .unwrap();
    let resp = send_tcp(bed.registry.parse().unwrap(), req).await;
    assert_eq!(resp.status(), 200, "manifest of {image}");
    resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_builds_each_get_their_own_image_and_their_own_log() {
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let loads: Vec<Load> = (0..BUILDS).map(|i| Load::new(&bed, &nonce, i)).collect();

    let started = Instant::now();
    let answers = futures_util::future::join_all(loads.iter().map(|load| {
        let tar = load.tar(&bed.base_image);
        let server = &server;
        async move {
            let (status, json) = server.post_signed(tar).await;
            (status, json, started.elapsed().as_secs_f64())
        }
    }))
    .await;
    let built = started.elapsed().as_secs_f64();

    for (i, (load, (status, json, _))) in loads.iter().zip(&answers).enumerate() {
        assert_eq!(status, &200, "build {i}: {json:#}");
        assert_eq!(json["status"], "success", "build {i}: {json:#}");
        assert_eq!(json["image"], load.image, "build {i}");
        let log: Vec<&str> = json["log"]
            .as_array()
            .unwrap_or_else(|| panic!("build {i}: no log: {json:#}"))
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let own_output = format!("ran {}", load.marker);
        assert!(
            log.iter().any(|l| l.contains(&own_output)),
            "build {i}: its RUN output is not in its log: {log:#?}"
        );
        for (j, other) in loads.iter().enumerate().filter(|(j, _)| *j != i) {
            assert!(
                !log.iter().any(|l| l.contains(&other.marker)),
                "build {i}'s log has build {j}'s marker: {log:#?}"
            );
        }
    }
    assert_eq!(
        server.work_dir_entries(),
        Vec::<String>::new(),
        "temp dirs left behind"
    );

    for (i, (load, (_, json, _))) in loads.iter().zip(&answers).enumerate() {
        assert_eq!(
            json["digest"].as_str(),
            Some(registry_digest(&bed, &load.image).await.as_str()),
            "build {i}: the registry serves another manifest than the answer names"
        );
        assert_eq!(
            bed.run_in_image(&load.image, "cat /id.txt /ran.txt"),
            format!("{}ran {}\n", load.id, load.marker),
            "build {i}: {}",
            load.image
        );
    }

    let mut times: Vec<f64> = answers.iter().map(|(_, _, t)| *t).collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "load: {BUILDS} concurrent builds answered in {built:.1} s (first {:.1} s, median {:.1} s), \
         read back in {:.1} s more",
        times[0],
        times[BUILDS / 2],
        started.elapsed().as_secs_f64() - built
    );
}
