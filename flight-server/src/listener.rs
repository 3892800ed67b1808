//! Accepting the service's connections (Flight SQL and the dashboard) so that sockets cannot be
//! used up: at most [`MAX_CONNECTIONS`] open at once and [`MAX_PER_ADDRESS`] from one address (an
//! IPv6 /64 counts as one; more are closed as they arrive); TLS handshakes run off the accept loop
//! with a deadline, and a connection that neither sends nor receives a byte for [`IDLE`] is
//! closed, so a client that connects and then says nothing holds up no one for long.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 2048;

/// Most connections open at once from one address.
pub const MAX_PER_ADDRESS: usize = 32;

/// How long a connection may go without a byte either way (HTTP/2 pings every 30 s keep a live
/// Flight SQL client busy; a browser reconnects).
pub const IDLE: Duration = Duration::from_secs(120);

/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Connections open per address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// The address a connection counts against: an IPv6 address by its /64 (one host's share).
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl PerAddress {
    fn take(&self, ip: IpAddr) -> bool {
        let ip = counted(ip);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= MAX_PER_ADDRESS {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, ip: IpAddr) {
        let ip = counted(ip);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// One accepted connection, counted while it is open.
pub struct Connection<T: Io> {
    /// The stream; taken only when the connection is dropped.
    inner: Option<T>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    slot: Option<OwnedSemaphorePermit>,
    addresses: Arc<PerAddress>,
    /// When the connection counts as idle, moved on by every byte.
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Whether this side has finished writing (a graceful close): then the connection lingers.
    shut_down: bool,
}

/// How long a connection this side closed gracefully keeps reading, so that the client reads the
/// end of its last answer before the socket goes: closing with the client's frames unread would
/// reset the connection, and the client would lose what it had not read yet.
const LINGER: Duration = Duration::from_secs(5);

impl<T: Io> Connection<T> {
    fn io(&mut self) -> &mut T {
        self.inner
            .as_mut()
            .expect("a connection's stream is there until it is dropped")
    }

    /// Moves the idle deadline on after a byte went either way.
    fn active(&mut self) {
        self.idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
    }

    /// An error once the connection has been idle too long (`Pending` otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "idle connection closed")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Io> Drop for Connection<T> {
    fn drop(&mut self) {
        let (addresses, ip, slot) = (self.addresses.clone(), self.remote.ip(), self.slot.take());
        let inner = self.inner.take();
        let runtime = tokio::runtime::Handle::try_current();
        match (inner, runtime) {
            (Some(mut io), Ok(runtime)) if self.shut_down => {
                // Still counted against the limits while it lingers.
                runtime.spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut unread = [0u8; 4096];
                    let _ = tokio::time::timeout(LINGER, async {
                        while matches!(io.read(&mut unread).await, Ok(n) if n > 0) {}
                    })
                    .await;
                    drop((io, slot));
                    addresses.give_back(ip);
                });
            }
            _ => addresses.give_back(ip),
        }
    }
}

impl<T: Io> AsyncRead for Connection<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(self.io()).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.active();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.expired(cx).map(Err),
            other => other,
        }
    }
}

impl<T: Io> AsyncWrite for Connection<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(self.io()).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let done = Pin::new(self.io()).poll_shutdown(cx);
        if matches!(done, Poll::Ready(Ok(()))) {
            self.shut_down = true;
        }
        done
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(self.io()).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|io| io.is_write_vectored())
    }
}

impl<T: Io> tonic::transport::server::Connected for Connection<T> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: Some(self.local),
            remote_addr: Some(self.remote),
        }
    }
}

/// Connections accepted in the background, TLS ones after their handshake.
pub struct Accepted<T: Io> {
    local: SocketAddr,
    ready: mpsc::Receiver<Connection<T>>,
}

/// Accepts on `listener` within the limits; `upgrade` turns a TCP stream into `T` (e.g. a TLS
/// handshake), in its own task, under the handshake deadline.
fn accept<T, F, Fut>(listener: TcpListener, upgrade: F) -> io::Result<Accepted<T>>
where
    T: Io,
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = io::Result<T>> + Send + 'static,
{
    let local = listener.local_addr()?;
    let (send, ready) = mpsc::channel(256);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let addresses = Arc::new(PerAddress::default());
    let upgrade = Arc::new(upgrade);
    tokio::spawn(async move {
        while !send.is_closed() {
            let (stream, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of file descriptors or similar: wait rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            if !addresses.take(remote.ip()) {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let (send, upgrade, addresses) = (send.clone(), upgrade.clone(), addresses.clone());
            tokio::spawn(async move {
                let upgraded = tokio::time::timeout(HANDSHAKE, upgrade(stream)).await;
                match upgraded {
                    Ok(Ok(inner)) => {
                        let connection = Connection {
                            inner: Some(inner),
                            remote,
                            local,
                            slot: Some(slot),
                            addresses,
                            idle: Box::pin(tokio::time::sleep(IDLE)),
                            shut_down: false,
                        };
                        let _ = send.send(connection).await;
                    }
                    _ => addresses.give_back(remote.ip()),
                }
            });
        }
    });
    Ok(Accepted { local, ready })
}

/// A connection's byte stream, over TLS or not.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Connections on `listener`: over TLS with `config`, else plain TCP (loopback only; see
/// `[server] listen`).
pub fn bounded(listener: TcpListener, config: Option<Arc<rustls::ServerConfig>>) -> io::Result<Accepted<Box<dyn Io>>> {
    match config {
        Some(config) => {
            let acceptor = TlsAcceptor::from(config);
            accept(listener, move |stream| {
                let acceptor = acceptor.clone();
                async move {
                    let tls: TlsStream<TcpStream> = acceptor.accept(stream).await?;
                    Ok(Box::new(tls) as Box<dyn Io>)
                }
            })
        }
        None => accept(listener, |stream| async move { Ok(Box::new(stream) as Box<dyn Io>) }),
    }
}

impl<T: Io> Accepted<T> {
    /// The connections as a stream (for tonic).
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<Connection<T>>> {
        futures::stream::unfold(self.ready, |mut ready| async move {
            ready.recv().await.map(|c| (Ok(c), ready))
        })
    }
}

impl<T> axum::serve::Listener for Accepted<T>
where
    T: Io,
{
    type Io = Connection<T>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => {
                let remote = connection.remote;
                (connection, remote)
            }
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A server TLS configuration from a certificate chain and key in PEM files.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
