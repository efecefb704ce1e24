//! The BuildKit client against the bed's real daemons (the Docker Engine's embedded BuildKit, and
//! a standalone buildkitd when `TEST_BUILDKITD_ADDR` names one): builds, pushes, errors, auth and
//! cancellation, each asserted on the image in the registry or the daemon's own behaviour.

use std::sync::Arc;
use std::time::Duration;

use buildkit::{
    BuildRequest, BuildkitError, Built, Client, DirTree, DockerConfig, NetworkMode, Output,
    RegistryFault,
};
use function_builder_tests::bed::{wait_for_process, Bed, Daemon};
use function_builder_tests::daemons::build_logged;
use function_builder_tests::fixtures::{dockerfile_context, tricky_context};
use tokio::sync::mpsc;

/// Runs one build and returns its outcome with every rendered log line.
async fn build(
    daemon: &Daemon,
    mut req: BuildRequest,
) -> (Result<Built, BuildkitError>, Vec<String>) {
    let client = Client::connect(&daemon.address, daemon.tls.as_ref())
        .await
        .expect("connect to the daemon");
    // The bed's dockerd has no bridge network: RUN steps get none.
    req.network = NetworkMode::None;
    build_logged(&client, req).await
}

fn context_request(dir: &std::path::Path, output: Output) -> BuildRequest {
    BuildRequest::new(Arc::new(DirTree::new(dir)), output)
}

#[tokio::test]
async fn a_tricky_context_builds_pushes_and_arrives_intact() {
    let bed = Bed::get();
    let (dir, big_digest) = tricky_context(&bed.base_image);
    for (n, daemon) in bed.daemons().iter().enumerate() {
        let image = format!("{}/tests/context:{n}", bed.registry);
        let (result, lines) = build(
            daemon,
            context_request(dir.path(), Output::Push(image.parse().unwrap())),
        )
        .await;
        let outcome = result.unwrap_or_else(|err| {
            panic!("build on {}: {err}\n{}", daemon.address, lines.join("\n"))
        });
        let digest = outcome.digest.expect("a pushed image has a digest");
        assert!(digest.starts_with("sha256:"), "{digest}");
        assert!(
            lines.iter().any(|l| l.contains("RUN echo built-by-run")),
            "{lines:#?}"
        );

        let listing = bed.run_in_image(
            &image,
            "cd /ctx && find . | sort && cat a/b/c/deep.txt a-b a.txt keep.log /built.txt \
             && stat -c '%n %a %u:%g' bin/run.sh a a/b/c/deep.txt big.bin empty \
             && readlink link && sha256sum big.bin",
        );
        let expected = format!(
            ".\n./.dockerignore\n./Dockerfile\n./a\n./a-b\n./a.txt\n./a/b\n./a/b/c\n./a/b/c/deep.txt\n\
             ./big.bin\n./bin\n./bin/run.sh\n./empty\n./keep.log\n./link\n\
             deep\ndash\ndot\nkept by an exception\nbuilt-by-run\n\
             bin/run.sh 755 0:0\na 755 0:0\na/b/c/deep.txt 644 0:0\nbig.bin 644 0:0\nempty 755 0:0\n\
             a/b/c/deep.txt\n{big_digest}  big.bin\n"
        );
        assert_eq!(
            listing, expected,
            "inside {image} built by {}",
            daemon.address
        );
    }
}

#[tokio::test]
async fn a_build_arg_reaches_run() {
    let bed = Bed::get();
    let dir = dockerfile_context(&format!(
        "FROM {}\nARG GREETING\nRUN echo \"greeting=$GREETING\" && echo \"$GREETING\" > /greeting\n",
        bed.base_image
    ));
    for (n, daemon) in bed.daemons().iter().enumerate() {
        let image = format!("{}/tests/build-arg:{n}", bed.registry);
        // A new value each run, so the RUN step is never a cache hit and its output is logged.
        let greeting = format!("hello from a build arg {}", std::process::id());
        let mut req = context_request(dir.path(), Output::Push(image.parse().unwrap()));
        req.build_args.insert("GREETING".into(), greeting.clone());
        let (result, lines) = build(daemon, req).await;
        result.unwrap_or_else(|err| {
            panic!("build on {}: {err}\n{}", daemon.address, lines.join("\n"))
        });
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(&format!(" greeting={greeting}"))),
            "{lines:#?}"
        );
        assert_eq!(
            bed.run_in_image(&image, "cat /greeting"),
            format!("{greeting}\n")
        );
    }
}

