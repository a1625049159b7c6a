//! The Shipping service process (see the library for what it does).

fn main() -> anyhow::Result<()> {
    shipping_service::main()?;
    Ok(())
}
