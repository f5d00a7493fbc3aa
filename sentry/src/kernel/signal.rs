//! Signal dispositions, masks, the alternate stack, and delivery of synchronous fault
//! signals with a Linux x86-64 `rt_sigframe`.
//!
//! Frame layout (arch/x86/include/asm/sigframe.h): pretcode (the restorer) at 0, a
//! `ucontext` (uc_flags, uc_link, uc_stack, sigcontext, sigmask) at 8, a `siginfo` at 312.
//! The FPU state goes below the frame as an XSAVE image marked the way Linux marks it;
//! when the caller cannot provide one (a signal a thread sends itself from a syscall),
//! `fpstate` is NULL, which Linux defines as "reset the FPU on sigreturn".

use crate::abi::Errno;
use crate::arch::{fpu, UserRegs};
use crate::mm::MemoryManager;

pub const SIGHUP: u8 = 1;
pub const SIGILL: u8 = 4;
pub const SIGTRAP: u8 = 5;
pub const SIGABRT: u8 = 6;
pub const SIGBUS: u8 = 7;
pub const SIGFPE: u8 = 8;
pub const SIGKILL: u8 = 9;
pub const SIGSEGV: u8 = 11;
pub const SIGPIPE: u8 = 13;
pub const SIGCHLD: u8 = 17;
pub const SIGSTOP: u8 = 19;
pub const NSIG: usize = 64;

pub const SA_SIGINFO: u64 = 0x4;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;
pub const SA_RESTORER: u64 = 0x0400_0000;

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

pub const SS_ONSTACK: u32 = 1;
pub const SS_DISABLE: u32 = 2;

const FRAME_SIZE: u64 = 440;
const UC_OFFSET: u64 = 8;
const MCONTEXT_OFFSET: u64 = UC_OFFSET + 40;
const SIGMASK_OFFSET: u64 = UC_OFFSET + 296;
const SIGINFO_OFFSET: u64 = 312;
const RED_ZONE: u64 = 128;

/// One signal's disposition (`struct sigaction` as the kernel sees it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// The alternate signal stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AltStack {
    pub sp: u64,
    pub flags: u32,
    pub size: u64,
}

impl Default for AltStack {
    fn default() -> Self {
        AltStack {
            sp: 0,
            flags: SS_DISABLE,
            size: 0,
        }
    }
}

/// Dispositions, shared by the threads of a group (CLONE_SIGHAND).
pub type Actions = std::sync::Arc<std::sync::Mutex<[SigAction; NSIG]>>;

/// A thread's signal state.
#[derive(Clone, Debug)]
pub struct SignalState {
    pub actions: Actions,
    pub mask: u64,
    pub altstack: AltStack,
    /// The mask to restore after a handler that interrupted rt_sigsuspend.
    pub saved_mask: Option<u64>,
}

impl Default for SignalState {
    fn default() -> Self {
        SignalState {
            actions: std::sync::Arc::new(std::sync::Mutex::new([SigAction::default(); NSIG])),
            mask: 0,
            altstack: AltStack::default(),
            saved_mask: None,
        }
    }
}

/// Signals whose default action is to do nothing.
pub fn ignored_by_default(sig: u8) -> bool {
    matches!(sig, SIGCHLD | SIGCONT | SIGURG | SIGWINCH)
}

pub const SIGCONT: u8 = 18;
pub const SIGURG: u8 = 23;
pub const SIGWINCH: u8 = 28;

/// The conventional name of a signal, for reports.
pub fn name(sig: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(sig as usize).copied().unwrap_or("SIGRT")
}

/// The bit of signal `sig` in a mask.
pub fn sigbit(sig: u8) -> u64 {
    1u64 << (sig - 1)
}

/// Signals that can never be blocked or caught.
pub const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

/// A signal being delivered: its siginfo and, for a synchronous fault, what the CPU
/// reported (sigcontext.trapno/err/cr2; zero otherwise).
#[derive(Clone, Debug)]
pub struct FaultInfo {
    pub signo: u8,
    pub code: i32,
    /// A fault's si_addr.
    pub addr: u64,
    pub trapno: u64,
    pub error: u64,
    pub cr2: u64,
    /// The whole siginfo of a signal that was sent (kill, SIGCHLD, a timer): written
    /// as is instead of signo/code/addr.
    pub sent: Option<super::sigqueue::SigInfo>,
}

impl FaultInfo {
    /// A sent signal's delivery (no CPU state).
    pub fn sent(info: super::sigqueue::SigInfo) -> FaultInfo {
        FaultInfo {
            signo: info.signo(),
            code: info.code(),
            addr: 0,
            trapno: 0,
            error: 0,
            cr2: 0,
            sent: Some(info),
        }
    }
}

