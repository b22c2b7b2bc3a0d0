//! Assembles Berth from its configuration: store, services, background tasks and the HTTP
//! server; serves until a shutdown signal, then drains.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use app::{model::SignInOptions, services::Services};
use leptos::config::LeptosOptions;
use tokio::net::TcpListener;

use crate::{
    auth::{bootstrap, FailureLimiter},
    backups::{BackupRunner, BackupSettings},
    builds::{BuildSettings, Builder},
    config::{Config, Role},
    http::{self, AppState},
    ingress::{
        acme::{AcmeSettings, CertificateManager},
        domains::DomainVerifier,
        Ingress, Limits,
    },
    jobs::{ByKind, Workers},
    metrics::{Collector, LiveMetrics, MetricsHub, Retention, RollupBuffer, RollupWriter},
    orchestrator::{
        monitor::HealthMonitor, reconciler::Reconciler, topology::register_local_node, Orchestrator,
    },
    platform::{
        accounts::SignInLimits, AccountsService, AdminConsole, AppUrls, BackupsService,
        BuildsService, DeploymentsService, ProjectsService, RepositoriesService, TopologyConsole,
        WebhookReceiver,
    },
    runtime::Engine,
    secrets::SecretBox,
    store::{Backend, Store},
};

/// A built, bound, not yet serving Berth.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Set when this start created the first admin; print it once.
    pub first_admin: Option<bootstrap::GeneratedCredentials>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    reconciler: Arc<Reconciler>,
    /// Where the ingress listens, when this process runs one.
    ingress_addr: Option<SocketAddr>,
    /// Where the ingress accepts HTTPS, when it does.
    ingress_https_addr: Option<SocketAddr>,
    /// Issues and renews certificates (role `scheduler`).
    certificates: Option<Arc<CertificateManager>>,
    /// Writes the metrics history (role `metrics`); flushed on shutdown.
    rollup_writer: Option<Arc<RollupWriter>>,
}

impl Application {
    /// Connects the store (migrating it), creates the first admin on an empty database,
    /// binds the listener (port 0 picks a free port) and starts background tasks.
    ///
    /// # Errors
    /// Database unreachable or migration failure, address in use.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        if config.database_url().starts_with("sqlite:") {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        }
        let store = Store::connect(&config.database_url(), config.database_max_connections)
            .await
            .context("cannot open the database")?;
        let first_admin = bootstrap::ensure_first_admin(&store, &config.admin_email)
            .await
            .context("cannot create the first admin")?;

        let secrets = SecretBox::from_config_or_file(
            config.secret_key.as_deref(),
            &config.data_dir.join("secret.key"),
        )
        .context("cannot load the secret key")?;
        let installation = store
            .deployments()
            .installation_id()
            .await
            .context("cannot read the installation id")?;
        let orchestrator = Arc::new(Orchestrator::new(
            store.clone(),
            secrets.clone(),
            installation,
            config.docker_labels.clone(),
            config.data_dir.join("engines"),
        ));
        if let Some((node_id, engine)) = connect_local_engine(&store, &config).await {
            orchestrator.attach_engine(&node_id, engine);
        }
        let builder = Arc::new(Builder::new(
            store.clone(),
            secrets.clone(),
            orchestrator.clone(),
            BuildSettings {
                workspace_root: config.data_dir.join("builds"),
                concurrency_per_node: config.build_concurrency,
                timeout: Duration::from_secs(config.build_timeout_secs),
                context_max_bytes: config.build_context_max_bytes,
                images_kept: config.build_images_kept,
                allow_private_repositories: config.build_allow_private_repositories,
            },
        ));
        let backup_runner = Arc::new(BackupRunner::new(
            store.clone(),
            secrets.clone(),
            orchestrator.clone(),
            BackupSettings {
                repository_root: config.data_dir.join("backups"),
                staging_root: config.data_dir.join("backup-staging"),
                check_interval_ms: i64::from(config.backup_check_interval_hours) * 3_600_000,
                check_read_data_percent: config.backup_check_read_data_percent,
            },
        ));
        let workers = Arc::new(Workers::new(
            store.clone(),
            Arc::new(ByKind {
                default: orchestrator.clone(),
                kinds: vec![
                    ("build", builder.clone()),
                    ("backup", backup_runner.clone()),
                    ("backup_check", backup_runner.clone()),
                    ("restore", backup_runner.clone()),
                ],
            }),
        ));
        let reconciler = Arc::new(Reconciler::new(orchestrator.clone()));

