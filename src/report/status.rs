//! `planner status` rendered: the table (then one line per problem), or one JSON object.

use super::human_bytes;
use super::table::Table;
use crate::ids::short;
use crate::status::{self, CheckoutStatus, LatestStatus, RuntimeStatus, StatusReport};

/// How long ago `then` was, coarsely: `5s ago`, `3m ago`, `2h ago`, `4d ago`.
pub fn ago(now: u64, then: u64) -> String {
    let d = now.saturating_sub(then);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86_400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// The status table, then one line per problem.
pub fn text(rows: &[RuntimeStatus], now: u64) -> String {
    let mut table = Table::new(&[
        "RUNTIME", "BRANCH", "COMMIT", "RESOLVED", "IMAGE", "LATEST", "CHECKOUT",
    ]);
    for r in rows {
        table.row(row(r, now));
    }
    let mut notes: Vec<String> = rows.iter().flat_map(notes).collect();
    if rows
        .iter()
        .any(|r| r.commit.is_none() && r.digest.is_none() && r.error.is_none())
    {
        notes.push(
            "COMMIT -: never resolved here; run `planner ensure`, or `planner status --refresh` to ask the git host"
                .into(),
        );
    }
    let mut out = table.render();
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// `{"schema_version":1,"runtimes":[…]}`.
pub fn json(rows: &[RuntimeStatus]) -> String {
    serde_json::to_string_pretty(&StatusReport {
        schema_version: status::STATUS_SCHEMA,
        runtimes: rows,
    })
    .expect("status rows serialize")
}

/// One runtime's row of the status table.
fn row(r: &RuntimeStatus, now: u64) -> Vec<String> {
    let commit = match (r.commit.as_ref().or(r.digest.as_ref()), &r.error) {
        (Some(c), _) => short(c).to_owned(),
        (None, Some(_)) => "error".into(),
        (None, None) => "-".into(),
    };
    let resolved = r
        .resolved_at
        .map_or_else(|| "never".into(), |t| ago(now, t));
    let image = match (&r.image.tag, r.image.present) {
        (None, _) => "-".to_owned(),
        (Some(_), true) => "present".into(),
        (Some(_), false) => "missing".into(),
    };
    vec![
        r.runtime.clone(),
        r.branch.clone(),
        commit,
        resolved,
        image,
        latest_cell(&r.latest),
        checkout_cell(&r.checkout),
    ]
}

/// The LATEST cell: the image ID, and whether it is the pinned image, another commit's or
/// not planner's.
fn latest_cell(latest: &LatestStatus) -> String {
    match (&latest.id, latest.matches_commit) {
        (None, _) => "missing".to_owned(),
        (Some(id), Some(true)) => format!("{} (pinned)", short(id)),
        (Some(id), Some(false)) => match &latest.commit {
            Some(c) => format!("{} (commit {})", short(id), short(c)),
            None => format!("{} (not planner's)", short(id)),
        },
        (Some(id), None) => short(id).to_owned(),
    }
}

/// The CHECKOUT cell: present with its size, missing, or unusable.
fn checkout_cell(checkout: &CheckoutStatus) -> String {
    match (&checkout.path, checkout.present, &checkout.problem) {
        (None, _, _) => "-".to_owned(),
        (Some(_), true, _) => format!("present {}", human_bytes(checkout.bytes.unwrap_or(0))),
        (Some(_), false, Some(_)) => "unusable".into(),
        (Some(_), false, None) => "missing".into(),
    }
}

/// The problem lines of one runtime: its refresh error, then an unusable checkout.
fn notes(r: &RuntimeStatus) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(e) = &r.error {
        notes.push(format!("{}: {e}", r.runtime));
    }
    if let Some(p) = &r.checkout.problem {
        notes.push(format!(
            "{}: checkout unusable ({p}); the next `planner ensure` checks it out again",
            r.runtime
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CheckoutStatus, ImageStatus, LatestStatus};

    #[test]
    fn ages_are_coarse() {
        assert_eq!(ago(100, 95), "5s ago");
        assert_eq!(ago(1000, 820), "3m ago");
        assert_eq!(ago(10_000, 2800), "2h ago");
        assert_eq!(ago(400_000, 0), "4d ago");
        assert_eq!(ago(0, 10), "0s ago");
    }

    fn row(commit: Option<&str>) -> RuntimeStatus {
        RuntimeStatus {
            runtime: "alpha".into(),
            source: crate::config::SourceKind::Git,
            branch: "main".into(),
            digest: None,
            image_id: commit.map(|_| format!("sha256:{}", "a".repeat(64))),
            pinned: commit.map(|_| format!("sha256:{}", "a".repeat(64))),
            repo: "https://h.example/tpl".into(),
            commit: commit.map(str::to_owned),
            resolved_at: commit.map(|_| 90),
            error: None,
            image: ImageStatus {
                tag: commit.map(|c| format!("p/alpha:{}", short(c))),
                present: commit.is_some(),
                id: commit.map(|_| format!("sha256:{}", "a".repeat(64))),
            },
            latest: LatestStatus {
                tag: "p/alpha:latest".into(),
                present: commit.is_some(),
                id: commit.map(|_| format!("sha256:{}", "a".repeat(64))),
                commit: commit.map(str::to_owned),
                matches_commit: commit.map(|_| true),
            },
            checkout: CheckoutStatus {
                present: commit.is_some(),
                path: commit.map(|c| format!("/c/checkouts/tpl/{c}").into()),
                bytes: commit.map(|_| 4096),
                problem: None,
            },
        }
    }

    #[test]
    fn status_table_shows_present_and_never_resolved() {
        let c = "1".repeat(40);
        let text = text(
            &[
                row(Some(&c)),
                RuntimeStatus {
                    runtime: "beta".into(),
                    ..row(None)
                },
            ],
            100,
        );
        assert_eq!(
            text,
            "RUNTIME  BRANCH  COMMIT        RESOLVED  IMAGE    LATEST                 CHECKOUT\n\
             alpha    main    111111111111  10s ago   present  aaaaaaaaaaaa (pinned)  present 4.0 KiB\n\
             beta     main    -             never     -        missing                -\n\
             COMMIT -: never resolved here; run `planner ensure`, or `planner status --refresh` to ask the git host\n"
        );
    }

    #[test]
    fn status_json_has_the_documented_shape() {
        let doc: serde_json::Value = serde_json::from_str(&json(&[row(None)])).unwrap();
        assert_eq!(doc["schema_version"], 2);
        let r = &doc["runtimes"][0];
        for k in [
            "runtime",
            "branch",
            "repo",
            "commit",
            "image_id",
            "pinned",
            "digest",
            "resolved_at",
            "image",
            "latest",
            "checkout",
        ] {
            assert!(r.get(k).is_some(), "{k} in {r}");
        }
        assert!(r["commit"].is_null() && r["image"]["tag"].is_null());
        assert_eq!(r["latest"]["present"], false);
        assert!(r["latest"]["matches_commit"].is_null());
        assert!(r["checkout"]["bytes"].is_null());
    }
}
