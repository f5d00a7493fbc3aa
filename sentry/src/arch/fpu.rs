//! The XSAVE image in a signal frame: Linux's software-reserved marker, validation of
//! an image a guest hands back on sigreturn, and the initial FPU state.

/// `fx_sw_reserved.magic1` (FP_XSTATE_MAGIC1) and the trailing FP_XSTATE_MAGIC2.
pub const MAGIC1: u32 = 0x4650_5853;
pub const MAGIC2: u32 = 0x4650_5845;
/// Offsets in the legacy area and the XSAVE header.
const SW_RESERVED: usize = 464;
const MXCSR: usize = 24;
const MXCSR_MASK: usize = 28;
const XSTATE_BV: usize = 512;
const XCOMP_BV: usize = 520;
const HEADER_END: usize = 576;

fn put32(img: &mut [u8], off: usize, v: u32) {
    img[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn get32(img: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&img[off..off + 4]);
    u32::from_le_bytes(b)
}
fn get64(img: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&img[off..off + 8]);
    u64::from_le_bytes(b)
}

/// Mark `img` (an XSAVE image of `img.len()` bytes) the way Linux marks the fpstate of a
/// signal frame, so readers know its size and features.
pub fn mark_for_frame(img: &mut [u8], xcr0: u64) {
    let size = img.len() as u32;
    put32(img, SW_RESERVED, MAGIC1);
    put32(img, SW_RESERVED + 4, size + 4); // extended_size, with MAGIC2
    img[SW_RESERVED + 8..SW_RESERVED + 16].copy_from_slice(&xcr0.to_le_bytes());
    put32(img, SW_RESERVED + 16, size); // xstate_size
}

/// Check an image a guest gave back before loading it; `None` means the frame is bad
/// (Linux answers with SIGSEGV).
pub fn validate(mut img: Vec<u8>, xcr0: u64) -> Option<Vec<u8>> {
    if img.len() < HEADER_END {
        return None;
    }
    let mask = match get32(&img, MXCSR_MASK) {
        0 => 0xffbf, // the default mask when the CPU reports none
        m => m,
    };
    if get32(&img, MXCSR) & !mask != 0 {
        return None;
    }
    if get64(&img, XSTATE_BV) & !xcr0 != 0 || get64(&img, XCOMP_BV) != 0 {
        return None;
    }
    if img[XCOMP_BV + 8..HEADER_END].iter().any(|b| *b != 0) {
        return None;
    }
    // The software-reserved bytes are ours, not the CPU's.
    img[SW_RESERVED..512].fill(0);
    Some(img)
}

/// The FPU state of a fresh thread (what Linux loads when a frame has no fpstate).
pub fn initial(size: usize) -> Vec<u8> {
    let mut img = vec![0u8; size.max(HEADER_END)];
    img[0..2].copy_from_slice(&0x37fu16.to_le_bytes()); // FCW
    put32(&mut img, MXCSR, 0x1f80);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_state_is_valid() {
        assert!(validate(initial(832), 0x7).is_some());
    }

    #[test]
    fn foreign_features_and_bad_mxcsr_are_refused() {
        let mut img = initial(832);
        img[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&0x100u64.to_le_bytes());
        assert!(validate(img, 0x7).is_none());
        let mut img = initial(832);
        put32(&mut img, MXCSR, 0xffff_0000);
        assert!(validate(img, 0x7).is_none());
        assert!(validate(vec![0; 100], 0x7).is_none());
    }

    #[test]
    fn marker_round_trips() {
        let mut img = initial(832);
        mark_for_frame(&mut img, 0x7);
        assert_eq!(get32(&img, SW_RESERVED), MAGIC1);
        let v = validate(img, 0x7).expect("valid");
        assert_eq!(get32(&v, SW_RESERVED), 0);
    }
}
