//! `Expiries`: when the tokens of one shard's connections expire, earliest first, so the shard
//! closes each connection (4001) at its token's expiry unless a `refresh` replaced the token.
//! An entry goes stale when its connection refreshed or closed; the caller checks each expired
//! entry against the connection's current token before acting.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::conn::ConnId;

/// Token expiries (seconds since the Unix epoch) of one shard's connections.
#[derive(Debug, Default)]
pub struct Expiries {
    heap: BinaryHeap<Reverse<(u64, ConnId)>>,
}

impl Expiries {
    /// Record that `conn`'s token expires at `exp`.
    pub fn push(&mut self, exp: u64, conn: ConnId) {
        self.heap.push(Reverse((exp, conn)));
    }

    /// The earliest recorded expiry.
    pub fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((exp, _))| *exp)
    }

    /// Move the entries at or before `now_secs` to `out`, in expiry order.
    pub fn take_expired(&mut self, now_secs: u64, out: &mut Vec<(u64, ConnId)>) {
        while let Some(&Reverse((exp, id))) = self.heap.peek() {
            if exp > now_secs {
                break;
            }
            self.heap.pop();
            out.push((exp, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_come_out_in_expiry_order_and_later_ones_stay() {
        let mut e = Expiries::default();
        let (a, b, c) = (
            ConnId::new(0, 1, 0),
            ConnId::new(0, 2, 0),
            ConnId::new(0, 3, 0),
        );
        e.push(30, a);
        e.push(10, b);
        e.push(20, c);
        assert_eq!(e.next(), Some(10));
        let mut out = Vec::new();
        e.take_expired(20, &mut out);
        assert_eq!(out, vec![(10, b), (20, c)]);
        assert_eq!(e.next(), Some(30));
        out.clear();
        e.take_expired(29, &mut out);
        assert!(out.is_empty());
    }
}
