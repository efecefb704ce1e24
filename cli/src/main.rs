//! function-builder: run the builder locally, and pack, sign and submit builds to it.
//! Run: `cargo run -p function-builder-cli -- --help`

mod callback;
mod display;
mod keygen;
mod layout;
mod pack;
mod secrets;
mod serve;
mod spool;
mod stack;
mod submit;
mod transport;
mod vendor;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use layout::{Layout, Links};

#[derive(Parser)]
#[command(
    name = "function-builder",
    version,
    about = "Build container images through the OpenFaaS Function Builder API",
    after_help = "Examples:
  function-builder serve                       # the builder on 127.0.0.1:8080, local Docker Engine
  function-builder build ./ctx --image 127.0.0.1:5000/fn:dev
  function-builder build -f stack.yml --function fn
  function-builder pack ./ctx --image reg.example.com/fn:1 -o req.tar
  function-builder keygen --out build-secrets.key > publickey.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the builder on a local port (the same function code as production).
    #[command(after_help = "Examples:
  function-builder serve
  function-builder serve --port 8081 --network none --secret-file payload.txt
  function-builder serve --buildkit unix:///run/buildkit/buildkitd.sock
  function-builder serve --build-secrets-key build-secrets.key")]
    Serve(serve::ServeArgs),
    /// Write the build request tar for a folder with a Dockerfile, or a stack.yml function.
    #[command(after_help = "Examples:
  function-builder pack ./ctx --image reg.example.com/fn:1 -o req.tar
  function-builder pack -f stack.yml --function fn -o req.tar
  function-builder pack ./ctx --image reg.example.com/fn:1 -o req.tar \\
    --build-secret npmrc=@$HOME/.npmrc --builder-public-key publickey.json
  curl -sS http://127.0.0.1:8080/build --data-binary @req.tar \\
    -H \"X-Build-Signature: sha256=$(openssl dgst -sha256 -hmac \"$SECRET\" req.tar | cut -d' ' -f2)\"")]
    Pack {
        #[command(flatten)]
        request: RequestArgs,
        /// Where to write the tar.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Pack a folder or a stack.yml function, sign it and submit it to a builder, showing
    /// progress as it happens.
    #[command(after_help = "Examples:
  export OPENFAAS_REMOTE_BUILDER=http://127.0.0.1:8080/build OPENFAAS_PAYLOAD_SECRET=payload.txt
  function-builder build ./ctx --image 127.0.0.1:5000/fn:dev --build-arg VERSION=1
  function-builder build -f stack.yml --function fn --platform linux/amd64 --platform linux/arm64
  function-builder build ./ctx --image 127.0.0.1:5000/fn:dev --build-secret token=@token.txt
  function-builder build ./ctx --image reg.example.com/fn:1 --async --wait \\
    --url https://gw.example.com/function/function-builder.openfaas-system/build")]
    Build {
        #[command(flatten)]
        request: RequestArgs,
        /// The builder, e.g. http://127.0.0.1:8080/build, or through a gateway
        /// https://gw.example.com/function/function-builder.openfaas-system/build (required,
        /// here or in the environment).
        #[arg(long, env = "OPENFAAS_REMOTE_BUILDER", hide_env_values = true)]
        url: Option<String>,
        /// File holding the payload secret (required, here or in the environment).
        #[arg(
            long,
            value_name = "FILE",
            env = "OPENFAAS_PAYLOAD_SECRET",
            hide_env_values = true
        )]
        secret_file: Option<PathBuf>,
        /// CA certificates (PEM) for an https:// URL, instead of the system's.
        #[arg(long, value_name = "PEM")]
        cacert: Option<PathBuf>,
        #[command(flatten)]
        queue: AsyncArgs,
        /// `auto`: a live line on a terminal; `plain`: log lines only.
        #[arg(long, value_enum, default_value = "auto")]
        progress: display::Progress,
    },
    /// Make a key pair for sealed build secrets: the private key into a new file for the
    /// builder, the public key (as the builder's GET /publickey answers it) on stdout.
    #[command(after_help = "Examples:
  function-builder keygen --out build-secrets.key > publickey.json
  function-builder serve --build-secrets-key build-secrets.key")]
    Keygen(keygen::KeygenArgs),
}

/// Through the gateway's queue: `--url` is a gateway URL such as
/// `http://gateway:8080/function/function-builder.openfaas-system/build`.
#[derive(Args)]
struct AsyncArgs {
    /// Invoke through `/async-function/…` and print the call id.
    #[arg(long = "async")]
    queued: bool,
    /// Where the gateway posts the result (required with --async unless --wait makes one).
    #[arg(long, value_name = "URL", requires = "queued")]
    callback_url: Option<String>,
    /// Wait for the callback on a local receiver and print the result when it arrives.
    #[arg(long, requires = "queued")]
    wait: bool,
    /// Address the --wait receiver binds; the callback URL must reach it.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        requires = "wait"
    )]
    callback_listen: SocketAddr,
}

