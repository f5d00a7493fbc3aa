//! Address spaces across a checkpoint: the areas (what each range is and what backs
//! it), the heap, and the page-table root. The pages themselves, and the tables, are in
//! guest memory and so in the image.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::files::MappedFileState;
use super::registry::key_of;
use super::{RestoreContext, SaveContext, StateError};
use crate::mm::{AreaKind, Backing, MappedFile as _, MemoryManager, Vma};
use crate::platform::memory::Gpa;
use crate::platform::Perms;
use crate::vdso::image::{VdsoFile, VvarFile};

/// One address space.
#[derive(Serialize, Deserialize)]
pub struct MmState {
    /// The PML4 frame.
    pub root: Gpa,
    pub areas: Vec<AreaState>,
    pub brk_start: u64,
    pub brk: u64,
}

/// One area.
#[derive(Serialize, Deserialize)]
pub struct AreaState {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub shared: bool,
    pub backing: BackingState,
    pub kind: AreaKindState,
}

#[derive(Serialize, Deserialize)]
pub enum AreaKindState {
    Plain,
    Heap,
    Stack,
}

/// What backs an area.
#[derive(Serialize, Deserialize)]
pub enum BackingState {
    Anonymous,
    /// The sandbox's vvar page (the frame itself is in the image).
    Vvar,
    /// The vDSO image (the sentry's own: a restored sandbox gets this sentry's, which the
    /// version check makes the same).
    Vdso,
    File {
        file: MappedFileState,
        offset: u64,
    },
}

impl SaveContext {
    /// The id of address space `mm`, saved the first time it is met.
    pub fn mm_id(&mut self, mm: &Arc<MemoryManager>) -> Result<u32, StateError> {
        let key = key_of(mm);
        if let Some(id) = self.mms.get(key) {
            return Ok(id);
        }
        let id = self.mms.reserve(key);
        let (root, deferred) = mm.address_space().checkpoint();
        self.deferred_frames.extend(deferred);
        let (areas, brk_start, brk) = mm.checkpoint_parts();
        let areas = areas
            .into_iter()
            .map(|v| self.area(v))
            .collect::<Result<Vec<_>, _>>()?;
        self.mms.fill(
            id,
            MmState {
                root,
                areas,
                brk_start,
                brk,
            },
        );
        Ok(id)
    }

    fn area(&mut self, v: Vma) -> Result<AreaState, StateError> {
        let backing = match &v.backing {
            Backing::Anonymous => BackingState::Anonymous,
            Backing::File { file, offset } => {
                // The vDSO's "files" are the sentry's own; their paths are bracketed, which
                // no guest path is.
                let path = file.path();
                if path == VvarFile.path() {
                    BackingState::Vvar
                } else if path == VdsoFile.path() {
                    BackingState::Vdso
                } else {
                    BackingState::File {
                        file: self.mapped_file(file)?,
                        offset: *offset,
                    }
                }
            }
        };
        Ok(AreaState {
            start: v.start,
            end: v.end,
            perms: v.perms,
            shared: v.shared,
            backing,
            kind: match v.kind {
                AreaKind::Plain => AreaKindState::Plain,
                AreaKind::Heap => AreaKindState::Heap,
                AreaKind::Stack => AreaKindState::Stack,
            },
        })
    }
}

impl RestoreContext {
    /// Address space `id`, built the first time it is asked for.
    pub fn mm(&mut self, id: u32) -> Result<Arc<MemoryManager>, StateError> {
        if let Some(mm) = self.mms.built(id) {
            return Ok(mm);
        }
        let st = self.mms.take(id)?;
        let space = self
            .kernel
            .platform
            .restore_address_space(st.root)
            .map_err(|e| StateError::Platform(e.to_string()))?;
        let mut areas = Vec::with_capacity(st.areas.len());
        for a in st.areas {
            let backing = match a.backing {
                BackingState::Anonymous => Backing::Anonymous,
                BackingState::Vvar => Backing::File {
                    file: Arc::new(VvarFile),
                    offset: 0,
                },
                BackingState::Vdso => Backing::File {
                    file: Arc::new(VdsoFile),
                    offset: 0,
                },
                BackingState::File { file, offset } => Backing::File {
                    file: self.mapped_file(file)?,
                    offset,
                },
            };
            areas.push(Vma {
                start: a.start,
                end: a.end,
                perms: a.perms,
                shared: a.shared,
                backing,
                kind: match a.kind {
                    AreaKindState::Plain => AreaKind::Plain,
                    AreaKindState::Heap => AreaKind::Heap,
                    AreaKindState::Stack => AreaKind::Stack,
                },
            });
        }
        let mm = MemoryManager::restore(
            space,
            self.kernel.platform.memory(),
            areas,
            st.brk_start,
            st.brk,
        )
        .map_err(|what| StateError::invalid(format!("address space {id}: {what}")))?;
        let mm = Arc::new(mm);
        self.mms.put(id, mm.clone());
        Ok(mm)
    }
}
