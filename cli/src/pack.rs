//! `pack`: a build request tar from a folder with a Dockerfile, byte-for-byte stable: entries
//! sorted, owners 0:0, one fixed mtime, modes 0644/0755, `.dockerignore` applied here to send less.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::{bail, Context, Result};
use buildkit::{parse_dockerignore, Filter, Verdict};

/// The mtime every entry gets. The builder derives each file's mtime nanoseconds from its
/// content, so a fixed value never hides an edit.
const MTIME: u64 = 1;

/// The request config.
pub(crate) struct Config<'a> {
    pub(crate) image: Option<&'a str>,
    pub(crate) build_args: &'a [(String, String)],
    pub(crate) platforms: &'a [String],
    pub(crate) skip_push: bool,
}

/// Packs `dir` (which must hold a Dockerfile) and `config` into a request tar.
pub(crate) fn pack(dir: &Path, config: &Config<'_>) -> Result<Vec<u8>> {
    if !dir.join("Dockerfile").is_file() {
        bail!("{} has no Dockerfile", dir.display());
    }
    let ignore = match fs::read_to_string(dir.join(".dockerignore")) {
        Ok(content) => parse_dockerignore(&content),
        Err(_) => Vec::new(),
    };
    let filter = Filter::new(&[], &ignore).context(".dockerignore")?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut json = serde_json::Map::new();
    if let Some(image) = config.image {
        json.insert("image".into(), image.into());
    }
    let args: serde_json::Map<String, serde_json::Value> = config
        .build_args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    json.insert("buildArgs".into(), args.into());
    if !config.platforms.is_empty() {
        json.insert("platforms".into(), config.platforms.to_vec().into());
    }
    if config.skip_push {
        json.insert("skipPush".into(), true.into());
    }
    let json = serde_json::to_vec(&serde_json::Value::Object(json))?;
    let len = json.len() as u64;
    append(
        &mut tar,
        "com.openfaas.docker.config",
        tar::EntryType::Regular,
        0o644,
        len,
        &json[..],
        None,
    )?;
    append(
        &mut tar,
        "context",
        tar::EntryType::Directory,
        0o755,
        0,
        io::empty(),
        None,
    )?;
    walk(&mut tar, dir, "", &filter)?;
    Ok(tar.into_inner()?)
}

fn walk(tar: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &str, filter: &Filter) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(root.join(rel))?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(root.join(&path))?;
        let verdict = if filter.is_empty() {
            Verdict::Keep
        } else {
            filter.verdict(&path, meta.is_dir())
        };
        if verdict == Verdict::Skip {
            continue;
        }
        let name = format!("context/{path}");
        if meta.is_dir() {
            if verdict == Verdict::Keep {
                append(
                    tar,
                    &name,
                    tar::EntryType::Directory,
                    0o755,
                    0,
                    io::empty(),
                    None,
                )?;
            }
            walk(tar, root, &path, filter)?;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(root.join(&path))?;
            append(
                tar,
                &name,
                tar::EntryType::Symlink,
                0o777,
                0,
                io::empty(),
                Some(&target.to_string_lossy()),
            )?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let file = fs::File::open(root.join(&path))?;
            append(
                tar,
                &name,
                tar::EntryType::Regular,
                mode,
                meta.len(),
                file,
                None,
            )?;
        }
    }
    Ok(())
}

/// One entry, its data streamed from `data`.
fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    data: impl io::Read,
    link: Option<&str>,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_size(size);
    match link {
        Some(target) => tar.append_link(&mut header, name, target)?,
        None => tar.append_data(&mut header, name, data)?,
    }
    Ok(())
}
