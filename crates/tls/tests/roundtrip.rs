//! A real TLS server on loopback (the configuration `server_config`
//! makes) and real clients (`ClientTls`): trusted, untrusted, and mutual.

#![allow(clippy::unwrap_used)]
use std::sync::Arc;

use tls::testing::{TestPki, make_pki};
use tls::{ClientTls, Identity, Roots};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves one fixed HTTP answer over TLS until the test ends.
async fn serve(config: Arc<tls::rustls::ServerConfig>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls::tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn pki(name: &str) -> (tempfile::TempDir, TestPki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), name).unwrap();
    (dir, pki)
}

async fn get(client: &ClientTls, url: &str) -> Result<String, String> {
    let http = client.http_client().build().map_err(|e| e.to_string())?;
    let r = http.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    r.text().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_client_trusts_only_its_roots() {
    let (_d, p) = pki("server");
    let addr = serve(tls::server_config(&p.server_cert, &p.server_key, None).unwrap()).await;
    let url = format!("https://localhost:{}/", addr.port());
    let trusting = ClientTls::new(&Roots::Bundle(p.ca_cert.clone())).unwrap();
    assert_eq!(get(&trusting, &url).await.unwrap(), "ok");
    // By IP address too (the certificate names 127.0.0.1).
    let by_ip = format!("https://127.0.0.1:{}/", addr.port());
    assert_eq!(get(&trusting, &by_ip).await.unwrap(), "ok");
    // The system's roots do not know a private CA; another CA is not it.
    let system = ClientTls::new(&Roots::System).unwrap();
    assert!(get(&system, &url).await.is_err());
    let (_d2, other) = pki("other");
    let wrong = ClientTls::new(&Roots::Bundle(other.ca_cert)).unwrap();
    let e = get(&wrong, &url).await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_from_its_ca() {
    let (_d, p) = pki("mutual");
    let config = tls::server_config(&p.server_cert, &p.server_key, Some(&p.ca_cert)).unwrap();
    let addr = serve(config).await;
    let url = format!("https://localhost:{}/", addr.port());
    let roots = Roots::Bundle(p.ca_cert.clone());
    let anonymous = ClientTls::new(&roots).unwrap();
    assert!(get(&anonymous, &url).await.is_err());
    let (_d2, stranger) = pki("stranger");
    let foreign = ClientTls::with_identity(
        &roots,
        Some(&Identity {
            cert_file: stranger.client_cert,
            key_file: stranger.client_key,
        }),
    )
    .unwrap();
    assert!(get(&foreign, &url).await.is_err());
    let member = ClientTls::with_identity(
        &roots,
        Some(&Identity {
            cert_file: p.client_cert,
            key_file: p.client_key,
        }),
    )
    .unwrap();
    assert_eq!(get(&member, &url).await.unwrap(), "ok");
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let (_d, p) = pki("mismatch");
    let e = tls::server_config(&p.server_cert, &p.client_key, None).unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
}
