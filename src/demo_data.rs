//! The built-in demo data set: a generated customer-churn table with the mess of real data
//! (mixed types, missing values, dates, an identifier and a constant column), so the demo and
//! the tests need no download. The label follows a known noisy rule, so accuracy is meaningful.

use rand::Rng;
use std::fmt::Write;

/// Column names of the churn table; the label `churn` is last.
pub const CHURN_COLUMNS: [&str; 11] = [
    "customer_id",
    "age",
    "plan",
    "monthly_charges",
    "tenure_months",
    "support_calls",
    "region",
    "signup_date",
    "paperless",
    "country",
    "churn",
];

/// A churn table of `rows` rows as CSV text (with header), the same for the same seed.
pub fn churn_csv(rows: usize, seed: u64) -> String {
    let mut rng = exeml_core::seed::rng(seed, 7);
    let mut out = CHURN_COLUMNS.join(",");
    out.push('\n');
    let plans = ["basic", "standard", "premium", "family"];
    let regions = ["north", "south", "east", "west", "central"];
    for i in 0..rows {
        let age: u32 = rng.random_range(18..81);
        let plan = plans[rng.random_range(0..plans.len())];
        let base = match plan {
            "basic" => 35.0,
            "standard" => 60.0,
            "premium" => 95.0,
            _ => 80.0,
        };
        let charges: f64 = base + rng.random_range(-12.0..12.0);
        let tenure: u32 = rng.random_range(0..73);
        let calls: u32 = (rng.random::<f64>().powi(2) * 10.0) as u32;
        let region = regions[rng.random_range(0..regions.len())];
        let year: i32 = rng.random_range(2018..2025);
        let month: u32 = rng.random_range(1..13);
        let day: u32 = rng.random_range(1..29);
        let paperless = rng.random_bool(0.6);
        let logit = -1.2 + 0.45 * f64::from(calls) - 0.045 * f64::from(tenure)
            + 0.025 * (charges - 60.0)
            + if plan == "basic" { 0.8 } else { 0.0 }
            - if age > 60 { 0.7 } else { 0.0 }
            + if month == 12 { 0.9 } else { 0.0 }
            + if paperless { 0.3 } else { 0.0 };
        let noise: f64 = rng.random_range(-0.5..0.5);
        let p = 1.0 / (1.0 + (-(logit + noise)).exp());
        let churn = if rng.random::<f64>() < p { "yes" } else { "no" };
        let age = if rng.random_bool(0.03) {
            String::new()
        } else {
            age.to_string()
        };
        let charges = if rng.random_bool(0.05) {
            "NA".to_string()
        } else {
            format!("{charges:.2}")
        };
        let region = if rng.random_bool(0.15) { "" } else { region };
        let _ = writeln!(
            out,
            "C{:05},{age},{plan},{charges},{tenure},{calls},{region},{year}-{month:02}-{day:02},{},NL,{churn}",
            i + 1,
            if paperless { "yes" } else { "no" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_table_and_both_classes() {
        let a = churn_csv(300, 1);
        assert_eq!(a, churn_csv(300, 1));
        assert_ne!(a, churn_csv(300, 2));
        assert_eq!(a.lines().count(), 301);
        assert!(a.contains(",yes\n") && a.contains(",no\n"));
    }
}
