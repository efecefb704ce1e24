#![no_main]
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run archive_index` (from fuzz/; see README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = handler::internals::fuzz_archive_index(data);
});
