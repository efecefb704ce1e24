//! The context as a tree of [`Node`]s by clean path: tar names cleaned into paths, entries placed
//! under their parents, and every symlink checked to resolve inside the context.

use std::collections::BTreeMap;

use buildkit::links::{self, ResolveError};

use super::error::{entry_error, IndexError};
use super::{Kind, Node};

/// Longest entry name or link target, as Linux's `PATH_MAX`; also bounds GNU long-name records,
/// which are read into memory.
pub(super) const MAX_NAME_BYTES: u64 = 4096;
/// Longest name component, as Linux's `NAME_MAX`: the daemon could not create a longer one.
const MAX_COMPONENT_BYTES: usize = 255;
/// Bytes of paths looked up while resolving all the symlinks of one archive: a fraction of a
/// second of work in a release build, and room for 100,000 links of a real `node_modules`.
const LINK_BUDGET: u64 = 64 << 20;

/// Places `node` at `path`, implying its parent directories. A later entry for the same path
/// replaces an earlier one (as extracting a tar does), but never turns a directory into
/// something else or back, and no entry may sit below a file or a symlink.
pub(super) fn insert(
    nodes: &mut BTreeMap<String, Node>,
    raw: &str,
    path: String,
    node: Node,
) -> Result<(), IndexError> {
    let mut end = 0;
    while let Some(slash) = path[end..].find('/') {
        let parent = &path[..end + slash];
        match nodes.get(parent) {
            None => {
                nodes.insert(
                    parent.to_owned(),
                    Node {
                        kind: Kind::Dir,
                        permissions: 0o755,
                        mtime_ns: 0,
                    },
                );
            }
            Some(Node {
                kind: Kind::Dir, ..
            }) => {}
            Some(Node {
                kind: Kind::Symlink { .. },
                ..
            }) => {
                return Err(entry_error(
                    raw,
                    format!("parent context/{parent} is a symlink"),
                ))
            }
            Some(_) => {
                return Err(entry_error(
                    raw,
                    format!("parent context/{parent} is not a directory"),
                ))
            }
        }
        end += slash + 1;
    }
    let is_dir = matches!(node.kind, Kind::Dir);
    match nodes.get(&path) {
        Some(Node {
            kind: Kind::Dir, ..
        }) if !is_dir => Err(entry_error(raw, "replaces a directory")),
        Some(Node { kind, .. }) if is_dir && !matches!(kind, Kind::Dir) => {
            Err(entry_error(raw, "a directory replaces a file or link"))
        }
        _ => {
            nodes.insert(path, node);
            Ok(())
        }
    }
}

/// Every symlink, resolved through the other links of the final archive, stays inside.
pub(super) fn check_links(nodes: &BTreeMap<String, Node>) -> Result<(), IndexError> {
    // One budget for all links: each alone is bounded (40 hops of 4096-byte targets), but
    // 100,000 of them crafted to be slow would hold a core for minutes.
    let mut budget = LINK_BUDGET;
    for (path, node) in nodes {
        let Kind::Symlink { target } = &node.kind else {
            continue;
        };
        let from = match path.rsplit_once('/') {
            _ if target.starts_with('/') => Err(ResolveError::Escapes),
            Some((dir, _)) => Ok(format!("{dir}/{target}")),
            None => Ok(target.clone()),
        };
        let resolved =
            from.and_then(|from| links::resolve_within(&from, &mut budget, |p| lookup(nodes, p)));
        if let Err(err) = resolved {
            let problem = match err {
                ResolveError::Escapes => {
                    format!("symlink target {target:?} escapes the context")
                }
                ResolveError::TooManyLinks | ResolveError::TooComplex => {
                    format!("symlink target {target:?} {err}")
                }
            };
            return Err(entry_error(&format!("context/{path}"), problem));
        }
    }
    Ok(())
}

/// What a path of the index is, for link resolution.
pub(crate) fn lookup(nodes: &BTreeMap<String, Node>, path: &str) -> links::Node {
    match nodes.get(path).map(|n| &n.kind) {
        None if path.is_empty() => links::Node::Dir,
        None => links::Node::Missing,
        Some(Kind::Dir) => links::Node::Dir,
        Some(Kind::File { .. }) => links::Node::File,
        Some(Kind::Symlink { target }) => links::Node::Symlink(target.clone()),
    }
}

pub(super) fn check_dockerfile(
    nodes: &BTreeMap<String, Node>,
    dockerfile: &str,
) -> Result<(), IndexError> {
    let problem = match links::resolve(dockerfile, |p| lookup(nodes, p)) {
        Ok(resolved) => match resolved.node {
            links::Node::File => return Ok(()),
            links::Node::Missing => "not found".to_owned(),
            _ => "is not a regular file".to_owned(),
        },
        Err(err) => err.to_string(),
    };
    Err(IndexError::Dockerfile {
        path: dockerfile.to_owned(),
        problem,
    })
}

pub(super) fn check_name_length(raw: &str, name: &str) -> Result<(), IndexError> {
    if name.len() as u64 > MAX_NAME_BYTES {
        return Err(entry_error(
            raw,
            format!("name longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A tar path as its components, without `.` and empty ones; absolute paths, `..`, NUL bytes and
/// over-long names refused.
pub(crate) fn clean(raw: &str) -> Result<Vec<String>, IndexError> {
    if raw.starts_with('/') {
        return Err(entry_error(raw, "absolute paths are not allowed"));
    }
    check_name_length(raw, raw)?;
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(entry_error(raw, "`..` is not allowed")),
            part if part.contains('\0') => return Err(entry_error(raw, "name holds a NUL byte")),
            part if part.len() > MAX_COMPONENT_BYTES => {
                return Err(entry_error(
                    raw,
                    format!("a name component is longer than {MAX_COMPONENT_BYTES} bytes"),
                ))
            }
            part => parts.push(part.to_owned()),
        }
    }
    Ok(parts)
}
