//! Tidy checks: the architecture rules of DESIGN.md, enforced by tests.
//!
//! - Pure crates do not depend, even transitively, on async runtimes, SQL,
//!   HTTP, PKCS#11, or on the workspace's I/O crates.
//! - Every Rust file starts with a `//!` line that says what it is for.
//! - No test is switched off or turned upside down (`ignore`, `should_panic`).
//! - No source file grows past 900 lines (known ones may not grow).
//! - Only the signing gate calls the vault's signer.
//! - No crate's modules import each other in a circle; `service`'s modules
//!   import only from their own layer or below.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
    problems.extend(check_test_hooks(root, &files, HOOK_FILES)?);
    problems.extend(check_test_features(&meta)?);
    problems.extend(check_module_cycles(root)?);
    problems.extend(check_layers(
        root,
        &root.join("crates/service/src"),
        SERVICE_LAYERS,
    )?);
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

/// Files allowed past [`MAX_SOURCE_LINES`], each with the length it may not
/// grow beyond (none today). Splitting one takes it off this list (the
/// check says so when it shrinks under the limit).
pub const LONG_FILES: &[(&str, usize)] = &[];

/// Environment names that arm misbehaviour (crash points, faults,
/// published primes): read only in files built with the `test-hooks`
/// feature, which release builds never enable.
pub const TEST_HOOK_NAMES: &[&str] = &[
    "STRONGROOM_CRASH_AT",
    "STRONGROOM_SIGNER_CRASH_AT",
    "STRONGROOM_SIGNER_FAULT",
    "STRONGROOM_SIGNER_TEST_PRIMES",
];

/// Each file that may read them, and the file declaring it behind
/// `#[cfg(feature = "test-hooks")]`.
pub const HOOK_FILES: &[(&str, &str)] = &[
    (
        "crates/service/src/crash/hooks.rs",
        "crates/service/src/crash.rs",
    ),
    (
        "crates/keys-mpc/src/node/hooks.rs",
        "crates/keys-mpc/src/node.rs",
    ),
];

/// Features only tests may turn on.
pub const TEST_FEATURES: &[&str] = &["test-hooks", "test-support", "testing"];

/// The test hooks' names appear in library sources only inside
/// [`HOOK_FILES`], each declared behind the `test-hooks` feature.
pub fn check_test_hooks(
    root: &Path,
    files: &[PathBuf],
    hook_files: &[(&str, &str)],
) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for f in files {
        let place = relative(root, f);
        if !place.starts_with("crates/") || !place.contains("/src/") {
            continue;
        }
        if hook_files.iter().any(|(h, _)| *h == place) {
            continue;
        }
        let text = strip_comments(
            &std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        );
        for name in TEST_HOOK_NAMES {
            if text.contains(name) {
                problems.push(Problem {
                    rule: "test-hooks",
                    place: place.clone(),
                    detail: format!("names {name}: only a file behind the test-hooks feature may"),
                });
            }
        }
    }
    for (hook, parent) in hook_files {
        let text = std::fs::read_to_string(root.join(parent)).unwrap_or_default();
        let gated = text.lines().collect::<Vec<_>>().windows(2).any(|w| {
            w[0].trim() == "#[cfg(feature = \"test-hooks\")]" && w[1].trim().ends_with("mod hooks;")
        });
        if !gated || !root.join(hook).exists() {
            problems.push(Problem {
                rule: "test-hooks",
                place: (*parent).to_owned(),
                detail: format!(
                    "must declare {hook} as `mod hooks;` behind #[cfg(feature = \"test-hooks\")]"
                ),
            });
        }
    }
    Ok(problems)
}

/// No normal or build dependency of a workspace member, and no default
/// feature, turns on a feature only tests may use: a release build of any
/// member (`cargo build --release -p strongroom`) carries no test hooks.
pub fn check_test_features(meta: &Value) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .context("metadata has no workspace members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = meta["packages"]
        .as_array()
        .context("metadata has no packages")?;
    for p in packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
    {
        let name = p["name"].as_str().unwrap_or("?");
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let release = d["kind"].is_null() || d["kind"] == "build";
            for f in d["features"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if release && TEST_FEATURES.contains(&f) {
                    problems.push(Problem {
                        rule: "test-features",
                        place: name.to_owned(),
                        detail: format!(
                            "enables {f} of {} for release builds: only a dev-dependency may",
                            d["name"].as_str().unwrap_or("?")
                        ),
                    });
                }
            }
        }
        for f in p["features"]["default"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if TEST_FEATURES.iter().any(|t| f.ends_with(t)) {
                problems.push(Problem {
                    rule: "test-features",
                    place: name.to_owned(),
                    detail: format!("the default features include {f}"),
                });
            }
        }
    }
    Ok(problems)
}

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
/// `sign_as` only from the key inventory's self-test (a domain-separated
/// challenge no chain accepts).
pub const SIGNING_CALLS: &[(&str, &str)] = &[
    (".sign_checked(", "crates/service/src/gate.rs"),
    (".sign_as(", "crates/service/src/keyring.rs"),
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

/// The modules of one crate (`src/<name>.rs` or `src/<name>/…`), each with
/// the modules it names through `crate::` paths. Comments and a trailing
/// `#[cfg(test)]` module are left out.
pub fn module_graph(src: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    walk(src, &mut files)?;
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut texts = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src).unwrap_or(f);
        let Some(top) = rel.components().next() else {
            continue;
        };
        let top = top.as_os_str().to_string_lossy();
        let name = top.strip_suffix(".rs").unwrap_or(&top).to_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        graph.entry(name.clone()).or_default();
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        texts.push((name, text));
    }
    for (name, text) in texts {
        let refs = crate_refs(&strip_comments(&text));
        let edges: BTreeSet<String> = refs
            .into_iter()
            .filter(|r| *r != name && graph.contains_key(r))
            .collect();
        if let Some(e) = graph.get_mut(&name) {
            e.extend(edges);
        }
    }
    Ok(graph)
}

