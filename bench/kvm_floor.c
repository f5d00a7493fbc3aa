/* kvm_floor: what one trip from guest ring 3 to this VMM and back costs on this /dev/kvm,
 * by each way there is, in a bare VM (one 2 MiB page, a GDT, a TSS with an I/O bitmap, an
 * IDT): the floor under Nanovisor's syscall cost (issue 2), measured beside it.
 *
 *   ring3 out          an `out` from ring 3 (allowed by the TSS bitmap): the cheapest exit
 *   syscall->LSTAR     what Nanovisor does: `syscall`, and an `out` in the LSTAR handler
 *                      (which kvm_pvm runs at ring 3), back by jumping to rcx
 *   syscall->ud2->#UD  the same, the handler raising #UD to reach ring 0 before its `out`
 *   int $0x80, ud2     a software interrupt or an exception straight from ring 3
 *   syscall SCE=0      `syscall` with EFER.SCE clear (kvm_pvm still takes the LSTAR path)
 *
 * Each line: min and median ns per trip (KVM_RUN to KVM_RUN), and the privilege level KVM
 * reports for the exit. Usage: kvm_floor [ITERATIONS=300] [REPS=5]. Build:
 * gcc -O2 -o kvm_floor bench/kvm_floor.c. Not a test: it prints figures. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
static inline double now_ns(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static int cmpd(const void*a,const void*b){double x=*(const double*)a,y=*(const double*)b;return x<y?-1:x>y;}
/* prints: name min median (ns/op) over reps */
static void report(const char*name,double*v,int reps){
  qsort(v,reps,sizeof(double),cmpd);
  printf("%-28s min %9.1f ns  median %9.1f ns  (reps=%d)\n",name,v[0],v[reps/2],reps);
  fflush(stdout);
}
static long argl(int argc,char**argv,int i,long d){return argc>i?atol(argv[i]):d;}
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
extern const unsigned char g_start[], g_end[], u_out[], u_sys[], u_int80[], u_ud2[],
  l_out_jmp[], l_ud2[], h_ud_from_lstar[], h_int80[], h_ud_skip[], h_default[];
__asm__(".pushsection .rodata\n.code64\n"
 ".globl g_start\ng_start:\n"
 /* ring 0: iretq to ring 3 at %r13 */
 "  mov %rsp, %r8\n  push $0x23\n  push %r8\n  push $0x3002\n  push $0x2b\n  push %r13\n  iretq\n"
 ".globl u_out\n.p2align 4\nu_out:\n  out %al,(%dx)\n  jmp u_out\n"
 ".globl u_sys\n.p2align 4\nu_sys:\n  syscall\n  jmp u_sys\n"
 ".globl u_int80\n.p2align 4\nu_int80:\n  int $0x80\n  jmp u_int80\n"
 ".globl u_ud2\n.p2align 4\nu_ud2:\n  ud2\n  jmp u_ud2\n"
 /* LSTAR handlers */
 ".globl l_out_jmp\n.p2align 4\nl_out_jmp:\n  out %al,(%dx)\n  jmp *%rcx\n"
 ".globl l_ud2\n.p2align 4\nl_ud2:\n  ud2\n"
 /* IDT handlers (ring 0) */
 ".globl h_ud_from_lstar\n.p2align 4\nh_ud_from_lstar:\n  out %al,(%dx)\n  mov %rcx,(%rsp)\n  movq $0x2b,8(%rsp)\n  movq $0x23,32(%rsp)\n  iretq\n"
 ".globl h_int80\n.p2align 4\nh_int80:\n  out %al,(%dx)\n  iretq\n"
 ".globl h_ud_skip\n.p2align 4\nh_ud_skip:\n  out %al,(%dx)\n  addq $2,(%rsp)\n  iretq\n"
 ".globl h_default\n.p2align 4\nh_default:\n" ".rept 32\n  mov $(.-h_default)/16,%al\n  jmp 9f\n .p2align 4\n.endr\n" "9: mov 8(%rsp),%rbx\n  mov (%rsp),%rcx\n  mov $0x3fa,%dx\n  out %al,(%dx)\n  hlt\n"
 ".globl g_end\ng_end:\n.popsection\n");
