//! The scheduler's HTTP API routes (`distributed.http.scheduler.api`, what [`crate::scheduler`]
//! calls) are not among distributed's default `distributed.scheduler.http.routes`. A scheduler pod the
//! operator creates gets them through the environment, as distributed's defaults plus the API,
//! unless the user configured the routes themselves.

use k8s_openapi::api::core::v1::{EnvVar, PodSpec};

/// The variable Dask reads `distributed.scheduler.http.routes` from (its value is a Python literal).
pub const ROUTES_ENV: &str = "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES";

/// The module that serves `/api/v1/...`.
pub const API_ROUTE: &str = "distributed.http.scheduler.api";

/// `distributed.scheduler.http.routes` in distributed's own `distributed.yaml` (2026.8.0, the
/// version of the Dask image; `tests/scheduler_http.rs` checks it against the installed one).
pub const DEFAULT_ROUTES: [&str; 6] = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
];

/// The value of [`ROUTES_ENV`]: the defaults, then the API, as a list literal
/// (`["distributed.http.scheduler.prometheus", …, "distributed.http.scheduler.api"]`).
pub fn routes_value() -> String {
    let routes: Vec<&str> = DEFAULT_ROUTES.iter().copied().chain([API_ROUTE]).collect();
    serde_json::to_string(&routes).unwrap_or_default()
}

/// What [`enable_http_api`] did to one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpApi {
    /// [`ROUTES_ENV`] was added.
    Added,
    /// The container configures the routes itself through this variable ([`ROUTES_ENV`], a
    /// variable setting a section that holds them, or `DASK_INTERNAL_INHERIT_CONFIG`): left alone.
    UserConfigured(String),
    /// The container takes variables from ConfigMaps or Secrets (`envFrom`), which may set the
    /// routes; an explicit variable would override theirs, so the container is left alone.
    MaybeFromEnvFrom,
}

/// Whether the environment variable `name` can set `distributed.scheduler.http.routes`: Dask reads
/// `DASK_<path with __ for .>` (the path lower-cased), so the routes themselves or any section
/// holding them (`DASK_DISTRIBUTED__SCHEDULER__HTTP`, …), and any inherited configuration.
pub fn configures_routes(name: &str) -> bool {
    if name == "DASK_INTERNAL_INHERIT_CONFIG" {
        return true;
    }
    let Some(path) = name.strip_prefix("DASK_") else {
        return false;
    };
    let path = path.to_ascii_lowercase().replace("__", ".");
    [
        "distributed",
        "distributed.scheduler",
        "distributed.scheduler.http",
        "distributed.scheduler.http.routes",
    ]
    .contains(&path.as_str())
}

