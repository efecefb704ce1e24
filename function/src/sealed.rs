//! Sealed build secrets, as OpenFaaS Pro's builder and faas-cli exchange them: the YAML file
//! `com.openfaas.secrets` holds each value sealed on its own with NaCl box (X25519 +
//! XSalsa20-Poly1305) from one ephemeral sender key to the builder's public key. The one
//! definition of that format, for the builder (open) and the CLI (seal).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The envelope version this builder reads and writes.
pub const VERSION: &str = "v1";
/// The one algorithm: NaCl box.
pub const ALGORITHM: &str = "nacl/box";
const NONCE_LEN: usize = 24;

/// The sealed file, field for field.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    version: String,
    algorithm: String,
    #[serde(default)]
    key_id: String,
    public_key: String,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

/// What `GET /publickey` answers: enough for a client to seal to this builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// The first 8 characters of `public_key`.
    pub key_id: String,
    /// Always [`ALGORITHM`].
    pub algorithm: String,
    /// The builder's Curve25519 public key, base64.
    pub public_key: String,
}

impl PublicKeyInfo {
    /// Reads a key as faas-cli's `--builder-public-key` takes it: the `/publickey` JSON, or the
    /// base64 key itself.
    ///
    /// # Errors
    /// When it is neither, or the algorithm is not [`ALGORITHM`].
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let info = if text.starts_with('{') {
            serde_json::from_str::<Self>(text)?
        } else {
            Self::from_key(text)?
        };
        if info.algorithm != ALGORITHM {
            return Err(KeyError::Algorithm(info.algorithm));
        }
        decode_key(&info.public_key, "public key")?;
        Ok(info)
    }

    fn from_key(public_key: &str) -> Result<Self, KeyError> {
        decode_key(public_key, "public key")?;
        Ok(Self {
            key_id: key_id(public_key),
            algorithm: ALGORITHM.to_owned(),
            public_key: public_key.to_owned(),
        })
    }
}

/// The builder's private key (`build_secrets_private_key_path`): a file holding the base64 of
/// 32 bytes, as OpenFaaS Pro's. Zeroed when dropped.
#[derive(Clone)]
pub struct OpeningKey {
    secret: SecretKey,
    info: PublicKeyInfo,
}

impl std::fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpeningKey")
            .field("key_id", &self.info.key_id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for OpeningKey {
    fn eq(&self, other: &Self) -> bool {
        self.info == other.info
    }
}

impl Eq for OpeningKey {}

impl OpeningKey {
    /// A new random key pair.
    pub fn generate() -> Self {
        Self::from_secret(SecretKey::generate(&mut OsRng))
    }

    /// Reads the key file.
    ///
    /// # Errors
    /// When the file cannot be read or does not hold a base64 32-byte key (the message names the
    /// file, never its content).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        Self::parse(&text).map_err(|source| KeyError::File {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Reads a base64 32-byte key.
    ///
    /// # Errors
    /// When it is not one.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let raw = Zeroizing::new(decode_key(text, "key")?);
        let secret = SecretKey::from_slice(&raw[..]).map_err(|_| KeyError::Length {
            what: "key",
            len: raw.len(),
        })?;
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: SecretKey) -> Self {
        let public_key = BASE64.encode(secret.public_key().as_bytes());
        Self {
            info: PublicKeyInfo {
                key_id: key_id(&public_key),
                algorithm: ALGORITHM.to_owned(),
                public_key,
            },
            secret,
        }
    }

    /// The private key as the key file holds it.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.secret.to_bytes()))
    }

    /// The public half, as `GET /publickey` answers it.
    pub fn public(&self) -> &PublicKeyInfo {
        &self.info
    }

    /// Opens a sealed file: every value, by name.
    ///
    /// # Errors
    /// [`SealedError`] naming the field or secret at fault, never a value.
    pub fn open(&self, file: &[u8]) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, SealedError> {
        let envelope: Envelope =
            serde_yaml_ng::from_slice(file).map_err(|e| SealedError::Yaml(e.to_string()))?;
        if envelope.version != VERSION {
            return Err(SealedError::Version(envelope.version));
        }
        if envelope.algorithm != ALGORITHM {
            return Err(SealedError::Algorithm(envelope.algorithm));
        }
        if envelope.key_id != self.info.key_id {
            return Err(SealedError::KeyId {
                sent: envelope.key_id,
                ours: self.info.key_id.clone(),
            });
        }
        let sender = decode_key(&envelope.public_key, "public key")
            .ok()
            .and_then(|raw| PublicKey::from_slice(&raw).ok())
            .ok_or(SealedError::SenderKey)?;
        let sealed_box = SalsaBox::new(&sender, &self.secret);
        let mut out = BTreeMap::new();
        for (name, value) in envelope.secrets {
            check_name(&name)?;
            let combined = BASE64
                .decode(value.trim())
                .map_err(|_| SealedError::Base64(name.clone()))?;
            if combined.len() < NONCE_LEN {
                return Err(SealedError::Open(name));
            }
            let (nonce, ciphertext) = combined.split_at(NONCE_LEN);
            let plain = sealed_box
                .decrypt(nonce.into(), ciphertext)
                .map_err(|_| SealedError::Open(name.clone()))?;
            out.insert(name, Zeroizing::new(plain));
        }
        Ok(out)
    }
}

