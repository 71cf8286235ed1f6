//! JSON input takes records as objects, never as arrays.
//!
//! serde's derived `Deserialize` for a struct accepts two shapes: a map of named fields and
//! a sequence of field values in declaration order. The second is what bincode uses (the
//! canonical encoding), but in JSON it would let `["v1","docket-test",...]` stand for a
//! proposal, a shape no documentation names and no client should depend on. [`ObjectsOnly`]
//! wraps a deserializer so that a struct is read only from a map; [`objects_only`] and
//! [`objects_only_seq`] apply it to fields, and only where the format is human-readable, so
//! the canonical binary encoding is untouched.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// A deserializer that reads structs only from maps (JSON objects); everything else is
/// passed through unchanged.
#[derive(Debug)]
pub struct ObjectsOnly<D>(pub D);

macro_rules! forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// `T`, read through [`ObjectsOnly`]: `serde_json::from_slice::<Objects<T>>` (or any JSON
/// extractor) takes `T` itself only as an object, and the fields that opt in below it.
#[derive(Debug)]
pub struct Objects<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Objects<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectsOnly(deserializer)).map(Objects)
    }
}

/// Reads `T` from a map only when the format is human-readable (JSON); binary formats read
/// it as they always have. For `#[serde(deserialize_with = "objects_only")]`.
pub fn objects_only<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    if deserializer.is_human_readable() {
        T::deserialize(ObjectsOnly(deserializer))
    } else {
        T::deserialize(deserializer)
    }
}

/// [`objects_only`] for every element of a list. For
/// `#[serde(deserialize_with = "objects_only_seq")]` on a `Vec<T>`.
pub fn objects_only_seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    if !deserializer.is_human_readable() {
        return Vec::<T>::deserialize(deserializer);
    }
    struct Elements<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Elements<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The capacity hint comes from the input: trust it only up to a small bound.
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element_seed(Element(PhantomData))? {
                items.push(item);
            }
            Ok(items)
        }
    }
    struct Element<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Element<T> {
        type Value = T;
        fn deserialize<D2: Deserializer<'de>>(self, d: D2) -> Result<T, D2::Error> {
            T::deserialize(ObjectsOnly(d))
        }
    }
    deserializer.deserialize_seq(Elements(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_str<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, serde_json::Error> {
        serde_json::from_str::<Objects<T>>(text).map(|Objects(value)| value)
    }

    #[derive(Debug, PartialEq, Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u64,
    }

    #[derive(Debug, PartialEq, Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(deserialize_with = "objects_only")]
        inner: Inner,
        #[serde(deserialize_with = "objects_only_seq")]
        list: Vec<Inner>,
    }

    #[test]
    fn objects_are_read_and_arrays_are_refused_at_every_level() {
        let outer: Outer = from_str(r#"{"inner":{"a":1},"list":[{"a":2}]}"#).expect("objects");
        assert_eq!(outer.inner, Inner { a: 1 });
        assert_eq!(outer.list, vec![Inner { a: 2 }]);

        for (text, expected) in [
            (r#"[{"a":1},[]]"#, "invalid type: sequence"),
            (r#"{"inner":[1],"list":[]}"#, "invalid type: sequence"),
            (
                r#"{"inner":{"a":1},"list":[[2]]}"#,
                "invalid type: sequence",
            ),
            (r#"{"inner":{"a":1},"list":[]} x"#, "trailing characters"),
        ] {
            let error = from_str::<Outer>(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        // Plain serde_json takes the array shape: that is what the wrapper is for.
        assert!(serde_json::from_str::<Inner>("[1]").is_ok());
    }

    #[test]
    fn binary_encoding_still_reads_structs_as_sequences() {
        let outer = Outer {
            inner: Inner { a: 7 },
            list: vec![Inner { a: 8 }],
        };
        let bytes = bincode::serialize(&outer).expect("encode");
        let back: Outer = bincode::deserialize(&bytes).expect("decode");
        assert_eq!(back, outer);
    }
}
