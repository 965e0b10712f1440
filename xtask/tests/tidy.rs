//! The tidy checks hold for the workspace, and each one fails on a bad fixture.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};

use xtask::tidy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn workspace_is_tidy() {
    let problems = tidy::check_all(&tidy::workspace_root()).unwrap();
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "tidy problems:\n{}", listed.join("\n"));
}

#[test]
fn the_real_dependency_graph_is_checked() {
    // Guards against a check that passes because it saw nothing.
    let meta = tidy::cargo_metadata(&tidy::workspace_root()).unwrap();
    let names: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for n in ["domain", "audit", "storage", "sqlx-core", "tokio"] {
        assert!(names.contains(&n), "{n} missing from metadata");
    }
}

#[test]
fn bad_dependencies_are_found() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("bad-deps.json")).unwrap())
            .unwrap();
    let problems: Vec<String> = tidy::check_dependency_directions(&meta)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "pure-crate-dependency: audit: reaches sqlx-core via audit -> domain -> helper -> sqlx-core",
            "pure-crate-dependency: audit: reaches storage via audit -> storage",
            "pure-crate-dependency: audit: reaches tokio via audit -> domain -> helper -> tokio",
            "pure-crate-dependency: domain: reaches sqlx-core via domain -> helper -> sqlx-core",
            "pure-crate-dependency: domain: reaches tokio via domain -> helper -> tokio",
        ]
    );
}

#[test]
fn missing_module_doc_is_found() {
    let root = fixtures().join("bad-module");
    let files = vec![root.join("src/lib.rs")];
    let problems = tidy::check_module_docs(&root, &files).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].place, "src/lib.rs");
}

#[test]
fn disabled_tests_are_found() {
    let root = fixtures().join("bad-module");
    let files = vec![root.join("src/lib.rs")];
    let places: Vec<String> = tidy::check_no_disabled_tests(&root, &files)
        .unwrap()
        .into_iter()
        .map(|p| p.place)
        .collect();
    assert_eq!(places, ["src/lib.rs:4", "src/lib.rs:8", "src/lib.rs:12"]);
}

#[test]
fn fixtures_are_not_scanned_with_the_workspace() {
    let files = tidy::rust_files(&tidy::workspace_root()).unwrap();
    assert!(
        files
            .iter()
            .all(|f| !f.to_string_lossy().contains("fixtures"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("crates/domain/src/lib.rs"))
    );
}

#[test]
fn unsafe_outside_the_allowlist_is_found() {
    let root = fixtures().join("bad-module");
    let files = vec![root.join("src/lib.rs")];
    let places: Vec<String> = tidy::check_unsafe_allowlist(&root, &files)
        .unwrap()
        .into_iter()
        .map(|p| p.place)
        .collect();
    assert_eq!(places, ["src/lib.rs:15"]);
}

#[test]
fn ambient_clock_and_rng_in_pure_crates_are_found() {
    let root = fixtures().join("impure");
    let files = vec![root.join("crates/domain/src/lib.rs")];
    let places: Vec<String> = tidy::check_no_ambient_clock_or_rng(&root, &files)
        .unwrap()
        .into_iter()
        .map(|p| p.place)
        .collect();
    assert_eq!(
        places,
        ["crates/domain/src/lib.rs:4", "crates/domain/src/lib.rs:11"]
    );
    // The same file outside a pure crate is not this rule's business.
    let elsewhere = tidy::check_no_ambient_clock_or_rng(&root.join("crates"), &files).unwrap();
    assert!(elsewhere.is_empty());
}

/// A throwaway workspace under the system's temp dir with `files`.
fn scratch(name: &str, files: &[(&str, String)]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("tidy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    root
}

#[test]
fn long_files_are_found_and_known_ones_may_not_grow() {
    let lines = |n: usize| "//! x\n".repeat(n);
    let root = scratch(
        "long",
        &[
            ("crates/a/src/new.rs", lines(901)),
            ("crates/a/src/known.rs", lines(950)),
            ("crates/a/src/shrunk.rs", lines(800)),
            ("crates/a/src/fine.rs", lines(900)),
            ("crates/a/tests/long_test.rs", lines(5000)),
        ],
    );
    let files = tidy::rust_files(&root).unwrap();
    let known = [
        ("crates/a/src/known.rs", 949),
        ("crates/a/src/shrunk.rs", 1000),
    ];
    let problems: Vec<String> = tidy::check_file_lengths(&root, &files, &known)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        problems,
        [
            "file-length: crates/a/src/known.rs: 950 lines: a known long file grew past its 949",
            "file-length: crates/a/src/new.rs: 901 lines, over 900: split it",
            "file-length: crates/a/src/shrunk.rs: 800 lines: no longer long; take it off LONG_FILES",
        ]
    );
}

#[test]
fn signing_around_the_gate_is_found() {
    let root = scratch(
        "gate",
        &[
            (
                "crates/service/src/gate.rs",
                "//! g\nfn f() { svc.sign_checked(k) }\n".into(),
            ),
            (
                "crates/service/src/eth.rs",
                "//! e\nfn f() { svc.sign_checked(k) }\n".into(),
            ),
        ],
    );
    let files = tidy::rust_files(&root).unwrap();
    let problems: Vec<String> = tidy::check_signing_calls(&root, &files, tidy::SIGNING_CALLS)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        problems,
        [
            "signing-gate: crates/service/src/eth.rs: calls `.sign_checked(`: only crates/service/src/gate.rs may"
        ]
    );
}

