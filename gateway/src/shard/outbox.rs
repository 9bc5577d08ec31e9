//! `Outbox`: one connection's queue of bytes the socket did not take yet.
//!
//! Frames go out directly when the socket takes them; only what is left is queued here, as owned
//! buffers or shared (`Arc<[u8]>`) frames encoded once for many connections. The queue is flushed
//! with vectored writes, whole chunks in order. An empty outbox holds no allocation. At most one
//! owed pong sits in the queue: a newer one replaces it while it is unsent (§5.5.3).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;

#[derive(Debug)]
enum Bytes {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(a) => a,
        }
    }
}

#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    /// Bytes already written.
    sent: usize,
    /// The chunk is exactly one owed pong frame.
    pong: bool,
}

impl Chunk {
    fn rest(&self) -> &[u8] {
        self.bytes.as_slice().get(self.sent..).unwrap_or(&[])
    }
}

/// A connection's write queue.
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
    queued: usize,
}

impl Outbox {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Queue `bytes`, of which the first `sent` were already written.
    pub fn push_owned(&mut self, bytes: Vec<u8>, sent: usize) {
        let len = bytes.len().saturating_sub(sent);
        if len == 0 {
            return;
        }
        self.queued += len;
        self.chunks.push_back(Chunk {
            bytes: Bytes::Owned(bytes),
            sent,
            pong: false,
        });
    }

    /// Queue a frame shared with other connections.
    pub fn push_shared(&mut self, frame: Arc<[u8]>) {
        if frame.is_empty() {
            return;
        }
        self.queued += frame.len();
        self.chunks.push_back(Chunk {
            bytes: Bytes::Shared(frame),
            sent: 0,
            pong: false,
        });
    }

    /// Queue an encoded pong frame, replacing the last queued pong if none of it was sent and
    /// nothing was queued after it.
    pub fn push_pong(&mut self, frame: &[u8]) {
        if let Some(last) = self.chunks.back_mut() {
            if last.pong && last.sent == 0 {
                self.queued -= last.bytes.as_slice().len();
                self.queued += frame.len();
                last.bytes = Bytes::Owned(frame.to_vec());
                return;
            }
        }
        self.push_owned(frame.to_vec(), 0);
        if let Some(last) = self.chunks.back_mut() {
            last.pong = true;
        }
    }

    /// Write as much as `write` takes, with vectored writes of up to 64 chunks. Returns the
    /// bytes written; stops at `WouldBlock` (not an error) and returns other errors.
    pub fn flush<W>(&mut self, mut write: W) -> io::Result<usize>
    where
        W: FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    {
        let mut total = 0;
        while !self.chunks.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            for (slot, chunk) in iov.iter_mut().zip(self.chunks.iter()) {
                *slot = IoSlice::new(chunk.rest());
                n_iov += 1;
            }
            let want: usize = iov[..n_iov].iter().map(|s| s.len()).sum();
            let n = match write(&iov[..n_iov]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n;
            self.consume(n);
            if n < want {
                break;
            }
        }
        if self.chunks.is_empty() {
            // Give the ring's memory back: an idle connection holds no queue.
            self.chunks = VecDeque::new();
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.queued -= n.min(self.queued);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            let left = front.rest().len();
            if n < left {
                front.sent += n;
                return;
            }
            n -= left;
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `room` bytes, then blocks.
    fn writer<'a>(
        sink: &'a mut Vec<u8>,
        room: &'a mut usize,
    ) -> impl FnMut(&[IoSlice<'_>]) -> io::Result<usize> + 'a {
        move |iov| {
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for s in iov {
                let take = s.len().min(*room);
                sink.extend_from_slice(&s[..take]);
                *room -= take;
                n += take;
            }
            Ok(n)
        }
    }

    #[test]
    fn partial_writes_keep_order_and_count() {
        let mut out = Outbox::default();
        out.push_owned(b"hello".to_vec(), 2);
        out.push_shared(Arc::from(&b" world"[..]));
        assert_eq!(out.queued_bytes(), 9);
        let mut sink = Vec::new();
        let mut room = 4;
        assert_eq!(out.flush(writer(&mut sink, &mut room)).unwrap(), 4);
        assert_eq!(out.queued_bytes(), 5);
        let mut room = 100;
        out.flush(writer(&mut sink, &mut room)).unwrap();
        assert_eq!(sink, b"llo world");
        assert!(out.is_empty());
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn unsent_pong_is_replaced() {
        let mut out = Outbox::default();
        out.push_owned(b"data".to_vec(), 0);
        out.push_pong(b"p1");
        out.push_pong(b"p22");
        assert_eq!(out.queued_bytes(), 7);
        let mut sink = Vec::new();
        let mut room = 100;
        out.flush(writer(&mut sink, &mut room)).unwrap();
        assert_eq!(sink, b"datap22");
    }

    #[test]
    fn started_pong_is_not_replaced() {
        let mut out = Outbox::default();
        out.push_pong(b"p1");
        let mut sink = Vec::new();
        let mut room = 1;
        out.flush(writer(&mut sink, &mut room)).unwrap();
        out.push_pong(b"p2");
        let mut room = 100;
        out.flush(writer(&mut sink, &mut room)).unwrap();
        assert_eq!(sink, b"p1p2");
    }

    #[test]
    fn more_chunks_than_one_writev_takes() {
        let mut out = Outbox::default();
        for i in 0..200u8 {
            out.push_owned(vec![i], 0);
        }
        let mut sink = Vec::new();
        let mut room = usize::MAX;
        assert_eq!(out.flush(writer(&mut sink, &mut room)).unwrap(), 200);
        assert_eq!(sink, (0..200u8).collect::<Vec<_>>());
    }
}
