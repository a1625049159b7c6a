//! The Inventory service process (see the library for what it does).

fn main() -> anyhow::Result<()> {
    inventory_service::main()?;
    Ok(())
}
