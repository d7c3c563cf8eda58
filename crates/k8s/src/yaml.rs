//! Reading Kubernetes manifests (YAML) under limits: at most [`MAX_MANIFEST_DOCUMENTS`]
//! documents, and every value built counted against an expansion budget, so an alias bomb
//! stops before it costs memory (docs/limits.md). Pure: it reads text handed to it. Shared by
//! `anchorage-trust`'s manifest sources and [`crate::read_ca_secret`].

use serde_yaml_ng::Value;

/// The most YAML documents read from one manifest file; past it the file's remaining documents
/// are refused with one problem. A `kubectl get -o yaml` export is one `List` document.
pub const MAX_MANIFEST_DOCUMENTS: usize = 10_000;

/// How far one manifest file may expand once parsed, YAML aliases included: the values built
/// from it may cost at most this many times the file's size plus [`MANIFEST_EXPANSION_SLACK`],
/// each value counted at [`MANIFEST_VALUE_COST`] bytes plus its text. A manifest without
/// aliases costs about its size (PEM values) to a few times it (many short fields); a "billion laughs" file of 700 KB (100,000 aliases of a 100,000-item
/// sequence, within `serde_yaml_ng`'s own repetition limit) would otherwise build 10^10 values.
pub const MAX_MANIFEST_EXPANSION: usize = 8;

/// The part of the expansion budget that does not depend on the file's size (bytes).
pub const MANIFEST_EXPANSION_SLACK: usize = 16 * 1024 * 1024;

/// What one YAML value (scalar, sequence or mapping) counts toward the expansion budget besides
/// its text: about the memory a `serde_yaml_ng::Value` and its container slot take.
pub const MANIFEST_VALUE_COST: usize = 64;

mod bounded {
    //! A `serde_yaml_ng::Value` built under a budget of expanded size (see
    //! `MAX_MANIFEST_EXPANSION`, `MANIFEST_VALUE_COST`), counted while it is built, so an alias bomb is refused before
    //! it costs memory. The same shapes as `Value`'s own `Deserialize` (duplicate keys refused,
    //! tags kept).
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess};
    use serde::de::{VariantAccess as _, Visitor};
    use serde_yaml_ng::value::{Tag, TaggedValue};
    use serde_yaml_ng::{Mapping, Value};

    use super::MANIFEST_VALUE_COST as ONE;

    /// The message an exhausted budget fails with (recognised by the caller).
    pub(super) const EXHAUSTED: &str = "alias expansion budget exhausted";

    #[derive(Clone, Copy)]
    pub(super) struct Budget<'a>(pub(super) &'a Cell<usize>);

    impl Budget<'_> {
        fn spend<E: de::Error>(self, units: usize) -> Result<(), E> {
            let left = self.0.get();
            if units > left {
                self.0.set(0);
                return Err(E::custom(EXHAUSTED));
            }
            self.0.set(left - units);
            Ok(())
        }
    }

    impl<'de> DeserializeSeed<'de> for Budget<'_> {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Budget<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any YAML value")
        }

        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
            self.spend(ONE)?;
            Ok(Value::Bool(b))
        }

        fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
            self.spend(ONE)?;
            Ok(Value::Number(i.into()))
        }

        fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
            self.spend(ONE)?;
            Ok(Value::Number(u.into()))
        }

        fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
            self.spend(ONE)?;
            Ok(Value::Number(f.into()))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
            self.spend(s.len().saturating_add(ONE))?;
            Ok(Value::String(s.to_owned()))
        }

        fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
            self.spend(s.len().saturating_add(ONE))?;
            Ok(Value::String(s))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            self.spend(ONE)?;
            Ok(Value::Null)
        }

        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            self.visit_unit()
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            self.deserialize(d)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            self.spend(ONE)?;
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(self)? {
                out.push(v);
            }
            Ok(Value::Sequence(out))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            self.spend(ONE)?;
            let mut out = Mapping::new();
            while let Some(key) = map.next_key_seed(self)? {
                if out.contains_key(&key) {
                    let shown = match &key {
                        Value::String(s) => format!("with key {s:?}"),
                        Value::Number(n) => format!("with key {n}"),
                        Value::Bool(b) => format!("with key `{b}`"),
                        Value::Null => "with null key".into(),
                        _ => "in YAML map".into(),
                    };
                    return Err(de::Error::custom(format!("duplicate entry {shown}")));
                }
                let value = map.next_value_seed(self)?;
                out.insert(key, value);
            }
            Ok(Value::Mapping(out))
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
            let (tag, contents): (String, _) = data.variant()?;
            self.spend(tag.len().saturating_add(ONE))?;
            let value = contents.newtype_variant_seed(self)?;
            Ok(Value::Tagged(Box::new(TaggedValue {
                tag: Tag::new(tag),
                value,
            })))
        }
    }
}

