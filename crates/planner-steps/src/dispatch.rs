//! The core's side-effect traits ([`World`], [`Effects`]) for [`RealWorld`]: each call handed
//! to the kind of the step it is about, found in the registry ([`crate::work`]). This module
//! sits above the kinds (it names the registry that lists them), so the kinds and the world
//! they run in never import the registry.

use planner_core::StepError;
use planner_core::exec::{Effects, RunRequest};
use planner_core::key::Key;
use planner_core::plan::{
    DiscoverRequest, Discovery, Node, Output, Probe, ProbeRequest, Resolved, World,
};
use planner_core::store;

use crate::work;
use crate::world::RealWorld;

impl World for RealWorld {
    async fn probe(&self, req: ProbeRequest<'_>) -> Result<Probe, StepError> {
        Ok(work(req.node.kind).probe(self, &req).await?)
    }

    async fn discover(&self, req: DiscoverRequest<'_>) -> Result<Discovery, StepError> {
        Ok(work(req.node.kind).discover(self, &req).await?)
    }
}

impl Effects for RealWorld {
    type Lock = Option<store::KeyLock>;

    async fn resolve(&self, node: &Node, key: &Key, offline: bool) -> Result<Resolved, StepError> {
        Ok(work(node.kind).resolve(self, node, key, offline).await?)
    }

    async fn lock(&self, key: &Key, on_wait: &(dyn Fn() + Sync)) -> Result<Self::Lock, StepError> {
        if self.read_only {
            return Ok(None);
        }
        if let Some(lock) = self.store.try_lock(key)? {
            return Ok(Some(lock));
        }
        on_wait();
        Ok(Some(self.store.lock(key).await?))
    }

    async fn run(&self, req: RunRequest<'_>) -> Result<Output, StepError> {
        Ok(work(req.node.kind).run(self, &req).await?)
    }
}
