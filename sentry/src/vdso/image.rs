//! The vDSO image built from `vdso.c` by `build.rs`, and the two special mappings that
//! carry it into a guest: `[vdso]` (the image) and `[vvar]` (the page the sentry writes).

use crate::abi::Errno;
use crate::arch::PAGE_SIZE;
use crate::mm::MappedFile;

#[repr(C, align(4096))]
struct PageAligned<T: ?Sized>(T);

static IMAGE: &PageAligned<[u8]> =
    &PageAligned(*include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so")));

/// The vDSO's bytes. Its one PT_LOAD starts at file offset 0 and virtual address 0, so
/// the file is mapped as it is (checked by the tests below).
pub fn bytes() -> &'static [u8] {
    &IMAGE.0
}

/// Bytes the image occupies once mapped, whole pages.
pub fn mapped_len() -> u64 {
    (bytes().len() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// The `[vdso]` mapping: read from the embedded image.
pub struct VdsoFile;

impl MappedFile for VdsoFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let image = bytes();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(image.len());
        let n = buf.len().min(image.len() - start);
        buf[..n].copy_from_slice(&image[start..start + n]);
        buf[n..].fill(0);
        // The tail of the last page reads as zeros, like a file's.
        Ok(if n == 0 && offset < mapped_len() {
            buf.len()
        } else {
            n
        })
    }
    fn identity(&self) -> (u64, u64) {
        (0, 0)
    }
    fn path(&self) -> String {
        "[vdso]".into()
    }
}

/// The `[vvar]` mapping. Its one page is the sentry's shared vvar frame, mapped when the
/// area is made; this "file" is only read if the guest threw that page away (say with
/// MADV_DONTNEED): a page of zeros, which the vDSO reads as "ask the sentry".
pub struct VvarFile;

impl MappedFile for VvarFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        buf.fill(0);
        Ok(if offset < PAGE_SIZE { buf.len() } else { 0 })
    }
    fn identity(&self) -> (u64, u64) {
        (0, 0)
    }
    fn path(&self) -> String {
        "[vvar]".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf;
    use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader, Sym};
    use object::{LittleEndian as LE, Object, ObjectSection};

    const EXPORTS: [&str; 5] = [
        "__vdso_clock_gettime",
        "__vdso_gettimeofday",
        "__vdso_time",
        "__vdso_getcpu",
        "__vdso_clock_getres",
    ];

    fn parse() -> ElfFile64<'static, LE> {
        ElfFile64::parse(bytes()).expect("the vDSO is an ELF64 file")
    }

    #[test]
    fn one_read_execute_segment_mapped_as_the_file() {
        let file = parse();
        let hdr = file.elf_header();
        assert_eq!(hdr.e_type(LE), elf::ET_DYN);
        assert_eq!(hdr.e_machine(LE), elf::EM_X86_64);
        let phdrs = hdr.program_headers(LE, bytes()).expect("program headers");
        let loads: Vec<_> = phdrs
            .iter()
            .filter(|p| p.p_type(LE) == elf::PT_LOAD)
            .collect();
        assert_eq!(loads.len(), 1);
        let load = loads[0];
        assert_eq!((load.p_offset(LE), load.p_vaddr(LE)), (0, 0));
        assert_eq!(load.p_flags(LE), elf::PF_R | elf::PF_X);
        assert_eq!(load.p_filesz(LE), load.p_memsz(LE));
        assert!(load.p_memsz(LE) <= mapped_len());
        assert!(phdrs.iter().any(|p| p.p_type(LE) == elf::PT_DYNAMIC));
    }

    #[test]
    fn nothing_to_relocate_and_no_data() {
        let file = parse();
        for section in file.sections() {
            let name = section.name().unwrap_or("");
            assert!(
                !name.starts_with(".rela") && !name.starts_with(".rel."),
                "relocations in the vDSO: {name}"
            );
            assert!(
                !matches!(name, ".data" | ".bss" | ".got" | ".got.plt" | ".plt"),
                "{name} in the vDSO"
            );
        }
    }

    #[test]
    fn dynamic_section_has_what_glibc_needs() {
        let file = parse();
        let data = bytes();
        let phdrs = file
            .elf_header()
            .program_headers(LE, data)
            .expect("program headers");
        let dynamic = phdrs
            .iter()
            .find_map(|p| p.dynamic(LE, data).ok().flatten())
            .expect("PT_DYNAMIC");
        let tags: Vec<elf::DynamicTag> = dynamic
            .iter()
            .map(|d| d.d_tag(LE))
            .take_while(|t| *t != elf::DT_NULL)
            .collect();
        for tag in [
            elf::DT_SONAME,
            elf::DT_HASH,
            elf::DT_GNU_HASH,
            elf::DT_STRTAB,
            elf::DT_SYMTAB,
            elf::DT_VERSYM,
            elf::DT_VERDEF,
        ] {
            assert!(tags.contains(&tag), "dynamic tag {tag:?} missing");
        }
    }

    #[test]
    fn exports_every_function_as_linux_2_6() {
        let file = parse();
        let data = bytes();
        let sections = file.elf_header().sections(LE, data).expect("section table");
        let symbols = sections
            .symbols(LE, data, elf::SHT_DYNSYM)
            .expect("dynamic symbols");
        let versions = sections
            .versions(LE, data)
            .expect("version sections")
            .expect("symbol versions present");
        for name in EXPORTS {
            let (index, sym) = symbols
                .iter()
                .enumerate()
                .find(|(_, s)| s.name(LE, symbols.strings()) == Ok(name.as_bytes()))
                .unwrap_or_else(|| panic!("{name} is not exported"));
            assert_eq!(sym.st_type(), elf::STT_FUNC, "{name}");
            assert_eq!(sym.st_bind(), elf::STB_GLOBAL, "{name}");
            assert_ne!(sym.st_value(LE), 0, "{name}");
            let version = versions.version_index(LE, object::SymbolIndex(index));
            let version = versions
                .version(version.index())
                .expect("version index")
                .expect("a version");
            assert_eq!(version.name(), b"LINUX_2.6", "{name}");
        }
    }

    #[test]
    fn vdso_file_pads_the_last_page_with_zeros() {
        let mut page = vec![0xffu8; PAGE_SIZE as usize];
        let n = VdsoFile.read_at(0, &mut page).expect("read");
        assert_eq!(&page[..4], b"\x7fELF");
        assert!(n > 0);
        assert!(page[bytes().len().min(page.len())..]
            .iter()
            .all(|b| *b == 0));
        let past = VdsoFile.read_at(mapped_len(), &mut page).expect("read");
        assert_eq!(past, 0);
        assert_eq!(VvarFile.read_at(0, &mut page), Ok(page.len()));
    }
}
