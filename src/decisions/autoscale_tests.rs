//! Every rule of [`decide`], table-driven, and the choice of workers a scale-down deletes.

use super::*;

const T0: i64 = 1_800_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn samples(points: &[(i64, i32)]) -> Vec<Sample> {
    points
        .iter()
        .map(|&(t, target)| Sample { at: at(t), target })
        .collect()
}

/// Default settings: no scale-up cooldown, 30 s scale-down cooldown, 60 s window.
struct Row {
    name: &'static str,
    target: Option<u32>,
    current: i32,
    min: i32,
    max: i32,
    last_change: Option<i64>,
    recent: &'static [(i64, i32)],
    now: i64,
    replicas: Option<i32>,
    reason: &'static str,
}

fn run(row: &Row, settings: Settings) -> Decision {
    let recent = samples(row.recent);
    decide(&Observed {
        target: match row.target {
            Some(n) => Target::Workers(n),
            None => Target::Unreachable("connection refused".into()),
        },
        current: row.current,
        minimum: row.min,
        maximum: row.max,
        last_change: row.last_change.map(at),
        recent: &recent,
        now: at(row.now),
        settings,
    })
}

/// One table row, positional so that a row fits on a line.
#[allow(clippy::too_many_arguments)]
const fn row(
    name: &'static str,
    target: Option<u32>,
    current: i32,
    (min, max): (i32, i32),
    last_change: Option<i64>,
    recent: &'static [(i64, i32)],
    now: i64,
    replicas: Option<i32>,
    reason: &'static str,
) -> Row {
    Row {
        name,
        target,
        current,
        min,
        max,
        last_change,
        recent,
        now,
        replicas,
        reason,
    }
}

use reasons::*;

#[test]
fn every_rule() {
    #[rustfmt::skip]
    let rows = [
        // 1. Bad bounds: nothing, whatever else holds.
        row("min > max", Some(5), 3, (4, 2), None, &[], 1000, None, INVALID_BOUNDS),
        row("negative minimum", Some(5), 3, (-1, 2), None, &[], 1000, None, INVALID_BOUNDS),
        row("negative maximum", Some(5), 3, (0, -2), None, &[], 1000, None, INVALID_BOUNDS),
        row("bad bounds, unreachable", None, 0, (3, 1), None, &[], 1000, None, INVALID_BOUNDS),
        row("min == max is fine", Some(9), 2, (2, 2), None, &[], 1000, None, AT_TARGET),
        // 2. The bounds hold, whatever the scheduler and the cooldowns say.
        row("below minimum, target lower", Some(0), 1, (3, 10), None, &[], 1000, Some(3), BELOW_MINIMUM),
        row("below minimum, target higher", Some(6), 1, (3, 10), None, &[], 1000, Some(6), BELOW_MINIMUM),
        row("below minimum, target above maximum", Some(60), 1, (3, 10), None, &[], 1000, Some(10), BELOW_MINIMUM),
        row("below minimum, unreachable", None, 0, (2, 10), None, &[], 1000, Some(2), BELOW_MINIMUM),
        row("below minimum, in a cooldown", Some(0), 1, (3, 10), Some(999), &[], 1000, Some(3), BELOW_MINIMUM),
        row("above maximum", Some(20), 12, (0, 10), None, &[], 1000, Some(10), ABOVE_MAXIMUM),
        row("above maximum, target lower: maximum first", Some(1), 12, (0, 10), None, &[], 1000, Some(10), ABOVE_MAXIMUM),
        row("above maximum, unreachable", None, 12, (0, 10), None, &[], 1000, Some(10), ABOVE_MAXIMUM),
        row("above maximum, in a cooldown", Some(20), 12, (0, 10), Some(999), &[], 1000, Some(10), ABOVE_MAXIMUM),
        // 3. Unreachable: nothing else.
        row("unreachable", None, 4, (0, 10), None, &[(0, 0)], 1000, None, SCHEDULER_UNREACHABLE),
        // 4. Up at once, clamped.
        row("up", Some(5), 2, (0, 10), None, &[], 1000, Some(5), SCALING_UP),
        row("up, clamped to maximum", Some(50), 2, (0, 10), None, &[], 1000, Some(10), SCALING_UP),
        row("up right after a change", Some(5), 2, (0, 10), Some(1000), &[], 1000, Some(5), SCALING_UP),
        row("up right after a scale-down", Some(8), 2, (0, 10), Some(995), &[(900, 1), (995, 8)], 1000, Some(8), SCALING_UP),
        row("up from zero", Some(1), 0, (0, 10), None, &[], 1000, Some(1), SCALING_UP),
        // Steady.
        row("at target", Some(4), 4, (0, 10), None, &[], 1000, None, AT_TARGET),
        row("target below minimum, at minimum", Some(0), 2, (2, 10), None, &[(0, 0)], 1000, None, AT_TARGET),
        row("target above maximum, at maximum", Some(99), 10, (0, 10), None, &[], 1000, None, AT_TARGET),
        // 5. Down: cooldown, window, highest target in the window.
        row("down within the cooldown", Some(1), 5, (0, 10), Some(980), &[(900, 1)], 1000, None, COOLDOWN),
        row("down, no history yet", Some(1), 5, (0, 10), None, &[], 1000, None, STABILIZING),
        row("down, lower for less than the window", Some(1), 5, (0, 10), None, &[(950, 1)], 1000, None, STABILIZING),
        row("down, lower for exactly the window", Some(1), 5, (0, 10), None, &[(940, 1)], 1000, Some(1), SCALING_DOWN),
        row("down, lower for longer", Some(1), 5, (0, 10), None, &[(100, 1)], 1000, Some(1), SCALING_DOWN),
        row("down to the highest in the window", Some(1), 5, (0, 10), None, &[(900, 1), (950, 3), (970, 1)], 1000, Some(3), SCALING_DOWN),
        row("a high target within the window holds", Some(1), 5, (0, 10), None, &[(900, 1), (950, 7), (970, 1)], 1000, None, STABILIZING),
        row("the high target has left the window", Some(1), 5, (0, 10), None, &[(900, 1), (920, 7), (930, 1)], 1000, Some(1), SCALING_DOWN),
        row("down, clamped to minimum", Some(0), 5, (2, 10), None, &[(900, 0)], 1000, Some(2), SCALING_DOWN),
        row("down after the cooldown", Some(1), 5, (0, 10), Some(960), &[(900, 1)], 1000, Some(1), SCALING_DOWN),
    ];
    for r in &rows {
        let d = run(r, Settings::default());
        assert_eq!(
            (d.replicas, d.reason),
            (r.replicas, r.reason),
            "{}: {}",
            r.name,
            d.message
        );
        assert_eq!(
            d.warning,
            matches!(r.reason, INVALID_BOUNDS | SCHEDULER_UNREACHABLE),
            "{}",
            r.name
        );
        assert!(!d.message.is_empty(), "{}", r.name);
    }
}

