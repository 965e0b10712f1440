//! libFuzzer entry point of the `descriptor` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("descriptor") {
        body(data);
    }
});
