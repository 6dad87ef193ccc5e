//! TEMPORARY stub (the real module lands from wp-parse).
use crate::config::BuildArgs;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseRef {
    pub reference: String,
    pub platform: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    #[error("line {0}: FROM names no image")]
    Empty(usize),
}

pub fn base_images(
    text: &str,
    _build_args: &BuildArgs,
    _platform: &str,
) -> Result<Vec<BaseRef>, DockerfileError> {
    let mut stages: Vec<String> = Vec::new();
    let mut out: Vec<BaseRef> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words
            .first()
            .is_none_or(|w| !w.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let mut rest = &words[1..];
        let mut platform = None;
        if let Some(p) = rest.first().and_then(|w| w.strip_prefix("--platform=")) {
            platform = Some(p.to_owned());
            rest = &rest[1..];
        }
        let Some(image) = rest.first() else {
            return Err(DockerfileError::Empty(i + 1));
        };
        let skip = image.eq_ignore_ascii_case("scratch") || stages.contains(&image.to_lowercase());
        if rest.len() >= 3 && rest[1].eq_ignore_ascii_case("AS") {
            stages.push(rest[2].to_lowercase());
        }
        if skip {
            continue;
        }
        let r = BaseRef {
            reference: (*image).to_owned(),
            platform,
        };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}
