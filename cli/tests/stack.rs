//! `pack` and `build` from a faas-cli stack.yml function: laid out as `faas-cli build
//! --shrinkwrap` lays it out, stable byte for byte, and built for real on the test bed.

use std::path::Path;

use function_builder_tests::api::SECRET;
use function_builder_tests::bed::Bed;

mod common;
use common::{cli, cli_env, rewrite_with_new_mtime, strings, tar_listing, write, Serve};

const STACK: &str = "\
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  greet:
    lang: shell-tpl
    handler: ./greet
    image: ${FB_TEST_REGISTRY:-reg.example}/cli/greet:${FB_TEST_TAG:-dev}
    build_args:
      GREETING: hello
      OVERRIDE: stack
    build_options: [extra]
    platforms: linux/amd64
  plain:
    lang: Dockerfile
    handler: ./plain
    image: reg.example/cli/plain:1
configuration:
  copy:
    - ./common
";

/// A project as `faas-cli new` and a hand-made template leave it; `base` is the template's FROM.
fn project(root: &Path, base: &str) {
    write(root, "stack.yml", STACK);
    write(
        root,
        "template/shell-tpl/template.yml",
        "language: shell-tpl\nhandler_folder: function\nbuild_options:\n\
         - name: extra\n  packages: [zlib, curl]\n",
    );
    write(
        root,
        "template/shell-tpl/Dockerfile",
        &format!(
            "FROM {base}\nARG GREETING\nARG OVERRIDE\nARG ADDITIONAL_PACKAGE\n\
             COPY function/ /home/app/\n\
             RUN echo \"$GREETING $OVERRIDE $ADDITIONAL_PACKAGE\" > /home/app/args\n"
        ),
    );
    write(root, "template/shell-tpl/.dockerignore", "function/*.md\n");
    write(
        root,
        "template/shell-tpl/function/handler.sh",
        "echo scaffold\n",
    );
    write(
        root,
        "template/shell-tpl/function/scaffold.txt",
        "from the template\n",
    );
    write(root, "greet/handler.sh", "echo mine\n");
    write(
        root,
        "greet/README.md",
        "ignored by the template's .dockerignore\n",
    );
    write(
        root,
        "greet/build/stale",
        "faas-cli skips the handler's build/\n",
    );
    write(root, "greet/template/stale", "and its template/\n");
    write(root, "common/shared.txt", "shared\n");
    std::os::unix::fs::symlink("../common/shared.txt", root.join("greet/linked.txt")).unwrap();
    write(
        root,
        "plain/Dockerfile",
        &format!("FROM {base}\nCOPY . /plain/\n"),
    );
}

