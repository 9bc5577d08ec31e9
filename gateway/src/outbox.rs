//! `Outbox`: one connection's queue of bytes the socket did not take yet.
//!
//! Frames go out directly when the socket takes them; only what is left is queued here, as owned
//! buffers or shared (`Arc<[u8]>`) frames encoded once for many connections. The queue is flushed
//! with vectored writes, whole chunks in order. Pongs are ordinary bytes, except the one the
//! connection coalesced while its queue was full (see `conn::output`): it is queued as its own
//! chunk, and a newer coalesced pong replaces it while none of it is sent and nothing follows it
//! (§5.5.3), so a peer that floods pings and never reads holds one pong here.
//!
//! Memory: an outbox is one pointer, null until something is queued (most writes go straight to
//! the socket and never queue), so a connection that never queued costs 8 bytes here. While a
//! connection is active its emptied queue keeps a few slots (at most `KEEP_CHUNKS`), so a
//! delivery to it does not allocate; a queue that grew past that is freed once empty, and
//! [`Outbox::on_idle`] (called by the shard when the connection's timer fires after a silence)
//! frees an empty queue, so an idle connection holds no allocation.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;
/// Queues this short are written from a small array (filling the 64-slot one costs more than
/// writing one or two chunks).
const SHORT_IOV: usize = 4;
/// Queue slots an active connection keeps once its queue is empty; more capacity is freed.
const KEEP_CHUNKS: usize = 8;

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
    /// The chunk is exactly one coalesced pong frame.
    pong: bool,
}

impl Chunk {
    fn rest(&self) -> &[u8] {
        self.bytes.as_slice().get(self.sent..).unwrap_or(&[])
    }
}

/// What an outbox holds once something was queued.
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    queued: usize,
}

/// A connection's write queue (`None` until something is queued: see the module doc).
#[derive(Debug, Default)]
pub struct Outbox(Option<Box<Queue>>);

