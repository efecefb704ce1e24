//! What the fuzz targets share: the CLI's stack.yml loader, which lives in a binary crate and is
//! included here by path, and the test key the sealed-secrets target opens files with.

use std::sync::OnceLock;

use handler::sealed::OpeningKey;

#[allow(dead_code, unreachable_pub)]
#[path = "../../cli/src/layout.rs"]
mod layout;
#[allow(dead_code, unreachable_pub)]
#[path = "../../cli/src/stack.rs"]
mod stack;

/// The CLI's stack.yml loader and env substitution on any bytes (see `check_untrusted` there).
pub fn fuzz_stack(data: &[u8]) {
    stack::check_untrusted(data);
}

/// `tests/fixtures/sealed/key`, the key `tests/fixtures/sealed/secrets.yaml` is sealed to.
pub fn sealing_key() -> &'static OpeningKey {
    static KEY: OnceLock<OpeningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        OpeningKey::parse(include_str!("../../tests/fixtures/sealed/key")).expect("the test key")
    })
}
