//! Where a batch's events stand, asked alone and beside a service's read of its orders: both give
//! the same answer for every event in the order asked, and the read's rows come back whole, so
//! a consumer that asks both in one round trip plans exactly as one that asks them apart.

mod common;

use common::*;
use saga_messaging::inbox::{self, Standing};
use sqlx::PgConnection;
use uuid::Uuid;

/// A service's read of a batch's orders, as a consumer's [`saga_messaging::Reactions::load`]
/// would ask it: `$1` is the orders, and each row names one.
const READ: &str = "SELECT o AS order_id, 'seen' AS note FROM unnest($1::uuid[]) o";

#[tokio::test]
async fn the_standing_asked_beside_a_read_is_the_standing_asked_alone() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let mut conn = iso.pool.acquire().await?;
    let handled = Uuid::new_v4();
    let parked = Uuid::new_v4();
    let behind_parked = Uuid::new_v4();
    let clear = Uuid::new_v4();
    let (parked_order, other_order) = (Uuid::new_v4(), Uuid::new_v4());
    record_handled(&mut conn, handled).await?;
    park(&mut conn, parked, parked_order).await?;

    let questions = vec![
        (Some(clear), other_order.to_string()),
        (Some(handled), other_order.to_string()),
        (Some(behind_parked), parked_order.to_string()),
        (Some(parked), parked_order.to_string()),
        // A record that could not be decoded is asked about its order only.
        (None, parked_order.to_string()),
        (None, "not-a-uuid".to_owned()),
    ];
    let expected = vec![
        Standing::Clear,
        Standing::Known,
        Standing::OrderParked,
        Standing::Known,
        Standing::OrderParked,
        Standing::Clear,
    ];
    let alone = inbox::standing(&mut conn, &questions).await?;
    assert_eq!(alone, expected, "asked alone");

    let orders = [other_order, parked_order];
    let (beside, rows): (Vec<Standing>, Vec<(Uuid, String)>) =
        inbox::standing_beside(&mut conn, &questions, READ, &orders).await?;
    assert_eq!(beside, expected, "asked beside the read");
    let mut read: Vec<Uuid> = rows.iter().map(|(order, _)| *order).collect();
    read.sort();
    let mut asked = orders.to_vec();
    asked.sort();
    assert_eq!(read, asked, "the read's rows: {rows:?}");
    assert!(rows.iter().all(|(_, note)| note == "seen"), "{rows:?}");
    Ok(())
}

#[tokio::test]
async fn a_read_with_no_rows_or_no_questions_answers_the_other_whole() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let mut conn = iso.pool.acquire().await?;
    let handled = Uuid::new_v4();
    record_handled(&mut conn, handled).await?;
    let questions = vec![(Some(handled), Uuid::new_v4().to_string())];

    let (standing, rows): (Vec<Standing>, Vec<(Uuid, String)>) =
        inbox::standing_beside(&mut conn, &questions, READ, &[]).await?;
    assert_eq!(standing, [Standing::Known]);
    assert!(rows.is_empty(), "{rows:?}");

    let order = Uuid::new_v4();
    let (standing, rows): (Vec<Standing>, Vec<(Uuid, String)>) =
        inbox::standing_beside(&mut conn, &[], READ, &[order]).await?;
    assert!(standing.is_empty(), "{standing:?}");
    assert_eq!(rows, [(order, "seen".to_owned())]);
    Ok(())
}

async fn record_handled(conn: &mut PgConnection, event_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
         VALUES ($1, 'OrderConfirmed', 'test', 0, 0)",
    )
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}

async fn park(conn: &mut PgConnection, event_id: Uuid, order_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO parked (order_id, event_id, event_type, status, source_topic,
                             source_partition, source_offset, payload, headers)
         VALUES ($1, $2, 'OrderConfirmed', 'RETRYING', 'test', 0, 0, ''::bytea, ''::bytea)",
    )
    .bind(order_id.to_string())
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}