#[derive(Args)]
struct RequestArgs {
    /// Folder with a Dockerfile (its .dockerignore is applied before sending).
    #[arg(required_unless_present = "yaml")]
    dir: Option<PathBuf>,
    /// A faas-cli stack file: its function is laid out as `faas-cli build --shrinkwrap` does.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "dir")]
    yaml: Option<PathBuf>,
    /// The stack file's function to pack (needed when it has several).
    #[arg(long, requires = "yaml")]
    function: Option<String>,
    /// Image to build and push (default: the function's `image` in the stack file).
    #[arg(long)]
    image: Option<String>,
    /// Build argument (repeatable; over the stack file's `build_args`).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_pair)]
    build_args: Vec<(String, String)>,
    /// Target platform, e.g. linux/arm64 (repeatable; default: the stack file's `platforms`).
    #[arg(long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,
    /// Build without pushing.
    #[arg(long)]
    skip_push: bool,
    /// Attach SLSA provenance: min, max or none (default: the builder's setting). Needs a
    /// standalone buildkitd v0.11+.
    #[arg(long, value_name = "MODE", value_parser = ["min", "max", "none"])]
    provenance: Option<String>,
    /// Attach an SBOM, made by the builder's generator or by GENERATOR (an image the builder
    /// allows); `--sbom=false` for none (default: the builder's setting).
    #[arg(long, value_name = "GENERATOR", num_args = 0..=1, default_missing_value = "true")]
    sbom: Option<String>,
    /// Build reproducibly: layer timestamps and the image's dates are SOURCE_DATE_EPOCH (this
    /// CLI packs every file with mtime 1, so give --source-date-epoch for a meaningful date).
    #[arg(long)]
    reproducible: bool,
    /// The reproducible build's date, in seconds since 1970 (implies --reproducible), e.g.
    /// $(git log -1 --format=%ct).
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<u64>,
    /// Put every crate the context's cargo workspace (its root Cargo.toml, e.g. a rust-http
    /// stack function's) needs into it (`cargo vendor`, leaving out other platforms' crates
    /// when cargo-vendor-filterer is installed), so it builds with no network. Implies --gzip.
    #[arg(long)]
    vendor: bool,
    /// Send the request tar gzip-compressed.
    #[arg(long)]
    gzip: bool,
    #[command(flatten)]
    secrets: secrets::SecretArgs,
}

