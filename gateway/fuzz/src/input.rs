//! Reading a fuzzer input: parameters from the front, then the bytes a peer sends, cut into
//! reads at points the input chooses. Reads past the end give zeros, so every input is valid.

/// The fuzzer input, consumed from the front.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// All of `bytes`, unread.
    pub fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// One of `choices`, picked by the next byte.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.byte()) % choices.len()]
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        taken
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// A read size from one byte: 1 to 24 bytes one at a time (header and UTF-8 boundaries), then
/// coarser steps up to a few KiB, and 255 for everything that is left.
pub fn read_size(b: u8) -> usize {
    match b {
        0..=23 => usize::from(b) + 1,
        24..=127 => usize::from(b - 23) * 8,
        128..=254 => usize::from(b - 127) * 64,
        255 => usize::MAX,
    }
}

/// One step of a script driving a sans-IO state machine: each op byte is a read of
/// [`read_size`] bytes or one of the other inputs a shard hands a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Feed the next `n` bytes of the stream.
    Read(usize),
    /// Move the clock to the connection's deadline (plus `late` seconds) and fire it.
    Deadline {
        /// Seconds past the deadline.
        late: u8,
    },
    /// Move the clock forward by `secs` seconds and fire the timer, due or not.
    Wait {
        /// Seconds.
        secs: u8,
    },
    /// The server shuts down.
    Shutdown,
    /// Something above the connection asks it to close (a slow consumer, a backend disconnect,
    /// an outcome the API connection waits for); the argument chooses the details.
    Other(u8),
    /// The peer's end of stream.
    PeerEof,
}

impl Op {
    /// The op two input bytes name: a kind and its argument. Half the kinds are reads, so the
    /// stream moves on.
    pub fn from_bytes(kind: u8, arg: u8) -> Op {
        match kind % 10 {
            0..=4 => Op::Read(read_size(arg)),
            5 => Op::Deadline { late: arg % 4 },
            6 => Op::Wait { secs: arg },
            7 => Op::Shutdown,
            8 => Op::Other(arg),
            _ => Op::PeerEof,
        }
    }

    /// The two bytes that name this op (the inverse of [`Op::from_bytes`], for seeds). A read's
    /// size is rounded down to one [`read_size`] can express.
    pub fn to_bytes(self) -> [u8; 2] {
        match self {
            Op::Read(n) => [
                0,
                (0..=255u8).rev().find(|&b| read_size(b) <= n).unwrap_or(0),
            ],
            Op::Deadline { late } => [5, late],
            Op::Wait { secs } => [6, secs],
            Op::Shutdown => [7, 0],
            Op::Other(arg) => [8, arg],
            Op::PeerEof => [9, 0],
        }
    }
}

/// The script at the front of an input: a count byte, then that many ops of two bytes each.
pub fn script(input: &mut Input<'_>) -> Vec<Op> {
    let n = usize::from(input.byte());
    input
        .take(2 * n)
        .chunks(2)
        .map(|op| Op::from_bytes(op[0], op.get(1).copied().unwrap_or(0)))
        .collect()
}

/// The script bytes for `ops` (for seeds).
pub fn script_bytes(ops: &[Op]) -> Vec<u8> {
    let mut out = vec![u8::try_from(ops.len()).unwrap_or(u8::MAX)];
    for op in ops.iter().take(255) {
        out.extend(op.to_bytes());
    }
    out
}
