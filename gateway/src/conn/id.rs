//! `ConnId`: the name of one connection anywhere in a cluster of nodes, and the slab that hands
//! them out.
//!
//! An id packs, from the top, the shard index (8 bits), the node id (16 bits, `--node-id`), a
//! generation (16 bits) and the slab slot (24 bits) into a `u64`. Any node routes an id in O(1):
//! the node bits name the node (reached through the broker), the shard bits the shard, and the
//! slot is one index into that shard's slab; an id whose generation no longer matches the slot's
//! (the connection closed and the slot was reused) is stale and finds nothing.

/// A connection id: shard, node, generation and slot packed into one `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// Bits of the generation counter; it wraps after 2^16 reuses of one slot.
const GEN_BITS: u32 = 16;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;
/// Bits of the slot: 2^24 connections per shard.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// Bits of the node id.
const NODE_BITS: u32 = 16;
const NODE_SHIFT: u32 = GEN_BITS + SLOT_BITS;
const SHARD_SHIFT: u32 = NODE_SHIFT + NODE_BITS;

/// Slots one shard's slab can hand out (the slot field's range).
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;

impl ConnId {
    /// Shard index reserved for ids that name no connection (listeners, wakers).
    pub const RESERVED_SHARD: u8 = u8::MAX;

    /// Pack an id on node 0. `gen` is truncated to 16 bits, `slot` to 24.
    pub fn new(shard: u8, slot: u32, gen: u32) -> ConnId {
        ConnId::on_node(0, shard, slot, gen)
    }

    /// Pack an id on node `node`. `gen` is truncated to 16 bits, `slot` to 24.
    pub fn on_node(node: u16, shard: u8, slot: u32, gen: u32) -> ConnId {
        ConnId(
            (u64::from(shard) << SHARD_SHIFT)
                | (u64::from(node) << NODE_SHIFT)
                | (u64::from(gen & GEN_MASK) << SLOT_BITS)
                | u64::from(slot & SLOT_MASK),
        )
    }

    /// The shard that owns the connection.
    pub fn shard(self) -> u8 {
        (self.0 >> SHARD_SHIFT) as u8
    }

    /// The node that owns the connection.
    pub fn node(self) -> u16 {
        (self.0 >> NODE_SHIFT) as u16
    }

    /// The slot in the shard's slab.
    pub fn slot(self) -> u32 {
        self.0 as u32 & SLOT_MASK
    }

    /// The slot's generation when the id was issued.
    pub fn generation(self) -> u32 {
        (self.0 >> SLOT_BITS) as u32 & GEN_MASK
    }

    /// The raw bits (for a driver token).
    pub fn to_bits(self) -> u64 {
        self.0
    }

    /// An id from raw bits (a driver token).
    pub fn from_bits(bits: u64) -> ConnId {
        ConnId(bits)
    }
}

/// A connection id that is not the decimal text of a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadConnId;

impl std::str::FromStr for ConnId {
    type Err = BadConnId;

    /// The wire form clients and backends see: the id's bits as a decimal string (a JSON number
    /// would lose precision past 2^53). Digits only: no sign, no spaces, at most 20 of them.
    fn from_str(text: &str) -> Result<ConnId, BadConnId> {
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadConnId);
        }
        text.parse::<u64>()
            .map(ConnId::from_bits)
            .map_err(|_| BadConnId)
    }
}

/// The log form, `node/shard:slot.generation` (the wire form is [`ConnId::to_bits`] in decimal).
impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}:{}.{}",
            self.node(),
            self.shard(),
            self.slot(),
            self.generation()
        )
    }
}

/// A value a [`Slab`] holds. It keeps its slot's generation itself, in bytes its layout leaves
/// free, so that a slot is no larger than the value (a separate generation field would add a
/// padded word to every connection).
pub trait Slotted {
    /// The generation of the slot holding it.
    fn generation(&self) -> u16;
    /// Set by the slab when it is stored.
    fn set_generation(&mut self, generation: u16);
}

/// One slot: a live value (which knows its generation), or a free slot's last generation.
enum Slot<T> {
    Live(T),
    Free(u16),
}

