//! Where the four services' databases are, for the commands that read them directly (audit,
//! bench). Each is opened with the service's own role: read what the service can read.

use std::time::Duration;

use clap::Args;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    #[arg(
        long,
        env = "ORDERS_DATABASE_URL",
        default_value = "postgres://orders:orders@127.0.0.1:5432/orders"
    )]
    pub orders_db: String,
    #[arg(
        long,
        env = "PAYMENTS_DATABASE_URL",
        default_value = "postgres://payments:payments@127.0.0.1:5432/payments"
    )]
    pub payments_db: String,
    #[arg(
        long,
        env = "INVENTORY_DATABASE_URL",
        default_value = "postgres://inventory:inventory@127.0.0.1:5432/inventory"
    )]
    pub inventory_db: String,
    #[arg(
        long,
        env = "SHIPPING_DATABASE_URL",
        default_value = "postgres://shipping:shipping@127.0.0.1:5432/shipping"
    )]
    pub shipping_db: String,
}

/// One small pool per service database.
#[derive(Debug, Clone)]
pub struct Databases {
    pub orders: PgPool,
    pub payments: PgPool,
    pub inventory: PgPool,
    pub shipping: PgPool,
}

impl Databases {
    pub fn all(&self) -> [(&'static str, &PgPool); 4] {
        [
            ("order", &self.orders),
            ("payment", &self.payments),
            ("inventory", &self.inventory),
            ("shipping", &self.shipping),
        ]
    }
}

impl DatabaseArgs {
    pub async fn connect(&self) -> anyhow::Result<Databases> {
        Ok(Databases {
            orders: connect(&self.orders_db).await?,
            payments: connect(&self.payments_db).await?,
            inventory: connect(&self.inventory_db).await?,
            shipping: connect(&self.shipping_db).await?,
        })
    }
}

async fn connect(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?)
}
