//! Tidy checks: the architecture rules of DESIGN.md, enforced by tests.
//!
//! - Pure crates do not depend, even transitively, on async runtimes, SQL,
//!   HTTP, PKCS#11, or on the workspace's I/O crates.
//! - Every Rust file starts with a `//!` line that says what it is for.
//! - No test is switched off or turned upside down (`ignore`, `should_panic`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// Crates that must stay pure: data in, data out.
pub const PURE_CRATES: &[&str] = &[
    "domain",
    "policy",
    "lifecycle",
    "audit",
    "chain-btc",
    "chain-eth",
];

/// External crates a pure crate may not reach. A name matches itself and
/// its `-` sub-crates (`sqlx` also forbids `sqlx-core`).
pub const FORBIDDEN_IN_PURE: &[&str] = &["tokio", "sqlx", "reqwest", "hyper", "axum", "cryptoki"];

/// One rule broken, at one place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub rule: &'static str,
    pub place: String,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.rule, self.place, self.detail)
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Every check over the workspace at `root`.
pub fn check_all(root: &Path) -> anyhow::Result<Vec<Problem>> {
    let meta = cargo_metadata(root)?;
    let mut problems = check_dependency_directions(&meta)?;
    let files = rust_files(root)?;
    problems.extend(check_module_docs(root, &files)?);
    problems.extend(check_no_disabled_tests(root, &files)?);
    problems.extend(check_unsafe_allowlist(root, &files)?);
    problems.extend(check_no_ambient_clock_or_rng(root, &files)?);
    problems.extend(check_file_lengths(root, &files, LONG_FILES)?);
    problems.extend(check_signing_calls(root, &files, SIGNING_CALLS)?);
    problems.sort();
    Ok(problems)
}

/// `cargo metadata` for the workspace at `root`, as JSON.
pub fn cargo_metadata(root: &Path) -> anyhow::Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        // The graph as the workspace resolves it (features unified across
        // members), for every platform. Not `--offline`: on a fresh machine
        // the build only fetched the host's packages.
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

/// Walks normal and build dependencies from each pure crate and reports any
/// forbidden crate it reaches, with the path that reaches it.
pub fn check_dependency_directions(meta: &Value) -> anyhow::Result<Vec<Problem>> {
    let packages = meta["packages"]
        .as_array()
        .context("metadata has no packages")?;
    let name_of: HashMap<&str, &str> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .context("metadata has no workspace members")?
        .iter()
        .filter_map(|m| name_of.get(m.as_str()?).copied())
        .collect();
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in meta["resolve"]["nodes"]
        .as_array()
        .context("metadata has no resolve graph")?
    {
        let id = node["id"].as_str().context("node without id")?;
        let deps = node["deps"].as_array().into_iter().flatten().filter(|d| {
            d["dep_kinds"].as_array().into_iter().flatten().any(|k| {
                // Every platform counts: a runtime behind `cfg(unix)` is still a runtime.
                matches!(k["kind"].as_str(), None | Some("build"))
            })
        });
        edges.insert(
            id,
            deps.filter_map(|d| d["pkg"].as_str()).collect::<Vec<_>>(),
        );
    }
    let forbidden = |name: &str, is_member: bool| {
        if is_member {
            return !PURE_CRATES.contains(&name);
        }
        FORBIDDEN_IN_PURE
            .iter()
            .any(|f| name == *f || name.starts_with(&format!("{f}-")))
    };

    let mut problems = Vec::new();
    for (id, name) in &name_of {
        if !members.contains(name) || !PURE_CRATES.contains(name) {
            continue;
        }
        // Breadth-first, remembering how each crate was reached.
        let mut via: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([*id]);
        let mut reported = BTreeSet::new();
        while let Some(cur) = queue.pop_front() {
            for &dep in edges.get(cur).into_iter().flatten() {
                if dep == *id || via.contains_key(dep) {
                    continue;
                }
                via.insert(dep, cur);
                let dep_name = name_of.get(dep).copied().unwrap_or(dep);
                if forbidden(dep_name, members.contains(dep_name)) {
                    if reported.insert(dep_name) {
                        let mut chain = vec![dep_name];
                        let mut at = cur;
                        while at != *id {
                            chain.push(name_of.get(at).copied().unwrap_or(at));
                            at = via.get(at).copied().unwrap_or(id);
                        }
                        chain.push(name);
                        chain.reverse();
                        problems.push(Problem {
                            rule: "pure-crate-dependency",
                            place: (*name).to_owned(),
                            detail: format!("reaches {dep_name} via {}", chain.join(" -> ")),
                        });
                    }
                    continue;
                }
                queue.push_back(dep);
            }
        }
    }
    problems.sort();
    Ok(problems)
}

