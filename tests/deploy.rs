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