static int kvm,vm,vcpu; static struct kvm_run*run; static unsigned char*mem;
static void die(const char*s){perror(s);exit(1);}
#define MEMSZ 0x200000
#define BASE 0x10000
#define A(sym) (BASE+((sym)-g_start))
static struct kvm_sregs s0;
static void gate(int v,uint64_t off,int dpl){
  uint64_t*e=(uint64_t*)(mem+0x5000+16*v);
  e[0]=(off&0xffff)|(0x08ULL<<16)|((uint64_t)(0x8E|(dpl<<5))<<40)|((off>>16&0xffff)<<48);
  e[1]=off>>32;
}
static void setup(const unsigned char*user,const unsigned char*lstar,const unsigned char*ud,int sce){
  for(int v=0;v<256;v++)gate(v,A(h_default)+16*(v<32?v:31),0);
  gate(6,A(ud),0); gate(0x80,A(h_int80),3);
  struct kvm_sregs s=s0; if(!sce)s.efer&=~1ULL;
  if(ioctl(vcpu,KVM_SET_SREGS,&s))die("SET_SREGS");
  struct {struct kvm_msrs h; struct kvm_msr_entry e[3];} m={0};
  m.h.nmsrs=3;
  m.e[0].index=0xC0000081; m.e[0].data=(0x18ULL<<48)|(0x08ULL<<32);
  m.e[1].index=0xC0000082; m.e[1].data=A(lstar);
  m.e[2].index=0xC0000084; m.e[2].data=0x700;
  if(ioctl(vcpu,KVM_SET_MSRS,&m)!=3)die("SET_MSRS");
  struct kvm_regs g={0}; g.rip=A(g_start); g.rflags=2; g.rdx=0x3f8; g.rsp=0x1f0000; g.r13=A(user);
  if(ioctl(vcpu,KVM_SET_REGS,&g))die("SET_REGS");
}
static int run_once(const char*what){
  if(ioctl(vcpu,KVM_RUN,0))die("KVM_RUN");
  if(run->exit_reason!=KVM_EXIT_IO||run->io.port!=0x3f8){
    struct kvm_regs e; ioctl(vcpu,KVM_GET_REGS,&e); struct kvm_sregs es; ioctl(vcpu,KVM_GET_SREGS,&es);
    printf("%s: FAILED rbx=%llx rcx=%llx vec=%d exit_reason=%d port=%x rip=%llx cs=%x(dpl%d)\n",what,e.rbx,e.rcx,run->exit_reason==KVM_EXIT_IO?*((unsigned char*)run+run->io.data_offset):-1,run->exit_reason,run->io.port,e.rip,es.cs.selector,es.cs.dpl);
    return -1;}
  return 0;}
