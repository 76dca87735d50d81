//! Pivots the run's measurements (JSON lines written by run.sh) into the results table
//! (markdown, printed) and the results JSON (`bench/results/<date>.json`).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::{write_json, Result};

/// Options of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Measurements, one JSON object per line: scenario, metric, system, value, [unit, note].
    #[arg(long)]
    measurements: PathBuf,
    /// Machine description (JSON object) to embed.
    #[arg(long)]
    machine: Option<PathBuf>,
    /// Write the results JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the markdown table here as well.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// The systems with a column of their own, in column order of the measurements (index 0 is the
/// realistic bridge: the local broker bridges itself; index 3 the same-hop bridge: a second
/// Mosquitto between the local broker and the cloud, where awslink sits).
const SYSTEMS: [&str; 4] = ["bridge", "batched", "fsync", "bridge-hop"];
/// Index of the same-hop bridge in [`SYSTEMS`].
const HOP: usize = 3;

#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    metric: String,
    unit: String,
    /// The median of each system's runs (scenario 1 runs `--rounds` times).
    values: [Option<Value>; 4],
    /// Every run's value, per system, in run order.
    runs: [Vec<Value>; 4],
    other: Vec<(String, Value)>,
}

/// The median of numeric runs (the lower middle one for an even count), or the last value when
/// they are not numbers.
fn median(runs: &[Value]) -> Option<Value> {
    let mut numbers: Vec<f64> = runs.iter().filter_map(Value::as_f64).collect();
    if numbers.len() != runs.len() {
        return runs.last().cloned();
    }
    numbers.sort_by(f64::total_cmp);
    let m = *numbers.get((numbers.len().checked_sub(1)?) / 2)?;
    runs.iter().find(|v| v.as_f64() == Some(m)).cloned()
}

fn fmt(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if n.is_u64() || n.is_i64() || f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", f as i64)
            } else if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else if f.abs() >= 1.0 {
                format!("{f:.2}")
            } else {
                format!("{f:.3}")
            }
        }
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ratio(a: Option<&Value>, b: Option<&Value>) -> Option<f64> {
    let (a, b) = (a?.as_f64()?, b?.as_f64()?);
    (b != 0.0).then(|| a / b)
}

fn find<'a>(rows: &'a [Row], scenario: &str, metric: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.metric == metric)
}

fn val(rows: &[Row], scenario: &str, metric: &str, sys: usize) -> Option<f64> {
    find(rows, scenario, metric)?.values[sys].as_ref()?.as_f64()
}

fn other(rows: &[Row], scenario: &str, metric: &str, sys: &str) -> Option<f64> {
    find(rows, scenario, metric)?
        .other
        .iter()
        .find(|(s, _)| s == sys)?
        .1
        .as_f64()
}

/// Target checks of issue 8, evaluated on what was measured (skipped when missing).
fn checks(rows: &[Row]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut check = |name: &str, measured: Option<f64>, target: &str, ok: Option<bool>| {
        out.push(json!({"check": name, "measured": measured, "target": target, "pass": ok}));
    };
    let tput = |s| val(rows, "1", "throughput_msg_s", s);
    let r = tput(1).zip(tput(0)).map(|(a, b)| a / b);
    check(
        "1: batched throughput ÷ bridge",
        r,
        ">= 1.0",
        r.map(|r| r >= 1.0),
    );
    let p = |s| val(rows, "1", "latency_p99_ms", s);
    let r = p(1).zip(p(0)).map(|(a, b)| a / b);
    check(
        "1: batched p99 ÷ bridge p99",
        r,
        "<= 1.0",
        r.map(|r| r <= 1.0),
    );
    for (probe, what) in [
        (
            "disk fdatasync",
            "disk's raw flush rate (append + fdatasync)",
        ),
        ("disk flush", "raw sled insert+flush rate (stricter)"),
    ] {
        let rate = other(rows, "1", "throughput_msg_s", probe);
        let r = tput(2).zip(rate).map(|(a, b)| a / b);
        check(
            &format!("1: fsync throughput ÷ {what}"),
            r,
            ">= 0.8",
            r.map(|r| r >= 0.8),
        );
    }
    for (s, name) in [(1, "batched"), (2, "fsync")] {
        let l = val(rows, "2", "lost", s);
        check(&format!("2: {name} lost"), l, "0", l.map(|l| l == 0.0));
        let l = val(rows, "3", "lost", s);
        check(&format!("3: {name} lost"), l, "0", l.map(|l| l == 0.0));
    }
    let l = val(rows, "4", "lost", 2);
    check("4: fsync lost after kill -9", l, "0", l.map(|l| l == 0.0));
    // Issue 17's targets, against the bridge in the same place as awslink (skipped without it).
    let vs_hop = |metric: &str, s: usize| {
        val(rows, "1", metric, s)
            .zip(val(rows, "1", metric, HOP))
            .map(|(a, b)| a / b)
    };
    let r = vs_hop("throughput_msg_s", 1);
    check(
        "same hop: batched throughput ÷ hop bridge",
        r,
        ">= 1.0",
        r.map(|r| r >= 1.0),
    );
    let r = vs_hop("throughput_msg_s", 2);
    check(
        "same hop: fsync throughput ÷ hop bridge",
        r,
        ">= 0.9",
        r.map(|r| r >= 0.9),
    );
    let r = vs_hop("latency_p99_ms", 1);
    check(
        "same hop: batched p99 ÷ hop bridge p99",
        r,
        "<= 1.5",
        r.map(|r| r <= 1.5),
    );
    let c = |s| val(rows, "5", "cpu_s_per_100k", s);
    let r = c(1).zip(c(HOP)).map(|(a, b)| a / b);
    check(
        "same hop: batched CPU per 100k ÷ hop bridge's",
        r,
        "<= 1.0",
        r.map(|r| r <= 1.0),
    );
    // Scenario 6 (#14): a command response during a drain within 2 s, as in tests/lanes.rs.
    let p = val(rows, "6", "command_p99_ms", 1);
    check(
        "6: batched command response p99 during a drain (ms)",
        p,
        "<= 2000",
        p.map(|p| p <= 2000.0),
    );
    // Scenario 7 (#18): batching against awslink unbatched (drain) and the bridge (billing).
    for (metric, what) in [
        ("drain_s", "cloud back → all"),
        ("drain_after_reconnect_s", "first arrival → all"),
    ] {
        let r = val(rows, "7", metric, 1)
            .zip(other(rows, "7", metric, "batching"))
            .map(|(a, b)| a / b.max(1e-3));
        check(
            &format!("7: drain unbatched ÷ batching ({what})"),
            r,
            ">= 20",
            r.map(|r| r >= 20.0),
        );
    }
    let r = other(rows, "7", "billed_units_per_1000_msgs", "batching")
        .zip(val(rows, "7", "billed_units_per_1000_msgs", 0))
        .map(|(a, b)| a / b);
    check(
        "7: billed units per message, batching ÷ bridge",
        r,
        "<= 0.05",
        r.map(|r| r <= 0.05),
    );
    out
}

