//! The gateway binary: read the configuration, bind one SO_REUSEPORT listener per shard and
//! address, start one pinned shard thread per core, print `listening on <addr>` once all shards
//! accept, and turn SIGINT/SIGTERM into a graceful drain (close 1001, wait, exit 0).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;

use anyhow::Context;
use frame_simd::Kernels;
use mio::Waker;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use gateway::api::ApiSettings;
use gateway::app::calls::Calls;
use gateway::app::AppState;
use gateway::auth::upgrade::ClientAuth;
use gateway::auth::ApiKey;
use gateway::auth::Verifier;
use gateway::broker;
use gateway::config::{Config, DriverChoice, LogFormat, TlsFiles};
use gateway::conn::tls::TlsServer;
use gateway::driver::mio::{bind_reuseport, MioDriver};
use gateway::driver::uring::{self, UringDriver};
use gateway::driver::{allowed_cpus, pin_current_thread, raise_nofile_limit, ShardDriver};
use gateway::hooks::{Answer, Hooks};
use gateway::metrics::HookMetrics;
use gateway::metrics::{ShardMetrics, Totals};
use gateway::router::inbox::{Mesh, ShardMsg};
use gateway::router::{Router, RouterConfig};
use gateway::shard::{Shard, ShardConfig, Shared};

