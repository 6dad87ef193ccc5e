//! The end-of-run summary as a table: per runtime, whether it is ensured, its commit and
//! image, what ran, where it was published ([`crate::summary`] computes it).

use super::table::Table;
use crate::ids::short;
pub use crate::summary::{RunStatus, RuntimeSummary};

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
            r.status.name().to_owned(),
            r.commit.as_deref().map_or("-", short).to_owned(),
            r.image.clone().unwrap_or_else(|| "-".into()),
            format!("{:.1}s", r.duration.as_secs_f64()),
            ran,
        ]);
        if let Some(p) = &r.published {
            table.row(vec![String::new(), format!("published {p}")]);
        }
        if let Some(e) = &r.error {
            let first = e.lines().next().unwrap_or_default();
            table.row(vec![String::new(), format!("error: {first}")]);
        }
    }
    let failed = crate::summary::failed(rows);
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
                image_id: None,
                digest: None,
                published: None,
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
                r("alpha", RunStatus::Ensured, Some(c), alpha, None, 1.2),
                r(
                    "beta",
                    RunStatus::Failed,
                    None,
                    None,
                    Some("build: boom\nsecond line"),
                    12.25,
                ),
            ],
            std::time::Duration::from_millis(1300),
        );
        let gamma = r("gamma", RunStatus::Failed, None, None, Some("x"), 0.0);
        out += &table(&[gamma], std::time::Duration::ZERO);
        out += &table(&[], std::time::Duration::ZERO);
        assert_eq!(out, include_str!("testdata/summary.txt"));
    }
}
