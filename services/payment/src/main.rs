//! The Payment service process (see the library for what it does).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    payment_service::run().await?;
    Ok(())
}