#[test]
fn circles_and_layer_breaches_are_found() {
    let root = scratch(
        "layers",
        &[
            (
                "crates/c/src/lib.rs",
                "//! c\nmod a;\nmod b;\nmod low;\n".into(),
            ),
            (
                "crates/c/src/a.rs",
                "//! a\nuse crate::{b::X, low};\n// crate::high in a comment\n".into(),
            ),
            (
                "crates/c/src/b.rs",
                "//! b\nfn f() { crate::a::g() }\n".into(),
            ),
            (
                "crates/c/src/low.rs",
                "//! low\nuse crate::high::Y;\n#[cfg(test)]\nmod tests { use crate::a; }\n".into(),
            ),
            ("crates/c/src/high.rs", "//! high\nuse crate::low;\n".into()),
        ],
    );
    let src = root.join("crates/c/src");
    let graph = tidy::module_graph(&src).unwrap();
    let cycles: Vec<String> = tidy::cycles(&graph).iter().map(|c| c.join(" ")).collect();
    let layers: &[(&str, &[&str])] = &[("bottom", &["low", "a", "b"]), ("top", &["high"])];
    let breaches: Vec<String> = tidy::check_layers(&root, &src, layers)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(cycles, ["a b", "high low"]);
    assert_eq!(
        breaches,
        ["layers: crates/c/src/low: imports `high` of the top layer, above its own (bottom)"]
    );
}

#[test]
fn test_hooks_outside_their_gated_files_are_found() {
    let hooks = [("crates/a/src/hooks.rs", "crates/a/src/lib.rs")];
    let root = scratch(
        "hooks",
        &[
            (
                "crates/a/src/lib.rs",
                "//! a\nmod hooks;\n// STRONGROOM_CRASH_AT in a comment is fine\n".into(),
            ),
            (
                "crates/a/src/hooks.rs",
                "//! h\nfn f() { std::env::var(\"STRONGROOM_SIGNER_FAULT\"); }\n".into(),
            ),
            (
                "crates/b/src/main.rs",
                "//! b\nfn f() { std::env::var(\"STRONGROOM_CRASH_AT\"); }\n".into(),
            ),
        ],
    );
    let files = tidy::rust_files(&root).unwrap();
    let problems: Vec<String> = tidy::check_test_hooks(&root, &files, &hooks)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        problems,
        [
            "test-hooks: crates/b/src/main.rs: names STRONGROOM_CRASH_AT: only a file behind the test-hooks feature may",
            "test-hooks: crates/a/src/lib.rs: must declare crates/a/src/hooks.rs as `mod hooks;` behind #[cfg(feature = \"test-hooks\")]",
        ]
    );
}

#[test]
fn test_features_turned_on_for_release_builds_are_found() {
    let meta = serde_json::json!({
        "workspace_members": ["a 0.0.0"],
        "packages": [{
            "id": "a 0.0.0",
            "name": "a",
            "features": {"default": []},
            "dependencies": [
                {"name": "service", "kind": null, "features": ["test-hooks"]},
                {"name": "keys-mpc", "kind": "dev", "features": ["test-support", "test-hooks"]},
            ],
        }],
    });
    let problems: Vec<String> = tidy::check_test_features(&meta)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "test-features: a: enables test-hooks of service for release builds: only a dev-dependency may"
        ]
    );
}
