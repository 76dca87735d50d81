//! The intake's flow control, as a pure state machine: when the journal has no room, new local
//! messages are *held* (neither journaled nor acknowledged, in receive order) and Mosquitto
//! stops at its in-flight window; beyond [`MAX_HELD_MESSAGES`] / [`MAX_HELD_BYTES`] the intake
//! *parks* (disconnects until the journal has room), because a broker without an in-flight limit
//! would otherwise push its whole queue. Holding ends once the journal is below
//! [`RESUME_FRACTION`] of its limits and [`RESUME_DISK_FACTOR`] × its free-space floor
//! (hysteresis); a lost connection forgets the held messages (Mosquitto redelivers them).
//!
//! Values in (a message and its size, "the journal is full"), actions out ([`Arrival`]); the
//! caller owns the connection and the journal.

use std::collections::VecDeque;

/// Most messages held in memory while the journal has no room; beyond that the intake parks.
pub const MAX_HELD_MESSAGES: usize = 1000;
/// Most payload and topic bytes held in memory; beyond that the intake parks.
pub const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;
/// A held intake takes messages again once the journal is below this fraction of its limits…
pub const RESUME_FRACTION: f64 = 0.5;
/// …and the free disk space is above this multiple of `buffer.minFreeBytes`.
pub const RESUME_DISK_FACTOR: f64 = 1.5;

/// What to do with a message that just arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<P> {
    /// Not holding: journal it.
    Take(P),
    /// Holding: it was kept (unacknowledged) behind the others.
    Held,
    /// Holding, and now too much is held: it was kept, and the intake must disconnect until the
    /// journal has room (reported once per parking).
    Park,
}

/// The hold/park state and the held messages, in receive order, with their sizes.
#[derive(Debug)]
pub struct Hold<P> {
    held: VecDeque<(P, usize)>,
    held_bytes: usize,
    holding: bool,
    parking: bool,
}

impl<P> Default for Hold<P> {
    fn default() -> Self {
        Hold {
            held: VecDeque::new(),
            held_bytes: 0,
            holding: false,
            parking: false,
        }
    }
}

impl<P> Hold<P> {
    /// True while new messages are held back.
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// True while the intake is (or is about to be) disconnected because too much was held.
    pub fn parking(&self) -> bool {
        self.parking
    }

    /// Messages held right now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Payload and topic bytes held right now.
    pub fn bytes(&self) -> usize {
        self.held_bytes
    }

    /// A message of `size` bytes arrived.
    pub fn arrive(&mut self, message: P, size: usize) -> Arrival<P> {
        if !self.holding {
            return Arrival::Take(message);
        }
        self.held_bytes += size;
        self.held.push_back((message, size));
        if !self.parking
            && (self.held.len() > MAX_HELD_MESSAGES || self.held_bytes > MAX_HELD_BYTES)
        {
            self.parking = true;
            return Arrival::Park;
        }
        Arrival::Held
    }

    /// The journal is full (or refuses writes): hold what follows. True when this starts a
    /// hold (count and report it), false when already holding.
    pub fn start(&mut self) -> bool {
        !std::mem::replace(&mut self.holding, true)
    }

    /// The journal refused `message`: it waits at the front, before every other held one, and
    /// the intake holds. True when this starts a hold.
    pub fn refused(&mut self, message: P, size: usize) -> bool {
        self.held_bytes += size;
        self.held.push_front((message, size));
        self.start()
    }

    /// The oldest held message, to be journaled now (the caller is still holding meanwhile).
    pub fn take_next(&mut self) -> Option<P> {
        let (message, size) = self.held.pop_front()?;
        self.held_bytes = self.held_bytes.saturating_sub(size);
        Some(message)
    }

    /// Every held message was journaled: take new ones again.
    pub fn resumed(&mut self) {
        self.holding = false;
    }

    /// The connection is gone: Mosquitto redelivers the held messages on the next one, so they
    /// are forgotten (the intake keeps holding until the journal has room).
    pub fn forget(&mut self) {
        self.held.clear();
        self.held_bytes = 0;
    }

