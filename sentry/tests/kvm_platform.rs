//! The KVM platform on real /dev/kvm: ring 3 code traps into the sentry through the stub.

use std::sync::Arc;

use sentry::arch::UserRegs;
use sentry::platform::kvm::KvmPlatform;
use sentry::platform::{AddressSpace, Context, Fault, Perms, Platform, Trap};

const CODE: u64 = 0x40_0000;
const STACK: u64 = 0x7fff_0000;

fn guest(code: &[u8]) -> (KvmPlatform, Arc<dyn AddressSpace>, UserRegs) {
    let platform = KvmPlatform::new(64 << 20).expect("KVM platform (is /dev/kvm usable?)");
    let space = platform.new_address_space().expect("address space");
    let mem = platform.memory().clone();
    let frame = mem.alloc_frame().expect("frame");
    mem.write(frame, code);
    space.map(CODE, frame, Perms::RX).expect("map code");
    let stack = mem.alloc_frame().expect("frame");
    space
        .map(STACK - 0x1000, stack, Perms::RW)
        .expect("map stack");
    let regs = UserRegs {
        rip: CODE,
        rsp: STACK,
        ..Default::default()
    };
    (platform, space, regs)
}

#[test]
fn syscall_and_page_fault_reach_the_sentry() {
    let code = [
        0xb8, 0x27, 0, 0, 0, // mov $39, %eax
        0x0f, 0x05, // syscall
        0x48, 0x8b, 0x04, 0x25, 0x08, 0, 0, 0, // mov 0x8, %rax
        0x0f, 0x0b, // ud2
    ];
    let (platform, space, mut regs) = guest(&code);
    let mut ctx = platform.new_context().expect("vCPU");
    regs.rbx = 0x1234;
    let trap = ctx.switch(space.as_ref(), &mut regs).expect("run");
    assert_eq!(trap, Trap::Syscall);
    assert_eq!(regs.rax, 39);
    assert_eq!(regs.rbx, 0x1234);
    assert_eq!(regs.rip, CODE + 7);
    assert_eq!(regs.rsp, STACK);

    regs.rax = 42;
    let trap = ctx.switch(space.as_ref(), &mut regs).expect("run");
    match trap {
        Trap::Fault(f) => {
            assert_eq!(f.vector, Fault::PAGE_FAULT);
            assert_eq!(f.address, 8);
            assert!(!f.pf_present() && !f.pf_write());
        }
        other => panic!("expected a page fault, got {other:?}"),
    }
    assert_eq!(regs.rip, CODE + 7);
    assert_eq!(regs.rax, 42);

    regs.rip += 8;
    let trap = ctx.switch(space.as_ref(), &mut regs).expect("run");
    assert_eq!(
        trap,
        Trap::Fault(Fault {
            vector: Fault::INVALID_OPCODE,
            error_code: 0,
            address: 0
        })
    );
}

#[test]
fn unmapped_pages_become_stale_free_after_unmap() {
    // Read a page, unmap it and map another frame at the same address: the guest must
    // see the new frame (the TLB, or a shadow MMU, must not keep the old translation).
    let code = [
        0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x60, 0x00, // mov 0x600000, %rax
        0x0f, 0x05, // syscall
        0xeb, 0xf4, // jmp back to the load
    ];
    let (platform, space, mut regs) = guest(&code);
    let mem = platform.memory().clone();
    let a = mem.alloc_frame().expect("frame");
    let b = mem.alloc_frame().expect("frame");
    mem.write_u64(a, 0xaaaa);
    mem.write_u64(b, 0xbbbb);
    space.map(0x60_0000, a, Perms::R).expect("map");
    let mut ctx = platform.new_context().expect("vCPU");
    assert_eq!(
        ctx.switch(space.as_ref(), &mut regs).expect("run"),
        Trap::Syscall
    );
    assert_eq!(regs.rax, 0xaaaa);
    space.unmap(0x60_0000, 0x60_1000, &mut |_, _| {});
    space.map(0x60_0000, b, Perms::R).expect("map");
    assert_eq!(
        ctx.switch(space.as_ref(), &mut regs).expect("run"),
        Trap::Syscall
    );
    assert_eq!(regs.rax, 0xbbbb);
    // And a write to a read-only page is a protection fault.
    space.unmap(0x60_0000, 0x60_1000, &mut |_, _| {});
    assert!(
        matches!(ctx.switch(space.as_ref(), &mut regs).expect("run"), Trap::Fault(f) if f.address == 0x60_0000)
    );
}

#[test]
fn unmapped_frames_are_freed_only_after_the_guest_saw_the_unmap() {
    let code = [
        0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x60, 0x00, // mov 0x600000, %rax
        0x0f, 0x05, // syscall
        0xeb, 0xf4, // jmp back to the load
    ];
    let (platform, space, mut regs) = guest(&code);
    let mem = platform.memory().clone();
    let a = mem.alloc_frame().expect("frame");
    space.map(0x60_0000, a, Perms::R).expect("map");
    let mut ctx = platform.new_context().expect("vCPU");
    assert_eq!(
        ctx.switch(space.as_ref(), &mut regs).expect("run"),
        Trap::Syscall
    );
    let before = mem.frames_in_use();
    let mut frames = Vec::new();
    space.unmap(0x60_0000, 0x60_1000, &mut |_, f| frames.push(f));
    space.free_after_flush(frames);
    assert_eq!(
        mem.frames_in_use(),
        before,
        "not freed while a stale translation may exist"
    );
    // The next entry rewrites the entry from inside the guest, then frees the frame; the
    // guest's load now faults.
    let trap = ctx.switch(space.as_ref(), &mut regs).expect("run");
    assert!(
        matches!(trap, Trap::Fault(f) if f.address == 0x60_0000),
        "{trap:?}"
    );
    assert_eq!(mem.frames_in_use(), before - 1);
}

/// A kick that comes while the thread is out of the guest (after it last looked for work,
/// before `KVM_RUN`) makes the next switch return at once: the guest, spinning in ring 3
/// with nothing to trap on, never runs until some other exit.
#[test]
fn a_kick_before_the_switch_is_not_lost() {
    use sentry::platform::kick::{install_handler, Kicker};
    let code = [0xeb, 0xfe]; // jmp . (no trap, ever)
    let (platform, space, mut regs) = guest(&code);
    let mut ctx = platform.new_context().expect("vCPU");
    install_handler();
    ctx.arm_kicks();
    // Should the kick be lost, this one ends the spin so the test fails rather than hangs.
    let me = Kicker::current();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if std::time::Instant::now() >= until {
                    me.kick();
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    me.kick();
    let start = std::time::Instant::now();
    let trap = ctx.switch(space.as_ref(), &mut regs).expect("run");
    let took = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watchdog.join().expect("watchdog");
    assert_eq!(trap, Trap::Interrupted);
    assert!(
        took < std::time::Duration::from_secs(2),
        "the kick was lost: {took:?}"
    );
    assert_eq!(regs.rip, CODE, "the guest has not moved");
}
