//! Reservation arithmetic without I/O.

use std::collections::BTreeMap;

/// Units of one SKU as the database holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub on_hand: i64,
    pub reserved: i64,
}

impl Level {
    pub fn available(self) -> i64 {
        self.on_hand - self.reserved
    }
}

pub const MAX_ON_HAND: i64 = 1_000_000_000;

/// Merges lines of the same SKU, so that one order asking twice for a SKU is checked against
/// its total.
pub fn merge_lines<'a>(lines: impl IntoIterator<Item = (&'a str, i64)>) -> BTreeMap<String, i64> {
    let mut merged = BTreeMap::new();
    for (sku, quantity) in lines {
        *merged.entry(sku.to_owned()).or_insert(0) += quantity;
    }
    merged
}

/// All lines or none: Ok with the new level of every SKU, or Err with every SKU that cannot be
/// served (unknown, not enough available, or a non-positive quantity).
pub fn reserve(
    wanted: &BTreeMap<String, i64>,
    levels: &BTreeMap<String, Level>,
) -> Result<BTreeMap<String, Level>, Vec<String>> {
    let mut after = BTreeMap::new();
    let mut unavailable = Vec::new();
    for (sku, &quantity) in wanted {
        match levels.get(sku) {
            Some(level) if quantity > 0 && quantity <= level.available() => {
                after.insert(
                    sku.clone(),
                    Level {
                        on_hand: level.on_hand,
                        reserved: level.reserved + quantity,
                    },
                );
            }
            _ => unavailable.push(sku.clone()),
        }
    }
    if unavailable.is_empty() {
        Ok(after)
    } else {
        Err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(entries: &[(&str, i64, i64)]) -> BTreeMap<String, Level> {
        entries
            .iter()
            .map(|(sku, on_hand, reserved)| {
                (
                    (*sku).to_owned(),
                    Level {
                        on_hand: *on_hand,
                        reserved: *reserved,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn all_lines_are_reserved_together() {
        let wanted = merge_lines([("A", 2), ("B", 1)]);
        let after = reserve(&wanted, &levels(&[("A", 5, 3), ("B", 1, 0)])).expect("enough");
        assert_eq!(
            after["A"],
            Level {
                on_hand: 5,
                reserved: 5
            }
        );
        assert_eq!(
            after["B"],
            Level {
                on_hand: 1,
                reserved: 1
            }
        );
    }

    #[test]
    fn one_short_line_refuses_the_whole_order() {
        let wanted = merge_lines([("A", 1), ("B", 2), ("C", 1)]);
        let refused = reserve(&wanted, &levels(&[("A", 5, 0), ("B", 3, 2)]));
        assert_eq!(refused, Err(vec!["B".to_owned(), "C".to_owned()]));
    }

    #[test]
    fn repeated_skus_are_checked_against_their_sum() {
        let wanted = merge_lines([("A", 2), ("A", 2)]);
        assert_eq!(wanted["A"], 4);
        assert!(reserve(&wanted, &levels(&[("A", 3, 0)])).is_err());
    }

    #[test]
    fn nonsense_quantities_are_never_reserved() {
        assert!(reserve(&merge_lines([("A", 0)]), &levels(&[("A", 3, 0)])).is_err());
        assert!(reserve(&merge_lines([("A", -1)]), &levels(&[("A", 3, 0)])).is_err());
    }
}
