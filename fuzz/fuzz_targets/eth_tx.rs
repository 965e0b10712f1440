//! libFuzzer entry point of the `eth_tx` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("eth_tx") {
        body(data);
    }
});
