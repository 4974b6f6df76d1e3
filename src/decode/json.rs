//! The JSON form of a parsed line, as `vpcflowd parse` prints it.
//!
//! Only the layout's fields appear, in layout order, under their AWS hyphenated names. Integer
//! fields are written as JSON integers and every other field as a string spelled exactly as in the
//! record (an address is not re-formatted); a `-` is written as `null`.

use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};

use super::line::ParsedLine;
use super::token::{Tokens, parse_decimal};

/// Serializes a [`ParsedLine`] as a JSON object.
///
/// ```
/// use vpcflowd::decode::{parse_line, LayoutSet, RecordJson};
/// let layouts = LayoutSet::from_formats(&["${srcaddr} ${srcport} ${action}"]).unwrap();
/// let parsed = parse_line(&layouts, b"2001:db8::0005 443 -").unwrap();
/// let json = serde_json::to_string(&RecordJson(&parsed)).unwrap();
/// assert_eq!(json, r#"{"srcaddr":"2001:db8::0005","srcport":443,"action":null}"#);
/// ```
pub struct RecordJson<'p, 'a, 'l>(pub &'p ParsedLine<'a, 'l>);

impl Serialize for RecordJson<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.0.layout.fields();
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (&field, token) in fields.iter().zip(Tokens::new(self.0.text)) {
            if token == "-" {
                map.serialize_entry(field.name(), &())?;
            } else if field.is_integer() {
                // The line parsed, so an integer field's token is a valid decimal.
                let value = parse_decimal(token).map_err(|e| S::Error::custom(format!("{e:?}")))?;
                map.serialize_entry(field.name(), &value)?;
            } else {
                map.serialize_entry(field.name(), token)?;
            }
        }
        map.end()
    }
}
