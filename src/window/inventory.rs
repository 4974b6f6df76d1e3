//! What EC2 says about each network interface (`[enrich.ec2]`): its instance, VPC, subnet,
//! availability zone, `Name` tag, type, description and addresses.
//!
//! The inventory is plain data shared by three owners. `serve::ec2` writes it from
//! `DescribeNetworkInterfaces` (and its cache file); the router reads an interface's addresses
//! as its configured local addresses and reports the interfaces the inventory lacks; the closer
//! fills a snapshot's labels from it where the records carry none. Nothing here does I/O.
//!
//! ```
//! use vpcflowd::window::inventory::{InterfaceInfo, Inventory};
//!
//! let inventory = Inventory::new(true);
//! assert!(inventory.addresses("eni-1").is_none());
//! // The router reported the interface it could not find; the EC2 task looks it up.
//! assert_eq!(inventory.take_unknown(), vec!["eni-1".to_string()]);
//! let info = InterfaceInfo {
//!     interface_id: "eni-1".into(),
//!     region: "us-east-1".into(),
//!     vpc_id: Some("vpc-1".into()),
//!     local_addresses: vec!["10.0.0.5".into()],
//!     ..InterfaceInfo::default()
//! };
//! inventory.merge(vec![info]);
//! assert_eq!(inventory.addresses("eni-1").unwrap().len(), 1);
//! assert_eq!(inventory.get("eni-1").unwrap().vpc_id.as_deref(), Some("vpc-1"));
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::direction::Cidr;
use super::snapshot::Snapshot;

/// One network interface as EC2 describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceInfo {
    pub interface_id: String,
    /// The region it was described in.
    pub region: String,
    pub instance_id: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    /// The availability zone's id (`use1-az1`), as the `az-id` field names it.
    pub az_id: Option<String>,
    /// Its `Name` tag.
    pub name: Option<String>,
    /// EC2's interface type in snake case (`nat_gateway`, `lambda`, `vpc_endpoint`, …), with
    /// `instance` for a plain interface attached to an instance.
    pub interface_type: Option<String>,
    pub description: Option<String>,
    /// Its private IPv4 and IPv6 addresses, delegated prefixes and public address.
    pub local_addresses: Vec<String>,
}

/// An interface's entry: what EC2 said and its addresses parsed once.
#[derive(Debug)]
struct Entry {
    info: Arc<InterfaceInfo>,
    cidrs: Option<Arc<[Cidr]>>,
    /// Its labels in [`Inventory::fill`]'s order, built once: a read of every open window
    /// labels each of them, and cloning an `Arc` costs no allocation.
    labels: [Option<Arc<str>>; 7],
}

/// The interfaces EC2 described, by id.
#[derive(Debug, Default)]
pub struct Inventory {
    entries: RwLock<HashMap<String, Entry>>,
    /// Grows on every change, so the router re-reads the addresses it looked up.
    version: AtomicU64,
    /// Interfaces the router found missing and the EC2 task has not taken yet.
    unknown: Mutex<HashSet<String>>,
    /// Interfaces reported missing, ever.
    reported_unknown: AtomicU64,
    /// Whether interfaces' addresses are their configured local addresses.
    use_addresses: bool,
}

impl Inventory {
    /// An empty inventory; with `use_addresses`, [`Inventory::addresses`] answers the router.
    pub fn new(use_addresses: bool) -> Inventory {
        Inventory { use_addresses, ..Inventory::default() }
    }

    /// Adds or replaces the interfaces of `infos`.
    pub fn merge(&self, infos: Vec<InterfaceInfo>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for info in infos {
            entries.insert(info.interface_id.clone(), entry(info));
        }
        // Within the lock: whoever sees the new entries also sees the new version.
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Replaces every interface of `region` by `infos` (a full refresh of that region).
    pub fn replace_region(&self, region: &str, infos: Vec<InterfaceInfo>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| e.info.region != region);
        for info in infos {
            entries.insert(info.interface_id.clone(), entry(info));
        }
        // Within the lock: whoever sees the new entries also sees the new version.
        self.version.fetch_add(1, Ordering::Release);
    }

