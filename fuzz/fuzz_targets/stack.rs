#![no_main]
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run stack` (from fuzz/; see README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| function_builder_fuzz::fuzz_stack(data));
