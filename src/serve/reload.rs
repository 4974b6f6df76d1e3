//! Rotated secrets without a restart: the ingest listener's TLS certificate and key and its
//! `access_keys_file` are read again every `ingest.reload_interval` and swapped in when they
//! have changed.
//!
//! This module owns the ingest listener's current access keys ([`AccessKeys`], read by every
//! request) and the [`Reloader`] task that replaces them and the listener's certificate. What
//! is in use stays in use until its replacement has loaded: a file that cannot be read, a
//! certificate or key that does not load, or a key file that holds no key (which would accept
//! any request; see `IngestConfig::access_keys`) is logged and counted
//! (`IngestStats::reload_failures`), and tried again at the next check.
//!
//! Certificates managed by cert-manager, or keys mounted from a Kubernetes or Secrets Manager
//! secret, change on disk in place; Firehose must never see the expired ones.

use super::error::SecretsError;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};

use axum_server::tls_rustls::RustlsConfig;

use super::config::IngestConfig;
use super::pipeline::IngestStats;

/// The access keys the ingest listener accepts now (an empty list accepts any request).
#[derive(Debug, Default)]
pub struct AccessKeys(RwLock<Arc<[String]>>);

impl AccessKeys {
    pub fn new(keys: Vec<String>) -> Self {
        AccessKeys(RwLock::new(keys.into()))
    }

    /// The keys in use (a cheap copy of a shared list).
    pub fn get(&self) -> Arc<[String]> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, keys: Vec<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = keys.into();
    }
}

/// The listener's certificate: where it is read from, what was read last, and the live
/// configuration to reload.
pub(crate) struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    /// The files' contents when last read (loaded or not, so a bad pair is reported once).
    read: (Vec<u8>, Vec<u8>),
    pub config: RustlsConfig,
}

impl Certificate {
    /// Reads and loads the certificate chain and key at start: an error stops the start.
    pub(crate) async fn load(cert: PathBuf, key: PathBuf) -> Result<Certificate, SecretsError> {
        let failed = |source| SecretsError::Tls { cert: cert.clone(), key: key.clone(), source };
        let read = read_pair(&cert, &key).await.map_err(failed)?;
        let config =
            RustlsConfig::from_pem(read.0.clone(), read.1.clone()).await.map_err(failed)?;
        Ok(Certificate { cert, key, read, config })
    }
}

async fn read_pair(cert: &PathBuf, key: &PathBuf) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    Ok((tokio::fs::read(cert).await?, tokio::fs::read(key).await?))
}

/// Checks the files for changes and swaps in what changed (see the module documentation).
pub(crate) struct Reloader {
    pub ingest: IngestConfig,
    pub certificate: Option<Certificate>,
    pub keys: Arc<AccessKeys>,
    pub stats: Arc<IngestStats>,
}

impl Reloader {
    /// Runs [`Reloader::check`] every `ingest.reload_interval` (never when it is zero or there
    /// is nothing to read again) until the task is aborted.
    pub(crate) fn spawn(mut self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.ingest.reload_interval;
        let anything = self.certificate.is_some() || self.ingest.access_keys_file.is_some();
        if every.is_zero() || !anything {
            return None;
        }
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now, and the start has just read everything.
            tick.tick().await;
            loop {
                tick.tick().await;
                self.check().await;
            }
        }))
    }

    /// Reads the certificate, key and access-key file again and swaps in what changed.
    pub(crate) async fn check(&mut self) {
        if let Some(c) = &mut self.certificate {
            match read_pair(&c.cert, &c.key).await {
                Ok(read) if read != c.read => {
                    let loaded = c.config.reload_from_pem(read.0.clone(), read.1.clone()).await;
                    c.read = read;
                    match loaded {
                        Ok(()) => reloaded(&self.stats, "TLS certificate", c.cert.display()),
                        Err(e) => failed(&self.stats, "TLS certificate", c.cert.display(), e),
                    }
                }
                Ok(_) => {}
                Err(e) => failed(&self.stats, "TLS certificate", c.cert.display(), e),
            }
        }
        let Some(path) = &self.ingest.access_keys_file else { return };
        let ingest = self.ingest.clone();
        let read = tokio::task::spawn_blocking(move || ingest.access_keys())
            .await
            .unwrap_or_else(|e| Err(SecretsError::Task(e.to_string())));
        match read {
            Ok(keys) if *keys == *self.keys.get() => {}
            Ok(keys) => {
                let n = keys.len();
                self.keys.set(keys);
                reloaded(&self.stats, &format!("access keys ({n})"), path.display());
            }
            Err(e) => failed(&self.stats, "access keys", path.display(), e),
        }
    }
}

fn reloaded(stats: &IngestStats, what: &str, from: impl std::fmt::Display) {
    stats.reloads.fetch_add(1, Relaxed);
    tracing::info!(from = %from, "reloaded the ingest listener's {what}");
}

fn failed(
    stats: &IngestStats,
    what: &str,
    from: impl std::fmt::Display,
    e: impl std::fmt::Display,
) {
    stats.reload_failures.fetch_add(1, Relaxed);
    tracing::warn!(from = %from, error = %e, "could not reload the ingest listener's {what}; keeping the one in use");
}
