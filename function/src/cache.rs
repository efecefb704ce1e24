//! Which registry layer cache a build imports and exports: the config's `cache`, else the
//! builder-wide `cache_repository` with its placeholders filled in.

use buildkit::Cache;

use crate::buildconfig::BuildConfig;

/// The tag a default cache ref gets when the template names none.
const DEFAULT_TAG: &str = "buildcache";

/// The cache of one build. The config's refs win over the default; a build without an image
/// has no default cache (nothing to name it after).
pub(crate) fn plan(config: &BuildConfig, tenant: &str, default: Option<&str>) -> Cache {
    if !config.cache_from.is_empty() || config.cache_to.is_some() {
        return Cache {
            import: config.cache_from.clone(),
            export: config.cache_to.clone(),
        };
    }
    let (Some(template), Some(repository)) = (default, config.repository()) else {
        return Cache::default();
    };
    let reference = expand(template, repository, tenant);
    Cache {
        import: vec![reference.clone()],
        export: Some(reference),
    }
}

/// `registry.example.com/cache/{repository}` for image `reg.example/acme/fn:1` →
/// `registry.example.com/cache/acme/fn:buildcache`. `{repository}` is the image's repository
/// path without its registry; `{tenant}` the tenant, lowercased, with what a reference cannot
/// hold replaced by `-`.
pub(crate) fn expand(template: &str, repository: &str, tenant: &str) -> String {
    let path = match repository.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => repository,
    };
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

    #[test]
    fn the_config_wins_over_the_default() {
        let c = config(
            r#"{"image":"r.example/a/f:1","cache":{"from":["r.example/c/x:1"],"to":"r.example/c/y:1"}}"#,
        );
        assert_eq!(
            plan(&c, "t", Some("r.example/cache/{repository}")),
            Cache {
                import: vec!["r.example/c/x:1".into()],
                export: Some("r.example/c/y:1".into())
            }
        );
    }

    #[test]
    fn the_default_is_named_after_the_repository_or_tenant() {
        let c = config(r#"{"image":"r.example:5000/acme/fn:1"}"#);
        let want = "r.example/cache/acme/fn:buildcache".to_owned();
        assert_eq!(
            plan(&c, "x", Some("r.example/cache/{repository}")),
            Cache {
                import: vec![want.clone()],
                export: Some(want)
            }
        );
        assert_eq!(
            expand("r.example/cache/{tenant}:main", "r/x", "Cust 42"),
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