/// Why [`read_yaml_documents`] stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlLimitError {
    /// More than [`MAX_MANIFEST_DOCUMENTS`] documents.
    #[error(
        "more than {MAX_MANIFEST_DOCUMENTS} YAML documents (MAX_MANIFEST_DOCUMENTS, docs/limits.md); the rest of the file was not read: split it"
    )]
    TooManyDocuments,
    /// The expansion budget ran out while document `document` (from 1) was built.
    #[error(
        "YAML aliases expand document {document} past {MAX_MANIFEST_EXPANSION} times the file's size plus {MANIFEST_EXPANSION_SLACK} bytes (MAX_MANIFEST_EXPANSION, docs/limits.md); the rest of the file was not read: write the values out instead of aliasing them, or split the file"
    )]
    Expansion {
        /// The document (from 1).
        document: usize,
    },
    /// A document does not parse (the stream cannot be resumed after it).
    #[error("{reason}")]
    Yaml {
        /// The line, when the parser knows it.
        line: Option<usize>,
        /// The parser's message (a position, never the input).
        reason: String,
    },
}

impl YamlLimitError {
    /// True for the limits ([`MAX_MANIFEST_DOCUMENTS`], the expansion budget), false for a
    /// syntax error.
    pub fn is_limit(&self) -> bool {
        !matches!(self, Self::Yaml { .. })
    }
}

/// Reads the YAML documents of `text` one at a time under the manifest limits (at most
/// [`MAX_MANIFEST_DOCUMENTS`]; every value built counted against the expansion budget of
/// [`MAX_MANIFEST_EXPANSION`] × the text's size + [`MANIFEST_EXPANSION_SLACK`], so an alias
/// bomb stops before it costs memory), handing each to `each` with its number (from 1). Stops
/// at the first error; the documents before it were handed over. Shared by
/// `anchorage-trust`'s manifest sources and [`crate::read_ca_secret`].
pub fn read_yaml_documents(
    text: &str,
    mut each: impl FnMut(usize, Value),
) -> Result<(), YamlLimitError> {
    let budget = std::cell::Cell::new(
        text.len()
            .saturating_mul(MAX_MANIFEST_EXPANSION)
            .saturating_add(MANIFEST_EXPANSION_SLACK),
    );
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc_no = i + 1;
        if doc_no > MAX_MANIFEST_DOCUMENTS {
            return Err(YamlLimitError::TooManyDocuments);
        }
        match serde::de::DeserializeSeed::deserialize(bounded::Budget(&budget), document) {
            Ok(v) => each(doc_no, v),
            Err(_) if budget.get() == 0 => {
                return Err(YamlLimitError::Expansion { document: doc_no });
            }
            Err(e) => {
                return Err(YamlLimitError::Yaml {
                    line: e.location().map(|l| l.line()),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounded reader builds the same values as `Value`'s own `Deserialize`: tags, numbers,
    /// null, nested maps, and duplicate keys refused.
    #[test]
    fn the_bounded_reader_matches_serde_yaml_values() {
        let yaml =
            "a: 1\nb: -2\nc: 1.5\nd: ~\ne: true\nf: !Custom {x: [1, 'two']}\ng: &r {k: v}\nh: *r\n";
        let plain: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let budget = std::cell::Cell::new(1 << 20);
        let doc = serde_yaml_ng::Deserializer::from_str(yaml).next().unwrap();
        let bounded =
            serde::de::DeserializeSeed::deserialize(bounded::Budget(&budget), doc).unwrap();
        assert_eq!(bounded, plain);
        let dup = "a: 1\na: 2\n";
        let doc = serde_yaml_ng::Deserializer::from_str(dup).next().unwrap();
        let e = serde::de::DeserializeSeed::deserialize(bounded::Budget(&budget), doc).unwrap_err();
        assert!(
            e.to_string().contains("duplicate entry with key \"a\""),
            "{e}"
        );
    }
}
