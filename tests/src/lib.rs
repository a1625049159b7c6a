//! Helpers for the black-box tests: where the checkout and the stack are, and how to drive the
//! stack script.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The checkout's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Where the stack keeps its state (pid files, data), as `deploy/local/stack.sh` sees it.
pub fn state_dir() -> PathBuf {
    std::env::var_os("SAGA_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local"))
}

pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// Output of one stack command, kept whole so that a failing test can show it.
#[derive(Debug)]
pub struct StackRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl StackRun {
    fn from_output(output: Output) -> Self {
        Self {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for StackRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "success: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// Runs `deploy/local/stack.sh <command>` and waits for it (it has its own deadlines).
pub fn stack(command: &str) -> anyhow::Result<StackRun> {
    let output = Command::new(repo_root().join("deploy/local/stack.sh"))
        .arg(command)
        .current_dir(repo_root())
        .output()?;
    Ok(StackRun::from_output(output))
}
