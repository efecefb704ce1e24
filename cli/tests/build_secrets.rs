//! Sealed build secrets from the CLI: `--build-secret` and a stack function's `build_secrets`
//! sealed into the request tar, `keygen`, and a round trip through `serve` on the real test bed
//! where the value reaches `RUN --mount=type=secret` and is printed nowhere.

use std::path::Path;
use std::process::Command;

use function_builder_tests::api::SECRET;
use function_builder_tests::bed::Bed;
use handler::sealed::{OpeningKey, PublicKeyInfo};
use sha2::Digest;

mod common;
use common::{build_args, strings, write, Serve, BIN};

/// Runs the CLI without a `OPENFAAS_BUILDER_PUBLIC_KEY` from the caller's environment, with
/// `env` added; returns (success, stdout, stderr).
async fn run(args: Vec<String>, env: &[(&str, &str)]) -> (bool, String, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("OPENFAAS_BUILDER_PUBLIC_KEY")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each entry's path and content.
fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut out = Vec::new();
    for entry in tar::Archive::new(tar).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.push((path, content));
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn pack_args(ctx: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "pack",
        ctx.to_str().unwrap(),
        "--image",
        "reg.example/fn:1",
        "-o",
        out.to_str().unwrap(),
    ]);
    args.extend(strings(extra));
    args
}

const PLAIN: &str = "plain-flag-value-7d1f";
const NPMRC: &str = "//registry.example/:_authToken=npm-file-value-93ac\n";

#[tokio::test]
async fn pack_seals_secrets_last_in_the_tar_and_packs_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\n");
    write(dir.path(), "npmrc", NPMRC);
    let key = OpeningKey::generate();
    let public = dir.path().join("publickey.json");
    std::fs::write(&public, serde_json::to_string(key.public()).unwrap()).unwrap();
    let plain = format!("token={PLAIN}");
    let from_file = format!("npmrc=@{}", dir.path().join("npmrc").display());
    let secrets = ["--build-secret", &plain, "--build-secret", &from_file];
    let out = dir.path().join("req.tar");

    let mut args = pack_args(&ctx, &out, &secrets);
    args.extend(strings(&["--builder-public-key", public.to_str().unwrap()]));
    let (ok, stdout, stderr) = run(args, &[]).await;
    assert!(ok, "{stdout}\n{stderr}");
    let tar = std::fs::read(&out).unwrap();
    let entries = entries(&tar);
    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "com.openfaas.docker.config",
            "context",
            "context/Dockerfile",
            "com.openfaas.secrets"
        ]
    );
    let opened = key.open(&entries[3].1).unwrap();
    assert_eq!(opened.keys().collect::<Vec<_>>(), ["npmrc", "token"]);
    assert_eq!(opened["token"].as_slice(), PLAIN.as_bytes());
    assert_eq!(opened["npmrc"].as_slice(), NPMRC.as_bytes(), "newline kept");
    assert!(!contains(&tar, PLAIN) && !contains(&tar, "npm-file-value"));
    assert!(!stdout.contains(PLAIN) && !stderr.contains(PLAIN));

    // The bare base64 key from the environment seals as well.
    let bare = out.with_file_name("bare.tar");
    let env = [(
        "OPENFAAS_BUILDER_PUBLIC_KEY",
        key.public().public_key.as_str(),
    )];
    let (ok, _, stderr) = run(pack_args(&ctx, &bare, &secrets), &env).await;
    assert!(ok, "{stderr}");
    let entries = self::entries(&std::fs::read(&bare).unwrap());
    let opened = key.open(&entries.last().unwrap().1).unwrap();
    assert_eq!(opened["token"].as_slice(), PLAIN.as_bytes());

    // Without secrets, a key changes nothing: the same bytes as a pack without it.
    let keyless = out.with_file_name("keyless.tar");
    let keyed = out.with_file_name("keyed.tar");
    assert!(run(pack_args(&ctx, &keyless, &[]), &[]).await.0);
    assert!(run(pack_args(&ctx, &keyed, &[]), &env).await.0);
    let keyless = std::fs::read(&keyless).unwrap();
    assert_eq!(keyless, std::fs::read(&keyed).unwrap());
    assert_eq!(self::entries(&keyless).len(), 3);

    // Secrets without a key: an error saying what to pass, and no tar.
    let none = out.with_file_name("none.tar");
    let (ok, stdout, stderr) = run(pack_args(&ctx, &none, &secrets), &[]).await;
    assert!(!ok);
    assert!(
        stderr
            .starts_with("error: pack needs --builder-public-key (or OPENFAAS_BUILDER_PUBLIC_KEY)"),
        "{stderr}"
    );
    assert!(!none.exists());
    assert!(!stdout.contains(PLAIN) && !stderr.contains(PLAIN));

    // Only nacl/box.
    let mut age = serde_json::to_value(key.public()).unwrap();
    age["algorithm"] = "age".into();
    std::fs::write(&public, age.to_string()).unwrap();
    let mut args = pack_args(&ctx, &none, &secrets);
    args.extend(strings(&["--builder-public-key", public.to_str().unwrap()]));
    let (ok, _, stderr) = run(args, &[]).await;
    assert!(!ok);
    assert!(
        stderr.ends_with("public key algorithm \"age\" is not nacl/box\n"),
        "{stderr}"
    );

    // A flag that is not NAME=VALUE is refused without being echoed.
    let (ok, _, stderr) = run(pack_args(&ctx, &none, &["--build-secret", PLAIN]), &[]).await;
    assert!(!ok);
    assert!(!stderr.contains(PLAIN), "{stderr}");
    assert!(stderr.contains("--build-secret takes NAME=VALUE or NAME=@FILE"));
}

