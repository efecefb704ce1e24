//! `pack`: the build request tar from a context [`Layout`], byte-for-byte stable: entries in byte
//! order, owners 0:0, one fixed mtime, modes 0644/0755, the context's `.dockerignore` applied
//! here to send less (never the Dockerfile or the `.dockerignore` itself, as with the Docker
//! CLI). Sealed build secrets, when there are any, come last as `com.openfaas.secrets`, where
//! faas-cli puts them. The tar streams into any writer, so a large context never sits in memory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use buildkit::{parse_dockerignore, Filter, Verdict};
use handler::wire;

use crate::layout::{Layout, Node};

/// The mtime every entry gets. The builder derives each file's mtime nanoseconds from its
/// content, so a fixed value never hides an edit.
const MTIME: u64 = 1;

/// The request config.
#[derive(Default)]
pub(crate) struct Config {
    pub(crate) image: Option<String>,
    pub(crate) build_args: BTreeMap<String, String>,
    pub(crate) platforms: Vec<String>,
    pub(crate) skip_push: bool,
    /// `provenance`: `min`, `max` or `none`; `None`: the builder's default.
    pub(crate) provenance: Option<String>,
    /// `sbom`; `None`: the builder's default.
    pub(crate) sbom: Option<wire::Sbom>,
    /// `reproducible`, when asked.
    pub(crate) reproducible: bool,
    /// `sourceDateEpoch`.
    pub(crate) source_date_epoch: Option<u64>,
    /// Send the tar gzip-compressed (the builder takes either; not part of the JSON).
    pub(crate) gzip: bool,
}

impl Config {
    /// The config as the wire format writes it: `buildArgs` always (as faas-cli sends it), the
    /// rest only when set.
    fn to_json(&self) -> Vec<u8> {
        let wire = wire::Config {
            build_args: Some(self.build_args.clone()),
            image: self.image.clone(),
            platforms: (!self.platforms.is_empty()).then(|| self.platforms.clone()),
            skip_push: self.skip_push.then_some(true),
            provenance: self.provenance.clone(),
            sbom: self.sbom.clone(),
            reproducible: self.reproducible.then_some(true),
            source_date_epoch: self.source_date_epoch,
            ..wire::Config::default()
        };
        serde_json::to_vec(&wire).expect("a config of strings")
    }
}

/// Writes the request tar for `layout` (which must hold a Dockerfile), `config` and the
/// `sealed` secrets file, if any, to `out`, gzipped when `config.gzip`; returns `out`.
pub(crate) fn pack<W: Write>(
    layout: &Layout,
    config: &Config,
    sealed: Option<&[u8]>,
    out: W,
) -> Result<W> {
    if !config.gzip {
        return write_tar(layout, config, sealed, out);
    }
    // The default level: the builder's own vendored context, a 128 MB tar, packs to 19.3 MB.
    let gzip = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let gzip = write_tar(layout, config, sealed, gzip)?;
    gzip.finish().context("writing the request")
}

fn write_tar<W: Write>(
    layout: &Layout,
    config: &Config,
    sealed: Option<&[u8]>,
    out: W,
) -> Result<W> {
    if layout.file("Dockerfile").is_none() {
        bail!("the build context has no Dockerfile");
    }
    let ignore = match layout.file(".dockerignore") {
        Some(path) => parse_dockerignore(
            &fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => Vec::new(),
    };
    let filter = Filter::new(&[], &ignore).context(".dockerignore")?;
    let mut tar = tar::Builder::new(out);
    let json = config.to_json();
    append(
        &mut tar,
        wire::CONFIG_NAME,
        Kind::File(0o644, json.len() as u64),
        &json[..],
    )?;
    append(&mut tar, wire::CONTEXT_DIR, Kind::Dir, io::empty())?;
    let mut walk = Walk {
        tar: &mut tar,
        filter: &filter,
    };
    walk.dir(layout.root(), "")?;
    if let Some(sealed) = sealed {
        let size = sealed.len() as u64;
        append(
            &mut tar,
            wire::SECRETS_NAME,
            Kind::File(0o644, size),
            sealed,
        )?;
    }
    Ok(tar.into_inner()?)
}

/// Sent whatever `.dockerignore` says, as the Docker CLI sends them: BuildKit reads both from
/// the context, and leaves them out of `COPY . …` by the same patterns itself.
const ALWAYS_SENT: [&str; 2] = ["Dockerfile", ".dockerignore"];

/// The most of a file read at a time.
const READ_BLOCK: usize = 1 << 20;

/// A depth-first walk writing kept entries.
struct Walk<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    filter: &'a Filter,
}