/// `text` without comments and without a `#[cfg(test)] mod tests` at its end.
fn strip_comments(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
    }
    out
}

/// The top-level modules named after `crate::` (and inside `crate::{…}`).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        let boundary = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if !boundary {
            continue;
        }
        let rest = &text[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // Names that start a path at the group's own depth.
            let mut depth = 1;
            let mut starts_path = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => starts_path = true,
                    c if c.is_whitespace() => {}
                    _ => {
                        if depth == 1 && starts_path {
                            let name = ident(&group[k..]);
                            if !name.is_empty() {
                                out.insert(name);
                            }
                        }
                        starts_path = false;
                    }
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Groups of modules that import each other in a circle (each of more than
/// one module), in a module graph.
pub fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two modules are in one circle when each reaches the other.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if done.contains(m) || !reached[m].contains(m) {
            continue;
        }
        let group: Vec<String> = graph
            .keys()
            .filter(|n| *n == m || (reached[m].contains(*n) && reached[*n].contains(m)))
            .cloned()
            .collect();
        done.extend(group.iter().cloned());
        out.push(group);
    }
    out
}

/// No crate has modules that import each other in a circle.
pub fn check_module_cycles(root: &Path) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let crates = root.join("crates");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
        .with_context(|| format!("reading {}", crates.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("src")))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for src in dirs {
        for group in cycles(&module_graph(&src)?) {
            problems.push(Problem {
                rule: "module-cycle",
                place: relative(root, &src),
                detail: format!("modules import each other in a circle: {}", group.join(" ")),
            });
        }
    }
    Ok(problems)
}

/// The layers of `service`, bottom first: a module imports only from its
/// own layer or those below (and its own layer holds no circle).
pub const SERVICE_LAYERS: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "access",
            "approvals",
            "audit_key",
            "changes",
            "checkpoints",
            "clock",
            "crash",
            "disk",
            "error",
            "freezes",
            "gov_log",
            "gov_state",
            "governed",
            "judgment",
            "ledger",
            "limiter",
            "metrics",
            "moves",
            "outbox",
            "record",
            "refusal",
            "screening",
            "service",
            "settings",
            "threshold",
            "totp",
            "vault",
            "webhook_target",
        ],
    ),
    (
        "vault",
        &[
            "backups",
            "cosigners",
            "key_refresh",
            "keyring",
            "keystore",
            "secrets",
        ],
    ),
    ("signing gate", &["gate"]),
    (
        "chain senders",
        &[
            "btc",
            "btc_bump",
            "btc_transfers",
            "cold",
            "deposits",
            "eth",
            "eth_hd",
            "eth_rows",
            "eth_stall",
            "eth_watch",
        ],
    ),
    (
        "queue and wallets",
        &[
            "btc_watch",
            "drift",
            "queue",
            "reconcile",
            "recovery",
            "wallets",
        ],
    ),
    (
        "transfers",
        &[
            "balances",
            "consolidate",
            "eth_sweeps",
            "judge",
            "requests",
            "rotation",
            "statements",
            "transfers",
        ],
    ),
    (
        "identity and governance",
        &[
            "api_keys",
            "governance",
            "identity",
            "passkeys",
            "proposal_checks",
            "scrape",
            "signed",
            "testing",
            "webhooks",
        ],
    ),
];

/// Every module of the crate at `src` is in one of `layers` and imports
/// nothing from a layer above its own.
pub fn check_layers(
    root: &Path,
    src: &Path,
    layers: &[(&str, &[&str])],
) -> anyhow::Result<Vec<Problem>> {
    let layer_of = |m: &str| layers.iter().position(|(_, ms)| ms.contains(&m));
    let mut problems = Vec::new();
    for (m, uses) in module_graph(src)? {
        let place = format!("{}/{m}", relative(root, src));
        let Some(own) = layer_of(&m) else {
            problems.push(Problem {
                rule: "layers",
                place,
                detail: "a module in no layer: add it to its layer".into(),
            });
            continue;
        };
        for u in uses {
            if let Some(l) = layer_of(&u).filter(|l| *l > own) {
                problems.push(Problem {
                    rule: "layers",
                    place: place.clone(),
                    detail: format!(
                        "imports `{u}` of the {} layer, above its own ({})",
                        layers[l].0, layers[own].0
                    ),
                });
            }
        }
    }
    Ok(problems)
}
