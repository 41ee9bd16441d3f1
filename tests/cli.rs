//! The command line (`dask-operator job ...`, `cluster ...`) as a user runs it: the binary as a
//! process with the admin kubeconfig, against the operator and real Dask pods on the local node.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{
    Operator, create_from_yaml, eventually, fixture, gone, kubeconfig_path, with_namespace,
};
use dask_operator::crd::{DaskCluster, DaskJob, DaskWorkerGroup};
use kube::Api;
use kube::api::ListParams;

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(240);

/// Runs `dask-operator ARGS` to its end.
async fn cli(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_dask-operator"))
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .await
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A script in a directory of its own, for this test.
fn script(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dask-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

const MEAN: &str = "import json, sys\n\
                    import dask.array as da\n\
                    from distributed import Client\n\
                    client = Client()\n\
                    size = int(sys.argv[1])\n\
                    x = da.random.random((size, size), chunks=(500, 500))\n\
                    mean = float((x + x.T).mean().compute())\n\
                    print(f'mean={mean}')\n\
                    json.dump({'mean': mean}, open('/dev/termination-log', 'w'))\n";

#[tokio::test]
async fn submit_follows_a_script_to_its_result_and_the_job_commands_see_it() {
    with_namespace("cli-mean", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let path = script("mean.py", MEAN);
        let out = cli(&[
            "job",
            "submit",
            path.to_str().unwrap(),
            "-n",
            &ns,
            "--name",
            "mean",
            "--workers",
            "1",
            "--wait",
            "-o",
            "json",
            "--",
            "2000",
        ])
        .await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
        // The runner's log streamed (to stderr, as stdout is JSON), the phases too.
        assert!(
            stderr.contains("mean=0.99") || stderr.contains("mean=1.00"),
            "{stderr}"
        );
        assert!(stderr.contains("DaskJob mean: Running"), "{stderr}");
        let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
        assert_eq!(summary["status"]["jobStatus"], "Successful");
        let result: serde_json::Value =
            serde_json::from_str(summary["status"]["result"].as_str().unwrap()).unwrap();
        assert!(
            (result["mean"].as_f64().unwrap() - 1.0).abs() < 0.01,
            "{result}"
        );

        let list = cli(&["job", "list", "-n", &ns]).await;
        let list = text(&list.stdout);
        assert!(list.starts_with("NAME"), "{list}");
        assert!(
            list.lines()
                .any(|l| l.starts_with("mean ") && l.contains("Successful")),
            "{list}"
        );
        let status = text(&cli(&["job", "status", "mean", "-n", &ns]).await.stdout);
        assert!(
            status.contains("Status:     Successful (RunnerSucceeded"),
            "{status}"
        );
        assert!(status.contains("Result:     {\"mean\": "), "{status}");
        let logs = text(&cli(&["job", "logs", "mean", "-n", &ns]).await.stdout);
        assert!(logs.contains("mean="), "{logs}");

        let deleted = cli(&["job", "delete", "mean", "-n", &ns]).await;
        assert!(deleted.status.success(), "{}", text(&deleted.stderr));
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        gone(&jobs, "mean", TIMEOUT).await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_script_exits_non_zero_with_the_reason() {
    with_namespace("cli-fail", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        let path = script("fails.py", "raise SystemExit('no luck today')\n");
        let out = cli(&[
            "job",
            "submit",
            path.to_str().unwrap(),
            "-n",
            &ns,
            "--name",
            "fails",
            "--workers",
            "0",
            "--wait",
        ])
        .await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stdout.contains("no luck today"),
            "the streamed log: {stdout}"
        );
        assert!(
            stderr
                .lines()
                .last()
                .unwrap()
                .starts_with("DaskJob fails failed: RunnerFailed: "),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn submit_to_an_existing_cluster_and_the_cluster_commands() {
    with_namespace("cli-cluster", |client, ns| async move {
        let _operator = Operator::start(&client, &ns).await;
        create_from_yaml(&client, &ns, &fixture("simplecluster.yaml")).await;
        let clusters: Api<DaskCluster> = Api::namespaced(client.clone(), &ns);
        let list = eventually("cluster list showing simple Running", TIMEOUT, || async {
            let out = text(&cli(&["cluster", "list", "-n", &ns]).await.stdout);
            out.lines().any(|l| l.starts_with("simple ") && l.contains("Running")).then_some(out)
        })
        .await;
        assert!(list.starts_with("NAME"), "{list}");

        let path = script("small.py", "from distributed import Client\nprint('sum', Client().submit(sum, [1, 2, 3]).result())\n");
        let out = cli(&[
            "job", "submit", path.to_str().unwrap(), "-n", &ns, "--name", "on-simple", "--cluster",
            "simple", "--wait",
        ])
        .await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.contains("sum 6"), "{stdout}");
        assert!(clusters.get_opt("simple").await.unwrap().is_some(), "the cluster survives");

        let scaled = cli(&["cluster", "scale", "simple", "1", "-n", &ns]).await;
        assert!(scaled.status.success(), "{}", text(&scaled.stderr));
        let groups: Api<DaskWorkerGroup> = Api::namespaced(client.clone(), &ns);
        assert_eq!(groups.get("simple-default").await.unwrap().spec.worker.replicas, 1);
        let deleted = cli(&["cluster", "delete", "simple", "-n", &ns]).await;
        assert!(deleted.status.success(), "{}", text(&deleted.stderr));
        gone(&clusters, "simple", TIMEOUT).await;
    })
    .await;
}

#[tokio::test]
async fn bad_input_fails_at_once_with_one_line_and_creates_nothing() {
    with_namespace("cli-bad", |client, ns| async move {
        let path = script("ok.py", "print(1)\n");
        let big = path.parent().unwrap().join("big");
        std::fs::create_dir_all(&big).unwrap();
        std::fs::write(big.join("data.bin"), vec![0u8; 600 * 1024]).unwrap();
        let script = path.to_str().unwrap();
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec!["job", "submit", "/nonexistent/x.py", "-n", &ns],
                "cannot read /nonexistent/x.py",
            ),
            (
                vec![
                    "job",
                    "submit",
                    script,
                    "-n",
                    &ns,
                    "--working-dir",
                    big.to_str().unwrap(),
                ],
                "more than the limit of 524288",
            ),
            (
                vec!["job", "submit", script, "-n", &ns, "--name", "Not_A_Name"],
                "--name: ",
            ),
            (
                vec!["job", "submit", script, "-n", "no-such-namespace"],
                "namespaces \"no-such-namespace\" not found",
            ),
            (
                vec!["job", "submit", script, "-n", &ns, "--workers=-1"],
                "--workers",
            ),
            (
                vec![
                    "job",
                    "submit",
                    script,
                    "-n",
                    &ns,
                    "--kubeconfig",
                    "/nonexistent/kubeconfig",
                ],
                "cannot read kubeconfig",
            ),
        ];
        for (args, expected) in cases {
            let out = cli(&args).await;
            let stderr = text(&out.stderr);
            assert!(!out.status.success(), "{args:?} succeeded");
            assert_eq!(
                stderr.trim().lines().count(),
                1,
                "{args:?}: one line: {stderr}"
            );
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
        let jobs: Api<DaskJob> = Api::namespaced(client.clone(), &ns);
        assert!(
            jobs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty(),
            "nothing created"
        );
        let help = text(&cli(&["job", "submit", "--help"]).await.stdout);
        assert!(
            help.contains("dask-operator job submit mean.py --wait"),
            "{help}"
        );
    })
    .await;
}
