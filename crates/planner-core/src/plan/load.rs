//! Loading `plans/*.toml`: the embedded plans, `--plans DIR` overrides, and validation
//! (unknown kind, missing need, duplicate id, cycle, wrong inputs) with file, line and step named.
//! Kinds are found by name in the [`Kinds`] registry the caller hands in; the built-in plans
//! are the caller's too (`planner-steps` embeds `plans/*.toml`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use planner_config::{SourceKind, line_column};

use crate::kind::{Kinds, StepKind};

/// A refused plan: which file, where, which step, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "cannot read plans directory {dir}: {source}\n  help: --plans takes a directory of NAME.toml files"
    )]
    Dir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// A validated plan: steps in file order, needs as indices into `steps`, and what compiling it
/// needs, computed once at load in O(steps + needs): its goals and a dependency order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub origin: String,
    pub description: Option<String>,
    pub steps: Vec<PlanStep>,
    /// The source its root steps read (git or registry): only runtimes of that source run it.
    pub source: SourceKind,
    goals: Vec<usize>,
    order: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct PlanStep {
    pub id: String,
    pub kind: StepKind,
    pub needs: Vec<usize>,
    pub params: BTreeMap<String, String>,
}

impl Plan {
    /// Steps that no other step needs: the goals of the plan, in file order.
    pub fn goals(&self) -> &[usize] {
        &self.goals
    }

    /// Step indices ordered so that every need comes before the steps that need it (file
    /// order whenever the file lists needs first).
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

/// All loaded plans by name.
#[derive(Debug, Clone, Default)]
pub struct PlanSet {
    pub plans: BTreeMap<String, Plan>,
}

impl PlanSet {
    /// The `builtin` plans (name, text), then every `*.toml` of `dir` (adding or overriding
    /// by file stem), their kinds found in `kinds`.
    pub fn load(
        builtin: &[(&str, &str)],
        dir: Option<&Path>,
        kinds: &Kinds,
    ) -> Result<PlanSet, PlanError> {
        let mut set = PlanSet::default();
        for (name, text) in builtin {
            let plan = parse_plan(name, &format!("<built-in plans/{name}.toml>"), text, kinds)?;
            set.plans.insert(plan.name.clone(), plan);
        }
        if let Some(dir) = dir {
            set.load_dir(dir, kinds)?;
        }
        Ok(set)
    }

    fn load_dir(&mut self, dir: &Path, kinds: &Kinds) -> Result<(), PlanError> {
        let dir_err = |source| PlanError::Dir {
            dir: dir.display().to_string(),
            source,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(dir_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| PlanError::Dir {
                dir: file.clone(),
                source,
            })?;
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let plan = parse_plan(name, &file, &text, kinds)?;
            self.plans.insert(plan.name.clone(), plan);
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// The source the named plan reads, `None` when no such plan is loaded (what
    /// [`planner_config::parse`] asks).
    pub fn source(&self, name: &str) -> Option<SourceKind> {
        self.get(name).map(|p| p.source)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    description: Option<String>,
    steps: Spanned<Vec<Spanned<RawStep>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    #[serde(default)]
    params: BTreeMap<Spanned<String>, Spanned<String>>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    kinds: &'a Kinds,
}

impl Ctx<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: String) -> PlanError {
        let (line, column) = line_column(self.text, span.start);
        PlanError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            message,
        }
    }
}

/// Parses and validates one plan file, its kinds found in `kinds`.
pub fn parse_plan(name: &str, file: &str, text: &str, kinds: &Kinds) -> Result<Plan, PlanError> {
    let cx = Ctx { file, text, kinds };
    if !planner_config::validate_dockerfile(name).is_ok_and(|n| n == name) || name.contains('/') {
        return Err(cx.err(
            0..0,
            format!("invalid plan name {name:?} (from the file name)"),
        ));
    }
    let raw: RawPlan = toml::from_str(text)
        .map_err(|e| cx.err(e.span().unwrap_or(0..0), e.message().trim().to_owned()))?;
    if raw.steps.get_ref().is_empty() {
        return Err(cx.err(raw.steps.span(), format!("plan {name:?} has no steps")));
    }
    let ids = index_ids(raw.steps.get_ref(), &cx)?;
    let mut steps = Vec::new();
    for raw_step in raw.steps.get_ref() {
        steps.push(validate_step(raw_step, &ids, &cx)?);
    }
    check_inputs(&steps, raw.steps.get_ref(), &cx)?;
    let source = source_of(&steps, raw.steps.get_ref(), &cx)?;
    let order = dependency_order(&steps).map_err(|i| {
        let message = format!("step {:?} is part of a needs cycle", steps[i].id);
        cx.err(raw.steps.get_ref()[i].span(), message)
    })?;
    Ok(Plan {
        name: name.to_owned(),
        origin: file.to_owned(),
        description: raw.description,
        source,
        goals: goals(&steps),
        order,
        steps,
    })
}

/// The one source the plan's root steps read; a plan mixing git and registry roots is refused.
fn source_of(
    steps: &[PlanStep],
    raw: &[Spanned<RawStep>],
    cx: &Ctx,
) -> Result<SourceKind, PlanError> {
    let mut found: Option<(SourceKind, &str)> = None;
    for (step, raw) in steps.iter().zip(raw) {
        let Some(source) = step.kind.get().source() else {
            continue;
        };
        match found {
            Some((first, first_id)) if first != source => {
                let message = format!(
                    "step {:?} reads a {} source but step {first_id:?} reads {}: a plan serves one kind of runtime",
                    step.id,
                    source.name(),
                    first.name()
                );
                return Err(cx.err(raw.span(), message));
            }
            Some(_) => {}
            None => found = Some((source, &step.id)),
        }
    }
    Ok(found.map_or(SourceKind::Git, |(s, _)| s))
}

/// Steps no other step needs, in file order: O(steps + needs).
fn goals(steps: &[PlanStep]) -> Vec<usize> {
    let mut needed = vec![false; steps.len()];
    for &n in steps.iter().flat_map(|s| &s.needs) {
        needed[n] = true;
    }
    (0..steps.len()).filter(|&i| !needed[i]).collect()
}

/// A depth-first post-order over the steps in file order: every need before its dependents,
/// and file order itself when the file lists needs first. O(steps + needs), iterative (a
/// 20,000-step chain must not overflow the stack). `Err(i)`: step `i` is on a needs cycle.
fn dependency_order(steps: &[PlanStep]) -> Result<Vec<usize>, usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; steps.len()];
    let mut order = Vec::with_capacity(steps.len());
    // (step, how many of its needs have been looked at)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for start in 0..steps.len() {
        if mark[start] != Mark::New {
            continue;
        }
        mark[start] = Mark::Open;
        stack.push((start, 0));
        while let Some((step, next)) = stack.last_mut() {
            let Some(&need) = steps[*step].needs.get(*next) else {
                mark[*step] = Mark::Done;
                order.push(*step);
                stack.pop();
                continue;
            };
            *next += 1;
            match mark[need] {
                Mark::Done => {}
                Mark::Open => return Err(need),
                Mark::New => {
                    mark[need] = Mark::Open;
                    stack.push((need, 0));
                }
            }
        }
    }
    Ok(order)
}

