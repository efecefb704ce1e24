//! Target platforms as a config names them, in the form BuildKit writes into a manifest list.
//!
//! containerd's parser (which BuildKit's Dockerfile frontend and `docker build --platform` use)
//! lowercases and knows aliases: `Linux/AArch64` and `linux/arm64/v8` are `linux/arm64`,
//! `linux/x86_64` is `linux/amd64`, `linux/armhf` and `linux/arm` are `linux/arm/v7`. The builder
//! normalises the same way, so every daemon gets the same platforms and two names of one platform
//! are seen as one. It takes only `os/arch[/variant]`: containerd would fill in a lone `linux`
//! or `arm64` from the host it runs on, and which daemon of a pool builds is not known here.

/// The longest form: `os/arch/variant`.
const MAX_PARTS: usize = 3;

/// `text` as containerd's `Format(Normalize(Parse(text)))` writes it, when it names an OS and an
/// architecture, each part of letters, digits, `_`, `.` and `-`; `None` otherwise.
pub(crate) fn normalize(text: &str) -> Option<String> {
    let parts: Vec<String> = text.split('/').map(str::to_ascii_lowercase).collect();
    let valid = |part: &String| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if !(2..=MAX_PARTS).contains(&parts.len()) || !parts.iter().all(valid) {
        return None;
    }
    let os = match parts[0].as_str() {
        "macos" => "darwin",
        os => os,
    };
    let (arch, variant) = normalize_arch(&parts[1], parts.get(2).map_or("", String::as_str));
    Some(match variant {
        "" => format!("{os}/{arch}"),
        variant => format!("{os}/{arch}/{variant}"),
    })
}

/// containerd's `normalizeArch`: aliases of an architecture, and the variants it implies or
/// drops.
fn normalize_arch<'a>(arch: &'a str, variant: &'a str) -> (&'a str, &'a str) {
    match (arch, variant) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", variant) => ("amd64", variant),
        ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64", ""),
        ("aarch64" | "arm64", "9" | "9.0" | "v9.0") => ("arm64", "v9"),
        ("aarch64" | "arm64", variant) => ("arm64", variant),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_one_platform_become_the_name_buildkit_writes() {
        for (given, normal) in [
            ("linux/amd64", "linux/amd64"),
            ("Linux/ARM64", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/i386", "linux/386"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/arm/v5", "linux/arm/v5"),
            ("linux/riscv64", "linux/riscv64"),
            ("linux/ppc64le", "linux/ppc64le"),
            ("macos/arm64", "darwin/arm64"),
        ] {
            assert_eq!(normalize(given).as_deref(), Some(normal), "{given}");
            assert_eq!(
                normalize(normal).as_deref(),
                Some(normal),
                "{normal} is normal"
            );
        }
    }

    #[test]
    fn anything_but_os_arch_and_an_optional_variant_is_refused() {
        for given in [
            "",
            "linux",
            "amd64",
            "linux/",
            "/amd64",
            "linux//v7",
            "linux/arm64/v8/x",
            "linux/arm 64",
            "linux/*",
            "windows(10.0.17763)/amd64",
            "linux/amd64\n",
        ] {
            assert_eq!(normalize(given), None, "{given:?}");
        }
    }
}
