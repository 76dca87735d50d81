//! The lane scheduler, pure: which lane gets the next publish slot. Strict priority
//! ([`Lane::ALL`] order), except that each lower lane with a backlog earns its minimum share
//! ([`LaneSettings::min_share`]) of the slots and takes a slot as soon as it has earned one.
//!
//! A lane earns credit only while it has a backlog and loses it when its backlog is gone, so an
//! idle lane never comes back with a burst of saved-up slots; a slot a lane gets by priority is
//! paid from its credit too, so a lane served anyway does not also bank credit. Credit is kept in
//! millionths of a slot (exact: 20 % of 1,000 slots is 200 slots, not 199).

use crate::lanes::{Lane, LaneRules};

/// One slot's worth of credit.
const SLOT: u64 = 1_000_000;

/// Most credit a lane can hold (two slots): a bound even for shares that sum to 1 or more.
const MAX_CREDIT: u64 = 2 * SLOT;

/// Which lanes have something to send now, indexed by [`Lane::index`].
pub type Backlog = [bool; 3];

/// Picks the lane of each publish slot.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// Each lane's minimum share in millionths of the slots (control's is ignored).
    share: [u64; 3],
    /// Credit earned and not yet spent, in millionths of a slot.
    credit: [u64; 3],
}

impl Scheduler {
    /// A scheduler with the minimum shares of `rules` (control never needs one).
    pub fn new(rules: &LaneRules) -> Self {
        let share = Lane::ALL.map(|lane| match lane {
            Lane::Control => 0,
            _ => (rules.settings(lane).min_share.clamp(0.0, 1.0) * SLOT as f64).round() as u64,
        });
        Scheduler {
            share,
            credit: [0; 3],
        }
    }

    /// The lane the next slot goes to, given which lanes have a backlog (`None` when none has):
    /// the highest-priority lane that has earned a whole slot, else the highest-priority lane
    /// with a backlog. Changes nothing; call [`Scheduler::record`] once the slot is used.
    pub fn pick(&self, backlog: Backlog) -> Option<Lane> {
        let with_backlog = || Lane::ALL.into_iter().filter(|l| backlog[l.index()]);
        with_backlog()
            .find(|l| self.credit[l.index()] + self.share[l.index()] >= SLOT)
            .or_else(|| with_backlog().next())
    }

    /// The slot went to `lane` while `backlog` was waiting: every lane with a backlog earns its
    /// share, the lane served pays one slot, lanes without a backlog lose what they had.
    pub fn record(&mut self, lane: Lane, backlog: Backlog) {
        for l in Lane::ALL {
            let i = l.index();
            self.credit[i] = if backlog[i] {
                (self.credit[i] + self.share[i]).min(MAX_CREDIT)
            } else {
                0
            };
        }
        let i = lane.index();
        self.credit[i] = self.credit[i].saturating_sub(SLOT);
    }

