//! Build secrets, client side: the values of `--build-secret` and of a stack function's
//! `build_secrets`, sealed to the builder's public key into `com.openfaas.secrets` as faas-cli
//! seals them (`handler::sealed` is the one definition of that file). Values stay in `Zeroizing`
//! buffers and no message ever holds one: errors name the secret, never its value.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use handler::sealed::{self, PublicKeyInfo};
use http_body_util::BodyExt;
use zeroize::Zeroizing;

use crate::transport::Target;

/// Secret values by name, as `handler::sealed::seal` takes them.
pub(crate) type Values = BTreeMap<String, Zeroizing<Vec<u8>>>;

#[derive(Args)]
pub(crate) struct SecretArgs {
    /// Build secret for `RUN --mount=type=secret,id=NAME` (repeatable): NAME=VALUE, or
    /// NAME=@FILE for the file's bytes as they are (over the stack file's `build_secrets`).
    /// Sealed to the builder's public key; never printed.
    #[arg(
        long = "build-secret",
        value_name = "NAME=VALUE|NAME=@FILE",
        value_parser = keep_secret
    )]
    build_secrets: Vec<Zeroizing<String>>,
    /// The builder's public key for build secrets: a file holding it (base64, or the JSON of
    /// the builder's GET /publickey), or the key itself. `build` asks the builder when not given.
    #[arg(
        long,
        value_name = "KEY|FILE",
        env = "OPENFAAS_BUILDER_PUBLIC_KEY",
        hide_env_values = true
    )]
    builder_public_key: Option<String>,
}

/// Takes any `--build-secret` as it is: a failing value parser would have clap print the
/// argument, which may be a value. [`SecretArgs::values`] judges it without echoing it.
fn keep_secret(given: &str) -> Result<Zeroizing<String>, Infallible> {
    Ok(Zeroizing::new(given.to_owned()))
}

impl SecretArgs {
    /// The values: the stack function's `build_secrets` files (`from_stack`), then the flags over
    /// them, a later flag over an earlier one.
    ///
    /// # Errors
    /// When a flag is not NAME=VALUE or NAME=@FILE, or a file cannot be read.
    pub(crate) fn values(&self, from_stack: &BTreeMap<String, PathBuf>) -> Result<Values> {
        let mut values = Values::new();
        for (name, path) in from_stack {
            let value = read_secret(path)
                .with_context(|| format!("build_secrets.{name}: reading {}", path.display()))?;
            values.insert(name.clone(), value);
        }
        for given in &self.build_secrets {
            let Some((name, value)) = given.split_once('=').filter(|(name, _)| !name.is_empty())
            else {
                bail!("--build-secret takes NAME=VALUE or NAME=@FILE (the argument is not shown)");
            };
            let value = match value.strip_prefix('@') {
                Some("") => bail!("--build-secret {name}=@ names no file"),
                Some(path) => read_secret(Path::new(path))
                    .with_context(|| format!("--build-secret {name}: reading {path}"))?,
                None => Zeroizing::new(value.as_bytes().to_vec()),
            };
            values.insert(name.to_owned(), value);
        }
        Ok(values)
    }

    /// The `com.openfaas.secrets` file sealing `values`, or `None` when there are none. The key
    /// is `--builder-public-key`'s, else the `builder`'s own (`build` passes its target; `pack`,
    /// which has none, needs the flag).
    ///
    /// # Errors
    /// When there is no key, it is not a nacl/box key, or a name is not a usable secret id.
    pub(crate) async fn seal(
        &self,
        values: &Values,
        builder: Option<&Target>,
    ) -> Result<Option<Vec<u8>>> {
        if values.is_empty() {
            return Ok(None);
        }
        let given = self
            .builder_public_key
            .as_deref()
            .filter(|key| !key.trim().is_empty());
        let key = match (given, builder) {
            (Some(given), _) => given_key(given)?,
            (None, Some(target)) => fetch_public_key(target).await?,
            (None, None) => bail!(
                "pack needs --builder-public-key (or OPENFAAS_BUILDER_PUBLIC_KEY) to seal build \
                 secrets: the builder's key, a file holding it, or the JSON of its GET /publickey"
            ),
        };
        sealed::seal(&key, values)
            .map(Some)
            .context("sealing the build secrets")
    }
}

/// A secret file's bytes, unchanged (a trailing newline is kept, as faas-cli keeps it).
/// `std::fs::read` sizes its buffer from the file's length, so no moved-out copy is left behind.
fn read_secret(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path).map(Zeroizing::new)
}

/// `--builder-public-key` as faas-cli reads it: a file, else the text itself.
fn given_key(given: &str) -> Result<PublicKeyInfo> {
    let path = Path::new(given);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--builder-public-key: reading {}", path.display()))?;
        return PublicKeyInfo::parse(&text)
            .map_err(|e| anyhow!("--builder-public-key {}: {e}", path.display()));
    }
    PublicKeyInfo::parse(given)
        .map_err(|e| anyhow!("--builder-public-key {given:?} is not a file, nor a key: {e}"))
}

