//! The canonical payload value: null, bool, integer, string, list, map with sorted keys.
//!
//! There is deliberately no float: floats have several encodings of "the same" number, and
//! anything hashed or decided must have exactly one. A JSON document containing a float is
//! refused when it is parsed, with an error that says so.
//!
//! In JSON a `Value` is the natural JSON value. In the canonical binary encoding it is a
//! tagged enum (variant index then contents), so the encoding is unambiguous.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Deepest nesting of lists and maps a payload may have. JSON parsing stops at 128 levels on
/// its own; this lower bound keeps adjudication's recursion small and predictable.
pub const VALUE_DEPTH_MAX: usize = 16;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A field of a map value; `None` for missing fields and for non-map values.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(field))
    }

    /// Nesting depth: scalars are 0, a list or map is one more than its deepest member.
    pub fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Map(map) => 1 + map.values().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Builds a map value from pairs; later duplicates win (as in JSON parsers).
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl fmt::Display for Value {
    /// Compact JSON.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k:?}:{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// The binary (tagged) representation. Variant order is part of the canonical encoding.
#[derive(Serialize)]
enum TaggedRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
    List(&'a [Value]),
    Map(&'a BTreeMap<String, Value>),
}

#[derive(Deserialize)]
enum Tagged {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            match self {
                Value::Null => serializer.serialize_unit(),
                Value::Bool(b) => serializer.serialize_bool(*b),
                Value::Int(i) => serializer.serialize_i64(*i),
                Value::Str(s) => serializer.serialize_str(s),
                Value::List(items) => items.serialize(serializer),
                Value::Map(map) => map.serialize(serializer),
            }
        } else {
            let tagged = match self {
                Value::Null => TaggedRef::Null,
                Value::Bool(b) => TaggedRef::Bool(*b),
                Value::Int(i) => TaggedRef::Int(*i),
                Value::Str(s) => TaggedRef::Str(s),
                Value::List(items) => TaggedRef::List(items),
                Value::Map(map) => TaggedRef::Map(map),
            };
            tagged.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(JsonVisitor)
        } else {
            Ok(match Tagged::deserialize(deserializer)? {
                Tagged::Null => Value::Null,
                Tagged::Bool(b) => Value::Bool(b),
                Tagged::Int(i) => Value::Int(i),
                Tagged::Str(s) => Value::Str(s),
                Tagged::List(items) => Value::List(items),
                Tagged::Map(map) => Value::Map(map),
            })
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "null, a boolean, an integer, a string, a list or a map (floats are not allowed)",
        )
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is out of range (max {})", i64::MAX)))
    }
    #[allow(
        clippy::disallowed_types,
        reason = "the only place a float is seen: to refuse it"
    )]
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // JSON parsers hand over an integer literal too large for 64 bits as a float. A
        // whole number at or beyond the i64 range's ends is that (or an exponent form of
        // one; -2^63 itself arrives as an integer, so a float equal to it was rounded from
        // below): name the range, not floats. A whole number within range arrived here
        // only because it was written as a float (`5.0`, `5e0`).
        const I64_RANGE_END: f64 = 9_223_372_036_854_775_808.0; // 2^63, exact as an f64
        if v.fract() == 0.0 && !(v > -I64_RANGE_END && v < I64_RANGE_END) {
            return Err(E::custom(format!(
                "integer out of range (found about {v:e}); payload integers are between {} \
                 and {}",
                i64::MIN,
                i64::MAX
            )));
        }
        Err(E::custom(format!(
            "floats are not allowed in payloads (found {v}); use an integer in the smallest unit"
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            if map.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("duplicate key {key:?} in map")));
            }
        }
        Ok(Value::Map(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_is_natural_json() {
        let text = r#"{"a":[1,true,null,"x"],"b":{"c":-5}}"#;
        let value: Value = serde_json::from_str(text).expect("parses");
        assert_eq!(serde_json::to_string(&value).expect("serializes"), text);
        assert_eq!(value.to_string(), text);
        assert_eq!(value.depth(), 2);
    }

    #[test]
    fn integers_beyond_64_bits_name_the_range_not_floats() {
        for text in [
            r#"{"n": 18446744073709551616}"#,
            r#"{"n": -9223372036854775809}"#,
        ] {
            let err = serde_json::from_str::<Value>(text)
                .expect_err(text)
                .to_string();
            assert!(err.contains("integer out of range"), "{err}");
            assert!(err.contains("9223372036854775807"), "{err}");
            assert!(!err.contains("float"), "{err}");
        }
        let err = serde_json::from_str::<Value>(r#"{"n": 9223372036854775808}"#)
            .expect_err("u64 above i64::MAX")
            .to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = serde_json::from_str::<Value>(r#"{"n": 5.0}"#)
            .expect_err("5.0")
            .to_string();
        assert!(err.contains("floats are not allowed"), "{err}");
        let max = serde_json::from_str::<Value>(r#"-9223372036854775808"#).expect("i64::MIN");
        assert_eq!(max, Value::Int(i64::MIN));
    }

    #[test]
    fn floats_are_refused_with_a_clear_error() {
        let err = serde_json::from_str::<Value>(r#"{"amount": 1.5}"#).expect_err("float refused");
        assert!(err.to_string().contains("floats are not allowed"), "{err}");
        assert!(serde_json::from_str::<Value>("1e3").is_err());
    }

    #[test]
    fn out_of_range_and_duplicate_keys_are_refused() {
        assert!(serde_json::from_str::<Value>("18446744073709551615").is_err());
        let err = serde_json::from_str::<Value>(r#"{"a":1,"a":2}"#).expect_err("duplicate");
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn binary_round_trip() {
        let value: Value = serde_json::from_str(r#"{"z":[1,2,{"q":"r"}],"a":false}"#).expect("ok");
        let bytes = crate::encoding::to_bytes(&value);
        let back: Value = crate::encoding::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, value);
    }
}
