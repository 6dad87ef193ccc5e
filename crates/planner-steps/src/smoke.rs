//! `smoke`: the runtime's smoke test (`smoke = [argv]` in `runtimes.toml`) run once in the
//! image its build (or pull) produced, before `:latest` may move to it (`tag-latest` needs
//! it in the shipped plans). Keyed on the image ID, the argv and the network mode: a pass
//! is recorded and never run again for the same image and command.
//!
//! The container ([`planner_docker::container`]) runs the argv as its entrypoint (no shell),
//! with no network (the host's when the runtime's `build_network` is `"host"`), no host
//! mounts, at most `smoke_timeout`, and is killed and removed whatever happens (a pass, a
//! failure, a hang, Ctrl-C). It carries the label [`LABEL_SMOKE`] valued with the step's
//! key: under the key's lock, a container with that label is a leftover of a planner that was
//! killed, removed before the test runs again.
//!
//! A runtime without `smoke` has nothing to test: the step is satisfied at once ("no smoke
//! test configured"), runs nothing and records nothing, so a plan can always contain it.

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::{Attests, Work};
use crate::outputs::Image;
use crate::record::{FIELDS, RecordFields};
use crate::world::RealWorld;
use planner_base::BuildNetwork;
use planner_base::ids::short;
use planner_config::Runtime;
use planner_core::Kind;
use planner_core::exec::RunRequest;
use planner_core::key::{Key, KeyBuilder};
use planner_core::output::OutputData;
use planner_core::plan::KeyInputs;
use planner_core::plan::{Output, Probe, ProbeRequest, StepKind};
use planner_core::store::RecordField;
use planner_docker::DockerError;
use planner_docker::container::{Ran, RunSpec};

/// The label every smoke container carries, valued with the step's key
/// (`docker ps -a --filter label=dev.planner.smoke` lists any a killed planner left).
pub const LABEL_SMOKE: &str = "dev.planner.smoke";

/// Longest command shown in a message, in characters.
const SHOWN_ARGV_CHARS: usize = 300;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

impl Kind for Step {
    fn name(&self) -> &'static str {
        "smoke"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[super::build::KIND, super::pull::KIND];
        INPUTS
    }

    fn heavy(&self) -> bool {
        true
    }

    fn probes_input(&self) -> bool {
        true
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        match &rt.smoke {
            None => vec![("smoke", String::new())],
            Some(argv) => vec![
                ("smoke", serde_json::to_string(argv).unwrap_or_default()),
                ("network", network(rt).to_owned()),
                ("timeout", rt.smoke_timeout.as_secs().to_string()),
            ],
        }
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let rt = at.node.runtime();
        let revision = at.revision?;
        match &rt.smoke {
            None => Some(
                KeyBuilder::new(KIND.name())
                    .field("smoke", "none")
                    .field("revision", revision)
                    .field("image", &rt.image_repo())
                    .finish(),
            ),
            Some(argv) => {
                let Image { id } = at.input_output?.get::<Image>()?;
                Some(key(id, argv, network(rt)))
            }
        }
    }

    fn record_fields(&self) -> &'static [RecordField] {
        FIELDS
    }
}

impl Work for Step {
    fn attests(&self) -> Attests {
        Attests::NamedImage
    }

    fn probe<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, Error>> {
        Box::pin(async move { Ok(probe(world, req)) })
    }

    fn run<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        Box::pin(run(world, req))
    }
}

/// `smoke`'s output: the image that passed, or that there was nothing to test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Smoked {
    Passed { id: String },
    NotConfigured,
}

impl OutputData for Smoked {
    fn describe(&self) -> String {
        match self {
            Smoked::Passed { id } => format!("passed in {}", short(id)),
            Smoked::NotConfigured => "no smoke test configured".to_owned(),
        }
    }
}

/// The key of a smoke test: the image it runs in, the command, and the network mode.
pub fn key(image_id: &str, argv: &[String], network: &str) -> Key {
    let mut b = KeyBuilder::new(KIND.name());
    b.field("image", image_id)
        .field("args", &argv.len().to_string());
    for arg in argv {
        b.field("arg", arg);
    }
    b.field("network", network).finish()
}

/// The network mode the test runs with: none, unless the runtime's builds use the host's.
fn network(rt: &Runtime) -> &'static str {
    match rt.build_network {
        BuildNetwork::Host => "host",
        BuildNetwork::Default | BuildNetwork::None => "none",
    }
}

