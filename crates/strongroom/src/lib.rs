//! The part of the server's binary other crates may build on: its
//! configuration, read from TOML into checked settings (the fuzz targets
//! parse it, the binary runs on it). Everything else is the binary's.

pub mod config;