        let limiter = Arc::new(FailureLimiter::new(Duration::from_secs(
            config.sign_in_window_secs,
        )));
        let sso = SignInOptions {
            sso_enabled: config.oidc.is_some(),
            sso_label: config
                .oidc
                .as_ref()
                .map(|o| o.label.clone())
                .unwrap_or_default(),
        };
        // The ingress binds first, so that the portal can show each app's address.
        let ingress_listener = match (config.has_role(Role::Ingress), config.ingress_http_listen) {
            (true, Some(listen)) => Some(
                TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} (ingress_http_listen)"))?,
            ),
            _ => None,
        };
        let ingress_tls_listener = match (&ingress_listener, config.ingress_https_listen) {
            (Some(_), Some(listen)) => Some(
                TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} (ingress_https_listen)"))?,
            ),
            _ => None,
        };
        let app_urls = match &ingress_listener {
            Some(l) => Some(AppUrls::new(
                &config.base_domain,
                l.local_addr()?.port(),
                match &ingress_tls_listener {
                    Some(t) => Some(t.local_addr()?.port()),
                    None => None,
                },
            )),
            None => None,
        };
        // The live cache exists before the services, which read it for the REST API.
        let hub = config
            .has_role(Role::Metrics)
            .then(|| Arc::new(MetricsHub::default()));
        let services = Services {
            accounts: Arc::new(AccountsService::new(
                store.clone(),
                limiter.clone(),
                SignInLimits {
                    per_account: config.sign_in_max_failures_per_account,
                    per_client: config.sign_in_max_failures_per_client,
                },
                sso,
            )),
            projects: Arc::new(ProjectsService::new(store.clone())),
            admin: Arc::new(AdminConsole::new(store.clone())),
            topology: Arc::new(
                TopologyConsole::new(store.clone(), orchestrator.clone())
                    .with_live_metrics(hub.clone()),
            ),
            deployments: Arc::new(
                DeploymentsService::new(
                    store.clone(),
                    secrets.clone(),
                    orchestrator.clone(),
                    workers.waker(),
                )
                .with_app_urls(app_urls)
                .with_domain_settings(
                    &config.base_domain,
                    config.ingress_public_ips.clone(),
                    config.acme_dns_update.is_some()
                        && !config.acme_directory_url.trim().is_empty(),
                )
                .with_live_metrics(hub.clone()),
            ),
            builds: Arc::new(BuildsService::new(
                store.clone(),
                secrets.clone(),
                workers.waker(),
            )),
            backups: Arc::new(BackupsService::new(
                store.clone(),
                backup_runner.clone(),
                workers.waker(),
            )),
            repositories: Arc::new(RepositoriesService::new(
                store.clone(),
                secrets.clone(),
                backup_runner.clone(),
                workers.waker(),
                config.backup_check_read_data_percent,
            )),
        };

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let site_root = config.site_root.to_string_lossy().into_owned();
        if !config.site_root.join("pkg").join("berth_bg.wasm").exists() {
            tracing::warn!(site_root = %site_root, "no compiled wasm under site_root/pkg: pages render but are not interactive (build with scripts/build.sh)");
        }
        let leptos_options = LeptosOptions::builder()
            .output_name("berth")
            .site_root(site_root)
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .build();

        let mut tasks = Vec::new();
        let mut ingress_addr = None;
        let mut ingress_https_addr = None;
        let mut certs = None;
        let mut ingress_stats = None;
        if let Some(listener) = ingress_listener {
            let listen = listener.local_addr()?;
            ingress_addr = Some(listen);
            let ingress = Arc::new(
                Ingress::new(
                    store.clone(),
                    secrets.clone(),
                    config.base_domain.clone(),
                    orchestrator.routes_changed.clone(),
                    Limits {
                        max_body_bytes: config.ingress_max_body_bytes,
                        upstream_timeout: Duration::from_secs(config.ingress_upstream_timeout_secs),
                    },
                )
                .with_access_log(config.ingress_access_log),
            );
            certs = Some(ingress.certs());
            ingress_stats = Some(ingress.stats());
            tasks.push(tokio::spawn(ingress.clone().keep_fresh()));
            tasks.push(tokio::spawn(ingress.clone().serve(listener)));
            if let Some(tls_listener) = ingress_tls_listener {
                ingress_https_addr = Some(tls_listener.local_addr()?);
                tasks.push(tokio::spawn(ingress.serve_tls(tls_listener)));
            }
            tracing::info!(ingress.addr = %listen, ingress.https = ?ingress_https_addr, base_domain = %config.base_domain, "ingress listening");
        }
        let mut certificates = None;
        if config.has_role(Role::Scheduler) {
            tasks.push(tokio::spawn(housekeeping(store.clone(), limiter)));
            let sole_controller = store.backend() == Backend::Sqlite;
            tasks.push(tokio::spawn(
                workers.clone().run(config.job_workers, sole_controller),
            ));
            tasks.push(tokio::spawn(
                reconciler
                    .clone()
                    .run(Duration::from_secs(config.reconcile_interval_secs)),
            ));
            let monitor = Arc::new(HealthMonitor::new(orchestrator.clone()));
            tasks.push(tokio::spawn(monitor.run()));
            tasks.push(tokio::spawn(crate::backups::schedule::run_scheduler(
                store.clone(),
                workers.waker(),
                crate::backups::schedule::CheckSchedule {
                    interval_ms: i64::from(config.backup_check_interval_hours) * 3_600_000,
                    read_data_percent: config.backup_check_read_data_percent,
                },
            )));
            let verifier = Arc::new(DomainVerifier::new(
                store.clone(),
                config.base_domain.clone(),
                config.ingress_public_ips.clone(),
                config.dns_resolver,
                orchestrator.routes_changed.clone(),
            ));
            tasks.push(tokio::spawn(verifier.run()));
            let directory = config.acme_directory_url.trim();
            let manager = Arc::new(CertificateManager::new(
                store.clone(),
                secrets.clone(),
                config.base_domain.clone(),
                AcmeSettings {
                    directory_url: (!directory.is_empty()).then(|| directory.to_owned()),
                    contact: config.acme_contact.clone(),
                    ca_roots: config.acme_ca_roots.clone(),
                    challenge: config.acme_challenge,
                    dns_update: config
                        .acme_dns_update
                        .as_ref()
                        .map(crate::ingress::dns_update::DnsUpdater::new)
                        .transpose()
                        .map_err(|(field, e)| anyhow::anyhow!("acme_dns_update.{field}: {e}"))?,
                },
                certs.unwrap_or_default(),
                orchestrator.routes_changed.clone(),
            ));
            tasks.push(tokio::spawn(manager.clone().run()));
            certificates = Some(manager);
        }
        let mut rollup_writer = None;
        let metrics = hub.map(|hub| {
            let rollups = Arc::new(RollupBuffer::default());
            let collector = Collector::new(
                orchestrator.clone(),
                hub.clone(),
                rollups.clone(),
                config.metrics_source,
            );
            let stats = collector.stats.clone();
            tasks.push(tokio::spawn(collector.run()));
            let writer = Arc::new(RollupWriter::new(
                store.clone(),
                rollups.clone(),
                stats.clone(),
                Retention {
                    minutes_days: config.metrics_minutes_retention_days,
                    hours_days: config.metrics_hours_retention_days,
                },
                store.backend() == Backend::Sqlite,
            ));
            tasks.push(tokio::spawn(writer.clone().run()));
            rollup_writer = Some(writer);
            LiveMetrics {
                hub,
                stats,
                rollups,
            }
        });
        let oidc = match &config.oidc {
            Some(c) => Some(
                crate::auth::oidc::OidcProvider::new(c.clone(), &config.public_url)
                    .context("cannot set up single sign-on")?,
            ),
            None => None,
        };
        let webhooks = Arc::new(WebhookReceiver::new(
            store.clone(),
            secrets.clone(),
            workers.waker(),
            config.webhook_deliveries_per_minute,
        ));
        let state = AppState {
            store,
            services,
            config,
            leptos_options,
            oidc,
            orchestrator,
            ingress_stats,
            metrics,
            webhooks,
            build_logs: builder.logs.clone(),
            backups: backup_runner,
        };
        Ok(Self {
            listener,
            state,
            first_admin,
            tasks,
            reconciler,
            rollup_writer,
            ingress_addr,
            ingress_https_addr,
            certificates,
        })
    }

    /// Where the ingress listens (`None`: no ingress in this process).
    pub fn ingress_addr(&self) -> Option<SocketAddr> {
        self.ingress_addr
    }

    /// Where the ingress accepts HTTPS (`None`: not in this process, or turned off).
    pub fn ingress_https_addr(&self) -> Option<SocketAddr> {
        self.ingress_https_addr
    }

    /// The certificate manager (tests move its clock); `None` without the scheduler role.
    pub fn certificates(&self) -> Option<Arc<CertificateManager>> {
        self.certificates.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// The orchestrator (the metrics bench runs collectors of its own on it).
    pub fn orchestrator(&self) -> Arc<Orchestrator> {
        self.state.orchestrator.clone()
    }

    /// The reconciler (tests and the bench run resyncs directly).
    pub fn reconciler(&self) -> Arc<Reconciler> {
        self.reconciler.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, gives in-flight requests
    /// `shutdown_grace_secs`, stops background tasks and closes the pool.
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let store = self.state.store.clone();
        let router = http::router(self.state);
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopped_tx.send(());
        });
        let drain = async move {
            if stopped_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
                tracing::warn!("grace period over; closing remaining connections");
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = server => r.context("server failed")?,
            () = drain => {}
        }
        for t in self.tasks {
            t.abort();
        }
        // After the streamer stopped: every sample it took reaches the history.
        if let Some(writer) = self.rollup_writer {
            writer.flush().await;
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connects to the local engine and registers it as node `local`; returns the node id and
/// the connection. Berth starts without it (the portal and API work; deploy jobs fail naming
/// the unreachable node) and says why in the log.
async fn connect_local_engine(store: &Store, config: &Config) -> Option<(String, Arc<Engine>)> {
    let engine = match Engine::connect(&config.docker_host, &Default::default()).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(docker_host = %config.docker_host, error = %e, "local Docker engine unreachable; node `local` not registered");
            return None;
        }
    };
    match register_local_node(store, &engine, i64::from(config.local_node_max_instances)).await {
        Ok(node) => {
            tracing::info!(
                node.name = %node.name,
                node.cpu_millicores = node.cpu_millicores,
                node.memory_bytes = node.memory_bytes,
                node.state = %node.state,
                "local node registered"
            );
            Some((node.id, Arc::new(engine)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot register the local node");
            None
        }
    }
}

/// Deletes expired sessions and prunes the sign-in limiter every five minutes.
async fn housekeeping(store: Store, limiter: Arc<FailureLimiter>) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        match store.sessions().delete_expired().await {
            Ok(n) if n > 0 => tracing::info!(sessions.deleted = n, "expired sessions deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete expired sessions"),
        }
        limiter.prune(std::time::Instant::now());
        let before = crate::store::now_ms() - crate::platform::DELIVERY_RETENTION_MS;
        match store.deliveries().prune(before).await {
            Ok(n) if n > 0 => {
                tracing::info!(deliveries.deleted = n, "old webhook deliveries deleted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete old webhook deliveries"),
        }
    }
}

/// Raises the process's soft limit of open files (`RLIMIT_NOFILE`) to its hard limit, as
/// Go programs do at start: the soft limit (1024 under systemd) suits old `select` users,
/// while Berth holds a descriptor per connection, per proxied upstream and per kept-open
/// metrics counter file (seven or eight per running instance). Returns the soft limit now
/// in force (`None`: unlimited).
///
/// # Errors
/// The kernel refused the new limit.
pub fn raise_open_files_limit() -> std::io::Result<Option<u64>> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(limit.current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    Ok(limit.maximum)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
