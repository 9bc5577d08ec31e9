//! The shard's provided receive buffers: one allocation of `count` buffers and the page-aligned
//! ring of descriptors that lends them to the kernel (buffer group [`BGID`]). A buffer is either
//! in the ring (the kernel may fill it) or lent to the driver (a completion named it) until
//! [`BufRing::give_back`]; the allocation never moves and is freed only when no operation can
//! select a buffer any more.
//!
//! Buffers are handed to the kernel lazily: the ring starts with [`INITIAL_BUFFERS`] of them and
//! [`BufRing::grow`] publishes more (doubling) when few are left in the ring. The kernel takes
//! buffers in ring order, so every published buffer is eventually written and stays resident;
//! buffers never published are never touched and cost no memory. A shard whose connections
//! mostly sit idle keeps a small working set instead of the whole allocation.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{types, IoUring};

/// The buffer group id of the shard's buffer ring.
pub(super) const BGID: u16 = 0;
/// Buffers in the ring at start (or all of them, when fewer).
pub(super) const INITIAL_BUFFERS: u16 = 32;

/// The shard's provided receive buffers and the ring of descriptors that lends them to the
/// kernel. Buffer `bid` is bytes `bid * size ..` of one allocation that never moves.
pub(super) struct BufRing {
    /// `count` descriptors, page aligned; the ring's tail is the `resv` field of entry 0.
    entries: *mut types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    data: *mut u8,
    data_layout: std::alloc::Layout,
    pub(super) count: u16,
    /// Buffers `0..published` were handed to the kernel at least once; the others never were.
    published: u16,
    size: u32,
    /// Our copy of the tail (the kernel only reads it).
    tail: u16,
    /// Buffers completed and not yet given back.
    pub(super) lent: usize,
    /// Never free the memory (the kernel might still write it).
    pub(super) leak: bool,
}