/// The most of a `GET /publickey` answer read: a key and its id take about a hundred bytes.
const PUBLIC_KEY_ANSWER_MAX: usize = 64 * 1024;

/// What a builder without a key answers `GET /publickey`.
const NO_KEY: &str = "the builder has no build secrets key (it answered 404 on /publickey): \
                      configure build_secrets_private_key_path there, or drop the secrets";

/// The builder's key from its unauthenticated `GET /publickey`, next to the build URL's path (so
/// through a gateway too: `/function/NAME/build` → `/function/NAME/publickey`).
async fn fetch_public_key(target: &Target) -> Result<PublicKeyInfo> {
    let mut conn = target.connect().await?;
    let path = public_key_path(&conn.path);
    let req = http::Request::get(&path)
        .header(http::header::HOST, &conn.authority)
        .body(openfaas_runtime::Body::empty())?;
    let resp = conn
        .send(req)
        .await
        .with_context(|| format!("asking the builder for its public key (GET {path})"))?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), PUBLIC_KEY_ANSWER_MAX)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer to GET {path}: {e}"))?
        .to_bytes();
    if status == http::StatusCode::NOT_FOUND {
        bail!("{NO_KEY}");
    }
    let text = String::from_utf8_lossy(&body);
    if status != http::StatusCode::OK {
        bail!("GET {path} answered {status}: {}", text.trim());
    }
    PublicKeyInfo::parse(&text).map_err(|e| anyhow!("the builder's GET {path}: {e}"))
}

/// `…/build` → `…/publickey`.
fn public_key_path(build_path: &str) -> String {
    let base = match build_path.strip_suffix("/build") {
        Some(base) => base,
        None => build_path.trim_end_matches('/'),
    };
    format!("{base}/publickey")
}

#[cfg(test)]
mod tests {
    use super::*;
    use handler::sealed::OpeningKey;

    fn args(flags: &[&str], key: Option<&str>) -> SecretArgs {
        SecretArgs {
            build_secrets: flags
                .iter()
                .map(|f| Zeroizing::new((*f).to_owned()))
                .collect(),
            builder_public_key: key.map(str::to_owned),
        }
    }

    #[test]
    fn the_public_key_sits_beside_the_build_path() {
        assert_eq!(public_key_path("/build"), "/publickey");
        assert_eq!(
            public_key_path("/function/function-builder.openfaas-system/build"),
            "/function/function-builder.openfaas-system/publickey"
        );
        assert_eq!(public_key_path("/function/fb/"), "/function/fb/publickey");
    }

    #[test]
    fn flags_override_the_stack_and_errors_never_show_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("npmrc");
        std::fs::write(&file, "//registry/:_authToken=x\n").unwrap();
        let stack = BTreeMap::from([
            ("npmrc".to_owned(), file.clone()),
            ("token".to_owned(), file.clone()),
        ]);
        let flag = format!("npmrc=@{}", file.display());
        let values = args(&["token=from-flag", &flag, "empty="], None)
            .values(&stack)
            .unwrap();
        assert_eq!(values["token"].as_slice(), b"from-flag");
        assert_eq!(values["npmrc"].as_slice(), b"//registry/:_authToken=x\n");
        assert_eq!(values["empty"].as_slice(), b"");

        for bad in ["hunter2", "=hunter2"] {
            let err = args(&[bad], None).values(&BTreeMap::new()).unwrap_err();
            assert_eq!(
                err.to_string(),
                "--build-secret takes NAME=VALUE or NAME=@FILE (the argument is not shown)"
            );
        }
        let err = args(&["t=@/nowhere/t"], None)
            .values(&BTreeMap::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "--build-secret t: reading /nowhere/t");
    }

    #[tokio::test]
    async fn sealing_needs_a_nacl_box_key_and_opens_with_its_private_half() {
        let key = OpeningKey::generate();
        let values = Values::from([("token".to_owned(), Zeroizing::new(b"v".to_vec()))]);
        let public = key.public().public_key.clone();
        let sealed = args(&[], Some(&public))
            .seal(&values, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key.open(&sealed).unwrap()["token"].as_slice(), b"v");
        assert!(args(&[], Some(&public))
            .seal(&Values::new(), None)
            .await
            .unwrap()
            .is_none());

        let err = args(&[], None).seal(&values, None).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("pack needs --builder-public-key (or OPENFAAS_BUILDER_PUBLIC_KEY)"),
            "{err}"
        );
        let age = serde_json::json!({"key_id": "x", "algorithm": "age", "public_key": public});
        let err = args(&[], Some(&age.to_string()))
            .seal(&values, None)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("public key algorithm \"age\" is not nacl/box"),
            "{err}"
        );
    }
}
