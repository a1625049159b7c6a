//! Each of the audit's rules fires: a violation is seeded straight into databases shaped like the
//! services' (their own migrations, in schemas of the `saga_test` database) and topics of their
//! own, and the audit must name it. A consistent saga seeded the same way must pass, so that
//! the seeding itself is shown to be right.

use std::path::Path;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_events::{EventCodec, Service, TopicNames};
use saga_messaging::parking::{self, NewParked, ParkedStatus};
use saga_messaging::{Delivery, FailureKind, Headers, KafkaSettings, headers};
use saga_testkit::isolated;
use sagactl::Context;
use sagactl::audit::{AuditArgs, AuditReport, audit};
use sagactl::databases::DatabaseArgs;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

/// Four service databases (schemas) and the saga's topics, all empty and this test's own.
struct World {
    context: Context,
    args: AuditArgs,
    orders: PgPool,
    payments: PgPool,
    inventory: PgPool,
    shipping: PgPool,
}

impl World {
    async fn new() -> anyhow::Result<Self> {
        let id = &Uuid::new_v4().simple().to_string()[..12];
        // Each service's own migrations, read from its directory as sqlx reads them. Payment's
        // and Shipping's workflows keep their instances in tables of their own (saga-workflow's
        // migration, ahead of the services').
        let read = |dir: &str| {
            Migrator::new(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../..")
                    .join(dir),
            )
        };
        let workflows = read("crates/saga-workflow/migrations").await?;
        let with_workflows = |own: Migrator| {
            Migrator::with_migrations(workflows.iter().chain(own.iter()).cloned().collect())
        };
        let migrators = [
            ("orders", read("services/order/migrations").await?),
            (
                "payments",
                with_workflows(read("services/payment/migrations").await?),
            ),
            ("inventory", read("services/inventory/migrations").await?),
            (
                "shipping",
                with_workflows(read("services/shipping/migrations").await?),
            ),
        ];
        let mut pools = Vec::new();
        let mut urls = Vec::new();
        for (name, mut migrator) in migrators {
            let schema = format!("audit_{id}_{name}");
            let pool = isolated::schema_pool(&schema, 2).await?;
            saga_messaging::migrate(&pool, &mut migrator).await?;
            pools.push(pool);
            urls.push(isolated::schema_url(&schema));
        }
        let topics = TopicNames::new(format!("at-{id}."));
        isolated::create_topics(&topics.all(), 1)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let context = Context {
            kafka: KafkaSettings::new(isolated::bootstrap()),
            codec: EventCodec::new(&isolated::registry_url(), topics.clone())?,
            topics,
            json: true,
        };
        let args = AuditArgs {
            databases: DatabaseArgs {
                orders_db: urls[0].clone(),
                payments_db: urls[1].clone(),
                inventory_db: urls[2].clone(),
                shipping_db: urls[3].clone(),
            },
            settle: 0,
            skip_topics: false,
            retry_grace: 60,
        };
        let mut pools = pools.into_iter();
        let mut next = || pools.next().ok_or_else(|| anyhow::anyhow!("four pools"));
        Ok(Self {
            context,
            args,
            orders: next()?,
            payments: next()?,
            inventory: next()?,
            shipping: next()?,
        })
    }

    async fn audit(&self) -> anyhow::Result<AuditReport> {
        audit(&self.context, &self.args).await
    }

