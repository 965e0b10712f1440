//! libFuzzer entry point of the `approval` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("approval") {
        body(data);
    }
});