/// Seals `values` to `recipient`, each on its own, as faas-cli does.
///
/// # Errors
/// When a name is not a usable secret id.
pub fn seal(
    recipient: &PublicKeyInfo,
    values: &BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> Result<Vec<u8>, SealedError> {
    let raw =
        decode_key(&recipient.public_key, "public key").map_err(|_| SealedError::SenderKey)?;
    let recipient_key = PublicKey::from_slice(&raw).map_err(|_| SealedError::SenderKey)?;
    let ephemeral = SecretKey::generate(&mut OsRng);
    let sealed_box = SalsaBox::new(&recipient_key, &ephemeral);
    let mut secrets = BTreeMap::new();
    for (name, value) in values {
        check_name(name)?;
        let nonce = SalsaBox::generate_nonce(&mut OsRng);
        let ciphertext = sealed_box
            .encrypt(&nonce, value.as_slice())
            .map_err(|_| SealedError::Open(name.clone()))?;
        let mut combined = nonce.to_vec();
        combined.extend_from_slice(&ciphertext);
        secrets.insert(name.clone(), BASE64.encode(combined));
    }
    let envelope = Envelope {
        version: VERSION.to_owned(),
        algorithm: ALGORITHM.to_owned(),
        key_id: recipient.key_id.clone(),
        public_key: BASE64.encode(ephemeral.public_key().as_bytes()),
        secrets,
    };
    serde_yaml_ng::to_string(&envelope)
        .map(String::into_bytes)
        .map_err(|e| SealedError::Yaml(e.to_string()))
}

/// Why a sealed file could not be opened (400: the caller's to fix). No variant holds a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealedError {
    /// Secrets were sent to a builder without a key.
    #[error("build secrets were sent, but this builder has no key to open them (set build_secrets_private_key_path)")]
    NoKey,
    /// Not the YAML of an envelope.
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// A version other than [`VERSION`].
    #[error("unsupported version {0:?} (this builder reads {VERSION})")]
    Version(String),
    /// An algorithm other than [`ALGORITHM`].
    #[error("unsupported algorithm {0:?} (this builder reads {ALGORITHM})")]
    Algorithm(String),
    /// Sealed to another key.
    #[error("key_id {sent:?} is not this builder's key {ours:?}: seal again with the key from GET /publickey")]
    KeyId {
        /// The file's key id.
        sent: String,
        /// Ours.
        ours: String,
    },
    /// `public_key` is not a base64 32-byte key.
    #[error("public_key is not a base64 32-byte Curve25519 key")]
    SenderKey,
    /// A value is not base64.
    #[error("secret {0:?}: invalid base64")]
    Base64(String),
    /// A value does not open with our key and the sender's.
    #[error("secret {0:?} could not be opened: sealed to another key, or corrupted")]
    Open(String),
    /// A name BuildKit cannot use as a secret id.
    #[error("secret name {0:?}: use 1 to 255 characters of A-Z a-z 0-9 . _ -")]
    Name(String),
}

fn check_name(name: &str) -> Result<(), SealedError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SealedError::Name(name.to_owned()))
    }
}

fn key_id(public_key: &str) -> String {
    public_key.chars().take(8).collect()
}

