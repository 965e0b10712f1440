//! `sqlx::migrate!` embeds the migrations at compile time: a migration
//! added or changed must rebuild the crate (as sqlx's documentation asks).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
