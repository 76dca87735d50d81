//! Wiring: the only place that knows which actor sits behind each recipient. Opens the journal
//! the configuration describes, starts the actors and, at shutdown, stops them in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, warn};

use awslink_actors::backoff::BackoffPolicy;
use awslink_actors::billing::Meter;
use awslink_actors::cloud::link::{CloudLink, LinkConfig, LinkPeers};
use awslink_actors::drain::{Buffer, DEFAULT_WINDOW};
use awslink_actors::local::{LocalBroker, LocalConfig, LocalPeers};
use awslink_actors::messages::{Flush, GetMetrics, Shutdown};
use awslink_actors::quota::Quota;
use awslink_actors::shadow::convert::{Filters, ShadowRules};
use awslink_actors::shadow::{ShadowIngest, ShadowMapper};
use awslink_actors::status::StatusPublisher;
use awslink_actors::store::{Durability, Journal, JournalConfig, JournalError, Limits};
use awslink_actors::supervisor::{LinkFactory, LinkHandle, Supervisor};
use awslink_actors::topics::{jobs_filter, shadow_filter, Identity, COMMAND_FILTER};

use crate::config::Config;

/// Opens the journal the configuration describes.
pub fn open_journal(config: &Config) -> Result<Journal, JournalError> {
    let durability = if config.buffer.fsync {
        Durability::Fsync
    } else {
        Durability::Batched {
            flush_every_ms: config.buffer.flush_every_ms,
        }
    };
    Journal::open(&JournalConfig {
        path: config.buffer.path.clone(),
        cache_bytes: config.buffer.cache_bytes,
        durability,
        limits: Limits {
            max_messages: config.buffer.max_messages,
            max_bytes: config.buffer.max_bytes,
            when_full: config.buffer.when_full,
        },
        min_free_bytes: config.buffer.min_free_bytes,
        quarantine_max_messages: config.buffer.quarantine_max_messages,
        on_damage: config.buffer.on_damage,
    })
}

/// The started actors, held until shutdown (the addresses keep them alive).
pub struct Running {
    supervisor: Addr<Supervisor>,
    local: Addr<LocalBroker>,
    buffer: Addr<Buffer>,
    status: Addr<StatusPublisher>,
    shadow_mapper: Option<Addr<ShadowMapper>>,
}

impl Running {
    /// Every long-lived actor, by the name its metrics line starts with, for the heartbeat.
    pub fn heartbeat_targets(&self) -> Vec<(&'static str, Recipient<GetMetrics>)> {
        let mut targets: Vec<(&'static str, Recipient<GetMetrics>)> = vec![
            ("local", self.local.clone().recipient()),
            ("buffer", self.buffer.clone().recipient()),
            ("supervisor", self.supervisor.clone().recipient()),
            ("status", self.status.clone().recipient()),
        ];
        if let Some(mapper) = &self.shadow_mapper {
            targets.push(("shadow", mapper.clone().recipient()));
        }
        targets
    }

    /// Stops in order — the cloud link (via the supervisor), the local sessions, the journal's
    /// last flush — and gives up waiting after `budget`. The cloud step gets at most half of it,
    /// so that a half-open cloud connection cannot take the time the intake's stop and the
    /// journal's flush need.
    pub async fn shutdown(self, budget: Duration) {
        let shutdown = async {
            match actix_rt::time::timeout(budget / 2, self.supervisor.send(Shutdown)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("supervisor did not shut down cleanly: {e}"),
                Err(_) => warn!(
                    "the cloud link did not close within {} ms; going on with the local shutdown",
                    (budget / 2).as_millis()
                ),
            }
            if let Err(e) = self.local.send(Flush).await {
                warn!("local session did not close cleanly: {e}");
            }
            if let Err(e) = self.buffer.send(Flush).await {
                warn!("journal flush failed: {e}");
            }
        };
        if actix_rt::time::timeout(budget, shutdown).await.is_err() {
            error!(
                "shutdown took longer than {} ms; exiting anyway",
                budget.as_millis()
            );
        }
    }
}