#[tokio::test]
async fn a_stack_functions_build_secrets_are_read_beside_it_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    write(
        &project,
        "stack.yml",
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  fn:\n    lang: dockerfile\n    \
         handler: ./fn\n    image: reg.example/fn:1\n    build_secrets:\n      \
         npmrc: ./secrets/npmrc\n      token: secrets/token\n",
    );
    write(&project, "fn/Dockerfile", "FROM scratch\n");
    write(&project, "secrets/npmrc", NPMRC);
    write(&project, "secrets/token", "from-the-stack\n");
    let key = OpeningKey::generate();
    let out = dir.path().join("req.tar");
    let args = strings(&[
        "pack",
        "-f",
        project.join("stack.yml").to_str().unwrap(),
        "--build-secret",
        "token=from-the-flag",
        "--builder-public-key",
        &key.public().public_key,
        "-o",
        out.to_str().unwrap(),
    ]);
    let (ok, stdout, stderr) = run(args, &[]).await;
    assert!(ok, "{stdout}\n{stderr}");
    let entries = entries(&std::fs::read(&out).unwrap());
    let (name, sealed) = entries.last().unwrap();
    assert_eq!(name, "com.openfaas.secrets");
    let opened = key.open(sealed).unwrap();
    assert_eq!(opened.len(), 2);
    assert_eq!(opened["npmrc"].as_slice(), NPMRC.as_bytes());
    assert_eq!(opened["token"].as_slice(), b"from-the-flag");
}