/// Gives every container of the scheduler's pod `spec` (not init containers) the API routes
/// through [`ROUTES_ENV`], unless the container configures the routes itself; returns, per container
/// name, what was done. Configuration files (`DASK_CONFIG`, `/etc/dask`) are not looked into: a
/// variable wins over them, so a user who sets the routes in a file should set the variable too.
pub fn enable_http_api(spec: &mut PodSpec) -> Vec<(String, HttpApi)> {
    let value = routes_value();
    spec.containers
        .iter_mut()
        .map(|container| {
            let env = container.env.get_or_insert_with(Vec::new);
            let outcome = if let Some(user) = env.iter().find(|e| configures_routes(&e.name)) {
                HttpApi::UserConfigured(user.name.clone())
            } else if container.env_from.as_ref().is_some_and(|f| !f.is_empty()) {
                HttpApi::MaybeFromEnvFrom
            } else {
                env.push(EnvVar {
                    name: ROUTES_ENV.into(),
                    value: Some(value.clone()),
                    ..Default::default()
                });
                HttpApi::Added
            };
            if env.is_empty() {
                container.env = None;
            }
            (container.name.clone(), outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMapEnvSource, Container, EnvFromSource};

    use super::*;

    fn container(name: &str, env: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            env: (!env.is_empty()).then(|| {
                env.iter()
                    .map(|(n, v)| EnvVar {
                        name: n.to_string(),
                        value: Some(v.to_string()),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }
    }

    fn env_of(c: &Container) -> Vec<(String, String)> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn the_value_is_the_defaults_then_the_api_as_a_python_literal() {
        assert_eq!(
            routes_value(),
            r#"["distributed.http.scheduler.prometheus","distributed.http.scheduler.info","distributed.http.scheduler.json","distributed.http.health","distributed.http.proxy","distributed.http.statics","distributed.http.scheduler.api"]"#
        );
    }

    #[test]
    fn which_variables_configure_the_routes() {
        for (name, yes) in [
            ("DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", true),
            ("DASK_distributed__scheduler__http__routes", true),
            ("DASK_DISTRIBUTED__SCHEDULER__HTTP", true),
            ("DASK_DISTRIBUTED__SCHEDULER", true),
            ("DASK_DISTRIBUTED", true),
            ("DASK_INTERNAL_INHERIT_CONFIG", true),
            ("DASK_DISTRIBUTED__SCHEDULER__HTTP__PREFIX", false),
            ("DASK_DISTRIBUTED__WORKER__HTTP__ROUTES", false),
            ("DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT", false),
            ("DASK_SCHEDULER_ADDRESS", false),
            ("dask_distributed__scheduler__http__routes", false),
            ("DISTRIBUTED__SCHEDULER__HTTP__ROUTES", false),
        ] {
            assert_eq!(configures_routes(name), yes, "{name}");
        }
    }

    #[test]
    fn added_after_the_users_env_in_every_container() {
        let mut spec = PodSpec {
            containers: vec![
                container("scheduler", &[("A", "1")]),
                container("sidecar", &[]),
            ],
            init_containers: Some(vec![container("init", &[])]),
            ..Default::default()
        };
        let outcomes = enable_http_api(&mut spec);
        assert_eq!(
            outcomes,
            [
                ("scheduler".to_string(), HttpApi::Added),
                ("sidecar".to_string(), HttpApi::Added)
            ]
        );
        assert_eq!(
            env_of(&spec.containers[0]),
            [
                ("A".to_string(), "1".to_string()),
                (ROUTES_ENV.to_string(), routes_value())
            ]
        );
        assert_eq!(
            env_of(&spec.containers[1]),
            [(ROUTES_ENV.to_string(), routes_value())]
        );
        assert!(spec.init_containers.unwrap()[0].env.is_none());
    }

    #[test]
    fn a_users_setting_is_never_changed() {
        for (name, value) in [
            (ROUTES_ENV, "['distributed.http.health']"),
            (ROUTES_ENV, "[]"),
            ("DASK_DISTRIBUTED__SCHEDULER__HTTP", "{'routes': []}"),
            ("DASK_INTERNAL_INHERIT_CONFIG", "e30="),
        ] {
            let mut spec = PodSpec {
                containers: vec![container("scheduler", &[("B", "2"), (name, value)])],
                ..Default::default()
            };
            let before = spec.clone();
            let outcomes = enable_http_api(&mut spec);
            assert_eq!(
                outcomes,
                [(
                    "scheduler".to_string(),
                    HttpApi::UserConfigured(name.to_string())
                )],
                "{name}"
            );
            assert_eq!(spec, before, "{name}");
        }
    }

    #[test]
    fn env_from_may_set_it_so_it_is_left_alone() {
        let mut spec = PodSpec {
            containers: vec![Container {
                name: "scheduler".into(),
                env_from: Some(vec![EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "dask-config".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let before = spec.clone();
        assert_eq!(
            enable_http_api(&mut spec),
            [("scheduler".to_string(), HttpApi::MaybeFromEnvFrom)]
        );
        assert_eq!(spec, before);
    }

    #[test]
    fn applying_twice_changes_nothing_more() {
        let mut spec = PodSpec {
            containers: vec![container("scheduler", &[])],
            ..Default::default()
        };
        enable_http_api(&mut spec);
        let once = spec.clone();
        assert_eq!(
            enable_http_api(&mut spec),
            [(
                "scheduler".to_string(),
                HttpApi::UserConfigured(ROUTES_ENV.to_string())
            )]
        );
        assert_eq!(spec, once);
    }
}