    /// What EC2 said about `interface`.
    pub fn get(&self, interface: &str) -> Option<Arc<InterfaceInfo>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(interface).map(|e| e.info.clone())
    }

    /// Every interface, sorted by id (for the cache file).
    pub fn all(&self) -> Vec<InterfaceInfo> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<InterfaceInfo> = entries.values().map(|e| (*e.info).clone()).collect();
        all.sort_by(|a, b| a.interface_id.cmp(&b.interface_id));
        all
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The interface's addresses as configured local addresses, when EC2 knows it and the
    /// inventory is asked for them. An interface EC2 does not know is reported unknown.
    pub fn addresses(&self, interface: &str) -> Option<Arc<[Cidr]>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        match entries.get(interface) {
            Some(e) if self.use_addresses => e.cidrs.clone(),
            Some(_) => None,
            None => {
                drop(entries);
                self.report_unknown(interface);
                None
            }
        }
    }

    /// Asks the EC2 task to look `interface` up.
    pub fn report_unknown(&self, interface: &str) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        if unknown.insert(interface.to_string()) {
            self.reported_unknown.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The interfaces reported unknown since the last call, sorted.
    pub fn take_unknown(&self) -> Vec<String> {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken: Vec<String> = unknown.drain().collect();
        taken.sort();
        taken
    }

    /// Interfaces reported unknown so far; one reported again after the task took it counts
    /// again.
    pub fn reported_unknown(&self) -> u64 {
        self.reported_unknown.load(Ordering::Relaxed)
    }

    /// The number of changes so far.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Fills the snapshot's labels from its interface's entry: `vpc_id`, `subnet_id`,
    /// `instance_id` and `az_id` where the records carried none (they describe the interface
    /// as it was), and `name`, `interface_type` and `description`.
    pub fn label(&self, snapshot: &mut Snapshot) {
        let s = snapshot;
        let slots = [&mut s.vpc_id, &mut s.subnet_id, &mut s.instance_id, &mut s.az_id];
        self.fill(&s.interface_id, slots, [&mut s.name, &mut s.interface_type, &mut s.description]);
    }

    /// Fills the empty ones of `interface`'s label fields from its entry: `records` are
    /// `vpc_id`, `subnet_id`, `instance_id` and `az_id` (which the records may carry), `described`
    /// are `name`, `interface_type` and `description`. A snapshot and a provisional window
    /// take their labels through this one rule.
    pub fn fill(
        &self,
        interface: &str,
        records: [LabelSlot<'_>; 4],
        described: [LabelSlot<'_>; 3],
    ) {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = entries.get(interface) else { return };
        for (slot, value) in records.into_iter().chain(described).zip(&entry.labels) {
            if slot.is_none() {
                slot.clone_from(value);
            }
        }
    }
}

/// One label field of a snapshot or a provisional window, for [`Inventory::fill`].
pub type LabelSlot<'a> = &'a mut Option<Arc<str>>;

fn entry(info: InterfaceInfo) -> Entry {
    // EC2's addresses are well formed; one that is not is left out, not fatal.
    let cidrs: Vec<Cidr> = info.local_addresses.iter().filter_map(|a| a.parse().ok()).collect();
    let cidrs = (!cidrs.is_empty()).then(|| Arc::from(cidrs));
    let i = &info;
    let fields = [
        &i.vpc_id,
        &i.subnet_id,
        &i.instance_id,
        &i.az_id,
        &i.name,
        &i.interface_type,
        &i.description,
    ];
    let labels = fields.map(|f| f.as_deref().map(Arc::from));
    Entry { info: Arc::new(info), cidrs, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, region: &str, addresses: &[&str]) -> InterfaceInfo {
        InterfaceInfo {
            interface_id: id.into(),
            region: region.into(),
            local_addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..InterfaceInfo::default()
        }
    }

    #[test]
    fn a_refresh_of_one_region_keeps_the_others() {
        let inv = Inventory::new(true);
        inv.merge(vec![info("eni-a", "us-east-1", &["10.0.0.1"]), info("eni-b", "eu-west-1", &[])]);
        let before = inv.version();
        inv.replace_region("us-east-1", vec![info("eni-c", "us-east-1", &["10.0.0.3"])]);
        assert!(inv.version() > before);
        let ids: Vec<String> = inv.all().into_iter().map(|i| i.interface_id).collect();
        assert_eq!(ids, ["eni-b", "eni-c"]);
    }

    #[test]
    fn addresses_answer_only_when_asked_for_and_unknown_ones_are_reported_once() {
        let inv = Inventory::new(false);
        inv.merge(vec![info("eni-a", "us-east-1", &["10.0.0.1", "2600:1f18::/80", "bad"])]);
        assert!(inv.addresses("eni-a").is_none());
        let inv = Inventory::new(true);
        inv.merge(vec![info("eni-a", "us-east-1", &["10.0.0.1", "2600:1f18::/80", "bad"])]);
        let cidrs = inv.addresses("eni-a").unwrap();
        assert_eq!(cidrs.len(), 2);
        assert!(cidrs.iter().any(|c| c.contains(&"2600:1f18::7".parse().unwrap())));
        assert!(inv.addresses("eni-z").is_none());
        assert!(inv.addresses("eni-z").is_none());
        assert_eq!(inv.take_unknown(), ["eni-z"]);
        assert_eq!(inv.reported_unknown(), 1);
        assert!(inv.take_unknown().is_empty());
    }

    #[test]
    fn fill_keeps_what_the_records_carry_and_adds_what_ec2_describes() {
        let inv = Inventory::new(false);
        let described = InterfaceInfo {
            vpc_id: Some("vpc-ec2".into()),
            subnet_id: Some("subnet-ec2".into()),
            name: Some("web-1".into()),
            description: Some("web frontend".into()),
            ..info("eni-a", "us-east-1", &[])
        };
        inv.merge(vec![described]);
        let mut labels: [Option<Arc<str>>; 7] = Default::default();
        labels[0] = Some("vpc-record".into());
        let fill = |inv: &Inventory, id: &str, l: &mut [Option<Arc<str>>; 7]| {
            let [vpc, subnet, instance, az, name, kind, description] = l;
            inv.fill(id, [vpc, subnet, instance, az], [name, kind, description]);
        };
        fill(&inv, "eni-a", &mut labels);
        let text: Vec<Option<&str>> = labels.iter().map(|l| l.as_deref()).collect();
        let expected = [Some("vpc-record"), Some("subnet-ec2"), None, None, Some("web-1")];
        assert_eq!(text, [&expected[..], &[None, Some("web frontend")]].concat());
        let mut unknown: [Option<Arc<str>>; 7] = Default::default();
        fill(&inv, "eni-z", &mut unknown);
        assert!(unknown.iter().all(Option::is_none), "an unknown interface gets no labels");
    }
}
