//! The lookup-table UTF-8 check, written once over a small vector trait and instantiated per ISA
//! (`avx2.rs`, `avx512.rs`, `neon.rs`).
//!
//! Every error in UTF-8 shows in a pair of adjacent bytes, except a missing or extra third or
//! fourth byte. So for each byte position, with `prev1` the byte before it:
//! ```text
//! pair  = T1[prev1 >> 4] & T2[prev1 & 15] & T3[byte >> 4]   // three 16-entry byte shuffles
//! must  = prev2 >= 0xE0 || prev3 >= 0xF0                    // byte must be a 3rd/4th byte
//! error |= pair ^ (must ? 0x80 : 0)                          // bit 7 of pair: cont after cont
//! ```
//! Each bit of the tables is one class of bad pairs, a product of three nibble sets (below); bit 7
//! marks "continuation after continuation", which is right exactly where `must` holds. A block
//! that ends inside a code point leaves `incomplete` set; the next block must continue it (the
//! pair rules catch a missing continuation) or, if the input ends, that is an error. All-ASCII
//! blocks skip the tables. On an error the checked group is handed to the scalar validator,
//! which finds the exact offset (`#[cold]`).

use super::scalar;

/// The vector operations the check needs; `#[inline(always)]` in every implementation so that
/// they inline into the `#[target_feature]` entry points of each ISA.
///
/// # Safety
/// Every method is `unsafe` for one reason: the CPU must support the implementing ISA. `load`
/// and `store` also need `BYTES` readable (writable) bytes at the pointer.
pub(crate) trait Vector: Copy {
    /// Bytes per vector.
    const BYTES: usize;
    unsafe fn load(src: *const u8) -> Self;
    unsafe fn store(self, dst: *mut u8);
    unsafe fn splat(b: u8) -> Self;
    /// The 4-byte key repeated across the vector.
    unsafe fn splat_key(key: [u8; 4]) -> Self;
    /// A 16-entry table repeated in every 128-bit lane.
    unsafe fn table(t: &[u8; 16]) -> Self;
    /// `self[idx[i]]` per byte, for `idx` bytes in 0..16, within each 128-bit lane.
    unsafe fn lookup(self, idx: Self) -> Self;
    unsafe fn and(self, o: Self) -> Self;
    unsafe fn or(self, o: Self) -> Self;
    unsafe fn xor(self, o: Self) -> Self;
    unsafe fn saturating_sub(self, o: Self) -> Self;
    /// Every byte shifted right by 4.
    unsafe fn high_nibbles(self) -> Self;
    /// The stream one byte earlier: byte `i` is `self[i - 1]`, taken from the end of `prev` for
    /// `i < 1`; `prev2` and `prev3` likewise two and three bytes earlier.
    unsafe fn prev1(self, prev: Self) -> Self;
    unsafe fn prev2(self, prev: Self) -> Self;
    unsafe fn prev3(self, prev: Self) -> Self;
    /// No byte has its top bit set.
    unsafe fn is_ascii(self) -> bool;
    unsafe fn is_zero(self) -> bool;
}

// One bit per class of bad byte pairs (first byte's high and low nibble, second byte's high).
const TOO_SHORT: u8 = 1 << 0; // lead byte, then ASCII or another lead byte
const TOO_LONG: u8 = 1 << 1; // ASCII, then a continuation
const OVERLONG_3: u8 = 1 << 2; // E0, then 80..9F
const TOO_LARGE: u8 = 1 << 3; // F4..FF, then 90..BF
const SURROGATE: u8 = 1 << 4; // ED, then A0..BF
const OVERLONG_2: u8 = 1 << 5; // C0 or C1, then a continuation
const OVERLONG_4_OR_TOO_LARGE: u8 = 1 << 6; // F0 or F5..FF, then 80..8F
const TWO_CONTS: u8 = 1 << 7; // continuation, then continuation

/// A class: the nibble sets (bit n = nibble n allowed) of the first byte's high and low nibble
/// and the second byte's high nibble.
struct Class {
    bit: u8,
    high1: u16,
    low1: u16,
    high2: u16,
}

