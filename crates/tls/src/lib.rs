//! TLS for every connection Strongroom makes or accepts.
//!
//! One crypto provider, `ring` (already in the tree for the signer nodes):
//! every configuration here is built with [`provider`], and
//! [`ClientTls::http_client`] hands reqwest a finished rustls configuration,
//! so nothing falls back to another provider. Outbound connections trust
//! the system's roots or one CA bundle ([`Roots`]); [`check_url`] is the
//! plain-HTTP rule (`https://` anywhere, `http://` to loopback only unless
//! an endpoint is explicitly allowed). [`server_config`] is the API's own
//! certificate, with client certificates required when a client CA is set.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[cfg(feature = "test-support")]
pub mod testing;

pub use rustls;
pub use tokio_rustls;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or bundle file that cannot be read or parsed.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A configuration rustls refuses (a key that does not match, no
    /// usable root, …).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A URL that may not be used (plain HTTP off this machine, another
    /// scheme, no host).
    #[error("{0}")]
    Url(String),
}

fn file_error(path: &Path, message: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The one crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default provider (once; later calls do
/// nothing), so a library that builds its own rustls configuration uses it
/// too instead of failing for want of one.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whose certificates an outbound connection trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Roots {
    /// The system's trust store (`/etc/ssl/certs` on Debian).
    #[default]
    System,
    /// Only the CAs in this PEM bundle (a private PKI).
    Bundle(PathBuf),
}

/// A client certificate and its key, both PEM files (for a server that
/// asks for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// TLS for outbound connections: one rustls configuration, shared by every
/// client made from it.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    roots: Roots,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn root_store(certs: Vec<CertificateDer<'static>>) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Config(
            "no usable CA certificate in the bundle".into(),
        ));
    }
    Ok(store)
}

impl ClientTls {
    /// Trusting `roots`, with no client certificate.
    pub fn new(roots: &Roots) -> Result<Self, TlsError> {
        Self::with_identity(roots, None)
    }

    /// Trusting `roots`, presenting `identity` when a server asks.
    pub fn with_identity(roots: &Roots, identity: Option<&Identity>) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match roots {
            Roots::System => {
                let verifier = rustls_platform_verifier::Verifier::new(provider())
                    .map_err(|e| TlsError::Config(format!("the system's trust store: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
            Roots::Bundle(path) => builder.with_root_certificates(root_store(certificates(path)?)?),
        };
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(certificates(&id.cert_file)?, private_key(&id.key_file)?)
                .map_err(|e| TlsError::Config(format!("the client certificate: {e}")))?,
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
            roots: roots.clone(),
        })
    }

    /// The rustls configuration (for a connection made by hand).
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// A reqwest client builder that speaks TLS through this configuration
    /// (and no other provider).
    pub fn http_client(&self) -> reqwest::ClientBuilder {
        install_default_provider();
        reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&self.config))
    }
}

/// Whether `host` (a URL's host: a name, an IPv4 address, or an IPv6
/// address with or without brackets) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The plain-HTTP rule for an outbound URL: `https://` anywhere; `http://`
/// only to this machine (loopback), unless `allow_http` names this endpoint
/// as one an operator accepts in clear (a node on a private link).
pub fn check_url(url: &str, allow_http: bool) -> Result<(), TlsError> {
    let parsed = url::Url::parse(url).map_err(|e| TlsError::Url(format!("not a URL: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| TlsError::Url("a URL with a host".into()))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback_host(host) => Ok(()),
        "http" => Err(TlsError::Url(format!(
            "http:// to {host} would travel in clear: use https://"
        ))),
        other => Err(TlsError::Url(format!(
            "{other}:// is not supported: https:// (or http:// to loopback)"
        ))),
    }
}

/// The API's own TLS: its certificate chain and key, and, with
/// `client_ca`, mutual TLS (a client without a certificate from that CA
/// is refused in the handshake). TLS 1.2 and 1.3, HTTP/1.1.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(root_store(certificates(ca)?)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| TlsError::Config(format!("the client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates(cert_file)?, private_key(key_file)?)
        .map_err(|e| TlsError::Config(format!("the server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_this_machine_unless_allowed() {
        for ok in [
            "https://node.example:8545",
            "https://10.0.0.5/",
            "http://127.0.0.1:8545",
            "http://127.8.9.1/",
            "http://localhost:3000/api",
            "http://[::1]:8332",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://node.example:8545",
            "http://10.0.0.5:8545",
            "http://[fd00::1]/",
            "http://localhost.example/",
            "ftp://127.0.0.1/",
            "ws://127.0.0.1/",
            "not a url",
            "http://",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://10.0.0.5:8545", true).is_ok());
        assert!(check_url("ftp://10.0.0.5/", true).is_err());
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"").ok();
        let e = ClientTls::new(&Roots::Bundle(empty.clone())).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.to_string().contains("empty.pem")),
            "{e:?}"
        );
        let e = server_config(&dir.join("none.pem"), &empty, None).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.to_string().contains("none.pem")),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_system_store_loads() {
        assert!(ClientTls::new(&Roots::System).is_ok());
    }
}
