//! Typed parameters: a serde `Deserializer` over the validated parameter tree, so each handler
//! receives its own `#[derive(Deserialize)]` struct instead of reading values back by string
//! key. The tree is already cleaned and typed by `wire::params::validate`, so a decode failure
//! means the struct and the description disagree (a misspelt or mistyped key): the table test
//! (`functions::tests::every_function_decodes_its_sample_call`) runs every function's decoder.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::api::wire::params::Value;

/// Why a validated tree did not fit a handler's struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DecodeError(msg.to_string())
    }
}

/// Decodes a validated parameter tree into a handler's parameter struct.
///
/// # Errors
/// The struct does not match the tree (a missing, misspelt or mistyped key).
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    T::deserialize(ValueDeserializer(value))
}

pub struct ValueDeserializer(Value);

impl<'de> IntoDeserializer<'de, DecodeError> for Value {
    type Deserializer = ValueDeserializer;
    fn into_deserializer(self) -> ValueDeserializer {
        ValueDeserializer(self)
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(n) => visitor.visit_i64(n),
            Value::Float(f) => visitor.visit_f64(f),
            Value::Str(s) => visitor.visit_string(s),
            Value::List(items) => visitor.visit_seq(SeqDeserializer::new(items.into_iter())),
            Value::Struct(entries) => visitor.visit_map(MapDeserializer::new(entries.into_iter())),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(ValueDeserializer(other)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        id: i64,
        name: Option<String>,
        flags: Vec<bool>,
        #[serde(default)]
        absent: Option<f64>,
    }

    fn tree(entries: Vec<(&str, Value)>) -> Value {
        Value::Struct(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    #[test]
    fn a_validated_tree_decodes_into_its_struct() {
        let value = tree(vec![
            ("id", Value::Int(7)),
            ("name", Value::Null),
            ("flags", Value::List(vec![Value::Bool(true), Value::Bool(false)])),
        ]);
        let sample: Sample = decode(value).unwrap();
        assert_eq!(sample, Sample { id: 7, name: None, flags: vec![true, false], absent: None });
    }

    #[test]
    fn a_misspelt_key_fails_to_decode() {
        let value = tree(vec![("idd", Value::Int(7)), ("flags", Value::List(vec![]))]);
        assert!(decode::<Sample>(value).is_err());
    }
}
