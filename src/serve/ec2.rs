//! EC2 enrichment (`[enrich.ec2]`): the task that keeps the engine's
//! [`Inventory`] filled from `DescribeNetworkInterfaces`, and its cache in the state directory.
//!
//! At start the cache file (`ec2-interfaces.json`) is read before the engine starts, so a
//! restart labels its first windows even while EC2 is unreachable. The task then describes
//! every configured region, again every `refresh`, and between refreshes looks up the
//! interfaces the router reported unknown, at most once per `lookup_interval`. Every call
//! passes one rate limiter. A failed call leaves the inventory as it was (snapshots keep the
//! records' own fields), is counted in the status section `enrich` and logged, and is retried
//! with a backoff that grows up to `refresh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::types::{Filter, NetworkInterface};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::settings::Ec2Settings;
use crate::window::inventory::{InterfaceInfo, Inventory};

/// The cache's file name in the state directory.
pub(crate) const CACHE_FILE: &str = "ec2-interfaces.json";
/// Interface ids per lookup call: EC2 takes at most 200 values per filter.
const IDS_PER_CALL: usize = 200;

/// What the `enrich` status section reads.
#[derive(Debug, Default)]
pub struct Ec2Stats {
    /// `DescribeNetworkInterfaces` calls answered (pages included).
    pub calls: AtomicU64,
    /// Calls that failed after the SDK's retries.
    pub failures: AtomicU64,
    /// Regions described in full.
    pub refreshes: AtomicU64,
    /// Lookups of interfaces the router reported unknown.
    pub lookups: AtomicU64,
    /// Interfaces looked up that no configured region knows.
    pub not_found: AtomicU64,
    /// Interfaces read from the cache at start.
    pub cached_interfaces: AtomicU64,
    /// Cache files that could not be read or written.
    pub cache_errors: AtomicU64,
    /// When a region was last described in full (Unix milliseconds; 0 before).
    pub last_refresh_ms: AtomicU64,
}

/// The enrichment's shared parts: the inventory the engine reads and the counters.
#[derive(Debug, Default)]
pub struct Ec2Status {
    pub inventory: Option<Arc<Inventory>>,
    pub stats: Ec2Stats,
}

/// The enrichment, prepared before the engine starts and started with the services.
pub(crate) struct Enrichment {
    pub(crate) status: Arc<Ec2Status>,
    inventory: Arc<Inventory>,
    clients: Vec<(String, aws_sdk_ec2::Client)>,
    settings: Ec2Settings,
    cache_dir: Option<PathBuf>,
}

/// The cache file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    written_at_ms: u64,
    interfaces: Vec<InterfaceInfo>,
}