impl Outbox {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.chunks.is_empty())
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.queued)
    }

    /// The queue, made on first use.
    fn queue(&mut self) -> &mut Queue {
        self.0.get_or_insert_with(Box::default)
    }

    /// Queue `bytes`, of which the first `sent` were already written.
    pub fn push_owned(&mut self, bytes: Vec<u8>, sent: usize) {
        let len = bytes.len().saturating_sub(sent);
        if len == 0 {
            return;
        }
        self.queue().push_owned(bytes, sent, len);
    }

    /// Queue a frame shared with other connections.
    pub fn push_shared(&mut self, frame: Arc<[u8]>) {
        if frame.is_empty() {
            return;
        }
        let q = self.queue();
        q.queued += frame.len();
        q.chunks.push_back(Chunk {
            bytes: Bytes::Shared(frame),
            sent: 0,
            pong: false,
        });
    }

    /// Queue a coalesced pong frame (the connection's queue is full), replacing the last queued
    /// one if none of it was sent and nothing was queued after it.
    pub fn push_pong(&mut self, frame: &[u8]) {
        if frame.is_empty() {
            return;
        }
        let q = self.queue();
        if let Some(last) = q.chunks.back_mut() {
            if let (true, 0, Bytes::Owned(old)) = (last.pong, last.sent, &mut last.bytes) {
                q.queued -= old.len();
                q.queued += frame.len();
                old.clear();
                old.extend_from_slice(frame);
                return;
            }
        }
        q.push_owned(frame.to_vec(), 0, frame.len());
        if let Some(last) = q.chunks.back_mut() {
            last.pong = true;
        }
    }

    /// Write as much as `write` takes, with vectored writes of up to 64 chunks. Returns the
    /// bytes written; stops at `WouldBlock` (not an error) and returns other errors.
    pub fn flush<W>(&mut self, write: W) -> io::Result<usize>
    where
        W: FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    {
        let Some(q) = self.0.as_deref_mut() else {
            return Ok(0);
        };
        let r = q.flush(write);
        if q.chunks.is_empty() && q.chunks.capacity() > KEEP_CHUNKS {
            // A burst grew the ring: give it back rather than keep its peak.
            self.0 = None;
        }
        r
    }

    /// The connection is idle (its timer fired after a silence): an empty queue gives its memory
    /// back, so an idle connection holds none.
    pub fn on_idle(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

impl Queue {
    fn push_owned(&mut self, bytes: Vec<u8>, sent: usize, len: usize) {
        self.queued += len;
        self.chunks.push_back(Chunk {
            bytes: Bytes::Owned(bytes),
            sent,
            pong: false,
        });
    }

    /// Write as much as `write` takes (see [`Outbox::flush`]).
    fn flush<W>(&mut self, mut write: W) -> io::Result<usize>
    where
        W: FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    {
        let mut total = 0;
        while !self.chunks.is_empty() {
            let (result, want) = if self.chunks.len() <= SHORT_IOV {
                self.write_front::<SHORT_IOV, W>(&mut write)
            } else {
                self.write_front::<MAX_IOV, W>(&mut write)
            };
            let n = match result {
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
        Ok(total)
    }

    /// One vectored write of the first `N` chunks' unsent bytes. Returns the write's result and
    /// the bytes offered.
    fn write_front<const N: usize, W>(&self, write: &mut W) -> (io::Result<usize>, usize)
    where
        W: FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    {
        let mut iov = [IoSlice::new(&[]); N];
        let mut n_iov = 0;
        let mut want = 0;
        for (slot, chunk) in iov.iter_mut().zip(self.chunks.iter()) {
            let rest = chunk.rest();
            want += rest.len();
            *slot = IoSlice::new(rest);
            n_iov += 1;
        }
        (write(&iov[..n_iov]), want)
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

    /// Slots the queue has allocated (0: no queue at all).
    fn capacity(out: &Outbox) -> usize {
        out.0.as_ref().map_or(0, |q| q.chunks.capacity())
    }

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
    fn an_outbox_that_never_queued_is_one_pointer_and_allocates_nothing() {
        assert_eq!(std::mem::size_of::<Outbox>(), std::mem::size_of::<usize>());
        let mut out = Outbox::default();
        assert!(out.is_empty());
        assert_eq!(out.queued_bytes(), 0);
        out.push_owned(b"sent".to_vec(), 4);
        out.push_shared(Arc::from(&b""[..]));
        out.push_pong(b"");
        assert!(out.0.is_none(), "nothing to queue, nothing allocated");
        let mut calls = 0;
        let n = out
            .flush(|_: &[IoSlice<'_>]| {
                calls += 1;
                Ok(0)
            })
            .unwrap();
        assert_eq!((n, calls), (0, 0), "an empty outbox does not write");
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
    fn unsent_coalesced_pong_is_replaced() {
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
    fn started_coalesced_pong_is_not_replaced() {
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

    #[test]
    fn short_and_long_queues_use_one_write_each() {
        let mut calls = Vec::new();
        let mut out = Outbox::default();
        for n in [1usize, SHORT_IOV, SHORT_IOV + 1, MAX_IOV] {
            for i in 0..n {
                out.push_owned(vec![i as u8], 0);
            }
            out.flush(|iov: &[IoSlice<'_>]| {
                calls.push(iov.len());
                Ok(iov.iter().map(|s| s.len()).sum())
            })
            .unwrap();
        }
        assert_eq!(calls, [1, SHORT_IOV, SHORT_IOV + 1, MAX_IOV]);
    }

    #[test]
    fn active_outbox_reuses_its_queue() {
        let frame: Arc<[u8]> = Arc::from(&b"0123456789"[..]);
        let mut out = Outbox::default();
        let mut sink = Vec::new();
        let mut kept = None;
        for _ in 0..100 {
            out.push_shared(Arc::clone(&frame));
            out.push_owned(b"ab".to_vec(), 0);
            let at = std::ptr::from_ref(&out.0.as_ref().unwrap().chunks[0]) as usize;
            let mut room = usize::MAX;
            assert_eq!(out.flush(writer(&mut sink, &mut room)).unwrap(), 12);
            assert!(out.is_empty());
            // Same ring: its capacity and its buffer do not change from one delivery to the next.
            let cap = capacity(&out);
            assert!(cap > 0, "the emptied queue was freed");
            let (at0, cap0) = *kept.get_or_insert((at, cap));
            assert_eq!(cap, cap0);
            assert!(at.abs_diff(at0) < cap0 * std::mem::size_of::<Chunk>());
        }
        assert_eq!(sink.len(), 1200);
    }

    #[test]
    fn idle_or_burst_outbox_holds_no_queue() {
        let mut out = Outbox::default();
        let mut sink = Vec::new();
        out.push_owned(b"x".to_vec(), 0);
        out.on_idle();
        assert!(capacity(&out) > 0, "a queue with data keeps it");
        let mut room = usize::MAX;
        out.flush(writer(&mut sink, &mut room)).unwrap();
        out.on_idle();
        assert_eq!(capacity(&out), 0);
        assert!(out.0.is_none(), "an idle outbox is a null pointer");

        for i in 0..100u8 {
            out.push_owned(vec![i], 0);
        }
        let mut room = usize::MAX;
        out.flush(writer(&mut sink, &mut room)).unwrap();
        assert_eq!(capacity(&out), 0, "a burst's ring is not kept");
        assert_eq!(sink.len(), 101);
    }
}
