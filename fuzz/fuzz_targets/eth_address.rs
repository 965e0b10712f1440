//! libFuzzer entry point of the `eth_address` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("eth_address") {
        body(data);
    }
});