#[test]
fn the_status_gets_the_clamped_target() {
    let r = row(
        "",
        Some(50),
        2,
        (1, 10),
        None,
        &[],
        1000,
        Some(10),
        SCALING_UP,
    );
    assert_eq!(run(&r, Settings::default()).target, Some(10));
    let r = row("", None, 2, (1, 10), None, &[], 1000, None, "");
    assert_eq!(run(&r, Settings::default()).target, None);
    let r = row("", Some(0), 5, (2, 10), None, &[], 1000, None, "");
    assert_eq!(run(&r, Settings::default()).target, Some(2));
}

#[test]
fn messages_say_what_and_why() {
    let d = run(
        &row("", Some(5), 3, (4, 2), None, &[], 1000, None, ""),
        Settings::default(),
    );
    assert_eq!(
        d.message,
        "spec.minimum (4) is greater than spec.maximum (2); nothing is scaled until the bounds are \
         fixed"
    );
    let d = run(
        &row("", None, 4, (0, 10), None, &[], 1000, None, ""),
        Settings::default(),
    );
    assert_eq!(
        d.message,
        "keeping 4 workers: the scheduler cannot be reached: connection refused"
    );
    let d = run(
        &row("", Some(50), 2, (0, 10), None, &[], 1000, None, ""),
        Settings::default(),
    );
    assert_eq!(
        d.message,
        "the scheduler wants 50 workers, 10 within [0, 10]: scaling up from 2 to 10"
    );
    let d = run(
        &row("", Some(1), 5, (0, 10), None, &[(950, 1)], 1000, None, ""),
        Settings::default(),
    );
    assert_eq!(
        d.message,
        "the scheduler wants 1 worker; keeping 5 until the target has stayed lower for 60s (10s \
         more)"
    );
}

