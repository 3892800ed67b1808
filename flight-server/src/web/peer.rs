//! Who a dashboard request came from, over TLS or not.

use std::net::SocketAddr;

use crate::listener::Accepted;

/// The address a request came from.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl<T> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Accepted<T>>> for Peer
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Accepted<T>>) -> Peer {
        Peer(*stream.remote_addr())
    }
}
