//! `sqlx::migrate!` embeds the migrations at compile time: rebuild whenever they change.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