const fn nibbles(lo: u16, hi: u16) -> u16 {
    let mut set = 0;
    let mut n = lo;
    while n <= hi {
        set |= 1 << n;
        n += 1;
    }
    set
}

const ANY: u16 = 0xFFFF;
const ASCII: u16 = nibbles(0x0, 0x7);
const CONT: u16 = nibbles(0x8, 0xB);
const LEAD: u16 = nibbles(0xC, 0xF);

const CLASSES: [Class; 8] = [
    Class {
        bit: TOO_SHORT,
        high1: LEAD,
        low1: ANY,
        high2: ASCII | LEAD,
    },
    Class {
        bit: TOO_LONG,
        high1: ASCII,
        low1: ANY,
        high2: CONT,
    },
    Class {
        bit: OVERLONG_3,
        high1: nibbles(0xE, 0xE),
        low1: nibbles(0x0, 0x0),
        high2: nibbles(0x8, 0x9),
    },
    Class {
        bit: TOO_LARGE,
        high1: nibbles(0xF, 0xF),
        low1: nibbles(0x4, 0xF),
        high2: nibbles(0x9, 0xB),
    },
    Class {
        bit: SURROGATE,
        high1: nibbles(0xE, 0xE),
        low1: nibbles(0xD, 0xD),
        high2: nibbles(0xA, 0xB),
    },
    Class {
        bit: OVERLONG_2,
        high1: nibbles(0xC, 0xC),
        low1: nibbles(0x0, 0x1),
        high2: CONT,
    },
    Class {
        bit: OVERLONG_4_OR_TOO_LARGE,
        high1: nibbles(0xF, 0xF),
        low1: nibbles(0x0, 0x0) | nibbles(0x5, 0xF),
        high2: nibbles(0x8, 0x8),
    },
    Class {
        bit: TWO_CONTS,
        high1: CONT,
        low1: ANY,
        high2: CONT,
    },
];

/// Which nibble of the pair a table is indexed by.
#[derive(Clone, Copy)]
enum Part {
    High1,
    Low1,
    High2,
}

const fn build(part: Part) -> [u8; 16] {
    let mut t = [0u8; 16];
    let mut n = 0;
    while n < 16 {
        let mut c = 0;
        while c < CLASSES.len() {
            let set = match part {
                Part::High1 => CLASSES[c].high1,
                Part::Low1 => CLASSES[c].low1,
                Part::High2 => CLASSES[c].high2,
            };
            if set & (1 << n) != 0 {
                t[n] |= CLASSES[c].bit;
            }
            c += 1;
        }
        n += 1;
    }
    t
}

const HIGH1: [u8; 16] = build(Part::High1);
const LOW1: [u8; 16] = build(Part::Low1);
const HIGH2: [u8; 16] = build(Part::High2);

/// `byte > INCOMPLETE[i]` in the last three positions means the block ends inside a code point:
/// a lead byte of 2+ bytes last, of 3+ bytes second to last, of 4 bytes third to last. The
/// vector is the last `BYTES` of this array.
static INCOMPLETE: [u8; 64] = {
    let mut a = [0xFF; 64];
    a[61] = 0xEF;
    a[62] = 0xDF;
    a[63] = 0xBF;
    a
};

/// The check's state between blocks.
struct Check<V> {
    high1: V,
    low1: V,
    high2: V,
    low_nibble: V,
    third: V,
    fourth: V,
    bit7: V,
    incomplete_max: V,
    /// The previous block (its last 3 bytes matter).
    prev: V,
    /// Nonzero if the previous block ended inside a code point.
    incomplete: V,
}

impl<V: Vector> Check<V> {
    /// # Safety
    /// The ISA of `V` is supported.
    #[inline(always)]
    unsafe fn new() -> Check<V> {
        // SAFETY: the ISA is supported (caller); `INCOMPLETE` has at least `BYTES` bytes.
        unsafe {
            Check {
                high1: V::table(&HIGH1),
                low1: V::table(&LOW1),
                high2: V::table(&HIGH2),
                low_nibble: V::splat(0x0F),
                third: V::splat(0xE0 - 0x80),
                fourth: V::splat(0xF0 - 0x80),
                bit7: V::splat(0x80),
                incomplete_max: V::load(INCOMPLETE.as_ptr().add(64 - V::BYTES)),
                prev: V::splat(0),
                incomplete: V::splat(0),
            }
        }
    }

