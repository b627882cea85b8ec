//! Graceful shutdown's first step (F19, ADR 0010): take over every connection the kernel has
//! already completed on the listening socket, then close it.
//!
//! Closing a listening socket resets the connections still queued in its accept backlog. A
//! load balancer may already have written a request to such a connection (the handshake
//! completed, so from its side the request was sent), and for a non-idempotent request it will
//! not retry it elsewhere: the client sees a 502. Accepting the backlog with plain non-blocking
//! `accept(2)` calls until `EWOULDBLOCK` — not through the reactor, whose readiness may lag the
//! kernel queue — and serving those connections like any other shrinks the loss window to the
//! few instructions between the last `accept` and `close`. The server then waits
//! [`READ_GRACE`] before hyper's graceful shutdown, so no accepted connection is closed with
//! an unread request in it.

use std::net::SocketAddr;
use std::time::Duration;

/// How long connections accepted before the listener closed keep being served normally before
/// they are asked to close: hyper's graceful shutdown closes a connection that has not read its
/// first request yet, and a load balancer may have written one right after the handshake.
pub const READ_GRACE: Duration = Duration::from_millis(1000);

/// Accepts every connection queued on `listener` without waiting, closes the listener and
/// returns the connections (at most 4096; a longer queue is not a graceful shutdown anyway).
pub fn accept_queued(listener: tokio::net::TcpListener) -> Vec<(tokio::net::TcpStream, SocketAddr)> {
    let mut out = Vec::new();
    let Ok(std_listener) = listener.into_std() else { return out };
    // `into_std` keeps the socket non-blocking; say so anyway, a blocking accept would hang here.
    if std_listener.set_nonblocking(true).is_err() {
        return out;
    }
    while out.len() < 4096 {
        match std_listener.accept() {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                if stream.set_nonblocking(true).is_ok()
                    && let Ok(stream) = tokio::net::TcpStream::from_std(stream)
                {
                    out.push((stream, peer));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}