impl Enrichment {
    /// Builds a client per region and reads the cache in `state_dir`. No region at all is an
    /// error.
    pub(crate) async fn prepare(
        settings: &Ec2Settings,
        state_dir: Option<&Path>,
    ) -> Result<Enrichment, String> {
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let mut regions = settings.regions.clone();
        if regions.is_empty() {
            match shared.region() {
                Some(r) => regions.push(r.to_string()),
                None => {
                    return Err("enrich.ec2: no regions, and the credential chain names none \
                                (set regions or AWS_REGION)"
                        .into());
                }
            }
        }
        let clients = regions
            .into_iter()
            .map(|region| {
                let mut conf = aws_sdk_ec2::config::Builder::from(&shared)
                    .region(aws_config::Region::new(region.clone()))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(5))
                            .operation_timeout(Duration::from_secs(60))
                            .build(),
                    );
                if let Some(url) = &settings.endpoint_url {
                    conf = conf.endpoint_url(url);
                }
                (region, aws_sdk_ec2::Client::from_conf(conf.build()))
            })
            .collect();
        let inventory = Arc::new(Inventory::new(settings.local_addresses));
        let status =
            Arc::new(Ec2Status { inventory: Some(inventory.clone()), ..Ec2Status::default() });
        let cache_dir = state_dir.map(Path::to_path_buf);
        if let Some(dir) = &cache_dir {
            read_cache(dir, &inventory, &status.stats);
        }
        Ok(Enrichment { status, inventory, clients, settings: settings.clone(), cache_dir })
    }

    /// The inventory the engine reads.
    pub(crate) fn inventory(&self) -> Arc<Inventory> {
        self.inventory.clone()
    }

    /// Starts the task that keeps the inventory filled; abort it to stop it.
    pub(crate) fn start(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut limiter = RateLimiter::new(self.settings.max_calls_per_second);
        let mut schedule = Schedule::new(&self.settings);
        let mut pending = BTreeSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let reported = self.inventory.take_unknown();
            pending.extend(reported.into_iter().filter(|id| !schedule.not_found.contains(id)));
            pending.retain(|id: &String| self.inventory.get(id).is_none());
            let now = Instant::now();
            if now >= schedule.refresh_at {
                let ok = self.refresh(&mut limiter).await;
                schedule.refreshed(ok, now);
                if ok {
                    // Whatever is still missing after a full description is not in EC2 yet.
                    let missing: Vec<String> = pending
                        .iter()
                        .filter(|id| self.inventory.get(id).is_none())
                        .cloned()
                        .collect();
                    self.status.stats.not_found.fetch_add(missing.len() as u64, Relaxed);
                    schedule.not_found.extend(missing);
                    pending.clear();
                }
                self.write_cache();
            } else if !pending.is_empty() && now >= schedule.lookup_at {
                let ids: Vec<String> = std::mem::take(&mut pending).into_iter().collect();
                if let Some(missing) = self.look_up(&ids, &mut limiter).await {
                    self.status.stats.not_found.fetch_add(missing.len() as u64, Relaxed);
                    schedule.not_found.extend(missing);
                } else {
                    pending.extend(ids);
                }
                schedule.lookup_at = now + self.settings.lookup_interval;
                self.write_cache();
            }
        }
    }

    /// Describes every region in full; whether every region answered.
    async fn refresh(&self, limiter: &mut RateLimiter) -> bool {
        let mut all_ok = true;
        for (region, client) in &self.clients {
            match self.describe(region, client, None, limiter).await {
                Ok(infos) => {
                    tracing::info!(region, interfaces = infos.len(), "EC2 interfaces described");
                    self.inventory.replace_region(region, infos);
                    self.status.stats.refreshes.fetch_add(1, Relaxed);
                    self.status.stats.last_refresh_ms.store(crate::clock::unix_millis(), Relaxed);
                }
                Err(e) => {
                    all_ok = false;
                    tracing::warn!(region, "describing EC2 interfaces failed: {e}");
                }
            }
        }
        all_ok
    }

    /// Looks `ids` up in every region; the ids no region knows, or `None` if a call failed.
    async fn look_up(&self, ids: &[String], limiter: &mut RateLimiter) -> Option<Vec<String>> {
        self.status.stats.lookups.fetch_add(1, Relaxed);
        let mut failed = false;
        for (region, client) in &self.clients {
            for chunk in ids.chunks(IDS_PER_CALL) {
                match self.describe(region, client, Some(chunk), limiter).await {
                    Ok(infos) => {
                        tracing::info!(region, found = infos.len(), "EC2 interfaces looked up");
                        self.inventory.merge(infos);
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(region, "looking up EC2 interfaces failed: {e}");
                    }
                }
            }
        }
        let missing = ids.iter().filter(|id| self.inventory.get(id).is_none()).cloned().collect();
        (!failed).then_some(missing)
    }

    /// Every page of `DescribeNetworkInterfaces` in `region`, of `ids` only when given.
    async fn describe(
        &self,
        region: &str,
        client: &aws_sdk_ec2::Client,
        ids: Option<&[String]>,
        limiter: &mut RateLimiter,
    ) -> Result<Vec<InterfaceInfo>, String> {
        let mut infos = Vec::new();
        let mut token = None;
        loop {
            limiter.wait().await;
            let mut call = client.describe_network_interfaces().set_next_token(token);
            call = match ids {
                Some(ids) => call.filters(
                    Filter::builder()
                        .name("network-interface-id")
                        .set_values(Some(ids.to_vec()))
                        .build(),
                ),
                None => call.max_results(1000),
            };
            let out = match call.send().await {
                Ok(out) => out,
                Err(e) => {
                    self.status.stats.failures.fetch_add(1, Relaxed);
                    return Err(crate::source::kinesis::client::describe(&e));
                }
            };
            self.status.stats.calls.fetch_add(1, Relaxed);
            infos.extend(out.network_interfaces().iter().filter_map(|n| info_of(n, region)));
            token = out.next_token;
            if token.as_deref().is_none_or(str::is_empty) {
                return Ok(infos);
            }
        }
    }

    /// Writes the inventory to the cache file, when there is a state directory.
    fn write_cache(&self) {
        let Some(dir) = &self.cache_dir else { return };
        let file = CacheFile {
            written_at_ms: crate::clock::unix_millis(),
            interfaces: self.inventory.all(),
        };
        let written = serde_json::to_vec(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| super::state_file::write_atomically(dir, CACHE_FILE, &bytes));
        if let Err(e) = written {
            self.status.stats.cache_errors.fetch_add(1, Relaxed);
            tracing::warn!("writing {}: {e}", dir.join(CACHE_FILE).display());
        }
    }
}

