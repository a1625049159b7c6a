//! The Payment service process (see the library for what it does).

fn main() -> anyhow::Result<()> {
    payment_service::main()?;
    Ok(())
}
