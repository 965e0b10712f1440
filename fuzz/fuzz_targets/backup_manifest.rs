//! libFuzzer entry point of the `backup_manifest` target (crates/fuzzing).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = fuzzing::target("backup_manifest") {
        body(data);
    }
});
