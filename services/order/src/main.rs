//! The Order service process (see the library for what it does).

fn main() -> anyhow::Result<()> {
    order_service::main()?;
    Ok(())
}