/// Listen backlog per shard listener.
const BACKLOG: i32 = 4096;

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "check") {
        args.remove(1);
        return check(args);
    }
    let cfg = match Config::load() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            return ExitCode::from(2);
        }
    };
    let filter = match log_filter(&cfg) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Fields at the top level, as log shippers index them.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let use_uring = match choose_driver(cfg.driver) {
        Ok(u) => u,
        Err(e) => {
            error!("{e}");
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = match Tls::load(&cfg) {
        Ok(tls) => tls,
        Err(e) => {
            error!("{e:#}");
            eprintln!("gateway: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(cfg, use_uring, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The tracing filter of `--log-level`.
fn log_filter(cfg: &Config) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .map_err(|e| format!("bad --log-level {:?}: {e}", cfg.log_level))
}

/// `gateway check [FLAGS]`: load and validate the configuration exactly as a start would
/// (the same loader, log filter and driver choice), print every setting with its source and the
/// limits they imply here, and exit 0 when a deploy can go ahead, 2 when the server would refuse
/// to start (the same message it would print), 1 for a problem it would start with.
fn check(args: Vec<std::ffi::OsString>) -> ExitCode {
    let (cfg, sources) = match Config::load_from(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("gateway check: {e:#}");
            return ExitCode::from(2);
        }
    };
    let refused = log_filter(&cfg)
        .err()
        .or_else(|| choose_driver(cfg.driver).err());
    if let Some(e) = refused {
        eprintln!("gateway check: {e}");
        return ExitCode::from(2);
    }
    let host = gateway::check::Host {
        nofile: raise_nofile_limit().unwrap_or(1024),
        uring: choose_driver(cfg.driver).unwrap_or(false),
    };
    let (text, problems) = gateway::check::report(&cfg, &sources, host);
    print!("{text}");
    if problems.is_empty() {
        println!(
            "
configuration OK"
        );
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        eprintln!("gateway check: problem: {p}");
    }
    ExitCode::FAILURE
}

/// Resolve `--driver`: whether the shards run on io_uring. An explicit `uring` the kernel does
/// not allow is an error (exit code 2); `auto` falls back to epoll and says why.
fn choose_driver(choice: DriverChoice) -> Result<bool, String> {
    if choice == DriverChoice::Epoll {
        info!(driver = "epoll", "event driver (--driver epoll)");
        return Ok(false);
    }
    let asked = if choice == DriverChoice::Uring {
        "uring"
    } else {
        "auto"
    };
    match uring::probe() {
        Ok(()) => {
            info!(
                driver = "io_uring",
                "event driver (--driver {asked}: io_uring available)"
            );
            Ok(true)
        }
        Err(why) if choice == DriverChoice::Uring => Err(format!(
            "--driver uring: io_uring is not available here: {why}; use --driver epoll or auto"
        )),
        Err(why) => {
            info!(driver = "epoll", reason = %why, "event driver (--driver auto: io_uring unavailable)");
            Ok(false)
        }
    }
}

fn run(cfg: Config, use_uring: bool, tls: Tls) -> anyhow::Result<()> {
    let max_connections = connection_limit(&cfg);
    info!(
        node_id = cfg.node_id,
        drawn_at_start = cfg.node_id_random,
        broker = %cfg.broker,
        "node (--node-id, --broker)"
    );
    let kernels = Kernels::detect();
    info!(kernel = ?kernels.kernel(), "frame kernels");
    let bound = bind_listeners(&cfg)?;
    let shared = Arc::new(Shared::default());
    let pending = broker::prepare(&cfg.broker, cfg.node_id, cfg.broker_ca.as_deref())?;
    let mut api = api_settings(&cfg)?;
    api.broker_up = pending.as_ref().map(|p| p.healthy_flag());
    let shard_cfg = Arc::new(ShardConfig {
        settings: cfg.settings.clone(),
        max_outbound_bytes: cfg.max_outbound_bytes,
        max_connections,
        drain_timeout: cfg.drain_timeout,
        api,
        api_listener: Some(bound.api_listener),
    });
    // Signals are caught before the address is announced, so a SIGTERM sent as soon as the
    // `listening on` line is read is already a graceful drain.
    let signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;

    let drivers = build_drivers(&cfg, bound.per_shard, use_uring)?;
    let wakers = drivers.wakers.clone();
    let metrics = drivers.metrics.clone();
    let done_rx = spawn_shards(&cfg, drivers, &shard_cfg, &shared, kernels, &tls, pending)?;
    let _ = shared.all_metrics.set(metrics.clone());

    if let Err(e) = announce(&bound.client, bound.api) {
        // The lines are for whoever started us; a closed or broken stdout must not stop a
        // gateway whose shards are already serving.
        warn!(error = %e, "cannot write the listening addresses to stdout");
    }
    info!(addresses = ?bound.client, "listening");
    watch_signals(signals, Arc::clone(&shared), wakers, tls)?;

    for (index, result) in done_rx {
        result.with_context(|| format!("shard {index} failed"))?;
    }
    let t = Totals::sum(metrics.iter().map(|m| &**m));
    info!(
        accepted = t.accepted,
        upgrades = t.upgrades,
        rejected_over_limit = t.rejected_over_limit,
        timeouts = t.timeouts,
        accept_exhausted = t.accept_exhausted,
        bytes_in = t.bytes_in,
        bytes_out = t.bytes_out,
        "stopped"
    );
    Ok(())
}

/// Raise the open-files limit and derive the connection limit from it (unless configured).
fn connection_limit(cfg: &Config) -> usize {
    let nofile = raise_nofile_limit().unwrap_or(1024);
    let max_connections = cfg.connection_limit(nofile);
    info!(
        threads = cfg.threads,
        max_connections,
        rlimit_nofile = nofile,
        "limits (raise `ulimit -n` / LimitNOFILE= for more connections)"
    );
    max_connections
}

/// Every shard's listeners and the addresses they resolved to.
struct Bound {
    /// Per shard: one listener per client address, then the API's.
    per_shard: Vec<Vec<std::net::TcpListener>>,
    /// The client addresses as bound (port 0 resolved).
    client: Vec<SocketAddr>,
    /// The API address as bound.
    api: SocketAddr,
    /// Index of the API listener in each shard's list.
    api_listener: usize,
}

/// Bind every listener before starting any shard: a port-0 address is resolved by the first
/// bind and every other shard binds that same port.
fn bind_listeners(cfg: &Config) -> anyhow::Result<Bound> {
    let mut per_shard: Vec<Vec<std::net::TcpListener>> =
        (0..cfg.threads).map(|_| Vec::new()).collect();
    let mut client = Vec::with_capacity(cfg.listen.len());
    for addr in &cfg.listen {
        let mut actual = *addr;
        for listeners in per_shard.iter_mut() {
            let l = bind_reuseport(actual, BACKLOG)
                .with_context(|| format!("cannot listen on {actual}"))?;
            actual = l.local_addr()?;
            listeners.push(l);
        }
        client.push(actual);
    }
    // The backend API: one more listener per shard, after the client ones.
    let api_listener = cfg.listen.len();
    let mut api = cfg.api.listen;
    for listeners in per_shard.iter_mut() {
        let l = bind_reuseport(api, BACKLOG)
            .with_context(|| format!("cannot listen on {api} (--api-listen)"))?;
        api = l.local_addr()?;
        listeners.push(l);
    }
    Ok(Bound {
        per_shard,
        client,
        api,
        api_listener,
    })
}

/// The backend API's key (generated and logged once when none is configured) and limits.
fn api_settings(cfg: &Config) -> anyhow::Result<ApiSettings> {
    let api_key = match &cfg.api.key {
        Some(key) => ApiKey::new(key),
        None => {
            let key = ApiKey::random().context("cannot generate an API key")?;
            warn!(
                api_key = key.reveal(),
                "no --api-key given: generated this key for the backend API (shown only now)"
            );
            key
        }
    };
    Ok(ApiSettings {
        max_body_bytes: cfg.api.max_body_bytes,
        max_header_bytes: cfg.settings.max_header_bytes,
        max_headers: cfg.settings.max_headers,
        request_timeout: cfg.settings.handshake_timeout,
        close_timeout: cfg.settings.close_timeout,
        admin_secret: cfg.api.admin_secret.as_deref().map(ApiKey::new),
        ..ApiSettings::new(api_key)
    })
}

/// One event driver per shard, with its waker and metrics.
struct Drivers {
    /// Per shard: the driver, its listener count, its metrics.
    shards: Vec<(ShardDriver, usize, Arc<ShardMetrics>)>,
    /// Every shard's waker, in shard order.
    wakers: Vec<Arc<Waker>>,
    /// Every shard's metrics, in shard order.
    metrics: Vec<Arc<ShardMetrics>>,
}

fn build_drivers(
    cfg: &Config,
    per_shard: Vec<Vec<std::net::TcpListener>>,
    use_uring: bool,
) -> anyhow::Result<Drivers> {
    let mut d = Drivers {
        shards: Vec::with_capacity(cfg.threads),
        wakers: Vec::with_capacity(cfg.threads),
        metrics: Vec::with_capacity(cfg.threads),
    };
    for listeners in per_shard {
        let n = listeners.len();
        let shard_metrics = Arc::new(ShardMetrics::default());
        let (driver, waker) = if use_uring {
            let (u, w) = UringDriver::new(listeners, cfg.uring_buffers, Arc::clone(&shard_metrics))
                .context("cannot set up an io_uring ring")?;
            if d.shards.is_empty() {
                info!(mode = ?u.mode(), buffers = cfg.uring_buffers, "io_uring ring per shard");
            }
            (ShardDriver::Uring(u), w)
        } else {
            let (m, w) = MioDriver::new(listeners)?;
            (ShardDriver::Epoll(m), w)
        };
        d.wakers.push(waker);
        d.metrics.push(Arc::clone(&shard_metrics));
        d.shards.push((driver, n, shard_metrics));
    }
    Ok(d)
}

/// What each finished shard thread reports.
type ShardDone = mpsc::Receiver<(usize, std::io::Result<()>)>;

/// Start one pinned thread per shard, joined by the mesh of queues between them; the receiver
/// learns when each one finishes.
fn spawn_shards(
    cfg: &Config,
    drivers: Drivers,
    shard_cfg: &Arc<ShardConfig>,
    shared: &Arc<Shared>,
    kernels: Kernels,
    tls: &Tls,
    pending: Option<broker::Pending>,
) -> anyhow::Result<ShardDone> {
    // The queues between shards, each woken through its shard's waker.
    let mesh = Arc::new(Mesh::new(
        cfg.shard_queue_capacity,
        drivers.wakers.iter().map(|w| Some(Arc::clone(w))).collect(),
    ));
    let history = Arc::new(cfg.history.clone());
    let router_cfg = RouterConfig {
        max_channels_per_conn: cfg.max_channels_per_conn,
        max_backlog: cfg.max_shard_backlog,
        history: Arc::clone(&history),
        max_recovery: cfg.max_recovery,
        node: cfg.node_id,
        uplink: pending.as_ref().map(|p| Arc::clone(p.uplink())),
    };
    if let Some(pending) = pending {
        broker::start(pending, Arc::clone(&mesh), history)?;
    }
    let client_auth = ClientAuth {
        verifier: cfg
            .api
            .token_secret
            .as_deref()
            .map(|s| Verifier::new(s.as_bytes())),
        require_token: cfg.api.require_token,
    };
    let hooks = start_hooks(cfg, &mesh, shared)?;
    let cpus = allowed_cpus();
    let (done_tx, done_rx) = mpsc::channel();
    for (index, (driver, n, shard_metrics)) in drivers.shards.into_iter().enumerate() {
        let router = Router::new(index as u8, Arc::clone(&mesh), router_cfg.clone());
        let shard = Shard::new(
            index as u8,
            driver,
            n,
            Arc::clone(shard_cfg),
            Arc::clone(shared),
            kernels,
            shard_metrics,
        )
        .with_router(router)
        .with_app({
            let app = AppState::new(client_auth.clone()).with_sio(Arc::clone(&cfg.sio));
            match &hooks {
                Some(h) => app.with_calls(Calls::new(h.clone(), cfg.settings.policy.clone())),
                None => app,
            }
        });
        let shard = tls.attach(shard, cfg.listen.len());
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let done = done_tx.clone();
        thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = pin_current_thread(cpu) {
                        warn!(shard = index, cpu, error = %e, "cannot pin shard thread");
                    }
                }
                let _ = done.send((index, shard.run()));
            })
            .context("cannot start a shard thread")?;
    }
    Ok(done_rx)
}