impl<W: Write> Walk<'_, W> {
    fn dir(&mut self, children: &BTreeMap<String, Node>, rel: &str) -> Result<()> {
        for (name, node) in children {
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = matches!(node, Node::Dir(_));
            let verdict = match self.filter.is_empty() || ALWAYS_SENT.contains(&path.as_str()) {
                true => Verdict::Keep,
                false => self.filter.verdict(&path, is_dir),
            };
            if verdict == Verdict::Skip {
                continue;
            }
            match node {
                Node::Dir(grandchildren) => {
                    // A folder that is only walked (`node_modules` then `!node_modules/keep`)
                    // is sent too: the builder's own walk judges it against the same patterns,
                    // as BuildKit asks it to, and only what it finds there can be kept.
                    append(self.tar, &context_name(&path), Kind::Dir, io::empty())?;
                    self.dir(grandchildren, &path)?;
                }
                Node::File { source, executable } => {
                    let file = fs::File::open(source)
                        .with_context(|| format!("reading {}", source.display()))?;
                    let len = file.metadata()?.len();
                    let mode = if *executable { 0o755 } else { 0o644 };
                    // A file that changes while it is read would make a corrupt entry: take
                    // exactly the length we declared.
                    // Read in large blocks (io::copy takes a BufReader's whole buffer at once).
                    let block = usize::try_from(len)
                        .unwrap_or(READ_BLOCK)
                        .clamp(1, READ_BLOCK);
                    let data =
                        io::BufReader::with_capacity(block, LenExact::new(file, len, source));
                    append(self.tar, &context_name(&path), Kind::File(mode, len), data)?;
                }
                Node::Symlink(target) => {
                    let target = target.to_string_lossy();
                    append(
                        self.tar,
                        &context_name(&path),
                        Kind::Link(&target),
                        io::empty(),
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn context_name(rel: &str) -> String {
    format!("{}/{rel}", wire::CONTEXT_DIR)
}

enum Kind<'a> {
    Dir,
    File(u32, u64),
    Link(&'a str),
}

/// One entry, its data streamed from `data`.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    kind: Kind<'_>,
    data: impl io::Read,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    let (entry_type, mode, size) = match kind {
        Kind::Dir => (tar::EntryType::Directory, 0o755, 0),
        Kind::File(mode, size) => (tar::EntryType::Regular, mode, size),
        Kind::Link(_) => (tar::EntryType::Symlink, 0o777, 0),
    };
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    match kind {
        Kind::Link(target) => tar.append_link(&mut header, name, target)?,
        _ => tar
            .append_data(&mut header, name, data)
            .with_context(|| format!("packing {name}"))?,
    }
    Ok(())
}

/// Reads exactly `len` bytes from a file, or fails naming it.
struct LenExact<'a> {
    file: io::Take<fs::File>,
    left: u64,
    source: &'a Path,
}

impl<'a> LenExact<'a> {
    fn new(file: fs::File, len: u64, source: &'a Path) -> Self {
        Self {
            file: io::Read::take(file, len),
            left: len,
            source,
        }
    }
}

impl io::Read for LenExact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.left -= n as u64;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::other(format!(
                "{} shrank while it was packed",
                self.source.display()
            )));
        }
        Ok(n)
    }
}
