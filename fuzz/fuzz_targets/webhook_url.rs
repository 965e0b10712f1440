//! libFuzzer entry point of the `webhook_url` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("webhook_url") {
        body(data);
    }
});
