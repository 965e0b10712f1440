//! libFuzzer entry point of the `config` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("config") {
        body(data);
    }
});
