//! `report.md`: the comparison as a table a person reads, the bars, the plots and the
//! pre-training runs.

use crate::causal;
use crate::run::{CAUSAL_LOSS_PLOT, DemoReport, LOSS_PLOT, Method, accuracy_plot, datasets};

/// Test accuracy per method and recipe (rows) and label budget (columns); empty when the demo
/// compared no classifiers (causal-LM recipes only).
fn accuracy_table(report: &DemoReport) -> String {
    if report.results.is_empty() {
        return String::new();
    }
    let mut labels: Vec<Option<usize>> = Vec::new();
    for r in &report.results {
        if !labels.contains(&r.labels_per_class) {
            labels.push(r.labels_per_class);
        }
    }
    labels.sort_by_key(|l| l.unwrap_or(usize::MAX));
    let mut out = "| method | recipe |".to_string();
    for l in &labels {
        out += &format!(
            " {} |",
            l.map_or("all labels".to_string(), |k| format!("{k}/class"))
        );
    }
    out += "\n|---|---|";
    out += &"---|".repeat(labels.len());
    out += "\n";
    let mut keys: Vec<(Method, Option<String>)> = Vec::new();
    for r in &report.results {
        let key = (r.method, r.recipe.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (method, recipe) in keys {
        out += &format!(
            "| {method} | {} |",
            recipe.clone().unwrap_or_else(|| "-".into())
        );
        for l in &labels {
            let cell = report
                .results
                .iter()
                .find(|r| r.method == method && r.recipe == recipe && r.labels_per_class == *l)
                .map_or("".to_string(), |r| {
                    format!(
                        "{:.1} ± {:.1}",
                        100.0 * r.accuracy_mean,
                        100.0 * r.accuracy_std
                    )
                });
            out += &format!(" {cell} |");
        }
        out += "\n";
    }
    out += "\nAccuracy on the test split (%), mean ± std over the seeds of the labeled subset.\n";
    out
}

/// The report as a table a person reads.
pub fn markdown(report: &DemoReport) -> String {
    let mut out = format!(
        "# Demo report\n\nBackend {}, {} CPUs, {:.0} s{}.\n\n",
        report.backend,
        report.cpus,
        report.seconds,
        if report.quick {
            ", quick version (shipped sample; not meaningful accuracy)"
        } else {
            ""
        }
    );
    out += &accuracy_table(report);
    out += "\n## Bars\n\n";

    for c in &report.checks {
        out += &format!(
            "- [{}] {}{}: {}\n",
            if c.passed { "x" } else { " " },
            c.name,
            if c.required { "" } else { " (stretch)" },
            c.detail
        );
    }
    let plots: Vec<String> = datasets(&report.results)
        .into_iter()
        .map(|d| format!("`{}`", accuracy_plot(d)))
        .collect();
    let mut plot_notes = Vec::new();
    if !plots.is_empty() {
        plot_notes.push(format!(
            "{} (accuracy against labels per class)",
            plots.join(", ")
        ));
    }
    if report.pretraining.len() > report.causal_lm.len() {
        plot_notes.push(format!("`{LOSS_PLOT}` (pre-training loss)"));
    }
    if !plot_notes.is_empty() {
        out += &format!("\nPlots: {}.\n", plot_notes.join(", "));
    }
    out += "\n## Pre-training\n\n";
    for p in &report.pretraining {
        out += &format!(
            "- {}: {} steps in {:.0} s, loss {:.4} -> {:.4}\n",
            p.recipe, p.steps_done, p.seconds, p.loss_start_end.0, p.loss_start_end.1
        );
    }
    if !report.causal_lm.is_empty() {
        out += &format!("\nCausal LMs' loss (nats per token): `{CAUSAL_LOSS_PLOT}`.\n");
    }
    out += &causal::markdown(&report.causal_lm);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_without_classifiers_has_no_accuracy_table() {
        let report = DemoReport {
            backend: "flex".into(),
            quick: true,
            cpus: 2,
            recipes: vec![],
            pretraining: vec![],
            results: vec![],
            causal_lm: vec![],
            checks: vec![],
            seconds: 1.0,
        };
        let md = markdown(&report);
        assert!(!md.contains("| method |") && md.contains("## Bars"), "{md}");
    }
}
