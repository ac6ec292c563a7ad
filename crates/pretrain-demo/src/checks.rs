//! The bars the demo sets itself: each a comparison of two measured accuracies (or one against
//! a target) with the margin it needs, required or a stretch goal.

use pretrain_recipes::BuiltinDataset;
use serde::Serialize;

use crate::run::{DemoReport, DemoResult, Method};

/// A bar the demo must clear (or, for stretch goals, reports).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is compared.
    pub name: String,
    /// Whether the project requires it.
    pub required: bool,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// Best mean accuracy of `method` at `labels` over the recipes on `dataset` (and `recipe`,
/// when given).
fn best(
    results: &[DemoResult],
    dataset: Option<BuiltinDataset>,
    recipe: Option<&str>,
    method: Method,
    labels: Option<usize>,
) -> Option<f64> {
    results
        .iter()
        .filter(|r| {
            Some(r.dataset) == dataset
                && recipe.is_none_or(|name| r.recipe.as_deref() == Some(name))
                && r.method == method
                && r.labels_per_class == labels
        })
        .map(|r| r.accuracy_mean)
        .reduce(f64::max)
}

/// The image bars (when the demo ran image recipes, on `image_dataset`) and one text bar per
/// text recipe and budget.
pub fn checks(results: &[DemoResult], image_dataset: Option<BuiltinDataset>) -> Vec<Check> {
    let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let mut checks = Vec::new();
    // `margin`: `a` must reach `b + margin`; `None`: `a` must be strictly above `b`.
    let mut compare = |name: &str,
                       required: bool,
                       a: Option<f64>,
                       b: Option<f64>,
                       margin: Option<f64>,
                       what: (&str, &str)| {
        let passed = match (a, b, margin) {
            (Some(a), Some(b), Some(margin)) => a >= b + margin,
            (Some(a), Some(b), None) => a > b,
            _ => false,
        };
        checks.push(Check {
            name: name.to_string(),
            required,
            passed,
            detail: format!(
                "{} {} vs {} {} (needs {})",
                what.0,
                pct(a),
                what.1,
                pct(b),
                match (margin, a.zip(b)) {
                    (Some(m), Some((a, b))) if m > 0.0 => {
                        format!("+{:.0} points; has {:+.1}", 100.0 * m, 100.0 * (a - b))
                    }
                    (Some(_), Some((a, b))) => {
                        format!("at least that; margin {:+.1} points", 100.0 * (a - b))
                    }
                    (Some(m), None) => format!("+{:.0} points", 100.0 * m),
                    (None, Some((a, b))) => {
                        format!("to be above; margin {:+.1} points", 100.0 * (a - b))
                    }
                    (None, None) => "to be above".to_string(),
                }
            ),
        });
    };
    // The image bars, when the demo ran image recipes.
    if image_dataset.is_some() {
        let image_best = |method, labels| best(results, image_dataset, None, method, labels);
        let probe = |l| image_best(Method::PretrainedLinearProbe, l);
        compare(
            "10 labels/class: pre-trained linear probe >= random-init probe + 8 points",
            true,
            probe(Some(10)),
            image_best(Method::RandomInitLinearProbe, Some(10)),
            Some(0.08),
            ("pre-trained", "random-init"),
        );
        compare(
            "10 labels/class: pre-trained fine-tuning above training from scratch",
            true,
            image_best(Method::PretrainedFinetune, Some(10)),
            image_best(Method::Scratch, Some(10)),
            None,
            ("fine-tuned", "scratch"),
        );
        for labels in [Some(100), None] {
            compare(
                &format!(
                    "{}: pre-trained linear probe above raw-pixel logistic regression",
                    labels.map_or("all labels".to_string(), |k| format!("{k} labels/class"))
                ),
                true,
                probe(labels),
                image_best(Method::RawPixelsLogreg, labels),
                None,
                ("pre-trained", "raw pixels"),
            );
        }
        compare(
            "all labels: pre-trained linear probe at least 86%",
            true,
            probe(None),
            Some(0.86),
            Some(0.0),
            ("pre-trained", "target"),
        );
        compare(
            "stretch, 10 labels/class: pre-trained linear probe >= raw pixels + 6 points",
            false,
            probe(Some(10)),
            image_best(Method::RawPixelsLogreg, Some(10)),
            Some(0.06),
            ("pre-trained", "raw pixels"),
        );
    }
    // Text: the pre-trained transformer fine-tuned against the same one trained from scratch,
    // per text recipe and budget.
    let mut text_rows: Vec<(BuiltinDataset, &str, Option<usize>)> = Vec::new();
    for r in results {
        if let (true, Some(recipe)) = (r.dataset.is_text(), r.recipe.as_deref()) {
            let key = (r.dataset, recipe, r.labels_per_class);
            if r.method == Method::PretrainedFinetune && !text_rows.contains(&key) {
                text_rows.push(key);
            }
        }
    }
    for (dataset, recipe, labels) in text_rows {
        let of = |method| best(results, Some(dataset), Some(recipe), method, labels);
        compare(
            &format!(
                "text ({dataset}, {}): pre-trained fine-tuning above training from scratch",
                labels.map_or("all labels".to_string(), |k| format!("{k} labels/class"))
            ),
            true,
            of(Method::PretrainedFinetune),
            of(Method::Scratch),
            None,
            ("fine-tuned", "scratch"),
        );
    }
    checks
}