/// Start the hooks thread when any hook is configured; its answers reach the calling
/// connection's shard through that shard's inbox.
fn start_hooks(
    cfg: &Config,
    mesh: &Arc<Mesh>,
    shared: &Arc<Shared>,
) -> anyhow::Result<Option<Hooks>> {
    if !cfg.hooks.any() {
        return Ok(None);
    }
    let backends = cfg.hooks.backends.iter().map(|b| b.host.clone()).collect();
    let metrics = Arc::new(HookMetrics::new(backends));
    let _ = shared.hook_metrics.set(Arc::clone(&metrics));
    let mesh = Arc::clone(mesh);
    let deliver = Box::new(move |a: Answer| {
        let shard = a.caller.conn.shard();
        match mesh.push(shard, ShardMsg::Hook(Box::new(a))) {
            Ok(()) => {
                mesh.wake(shard);
                Ok(())
            }
            // The refused message is the one pushed: a `Hook`.
            Err(ShardMsg::Hook(a)) => Err(*a),
            Err(_) => Ok(()),
        }
    });
    let hooks = Hooks::start(cfg.hooks.clone(), metrics, deliver)
        .context("cannot start the hooks thread")?;
    info!(
        backends = ?cfg.hooks.backends.iter().map(|b| &b.host).collect::<Vec<_>>(),
        timeout = ?cfg.hooks.timeout,
        "backend hooks"
    );
    Ok(Some(hooks))
}

