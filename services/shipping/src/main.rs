//! The Shipping service process (see the library for what it does).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shipping_service::run().await?;
    Ok(())
}
