//! The Buffer's metrics: totals over the lanes, each lane's counters, billed units per lane,
//! and the meter's (billed units, Basic Ingest per rule).

use actix::prelude::*;

use super::Buffer;
use crate::clock::unix_ms;
use crate::lanes::Lane;
use crate::messages::{ActorMetrics, GetMetrics};

/// Each lane's billed messaging units, indexed by [`Lane::index`].
const LANE_BILLED: [&str; 3] = [
    "control_billed_units",
    "events_billed_units",
    "telemetry_billed_units",
];

/// The per-lane counters' names, indexed by [`Lane::index`]: queued, bytes, oldest_age_ms,
/// sent, expired, dropped.
const LANE_COUNTERS: [[&str; 6]; 3] = [
    [
        "control_queued",
        "control_bytes",
        "control_oldest_age_ms",
        "control_sent",
        "control_expired",
        "control_dropped",
    ],
    [
        "events_queued",
        "events_bytes",
        "events_oldest_age_ms",
        "events_sent",
        "events_expired",
        "events_dropped",
    ],
    [
        "telemetry_queued",
        "telemetry_bytes",
        "telemetry_oldest_age_ms",
        "telemetry_sent",
        "telemetry_expired",
        "telemetry_dropped",
    ],
];

impl Handler<GetMetrics> for Buffer {
    type Result = ActorMetrics;
    fn handle(&mut self, _msg: GetMetrics, _ctx: &mut Self::Context) -> ActorMetrics {
        let now = unix_ms();
        let lane_oldest_ms =
            Lane::ALL.map(|lane| self.journal.oldest_enqueued_ms(lane).ok().flatten());
        let oldest_age_ms = lane_oldest_ms
            .iter()
            .flatten()
            .min()
            .map_or(0, |&t| now.saturating_sub(t));
        let mut metrics = ActorMetrics {
            actor: "buffer",
            counters: vec![
                ("queued", self.journal.queued_total()),
                ("bytes", self.journal.queued_bytes_total()),
                ("in_flight", self.drain.in_flight() as u64),
                ("sent", self.sent),
                ("delivered", self.delivered),
                ("expired", self.expired.iter().sum()),
                ("retried", self.retries),
                ("dropped", self.journal.dropped_total()),
                ("throttle_waits", self.throttle_waits),
                (
                    "throttle_wait_ms",
                    self.throttle_wait_total.as_millis() as u64,
                ),
                ("quarantined", self.quarantined),
                ("quarantine_kept", self.journal.quarantine_len()),
                ("quarantine_dropped", self.journal.quarantine_dropped()),
                ("heap_trims", self.trims),
                ("batches_sent", self.batches_sent),
                ("batched_messages", self.batched_messages),
                ("oldest_age_ms", oldest_age_ms),
            ],
        };
        for lane in Lane::ALL {
            let i = lane.index();
            let [queued, bytes, oldest, sent, expired, dropped] = LANE_COUNTERS[i];
            let age = lane_oldest_ms[i].map_or(0, |t| now.saturating_sub(t));
            metrics.counters.extend([
                (queued, self.journal.queued(lane)),
                (bytes, self.journal.queued_bytes(lane)),
                (oldest, age),
                (sent, self.lane_sent[i]),
                (expired, self.expired[i]),
                (dropped, self.journal.dropped(lane)),
            ]);
        }
        metrics.counters.extend(
            Lane::ALL.map(|lane| (LANE_BILLED[lane.index()], self.lane_billed[lane.index()])),
        );
        metrics.counters.extend(self.meter.counters());
        metrics
    }
}
