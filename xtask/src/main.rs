//! `cargo xtask tidy`: run the tidy checks and list what they find.

use std::process::ExitCode;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("tidy") => {
            let root = xtask::tidy::workspace_root();
            match xtask::tidy::check_all(&root) {
                Ok(problems) if problems.is_empty() => {
                    println!("tidy: ok");
                    ExitCode::SUCCESS
                }
                Ok(problems) => {
                    for p in problems {
                        eprintln!("{p}");
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("tidy: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        _ => {
            eprintln!("usage: cargo xtask tidy");
            ExitCode::from(2)
        }
    }
}
