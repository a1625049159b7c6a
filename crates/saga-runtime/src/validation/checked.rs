//! [`Checked<R>`]: a value that obeys the rule `R`, made only by [`Checked::parse`], so that code
//! holding one never checks it again. Each rule ([`Rule`]) says once what it accepts, why it
//! refuses, and — from the same constants — what the OpenAPI document shows of it (pattern,
//! lengths, bounds), so the document a client is built from cannot drift from the server.
//!
//! The rule of a kind of field — printable text, codes, bounded integers — is a value
//! ([`FieldRule`]) whose parameters each field supplies ([`Field`], declared by
//! [`crate::field_types!`]); [`FieldOf`] makes it the [`Rule`] of that field. The serde, schema
//! and accessor plumbing is written here, once, for every rule.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use super::Broken;

/// What a [`Checked`] value must satisfy.
pub trait Rule {
    /// The value as the JSON carries it (`String`, `i64`, a list…).
    type Value;
    /// One rule the value can break; its text is what the client is told.
    type Error: fmt::Display;
    /// The name of the schema, were it listed on its own in the document.
    const NAME: &'static str;

    /// Every rule `value` breaks, in the order they are checked; empty when it obeys.
    fn broken(value: &Self::Value) -> Vec<Self::Error>;

    /// The schema of a value that obeys, built from the constants [`Rule::broken`] checks.
    fn schema() -> RefOr<Schema>;

    /// Other schemas [`Rule::schema`] refers to, for the document's components.
    fn schemas(_schemas: &mut Vec<(String, RefOr<Schema>)>) {}

    /// Reads the value from JSON before it is checked.
    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self::Value, D::Error>
    where
        Self::Value: Deserialize<'de>,
    {
        Self::Value::deserialize(deserializer)
    }
}

/// The rule of a kind of field — printable text ([`super::TextRule`]), codes, bounded integers —
/// as a value: its parameters say how long, which letters, within which bounds, and the same
/// parameters check a value and describe it in the schema.
pub trait FieldRule {
    type Value;
    type Error: fmt::Display;

    /// Every rule `value` breaks; empty when it obeys.
    fn broken(&self, value: &Self::Value) -> Vec<Self::Error>;

    /// The schema of a value that obeys, built from the parameters [`FieldRule::broken`] checks.
    fn schema(&self) -> RefOr<Schema>;

    /// Reads the value from JSON before it is checked.
    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self::Value, D::Error>
    where
        Self::Value: Deserialize<'de>,
    {
        Self::Value::deserialize(deserializer)
    }
}

/// One field of a kind `R`: its name and its parameters. [`crate::field_types!`] declares them.
pub trait Field<R> {
    /// The field's type, as the schema would be listed.
    const NAME: &'static str;
    const RULE: R;
}

/// The [`Rule`] of the field `F`, whose kind is `R`: `Checked<FieldOf<TextRule, City>>` is text
/// that obeys `City::RULE`.
pub struct FieldOf<R, F>(PhantomData<fn() -> (R, F)>);

impl<R, F> fmt::Debug for FieldOf<R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::any::type_name::<Self>())
    }
}

impl<R: FieldRule, F: Field<R>> Rule for FieldOf<R, F> {
    type Value = R::Value;
    type Error = R::Error;
    const NAME: &'static str = F::NAME;

    fn broken(value: &R::Value) -> Vec<R::Error> {
        F::RULE.broken(value)
    }

    fn schema() -> RefOr<Schema> {
        F::RULE.schema()
    }

    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<R::Value, D::Error>
    where
        R::Value: Deserialize<'de>,
    {
        R::read(deserializer)
    }
}

/// A value that obeys `R`. Reads as the value it holds (`Deref`), serializes as it, and
/// deserializes only when it obeys.
pub struct Checked<R: Rule>(R::Value, PhantomData<fn() -> R>);

impl<R: Rule> Checked<R> {
    /// The value, or every rule it breaks.
    pub fn parse(value: R::Value) -> Result<Self, Broken<R::Error>> {
        let broken = R::broken(&value);
        if broken.is_empty() {
            Ok(Self(value, PhantomData))
        } else {
            Err(Broken::new(broken))
        }
    }

    pub fn into_inner(self) -> R::Value {
        self.0
    }
}

impl<R: Rule> Deref for Checked<R> {
    type Target = R::Value;

    fn deref(&self) -> &R::Value {
        &self.0
    }
}

impl<R: Rule> fmt::Debug for Checked<R>
where
    R::Value: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<R: Rule> fmt::Display for Checked<R>
where
    R::Value: fmt::Display,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<R: Rule> Clone for Checked<R>
where
    R::Value: Clone,
{
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<R: Rule> PartialEq for Checked<R>
where
    R::Value: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<R: Rule> Eq for Checked<R> where R::Value: Eq {}

impl<R: Rule> Serialize for Checked<R>
where
    R::Value: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, R: Rule> Deserialize<'de> for Checked<R>
where
    R::Value: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(R::read(deserializer)?).map_err(D::Error::custom)
    }
}

impl<R: Rule> PartialSchema for Checked<R> {
    fn schema() -> RefOr<Schema> {
        R::schema()
    }
}

impl<R: Rule> ToSchema for Checked<R> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(R::NAME)
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        R::schemas(schemas);
    }
}

/// A `string` schema, for a rule to add its constraints to.
pub fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// Adds the example shown for a value: the `example` keyword, as utoipa's derive writes it (the
/// documents this API published so far carry it, not 3.1's `examples`).
#[allow(deprecated)]
pub fn example(schema: ObjectBuilder, value: impl Into<serde_json::Value>) -> ObjectBuilder {
    schema.example(Some(value.into()))
}

/// `T`'s schema with `null` among its types: the schema of an optional field holding a `T`
/// (`#[schema(schema_with = nullable::<T>)]`), as a type list rather than a `oneOf`.
pub fn nullable<T: PartialSchema>() -> RefOr<Schema> {
    let mut schema = T::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema
        && let SchemaType::Type(kind) = &object.schema_type
    {
        object.schema_type = SchemaType::from_iter([kind.clone(), Type::Null]);
    }
    schema
}

/// Declares fields of a kind ([`super::TextRule`], [`super::CodeRule`], [`super::BoundedRule`]):
/// for each row, a marker type implementing [`Field`] with the rule's parameters, and an alias
/// naming the checked type.
///
/// ```text
/// saga_runtime::field_types! {
///     /// Where the parcel goes.
///     pub type City = Text<CityField>(TextRule { max_chars: 100, example: "London" });
/// }
/// ```
#[macro_export]
macro_rules! field_types {
    ($(
        $(#[$attr:meta])*
        $vis:vis type $name:ident = $kind:ident<$field:ident>($rule:ident $params:tt);
    )+) => {$(
        $(#[$attr])*
        $vis type $name = $crate::validation::Checked<$crate::validation::$kind<$field>>;

        #[doc = concat!("The field [`", stringify!($name), "`] and its rule.")]
        #[derive(Debug)]
        $vis enum $field {}

        impl $crate::validation::Field<$crate::validation::$rule> for $field {
            const NAME: &'static str = stringify!($name);
            const RULE: $crate::validation::$rule = $crate::validation::$rule $params;
        }
    )+};
}
