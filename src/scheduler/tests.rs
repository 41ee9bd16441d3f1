//! The answers' shapes (as `distributed/http/scheduler/api.py` writes them), the error mapping, the
//! route choice, and the direct transport against canned answers on 127.0.0.1.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

#[test]
fn adaptive_target_answers() {
    for (body, want) in [
        (r#"{"workers": 0}"#, Ok(0)),
        (r#"{"workers": 7}"#, Ok(7)),
        (r#"{"workers": 99999999999}"#, Ok(u32::MAX)),
    ] {
        assert_eq!(parse_adaptive_target(body), want, "{body}");
    }
    for body in [
        r#"{"workers": -1}"#,
        r#"{"workers": 1.5}"#,
        r#"{"workers": null}"#,
        r#"{"Error": "Internal Server Error"}"#,
        "API V1",
    ] {
        assert!(parse_adaptive_target(body).is_err(), "{body}");
    }
}

#[test]
fn check_idle_answers() {
    assert_eq!(parse_check_idle(r#"{"idle_since": null}"#), Ok(None));
    let t = parse_check_idle(r#"{"idle_since": 1800000000.25}"#)
        .unwrap()
        .unwrap();
    assert_eq!(t.as_millisecond(), 1_800_000_000_250);
    assert!(parse_check_idle(r#"{"idle_since": "soon"}"#).is_err());
    assert!(parse_check_idle("{}").is_ok_and(|t| t.is_none()));
}

#[test]
fn workers_answers_with_string_and_number_names() {
    let body = r#"{"num_workers": 2, "workers": [
        {"name": "simple-default-worker-abc", "address": "tcp://10.244.0.7:40000"},
        {"name": 3, "address": "tcp://10.244.0.8:40000"}]}"#;
    assert_eq!(
        parse_workers(body).unwrap(),
        [
            Worker {
                name: "simple-default-worker-abc".into(),
                address: "tcp://10.244.0.7:40000".into()
            },
            Worker {
                name: "3".into(),
                address: "tcp://10.244.0.8:40000".into()
            },
        ]
    );
    assert!(parse_workers(r#"{"num_workers": 0}"#).is_err());
}

#[test]
fn retired_answers_are_keyed_by_address() {
    let body = r#"{
        "tcp://10.244.0.9:1": {"type": "Worker", "id": "b", "name": "b", "host": "10.244.0.9", "status": "closing_gracefully"},
        "tcp://10.244.0.8:1": {"type": "Worker", "id": "a", "name": "a"},
        "tcp://10.244.0.7:1": {"type": "Worker"}}"#;
    assert_eq!(
        parse_retired(body).unwrap(),
        [
            Worker {
                name: "tcp://10.244.0.7:1".into(),
                address: "tcp://10.244.0.7:1".into()
            },
            Worker {
                name: "a".into(),
                address: "tcp://10.244.0.8:1".into()
            },
            Worker {
                name: "b".into(),
                address: "tcp://10.244.0.9:1".into()
            },
        ]
    );
    assert_eq!(parse_retired("{}").unwrap(), []);
    assert!(parse_retired("[]").is_err());
}

fn answer(status: u16, reason: Option<&str>, body: &str) -> Answer {
    Answer {
        status,
        reason: reason.map(String::from),
        body: body.into(),
    }
}

#[test]
fn statuses_become_typed_errors() {
    let path = "/api/v1/adaptive_target";
    assert_eq!(
        classify("t", path, false, answer(200, None, "{}")).unwrap(),
        "{}"
    );
    let not_found = classify("t", path, false, answer(404, None, "<html>404: Not Found"));
    assert!(matches!(
        not_found,
        Err(SchedulerError::ApiNotEnabled { .. })
    ));
    // The Python exception travels in the reason phrase.
    match classify(
        "t",
        path,
        false,
        answer(
            500,
            Some("'NoneType' object is not iterable"),
            r#"{"Error": "Internal Server Error"}"#,
        ),
    ) {
        Err(SchedulerError::Status {
            status: 500,
            message,
            ..
        }) => assert_eq!(message, "'NoneType' object is not iterable"),
        other => panic!("{other:?}"),
    }
    match classify(
        "t",
        path,
        true,
        answer(500, None, r#"{"Error": "Internal Server Error"}"#),
    ) {
        Err(SchedulerError::Status { message, .. }) => {
            assert_eq!(message, r#"{"Error": "Internal Server Error"}"#)
        }
        other => panic!("{other:?}"),
    }
    // Through the proxy, the API server's own Status: no endpoint, no Service, forbidden.
    let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no endpoints available for service \"simple-scheduler:http-dashboard\"","reason":"ServiceUnavailable","code":503}"#;
    match classify("t", path, true, answer(503, None, status)) {
        Err(e @ SchedulerError::Proxy { status: 503, .. }) => {
            assert!(e.is_unreachable());
            assert!(e.to_string().contains("no endpoints available"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let missing = r#"{"kind":"Status","message":"services \"x-scheduler\" not found","reason":"NotFound","code":404}"#;
    assert!(matches!(
        classify("t", path, true, answer(404, None, missing)),
        Err(SchedulerError::Proxy { status: 404, .. })
    ));
    // Not through the proxy, a Status-looking body is the scheduler's.
    assert!(matches!(
        classify("t", path, false, answer(404, None, missing)),
        Err(SchedulerError::ApiNotEnabled { .. })
    ));
}

#[test]
fn in_the_cluster_means_service_host_and_token() {
    assert_eq!(pick_route(Some("10.96.0.1"), true), Route::Direct);
    assert_eq!(pick_route(Some("10.96.0.1"), false), Route::ApiServerProxy);
    assert_eq!(pick_route(None, true), Route::ApiServerProxy);
    assert_eq!(pick_route(Some(" "), true), Route::ApiServerProxy);
    assert_eq!(pick_route(None, false), Route::ApiServerProxy);
}

#[test]
fn proxy_path_names_the_dashboard_port() {
    assert_eq!(
        proxy_path("simple", "ns1", DASHBOARD_PORT_NAME),
        "/api/v1/namespaces/ns1/services/simple-scheduler:http-dashboard/proxy"
    );
}

#[test]
fn direct_urls_must_be_http() {
    assert!(Scheduler::direct_url("http://127.0.0.1:8787").is_ok());
    assert!(Scheduler::direct_url("http://127.0.0.1:8787/prefix/").is_ok());
    for bad in ["https://x:8787", "127.0.0.1:8787", "http://", "not a url"] {
        assert!(
            matches!(
                Scheduler::direct_url(bad),
                Err(SchedulerError::InvalidUrl { .. })
            ),
            "{bad}"
        );
    }
    let s = Scheduler::direct("simple", "ns1");
    assert_eq!(s.target(), "http://simple-scheduler.ns1.svc:8787");
}

/// Serves `responses` in order, one per connection, on 127.0.0.1; returns the base URL and the
/// requests received (request line and body).
async fn canned(responses: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for response in responses {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body Content-Length announces.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        let body = &text[end + 4..];
                        seen.push(format!("{} {body}", text.lines().next().unwrap()));
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            if response.is_empty() {
                // Never answer: hold the connection until the client gives up.
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.ok();
        }
        seen
    });
    (base, server)
}

fn http_answer(status_line: &str, body: &str) -> &'static str {
    Box::leak(
        format!(
            "HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    )
}

#[tokio::test]
async fn direct_calls_against_canned_answers() {
    let (base, server) = canned(vec![
        http_answer("200 OK", r#"{"workers": 3}"#),
        http_answer("200 OK", r#"{"idle_since": null}"#),
        http_answer(
            "200 OK",
            r#"{"num_workers": 2, "workers": [{"name": "w-a", "address": "tcp://127.0.0.1:1"}, {"name": "w-b", "address": "tcp://127.0.0.1:2"}]}"#,
        ),
        http_answer(
            "200 OK",
            r#"{"tcp://127.0.0.1:2": {"name": "w-b", "id": "w-b"}}"#,
        ),
        http_answer(
            "500 division by zero",
            r#"{"Error": "Internal Server Error"}"#,
        ),
    ])
    .await;
    let s = Scheduler::direct_url(&base).unwrap();
    assert_eq!(s.adaptive_target().await.unwrap(), 3);
    assert_eq!(s.check_idle().await.unwrap(), None);
    let retired = s
        .retire_workers(Retire::Names(vec!["w-b".into(), "w-gone".into()]))
        .await
        .unwrap();
    assert_eq!(
        retired,
        [Worker {
            name: "w-b".into(),
            address: "tcp://127.0.0.1:2".into()
        }]
    );
    match s.retire_workers(Retire::Count(1)).await {
        Err(SchedulerError::Status {
            status: 500,
            message,
            ..
        }) => assert_eq!(message, "division by zero"),
        other => panic!("{other:?}"),
    }
    // Nothing to retire: no request at all.
    assert_eq!(s.retire_workers(Retire::Count(0)).await.unwrap(), []);
    assert_eq!(
        s.retire_workers(Retire::Addresses(vec![])).await.unwrap(),
        []
    );
    let seen = server.await.unwrap();
    assert_eq!(
        seen,
        [
            "GET /api/v1/adaptive_target HTTP/1.1 ",
            "GET /api/v1/check_idle HTTP/1.1 ",
            "GET /api/v1/get_workers HTTP/1.1 ",
            r#"POST /api/v1/retire_workers HTTP/1.1 {"workers":["tcp://127.0.0.1:2"]}"#,
            r#"POST /api/v1/retire_workers HTTP/1.1 {"n":1}"#,
        ]
    );
}

#[tokio::test]
async fn a_silent_scheduler_times_out_and_a_closed_port_is_unreachable() {
    let (base, server) = canned(vec![""]).await;
    let s = Scheduler::direct_url(&base)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let e = s.adaptive_target().await.unwrap_err();
    assert!(matches!(e, SchedulerError::Timeout { .. }), "{e}");
    assert!(e.is_unreachable());
    assert!(started.elapsed() < Duration::from_secs(3));
    server.abort();

    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Scheduler::direct_url(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = s.check_idle().await.unwrap_err();
    assert!(matches!(e, SchedulerError::Unreachable { .. }), "{e}");
    assert!(e.is_unreachable());
}

/// A client for an "API server" at `base` (plain HTTP on 127.0.0.1, no credentials), as
/// [`Scheduler::proxy_client`] makes it.
fn kube_client(base: &str) -> kube::Client {
    Scheduler::proxy_client(kube::Config::new(base.parse().unwrap())).unwrap()
}

#[tokio::test]
async fn a_retrying_client_is_still_bounded() {
    let no_endpoints = r#"{"kind":"Status","message":"no endpoints available","code":503}"#;
    let answers = vec![http_answer("503 Service Unavailable", no_endpoints); 20];
    let (base, server) = canned(answers).await;
    let retrying = kube::Client::try_from(kube::Config::new(base.parse().unwrap())).unwrap();
    let s = Scheduler::proxy(retrying, "simple", "ns1").with_timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let e = s.adaptive_target().await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "{e}");
    server.abort();
}

#[tokio::test]
async fn proxied_calls_go_through_the_service_proxy_path() {
    let no_endpoints = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"no endpoints available for service \"simple-scheduler:http-dashboard\"","reason":"ServiceUnavailable","code":503}"#;
    let (base, server) = canned(vec![
        http_answer("200 OK", r#"{"workers": 2}"#),
        http_answer(
            "200 OK",
            r#"{"tcp://10.244.0.9:1": {"name": "simple-default-worker-x"}}"#,
        ),
        http_answer("503 Service Unavailable", no_endpoints),
        http_answer(
            "404 Not Found",
            "<html><title>404: Not Found</title></html>",
        ),
    ])
    .await;
    let s = Scheduler::for_cluster(Route::ApiServerProxy, &kube_client(&base), "simple", "ns1");
    assert_eq!(
        s.target(),
        "API server /api/v1/namespaces/ns1/services/simple-scheduler:http-dashboard/proxy"
    );
    assert_eq!(s.adaptive_target().await.unwrap(), 2);
    assert_eq!(
        s.retire_workers(Retire::Count(1)).await.unwrap(),
        [Worker {
            name: "simple-default-worker-x".into(),
            address: "tcp://10.244.0.9:1".into()
        }]
    );
    let e = s.check_idle().await.unwrap_err();
    assert!(
        matches!(e, SchedulerError::Proxy { status: 503, .. }) && e.is_unreachable(),
        "{e}"
    );
    let e = s.workers().await.unwrap_err();
    assert!(matches!(e, SchedulerError::ApiNotEnabled { .. }), "{e}");
    let proxy = "/api/v1/namespaces/ns1/services/simple-scheduler:http-dashboard/proxy";
    assert_eq!(
        server.await.unwrap(),
        [
            format!("GET {proxy}/api/v1/adaptive_target HTTP/1.1 "),
            format!(r#"POST {proxy}/api/v1/retire_workers HTTP/1.1 {{"n":1}}"#),
            format!("GET {proxy}/api/v1/check_idle HTTP/1.1 "),
            format!("GET {proxy}/api/v1/get_workers HTTP/1.1 "),
        ]
    );
}

#[test]
fn the_direct_route_reaches_the_service_by_name() {
    let client = || kube_client("http://127.0.0.1:1");
    // Building a client needs a runtime for its background tasks.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let s = Scheduler::for_cluster(Route::Direct, &client(), "simple", "ns1");
        assert_eq!(s.target(), "http://simple-scheduler.ns1.svc:8787");
    });
}
