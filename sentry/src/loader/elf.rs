//! ELF64 x86-64 executables: validating the headers and mapping PT_LOAD segments, for
//! static, static-PIE and dynamic programs (PT_INTERP: the interpreter, ld.so, is loaded
//! beside the program and started first, as Linux's `load_elf_binary` does).

use std::sync::Arc;

use object::elf::{FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use crate::abi::Errno;
use crate::arch::{page_down, page_up, PAGE_SIZE, USER_ADDR_END};
use crate::mm::{AreaKind, Backing, MemoryManager, Vma, MMAP_BASE, MMAP_MIN_ADDR};
use crate::platform::Perms;
use crate::vfs::FileDescription;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
/// Where a position-independent executable is placed (Linux's `ELF_ET_DYN_BASE` on
/// x86-64 without ASLR).
const PIE_BASE: u64 = 0x5555_5555_4000;
/// Program headers we are willing to read (Linux caps the table at 64 KiB).
const MAX_PHNUM: usize = 65536 / 56;
/// Longest PT_INTERP string, NUL included (Linux: PATH_MAX).
const MAX_INTERP: u64 = 4096;
/// Linux's errno for an unusable interpreter ("Accessing a corrupted shared library").
const ELIBBAD: Errno = Errno::ELIBBAD;

type Phdr = ProgramHeader64<LittleEndian>;

/// Why a program could not be loaded. The message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not an ELF file (bad magic)")]
    NotElf,
    #[error("malformed ELF header: {0}")]
    BadHeader(&'static str),
    #[error("ELF machine {0} is not x86-64")]
    WrongMachine(u16),
    #[error("ELF type {0} is not an executable (ET_EXEC or ET_DYN)")]
    WrongType(u16),
    #[error("malformed ELF program headers: {0}")]
    BadProgramHeaders(&'static str),
    #[error("ELF file has no loadable segments")]
    NoLoadableSegments,
    #[error("malformed PT_INTERP: {0}")]
    BadInterpPath(&'static str),
    #[error("opening the ELF interpreter {path}")]
    InterpreterOpen {
        path: String,
        #[source]
        errno: Errno,
    },
    #[error("ELF interpreter {path}")]
    Interpreter {
        path: String,
        #[source]
        source: Box<LoadError>,
    },
    #[error("ELF type {0} is not a shared object (an interpreter must be ET_DYN)")]
    InterpreterNotShared(u16),
    #[error("the interpreter names an interpreter of its own ({0})")]
    NestedInterpreter(String),
    #[error("no room in the address space for the interpreter")]
    NoRoom,
    #[error("reading the executable: {0}")]
    Read(Errno),
    #[error("setting up the initial stack: {0}")]
    Stack(Errno),
    #[error(transparent)]
    Vdso(crate::vdso::VdsoError),
}

impl LoadError {
    /// The errno execve returns for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            LoadError::Read(e) | LoadError::Stack(e) => *e,
            LoadError::InterpreterOpen { errno, .. } => *errno,
            LoadError::NoRoom | LoadError::Vdso(_) => Errno::ENOMEM,
            LoadError::Interpreter { source, .. } => match source.as_ref() {
                LoadError::Read(e) => *e,
                LoadError::NoRoom => Errno::ENOMEM,
                // Linux: an interpreter that is not a usable ELF file is ELIBBAD.
                _ => ELIBBAD,
            },
            _ => Errno::ENOEXEC,
        }
    }
}

/// What the stack builder and the first registers need from the loaded image.
pub struct ElfInfo {
    /// Where the first instruction runs: the interpreter's entry, or the program's.
    pub start: u64,
    /// The program's own entry (AT_ENTRY).
    pub entry: u64,
    /// The program's headers in memory (AT_PHDR) and their count (AT_PHNUM).
    pub phdr: u64,
    pub phnum: u64,
    /// Where the interpreter was loaded (AT_BASE), 0 without one.
    pub interp_base: u64,
    /// PT_GNU_STACK asked for an executable stack.
    pub exec_stack: bool,
}

/// Opens a path named by the program (its interpreter) for execution.
pub type Opener<'a> = &'a dyn Fn(&[u8]) -> Result<Arc<dyn FileDescription>, Errno>;

fn read_exact_at(
    file: &dyn FileDescription,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, LoadError> {
    let mut done = 0;
    while done < buf.len() {
        let n = file
            .read(&mut buf[done..], Some(offset + done as u64))
            .map_err(LoadError::Read)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// A file-backed mapping source for an image the loader maps.
struct Image(Arc<dyn FileDescription>);

impl crate::mm::MappedFile for Image {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.0.read(&mut buf[done..], Some(offset + done as u64))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf[done..].fill(0);
        Ok(done)
    }
    fn identity(&self) -> (u64, u64) {
        self.0.stat().map(|s| (s.dev, s.ino)).unwrap_or((0, 0))
    }
    fn path(&self) -> String {
        self.0.path()
    }
    fn save(
        &self,
        cx: &mut crate::state::SaveContext,
    ) -> Result<crate::state::files::MappedFileState, crate::state::StateError> {
        Ok(crate::state::files::MappedFileState::Image {
            file: cx.file_id(&self.0)?,
        })
    }
}

/// The mapping source of an image the loader mapped, put back from a checkpoint over
/// its restored open file.
pub fn restored_image(file: Arc<dyn FileDescription>) -> Arc<dyn crate::mm::MappedFile> {
    Arc::new(Image(file))
}

/// A validated ELF file: its header fields and program headers.
struct ElfFile {
    file: Arc<dyn FileDescription>,
    kind: u16,
    entry: u64,
    phoff: u64,
    phdrs: Vec<Phdr>,
    size: u64,
}

/// Where an image ended up.
struct Placed {
    /// Its program headers in memory, if a segment or PT_PHDR covers them.
    phdr: Option<u64>,
    /// The end of its highest segment, page-aligned.
    end: u64,
}

impl ElfFile {
    /// Read and check the ELF header and program header table of `file`.
    fn parse(file: Arc<dyn FileDescription>) -> Result<ElfFile, LoadError> {
        let mut head = vec![0u8; 64];
        let n = read_exact_at(file.as_ref(), 0, &mut head)?;
        if n < 4 || head[..4] != *b"\x7fELF" {
            return Err(LoadError::NotElf);
        }
        if n < 64 {
            return Err(LoadError::BadHeader("file shorter than an ELF64 header"));
        }
        if head[4] != 2 {
            return Err(LoadError::BadHeader("not a 64-bit ELF (EI_CLASS)"));
        }
        if head[5] != 1 {
            return Err(LoadError::BadHeader("not little-endian (EI_DATA)"));
        }
        let hdr = FileHeader64::<LittleEndian>::parse(&head[..])
            .map_err(|_| LoadError::BadHeader("unreadable header"))?;
        let e = LittleEndian;
        let machine = hdr.e_machine(e).0;
        if machine != EM_X86_64 {
            return Err(LoadError::WrongMachine(machine));
        }
        let kind = hdr.e_type(e).0;
        if kind != ET_EXEC && kind != ET_DYN {
            return Err(LoadError::WrongType(kind));
        }
        if hdr.e_phentsize.get(e) as usize != std::mem::size_of::<Phdr>() {
            return Err(LoadError::BadProgramHeaders("e_phentsize is not 56"));
        }
        let phnum = hdr.e_phnum(e) as usize;
        if phnum == 0 || phnum > MAX_PHNUM {
            return Err(LoadError::BadProgramHeaders("e_phnum out of range"));
        }
        let phoff = hdr.e_phoff(e);
        let mut table = vec![0u8; phnum * std::mem::size_of::<Phdr>()];
        if read_exact_at(file.as_ref(), phoff, &mut table)? != table.len() {
            return Err(LoadError::BadProgramHeaders(
                "table extends past the end of the file",
            ));
        }
        let phdrs: &[Phdr] = object::pod::slice_from_all_bytes(&table)
            .map_err(|_| LoadError::BadProgramHeaders("misaligned table"))?;
        let size = file
            .stat()
            .map(|s| s.size.max(0) as u64)
            .map_err(LoadError::Read)?;
        Ok(ElfFile {
            kind,
            entry: hdr.e_entry(e),
            phoff,
            phdrs: phdrs.to_vec(),
            size,
            file,
        })
    }

    fn loads(&self) -> impl Iterator<Item = &Phdr> {
        self.phdrs
            .iter()
            .filter(|ph| ph.p_type(LittleEndian).0 == PT_LOAD)
    }

    /// The interpreter PT_INTERP names (the first one, as Linux takes), without its NUL.
    fn interpreter(&self) -> Result<Option<Vec<u8>>, LoadError> {
        let e = LittleEndian;
        let Some(ph) = self.phdrs.iter().find(|ph| ph.p_type(e).0 == PT_INTERP) else {
            return Ok(None);
        };
        let len = ph.p_filesz(e);
        // Linux: shorter than 2 bytes or longer than PATH_MAX is ENOEXEC.
        if !(2..=MAX_INTERP).contains(&len) {
            return Err(LoadError::BadInterpPath("length out of range"));
        }
        let mut name = vec![0u8; len as usize];
        if read_exact_at(self.file.as_ref(), ph.p_offset(e), &mut name)? != name.len() {
            return Err(LoadError::BadInterpPath("extends past the end of the file"));
        }
        if name.last() != Some(&0) {
            return Err(LoadError::BadInterpPath("not NUL-terminated"));
        }
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        name.truncate(end);
        Ok(Some(name))
    }

    /// Whether PT_GNU_STACK asks for an executable stack (x86-64: absent means not).
    fn exec_stack(&self) -> bool {
        let e = LittleEndian;
        self.phdrs
            .iter()
            .find(|ph| ph.p_type(e).0 == PT_GNU_STACK)
            .is_some_and(|ph| ph.p_flags(e).0 & PF_X != 0)
    }

    /// The page-aligned span `[lo, hi)` of the PT_LOAD segments (unbiased) and the
    /// largest power-of-two p_align among them (at least a page), as Linux's
    /// `total_mapping_size` and `maximum_alignment` compute them.
    fn span(&self) -> Result<(u64, u64, u64), LoadError> {
        let e = LittleEndian;
        let (mut lo, mut hi, mut align) = (u64::MAX, 0u64, PAGE_SIZE);
        for ph in self.loads() {
            let start = ph.p_vaddr(e);
            let end = start
                .checked_add(ph.p_memsz(e))
                .and_then(page_up)
                .ok_or(LoadError::BadProgramHeaders("segment address overflows"))?;
            lo = lo.min(page_down(start));
            hi = hi.max(end);
            let a = ph.p_align(e);
            if a.is_power_of_two() && a <= 1 << 30 {
                align = align.max(a);
            }
        }
        if hi == 0 {
            return Err(LoadError::NoLoadableSegments);
        }
        Ok((lo, hi, align))
    }

    /// Map every PT_LOAD segment at `bias` + p_vaddr.
    fn map(&self, mm: &MemoryManager, bias: u64) -> Result<Placed, LoadError> {
        let e = LittleEndian;
        let mut phdr = self
            .phdrs
            .iter()
            .find(|ph| ph.p_type(e).0 == PT_PHDR)
            .map(|ph| ph.p_vaddr(e).wrapping_add(bias));
        let mut top = 0u64;
        let image: Arc<dyn crate::mm::MappedFile> = Arc::new(Image(self.file.clone()));
        for ph in self.loads() {
            let (vaddr, off, filesz, memsz) =
                (ph.p_vaddr(e), ph.p_offset(e), ph.p_filesz(e), ph.p_memsz(e));
            if filesz > memsz {
                return Err(LoadError::BadProgramHeaders(
                    "segment p_filesz exceeds p_memsz",
                ));
            }
            if vaddr % PAGE_SIZE != off % PAGE_SIZE {
                return Err(LoadError::BadProgramHeaders(
                    "segment address and offset disagree modulo the page size",
                ));
            }
            if off.checked_add(filesz).is_none_or(|end| end > self.size) {
                return Err(LoadError::BadProgramHeaders(
                    "segment extends past the end of the file",
                ));
            }
            let start = vaddr
                .checked_add(bias)
                .ok_or(LoadError::BadProgramHeaders("segment address overflows"))?;
            let end = start
                .checked_add(memsz)
                .and_then(page_up)
                .filter(|end| *end <= USER_ADDR_END)
                .ok_or(LoadError::BadProgramHeaders(
                    "segment outside the user address space",
                ))?;
            if page_down(start) < MMAP_MIN_ADDR {
                return Err(LoadError::BadProgramHeaders(
                    "segment below the lowest mappable address",
                ));
            }
            let flags = ph.p_flags(e).0;
            let perms = Perms {
                read: flags & PF_R != 0,
                write: flags & PF_W != 0,
                exec: flags & PF_X != 0,
            };
            let file_end = page_up(start + filesz).unwrap_or(end).min(end);
            if filesz > 0 {
                mm.map_fixed(Vma {
                    start: page_down(start),
                    end: file_end,
                    perms,
                    shared: false,
                    backing: Backing::File {
                        file: image.clone(),
                        offset: page_down(off),
                    },
                    kind: AreaKind::Plain,
                });
                // The rest of the last file page belongs to .bss: it must read as zero.
                let tail = file_end - (start + filesz);
                if memsz > filesz && tail > 0 && perms.write {
                    mm.copy_out(start + filesz, &vec![0u8; tail as usize])
                        .map_err(LoadError::Read)?;
                }
            }
            if end > file_end {
                mm.map_fixed(Vma {
                    start: file_end.max(page_down(start)),
                    end,
                    perms,
                    shared: false,
                    backing: Backing::Anonymous,
                    kind: AreaKind::Plain,
                });
            }
            if phdr.is_none() && off <= self.phoff && self.phoff < off + filesz {
                phdr = Some(start + (self.phoff - off));
            }
            top = top.max(end);
        }
        if top == 0 {
            return Err(LoadError::NoLoadableSegments);
        }
        Ok(Placed { phdr, end: top })
    }
}

/// Validate `file` as an x86-64 executable and map it, and its interpreter if it names
/// one (opened with `open`), into `mm`.
pub fn load_elf(
    mm: &MemoryManager,
    file: Arc<dyn FileDescription>,
    open: Opener<'_>,
) -> Result<ElfInfo, LoadError> {
    let prog = ElfFile::parse(file)?;
    let interp_path = prog.interpreter()?;
    // Open and check the interpreter before anything is mapped.
    let interp = match &interp_path {
        None => None,
        Some(path) => {
            let shown = String::from_utf8_lossy(path).into_owned();
            let file = open(path).map_err(|errno| LoadError::InterpreterOpen {
                path: shown.clone(),
                errno,
            })?;
            let wrap = move |source| LoadError::Interpreter {
                path: shown.clone(),
                source: Box::new(source),
            };
            let elf = ElfFile::parse(file).map_err(&wrap)?;
            if elf.kind != ET_DYN {
                return Err(wrap(LoadError::InterpreterNotShared(elf.kind)));
            }
            if let Some(nested) = elf.interpreter().map_err(&wrap)? {
                let nested = String::from_utf8_lossy(&nested).into_owned();
                return Err(wrap(LoadError::NestedInterpreter(nested)));
            }
            Some((elf, wrap))
        }
    };

    let (lo, _, align) = prog.span()?;
    let bias = if prog.kind == ET_DYN {
        // Linux: ELF_ET_DYN_BASE, aligned down to the largest segment alignment, less
        // the first segment's address.
        page_down((PIE_BASE & !(align - 1)).wrapping_sub(lo))
    } else {
        0
    };
    let placed = prog.map(mm, bias)?;
    let entry = prog.entry.wrapping_add(bias);
    let (start, interp_base) = match interp {
        None => (entry, 0),
        Some((elf, wrap)) => {
            let (lo, hi, align) = elf.span().map_err(&wrap)?;
            let base = mm
                .unmapped_area(hi - lo, align, MMAP_BASE)
                .ok_or_else(|| wrap(LoadError::NoRoom))?;
            let bias = base.wrapping_sub(lo);
            elf.map(mm, bias).map_err(&wrap)?;
            (elf.entry.wrapping_add(bias), bias)
        }
    };
    // The heap starts after the program, never after its interpreter.
    mm.set_brk_start(placed.end);
    Ok(ElfInfo {
        start,
        entry,
        phdr: placed.phdr.unwrap_or(0),
        phnum: prog.phdrs.len() as u64,
        interp_base,
        exec_stack: prog.exec_stack(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_failures_map_to_linux_errnos() {
        let open = LoadError::InterpreterOpen {
            path: "/lib/ld.so".into(),
            errno: Errno::ENOENT,
        };
        assert_eq!(open.errno(), Errno::ENOENT);
        let bad = |source| LoadError::Interpreter {
            path: "/lib/ld.so".into(),
            source: Box::new(source),
        };
        assert_eq!(bad(LoadError::NotElf).errno(), ELIBBAD);
        assert_eq!(
            bad(LoadError::InterpreterNotShared(ET_EXEC)).errno(),
            ELIBBAD
        );
        assert_eq!(bad(LoadError::Read(Errno::EIO)).errno(), Errno::EIO);
        assert_eq!(bad(LoadError::NoRoom).errno(), Errno::ENOMEM);
        assert_eq!(LoadError::BadInterpPath("x").errno(), Errno::ENOEXEC);
    }
}