    /// A lane's backlog ran out: it keeps no credit (also between slots, e.g. while the window
    /// is full).
    pub fn idle(&mut self, lane: Lane) {
        self.credit[lane.index()] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lanes::LaneSettings;

    const ALL: Backlog = [true, true, true];
    const C: Backlog = [true, false, false];
    const E: Backlog = [false, true, false];
    const T: Backlog = [false, false, true];
    const ET: Backlog = [false, true, true];
    const CT: Backlog = [true, false, true];
    const NONE: Backlog = [false, false, false];

    fn rules(events: f64, telemetry: f64) -> LaneRules {
        let mut settings = Lane::ALL.map(LaneSettings::default_for);
        settings[Lane::Events.index()].min_share = events;
        settings[Lane::Telemetry.index()].min_share = telemetry;
        LaneRules::new(Vec::new(), settings)
    }

    /// Runs `phases` of (slots, backlog) and returns the slots each lane got in each phase, and
    /// the full sequence of lanes served.
    fn run(rules: &LaneRules, phases: &[(usize, Backlog)]) -> (Vec<[usize; 3]>, Vec<Option<Lane>>) {
        let mut s = Scheduler::new(rules);
        let mut counts = Vec::new();
        let mut served = Vec::new();
        for &(slots, backlog) in phases {
            let mut count = [0; 3];
            for _ in 0..slots {
                let lane = s.pick(backlog);
                if let Some(lane) = lane {
                    assert!(backlog[lane.index()], "{lane:?} had nothing to send");
                    count[lane.index()] += 1;
                    s.record(lane, backlog);
                }
                served.push(lane);
            }
            counts.push(count);
        }
        (counts, served)
    }

    #[test]
    fn slots_per_lane_follow_priority_and_minimum_shares() {
        let defaults = LaneRules::default();
        // (name, rules, phases, slots per lane per phase [control, events, telemetry], ±1)
        type Row<'a> = (&'a str, LaneRules, &'a [(usize, Backlog)], &'a [[usize; 3]]);
        let rows: &[Row] = &[
            (
                "all backlogged: 70/20/10",
                defaults.clone(),
                &[(1000, ALL)],
                &[[700, 200, 100]],
            ),
            (
                "only telemetry: every slot",
                defaults.clone(),
                &[(1000, T)],
                &[[0, 0, 1000]],
            ),
            (
                "only events: every slot",
                defaults.clone(),
                &[(1000, E)],
                &[[0, 1000, 0]],
            ),
            (
                "only control: every slot",
                defaults.clone(),
                &[(1000, C)],
                &[[1000, 0, 0]],
            ),
            (
                "events and telemetry: telemetry keeps its 10 %",
                defaults.clone(),
                &[(1000, ET)],
                &[[0, 900, 100]],
            ),
            (
                "control and telemetry: telemetry keeps its 10 %",
                defaults.clone(),
                &[(1000, CT)],
                &[[900, 0, 100]],
            ),
            (
                "configured shares 50/30",
                rules(0.5, 0.3),
                &[(1000, ALL)],
                &[[200, 500, 300]],
            ),
            (
                "share 0: strict priority, the lower lane waits",
                rules(0.0, 0.0),
                &[(1000, ALL), (10, T)],
                &[[1000, 0, 0], [0, 0, 10]],
            ),
            (
                "nothing backlogged: no slot used",
                defaults.clone(),
                &[(10, NONE)],
                &[[0, 0, 0]],
            ),
            (
                "idle telemetry banks nothing: after 500 idle slots it gets its 10 %, no burst",
                defaults.clone(),
                &[(500, C), (100, CT)],
                &[[500, 0, 0], [90, 0, 10]],
            ),
        ];
        for (name, rules, phases, expected) in rows {
            let (counts, _) = run(rules, phases);
            // Within one slot per lane: a lane whose slot was due when a higher lane's was too
            // takes it one slot later, and the run may end in between.
            let close = counts
                .iter()
                .zip(expected.iter())
                .all(|(got, want)| got.iter().zip(want).all(|(g, w)| g.abs_diff(*w) <= 1));
            assert!(close, "{name}: {counts:?}, expected {expected:?}");
        }
    }

    #[test]
    fn control_arriving_mid_drain_gets_the_next_slot() {
        // Telemetry alone for 1,000 slots (served by priority, so it banks nothing), then control.
        let (_, served) = run(&LaneRules::default(), &[(1000, T), (1, CT)]);
        assert_eq!(served.last(), Some(&Some(Lane::Control)));
        // The same after 995 slots, mid-way between two of telemetry's credit slots.
        let (_, served) = run(&LaneRules::default(), &[(995, T), (1, ALL)]);
        assert_eq!(served.last(), Some(&Some(Lane::Control)));
    }

    #[test]
    fn no_lane_waits_longer_than_its_share_allows() {
        // With everything backlogged, the longest run of slots without a given lane.
        let (_, served) = run(&LaneRules::default(), &[(1000, ALL)]);
        for (lane, longest_allowed) in [(Lane::Events, 5), (Lane::Telemetry, 11)] {
            let mut gap = 0;
            let mut longest = 0;
            for s in &served {
                gap = if *s == Some(lane) { 0 } else { gap + 1 };
                longest = longest.max(gap);
            }
            assert!(longest < longest_allowed, "{lane:?} waited {longest} slots");
        }
    }

    #[test]
    fn an_idle_call_drops_credit_earned_before() {
        let mut s = Scheduler::new(&LaneRules::default());
        for _ in 0..9 {
            s.record(Lane::Control, CT);
        }
        // Telemetry has earned 0.9 slots; one more and it would take the slot.
        s.idle(Lane::Telemetry);
        s.record(Lane::Control, CT);
        assert_eq!(s.pick(CT), Some(Lane::Control));
    }
}
