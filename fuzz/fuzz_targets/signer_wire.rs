//! libFuzzer entry point of the `signer_wire` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("signer_wire") {
        body(data);
    }
});
