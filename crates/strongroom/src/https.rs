//! The API over HTTPS: a listener that completes each TLS handshake in its
//! own task (a slow or silent client holds up nobody else) and hands axum
//! only connections that finished it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tls::tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes finished and not yet taken by the server.
const QUEUE: usize = 64;

/// A TCP listener wrapped in TLS, for `axum::serve`.
pub(crate) struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<tls::rustls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(QUEUE);
        let accept_loop = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: pause, as axum does.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake refused");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            accept_loop,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop never ends on its own; if it was stopped,
            // nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The make-service for [`TlsListener`]: each connection's router carries
/// the peer's address as `ConnectInfo`, as over plain HTTP (rate limits
/// and the audit log read it).
pub(crate) fn with_peer(
    app: axum::Router,
) -> impl for<'a> tower::Service<
    axum::serve::IncomingStream<'a, TlsListener>,
    Response = axum::Router,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<axum::Router, std::convert::Infallible>>,
> + Clone
+ Send
+ 'static {
    tower::service_fn(
        move |incoming: axum::serve::IncomingStream<'_, TlsListener>| {
            let peer = *incoming.remote_addr();
            std::future::ready(Ok(app
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer)))))
        },
    )
}
