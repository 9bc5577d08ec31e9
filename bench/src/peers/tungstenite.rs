//! The tokio-tungstenite peer, written the way that library's users write servers: a
//! multi-thread tokio runtime, one task per connection, `accept_hdr_async`, the stream split
//! into sink and stream halves.
//!
//! Echo forwards the text and binary messages of the stream half into the sink half
//! (`forward` flushes only when no message is ready, so pipelined messages share a write).
//! Broadcast gives each connection an unbounded channel of `Message` in the shared [`Hub`]
//! and a writer task that drains it into the sink; the payload is a reference-counted
//! `Bytes` shared by every subscriber, and tungstenite frames it once per connection.

use std::io;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::cli::{self, Args};
use super::hub::{Hub, SubscriberId};
use super::{Mode, PUBLISH_PREFIX};

/// Run the server until the process is stopped.
pub fn serve(args: &Args) -> io::Result<()> {
    let runtime = cli::tokio_runtime(args.threads)?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await?;
        cli::announce(listener.local_addr()?)?;
        let hub = Hub::default();
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Small messages must not wait for Nagle; every peer sets this.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, hub.clone()));
                }
                // Out of descriptors or a connection reset before accept: keep serving.
                Err(err) => eprintln!("accept: {err}"),
            }
        }
    })
}

async fn connection(stream: TcpStream, hub: Hub<Message>) {
    let (sender, receiver) = unbounded_channel();
    let mut subscribed = None;
    // Runs before the 101 is written: a broadcast connection is subscribed from the moment
    // its client can see the handshake succeed, as the protocol requires. The result type is
    // tungstenite's `Callback` signature, large error variant included.
    #[allow(clippy::result_large_err)]
    let on_request = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        if Mode::from_path(request.uri().path()) == Mode::Broadcast {
            subscribed = Some(hub.join(sender));
        }
        Ok(response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async(stream, on_request).await;
    // Resets and protocol errors end the connection; nothing else is disturbed.
    match (handshake, subscribed) {
        (Ok(ws), None) => {
            let _ = echo(ws).await;
        }
        (Ok(ws), Some(id)) => {
            let _ = broadcast(ws, &hub, id, receiver).await;
            hub.leave(id);
        }
        // The 101 could not be written: undo the subscription made before it.
        (Err(_), Some(id)) => hub.leave(id),
        (Err(_), None) => {}
    }
}

async fn echo(ws: WebSocketStream<TcpStream>) -> Result<(), WsError> {
    let (sink, stream) = ws.split();
    stream
        .try_filter(|message| std::future::ready(message.is_text() || message.is_binary()))
        .forward(sink)
        .await
}

async fn broadcast(
    ws: WebSocketStream<TcpStream>,
    hub: &Hub<Message>,
    id: SubscriberId,
    receiver: UnboundedReceiver<Message>,
) -> Result<(), WsError> {
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_queued(sink, receiver));
    while let Some(message) = stream.next().await {
        if let Message::Text(text) = message? {
            if let Some(payload) = published(text) {
                hub.publish(id, &Message::Text(payload));
            }
        }
    }
    writer.abort();
    Ok(())
}

/// The payload of a `pub:` message, sharing the received buffer.
fn published(text: Utf8Bytes) -> Option<Utf8Bytes> {
    let bytes = Bytes::from(text);
    if !bytes.starts_with(PUBLISH_PREFIX) {
        return None;
    }
    // The prefix is ASCII, so the rest starts on a character boundary and stays valid UTF-8.
    Utf8Bytes::try_from(bytes.slice(PUBLISH_PREFIX.len()..)).ok()
}

/// Drain a subscriber's channel into its sink: feed what is queued, flush once per batch.
async fn write_queued<S>(mut sink: S, mut receiver: UnboundedReceiver<Message>)
where
    S: futures_util::Sink<Message, Error = WsError> + Unpin,
{
    while let Some(message) = receiver.recv().await {
        if sink.feed(message).await.is_err() {
            return;
        }
        while let Ok(message) = receiver.try_recv() {
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_strips_the_prefix_and_ignores_other_text() {
        assert_eq!(
            published(Utf8Bytes::from("pub:héllo")).as_deref(),
            Some("héllo")
        );
        assert_eq!(published(Utf8Bytes::from("pub:")).as_deref(), Some(""));
        assert_eq!(published(Utf8Bytes::from("hello")), None);
        assert_eq!(published(Utf8Bytes::from("pu")), None);
    }
}
