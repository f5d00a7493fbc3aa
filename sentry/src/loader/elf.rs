//! ELF64 x86-64 executables: validating the headers and mapping PT_LOAD segments.
//! Static and static-PIE programs are loaded; a PT_INTERP (dynamic) program is refused
//! with a clear error until the dynamic loader path lands.

use std::sync::Arc;

use object::elf::{FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use crate::abi::Errno;
use crate::arch::{page_down, page_up, PAGE_SIZE, USER_ADDR_END};
use crate::mm::{AreaKind, Backing, MemoryManager, Vma, MMAP_MIN_ADDR};
use crate::platform::Perms;
use crate::vfs::FileDescription;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
/// Where a position-independent executable is placed (Linux's base without ASLR).
const PIE_BASE: u64 = 0x5555_5555_4000;
/// Program headers we are willing to read (Linux caps the table at 64 KiB).
const MAX_PHNUM: usize = 65536 / 56;

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
    #[error("dynamically linked program (interpreter {0}) is not supported yet")]
    Dynamic(String),
    #[error("reading the executable: {0}")]
    Read(Errno),
    #[error("setting up the initial stack: {0}")]
    Stack(Errno),
}

impl LoadError {
    /// The errno execve returns for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            LoadError::Read(e) | LoadError::Stack(e) => *e,
            LoadError::Dynamic(_) => Errno::ENOEXEC,
            _ => Errno::ENOEXEC,
        }
    }
}

/// What the stack builder needs from the loaded image.
pub struct ElfInfo {
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
}

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

/// A file-backed mapping source for the executable.
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
}

/// Validate `file` as an x86-64 executable and map its segments into `mm`.
pub fn load_elf(mm: &MemoryManager, file: Arc<dyn FileDescription>) -> Result<ElfInfo, LoadError> {
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
    if hdr.e_phentsize.get(e) as usize != std::mem::size_of::<ProgramHeader64<LittleEndian>>() {
        return Err(LoadError::BadProgramHeaders("e_phentsize is not 56"));
    }
    let phnum = hdr.e_phnum(e) as usize;
    if phnum == 0 || phnum > MAX_PHNUM {
        return Err(LoadError::BadProgramHeaders("e_phnum out of range"));
    }
    let phoff = hdr.e_phoff(e);
    let mut table = vec![0u8; phnum * 56];
    if read_exact_at(file.as_ref(), phoff, &mut table)? != table.len() {
        return Err(LoadError::BadProgramHeaders(
            "table extends past the end of the file",
        ));
    }
    let phdrs: &[ProgramHeader64<LittleEndian>] = object::pod::slice_from_all_bytes(&table)
        .map_err(|_| LoadError::BadProgramHeaders("misaligned table"))?;

    let file_size = file
        .stat()
        .map(|s| s.size.max(0) as u64)
        .map_err(LoadError::Read)?;
    let bias = if kind == ET_DYN { PIE_BASE } else { 0 };
    let mut phdr_addr = None;
    let mut loads = 0;
    let mut brk = 0u64;
    let image: Arc<dyn crate::mm::MappedFile> = Arc::new(Image(file.clone()));
    for ph in phdrs {
        match ph.p_type(e).0 {
            PT_INTERP => {
                let len = (ph.p_filesz(e) as usize).min(4096);
                let mut name = vec![0u8; len];
                read_exact_at(file.as_ref(), ph.p_offset(e), &mut name)?;
                let name = String::from_utf8_lossy(name.split(|b| *b == 0).next().unwrap_or(&[]))
                    .into_owned();
                return Err(LoadError::Dynamic(name));
            }
            PT_PHDR => phdr_addr = Some(ph.p_vaddr(e).wrapping_add(bias)),
            _ => {}
        }
    }
    for ph in phdrs.iter().filter(|ph| ph.p_type(e).0 == PT_LOAD) {
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
        if off.checked_add(filesz).is_none_or(|end| end > file_size) {
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
        if phdr_addr.is_none() && off <= phoff && phoff < off + filesz {
            phdr_addr = Some(start + (phoff - off));
        }
        brk = brk.max(end);
        loads += 1;
    }
    if loads == 0 {
        return Err(LoadError::NoLoadableSegments);
    }
    mm.set_brk_start(brk);
    Ok(ElfInfo {
        entry: hdr.e_entry(e).wrapping_add(bias),
        phdr: phdr_addr.unwrap_or(0),
        phnum: phnum as u64,
    })
}
