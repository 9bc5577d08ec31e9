//! The fastwebsockets peer, written the way that library's users write servers: hyper's HTTP/1
//! server answers the upgrade with `fastwebsockets::upgrade::upgrade`, one task per connection
//! on a multi-thread tokio runtime, `auto_close` and `auto_pong` on.
//!
//! Echo wraps the socket in a `FragmentCollector` and writes each message back as it is read.
//! Broadcast splits the socket (`WebSocket::split`): the read half parses in the connection
//! task, a writer task owns the write half (over a `BufWriter`) and drains the connection's
//! unbounded channel in the shared [`Hub`], flushing once per batch as the tokio-tungstenite
//! peer does. A publish shares one `Bytes` payload; each writer frames it.

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use fastwebsockets::upgrade::{self, UpgradeFut};
use fastwebsockets::{
    FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError,
};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::BufWriter;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::cli::{self, Args};
use super::hub::{Hub, SubscriberId};
use super::{Mode, PUBLISH_PREFIX};

/// What a broadcast connection's writer task sends.
#[derive(Clone)]
enum Outgoing {
    /// A published payload, shared by every subscriber.
    Text(Bytes),
    /// A reply the read half owes (pong, close), copied out of the read buffer.
    Control(OpCode, Vec<u8>),
}

/// Run the server until the process is stopped.
pub fn serve(args: &Args) -> io::Result<()> {
    let runtime = cli::tokio_runtime(args.threads)?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await?;
        cli::announce(listener.local_addr()?)?;
        let hub = Hub::default();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset before accept: keep serving.
                Err(err) => {
                    eprintln!("accept: {err}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let hub = hub.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| on_request(request, hub.clone()));
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                // A client that leaves mid-request is its own problem.
                let _ = connection.await;
            });
        }
    })
}

async fn on_request(
    mut request: Request<Incoming>,
    hub: Hub<Outgoing>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mode = Mode::from_path(request.uri().path());
    let (response, upgraded) = match upgrade::upgrade(&mut request) {
        Ok(upgrade) => upgrade,
        Err(_) => {
            let mut refusal = Response::new(Empty::new());
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(refusal);
        }
    };
    match mode {
        Mode::Echo => {
            tokio::spawn(async move {
                let _ = echo(upgraded).await;
            });
        }
        Mode::Broadcast => {
            // Subscribed before the 101 goes out, as the protocol requires.
            let (sender, receiver) = unbounded_channel();
            let id = hub.join(sender.clone());
            tokio::spawn(async move {
                let _ = broadcast(upgraded, &hub, id, sender, receiver).await;
                hub.leave(id);
            });
        }
    }
    Ok(response)
}

async fn echo(upgraded: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = upgraded.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn broadcast(
    upgraded: UpgradeFut,
    hub: &Hub<Outgoing>,
    id: SubscriberId,
    sender: UnboundedSender<Outgoing>,
    receiver: UnboundedReceiver<Outgoing>,
) -> Result<(), WebSocketError> {
    let mut ws = upgraded.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let (read, write) = ws.split(|stream| {
        let (read, write) = tokio::io::split(stream);
        (read, BufWriter::new(write))
    });
    let writer = tokio::spawn(write_queued(write, receiver));
    let mut read = FragmentCollectorRead::new(read);
    // Pongs and the close reply are owed by the read half; they join the writer's queue.
    let mut send_owed = |frame: Frame<'_>| {
        let queued = sender.send(Outgoing::Control(frame.opcode, frame.payload.to_vec()));
        std::future::ready(queued.map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe)))
    };
    let result = loop {
        let frame = match read.read_frame(&mut send_owed).await {
            Ok(frame) => frame,
            Err(err) => break Err(err),
        };
        match frame.opcode {
            OpCode::Close => break Ok(()),
            OpCode::Text => {
                if let Some(payload) = frame.payload.strip_prefix(PUBLISH_PREFIX) {
                    hub.publish(id, &Outgoing::Text(Bytes::copy_from_slice(payload)));
                }
            }
            _ => {}
        }
    };
    // The writer ends once the hub and this task have dropped their senders and the queue
    // (the close reply included) is written.
    hub.leave(id);
    drop(sender);
    let _ = writer.await;
    result
}

/// Drain a subscriber's channel into its write half: write what is queued into the buffer,
/// flush once per batch (`WebSocketWrite::flush` exists for buffered streams like this one).
async fn write_queued<W>(
    mut write: fastwebsockets::WebSocketWrite<BufWriter<W>>,
    mut receiver: UnboundedReceiver<Outgoing>,
) where
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Some(outgoing) = receiver.recv().await {
        if write_one(&mut write, &outgoing).await.is_err() {
            return;
        }
        while let Ok(outgoing) = receiver.try_recv() {
            if write_one(&mut write, &outgoing).await.is_err() {
                return;
            }
        }
        if write.flush().await.is_err() {
            return;
        }
    }
}

async fn write_one<W>(
    write: &mut fastwebsockets::WebSocketWrite<W>,
    outgoing: &Outgoing,
) -> Result<(), WebSocketError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let frame = match outgoing {
        Outgoing::Text(payload) => Frame::text(Payload::Borrowed(payload)),
        Outgoing::Control(opcode, payload) => {
            Frame::new(true, *opcode, None, Payload::Borrowed(payload))
        }
    };
    write.write_frame(frame).await
}
