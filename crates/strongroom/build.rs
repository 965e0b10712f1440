//! The source's version for `/v1/status`: `git describe` of the checkout
//! the binary is built from (`unknown` outside one, as from a tarball).

fn main() {
    let described = std::process::Command::new("git")
        .args(["describe", "--tags", "--always"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STRONGROOM_GIT_COMMIT={described}");
    // Built again when the checkout moves to another commit (HEAD, the
    // branch it names, and packed refs).
    let mut watch = vec![
        "../../.git/HEAD".to_owned(),
        "../../.git/packed-refs".to_owned(),
    ];
    if let Ok(head) = std::fs::read_to_string("../../.git/HEAD")
        && let Some(r) = head.trim().strip_prefix("ref: ")
    {
        watch.push(format!("../../.git/{r}"));
    }
    for f in watch {
        if std::path::Path::new(&f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
