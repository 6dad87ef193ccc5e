//! The origin's template shapes, Docker's substitution rules and every error, by message.

use super::*;

const AMD64: &str = "linux/amd64";

fn args(pairs: &[(&str, &str)]) -> BuildArgs {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn bases_with(text: &str, build_args: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    base_images(text, &args(build_args), AMD64)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .into_iter()
        .map(|b| (b.reference, b.platform))
        .collect()
}

fn bases(text: &str) -> Vec<String> {
    bases_with(text, &[]).into_iter().map(|(r, _)| r).collect()
}

fn error(text: &str, build_args: &[(&str, &str)]) -> String {
    match base_images(text, &args(build_args), AMD64) {
        Ok(b) => panic!("{text:?} parsed: {b:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn arg_before_from_default_is_overridden_by_a_declared_build_arg() {
    let text = "ARG RUNTIME_VERSION=1.4.2\nARG BASE=python:3.11-slim\nFROM ${BASE}\nRUN echo $RUNTIME_VERSION\n";
    assert_eq!(bases(text), ["python:3.11-slim"]);
    assert_eq!(
        bases_with(text, &[("BASE", "python:3.12-slim")]),
        [("python:3.12-slim".to_owned(), None)]
    );
    let tagged = "ARG RUNTIME_VERSION=1.4.2\nFROM ghcr.io/origin/runtime:${RUNTIME_VERSION}\n";
    assert_eq!(
        bases_with(tagged, &[("RUNTIME_VERSION", "2.0.0")]),
        [("ghcr.io/origin/runtime:2.0.0".to_owned(), None)]
    );
}

#[test]
fn a_build_arg_without_an_arg_before_from_does_not_reach_from() {
    let text = "FROM alpine:${TAG:-3.19}\nARG TAG\n";
    assert_eq!(bases_with(text, &[("TAG", "3.20")])[0].0, "alpine:3.19");
}

#[test]
fn arg_defaults_use_earlier_args_and_an_arg_without_default_is_unset() {
    let text = "ARG REG=127.0.0.1:5000\nARG IMG=$REG/base\nFROM $IMG:1\n";
    assert_eq!(bases(text), ["127.0.0.1:5000/base:1"]);
    let text = "ARG T=3.19\nARG T\nFROM alpine:${T:-edge}\n";
    assert_eq!(bases(text), ["alpine:edge"], "the classic builder unsets T");
    let text = "ARG A=x B=\"y z\" C\nFROM img:${A}-${C:-c}\nFROM \"${B}\"\n";
    assert_eq!(bases(text), ["img:x-c", "y z"]);
}

#[test]
fn substitution_forms_follow_dockers_lexer() {
    let text = "ARG EMPTY=\nARG SET=v\n\
        FROM a:${UNSET:-d1}\nFROM b:${EMPTY:-d2}\nFROM c:${EMPTY-d3}x\nFROM d:${SET:+alt}\n\
        FROM e:x${UNSET:+alt}\nFROM f:${EMPTY+alt}\nFROM g:$SET\nFROM h\\$x\n";
    assert_eq!(
        bases(text),
        ["a:d1", "b:d2", "c:x", "d:alt", "e:x", "f:alt", "g:v", "h$x"]
    );
}

#[test]
fn multi_line_run_with_continuations_and_comments_between_lines() {
    let text = "FROM debian:bookworm-slim\n\
        RUN apt-get update \\\n\
        # a comment inside the continuation\n\
            && apt-get install -y curl \\\n\
        \n\
            && rm -rf /var/lib/apt/lists/*\n\
        FROM busybox:1.36\n";
    assert_eq!(bases(text), ["debian:bookworm-slim", "busybox:1.36"]);
}

#[test]
fn named_stages_and_copy_from_a_stage_are_not_bases() {
    let text = "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n\
        RUN go build -o /out/app .\n\
        FROM build AS test\n\
        FROM gcr.io/distroless/static:nonroot\n\
        COPY --from=build /out/app /app\n\
        COPY --from=0 /out/app /app0\n";
    assert_eq!(
        bases_with(text, &[]),
        [
            ("golang:1.22".to_owned(), Some(AMD64.to_owned())),
            ("gcr.io/distroless/static:nonroot".to_owned(), None),
        ]
    );
}

#[test]
fn platform_args_come_from_the_build_platform_unless_an_arg_redefines_them() {
    let text =
        "FROM --platform=$TARGETOS/$TARGETARCH a\nFROM --platform=${TARGETVARIANT:-none} b\n";
    assert_eq!(
        base_images(text, &args(&[]), "linux/arm64/v8").unwrap(),
        [
            BaseRef {
                reference: "a".into(),
                platform: Some("linux/arm64".into())
            },
            BaseRef {
                reference: "b".into(),
                platform: Some("v8".into())
            },
        ]
    );
    let text = "ARG TARGETARCH=riscv64\nARG BUILDOS\nFROM img:$TARGETARCH-$BUILDOS\n";
    assert_eq!(bases(text), ["img:riscv64-linux"]);
    let text = "FROM --platform= a\nFROM --platform=\"\" b\n";
    assert_eq!(
        bases_with(text, &[]),
        [("a".to_owned(), None), ("b".to_owned(), None)]
    );
}

#[test]
fn default_form_with_an_image_inside() {
    assert_eq!(
        bases("FROM ${BASE:-python:3.11-slim}\n"),
        ["python:3.11-slim"]
    );
    assert_eq!(
        bases_with(
            "ARG BASE\nFROM ${BASE:-python:3.11-slim}\n",
            &[("BASE", "x:1")]
        )[0]
        .0,
        "x:1"
    );
}

#[test]
fn scratch_is_no_base_and_only_lower_case_scratch_is_scratch() {
    assert_eq!(
        bases("FROM scratch\nCOPY --from=scratch / /\n"),
        [] as [&str; 0]
    );
    // The engine (classic builder and BuildKit) treats only `scratch` as empty: `SCRATCH` is
    // an image reference, which the reference check refuses (must be lower case).
    assert_eq!(bases("FROM SCRATCH\n"), ["SCRATCH"]);
}

#[test]
fn stage_names_are_case_insensitive() {
    let text =
        "FROM alpine:3.19 AS Builder\nFROM BUILDER\nFROM builder AS x\nCOPY --from=bUiLdEr / /\n";
    assert_eq!(bases(text), ["alpine:3.19"]);
}

#[test]
fn a_from_naming_a_later_or_its_own_stage_is_an_image() {
    let text = "FROM later AS first\nFROM alpine AS later\nFROM self AS self\n";
    assert_eq!(bases(text), ["later", "alpine", "self"]);
}

#[test]
fn copy_from_an_image_is_a_base_with_the_build_platform() {
    let text = "FROM --platform=linux/arm64 scratch\nCOPY --from=alpine:3.19 /x /y\nCOPY --from=\"busybox\" /a /b\n";
    assert_eq!(
        bases_with(text, &[]),
        [
            ("alpine:3.19".to_owned(), None),
            ("busybox".to_owned(), None)
        ]
    );
}

#[test]
fn copy_from_a_later_stage_is_no_base() {
    let text = "FROM scratch AS a\nCOPY --from=late / /\nFROM alpine AS late\n";
    assert_eq!(bases(text), ["alpine"]);
}

#[test]
fn run_mount_from_an_image_is_a_base() {
    let text = "FROM alpine AS st\nRUN --mount=type=bind,from=busybox:1.36,target=/b \\\n  --mount=type=cache,target=/c \\\n  --mount=from=st,target=/s true\n";
    assert_eq!(bases(text), ["alpine", "busybox:1.36"]);
}

#[test]
fn escape_directive_backtick() {
    let text = "# escape=`\nARG BASE=mcr.microsoft.com/windows/servercore:ltsc2022\nFROM $BASE\nRUN dir `\n  c:\\\nFROM img`$x\n";
    assert_eq!(
        bases(text),
        ["mcr.microsoft.com/windows/servercore:ltsc2022", "img$x"]
    );
}

#[test]
fn heredoc_in_run_is_not_mistaken_for_from() {
    let text =
        "FROM alpine:3.19\nRUN <<EOF\nFROM evil:latest\nEOF\nCOPY <<EOT /x\nFROM evil2\nEOT\n";
    assert_eq!(bases(text), ["alpine:3.19"]);
}

#[test]
fn digest_references_are_kept_as_written() {
    let d = "alpine@sha256:c5b1261d6d3e43071626931fc004f70149baeba2c8ec672bd4f27761f8e1ad6b";
    assert_eq!(
        bases(&format!("FROM {d}\nFROM Alpine:3.19\n")),
        [d, "Alpine:3.19"]
    );
}

#[test]
fn deduplicated_in_order_of_appearance() {
    let text =
        "FROM b:1\nFROM a:1\nFROM b:1\nFROM --platform=linux/arm64 b:1\nCOPY --from=a:1 / /\n";
    assert_eq!(
        bases_with(text, &[]),
        [
            ("b:1".to_owned(), None),
            ("a:1".to_owned(), None),
            ("b:1".to_owned(), Some("linux/arm64".to_owned())),
        ]
    );
}

#[test]
fn comments_directives_bom_and_lower_case_keywords() {
    let text = "\u{feff}# syntax=docker/dockerfile:1\n# a comment\n\n  from alpine as base\n";
    assert_eq!(bases(text), ["alpine"]);
}

#[test]
fn the_demo_templates_parse() {
    for dir in ["alpha", "beta"] {
        let path = format!(
            "{}/../../examples/demo/templates/{dir}/Dockerfile",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(bases(&text), [] as [&str; 0], "{path}: FROM scratch only");
    }
}

#[test]
fn error_no_from() {
    assert_eq!(
        error("# only a comment\nARG A=1\n", &[]),
        "Dockerfile line 3: no FROM instruction before the end of the file\n  help: start the Dockerfile with `FROM <image>` (only ARG, comments and parser directives may come before it)"
    );
    assert!(
        error("ARG A=1\nRUN true\nFROM alpine\n", &[])
            .starts_with("Dockerfile line 2: no FROM instruction before RUN\n  help: "),
    );
    assert!(error("", &[]).contains("no FROM instruction before the end of the file"));
}

#[test]
fn error_from_without_image() {
    for text in [
        "FROM alpine\nFROM\n",
        "FROM alpine\nFROM --platform=linux/amd64\n",
    ] {
        assert_eq!(
            error(text, &[]),
            "Dockerfile line 2: FROM names no image\n  help: write `FROM <image>[:tag] [AS <stage>]`, e.g. `FROM python:3.11-slim`"
        );
    }
}

#[test]
fn error_image_empty_after_substitution_names_the_unset_args() {
    let message = error("ARG BASE\nARG TAG\nFROM ${BASE}${TAG}\n", &[]);
    assert_eq!(
        message,
        "Dockerfile line 3: FROM ${BASE}${TAG} is empty once build args are substituted (BASE, TAG unset)\n  help: declare the arg in `build_args` for this runtime (or `[defaults]`) in runtimes.toml, or give it a default in an ARG before the first FROM (`ARG NAME=value`)"
    );
    // Declared as a build arg but the ARG is only inside the stage: still unset for FROM.
    assert!(error("FROM $BASE\nARG BASE\n", &[("BASE", "x")]).contains("(BASE unset)"));
    assert!(error("FROM --platform=$P alpine\n", &[]).starts_with(
        "Dockerfile line 1: FROM --platform=$P is empty once build args are substituted (P unset)\n  help: "
    ));
}

#[test]
fn error_unparsable() {
    let cases = [
        (
            "FROM alpine\nFROBNICATE x\n",
            "Dockerfile line 2: unknown instruction",
        ),
        (
            "FROM alpine AS a b\n",
            "Dockerfile line 1: expected newline or eof",
        ),
        (
            "FROM a AS x\nFROM b AS x\n",
            "Dockerfile line 2: duplicate stage name",
        ),
        (
            "FROM --plat=x alpine\n",
            "Dockerfile line 1: FROM has an unknown flag --plat",
        ),
        (
            "FROM alpine\nRUN <<EOF\nno end\n",
            "Dockerfile line 4: expected end of here-document",
        ),
        (
            "ARG =x\nFROM a\n",
            "Dockerfile line 1: ARG names can not be blank",
        ),
    ];
    for (text, start) in cases {
        let message = error(text, &[]);
        assert!(message.starts_with(start), "{text:?}: {message}");
        assert!(
            message.contains("\n  help: fix the Dockerfile"),
            "{message}"
        );
    }
}

#[test]
fn error_bad_substitution() {
    let message = error("FROM ${BASE\n", &[]);
    assert_eq!(
        message,
        "Dockerfile line 1: cannot substitute build args in \"${BASE\": syntax error: missing '}'\n  help: fix the substitution in the Dockerfile (Docker's forms: $NAME, ${NAME}, ${NAME:-default}, ${NAME:+alt})"
    );
    assert!(error("FROM ${BASE:?need-BASE}\n", &[]).contains(": BASE: need-BASE\n"));
    assert!(error("ARG A=${\nFROM x\n", &[]).starts_with("Dockerfile line 1: cannot substitute"));
}

#[test]
fn error_variable_in_copy_from() {
    assert!(
        error("ARG S=alpine\nFROM alpine\nCOPY --from=$S / /\n", &[]).starts_with(
            "Dockerfile line 3: COPY --from \"$S\" uses a variable\n  help: variable expansion is not supported there"
        )
    );
}

#[test]
fn error_control_characters_and_absurd_lengths() {
    let message = error("ARG B=\"a\tb\"\nFROM $B\n", &[]);
    assert_eq!(
        message,
        "Dockerfile line 2: image reference \"a\\tb\" contains a control character\n  help: fix the image reference (or the build arg it is made of)"
    );
    let long = format!("FROM {}\n", "a".repeat(MAX_REFERENCE_BYTES + 1));
    assert!(error(&long, &[]).contains("is 1025 bytes, over 1024"));
}

#[test]
fn error_too_large_and_exponential_args_are_bounded() {
    let big = format!("FROM a\n{}", "#".repeat(MAX_DOCKERFILE_BYTES));
    assert!(
        error(&big, &[]).starts_with("Dockerfile is 1048583 bytes, over the 1048576 byte limit")
    );
    let mut text = String::from("ARG A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        text.push_str(&format!("ARG A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
    }
    text.push_str("FROM $A39\n");
    assert!(error(&text, &[]).contains("expands to more than 8388608 bytes"));
}

#[test]
fn hostile_inputs_near_the_cap_finish() {
    let cap = MAX_DOCKERFILE_BYTES - 64;
    let fill = |piece: &str| piece.repeat(cap / piece.len());
    let distinct = |head: &str, line: fn(usize) -> String| {
        let mut text = head.to_owned();
        for l in (0..).map(line) {
            if text.len() + l.len() > cap {
                break;
            }
            text.push_str(&l);
        }
        text
    };
    let inputs = [
        format!("FROM a\nRUN x {}", fill("\\\n")),
        format!("FROM a\n{}", fill("RUN <<E\nE\n")),
        format!("FROM {}", fill("${A:-")),
        format!("{}FROM $A0\n", fill("ARG A0=$A0$A0\n")),
        format!("{}FROM a", fill("ARG A=1\n")),
        format!("FROM {}", fill("a")),
        format!("FROM a\n{}", fill("COPY --from=b:1 / /\n")),
        fill("#\n"),
        format!("FROM a\nRUN {}", fill("\"")),
        distinct("FROM a\n", |i| format!("COPY --from=b{i}:1 / /\n")),
        distinct("", |i| format!("FROM s{i} AS s{i}\n")),
    ];
    for text in &inputs {
        let _ = base_images(text, &args(&[]), AMD64);
    }
}

#[test]
fn error_too_many_base_images() {
    let text: String = (0..=MAX_BASE_IMAGES)
        .map(|i| format!("FROM b{i}:1\n"))
        .collect();
    assert!(
        error(&text, &[])
            .starts_with("Dockerfile line 257: more than 256 distinct base images\n  help: ")
    );
    assert_eq!(
        bases(&text[..text.len() - "FROM b256:1\n".len()]).len(),
        256
    );
}

#[test]
fn crlf_line_ends_and_a_from_continued_over_lines() {
    assert_eq!(
        bases("ARG T=1\r\nFROM a:$T\r\nFROM \\\r\n  b:2 \\\n  AS x\r\n"),
        ["a:1", "b:2"]
    );
    assert!(
        error("FROM a\r\n\r\nFROM \\\n  ${X}\n", &[])
            .starts_with("Dockerfile line 3: FROM ${X} is empty")
    );
}