/// Whether every required bar held.
pub fn passed(report: &DemoReport) -> bool {
    failed_bars(report).is_empty()
}

/// The required bars that did not hold, each as `name (detail)`.
pub fn failed_bars(report: &DemoReport) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.required && !c.passed)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretrain::data::Named;

    fn result(method: &str, labels: Option<usize>, accuracy: f64) -> DemoResult {
        DemoResult {
            dataset: BuiltinDataset::FashionMnist,
            method: Method::from_name(method).unwrap(),
            objective: None,
            recipe: None,
            labels_per_class: labels,
            accuracy_mean: accuracy,
            accuracy_std: 0.0,
            macro_f1_mean: accuracy,
            seeds: vec![0, 1, 2],
            seconds: 0.0,
        }
    }

    #[test]
    fn bars_need_their_margin_and_ties_do_not_count_as_above() {
        pretrain::data::names::assert_serde_names::<Method>();
        let results = vec![
            result("pretrained-linear-probe", Some(10), 0.725),
            result("random-init-linear-probe", Some(10), 0.64),
            // A tie with training from scratch is not "above".
            result("pretrained-finetune", Some(10), 0.71),
            result("scratch", Some(10), 0.71),
            result("pretrained-linear-probe", Some(100), 0.80),
            result("raw-pixels-logreg", Some(100), 0.79),
            result("pretrained-linear-probe", None, 0.859),
            result("raw-pixels-logreg", None, 0.84),
            result("raw-pixels-logreg", Some(10), 0.70),
        ];
        let mut results = results;
        // Text rows count only against each other, never towards the image bars.
        let text = |method: &str, accuracy| DemoResult {
            dataset: BuiltinDataset::SpamAssassin,
            recipe: Some("mlm-text".into()),
            ..result(method, Some(100), accuracy)
        };
        results.push(text("pretrained-finetune", 0.95));
        results.push(text("scratch", 0.93));
        results.push(text("pretrained-linear-probe", 0.99));
        let checks = checks(&results, Some(BuiltinDataset::FashionMnist));
        let passed: Vec<bool> = checks.iter().map(|c| c.passed).collect();
        // +8.5 points; tie; above; above; 85.9% < 86%; stretch +2.5 < +6; text above.
        assert_eq!(passed, [true, false, true, true, false, false, true]);
        assert!(
            checks[6].name.contains("spam-assassin, 100 labels/class")
                && checks[6].detail.contains("margin +2.0 points"),
            "{checks:?}"
        );
        assert!(
            checks[1].detail.contains("needs to be above"),
            "{}",
            checks[1].detail
        );
        assert!(
            checks[0].detail.contains("+8 points; has +8.5"),
            "{}",
            checks[0].detail
        );
        assert!(
            checks[4]
                .detail
                .contains("at least that; margin -0.1 points"),
            "{}",
            checks[4].detail
        );
        assert!(
            !checks[5].required && checks[..5].iter().all(|c| c.required) && checks[6].required
        );
        let report = DemoReport {
            backend: "flex".into(),
            quick: false,
            cpus: 2,
            recipes: vec![],
            pretraining: vec![],
            results,
            causal_lm: vec![],
            checks,
            seconds: 1.0,
        };
        assert!(!super::passed(&report));
        let failed = super::failed_bars(&report);
        let expected = report
            .checks
            .iter()
            .filter(|c| c.required && !c.passed)
            .count();
        assert!(!failed.is_empty() && failed.len() == expected, "{failed:?}");
    }
}
