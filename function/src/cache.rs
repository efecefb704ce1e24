//! Which registry layer cache a build imports and exports: the config's `cache`, else the
//! builder-wide `cache_repository` with its placeholders filled in.

use buildkit::{Cache, ImageRef};

use crate::buildconfig::BuildConfig;

/// The tag a default cache ref gets when the template names none.
const DEFAULT_TAG: &str = "buildcache";

/// The cache of one build. The config's refs win over the default; a build without an image
/// has no default cache (nothing to name it after), nor one whose tenant makes no reference.
pub(crate) fn plan(config: &BuildConfig, tenant: &str, default: Option<&str>) -> Cache {
    if !config.cache_from.is_empty() || config.cache_to.is_some() {
        return Cache {
            import: config.cache_from.clone(),
            export: config.cache_to.clone(),
        };
    }
    let (Some(template), Some(image)) = (default, &config.image) else {
        return Cache::default();
    };
    match expand(template, image.path(), tenant).parse::<ImageRef>() {
        Ok(reference) => Cache {
            import: vec![reference.clone()],
            export: Some(reference),
        },
        Err(err) => {
            tracing::warn!(%tenant, error = %err, "cache_repository makes no reference for this tenant: no default cache");
            Cache::default()
        }
    }
}

/// `registry.example.com/cache/{repository}` for image `reg.example/acme/fn:1` (path
/// `acme/fn`) → `registry.example.com/cache/acme/fn:buildcache`. `{repository}` is the image's
/// repository path without its registry; `{tenant}` the tenant, lowercased, with what a
/// reference cannot hold replaced by `-`.
pub(crate) fn expand(template: &str, path: &str, tenant: &str) -> String {
    let tenant: String = tenant
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let reference = template
        .replace("{repository}", path)
        .replace("{tenant}", tenant.trim_matches(['-', '.', '_', '/']));
    let last = reference.rsplit('/').next().unwrap_or_default();
    if last.contains(':') {
        reference
    } else {
        format!("{reference}:{DEFAULT_TAG}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> BuildConfig {
        BuildConfig::parse(json.as_bytes()).unwrap()
    }

    fn r(text: &str) -> ImageRef {
        text.parse().unwrap()
    }

    #[test]
    fn the_config_wins_over_the_default() {
        let c = config(
            r#"{"image":"r.example/a/f:1","cache":{"from":["r.example/c/x:1"],"to":"r.example/c/y:1"}}"#,
        );
        assert_eq!(
            plan(&c, "t", Some("r.example/cache/{repository}")),
            Cache {
                import: vec![r("r.example/c/x:1")],
                export: Some(r("r.example/c/y:1"))
            }
        );
    }

    #[test]
    fn the_default_is_named_after_the_repository_or_tenant() {
        let c = config(r#"{"image":"r.example:5000/acme/fn:1"}"#);
        let want = r("r.example/cache/acme/fn:buildcache");
        assert_eq!(
            plan(&c, "x", Some("r.example/cache/{repository}")),
            Cache {
                import: vec![want.clone()],
                export: Some(want)
            }
        );
        assert_eq!(
            expand("r.example/cache/{tenant}:main", "x", "Cust 42"),
            "r.example/cache/cust-42:main"
        );
        assert_eq!(plan(&c, "x", None), Cache::default());
        let no_image = config(r#"{"skipPush":true}"#);
        assert_eq!(
            plan(&no_image, "x", Some("r/{repository}")),
            Cache::default()
        );
    }
}