#[tokio::test]
async fn keygen_writes_a_private_key_once_and_prints_its_public_half() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("build-secrets.key");
    let keygen = || strings(&["keygen", "--out", file.to_str().unwrap()]);
    let (ok, stdout, stderr) = run(keygen(), &[]).await;
    assert!(ok, "{stderr}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.ends_with('\n') && written.trim().len() == 44,
        "{written:?}"
    );
    let key = OpeningKey::load(&file).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(PublicKeyInfo::parse(&stdout).unwrap(), *key.public());
    assert!(!stdout.contains(written.trim()) && !stderr.contains(written.trim()));
    let path = file.display();
    assert!(
        stderr.contains(&format!("build_secrets_private_key_path={path}")),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("secret pro-builder-build-secrets-key mounted at /var/secrets/buildkit/key"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = run(keygen(), &[]).await;
    assert!(!ok);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(&format!(
            "error: {path} already exists: keygen never replaces a key"
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
}

/// `keygen`, `serve --build-secrets-key`, then `build` with no `--builder-public-key`: the key
/// comes from the server's `GET /publickey` and the file's bytes reach the RUN mount.
#[tokio::test]
async fn build_seals_to_the_key_serve_publishes_and_the_run_mount_gets_the_file() {
    use function_builder_tests::client::{empty, read_body, send_tcp};

    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("build-secrets.key");
    let (ok, stdout, stderr) = run(
        strings(&["keygen", "--out", key_file.to_str().unwrap()]),
        &[],
    )
    .await;
    assert!(ok, "{stderr}");
    let public = PublicKeyInfo::parse(&stdout).unwrap();
    let payload = dir.path().join("payload.txt");
    std::fs::write(&payload, SECRET).unwrap();
    let serve = Serve::on_bed_with(
        &bed,
        &payload,
        &["--build-secrets-key", key_file.to_str().unwrap()],
    );
    assert!(
        serve.banner.iter().any(|l| l
            == &format!(
                "build secrets open with key {}; its public key is at http://{}/publickey",
                public.key_id,
                serve.addr()
            )),
        "{:?}",
        serve.banner
    );
    let get = http::Request::get("/publickey")
        .header("host", "builder")
        .body(empty())
        .unwrap();
    let answer = send_tcp(serve.addr(), get).await;
    assert_eq!(answer.status(), 200);
    let served: PublicKeyInfo = serde_json::from_slice(&read_body(answer).await).unwrap();
    assert_eq!(served, public);

    // A secret's content is not part of BuildKit's cache key: RUN_ID is, so no earlier run's
    // cache can stand in for this build.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let value = format!("cli-sealed-token-{nanos}\n");
    let token = dir.path().join("token.txt");
    std::fs::write(&token, &value).unwrap();
    write(
        dir.path(),
        "ctx/Dockerfile",
        &format!(
            "FROM {}\nARG RUN_ID\nRUN --mount=type=secret,id=token sha256sum /run/secrets/token \
             | cut -d' ' -f1 > /hash\n",
            bed.base_image
        ),
    );
    let image = format!("{}/cli/sealed:1", bed.registry);
    let mut args = build_args(&dir.path().join("ctx"), &image, &serve.url, &payload);
    args.extend(strings(&[
        "--build-secret",
        &format!("token=@{}", token.display()),
        "--build-arg",
        &format!("RUN_ID={nanos}"),
    ]));
    let (ok, stdout, stderr) = run(args, &[]).await;
    assert!(ok, "{stdout}\n{stderr}");
    let printed = value.trim();
    assert!(!stdout.contains(printed), "{stdout}");
    assert!(!stderr.contains(printed), "{stderr}");
    let want = hex::encode(sha2::Sha256::digest(value.as_bytes()));
    assert_eq!(bed.run_in_image(&image, "cat /hash"), format!("{want}\n"));
    let log = serve.wait_for_log(|l| l.contains(&format!("image={image}")));
    assert!(
        log.iter().any(|l| l.contains(&format!("image={image}"))),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains(printed)), "{log:#?}");
}

#[tokio::test]
async fn build_with_secrets_against_a_builder_without_a_key_says_what_to_configure() {
    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.txt");
    std::fs::write(&payload, SECRET).unwrap();
    let serve = Serve::on_bed(&bed, &payload);
    write(dir.path(), "ctx/Dockerfile", "FROM scratch\n");
    let image = format!("{}/cli/unsealed:1", bed.registry);
    let mut args = build_args(&dir.path().join("ctx"), &image, &serve.url, &payload);
    args.extend(strings(&["--build-secret", &format!("token={PLAIN}")]));
    let (ok, stdout, stderr) = run(args, &[]).await;
    assert!(!ok, "{stdout}");
    assert_eq!(
        stderr,
        "error: the builder has no build secrets key (it answered 404 on /publickey): configure \
         build_secrets_private_key_path there, or drop the secrets\n"
    );
}

#[tokio::test]
async fn help_names_the_secret_flags() {
    let (ok, help, _) = run(strings(&["build", "--help"]), &[]).await;
    assert!(ok);
    assert!(
        help.contains("--build-secret <NAME=VALUE|NAME=@FILE>"),
        "{help}"
    );
    assert!(
        help.contains("[env: OPENFAAS_BUILDER_PUBLIC_KEY]"),
        "{help}"
    );
    let (ok, help, _) = run(strings(&["serve", "--help"]), &[]).await;
    assert!(ok);
    assert!(help.contains("--build-secrets-key <FILE>"), "{help}");
}