    /// The error bits of one non-ASCII block; updates `prev` and `incomplete`.
    ///
    /// # Safety
    /// The ISA of `V` is supported.
    #[inline(always)]
    unsafe fn block(&mut self, input: V) -> V {
        // SAFETY: the ISA is supported (caller); only register operations.
        unsafe {
            let prev1 = input.prev1(self.prev);
            let pair = self
                .high1
                .lookup(prev1.high_nibbles())
                .and(self.low1.lookup(prev1.and(self.low_nibble)))
                .and(self.high2.lookup(input.high_nibbles()));
            let must = input
                .prev2(self.prev)
                .saturating_sub(self.third)
                .or(input.prev3(self.prev).saturating_sub(self.fourth))
                .and(self.bit7);
            self.prev = input;
            self.incomplete = input.saturating_sub(self.incomplete_max);
            pair.xor(must)
        }
    }

    /// Check a group of two vectors; true if it holds an error. A group that is all ASCII only
    /// has to show that the previous one did not end inside a code point.
    ///
    /// # Safety
    /// The ISA of `V` is supported.
    #[inline(always)]
    unsafe fn group(&mut self, a: V, b: V) -> bool {
        // SAFETY: the ISA is supported (caller); only register operations.
        unsafe {
            if a.or(b).is_ascii() {
                let bad = !self.incomplete.is_zero();
                self.incomplete = V::splat(0);
                self.prev = b;
                bad
            } else {
                let e = self.block(a);
                let e = e.or(self.block(b));
                !e.is_zero()
            }
        }
    }

    /// Check one vector; true if it holds an error.
    ///
    /// # Safety
    /// The ISA of `V` is supported.
    #[inline(always)]
    unsafe fn single(&mut self, v: V) -> bool {
        // SAFETY: the ISA is supported (caller); only register operations.
        unsafe {
            if v.is_ascii() {
                let bad = self.ends_incomplete();
                self.after_ascii();
                bad
            } else {
                !self.block(v).is_zero()
            }
        }
    }

    /// The state after ASCII bytes.
    ///
    /// # Safety
    /// The ISA of `V` is supported.
    #[inline(always)]
    unsafe fn after_ascii(&mut self) {
        // SAFETY: the ISA is supported (caller).
        unsafe {
            self.prev = V::splat(0);
            self.incomplete = V::splat(0);
        }
    }

    /// True if the input ended inside a code point.
    ///
    /// # Safety
    /// The ISA of `V` is supported.
    #[inline(always)]
    unsafe fn ends_incomplete(&self) -> bool {
        // SAFETY: the ISA is supported (caller).
        unsafe { !self.incomplete.is_zero() }
    }
}

/// The exact error once the group at `group_start` failed. The bytes before the group passed,
/// so the last code point starting before it (found within 3 bytes back) is a safe place for
/// the scalar validator to start.
#[cold]
#[inline(never)]
fn locate(bytes: &[u8], group_start: usize) -> Result<(), usize> {
    let mut s = group_start.saturating_sub(1);
    let stop = group_start.saturating_sub(4);
    while s > stop && matches!(bytes.get(s), Some(0x80..=0xBF)) {
        s -= 1;
    }
    match scalar::validate(&bytes[s..]) {
        Err(e) => Err(s + e),
        // The error lies before `s`: the vector check let it through. Or the bytes are valid
        // and the check flagged them. Either way the reference is the specification; in debug
        // builds (the tests) the second case is a bug to report.
        Ok(()) => {
            let whole = scalar::validate(bytes);
            debug_assert!(whole.is_err(), "the vector check flagged valid UTF-8");
            whole
        }
    }
}