fn index_ids(steps: &[Spanned<RawStep>], cx: &Ctx) -> Result<HashMap<String, usize>, PlanError> {
    let mut ids = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let id = &step.get_ref().id;
        if id.get_ref().is_empty() {
            return Err(cx.err(id.span(), "step id must not be empty".into()));
        }
        if ids.insert(id.get_ref().clone(), i).is_some() {
            return Err(cx.err(id.span(), format!("duplicate step id {:?}", id.get_ref())));
        }
    }
    Ok(ids)
}

fn validate_step(
    raw: &Spanned<RawStep>,
    ids: &HashMap<String, usize>,
    cx: &Ctx,
) -> Result<PlanStep, PlanError> {
    let step = raw.get_ref();
    let id = step.id.get_ref();
    let kind: StepKind = cx.kinds.find(step.kind.get_ref()).ok_or_else(|| {
        let known: Vec<_> = cx.kinds.all().iter().map(|k| k.name()).collect();
        let message = format!(
            "step {id:?}: unknown kind {:?}; built-in kinds: {}",
            step.kind.get_ref(),
            known.join(", ")
        );
        cx.err(step.kind.span(), message)
    })?;
    let mut needs = Vec::new();
    for need in &step.needs {
        let idx = ids.get(need.get_ref()).copied().ok_or_else(|| {
            let message = format!(
                "step {id:?} needs {:?}, which this plan does not declare",
                need.get_ref()
            );
            cx.err(need.span(), message)
        })?;
        needs.push(idx);
    }
    let mut params = BTreeMap::new();
    for (key, value) in &step.params {
        if !kind.params().contains(&key.get_ref().as_str()) {
            let message = format!(
                "step {id:?}: kind {kind} does not take parameter {:?} (accepted: {})",
                key.get_ref(),
                if kind.params().is_empty() {
                    "none".to_owned()
                } else {
                    kind.params().join(", ")
                }
            );
            return Err(cx.err(key.span(), message));
        }
        params.insert(key.get_ref().clone(), value.get_ref().clone());
    }
    Ok(PlanStep {
        id: id.clone(),
        kind,
        needs,
        params,
    })
}

/// Each kind consumes exactly one step of one of its input kinds (roots consume nothing).
fn check_inputs(steps: &[PlanStep], raw: &[Spanned<RawStep>], cx: &Ctx) -> Result<(), PlanError> {
    for (step, raw) in steps.iter().zip(raw) {
        let kinds = step.kind.input_kinds();
        let count = step
            .needs
            .iter()
            .filter(|&&n| kinds.contains(&steps[n].kind))
            .count();
        let ok = match kinds {
            [] => step.needs.is_empty(),
            _ => count == 1,
        };
        if !ok {
            let message = match kinds {
                [] => format!("step {:?}: kind {} takes no needs", step.id, step.kind),
                _ => {
                    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                    format!(
                        "step {:?}: kind {} needs exactly one step of kind {} (found {count})",
                        step.id,
                        step.kind,
                        names.join(" or ")
                    )
                }
            };
            return Err(cx.err(raw.span(), message));
        }
    }
    Ok(())
}
