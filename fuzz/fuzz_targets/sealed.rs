#![no_main]
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run sealed` (from fuzz/; see README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    handler::internals::fuzz_sealed(function_builder_fuzz::sealing_key(), data);
});
