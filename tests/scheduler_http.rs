//! The scheduler HTTP client (`dask_operator::scheduler`, direct transport) against a real
//! `dask scheduler` and real `dask worker` processes from the pinned test-client venv
//! (`tests/conformance/venv.sh`), everything on 127.0.0.1 with ports the processes pick themselves.
//! No Kubernetes cluster is needed.
//!
//! The scheduler gets its routes from `resources::scheduler_api::routes_value()`, the value the
//! operator gives scheduler pods, so this also checks that the value enables the API; a second
//! scheduler without it shows what the client says when the API is off.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dask_operator::resources::scheduler_api::{self, ROUTES_ENV};
use dask_operator::scheduler::{Retire, Scheduler, SchedulerError};
use sha2::{Digest, Sha256};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The venv's Python: `$CONFORMANCE_PYTHON`, else the cached venv `tests/conformance/venv.sh`
/// makes (same key: the pinned requirements, the wheel's sha256 and the Python version).
fn venv_python() -> PathBuf {
    if let Ok(python) = std::env::var("CONFORMANCE_PYTHON") {
        return python.into();
    }
    let read = |path: &str| {
        std::fs::read(Path::new(REPO).join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    };
    let venv_sh = String::from_utf8(read("tests/conformance/venv.sh")).unwrap();
    let wheel_sha = venv_sh
        .lines()
        .find_map(|l| l.strip_prefix("WHEEL_SHA256="))
        .expect("WHEEL_SHA256= in tests/conformance/venv.sh");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let version = Command::new(&python)
        .args(["-c", "import sys; print(sys.version)"])
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}; the test needs CPython 3.11"));
    let mut key = Sha256::new();
    key.update(read("hack/images/dask-requirements.txt"));
    key.update(read("tests/conformance/requirements.txt"));
    key.update(format!("{wheel_sha}\n"));
    key.update(&version.stdout);
    let key = hex::encode(key.finalize());
    let cache = std::env::var("DASK_OPERATOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"))
                .join("dask-operator")
        });
    let venv = cache
        .join("venvs")
        .join(format!("conformance-{}", &key[..16]));
    assert!(
        venv.join(".complete").is_file(),
        "the test-client venv {} does not exist: create it with `tests/conformance/venv.sh` (it \
         installs the pinned Dask packages from the package index once), or point \
         CONFORMANCE_PYTHON at a Python that has them",
        venv.display()
    );
    venv.join("bin/python")
}

/// Processes started by the test, killed (SIGKILL) and reaped when it ends, panics included; their
/// logs are printed if it failed.
struct Processes {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Processes {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "dask-operator-scheduler-http-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            children: Vec::new(),
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Starts `python -m …args` as `name`, output to `<dir>/<name>.log`.
    fn start(&mut self, name: &str, mut command: Command) {
        let log = std::fs::File::create(self.log(name)).unwrap();
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    fn kill(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(i);
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// Panics if `name` has exited.
    fn assert_running(&mut self, name: &str) {
        let log = self.read_log(name);
        if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| n == name)
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("{name} exited ({status}):\n{log}");
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let names: Vec<String> = self.children.iter().map(|(n, _)| n.clone()).collect();
        for name in &names {
            self.kill(name);
        }
        if std::thread::panicking() {
            for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("==> {} (last lines)", path.display());
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
            eprintln!("kept {}", self.dir.display());
        } else {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

/// `python -m dask <args>` (`dask` with `args` empty: plain `python`) with a clean Dask environment
/// (no `DASK_*` from the caller) whose scratch space is the test's directory.
fn python_in(python: &Path, dir: &Path, module: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(python);
    if let Some(module) = module {
        command.args(["-m", module]);
    }
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("DASK_") {
            command.env_remove(name);
        }
    }
    command
        .env("DASK_TEMPORARY_DIRECTORY", dir)
        .env("TMPDIR", dir);
    command
}

fn dask(procs: &Processes, python: &Path, args: &[&str]) -> Command {
    python_in(python, &procs.dir, Some("dask"), args)
}

/// Polls `check` every 100 ms until it gives a value or `limit` passes.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?} (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a scheduler on 127.0.0.1 (ports chosen by itself) and returns its comm and dashboard
/// addresses once its log shows both.
async fn start_scheduler(
    procs: &mut Processes,
    python: &Path,
    name: &str,
    routes: Option<&str>,
) -> (String, String) {
    let mut command = dask(
        procs,
        python,
        &[
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--no-jupyter",
        ],
    );
    if let Some(routes) = routes {
        command.env(ROUTES_ENV, routes);
    }
    procs.start(name, command);
    until(
        &format!("{name} listening"),
        Duration::from_secs(60),
        || {
            procs.assert_running(name);
            let log = procs.read_log(name);
            let after = |marker: &str| {
                log.lines().find_map(|l| {
                    l.split_once(marker)
                        .map(|(_, rest)| rest.trim().to_string())
                })
            };
            let found = match (after("Scheduler at:"), after("dashboard at:")) {
                (Some(comm), Some(dashboard)) => {
                    Some((comm, dashboard.trim_end_matches("/status").to_string()))
                }
                _ => None,
            };
            async move { Ok(found) }
        },
    )
    .await
}

fn start_worker(procs: &mut Processes, python: &Path, scheduler: &str, name: &str) {
    let local = procs.dir.join(name);
    let command = dask(
        procs,
        python,
        &[
            "worker",
            scheduler,
            "--host",
            "127.0.0.1",
            "--name",
            name,
            "--nthreads",
            "1",
            "--no-nanny",
            "--dashboard-address",
            "127.0.0.1:0",
            "--local-directory",
            local.to_str().unwrap(),
        ],
    );
    procs.start(name, command);
}

async fn worker_names(client: &Scheduler) -> Result<BTreeSet<String>, String> {
    Ok(client
        .workers()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|w| w.name)
        .collect())
}

async fn two_workers(client: &Scheduler) -> Result<Option<()>, String> {
    let seen = worker_names(client).await?;
    Ok((seen == names(&["w-a", "w-b"])).then_some(()))
}

/// Busy (not idle) and wanting at least one worker.
async fn busy_and_wanting(client: &Scheduler) -> Result<Option<()>, String> {
    let idle = client.check_idle().await.map_err(|e| e.to_string())?;
    let target = client.adaptive_target().await.map_err(|e| e.to_string())?;
    Ok((idle.is_none() && target >= 1).then_some(()))
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_against_a_real_scheduler() {
    let python = venv_python();
    let started = std::time::SystemTime::now();

    // The defaults the operator extends are the installed distributed's.
    let mut procs = Processes::new();
    let defaults = python_in(
        &python,
        &procs.dir,
        None,
        &[
            "-c",
            "import json, dask, distributed; \
             print(json.dumps(dask.config.get('distributed.scheduler.http.routes')))",
        ],
    )
    .output()
    .expect("asking distributed for its default routes");
    let defaults: Vec<String> = serde_json::from_slice(&defaults.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&defaults.stdout),
            String::from_utf8_lossy(&defaults.stderr)
        )
    });
    assert_eq!(defaults, scheduler_api::DEFAULT_ROUTES);

