//! The end-of-run summary: per runtime, whether it is ensured, its commit and image, what ran.

use serde::Serialize;

use crate::exec::Outcome;
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
        Some(Output::Commit(c)) => Some(c.clone()),
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

/// The summary as a plain table.
pub fn table(rows: &[RuntimeSummary], elapsed: std::time::Duration) -> String {
    let w = rows
        .iter()
        .map(|r| r.runtime.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let iw = rows
        .iter()
        .filter_map(|r| r.image.as_ref().map(String::len))
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<w$}  {:<7}  {:<12}  {:<iw$}  {:>7}  RAN\n",
        "RUNTIME", "STATUS", "COMMIT", "IMAGE", "TIME"
    );
    for r in rows {
        let commit = r.commit.as_deref().map_or("-", crate::config::sha12);
        let ran = if r.ran.is_empty() {
            "nothing".to_owned()
        } else {
            r.ran.join(",")
        };
        out.push_str(&format!(
            "{:<w$}  {:<7}  {commit:<12}  {:<iw$}  {:>6.1}s  {ran}\n",
            r.runtime,
            r.status,
            r.image.as_deref().unwrap_or("-"),
            r.duration.as_secs_f64()
        ));
        if let Some(e) = &r.error {
            let first = e.lines().next().unwrap_or_default();
            out.push_str(&format!("{:<w$}  error: {first}\n", ""));
        }
    }
    let failed = rows.iter().filter(|r| r.status == "failed").count();
    out.push_str(&format!(
        "{} ensured, {failed} failed in {:.1}s\n",
        rows.len() - failed,
        elapsed.as_secs_f64()
    ));
    out
}
