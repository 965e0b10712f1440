//! Certificates for tests, made by `rcgen`: one CA, a server certificate
//! for `localhost`, `127.0.0.1` and `::1`, and a client certificate, all
//! written as PEM files into a directory the test owns.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

use crate::TlsError;

/// The files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn failed(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(format!("making test certificates: {e}"))
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf, TlsError> {
    let path = dir.join(name);
    std::fs::write(&path, pem).map_err(|e| crate::file_error(&path, e))?;
    Ok(path)
}

/// A CA named `name` and certificates it signed, written into `dir`
/// (file names start with `prefix`, so one directory can hold several).
pub fn make_pki(dir: &Path, prefix: &str) -> Result<TestPki, TlsError> {
    let ca_key = KeyPair::generate().map_err(failed)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{prefix} test CA"));
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate().map_err(failed)?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).map_err(failed)?;
    for ip in ["127.0.0.1", "::1"] {
        server
            .subject_alt_names
            .push(SanType::IpAddress(ip.parse().map_err(failed)?));
    }
    let server_cert = server.signed_by(&server_key, &issuer).map_err(failed)?;

    let client_key = KeyPair::generate().map_err(failed)?;
    let mut client = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    client
        .distinguished_name
        .push(DnType::CommonName, format!("{prefix} test client"));
    let client_cert = client.signed_by(&client_key, &issuer).map_err(failed)?;

    Ok(TestPki {
        ca_cert: write(dir, &format!("{prefix}-ca.pem"), &ca_cert.pem())?,
        server_cert: write(dir, &format!("{prefix}-server.pem"), &server_cert.pem())?,
        server_key: write(
            dir,
            &format!("{prefix}-server-key.pem"),
            &server_key.serialize_pem(),
        )?,
        client_cert: write(dir, &format!("{prefix}-client.pem"), &client_cert.pem())?,
        client_key: write(
            dir,
            &format!("{prefix}-client-key.pem"),
            &client_key.serialize_pem(),
        )?,
    })
}

/// A TLS front on loopback: terminates TLS with a test PKI's server
/// certificate and forwards the plain bytes to `target` (`host:port`) — a
/// node, an Esplora server or a webhook receiver made reachable over
/// `https://` only.
#[derive(Debug)]
pub struct TlsFront {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// Starts a front for `target` with `pki`'s server certificate.
    pub async fn start(target: &str, pki: &TestPki) -> Result<TlsFront, TlsError> {
        let config = crate::server_config(&pki.server_cert, &pki.server_key, None)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(failed)?;
        let port = listener.local_addr().map_err(failed)?.port();
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, target) = (acceptor.clone(), target.clone());
                conns.spawn(async move {
                    let Ok(mut inbound) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(TlsFront { port, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://localhost:PORT` (the name the test certificate carries).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
