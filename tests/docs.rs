//! The docs stay true: every `console` block in `docs/*.md` is run by trycmd against the real
//! binary and must print exactly what the page shows; every file a page's examples read
//! (`docs/<page>.in/`) must be quoted verbatim on that page.
//!
//! These examples run offline: no engine (DOCKER_HOST points at a socket that does not exist),
//! no network, nothing from the user's environment (the PLANNER_* variables are emptied, which
//! planner reads as unset). An example that needs an engine or a git host is a `text` block;
//! the README's quickstart, which does, is run end to end by `tests/quickstart.rs`.

use std::path::Path;

#[test]
fn docs_console_examples_print_what_the_program_prints() {
    trycmd::TestCases::new()
        .register_bin("planner", Path::new(env!("CARGO_BIN_EXE_planner")))
        .env("DOCKER_HOST", "unix:///nonexistent/planner-docs-test.sock")
        .env("PLANNER_CONFIG", "")
        .env("PLANNER_CACHE_DIR", "")
        .env("PLANNER_REPO_PREFIX", "")
        .env("PLANNER_REGISTRY", "")
        .env("NO_COLOR", "1")
        .case("docs/*.md");
}

/// A page's example files are what the page shows, so a reader can copy them.
#[test]
fn docs_example_files_are_quoted_on_their_page() {
    let mut checked = 0;
    for entry in std::fs::read_dir("docs").expect("docs/") {
        let dir = entry.expect("docs/ entry").path();
        let Some(page) = dir
            .to_str()
            .and_then(|d| d.strip_suffix(".in"))
            .map(|p| format!("{p}.md"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("{} has no page {page}: {e}", dir.display()));
        for file in std::fs::read_dir(&dir).expect("example dir") {
            let file = file.expect("example file").path();
            let body = std::fs::read_to_string(&file).expect("example file text");
            let quoted = format!("```toml\n{body}```\n");
            assert!(
                text.contains(&quoted),
                "{} is not quoted verbatim in {page} (as a ```toml block):\n{body}",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no example files found under docs/*.in/");
}

/// The reference `runtimes.toml` on the configuration page (its first ```toml block) is a
/// config planner accepts. Checked offline: with `--shard K/N`, a shard that holds none of
/// the runtimes exits 0 right after loading the config, before any engine is asked; a bad
/// config exits 2 whatever the shard.
#[test]
fn docs_reference_config_is_accepted() {
    let page = std::fs::read_to_string("docs/configuration.md").expect("docs/configuration.md");
    let first = toml_blocks(&page)
        .into_iter()
        .next()
        .expect("a ```toml block");
    assert_accepted(first);
}

/// The cascade's two `runtimes.toml` (machine A builds and publishes, machine B pulls) on
/// the registry-mode page are configs planner accepts, checked as above.
#[test]
fn docs_cascade_configs_are_accepted() {
    let page = std::fs::read_to_string("docs/registry-mode.md").expect("docs/registry-mode.md");
    let at = page.find("## The cascade").expect("the cascade section");
    let blocks = toml_blocks(&page[at..]);
    assert_eq!(blocks.len(), 2, "machine A's and machine B's runtimes.toml");
    for block in blocks {
        assert_accepted(block);
    }
}

/// The bodies of the ```toml blocks in `page`, in order.
fn toml_blocks(page: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let end = body.find("```\n").expect("the block's end");
        blocks.push(&body[..end]);
        rest = &body[end..];
    }
    blocks
}

/// `config` loads: no shard of 4 exits 2, and one holds none of its runtimes (exit 0 right
/// after loading, so the check proves something).
fn assert_accepted(config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runtimes.toml");
    std::fs::write(&file, config).unwrap();
    let mut empty_shards = 0;
    for k in 1..=4 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_planner"))
            .arg("--config")
            .arg(&file)
            .args(["plan", "--all", "--shard", &format!("{k}/4")])
            .env("DOCKER_HOST", "unix:///nonexistent/planner-docs-test.sock")
            .env_remove("PLANNER_REPO_PREFIX")
            .env_remove("PLANNER_REGISTRY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(
            out.status.code(),
            Some(2),
            "the page's runtimes.toml is refused: {stderr}\n{config}"
        );
        if out.status.success() && stderr.contains("nothing to do") {
            empty_shards += 1;
        }
    }
    assert!(
        empty_shards > 0,
        "no shard of 4 was empty: the check proved nothing"
    );
}