    /// The parked intake reconnects: the journal has room, nothing is held.
    pub fn unparked(&mut self) {
        self.parking = false;
        self.holding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB8: usize = MAX_HELD_BYTES;

    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// A message of this size arrives (its id is the number of messages so far).
        Arrive(usize),
        /// `n` messages of this size arrive.
        ArriveMany(usize, usize),
        /// The journal is full.
        Full,
        /// The journal refused a message of this size (its id: as for `Arrive`).
        Refused(usize),
        Next,
        Lost,
        Resumed,
        Unparked,
    }
    use Step::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Take(u32),
        Held,
        Park,
        Started(bool),
        Next(Option<u32>),
        Done,
    }

    /// (case, steps, output of the last step, holding, parking, held, held bytes)
    type Row = (&'static str, Vec<Step>, Out, bool, bool, usize, usize);

    fn run(steps: &[Step]) -> (Out, Hold<u32>) {
        let mut hold = Hold::default();
        let mut id = 0;
        let mut out = Out::Done;
        let mut arrive = |hold: &mut Hold<u32>, size| {
            id += 1;
            match hold.arrive(id, size) {
                Arrival::Take(p) => Out::Take(p),
                Arrival::Held => Out::Held,
                Arrival::Park => Out::Park,
            }
        };
        for step in steps {
            out = match *step {
                Arrive(size) => arrive(&mut hold, size),
                ArriveMany(n, size) => (0..n).map(|_| arrive(&mut hold, size)).last().unwrap(),
                Full => Out::Started(hold.start()),
                Refused(size) => Out::Started(hold.refused(100, size)),
                Next => Out::Next(hold.take_next()),
                Lost => {
                    hold.forget();
                    Out::Done
                }
                Resumed => {
                    hold.resumed();
                    Out::Done
                }
                Unparked => {
                    hold.unparked();
                    Out::Done
                }
            };
        }
        (out, hold)
    }

    #[test]
    fn holding_parking_and_resuming() {
        let rows: Vec<Row> = vec![
            (
                "not holding: a message is taken",
                vec![Arrive(10)],
                Out::Take(1),
                false,
                false,
                0,
                0,
            ),
            (
                "full: the next message is held",
                vec![Full, Arrive(10)],
                Out::Held,
                true,
                false,
                1,
                10,
            ),
            (
                "a full journal starts one hold",
                vec![Full],
                Out::Started(true),
                true,
                false,
                0,
                0,
            ),
            (
                "full again while holding is not a new hold",
                vec![Full, Full],
                Out::Started(false),
                true,
                false,
                0,
                0,
            ),
            (
                "a refused message starts a hold",
                vec![Refused(7)],
                Out::Started(true),
                true,
                false,
                1,
                7,
            ),
            (
                "a refused message goes before the held ones",
                vec![Full, Arrive(1), Refused(2), Next],
                Out::Next(Some(100)),
                true,
                false,
                1,
                1,
            ),
            (
                "1,000 held messages do not park",
                vec![Full, ArriveMany(1000, 1)],
                Out::Held,
                true,
                false,
                1000,
                1000,
            ),
            (
                "the 1,001st held message parks",
                vec![Full, ArriveMany(1001, 1)],
                Out::Park,
                true,
                true,
                1001,
                1001,
            ),
            (
                "8 MiB held does not park",
                vec![Full, Arrive(MIB8)],
                Out::Held,
                true,
                false,
                1,
                MIB8,
            ),
            (
                "one byte over 8 MiB parks",
                vec![Full, Arrive(MIB8), Arrive(1)],
                Out::Park,
                true,
                true,
                2,
                MIB8 + 1,
            ),
            (
                "parked: more arrivals are only held",
                vec![Full, Arrive(MIB8 + 1), Arrive(1)],
                Out::Held,
                true,
                true,
                2,
                MIB8 + 2,
            ),
            (
                "held messages come back in receive order",
                vec![Full, Arrive(3), Arrive(4), Next],
                Out::Next(Some(1)),
                true,
                false,
                1,
                4,
            ),
            (
                "nothing held: nothing comes back",
                vec![Full, Next],
                Out::Next(None),
                true,
                false,
                0,
                0,
            ),
            (
                "a lost connection forgets the held ones and keeps holding",
                vec![Full, Arrive(5), Arrive(5), Lost, Arrive(2)],
                Out::Held,
                true,
                false,
                1,
                2,
            ),
            (
                "resumed: new messages are taken again",
                vec![Full, Arrive(3), Next, Resumed, Arrive(1)],
                Out::Take(2),
                false,
                false,
                0,
                0,
            ),
            (
                "unparked: neither holding nor parking",
                vec![Full, Arrive(MIB8 + 1), Lost, Unparked, Arrive(1)],
                Out::Take(2),
                false,
                false,
                0,
                0,
            ),
            (
                "parked again after unparking",
                vec![
                    Full,
                    Arrive(MIB8 + 1),
                    Lost,
                    Unparked,
                    Full,
                    Arrive(MIB8 + 1),
                ],
                Out::Park,
                true,
                true,
                1,
                MIB8 + 1,
            ),
        ];
        for (case, steps, out, holding, parking, held, bytes) in rows {
            let (got, hold) = run(&steps);
            assert_eq!(got, out, "{case}: output");
            assert_eq!(hold.holding(), holding, "{case}: holding");
            assert_eq!(hold.parking(), parking, "{case}: parking");
            assert_eq!(hold.len(), held, "{case}: held");
            assert_eq!(hold.bytes(), bytes, "{case}: held bytes");
        }
    }
}
