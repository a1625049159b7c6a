//! The Order service process (see the library for what it does).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    order_service::run().await?;
    Ok(())
}
