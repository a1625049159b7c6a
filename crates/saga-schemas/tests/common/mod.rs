//! Shared by the integration tests: where `schemas/` is, and a copy of it to break on purpose.

use std::path::{Path, PathBuf};

pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// A copy of `schemas/` to break on purpose.
pub fn scratch_copy(test: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::temp_dir().join(format!(
        "saga-schemas-{test}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    copy_dir(&schemas_dir(), &target)?;
    Ok(target)
}

pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