/// Prints the table and writes the JSON.
pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.measurements)
        .map_err(|e| format!("{}: {e}", a.measurements.display()))?;
    let (rows, raw) = parse(&text).map_err(|e| format!("{}:{e}", a.measurements.display()))?;
    let checks = checks(&rows);
    let md = markdown(&rows, &checks);
    print!("{md}");
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let machine = match &a.machine {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => Value::Null,
    };
    if let Some(out) = &a.out {
        write_json(
            Some(out),
            &json!({"machine": machine, "checks": checks, "measurements": raw}),
        )?;
    }
    Ok(())
}

/// The rows (one per scenario and metric, each system's runs and median) and the raw
/// measurements of a JSON-lines text; an error names the line that is not JSON.
fn parse(text: &str) -> Result<(Vec<Row>, Vec<Value>)> {
    let mut rows: Vec<Row> = Vec::new();
    let mut raw = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let m: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", n + 1))?;
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (scenario, metric, system) = (s("scenario"), s("metric"), s("system"));
        let value = m.get("value").cloned().unwrap_or(Value::Null);
        let idx = rows
            .iter()
            .position(|r| r.scenario == scenario && r.metric == metric)
            .unwrap_or_else(|| {
                rows.push(Row {
                    scenario: scenario.clone(),
                    metric: metric.clone(),
                    unit: s("unit"),
                    values: [None, None, None, None],
                    runs: [Vec::new(), Vec::new(), Vec::new(), Vec::new()],
                    other: Vec::new(),
                });
                rows.len() - 1
            });
        match SYSTEMS.iter().position(|x| *x == system) {
            Some(i) => rows[idx].runs[i].push(value),
            None => rows[idx].other.push((system, value)),
        }
        raw.push(m);
    }
    for r in &mut rows {
        for i in 0..SYSTEMS.len() {
            r.values[i] = median(&r.runs[i]);
        }
    }
    Ok((rows, raw))
}

