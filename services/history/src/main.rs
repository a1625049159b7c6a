//! The read side's process (see the library for what it does).

fn main() -> anyhow::Result<()> {
    history_service::main()?;
    Ok(())
}
