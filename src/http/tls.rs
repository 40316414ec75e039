//! TLS for both server modes: rustls with ALPN (`h2`, `http/1.1`), optional client
//! certificates, and certificates that are re-read when their files change (checked
//! every `reload_interval`) or on SIGHUP, without a restart. A handshake uses the
//! config current when it starts; a file that fails to load is logged and the
//! running certificate kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::server::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{path} holds no {what}")]
    Empty {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{0}")]
    Rustls(&'static str, String),
}

impl TlsError {
    /// The config key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Read { key, .. } | Self::Empty { key, .. } | Self::Rustls(key, _) => key,
        }
    }
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: rustls::pki_types::pem::Error| TlsError::Read {
        key,
        path: path.to_owned(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.to_owned(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

/// Builds a server config from the files: certificate chain, key, optional client CA.
pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let chain = certs("tls.cert", cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            key: "tls.key",
            path: key.to_owned(),
            what: "PEM private key",
        },
        e => TlsError::Read {
            key: "tls.key",
            path: key.to_owned(),
            message: e.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls("tls", e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs("tls.client_ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls("tls.client_ca", e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls("tls.client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, private).map_err(|e| {
        TlsError::Rustls(
            "tls.key",
            format!("{} does not go with {}: {e}", key.display(), cert.display()),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What the files looked like when last loaded: (modified, length) of each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The current TLS config, replaced when the files change.
pub struct ReloadingTls {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
    stamp: Mutex<Stamp>,
}

impl ReloadingTls {
    pub fn new(files: TlsConfig) -> Result<Arc<Self>, TlsError> {
        let stamp = stamp(&files);
        let config = load(&files.cert, &files.key, files.client_ca.as_deref())?;
        Ok(Arc::new(Self {
            files,
            current: ArcSwap::from_pointee(config),
            stamp: Mutex::new(stamp),
        }))
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Re-reads the files if they changed since the last load (or always, with
    /// `force`). Returns whether a new config was swapped in.
    pub fn reload(&self, force: bool) -> bool {
        let now = stamp(&self.files);
        let Ok(mut last) = self.stamp.lock() else {
            return false;
        };
        if !force && *last == now {
            return false;
        }
        // Remember this state either way: a half-written pair is retried when the
        // files change again, not logged every interval.
        *last = now;
        let f = &self.files;
        match load(&f.cert, &f.key, f.client_ca.as_deref()) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                tracing::info!(cert = %f.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the running certificate");
                false
            }
        }
    }

    /// Checks the files every `reload_interval` while `self` lives.
    pub fn spawn_watch(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.files.reload_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                // File reads and PEM parsing off the runtime's threads.
                let _ = tokio::task::spawn_blocking(move || this.reload(false)).await;
            }
        });
    }

    /// Re-reads the files on every SIGHUP while `self` lives.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            let weak: Weak<Self> = Arc::downgrade(self);
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let Some(this) = weak.upgrade() else { return };
                    let _ = tokio::task::spawn_blocking(move || this.reload(true)).await;
                }
            });
        }
    }
}

fn stamp(f: &TlsConfig) -> Stamp {
    [Some(&f.cert), Some(&f.key), f.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}