/// What happened to a signal.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A handler frame was set up; the thread continues in the handler.
    Handler,
    /// The signal is ignored (SIG_IGN, or a default action that ignores).
    Ignored,
    /// The signal kills the process.
    Fatal(u8),
}

impl SignalState {
    fn on_altstack(&self, sp: u64) -> bool {
        self.altstack.flags & SS_DISABLE == 0
            && sp > self.altstack.sp
            && sp <= self.altstack.sp + self.altstack.size
    }

    /// sigaltstack's `ss_flags` as reported to the guest.
    pub fn altstack_flags(&self, sp: u64) -> u32 {
        if self.altstack.flags & SS_DISABLE != 0 {
            SS_DISABLE
        } else if self.on_altstack(sp) {
            SS_ONSTACK
        } else {
            0
        }
    }

    /// Deliver a synchronous fault signal: a handler frame if one is installed and the
    /// signal is not blocked, otherwise the default action (terminate), as Linux's
    /// `force_sig_fault` does. `fpu` fetches the thread's XSAVE image and XCR0 if the
    /// frame is built.
    pub fn deliver_fault(
        &mut self,
        mm: &MemoryManager,
        regs: &mut UserRegs,
        info: FaultInfo,
        fpu: &mut dyn FnMut() -> Option<(Vec<u8>, u64)>,
    ) -> Delivery {
        self.deliver(mm, regs, info, true, fpu)
    }

    /// The disposition of `sig` right now.
    pub fn action(&self, sig: u8) -> SigAction {
        self.actions
            .lock()
            .map(|a| a[(sig - 1) as usize])
            .unwrap_or_default()
    }

    /// Deliver a signal the thread does not block (or, when `forced`, a synchronous
    /// fault, which kills even if blocked or ignored).
    pub fn deliver(
        &mut self,
        mm: &MemoryManager,
        regs: &mut UserRegs,
        info: FaultInfo,
        forced: bool,
        fpu: &mut dyn FnMut() -> Option<(Vec<u8>, u64)>,
    ) -> Delivery {
        let idx = (info.signo - 1) as usize;
        let action = self.action(info.signo);
        let blocked = self.mask & sigbit(info.signo) != 0;
        if forced && (blocked || action.handler == SIG_IGN) {
            return Delivery::Fatal(info.signo);
        }
        if action.handler == SIG_IGN
            || (action.handler == SIG_DFL && ignored_by_default(info.signo))
        {
            return Delivery::Ignored;
        }
        if action.handler == SIG_DFL {
            return Delivery::Fatal(info.signo);
        }
        match self.push_frame(mm, regs, &action, &info, fpu()) {
            Ok(()) => {
                self.saved_mask = None;
                if action.flags & SA_RESETHAND != 0 {
                    if let Ok(mut a) = self.actions.lock() {
                        a[idx] = SigAction::default();
                    }
                }
                self.mask |= action.mask & !UNBLOCKABLE;
                if action.flags & SA_NODEFER == 0 {
                    self.mask |= sigbit(info.signo);
                }
                Delivery::Handler
            }
            // The frame could not be written: Linux kills with SIGSEGV.
            Err(_) => Delivery::Fatal(SIGSEGV),
        }
    }

