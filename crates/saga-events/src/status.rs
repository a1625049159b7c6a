//! Statuses as the services' tables and APIs spell them (`AUTHORIZED`, `RESERVED`, `PENDING`…).
//! Every status type is a plain enum whose variants each stand for one fixed word; declaring it
//! with [`status_enum!`](crate::status_enum) writes that spelling once, for both directions, so
//! that what a service writes is always what it can read back.

use thiserror::Error;

/// A word that names no variant of a status type: a stored value this code never wrote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{text:?} is not a {kind}")]
pub struct UnknownStatus {
    /// The status type, e.g. `PaymentStatus`.
    pub kind: &'static str,
    pub text: String,
}

/// Declares a status enum whose variants are spelled by the given words: it gets `ALL`,
/// `as_str`, `parse` (None for any other word), `Display` and `FromStr` (an [`UnknownStatus`]),
/// and derives `Debug, Clone, Copy, PartialEq, Eq, Hash`.
///
/// ```
/// saga_events::status_enum! {
///     /// Where a parcel is.
///     pub enum ParcelStatus {
///         Packed => "PACKED",
///         Sent => "SENT",
///     }
/// }
///
/// assert_eq!(ParcelStatus::Sent.as_str(), "SENT");
/// assert_eq!(ParcelStatus::parse("PACKED"), Some(ParcelStatus::Packed));
/// assert!("LOST".parse::<ParcelStatus>().is_err());
/// ```
#[macro_export]
macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $word:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The word that spells this status.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }

            /// The status `text` spells, if any.
            pub fn parse(text: &str) -> ::std::option::Option<Self> {
                match text {
                    $($word => ::std::option::Option::Some(Self::$variant),)+
                    _ => ::std::option::Option::None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::status::UnknownStatus;

            fn from_str(text: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::parse(text).ok_or_else(|| $crate::status::UnknownStatus {
                    kind: ::std::stringify!($name),
                    text: text.to_owned(),
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::status_enum! {
        enum Light {
            Red => "RED",
            /// A variant may carry its own documentation.
            Green => "GREEN",
        }
    }

    #[test]
    fn every_variant_reads_back_as_written() {
        for light in Light::ALL {
            assert_eq!(Light::parse(light.as_str()), Some(*light));
            assert_eq!(light.to_string().parse::<Light>(), Ok(*light));
        }
    }

    #[test]
    fn another_word_is_no_status() {
        assert_eq!(Light::parse("red"), None);
        let error = "AMBER".parse::<Light>().expect_err("not a light");
        assert_eq!(error.to_string(), "\"AMBER\" is not a Light");
    }
}