#[test]
fn cooldowns_and_windows_are_settings() {
    let instant = Settings {
        scale_up_cooldown: Duration::ZERO,
        scale_down_cooldown: Duration::ZERO,
        scale_down_window: Duration::ZERO,
    };
    // No window: down at once, to the current target.
    let r = row(
        "",
        Some(1),
        5,
        (0, 10),
        Some(999),
        &[(990, 4)],
        1000,
        None,
        "",
    );
    let d = run(&r, instant);
    assert_eq!((d.replicas, d.reason), (Some(1), SCALING_DOWN));
    // A scale-up cooldown holds a scale-up and says when to look again.
    let slow_up = Settings {
        scale_up_cooldown: Duration::from_secs(20),
        ..Settings::default()
    };
    let r = row("", Some(6), 2, (0, 10), Some(990), &[], 1000, None, "");
    let d = run(&r, slow_up);
    assert_eq!((d.replicas, d.reason), (None, COOLDOWN));
    assert_eq!(d.wake, Some(Duration::from_secs(10)));
    let r = row("", Some(6), 2, (0, 10), Some(980), &[], 1000, None, "");
    assert_eq!(run(&r, slow_up).replicas, Some(6));
    // ... but never the bounds.
    let r = row("", Some(6), 0, (1, 10), Some(999), &[], 1000, None, "");
    assert_eq!(run(&r, slow_up).replicas, Some(6));
}

#[test]
fn wake_says_when_a_held_change_can_happen() {
    let d = run(
        &row(
            "",
            Some(1),
            5,
            (0, 10),
            Some(980),
            &[(900, 1)],
            1000,
            None,
            "",
        ),
        Settings::default(),
    );
    assert_eq!(
        (d.reason, d.wake),
        (COOLDOWN, Some(Duration::from_secs(10)))
    );
    let d = run(
        &row("", Some(1), 5, (0, 10), None, &[(950, 1)], 1000, None, ""),
        Settings::default(),
    );
    assert_eq!(
        (d.reason, d.wake),
        (STABILIZING, Some(Duration::from_secs(10)))
    );
    // The 7 lasted until 970: it leaves the window at 1030.
    let d = run(
        &row(
            "",
            Some(1),
            5,
            (0, 10),
            None,
            &[(900, 1), (950, 7), (970, 1)],
            1000,
            None,
            "",
        ),
        Settings::default(),
    );
    assert_eq!(
        (d.reason, d.wake),
        (STABILIZING, Some(Duration::from_secs(30)))
    );
    let d = run(
        &row("", Some(5), 2, (0, 10), None, &[], 1000, None, ""),
        Settings::default(),
    );
    assert_eq!(d.wake, None);
}

#[test]
fn samples_are_changes_only_and_cover_just_the_window() {
    let keep = |recent: &[(i64, i32)], target: Option<u32>, now: i64| {
        let r = Row {
            name: "",
            target,
            current: 5,
            min: 0,
            max: 10,
            last_change: None,
            recent: Box::leak(recent.to_vec().into_boxed_slice()),
            now,
            replicas: None,
            reason: "",
        };
        run(&r, Settings::default())
            .recent
            .iter()
            .map(|s| (s.at.as_second() - T0, s.target))
            .collect::<Vec<_>>()
    };
    // An unchanged target adds nothing.
    assert_eq!(keep(&[(990, 3)], Some(3), 1000), [(990, 3)]);
    // A change is a sample.
    assert_eq!(keep(&[(990, 3)], Some(4), 1000), [(990, 3), (1000, 4)]);
    // Older than the window: only the latest such sample stays.
    assert_eq!(
        keep(&[(100, 9), (200, 3), (950, 4)], Some(4), 1000),
        [(200, 3), (950, 4)]
    );
    assert_eq!(
        keep(&[(100, 9), (200, 3)], Some(1), 1000),
        [(200, 3), (1000, 1)]
    );
    // An unreachable scheduler forgets the history: the window starts again.
    assert_eq!(keep(&[(100, 1)], None, 1000), []);
    // Samples from the future (a clock step back) are dropped.
    assert_eq!(keep(&[(2000, 1)], Some(2), 1000), [(1000, 2)]);
    // Raw targets are kept (bounds may change), at most MAX_SAMPLES.
    assert_eq!(keep(&[], Some(40), 1000), [(1000, 40)]);
    // A target changing every half second within the window: at most MAX_SAMPLES, the newest.
    let many: Vec<Sample> = (0..100)
        .map(|i| Sample {
            at: at(950) + SignedDuration::from_millis(500 * i),
            target: (i % 2) as i32,
        })
        .collect();
    let d = decide(&Observed {
        target: Target::Workers(7),
        current: 5,
        minimum: 0,
        maximum: 10,
        last_change: None,
        recent: &many,
        now: at(1000),
        settings: Settings::default(),
    });
    assert_eq!(d.recent.len(), MAX_SAMPLES);
    assert_eq!(
        d.recent.last(),
        Some(&Sample {
            at: at(1000),
            target: 7
        })
    );
}

