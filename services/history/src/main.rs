//! The read side's process (see the library for what it does).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    history_service::run().await?;
    Ok(())
}
