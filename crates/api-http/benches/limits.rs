//! The per-address rate limit under a flood of distinct source addresses:
//! the time one request takes through the whole router (`GET /v1/health`,
//! authentication layer included) from a known address, before and after
//! 200 000 other addresses have each made a request.
//! `cargo bench -p api-http --bench limits -- --bench`.

#![allow(clippy::unwrap_used)] // A benchmark: a panic is the failure report.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_http::{Limits, Rate, router};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use service::{Checkpointer, Service, SystemClock};
use storage::testing::TestDb;
use tower::ServiceExt;

fn request(from: Ipv4Addr) -> Request<Body> {
    let mut r = Request::get("/v1/health").body(Body::empty()).unwrap();
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((from, 40_000))));
    r
}

/// Median time of `n` requests from `from`.
async fn median(app: &axum::Router, from: Ipv4Addr, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = app.clone().oneshot(request(from)).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let flood: u32 = if full { 200_000 } else { 2_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = TestDb::sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::for_tests(dir.path(), 3, 100);
        let svc = Service::new(db.store.clone(), Arc::new(SystemClock), cp);
        let app = router(
            svc,
            Limits {
                per_address: Rate {
                    per_second: 1_000_000,
                    burst: 1_000_000,
                },
                ..Limits::new(1024, Duration::from_secs(5))
            },
        );
        let me = Ipv4Addr::new(192, 0, 2, 1);
        let before = median(&app, me, 2_000).await;
        let t = Instant::now();
        for i in 0..flood {
            let from = Ipv4Addr::from(0x0a00_0000 + i);
            app.clone().oneshot(request(from)).await.unwrap();
        }
        let flooding = t.elapsed();
        let after = median(&app, me, 2_000).await;
        println!(
            "one address: median {before:?} per request; after {flood} distinct addresses \
             ({:?} per flood request): median {after:?} ({:.2}x)",
            flooding / flood,
            after.as_secs_f64() / before.as_secs_f64()
        );
    });
}