/// Reads the cache file into `inventory`; a missing file is no error, a bad one is counted.
fn read_cache(dir: &Path, inventory: &Inventory, stats: &Ec2Stats) {
    let path = dir.join(CACHE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            stats.cache_errors.fetch_add(1, Relaxed);
            tracing::warn!("reading {}: {e}", path.display());
            return;
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(file) => {
            stats.cached_interfaces.store(file.interfaces.len() as u64, Relaxed);
            tracing::info!(
                interfaces = file.interfaces.len(),
                "EC2 interfaces read from the cache"
            );
            inventory.merge(file.interfaces);
        }
        Err(e) => {
            stats.cache_errors.fetch_add(1, Relaxed);
            tracing::warn!("{} is not an EC2 cache, ignored: {e}", path.display());
        }
    }
}

/// When the task next describes everything or looks interfaces up, and what it found absent.
struct Schedule {
    refresh_at: Instant,
    lookup_at: Instant,
    refresh: Duration,
    lookup_interval: Duration,
    /// Failed full refreshes in a row, for the backoff.
    failures: u32,
    /// Interfaces EC2 did not know when last asked: not asked again before the next refresh.
    not_found: BTreeSet<String>,
}

impl Schedule {
    fn new(settings: &Ec2Settings) -> Schedule {
        let now = Instant::now();
        Schedule {
            refresh_at: now,
            lookup_at: now,
            refresh: settings.refresh,
            lookup_interval: settings.lookup_interval,
            failures: 0,
            not_found: BTreeSet::new(),
        }
    }

    /// Plans the next full refresh: after `refresh`, or after a failure sooner, backing off.
    fn refreshed(&mut self, ok: bool, now: Instant) {
        if ok {
            self.failures = 0;
            self.not_found.clear();
            self.refresh_at = now + self.refresh;
        } else {
            self.failures = self.failures.saturating_add(1);
            let backoff = self.lookup_interval.max(Duration::from_secs(1))
                * 2u32.saturating_pow(self.failures.min(16) - 1);
            self.refresh_at = now + backoff.min(self.refresh);
        }
    }
}

/// Spaces calls evenly: at most `per_second` of them in any second.
struct RateLimiter {
    gap: Duration,
    next: Instant,
}

impl RateLimiter {
    fn new(per_second: f64) -> RateLimiter {
        RateLimiter { gap: Duration::from_secs_f64(1.0 / per_second), next: Instant::now() }
    }

    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = Instant::now().max(self.next) + self.gap;
    }
}

/// What the inventory keeps of one described interface (`None` without an id).
fn info_of(n: &NetworkInterface, region: &str) -> Option<InterfaceInfo> {
    let instance_id = n.attachment().and_then(|a| a.instance_id()).map(str::to_string);
    let interface_type = n.interface_type().map(|t| type_name(t.as_str(), instance_id.is_some()));
    let name = n.tag_set().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value());
    Some(InterfaceInfo {
        interface_id: n.network_interface_id()?.to_string(),
        region: region.to_string(),
        instance_id,
        vpc_id: n.vpc_id().map(str::to_string),
        subnet_id: n.subnet_id().map(str::to_string),
        az_id: n.availability_zone_id().map(str::to_string),
        name: name.map(str::to_string),
        interface_type,
        description: n.description().filter(|d| !d.is_empty()).map(str::to_string),
        local_addresses: addresses_of(n),
    })
}