fn pack_args(root: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let yaml = root.join("stack.yml");
    let mut args = strings(&[
        "pack",
        "-f",
        yaml.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    args.extend(strings(extra));
    args
}

#[tokio::test]
async fn pack_lays_out_a_stack_function_as_shrinkwrap_does_and_is_stable() {
    let project_dir = tempfile::tempdir().unwrap();
    let root = project_dir.path();
    project(root, "busybox");
    let out = tempfile::tempdir().unwrap();
    let one = out.path().join("one.tar");
    let two = out.path().join("two.tar");
    let env = vec![("FB_TEST_TAG".to_owned(), "1.2".to_owned())];
    let flags = ["--function", "greet", "--build-arg", "OVERRIDE=flag"];

    let (ok, stdout, stderr) = cli_env(pack_args(root, &one, &flags), env.clone()).await;
    assert!(ok, "{stdout}\n{stderr}");
    rewrite_with_new_mtime(root, "greet/handler.sh", "echo mine\n");
    rewrite_with_new_mtime(
        root,
        "template/shell-tpl/Dockerfile",
        &std::fs::read_to_string(root.join("template/shell-tpl/Dockerfile")).unwrap(),
    );
    assert!(cli_env(pack_args(root, &two, &flags), env).await.0);
    let tar = std::fs::read(&one).unwrap();
    assert_eq!(
        tar,
        std::fs::read(&two).unwrap(),
        "the same input packs to the same bytes"
    );

    let listing = tar_listing(&tar);
    assert_eq!(
        listing[0],
        "com.openfaas.docker.config (644) = {\"buildArgs\":{\"ADDITIONAL_PACKAGE\":\"curl zlib\",\
         \"GREETING\":\"hello\",\"OVERRIDE\":\"flag\"},\"image\":\"reg.example/cli/greet:1.2\",\
         \"platforms\":[\"linux/amd64\"]}"
    );
    let dockerfile = std::fs::read_to_string(root.join("template/shell-tpl/Dockerfile")).unwrap();
    assert_eq!(
        listing[1..],
        [
            "context/".to_owned(),
            "context/.dockerignore (644) = function/*.md\n".to_owned(),
            format!("context/Dockerfile (644) = {dockerfile}"),
            "context/function/".to_owned(),
            "context/function/common/".to_owned(),
            "context/function/common/shared.txt (644) = shared\n".to_owned(),
            "context/function/handler.sh (644) = echo mine\n".to_owned(),
            "context/function/linked.txt (644) = shared\n".to_owned(),
            "context/function/scaffold.txt (644) = from the template\n".to_owned(),
            "context/template.yml (644) = language: shell-tpl\nhandler_folder: function\n\
             build_options:\n- name: extra\n  packages: [zlib, curl]\n"
                .to_owned(),
        ]
    );

    // The same bytes as packing the folder faas-cli would have shrinkwrapped, given the same
    // config by flags.
    let shrinkwrapped = tempfile::tempdir().unwrap();
    let sw = shrinkwrapped.path();
    for rel in [
        ".dockerignore",
        "Dockerfile",
        "template.yml",
        "function/scaffold.txt",
    ] {
        std::fs::create_dir_all(sw.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(root.join("template/shell-tpl").join(rel), sw.join(rel)).unwrap();
    }
    write(sw, "function/handler.sh", "echo mine\n");
    write(
        sw,
        "function/README.md",
        "ignored by the template's .dockerignore\n",
    );
    write(sw, "function/linked.txt", "shared\n");
    write(sw, "function/common/shared.txt", "shared\n");
    let folder = out.path().join("folder.tar");
    let (ok, _, stderr) = cli(strings(&[
        "pack",
        sw.to_str().unwrap(),
        "--image",
        "reg.example/cli/greet:1.2",
        "--build-arg",
        "ADDITIONAL_PACKAGE=curl zlib",
        "--build-arg",
        "GREETING=hello",
        "--build-arg",
        "OVERRIDE=flag",
        "--platform",
        "linux/amd64",
        "-o",
        folder.to_str().unwrap(),
    ]))
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(tar, std::fs::read(&folder).unwrap());

    // lang: Dockerfile: the handler is the context, copy paths land at its root.
    let plain = out.path().join("plain.tar");
    let (ok, _, stderr) = cli(pack_args(root, &plain, &["--function", "plain"])).await;
    assert!(ok, "{stderr}");
    let listing = tar_listing(&std::fs::read(&plain).unwrap());
    assert_eq!(
        listing[1..],
        [
            "context/".to_owned(),
            "context/Dockerfile (644) = FROM busybox\nCOPY . /plain/\n".to_owned(),
            "context/common/".to_owned(),
            "context/common/shared.txt (644) = shared\n".to_owned(),
        ]
    );
}

#[tokio::test]
async fn pack_names_what_is_wrong_with_a_stack_file() {
    let project_dir = tempfile::tempdir().unwrap();
    let root = project_dir.path();
    project(root, "busybox");
    let out = root.join("out.tar");
    let yaml = root.join("stack.yml");
    type Breaks = Box<dyn Fn(&Path)>;
    let cases: Vec<(Vec<&str>, Breaks, String)> =
        vec![
        (
            vec![],
            Box::new(|_| {}),
            format!(
                "{} has several functions, name one with --function (greet, plain)",
                yaml.display()
            ),
        ),
        (
            vec!["--function", "nope"],
            Box::new(|_| {}),
            format!("no function \"nope\" in {} (it has: greet, plain)", yaml.display()),
        ),
        (
            vec!["--function", "greet"],
            Box::new(|root| std::fs::remove_dir_all(root.join("template")).unwrap()),
            format!(
                "function greet: template \"shell-tpl\" not found in {}; pull it first, e.g. \
                 `faas-cli template store pull shell-tpl`",
                root.join("template").display()
            ),
        ),
        (
            vec!["--function", "plain"],
            Box::new(|root| {
                let text = STACK.replace("- ./common", "- ../outside");
                write(root, "stack.yml", &text);
            }),
            "configuration.copy \"../outside\": the path must stay inside the stack file's folder"
                .to_owned(),
        ),
        (
            vec!["--function", "plain"],
            Box::new(|root| write(root, "stack.yml", &STACK.replace("openfaas\n", "faasd\n"))),
            format!(
                "{}: provider.name must be \"openfaas\", found \"faasd\"",
                yaml.display()
            ),
        ),
    ];
    for (flags, break_it, want) in cases {
        break_it(root);
        let (ok, stdout, stderr) = cli(pack_args(root, &out, &flags)).await;
        assert!(!ok, "{stdout}");
        assert_eq!(stderr.trim(), format!("error: {want}"));
    }
}

#[tokio::test]
async fn build_submits_a_stack_function_and_the_image_holds_the_shrinkwrapped_layout() {
    let bed = Bed::get();
    let project_dir = tempfile::tempdir().unwrap();
    let root = project_dir.path();
    project(root, &bed.base_image);
    let secret = root.join("payload.txt");
    std::fs::write(&secret, SECRET).unwrap();
    let serve = Serve::on_bed(&bed, &secret);
    let yaml = root.join("stack.yml");
    let url = serve.url.clone();
    let env = vec![("FB_TEST_REGISTRY".to_owned(), bed.registry.clone())];
    let args = strings(&[
        "build",
        "-f",
        yaml.to_str().unwrap(),
        "--function",
        "greet",
        "--url",
        &url,
        "--secret-file",
        secret.to_str().unwrap(),
    ]);
    let (ok, stdout, stderr) = cli_env(args, env).await;
    assert!(ok, "{stdout}\n{stderr}");
    let image = format!("{}/cli/greet:dev", bed.registry);
    assert!(stdout.contains(&format!("image: {image}")), "{stdout}");
    assert_eq!(
        bed.run_in_image(
            &image,
            "cat /home/app/args /home/app/handler.sh /home/app/common/shared.txt; ls /home/app"
        ),
        "hello stack curl zlib\necho mine\nshared\nargs\ncommon\nhandler.sh\nlinked.txt\nscaffold.txt\n"
    );
}
