//! `keygen`: a new key pair for sealed build secrets. The private key goes into a new file only
//! its owner can read, for the builder's `build_secrets_private_key_path`; the public key is
//! printed as the builder's `GET /publickey` answers it, for `--builder-public-key`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use handler::sealed::OpeningKey;

use crate::serve::write_private_file;

#[derive(Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key (base64); an existing file is never overwritten.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
}

/// Where OpenFaaS Pro's chart mounts the key, and the secret it mounts.
const MOUNTED_AT: &str = "/var/secrets/buildkit/key";
const K8S_SECRET: &str = "pro-builder-build-secrets-key";

/// Writes a new private key to `--out` and prints its public half: the JSON on stdout (so it can
/// be redirected to a file), what to do with the key on stderr.
pub(crate) fn keygen(args: KeygenArgs) -> Result<()> {
    let key = OpeningKey::generate();
    let mut content = key.to_base64();
    content.push('\n');
    if let Err(err) = write_private_file(&args.out, content.as_bytes()) {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            bail!(
                "{} already exists: keygen never replaces a key (builds sealed to it could no \
                 longer be opened); remove it first or choose another --out",
                args.out.display()
            );
        }
        // A half-written key would make the next keygen refuse: leave nothing behind.
        let _ = std::fs::remove_file(&args.out);
        return Err(err).with_context(|| format!("writing the key to {}", args.out.display()));
    }
    let json = serde_json::to_string(key.public()).expect("strings");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}").and_then(|()| stdout.flush())?;
    eprintln!(
        "private key written to {file} (mode 600): give it to the builder as \
         build_secrets_private_key_path={file}, `function-builder serve --build-secrets-key \
         {file}`, or on Kubernetes as the secret {K8S_SECRET} mounted at {MOUNTED_AT} \
         (`kubectl create secret generic {K8S_SECRET} --from-file=key={file}` in the builder's \
         namespace)",
        file = args.out.display()
    );
    Ok(())
}