/// The command as messages show it: quoted, escaped (inert), bounded.
fn shown(argv: &[String]) -> String {
    let text = format!("{argv:?}");
    match text.char_indices().nth(SHOWN_ARGV_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Probe {
    let Some(argv) = &req.node.runtime().smoke else {
        return Probe::Present {
            output: Output::new(Smoked::NotConfigured),
            reason: "no smoke test configured".into(),
        };
    };
    let Some(Image { id }) = req.input.and_then(|o| o.get::<Image>()) else {
        return Probe::Missing {
            reason: format!("{} runs in the image once it is built", shown(argv)),
        };
    };
    let passed = world
        .store
        .read_record(req.key, KIND)
        .map(|r| RecordFields::of(&r))
        .is_some_and(|r| r.image_id.as_deref() == Some(id.as_str()));
    if passed {
        Probe::Present {
            output: Output::new(Smoked::Passed { id: id.clone() }),
            reason: format!("{} passed in {}", shown(argv), short(id)),
        }
    } else {
        Probe::Missing {
            reason: format!("{} not yet run in {}", shown(argv), short(id)),
        }
    }
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, Error> {
    let rt = req.node.runtime();
    let Some(argv) = &rt.smoke else {
        return Ok(Output::new(Smoked::NotConfigured));
    };
    let Some(Image { id }) = req.input.as_ref().and_then(|o| o.get::<Image>()) else {
        return Err(Error::Internal("smoke ran without an image".into()));
    };
    let label = (LABEL_SMOKE, req.key.as_str());
    // The key's lock is held: a container with this label is a killed planner's leftover.
    world.engine.remove_labelled(label).await?;
    let spec = RunSpec {
        image: id,
        argv,
        network: network(rt),
        label,
        timeout: rt.smoke_timeout,
    };
    let ran = match world.engine.run_once(&spec).await {
        Ok(ran) => ran,
        // The engine refused to create or start the container (its program is not in the
        // image, an argv it cannot exec): the smoke test failed, not the engine.
        Err(DockerError::Api { detail, .. }) => {
            return Err(Error::Failed(not_started(req, argv, id, &detail)));
        }
        Err(e) => return Err(e.into()),
    };
    if ran.exit_code != Some(0) {
        return Err(Error::Failed(failure(req, argv, id, &ran)));
    }
    world
        .record(KIND, req.key, req.node, |r| {
            r.set_revision(req.revision);
            r.image_id = Some(id.clone());
        })
        .await?;
    Ok(Output::new(Smoked::Passed { id: id.clone() }))
}

/// The error of a smoke test whose container the engine would not start (`detail` is its
/// answer): the runtime, the command, why, and that `:latest` did not move.
fn not_started(req: &RunRequest<'_>, argv: &[String], id: &str, detail: &str) -> String {
    let names = req.node.runtime_names().join(", ");
    format!(
        "smoke test of runtime {names} failed: {} could not start in image {}: {}\n  {} stays where it was\n  help: the command must exist in the image (an absolute path, or a program on the image's PATH; a shell command needs [\"sh\", \"-c\", \"...\"]): fix the runtime's smoke command in runtimes.toml or the image",
        shown(argv),
        short(id),
        planner_base::text::inert(detail),
        req.node.runtime().latest_tag(),
    )
}

/// The error of a smoke test that did not pass: the runtime, the command, the exit code (or
/// the time limit), the last lines of output (inert), and that `:latest` did not move.
fn failure(req: &RunRequest<'_>, argv: &[String], id: &str, ran: &Ran) -> String {
    let names = req.node.runtime_names().join(", ");
    let rt = req.node.runtime();
    let what = match ran.exit_code {
        Some(code) => format!("exited with code {code}"),
        None => format!(
            "was still running after {} (smoke_timeout); its container was killed and removed",
            humantime::format_duration(rt.smoke_timeout)
        ),
    };
    let tail = if ran.tail.is_empty() {
        "\n  no output".to_owned()
    } else {
        let lines: Vec<String> = ran
            .tail
            .iter()
            .map(|l| format!("    | {}", planner_base::text::inert(l)))
            .collect();
        format!("\n  last output:\n{}", lines.join("\n"))
    };
    let help = match ran.exit_code {
        Some(_) => "fix the image, or the runtime's smoke command in runtimes.toml, and run again",
        None => "raise smoke_timeout in runtimes.toml if the test is only slow",
    };
    format!(
        "smoke test of runtime {names} failed: {} {what} in image {}\n  {} stays where it was{tail}\n  help: {help}",
        shown(argv),
        short(id),
        rt.latest_tag(),
    )
}
