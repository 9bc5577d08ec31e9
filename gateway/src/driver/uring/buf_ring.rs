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
//!
//! The ring never shrinks, but its memory goes back: [`BufRing::trim`] returns the pages of
//! every buffer not lent out to the kernel (`MADV_DONTNEED` on the driver's own anonymous
//! mapping), so a storm that grew the ring leaves no resident memory behind once it has passed.
//! The contents of a buffer in the ring do not matter (the kernel overwrites what it hands
//! back), and the pages are only dropped while no receive can be writing them (see
//! [`BufRing::trim`]); the next receive into such a buffer faults in a fresh zeroed page.

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
    /// `count * size` bytes, an anonymous mapping of its own (page aligned, so every buffer
    /// of a page-multiple size starts on a page).
    data: *mut u8,
    data_bytes: usize,
    /// One bit per buffer: lent to the driver (a completion named it, not yet given back).
    lent_bits: Vec<u64>,
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
    /// A buffer was lent since the last trim (its pages may be resident).
    touched: bool,
    /// Buffers lent so far (completions that named one).
    pub(super) lends: u64,
}

/// The system's page size.
fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096).max(1)
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
        // SAFETY: the layout has a non-zero size (at least 4096).
        let entries =
            unsafe { std::alloc::alloc_zeroed(entries_layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // SAFETY: a fresh private anonymous mapping of `data_bytes` (> 0) bytes, at an address
        // the kernel picks: it overlaps nothing. Its pages read as zero (initialised) and take
        // memory only once written.
        let data = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if data == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: allocated just above with this layout, and not shared with the kernel yet.
            unsafe { std::alloc::dealloc(entries.cast(), entries_layout) };
            return Err(e);
        }
        let data = data.cast::<u8>();
        let mut ring = BufRing {
            entries,
            entries_layout,
            data,
            data_bytes,
            lent_bits: vec![0; usize::from(count).div_ceil(64)],
            count,
            published: 0,
            size,
            tail: 0,
            lent: 0,
            leak: false,
            touched: false,
            lends: 0,
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

    /// A completion named buffer `bid`: the kernel filled it and does not write it again until
    /// it is given back.
    pub(super) fn lend(&mut self, bid: u16) {
        let bid = usize::from(bid & (self.count - 1));
        self.lent_bits[bid / 64] |= 1 << (bid % 64);
        self.lent += 1;
        self.lends += 1;
        self.touched = true;
    }

    /// Whether buffer `bid` is lent out.
    fn is_lent(&self, bid: u16) -> bool {
        let bid = usize::from(bid & (self.count - 1));
        self.lent_bits[bid / 64] & (1 << (bid % 64)) != 0
    }

    /// A buffer was lent since the last [`BufRing::trim`].
    pub(super) fn touched(&self) -> bool {
        self.touched
    }

    /// Return the memory of every buffer that is not lent out, keeping the buffers themselves
    /// (the ring and what it lends do not change); returns the bytes released (resident or
    /// not).
    ///
    /// Only call it while no receive can be writing a buffer: with `DEFER_TASKRUN` the kernel
    /// fills provided buffers only inside the shard thread's own `io_uring_enter` calls, so
    /// between two of them nothing writes the ring's buffers and a dropped page is simply
    /// faulted in again, zeroed, by the next receive into it.
    pub(super) fn trim(&mut self) -> usize {
        let page = page_size();
        let size = self.size as usize;
        if size % page != 0 {
            // Buffers share pages: dropping one could drop part of a lent neighbour.
            return 0;
        }
        let mut released = 0;
        let mut bid = 0;
        while bid < self.published {
            if self.is_lent(bid) {
                bid += 1;
                continue;
            }
            let first = bid;
            while bid < self.published && !self.is_lent(bid) {
                bid += 1;
            }
            let start = usize::from(first) * size;
            let len = usize::from(bid - first) * size;
            // SAFETY: `start..start + len` lies inside the data mapping (`bid <= published <=
            // count`) and is page aligned (a page-multiple size from a page-aligned base); it
            // holds only buffers that are not lent (no Rust reference into them exists, as
            // `bytes` borrows only lent buffers) and that nothing writes now (the caller's
            // contract). MADV_DONTNEED on a private anonymous mapping only makes those pages
            // read as zero again.
            let ret =
                unsafe { libc::madvise(self.data.add(start).cast(), len, libc::MADV_DONTNEED) };
            if ret == 0 {
                released += len;
            }
        }
        self.touched = false;
        released
    }

    /// Bytes of the buffers that are resident in memory now (`mincore`).
    #[cfg(test)]
    pub(super) fn resident_bytes(&self) -> usize {
        let page = page_size();
        let mut vec = vec![0u8; self.data_bytes.div_ceil(page)];
        // SAFETY: `data` is page aligned and `data_bytes` long; `vec` has one byte per page of
        // that range, as mincore writes.
        let ret = unsafe { libc::mincore(self.data.cast(), self.data_bytes, vec.as_mut_ptr()) };
        if ret != 0 {
            return 0;
        }
        vec.iter().filter(|&&b| b & 1 != 0).count() * page
    }

    /// Hand buffer `bid` back to the kernel.
    pub(super) fn give_back(&mut self, bid: u16) {
        let bid = bid & (self.count - 1);
        self.lent_bits[usize::from(bid) / 64] &= !(1 << (bid % 64));
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
        // SAFETY: allocated and mapped in `new` with these sizes; the driver drops the ring
        // only when no operation that could select a buffer is pending (otherwise `leak` is
        // set).
        unsafe {
            std::alloc::dealloc(self.entries.cast(), self.entries_layout);
            libc::munmap(self.data.cast(), self.data_bytes);
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
        ring.lend(3);
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

    /// Write buffer `bid` through, as the kernel does when a receive selects it.
    fn fill(ring: &BufRing, bid: u16, byte: u8) {
        let size = ring.size as usize;
        // SAFETY: `bid < count`, so the range is inside the data mapping; no reference into it
        // is alive.
        unsafe { std::ptr::write_bytes(ring.data.add(usize::from(bid) * size), byte, size) };
    }

    #[test]
    fn trimming_returns_the_memory_of_every_buffer_not_lent_and_keeps_the_lent_bytes() {
        const SIZE: u32 = 16 * 1024;
        let mut ring = BufRing::new(128, SIZE).expect("ring");
        assert_eq!(ring.resident_bytes(), 0, "nothing is touched up front");
        while ring.grow() {}
        // A storm: every buffer filled once, three still held by connections.
        for bid in 0..128 {
            fill(&ring, bid, bid as u8);
            ring.lend(bid);
        }
        assert!(ring.touched());
        assert_eq!(ring.resident_bytes(), 128 * SIZE as usize);
        for bid in 0..128 {
            if ![5, 6, 100].contains(&bid) {
                ring.give_back(bid);
            }
        }
        assert_eq!(ring.lent, 3);
        let released = ring.trim();
        assert_eq!(released, 125 * SIZE as usize);
        assert!(!ring.touched());
        assert_eq!(
            ring.resident_bytes(),
            3 * SIZE as usize,
            "only the lent buffers stay resident"
        );
        for bid in [5u16, 6, 100] {
            assert!(
                ring.bytes(bid, 0, SIZE).iter().all(|&b| b == bid as u8),
                "buffer {bid} kept its bytes"
            );
        }
        // A trimmed buffer is usable again: it reads as zero and takes memory when written.
        assert!(ring.bytes(7, 0, SIZE).iter().all(|&b| b == 0));
        fill(&ring, 7, 0xab);
        assert_eq!(ring.resident_bytes(), 4 * SIZE as usize);
        for bid in [5, 6, 100] {
            ring.give_back(bid);
        }
        ring.trim();
        assert_eq!(ring.resident_bytes(), 0, "the load passed: nothing stays");
        assert_eq!(ring.free(), 128, "trimming takes no buffer out of the ring");
    }

    #[test]
    fn byte_ranges_are_clamped_to_the_buffer() {
        let ring = BufRing::new(2, 64).expect("ring");
        assert_eq!(ring.bytes(1, 0, 64).len(), 64);
        assert_eq!(ring.bytes(1, 60, 1000).len(), 4);
        assert_eq!(ring.bytes(1, 70, 10).len(), 0);
    }
}
