//! Every fuzz target run on every file of its checked-in corpus
//! (`fuzz/corpus/<target>/`) and on every crash it once found
//! (`fuzz/regressions/<target>/`): the fuzzers' findings as plain tests,
//! with no instrumented build.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files under `dir`, sorted (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_keeps_its_properties_on_its_corpus_and_regressions() {
    let mut runs = 0;
    for (name, body) in fuzzing::TARGETS {
        let corpus = files(&root().join("corpus").join(name));
        assert!(!corpus.is_empty(), "{name} has no corpus under fuzz/corpus");
        let regressions = files(&root().join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let run = std::panic::catch_unwind(|| body(&data));
            assert!(run.is_ok(), "{name} fails on {}", file.display());
            runs += 1;
        }
    }
    assert!(runs >= fuzzing::TARGETS.len());
}

/// Every target directory under `fuzz/corpus` and `fuzz/fuzz_targets` is a
/// target, and every target has its libFuzzer entry point.
#[test]
fn the_fuzz_directory_and_the_targets_agree() {
    for (name, _) in fuzzing::TARGETS {
        let entry = root().join("fuzz_targets").join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&entry).unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
        assert!(
            text.contains(&format!("fuzzing::target(\"{name}\")")),
            "{} does not run {name}",
            entry.display()
        );
    }
    for dir in ["corpus", "fuzz_targets"] {
        for f in files(&root().join(dir)).into_iter().chain(
            std::fs::read_dir(root().join(dir))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir()),
        ) {
            let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            assert!(
                fuzzing::target(stem).is_some(),
                "{} is no target",
                f.display()
            );
        }
    }
}

/// The fixtures the seeds come from are what they claim: the signed PSBT
/// and transaction are accepted, the approval and checkpoint verify, the
/// intent decodes. (Seeds that fail at the first check would leave the
/// fuzzer outside the code that matters.)
#[test]
fn the_seeds_reach_past_the_first_checks() {
    use fuzzing::known;
    let tx = chain_btc::accept_signed(known::btc_plan(), known::signed_psbt());
    assert!(tx.is_ok(), "{tx:?}");
    let raw = known::signed_eth().raw;
    let d = chain_eth::decode(&raw).map(|d| d.plan);
    assert_eq!(d.as_ref().ok(), Some(known::eth_approved().plan()));
    assert_eq!(
        known::statement().verify_recorded(&known::approver_key(), &known::approval_signature()),
        Ok(())
    );
    assert!(
        known::checkpoint()
            .verify(&known::audit_key().public())
            .is_ok()
    );
    let intent = known::intent().canonical_bytes();
    assert!(domain::TransferIntent::decode_as_written(&intent).is_ok());
}