/// The Rust files the rules apply to: `crates/` and `xtask/`, not fixtures
/// or build output.
pub fn rust_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for top in ["crates", "xtask"] {
        walk(&root.join(top), &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "target" | "fixtures") && !name.starts_with('.') {
                walk(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn relative(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Every file opens with `//!`.
pub fn check_module_docs(root: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        if !text.trim_start().starts_with("//!") {
            problems.push(Problem {
                rule: "module-doc",
                place: relative(root, f),
                detail: "does not start with a `//!` line saying what it is for".into(),
            });
        }
    }
    Ok(problems)
}

/// No ignored tests and no tests expected to panic: a test that cannot run or that
/// passes by panicking hides what it should show.
pub fn check_no_disabled_tests(root: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<Problem>> {
    // Spelt in pieces so that this file does not trip its own check.
    let needles = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    let mut problems = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            for n in needles {
                if compact.contains(n) {
                    problems.push(Problem {
                        rule: "disabled-test",
                        place: format!("{}:{}", relative(root, f), i + 1),
                        detail: format!("uses {n}]: make the test run and assert what happens"),
                    });
                }
            }
        }
    }
    Ok(problems)
}

/// Files that may switch the workspace's `unsafe_code = "deny"` off, each for
/// a stated reason. Everything else stays safe Rust.
pub const UNSAFE_ALLOWED: &[&str] = &[
    // SoftHSM reads its configuration path only from the environment, and
    // setting the environment is `unsafe` in edition 2024.
    "crates/keys-pkcs11/src/testing.rs",
];

/// `unsafe` code only where [`UNSAFE_ALLOWED`] says so.
pub fn check_unsafe_allowlist(root: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<Problem>> {
    let needle = concat!("allow(", "unsafe_code)");
    let mut problems = Vec::new();
    for f in files {
        let place = relative(root, f);
        if UNSAFE_ALLOWED.contains(&place.as_str()) {
            continue;
        }
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.contains(needle) {
                problems.push(Problem {
                    rule: "unsafe-code",
                    place: format!("{place}:{}", i + 1),
                    detail: "unsafe code outside the allowlist in xtask/src/tidy.rs".into(),
                });
            }
        }
    }
    Ok(problems)
}

/// Pure crates take `now` and randomness as parameters: no ambient clock or
/// random number generator in their sources (tests included, so that their
/// snapshots stay reproducible).
pub fn check_no_ambient_clock_or_rng(
    root: &Path,
    files: &[PathBuf],
) -> anyhow::Result<Vec<Problem>> {
    // Spelt in pieces so that this file does not trip its own check.
    let needles = [
        concat!("SystemTime", "::now"),
        concat!("Instant", "::now"),
        concat!("Utc", "::now"),
        concat!("thread", "_rng"),
        concat!("Os", "Rng"),
        concat!("getrandom", "::"),
        concat!("Uuid::new", "_v4"),
        concat!("Uuid::now", "_v7"),
    ];
    let mut problems = Vec::new();
    for f in files {
        let place = relative(root, f);
        let in_pure = PURE_CRATES
            .iter()
            .any(|c| place.starts_with(&format!("crates/{c}/")));
        // Benchmarks time the pure code from outside; they are not part of it.
        let bench = place.split('/').nth(2) == Some("benches");
        if !in_pure || bench {
            continue;
        }
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            for n in needles {
                if line.contains(n) {
                    problems.push(Problem {
                        rule: "ambient-clock-or-rng",
                        place: format!("{place}:{}", i + 1),
                        detail: format!("uses {n}: pass the time or randomness in"),
                    });
                }
            }
        }
    }
    Ok(problems)
}

/// The longest a source file under `crates/*/src` may be: past it, split
/// it by the question each part answers.
pub const MAX_SOURCE_LINES: usize = 900;

/// FIXME(issue 17): files already past [`MAX_SOURCE_LINES`], each with the
/// length it may not grow beyond. Splitting one takes it off this list
/// (the check says so when it shrinks under the limit).
pub const LONG_FILES: &[(&str, usize)] = &[
    ("crates/api-http/src/governance.rs", 958),
    ("crates/keys-mpc/src/node.rs", 901),
    ("crates/policy/src/document.rs", 934),
    ("crates/service/src/btc_transfers.rs", 980),
    ("crates/service/src/eth.rs", 1245),
    ("crates/service/src/identity.rs", 1107),
    ("crates/service/src/keystore.rs", 1449),
    ("crates/service/src/transfers.rs", 2125),
    ("crates/storage/src/governance.rs", 1648),
    ("crates/strongroom/src/config.rs", 1240),
];

/// No source file past [`MAX_SOURCE_LINES`] (tests and data excepted),
/// beyond the known ones of [`LONG_FILES`], which may not grow.
pub fn check_file_lengths(
    root: &Path,
    files: &[PathBuf],
    known: &[(&str, usize)],
) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for f in files {
        let place = relative(root, f);
        if !place.starts_with("crates/") || !place.contains("/src/") {
            continue;
        }
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let lines = text.lines().count();
        match known.iter().find(|(p, _)| *p == place) {
            Some((_, cap)) if lines > *cap => problems.push(Problem {
                rule: "file-length",
                place,
                detail: format!("{lines} lines: a known long file grew past its {cap}"),
            }),
            Some(_) if lines <= MAX_SOURCE_LINES => problems.push(Problem {
                rule: "file-length",
                place,
                detail: format!("{lines} lines: no longer long; take it off LONG_FILES"),
            }),
            None if lines > MAX_SOURCE_LINES => problems.push(Problem {
                rule: "file-length",
                place,
                detail: format!("{lines} lines, over {MAX_SOURCE_LINES}: split it"),
            }),
            _ => {}
        }
    }
    Ok(problems)
}

/// Who may call the vault's signer: `sign_checked` only from the signing
/// gate (`service/src/gate.rs`), which signs nothing but approved plans;
/// `sign_as` only from the keystore itself (its self-test).
pub const SIGNING_CALLS: &[(&str, &str)] = &[
    (".sign_checked(", "crates/service/src/gate.rs"),
    (".sign_as(", "crates/service/src/keystore.rs"),
];

/// Where the vault's signer is defined.
const VAULT: &str = "crates/service/src/keystore.rs";

/// The vault's signer is reached only from where [`SIGNING_CALLS`] says.
pub fn check_signing_calls(
    root: &Path,
    files: &[PathBuf],
    allowed: &[(&str, &str)],
) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for f in files {
        let place = relative(root, f);
        if !place.starts_with("crates/") {
            continue;
        }
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (call, home) in allowed {
            // The vault defines both and wraps one in the other: only calls
            // elsewhere count.
            if place != *home && place != VAULT && text.contains(call) {
                problems.push(Problem {
                    rule: "signing-gate",
                    place: place.clone(),
                    detail: format!("calls `{call}`: only {home} may"),
                });
            }
        }
    }
    Ok(problems)
}
