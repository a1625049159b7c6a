//! Shipping rules without I/O.

use std::collections::BTreeSet;

/// Destinations served when `SHIPPING_COUNTRIES` is not set: Europe, North America, Oceania and
/// Japan. Anything else (e.g. `AQ`, Antarctica) fails, so the compensation path can be driven.
pub const DEFAULT_COUNTRIES: &str = "AT,AU,BE,BG,CA,CH,CY,CZ,DE,DK,EE,ES,FI,FR,GB,GR,HR,HU,IE,IS,IT,JP,LI,LT,LU,LV,MT,NL,NO,NZ,PL,PT,RO,SE,SI,SK,US";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations(BTreeSet<String>);

impl Destinations {
    /// Parses a comma-separated list of ISO 3166-1 alpha-2 codes.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut codes = BTreeSet::new();
        for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if code.len() != 2 || !code.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(format!(
                    "{code:?} is not an ISO 3166-1 alpha-2 country code"
                ));
            }
            codes.insert(code.to_owned());
        }
        if codes.is_empty() {
            return Err("no destination countries".into());
        }
        Ok(Self(codes))
    }

    /// None if the destination is served, else why not.
    pub fn refusal(&self, country: &str) -> Option<String> {
        (!self.0.contains(country)).then(|| format!("{country} is not a destination we ship to"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_countries_are_served() -> Result<(), String> {
        let destinations = Destinations::parse(DEFAULT_COUNTRIES)?;
        assert_eq!(destinations.refusal("GB"), None);
        assert!(destinations.refusal("AQ").is_some_and(|r| r.contains("AQ")));
        assert!(destinations.refusal("gb").is_some());
        Ok(())
    }

    #[test]
    fn a_bad_list_is_an_error_not_an_empty_world() {
        assert!(Destinations::parse("").is_err());
        assert!(Destinations::parse("GB,Germany").is_err());
        assert_eq!(
            Destinations::parse(" GB , DE "),
            Destinations::parse("DE,GB")
        );
    }
}