/// Validate complete UTF-8; `Err` holds the length of the longest valid prefix.
///
/// # Safety
/// The ISA of `V` is supported.
#[inline(always)]
pub(crate) unsafe fn validate<V: Vector>(bytes: &[u8]) -> Result<(), usize> {
    let group = 2 * V::BYTES;
    let len = bytes.len();
    let p = bytes.as_ptr();
    let mut at = 0;
    // Most messages start with ASCII, many are nothing else: skip that prefix before setting up
    // the check (its state after ASCII is its initial state).
    // SAFETY: `at + 4 * BYTES <= len` for each load; the ISA is supported.
    unsafe {
        while at + 2 * group <= len {
            let q = p.add(at);
            let any = V::load(q)
                .or(V::load(q.add(V::BYTES)))
                .or(V::load(q.add(2 * V::BYTES)))
                .or(V::load(q.add(3 * V::BYTES)));
            if !any.is_ascii() {
                break;
            }
            at += 2 * group;
        }
    }
    if at == len {
        return Ok(());
    }
    // SAFETY: the ISA is supported (caller).
    let mut check = unsafe { Check::<V>::new() };
    while at + group <= len {
        // SAFETY: `at + 2 * BYTES <= len`: both vectors are inside `bytes`. The ISA is supported.
        let (a, b) = unsafe { (V::load(p.add(at)), V::load(p.add(at + V::BYTES))) };
        // SAFETY: the ISA is supported.
        if unsafe { a.or(b).is_ascii() } {
            // SAFETY: the ISA is supported.
            if unsafe { check.ends_incomplete() } {
                return locate(bytes, at);
            }
            at += group;
            // An ASCII run: skip it two groups at a time, then resume checking with the state
            // an ASCII byte leaves (any ASCII `prev` acts like zeros in the tables).
            // SAFETY: `at + 4 * BYTES <= len` for each load; the ISA is supported.
            unsafe {
                while at + 2 * group <= len {
                    let q = p.add(at);
                    let any = V::load(q)
                        .or(V::load(q.add(V::BYTES)))
                        .or(V::load(q.add(2 * V::BYTES)))
                        .or(V::load(q.add(3 * V::BYTES)));
                    if !any.is_ascii() {
                        break;
                    }
                    at += 2 * group;
                }
                check.after_ascii();
            }
            continue;
        }
        // SAFETY: the ISA is supported.
        if unsafe { check.group(a, b) } {
            return locate(bytes, at);
        }
        at += group;
    }
    // SAFETY: the ISA is supported.
    unsafe { finish(&mut check, bytes, &bytes[at..], at) }
}

/// The last, partial group (copied into a zero-padded buffer: zeros are ASCII) and the end check.
///
/// # Safety
/// The ISA of `V` is supported.
#[inline(always)]
unsafe fn finish<V: Vector>(
    check: &mut Check<V>,
    bytes: &[u8],
    rest: &[u8],
    at: usize,
) -> Result<(), usize> {
    // SAFETY: the ISA is supported (caller); the buffer holds `2 * BYTES <= 128` bytes.
    unsafe {
        if !rest.is_empty() {
            let mut pad = [0u8; 128];
            pad[..rest.len()].copy_from_slice(rest);
            let a = V::load(pad.as_ptr());
            let b = V::load(pad.as_ptr().add(V::BYTES));
            if check.group(a, b) {
                return locate(bytes, at);
            }
        }
        if check.ends_incomplete() {
            return locate(bytes, at.saturating_sub(2 * V::BYTES));
        }
    }
    Ok(())
}

/// From this length on, the fused pass aligns its stores (measured: below it, the head costs
/// more than the split stores it saves).
const ALIGN_FROM: usize = 4096;