/// The interface's own addresses and delegated prefixes, sorted and distinct.
fn addresses_of(n: &NetworkInterface) -> Vec<String> {
    let mut all = BTreeSet::new();
    all.extend(n.private_ip_address().map(str::to_string));
    for p in n.private_ip_addresses() {
        all.extend(p.private_ip_address().map(str::to_string));
        all.extend(p.association().and_then(|a| a.public_ip()).map(str::to_string));
    }
    all.extend(n.association().and_then(|a| a.public_ip()).map(str::to_string));
    all.extend(n.ipv6_addresses().iter().filter_map(|a| a.ipv6_address()).map(str::to_string));
    all.extend(n.ipv4_prefixes().iter().filter_map(|p| p.ipv4_prefix()).map(str::to_string));
    all.extend(n.ipv6_prefixes().iter().filter_map(|p| p.ipv6_prefix()).map(str::to_string));
    all.into_iter().collect()
}

/// EC2's interface type in snake case (`natGateway` → `nat_gateway`, `efa-only` → `efa_only`),
/// and `instance` for a plain interface attached to an instance.
fn type_name(ec2: &str, attached: bool) -> String {
    if ec2 == "interface" && attached {
        return "instance".into();
    }
    let mut out = String::with_capacity(ec2.len() + 4);
    for c in ec2.chars() {
        match c {
            '-' => out.push('_'),
            c if c.is_ascii_uppercase() => {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_types_are_snake_case_and_an_attached_interface_is_an_instance() {
        assert_eq!(type_name("natGateway", false), "nat_gateway");
        assert_eq!(type_name("efa-only", false), "efa_only");
        assert_eq!(type_name("vpc_endpoint", false), "vpc_endpoint");
        assert_eq!(type_name("interface", true), "instance");
        assert_eq!(type_name("interface", false), "interface");
        assert_eq!(type_name("lambda", false), "lambda");
    }

    #[test]
    fn failed_refreshes_back_off_up_to_the_refresh_interval() {
        let settings =
            Ec2Settings { lookup_interval: Duration::from_secs(10), ..Default::default() };
        let mut s = Schedule::new(&settings);
        let now = Instant::now();
        let waits: Vec<u64> = (0..7)
            .map(|_| {
                s.refreshed(false, now);
                (s.refresh_at - now).as_secs()
            })
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        s.not_found.insert("eni-x".into());
        s.refreshed(true, now);
        assert_eq!(((s.refresh_at - now).as_secs(), s.failures, s.not_found.len()), (300, 0, 0));
    }

    #[test]
    fn a_cache_file_round_trips_and_a_bad_one_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let info = InterfaceInfo {
            interface_id: "eni-1".into(),
            region: "us-east-1".into(),
            name: Some("web".into()),
            local_addresses: vec!["10.0.0.5".into()],
            ..InterfaceInfo::default()
        };
        let file = CacheFile { written_at_ms: 1, interfaces: vec![info.clone()] };
        let bytes = serde_json::to_vec(&file).unwrap();
        super::super::state_file::write_atomically(dir.path(), CACHE_FILE, &bytes).unwrap();
        let (inventory, stats) = (Inventory::new(true), Ec2Stats::default());
        read_cache(dir.path(), &inventory, &stats);
        assert_eq!(inventory.all(), [info]);
        assert_eq!(stats.cached_interfaces.load(Relaxed), 1);
        std::fs::write(dir.path().join(CACHE_FILE), b"{not json").unwrap();
        let (inventory, stats) = (Inventory::new(true), Ec2Stats::default());
        read_cache(dir.path(), &inventory, &stats);
        assert!(inventory.is_empty());
        assert_eq!(stats.cache_errors.load(Relaxed), 1);
    }
}
