//! An order's history as one pure fold over its events: the read side's state of an order, the
//! same whatever order its events arrive in.
//!
//! Events carry no sequence number, and one order's events travel four topics, so a projector
//! sees them in any interleaving, sometimes twice. [`fold`] therefore never folds them in the
//! order it got them: it drops repeats (one event per `event_id`), puts the rest in causal order
//! (every cause before its effects, ties broken by time and id), and only then applies them one
//! by one. The state is thus a function of the *set* of events, which is what lets the projector
//! recompute it from its log after every batch, answer "as of" any moment, and be rebuilt from
//! offset 0 into exactly the same rows.
//!
//! What the state says follows the facts' authors: the status is Order's (its `OrderConfirmed` or
//! `OrderCancelled`, pending until then), and payment, stock and shipment are each as their
//! service last told it. A report that comes after the order ended still counts for what was done
//! and undone, which is what the compensation status is made of.
//!
//! [`projection`] writes what the fold says into the history database; the fold itself does no
//! I/O.

mod fold;
pub mod projection;

pub use fold::{
    OrderHistory, PaymentState, PaymentView, Placement, ShipmentState, ShipmentView, StockState,
    StockView, fold, fold_as_of, in_fold_order, moments,
};

#[cfg(test)]
mod tests;