/// The results table, the repeated runs and the target checks, as markdown.
fn markdown(rows: &[Row], checks: &[Value]) -> String {
    // The same-hop columns only when that bridge ran (older runs keep their table's shape).
    let hop = rows.iter().any(|r| !r.runs[HOP].is_empty());
    let mut md = String::new();
    if hop {
        md.push_str("| # | metric | unit | bridge | bridge, same hop | awslink batched | awslink fsync | batched ÷ bridge | fsync ÷ bridge | batched ÷ hop bridge | fsync ÷ hop bridge | other |\n");
        md.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    } else {
        md.push_str("| # | metric | unit | bridge | awslink batched | awslink fsync | batched ÷ bridge | fsync ÷ bridge | other |\n");
        md.push_str("|---|---|---|---:|---:|---:|---:|---:|---|\n");
    }
    for r in rows {
        let cell = |i: usize| r.values[i].as_ref().map_or("".to_string(), fmt);
        let rat_to = |i: usize, base: usize| {
            ratio(r.values[i].as_ref(), r.values[base].as_ref())
                .map_or("".into(), |x| format!("{x:.2}×"))
        };
        let rat = |i: usize| rat_to(i, 0);
        let other: Vec<String> = r
            .other
            .iter()
            .map(|(k, v)| format!("{k}: {}", fmt(v)))
            .collect();
        if hop {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.metric,
                r.unit,
                cell(0),
                cell(HOP),
                cell(1),
                cell(2),
                rat(1),
                rat(2),
                rat_to(1, HOP),
                rat_to(2, HOP),
                other.join(", ")
            ));
        } else {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.metric,
                r.unit,
                cell(0),
                cell(1),
                cell(2),
                rat(1),
                rat(2),
                other.join(", ")
            ));
        }
    }
    let repeated: Vec<&Row> = rows
        .iter()
        .filter(|r| r.runs.iter().any(|v| v.len() > 1))
        .collect();
    if !repeated.is_empty() {
        md.push_str("\nRepeated runs (the table shows the median):\n\n| # | metric | bridge | awslink batched | awslink fsync | bridge, same hop |\n|---|---|---|---|---|---|\n");
        for r in repeated {
            let runs = |i: usize| r.runs[i].iter().map(fmt).collect::<Vec<_>>().join(" / ");
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.metric,
                runs(0),
                runs(1),
                runs(2),
                runs(HOP)
            ));
        }
    }
    md.push_str("\n| target | measured | wanted | pass |\n|---|---:|---|---|\n");
    for c in checks {
        let pass = match c["pass"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "not measured",
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c["check"].as_str().unwrap_or(""),
            fmt(&c["measured"]),
            c["target"].as_str().unwrap_or(""),
            pass
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_runs_is_one_of_them() {
        assert_eq!(median(&[json!(3), json!(1), json!(2)]), Some(json!(2)));
        assert_eq!(median(&[json!(4.0), json!(1.5)]), Some(json!(1.5)));
        assert_eq!(median(&[json!(7)]), Some(json!(7)));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[json!(1), json!("x")]), Some(json!("x")));
    }

    /// One measurement line as run.sh writes it.
    fn line(scenario: &str, metric: &str, system: &str, value: f64) -> String {
        json!({"scenario": scenario, "metric": metric, "system": system, "value": value, "unit": "u"})
            .to_string()
    }

    #[test]
    fn the_same_hop_columns_appear_only_when_that_bridge_ran() {
        let base = [
            line("1", "throughput_msg_s", "bridge", 200.0),
            line("1", "throughput_msg_s", "batched", 100.0),
            line("1", "throughput_msg_s", "fsync", 50.0),
        ];
        let hop = line("1", "throughput_msg_s", "bridge-hop", 125.0);
        for (lines, header_has_hop, row) in [
            (
                base.to_vec(),
                false,
                "| 1 | throughput_msg_s | u | 200 | 100 | 50 | 0.50× | 0.25× |  |",
            ),
            (
                [base.to_vec(), vec![hop.clone()]].concat(),
                true,
                "| 1 | throughput_msg_s | u | 200 | 125 | 100 | 50 | 0.50× | 0.25× | 0.80× | 0.40× |  |",
            ),
        ] {
            let (rows, _) = parse(&lines.join("\n")).unwrap();
            let md = markdown(&rows, &[]);
            let header = md.lines().next().unwrap();
            assert_eq!(header.contains("bridge, same hop"), header_has_hop, "{header}");
            assert!(md.lines().any(|l| l == row), "no row {row:?} in\n{md}");
        }
    }

    #[test]
    fn the_same_hop_checks_compare_with_the_hop_bridge() {
        let text = [
            line("1", "throughput_msg_s", "bridge", 200.0),
            line("1", "throughput_msg_s", "bridge-hop", 100.0),
            line("1", "throughput_msg_s", "batched", 110.0),
            line("1", "throughput_msg_s", "fsync", 80.0),
            line("5", "cpu_s_per_100k", "bridge-hop", 2.0),
            line("5", "cpu_s_per_100k", "batched", 3.0),
        ]
        .join("\n");
        let (rows, _) = parse(&text).unwrap();
        let checks = checks(&rows);
        let get = |name: &str| {
            let c = checks.iter().find(|c| c["check"] == name).unwrap();
            (c["measured"].as_f64(), c["pass"].as_bool())
        };
        for (name, measured, pass) in [
            (
                "same hop: batched throughput ÷ hop bridge",
                Some(1.1),
                Some(true),
            ),
            (
                "same hop: fsync throughput ÷ hop bridge",
                Some(0.8),
                Some(false),
            ),
            (
                "same hop: batched CPU per 100k ÷ hop bridge's",
                Some(1.5),
                Some(false),
            ),
            ("same hop: batched p99 ÷ hop bridge p99", None, None),
            ("1: batched throughput ÷ bridge", Some(0.55), Some(false)),
        ] {
            assert_eq!(get(name), (measured, pass), "{name}");
        }
    }
}