/// Starts the actors on the current actix system and connects each recipient to its actor.
/// Fails only when the buffer directory cannot be used.
pub fn start(config: &Config, device_id: &str, journal: Journal) -> Result<Running, JournalError> {
    let device_id = device_id.to_string();
    let identity = Identity {
        tenant_id: config.tenant_id.clone(),
        device_id: device_id.clone(),
    };
    let quota = Quota::new(
        config.quota.publish_per_second,
        config.quota.bytes_per_second,
        Instant::now(),
    );
    let buffer = Buffer::new(journal.clone(), DEFAULT_WINDOW, Some(quota))
        .with_meter(Meter::new(&config.routes.rules()))
        .with_lanes(&config.lanes)
        .with_batching(
            config.batching.clone(),
            config.quota.max_payload_bytes as usize,
        )
        .start();

    let status_ctx = Context::<StatusPublisher>::new();
    let shadow_ctx = Context::<ShadowMapper>::new();
    let shadow_ingest = if config.shadow_enabled {
        let filters = Filters::compile(config.topic_filter.as_deref(), &config.payload_filters)
            .unwrap_or_default(); // validated with the configuration
        let cache = journal.shadow_cache()?;
        let ingest = Arc::new(ShadowIngest::new(
            device_id.clone(),
            filters,
            ShadowRules::default(),
            cache,
        ));
        ingest.attach(&shadow_ctx.address());
        Some(ingest)
    } else {
        None
    };
    let local_config = LocalConfig {
        connection: config.local.clone(),
        status_topic: config.status_topic.clone(),
        identity: identity.clone(),
        max_payload_bytes: config.quota.max_payload_bytes as usize,
        routes: config.routes.clone(),
        batching: config.batching.clone(),
        lanes: config.lanes.clone(),
        shadow: shadow_ingest.clone(),
        downlink_ttl: config.buffer.downlink_ttl,
    };
    let link_store = journal.downlink();
    let local = LocalBroker::new(
        local_config,
        journal,
        LocalPeers {
            journaled: buffer.clone().recipient(),
            thing_requests: status_ctx.address().recipient(),
        },
    )
    .start();

    let link_config = LinkConfig {
        host: config.endpoint.host.clone(),
        port: config.endpoint.port,
        client_id: config
            .client_id
            .clone()
            .unwrap_or_else(|| device_id.clone()),
        tls: config.cloud_tls(),
        username: config.username.clone(),
        password: config.password.clone(),
        keep_alive: config.keep_alive,
        connect_timeout: Duration::from_secs(20),
        subscriptions: {
            let mut filters = vec![COMMAND_FILTER.to_string(), jobs_filter(&device_id)];
            if config.shadow_enabled {
                filters.push(shadow_filter(&device_id));
            }
            filters
        },
        max_in_flight: DEFAULT_WINDOW,
    };
    let shadow_mapper = shadow_ingest
        .map(|ingest| shadow_ctx.run(ShadowMapper::new(ingest, local.clone().recipient())));
    let (link_local, link_shadow) = (local.clone(), shadow_mapper.clone());
    let start_link: LinkFactory = Box::new(move |attempt, events| {
        let peers = LinkPeers {
            events,
            inbound: link_local.clone().recipient(),
            shadow_inbound: link_shadow.clone().map(Addr::recipient),
            downlink_store: Some(link_store.clone()),
        };
        let link = CloudLink::new(link_config.clone(), peers, attempt).start();
        LinkHandle {
            disconnect: link.recipient(),
        }
    });
    let policy = BackoffPolicy {
        min_delay: config.reconnect.min_delay,
        max_delay: config.reconnect.max_delay,
        reset_after: config.reconnect.reset_after,
    };
    let status_addr = status_ctx.address();
    let supervisor = Supervisor::new(
        policy,
        start_link,
        buffer.clone().recipient(),
        status_addr.clone().recipient(),
    )
    .start();
    let mut metrics_sources: Vec<Recipient<GetMetrics>> = vec![
        local.clone().recipient(),
        buffer.clone().recipient(),
        supervisor.clone().recipient(),
    ];
    if let Some(mapper) = &shadow_mapper {
        metrics_sources.push(mapper.clone().recipient());
    }
    let status = status_ctx.run(StatusPublisher::new(
        local.clone().recipient(),
        config.status_topic.clone(),
        identity,
        metrics_sources,
        config.metrics_interval,
    ));
    Ok(Running {
        supervisor,
        local,
        buffer,
        status,
        shadow_mapper,
    })
}
