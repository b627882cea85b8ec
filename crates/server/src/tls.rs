//! gatehouse's own TLS (issue 9): rustls termination with optional client certificates, so
//! tokens can be bound to the certificate of the connection they were issued on (RFC 8705
//! §3, R61).
//!
//! * The server certificate and key come from PEM files (`[tls] cert`, `key`).
//! * With `request_client_cert`, the handshake asks for a client certificate; one that is sent
//!   must chain to `client_ca` (validated by rustls' WebPKI verifier: signature, validity
//!   period, key usage) or the handshake fails. A client may still connect without one, and
//!   then gets unbound tokens.
//! * The verified certificate (DER, the leaf) is attached to every request of the connection
//!   as [`PeerCertificate`]; nothing a client sends in a header can set it.
//! * Handshakes time out after [`HANDSHAKE_TIMEOUT`], so a slow client cannot hold a task.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::pop::PeerCertificate;

/// Longest TLS handshake accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[tls]`: terminate TLS in gatehouse. Empty `cert`: plain HTTP (behind a TLS proxy).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM file with the server's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// PEM file with the CA certificates client certificates must chain to.
    pub client_ca: PathBuf,
    /// Ask clients for a certificate (optional for the client): tokens issued on a
    /// connection with one are bound to it (`cnf["x5t#S256"]`).
    pub request_client_cert: bool,
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }

    /// Checks that the settings fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled() && self.key.as_os_str().is_empty() {
            return Err("tls.key is required with tls.cert".into());
        }
        if !self.enabled() && (!self.key.as_os_str().is_empty() || self.request_client_cert) {
            return Err("tls.key and tls.request_client_cert need tls.cert".into());
        }
        if self.request_client_cert && self.client_ca.as_os_str().is_empty() {
            return Err("tls.request_client_cert needs tls.client_ca".into());
        }
        Ok(())
    }
}

/// The acceptor for `cfg`, or `None` when TLS is off.
pub fn acceptor(cfg: &TlsConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    if !cfg.enabled() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .with_context(|| format!("tls.cert {}", cfg.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert {}", cfg.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).with_context(|| format!("tls.key {}", cfg.key.display()))?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = if cfg.request_client_cert {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&cfg.client_ca)
            .with_context(|| format!("tls.client_ca {}", cfg.client_ca.display()))?
        {
            roots.add(ca.context("tls.client_ca")?).context("tls.client_ca")?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .context("tls.client_ca")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut server = builder.with_single_cert(certs, key).context("tls.cert / tls.key")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Completes the handshake of an accepted connection and serves it with `router`, attaching
/// the peer address and the verified client certificate (if any) to every request.
pub fn spawn_connection(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    builder: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
) {
    tokio::spawn(async move {
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "tls handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "tls handshake timed out");
                return;
            }
        };
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| PeerCertificate(Arc::new(c.as_ref().to_vec())));
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            if let Some(c) = &cert {
                req.extensions_mut().insert(c.clone());
            }
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder.serve_connection(TokioIo::new(tls), svc);
        let _ = watcher.watch(conn).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_must_fit_together() {
        let p = |s: &str| PathBuf::from(s);
        assert!(TlsConfig::default().validate().is_ok());
        let ok = TlsConfig { cert: p("c.pem"), key: p("k.pem"), client_ca: p("ca.pem"), request_client_cert: true };
        assert!(ok.validate().is_ok());
        for bad in [
            TlsConfig { key: PathBuf::new(), ..ok.clone() },
            TlsConfig { client_ca: PathBuf::new(), ..ok.clone() },
            TlsConfig { cert: PathBuf::new(), ..ok.clone() },
            TlsConfig {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                client_ca: PathBuf::new(),
                request_client_cert: true,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_files_fail_at_start() {
        let cfg =
            TlsConfig { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into(), ..TlsConfig::default() };
        assert!(acceptor(&cfg).is_err());
        assert!(acceptor(&TlsConfig::default()).unwrap_or(None).is_none());
    }
}
