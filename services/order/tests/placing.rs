//! Placing an order is one statement, outside any transaction (the order, its idempotency key
//! and its `OrderPlaced` in the outbox), against a real Postgres (a schema of its own in the test
//! database) and the real schema registry: either all of it is written, or, for a key already
//! taken, none of it.

use chrono::Utc;
use order_service::placing::{self, PlaceOrder};
use order_service::store::{self, NewOrder};
use saga_events::{EventCodec, EventMetadata, OrderConfirmed, SagaEvent, TopicNames};
use saga_messaging::Outbox;
use saga_testkit::isolated;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

async fn orders_schema() -> anyhow::Result<PgPool> {
    let schema = format!(
        "order_placing_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let pool = isolated::schema_pool(&schema, 2).await?;
    saga_messaging::migrate(&pool, &mut saga_messaging::embedded_migrations!()).await?;
    Ok(pool)
}

fn request() -> anyhow::Result<(PlaceOrder, i64)> {
    let body = serde_json::from_value(json!({
        "customer_id": "cust-placing",
        "items": [{"sku": "SKU-PLACING", "quantity": 2, "unit_price_cents": 350}],
        "currency": "EUR",
        "payment_method": "tok_visa",
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical Row",
                             "city": "London", "postal_code": "N1 9GU", "country": "GB"}
    }))?;
    placing::validate(body).map_err(|errors| anyhow::anyhow!("{errors:?}"))
}

/// An event of order `order_id`, staged as its `OrderPlaced` would be, and the event's id.
fn event_of(order_id: Uuid) -> anyhow::Result<(SagaEvent, Uuid)> {
    let metadata = EventMetadata::first(&order_id.to_string(), "order-service");
    let event_id = Uuid::parse_str(&metadata.event_id)?;
    let event = SagaEvent::from(OrderConfirmed {
        metadata,
        order_id: order_id.to_string(),
    });
    Ok((event, event_id))
}

/// The orders and the outbox's event ids, as stored.
async fn stored(pool: &PgPool) -> anyhow::Result<(Vec<Uuid>, Vec<Uuid>)> {
    let orders = sqlx::query_scalar("SELECT order_id FROM orders ORDER BY created_at")
        .fetch_all(pool)
        .await?;
    let outbox = sqlx::query_scalar("SELECT event_id FROM outbox ORDER BY id")
        .fetch_all(pool)
        .await?;
    Ok((orders, outbox))
}

#[tokio::test]
async fn an_order_is_placed_with_its_event_or_not_at_all() -> anyhow::Result<()> {
    let pool = orders_schema().await?;
    let outbox = Outbox::new(EventCodec::new(
        &isolated::registry_url(),
        TopicNames::new("placing-test."),
    )?);
    let (order, total_cents) = request()?;
    let new = |order_id: Uuid, placed_event_id: Uuid| NewOrder {
        order_id,
        order: &order,
        total_cents,
        deadline_at: Utc::now() + chrono::Duration::seconds(30),
        placed_event_id,
    };
    let mut conn = pool.acquire().await?;

    // Given an order placed without a key, and one placed under a key
    let first = Uuid::now_v7();
    let (event, first_event) = event_of(first)?;
    let staged = outbox.stage(&[event]).await?;
    let placed = store::place(&mut conn, &new(first, first_event), None, staged).await?;
    assert!(placed.is_some(), "placed without a key");
    let keyed = Uuid::now_v7();
    let (event, keyed_event) = event_of(keyed)?;
    let staged = outbox.stage(&[event]).await?;
    let placed = store::place(&mut conn, &new(keyed, keyed_event), Some("k-1"), staged).await?;
    assert!(placed.is_some(), "placed under a new key");

    // When another order is placed under the key already taken
    let again = Uuid::now_v7();
    let (event, again_event) = event_of(again)?;
    let staged = outbox.stage(&[event]).await?;
    let placed = store::place(&mut conn, &new(again, again_event), Some("k-1"), staged).await?;

    // Then it is refused, and nothing of it is written: each stored order has its event in the
    // outbox, and only those
    assert!(placed.is_none(), "the key was taken");
    assert_eq!(
        stored(&pool).await?,
        (vec![first, keyed], vec![first_event, keyed_event])
    );
    let owner: Uuid =
        sqlx::query_scalar("SELECT order_id FROM idempotency_keys WHERE idempotency_key = 'k-1'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(owner, keyed);
    Ok(())
}