impl BufRing {
    /// `count` (a power of two) buffers of `size` bytes, the first [`INITIAL_BUFFERS`] of them
    /// handed to the ring.
    pub(super) fn new(count: u16, size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two up to 32768",
            ));
        }
        let bad = |_| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large");
        let entries_bytes =
            (usize::from(count) * std::mem::size_of::<types::BufRingEntry>()).max(4096);
        let entries_layout =
            std::alloc::Layout::from_size_align(entries_bytes, 4096).map_err(bad)?;
        let data_bytes = usize::from(count) * size as usize;
        let data_layout = std::alloc::Layout::from_size_align(data_bytes, 64).map_err(bad)?;
        // SAFETY: both layouts have a non-zero size (at least 4096 and `count * size` > 0).
        let entries =
            unsafe { std::alloc::alloc_zeroed(entries_layout) }.cast::<types::BufRingEntry>();
        // SAFETY: as above. Zeroed, so every byte is initialised before the kernel first
        // writes it (large zeroed allocations are fresh pages: nothing is touched up front).
        let data = unsafe { std::alloc::alloc_zeroed(data_layout) };
        if entries.is_null() || data.is_null() {
            // SAFETY: each pointer is freed only if it was allocated, with its own layout.
            unsafe {
                if !entries.is_null() {
                    std::alloc::dealloc(entries.cast(), entries_layout);
                }
                if !data.is_null() {
                    std::alloc::dealloc(data, data_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = BufRing {
            entries,
            entries_layout,
            data,
            data_layout,
            count,
            published: 0,
            size,
            tail: 0,
            lent: 0,
            leak: false,
        };
        ring.publish(count.min(INITIAL_BUFFERS));
        Ok(ring)
    }

    /// Register the descriptor ring with `ring` as buffer group [`BGID`].
    pub(super) fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the descriptors stay allocated (and unmoved) until `Drop`, which runs only
        // after the owning driver has unregistered the group or dropped its ring.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(self.entries as u64, self.count, BGID, 0)
        }
    }

    /// Buffers the kernel may still pick.
    pub(super) fn free(&self) -> usize {
        usize::from(self.published).saturating_sub(self.lent)
    }

    /// Buffers handed to the kernel so far (in the ring or lent).
    pub(super) fn published(&self) -> u16 {
        self.published
    }

    /// Fewer than a quarter of the published buffers are left in the ring and more exist.
    pub(super) fn wants_more(&self) -> bool {
        self.published < self.count && self.free() * 4 < usize::from(self.published)
    }

    /// Publish as many never-used buffers as are published already (or all that are left);
    /// false when every buffer is published.
    pub(super) fn grow(&mut self) -> bool {
        let left = self.count - self.published;
        if left == 0 {
            return false;
        }
        self.publish(left.min(self.published.max(1)));
        true
    }

    /// Hand the next `n` never-used buffers to the kernel.
    fn publish(&mut self, n: u16) {
        let first = self.published;
        for bid in first..first + n {
            self.lent += 1;
            self.give_back(bid);
        }
        self.published = first + n;
    }

    /// Hand buffer `bid` back to the kernel.
    pub(super) fn give_back(&mut self, bid: u16) {
        let bid = bid & (self.count - 1);
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`, inside the descriptor allocation. The kernel reads only the
        // descriptors between its head and the published tail, and this one is at the tail, so
        // nothing reads it while it is written; the tail field (entry 0's `resv`) is not
        // touched by the setters.
        unsafe {
            let e = &mut *self.entries.add(index);
            e.set_addr(self.data.add(usize::from(bid) * self.size as usize) as u64);
            e.set_len(self.size);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `entries` is the ring base (page aligned, initialised); the tail is a
        // naturally aligned u16 that the kernel reads with acquire ordering, so a release store
        // publishes the descriptor written above.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
        self.lent = self.lent.saturating_sub(1);
    }

    /// Bytes `start..end` of buffer `bid`, which the kernel filled and gave us (so it does not
    /// write it until it is given back).
    pub(super) fn bytes(&self, bid: u16, start: u32, end: u32) -> &[u8] {
        let end = end.min(self.size);
        let start = start.min(end);
        let bid = bid & (self.count - 1);
        // SAFETY: `bid < count` and `start <= end <= size`, so the range is inside the data
        // allocation; the buffer is lent to us (its completion arrived, it is not yet given
        // back), so the kernel does not write it while this borrow lives.
        unsafe {
            std::slice::from_raw_parts(
                self.data
                    .add(usize::from(bid) * self.size as usize + start as usize),
                (end - start) as usize,
            )
        }
    }
}

// SAFETY: `BufRing` owns its two allocations outright (the raw pointers are not shared with
// other threads' Rust code; the kernel side follows the ring, which moves with it). It is built
// on one thread and then used only by the shard thread it is moved to.
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the driver drops the ring only when no
        // operation that could select a buffer is pending (otherwise `leak` is set).
        unsafe {
            std::alloc::dealloc(self.entries.cast(), self.entries_layout);
            std::alloc::dealloc(self.data, self.data_layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_be_powers_of_two_up_to_32768() {
        assert!(BufRing::new(3, 64).is_err());
        assert!(BufRing::new(0, 64).is_err());
        assert!(BufRing::new(4, 0).is_err());
        assert!(BufRing::new(1, 64).is_ok());
        assert!(BufRing::new(1 << 15, 16).is_ok());
    }

    #[test]
    fn a_small_ring_starts_full_and_lending_is_counted() {
        let mut ring = BufRing::new(8, 64).expect("ring");
        assert_eq!(ring.free(), 8);
        assert_eq!(ring.published(), 8);
        assert!(!ring.grow(), "nothing left to publish");
        // What a completion naming buffer 3 does, then the shard draining it.
        ring.lent += 1;
        assert_eq!(ring.free(), 7);
        ring.give_back(3);
        assert_eq!(ring.free(), 8);
        assert_eq!(ring.tail, 9);
    }

    #[test]
    fn a_large_ring_starts_small_and_doubles_when_few_buffers_are_left() {
        let mut ring = BufRing::new(256, 64).expect("ring");
        assert_eq!(ring.published(), INITIAL_BUFFERS);
        assert_eq!(ring.free(), usize::from(INITIAL_BUFFERS));
        assert!(!ring.wants_more());
        // Completions take buffers until fewer than a quarter are left in the ring.
        let quarter = usize::from(INITIAL_BUFFERS) / 4;
        ring.lent = usize::from(INITIAL_BUFFERS) - quarter;
        assert!(!ring.wants_more(), "a quarter left is enough");
        ring.lent += 1;
        assert!(ring.wants_more());
        let tail = ring.tail;
        assert!(ring.grow());
        assert_eq!(ring.published(), 2 * INITIAL_BUFFERS);
        assert_eq!(
            ring.tail,
            tail.wrapping_add(INITIAL_BUFFERS),
            "one descriptor each"
        );
        assert_eq!(ring.free(), quarter - 1 + usize::from(INITIAL_BUFFERS));
        while ring.grow() {}
        assert_eq!(ring.published(), 256);
        assert!(!ring.wants_more(), "every buffer is published");
    }

    #[test]
    fn byte_ranges_are_clamped_to_the_buffer() {
        let ring = BufRing::new(2, 64).expect("ring");
        assert_eq!(ring.bytes(1, 0, 64).len(), 64);
        assert_eq!(ring.bytes(1, 60, 1000).len(), 4);
        assert_eq!(ring.bytes(1, 70, 10).len(), 0);
    }
}
