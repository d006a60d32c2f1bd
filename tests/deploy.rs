//! The deployment template against the binary: every variable the task definition sets must be
//! one beacon reads, with a value it accepts, so a renamed config field breaks this test and not
//! a deployment.

mod common;

use std::process::Command;

/// (name, value) of every container environment variable in the template; values that
/// CloudFormation computes (`!Ref`, `!If`, `!GetAtt`) are replaced by what they would look like,
/// parameters by their defaults.
fn template_environment() -> Vec<(String, String)> {
    let path = beacon_test_support::repo_root().join("deploy/cloudformation/beacon.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let default_of = |param: &str| -> String {
        let at = text
            .find(&format!("\n  {param}:\n"))
            .unwrap_or_else(|| panic!("parameter {param} not found"));
        let rest = &text[at..];
        let line = rest
            .lines()
            .find(|l| l.trim_start().starts_with("Default:"))
            .unwrap();
        line.trim_start()
            .trim_start_matches("Default:")
            .trim()
            .trim_matches('"')
            .to_string()
    };
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let l = line.trim();
        let (name, value) = if let Some(inner) = l.strip_prefix("- { Name: ") {
            let Some((name, value)) = inner.trim_end_matches(" }").split_once(", Value: ") else {
                continue; // a ulimit
            };
            (name.to_string(), value.to_string())
        } else if let Some(name) = l.strip_prefix("- Name: ") {
            let next = lines.peek().map(|n| n.trim()).unwrap_or_default();
            let Some(value) = next.strip_prefix("Value:") else {
                continue;
            };
            (name.to_string(), value.trim().to_string())
        } else {
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue; // not an environment variable (a tag, a cluster setting)
        }
        let value = if let Some(param) = value.strip_prefix("!Ref ") {
            match param {
                "AWS::Region" => "us-east-1".to_string(),
                "EventStream" => "beacon-EventStream-1".to_string(),
                p => default_of(p),
            }
        } else if value.starts_with('!') {
            match name.as_str() {
                "BEACON_REDIS_URL" => "rediss://beacon.cache.amazonaws.com:6379".to_string(),
                "BEACON_ADMIN_LISTEN" => format!("0.0.0.0:{}", default_of("AdminPort")),
                // DrainFlush for the default DrainSeconds (30).
                "BEACON_KINESIS_SHUTDOWN_FLUSH_MS" => "20000".to_string(),
                other => panic!("{other}: add what its computed value looks like here"),
            }
        } else {
            value.trim_matches('"').to_string()
        };
        out.push((name, value));
    }
    out
}

/// `beacon config check ARGS` with only `env` (and `PATH`) in its environment, so that nothing
/// from the test runner's environment counts.
fn config_check(args: &[&std::ffi::OsStr], env: &[(String, String)]) -> std::process::Output {
    Command::new(common::bin())
        .args(["config", "check"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .output()
        .unwrap()
}

#[test]
fn the_task_definitions_environment_is_configuration_beacon_accepts() {
    let env = template_environment();
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "EVENT_STREAM",
        "REGION",
        "BEACON_SHARDS",
        "BEACON_REDIS_URL",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not in the template: {names:?}"
        );
    }
    // The task's secret, as ECS hands it over.
    let mut env = env;
    assert!(
        text_of_template().contains("Name: BEACON_REDIS_PASSWORD, ValueFrom: !Ref RedisAuthToken")
    );
    env.push(("BEACON_REDIS_PASSWORD".into(), "generated-token".into()));
    let out = config_check(&[], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "beacon refused the template's environment {env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each variable landed in the field it is meant for.
    assert!(stdout.contains("shards = 2"), "{stdout}");
    assert!(
        stdout.contains("stream = \"beacon-EventStream-1\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("rediss://beacon.cache.amazonaws.com:6379"),
        "{stdout}"
    );
    assert!(stdout.contains("trusted_proxy_hops = 1"), "{stdout}");
    assert!(stdout.contains("format = \"json\""), "{stdout}");
    assert!(
        stdout.contains("admin_listen = \"0.0.0.0:9090\""),
        "{stdout}"
    );
    assert!(stdout.contains("shutdown_flush_ms = 20000"), "{stdout}");
    assert!(
        stdout.contains("data_dir = \"/var/lib/beacon/data\""),
        "{stdout}"
    );
    assert!(stdout.contains("password = \"***\""), "{stdout}");
    assert!(!stdout.contains("generated-token"), "{stdout}");
}

fn text_of_template() -> String {
    let path = beacon_test_support::repo_root().join("deploy/cloudformation/beacon.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// What a stop on an instance can strand: the template keeps the data directory on the
/// instance, drains Spot instances, gives beacon DrainSeconds less 10 to send its spool, and
/// alarms on the line a stop that could not send everything writes.
#[test]
fn the_stack_keeps_the_spool_on_the_instance_and_alarms_on_a_stranded_stop() {
    let text = text_of_template();
    for needle in [
        "Host: { SourcePath: /var/lib/beacon/data }",
        "ContainerPath: /var/lib/beacon/data",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
        "install -d -o 10001 -g 10001",
        "StopTimeout: !Ref DrainSeconds",
    ] {
        assert!(text.contains(needle), "{needle} not in the template");
    }
    // The drain budget of every DrainSeconds leaves shutdown_grace_ms (5 s) and 5 s of margin.
    for (drain, flush) in [(30, 20_000), (60, 50_000), (90, 80_000), (120, 110_000)] {
        let line = format!("\"{drain}\": {{ FlushMs: \"{flush}\" }}");
        assert!(text.contains(&line), "{line} not in the template");
        assert!(flush / 1000 + 5 + 5 <= drain);
    }
    // The alarm's filter matches the line beacon writes (main.rs, JSON mode).
    assert!(text.contains(r#"FilterPattern: '{ $.message = "beacon: stopped with*" }'"#));
}

#[test]
fn every_instance_the_capacity_planner_can_pick_is_one_the_stack_accepts() {
    let root = beacon_test_support::repo_root();
    let template = std::fs::read_to_string(root.join("deploy/cloudformation/beacon.yaml")).unwrap();
    let allowed = template
        .lines()
        .skip_while(|l| l.trim() != "InstanceType:")
        .find_map(|l| l.trim().strip_prefix("AllowedValues: "))
        .unwrap();
    let prices = std::fs::read_to_string(root.join("benches/prices.toml")).unwrap();
    let names: Vec<&str> = prices
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = "))
        .map(|n| n.trim_matches('"'))
        .collect();
    assert!(!names.is_empty());
    for name in names {
        assert!(
            allowed.contains(name),
            "{name} (benches/prices.toml) is not in the template's InstanceType values {allowed}"
        );
    }
}

/// The plain-EC2 sample configuration (deploy/systemd/beacon.toml) is one beacon accepts, with
/// the settings it says it sets.
#[test]
fn the_plain_ec2_sample_config_is_accepted() {
    let sample = beacon_test_support::repo_root().join("deploy/systemd/beacon.toml");
    let out = config_check(&["--config".as_ref(), sample.as_os_str()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for line in [
        "data_dir = \"/var/lib/beacon/data\"",
        "stream = \"beacon-EventStream\"",
        "aggregation = true",
        "format = \"json\"",
    ] {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
    // The verdict goes to standard error, after the effective values on standard output.
    assert!(stderr.contains("config ok"), "{stderr}");
    assert!(stderr.contains("core data redis"), "{stderr}");
}
