//! The baseline loadgen's own cost is compared with: a plain tokio-tungstenite client (one
//! thread, current-thread runtime) doing closed-loop echo exactly like
//! `loadgen echo --threads 1 -c C -w W -s S`. It prints messages/s and its CPU time per message.
//!
//! ```text
//! cargo run --release -p loadgen --example tungstenite_echo -- ws://127.0.0.1:8080/echo 100 16 32 5
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or("ws://127.0.0.1:8080/echo".into());
    let arg = |i: usize, d: u64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (conns, window, size, secs) = (arg(2, 100), arg(3, 16), arg(4, 32) as usize, arg(5, 5));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut streams = Vec::new();
        for _ in 0..conns {
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("connect");
            streams.push(ws);
        }
        let start = Instant::now();
        let cpu0 = cpu_s();
        let deadline = start + Duration::from_secs(secs);
        let payload = vec![b'x'; size];
        let mut tasks = Vec::new();
        for ws in streams {
            let payload = payload.clone();
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                for _ in 0..window {
                    tx.send(Message::binary(payload.clone())).await.expect("send");
                }
                let mut received = 0u64;
                while let Some(Ok(msg)) = rx.next().await {
                    if msg.is_binary() {
                        received += 1;
                        if Instant::now() >= deadline {
                            break;
                        }
                        tx.send(Message::binary(payload.clone())).await.expect("send");
                    }
                }
                received
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap_or(0);
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_s() - cpu0;
        println!(
            "tokio-tungstenite: {total} messages in {wall:.2}s = {:.0} msg/s; client CPU {cpu:.2}s = {:.3} us/message",
            total as f64 / wall,
            cpu * 1e6 / total.max(1) as f64
        );
    });
}
