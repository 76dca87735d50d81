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

const SYSTEMS: [&str; 3] = ["bridge", "batched", "fsync"];

#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    metric: String,
    unit: String,
    /// The median of each system's runs (scenario 1 runs `--rounds` times).
    values: [Option<Value>; 3],
    /// Every run's value, per system, in run order.
    runs: [Vec<Value>; 3],
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
    out
}

/// Prints the table and writes the JSON.
pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.measurements)
        .map_err(|e| format!("{}: {e}", a.measurements.display()))?;
    let mut rows: Vec<Row> = Vec::new();
    let mut raw = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let m: Value = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: {e}", a.measurements.display(), n + 1))?;
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
                    values: [None, None, None],
                    runs: [Vec::new(), Vec::new(), Vec::new()],
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
    let mut md = String::new();
    md.push_str("| # | metric | unit | bridge | awslink batched | awslink fsync | batched ÷ bridge | fsync ÷ bridge | other |\n");
    md.push_str("|---|---|---|---:|---:|---:|---:|---:|---|\n");
    for r in &rows {
        let cell = |i: usize| r.values[i].as_ref().map_or("".to_string(), fmt);
        let rat = |i: usize| {
            ratio(r.values[i].as_ref(), r.values[0].as_ref())
                .map_or("".into(), |x| format!("{x:.2}×"))
        };
        let other: Vec<String> = r
            .other
            .iter()
            .map(|(k, v)| format!("{k}: {}", fmt(v)))
            .collect();
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
    let repeated: Vec<&Row> = rows
        .iter()
        .filter(|r| r.runs.iter().any(|v| v.len() > 1))
        .collect();
    if !repeated.is_empty() {
        md.push_str("\nRepeated runs (the table shows the median):\n\n| # | metric | bridge | awslink batched | awslink fsync |\n|---|---|---|---|---|\n");
        for r in repeated {
            let runs = |i: usize| r.runs[i].iter().map(fmt).collect::<Vec<_>>().join(" / ");
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.metric,
                runs(0),
                runs(1),
                runs(2)
            ));
        }
    }
    let checks = checks(&rows);
    md.push_str("\n| target | measured | wanted | pass |\n|---|---:|---|---|\n");
    for c in &checks {
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
}
