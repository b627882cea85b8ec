//! The floor under gatehouse's HTTP answers (issue 3 speed): a bare hyper HTTP/1.1 server
//! with the same stack gatehouse serves with (tokio, hyper's http1 connection, mimalloc),
//! answering every request `200` with a fixed 95-byte JSON body and nothing else — no
//! routing, no middleware, no verification. `bench/gateway_load.py` compares it with nginx
//! `return 200` in the same run: whatever gatehouse's forward auth costs above this floor is
//! gatehouse's own; the floor's distance from nginx is what any hyper-based server pays.
//!
//! `GH_FLOOR_SPIN_NS=N` makes every answer first spin for N ns of CPU: a stand-in for a check
//! that costs N ns, to see how req/s against nginx falls as per-request work grows (BENCHMARKS.md,
//! "what a check may cost").
//!
//! Usage: cargo build --release -p gatehouse-server --example hyper_floor
//!        target/release/examples/hyper_floor 127.0.0.1:18099

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;

use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &[u8] = br#"{"makerCommission":15,"takerCommission":15,"buyerCommission":0,"canTrade":true,"balances":[]}"#;

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18099".into());
    let spin: u64 = std::env::var("GH_FLOOR_SPIN_NS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let spin = std::time::Duration::from_nanos(spin);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        println!("hyper_floor listening on http://{}", listener.local_addr().unwrap());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    if !spin.is_zero() {
                        let started = std::time::Instant::now();
                        while started.elapsed() < spin {
                            std::hint::spin_loop();
                        }
                    }
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
}
