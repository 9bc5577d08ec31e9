//! `Merge`: one subscription waiting for its channel's owner, on the subscriber's shard. The
//! subscription is made at once, so live deliveries already flow; until the owner's answer
//! arrives they are held here (at most `limit`), then the answer's replay goes out first and the
//! held ones after it, each offset once and in order.
//!
//! Why it is enough: the owner sends its answer and its later deliveries to this shard on one
//! FIFO queue, so every live delivery after the answer has an offset past the answer's `top`;
//! everything at or below `top` that arrived before it is either in the replay or older than the
//! client's position, and is dropped. When more than `limit` arrive before the answer they are
//! dropped too and the subscription reports the last dropped offset as its position, without
//! recovery: a gap is always told, never hidden.

/// What a finished merge hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged<T> {
    /// The position to report: every publication after it follows (in `items`, then live).
    pub position: u64,
    /// Whether the client's missed publications are all in `items` (the replay was used).
    pub recovered: bool,
    /// What to send after the reply, in order.
    pub items: Vec<T>,
}

/// Live deliveries held for one subscription until the owner answers. See the module doc.
#[derive(Debug)]
pub struct Merge<T> {
    held: Vec<(u64, T)>,
    /// The last offset dropped because `limit` were held already.
    lost_through: Option<u64>,
    limit: usize,
}

impl<T> Merge<T> {
    /// Hold at most `limit` deliveries.
    pub fn new(limit: usize) -> Merge<T> {
        Merge {
            held: Vec::new(),
            lost_through: None,
            limit,
        }
    }

    /// A live delivery at `offset` arrived before the answer.
    pub fn on_live(&mut self, offset: u64, item: T) {
        if self.lost_through.is_some() || self.held.len() >= self.limit {
            // Once one is dropped, later ones would follow a gap: drop them too.
            self.held.clear();
            self.lost_through = Some(self.lost_through.map_or(offset, |l| l.max(offset)));
            return;
        }
        self.held.push((offset, item));
    }

    /// Deliveries held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The owner answered: the stream is at `top`; `replay` is `Some` (publications after the
    /// client's offset up to `top`, in order) when it could recover, else `None`.
    pub fn finish(self, top: u64, replay: Option<Vec<(u64, T)>>) -> Merged<T> {
        if let Some(lost) = self.lost_through.filter(|&l| l > top) {
            return Merged {
                position: lost,
                recovered: false,
                items: Vec::new(),
            };
        }
        let recovered = replay.is_some();
        let mut last = 0;
        let mut items = Vec::with_capacity(self.held.len());
        for (offset, item) in replay.into_iter().flatten() {
            if offset > last {
                last = offset;
                items.push(item);
            }
        }
        last = last.max(top);
        for (offset, item) in self.held {
            if offset > last {
                last = offset;
                items.push(item);
            }
        }
        Merged {
            position: top,
            recovered,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Offsets as items: what the client sees is the list of offsets it got.
    fn live(m: &mut Merge<u64>, offsets: impl IntoIterator<Item = u64>) {
        for o in offsets {
            m.on_live(o, o);
        }
    }

    #[test]
    fn replay_then_held_without_duplicates() {
        let mut m = Merge::new(100);
        live(&mut m, 4..=9);
        let got = m.finish(6, Some((3..=6).map(|o| (o, o)).collect()));
        assert_eq!(got.items, vec![3, 4, 5, 6, 7, 8, 9]);
        assert_eq!((got.position, got.recovered), (6, true));
    }

    #[test]
    fn without_recovery_only_what_follows_the_position() {
        let mut m = Merge::new(100);
        live(&mut m, 5..=8);
        let got = m.finish(6, None);
        assert_eq!((got.items, got.recovered), (vec![7, 8], false));
    }

    #[test]
    fn an_overflow_past_the_position_is_reported_as_a_gap() {
        let mut m = Merge::new(2);
        live(&mut m, 7..=11);
        assert_eq!(m.held(), 0);
        let got = m.finish(6, Some(vec![(6, 6)]));
        assert_eq!((got.position, got.recovered), (11, false));
        assert!(got.items.is_empty());
        // Dropping only offsets the replay covers loses nothing.
        let mut m = Merge::new(1);
        live(&mut m, [5, 6]);
        let got = m.finish(6, Some(vec![(5, 5), (6, 6)]));
        assert_eq!((got.items, got.recovered), (vec![5, 6], true));
    }

    /// One resubscribe, as the owner and the mesh can produce it:
    /// - the stream is at `top` when the owner answers; it keeps offsets `first_kept..=top`;
    /// - the client last saw `since` (maybe newer than `top`: then it cannot recover);
    /// - live deliveries reach the subscription from `live_from` (at most `top + 1`: the
    ///   subscription was made before the owner answered) up to `end`;
    /// - those up to `split` (at least `top`: the owner's queue is FIFO) arrive before the
    ///   answer and are held, the rest after it, delivered as they come.
    #[derive(Debug, Clone)]
    struct Case {
        top: u64,
        first_kept: u64,
        since: u64,
        max_recovery: u64,
        live_from: u64,
        split: u64,
        end: u64,
        limit: usize,
    }

    fn case() -> impl Strategy<Value = Case> {
        (0..40u64, 0..30u64, 1..20usize).prop_flat_map(|(top, extra, limit)| {
            let end = top + extra;
            (1..=top + 1, 0..=top + 3, 1..=top + 2, top..=end, 1..50u64).prop_map(
                move |(live_from, since, first_kept, split, max_recovery)| Case {
                    top,
                    first_kept,
                    since,
                    max_recovery,
                    live_from,
                    split,
                    end,
                    limit,
                },
            )
        })
    }

    /// The owner's decision (the rule `history::Stream::answer` implements).
    fn model_replay(c: &Case) -> Option<Vec<(u64, u64)>> {
        let missed = c.top.saturating_sub(c.since);
        let ok = c.since <= c.top
            && (missed == 0 || c.since + 1 >= c.first_kept)
            && missed <= c.max_recovery;
        ok.then(|| (c.since + 1..=c.top).map(|o| (o, o)).collect())
    }

    proptest! {
        #[test]
        fn the_client_gets_each_offset_after_its_position_once_and_in_order(c in case()) {
            let mut m = Merge::new(c.limit);
            live(&mut m, c.live_from..=c.split);
            let replay = model_replay(&c);
            let could_recover = replay.is_some();
            let merged = m.finish(c.top, replay);
            let mut seen = merged.items.clone();
            seen.extend(c.split + 1..=c.end);
            let held = c.split + 1 - c.live_from;
            let lost = held > c.limit as u64 && c.split > c.top;
            if lost {
                prop_assert!(!merged.recovered);
                prop_assert_eq!(merged.position, c.split);
            } else {
                prop_assert_eq!(merged.recovered, could_recover);
                prop_assert_eq!(merged.position, c.top);
            }
            // Exactly the offsets after the reported start: no gap, no duplicate, in order.
            let start = if merged.recovered { c.since } else { merged.position };
            let want: Vec<u64> = (start + 1..=c.end).collect();
            prop_assert_eq!(seen, want);
        }
    }
}