impl<T: Slotted> Slot<T> {
    fn generation(&self) -> u16 {
        match self {
            Slot::Live(v) => v.generation(),
            Slot::Free(g) => *g,
        }
    }

    /// The live value, if its generation is `generation`.
    fn live(&mut self, generation: u32) -> Option<&mut T> {
        match self {
            Slot::Live(v) if u32::from(v.generation()) == generation => Some(v),
            _ => None,
        }
    }
}

/// A slab of connections addressed by [`ConnId`]: O(1) insert, lookup and removal, with stale ids
/// detected by generation. Freed slots are reused last-in first-out (their memory is warm).
pub struct Slab<T> {
    node: u16,
    shard: u8,
    entries: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T: Slotted> Slab<T> {
    /// Bytes one slot takes (the value's own size when its layout has room for the
    /// generation and a niche for the free state).
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot<T>>();

    /// An empty slab for shard `shard` on node 0.
    pub fn new(shard: u8) -> Slab<T> {
        Slab::on_node(0, shard)
    }

    /// An empty slab for shard `shard` of node `node`.
    pub fn on_node(node: u16, shard: u8) -> Slab<T> {
        Slab {
            node,
            shard,
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Store `value`; returns its id, or gives the value back when every one of the
    /// [`MAX_SLOTS`] slots is live.
    pub fn insert(&mut self, mut value: T) -> Result<ConnId, T> {
        if let Some(slot) = self.free.pop() {
            if let Some(e) = self.entries.get_mut(slot as usize) {
                self.len += 1;
                // 16 bits: wrapping is `GEN_MASK`.
                let generation = e.generation().wrapping_add(1);
                value.set_generation(generation);
                *e = Slot::Live(value);
                let generation = u32::from(generation);
                return Ok(ConnId::on_node(self.node, self.shard, slot, generation));
            }
        }
        if self.entries.len() >= MAX_SLOTS {
            return Err(value);
        }
        self.len += 1;
        let slot = self.entries.len() as u32;
        value.set_generation(0);
        self.entries.push(Slot::Live(value));
        Ok(ConnId::on_node(self.node, self.shard, slot, 0))
    }

    /// Whether `id` names this slab's node and shard.
    fn owns(&self, id: ConnId) -> bool {
        id.shard() == self.shard && id.node() == self.node
    }

    /// The entry `id` names, or `None` if it is stale or from another shard.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        if !self.owns(id) {
            return None;
        }
        self.entries
            .get_mut(id.slot() as usize)?
            .live(id.generation())
    }

    /// The id of the value in slot `slot`, if the slot holds one.
    pub fn id_at(&self, slot: u32) -> Option<ConnId> {
        match self.entries.get(slot as usize)? {
            Slot::Live(v) => {
                let generation = u32::from(v.generation());
                Some(ConnId::on_node(self.node, self.shard, slot, generation))
            }
            Slot::Free(_) => None,
        }
    }

    /// Whether `id` names a live entry.
    pub fn contains(&self, id: ConnId) -> bool {
        self.owns(id)
            && matches!(
                self.entries.get(id.slot() as usize),
                Some(Slot::Live(v)) if u32::from(v.generation()) == id.generation()
            )
    }

    /// Remove and return the entry `id` names, if live.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        if !self.owns(id) {
            return None;
        }
        let e = self.entries.get_mut(id.slot() as usize)?;
        let generation = e.live(id.generation())?.generation();
        let Slot::Live(value) = std::mem::replace(e, Slot::Free(generation)) else {
            return None;
        };
        self.free.push(id.slot());
        self.len -= 1;
        Some(value)
    }

    /// Ids of every live entry (for shutdown, which visits all connections once).
    pub fn ids(&self) -> Vec<ConnId> {
        (0..self.entries.len() as u32)
            .filter_map(|slot| self.id_at(slot))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value for the slab tests: a name and the generation the slab gives it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct V(&'static str, u16);

    impl Slotted for V {
        fn generation(&self) -> u16 {
            self.1
        }
        fn set_generation(&mut self, generation: u16) {
            self.1 = generation;
        }
    }

    fn v(name: &'static str) -> V {
        V(name, u16::MAX)
    }

    #[test]
    fn id_round_trips_its_fields() {
        let id = ConnId::on_node(0xBEEF, 7, 0xAB_CDEF, 0xCDEF);
        assert_eq!(
            (id.node(), id.shard(), id.slot(), id.generation()),
            (0xBEEF, 7, 0xAB_CDEF, 0xCDEF)
        );
        assert_eq!(ConnId::from_bits(id.to_bits()), id);
        assert_eq!(id.to_bits() >> 56, 7, "the shard is the top byte");
    }

    #[test]
    fn fields_are_truncated_to_their_widths() {
        let id = ConnId::on_node(u16::MAX, 1, 0x1FF_FFFF, 0x1_FFFF);
        assert_eq!(id.generation(), 0xFFFF);
        assert_eq!(id.slot(), 0xFF_FFFF);
        assert_eq!((id.shard(), id.node()), (1, u16::MAX));
    }

    #[test]
    fn an_id_of_another_node_finds_nothing() {
        let mut slab = Slab::on_node(5, 0);
        let a = slab.insert(v("1")).unwrap();
        assert_eq!(a.node(), 5);
        let foreign = ConnId::on_node(6, 0, a.slot(), a.generation());
        assert_eq!(slab.get_mut(foreign), None);
        assert!(!slab.contains(foreign));
        assert_eq!(slab.remove(foreign), None);
        assert_eq!(slab.ids(), vec![a]);
    }

    #[test]
    fn reused_slot_makes_old_id_stale() {
        let mut slab = Slab::new(3);
        let a = slab.insert(v("a")).unwrap();
        assert_eq!(slab.remove(a).map(|x| x.0), Some("a"));
        let b = slab.insert(v("b")).unwrap();
        assert_eq!(a.slot(), b.slot(), "the freed slot is reused");
        assert_ne!(a, b);
        assert_eq!(slab.get_mut(a), None, "stale id finds nothing");
        assert_eq!(slab.remove(a), None);
        assert!(!slab.contains(a));
        assert_eq!(slab.get_mut(b).map(|x| x.0), Some("b"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn a_slot_names_its_current_id_only_while_it_is_live() {
        let mut slab = Slab::on_node(2, 4);
        let a = slab.insert(v("a")).unwrap();
        assert_eq!(slab.id_at(a.slot()), Some(a));
        slab.remove(a);
        assert_eq!(slab.id_at(a.slot()), None);
        let b = slab.insert(v("b")).unwrap();
        assert_eq!(slab.id_at(b.slot()), Some(b), "the new generation");
        assert_eq!(slab.id_at(99), None);
    }

    #[test]
    fn generations_wrap_at_sixteen_bits_and_a_stale_id_stays_stale() {
        let mut slab = Slab::new(0);
        let first = slab.insert(v("a")).unwrap();
        let mut last = first;
        for _ in 0..=u16::MAX {
            slab.remove(last);
            last = slab.insert(v("a")).unwrap();
            assert_eq!(last.slot(), first.slot());
        }
        assert_eq!(last.generation(), first.generation(), "2^16 reuses later");
        assert_eq!(slab.get_mut(last).map(|x| x.1), Some(0));
        let stale = ConnId::new(0, first.slot(), 5);
        assert!(slab.get_mut(stale).is_none() && !slab.contains(stale));
        assert_eq!(slab.remove(stale), None);
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn id_from_another_shard_finds_nothing() {
        let mut slab = Slab::new(0);
        let a = slab.insert(v("1")).unwrap();
        let foreign = ConnId::new(1, a.slot(), a.generation());
        assert_eq!(slab.get_mut(foreign), None);
        assert_eq!(slab.ids(), vec![a]);
    }

    #[test]
    fn ids_parse_from_their_decimal_wire_form_only() {
        let id = ConnId::new(3, 77, 5);
        assert_eq!(id.to_bits().to_string().parse::<ConnId>(), Ok(id));
        assert_eq!(
            u64::MAX.to_string().parse::<ConnId>(),
            Ok(ConnId::from_bits(u64::MAX))
        );
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "0x10",
            "1.0",
            "18446744073709551616",
            "3:77.5",
        ] {
            assert_eq!(bad.parse::<ConnId>(), Err(BadConnId), "{bad:?}");
        }
    }
}
