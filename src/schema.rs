//! This module holds JSON Schema markers for configuration fields whose serde form is not their
//! Rust type's. `vpcflowd config-reference` reads the configuration structs' schemas, doc comments
//! included.

use std::borrow::Cow;

/// A duration written as text (`humantime`: `90s`, `5m`, `1h 30m`).
pub(crate) struct HumanDuration;

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "duration"})
    }
}