    fn push_frame(
        &self,
        mm: &MemoryManager,
        regs: &mut UserRegs,
        action: &SigAction,
        info: &FaultInfo,
        fpu_image: Option<(Vec<u8>, u64)>,
    ) -> Result<(), Errno> {
        let mut sp = regs.rsp;
        if action.flags & SA_ONSTACK != 0
            && self.altstack.flags & SS_DISABLE == 0
            && !self.on_altstack(sp)
        {
            sp = self.altstack.sp + self.altstack.size;
        } else {
            sp = sp.wrapping_sub(RED_ZONE);
        }
        let mut fpstate = 0;
        if let Some((mut img, xcr0)) = fpu_image {
            fpu::mark_for_frame(&mut img, xcr0);
            img.extend_from_slice(&fpu::MAGIC2.to_le_bytes());
            // XSAVE images are 64-byte aligned.
            sp = sp.wrapping_sub(img.len() as u64) & !63;
            mm.copy_out(sp, &img)?;
            fpstate = sp;
        }
        // At handler entry, (rsp + 8) is 16-byte aligned, as after a `call`.
        let frame = ((sp.wrapping_sub(FRAME_SIZE)) & !15).wrapping_sub(8);
        let mut f = vec![0u8; FRAME_SIZE as usize];
        let mut put =
            |off: u64, v: u64| f[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
        put(0, action.restorer);
        // ucontext: uc_flags, uc_link, uc_stack.
        // uc_flags: UC_FP_XSTATE when an XSAVE image follows, UC_SIGCONTEXT_SS.
        put(UC_OFFSET, if fpstate != 0 { 0x3 } else { 0x2 });
        put(UC_OFFSET + 8, 0);
        put(UC_OFFSET + 16, self.altstack.sp);
        put(UC_OFFSET + 24, self.altstack_flags(regs.rsp) as u64);
        put(UC_OFFSET + 32, self.altstack.size);
        let m = MCONTEXT_OFFSET;
        for (i, v) in [
            regs.r8,
            regs.r9,
            regs.r10,
            regs.r11,
            regs.r12,
            regs.r13,
            regs.r14,
            regs.r15,
            regs.rdi,
            regs.rsi,
            regs.rbp,
            regs.rbx,
            regs.rdx,
            regs.rax,
            regs.rcx,
            regs.rsp,
            regs.rip,
            regs.rflags,
        ]
        .into_iter()
        .enumerate()
        {
            put(m + 8 * i as u64, v);
        }
        // cs, gs, fs, ss as four u16.
        put(m + 144, 0x33 | (0x2b << 48));
        put(m + 152, info.error);
        put(m + 160, info.trapno);
        let frame_mask = self.saved_mask.unwrap_or(self.mask);
        put(m + 168, frame_mask);
        put(m + 176, info.cr2);
        put(m + 184, fpstate);
        put(SIGMASK_OFFSET, frame_mask);
        let si = SIGINFO_OFFSET as usize;
        if let Some(sent) = &info.sent {
            f[si..si + sent.0.len()].copy_from_slice(&sent.0);
        } else {
            // A fault: signo, errno, code, then si_addr at 16.
            f[si..si + 4].copy_from_slice(&(info.signo as i32).to_le_bytes());
            f[si + 8..si + 12].copy_from_slice(&info.code.to_le_bytes());
            f[si + 16..si + 24].copy_from_slice(&info.addr.to_le_bytes());
        }
        mm.copy_out(frame, &f)?;

        regs.rsp = frame;
        regs.rip = action.handler;
        regs.rdi = info.signo as u64;
        regs.rsi = frame + SIGINFO_OFFSET;
        regs.rdx = frame + UC_OFFSET;
        regs.rax = 0;
        // Linux clears DF, TF and RF for the handler.
        regs.rflags &= !(0x400 | 0x100 | 0x1_0000);
        Ok(())
    }

    /// rt_sigreturn: restore registers and mask from the frame whose ucontext is at
    /// `rsp` (the restorer runs with the frame's pretcode popped). Returns the FPU image
    /// to load: the frame's (validated), or the initial state when it has none.
    pub fn sigreturn(
        &mut self,
        mm: &MemoryManager,
        regs: &mut UserRegs,
        fpu_size: usize,
        xcr0: u64,
    ) -> Result<Vec<u8>, Errno> {
        let uc = regs.rsp;
        let frame = uc.checked_sub(UC_OFFSET).ok_or(Errno::EFAULT)?;
        let mut f = vec![0u8; FRAME_SIZE as usize];
        mm.copy_in(frame, &mut f)?;
        let get = |off: u64| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&f[off as usize..off as usize + 8]);
            u64::from_le_bytes(b)
        };
        let m = MCONTEXT_OFFSET;
        let mut r = *regs;
        let fields: [&mut u64; 18] = [
            &mut r.r8,
            &mut r.r9,
            &mut r.r10,
            &mut r.r11,
            &mut r.r12,
            &mut r.r13,
            &mut r.r14,
            &mut r.r15,
            &mut r.rdi,
            &mut r.rsi,
            &mut r.rbp,
            &mut r.rbx,
            &mut r.rdx,
            &mut r.rax,
            &mut r.rcx,
            &mut r.rsp,
            &mut r.rip,
            &mut r.rflags,
        ];
        for (i, field) in fields.into_iter().enumerate() {
            *field = get(m + 8 * i as u64);
        }
        let fpstate = get(m + 184);
        let image = if fpstate == 0 {
            fpu::initial(fpu_size)
        } else {
            let mut img = vec![0u8; fpu_size];
            mm.copy_in(fpstate, &mut img)?;
            fpu::validate(img, xcr0).ok_or(Errno::EFAULT)?
        };
        // The guest may only change its own flags; `sanitized_rflags` applies on entry.
        *regs = r;
        self.mask = get(SIGMASK_OFFSET) & !UNBLOCKABLE;
        Ok(image)
    }
}