/// What the request arguments name: the context, the config, and the build secrets to seal.
struct Request {
    layout: Layout,
    config: pack::Config,
    build_secrets: secrets::Values,
    /// The vendored crates the layout points at (`--vendor`), removed when dropped.
    _vendored: Option<tempfile::TempDir>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

impl RequestArgs {
    /// The context, request config and build secrets these arguments name.
    fn resolve(&self) -> Result<Request> {
        let mut config = pack::Config {
            image: self.image.clone(),
            build_args: BTreeMap::new(),
            platforms: self.platforms.clone(),
            skip_push: self.skip_push,
            provenance: self.provenance.clone(),
            sbom: self.sbom.as_deref().map(|v| match v {
                "true" => handler::wire::Sbom::Enabled(true),
                "false" => handler::wire::Sbom::Enabled(false),
                generator => handler::wire::Sbom::Generator(generator.to_owned()),
            }),
            reproducible: self.reproducible,
            source_date_epoch: self.source_date_epoch,
            gzip: self.gzip || self.vendor,
        };
        let mut stack_secrets = BTreeMap::new();
        let mut layout = match (&self.dir, &self.yaml) {
            (Some(dir), _) => {
                let mut layout = Layout::new();
                if !dir.is_dir() {
                    bail!("{} is not a folder", dir.display());
                }
                layout.overlay(dir, "", Links::Keep, &[])?;
                if layout.file("Dockerfile").is_none() {
                    bail!("{} has no Dockerfile", dir.display());
                }
                layout
            }
            (None, Some(yaml)) => {
                let function = stack::load(yaml, self.function.as_deref())?;
                if config.image.is_none() && !function.image.is_empty() {
                    config.image = Some(function.image);
                }
                config.build_args = function.build_args;
                if config.platforms.is_empty() {
                    config.platforms = function.platforms;
                }
                stack_secrets = function.build_secrets;
                function.layout
            }
            (None, None) => bail!("give a folder with a Dockerfile, or -f stack.yml"),
        };
        config.build_args.extend(self.build_args.iter().cloned());
        if config.image.is_none() && !config.skip_push {
            bail!("--image is required unless --skip-push is given");
        }
        // The builder's own grammar, so a bad name fails here and not after the upload.
        if let Some(image) = &config.image {
            if let Err(err) = image.parse::<buildkit::ImageRef>() {
                bail!("image: {err}");
            }
        }
        let build_secrets = self.secrets.values(&stack_secrets)?;
        let vendored = match self.vendor {
            true => Some(vendor::vendor(&mut layout)?),
            false => None,
        };
        Ok(Request {
            layout,
            config,
            build_secrets,
            _vendored: vendored,
        })
    }
}

/// How long blocking work (a context walk, a credential helper) may go on once `run` returned,
/// e.g. for the builds a stopping `serve` cancels.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    // An empty variable (`OPENFAAS_REMOTE_BUILDER= function-builder build`) means unset, as in
    // faas-cli; clap would call it a missing value. Every variable an argument reads, removed
    // before any thread starts.
    let command = Cli::command();
    let names: Vec<std::ffi::OsString> = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(clap::Command::get_arguments)
        .filter_map(|arg| arg.get_env().map(ToOwned::to_owned))
        .collect();
    for name in names {
        if std::env::var_os(&name).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(&name);
        }
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Tasks still running are dropped here: for `serve`, its builds in flight, which cancels them.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pack { request, output } => {
            let Request {
                layout,
                config,
                build_secrets,
                _vendored,
            } = request.resolve()?;
            // Sealed before the output is created: a missing key leaves no file behind.
            let sealed = request.secrets.seal(&build_secrets, None).await?;
            drop(build_secrets);
            let file = std::fs::File::create(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            let out = std::io::BufWriter::new(file);
            let mut file = pack::pack(&layout, &config, sealed.as_deref(), out)?;
            file.flush()
                .with_context(|| format!("writing {}", output.display()))?;
            Ok(())
        }
        Command::Build {
            request,
            url,
            secret_file,
            cacert,
            queue,
            progress,
        } => {
            let (Some(url), Some(secret_file)) = (url, secret_file) else {
                bail!(
                    "build needs the builder's URL and the payload secret: pass --url and \
                     --secret-file, or set OPENFAAS_REMOTE_BUILDER and OPENFAAS_PAYLOAD_SECRET"
                );
            };
            let target = transport::Target { url, cacert };
            let secret = std::fs::read_to_string(&secret_file)
                .with_context(|| format!("reading the payload secret {}", secret_file.display()))?;
            let Request {
                layout,
                config,
                build_secrets,
                _vendored,
            } = request.resolve()?;
            let sealed = request.secrets.seal(&build_secrets, Some(&target)).await?;
            drop(build_secrets);
            let spooled = tokio::task::block_in_place(|| {
                spool::spool(&layout, &config, sealed.as_deref(), &secret)
            })?;
            let mut display = display::Display::new(progress);
            display.pushes(config.image.clone().filter(|_| !config.skip_push));
            let outcome = if queue.queued {
                build_async(&target, spooled, queue, &mut display).await
            } else {
                submit::submit(&target, spooled, &mut display)
                    .await
                    .map(Some)
            };
            display.finish();
            let Some(outcome) = outcome? else {
                return Ok(());
            };
            // A --skip-push build without --image has no name.
            if !outcome.image.is_empty() {
                println!("image: {}", outcome.image);
            }
            if let Some(digest) = outcome.digest {
                println!("digest: {digest}");
            }
            if let Some(steps) = outcome.steps {
                println!("steps: {} ({} cached)", steps.total, steps.cached);
            }
            if let Some(request) = outcome.request_digest {
                println!("request: {request}");
            }
            for attestation in outcome.attestations {
                println!("attestation: {attestation}");
            }
            Ok(())
        }
        Command::Serve(args) => serve::serve(args).await,
        Command::Keygen(args) => keygen::keygen(args),
    }
}

/// Submits through the queue; with `--wait`, returns the outcome the callback brought.
async fn build_async(
    target: &transport::Target,
    request: spool::Spooled,
    queue: AsyncArgs,
    display: &mut display::Display,
) -> Result<Option<submit::Outcome>> {
    let listener = match queue.wait {
        true => Some(tokio::net::TcpListener::bind(queue.callback_listen).await?),
        false => None,
    };
    let callback_url = match (&queue.callback_url, &listener) {
        (Some(url), _) => url.clone(),
        (None, Some(listener)) => format!("http://{}/", listener.local_addr()?),
        (None, None) => {
            bail!("--async needs --callback-url, or --wait to receive the callback here")
        }
    };
    let call_id = submit::submit_async(target, request, &callback_url).await?;
    display.note(&format!("call id: {call_id}"));
    let Some(listener) = listener else {
        return Ok(None);
    };
    let callback = callback::wait(listener).await?;
    display.note(&format!(
        "callback for call {} with status {}",
        callback.call_id, callback.status
    ));
    submit::show_log(&callback.result, display);
    submit::outcome(&callback.result, callback.status).map(Some)
}
