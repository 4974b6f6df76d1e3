//! AWS's published address ranges (`ip-ranges.json`), matched by longest prefix, so that a
//! snapshot's sources and destinations inside AWS say which service and region they are
//! (`aws_service`, `aws_region`).
//!
//! The file is read once at start (`[enrich] ip_ranges`, `--ip-ranges`), never fetched: AWS
//! publishes it at `https://ip-ranges.amazonaws.com/ip-ranges.json`, and an operator downloads it
//! as their change process allows. A named service wins over `AMAZON`, which AWS lists for every
//! address it owns: an address takes the longest prefix among the named services, and the
//! longest `AMAZON` prefix only when no named service holds it.
//!
//! ```
//! use vpcflowd::window::aws_ranges::AwsRanges;
//!
//! let json = r#"{"prefixes": [
//!     {"ip_prefix": "52.216.0.0/15", "region": "us-east-1", "service": "AMAZON"},
//!     {"ip_prefix": "52.216.0.0/15", "region": "us-east-1", "service": "S3"},
//!     {"ip_prefix": "52.217.1.0/24", "region": "us-east-1", "service": "AMAZON"}],
//!   "ipv6_prefixes": []}"#;
//! let ranges = AwsRanges::from_json(json).unwrap();
//! let s3 = ranges.lookup("52.217.1.2".parse().unwrap()).unwrap();
//! assert_eq!((&*s3.service, &*s3.region), ("S3", "us-east-1"));
//! assert!(ranges.lookup("10.0.0.1".parse().unwrap()).is_none());
//! ```

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use serde::Deserialize;

use super::Snapshot;

/// The service and region of an AWS address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsService {
    pub service: Arc<str>,
    pub region: Arc<str>,
}

/// See the module documentation.
#[derive(Clone, Default)]
pub struct AwsRanges {
    /// Named services, and `AMAZON` apart (asked only when no named service matches).
    v4: [PrefixMap<Ipv4Net, AwsService>; 2],
    v6: [PrefixMap<Ipv6Net, AwsService>; 2],
    prefixes: usize,
}

impl std::fmt::Debug for AwsRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsRanges({} prefixes)", self.prefixes)
    }
}

/// Why `ip-ranges.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RangesError {
    #[error("{}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not AWS's ip-ranges.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a prefix: {0:?}")]
    Prefix(String),
}

#[derive(Deserialize)]
struct File {
    prefixes: Vec<Entry>,
    #[serde(default)]
    ipv6_prefixes: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(alias = "ipv6_prefix")]
    ip_prefix: String,
    region: String,
    service: String,
}

/// Inserts `entry` at `prefix` in the table of its kind (`[named, AMAZON]`), keeping the first
/// service listed for a prefix.
fn put<P: prefix_trie::Prefix>(maps: &mut [PrefixMap<P, AwsService>; 2], prefix: P, entry: &Entry) {
    let map = &mut maps[usize::from(entry.service == "AMAZON")];
    if map.get(&prefix).is_none() {
        let service = AwsService {
            service: entry.service.as_str().into(),
            region: entry.region.as_str().into(),
        };
        map.insert(prefix, service);
    }
}

impl AwsRanges {
    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<AwsRanges, RangesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RangesError::Read { path: path.to_path_buf(), source })?;
        AwsRanges::from_json(&text)
    }

    /// Parses the file's text.
    pub fn from_json(text: &str) -> Result<AwsRanges, RangesError> {
        let file: File = serde_json::from_str(text)?;
        let mut ranges = AwsRanges::default();
        for e in &file.prefixes {
            let net: Ipv4Net =
                e.ip_prefix.parse().map_err(|_| RangesError::Prefix(e.ip_prefix.clone()))?;
            put(&mut ranges.v4, net.trunc(), e);
        }
        for e in &file.ipv6_prefixes {
            let net: Ipv6Net =
                e.ip_prefix.parse().map_err(|_| RangesError::Prefix(e.ip_prefix.clone()))?;
            put(&mut ranges.v6, net.trunc(), e);
        }
        ranges.prefixes = ranges.v4.iter().map(PrefixMap::len).sum::<usize>()
            + ranges.v6.iter().map(PrefixMap::len).sum::<usize>();
        Ok(ranges)
    }

    /// The service of the longest prefix holding `address`.
    pub fn lookup(&self, address: IpAddr) -> Option<&AwsService> {
        match address {
            IpAddr::V4(a) => {
                let net = Ipv4Net::from(a);
                self.v4.iter().find_map(|m| m.get_lpm(&net)).map(|(_, s)| s)
            }
            IpAddr::V6(a) => {
                let net = Ipv6Net::from(a);
                self.v6.iter().find_map(|m| m.get_lpm(&net)).map(|(_, s)| s)
            }
        }
    }

    /// Distinct prefixes kept.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Names the AWS service and region of each listed source and destination of `s`.
    pub fn label(&self, s: &mut Snapshot) {
        for src in &mut s.sources {
            if let Some(found) = self.lookup(src.address) {
                src.aws_service = Some(found.service.clone());
                src.aws_region = Some(found.region.clone());
            }
        }
        for dst in &mut s.destinations {
            if let Some(found) = self.lookup(dst.address) {
                dst.aws_service = Some(found.service.clone());
                dst.aws_region = Some(found.region.clone());
            }
        }
    }
}
