//! Rendering a decided plan (the dry run) as text, JSON (`schema_version` 1) or Graphviz DOT.

use serde::Serialize;

use super::table::Table;
use crate::ids::short;
use crate::plan::{Decided, Graph, Status, Via};

/// Version of the JSON document `plan --format json` prints.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// One node of the plan as users see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlanRow {
    pub id: String,
    pub runtime: String,
    /// Every runtime sharing the step.
    pub runtimes: Vec<String>,
    /// The step kind.
    pub step: String,
    pub key: Option<String>,
    pub status: Status,
    pub reason: String,
    /// How a step that runs will be satisfied (`build`, `shared-cache`, `retag`, `pull`);
    /// `null` for a step that does not run and for kinds with one way.
    pub via: Option<Via>,
    pub needs: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PlanDoc<'a> {
    schema_version: u32,
    steps: &'a [PlanRow],
}

/// The rows of a decided graph, in dependency order.
pub fn rows(graph: &Graph, decided: &Decided) -> Vec<PlanRow> {
    graph
        .order()
        .iter()
        .map(|&id| {
            let node = graph.node(id);
            let d = decided.decisions.get(&id);
            PlanRow {
                id: node.display_id(),
                runtime: node.runtime().name.clone(),
                runtimes: node.runtime_names(),
                step: node.kind.name().to_owned(),
                key: decided.keys.get(&id).map(|k| k.to_string()),
                status: d.map_or(Status::Blocked, |d| d.status),
                reason: d.map_or_else(String::new, |d| crate::mask::mask(&d.reason).into_owned()),
                via: d.and_then(|d| d.via),
                needs: graph
                    .needs(id)
                    .into_iter()
                    .map(|n| graph.node(n).display_id())
                    .collect(),
            }
        })
        .collect()
}

pub fn json(rows: &[PlanRow]) -> String {
    serde_json::to_string_pretty(&PlanDoc {
        schema_version: PLAN_SCHEMA_VERSION,
        steps: rows,
    })
    .expect("plan rows serialize")
}

pub fn text(rows: &[PlanRow]) -> String {
    let mut table = Table::new(&["RUNTIME", "STEP", "STATUS", "KEY", "REASON"])
        .min_width(1, 17)
        .min_width(2, 7)
        .min_width(3, 12);
    for r in rows {
        table.row(vec![
            r.runtimes.join(","),
            r.step.clone(),
            r.status.name().to_owned(),
            r.key.as_deref().map_or("-", short).to_owned(),
            r.reason.replace('\n', " "),
        ]);
    }
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let mut out = table.render();
    out.push_str(&format!(
        "\n{} to run, {} skipped, {} blocked, {} failed\n",
        count(Status::Run),
        count(Status::Skip),
        count(Status::Blocked),
        count(Status::Failed)
    ));
    out
}

pub fn dot(rows: &[PlanRow]) -> String {
    let mut out = String::from(
        "digraph planner {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\"];\n",
    );
    for r in rows {
        let color = match r.status {
            Status::Skip => "#d8f0d8",
            Status::Run => "#ffe9a8",
            Status::Blocked => "#e0e0e0",
            Status::Failed => "#f4b4b4",
        };
        let label = format!(
            "{}\\n{}: {}",
            escape(&r.id),
            r.status.name(),
            escape(&r.reason.replace('\n', " "))
        );
        out.push_str(&format!(
            "  \"{}\" [label=\"{label}\", fillcolor=\"{color}\"];\n",
            escape(&r.id)
        ));
    }
    for r in rows {
        for need in &r.needs {
            out.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                escape(need),
                escape(&r.id)
            ));
        }
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: Status, needs: &[&str]) -> PlanRow {
        PlanRow {
            id: id.into(),
            runtime: "a".into(),
            runtimes: vec!["a".into()],
            step: "build".into(),
            key: Some("f".repeat(64)),
            status,
            reason: "say \"hi\"".into(),
            via: (status == Status::Run).then_some(crate::steps::via::SHARED_CACHE),
            needs: needs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let doc: serde_json::Value =
            serde_json::from_str(&json(&[row("a/build", Status::Run, &["a/verify"])])).unwrap();
        assert_eq!(doc["schema_version"], 1);
        let step = &doc["steps"][0];
        for field in [
            "id", "runtime", "step", "key", "status", "reason", "via", "needs",
        ] {
            assert!(step.get(field).is_some(), "missing {field}");
        }
        assert_eq!(step["status"], "run");
        assert_eq!(step["via"], "shared-cache");
        let skipped: serde_json::Value =
            serde_json::from_str(&json(&[row("a/build", Status::Skip, &[])])).unwrap();
        assert_eq!(skipped["steps"][0]["via"], serde_json::Value::Null);
        assert_eq!(step["needs"][0], "a/verify");
    }

    #[test]
    fn dot_escapes_quotes_and_draws_edges() {
        let d = dot(&[
            row("a/verify", Status::Skip, &[]),
            row("a/build", Status::Run, &["a/verify"]),
        ]);
        assert!(d.contains("\"a/verify\" -> \"a/build\";"), "{d}");
        assert!(d.contains("say \\\"hi\\\""), "{d}");
    }

    #[test]
    fn text_is_byte_identical_to_the_captured_layout() {
        let mut long = row("a,b/build", Status::Blocked, &[]);
        long.runtimes = vec!["alpha".into(), "beta".into()];
        long.key = None;
        long.reason = "two\nlines".into();
        let mut t = text(&[
            row("a/verify", Status::Skip, &[]),
            row("a/build", Status::Run, &[]),
            long,
        ]);
        t += &text(&[]);
        assert_eq!(t, include_str!("testdata/plan.txt"));
    }

    #[test]
    fn text_counts_statuses() {
        let t = text(&[
            row("a/verify", Status::Skip, &[]),
            row("a/build", Status::Run, &[]),
        ]);
        assert!(
            t.ends_with("1 to run, 1 skipped, 0 blocked, 0 failed\n"),
            "{t}"
        );
    }
}
