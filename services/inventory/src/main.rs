//! The Inventory service process (see the library for what it does).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    inventory_service::run().await?;
    Ok(())
}
