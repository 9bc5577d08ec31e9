//! Where things live in a Redis Cluster (`--broker redis-cluster://`): the hash slot of a key or
//! sharded channel (CRC16-XMODEM of the key, or of its `{hash tag}`, modulo 16,384, as Redis
//! computes it), the [`PARTITIONS`] that gateway channels fold into, and the slot map learnt
//! from `CLUSTER SLOTS`.
//!
//! Why partitions: a sharded subscription (`SSUBSCRIBE`) per gateway channel would cost one
//! subscription per channel and node on the cluster, and channel names alone would leave where
//! they land to chance. Instead a channel hashes (FNV-1a with a finalizer, stable across
//! processes) into one of [`PARTITIONS`] partitions; partition `i` is the sharded channel
//! `gw:s:{TAG}` whose tag is the shortest string over `0-9a-z` that hashes to slot
//! `i * SLOT_STEP`, so the partitions sit on evenly spaced slots and split between masters in
//! proportion to the slot ranges they own, whatever those ranges are. 1,024 partitions: a node
//! with a few channels receives about a thousandth of the traffic of channels it does not
//! carry, resubscribing every partition after a reconnect is 1,024 commands at most, and each
//! partition keeps a spacing of 16 slots (a master owning as few as 1/64 of the slots still gets
//! its share within one partition).
//!
//! A channel's presence hashes carry its partition's tag too (`gw:p:{TAG}CHANNEL:NODE`), so
//! they live on the master that carries the channel's topic.

use std::sync::OnceLock;

use crate::router::owner_hash;

use super::resp::Value;
use super::spread::mix;

/// Hash slots in a Redis Cluster.
pub const SLOTS: usize = 16_384;
/// Partitions that channels fold into. See the module doc for why this many.
pub const PARTITIONS: usize = 1024;
/// Slots between the slots of two consecutive partitions.
pub const SLOT_STEP: usize = SLOTS / PARTITIONS;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), the checksum behind Redis's hash slots.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key or sharded channel: of the text between the first `{` and the first
/// `}` after it when that is not empty, else of the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = memchr::memchr(b'{', key).and_then(|open| {
        let rest = &key[open + 1..];
        memchr::memchr(b'}', rest)
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// The partition a gateway channel folds into.
pub fn partition_of(channel: &str) -> usize {
    (mix(owner_hash(channel)) % PARTITIONS as u64) as usize
}

/// The hash tag of every partition, found once (about a hundred thousand CRCs).
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut found: Vec<Option<String>> = vec![None; PARTITIONS];
        let mut missing = PARTITIONS;
        let mut tag = Vec::new();
        // Every string of length 1, then 2, ..., in alphabet order, until every evenly spaced
        // slot has its shortest tag (length 4 suffices: 36^4 strings over 16,384 slots).
        'lengths: for len in 1..=5usize {
            let count = ALPHABET.len().pow(len as u32);
            for mut n in 0..count {
                tag.clear();
                for _ in 0..len {
                    tag.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let slot = usize::from(crc16(&tag)) % SLOTS;
                if slot % SLOT_STEP == 0 && found[slot / SLOT_STEP].is_none() {
                    found[slot / SLOT_STEP] = Some(String::from_utf8_lossy(&tag).into_owned());
                    missing -= 1;
                    if missing == 0 {
                        break 'lengths;
                    }
                }
            }
        }
        found.into_iter().map(|t| t.unwrap_or_default()).collect()
    })
}

/// The hash tag of partition `p` (without braces).
pub fn tag(p: usize) -> &'static str {
    &tags()[p % PARTITIONS]
}

/// The slot of partition `p`.
pub fn partition_slot(p: usize) -> u16 {
    ((p % PARTITIONS) * SLOT_STEP) as u16
}

/// The sharded channel of partition `p`: `gw:s:{TAG}`.
pub fn partition_topic(p: usize) -> String {
    format!("gw:s:{{{}}}", tag(p))
}

/// The sharded channel that carries gateway channel `channel`.
pub fn topic_of(channel: &str) -> String {
    partition_topic(partition_of(channel))
}

/// Where node `node`'s presence hash of `channel` lives on a cluster: on its partition's slot.
pub fn presence_key(channel: &str, node: &str) -> String {
    format!("gw:p:{{{}}}{channel}:{node}", tag(partition_of(channel)))
}

/// The slot map: which master (by index into a list of addresses) serves each slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    owner: Vec<Option<u16>>,
    /// The masters' `host:port`, in the order first seen.
    pub masters: Vec<String>,
}

impl Default for SlotMap {
    fn default() -> SlotMap {
        SlotMap {
            owner: vec![None; SLOTS],
            masters: Vec::new(),
        }
    }
}

