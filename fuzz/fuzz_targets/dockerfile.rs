#![no_main]
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run dockerfile` (from fuzz/; see README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| handler::internals::fuzz_dockerfile(data));
