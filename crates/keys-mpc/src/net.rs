//! Node identities and the links between servers and signers: TLS 1.3
//! with both sides presenting self-signed certificates pinned by their
//! SHA-256 fingerprints (exchanged at enrolment; no certificate authority),
//! carrying length-prefixed JSON frames.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// The largest frame either side reads: a signing request carries a
/// transaction and its approvals; a step of CGGMP's auxiliary-information
/// protocol carries the other parties' proofs about their Paillier moduli
/// (megabytes as JSON). Both ends are pinned identities.
pub const MAX_FRAME: usize = 32 << 20;

/// The name every node's certificate carries; identity is the pin, not
/// the name.
const NODE_NAME: &str = "strongroom-node";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("identity: {0}")]
    Identity(String),
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("the peer presented no certificate or one that is not pinned")]
    NotPinned,
    #[error("another signer protocol: {0}")]
    Incompatible(String),
}

/// A SHA-256 fingerprint of a node's certificate (DER).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(cert: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(cert).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        hex::decode(s.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(Fingerprint)
            .ok_or_else(|| NetError::Identity(format!("{s:?} is not a 64-hex-digit fingerprint")))
    }
}

/// A node's TLS identity: a self-signed certificate and its key.
pub struct TlsIdentity {
    cert: CertificateDer<'static>,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A fresh ECDSA P-256 identity.
    pub fn generate() -> Result<TlsIdentity, NetError> {
        let key = rcgen::KeyPair::generate().map_err(|e| NetError::Identity(e.to_string()))?;
        let cert = rcgen::CertificateParams::new(vec![NODE_NAME.to_owned()])
            .and_then(|p| p.self_signed(&key))
            .map_err(|e| NetError::Identity(e.to_string()))?;
        Ok(TlsIdentity {
            cert: cert.der().clone(),
            key: Zeroizing::new(key.serialize_der()),
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// Writes `cert.der` and `key.der` (mode 0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), NetError> {
        std::fs::write(dir.join("tls-cert.der"), &self.cert)?;
        write_private(&dir.join("tls-key.der"), &self.key)?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<TlsIdentity, NetError> {
        let cert = CertificateDer::from(std::fs::read(dir.join("tls-cert.der"))?);
        let key = Zeroizing::new(std::fs::read(dir.join("tls-key.der"))?);
        Ok(TlsIdentity { cert, key })
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()))
    }
}

/// Writes a secret file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly the pinned certificates (and TLS 1.3 signatures made
/// with their keys).
#[derive(Debug)]
struct Pinned {
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.pins.contains(&Fingerprint::of(cert)) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The accepting side (a signer): only the pinned clients get through.
pub fn acceptor(
    me: &TlsIdentity,
    clients: Vec<Fingerprint>,
) -> Result<tokio_rustls::TlsAcceptor, NetError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        pins: clients,
        provider: provider.clone(),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![me.cert.clone()], me.key_der())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The connecting side (a server): only the pinned signer answers.
pub fn connector(
    me: &TlsIdentity,
    server: Fingerprint,
) -> Result<tokio_rustls::TlsConnector, NetError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        pins: vec![server],
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![me.cert.clone()], me.key_der())?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name a client connects to (identity is the pin).
pub fn server_name() -> Result<ServerName<'static>, NetError> {
    ServerName::try_from(NODE_NAME).map_err(|e| NetError::Identity(e.to_string()))
}

/// The pinned identity a TLS peer presented.
pub fn peer_fingerprint(conn: &rustls::CommonState) -> Result<Fingerprint, NetError> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Fingerprint::of(c))
        .ok_or(NetError::NotPinned)
}

/// Writes one frame: a 4-byte big-endian length, then JSON.
pub async fn write_frame<W: AsyncWrite + Unpin, T: serde::Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), NetError> {
    let bytes = serde_json::to_vec(value).map_err(|e| NetError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(NetError::TooLarge(bytes.len()));
    }
    let len = u32::try_from(bytes.len()).map_err(|_| NetError::TooLarge(bytes.len()))?;
    // One write: a length written apart would wait on Nagle's algorithm
    // for the peer's delayed acknowledgement (40 ms).
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&bytes);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
) -> Result<Option<T>, NetError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(NetError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| NetError::Malformed(e.to_string()))
}
