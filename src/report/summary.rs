//! The end-of-run summary: per runtime, whether it is ensured, its commit and image, what ran.

use serde::Serialize;

use super::table::Table;
use crate::exec::Outcome;
use crate::ids::short;
use crate::plan::{Decided, Graph, Output, Status};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuntimeSummary {
    pub runtime: String,
    /// `ensured` or `failed`.
    pub status: &'static str,
    pub commit: Option<String>,
    pub image: Option<String>,
    /// Step kinds that ran for this runtime (shared steps count for every runtime).
    pub ran: Vec<String>,
    pub error: Option<String>,
    /// Time spent in this runtime's steps (shared steps count for each runtime).
    pub duration: std::time::Duration,
}

/// Summarises the outcome per requested runtime, in request order.
pub fn summarize(
    graph: &Graph,
    decided: &Decided,
    outcome: &Outcome,
    runtimes: &[String],
) -> Vec<RuntimeSummary> {
    runtimes
        .iter()
        .map(|rt| summarize_one(graph, decided, outcome, rt))
        .collect()
}

fn summarize_one(graph: &Graph, decided: &Decided, outcome: &Outcome, rt: &str) -> RuntimeSummary {
    let mine: Vec<_> = graph
        .order()
        .iter()
        .copied()
        .filter(|&id| graph.node(id).runtimes.iter().any(|r| r.name == rt))
        .collect();
    let error = mine.iter().find_map(|id| match outcome.status.get(id) {
        Some(Status::Failed) => Some(format!(
            "{}: {}",
            graph.node(*id).kind,
            outcome.detail.get(id).cloned().unwrap_or_default()
        )),
        Some(Status::Blocked) => Some(format!(
            "{}: blocked ({})",
            graph.node(*id).kind,
            outcome.detail.get(id).cloned().unwrap_or_default()
        )),
        None => Some(format!("{}: did not finish", graph.node(*id).kind)),
        _ => None,
    });
    let commit = mine.iter().find_map(|id| match decided.outputs.get(id) {
        Some(Output::Revision(c)) => Some(c.clone()),
        _ => None,
    });
    let image = commit.as_ref().and_then(|c| {
        let node = graph.node(*mine.last()?);
        let runtime = node.runtimes.iter().find(|r| r.name == rt)?;
        Some(runtime.pinned_tag(c))
    });
    let ran = mine
        .iter()
        .filter(|id| outcome.ran.contains(id))
        .map(|id| graph.node(*id).kind.name().to_owned())
        .collect();
    let duration = mine.iter().filter_map(|id| outcome.durations.get(id)).sum();
    RuntimeSummary {
        runtime: rt.to_owned(),
        status: if error.is_none() { "ensured" } else { "failed" },
        commit,
        image,
        ran,
        error,
        duration,
    }
}

/// The summary as a plain table: one row per runtime (and its first error line under it),
/// then the totals.
pub fn table(rows: &[RuntimeSummary], elapsed: std::time::Duration) -> String {
    let mut table = Table::new(&["RUNTIME", "STATUS", "COMMIT", "IMAGE", "TIME", "RAN"])
        .min_width(1, 7)
        .min_width(2, 12)
        .align_right(4)
        .min_width(4, 7);
    for r in rows {
        let ran = if r.ran.is_empty() {
            "nothing".to_owned()
        } else {
            r.ran.join(",")
        };
        table.row(vec![
            r.runtime.clone(),
            r.status.to_owned(),
            r.commit.as_deref().map_or("-", short).to_owned(),
            r.image.clone().unwrap_or_else(|| "-".into()),
            format!("{:.1}s", r.duration.as_secs_f64()),
            ran,
        ]);
        if let Some(e) = &r.error {
            let first = e.lines().next().unwrap_or_default();
            table.row(vec![String::new(), format!("error: {first}")]);
        }
    }
    let failed = rows.iter().filter(|r| r.status == "failed").count();
    let mut out = table.render();
    out.push_str(&format!(
        "{} ensured, {failed} failed in {:.1}s\n",
        rows.len() - failed,
        elapsed.as_secs_f64()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_byte_identical_to_the_captured_layout() {
        let r = |rt: &str,
                 status,
                 commit: Option<&str>,
                 image: Option<&str>,
                 error: Option<&str>,
                 secs| {
            RuntimeSummary {
                runtime: rt.into(),
                status,
                commit: commit.map(Into::into),
                image: image.map(Into::into),
                ran: if error.is_some() {
                    vec![]
                } else {
                    vec!["clone".into(), "build".into()]
                },
                error: error.map(Into::into),
                duration: std::time::Duration::from_secs_f64(secs),
            }
        };
        let c = "2f7ce8dd88a7f9f674bbadc0b7f1bf5e1443a2c7";
        let alpha = Some("planner-demo/alpha:2f7ce8dd88a7");
        let mut out = table(
            &[
                r("alpha", "ensured", Some(c), alpha, None, 1.2),
                r(
                    "beta",
                    "failed",
                    None,
                    None,
                    Some("build: boom\nsecond line"),
                    12.25,
                ),
            ],
            std::time::Duration::from_millis(1300),
        );
        let gamma = r("gamma", "failed", None, None, Some("x"), 0.0);
        out += &table(&[gamma], std::time::Duration::ZERO);
        out += &table(&[], std::time::Duration::ZERO);
        assert_eq!(out, include_str!("testdata/summary.txt"));
    }
}
