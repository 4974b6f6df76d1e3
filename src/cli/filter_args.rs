//! The `[filters]` flags shared by `replay` and `serve`: comma-separated glob patterns (see
//! [`crate::record::filter`]). Unset flags leave the setting to the configuration file, the
//! environment or the default (no filter).

use clap::Args;
use serde_json::{Map, Value, json};

use crate::record::filter::FilterSettings;

#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Keep only records of these regions (globs, comma-separated), e.g. `us-*`.
    #[arg(long, value_delimiter = ',', value_name = "GLOBS", help_heading = "Filters")]
    pub include_regions: Vec<String>,

    /// Drop records of these regions (globs, comma-separated), e.g. `*east*,*west*`.
    #[arg(long, value_delimiter = ',', value_name = "GLOBS", help_heading = "Filters")]
    pub exclude_regions: Vec<String>,

    /// Keep only records of these accounts (globs, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "GLOBS", help_heading = "Filters")]
    pub include_accounts: Vec<String>,

    /// Drop records of these accounts (globs, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "GLOBS", help_heading = "Filters")]
    pub exclude_accounts: Vec<String>,

    /// Keep only these interfaces (globs on the interface id, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "GLOBS", help_heading = "Filters")]
    pub interfaces: Vec<String>,

    /// Drop records whose region is unknown (they are kept by default).
    #[arg(long, help_heading = "Filters")]
    pub drop_unknown_region: bool,
}

impl FilterArgs {
    /// The settings the flags give on their own (for `replay`).
    pub fn settings(&self) -> FilterSettings {
        FilterSettings {
            include_regions: self.include_regions.clone(),
            exclude_regions: self.exclude_regions.clone(),
            include_accounts: self.include_accounts.clone(),
            exclude_accounts: self.exclude_accounts.clone(),
            interfaces: self.interfaces.clone(),
            drop_unknown_region: self.drop_unknown_region,
        }
    }

    /// The flags that were given, keyed like [`FilterSettings`]'s fields (for `serve`).
    pub fn overrides(&self) -> Map<String, Value> {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| json!(v));
        let entries = [
            ("include_regions", list(&self.include_regions)),
            ("exclude_regions", list(&self.exclude_regions)),
            ("include_accounts", list(&self.include_accounts)),
            ("exclude_accounts", list(&self.exclude_accounts)),
            ("interfaces", list(&self.interfaces)),
            ("drop_unknown_region", self.drop_unknown_region.then_some(Value::Bool(true))),
        ];
        entries.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect()
    }
}
