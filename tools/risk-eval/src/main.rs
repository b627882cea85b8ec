//! `risk-eval`: replays labelled synthetic traffic through the risk engine and prints a
//! markdown report. `risk-eval --seed 1 --users 2000 [--days 60] [--warmup-days 30]
//! [--policy risk-policy.json]` (a `RiskPolicy` as JSON, to evaluate other settings).

use std::process::ExitCode;
use std::time::Instant;

use gatehouse_core::risk::RiskPolicy;
use risk_eval::{Config, run};

fn parse(args: &[String]) -> Result<(Config, RiskPolicy), String> {
    let mut cfg = Config::default();
    let mut policy = RiskPolicy::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<i64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--seed" => cfg.seed = value.parse().map_err(|_| format!("--seed: not a number: {value}"))?,
            "--users" => cfg.users = usize::try_from(num(value)?).map_err(|_| "--users must be positive")?,
            "--days" => cfg.days = num(value)?,
            "--warmup-days" => cfg.warmup_days = num(value)?,
            "--policy" => {
                let text = std::fs::read_to_string(value).map_err(|e| format!("--policy {value}: {e}"))?;
                policy = serde_json::from_str(&text).map_err(|e| format!("--policy {value}: {e}"))?;
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if cfg.users < 10 || cfg.days < 2 || !(1..cfg.days).contains(&cfg.warmup_days) {
        return Err("need --users >= 10 and 1 <= --warmup-days < --days".to_owned());
    }
    Ok((cfg, policy))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cfg, policy) = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "risk-eval: {e}\nusage: risk-eval [--seed N] [--users N] [--days N] [--warmup-days N] [--policy risk-policy.json]"
            );
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    match run(&cfg, policy) {
        Ok(report) => {
            println!("{}", report.markdown());
            println!(
                "Overall: {:.2} % of attacks caught, {:.2} % of legitimate sessions challenged ({:.1} s).",
                100.0 * report.detection_rate(),
                100.0 * report.false_challenge_rate(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("risk-eval: {e}");
            ExitCode::FAILURE
        }
    }
}