impl SlotMap {
    /// The map in a `CLUSTER SLOTS` answer: per range `[start, end, [host, port, id, ...],
    /// replicas...]`. `None` for anything else (an error, a malformed answer, no range).
    pub fn from_cluster_slots(v: &Value) -> Option<SlotMap> {
        let Value::Array(Some(ranges)) = v else {
            return None;
        };
        let mut map = SlotMap::default();
        for r in ranges {
            let Value::Array(Some(items)) = r else {
                return None;
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(Some(m)))) =
                (items.first(), items.get(1), items.get(2))
            else {
                return None;
            };
            let host = m.first().and_then(Value::bytes)?;
            let Some(Value::Int(port)) = m.get(1) else {
                return None;
            };
            let (start, end) = (usize::try_from(*start).ok()?, usize::try_from(*end).ok()?);
            if start > end || end >= SLOTS || !(1..=65_535).contains(port) {
                return None;
            }
            let addr = format!("{}:{port}", String::from_utf8_lossy(host));
            let i = match map.masters.iter().position(|a| *a == addr) {
                Some(i) => i,
                None => {
                    map.masters.push(addr);
                    map.masters.len() - 1
                }
            };
            for s in &mut map.owner[start..=end] {
                *s = Some(i as u16);
            }
        }
        (!map.masters.is_empty()).then_some(map)
    }

    /// The address of the master that serves `slot`, if any does.
    pub fn owner(&self, slot: u16) -> Option<&str> {
        let i = (*self.owner.get(usize::from(slot))?)?;
        self.masters.get(usize::from(i)).map(String::as_str)
    }

    /// Record that `addr` serves `slot` (a `-MOVED` answer).
    pub fn moved(&mut self, slot: u16, addr: &str) {
        let i = match self.masters.iter().position(|a| a == addr) {
            Some(i) => i,
            None => {
                self.masters.push(addr.to_owned());
                self.masters.len() - 1
            }
        };
        if let Some(s) = self.owner.get_mut(usize::from(slot)) {
            *s = Some(i as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::spread::tests::names;

    #[test]
    fn crc16_and_slots_match_redis() {
        // The CRC16-XMODEM check value, and `CLUSTER KEYSLOT` answers of Redis 7.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b""), 0);
        // Hash tags: the first `{...}` with something inside.
        assert_eq!(key_slot(b"{foo}.x"), key_slot(b"foo"));
        assert_eq!(key_slot(b"a{foo}{bar}"), key_slot(b"foo"));
        assert_eq!(key_slot(b"a{}{foo}"), crc16(b"a{}{foo}") % 16384);
        assert_eq!(key_slot(b"a{foo"), crc16(b"a{foo") % 16384);
    }

    #[test]
    fn partitions_sit_on_evenly_spaced_slots_with_short_tags() {
        for p in 0..PARTITIONS {
            let t = tag(p);
            assert!((1..=4).contains(&t.len()), "partition {p}: {t:?}");
            assert_eq!(key_slot(t.as_bytes()), partition_slot(p), "partition {p}");
            assert_eq!(key_slot(partition_topic(p).as_bytes()), partition_slot(p));
        }
        let c = "chat:{weird}:name";
        let p = partition_of(c);
        assert_eq!(topic_of(c), partition_topic(p));
        assert_eq!(
            key_slot(presence_key(c, "7").as_bytes()),
            partition_slot(p),
            "presence lives with the topic"
        );
    }

    /// 1,000 random channel names over the partitions, and over the masters of a 3-master
    /// cluster as `redis-cli --cluster create` splits the slots (0-5460, 5461-10922,
    /// 10923-16383).
    #[test]
    fn channels_spread_over_partitions_and_over_three_masters() {
        let mut per_partition = vec![0usize; PARTITIONS];
        let mut per_master = [0usize; 3];
        let ranges = [(0u16, 5460u16), (5461, 10922), (10923, 16383)];
        for c in names(1000) {
            let p = partition_of(&c);
            per_partition[p] += 1;
            let slot = partition_slot(p);
            let m = ranges
                .iter()
                .position(|(a, b)| (*a..=*b).contains(&slot))
                .unwrap();
            per_master[m] += 1;
        }
        let max = per_partition.iter().max().unwrap();
        let used = per_partition.iter().filter(|&&n| n > 0).count();
        assert!(*max <= 6, "at most a handful per partition: {max}");
        assert!(used > 600, "1,000 names use most partitions: {used}");
        let (max, min) = (
            per_master.iter().max().unwrap(),
            per_master.iter().min().unwrap(),
        );
        assert!(
            *max as f64 / *min as f64 <= 1.2,
            "even over masters: {per_master:?}"
        );
        // Partitions themselves split exactly by slot range.
        let mut parts = [0usize; 3];
        for p in 0..PARTITIONS {
            let slot = partition_slot(p);
            parts[ranges
                .iter()
                .position(|(a, b)| (*a..=*b).contains(&slot))
                .unwrap()] += 1;
        }
        assert_eq!(parts, [342, 341, 341]);
    }

    #[test]
    fn cluster_slots_answers_become_a_map_and_bad_ones_are_refused() {
        let int = Value::Int;
        let bulk = |s: &str| Value::Bulk(Some(s.as_bytes().to_vec()));
        let node = |port: i64| Value::Array(Some(vec![bulk("127.0.0.1"), int(port), bulk("id")]));
        let range = |a: i64, b: i64, port: i64| {
            Value::Array(Some(vec![int(a), int(b), node(port), node(port + 1000)]))
        };
        let v = Value::Array(Some(vec![
            range(0, 99, 7000),
            range(100, 16383, 7001),
            range(50, 60, 7000),
        ]));
        let mut map = SlotMap::from_cluster_slots(&v).unwrap();
        assert_eq!(map.masters, vec!["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert_eq!(map.owner(0), Some("127.0.0.1:7000"));
        assert_eq!(map.owner(100), Some("127.0.0.1:7001"));
        assert_eq!(map.owner(16383), Some("127.0.0.1:7001"));
        map.moved(100, "127.0.0.1:7002");
        assert_eq!(map.owner(100), Some("127.0.0.1:7002"));
        assert_eq!(map.owner(20000), None);
        for bad in [
            Value::Error(b"ERR This instance has cluster support disabled".to_vec()),
            Value::Array(Some(vec![])),
            Value::Array(Some(vec![range(5, 3, 7000)])),
            Value::Array(Some(vec![range(0, 16384, 7000)])),
            Value::Array(Some(vec![range(0, 1, 0)])),
            Value::Array(Some(vec![int(3)])),
        ] {
            assert_eq!(SlotMap::from_cluster_slots(&bad), None, "{bad:?}");
        }
    }
}
