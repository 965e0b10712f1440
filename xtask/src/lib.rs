//! Project automation. The tidy checks here run as tests (`cargo test -p xtask`)
//! and from the command line (`cargo xtask tidy`).

pub mod tidy;
