//! Wiring: the only place that knows which actor sits behind each recipient. Opens the journal,
//! starts the actors, waits for SIGTERM/SIGINT and shuts down in order within 5 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, info, warn};

use awslink_actors::backoff::BackoffPolicy;
use awslink_actors::buffer::journal::{Durability, Journal, JournalConfig, JournalError, Limits};
use awslink_actors::buffer::{Buffer, DEFAULT_WINDOW};
use awslink_actors::cloud_link::{CloudLink, LinkConfig, LinkPeers};
use awslink_actors::local_broker::{LocalBroker, LocalConfig, LocalPeers};
use awslink_actors::messages::{Flush, GetMetrics, Shutdown};
use awslink_actors::quota::Quota;
use awslink_actors::shadow::convert::{Filters, ShadowRules};
use awslink_actors::shadow::{ShadowIngest, ShadowMapper};
use awslink_actors::status::StatusPublisher;
use awslink_actors::supervisor::{LinkFactory, LinkHandle, Supervisor};
use awslink_actors::topics::{jobs_filter, Identity, COMMAND_FILTER};

use crate::config::Config;

/// How long shutdown may take before awslink exits anyway.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4500);

/// Why `run` failed, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The buffer directory cannot be used (locked, corrupt, unwritable): the operator must act.
    #[error("{0}")]
    Buffer(#[from] JournalError),
    /// The runtime failed.
    #[error("{0}")]
    Runtime(String),
}

impl RunError {
    /// 2 for problems the operator fixes in configuration or on disk, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Buffer(_) => 2,
            RunError::Runtime(_) => 1,
        }
    }
}

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
    })
}

/// Runs awslink until a signal asks it to stop.
pub fn run(config: Config, device_id: String) -> Result<(), RunError> {
    let journal = open_journal(&config)?;
    info!(
        "awslink {} starting: device {device_id:?}, cloud {}:{}, local {}, buffer {} ({} queued)",
        env!("CARGO_PKG_VERSION"),
        config.endpoint.host,
        config.endpoint.port,
        config.local.uri,
        config.buffer.path.display(),
        journal.queued()
    );
    let system = System::new();
    let code = system.block_on(async move { start_and_wait(config, device_id, journal).await });
    drop(system);
    match code {
        0 => Ok(()),
        n => Err(RunError::Runtime(format!("stopped with code {n}"))),
    }
}

async fn start_and_wait(config: Config, device_id: String, journal: Journal) -> i32 {
    // Before any actor starts: a SIGTERM during start-up must still mean a clean stop (as PID 1
    // in a container, an unhandled SIGTERM would be ignored until the grace period ends).
    let signal = wait_for_signal();
    let identity = Identity {
        tenant_id: config.tenant_id.clone(),
        device_id: device_id.clone(),
    };
    let quota = Quota::new(
        config.quota.publish_per_second,
        config.quota.bytes_per_second,
        config.quota.max_payload_bytes + 256,
        Instant::now(),
    );
    let buffer = Buffer::new(journal.clone(), DEFAULT_WINDOW, Some(quota)).start();

    let status_ctx = Context::<StatusPublisher>::new();
    let shadow_ctx = Context::<ShadowMapper>::new();
    let shadow_ingest = if config.shadow_enabled {
        let filters = Filters::compile(config.topic_filter.as_deref(), &config.payload_filters)
            .unwrap_or_default(); // validated with the configuration
        let cache = match journal.tree("shadow-reported") {
            Ok(tree) => tree,
            Err(e) => {
                error!("{e}");
                return 2;
            }
        };
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
        shadow: shadow_ingest.clone(),
        downlink_ttl: config.buffer.downlink_ttl,
    };
    let link_store = journal.clone();
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
        ca_cert: config.ca_cert.clone(),
        cert: config.cert.clone(),
        key: config.key.clone(),
        username: config.username.clone(),
        password: config.password.clone(),
        alpn: config.alpn.clone(),
        keep_alive: config.keep_alive,
        connect_timeout: Duration::from_secs(20),
        subscriptions: {
            let mut filters = vec![COMMAND_FILTER.to_string(), jobs_filter(&device_id)];
            if config.shadow_enabled {
                filters.push(format!("$aws/things/{device_id}/shadow/#"));
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
    let _status = status_ctx.run(StatusPublisher::new(
        local.clone().recipient(),
        config.status_topic.clone(),
        identity,
        metrics_sources,
        config.metrics_interval,
    ));

    let signal = signal.await;
    info!("{signal} received: shutting down");
    let shutdown = async {
        if let Err(e) = supervisor.send(Shutdown).await {
            warn!("supervisor did not shut down cleanly: {e}");
        }
        if let Err(e) = local.send(Flush).await {
            warn!("local session did not close cleanly: {e}");
        }
        if let Err(e) = buffer.send(Flush).await {
            warn!("journal flush failed: {e}");
        }
    };
    if actix_rt::time::timeout(SHUTDOWN_BUDGET, shutdown)
        .await
        .is_err()
    {
        error!(
            "shutdown took longer than {} ms; exiting anyway",
            SHUTDOWN_BUDGET.as_millis()
        );
    }
    info!("awslink stopped");
    0
}

/// Installs the SIGTERM/SIGINT handlers now; the returned future resolves on the first signal.
fn wait_for_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            error!("cannot install signal handlers; stop awslink with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