/// The first SIGINT/SIGTERM starts the drain on every shard; a second one exits at once.
/// SIGHUP reloads the TLS certificates and keys.
fn watch_signals(
    mut signals: Signals,
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    tls: Tls,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stops = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tls.reload();
                    continue;
                }
                stops += 1;
                if stops == 1 {
                    info!(signal = sig, "shutting down: closing connections with 1001");
                    shared.shutdown.store(true, Ordering::Release);
                    for w in &wakers {
                        let _ = w.wake();
                    }
                } else {
                    warn!("second signal: exiting without waiting for the drain");
                    std::process::exit(1);
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Print one `listening on <addr>` line per client address and `api listening on <addr>`, then
/// flush: the lines scripts and tests wait for.
fn announce(bound: &[SocketAddr], api_addr: SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for addr in bound {
        writeln!(stdout, "listening on {addr}")?;
    }
    writeln!(stdout, "api listening on {api_addr}")?;
    stdout.flush()
}

/// The TLS configurations of the client listeners and of the API listener, if any.
#[derive(Clone, Default)]
struct Tls {
    client: Option<TlsServer>,
    api: Option<TlsServer>,
}

impl Tls {
    /// Read the certificates and keys (a missing, unreadable or mismatched one stops the start).
    fn load(cfg: &Config) -> anyhow::Result<Tls> {
        let load = |files: &Option<TlsFiles>, what: &str| -> anyhow::Result<Option<TlsServer>> {
            let Some(f) = files else {
                return Ok(None);
            };
            let server = TlsServer::load(&f.cert, &f.key).with_context(|| format!("--{what}"))?;
            info!(cert = %f.cert.display(), "TLS on the {what} listener(s): TLS 1.2 and 1.3");
            Ok(Some(server))
        };
        Ok(Tls {
            client: load(&cfg.tls, "tls-cert")?,
            api: load(&cfg.api_tls, "api-tls-cert")?,
        })
    }

    /// Serve the client listeners (`0..clients`) and the API listener (the next one) with TLS
    /// where configured.
    fn attach<D: gateway::driver::Driver>(&self, mut shard: Shard<D>, clients: usize) -> Shard<D> {
        if let Some(server) = &self.client {
            for listener in 0..clients {
                shard = shard.with_tls(listener, server.clone());
            }
        }
        if let Some(server) = &self.api {
            shard = shard.with_tls(clients, server.clone());
        }
        shard
    }

    /// Read the files again (SIGHUP). New handshakes use the new pair; open connections keep
    /// theirs. A file that fails to load is logged and the current pair stays.
    fn reload(&self) {
        for server in [&self.client, &self.api].into_iter().flatten() {
            match server.reload() {
                Ok(()) => info!(cert = %server.cert_path().display(), "TLS certificate reloaded"),
                Err(e) => error!("TLS reload failed, keeping the current certificate: {e}"),
            }
        }
        if self.client.is_none() && self.api.is_none() {
            info!("SIGHUP: no TLS listener, nothing to reload");
        }
    }
}