    // Without the API routes: the client says the API is off.
    let (_, plain) = start_scheduler(&mut procs, &python, "plain-scheduler", None).await;
    let off = Scheduler::direct_url(&plain).unwrap();
    match off.adaptive_target().await {
        Err(e @ SchedulerError::ApiNotEnabled { .. }) => {
            assert!(e.to_string().contains(ROUTES_ENV), "{e}")
        }
        other => panic!("without the API routes: {other:?}"),
    }
    procs.kill("plain-scheduler");

    let routes = scheduler_api::routes_value();
    let (comm, dashboard) = start_scheduler(&mut procs, &python, "scheduler", Some(&routes)).await;
    assert!(comm.starts_with("tcp://127.0.0.1:"), "{comm}");
    assert!(dashboard.starts_with("http://127.0.0.1:"), "{dashboard}");
    let client = Scheduler::direct_url(&dashboard)
        .unwrap()
        .with_timeout(Duration::from_secs(5));

    // No workers, no work.
    assert_eq!(client.adaptive_target().await.unwrap(), 0);
    assert_eq!(client.workers().await.unwrap(), []);
    let idle_since = until("the scheduler idle", Duration::from_secs(20), || async {
        client.check_idle().await.map_err(|e| e.to_string())
    })
    .await;
    let since = std::time::SystemTime::UNIX_EPOCH
        + Duration::from_millis(idle_since.as_millisecond() as u64);
    assert!(
        since + Duration::from_secs(5) >= started && since <= std::time::SystemTime::now(),
        "idle since {idle_since}"
    );

    // Two workers join; idle, the scheduler wants none of them.
    start_worker(&mut procs, &python, &comm, "w-a");
    start_worker(&mut procs, &python, &comm, "w-b");
    until("two workers", Duration::from_secs(60), || {
        procs.assert_running("w-a");
        procs.assert_running("w-b");
        two_workers(&client)
    })
    .await;
    assert_eq!(client.adaptive_target().await.unwrap(), 0);

    // A client keeps one task running: busy, and it wants a worker.
    let script = format!(
        "import time\nfrom distributed import Client\nc = Client({comm:?})\n\
         f = c.submit(time.sleep, 600, pure=False)\ntime.sleep(600)\n"
    );
    let busy = python_in(&python, &procs.dir, None, &["-c", &script]);
    procs.start("busy-client", busy);
    until("busy", Duration::from_secs(60), || {
        procs.assert_running("busy-client");
        busy_and_wanting(&client)
    })
    .await;
    // The client goes, its task with it: idle again.
    procs.kill("busy-client");
    until("idle again", Duration::from_secs(60), || async {
        let idle = client.check_idle().await.map_err(|e| e.to_string())?;
        Ok(idle.filter(|t| *t > idle_since))
    })
    .await;

    // Retire by name: exactly that worker, and the scheduler forgets it.
    let retired = client
        .retire_workers(Retire::Names(vec!["w-b".into(), "no-such-worker".into()]))
        .await
        .unwrap();
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(retired[0].name, "w-b");
    assert!(retired[0].address.starts_with("tcp://127.0.0.1:"));
    until("w-b gone", Duration::from_secs(30), || async {
        let seen = worker_names(&client).await?;
        Ok((seen == names(&["w-a"])).then_some(()))
    })
    .await;

    // Retire by count: the scheduler picks the one left.
    let retired = client.retire_workers(Retire::Count(1)).await.unwrap();
    assert_eq!(
        retired.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["w-a"]
    );
    until("no workers", Duration::from_secs(30), || async {
        Ok(worker_names(&client).await?.is_empty().then_some(()))
    })
    .await;
    assert_eq!(
        client.retire_workers(Retire::Count(1)).await.unwrap(),
        [],
        "nothing left to retire"
    );

    // A scheduler that is gone is unreachable, within the bound.
    procs.kill("scheduler");
    let gone = client.with_timeout(Duration::from_secs(2));
    let asked = Instant::now();
    let e = gone.adaptive_target().await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert!(asked.elapsed() < Duration::from_secs(3), "{e}");
}
