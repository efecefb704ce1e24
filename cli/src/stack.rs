//! A function from a faas-cli `stack.yml`, laid out as `faas-cli build --shrinkwrap` lays it out
//! in `build/<name>/`: the template folder, the handler over the template's handler folder
//! (without its `build` and `template` entries), then each `configuration.copy` path inside the
//! handler folder. Symlinks are followed, as faas-cli's copy follows them. Build args are the
//! function's `build_args` plus `ADDITIONAL_PACKAGE` from its `build_options`; its
//! `build_secrets` name files whose bytes are sealed into the request.
//!
//! Relative paths (handler, copy, `template/`, `build_secrets`) are taken from the stack file's folder, where
//! faas-cli is run from.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::layout::{Layout, Links};

/// The one provider faas-cli accepts.
const PROVIDER: &str = "openfaas";
/// Where faas-cli puts a template's handler when `template.yml` names no `handler_folder`.
const DEFAULT_HANDLER_FOLDER: &str = "function";
/// The build arg faas-cli fills from `build_options`.
const ADDITIONAL_PACKAGE: &str = "ADDITIONAL_PACKAGE";

#[derive(Deserialize)]
struct Stack {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    provider: Provider,
    #[serde(default)]
    functions: BTreeMap<String, Function>,
    #[serde(default)]
    configuration: Configuration,
}

#[derive(Deserialize, Default)]
struct Provider {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct Configuration {
    #[serde(default)]
    copy: Vec<String>,
}

#[derive(Deserialize)]
struct Function {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    handler: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    build_args: BTreeMap<String, String>,
    #[serde(default)]
    build_options: Vec<String>,
    /// Secret name → the file holding its value.
    #[serde(default)]
    build_secrets: BTreeMap<String, PathBuf>,
    #[serde(default)]
    platforms: String,
    #[serde(default)]
    skip_build: bool,
}

/// `template/<lang>/template.yml`, the part that shapes the context.
#[derive(Deserialize, Default)]
struct Template {
    #[serde(default)]
    handler_folder: String,
    #[serde(default)]
    build_options: Vec<BuildOption>,
}

#[derive(Deserialize)]
struct BuildOption {
    name: String,
    #[serde(default)]
    packages: Vec<String>,
}

/// One function, ready to pack.
pub(crate) struct StackFunction {
    pub(crate) layout: Layout,
    /// The function's `image` (may be empty).
    pub(crate) image: String,
    pub(crate) build_args: BTreeMap<String, String>,
    pub(crate) platforms: Vec<String>,
    /// Secret name → its file, relative paths taken from the stack file's folder.
    pub(crate) build_secrets: BTreeMap<String, PathBuf>,
}

/// Loads `function` (or the only function) of the stack file at `path`.
pub(crate) fn load(path: &Path, function: Option<&str>) -> Result<StackFunction> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let stack = parse(&text, |var| std::env::var(var).ok(), path)?;
    let (name, f) = pick(&stack, function, path)?;
    if f.skip_build {
        bail!("function {name} has skip_build: true in {}", path.display());
    }
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let handler = base.join(&f.handler);
    if f.handler.is_empty() || !handler.is_dir() {
        bail!(
            "function {name}: handler {:?} is not a folder next to {}",
            f.handler,
            path.display()
        );
    }
    let lang = match f.lang.as_str() {
        "" => bail!("function {name} has no lang"),
        "Dockerfile" => "dockerfile",
        lang => lang,
    };