/// Unmask all of `buf` with `key` and validate `buf[..valid_len]`: each group is loaded once,
/// XORed, stored and checked from the same registers. After an error the rest is only unmasked
/// (by `unmask`, the same ISA's unmask kernel).
///
/// Stores that straddle cache lines are slow, so a long payload first takes a head up to the next
/// vector boundary: unmasked by `unmask`, then checked as one vector holding zeros (ASCII) before
/// the head's bytes, which leaves the check in the same state as if it had started at the first
/// byte.
///
/// # Safety
/// The ISA of `V` is supported, and `unmask` runs on it.
#[inline(always)]
pub(crate) unsafe fn unmask_validate<V: Vector>(
    buf: &mut [u8],
    key: [u8; 4],
    valid_len: usize,
    unmask: unsafe fn(&mut [u8], [u8; 4]),
) -> Result<(), usize> {
    let group = 2 * V::BYTES;
    let valid_len = valid_len.min(buf.len());
    // SAFETY: the ISA is supported (caller).
    let mut check = unsafe { Check::<V>::new() };
    let mut at = 0;
    let mut key = key;
    if valid_len >= ALIGN_FROM {
        let head = buf.as_ptr().align_offset(V::BYTES).min(V::BYTES - 1);
        if head > 0 {
            let (h, rest) = buf.split_at_mut(head);
            // SAFETY: `unmask` runs on this CPU (caller).
            unsafe { unmask(h, key) };
            let mut pad = [0u8; 64];
            pad[V::BYTES - head..V::BYTES].copy_from_slice(h);
            // SAFETY: `pad` holds at least `BYTES` bytes; the ISA is supported.
            let bad = unsafe { check.single(V::load(pad.as_ptr())) };
            if bad {
                // SAFETY: as above.
                unsafe { unmask(rest, crate::mask::rotate(key, head)) };
                return locate(&buf[..valid_len], 0);
            }
            at = head;
            key = crate::mask::rotate(key, head);
        }
    }
    // SAFETY: the ISA is supported (caller).
    let k = unsafe { V::splat_key(key) };
    let start = at;
    // Two groups per turn; all-ASCII pairs of groups (the common case) skip the tables.
    while at + 2 * group <= valid_len {
        // SAFETY: `at + 4 * BYTES <= valid_len <= buf.len()`: the four vectors are inside `buf`;
        // the ISA is supported.
        let bad_at = unsafe {
            let p = buf.as_mut_ptr().add(at);
            let a = V::load(p).xor(k);
            let b = V::load(p.add(V::BYTES)).xor(k);
            let c = V::load(p.add(2 * V::BYTES)).xor(k);
            let d = V::load(p.add(3 * V::BYTES)).xor(k);
            a.store(p);
            b.store(p.add(V::BYTES));
            c.store(p.add(2 * V::BYTES));
            d.store(p.add(3 * V::BYTES));
            if a.or(b).or(c.or(d)).is_ascii() {
                let bad = check.ends_incomplete();
                check.after_ascii();
                bad.then_some(at)
            } else if check.group(a, b) {
                Some(at)
            } else if check.group(c, d) {
                Some(at + group)
            } else {
                None
            }
        };
        at += 2 * group;
        if let Some(group_start) = bad_at {
            // SAFETY: `unmask` runs on this CPU (caller); whole groups keep the key phase.
            unsafe { unmask(&mut buf[at..], key) };
            return locate(&buf[..valid_len], group_start);
        }
    }
    while at + group <= valid_len {
        // SAFETY: `at + 2 * BYTES <= valid_len <= buf.len()`, so both vectors are inside `buf`;
        // the ISA is supported.
        let bad = unsafe {
            let p = buf.as_mut_ptr().add(at);
            let a = V::load(p).xor(k);
            let b = V::load(p.add(V::BYTES)).xor(k);
            a.store(p);
            b.store(p.add(V::BYTES));
            check.group(a, b)
        };
        at += group;
        if bad {
            // SAFETY: `unmask` runs on this CPU (caller); whole groups keep the key phase.
            unsafe { unmask(&mut buf[at..], key) };
            return locate(&buf[..valid_len], at - group);
        }
    }
    debug_assert_eq!((at - start) % 4, 0);
    // Fewer than `group + 3` bytes are left: the inlined short unmask beats a call. Whole groups
    // since `start` keep `key` paired with `buf[at]`.
    // SAFETY: `unmask` runs on this CPU and the ISA is supported (caller).
    unsafe {
        unmask(&mut buf[at..], key);
        finish(&mut check, &buf[..valid_len], &buf[at..valid_len], at)
    }
}