static void measure(const char*name,const unsigned char*user,const unsigned char*lstar,const unsigned char*ud,int sce,long iters,int reps){
  setup(user,lstar,ud,sce);
  for(int i=0;i<3;i++) if(run_once(name)){return;}
  struct kvm_sregs es; ioctl(vcpu,KVM_GET_SREGS,&es);
  double v[16];
  for(int r=0;r<reps;r++){double t0=now_ns(); for(long i=0;i<iters;i++) if(run_once(name))return; v[r]=(now_ns()-t0)/iters;}
  char nm[80]; snprintf(nm,sizeof nm,"%s [exit cpl%d]",name,es.cs.dpl); report(nm,v,reps);
}
int main(int argc,char**argv){
  long iters=argl(argc,argv,1,300); int reps=argl(argc,argv,2,5);
  kvm=open("/dev/kvm",O_RDWR|O_CLOEXEC); if(kvm<0)die("/dev/kvm");
  vm=ioctl(kvm,KVM_CREATE_VM,0); if(vm<0)die("KVM_CREATE_VM");
  mem=mmap(0,MEMSZ,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  struct kvm_userspace_memory_region r={.slot=0,.guest_phys_addr=0,.memory_size=MEMSZ,.userspace_addr=(unsigned long)mem};
  if(ioctl(vm,KVM_SET_USER_MEMORY_REGION,&r))die("SET_USER_MEMORY_REGION");
  memcpy(mem+BASE,g_start,g_end-g_start);
  uint64_t*gdt=(uint64_t*)(mem+0x800);
  gdt[0]=0; gdt[1]=0x00af9b000000ffffULL; gdt[2]=0x00cf93000000ffffULL;
  gdt[3]=0x00cffb000000ffffULL; gdt[4]=0x00cff3000000ffffULL; gdt[5]=0x00affb000000ffffULL;
  uint64_t tss=0x1000; /* 104-byte TSS; RSP0 at offset 4 */
  *(uint64_t*)(mem+tss+4)=0x1e0000; *(uint16_t*)(mem+tss+102)=104; memset(mem+tss+104,0,128); mem[tss+104+128]=0xff;
  gdt[6]=(232)|((tss&0xffffff)<<16)|(0x89ULL<<40)|(((tss>>24)&0xff)<<56); gdt[7]=tss>>32;
  uint64_t*pml4=(uint64_t*)(mem+0x2000),*pdpt=(uint64_t*)(mem+0x3000),*pd=(uint64_t*)(mem+0x4000);
  pml4[0]=0x3000|7; pdpt[0]=0x4000|7; pd[0]=0x0|0x87;
  vcpu=ioctl(vm,KVM_CREATE_VCPU,0); if(vcpu<0)die("KVM_CREATE_VCPU");
  int sz=ioctl(kvm,KVM_GET_VCPU_MMAP_SIZE,0);
  run=mmap(0,sz,PROT_READ|PROT_WRITE,MAP_SHARED,vcpu,0); if(run==MAP_FAILED)die("mmap run");
  if(ioctl(vcpu,KVM_GET_SREGS,&s0))die("GET_SREGS");
  struct kvm_segment cs={.base=0,.limit=0xffffffff,.selector=0x08,.type=11,.present=1,.dpl=0,.db=0,.s=1,.l=1,.g=1};
  struct kvm_segment ds={.base=0,.limit=0xffffffff,.selector=0x10,.type=3,.present=1,.dpl=0,.db=1,.s=1,.l=0,.g=1};
  struct kvm_segment tr={.base=tss,.limit=232,.selector=0x30,.type=11,.present=1,.dpl=0,.s=0};
  s0.cs=cs; s0.ds=s0.es=s0.fs=s0.gs=s0.ss=ds; s0.tr=tr;
  s0.gdt.base=0x800; s0.gdt.limit=8*8-1; s0.idt.base=0x5000; s0.idt.limit=256*16-1;
  s0.cr3=0x2000; s0.cr4=(1<<5); s0.cr0=0x80050033; s0.efer=(1<<0)|(1<<8)|(1<<10);
  measure("ring3 out (IOPL3)",u_out,l_out_jmp,h_ud_skip,1,iters,reps);
  measure("syscall->LSTAR out, jmp rcx",u_sys,l_out_jmp,h_ud_skip,1,iters,reps);
  measure("syscall->LSTAR ud2->#UD out",u_sys,l_ud2,h_ud_from_lstar,1,iters,reps);
  measure("int $0x80 -> out, iretq",u_int80,l_out_jmp,h_ud_skip,1,iters,reps);
  measure("ud2 -> #UD out, iretq",u_ud2,l_out_jmp,h_ud_skip,1,iters,reps);
  measure("syscall SCE=0 -> #UD out",u_sys,l_out_jmp,h_ud_skip,0,iters,reps);
  return 0;}
