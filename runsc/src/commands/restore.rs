//! `runsc restore --image-path DIR [--bundle B] [--detach] … ID`: `run`, with the
//! sandbox restored from a checkpoint image instead of starting the bundle's process.
//! The bundle gives the root file system and mounts (the same content the image was
//! taken over), the network namespace and the policy; the image gives the processes,
//! their memory and everything else. Established TCP connections do not survive.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::commands::run::{self, RunArgs};
use crate::commands::GlobalOpts;

#[derive(Args)]
pub struct RestoreArgs {
    /// The checkpoint image (written by `runsc checkpoint`).
    #[arg(long, value_name = "DIR")]
    image_path: PathBuf,
    /// What to do with the pages the image records its guest touching first after a
    /// restore (images from `runsc image build` with warm-up record them).
    #[arg(long, value_enum, default_value_t = WorkingSet::Prefault)]
    working_set: WorkingSet,
    #[command(flatten)]
    run: RunArgs,
}

/// `--working-set`: see `sentry::platform::kvm::WorkingSet`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum WorkingSet {
    /// Map them ahead of the guest, while the sandbox starts: a faster first request,
    /// for their size in private memory (a few MiB for a Node server).
    #[default]
    Prefault,
    /// Start a new record (the next checkpoint's image records what the guest touches
    /// from now on); `runsc image build` uses it.
    Record,
    /// Leave them: the guest faults every page in itself.
    Ignore,
}

impl WorkingSet {
    /// The word `runsc boot --working-set` takes.
    pub fn as_arg(self) -> &'static str {
        match self {
            WorkingSet::Prefault => "prefault",
            WorkingSet::Record => "record",
            WorkingSet::Ignore => "ignore",
        }
    }
}

impl From<WorkingSet> for sentry::platform::kvm::WorkingSet {
    fn from(w: WorkingSet) -> Self {
        match w {
            WorkingSet::Prefault => sentry::platform::kvm::WorkingSet::Prefault,
            WorkingSet::Record => sentry::platform::kvm::WorkingSet::Record,
            WorkingSet::Ignore => sentry::platform::kvm::WorkingSet::Ignore,
        }
    }
}

pub fn run(args: RestoreArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    run::run_from(args.run, global, Some((&args.image_path, args.working_set)))
}
