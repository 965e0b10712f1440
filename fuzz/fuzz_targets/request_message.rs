//! libFuzzer entry point of the `request_message` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("request_message") {
        body(data);
    }
});