    /// Audits and requires one violation that names `order` and contains `what`.
    async fn expect_violation(&self, order: Uuid, what: &str) -> anyhow::Result<()> {
        let report = self.audit().await?;
        let order = order.to_string();
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains(&order) && v.contains(what)),
            "expected a violation naming {order} with {what:?}; the audit said {:#}",
            report.to_json()
        );
        Ok(())
    }

    async fn order(
        &self,
        status: &str,
        reason: Option<&str>,
        compensation: Option<&str>,
    ) -> anyhow::Result<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO orders (order_id, customer_id, status, cancellation_reason, compensation,
                                 currency, total_cents, payment_method, items, shipping_address,
                                 deadline_at)
             VALUES ($1, 'cust-audit', $2, $3, $4, 'EUR', 1000, 'tok_visa',
                     '[{\"sku\": \"audit-sku\", \"quantity\": 2, \"unit_price_cents\": 500}]',
                     '{\"country\": \"DE\"}', now() + interval '30 seconds')",
        )
        .bind(id)
        .bind(status)
        .bind(reason)
        .bind(compensation)
        .execute(&self.orders)
        .await?;
        Ok(id)
    }

    async fn payment(&self, order: Uuid, status: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO payments (order_id, payment_id, status, amount_cents, currency, payment_method)
             VALUES ($1, $2, $3, 1000, 'EUR', 'tok_visa')",
        )
        .bind(order)
        .bind(Uuid::new_v4())
        .bind(status)
        .execute(&self.payments)
        .await?;
        Ok(())
    }

    /// A reservation of the order's two units; a held one is counted in the SKU's stock.
    async fn reservation(&self, order: Uuid, status: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO reservations (order_id, status, items)
             VALUES ($1, $2, '[{\"sku\": \"audit-sku\", \"quantity\": 2}]')",
        )
        .bind(order)
        .bind(status)
        .execute(&self.inventory)
        .await?;
        let held = if status == "RESERVED" { 2 } else { 0 };
        sqlx::query(
            "INSERT INTO stock (sku, on_hand, reserved) VALUES ('audit-sku', 10, $1)
             ON CONFLICT (sku) DO UPDATE SET reserved = stock.reserved + $1",
        )
        .bind(held)
        .execute(&self.inventory)
        .await?;
        Ok(())
    }

    async fn shipment(&self, order: Uuid, status: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO shipments (order_id, shipment_id, status, country, address, items)
             VALUES ($1, $2, $3, 'DE', '{}', '[]')",
        )
        .bind(order)
        .bind(Uuid::new_v4())
        .bind(status)
        .execute(&self.shipping)
        .await?;
        Ok(())
    }

    /// A CONFIRMED order with everything each service did for it.
    async fn confirmed(&self) -> anyhow::Result<Uuid> {
        let order = self.order("CONFIRMED", None, None).await?;
        self.payment(order, "AUTHORIZED").await?;
        self.reservation(order, "RESERVED").await?;
        self.shipment(order, "SCHEDULED").await?;
        Ok(order)
    }

    /// Parks a message of `order` at Inventory; returns the parked row's id.
    async fn park(&self, order: Uuid, status: ParkedStatus) -> anyhow::Result<i64> {
        let source = Delivery {
            topic: self.context.topics.events(Service::Payment),
            partition: 0,
            offset: i64::from(rand_offset()),
            timestamp_millis: None,
            key: Some(order.to_string().into_bytes()),
            headers: Headers::new(),
            payload: vec![0],
        };
        let mut conn = self.inventory.acquire().await?;
        let failure = (status != ParkedStatus::Waiting)
            .then_some((FailureKind::Permanent, "failed on purpose"));
        Ok(parking::insert(
            &mut conn,
            NewParked {
                order_id: order,
                event_id: Some(Uuid::new_v4()),
                event_type: Some("PaymentAuthorized"),
                status,
                source: &source,
                failure,
            },
        )
        .await?)
    }

    /// Puts a record on `topic` as a service's relay would.
    async fn produce(&self, topic: &str, key: Uuid, headers: &Headers) -> anyhow::Result<()> {
        let producer: FutureProducer = self.context.kafka.producer_config().create()?;
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&key.to_string())
                    .payload(&[0u8][..])
                    .headers(headers.to_kafka()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    /// The dead letter of parked row `parked_id` on Inventory's dead-letter topic.
    async fn dead_letter(&self, order: Uuid, parked_id: i64) -> anyhow::Result<()> {
        let mut letter = Headers::new();
        letter.insert(headers::PARKED_ID, parked_id.to_string());
        letter.insert(headers::EVENT_TYPE, "PaymentAuthorized");
        self.produce(&self.context.topics.dlq(Service::Inventory), order, &letter)
            .await
    }
}

fn rand_offset() -> u32 {
    Uuid::new_v4().as_fields().0 >> 1
}

#[tokio::test]
async fn a_consistent_saga_is_clean() -> anyhow::Result<()> {
    let world = World::new().await?;
    world.confirmed().await?;
    let declined = world
        .order("CANCELLED", Some("PAYMENT_DECLINED"), Some("COMPLETED"))
        .await?;
    world.payment(declined, "DECLINED").await?;
    // Explained: its dead letter is on the topic; the message behind it waits.
    let pending = world.order("PENDING", None, None).await?;
    world.payment(pending, "AUTHORIZED").await?;
    let head = world.park(pending, ParkedStatus::Dead).await?;
    world.park(pending, ParkedStatus::Waiting).await?;
    world.dead_letter(pending, head).await?;
    let report = world.audit().await?;
    assert!(report.is_clean(), "{:#}", report.to_json());
    assert_eq!(report.explained.len(), 1, "{:#}", report.to_json());
    Ok(())
}

#[tokio::test]
async fn a_double_charge_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.confirmed().await?;
    for _ in 0..2 {
        let mut charge = Headers::new();
        charge.insert(headers::EVENT_TYPE, "PaymentAuthorized");
        charge.insert(headers::EVENT_ID, Uuid::new_v4().to_string());
        world
            .produce(
                &world.context.topics.events(Service::Payment),
                order,
                &charge,
            )
            .await?;
    }
    world
        .expect_violation(order, "2 distinct PaymentAuthorized")
        .await
}