#[tokio::test]
async fn a_failing_run_returns_its_output() {
    let bed = Bed::get();
    let dir = dockerfile_context(&format!(
        "FROM {}\nRUN echo step-output-before-failing && exit 3\n",
        bed.base_image
    ));
    for daemon in bed.daemons() {
        let (result, lines) = build(&daemon, context_request(dir.path(), Output::Discard)).await;
        match result {
            Err(BuildkitError::Build {
                message,
                step,
                output,
            }) => {
                assert!(message.contains("exit code: 3"), "{message}");
                assert_eq!(
                    step.as_deref(),
                    Some("[2/2] RUN echo step-output-before-failing && exit 3")
                );
                assert!(
                    output.iter().any(|l| l == "step-output-before-failing"),
                    "{output:?}"
                );
            }
            other => panic!(
                "expected a build error on {}, got {other:?}\n{}",
                daemon.address,
                lines.join("\n")
            ),
        }
    }
}

#[tokio::test]
async fn a_missing_base_image_is_named() {
    let bed = Bed::get();
    let missing = format!("{}/tests/does-not-exist:1", bed.registry);
    let dir = dockerfile_context(&format!("FROM {missing}\nRUN true\n"));
    for daemon in bed.daemons() {
        let (result, _) = build(&daemon, context_request(dir.path(), Output::Discard)).await;
        match result {
            Err(BuildkitError::Build { message, .. }) => {
                assert!(message.contains(&missing), "{message}");
                assert!(message.contains("not found"), "{message}");
            }
            other => panic!("expected a build error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_dockerfile_syntax_error_is_reported_as_such() {
    let bed = Bed::get();
    let dir = dockerfile_context(&format!("FROM {}\nRUNN echo typo\n", bed.base_image));
    for daemon in bed.daemons() {
        let (result, _) = build(&daemon, context_request(dir.path(), Output::Discard)).await;
        match result {
            Err(BuildkitError::Build { message, .. }) => {
                assert!(
                    message.contains("dockerfile parse error")
                        || message.contains("unknown instruction"),
                    "{message}"
                );
                assert!(message.to_lowercase().contains("runn"), "{message}");
            }
            other => panic!("expected a build error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn pushing_to_a_registry_with_auth_needs_the_config_json_credentials() {
    let bed = Bed::get();
    let dir = dockerfile_context(&format!(
        "FROM {}\nRUN echo authed > /authed\n",
        bed.base_image
    ));
    let config = format!(
        r#"{{"auths":{{"{}":{{"username":"{}","password":"{}"}}}}}}"#,
        bed.auth_registry, bed.auth_user, bed.auth_password
    );
    let config = DockerConfig::from_json(config.as_bytes(), "test config.json".as_ref()).unwrap();
    for (n, daemon) in bed.daemons().iter().enumerate() {
        let image = format!("{}/tests/authed:{n}", bed.auth_registry);

        let (result, _) = build(
            daemon,
            context_request(dir.path(), Output::Push(image.parse().unwrap())),
        )
        .await;
        match result {
            Err(BuildkitError::Registry {
                fault: RegistryFault::Refused,
                message,
                ..
            }) => {
                let lower = message.to_lowercase();
                assert!(
                    lower.contains("unauthorized") || lower.contains("no basic auth credentials"),
                    "{message}"
                );
            }
            other => panic!("a push without credentials is refused by the registry, got {other:?}"),
        }

        let mut req = context_request(dir.path(), Output::Push(image.parse().unwrap()));
        req.registry_auth = Arc::new(config.clone());
        let (result, lines) = build(daemon, req).await;
        let outcome = result
            .unwrap_or_else(|err| panic!("push with credentials: {err}\n{}", lines.join("\n")));
        assert!(outcome.digest.is_some_and(|d| d.starts_with("sha256:")));
    }
}

#[tokio::test]
async fn dropping_a_build_cancels_it_in_the_daemon_and_the_next_build_succeeds() {
    let bed = Bed::get();
    for daemon in bed.daemons() {
        let marker = format!("sleep 987{}", daemon.address.to_string().len());
        let dir = dockerfile_context(&format!("FROM {}\nRUN {marker}\n", bed.base_image));
        let client = Client::connect(&daemon.address, daemon.tls.as_ref())
            .await
            .unwrap();
        let mut req = context_request(dir.path(), Output::Discard);
        req.network = NetworkMode::None;
        let (events, mut rx) = mpsc::channel(256);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let running = tokio::spawn(async move { client.build(req, events).await });
        assert!(
            wait_for_process(&marker, true, Duration::from_secs(60)).await,
            "the RUN step started"
        );

        running.abort();
        let gone = wait_for_process(&marker, false, Duration::from_secs(10)).await;
        assert!(
            gone,
            "the daemon stopped the RUN step within 10 s of the cancel"
        );

        let ok = dockerfile_context(&format!("FROM {}\nRUN echo after-cancel\n", bed.base_image));
        let (result, lines) = build(&daemon, context_request(ok.path(), Output::Discard)).await;
        result.unwrap_or_else(|err| panic!("the next build: {err}\n{}", lines.join("\n")));
    }
}

#[tokio::test]
async fn the_daemon_answers_list_workers_and_info() {
    let bed = Bed::get();
    for daemon in bed.daemons() {
        let client = Client::connect(&daemon.address, daemon.tls.as_ref())
            .await
            .unwrap();
        let workers = client.list_workers().await.unwrap();
        assert!(!workers.is_empty());
        assert!(
            workers
                .iter()
                .any(|w| w.platforms.iter().any(|p| p == "linux/amd64")),
            "{workers:?}"
        );
        // Docker 20.10 has no Info call: None, not an error.
        let version = client.version().await.unwrap();
        if matches!(daemon.address, buildkit::Address::Docker(_)) {
            assert_eq!(workers[0].id, "moby");
            assert_eq!(version, None);
        }
    }
}

#[tokio::test]
async fn a_context_of_many_small_files_transfers_completely() {
    // Thousands of REQs in flight at once once deadlocked the transfer (the daemon stops reading
    // DATA while it waits to send a REQ we had not read).
    const FILES: usize = 5_000;
    let bed = Bed::get();
    let dir = dockerfile_context(&format!("FROM {}\nCOPY . /ctx/\n", bed.base_image));
    for i in 0..FILES {
        let sub = dir.path().join(format!("d{:02}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i:04}")), format!("{i}\n").repeat(200)).unwrap();
    }
    for (n, daemon) in bed.daemons().iter().enumerate() {
        let image = format!("{}/tests/many:{n}", bed.registry);
        let mut req = context_request(dir.path(), Output::Push(image.parse().unwrap()));
        req.shared_key = format!("many-{}-{n}", std::process::id());
        let (result, lines) = tokio::time::timeout(Duration::from_secs(120), build(daemon, req))
            .await
            .expect("the transfer finishes within 2 minutes");
        result.unwrap_or_else(|err| {
            panic!("build on {}: {err}\n{}", daemon.address, lines.join("\n"))
        });
        let count = bed.run_in_image(
            &image,
            "find /ctx -type f | wc -l && cat /ctx/d49/f4999 | head -1",
        );
        assert_eq!(
            count.split_whitespace().collect::<Vec<_>>(),
            [&(FILES + 1).to_string(), "4999"]
        );
    }
}

#[tokio::test]
async fn a_secret_from_the_session_reaches_run_mount() {
    let bed = Bed::get();
    let dir = dockerfile_context(&format!(
        "FROM {}\nARG RUN_ID\nRUN --mount=type=secret,id=token echo \"token=$(cat /run/secrets/token)\"\n",
        bed.base_image
    ));
    for daemon in bed.daemons() {
        let nonce = format!("s3cr3t-{}", std::process::id());
        let mut req = context_request(dir.path(), Output::Discard);
        req.secrets
            .insert("token".into(), bytes::Bytes::from(nonce.clone()));
        // A new Dockerfile comment each run keeps the RUN step from being a cache hit.
        let (result, lines) = build(&daemon, req).await;
        result.unwrap_or_else(|err| {
            panic!("build on {}: {err}\n{}", daemon.address, lines.join("\n"))
        });
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(&format!(" token={nonce}")))
                || lines
                    .iter()
                    .any(|l| l.contains("CACHED") && l.contains("--mount=type=secret")),
            "{lines:#?}"
        );
    }
}