#[test]
fn a_burst_then_idle_does_not_flap() {
    // Poll every 5 s: a burst wants 8 for 30 s, then 0 with a blip to 3 at 60 s.
    let settings = Settings::default();
    let (min, max) = (1, 6);
    let mut current = 1;
    let mut last_change = None;
    let mut recent = Vec::new();
    let mut changes = Vec::new();
    for t in (0..400).step_by(5) {
        let target = match t {
            0..30 => 8,
            60 => 3,
            _ => 0,
        };
        let d = decide(&Observed {
            target: Target::Workers(target),
            current,
            minimum: min,
            maximum: max,
            last_change,
            recent: &recent,
            now: at(t),
            settings,
        });
        recent = d.recent;
        if let Some(replicas) = d.replicas {
            assert_ne!(replicas, current, "at {t}s: {}", d.message);
            current = replicas;
            last_change = Some(at(t));
            changes.push((t, replicas));
        }
        assert!((min..=max).contains(&current));
    }
    // Up at once to the maximum; down a window after the burst, to the blip's 3 (the highest
    // target in the window), then to the minimum a window after the blip: never back up.
    assert_eq!(changes, [(0, 6), (90, 3), (125, 1)]);
}

fn worker(name: &str, ready: bool, created: Option<i64>, deleting: bool) -> WorkerSeen {
    WorkerSeen {
        name: name.into(),
        ready,
        created: created.map(at),
        deleting,
    }
}

#[test]
fn fallback_takes_not_ready_then_newest() {
    let workers = [
        worker("old-ready", true, Some(1), false),
        worker("new-ready", true, Some(9), false),
        worker("mid-ready", true, Some(5), false),
        worker("old-pending", false, Some(2), false),
        worker("new-pending", false, Some(8), false),
        worker("going", false, Some(10), true),
    ];
    for (wanted, victims) in [
        (5, vec![]),
        (6, vec![]),
        (4, vec!["new-pending"]),
        (3, vec!["new-pending", "old-pending"]),
        (2, vec!["new-pending", "old-pending", "new-ready"]),
        (
            0,
            vec![
                "new-pending",
                "old-pending",
                "new-ready",
                "mid-ready",
                "old-ready",
            ],
        ),
    ] {
        assert_eq!(
            fallback_victims(&workers, wanted),
            victims,
            "wanted {wanted}"
        );
    }
}

#[test]
fn fallback_ties_and_unknown_creation_times() {
    let workers = [
        worker("b", true, Some(1), false),
        worker("a", true, Some(1), false),
        worker("unsaved", true, None, false),
        worker("c", true, Some(1), false),
    ];
    assert_eq!(fallback_victims(&workers, 2), ["unsaved", "c"]);
    assert_eq!(fallback_victims(&[], 0), Vec::<String>::new());
}

#[test]
fn retired_names_map_to_deployments() {
    let workers = [
        worker("w-1", true, Some(1), false),
        worker("w-2", true, Some(2), false),
        worker("w-3", true, Some(3), true),
    ];
    let retired = |names: &[&str]| {
        retired_victims(
            &workers,
            &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(retired(&[]), Retired::default());
    assert_eq!(
        retired(&["w-2", "w-1"]),
        Retired {
            delete: vec!["w-1".into(), "w-2".into()],
            unknown: vec![]
        }
    );
    // Already being deleted: nothing more to do; not ours: reported.
    assert_eq!(
        retired(&["w-3", "tcp://10.0.0.9:1234"]),
        Retired {
            delete: vec![],
            unknown: vec!["tcp://10.0.0.9:1234".into()]
        }
    );
}