#[tokio::test]
async fn a_reservation_without_a_charge_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.order("PENDING", None, None).await?;
    world.payment(order, "DECLINED").await?;
    world.reservation(order, "RESERVED").await?;
    world
        .expect_violation(order, "a reservation (RESERVED) without a charge")
        .await
}

#[tokio::test]
async fn a_shipment_without_reserved_stock_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.order("PENDING", None, None).await?;
    world.payment(order, "AUTHORIZED").await?;
    world.shipment(order, "SCHEDULED").await?;
    world
        .expect_violation(order, "a shipment (SCHEDULED) without reserved stock")
        .await
}

#[tokio::test]
async fn a_lost_refund_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world
        .order("CANCELLED", Some("OUT_OF_STOCK"), Some("COMPLETED"))
        .await?;
    world.payment(order, "AUTHORIZED").await?;
    world.reservation(order, "FAILED").await?;
    world
        .expect_violation(order, "payment is still AUTHORIZED")
        .await
}

#[tokio::test]
async fn a_shipment_for_a_cancelled_order_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world
        .order("CANCELLED", Some("TIMED_OUT"), Some("COMPLETED"))
        .await?;
    world.payment(order, "REFUNDED").await?;
    world.reservation(order, "RELEASED").await?;
    world.shipment(order, "SCHEDULED").await?;
    world
        .expect_violation(order, "a shipment is scheduled")
        .await
}

#[tokio::test]
async fn a_confirmed_order_without_its_shipment_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.order("CONFIRMED", None, None).await?;
    world.payment(order, "AUTHORIZED").await?;
    world.reservation(order, "RESERVED").await?;
    world
        .expect_violation(order, "CONFIRMED but shipment is None")
        .await
}

#[tokio::test]
async fn an_order_left_pending_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.order("PENDING", None, None).await?;
    world
        .expect_violation(order, "is PENDING and no dead letter explains it")
        .await
}

#[tokio::test]
async fn a_compensation_left_pending_without_a_dead_letter_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world
        .order("CANCELLED", Some("SHIPPING_FAILED"), Some("PENDING"))
        .await?;
    world.payment(order, "REFUNDED").await?;
    world.reservation(order, "RESERVED").await?;
    world.shipment(order, "FAILED").await?;
    world
        .expect_violation(order, "compensation Some(\"PENDING\") and no dead letter")
        .await
}

#[tokio::test]
async fn a_stuck_retry_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.order("PENDING", None, None).await?;
    world.payment(order, "AUTHORIZED").await?;
    let row = world.park(order, ParkedStatus::Retrying).await?;
    sqlx::query("UPDATE parked SET last_failed_at = now() - interval '10 minutes' WHERE id = $1")
        .bind(row)
        .execute(&world.inventory)
        .await?;
    world
        .expect_violation(order, "long past its retry schedule")
        .await
}

#[tokio::test]
async fn a_dead_row_without_its_dead_letter_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.order("PENDING", None, None).await?;
    world.payment(order, "AUTHORIZED").await?;
    world.park(order, ParkedStatus::Dead).await?;
    world.expect_violation(order, "but no dead letter").await
}

#[tokio::test]
async fn messages_waiting_behind_no_head_are_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.confirmed().await?;
    world.park(order, ParkedStatus::Waiting).await?;
    world.expect_violation(order, "behind no head").await
}

#[tokio::test]
async fn two_heads_for_one_order_are_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let order = world.order("PENDING", None, None).await?;
    world.payment(order, "AUTHORIZED").await?;
    for _ in 0..2 {
        let head = world.park(order, ParkedStatus::Dead).await?;
        world.dead_letter(order, head).await?;
    }
    world.expect_violation(order, "2 parked heads").await
}

#[tokio::test]
async fn stock_held_for_no_reservation_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    world.confirmed().await?;
    sqlx::query("UPDATE stock SET reserved = reserved + 3 WHERE sku = 'audit-sku'")
        .execute(&world.inventory)
        .await?;
    let report = world.audit().await?;
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("SKU audit-sku: 5 reserved, but held reservations add up to 2")),
        "{:#}",
        report.to_json()
    );
    Ok(())
}

#[tokio::test]
async fn an_effect_for_an_order_never_placed_is_named() -> anyhow::Result<()> {
    let world = World::new().await?;
    let stranger = Uuid::now_v7();
    world.payment(stranger, "AUTHORIZED").await?;
    world
        .expect_violation(stranger, "which Order never accepted")
        .await
}