    let mut layout = Layout::new();
    let mut build_args = f.build_args.clone();
    let handler_folder = if lang == "dockerfile" {
        String::new()
    } else {
        let dir = base.join("template").join(lang);
        if !dir.is_dir() {
            bail!(
                "function {name}: template {lang:?} not found in {}; pull it first, e.g. \
                 `faas-cli template store pull {lang}`",
                base.join("template").display()
            );
        }
        let template = read_template(&dir)?;
        add_packages(&mut build_args, &template, &f.build_options, lang)?;
        layout.overlay(&dir, "", Links::Follow, &[])?;
        match template.handler_folder.as_str() {
            "" => DEFAULT_HANDLER_FOLDER.to_owned(),
            folder => folder.to_owned(),
        }
    };
    layout.overlay(
        &handler,
        &handler_folder,
        Links::Follow,
        &["build", "template"],
    )?;
    let mut seen = Vec::new();
    for extra in &stack.configuration.copy {
        let rel = in_scope(extra).with_context(|| format!("configuration.copy {extra:?}"))?;
        if seen.contains(&rel) {
            continue;
        }
        let dest = if handler_folder.is_empty() {
            rel.clone()
        } else {
            format!("{handler_folder}/{rel}")
        };
        layout
            .overlay(&base.join(&rel), &dest, Links::Follow, &[])
            .with_context(|| format!("configuration.copy {extra:?}"))?;
        seen.push(rel);
    }
    Ok(StackFunction {
        layout,
        image: f.image.clone(),
        build_args,
        build_secrets: f
            .build_secrets
            .iter()
            .map(|(name, file)| (name.clone(), base.join(file)))
            .collect(),
        platforms: f
            .platforms
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The stack file's `text`, substituted from `lookup` and parsed, with the checks that need no
/// folder: all [`load`] does before it looks at the disk. `path` only names the file in errors.
fn parse(text: &str, lookup: impl Fn(&str) -> Option<String>, path: &Path) -> Result<Stack> {
    let text = substitute(text, lookup)
        .with_context(|| format!("{}: environment substitution", path.display()))?;
    let stack: Stack = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a valid stack file", path.display()))?;
    if stack.provider.name != PROVIDER {
        bail!(
            "{}: provider.name must be {PROVIDER:?}, found {:?}",
            path.display(),
            stack.provider.name
        );
    }
    if let Some(version) = stack
        .version
        .as_deref()
        .filter(|v| !v.is_empty() && *v != "1.0")
    {
        bail!(
            "{}: version must be \"1.0\", found {version:?}",
            path.display()
        );
    }
    Ok(stack)
}

/// Any bytes through all of [`load`] that reads no disk, as `fuzz/` runs it (its `stack` target
/// includes this file by path) and the corpus replay below: no panic; text without `$` is left
/// as it is by substitution; every function listed can be picked; a `configuration.copy` path
/// that is accepted is a clean relative path inside the stack file's folder.
///
/// # Panics
/// On a violation.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn check_untrusted(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Unset, empty and set variables, decided by the name, so an input always reads the same.
    let lookup = |var: &str| match var.len() % 3 {
        0 => None,
        1 => Some(String::new()),
        _ => Some(format!("<{var}>")),
    };
    if let Ok(substituted) = substitute(text, lookup) {
        if !text.contains('$') {
            assert_eq!(substituted, text);
        }
    }
    let path = Path::new("stack.yml");
    let Ok(stack) = parse(text, lookup, path) else {
        return;
    };
    let _ = pick(&stack, None, path);
    for name in stack.functions.keys() {
        let (picked, _) = pick(&stack, Some(name), path).expect("a listed function");
        assert_eq!(picked, name);
    }
    for extra in &stack.configuration.copy {
        if let Ok(rel) = in_scope(extra) {
            assert!(
                rel.split('/').all(|part| !matches!(part, "" | "." | "..")),
                "copy {extra:?} accepted as {rel:?}"
            );
        }
    }
}

/// Environment substitution as faas-cli does it (drone/envsubst): `$VAR`, `${VAR}`, and
/// `${VAR:-default}` (also `=`/`:=`) where the default replaces an unset or empty value; unset
/// variables become empty, `$$` is a `$`. shellexpand was tried: it cannot make unset variables
/// empty and still apply defaults. The other bash operators are refused by name.
fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    fn is_name(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                bail!("unclosed ${{ in {:?}", &text[text.len() - rest.len() - 1..]);
            };
            let expr = &inner[..end];
            let name_len = expr.find(|c| !is_name(c)).unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            let value = lookup(name).unwrap_or_default();
            let default = [":-", ":=", "="]
                .iter()
                .find_map(|prefix| op.strip_prefix(prefix));
            match (op, default) {
                ("", _) => out.push_str(&value),
                (_, Some(default)) if value.is_empty() => out.push_str(default),
                (_, Some(_)) => out.push_str(&value),
                _ => bail!("unsupported substitution ${{{expr}}}"),
            }
            if name.is_empty() {
                bail!("a substitution without a variable name: ${{{expr}}}");
            }
            rest = &inner[end + 1..];
        } else {
            let name_len = rest.find(|c| !is_name(c)).unwrap_or(rest.len());
            if name_len == 0 {
                out.push('$');
                continue;
            }
            out.push_str(&lookup(&rest[..name_len]).unwrap_or_default());
            rest = &rest[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn pick<'a>(
    stack: &'a Stack,
    wanted: Option<&str>,
    path: &Path,
) -> Result<(&'a str, &'a Function)> {
    let names = || {
        stack
            .functions
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(name) => stack
            .functions
            .get_key_value(name)
            .map(|(k, f)| (k.as_str(), f))
            .ok_or_else(|| {
                anyhow!(
                    "no function {name:?} in {} (it has: {})",
                    path.display(),
                    names()
                )
            }),
        None if stack.functions.len() == 1 => {
            let (k, f) = stack.functions.iter().next().expect("one function");
            Ok((k.as_str(), f))
        }
        None if stack.functions.is_empty() => bail!("{} has no functions", path.display()),
        None => bail!(
            "{} has several functions, name one with --function ({})",
            path.display(),
            names()
        ),
    }
}

fn read_template(dir: &Path) -> Result<Template> {
    let path = dir.join("template.yml");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a valid template.yml", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Template::default()),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Adds the packages of the requested build options to `ADDITIONAL_PACKAGE` (deduplicated and
/// sorted, as faas-cli does); leaves it out when there are none.
fn add_packages(
    args: &mut BTreeMap<String, String>,
    template: &Template,
    options: &[String],
    lang: &str,
) -> Result<()> {
    let mut packages: Vec<String> = Vec::new();
    for option in options {
        let Some(found) = template.build_options.iter().find(|o| &o.name == option) else {
            bail!("build option {option:?} is not offered by template/{lang}/template.yml");
        };
        packages.extend(found.packages.iter().cloned());
    }
    if let Some(given) = args.get(ADDITIONAL_PACKAGE) {
        packages.extend(
            given
                .split(' ')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    packages.sort();
    packages.dedup();
    if !packages.is_empty() {
        args.insert(ADDITIONAL_PACKAGE.to_owned(), packages.join(" "));
    }
    Ok(())
}

/// A `configuration.copy` path as a clean relative path inside the project; faas-cli refuses the
/// project itself and anything outside it.
fn in_scope(extra: &str) -> Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(extra).components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => parts.push(part.to_str().expect("from a str")),
            Component::ParentDir if parts.pop().is_some() => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                bail!("the path must stay inside the stack file's folder")
            }
        }
    }
    if parts.is_empty() {
        bail!("the path must not be the whole project");
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed fuzz corpus (`fuzz/corpus/stack`), through what the fuzz target runs.
    #[test]
    fn the_fuzz_corpus_replays() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/stack");
        let mut replayed = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            check_untrusted(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
        assert!(replayed > 0, "no corpus in {}", dir.display());
    }

    #[test]
    fn copy_paths_stay_inside_the_project() {
        assert_eq!(in_scope("./proto").unwrap(), "proto");
        assert_eq!(in_scope("a/../b/c/").unwrap(), "b/c");
        for bad in ["../x", "/etc", ".", "a/.."] {
            assert!(in_scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_is_substituted_and_unset_is_empty() {
        let lookup = |var: &str| match var {
            "OWNER" => Some("alex".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let text = "${OWNER}/fn:${TAG:-latest} $UNSET.$OWNER-${EMPTY:=x}${OWNER=y} $$HOME $ 1$";
        assert_eq!(
            substitute(text, lookup).unwrap(),
            "alex/fn:latest .alex-xalex $HOME $ 1$"
        );
        let err = substitute("${OWNER^^}", lookup).unwrap_err();
        assert_eq!(err.to_string(), "unsupported substitution ${OWNER^^}");
        assert!(substitute("a ${OWNER", lookup).is_err());
    }

    #[test]
    fn build_options_fill_additional_package_sorted_and_unique() {
        let template: Template = serde_yaml_ng::from_str(
            "build_options:\n- name: dev\n  packages: [make, gcc]\n- name: git\n  packages: [git]\n",
        )
        .unwrap();
        let mut args = BTreeMap::from([(ADDITIONAL_PACKAGE.to_owned(), "git curl".to_owned())]);
        add_packages(&mut args, &template, &["dev".into(), "git".into()], "go").unwrap();
        assert_eq!(args[ADDITIONAL_PACKAGE], "curl gcc git make");
        let err = add_packages(&mut args, &template, &["nope".into()], "go").unwrap_err();
        assert_eq!(
            err.to_string(),
            "build option \"nope\" is not offered by template/go/template.yml"
        );
        let mut none = BTreeMap::new();
        add_packages(&mut none, &template, &[], "go").unwrap();
        assert!(none.is_empty());
    }
}