/// `what`, base64 of 32 bytes, decoded.
fn decode_key(text: &str, what: &'static str) -> Result<Vec<u8>, KeyError> {
    let raw = BASE64
        .decode(text.trim())
        .map_err(|_| KeyError::NotBase64 { what })?;
    if raw.len() == 32 {
        Ok(raw)
    } else {
        Err(KeyError::Length {
            what,
            len: raw.len(),
        })
    }
}

/// Why a key (the builder's, or its public half) could not be used; never quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: Box<KeyError>,
    },
    /// `/publickey` JSON that is not one.
    #[error("public key JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Another algorithm than ours.
    #[error("public key algorithm {0:?} is not {ALGORITHM}")]
    Algorithm(String),
    /// Not base64.
    #[error("{what}: not base64")]
    NotBase64 {
        /// `key` or `public key`.
        what: &'static str,
    },
    /// Base64 of another length than 32 bytes.
    #[error("{what}: expected a 32-byte key, got {len} bytes")]
    Length {
        /// `key` or `public key`.
        what: &'static str,
        /// The decoded length.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Zeroizing::new(v.to_vec())))
            .collect()
    }

    #[test]
    fn what_is_sealed_to_a_key_opens_with_it_and_only_with_it() {
        let key = OpeningKey::generate();
        let sealed = seal(
            key.public(),
            &values(&[("token", b"s3cret\n"), ("npmrc", b"")]),
        )
        .unwrap();
        let opened = key.open(&sealed).unwrap();
        assert_eq!(opened["token"].as_slice(), b"s3cret\n");
        assert_eq!(opened["npmrc"].as_slice(), b"");
        assert!(!String::from_utf8_lossy(&sealed).contains("s3cret"));

        let other = OpeningKey::generate();
        let err = other.open(&sealed).unwrap_err();
        assert!(matches!(err, SealedError::KeyId { .. }), "{err}");
    }

    #[test]
    fn the_key_file_round_trips_and_names_its_public_half() {
        let key = OpeningKey::generate();
        let again = OpeningKey::parse(&format!("{}\n", key.to_base64().as_str())).unwrap();
        assert_eq!(again, key);
        assert_eq!(key.public().key_id, key.public().public_key[..8]);
        assert_eq!(
            PublicKeyInfo::parse(&key.public().public_key).unwrap(),
            *key.public()
        );
        let json = serde_json::to_string(key.public()).unwrap();
        assert_eq!(PublicKeyInfo::parse(&json).unwrap(), *key.public());
        assert!(OpeningKey::parse("c2hvcnQ=").is_err());
    }

    #[test]
    fn every_broken_field_is_named() {
        let key = OpeningKey::generate();
        let good = String::from_utf8(seal(key.public(), &values(&[("a", b"x")])).unwrap()).unwrap();
        let cases: Vec<(String, SealedError)> = vec![
            (
                good.replace("version: v1", "version: v2"),
                SealedError::Version("v2".into()),
            ),
            (
                good.replace("nacl/box", "age"),
                SealedError::Algorithm("age".into()),
            ),
            ("{".to_owned(), SealedError::Yaml(String::new())),
        ];
        for (file, want) in cases {
            let got = key.open(file.as_bytes()).unwrap_err();
            match (&got, &want) {
                (SealedError::Yaml(_), SealedError::Yaml(_)) => {}
                _ => assert_eq!(got, want),
            }
        }
        let mut env: Envelope = serde_yaml_ng::from_str(&good).unwrap();
        env.secrets.insert("a".into(), "!!notbase64".into());
        let file = serde_yaml_ng::to_string(&env).unwrap();
        assert_eq!(
            key.open(file.as_bytes()).unwrap_err(),
            SealedError::Base64("a".into())
        );
        env.secrets
            .insert("a".into(), BASE64.encode([7u8; NONCE_LEN + 20]));
        let file = serde_yaml_ng::to_string(&env).unwrap();
        assert_eq!(
            key.open(file.as_bytes()).unwrap_err(),
            SealedError::Open("a".into())
        );
        env.secrets.clear();
        env.secrets.insert("../x".into(), BASE64.encode([0u8; 40]));
        let file = serde_yaml_ng::to_string(&env).unwrap();
        assert_eq!(
            key.open(file.as_bytes()).unwrap_err(),
            SealedError::Name("../x".into())
        );
    }
}
