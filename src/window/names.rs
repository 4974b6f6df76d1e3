//! The fixed names snapshots carry as `&'static str` (a window's direction basis, a finding's
//! kind, an asymmetric flow's actions and cause), read back from their text. A snapshot is
//! built with these names and serialized as text; reading one (a stored snapshot) maps each
//! text to its name, and a text that is none of them is an error, not a new name.

use serde::{Deserialize, Deserializer, de::Error};

/// A fixed name. It is spelled as an alias because serde borrows a field typed `&str` from
/// its input, and these are read from text that does not outlive the snapshot.
pub type Name = &'static str;

/// `direction_basis`: a basis's name, or `mixed`.
const BASES: &[&str] = &["flow-direction", "configured", "inferred", "off", "mixed"];
/// An asymmetric flow's action in one direction.
const ACTIONS: &[&str] = &["ACCEPT", "REJECT", "ACCEPT+REJECT", "-"];
/// An asymmetric flow's likely cause.
const CAUSES: &[&str] = &["nacl", "sg_or_nacl"];

/// The one of `names` that `d` holds.
fn one_of<'de, D: Deserializer<'de>>(
    d: D,
    names: &'static [&'static str],
) -> Result<&'static str, D::Error> {
    let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
    names
        .iter()
        .copied()
        .find(|n| *n == text)
        .ok_or_else(|| D::Error::unknown_variant(&text, names))
}

pub(super) fn basis<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, BASES)
}

pub(super) fn action<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, ACTIONS)
}

pub(super) fn cause<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, CAUSES)
}

pub(super) fn finding_kind<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &super::findings::KINDS)
}
